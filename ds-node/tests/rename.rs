//! `KeyRename` (RENAME, RENAMENX) and `KeyCopy` (COPY) in the range state machine.
#![allow(clippy::unwrap_used)] // a test fails by panicking

mod common;

use bytes::Bytes;
use common::store::Db;
use net::RpcError;
use net::message::kv::{Cond, Expiry, KvOp, KvResponse, OpResult, TtlState};

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

impl Db {
    fn hset(&mut self, k: &str, f: &str, v: &str) -> KvOp {
        KvOp::HSet {
            key: b(k),
            pairs: vec![(b(f), b(v))],
            only_new: false,
        }
    }

    fn fields(&mut self, k: &str) -> Vec<(Bytes, Bytes)> {
        match self.run(KvOp::HGetAll { key: b(k) }).unwrap() {
            OpResult::Pairs { pairs } => pairs,
            other => panic!("{other:?}"),
        }
    }
}

fn rename(k: &str, dst: &str, nx: bool) -> KvOp {
    KvOp::KeyRename {
        key: b(k),
        dst: b(dst),
        nx,
    }
}

fn copy(k: &str, dst: &str, replace: bool) -> KvOp {
    KvOp::KeyCopy {
        key: b(k),
        dst: b(dst),
        replace,
    }
}

#[test]
fn rename_moves_a_hash_with_its_expiry_and_leaves_no_entry_behind() {
    let mut db = Db::new();
    for i in 0..600 {
        let op = db.hset("h", &format!("f{i:03}"), &format!("v{i}"));
        db.run(op).unwrap();
    }
    db.run(KvOp::KeyExpire {
        key: b("h"),
        at_ms: 5_000_000,
        cond: net::message::kv::ExpireCond::Always {},
    })
    .unwrap();
    let before = db.fields("h");
    let entries = db.store.len();
    assert_eq!(db.run(rename("h", "g", false)), Ok(OpResult::Unit {}));
    assert_eq!(db.fields("g"), before);
    assert!(db.fields("h").is_empty());
    assert_eq!(db.store.len(), entries, "the source's fields were deleted");
    assert_eq!(
        db.run(KvOp::KeyTtl { key: b("g") }),
        Ok(OpResult::Ttl {
            ttl: TtlState::ExpiresAt { at_ms: 5_000_000 }
        })
    );
}

#[test]
fn rename_of_a_missing_key_is_an_error_and_renamenx_keeps_an_existing_destination() {
    let mut db = Db::new();
    assert_eq!(
        db.run(rename("nokey", "x", false)),
        Err(RpcError::BadRequest {
            message: "no such key".into()
        })
    );
    let set = |k: &str, v: &str| KvOp::StrSet {
        key: b(k),
        value: b(v),
        expiry: Expiry::Persist {},
        cond: Cond::Always {},
        get_old: false,
    };
    db.run(set("a", "1")).unwrap();
    db.run(set("b", "2")).unwrap();
    assert_eq!(
        db.run(rename("a", "b", true)),
        Ok(OpResult::Bool { value: false })
    );
    assert_eq!(
        db.run(rename("a", "a", true)),
        Ok(OpResult::Bool { value: false })
    );
    assert_eq!(db.run(rename("a", "a", false)), Ok(OpResult::Unit {}));
    assert_eq!(
        db.run(rename("a", "c", true)),
        Ok(OpResult::Bool { value: true })
    );
    assert_eq!(
        db.run(KvOp::StrGet { key: b("c") }),
        Ok(OpResult::Value {
            value: Some(b("1"))
        })
    );
}

#[test]
fn copy_duplicates_a_hash_under_a_new_version_and_replace_overwrites_another_type() {
    let mut db = Db::new();
    let op = db.hset("h", "f", "v");
    db.run(op).unwrap();
    db.run(KvOp::StrSet {
        key: b("s"),
        value: b("x"),
        expiry: Expiry::Persist {},
        cond: Cond::Always {},
        get_old: false,
    })
    .unwrap();
    assert_eq!(
        db.run(copy("h", "s", false)),
        Ok(OpResult::Bool { value: false })
    );
    assert_eq!(
        db.run(copy("h", "s", true)),
        Ok(OpResult::Bool { value: true })
    );
    assert_eq!(db.fields("s"), vec![(b("f"), b("v"))]);
    // The copy is independent of the source.
    let op = db.hset("h", "g", "w");
    db.run(op).unwrap();
    assert_eq!(db.fields("s"), vec![(b("f"), b("v"))]);
    assert_eq!(
        db.run(copy("nokey", "z", false)),
        Ok(OpResult::Bool { value: false })
    );
    assert!(matches!(
        db.run(copy("h", "h", true)),
        Err(RpcError::BadRequest { .. })
    ));
}

#[test]
fn rename_onto_a_hash_created_in_the_same_multi_does_not_mix_their_fields() {
    let mut db = Db::new();
    let op = db.hset("{t}src", "a", "1");
    db.run(op).unwrap();
    let create_dst = db.hset("{t}dst", "stale", "x");
    let res = db.run(KvOp::Multi {
        watches: vec![],
        ops: vec![create_dst, rename("{t}src", "{t}dst", false)],
    });
    let Ok(OpResult::Multi { results }) = res else {
        panic!("{res:?}");
    };
    assert!(
        results.iter().all(|r| matches!(r, KvResponse::Ok { .. })),
        "{results:?}"
    );
    assert_eq!(db.fields("{t}dst"), vec![(b("a"), b("1"))]);
}

#[test]
fn a_destination_outside_the_range_is_a_crossslot_error_and_changes_nothing() {
    let mut db = Db::new();
    let op = db.hset("a", "f", "v");
    db.run(op).unwrap();
    let a_meta = net::keyspace::meta_key(net::keyspace::Db::ZERO, b"a");
    let b_meta = net::keyspace::meta_key(net::keyspace::Db::ZERO, b"b");
    // A range holding "a" but not "b".
    if a_meta < b_meta {
        db.range.end = b_meta.clone();
    } else {
        db.range.start = a_meta.clone();
    }
    assert!(db.range.contains(&a_meta) && !db.range.contains(&b_meta));
    let entries = db.store.len();
    match db.run(rename("a", "b", false)) {
        Err(RpcError::BadRequest { message }) => {
            assert!(message.starts_with("CROSSSLOT"), "{message}")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(db.store.len(), entries);
}
