//! Crash consistency of the key index (docs/format/key-index.md §8): a seeded workload of
//! checkpoints and compactions (by the policy and full) runs on the `faulty` device, which
//! halts at a chosen flush or write; the crash drops, keeps or tears each unflushed block.
//! Reopen must succeed and the index must equal the model as of the last completed checkpoint,
//! or — when the crash hit the checkpoint in flight after its manifest copy was whole — as of
//! that checkpoint: never a half run. Segments leaked by the interrupted operation are freed at
//! open, and the index keeps working afterwards.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod lsm_common;

use std::collections::BTreeSet;

use engines::lsm::{KeyIndex, LogIndex, RangeId, SharedStore};
use futures_lite::future::block_on;
use lsm_common::{
    BS, MANIFEST, Model, RUNS, batch, cfg, checkpoint, close, must_equal, must_format, rng,
};
use nvme::{CrashMode, Fault, FaultAction, FaultyDevice, MemDevice, OpKind};
use rand::Rng;

/// How the workload ended.
struct Outcome {
    /// The device, if the store opened (else the image is unchanged).
    dev: Option<FaultyDevice<MemDevice>>,
    /// The model as of the last completed checkpoint.
    completed: Model,
    /// The model if the checkpoint in flight at the crash completed.
    inflight: Option<Model>,
    compactions: usize,
}

const ROUNDS: u64 = 9;

/// Runs the seeded workload until it ends or the device halts.
fn workload(image: &[u8], fault: Option<Fault>, seed: u64) -> Outcome {
    block_on(async {
        let dev = FaultyDevice::new(MemDevice::from_bytes(image.to_vec(), BS).unwrap());
        if let Some(f) = fault {
            dev.schedule(f);
        }
        let mut out = Outcome {
            dev: None,
            completed: Model::default(),
            inflight: None,
            compactions: 0,
        };
        let Ok(store) = SharedStore::open(dev).await else {
            return out;
        };
        let finish = |ix: Option<KeyIndex<_>>, store: SharedStore<_>| {
            drop(ix);
            Some(store.into_device().unwrap())
        };
        let ix = match KeyIndex::open(store.clone(), cfg()).await {
            Ok((ix, _)) => ix,
            Err(_) => {
                out.dev = finish(None, store);
                return out;
            }
        };
        let mut r = rng(seed);
        for round in 0..ROUNDS {
            let n = r.gen_range(100..2000);
            let b = batch(&mut r, n, 4000);
            let applied = [(RangeId(1 + round % 3), LogIndex(round + 1))];
            let mut next = out.completed.clone();
            next.apply(&b, &applied);
            if checkpoint(&ix, &b, &applied).await.is_err() {
                out.inflight = Some(next);
                out.dev = finish(Some(ix), store);
                return out;
            }
            out.completed = next;
            let c = if round == 5 {
                ix.compact_all().await
            } else {
                ix.compact().await
            };
            match c {
                Ok(Some(_)) => out.compactions += 1,
                Ok(None) => {}
                // A compaction changes no contents: the completed model stands.
                Err(_) => {
                    out.dev = finish(Some(ix), store);
                    return out;
                }
            }
        }
        out.dev = finish(Some(ix), store);
        out
    })
}

/// Reopens a crash image and checks the recovery property; then checks that no segment leaked
/// and that the index keeps working. Returns true if the in-flight checkpoint survived.
fn must_recover(mem: MemDevice, out: &Outcome, reuse: bool, ctx: &str) -> bool {
    block_on(async {
        let store = SharedStore::open(mem).await.unwrap();
        let (ix, rep) = KeyIndex::open(store.clone(), cfg())
            .await
            .unwrap_or_else(|e| panic!("{ctx}: reopen failed: {e}"));
        let survived = match &out.inflight {
            Some(m)
                if ix.applied_all() == m.applied && ix.applied_all() != out.completed.applied =>
            {
                must_equal(&ix, m, ctx).await;
                true
            }
            _ => {
                must_equal(&ix, &out.completed, ctx).await;
                false
            }
        };
        // Nothing leaked: every run segment is named; the current manifest segment and at most
        // one fallback (format doc §4, rotation) are left.
        let named: BTreeSet<u32> = ix.runs().iter().map(|r| r.segments as u32).collect();
        let owned = store.segments_of(RUNS).await.unwrap().len();
        let in_runs: usize = ix.runs().iter().map(|r| r.segments).sum();
        assert_eq!(
            owned, in_runs,
            "{ctx}: run segments leaked ({rep:?}, {named:?})"
        );
        assert!(
            store.segments_of(MANIFEST).await.unwrap().len() <= 1,
            "{ctx}"
        );
        if !reuse {
            return survived;
        }
        // The index keeps working and reopens cleanly.
        let mut model = if survived {
            out.inflight.clone().unwrap()
        } else {
            out.completed.clone()
        };
        let b = batch(&mut rng(99), 300, 4000);
        let applied = [(RangeId(50), LogIndex(7))];
        checkpoint(&ix, &b, &applied).await.unwrap();
        model.apply(&b, &applied);
        ix.compact_all().await.unwrap();
        drop(store);
        let ix = lsm_common::must_open(close(ix)).await;
        must_equal(&ix, &model, &format!("{ctx}, after reuse")).await;
        survived
    })
}

