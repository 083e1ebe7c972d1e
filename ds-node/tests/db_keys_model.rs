//! The per-database key counts of a range (`range::db_keys`, `DBSIZE` / `INFO keyspace`)
//! stay equal to a recount of the store after every operation: random sequences of Redis
//! writes of every type and every database (SET with and without expiry, GETDEL, GETEX,
//! INCR, APPEND, DEL, EXPIRE in the past and future, PERSIST, RENAME, COPY, MOVE, COPY … DB,
//! hashes, lists, sets and STORE forms, sorted sets, bitmaps, HyperLogLogs, FLUSHDB,
//! FLUSHALL, MULTI, write dedup) and TTL sweeps, with a clock that moves so keys expire
//! between them, are applied through a `Counted` store on the model engine and on the
//! Masstree engine; after each step the counts equal `recount` of the store, both engines
//! agree, and a split at a random point divides them exactly.
#![allow(clippy::unwrap_used)] // a test fails by panicking

mod common;

use bytes::Bytes;
use common::store::{apply_ctx, whole_range};
use ds_node::range::apply::execute;
use ds_node::range::db_keys::{Counted, DbKeys, recount};
use ds_node::range::dedup::{WriteId, apply_once};
use ds_node::range::engine::MasstreeStore;
use ds_node::range::store::{KvStore, ModelStore};
use net::keyspace::{Db, meta_key};
use net::message::kv::{
    BitOp, Cond, ExpireCond, Expiry, HllOp, KvOp, ListOp, SetAlgebra, SetOp, ZSetOp,
};
use proptest::prelude::*;

/// One step of a sequence: an operation at a time offset, or a sweep.
#[derive(Debug, Clone)]
enum Step {
    /// `op` in database `db`, `advance_ms` after the previous step; with a write id when
    /// `dup` is set (applied twice: the second copy must change nothing).
    Op {
        db: u8,
        op: KvOp,
        advance_ms: u64,
        dup: bool,
    },
    /// A TTL sweep naming every key of the store.
    Sweep { advance_ms: u64 },
}

/// Few keys, all in one hash slot (so multi-key operations always apply).
fn key() -> impl Strategy<Value = Bytes> + Clone {
    prop::sample::select(vec!["{t}a", "{t}b", "{t}c", "{t}d"])
        .prop_map(|s: &str| Bytes::from_static(s.as_bytes()))
}

fn small() -> impl Strategy<Value = Bytes> + Clone {
    prop::sample::select(vec!["1", "x", "y", "2"])
        .prop_map(|s: &str| Bytes::from_static(s.as_bytes()))
}

fn expiry() -> impl Strategy<Value = Expiry> + Clone {
    prop_oneof![
        Just(Expiry::Keep {}),
        Just(Expiry::Persist {}),
        // Relative to the start clock (1_000_000): some in the past, most soon.
        (999_000u64..1_030_000).prop_map(|at_ms| Expiry::At { at_ms }),
    ]
}

fn db_n() -> impl Strategy<Value = u8> + Clone {
    0u8..3
}

