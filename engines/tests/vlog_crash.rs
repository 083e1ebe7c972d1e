//! Crash consistency of the shard log (docs/format/shard-log.md §7): a seeded workload of
//! concurrent appends from many ranges runs on the `faulty` device, which halts at a chosen
//! write or flush (or any operation, at random); the crash drops, keeps or tears each unflushed
//! block; reopen must succeed, every acknowledged record must be there and identical (by
//! pointer and by (range, index)), and of what was in flight only whole records in a prefix of
//! each range's entries may appear. The log must then keep working and reopen cleanly.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod vlog_common;

use std::collections::BTreeMap;

use engines::vlog::{AppendRecord, Appended, HardState, LogIndex, LogRecord, RangeId, Term, Vlog};
use futures_lite::future::block_on;
use nvme::{CrashMode, Fault, FaultAction, FaultyDevice, MemDevice, OpKind};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use vlog_common::{BS, OWNER, cfg, entry, join_all, must_format, payload};

/// Named `vlog` so that `cargo test -p engines vlog` selects these tests.
mod vlog {
    use super::*;

    /// One range's acknowledged log and what was in flight when the crash came.
    #[derive(Debug, Default, Clone)]
    struct RangeModel {
        /// Acknowledged entries: (index, len, value pointer).
        acked: Vec<(u64, usize, Appended)>,
        /// Entries in flight at the crash: (index, len).
        inflight: Vec<(u64, usize)>,
        hard: Option<HardState>,
        hard_inflight: Option<HardState>,
    }

    type Model = BTreeMap<u64, RangeModel>;

    /// One appender's request in a round.
    #[derive(Debug, Clone)]
    enum Req {
        Entries {
            range: u64,
            from: u64,
            lens: Vec<usize>,
        },
        Hard {
            range: u64,
            state: HardState,
        },
    }

    fn round(rng: &mut StdRng, model: &Model) -> Vec<Req> {
        let n = rng.gen_range(1..=12);
        let mut ranges: Vec<u64> = (0..16).collect();
        let mut out = Vec::new();
        for _ in 0..n {
            let i = rng.gen_range(0..ranges.len());
            let range = ranges.swap_remove(i);
            if rng.gen_bool(0.15) {
                let t = rng.gen_range(1..100);
                out.push(Req::Hard {
                    range,
                    state: HardState {
                        term: Term(t),
                        vote: t % 3,
                        commit: LogIndex(t * 2),
                    },
                });
                continue;
            }
            let from = model
                .get(&range)
                .and_then(|m| m.acked.last())
                .map_or(1, |(i, _, _)| i + 1);
            let k = rng.gen_range(1..=4);
            let lens = (0..k)
                .map(|_| {
                    if rng.gen_bool(0.2) {
                        rng.gen_range(1000..3000)
                    } else {
                        rng.gen_range(8..300)
                    }
                })
                .collect();
            out.push(Req::Entries { range, from, lens });
        }
        out
    }

    fn records(req: &Req) -> Vec<AppendRecord> {
        match req {
            Req::Entries { range, from, lens } => lens
                .iter()
                .enumerate()
                .map(|(i, &l)| entry(*range, from + i as u64, 1, l))
                .collect(),
            Req::Hard { range, state } => vec![
                LogRecord::HardState {
                    range: RangeId(*range),
                    state: *state,
                }
                .into(),
            ],
        }
    }

