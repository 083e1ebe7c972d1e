//! Raft entries longer than `batch-bytes-max`, written as fragment records
//! (docs/format/shard-log.md §3 kind 7, §4, §5 step 5, invariant 8): round trips of every
//! size through reopen and cache eviction, the `entry-bytes-max` refusal, value pointers,
//! conflicts, compaction and reclamation of fragmented entries, orphan fragments at the start
//! of the chain, backpressure with an entry larger than `pending-bytes-max`, and crashes at
//! every write and flush while fragmented entries are written among small ones.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod vlog_common;

use std::collections::BTreeMap;
use std::rc::Rc;

use engines::vlog::{
    AppendRecord, EntryRecord, Error, FragmentHead, FragmentRecord, LogIndex, LogRecord, RangeId,
    SharedDevice, Term, ValueSpan, Vlog, VlogConfig,
};
use futures_lite::future::block_on;
use nvme::{CrashMode, Fault, FaultAction, FaultyDevice, MemDevice, OpKind};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use vlog_common::{BS, OWNER, cfg, entry, join_all, must_format, must_open, payload};

/// The tests' batch size (`cfg()`): 8 KiB.
const BATCH: usize = 8 * 1024;
/// Record header + entry header.
const ENTRY_OVERHEAD: usize = 24 + 32;

/// Named `vlog` so that `cargo test -p engines vlog` selects these tests.
mod vlog {
    use super::*;

