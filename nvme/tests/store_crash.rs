//! Crash consistency of the segment store (docs/format/nvme.md §5): the store runs on the
//! `faulty` device, which halts at a chosen operation; the crash keeps, drops or tears each
//! unflushed block; reopen must succeed and show the state before or after the operation that
//! was in flight — never a mix — and the store must keep working afterwards.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use common::{Model, Op, View, must_format, run_op, view};
use futures_lite::future::block_on;
use nvme::{CrashMode, Fault, FaultAction, FaultyDevice, MemDevice, OpKind, SegmentStore};

/// Small enough that the scripts run out of space.
const SMALL: u64 = 6;
/// Large enough that a table slot spans four 512-byte sectors, so torn writes matter.
const LARGE: u64 = 120;

/// A formatted image and its model. On a large device all but the last six segments are
/// allocated first (not crashed), so the script's updates change the table's last sector
/// while its header and checksum live in the first: a torn write mixes them.
fn must_prepare(segments: u64) -> (Vec<u8>, Model) {
    let mut model = Model::new(segments);
    let dev = must_format(segments);
    if segments == SMALL {
        return (dev.into_bytes(), model);
    }
    block_on(async {
        let mut store = SegmentStore::open(dev).await.unwrap();
        for i in 0..segments - SMALL {
            let op = Op::Alloc(1000 + i);
            assert!(model.apply(op));
            assert!(run_op(&mut store, op).await.unwrap());
        }
        assert_eq!(view(&store), model.view());
        (store.into_device().into_bytes(), model)
    })
}

fn script() -> Vec<Op> {
    use Op::*;
    vec![
        Alloc(11),
        Alloc(12),
        Alloc(13),
        Free(1),
        Alloc(14),
        Free(0),
        Alloc(15),
        Alloc(16),
        Alloc(17),
        Alloc(18),
        Alloc(19), // refused: no space
        Free(2),
        Free(3),
        Free(7), // refused: not allocated
        Alloc(20),
        Free(4),
        Free(5),
    ]
}

/// Runs `ops` on a faulty device (with `fault` scheduled) until one fails. Returns the device,
/// the model before the failing op, and the model after it (what a completed op would show).
fn run_until_failure(
    start: &Model,
    image: Vec<u8>,
    ops: &[Op],
    fault: Option<Fault>,
) -> (FaultyDevice<MemDevice>, Model, Model, bool) {
    block_on(async {
        let dev = FaultyDevice::new(MemDevice::from_bytes(image, common::BS).unwrap());
        if let Some(f) = fault {
            dev.schedule(f);
        }
        let mut model = start.clone();
        let mut store = match SegmentStore::open(dev).await {
            Ok(s) => s,
            Err(_) => unreachable!("open only reads and flushes; faults are placed after it"),
        };
        for &op in ops {
            let mut next = model.clone();
            let applies = next.apply(op);
            match run_op(&mut store, op).await {
                Ok(applied) => {
                    assert_eq!(applied, applies, "store and model disagree on {op:?}");
                    assert_eq!(view(&store), next.view());
                    model = next;
                }
                Err(_) => return (store.into_device(), model, next, true),
            }
        }
        (store.into_device(), model.clone(), model, false)
    })
}

/// Reopens a crash image and checks it shows `before` or `after`; then runs a few more ops and
/// reopens cleanly to check the store still works from whichever state it found.
fn must_recover(dev: MemDevice, before: &Model, after: &Model, ctx: &str) -> bool {
    block_on(async {
        let mut store = SegmentStore::open(dev)
            .await
            .unwrap_or_else(|e| panic!("{ctx}: reopen failed: {e}"));
        let got: View = view(&store);
        let saw_after = got == after.view() && before != after;
        let mut model = if got == before.view() {
            before.clone()
        } else if got == after.view() {
            after.clone()
        } else {
            panic!(
                "{ctx}: reopened state {got:?} is neither {:?} nor {:?}",
                before.view(),
                after.view()
            );
        };
        for op in [Op::Alloc(99), Op::Free(0), Op::Alloc(98)] {
            let applies = model.apply(op);
            assert_eq!(
                run_op(&mut store, op).await.unwrap(),
                applies,
                "{ctx}: {op:?}"
            );
        }
        let dev = store.into_device();
        let store = SegmentStore::open(dev).await.unwrap();
        assert_eq!(view(&store), model.view(), "{ctx}: after further ops");
        saw_after
    })
}

/// Crash at every flush of the scripted sequence, with unflushed blocks dropped, kept, and
/// torn by 16 seeds each.
#[test]
fn recovers_after_crash_at_every_flush_point() {
    for segments in [SMALL, LARGE] {
        crash_at_every_flush_point(segments);
    }
}

