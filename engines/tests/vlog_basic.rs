//! Behaviour of the shard log on a healthy device: appends and reads by pointer and by
//! (range, index), group commit, Raft truncation, reopen, segment reclamation.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod vlog_common;

use engines::vlog::{
    AppendRecord, Appended, EntryRecord, Error, HardState, LogIndex, LogRecord, RangeId, Term,
    Vlog, VlogConfig,
};
use futures_lite::future::block_on;
use nvme::{BlockDevice, FaultyDevice, MemDevice};
use vlog_common::{cfg, entry, join_all, must_format, must_open, payload};

/// Named `vlog` so that `cargo test -p engines vlog` selects these tests.
mod vlog {
    use super::*;

    fn must_entry<D: BlockDevice>(
        log: &Vlog<D>,
        range: u64,
        index: u64,
    ) -> std::rc::Rc<EntryRecord> {
        block_on(log.entry(RangeId(range), LogIndex(index)))
            .unwrap()
            .unwrap_or_else(|| panic!("entry r{range}/{index} missing"))
    }

    async fn check_acked(log: &Vlog<MemDevice>, acked: &[(AppendRecord, Appended)]) {
        for (r, a) in acked {
            assert_eq!(&log.read_record(&a.record).await.unwrap(), &r.record);
            let LogRecord::Entry(e) = &r.record else {
                unreachable!()
            };
            let v = log.read_value(&a.value.unwrap()).await.unwrap();
            assert_eq!(v, e.payload[8..]);
            let got = log.entry(e.range, e.index).await.unwrap().unwrap();
            assert_eq!(&*got, e);
        }
    }

    /// Records queued with `enqueue` are committed in call order, whichever ticket is waited
    /// on first (the ready loop keeps two group commits in flight this way).
    #[test]
    fn enqueued_batches_commit_in_call_order_whatever_the_wait_order() {
        block_on(async {
            let log = must_open(must_format(16), cfg()).await;
            let a = log.enqueue(vec![entry(1, 1, 1, 100)]).unwrap();
            let b = log
                .enqueue(vec![entry(1, 2, 1, 100), entry(2, 1, 1, 50)])
                .unwrap();
            let got_b = log.wait(b).await.unwrap();
            let got_a = log.wait(a).await.unwrap();
            assert!(got_a[0].seq < got_b[0].seq);
            assert_eq!(log.bounds(RangeId(1)), Some((LogIndex(1), LogIndex(2))));
            must_entry(&log, 1, 1);
            must_entry(&log, 2, 1);
        });
    }

    /// Appended records read back identical by record pointer, value pointer and (range, index),
    /// and again after a clean reopen (which rebuilds the index by scanning).
    #[test]
    fn appended_records_read_back_by_pointer_and_index_after_reopen() {
        block_on(async {
            let log = must_open(must_format(16), cfg()).await;
            let mut acked = Vec::new();
            for i in 1..=200u64 {
                let r = entry(i % 5, i / 5 + 1, 1, (i as usize * 37) % 900 + 8);
                let a = log.append(vec![r.clone()]).await.unwrap();
                acked.push((r, a[0]));
            }
            check_acked(&log, &acked).await;
            let m = log.metrics();
            assert_eq!(m.appended_records_total, 200);
            assert!(m.cache_hits_total > 0);
            let dev = log.into_device().unwrap();
            let (log, rep) = Vlog::open(dev, vlog_common::OWNER, cfg()).await.unwrap();
            assert_eq!(rep.records, 200);
            assert!(!rep.cut);
            assert!(rep.segments > 1, "200 records span several 64 KiB segments");
            check_acked(&log, &acked).await;
            assert_eq!(log.bounds(RangeId(0)), Some((LogIndex(2), LogIndex(41))));
        });
    }

    /// Appends handed in during one executor turn share one batch: one flush for all of them.
    #[test]
    fn appends_in_one_turn_share_one_flush() {
        block_on(async {
            let log = must_open(
                must_format(16),
                VlogConfig {
                    batch_bytes_max: 60 * 1024,
                    ..cfg()
                },
            )
            .await;
            let before = log.metrics().flushes_total;
            let futs: Vec<_> = (0..100u64)
                .map(|r| log.append(vec![entry(r, 1, 1, 100)]))
                .collect();
            let res = join_all(futs).await;
            for (r, a) in res.into_iter().enumerate() {
                let a = a.unwrap();
                assert_eq!(a.len(), 1);
                assert_eq!(
                    must_entry(&log, r as u64, 1).payload,
                    payload(r as u64, 1, 1, 100)
                );
            }
            let m = log.metrics();
            assert_eq!(m.flushes_total - before, 1, "one flush for 100 appenders");
            assert_eq!(m.batch_records.max(), 100);
        });
    }

