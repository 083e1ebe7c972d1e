//! Model test: random sequences of insert/replace/remove/get/scan/reverse scan/first/last/cursor
//! steps run against the Masstree and against a `BTreeMap`, compared step by step, with the
//! structural checker (`verify`, which includes the memory accounting) after every step. Keys
//! are drawn to stress the trie: shared 8/16/24-byte prefixes, lengths 0..300, binary bytes
//! including zeros, keys that are prefixes of other keys.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers: a panic is a test failure"
)]

use std::collections::BTreeMap;
use std::ops::{Bound, ControlFlow};

use engines::masstree::{Cursor, Direction, Masstree, Value};
use proptest::prelude::*;

type Model = BTreeMap<Vec<u8>, Vec<u8>>;

/// Prefixes chosen so that keys share 0, 8, 16 or 24 bytes (with zero bytes inside).
const PREFIXES: [&[u8]; 5] = [
    b"",
    b"user\x00\x00:a",
    b"user\x00\x00:abcdefgh\x00\x00\x00",
    b"user\x00\x00:abcdefgh\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00",
    b"\xff\xff\xff\xff\xff\xff\xff\xff",
];

/// Returns a key: a shared prefix, then a tail over a tiny alphabet (so keys collide, share
/// whole slices and are prefixes of each other), sometimes long.
fn key() -> impl Strategy<Value = Vec<u8>> {
    let tail = prop_oneof![
        8 => prop::collection::vec(prop::sample::select(vec![0u8, 1, b'a', 0xff]), 0..20),
        1 => prop::collection::vec(prop::sample::select(vec![0u8, b'a']), 0..300),
        1 => prop::collection::vec(any::<u8>(), 0..40),
    ];
    (0..PREFIXES.len(), tail).prop_map(|(p, mut t)| {
        let mut k = PREFIXES[p].to_vec();
        k.append(&mut t);
        k.truncate(299);
        k
    })
}

#[derive(Clone, Debug)]
enum Op {
    Insert(Vec<u8>, u8, u8),
    Remove(Vec<u8>),
    Get(Vec<u8>),
    Scan {
        from: Bound<Vec<u8>>,
        dir: Direction,
        limit: usize,
    },
    Ends,
}

fn bound() -> impl Strategy<Value = Bound<Vec<u8>>> {
    prop_oneof![
        1 => Just(Bound::Unbounded),
        3 => key().prop_map(Bound::Included),
        3 => key().prop_map(Bound::Excluded),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let dir = prop_oneof![Just(Direction::Forward), Just(Direction::Reverse)];
    prop_oneof![
        6 => (key(), any::<u8>(), 0u8..24).prop_map(|(k, v, n)| Op::Insert(k, v, n)),
        3 => key().prop_map(Op::Remove),
        2 => key().prop_map(Op::Get),
        2 => (bound(), dir, 0usize..40).prop_map(|(from, dir, limit)| Op::Scan { from, dir, limit }),
        1 => Just(Op::Ends),
    ]
}

/// Returns the value bytes for seed `v` and length `n`.
fn value(v: u8, n: u8) -> Vec<u8> {
    (0..n).map(|i| v.wrapping_add(i)).collect()
}

/// Returns what the model yields for a scan.
fn model_scan(m: &Model, from: &Bound<Vec<u8>>, dir: Direction, limit: usize) -> Vec<Vec<u8>> {
    let from = from.as_ref().map(Vec::as_slice);
    match dir {
        Direction::Forward => m
            .range::<[u8], _>((from, Bound::Unbounded))
            .take(limit)
            .map(|(k, _)| k.clone())
            .collect(),
        Direction::Reverse => m
            .range::<[u8], _>((Bound::Unbounded, from))
            .rev()
            .take(limit)
            .map(|(k, _)| k.clone())
            .collect(),
    }
}

/// Returns what the tree yields for a scan, checking each value against the model.
fn tree_scan(
    t: &Masstree,
    m: &Model,
    from: &Bound<Vec<u8>>,
    dir: Direction,
    limit: usize,
) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    t.scan(from.as_ref().map(Vec::as_slice), dir, limit, |k, e| {
        assert_eq!(e.value(), m.get(k).map(Vec::as_slice), "value of {k:?}");
        out.push(k.to_vec());
        ControlFlow::Continue(())
    });
    out
}