fn crash(out: &mut Outcome, image: &[u8], mode: CrashMode) -> MemDevice {
    match out.dev.take() {
        Some(d) => block_on(d.crash(mode)).unwrap(),
        None => MemDevice::from_bytes(image.to_vec(), BS).unwrap(),
    }
}

fn image() -> Vec<u8> {
    must_format(40).into_bytes()
}

/// Crash at every flush of the workload (checkpoint runs, manifests, segment-table updates,
/// compactions), with unflushed blocks dropped, kept, and torn.
#[test]
fn a_crash_at_every_flush_point_reopens_to_a_completed_checkpoint() {
    let img = image();
    let clean = workload(&img, None, 7);
    assert!(clean.inflight.is_none());
    assert!(clean.compactions >= 2, "{} compactions", clean.compactions);
    let flushes = clean.dev.as_ref().unwrap().counts().flushes;
    assert!(flushes > 30, "{flushes}");
    let mut survived = 0;
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
            let mut out = workload(&img, Some(fault), 7);
            let mem = crash(&mut out, &img, mode);
            let reuse = matches!(mode, CrashMode::Random { .. }) && nth % 3 == 0;
            let ctx = format!("flush {nth} {mode:?}");
            survived += usize::from(must_recover(mem, &out, reuse, &ctx));
        }
    }
    assert!(
        survived > 0,
        "kept unflushed manifests must show in-flight checkpoints"
    );
}

/// Crash at every write of the workload, with unflushed blocks torn or kept.
#[test]
fn a_crash_at_every_write_point_reopens_to_a_completed_checkpoint() {
    let img = image();
    let clean = workload(&img, None, 11);
    let writes = clean.dev.as_ref().unwrap().counts().writes;
    assert!(writes > 30, "{writes}");
    for nth in 0..writes {
        for mode in [CrashMode::Random { seed: nth }, CrashMode::KeepUnflushed] {
            let fault = Fault {
                kind: OpKind::Write,
                nth,
                action: FaultAction::Halt,
            };
            let mut out = workload(&img, Some(fault), 11);
            let mem = crash(&mut out, &img, mode);
            let reuse = nth % 5 == 0;
            must_recover(mem, &out, reuse, &format!("write {nth} {mode:?}"));
        }
    }
}

/// Crashing again while open frees the leaked segments still recovers.
#[test]
fn a_crash_while_open_frees_leaked_segments_is_recovered() {
    let img = image();
    let clean = workload(&img, None, 5);
    let flushes = clean.dev.as_ref().unwrap().counts().flushes;
    for nth in (5..flushes).step_by(9) {
        let fault = Fault {
            kind: OpKind::Flush,
            nth,
            action: FaultAction::Halt,
        };
        let mut out = workload(&img, Some(fault), 5);
        let bytes = crash(&mut out, &img, CrashMode::KeepUnflushed).into_bytes();
        for k in 0..4u64 {
            let dev = FaultyDevice::new(MemDevice::from_bytes(bytes.clone(), BS).unwrap());
            dev.schedule(Fault {
                kind: OpKind::Any,
                nth: 3 + k * 5,
                action: FaultAction::Halt,
            });
            let dev = block_on(async {
                let store = SharedStore::open(dev).await.ok()?;
                drop(KeyIndex::open(store.clone(), cfg()).await);
                store.into_device().ok()
            });
            let mem = match dev {
                Some(d) => block_on(d.crash(CrashMode::Random { seed: k })).unwrap(),
                None => MemDevice::from_bytes(bytes.clone(), BS).unwrap(),
            };
            must_recover(mem, &out, k == 0, &format!("open crash {nth}/{k}"));
        }
    }
}
