//! Model test of the key index (docs/format/key-index.md §9): seeded random sequences of
//! checkpoints (puts, deletes, values with and without expiry, ranges' applied indexes),
//! compactions (by the policy and full), range forgetting and reopens, with every get and
//! every range iteration compared against a `BTreeMap` model of the checkpointed state.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod lsm_common;

use std::collections::BTreeMap;

use engines::lsm::{KeyIndex, LogIndex, RangeId};
use futures_lite::future::block_on;
use lsm_common::{Model, batch, checkpoint, close, key, must_equal, must_format, must_open, rng};
use nvme::{BlockDevice, MemDevice};
use rand::Rng;
use rand::rngs::StdRng;

/// Compares `[start, end)` of the index with the model.
async fn must_scan_equal<D: BlockDevice>(
    ix: &KeyIndex<D>,
    model: &Model,
    start: &[u8],
    end: Option<&[u8]>,
    ctx: &str,
) {
    let mut it = ix.range(start, end);
    let mut got = Vec::new();
    while let Some((k, v)) = it.next().await.unwrap() {
        got.push((k.to_vec(), v));
    }
    let want: Vec<_> = model
        .live
        .range(start.to_vec()..)
        .take_while(|(k, _)| end.is_none_or(|e| k.as_slice() < e))
        .map(|(k, v)| (k.clone(), *v))
        .collect();
    assert!(
        got == want,
        "{ctx}: range {start:?}..{end:?}: {} vs {} entries",
        got.len(),
        want.len()
    );
}

async fn must_gets_equal<D: BlockDevice>(
    ix: &KeyIndex<D>,
    model: &Model,
    rng: &mut StdRng,
    ctx: &str,
) {
    for _ in 0..200 {
        let k = key(rng.gen_range(0..6000));
        assert_eq!(
            ix.get(&k).await.unwrap(),
            model.live.get(&k).copied(),
            "{ctx}: get"
        );
    }
}

/// Runs `steps` random operations from `seed`, checking against the model throughout.
fn run_model(seed: u64, steps: usize) -> (u64, u64) {
    block_on(async {
        let mut rng = rng(seed);
        let mut ix = must_open(must_format(400)).await;
        let mut model = Model::default();
        let mut applied_at = 0u64;
        let (mut compactions, mut reopens) = (0, 0);
        for step in 0..steps {
            let ctx = format!("seed {seed} step {step}");
            match rng.gen_range(0..100) {
                0..=44 => {
                    let n = rng.gen_range(1..600);
                    let b = batch(&mut rng, n, 5000);
                    applied_at += 1;
                    let applied = vec![
                        (RangeId(rng.gen_range(1..6)), LogIndex(applied_at)),
                        (RangeId(rng.gen_range(1..6)), LogIndex(applied_at * 3)),
                    ];
                    checkpoint(&ix, &b, &applied).await.unwrap();
                    model.apply(&b, &applied);
                }
                45..=49 => {
                    // A checkpoint with nothing dirty still records applied indexes.
                    applied_at += 1;
                    let applied = [(RangeId(9), LogIndex(applied_at))];
                    checkpoint(&ix, &BTreeMap::new(), &applied).await.unwrap();
                    model.apply(&BTreeMap::new(), &applied);
                }
                50..=59 => {
                    if ix.compact().await.unwrap().is_some() {
                        compactions += 1;
                    }
                }
                60..=62 => {
                    ix.compact_all().await.unwrap();
                    compactions += 1;
                    assert!(ix.runs().len() <= 1, "{ctx}");
                    assert!(
                        ix.runs().iter().all(|r| r.tombstones == 0),
                        "{ctx}: bottom keeps no tombstones"
                    );
                }
                63..=64 => {
                    let r = RangeId(rng.gen_range(1..6));
                    ix.forget_ranges(&[r]).await.unwrap();
                    model.applied.remove(&r);
                }
                65..=72 => {
                    let dev: MemDevice = close(ix);
                    ix = must_open(dev).await;
                    reopens += 1;
                    must_equal(&ix, &model, &ctx).await;
                }
                73..=86 => must_gets_equal(&ix, &model, &mut rng, &ctx).await,
                _ => {
                    let a = key(rng.gen_range(0..5000));
                    let b = key(rng.gen_range(0..5000));
                    let (s, e) = if a <= b { (a, b) } else { (b, a) };
                    must_scan_equal(&ix, &model, &s, Some(&e), &ctx).await;
                    must_scan_equal(&ix, &model, &e, None, &ctx).await;
                }
            }
            // The policy bounds the run count whenever the caller compacts after checkpoints.
            assert!(ix.runs().len() <= 40, "{ctx}: {} runs", ix.runs().len());
        }
        must_equal(&ix, &model, &format!("seed {seed} end")).await;
        let ix = must_open(close(ix)).await;
        must_equal(&ix, &model, &format!("seed {seed} end, reopened")).await;
        (compactions, reopens)
    })
}