    /// Closed-loop appenders (each appends again as soon as its append returns) keep being
    /// grouped: no appender starves behind one that re-takes the commit lock, and flushes carry
    /// many records each.
    #[test]
    fn closed_loop_appenders_are_grouped_and_none_starves() {
        block_on(async {
            let log = must_open(must_format(16), cfg()).await;
            let futs: Vec<_> = (0..8u64)
                .map(|r| {
                    let log = &log;
                    async move {
                        for i in 1..=20 {
                            log.append(vec![entry(r, i, 1, 50)]).await.unwrap();
                        }
                    }
                })
                .collect();
            join_all(futs).await;
            let m = log.metrics();
            assert_eq!(m.appended_records_total, 160);
            assert!(
                m.flushes_total <= 40,
                "{} flushes for 160 records",
                m.flushes_total
            );
        });
    }

    /// A batch larger than batch-bytes-max is cut into several batches, each with its own flush,
    /// and every appender still gets its pointers in order.
    #[test]
    fn oversized_turns_are_cut_into_several_batches() {
        block_on(async {
            let log = must_open(must_format(32), cfg()).await;
            let futs: Vec<_> = (0..50u64)
                .map(|r| log.append((1..=4).map(|i| entry(r, i, 1, 500)).collect()))
                .collect();
            for (r, a) in join_all(futs).await.into_iter().enumerate() {
                let a = a.unwrap();
                assert_eq!(a.len(), 4);
                assert!(a.windows(2).all(|w| w[0].seq.0 + 1 == w[1].seq.0));
                for i in 1..=4 {
                    assert_eq!(
                        must_entry(&log, r as u64, i).payload,
                        payload(r as u64, i, 1, 500)
                    );
                }
            }
            assert!(log.metrics().flushes_total > 10);
        });
    }

    /// Raft §5.3: appending an entry at an index the range already has replaces the suffix from
    /// there; an explicit suffix truncation drops entries; compaction drops the prefix. All of it
    /// survives reopen.
    #[test]
    fn conflict_truncation_and_compaction_survive_reopen() {
        block_on(async {
            let log = must_open(must_format(16), cfg()).await;
            let r = RangeId(9);
            log.append((1..=10).map(|i| entry(9, i, 1, 50)).collect())
                .await
                .unwrap();
            // A new leader's entries conflict from index 6 on.
            log.append((6..=7).map(|i| entry(9, i, 2, 60)).collect())
                .await
                .unwrap();
            assert_eq!(log.bounds(r), Some((LogIndex(1), LogIndex(7))));
            assert_eq!(log.term(r, LogIndex(6)), Some(Term(2)));
            log.truncate_suffix(r, LogIndex(7)).await.unwrap();
            log.compact(r, LogIndex(4)).await.unwrap();
            let hs = HardState {
                term: Term(2),
                vote: 3,
                commit: LogIndex(5),
            };
            log.set_hard_state(r, hs).await.unwrap();
            let check = |log: &Vlog<MemDevice>| {
                assert_eq!(log.bounds(r), Some((LogIndex(4), LogIndex(6))));
                assert_eq!(log.term(r, LogIndex(5)), Some(Term(1)));
                assert_eq!(log.term(r, LogIndex(6)), Some(Term(2)));
                assert_eq!(log.term(r, LogIndex(3)), None);
                assert_eq!(log.term(r, LogIndex(7)), None);
                assert_eq!(log.hard_state(r), Some(hs));
            };
            check(&log);
            assert_eq!(must_entry(&log, 9, 6).payload, payload(9, 6, 2, 60));
            let log = must_open(log.into_device().unwrap(), cfg()).await;
            check(&log);
            assert_eq!(must_entry(&log, 9, 6).payload, payload(9, 6, 2, 60));
            assert_eq!(must_entry(&log, 9, 4).payload, payload(9, 4, 1, 50));
            // Appending after a compaction past the end (a snapshot) restarts the range there.
            log.compact(r, LogIndex(100)).await.unwrap();
            log.append(vec![entry(9, 100, 3, 10)]).await.unwrap();
            assert_eq!(log.bounds(r), Some((LogIndex(100), LogIndex(100))));
        });
    }

