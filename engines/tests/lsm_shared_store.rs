//! The key index and the shard log share one segment store (docs/format/key-index.md §1):
//! both allocate from one table, reopen finds each owner's segments, and neither frees the
//! other's. Also: runs a compaction retires stay readable by iterators that hold them, and are
//! freed once those are dropped.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod lsm_common;

use engines::lsm::{KeyIndex, LogIndex, RangeId, SharedStore};
use engines::vlog::{EntryRecord, LogRecord, Term, Vlog, VlogConfig};
use futures_lite::future::block_on;
use lsm_common::{MANIFEST, Model, RUNS, batch, cfg, checkpoint, must_equal, must_format, rng};
use nvme::OwnerTag;

const LOG: OwnerTag = OwnerTag(1);

fn log_cfg() -> VlogConfig {
    VlogConfig {
        batch_bytes_max: 16 * 1024,
        ..VlogConfig::default()
    }
}

fn entry(range: u64, index: u64) -> LogRecord {
    LogRecord::Entry(EntryRecord {
        range: RangeId(range),
        index: LogIndex(index),
        term: Term(1),
        entry_type: 0,
        payload: vec![index as u8; 3000],
    })
}

/// Appends and checkpoints interleave on one store; after a reopen both are intact and the
/// owners' segments are disjoint.
#[test]
fn shard_log_and_key_index_share_one_segment_store() {
    block_on(async {
        let store = SharedStore::open(must_format(80)).await.unwrap();
        let (log, _) = Vlog::open_on(store.clone(), LOG, log_cfg()).await.unwrap();
        let (ix, _) = KeyIndex::open(store.clone(), cfg()).await.unwrap();
        let mut model = Model::default();
        let mut r = rng(8);
        for i in 1..=6u64 {
            for k in 0..40 {
                log.append_one(entry(1, (i - 1) * 40 + k + 1))
                    .await
                    .unwrap();
            }
            let b = batch(&mut r, 1500, 3000);
            let applied = [(RangeId(1), LogIndex(i * 40))];
            checkpoint(&ix, &b, &applied).await.unwrap();
            model.apply(&b, &applied);
        }
        ix.compact_all().await.unwrap();
        let log_segs = store.segments_of(LOG).await.unwrap();
        let run_segs = store.segments_of(RUNS).await.unwrap();
        assert!(log_segs.len() > 2 && !run_segs.is_empty());
        drop(ix);
        drop(log);
        let dev = store.into_device().unwrap();
        let store = SharedStore::open(dev).await.unwrap();
        let (log, _) = Vlog::open_on(store.clone(), LOG, log_cfg()).await.unwrap();
        let (ix, rep) = KeyIndex::open(store.clone(), cfg()).await.unwrap();
        assert_eq!(rep.freed_segments, 0);
        assert_eq!(store.segments_of(LOG).await.unwrap(), log_segs);
        assert_eq!(store.segments_of(RUNS).await.unwrap(), run_segs);
        assert_eq!(store.segments_of(MANIFEST).await.unwrap().len(), 1);
        must_equal(&ix, &model, "reopened").await;
        let e = log.entry(RangeId(1), LogIndex(240)).await.unwrap().unwrap();
        assert_eq!(e.payload, vec![240u8; 3000]);
    });
}

/// An iterator opened before a compaction keeps reading the runs it started with; their
/// segments are freed only after it is dropped.
#[test]
fn retired_runs_stay_readable_until_their_readers_finish() {
    block_on(async {
        let store = SharedStore::open(must_format(60)).await.unwrap();
        let (ix, _) = KeyIndex::open(store.clone(), cfg()).await.unwrap();
        let mut model = Model::default();
        let mut r = rng(4);
        for i in 0..3 {
            let b = batch(&mut r, 1500, 3000);
            checkpoint(&ix, &b, &[(RangeId(2), LogIndex(i))])
                .await
                .unwrap();
            model.apply(&b, &[(RangeId(2), LogIndex(i))]);
        }
        let before = store.segments_of(RUNS).await.unwrap().len();
        let mut it = ix.range(&[], None);
        let first = it.next().await.unwrap().unwrap();
        ix.compact_all().await.unwrap();
        // Inputs are retired but still allocated: the iterator holds them.
        assert!(store.segments_of(RUNS).await.unwrap().len() > before);
        let mut got = vec![(first.0.to_vec(), first.1)];
        while let Some((k, v)) = it.next().await.unwrap() {
            got.push((k.to_vec(), v));
        }
        let want: Vec<_> = model.live.iter().map(|(k, v)| (k.clone(), *v)).collect();
        assert!(got == want, "iterator across a compaction");
        drop(it);
        let freed = ix.reclaim().await.unwrap();
        assert_eq!(freed, before);
        assert_eq!(
            store.segments_of(RUNS).await.unwrap().len(),
            ix.runs()[0].segments
        );
        must_equal(&ix, &model, "after reclaim").await;
    });
}

/// The key index and the shard log keep out of each other's last segments: the index leaves
/// its `reserve-segments` free (a checkpoint that would need them fails `NoSpace` and changes
/// nothing), a compaction whose merged run would not fit above them is deferred, not
/// started; the log leaves its own reserve to the index and takes it only while urgent.
#[test]
fn the_index_and_the_log_leave_each_other_their_reserved_segments() {
    block_on(async {
        let store = SharedStore::open(must_format(12)).await.unwrap();
        let ix_cfg = engines::lsm::LsmConfig {
            reserve_segments: 2,
            ..cfg()
        };
        let (ix, _) = KeyIndex::open(store.clone(), ix_cfg).await.unwrap();
        let mut model = Model::default();
        let mut r = rng(21);
        let mut full = false;
        for i in 1..=40u64 {
            let b = batch(&mut r, 1500, 1 << 40);
            let applied = [(RangeId(1), LogIndex(i))];
            match checkpoint(&ix, &b, &applied).await {
                Ok(()) => model.apply(&b, &applied),
                Err(engines::lsm::Error::NoSpace) => {
                    full = true;
                    break;
                }
                Err(e) => panic!("checkpoint {i}: {e}"),
            }
            assert!(
                store.free_segments() >= 2,
                "the index took the log's reserve"
            );
        }
        assert!(full, "the index never filled the store: nothing tested");
        ix.reclaim().await.unwrap();
        must_equal(&ix, &model, "after the refused checkpoint").await;
        assert!(ix.compaction_needed());
        assert_eq!(ix.compact().await.unwrap(), None, "no merged run fits");
        assert_eq!(ix.metrics().compactions_deferred_total, 1);
        assert_eq!(ix.runs().len() as u64, ix.metrics().runs);

        let log_cfg = VlogConfig {
            reserve_segments: 2,
            preallocate: false,
            ..log_cfg()
        };
        let (log, _) = Vlog::open_on(store.clone(), LOG, log_cfg).await.unwrap();
        let mut index = 0;
        let refused = loop {
            index += 1;
            match log.append_one(entry(1, index)).await {
                Ok(_) => assert!(
                    store.free_segments() >= 2,
                    "the log took the index's reserve"
                ),
                Err(e) => break e,
            }
        };
        assert!(
            matches!(refused, engines::vlog::Error::NoSpace),
            "{refused}"
        );
        assert_eq!(log.spare_segments(), 0);
        assert!(log.urgent_room_bytes() >= 2 * lsm_common::SEG);
        log.set_urgent(true);
        log.append_one(entry(1, index)).await.unwrap();
        log.set_urgent(false);
        must_equal(&ix, &model, "beside the full log").await;
    });
}
