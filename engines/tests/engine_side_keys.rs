//! Side keys (`MasstreeEngine::set_side_keys`): keys a test picks live in a second tree, and
//! the store must answer exactly as one tree would. Random writes, deletes, demotions and
//! loads run against an engine with side keys and one without; every read and walk the
//! engine offers is compared after each step. Keys share 8/16/24-byte prefixes, and side
//! keys extend ordinary keys (as ds-node's dedup records extend their Redis key's internal
//! key), so the two trees' keys interleave everywhere.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers: a panic is a test failure"
)]

use std::collections::BTreeSet;

use bytes::Bytes;
use engines::engine::masstree::{GcWalk, MasstreeEngine};
use engines::engine::{Engine, Entry};
use engines::masstree::{LogPointer, SegmentId};
use proptest::prelude::*;

/// Side keys end in `'D'` followed by one more byte (a stand-in for ds-node's dedup tag).
fn is_side(k: &[u8]) -> bool {
    k.len() >= 2 && k[k.len() - 2] == b'D'
}

const PREFIXES: [&[u8]; 4] = [
    b"",
    b"r\x00\x01\x00\x00\x00\x17u",
    b"r\x00\x01\x00\x00\x00\x17user1590",
    b"r\x00\x01\x00\x00\x00\x17user15906251315",
];

fn key() -> impl Strategy<Value = Vec<u8>> {
    (
        0..PREFIXES.len(),
        proptest::collection::vec(0u8..4, 0..4),
        any::<bool>(),
        0u8..3,
    )
        .prop_map(|(p, tail, side, n)| {
            let mut k = PREFIXES[p].to_vec();
            k.extend(tail.iter().map(|b| b"aM\x00z"[*b as usize]));
            if side {
                k.extend_from_slice(&[b'D', n]);
            }
            k
        })
}

#[derive(Debug, Clone)]
enum Op {
    Put(Vec<u8>, u8, u64),
    Delete(Vec<u8>),
    Demote(Vec<u8>),
    Load(Vec<u8>),
    Compact,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (key(), any::<u8>(), prop_oneof![Just(0u64), 1u64..100]).prop_map(|(k, v, t)| Op::Put(k, v, t)),
        3 => key().prop_map(Op::Delete),
        1 => key().prop_map(Op::Demote),
        1 => key().prop_map(Op::Load),
        1 => Just(Op::Compact),
    ]
}

fn pointer_of(v: &[u8]) -> LogPointer {
    LogPointer {
        segment: SegmentId(u32::from(v.first().copied().unwrap_or(0) % 4)),
        offset: 4096,
        len: v.len() as u32,
        checksum: crc32c::crc32c(v),
    }
}

fn apply(s: &mut MasstreeEngine, op: &Op) {
    match op {
        Op::Put(k, v, t) => {
            let value = Bytes::from(vec![*v; 1 + usize::from(*v % 40)]);
            s.put(
                Bytes::copy_from_slice(k),
                Entry {
                    value,
                    expire_at_ms: *t,
                },
            );
        }
        Op::Delete(k) => {
            s.delete(k);
        }
        Op::Demote(k) => {
            if !s.is_cold(k) {
                if let Some(e) = s.get(k) {
                    s.demote(k, &e.value, pointer_of(&e.value));
                }
            }
        }
        Op::Load(k) => {
            if let Some(p) = s.cold_pointer(k) {
                // The bytes the pointer names: rebuilt from the pointer's length and segment.
                let v = vec![0u8; p.len as usize];
                let _ = (s.load(k, p, &v), v);
            }
        }
        Op::Compact => {
            s.compact_step(64);
        }
    }
}