    /// Segments that no range needs are freed once Raft compacts past them; the hard states
    /// that lived in them are moved first, and everything still needed survives reopen.
    #[test]
    fn compacted_segments_are_reclaimed_and_hard_states_survive() {
        block_on(async {
            let conf = VlogConfig {
                auto_reclaim: true,
                ..cfg()
            };
            let log = must_open(must_format(8), conf).await;
            let r = RangeId(1);
            let hs = HardState {
                term: Term(1),
                vote: 1,
                commit: LogIndex(1),
            };
            log.set_hard_state(RangeId(2), hs).await.unwrap();
            // Write far more than the device holds (8 × 64 KiB) while compacting behind.
            for i in 1..=2000u64 {
                log.append(vec![entry(1, i, 1, 700)]).await.unwrap();
                if i % 50 == 0 {
                    log.compact(r, LogIndex(i - 20)).await.unwrap();
                }
            }
            let m = log.metrics();
            assert!(m.segments_freed_total > 10, "{m:?}");
            assert_eq!(log.bounds(r), Some((LogIndex(1980), LogIndex(2000))));
            assert_eq!(log.hard_state(RangeId(2)), Some(hs));
            let log = must_open(log.into_device().unwrap(), conf).await;
            assert_eq!(log.bounds(r), Some((LogIndex(1980), LogIndex(2000))));
            assert_eq!(log.hard_state(RangeId(2)), Some(hs));
            for i in 1980..=2000 {
                assert_eq!(must_entry(&log, 1, i).payload, payload(1, i, 1, 700));
            }
        });
    }

    /// `reclaim_except` frees what Raft no longer needs but stops at the first segment the
    /// caller pins (one a live value pointer points into): the demoted values in it and in
    /// every newer segment stay readable; once unpinned, the segment is freed.
    #[test]
    fn reclaim_keeps_segments_pinned_by_live_value_pointers() {
        use engines::vlog::{SegmentId, ValueSpan};
        block_on(async {
            let log = must_open(must_format(16), cfg()).await;
            for i in 1..=40u64 {
                log.append(vec![entry(1, i, 1, 700)]).await.unwrap();
            }
            let value = vec![7u8; 300];
            let demoted = log
                .append_one(AppendRecord {
                    record: LogRecord::Relocated {
                        range: RangeId(1),
                        tag: 0,
                        value: value.clone(),
                    },
                    value: Some(ValueSpan {
                        offset: 0,
                        len: 300,
                    }),
                })
                .await
                .unwrap()
                .value
                .unwrap();
            for i in 41..=300u64 {
                log.append(vec![entry(1, i, 1, 700)]).await.unwrap();
            }
            log.compact(RangeId(1), LogIndex(290)).await.unwrap();
            let unneeded = log.raft_unneeded_segments();
            assert!(unneeded.contains(&demoted.segment), "{unneeded:?}");
            let pinned = |s: SegmentId| s == demoted.segment;
            let freed = log.reclaim_except(&pinned).await.unwrap();
            let kept: Vec<SegmentId> = log.segment_usage().iter().map(|u| u.0).collect();
            assert!(
                kept.contains(&demoted.segment),
                "freed {freed}, kept {kept:?}"
            );
            assert_eq!(log.read_value(&demoted).await.unwrap(), value);
            let log = must_open(log.into_device().unwrap(), cfg()).await;
            assert_eq!(log.read_value(&demoted).await.unwrap(), value);
            assert!(log.reclaim_except(&|_| false).await.unwrap() > 0);
            let kept: Vec<SegmentId> = log.segment_usage().iter().map(|u| u.0).collect();
            assert!(!kept.contains(&demoted.segment), "{kept:?}");
        });
    }

