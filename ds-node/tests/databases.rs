//! Redis databases in the range state machine (`KvOp::InDb`, `DbFlush`, `KeyCopyDb`): keys of
//! one database are invisible from the others, range-wide operations act on one database (or,
//! `RangeFlush`, on all), MOVE/COPY cross databases inside one range, and a data directory of
//! the previous release (keys `'r' | slot | len u32 | key | …`) reads as database 0.
#![allow(clippy::unwrap_used)] // a test fails by panicking

mod common;

use bytes::Bytes;
use common::store::{Db as Range, apply_ctx, whole_range};
use ds_node::range::apply::execute;
use ds_node::range::checkpoint::{self, CheckpointMeta};
use ds_node::range::dedup::{WriteId, apply_once, record_key};
use ds_node::range::store::{Entry, KvStore, ModelStore};
use net::RpcError;
use net::keyspace::{Db, db_start, meta_key, slot, slot_start};
use net::message::RangeDescriptor;
use net::message::kv::{Cond, Expiry, KvOp, KvResponse, OpResult, SetOp, TtlState, Watch};

/// The clock of every operation: a [`Range`]'s, which stands still.
const NOW: u64 = common::store::START_MS;

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

fn db(n: u8) -> Db {
    Db::new(n).unwrap()
}

fn desc(start: Bytes, end: Bytes) -> RangeDescriptor {
    RangeDescriptor {
        start,
        end,
        ..whole_range()
    }
}

fn set(k: &str, v: &str) -> KvOp {
    KvOp::StrSet {
        key: b(k),
        value: b(v),
        expiry: Expiry::Persist {},
        cond: Cond::Always {},
        get_old: false,
    }
}

fn get(k: &str) -> KvOp {
    KvOp::StrGet { key: b(k) }
}

fn sadd(k: &str, m: &[&str]) -> KvOp {
    KvOp::Set {
        op: SetOp::Add {
            key: b(k),
            members: m.iter().map(|m| b(m)).collect(),
        },
    }
}

fn members(k: &str) -> KvOp {
    KvOp::Set {
        op: SetOp::Members { key: b(k) },
    }
}

impl Range {
    /// A model store in `range`.
    fn with(range: RangeDescriptor) -> Self {
        Range {
            range,
            ..Range::new()
        }
    }

    fn run_in(&mut self, d: u8, op: KvOp) -> Result<OpResult, RpcError> {
        self.run(op.into_db(db(d)))
    }

    fn value_in(&mut self, d: u8, k: &str) -> Option<Bytes> {
        match self.run_in(d, get(k)).unwrap() {
            OpResult::Value { value } => value,
            other => panic!("{other:?}"),
        }
    }

    fn keys_in(&mut self, d: u8) -> Vec<Bytes> {
        let mut out = Vec::new();
        let mut cursor = Bytes::new();
        loop {
            let op = KvOp::KeyScan {
                cursor: cursor.clone(),
                count: 3,
                type_filter: None,
            };
            match self.run_in(d, op).unwrap() {
                OpResult::KeyScan { keys, next } => {
                    out.extend(keys);
                    match next {
                        Some(n) => cursor = n,
                        None => break,
                    }
                }
                other => panic!("{other:?}"),
            }
        }
        out.sort();
        out
    }
}

#[test]
fn the_same_key_in_two_databases_is_two_keys() {
    let mut r = Range::new();
    r.run_in(0, set("k", "zero")).unwrap();
    r.run_in(1, set("k", "one")).unwrap();
    r.run_in(15, sadd("k", &["a", "b"])).unwrap();
    assert_eq!(r.value_in(0, "k"), Some(b("zero")));
    assert_eq!(r.value_in(1, "k"), Some(b("one")));
    assert_eq!(r.run_in(15, get("k")), Err(RpcError::WrongType {}));
    assert_eq!(
        r.run_in(15, members("k")).unwrap(),
        OpResult::Bulks {
            values: vec![b("a"), b("b")]
        }
    );
    assert_eq!(r.value_in(2, "k"), None);
    r.run_in(1, KvOp::KeyDel { key: b("k") }).unwrap();
    assert_eq!(r.value_in(1, "k"), None);
    assert_eq!(r.value_in(0, "k"), Some(b("zero")));
}

#[test]
fn a_scan_lists_only_its_database_and_skips_the_others() {
    let mut r = Range::new();
    for i in 0..40 {
        r.run_in(i % 4, set(&format!("key:{i}"), "v")).unwrap();
    }
    let three: Vec<Bytes> = (0..40)
        .filter(|i| i % 4 == 3)
        .map(|i| b(&format!("key:{i}")))
        .collect();
    let mut want = three.clone();
    want.sort();
    assert_eq!(r.keys_in(3), want);
    assert!(r.keys_in(9).is_empty());
    assert_eq!(r.keys_in(0).len(), 10);
}