/// Everything the two engines answer, which must be equal.
fn compare(a: &MasstreeEngine, b: &MasstreeEngine, probes: &[Vec<u8>]) {
    assert_eq!(a.len(), b.len());
    assert_eq!(a.is_empty(), b.is_empty());
    assert_eq!(a.scan_stored(b"", b""), b.scan_stored(b"", b""));
    assert_eq!(a.cold_stats(), b.cold_stats());
    assert_eq!(a.live_bytes(), b.live_bytes());
    let victims: BTreeSet<SegmentId> = (0..4).map(SegmentId).collect();
    let all = GcWalk {
        max_items: usize::MAX,
        max_bytes: u64::MAX,
        max_visits: usize::MAX,
    };
    let (ga, gb) = (
        a.gc_items(b"", &victims, all),
        b.gc_items(b"", &victims, all),
    );
    assert_eq!(ga.0.len(), gb.0.len());
    assert!(
        ga.0.iter()
            .zip(&gb.0)
            .all(|(x, y)| x.key == y.key && x.pointer == y.pointer)
    );
    for start in probes {
        for end in probes {
            assert_eq!(a.size_of(start, end), b.size_of(start, end));
            assert_eq!(a.edge_keys(start, end), b.edge_keys(start, end));
            assert_eq!(a.middle_key(start, end), b.middle_key(start, end));
            assert_eq!(a.scan_expiry(start, end, 3), b.scan_expiry(start, end, 3));
            for (limit, reverse) in [(1, false), (3, true), (usize::MAX, true)] {
                let hot_only = |s: &MasstreeEngine| {
                    // `scan` must not reach cold entries (a prefetch bug): compare keys only.
                    s.scan_keys(start, Some(end), limit)
                };
                assert_eq!(hot_only(a), hot_only(b));
                let (mut ka, mut kb) = (Vec::new(), Vec::new());
                a.cold_in(start, end, reverse, |_| true, &mut ka);
                b.cold_in(start, end, reverse, |_| true, &mut kb);
                assert_eq!(ka, kb);
            }
        }
        assert_eq!(a.pointer(start), b.pointer(start));
        assert_eq!(a.cold_pointer(start), b.cold_pointer(start));
        if a.cold_pointer(start).is_none() {
            assert_eq!(a.get(start), b.get(start));
        }
        assert_eq!(a.expiry(start), b.expiry(start));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn an_engine_with_side_keys_answers_as_one_tree(ops in proptest::collection::vec(op(), 1..120)) {
        let mut with_side = MasstreeEngine::new();
        with_side.set_side_keys(is_side);
        let mut plain = MasstreeEngine::new();
        let mut probes: Vec<Vec<u8>> = PREFIXES.iter().map(|p| p.to_vec()).collect();
        probes.push(b"r\x00\x01\x00\x00\x00\x17user1590D\x01".to_vec());
        for op in &ops {
            apply(&mut with_side, op);
            apply(&mut plain, op);
            if let Op::Put(k, ..) | Op::Delete(k) = op {
                if probes.len() < 12 {
                    probes.push(k.clone());
                }
            }
            compare(&with_side, &plain, &probes);
        }
    }
}

#[test]
fn side_keys_do_not_open_layers_in_the_main_tree() {
    // 2,000 keys of 23 bytes, each with a record that extends it (ds-node's dedup record):
    // in one tree every record opens layers under its key; with side keys it does not.
    let keys: Vec<Vec<u8>> = (0..2000u64)
        .map(|i| format!("r\x00\x01\x00\x00\x00\x17user{:019}M", i * 7_919_000_001).into_bytes())
        .collect();
    let fill = |s: &mut MasstreeEngine| {
        for k in &keys {
            let mut rec = k[..k.len() - 1].to_vec();
            rec.extend_from_slice(b"D\x07");
            for key in [k.clone(), rec] {
                s.put(
                    Bytes::from(key),
                    Entry {
                        value: Bytes::from_static(b"OK"),
                        expire_at_ms: 0,
                    },
                );
            }
        }
    };
    let mut with_side = MasstreeEngine::new();
    with_side.set_side_keys(is_side);
    let mut plain = MasstreeEngine::new();
    fill(&mut with_side);
    fill(&mut plain);
    assert_eq!(with_side.len(), plain.len());
    let (side_bytes, plain_bytes) = (with_side.memory_bytes(), plain.memory_bytes());
    assert!(
        side_bytes * 3 < plain_bytes,
        "side keys: {side_bytes} B, one tree: {plain_bytes} B"
    );
    // Every record deleted: the side tree goes, and the store is the keys' tree alone.
    for k in &keys {
        let mut rec = k[..k.len() - 1].to_vec();
        rec.extend_from_slice(b"D\x07");
        with_side.delete(&rec);
    }
    let mut keys_only = MasstreeEngine::new();
    for k in &keys {
        keys_only.put(
            Bytes::from(k.clone()),
            Entry {
                value: Bytes::from_static(b"OK"),
                expire_at_ms: 0,
            },
        );
    }
    assert_eq!(with_side.memory_bytes(), keys_only.memory_bytes());
    assert_eq!(with_side.accounted(), keys_only.accounted());
}