fn op() -> impl Strategy<Value = KvOp> {
    let k = key();
    let leaf = prop_oneof![
        (k.clone(), small(), expiry(), 0u8..3, any::<bool>()).prop_map(
            |(key, value, expiry, c, get_old)| KvOp::StrSet {
                key,
                value,
                expiry,
                cond: [Cond::Always {}, Cond::IfAbsent {}, Cond::IfPresent {}][c as usize],
                get_old,
            }
        ),
        k.clone().prop_map(|key| KvOp::StrGetDel { key }),
        (k.clone(), expiry()).prop_map(|(key, expiry)| KvOp::StrGetEx { key, expiry }),
        k.clone().prop_map(|key| KvOp::StrIncrBy { key, delta: 1 }),
        (k.clone(), small()).prop_map(|(key, value)| KvOp::StrAppend { key, value }),
        k.clone().prop_map(|key| KvOp::KeyDel { key }),
        (k.clone(), 999_000u64..1_030_000, 0u8..6).prop_map(|(key, at_ms, c)| {
            KvOp::KeyExpire {
                key,
                at_ms,
                cond: [
                    ExpireCond::Always {},
                    ExpireCond::IfNone {},
                    ExpireCond::IfSome {},
                    ExpireCond::IfGreater {},
                    ExpireCond::IfLess {},
                    ExpireCond::IfSomeLess {},
                ][c as usize],
            }
        }),
        k.clone().prop_map(|key| KvOp::KeyPersist { key }),
        (k.clone(), k.clone(), any::<bool>()).prop_map(|(key, dst, nx)| KvOp::KeyRename {
            key,
            dst,
            nx
        }),
        (k.clone(), k.clone(), any::<bool>()).prop_map(|(key, dst, replace)| KvOp::KeyCopy {
            key,
            dst,
            replace
        }),
        (k.clone(), k.clone(), db_n(), any::<bool>(), any::<bool>()).prop_map(
            |(key, dst, d, replace, remove)| KvOp::KeyCopyDb {
                key,
                dst,
                dst_db: Db::new(d).unwrap(),
                replace,
                remove,
            }
        ),
        (k.clone(), small(), small()).prop_map(|(key, f, v)| KvOp::HSet {
            key,
            pairs: vec![(f, v)],
            only_new: false,
        }),
        (k.clone(), small()).prop_map(|(key, f)| KvOp::HDel {
            key,
            fields: vec![f],
        }),
        (k.clone(), small(), any::<bool>()).prop_map(|(key, e, left)| KvOp::List {
            op: ListOp::Push {
                key,
                elements: vec![e],
                left,
                only_existing: false,
            }
        }),
        (k.clone(), any::<bool>()).prop_map(|(key, left)| KvOp::List {
            op: ListOp::Pop {
                key,
                left,
                count: None
            }
        }),
        (k.clone(), k.clone()).prop_map(|(src, dst)| KvOp::List {
            op: ListOp::Move {
                src,
                dst,
                from_left: true,
                to_left: false
            }
        }),
        (k.clone(), small()).prop_map(|(key, m)| KvOp::Set {
            op: SetOp::Add {
                key,
                members: vec![m]
            }
        }),
        (k.clone(), small()).prop_map(|(key, m)| KvOp::Set {
            op: SetOp::Rem {
                key,
                members: vec![m]
            }
        }),
        (k.clone(), k.clone(), k.clone()).prop_map(|(key, a, b)| KvOp::Set {
            op: SetOp::Store {
                algebra: SetAlgebra::Inter {},
                key,
                keys: vec![a, b],
            }
        }),
        (k.clone(), k.clone(), small()).prop_map(|(key, dst, member)| KvOp::Set {
            op: SetOp::Move { key, dst, member }
        }),
        (k.clone(), small()).prop_map(|(key, m)| KvOp::ZSet {
            op: ZSetOp::Add {
                key,
                flags: 0,
                scores: vec![1.0],
                members: vec![m],
            }
        }),
        (k.clone(), small()).prop_map(|(key, m)| KvOp::ZSet {
            op: ZSetOp::Rem {
                key,
                members: vec![m]
            }
        }),
        (k.clone(), 0u64..20, any::<bool>()).prop_map(|(key, offset, value)| KvOp::Bits {
            op: BitOp::SetBit { key, offset, value }
        }),
        (k.clone(), small()).prop_map(|(key, e)| KvOp::Hll {
            op: HllOp::Add {
                key,
                elements: vec![e]
            }
        }),
        (k.clone(), k.clone()).prop_map(|(key, s)| KvOp::Hll {
            op: HllOp::Merge {
                key,
                sources: vec![s]
            }
        }),
    ];
    prop_oneof![
        20 => leaf.clone(),
        1 => Just(KvOp::DbFlush {}),
        1 => Just(KvOp::RangeFlush {}),
        2 => prop::collection::vec(leaf, 1..4).prop_map(|ops| KvOp::Multi {
            watches: vec![],
            ops
        }),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        9 => (db_n(), op(), 0u64..3_000, prop::bool::weighted(0.1)).prop_map(
            |(db, op, advance_ms, dup)| Step::Op { db, op, advance_ms, dup }
        ),
        1 => (0u64..5_000).prop_map(|advance_ms| Step::Sweep { advance_ms }),
    ]
}

/// A store and its counts, applied to like the shard applies committed entries.
struct Replica<S> {
    store: S,
    keys: DbKeys,
}

impl<S: KvStore> Replica<S> {
    fn apply(&mut self, step: &Step, now_ms: u64, index: u64) {
        let d = whole_range();
        match step {
            Step::Op { db, op, dup, .. } => {
                let op = op.clone().into_db(Db::new(*db).unwrap());
                let ctx = apply_ctx(&d, now_ms, index);
                let id = dup.then_some(WriteId {
                    client: 7,
                    seq: index,
                });
                for _ in 0..if *dup { 2 } else { 1 } {
                    let mut c = Counted::new(&mut self.store, &mut self.keys);
                    let _ = apply_once(&mut c, id, &op, now_ms, |s| execute(s, &op, &ctx));
                }
            }
            Step::Sweep { .. } => {
                let keys = self.store.scan_keys(b"", None, usize::MAX);
                let mut c = Counted::new(&mut self.store, &mut self.keys);
                ds_node::range::sweep::apply(&mut c, now_ms, &keys);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 192, ..ProptestConfig::default() })]