    /// Without automatic reclamation the caller (the future value GC) releases segments; a
    /// segment Raft still needs is refused.
    #[test]
    fn manual_release_refuses_segments_raft_still_needs() {
        block_on(async {
            let log = must_open(must_format(16), cfg()).await;
            for i in 1..=300u64 {
                log.append(vec![entry(1, i, 1, 700)]).await.unwrap();
            }
            let usage = log.segment_usage();
            let (first, _, _) = usage[0];
            assert!(matches!(
                log.release_segment(first).await,
                Err(Error::SegmentInUse(_))
            ));
            assert!(log.raft_unneeded_segments().is_empty());
            log.compact(RangeId(1), LogIndex(250)).await.unwrap();
            let unneeded = log.raft_unneeded_segments();
            assert!(!unneeded.is_empty());
            for id in unneeded {
                log.release_segment(id).await.unwrap();
            }
            let log = must_open(log.into_device().unwrap(), cfg()).await;
            assert_eq!(log.bounds(RangeId(1)), Some((LogIndex(250), LogIndex(300))));
        });
    }

    /// The log fails stop: after a failed flush nothing is acknowledged, every later append
    /// fails, reads of acknowledged data still work, and a reopen recovers the acknowledged log.
    #[test]
    fn failed_flush_fails_stop_until_reopen() {
        block_on(async {
            let dev = FaultyDevice::new(must_format(16));
            let log = must_open(dev, cfg()).await;
            let a = log.append(vec![entry(1, 1, 1, 100)]).await.unwrap();
            let flushes = log.device().counts().flushes;
            log.device().schedule(nvme::Fault {
                kind: nvme::OpKind::Flush,
                nth: flushes,
                action: nvme::FaultAction::Eio,
            });
            let e = log.append(vec![entry(1, 2, 1, 100)]).await.unwrap_err();
            assert!(matches!(e, Error::Io(_)), "{e:?}");
            assert!(log.is_poisoned());
            for i in 3..6 {
                let e = log.append(vec![entry(1, i, 1, 100)]).await.unwrap_err();
                assert!(matches!(e, Error::DeviceFailed), "{e:?}");
            }
            assert!(matches!(log.sync().await, Err(Error::DeviceFailed)));
            let dev = log.into_device().unwrap();
            let mem = dev.crash(nvme::CrashMode::DropUnflushed).await.unwrap();
            let log = must_open(mem, cfg()).await;
            assert_eq!(
                log.read_record(&a[0].record).await.unwrap(),
                entry(1, 1, 1, 100).record
            );
            assert_eq!(log.bounds(RangeId(1)), Some((LogIndex(1), LogIndex(1))));
            log.append(vec![entry(1, 2, 1, 100)]).await.unwrap();
        });
    }

    /// A failed write is never retried: its batch fails and the log is poisoned.
    #[test]
    fn failed_write_fails_the_batch_and_poisons() {
        block_on(async {
            let dev = FaultyDevice::new(must_format(16));
            let log = must_open(dev, cfg()).await;
            log.append(vec![entry(1, 1, 1, 100)]).await.unwrap();
            let writes = log.device().counts().writes;
            log.device().schedule(nvme::Fault {
                kind: nvme::OpKind::Write,
                nth: writes,
                action: nvme::FaultAction::Eio,
            });
            let futs: Vec<_> = (2..6u64)
                .map(|r| log.append(vec![entry(r, 1, 1, 100)]))
                .collect();
            for r in join_all(futs).await {
                assert!(r.is_err());
            }
            let writes_after = log.device().counts().writes;
            assert!(log.append(vec![entry(1, 2, 1, 10)]).await.is_err());
            assert_eq!(
                log.device().counts().writes,
                writes_after,
                "no retry, no new write"
            );
        });
    }

    /// The entry cache stays within its budget and reads beyond it go to the device.
    #[test]
    fn entry_cache_is_bounded() {
        block_on(async {
            let log = must_open(must_format(16), cfg()).await;
            for i in 1..=400u64 {
                log.append(vec![entry(3, i, 1, 1000)]).await.unwrap();
            }
            assert!(log.cache_bytes() <= cfg().cache_bytes_max);
            let es = log
                .entries(RangeId(3), LogIndex(1), LogIndex(401), usize::MAX)
                .await
                .unwrap();
            assert_eq!(es.len(), 400);
            for (i, e) in es.iter().enumerate() {
                assert_eq!(e.payload, payload(3, i as u64 + 1, 1, 1000));
            }
            let m = log.metrics();
            assert!(m.cache_misses_total > 0 && m.cache_hits_total > 0);
        });
    }