/// Several seeds of 300 steps each agree with the model at every step.
#[test]
fn index_matches_a_btreemap_model_through_checkpoints_compactions_and_reopens() {
    let mut total = (0, 0);
    for seed in 0..6 {
        let (c, r) = run_model(seed, 300);
        total.0 += c;
        total.1 += r;
    }
    assert!(
        total.0 > 20 && total.1 > 20,
        "compactions {}, reopens {}",
        total.0,
        total.1
    );
}

/// Gets of absent keys are answered by the bloom filters, mostly without I/O; the memory the
/// index reports covers its block indexes and filters.
#[test]
fn absent_keys_cost_no_io_and_memory_is_reported() {
    block_on(async {
        let ix = must_open(must_format(100)).await;
        assert_eq!(ix.memory_bytes(), 0);
        let mut r = rng(1);
        for _ in 0..3 {
            let b = batch(&mut r, 2000, 3000);
            checkpoint(&ix, &b, &[]).await.unwrap();
        }
        let mem = ix.memory_bytes();
        assert!(mem > 3 * 2000 * 10 / 8, "{mem} bytes");
        let before = ix.metrics();
        for n in 0..1000u64 {
            let k = format!("absent-{n}");
            assert_eq!(ix.get(k.as_bytes()).await.unwrap(), None);
        }
        let m = ix.metrics();
        let reads = m.block_reads_total - before.block_reads_total;
        let negatives = m.bloom_negatives_total - before.bloom_negatives_total;
        // 3 runs × 1000 probes at ~1 % false positives.
        assert!(negatives > 2900, "{negatives} bloom negatives");
        assert!(reads < 100, "{reads} block reads for absent keys");
        assert_eq!(m.lookups_total - before.lookups_total, 1000);
        assert_eq!(m.checkpoints_total, 3);
        assert_eq!(m.runs, 3);
        assert!(m.checkpoint_duration_ns.len() == 3);
    });
}

/// Checkpoint keys out of order, empty or over 64 KiB are refused; the index stays usable.
#[test]
fn bad_checkpoint_input_is_refused() {
    block_on(async {
        let ix = must_open(must_format(20)).await;
        let v = engines::lsm::IndexEntry::Tombstone;
        let mut w = ix.checkpoint(3).unwrap();
        assert!(ix.checkpoint(1).is_err(), "one checkpoint at a time");
        w.push(b"b", v).await.unwrap();
        assert!(w.push(b"a", v).await.is_err());
        assert!(w.push(b"b", v).await.is_err());
        assert!(w.push(b"", v).await.is_err());
        assert!(w.push(&vec![1; 64 * 1024 + 1], v).await.is_err());
        drop(w);
        let mut w = ix.checkpoint(1).unwrap();
        w.push(b"c", v).await.unwrap();
        w.finish(&[]).await.unwrap();
        assert_eq!(ix.get_entry(b"c").await.unwrap(), Some(v));
        assert_eq!(ix.get(b"c").await.unwrap(), None);
    });
}

/// A checkpoint that runs while a compaction merges older runs (their writes interleave: each
/// yields after every device write) lands newest first either way, and the result equals the
/// model; a second compaction meanwhile is refused with `Busy`.
#[test]
fn a_checkpoint_during_a_compaction_stays_newest() {
    block_on(async {
        let ix = must_open(must_format(120)).await;
        let mut r = rng(21);
        let mut model = Model::default();
        for i in 0..4 {
            let b = batch(&mut r, 3000, 4000);
            let applied = [(RangeId(1), LogIndex(i))];
            checkpoint(&ix, &b, &applied).await.unwrap();
            model.apply(&b, &applied);
        }
        let b = batch(&mut r, 3000, 4000);
        let applied = [(RangeId(1), LogIndex(10))];
        let both = futures_lite::future::zip(ix.compact_all(), async {
            futures_lite::future::yield_now().await;
            assert!(matches!(
                ix.compact().await,
                Err(engines::lsm::Error::Busy(_))
            ));
            checkpoint(&ix, &b, &applied).await
        });
        let (c, k) = both.await;
        c.unwrap().unwrap();
        k.unwrap();
        model.apply(&b, &applied);
        assert_eq!(ix.runs().len(), 2);
        must_equal(&ix, &model, "after the overlap").await;
        let ix = must_open(close(ix)).await;
        must_equal(&ix, &model, "reopened").await;
    });
}
