//! `Multi` (MULTI/EXEC), `KeyDigest` (WATCH) and `RangeFlush` (FLUSHALL) in the range state
//! machine: one test per rule.
#![allow(clippy::unwrap_used)] // a test fails by panicking

mod common;

use bytes::Bytes;
use common::store::{Db, whole_range};
use ds_node::range::store::KvStore;
use net::RpcError;
use net::keyspace::meta_key;
use net::message::RangeDescriptor;
use net::message::kv::{Cond, Expiry, KvOp, KvResponse, OpResult, Watch};

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

impl Db {
    /// A model store in range 1 from `start` to `end`.
    fn with_range(start: Bytes, end: Bytes) -> Self {
        Db {
            range: RangeDescriptor {
                start,
                end,
                ..whole_range()
            },
            ..Db::new()
        }
    }

    fn multi(&mut self, watches: Vec<Watch>, ops: Vec<KvOp>) -> Result<OpResult, RpcError> {
        self.run(KvOp::Multi { watches, ops })
    }

    fn digest(&mut self, k: &str) -> u64 {
        match self.run(KvOp::KeyDigest { key: b(k) }).unwrap() {
            OpResult::Digest { digest } => digest,
            other => panic!("digest answered {other:?}"),
        }
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

fn incr(k: &str) -> KvOp {
    KvOp::StrIncrBy {
        key: b(k),
        delta: 1,
    }
}

fn hset(k: &str, f: &str, v: &str) -> KvOp {
    KvOp::HSet {
        key: b(k),
        pairs: vec![(b(f), b(v))],
        only_new: false,
    }
}

fn ok(result: OpResult) -> KvResponse {
    KvResponse::Ok { result }
}

fn value(v: &str) -> KvResponse {
    ok(OpResult::Value { value: Some(b(v)) })
}

#[test]
fn a_multi_applies_its_ops_in_order_and_answers_each() {
    let mut db = Db::new();
    let r = db.multi(vec![], vec![set("k", "1"), incr("k"), get("k")]);
    assert_eq!(
        r,
        Ok(OpResult::Multi {
            results: vec![
                ok(OpResult::Written { written: true }),
                ok(OpResult::Int { value: 2 }),
                value("2"),
            ]
        })
    );
}

#[test]
fn an_op_that_fails_inside_a_multi_is_its_own_error_and_the_rest_still_run() {
    let mut db = Db::new();
    db.run(set("s", "text")).unwrap();
    let r = db.multi(vec![], vec![incr("s"), hset("s", "f", "v"), set("t", "x")]);
    assert_eq!(
        r,
        Ok(OpResult::Multi {
            results: vec![
                KvResponse::Err {
                    error: RpcError::NotAnInteger {}
                },
                KvResponse::Err {
                    error: RpcError::WrongType {}
                },
                ok(OpResult::Written { written: true }),
            ]
        })
    );
    assert_eq!(
        db.run(get("t")),
        Ok(OpResult::Value {
            value: Some(b("x"))
        })
    );
}

#[test]
fn a_multi_whose_keys_span_ranges_applies_nothing() {
    // The range holds "{a}..." keys' slot only: find a key of another slot.
    let inside = meta_key(net::keyspace::Db::ZERO, b"{a}x");
    let mut end = inside.to_vec();
    end.push(0xff);
    let mut db = Db::with_range(inside.clone(), Bytes::from(end));
    let r = db.multi(vec![], vec![set("{a}x", "1"), set("{b}y", "2")]);
    match r {
        Err(RpcError::BadRequest { message }) => assert!(message.starts_with("CROSSSLOT")),
        other => panic!("expected CROSSSLOT, got {other:?}"),
    }
    assert!(db.store.is_empty());
    // The first key outside the range is a stale route, retried elsewhere.
    let r = db.multi(vec![], vec![set("{b}y", "2")]);
    assert!(matches!(r, Err(RpcError::RangeNotFound { .. })), "{r:?}");
}

#[test]
fn a_multi_aborts_when_a_watched_key_changed_and_applies_when_not() {
    let mut db = Db::new();
    db.run(set("w", "1")).unwrap();
    let before = db.digest("w");
    db.run(set("w", "2")).unwrap();
    let r = db.multi(
        vec![Watch {
            key: b("w"),
            digest: before,
        }],
        vec![set("out", "x")],
    );
    assert_eq!(r, Ok(OpResult::Aborted {}));
    assert_eq!(db.run(get("out")), Ok(OpResult::Value { value: None }));
    let now = db.digest("w");
    let r = db.multi(
        vec![Watch {
            key: b("w"),
            digest: now,
        }],
        vec![set("out", "x")],
    );
    assert!(matches!(r, Ok(OpResult::Multi { .. })), "{r:?}");
}

#[test]
fn a_digest_changes_with_a_hash_field_value_and_an_expiry_and_is_zero_when_absent() {
    let mut db = Db::new();
    assert_eq!(db.digest("h"), 0);
    db.run(hset("h", "f", "1")).unwrap();
    let d1 = db.digest("h");
    assert_ne!(d1, 0);
    db.run(hset("h", "f", "2")).unwrap();
    let d2 = db.digest("h");
    assert_ne!(d1, d2);
    db.run(KvOp::KeyExpire {
        key: b("h"),
        at_ms: db.now_ms + 10,
        cond: net::message::kv::ExpireCond::Always {},
    })
    .unwrap();
    assert_ne!(db.digest("h"), d2);
    db.now_ms += 10;
    assert_eq!(db.digest("h"), 0, "an expired key digests as absent");
}

#[test]
fn a_hash_dropped_and_created_again_in_one_multi_has_only_its_new_fields() {
    let mut db = Db::new();
    let r = db.multi(
        vec![],
        vec![
            hset("h", "old", "1"),
            KvOp::KeyDel { key: b("h") },
            hset("h", "new", "2"),
            KvOp::HGetAll { key: b("h") },
        ],
    );
    let Ok(OpResult::Multi { results }) = r else {
        panic!("{r:?}");
    };
    assert_eq!(
        results[3],
        ok(OpResult::Pairs {
            pairs: vec![(b("new"), b("2"))]
        })
    );
}

#[test]
fn a_range_flush_deletes_every_key_of_the_range() {
    let mut db = Db::new();
    for i in 0..2500 {
        db.run(set(&format!("k{i}"), "v")).unwrap();
        db.run(hset(&format!("h{i}"), "f", "v")).unwrap();
    }
    assert_eq!(
        db.run(KvOp::RangeFlush {}),
        Ok(OpResult::Int { value: 7500 })
    );
    assert!(db.store.is_empty());
    assert_eq!(db.run(get("k1")), Ok(OpResult::Value { value: None }));
    // Inside a transaction, in order with the other operations.
    let r = db.multi(
        vec![],
        vec![set("a", "1"), KvOp::RangeFlush {}, set("b", "2")],
    );
    assert!(matches!(r, Ok(OpResult::Multi { .. })), "{r:?}");
    assert_eq!(db.run(get("a")), Ok(OpResult::Value { value: None }));
    assert_eq!(
        db.run(get("b")),
        Ok(OpResult::Value {
            value: Some(b("2"))
        })
    );
    assert_eq!(db.store.scan(b"", None, 10, false).len(), 1);
}