    /// Runs `rounds` rounds of the seeded workload. Returns the device and the model; stops at
    /// the first failed round (its requests are recorded as in flight).
    fn run(
        image: &[u8],
        fault: Option<Fault>,
        seed: u64,
        rounds: usize,
    ) -> (Option<FaultyDevice<MemDevice>>, Model, bool) {
        block_on(async {
            let dev = FaultyDevice::new(MemDevice::from_bytes(image.to_vec(), BS).unwrap());
            if let Some(f) = fault {
                dev.schedule(f);
            }
            let mut model = Model::new();
            let log = match Vlog::open(dev, OWNER, cfg()).await {
                Ok((l, _)) => l,
                // The fault hit during open: nothing was acknowledged.
                Err(_) => return (None, model, true),
            };
            let mut rng = StdRng::seed_from_u64(seed);
            for _ in 0..rounds {
                let reqs = round(&mut rng, &model);
                let futs: Vec<_> = reqs.iter().map(|r| log.append(records(r))).collect();
                let res = join_all(futs).await;
                let mut failed = false;
                for (req, res) in reqs.iter().zip(res) {
                    match (req, res) {
                        (Req::Entries { range, from, lens }, Ok(a)) => {
                            let m = model.entry(*range).or_default();
                            for (i, (&l, a)) in lens.iter().zip(a).enumerate() {
                                m.acked.push((from + i as u64, l, a));
                            }
                        }
                        (Req::Entries { range, from, lens }, Err(_)) => {
                            failed = true;
                            let m = model.entry(*range).or_default();
                            m.inflight = lens
                                .iter()
                                .enumerate()
                                .map(|(i, &l)| (from + i as u64, l))
                                .collect();
                        }
                        (Req::Hard { range, state }, Ok(_)) => {
                            model.entry(*range).or_default().hard = Some(*state);
                        }
                        (Req::Hard { range, state }, Err(_)) => {
                            failed = true;
                            model.entry(*range).or_default().hard_inflight = Some(*state);
                        }
                    }
                }
                if failed {
                    return (Some(log.into_device().unwrap()), model, true);
                }
            }
            (Some(log.into_device().unwrap()), model, false)
        })
    }

    /// Reopens a crash image and checks the recovery property against `model`; then appends
    /// more and reopens cleanly. Returns the number of in-flight entries that survived and
    /// whether recovery cut a torn tail.
    fn must_recover(mem: MemDevice, model: &Model, ctx: &str) -> (usize, bool) {
        block_on(async {
            let (log, rep) = Vlog::open(mem, OWNER, cfg())
                .await
                .unwrap_or_else(|e| panic!("{ctx}: reopen failed: {e}"));
            let mut survived = 0;
            for (&range, m) in model {
                let r = RangeId(range);
                let acked_last = m.acked.last().map(|(i, _, _)| *i);
                let got_last = log.bounds(r).map(|(_, l)| l.0).filter(|&l| l > 0);
                let max_last = m.inflight.last().map(|(i, _)| *i).or(acked_last);
                assert!(
                    got_last >= acked_last && got_last <= max_last,
                    "{ctx}: range {range}: last {got_last:?}, acked {acked_last:?}, \
                 at most {max_last:?} ({rep:?})"
                );
                for (i, l, a) in &m.acked {
                    let e = log.entry(r, LogIndex(*i)).await.unwrap().unwrap();
                    assert_eq!(e.payload, payload(range, *i, 1, *l), "{ctx}: r{range}/{i}");
                    let v = log.read_value(a.value.as_ref().unwrap()).await.unwrap();
                    assert_eq!(
                        v,
                        payload(range, *i, 1, *l)[8..],
                        "{ctx}: value r{range}/{i}"
                    );
                }
                for (i, l) in &m.inflight {
                    if Some(*i) > got_last {
                        break;
                    }
                    let e = log.entry(r, LogIndex(*i)).await.unwrap().unwrap();
                    assert_eq!(
                        e.payload,
                        payload(range, *i, 1, *l),
                        "{ctx}: in flight r{range}/{i}"
                    );
                    survived += 1;
                }
                let hs = log.hard_state(r);
                assert!(
                    hs == m.hard || (m.hard_inflight.is_some() && hs == m.hard_inflight),
                    "{ctx}: hard state of r{range}: {hs:?} vs {:?}/{:?}",
                    m.hard,
                    m.hard_inflight
                );
            }
            // The log keeps working from whatever it recovered, and reopens cleanly.
            let r = RangeId(1000);
            for i in 1..=20 {
                log.append(vec![entry(1000, i, 7, 500)]).await.unwrap();
            }
            let log = vlog_common::must_open(log.into_device().unwrap(), cfg()).await;
            assert_eq!(log.bounds(r), Some((LogIndex(1), LogIndex(20))), "{ctx}");
            for (&range, m) in model {
                if let Some((i, l, _)) = m.acked.last() {
                    let e = log
                        .entry(RangeId(range), LogIndex(*i))
                        .await
                        .unwrap()
                        .unwrap();
                    assert_eq!(e.payload, payload(range, *i, 1, *l), "{ctx}: after reuse");
                }
            }
            (survived, rep.cut)
        })
    }

    fn image() -> Vec<u8> {
        must_format(24).into_bytes()
    }

    const ROUNDS: usize = 40;

