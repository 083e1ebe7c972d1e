//! Pipelined group commit (docs/format/shard-log.md §4–7): while batch N's flush runs, the
//! records that arrive are written as batch N+1. On the `PipeDevice` (a flush takes a few
//! executor turns and makes durable only what was written before it was issued) these tests
//! check that a record is acknowledged only once durable, in log order; that a crash at any
//! write or flush, with the device keeping any subset of the unflushed blocks of the two
//! batches in flight, recovers every acknowledged record, no torn or partial record, and is
//! never taken for mid-log corruption; and that fail-stop still holds.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod vlog_common;

use std::cell::RefCell;

use engines::vlog::{Error, LogIndex, RangeId, Vlog, VlogConfig};
use futures_lite::future::{block_on, yield_now};
use nvme::{MemDevice, SegmentStore};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use vlog_common::pipe::{BlockFate, PipeDevice, PipeFault};
use vlog_common::{BS, OWNER, SEG, cfg, entry, join_all, must_format, payload};

/// Named `vlog` so that `cargo test -p engines vlog` selects these tests.
mod vlog {
    use super::*;

    /// Executor turns a flush of the test device takes.
    const TURNS: usize = 8;
    /// Appenders (one range each) of the workload.
    const WRITERS: u64 = 5;
    /// Appends per appender.
    const APPENDS: usize = 24;

    /// One range's appends: acknowledged (index, len), and the one in flight when it failed.
    #[derive(Debug, Default, Clone)]
    struct RangeModel {
        acked: Vec<(u64, usize)>,
        inflight: Vec<(u64, usize)>,
    }

    fn image() -> Vec<u8> {
        must_format(24).into_bytes()
    }

    fn data_offset(img: &[u8]) -> u64 {
        block_on(async {
            let mem = MemDevice::from_bytes(img.to_vec(), BS).unwrap();
            SegmentStore::open(mem)
                .await
                .unwrap()
                .superblock()
                .data_offset
        })
    }

    /// Runs the seeded workload: `WRITERS` closed-loop appenders, each waiting a random number
    /// of turns before each append of 1–3 entries (some crossing blocks), so appends arrive
    /// while flushes run. Checks at every acknowledgement that the record is durable. Returns
    /// the device (`None` if the fault hit while opening) and the model.
    fn run(
        img: &[u8],
        cfg: VlogConfig,
        fault: Option<PipeFault>,
        seed: u64,
    ) -> (Option<PipeDevice>, Vec<RangeModel>) {
        let base = data_offset(img);
        block_on(async {
            let dev = PipeDevice::new(MemDevice::from_bytes(img.to_vec(), BS).unwrap(), TURNS);
            if let Some(f) = fault {
                dev.schedule(f);
            }
            let model = RefCell::new(vec![RangeModel::default(); WRITERS as usize]);
            let Ok((log, _)) = Vlog::open(dev, OWNER, cfg).await else {
                return (None, model.into_inner());
            };
            let writer = |w: u64| {
                let (log, model) = (&log, &model);
                async move {
                    let mut rng = StdRng::seed_from_u64(seed * 1000 + w);
                    let mut next = 1;
                    for _ in 0..APPENDS {
                        for _ in 0..rng.gen_range(0..6) {
                            yield_now().await;
                        }
                        let lens: Vec<usize> = (0..rng.gen_range(1..=3))
                            .map(|_| {
                                if rng.gen_bool(0.2) {
                                    rng.gen_range(2000..6000)
                                } else {
                                    rng.gen_range(8..400)
                                }
                            })
                            .collect();
                        let recs = lens
                            .iter()
                            .enumerate()
                            .map(|(i, &l)| entry(w, next + i as u64, 1, l))
                            .collect();
                        let items: Vec<(u64, usize)> = lens
                            .iter()
                            .enumerate()
                            .map(|(i, &l)| (next + i as u64, l))
                            .collect();
                        match log.append(recs).await {
                            Ok(acks) => {
                                for a in &acks {
                                    let off = base
                                        + u64::from(a.record.segment.0) * SEG
                                        + a.record.offset;
                                    assert!(
                                        log.device().is_durable(off, u64::from(a.record.len)),
                                        "seed {seed}: seq {} acknowledged before it was durable",
                                        a.seq
                                    );
                                }
                                model.borrow_mut()[w as usize].acked.extend(items);
                                next += lens.len() as u64;
                            }
                            Err(_) => {
                                model.borrow_mut()[w as usize].inflight = items;
                                return;
                            }
                        }
                    }
                }
            };
            join_all((0..WRITERS).map(writer).collect()).await;
            let dev = log.into_device().unwrap();
            (Some(dev), model.into_inner())
        })
    }