#[test]
fn flushdb_empties_one_database_and_flushall_every_one() {
    let mut r = Range::new();
    for d in [0, 1, 7] {
        r.run_in(d, set("a", "v")).unwrap();
        r.run_in(d, sadd("s", &["x", "y"])).unwrap();
    }
    // The set's members and metadata, and the string: 4 entries.
    assert_eq!(
        r.run_in(1, KvOp::DbFlush {}).unwrap(),
        OpResult::Int { value: 4 }
    );
    assert!(r.keys_in(1).is_empty());
    assert_eq!(r.keys_in(0), vec![b("a"), b("s")]);
    assert_eq!(r.keys_in(7), vec![b("a"), b("s")]);
    r.run_in(7, KvOp::RangeFlush {}).unwrap();
    assert!(r.store.is_empty(), "FLUSHALL in any database flushes all");
}

#[test]
fn move_takes_the_key_with_its_elements_and_expiry_unless_the_target_has_it() {
    let mut r = Range::new();
    r.run_in(0, sadd("s", &["a", "b", "c"])).unwrap();
    r.run_in(
        0,
        KvOp::KeyExpire {
            key: b("s"),
            at_ms: NOW + 60_000,
            cond: net::message::kv::ExpireCond::Always {},
        },
    )
    .unwrap();
    let mv = |to: u8| KvOp::KeyCopyDb {
        key: b("s"),
        dst: b("s"),
        dst_db: db(to),
        replace: false,
        remove: true,
    };
    assert_eq!(r.run_in(0, mv(2)).unwrap(), OpResult::Bool { value: true });
    assert!(r.keys_in(0).is_empty());
    assert_eq!(
        r.run_in(2, members("s")).unwrap(),
        OpResult::Bulks {
            values: vec![b("a"), b("b"), b("c")]
        }
    );
    assert_eq!(
        r.run_in(2, KvOp::KeyTtl { key: b("s") }).unwrap(),
        OpResult::Ttl {
            ttl: TtlState::ExpiresAt {
                at_ms: NOW + 60_000
            }
        }
    );
    // Absent here: 0. Present there: 0, nothing changes.
    assert_eq!(r.run_in(0, mv(2)).unwrap(), OpResult::Bool { value: false });
    r.run_in(0, set("s", "string")).unwrap();
    assert_eq!(r.run_in(0, mv(2)).unwrap(), OpResult::Bool { value: false });
    assert_eq!(r.value_in(0, "s"), Some(b("string")));
    // The same database: Redis's error.
    assert_eq!(
        r.run_in(2, mv(2)),
        Err(RpcError::BadRequest {
            message: "source and destination objects are the same".into()
        })
    );
    // No element of the moved set is left under database 0.
    let garbage = r
        .store
        .scan(&db_start(0, db(0)), Some(&slot_start(16384)), 1000, false)
        .into_iter()
        .filter(|(k, _)| k.get(3) == Some(&0) && k.len() > 7 + 1 + 1 + 8)
        .count();
    assert_eq!(garbage, 0);
}

#[test]
fn copy_into_another_database_keeps_the_source_and_honours_replace() {
    let mut r = Range::new();
    r.run_in(3, set("src", "v")).unwrap();
    r.run_in(4, set("dst", "old")).unwrap();
    let copy = |replace| KvOp::KeyCopyDb {
        key: b("src"),
        dst: b("dst"),
        dst_db: db(4),
        replace,
        remove: false,
    };
    assert_eq!(
        r.run_in(3, copy(false)).unwrap(),
        OpResult::Bool { value: false }
    );
    assert_eq!(
        r.run_in(3, copy(true)).unwrap(),
        OpResult::Bool { value: true }
    );
    assert_eq!(r.value_in(4, "dst"), Some(b("v")));
    assert_eq!(r.value_in(3, "src"), Some(b("v")));
}

#[test]
fn a_move_whose_target_database_is_in_another_range_is_crossslot_and_changes_nothing() {
    // A split fell between databases 1 and 2 of the key's slot.
    let k = "{t}k";
    let s = slot(k.as_bytes());
    let mut r = Range::with(desc(db_start(s, db(0)), db_start(s, db(2))));
    r.run_in(1, set(k, "v")).unwrap();
    let mv = KvOp::KeyCopyDb {
        key: b(k),
        dst: b(k),
        dst_db: db(5),
        replace: false,
        remove: true,
    };
    match r.run_in(1, mv) {
        Err(RpcError::BadRequest { message }) => assert!(message.starts_with("CROSSSLOT")),
        other => panic!("{other:?}"),
    }
    assert_eq!(r.value_in(1, k), Some(b("v")));
    // A key of database 2 is not this range's: a stale route.
    assert!(matches!(
        r.run_in(2, get(k)),
        Err(RpcError::RangeNotFound { .. })
    ));
}