    fn crash(dev: Option<FaultyDevice<MemDevice>>, image: &[u8], mode: CrashMode) -> MemDevice {
        match dev {
            Some(d) => block_on(d.crash(mode)).unwrap(),
            None => MemDevice::from_bytes(image.to_vec(), BS).unwrap(),
        }
    }

    /// Crash at every flush of the workload (halting there), with unflushed blocks dropped,
    /// kept, and torn by several seeds.
    #[test]
    fn acknowledged_appends_survive_a_crash_at_every_flush_point() {
        let img = image();
        let (dev, _, failed) = run(&img, None, 7, ROUNDS);
        assert!(!failed);
        let flushes = dev.unwrap().counts().flushes;
        assert!(flushes > 30, "{flushes}");
        let mut survived = 0;
        let mut cuts = 0;
        for nth in 0..flushes {
            let modes = [
                CrashMode::DropUnflushed,
                CrashMode::KeepUnflushed,
                CrashMode::Random { seed: nth },
                CrashMode::Random { seed: nth + 1000 },
            ];
            for mode in modes {
                let fault = Fault {
                    kind: OpKind::Flush,
                    nth,
                    action: FaultAction::Halt,
                };
                let (dev, model, _) = run(&img, Some(fault), 7, ROUNDS);
                let mem = crash(dev, &img, mode);
                let (s, cut) = must_recover(mem, &model, &format!("flush {nth} {mode:?}"));
                survived += s;
                cuts += usize::from(cut);
            }
        }
        assert!(
            survived > 0,
            "kept unflushed blocks must show some in-flight entries"
        );
        assert!(cuts > 0, "torn or kept unflushed blocks must be cut");
    }

    /// Crash at every write of the workload, with unflushed blocks torn.
    #[test]
    fn acknowledged_appends_survive_a_crash_at_every_write_point() {
        let img = image();
        let (dev, _, _) = run(&img, None, 11, ROUNDS);
        let writes = dev.unwrap().counts().writes;
        for nth in 0..writes {
            for mode in [CrashMode::Random { seed: nth }, CrashMode::KeepUnflushed] {
                let fault = Fault {
                    kind: OpKind::Write,
                    nth,
                    action: FaultAction::Halt,
                };
                let (dev, model, _) = run(&img, Some(fault), 11, ROUNDS);
                let mem = crash(dev, &img, mode);
                must_recover(mem, &model, &format!("write {nth} {mode:?}"));
            }
        }
    }

    /// Many seeded runs, each halting at a random operation (read, write or flush) and crashing
    /// with random tearing. Prints the seed of a failing run.
    #[test]
    fn acknowledged_appends_survive_random_crashes() {
        let img = image();
        let mut cuts = 0;
        for seed in 0..300u64 {
            let mut rng = StdRng::seed_from_u64(seed ^ 0xC0FFEE);
            let nth = rng.gen_range(0..400);
            let fault = Fault {
                kind: OpKind::Any,
                nth,
                action: FaultAction::Halt,
            };
            let (dev, model, _) = run(&img, Some(fault), seed, ROUNDS);
            let mem = crash(dev, &img, CrashMode::Random { seed });
            cuts += usize::from(
                must_recover(mem, &model, &format!("seed {seed} (halt at op {nth})")).1,
            );
        }
        assert!(cuts > 10, "{cuts} runs cut a torn tail");
    }

    /// Crashing again while recovery cuts the torn tail (at each of its writes and flushes)
    /// still recovers every acknowledged append.
    #[test]
    fn crash_during_recovery_is_recovered() {
        let img = image();
        for nth in [5u64, 9, 14, 20, 27] {
            let fault = Fault {
                kind: OpKind::Flush,
                nth,
                action: FaultAction::Halt,
            };
            let (dev, model, _) = run(&img, Some(fault), 3, ROUNDS);
            let mem = crash(dev, &img, CrashMode::KeepUnflushed);
            let bytes = mem.into_bytes();
            for k in 0..8 {
                let dev = FaultyDevice::new(MemDevice::from_bytes(bytes.clone(), BS).unwrap());
                dev.schedule(Fault {
                    kind: OpKind::Any,
                    nth: 20 + k * 7,
                    action: FaultAction::Halt,
                });
                let opened = block_on(Vlog::open(dev, OWNER, cfg()));
                let dev = match opened {
                    Ok((log, _)) => log.into_device().unwrap(),
                    Err(_) => continue,
                };
                let mem = block_on(dev.crash(CrashMode::Random { seed: k })).unwrap();
                must_recover(mem, &model, &format!("recovery crash {nth}/{k}"));
            }
        }
    }