    /// Opens a crash image and checks: no error (a torn tail is never corruption), every
    /// acknowledged entry there and identical, and of the entries in flight only a prefix of
    /// whole, identical ones. With `reuse`, appends more and reopens cleanly.
    fn must_recover(mem: MemDevice, model: &[RangeModel], reuse: bool, ctx: &str) -> bool {
        block_on(async {
            let (log, rep) = Vlog::open(mem, OWNER, cfg())
                .await
                .unwrap_or_else(|e| panic!("{ctx}: reopen failed: {e}"));
            for (range, m) in model.iter().enumerate() {
                let r = RangeId(range as u64);
                let acked_last = m.acked.last().map_or(0, |(i, _)| *i);
                let max_last = m.inflight.last().map_or(acked_last, |(i, _)| *i);
                let got_last = log.bounds(r).map_or(0, |(_, l)| l.0);
                assert!(
                    got_last >= acked_last && got_last <= max_last,
                    "{ctx}: range {range}: last {got_last}, acked {acked_last}, at most \
                     {max_last} ({rep:?})"
                );
                for &(i, l) in m.acked.iter().chain(&m.inflight) {
                    if i > got_last {
                        break;
                    }
                    let e = log.entry(r, LogIndex(i)).await.unwrap().unwrap();
                    assert_eq!(
                        e.payload,
                        payload(range as u64, i, 1, l),
                        "{ctx}: r{range}/{i}"
                    );
                }
            }
            if reuse {
                for i in 1..=10 {
                    log.append(vec![entry(1000, i, 7, 300)]).await.unwrap();
                }
                let log = vlog_common::must_open(log.into_device().unwrap(), cfg()).await;
                assert_eq!(
                    log.bounds(RangeId(1000)),
                    Some((LogIndex(1), LogIndex(10))),
                    "{ctx}"
                );
            }
            rep.cut
        })
    }