fn crash_at_every_flush_point(segments: u64) {
    let (image, start) = must_prepare(segments);
    let (dev, _, _, failed) = run_until_failure(&start, image.clone(), &script(), None);
    assert!(!failed);
    // Open issues one flush; the script's flushes follow.
    let flushes = dev.counts().flushes;
    assert!(flushes >= 12, "the script should flush once per applied op");
    let mut modes = vec![CrashMode::DropUnflushed, CrashMode::KeepUnflushed];
    modes.extend((0..16).map(|seed| CrashMode::Random { seed }));
    let mut runs = 0;
    for k in 1..flushes {
        for &mode in &modes {
            let fault = Fault {
                kind: OpKind::Flush,
                nth: k,
                action: FaultAction::Halt,
            };
            let (dev, before, after, failed) =
                run_until_failure(&start, image.clone(), &script(), Some(fault));
            assert!(failed, "flush {k} should have halted the script");
            let crashed = block_on(dev.crash(mode)).unwrap();
            let _ = must_recover(crashed, &before, &after, &format!("flush {k}, {mode:?}"));
            runs += 1;
        }
    }
    println!("crashed at {} flush points, {runs} runs", flushes - 1);
}

/// A failed flush (EIO) poisons the store; the crash image after it still reopens to the old
/// or new state.
#[test]
fn recovers_after_flush_eio_at_every_flush_point() {
    let (image, start) = must_prepare(SMALL);
    for k in 1..14 {
        let fault = Fault {
            kind: OpKind::Flush,
            nth: k,
            action: FaultAction::Eio,
        };
        let (dev, before, after, failed) =
            run_until_failure(&start, image.clone(), &script(), Some(fault));
        assert!(failed);
        assert!(dev.is_poisoned());
        let crashed = block_on(dev.crash(CrashMode::Random { seed: k })).unwrap();
        let _ = must_recover(crashed, &before, &after, &format!("flush EIO {k}"));
    }
}

/// A failed table write (EIO) poisons the store as well; the image reopens to the old or new
/// state. A failed read during open is an error, not a panic.
#[test]
fn recovers_after_write_and_read_eio() {
    let (image, start) = must_prepare(SMALL);
    for k in 0..12 {
        let fault = Fault {
            kind: OpKind::Write,
            nth: k,
            action: FaultAction::Eio,
        };
        let (dev, before, after, failed) =
            run_until_failure(&start, image.clone(), &script(), Some(fault));
        assert!(failed, "write {k} should have failed the script");
        let crashed = block_on(dev.crash(CrashMode::Random { seed: 77 + k })).unwrap();
        let _ = must_recover(crashed, &before, &after, &format!("write EIO {k}"));
    }
    for k in 0..4 {
        let dev = FaultyDevice::new(MemDevice::from_bytes(image.clone(), common::BS).unwrap());
        dev.schedule(Fault {
            kind: OpKind::Read,
            nth: k,
            action: FaultAction::Eio,
        });
        let err = block_on(SegmentStore::open(dev)).unwrap_err();
        assert!(matches!(err, nvme::Error::Io { op: "read", .. }), "{err}");
    }
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

fn random_script(rng: &mut Rng, len: usize) -> Vec<Op> {
    (0..len)
        .map(|_| {
            if rng.next() % 3 == 0 {
                Op::Free((rng.next() % (LARGE + 1)) as u32)
            } else {
                Op::Alloc(1 + rng.next() % 1000)
            }
        })
        .collect()
}

/// Returns whether the reopened store showed the new state of the interrupted op.
fn random_run(start: &Model, seed: u64, image: &[u8]) -> bool {
    let mut rng = Rng(seed);
    let ops = random_script(&mut rng, 24);
    let (dev, _, _, _) = run_until_failure(start, image.to_vec(), &ops, None);
    let total = dev.counts().total();
    // Skip open's four reads and its flush (op indexes 0..=4) so the halt lands in the script.
    let nth = 5 + rng.next() % (total - 5);
    let fault = Fault {
        kind: OpKind::Any,
        nth,
        action: FaultAction::Halt,
    };
    let (dev, before, after, _) = run_until_failure(start, image.to_vec(), &ops, Some(fault));
    let mode = match rng.next() % 4 {
        0 => CrashMode::DropUnflushed,
        1 => CrashMode::KeepUnflushed,
        _ => CrashMode::Random { seed: rng.next() },
    };
    let crashed = block_on(dev.crash(mode)).unwrap();
    must_recover(
        crashed,
        &before,
        &after,
        &format!("seed {seed}, op {nth}, {mode:?}"),
    )
}

/// Thousands of seeded runs: a random allocate/free script, halted at a random operation,
/// crashed with a random mode. Prints the base seed; set `NVME_CRASH_SEED` to replay.
#[test]
fn recovers_after_crash_at_random_points() {
    let base: u64 = std::env::var("NVME_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x7133_4b56);
    println!("base seed {base} (replay with NVME_CRASH_SEED={base})");
    for segments in [SMALL, LARGE] {
        let (image, start) = must_prepare(segments);
        let runs = 3000;
        let saw_new = (0..runs)
            .filter(|&i| random_run(&start, base.wrapping_add(i), &image))
            .count();
        println!("{segments} segments, {runs} runs: {saw_new} showed the interrupted op's result");
        // Both outcomes must occur, or the crash points are not where they should be.
        assert!(saw_new > 0 && saw_new < runs as usize);
    }
}

/// Pinned seeds kept for replay.
#[test]
fn recovers_pinned_seeds() {
    let (image, start) = must_prepare(LARGE);
    for seed in [1, 2, 3, 42, 0xdead_beef] {
        let _ = random_run(&start, seed, &image);
    }
}
