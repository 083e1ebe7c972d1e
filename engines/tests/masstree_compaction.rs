//! Model test of arena compaction: random bulk inserts, mass removals, single inserts and
//! removes, and bounded compaction steps run against the Masstree and a `BTreeMap`, with
//! `verify` after every step, full scans in both directions compared with the model, and the
//! check that a finished compaction leaves no reclaimable page (so the reserved pages shrink
//! after a mass removal). Keys share 8-byte slices in pairs (layer roots with owner links) and
//! long prefixes (layers whose roots are interior nodes), so every kind of link gets moved.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers: a panic is a test failure"
)]

use std::collections::BTreeMap;
use std::ops::{Bound, ControlFlow};

use engines::masstree::{CompactTrigger, Direction, Masstree, Value};
use proptest::prelude::*;

type Model = BTreeMap<Vec<u8>, Vec<u8>>;

/// Compact whenever a page can be freed (the default trigger waits for 4 pages and < 50 %).
const EAGER: CompactTrigger = CompactTrigger {
    min_reclaimable_pages: 1,
    max_live_percent: 100,
};

/// Returns key number `i` of shape `shape`.
fn key(shape: u8, i: u32) -> Vec<u8> {
    match shape % 4 {
        // Pairs share their first slice: a two-key layer per pair, owned by a layer-0 border.
        0 => format!("u{:07}:{}", i / 2, if i % 2 == 0 { "name" } else { "mail" }).into_bytes(),
        // One long shared prefix: layer 2 holds them all under an interior root.
        1 => format!("session:abcdefgh{i:08}").into_bytes(),
        // Short keys, layer 0 only.
        2 => i.to_be_bytes().to_vec(),
        // Keys that are prefixes of each other across a slice boundary.
        _ => {
            let mut k = format!("p{:07}", i / 3).into_bytes();
            k.extend(std::iter::repeat_n(b'x', (i % 3) as usize * 5));
            k
        }
    }
}

#[derive(Clone, Debug)]
enum Op {
    /// Insert `n` keys of `shape` starting at number `from`.
    Fill {
        shape: u8,
        from: u32,
        n: u32,
    },
    /// Remove every key whose hash with `seed` falls under `percent`.
    RemoveShare {
        percent: u8,
        seed: u64,
    },
    Insert(u8, u32),
    Remove(u8, u32),
    /// One compaction step of at most this many moves.
    Compact(usize),
    /// Compaction steps until done.
    CompactAll(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0u8..4, 0u32..20_000, 500u32..6_000)
            .prop_map(|(shape, from, n)| Op::Fill { shape, from, n }),
        3 => (50u8..100, any::<u64>()).prop_map(|(percent, seed)| Op::RemoveShare { percent, seed }),
        2 => (0u8..4, 0u32..30_000).prop_map(|(s, i)| Op::Insert(s, i)),
        2 => (0u8..4, 0u32..30_000).prop_map(|(s, i)| Op::Remove(s, i)),
        4 => (1usize..400).prop_map(Op::Compact),
        1 => (50usize..2_000).prop_map(Op::CompactAll),
    ]
}