    #[test]
    fn counts_equal_a_recount_after_every_step_on_both_engines(
        steps in prop::collection::vec(step(), 1..80),
        split_at in key(),
        split_db in db_n(),
    ) {
        let mut model = Replica { store: ModelStore::default(), keys: DbKeys::default() };
        let mut tree = Replica { store: MasstreeStore::new(), keys: DbKeys::default() };
        let mut now_ms = 1_000_000u64;
        for (i, s) in steps.iter().enumerate() {
            now_ms += match s {
                Step::Op { advance_ms, .. } | Step::Sweep { advance_ms } => *advance_ms,
            };
            let index = i as u64 + 1;
            model.apply(s, now_ms, index);
            tree.apply(s, now_ms, index);
            prop_assert_eq!(model.keys, recount(&model.store, b"", b""), "step {} {:?}", i, s);
            prop_assert_eq!(tree.keys, model.keys, "step {} {:?}", i, s);
        }
        // A split at a user key: the walked right side and the rest add up to the whole.
        let mid = meta_key(Db::new(split_db).unwrap(), &split_at);
        let right = recount(&tree.store, &mid, b"");
        prop_assert_eq!(tree.keys.minus(&right), recount(&tree.store, b"", &mid));
    }
}

/// A pinned sequence that crosses every source of change once, with the counts Redis shows
/// for it (`DBSIZE` per database), so that a broken recount cannot hide a broken counter.
#[test]
fn a_known_sequence_gives_the_counts_redis_gives() {
    let mut r = Replica {
        store: ModelStore::default(),
        keys: DbKeys::default(),
    };
    let db = |n| Db::new(n).unwrap();
    let set = |k: &'static str, expiry| KvOp::StrSet {
        key: Bytes::from_static(k.as_bytes()),
        value: Bytes::from_static(b"v"),
        expiry,
        cond: Cond::Always {},
        get_old: false,
    };
    let b = |k: &'static str| Bytes::from_static(k.as_bytes());
    let steps = [
        (0, set("{t}a", Expiry::Persist {})),
        (0, set("{t}b", Expiry::At { at_ms: 1_005_000 })),
        (
            0,
            KvOp::HSet {
                key: b("{t}h"),
                pairs: vec![(b("f"), b("v"))],
                only_new: false,
            },
        ),
        (1, set("{t}a", Expiry::At { at_ms: 1_009_000 })),
        (
            0,
            KvOp::KeyCopyDb {
                key: b("{t}h"),
                dst: b("{t}h"),
                dst_db: db(1),
                replace: false,
                remove: true,
            },
        ),
        (
            1,
            KvOp::KeyRename {
                key: b("{t}a"),
                dst: b("{t}c"),
                nx: false,
            },
        ),
    ];
    for (i, (d, op)) in steps.into_iter().enumerate() {
        let step = Step::Op {
            db: d,
            op,
            advance_ms: 0,
            dup: false,
        };
        r.apply(&step, 1_000_000, i as u64 + 1);
    }
    // db 0: a (no expiry) and b (expiry); h moved out. db 1: a (expiry) renamed to c, h.
    let c0 = r.keys.get(db(0));
    let c1 = r.keys.get(db(1));
    assert_eq!((c0.keys, c0.expires), (2, 1), "{:?}", r.keys.stats());
    assert_eq!((c1.keys, c1.expires), (2, 1), "{:?}", r.keys.stats());
    assert_eq!(r.keys.stats()[0].mean_expire_at_ms, 1_005_000);
    assert_eq!(r.keys.stats()[1].mean_expire_at_ms, 1_009_000);
    // The expired key counts until the sweep deletes it, as in Redis.
    r.apply(&Step::Sweep { advance_ms: 0 }, 1_006_000, 10);
    assert_eq!((r.keys.get(db(0)).keys, r.keys.get(db(0)).expires), (1, 0));
    assert_eq!(r.keys.get(db(1)).keys, 2);
    assert_eq!(r.keys, recount(&r.store, b"", b""));
}