    /// The last checkpoint marker is reported after reopen, also after the segment that held it
    /// was reclaimed (it is re-appended first, with its data unchanged).
    #[test]
    fn last_checkpoint_survives_reopen_and_reclamation() {
        block_on(async {
            let conf = VlogConfig {
                auto_reclaim: true,
                ..cfg()
            };
            let log = must_open(must_format(8), conf).await;
            log.append(vec![entry(1, 1, 1, 100)]).await.unwrap();
            let c = log.checkpoint(b"covers 1".to_vec()).await.unwrap();
            assert_eq!(log.last_checkpoint().unwrap().seq, c.seq);
            let log = must_open(log.into_device().unwrap(), conf).await;
            assert_eq!(log.last_checkpoint().unwrap().data, b"covers 1");
            for i in 2..=600u64 {
                log.append(vec![entry(1, i, 1, 700)]).await.unwrap();
                if i % 50 == 0 {
                    log.compact(RangeId(1), LogIndex(i - 10)).await.unwrap();
                }
            }
            assert!(log.metrics().segments_freed_total > 2);
            let cp = log.last_checkpoint().unwrap();
            assert_eq!(cp.data, b"covers 1");
            assert_ne!(
                cp.pointer.segment, c.record.segment,
                "moved out of a freed segment"
            );
            let log = must_open(log.into_device().unwrap(), conf).await;
            assert_eq!(log.last_checkpoint().unwrap().data, b"covers 1");
        });
    }

    /// When the store has no free segment, appends fail with `NoSpace` without poisoning the log;
    /// once Raft compacts and the segments are released, appends succeed again.
    #[test]
    fn full_log_fails_appends_with_no_space_until_segments_are_released() {
        block_on(async {
            let log = must_open(must_format(3), cfg()).await;
            let mut i = 1u64;
            let err = loop {
                match log.append(vec![entry(1, i, 1, 2000)]).await {
                    Ok(_) => i += 1,
                    Err(e) => break e,
                }
            };
            assert!(matches!(err, Error::NoSpace), "{err:?}");
            assert!(!log.is_poisoned());
            let last = i - 1;
            log.compact(RangeId(1), LogIndex(last)).await.unwrap();
            for id in log.raft_unneeded_segments() {
                log.release_segment(id).await.unwrap();
            }
            for k in 0..20 {
                log.append(vec![entry(1, last + 1 + k, 1, 2000)])
                    .await
                    .unwrap();
            }
            let log = must_open(log.into_device().unwrap(), cfg()).await;
            assert_eq!(
                log.bounds(RangeId(1)),
                Some((LogIndex(last), LogIndex(last + 20)))
            );
        });
    }

    /// `room_bytes` is what the log can still take: appends whose records fit in it succeed,
    /// it shrinks by at least what they wrote, and the append that finds it used up is the
    /// one that fails with `NoSpace` (the ready loop holds turns back on this figure).
    #[test]
    fn room_bytes_bounds_what_appends_can_still_write() {
        block_on(async {
            let log = must_open(must_format(4), cfg()).await;
            let mut i = 1u64;
            loop {
                let room = log.room_bytes();
                assert!(log.head_room_bytes() <= room);
                match log.append(vec![entry(1, i, 1, 2000)]).await {
                    Ok(_) => {
                        assert!(
                            log.room_bytes() + 2000 <= room,
                            "room {room} did not shrink"
                        );
                        i += 1;
                    }
                    Err(e) => {
                        assert!(matches!(e, Error::NoSpace), "{e:?}");
                        assert!(room < 2 * 2000 + 4096, "failed with {room} bytes of room");
                        break;
                    }
                }
            }
            assert!(i > 10, "only {i} appends");
        });
    }