    /// The fates to try for `dirty` unflushed blocks: every subset kept/lost when there are
    /// few, random subsets otherwise, and a few random tears.
    fn fates(dirty: usize, seed: u64) -> Vec<Vec<BlockFate>> {
        let mut out = Vec::new();
        if dirty <= 6 {
            for mask in 0u32..(1 << dirty) {
                out.push(
                    (0..dirty)
                        .map(|i| {
                            if mask & (1 << i) != 0 {
                                BlockFate::Kept
                            } else {
                                BlockFate::Lost
                            }
                        })
                        .collect(),
                );
            }
        }
        let mut rng = StdRng::seed_from_u64(seed);
        let random = if dirty <= 6 { 6 } else { 48 };
        for k in 0..random {
            out.push(
                (0..dirty)
                    .map(|_| match rng.gen_range(0..3) {
                        0 => BlockFate::Lost,
                        1 => BlockFate::Kept,
                        _ if k % 2 == 0 => BlockFate::Torn(rng.r#gen()),
                        _ => BlockFate::Kept,
                    })
                    .collect(),
            );
        }
        out
    }

    /// Writes really overlap flushes, and every acknowledgement found its record durable
    /// (checked inside `run`); the clean log reopens with everything.
    #[test]
    fn records_are_acknowledged_only_when_durable_while_batches_overlap() {
        let img = image();
        let (dev, model) = run(&img, cfg(), None, 1);
        let dev = dev.unwrap();
        assert!(
            dev.overlapped_writes() > 10,
            "only {} writes overlapped a flush",
            dev.overlapped_writes()
        );
        assert!(model.iter().all(|m| m.inflight.is_empty()));
        let mem = dev.crash(|_| BlockFate::Lost);
        must_recover(mem, &model, true, "clean");
    }

    /// With `pipeline-depth` 1 nothing is written while a flush runs.
    #[test]
    fn depth_one_never_writes_while_a_flush_runs() {
        let img = image();
        let conf = VlogConfig {
            pipeline_depth: 1,
            ..cfg()
        };
        let (dev, model) = run(&img, conf, None, 1);
        let dev = dev.unwrap();
        assert_eq!(dev.overlapped_writes(), 0);
        must_recover(dev.crash(|_| BlockFate::Lost), &model, false, "depth 1");
    }

    /// A crash at every flush (while the next batch is being written) and at every write,
    /// with the device keeping every subset of the unflushed blocks (and random tears),
    /// recovers every acknowledged record and never reports corruption.
    #[test]
    fn every_crash_with_two_batches_in_flight_recovers_every_acknowledged_record() {
        let img = image();
        for seed in [1u64, 2] {
            let (dev, _) = run(&img, cfg(), None, seed);
            let (writes, flushes) = dev.unwrap().counts();
            let points = (0..flushes)
                .map(PipeFault::HaltFlush)
                .chain((0..writes).map(PipeFault::HaltWrite));
            let (mut two_in_flight, mut cuts, mut images) = (0, 0, 0);
            for fault in points {
                let (dev, model) = run(&img, cfg(), Some(fault), seed);
                let Some(dev) = dev else {
                    let mem = MemDevice::from_bytes(img.clone(), BS).unwrap();
                    must_recover(mem, &model, false, &format!("{fault:?} in open"));
                    continue;
                };
                assert!(dev.is_halted(), "seed {seed}: {fault:?} never fired");
                if matches!(fault, PipeFault::HaltFlush(_)) && dev.last_flush_overlapped() {
                    two_in_flight += 1;
                }
                let dirty = dev.dirty_blocks();
                for (k, fate) in fates(dirty, seed ^ dirty as u64).into_iter().enumerate() {
                    let mem = dev.crash(|i| fate[i]);
                    let ctx = format!("seed {seed} {fault:?} fates {fate:?}");
                    cuts += usize::from(must_recover(mem, &model, k == 0, &ctx));
                    images += 1;
                }
            }
            assert!(
                two_in_flight > 5,
                "seed {seed}: {two_in_flight} crashes with two batches in flight"
            );
            assert!(
                cuts > 10,
                "seed {seed}: {cuts} of {images} images cut a torn tail"
            );
        }
    }

    /// Batch N (one record crossing a block) is flushing when batch N+1 is written into N's
    /// last block; the crash keeps N+1 and N's last block but loses N's first block. The
    /// valid record of N+1 after the hole must not be taken for evidence of a later batch:
    /// it is a torn tail, cut, and N+1 (never acknowledged) is gone.
    #[test]
    fn a_later_batch_on_the_media_without_the_flushing_one_is_a_torn_tail() {
        block_on(async {
            let dev = PipeDevice::new(must_format(8), TURNS);
            let log = vlog_common::must_open(dev, cfg()).await;
            log.append(vec![entry(1, 1, 1, 100)]).await.unwrap();
            let (_, flushes) = log.device().counts();
            log.device().schedule(PipeFault::HaltFlush(flushes));
            let n = log.append(vec![entry(1, 2, 1, 6000)]);
            let n1 = async {
                yield_now().await;
                log.append(vec![entry(2, 1, 1, 100)]).await
            };
            let (a, b) = futures_lite::future::zip(n, n1).await;
            assert!(a.is_err() && b.is_err());
            let dev = log.into_device().unwrap();
            assert!(
                dev.last_flush_overlapped(),
                "N+1 was written during N's flush"
            );
            assert_eq!(
                dev.dirty_blocks(),
                2,
                "N's two blocks, the second shared with N+1"
            );
            let mem = dev.crash(|i| {
                if i == 0 {
                    BlockFate::Lost
                } else {
                    BlockFate::Kept
                }
            });
            let (log, rep) = Vlog::open(mem, OWNER, cfg()).await.unwrap();
            assert!(rep.cut, "{rep:?}");
            assert_eq!(log.bounds(RangeId(1)), Some((LogIndex(1), LogIndex(1))));
            assert_eq!(log.bounds(RangeId(2)), None);
        });
    }

    /// Batches N and N+1 overlap; N+2 is written after both flushed. A flipped byte in N or
    /// N+1 is then `Corruption`: N+2's durable mark proves they were durable.
    #[test]
    fn a_bad_record_before_a_batch_written_after_its_flush_is_corruption() {
        let (bytes, ptrs, base) = block_on(async {
            let img = must_format(8).into_bytes();
            let base = data_offset(&img);
            let dev = PipeDevice::new(MemDevice::from_bytes(img, BS).unwrap(), TURNS);
            let log = vlog_common::must_open(dev, cfg()).await;
            // A first batch, so that N needs no segment allocation (records arriving during
            // one join N's flush).
            log.append(vec![entry(9, 1, 1, 300)]).await.unwrap();
            let before = log.device().overlapped_writes();
            let n = log.append(vec![entry(1, 1, 1, 300)]);
            let n1 = async {
                yield_now().await;
                log.append(vec![entry(2, 1, 1, 300)]).await
            };
            let (a, b) = futures_lite::future::zip(n, n1).await;
            assert_eq!(log.device().overlapped_writes(), before + 1);
            let c = log.append(vec![entry(3, 1, 1, 300)]).await.unwrap();
            let ptrs = [a.unwrap()[0], b.unwrap()[0], c[0]];
            let dev = log.into_device().unwrap();
            (dev.crash(|_| BlockFate::Kept).into_bytes(), ptrs, base)
        });
        for p in &ptrs[..2] {
            let mut b = bytes.clone();
            let at = base + u64::from(p.record.segment.0) * SEG + p.record.offset + 30;
            b[at as usize] ^= 0x40;
            let mem = MemDevice::from_bytes(b, BS).unwrap();
            match block_on(Vlog::open(mem, OWNER, cfg())) {
                Err(Error::Corruption { offset, .. }) => assert_eq!(offset, p.record.offset),
                other => panic!("seq {}: {:?}", p.seq, other.map(|(_, r)| r)),
            }
        }
    }

    /// A failed flush of batch N while N+1 was written: neither is acknowledged, the log is
    /// poisoned, and reopening recovers what was acknowledged before.
    #[test]
    fn a_failed_flush_acknowledges_neither_batch_in_flight() {
        block_on(async {
            let dev = PipeDevice::new(must_format(8), TURNS);
            let log = vlog_common::must_open(dev, cfg()).await;
            log.append(vec![entry(1, 1, 1, 100)]).await.unwrap();
            let (_, flushes) = log.device().counts();
            log.device().schedule(PipeFault::FailFlush(flushes));
            let n = log.append(vec![entry(1, 2, 1, 100)]);
            let n1 = async {
                yield_now().await;
                log.append(vec![entry(2, 1, 1, 100)]).await
            };
            let (a, b) = futures_lite::future::zip(n, n1).await;
            assert!(log.device().last_flush_overlapped());
            assert!(matches!(a, Err(Error::Io(_))), "{a:?}");
            assert!(matches!(b, Err(Error::DeviceFailed)), "{b:?}");
            assert!(log.is_poisoned());
            assert!(matches!(
                log.append(vec![entry(1, 3, 1, 100)]).await,
                Err(Error::DeviceFailed)
            ));
            let dev = log.into_device().unwrap();
            for keep in [BlockFate::Lost, BlockFate::Kept] {
                let log = vlog_common::must_open(dev.crash(|_| keep), cfg()).await;
                let (_, last) = log.bounds(RangeId(1)).unwrap();
                assert!(last.0 >= 1, "{keep:?}");
                let e = log.entry(RangeId(1), LogIndex(1)).await.unwrap().unwrap();
                assert_eq!(e.payload, payload(1, 1, 1, 100));
            }
        });
    }
}