#[test]
fn a_transaction_runs_each_operation_in_its_own_database_and_watches_in_its_own() {
    let mut r = Range::new();
    r.run_in(1, set("w", "watched")).unwrap();
    let digest = match r.run_in(1, KvOp::KeyDigest { key: b("w") }).unwrap() {
        OpResult::Digest { digest } => digest,
        other => panic!("{other:?}"),
    };
    // A write to `w` in database 0 does not touch the watch of `w` in database 1.
    r.run_in(0, set("w", "other")).unwrap();
    let tx = |digest| {
        KvOp::Multi {
            watches: vec![Watch {
                key: b("w"),
                digest,
            }],
            ops: vec![
                KvOp::InDb {
                    db: Db::ZERO,
                    op: Box::new(set("k", "in 0")),
                },
                set("k", "in 1"),
                set("k", "in 5").into_db(db(5)),
            ],
        }
        .into_db(db(1))
    };
    assert!(matches!(r.run(tx(digest)).unwrap(), OpResult::Multi { .. }));
    assert_eq!(r.value_in(0, "k"), Some(b("in 0")));
    assert_eq!(r.value_in(1, "k"), Some(b("in 1")));
    assert_eq!(r.value_in(5, "k"), Some(b("in 5")));
    // A write in database 1 does.
    r.run_in(1, set("w", "changed")).unwrap();
    assert_eq!(r.run(tx(digest)).unwrap(), OpResult::Aborted {});
}

#[test]
fn a_retried_write_applies_once_per_database_and_its_record_is_in_that_database() {
    let mut s = ModelStore::default();
    let range = desc(Bytes::new(), Bytes::new());
    let id = WriteId { client: 7, seq: 1 };
    let incr = KvOp::StrIncrBy {
        key: b("n"),
        delta: 1,
    }
    .into_db(db(6));
    let record = record_key(&incr, id).unwrap();
    assert_eq!(record.get(3), Some(&6), "the record is under database 6");
    for index in 1..=2 {
        let ctx = apply_ctx(&range, NOW, index);
        let r = apply_once(&mut s, Some(id), &incr, NOW, |st| execute(st, &incr, &ctx));
        assert_eq!(
            r,
            KvResponse::Ok {
                result: OpResult::Int { value: 1 }
            }
        );
    }
    assert!(s.get(&meta_key(db(6), b"n")).is_some());
    assert!(s.get(&meta_key(Db::ZERO, b"n")).is_none());
}

/// The previous release's prefix `'r' | slot u16 | len u32 | key`, byte by byte.
fn old_prefix(key: &[u8]) -> Vec<u8> {
    let mut k = vec![b'r'];
    k.extend_from_slice(&slot(key).to_be_bytes());
    k.extend_from_slice(&(key.len() as u32).to_be_bytes());
    k.extend_from_slice(key);
    k
}

#[test]
fn a_checkpoint_of_the_previous_release_reads_as_database_0() {
    // Entries as the previous release wrote them: a string, and a set of two members
    // (metadata: type 4, version 9, count 2).
    let old = |key: &[u8], tail: &[u8]| Bytes::from([&old_prefix(key)[..], tail].concat());
    let entry = |v: &[u8]| Entry {
        value: Bytes::copy_from_slice(v),
        expire_at_ms: 0,
    };
    let mut set_meta = vec![4u8];
    set_meta.extend_from_slice(&9u64.to_be_bytes());
    set_meta.extend_from_slice(&2u64.to_be_bytes());
    let member = |m: &[u8]| old(b"s", &[&b"S"[..], &9u64.to_be_bytes(), m].concat());
    let mut entries = [
        (
            old(b"greeting", b"M"),
            entry(&[&[1u8][..], b"hello"].concat()),
        ),
        (old(b"s", b"M"), entry(&set_meta)),
        (member(b"x"), entry(b"")),
        (member(b"y"), entry(b"")),
    ];
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    let range = desc(Bytes::new(), Bytes::new());
    let meta = CheckpointMeta {
        index: 10,
        term: 1,
        desc: range.clone(),
    };
    let bytes = checkpoint::encode(&meta, entries.iter().map(|(k, e)| (&k[..], e)));
    let mut r = Range::with(range);
    for (k, e) in checkpoint::decode(&bytes).unwrap().entries {
        r.store.put(k, e);
    }
    assert_eq!(r.value_in(0, "greeting"), Some(b("hello")));
    assert_eq!(
        r.run_in(0, members("s")).unwrap(),
        OpResult::Bulks {
            values: vec![b("x"), b("y")]
        }
    );
    assert_eq!(r.keys_in(0), vec![b("greeting"), b("s")]);
    assert!(r.keys_in(1).is_empty());
    assert_eq!(r.value_in(1, "greeting"), None);
}