    /// A hard state queued (not yet committed) when the segment holding the range's older
    /// hard state is released stays the latest: the relocated copy of the old one is
    /// written before it, not after.
    #[test]
    fn a_queued_hard_state_is_not_overridden_by_the_relocated_copy_of_an_older_one() {
        block_on(async {
            let log = must_open(must_format(8), cfg()).await;
            let old = HardState {
                term: Term(1),
                vote: 1,
                commit: LogIndex(1),
            };
            let a = log.set_hard_state(RangeId(9), old).await.unwrap();
            for i in 1..=30 {
                log.append(vec![entry(1, i, 1, 3000)]).await.unwrap();
            }
            log.compact(RangeId(1), LogIndex(31)).await.unwrap();
            let new = HardState {
                term: Term(2),
                vote: 2,
                commit: LogIndex(5),
            };
            let record = LogRecord::HardState {
                range: RangeId(9),
                state: new,
            };
            let t = log.enqueue(vec![record.into()]).unwrap();
            log.release_segment(a.record.segment).await.unwrap();
            log.wait(t).await.unwrap();
            assert_eq!(log.hard_state(RangeId(9)), Some(new));
            let log = must_open(log.into_device().unwrap(), cfg()).await;
            assert_eq!(log.hard_state(RangeId(9)), Some(new));
        });
    }

    /// Reopening with a smaller `batch-bytes-max` than the log was written with still reads
    /// every record (decoders bound records by the segment size, not by today's configuration).
    #[test]
    fn reopen_with_a_smaller_batch_limit_reads_larger_records() {
        block_on(async {
            let log = must_open(must_format(8), cfg()).await;
            for i in 1..=20u64 {
                log.append(vec![entry(2, i, 1, 6000)]).await.unwrap();
            }
            let small = VlogConfig {
                batch_bytes_max: 1024,
                ..cfg()
            };
            let (log, rep) = Vlog::open(log.into_device().unwrap(), vlog_common::OWNER, small)
                .await
                .unwrap();
            assert_eq!(rep.records, 20);
            assert_eq!(must_entry(&log, 2, 20).payload, payload(2, 20, 1, 6000));
            // A record longer than today's batch is refused, unless it is an entry: that is
            // written as fragments.
            let conf_state = LogRecord::ConfState {
                range: RangeId(2),
                data: vec![0; 2000],
            };
            assert!(matches!(
                log.append(vec![conf_state.into()]).await,
                Err(Error::InvalidArgument(_))
            ));
            log.append(vec![entry(2, 21, 1, 6000)]).await.unwrap();
            log.append(vec![entry(2, 22, 1, 500)]).await.unwrap();
            assert_eq!(log.metrics().fragmented_entries_total, 1);
            assert_eq!(must_entry(&log, 2, 21).payload, payload(2, 21, 1, 6000));
        });
    }

    /// An append dropped while it leads (after taking the commit lock, before its batch is cut)
    /// releases the lock; the next append commits and nothing hangs. Its records may still be
    /// written (they were handed in), but it is never acknowledged.
    #[test]
    fn dropped_leading_append_does_not_block_the_log() {
        block_on(async {
            let log = must_open(must_format(8), cfg()).await;
            {
                let mut a = Box::pin(log.append(vec![entry(1, 1, 1, 100)]));
                let waker = std::task::Waker::noop();
                let mut cx = std::task::Context::from_waker(waker);
                assert!(a.as_mut().poll(&mut cx).is_pending(), "leader yields once");
            }
            log.append(vec![entry(2, 1, 1, 100)]).await.unwrap();
            assert!(!log.is_poisoned());
            assert_eq!(must_entry(&log, 2, 1).payload, payload(2, 1, 1, 100));
            assert_eq!(
                log.waiting_appends(),
                0,
                "the dropped append's ticket is forgotten"
            );
        });
    }

    /// The queue of records waiting for a commit is bounded: appenders over the bound first help
    /// commit it, and everything still completes in order.
    #[test]
    fn pending_queue_is_bounded() {
        block_on(async {
            let conf = VlogConfig {
                pending_bytes_max: 4096,
                ..cfg()
            };
            let log = must_open(must_format(32), conf).await;
            let futs: Vec<_> = (0..200u64)
                .map(|r| log.append(vec![entry(r, 1, 1, 300)]))
                .collect();
            for r in join_all(futs).await {
                r.unwrap();
            }
            for r in 0..200u64 {
                assert_eq!(must_entry(&log, r, 1).payload, payload(r, 1, 1, 300));
            }
            let m = log.metrics();
            assert!(m.batch_bytes.max() <= 8 * 1024, "{}", m.batch_bytes.max());
        });
    }
}