fn hash(k: &[u8], seed: u64) -> u64 {
    k.iter().fold(seed ^ 0x9e37_79b9_7f4a_7c15, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn insert(t: &mut Masstree, m: &mut Model, k: Vec<u8>) {
    let v = k.iter().rev().copied().collect::<Vec<u8>>();
    t.insert(&k, Value::inline(&v)).unwrap();
    m.insert(k, v);
}

fn remove(t: &mut Masstree, m: &mut Model, k: &[u8]) {
    let got = t.remove(k).map(|e| e.inline.unwrap().to_vec());
    assert_eq!(got, m.remove(k), "remove {k:?}");
}

fn compact_all(t: &mut Masstree, budget: usize) {
    for _ in 0..1_000_000 {
        let step = t.compact_step_with(budget, &EAGER);
        assert!(
            step.moved <= budget,
            "a step moved {} > {budget}",
            step.moved
        );
        t.verify().unwrap();
        if step.done {
            assert_eq!(t.arena_stats().reclaimable_pages, 0, "done but pages left");
            return;
        }
    }
    panic!("compaction did not finish");
}

/// Checks every key and value, and full scans both ways, against the model.
fn compare(t: &Masstree, m: &Model) {
    assert_eq!(t.len(), m.len());
    for dir in [Direction::Forward, Direction::Reverse] {
        let mut keys = Vec::with_capacity(m.len());
        t.scan(Bound::Unbounded, dir, usize::MAX, |k, e| {
            assert_eq!(e.value(), m.get(k).map(Vec::as_slice), "value of {k:?}");
            keys.push(k.to_vec());
            ControlFlow::Continue(())
        });
        let want: Vec<Vec<u8>> = match dir {
            Direction::Forward => m.keys().cloned().collect(),
            Direction::Reverse => m.keys().rev().cloned().collect(),
        };
        assert!(keys == want, "{dir:?} scan differs from the model");
    }
    for k in m.keys().step_by(97) {
        assert!(t.contains_key(k), "get {k:?}");
    }
}

/// Inserts keys `from..from + n` of `shape` in a scrambled order (so borders split in the
/// middle and stay about half full, as under random writes).
fn fill(t: &mut Masstree, m: &mut Model, shape: u8, from: u32, n: u32) {
    let mut ids: Vec<u32> = (from..from + n).collect();
    ids.sort_by_key(|&i| hash(&i.to_le_bytes(), 11));
    ids.into_iter().for_each(|i| insert(t, m, key(shape, i)));
}

/// Starts from `base` (every shape, scrambled), runs `ops`, and returns the nodes moved.
fn run(base: u32, ops: &[Op]) -> u64 {
    let mut t = Masstree::new();
    let mut m = Model::new();
    for shape in 0..4 {
        fill(&mut t, &mut m, shape, 0, base);
    }
    t.verify().unwrap();
    for op in ops {
        match *op {
            Op::Fill { shape, from, n } => fill(&mut t, &mut m, shape, from, n),
            Op::RemoveShare { percent, seed } => {
                let doomed: Vec<Vec<u8>> = m
                    .keys()
                    .filter(|k| hash(k, seed) % 100 < u64::from(percent))
                    .cloned()
                    .collect();
                doomed.iter().for_each(|k| remove(&mut t, &mut m, k));
            }
            Op::Insert(s, i) => insert(&mut t, &mut m, key(s, i)),
            Op::Remove(s, i) => remove(&mut t, &mut m, &key(s, i)),
            Op::Compact(budget) => {
                let before = t.arena_stats();
                let step = t.compact_step_with(budget, &EAGER);
                assert!(step.moved <= budget);
                let after = t.arena_stats();
                assert!(after.pages <= before.pages, "a step never adds a page");
                assert_eq!(before.pages - after.pages, step.pages_released);
            }
            Op::CompactAll(budget) => compact_all(&mut t, budget),
        }
        t.verify().unwrap();
    }
    compare(&t, &m);
    compact_all(&mut t, 256);
    compare(&t, &m);
    t.arena_stats().nodes_moved_total
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Any mix of bulk inserts, mass removals and compaction steps keeps the tree equal to
    /// the model, `verify` clean, and ends with no reclaimable page.
    #[test]
    fn compaction_keeps_the_tree_equal_to_the_model(
        base in 1_000u32..6_000,
        ops in prop::collection::vec(op(), 1..14),
    ) {
        run(base, &ops);
    }
}

/// A fixed case: a mass removal, small steps, an insert between steps, then to the end.
#[test]
fn the_model_cases_do_compact() {
    let ops = [
        Op::RemoveShare {
            percent: 90,
            seed: 3,
        },
        Op::Compact(50),
        Op::Insert(0, 7),
        Op::Compact(5),
        Op::CompactAll(300),
    ];
    assert!(run(3_000, &ops) > 0);
}

/// After removing most keys of every shape, compaction releases most pages: what is left
/// reserved is what the survivors need, packed.
#[test]
fn mass_removal_then_compaction_shrinks_the_reserved_pages() {
    let mut t = Masstree::new();
    let mut m = Model::new();
    for shape in 0..4 {
        (0..12_000).for_each(|i| insert(&mut t, &mut m, key(shape, i)));
    }
    let full = t.memory_stats().reserved_bytes;
    let pages_full = t.arena_stats().pages;
    let doomed: Vec<Vec<u8>> = m
        .keys()
        .filter(|k| hash(k, 7) % 100 < 95)
        .cloned()
        .collect();
    doomed.iter().for_each(|k| remove(&mut t, &mut m, k));
    t.verify().unwrap();
    let scattered = t.arena_stats().pages;
    compact_all(&mut t, 100);
    let packed = t.arena_stats();
    assert!(
        packed.pages * 4 < scattered,
        "{scattered} pages before compaction, {} after",
        packed.pages
    );
    assert!(packed.nodes_moved_total > 0);
    let reserved = t.memory_stats().reserved_bytes;
    assert!(
        reserved * 5 < full,
        "reserved {full} B full, {reserved} B after removal and compaction ({pages_full} pages \
         before)"
    );
    compare(&t, &m);
    // The tree still grows and shrinks normally afterwards.
    for shape in 0..4 {
        (50_000..52_000).for_each(|i| insert(&mut t, &mut m, key(shape, i)));
    }
    t.verify().unwrap();
    compare(&t, &m);
}

/// Removing every key and compacting leaves one page per arena at most (the empty root).
#[test]
fn an_emptied_tree_keeps_at_most_the_root_page() {
    let mut t = Masstree::new();
    let mut m = Model::new();
    (0..40_000).for_each(|i| insert(&mut t, &mut m, key(1, i)));
    assert!(t.arena_stats().pages > 2);
    let keys: Vec<Vec<u8>> = m.keys().cloned().collect();
    keys.iter().for_each(|k| remove(&mut t, &mut m, k));
    compact_all(&mut t, 1000);
    assert_eq!(t.arena_stats().pages, 1, "the root border's page");
    assert!(t.is_empty());
    insert(&mut t, &mut m, b"again".to_vec());
    t.verify().unwrap();
    compare(&t, &m);
}