/// Runs `ops` on both and compares every step; `verify` after each step when `check` is set.
fn run(ops: &[Op], check: bool) {
    let mut t = Masstree::new();
    let mut m = Model::new();
    for (step, op) in ops.iter().enumerate() {
        match op {
            Op::Insert(k, v, n) => {
                let val = value(*v, *n);
                let old = t.insert(k, Value::inline(&val)).expect("key within limit");
                assert_eq!(
                    old.and_then(|o| o.inline),
                    m.insert(k.clone(), val),
                    "step {step}"
                );
            }
            Op::Remove(k) => {
                let old = t.remove(k).and_then(|o| o.inline);
                assert_eq!(old, m.remove(k), "step {step}: remove {k:?}");
            }
            Op::Get(k) => {
                let got = t.get(k).and_then(|e| e.value());
                assert_eq!(got, m.get(k).map(Vec::as_slice), "step {step}: get {k:?}");
                assert_eq!(t.contains_key(k), m.contains_key(k));
            }
            Op::Scan { from, dir, limit } => {
                let want = model_scan(&m, from, *dir, *limit);
                assert_eq!(
                    tree_scan(&t, &m, from, *dir, *limit),
                    want,
                    "step {step}: {op:?}"
                );
            }
            Op::Ends => {
                assert_eq!(t.first().map(|(k, _)| k), m.keys().next().cloned());
                assert_eq!(t.last().map(|(k, _)| k), m.keys().next_back().cloned());
            }
        }
        assert_eq!(t.len(), m.len(), "step {step}");
        if check {
            t.verify()
                .unwrap_or_else(|e| panic!("step {step} ({op:?}): {e}"));
        }
    }
    t.verify().unwrap();
    // Empty it in key order, checking the tree shrinks back to one empty border node.
    let keys: Vec<Vec<u8>> = m.keys().cloned().collect();
    for k in keys {
        assert!(t.remove(&k).is_some());
    }
    t.verify().unwrap();
    assert_eq!(t.memory_bytes(), Masstree::EMPTY_BYTES);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Short sequences, verified after every step.
    #[test]
    fn matches_btreemap_step_by_step(ops in prop::collection::vec(op(), 1..200)) {
        run(&ops, true);
    }

    /// Longer sequences (enough keys for several levels of splits), verified at the end.
    #[test]
    fn matches_btreemap_on_long_sequences(ops in prop::collection::vec(op(), 1000..3000)) {
        run(&ops, false);
    }

    /// A cursor resumed after each batch, with inserts and removes between batches, returns
    /// exactly the keys after the last one it returned, as the model holds them at that time.
    #[test]
    fn cursor_resumes_after_modifications(
        initial in prop::collection::vec(key(), 0..300),
        changes in prop::collection::vec((key(), any::<bool>()), 0..60),
        batch in 1usize..20,
        reverse in any::<bool>(),
    ) {
        let dir = if reverse { Direction::Reverse } else { Direction::Forward };
        let mut t = Masstree::new();
        let mut m = Model::new();
        for k in &initial {
            t.insert(k, Value::inline(k)).unwrap();
            m.insert(k.clone(), k.clone());
        }
        let mut cursor = Cursor::new(Bound::Unbounded, dir);
        let mut from: Bound<Vec<u8>> = Bound::Unbounded;
        let mut changes = changes.into_iter();
        loop {
            let want = model_scan(&m, &from, dir, batch);
            let mut got = Vec::new();
            cursor.next_batch(&t, batch, |k, _| got.push(k.to_vec()));
            prop_assert_eq!(&got, &want);
            if let Some(last) = got.last() {
                from = Bound::Excluded(last.clone());
            }
            if got.len() < batch {
                prop_assert!(cursor.is_done());
                break;
            }
            for (k, insert) in changes.by_ref().take(3) {
                if insert {
                    t.insert(&k, Value::inline(&k)).unwrap();
                    m.insert(k.clone(), k);
                } else {
                    t.remove(&k);
                    m.remove(&k);
                }
            }
        }
        t.verify().unwrap();
    }
}