    /// Reads entry `index` of `range` and checks it against the deterministic payload.
    async fn must_read<D: nvme::BlockDevice>(log: &Vlog<D>, range: u64, index: u64, len: usize) {
        let e = log
            .entry(RangeId(range), LogIndex(index))
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("r{range}/{index} missing"));
        assert_eq!(e.payload.len(), len, "r{range}/{index} length");
        assert!(
            e.payload == payload(range, index, 1, len),
            "r{range}/{index} bytes differ"
        );
    }

    /// Entries of 1 B, exactly one batch, one batch + 1 B, 10 batches and several crossing
    /// segment boundaries are read back identical: at once, after cache eviction, through
    /// `entries`, and after a reopen with no cache at all.
    #[test]
    fn entries_of_every_size_round_trip_through_reopen_and_cache_eviction() {
        let sizes = [
            1,
            BATCH - ENTRY_OVERHEAD,
            BATCH - ENTRY_OVERHEAD + 1,
            10 * BATCH,
            30_000,
            30_000,
            30_000,
            7,
        ];
        block_on(async {
            let log = must_open(must_format(24), cfg()).await;
            for (i, &len) in sizes.iter().enumerate() {
                let a = log
                    .append(vec![entry(1, i as u64 + 1, 1, len)])
                    .await
                    .unwrap();
                assert_eq!(a.len(), 1, "one answer per entry");
            }
            let m = log.metrics();
            assert_eq!(m.fragmented_entries_total, 5);
            assert!(m.fragment_bytes_total > 10 * BATCH as u64);
            assert!(
                log.segment_usage().len() >= 4,
                "the large entries span segments"
            );
            // Evict the cache with other entries, then read by (range, index).
            for i in 1..=40 {
                log.append(vec![entry(2, i, 1, 3000)]).await.unwrap();
            }
            for (i, &len) in sizes.iter().enumerate() {
                must_read(&log, 1, i as u64 + 1, len).await;
            }
            let n = sizes.len() as u64;
            let all = log
                .entries(RangeId(1), LogIndex(1), LogIndex(n + 1), usize::MAX)
                .await
                .unwrap();
            assert_eq!(all.len(), sizes.len());
            for (e, &len) in all.iter().zip(&sizes) {
                assert_eq!(e.payload, payload(1, e.index.0, 1, len));
            }
            // The byte limit is applied from the index: one large entry alone.
            let one = log
                .entries(RangeId(1), LogIndex(4), LogIndex(n + 1), 1000)
                .await
                .unwrap();
            assert_eq!(one.len(), 1);
            assert_eq!(one[0].payload.len(), 10 * BATCH);
            let dev = log.into_device().unwrap();
            let no_cache = VlogConfig {
                cache_bytes_max: 0,
                ..cfg()
            };
            let log = must_open(dev, no_cache).await;
            assert_eq!(log.bounds(RangeId(1)), Some((LogIndex(1), LogIndex(n))));
            for (i, &len) in sizes.iter().enumerate() {
                must_read(&log, 1, i as u64 + 1, len).await;
                assert_eq!(log.term(RangeId(1), LogIndex(i as u64 + 1)), Some(Term(1)));
            }
            // The log goes on after them, and reopens again.
            log.append(vec![entry(1, n + 1, 1, 20_000)]).await.unwrap();
            let log = must_open(log.into_device().unwrap(), no_cache).await;
            must_read(&log, 1, n + 1, 20_000).await;
        });
    }

    /// An entry above `entry-bytes-max`, a fragment appended by the caller and a non-entry
    /// record above `batch-bytes-max` are refused before anything is queued; the log stays
    /// healthy and later appends (a maximal entry among them) succeed.
    #[test]
    fn an_entry_above_entry_bytes_max_is_refused_and_the_log_stays_healthy() {
        let conf = VlogConfig {
            entry_bytes_max: 100_000,
            ..cfg()
        };
        block_on(async {
            let log = must_open(must_format(24), conf).await;
            log.append(vec![entry(1, 1, 1, 100)]).await.unwrap();
            let next = log.next_seq();
            let too_long = log
                .append(vec![entry(1, 2, 1, 10), entry(1, 3, 1, 100_001)])
                .await;
            assert!(matches!(too_long, Err(Error::InvalidArgument(_))));
            let fragment = LogRecord::Fragment(FragmentRecord {
                head: FragmentHead {
                    range: RangeId(1),
                    term: Term(1),
                    index: LogIndex(2),
                    entry_type: 0,
                    number: 0,
                    count: 2,
                    total_len: 20,
                },
                part: vec![0; 10],
            });
            assert!(matches!(
                log.append(vec![fragment.into()]).await,
                Err(Error::InvalidArgument(_))
            ));
            let conf_state = LogRecord::ConfState {
                range: RangeId(1),
                data: vec![0; BATCH],
            };
            assert!(matches!(
                log.append(vec![conf_state.into()]).await,
                Err(Error::InvalidArgument(_))
            ));
            assert!(!log.is_poisoned());
            assert_eq!(log.next_seq(), next, "nothing was queued");
            assert_eq!(log.waiting_appends(), 0);
            log.append(vec![entry(1, 2, 1, 100_000), entry(1, 3, 1, 5)])
                .await
                .unwrap();
            let log = must_open(log.into_device().unwrap(), conf).await;
            assert_eq!(log.bounds(RangeId(1)), Some((LogIndex(1), LogIndex(3))));
            must_read(&log, 1, 2, 100_000).await;
        });
    }

    fn with_value(range: u64, index: u64, len: usize, offset: u32, vlen: u32) -> AppendRecord {
        AppendRecord {
            value: Some(ValueSpan { offset, len: vlen }),
            ..entry(range, index, 1, len)
        }
    }

    /// A fragmented entry's value gets a pointer when one fragment holds all of it (and it
    /// reads back), and none when it crosses fragments.
    #[test]
    fn value_pointer_is_returned_only_when_one_fragment_holds_the_value() {
        let part = BATCH - 72;
        block_on(async {
            let log = must_open(must_format(24), cfg()).await;
            let a = log
                .append(vec![
                    with_value(1, 1, 30_000, 10, 1000),
                    with_value(1, 2, 30_000, part as u32 + 5, 2000),
                    with_value(1, 3, 30_000, part as u32 - 100, 200),
                    with_value(1, 4, 30_000, 0, 30_000),
                ])
                .await
                .unwrap();
            let p = payload(1, 1, 1, 30_000);
            let v = log.read_value(a[0].value.as_ref().unwrap()).await.unwrap();
            assert_eq!(v, p[10..1010]);
            let p = payload(1, 2, 1, 30_000);
            let v = log.read_value(a[1].value.as_ref().unwrap()).await.unwrap();
            assert_eq!(v, p[part + 5..part + 2005]);
            assert_eq!(a[2].value, None, "crosses two fragments");
            assert_eq!(a[3].value, None, "spans the whole entry");
            // The record pointer is the first fragment's; it reads as that fragment.
            assert_eq!(
                log.entry_pointer(RangeId(1), LogIndex(1)),
                Some(a[0].record)
            );
            match log.read_record(&a[0].record).await.unwrap() {
                LogRecord::Fragment(f) => {
                    assert_eq!((f.head.number, f.head.count), (0, 4));
                    assert_eq!(f.head.total_len, 30_000);
                }
                r => panic!("not a fragment: {r:?}"),
            }
        });
    }

    /// A fragmented entry replaced by a conflicting append, or compacted away, is dropped like
    /// any entry; the segments holding its fragments are needed exactly while it is retained.
    #[test]
    fn fragmented_entries_follow_conflicts_and_compaction_and_keep_their_segments() {
        block_on(async {
            let log = must_open(must_format(24), cfg()).await;
            log.append(vec![entry(1, 1, 1, 100), entry(1, 2, 1, 150_000)])
                .await
                .unwrap();
            log.append(vec![entry(1, 3, 1, 100)]).await.unwrap();
            assert!(
                log.raft_unneeded_segments().is_empty(),
                "every segment holds a fragment of a retained entry"
            );
            // A new leader's entry 2 (term 2) replaces the large one and entry 3.
            log.append(vec![entry(1, 2, 2, 100)]).await.unwrap();
            assert_eq!(log.bounds(RangeId(1)), Some((LogIndex(1), LogIndex(2))));
            assert_eq!(log.term(RangeId(1), LogIndex(2)), Some(Term(2)));
            let unneeded = log.raft_unneeded_segments();
            assert!(unneeded.is_empty(), "entry 1 is still in the first segment");
            // Another large entry, then compaction below it: the older segments go.
            log.append(vec![entry(1, 3, 2, 150_000)]).await.unwrap();
            log.compact(RangeId(1), LogIndex(3)).await.unwrap();
            let unneeded = log.raft_unneeded_segments();
            assert!(unneeded.len() >= 2, "{unneeded:?}");
            for id in unneeded {
                log.release_segment(id).await.unwrap();
            }
            let e = log.entry(RangeId(1), LogIndex(3)).await.unwrap().unwrap();
            assert_eq!(e.payload, payload(1, 3, 2, 150_000));
            let log = must_open(log.into_device().unwrap(), cfg()).await;
            assert_eq!(log.bounds(RangeId(1)), Some((LogIndex(3), LogIndex(3))));
            let e = log.entry(RangeId(1), LogIndex(3)).await.unwrap().unwrap();
            assert_eq!(e.payload, payload(1, 3, 2, 150_000));
            // A suffix truncation drops it too, and its segments become unneeded.
            log.truncate_suffix(RangeId(1), LogIndex(3)).await.unwrap();
            assert_eq!(log.entry(RangeId(1), LogIndex(3)).await.unwrap(), None);
            log.append(vec![entry(1, 3, 3, 10)]).await.unwrap();
            let log = must_open(log.into_device().unwrap(), cfg()).await;
            assert_eq!(log.term(RangeId(1), LogIndex(3)), Some(Term(3)));
        });
    }

    /// When the segment holding the first fragments of a dropped entry is freed while a later
    /// one holds its last fragments and live records, the chain starts with orphan fragments:
    /// recovery counts them and goes on.
    #[test]
    fn orphan_fragments_at_the_start_of_the_chain_are_skipped() {
        block_on(async {
            let log = must_open(must_format(24), cfg()).await;
            // 13 fragments: 7 fill the first segment, 6 go to the second.
            let a = log.append(vec![entry(1, 1, 1, 100_000)]).await.unwrap()[0];
            for i in 1..=5 {
                log.append(vec![entry(2, i, 1, 100)]).await.unwrap();
            }
            log.compact(RangeId(1), LogIndex(2)).await.unwrap();
            let unneeded = log.raft_unneeded_segments();
            assert_eq!(unneeded, vec![a.record.segment], "only the first segment");
            log.release_segment(a.record.segment).await.unwrap();
            let (log, rep) = Vlog::open(log.into_device().unwrap(), OWNER, cfg())
                .await
                .unwrap();
            assert!(!rep.cut);
            assert_eq!(rep.segments, 1);
            assert_eq!(log.bounds(RangeId(2)), Some((LogIndex(1), LogIndex(5))));
            assert_eq!(log.entry(RangeId(1), LogIndex(1)).await.unwrap(), None);
            for i in 1..=5 {
                must_read(&log, 2, i, 100).await;
            }
            log.append(vec![entry(1, 2, 1, 50_000)]).await.unwrap();
            let log = must_open(log.into_device().unwrap(), cfg()).await;
            must_read(&log, 1, 2, 50_000).await;
        });
    }

    /// A damaged fragment of an acknowledged entry followed by later appends is corruption
    /// (never taken for a torn tail and cut); a damaged byte read through the entry fails.
    #[test]
    fn a_damaged_fragment_of_an_acknowledged_entry_is_corruption() {
        block_on(async {
            let log = must_open(must_format(24), cfg()).await;
            let a = log.append(vec![entry(1, 1, 1, 40_000)]).await.unwrap()[0];
            for i in 2..=8 {
                log.append(vec![entry(1, i, 1, 3000)]).await.unwrap();
            }
            let mem = log.into_device().unwrap();
            let store = nvme::SegmentStore::open(mem).await.unwrap();
            let seg = store.segment(nvme::SegmentId(a.record.segment.0)).unwrap();
            let mem = store.into_device();
            // A payload byte of the entry's third fragment (fragments fill whole batches).
            let at = seg.offset + a.record.offset + 2 * BATCH as u64 + 100;
            mem.with_bytes_mut(|b| b[at as usize] ^= 0x01);
            match Vlog::open(mem, OWNER, cfg()).await {
                Err(Error::Corruption { offset, .. }) => {
                    assert_eq!(offset, a.record.offset + 2 * BATCH as u64);
                }
                r => panic!("expected corruption, got {:?}", r.map(|(_, rep)| rep)),
            }
        });
    }

    /// Recovery of a log of small and fragmented entries with random bytes changed anywhere
    /// in its segments errors or recovers, never panics; what it indexes reads back whole or
    /// fails with an error. (The same as the `log_recovery` fuzz target, seeded.)
    #[test]
    fn recovery_of_randomly_damaged_fragmented_logs_never_panics() {
        let small = VlogConfig {
            batch_bytes_max: 2048,
            recovery_read_bytes: 4096,
            ..cfg()
        };
        let seg = 16 * 1024u64;
        let image = block_on(async {
            let dev = vlog_common::must_format_with(12, seg, 512);
            let log = must_open(dev, small).await;
            for i in 1..=16u64 {
                let len = if i % 3 == 0 { 5000 } else { 100 };
                log.append(vec![entry(i % 2, i, 1, len)]).await.unwrap();
            }
            let segs: Vec<_> = log.segment_usage().into_iter().map(|u| u.0).collect();
            let store = nvme::SegmentStore::open(log.into_device().unwrap())
                .await
                .unwrap();
            let at = |id: engines::vlog::SegmentId| {
                store.segment(nvme::SegmentId(id.0)).unwrap().offset as usize
            };
            let lo = segs.iter().map(|&id| at(id)).min().unwrap();
            let hi = segs.iter().map(|&id| at(id)).max().unwrap() + seg as usize;
            (store.into_device().into_bytes(), lo..hi)
        });
        let (image, data) = image;
        assert!(data.len() >= 2 * seg as usize, "the log spans segments");
        let (mut opened, mut failed) = (0, 0);
        for seed in 0..400u64 {
            let mut rng = StdRng::seed_from_u64(seed);
            let mut img = image.clone();
            for _ in 0..rng.gen_range(1..6) {
                let at = rng.gen_range(data.clone());
                img[at] ^= rng.gen_range(1..=255u8);
            }
            block_on(async {
                let mem = MemDevice::from_bytes(img, 512).unwrap();
                let Ok((log, _)) = Vlog::open(mem, OWNER, small).await else {
                    failed += 1;
                    return;
                };
                opened += 1;
                for r in log.ranges() {
                    let Some((lo, hi)) = log.bounds(r) else {
                        continue;
                    };
                    for i in lo.0..=hi.0 {
                        if let Ok(Some(e)) = log.entry(r, LogIndex(i)).await {
                            let len = if i % 3 == 0 { 5000 } else { 100 };
                            assert_eq!(e.payload, payload(r.0, i, 1, len), "seed {seed}");
                        }
                    }
                }
                let _ = log.append(vec![entry(0, 100, 1, 3000)]).await;
            });
        }
        assert!(
            opened > 0 && failed > 0,
            "{opened} opened, {failed} refused"
        );
    }

    /// Running out of segments in the middle of an entry poisons the log (a partial entry
    /// cannot be followed by other records); the reopened log has dropped the partial entry,
    /// kept everything acknowledged, and takes appends again.
    #[test]
    fn no_space_in_the_middle_of_an_entry_poisons_and_reopen_drops_it() {
        block_on(async {
            let conf = VlogConfig {
                entry_bytes_max: 4 << 20,
                ..cfg()
            };
            let log = must_open(must_format(4), conf).await;
            log.append(vec![entry(1, 1, 1, 100)]).await.unwrap();
            let next = log.next_seq();
            // Far more than the device's segments.
            let res = log.append(vec![entry(1, 2, 1, 3 << 20)]).await;
            assert!(matches!(res, Err(Error::NoSpace)), "{res:?}");
            assert!(log.is_poisoned());
            assert_eq!(log.waiting_appends(), 0);
            assert!(log.append(vec![entry(1, 2, 1, 10)]).await.is_err());
            let (log, rep) = Vlog::open(log.into_device().unwrap(), OWNER, cfg())
                .await
                .unwrap();
            assert_eq!(rep.next_seq, next);
            assert_eq!(log.bounds(RangeId(1)), Some((LogIndex(1), LogIndex(1))));
            log.append(vec![entry(1, 2, 1, 100_000)]).await.unwrap();
            let log = must_open(log.into_device().unwrap(), cfg()).await;
            must_read(&log, 1, 2, 100_000).await;
        });
    }

    /// Figures with production sizes (64 MiB segments, 1 MiB batches, `mem` device): a
    /// 64 MiB entry appended, read back after reopen, and a 1 MiB + 1 B one. Run with
    /// `--ignored --nocapture`.
    #[test]
    #[ignore = "figures: 64 MiB entries, about 1 GiB of memory"]
    fn production_sized_entries_figures() {
        let conf = VlogConfig::default();
        block_on(async {
            let dev = vlog_common::must_format_with(4, 64 << 20, BS);
            let log = must_open(dev, conf).await;
            for (i, len) in [(1, (1 << 20) + 1), (2, 64 << 20)] {
                let rec = entry(1, i, 1, len);
                let t = std::time::Instant::now();
                log.append(vec![rec]).await.unwrap();
                println!("append of {len} B: {:?}", t.elapsed());
            }
            let m = log.metrics();
            println!(
                "fragmented {} entries, {} fragment bytes, {} flushes",
                m.fragmented_entries_total, m.fragment_bytes_total, m.flushes_total
            );
            let log = must_open(log.into_device().unwrap(), conf).await;
            let t = std::time::Instant::now();
            let e = log.entry(RangeId(1), LogIndex(2)).await.unwrap().unwrap();
            println!("read of the 64 MiB entry after reopen: {:?}", t.elapsed());
            assert!(e.payload == payload(1, 2, 1, 64 << 20));
        });
    }

    /// An entry several times `pending-bytes-max` is queued and committed while small appends
    /// keep arriving: backpressure never waits for the entry itself.
    #[test]
    fn an_entry_larger_than_pending_bytes_max_does_not_deadlock() {
        let conf = VlogConfig {
            pending_bytes_max: 16 * 1024,
            ..cfg()
        };
        block_on(async {
            let log = must_open(must_format(24), conf).await;
            let mut futs = Vec::new();
            for k in 0..8u64 {
                let len = if k % 3 == 0 { 120_000 } else { 200 };
                futs.push(log.append(vec![entry(k, 1, 1, len)]));
            }
            for r in join_all(futs).await {
                r.unwrap();
            }
            for k in 0..8u64 {
                must_read(&log, k, 1, if k % 3 == 0 { 120_000 } else { 200 }).await;
            }
        });
    }

    /// The workload of the crash tests: rounds of concurrent appends of small and fragmented
    /// entries from several ranges. Returns the device, the acknowledged entries and the ones
    /// in flight when the fault hit, per range: (index, len).
    type Acked = BTreeMap<u64, (Vec<(u64, usize)>, Vec<(u64, usize)>)>;

    fn workload(
        image: &[u8],
        fault: Option<Fault>,
        rounds: usize,
    ) -> (Option<FaultyDevice<MemDevice>>, Acked) {
        block_on(async {
            let dev = FaultyDevice::new(MemDevice::from_bytes(image.to_vec(), BS).unwrap());
            if let Some(f) = fault {
                dev.schedule(f);
            }
            let mut model = Acked::new();
            let Ok((log, _)) = Vlog::open(dev, OWNER, cfg()).await else {
                return (None, model);
            };
            let mut rng = StdRng::seed_from_u64(5);
            for _ in 0..rounds {
                let mut reqs = Vec::new();
                for range in 0..rng.gen_range(1..=4u64) {
                    let from = model
                        .get(&range)
                        .and_then(|m| m.0.last())
                        .map_or(1, |l| l.0 + 1);
                    let lens: Vec<usize> = (0..rng.gen_range(1..=3))
                        .map(|_| match rng.gen_range(0..10) {
                            0..=1 => rng.gen_range(BATCH..5 * BATCH),
                            _ => rng.gen_range(8..600),
                        })
                        .collect();
                    reqs.push((range, from, lens));
                }
                let futs: Vec<_> = reqs
                    .iter()
                    .map(|(r, from, lens)| {
                        let recs = lens.iter().enumerate();
                        log.append(
                            recs.map(|(i, &l)| entry(*r, from + i as u64, 1, l))
                                .collect(),
                        )
                    })
                    .collect();
                let mut failed = false;
                for ((range, from, lens), res) in reqs.iter().zip(join_all(futs).await) {
                    let m = model.entry(*range).or_default();
                    let es = lens.iter().enumerate().map(|(i, &l)| (from + i as u64, l));
                    match res {
                        Ok(_) => m.0.extend(es),
                        Err(_) => {
                            failed = true;
                            m.1.extend(es);
                        }
                    }
                }
                if failed {
                    break;
                }
            }
            (Some(log.into_device().unwrap()), model)
        })
    }

    /// Reopens a crash image: every acknowledged entry is there and whole, of the entries in
    /// flight only whole ones in a prefix appear, and appends (a fragmented one among them)
    /// go on and survive a reopen. Returns whether recovery cut anything.
    fn must_recover(mem: MemDevice, model: &Acked, ctx: &str) -> bool {
        block_on(async {
            let (log, rep) = Vlog::open(mem, OWNER, cfg())
                .await
                .unwrap_or_else(|e| panic!("{ctx}: reopen failed: {e}"));
            for (&range, (acked, inflight)) in model {
                let last = log.bounds(RangeId(range)).map_or(0, |(_, l)| l.0);
                let acked_last = acked.last().map_or(0, |a| a.0);
                let max_last = inflight.last().map_or(acked_last, |a| a.0);
                assert!(
                    last >= acked_last && last <= max_last,
                    "{ctx}: r{range} last {last}, acked {acked_last}, at most {max_last}"
                );
                for &(i, len) in acked.iter().chain(inflight).take_while(|(i, _)| *i <= last) {
                    let e = log.entry(RangeId(range), LogIndex(i)).await.unwrap();
                    let e = e.unwrap_or_else(|| panic!("{ctx}: r{range}/{i} missing"));
                    assert!(
                        e.payload == payload(range, i, 1, len),
                        "{ctx}: r{range}/{i} not whole"
                    );
                }
            }
            log.append(vec![entry(100, 1, 1, 3 * BATCH), entry(100, 2, 1, 10)])
                .await
                .unwrap_or_else(|e| panic!("{ctx}: append after recovery: {e}"));
            let log = must_open(log.into_device().unwrap(), cfg()).await;
            must_read(&log, 100, 1, 3 * BATCH).await;
            for (&range, (acked, _)) in model {
                if let Some(&(i, len)) = acked.last() {
                    must_read(&log, range, i, len).await;
                }
            }
            rep.cut
        })
    }

    const ROUNDS: usize = 25;

    fn image() -> Vec<u8> {
        must_format(40).into_bytes()
    }

    fn crash(dev: Option<FaultyDevice<MemDevice>>, image: &[u8], mode: CrashMode) -> MemDevice {
        match dev {
            Some(d) => block_on(d.crash(mode)).unwrap(),
            None => MemDevice::from_bytes(image.to_vec(), BS).unwrap(),
        }
    }

    /// Crash at every flush while fragmented entries are written among small ones, with the
    /// unflushed blocks dropped, kept or torn.
    #[test]
    fn acknowledged_fragmented_entries_survive_a_crash_at_every_flush_point() {
        let img = image();
        let (dev, model) = workload(&img, None, ROUNDS);
        let fragmented = model.values().flat_map(|m| &m.0).filter(|e| e.1 > BATCH);
        assert!(
            fragmented.count() > 5,
            "the workload writes fragmented entries"
        );
        let flushes = dev.unwrap().counts().flushes;
        let mut cuts = 0;
        for nth in 0..flushes {
            for mode in [
                CrashMode::DropUnflushed,
                CrashMode::KeepUnflushed,
                CrashMode::Random { seed: nth },
            ] {
                let fault = Fault {
                    kind: OpKind::Flush,
                    nth,
                    action: FaultAction::Halt,
                };
                let (dev, model) = workload(&img, Some(fault), ROUNDS);
                let mem = crash(dev, &img, mode);
                cuts += usize::from(must_recover(mem, &model, &format!("flush {nth} {mode:?}")));
            }
        }
        assert!(cuts > 0, "some crash left a tail to cut");
    }

    /// Crash at every write of the same workload, with unflushed blocks torn or kept.
    #[test]
    fn acknowledged_fragmented_entries_survive_a_crash_at_every_write_point() {
        let img = image();
        let (dev, _) = workload(&img, None, ROUNDS);
        let writes = dev.unwrap().counts().writes;
        for nth in 0..writes {
            for mode in [CrashMode::Random { seed: nth }, CrashMode::KeepUnflushed] {
                let fault = Fault {
                    kind: OpKind::Write,
                    nth,
                    action: FaultAction::Halt,
                };
                let (dev, model) = workload(&img, Some(fault), ROUNDS);
                let mem = crash(dev, &img, mode);
                must_recover(mem, &model, &format!("write {nth} {mode:?}"));
            }
        }
    }

    /// An entry whose first fragments were flushed but not its last is dropped at reopen (it
    /// was never acknowledged): the tail moves back to its first fragment, and a crash at any
    /// point of that recovery (freeing its later segment, zeroing its fragments last first)
    /// recovers the same way.
    #[test]
    fn an_incomplete_fragmented_entry_is_dropped_even_if_recovery_crashes() {
        block_on(async {
            let dev = FaultyDevice::new(must_format(24));
            let log = must_open(dev, cfg()).await;
            log.append(vec![entry(1, 1, 1, 500)]).await.unwrap();
            let next = log.next_seq();
            // 12 fragments across two segments; halt at the flush of the 9th batch.
            let flushes = log.device().counts().flushes;
            log.device().schedule(Fault {
                kind: OpKind::Flush,
                nth: flushes + 8,
                action: FaultAction::Halt,
            });
            assert!(log.append(vec![entry(1, 2, 1, 95_000)]).await.is_err());
            let mem = log
                .into_device()
                .unwrap()
                .crash(CrashMode::DropUnflushed)
                .await
                .unwrap();
            let image = mem.into_bytes();
            let check = |mem: MemDevice, ctx: String| async move {
                let (log, rep) = Vlog::open(mem, OWNER, cfg())
                    .await
                    .unwrap_or_else(|e| panic!("{ctx}: {e}"));
                assert_eq!(rep.next_seq, next, "{ctx}: tail at the first fragment");
                assert_eq!(log.bounds(RangeId(1)), Some((LogIndex(1), LogIndex(1))));
                must_read(&log, 1, 1, 500).await;
                log.append(vec![entry(1, 2, 2, 20_000)]).await.unwrap();
                let log = must_open(log.into_device().unwrap(), cfg()).await;
                assert_eq!(log.term(RangeId(1), LogIndex(2)), Some(Term(2)));
                must_read_term(&log, 1, 2, 2, 20_000).await;
            };
            let (_, rep) = Vlog::open(
                MemDevice::from_bytes(image.clone(), BS).unwrap(),
                OWNER,
                cfg(),
            )
            .await
            .unwrap();
            assert!(rep.cut, "{rep:?}");
            let ops = {
                let dev = FaultyDevice::new(MemDevice::from_bytes(image.clone(), BS).unwrap());
                let (log, _) = Vlog::open(dev, OWNER, cfg()).await.unwrap();
                log.device().counts().total()
            };
            assert!(ops > 10, "recovery writes and flushes: {ops} operations");
            check(
                MemDevice::from_bytes(image.clone(), BS).unwrap(),
                "clean".into(),
            )
            .await;
            for nth in 0..ops {
                for seed in 0..3 {
                    let dev = FaultyDevice::new(MemDevice::from_bytes(image.clone(), BS).unwrap());
                    dev.schedule(Fault {
                        kind: OpKind::Any,
                        nth,
                        action: FaultAction::Halt,
                    });
                    // Shared, so the device can be crashed whether or not the open failed.
                    let dev = Rc::new(dev);
                    drop(Vlog::open(SharedDevice(Rc::clone(&dev)), OWNER, cfg()).await);
                    let dev = Rc::try_unwrap(dev).unwrap();
                    let mem = dev.crash(CrashMode::Random { seed }).await.unwrap();
                    check(mem, format!("recovery halted at op {nth}, seed {seed}")).await;
                }
            }
        });
    }

    async fn must_read_term<D: nvme::BlockDevice>(
        log: &Vlog<D>,
        range: u64,
        index: u64,
        term: u64,
        len: usize,
    ) {
        let e = log.entry(RangeId(range), LogIndex(index)).await.unwrap();
        let e: Rc<EntryRecord> = e.unwrap();
        assert!(e.payload == payload(range, index, term, len));
    }
}