    /// The same properties hold on a 512-byte-block device with segments that fill quickly.
    #[test]
    fn crash_recovery_on_small_blocks() {
        let img = vlog_common::must_format_with(40, 32 * 1024, 512).into_bytes();
        block_on(async {
            for seed in 0..40u64 {
                let dev = FaultyDevice::new(MemDevice::from_bytes(img.clone(), 512).unwrap());
                dev.schedule(Fault {
                    kind: OpKind::Flush,
                    nth: 3 + seed,
                    action: FaultAction::Halt,
                });
                let log = vlog_common::must_open(dev, cfg()).await;
                let mut acked = Vec::new();
                let mut i = 1;
                loop {
                    let futs: Vec<_> = (0..4u64)
                        .map(|k| log.append(vec![entry(k, i, 1, 700)]))
                        .collect();
                    let res = join_all(futs).await;
                    if res.iter().any(|r| r.is_err()) {
                        break;
                    }
                    acked.push(i);
                    i += 1;
                }
                let mem = log
                    .into_device()
                    .unwrap()
                    .crash(CrashMode::Random { seed })
                    .await
                    .unwrap();
                let log = vlog_common::must_open(mem, cfg()).await;
                for k in 0..4u64 {
                    for &i in &acked {
                        let e = log.entry(RangeId(k), LogIndex(i)).await.unwrap().unwrap();
                        assert_eq!(e.payload, payload(k, i, 1, 700), "seed {seed}");
                    }
                }
            }
        });
    }

    /// Records of a torn batch that lie after the hole are cut (zeroed), so they never come back.
    /// Records here are exactly 1 KiB, so four fill a block: the torn batch is entries 2..=5 with
    /// its first record broken; after recovery the range re-appends 2..=4 (a new leader's entries
    /// of the same sizes), which end exactly on the block boundary where the stale entry 5 of the
    /// torn batch starts with the very sequence number expected next. After another crash it must
    /// not reappear.
    #[test]
    fn cut_tail_records_never_resurface_after_the_log_moves_on() {
        const LEN: usize = 1024 - 24 - 32; // record header + entry header + payload = 1 KiB
        block_on(async {
            let dev = FaultyDevice::new(must_format(8));
            let log = vlog_common::must_open(dev, cfg()).await;
            let a = log.append(vec![entry(5, 1, 1, LEN)]).await.unwrap()[0];
            assert_eq!(a.record.len, 1024);
            let flushes = log.device().counts().flushes;
            log.device().schedule(Fault {
                kind: OpKind::Flush,
                nth: flushes,
                action: FaultAction::Halt,
            });
            let torn = log
                .append((2..=5).map(|i| entry(5, i, 1, LEN)).collect())
                .await;
            assert!(torn.is_err());
            let mem = log
                .into_device()
                .unwrap()
                .crash(CrashMode::KeepUnflushed)
                .await
                .unwrap();
            // Tear the batch's first record only: its later records stay valid after the hole.
            let store = nvme::SegmentStore::open(mem).await.unwrap();
            let seg_off = store
                .segment(nvme::SegmentId(a.record.segment.0))
                .unwrap()
                .offset;
            let mem = store.into_device();
            let b1 = seg_off + a.record.offset + 1024;
            mem.with_bytes_mut(|b| b[b1 as usize + 30] ^= 0xFF);
            let log = vlog_common::must_open(mem, cfg()).await;
            assert_eq!(log.bounds(RangeId(5)), Some((LogIndex(1), LogIndex(1))));
            let c = log
                .append((2..=4).map(|i| entry(5, i, 2, LEN)).collect())
                .await
                .unwrap();
            assert_eq!(
                (c[2].record.offset + 1024) % BS as u64,
                0,
                "ends on a block boundary"
            );
            let dev = FaultyDevice::new(log.into_device().unwrap());
            let mem = dev.crash(CrashMode::DropUnflushed).await.unwrap();
            let log = vlog_common::must_open(mem, cfg()).await;
            assert_eq!(log.bounds(RangeId(5)), Some((LogIndex(1), LogIndex(4))));
            assert_eq!(log.term(RangeId(5), LogIndex(4)), Some(Term(2)));
        });
    }
}
