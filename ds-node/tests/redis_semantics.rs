//! The range state machine's Redis operations against Redis 7's documented behaviour, one
//! test per rule, and a model test of random command sequences against a plain model of
//! strings and hashes with expiry.
#![allow(clippy::unwrap_used)] // a test fails by panicking

mod common;

use std::collections::BTreeMap;

use bytes::Bytes;
use common::store::Db;
use ds_node::range::store::{KvStore, ModelStore};
use net::message::kv::{Cond, ExpireCond, Expiry, KeyType, KvOp, OpResult, TtlState};
use net::{RangeId, RpcError};
use proptest::prelude::*;

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

impl Db {
    fn must(&mut self, op: KvOp) -> OpResult {
        self.run(op).unwrap()
    }

    fn set(&mut self, k: &str, v: &str) {
        self.must(KvOp::StrSet {
            key: b(k),
            value: b(v),
            expiry: Expiry::Persist {},
            cond: Cond::Always {},
            get_old: false,
        });
    }

    fn get(&mut self, k: &str) -> Option<Bytes> {
        match self.must(KvOp::StrGet { key: b(k) }) {
            OpResult::Value { value } => value,
            other => panic!("GET answered {other:?}"),
        }
    }

    fn hset(&mut self, k: &str, pairs: &[(&str, &str)]) -> i64 {
        let pairs = pairs.iter().map(|(f, v)| (b(f), b(v))).collect();
        int(self.must(KvOp::HSet {
            key: b(k),
            pairs,
            only_new: false,
        }))
    }
}

fn int(r: OpResult) -> i64 {
    match r {
        OpResult::Int { value } => value,
        other => panic!("expected an integer, got {other:?}"),
    }
}

#[test]
fn set_nx_xx_and_get_option_follow_redis() {
    let mut db = Db::new();
    let set = |cond, get_old| KvOp::StrSet {
        key: b("k"),
        value: b("v2"),
        expiry: Expiry::Persist {},
        cond,
        get_old,
    };
    assert_eq!(
        db.must(set(Cond::IfPresent {}, false)),
        OpResult::Written { written: false }
    );
    db.set("k", "v1");
    assert_eq!(
        db.must(set(Cond::IfAbsent {}, false)),
        OpResult::Written { written: false }
    );
    // NX with GET returns the old value and does not write (Redis 7).
    assert_eq!(
        db.must(set(Cond::IfAbsent {}, true)),
        OpResult::Value {
            value: Some(b("v1"))
        }
    );
    assert_eq!(db.get("k"), Some(b("v1")));
    assert_eq!(
        db.must(set(Cond::IfPresent {}, true)),
        OpResult::Value {
            value: Some(b("v1"))
        }
    );
    assert_eq!(db.get("k"), Some(b("v2")));
}

#[test]
fn wrong_type_is_refused_and_set_overwrites_any_type() {
    let mut db = Db::new();
    db.hset("h", &[("f", "1")]);
    assert_eq!(
        db.run(KvOp::StrGet { key: b("h") }),
        Err(RpcError::WrongType {})
    );
    assert_eq!(
        db.run(KvOp::StrAppend {
            key: b("h"),
            value: b("x")
        }),
        Err(RpcError::WrongType {})
    );
    db.set("s", "x");
    assert_eq!(
        db.run(KvOp::HGet {
            key: b("s"),
            field: b("f")
        }),
        Err(RpcError::WrongType {})
    );
    db.set("h", "now a string");
    assert_eq!(db.get("h"), Some(b("now a string")));
    // A new hash under the same key must not see the old version's fields.
    db.must(KvOp::KeyDel { key: b("h") });
    assert_eq!(db.hset("h", &[("g", "2")]), 1);
    assert_eq!(
        db.must(KvOp::HLen { key: b("h") }),
        OpResult::Int { value: 1 }
    );
    assert_eq!(
        db.must(KvOp::HGet {
            key: b("h"),
            field: b("f")
        }),
        OpResult::Value { value: None }
    );
}

#[test]
fn incr_family_parses_strictly_and_detects_overflow() {
    let mut db = Db::new();
    assert_eq!(
        int(db.must(KvOp::StrIncrBy {
            key: b("n"),
            delta: 5
        })),
        5
    );
    assert_eq!(
        int(db.must(KvOp::StrIncrBy {
            key: b("n"),
            delta: -7
        })),
        -2
    );
    for bad in ["abc", " 1", "1 ", "+1", "01", "", "1.5", "-0"] {
        db.set("bad", bad);
        assert_eq!(
            db.run(KvOp::StrIncrBy {
                key: b("bad"),
                delta: 1
            }),
            Err(RpcError::NotAnInteger {}),
            "{bad:?}"
        );
    }
    db.set("max", &i64::MAX.to_string());
    assert_eq!(
        db.run(KvOp::StrIncrBy {
            key: b("max"),
            delta: 1
        }),
        Err(RpcError::Overflow {})
    );
    db.set("f", "10.5");
    assert_eq!(
        db.must(KvOp::StrIncrByFloat {
            key: b("f"),
            delta: 0.1
        }),
        OpResult::Value {
            value: Some(b("10.6"))
        }
    );
    db.set("f", "5");
    assert_eq!(
        db.must(KvOp::StrIncrByFloat {
            key: b("f"),
            delta: 2.0
        }),
        OpResult::Value {
            value: Some(b("7"))
        }
    );
    db.set("f", "x");
    assert_eq!(
        db.run(KvOp::StrIncrByFloat {
            key: b("f"),
            delta: 1.0
        }),
        Err(RpcError::NotAFloat {})
    );
}

#[test]
fn incr_keeps_the_ttl_and_set_clears_it() {
    let mut db = Db::new();
    let at = db.now_ms + 10_000;
    db.must(KvOp::StrSet {
        key: b("n"),
        value: b("1"),
        expiry: Expiry::At { at_ms: at },
        cond: Cond::Always {},
        get_old: false,
    });
    db.must(KvOp::StrIncrBy {
        key: b("n"),
        delta: 1,
    });
    assert_eq!(
        db.must(KvOp::KeyTtl { key: b("n") }),
        OpResult::Ttl {
            ttl: TtlState::ExpiresAt { at_ms: at }
        }
    );
    db.set("n", "5");
    assert_eq!(
        db.must(KvOp::KeyTtl { key: b("n") }),
        OpResult::Ttl {
            ttl: TtlState::Persistent {}
        }
    );
    assert_eq!(
        db.must(KvOp::KeyTtl { key: b("none") }),
        OpResult::Ttl {
            ttl: TtlState::NoKey {}
        }
    );
}

#[test]
fn expired_keys_read_as_absent_and_expire_conditions_follow_redis() {
    let mut db = Db::new();
    db.set("k", "v");
    let exp = |db: &mut Db, at_ms, cond| match db.must(KvOp::KeyExpire {
        key: b("k"),
        at_ms,
        cond,
    }) {
        OpResult::Bool { value } => value,
        other => panic!("{other:?}"),
    };
    let t = db.now_ms;
    assert!(!exp(&mut db, t + 100, ExpireCond::IfSome {}));
    assert!(
        !exp(&mut db, t + 100, ExpireCond::IfSomeLess {}),
        "LT XX needs an expiry"
    );
    assert!(
        !exp(&mut db, t + 100, ExpireCond::IfGreater {}),
        "no TTL counts as infinite"
    );
    assert!(exp(&mut db, t + 100, ExpireCond::IfLess {}));
    assert!(!exp(&mut db, t + 50_000, ExpireCond::IfNone {}));
    assert!(exp(&mut db, t + 50_000, ExpireCond::IfGreater {}));
    assert!(!exp(&mut db, t + 60_000, ExpireCond::IfLess {}));
    assert!(!exp(&mut db, t + 60_000, ExpireCond::IfSomeLess {}));
    assert!(exp(&mut db, t + 40_000, ExpireCond::IfSomeLess {}));
    db.now_ms = t + 50_000;
    assert_eq!(db.get("k"), None);
    assert_eq!(
        db.must(KvOp::KeyExists { key: b("k") }),
        OpResult::Bool { value: false }
    );
    assert_eq!(
        db.must(KvOp::KeyType { key: b("k") }),
        OpResult::Type {
            key_type: KeyType::None {}
        }
    );
    // An expiry in the past deletes the key and answers 1.
    db.set("p", "v");
    assert!(matches!(
        db.must(KvOp::KeyExpire {
            key: b("p"),
            at_ms: 1,
            cond: ExpireCond::Always {}
        }),
        OpResult::Bool { value: true }
    ));
    let p_meta = ds_node::keyspace::meta_key(ds_node::keyspace::Db::ZERO, b"p");
    assert!(
        db.store.get(&p_meta).is_none(),
        "the key is deleted, not left to expire"
    );
}

#[test]
fn getrange_and_setrange_use_redis_index_arithmetic() {
    let mut db = Db::new();
    db.set("s", "This is a string");
    let gr = |db: &mut Db, start, end| match db.must(KvOp::StrGetRange {
        key: b("s"),
        start,
        end,
    }) {
        OpResult::Value { value } => value.unwrap(),
        other => panic!("{other:?}"),
    };
    assert_eq!(gr(&mut db, 0, 3), b("This"));
    assert_eq!(gr(&mut db, -3, -1), b("ing"));
    assert_eq!(gr(&mut db, 0, -1), b("This is a string"));
    assert_eq!(gr(&mut db, 10, 100), b("string"));
    assert_eq!(gr(&mut db, 5, 3), b(""));
    assert_eq!(gr(&mut db, -1, -5), b(""));
    assert_eq!(
        int(db.must(KvOp::StrSetRange {
            key: b("z"),
            offset: 3,
            value: b("ab")
        })),
        5
    );
    assert_eq!(db.get("z"), Some(Bytes::from_static(b"\0\0\0ab")));
    assert_eq!(
        int(db.must(KvOp::StrSetRange {
            key: b("none"),
            offset: 3,
            value: b("")
        })),
        0
    );
    assert_eq!(db.get("none"), None, "an empty SETRANGE creates no key");
    assert!(matches!(
        db.run(KvOp::StrSetRange {
            key: b("z"),
            offset: 512 * 1024 * 1024,
            value: b("x")
        }),
        Err(RpcError::ValueTooLarge { .. })
    ));
}

#[test]
fn hashes_count_fields_and_vanish_when_empty() {
    let mut db = Db::new();
    assert_eq!(db.hset("h", &[("a", "1"), ("b", "2"), ("a", "3")]), 2);
    assert_eq!(
        db.must(KvOp::HLen { key: b("h") }),
        OpResult::Int { value: 2 }
    );
    assert_eq!(
        db.must(KvOp::HGetAll { key: b("h") }),
        OpResult::Pairs {
            pairs: vec![(b("a"), b("3")), (b("b"), b("2"))]
        }
    );
    assert_eq!(
        int(db.must(KvOp::HSet {
            key: b("h"),
            pairs: vec![(b("a"), b("9"))],
            only_new: true
        })),
        0
    );
    assert_eq!(
        int(db.must(KvOp::HIncrBy {
            key: b("h"),
            field: b("c"),
            delta: 4
        })),
        4
    );
    assert_eq!(
        db.run(KvOp::HIncrBy {
            key: b("h"),
            field: b("b"),
            delta: i64::MAX
        }),
        Err(RpcError::Overflow {})
    );
    assert!(matches!(
        db.run(KvOp::HIncrBy {
            key: b("h"),
            field: b("a"),
            delta: 1
        })
        .and(db.run(KvOp::HIncrByFloat {
            key: b("h"),
            field: b("c"),
            delta: f64::INFINITY
        })),
        Err(RpcError::BadRequest { .. })
    ));
    assert_eq!(
        int(db.must(KvOp::HDel {
            key: b("h"),
            fields: vec![b("a"), b("b"), b("zz")]
        })),
        2
    );
    assert_eq!(
        int(db.must(KvOp::HDel {
            key: b("h"),
            fields: vec![b("c")]
        })),
        1
    );
    assert_eq!(
        db.must(KvOp::KeyExists { key: b("h") }),
        OpResult::Bool { value: false }
    );
    assert!(db.store.is_empty(), "no metadata or fields left behind");
}

#[test]
fn hscan_walks_every_field_once() {
    let mut db = Db::new();
    let fields: Vec<String> = (0..25).map(|i| format!("f{i:02}")).collect();
    let pairs: Vec<(&str, &str)> = fields.iter().map(|f| (f.as_str(), "v")).collect();
    db.hset("h", &pairs);
    let mut cursor = Bytes::new();
    let mut seen = Vec::new();
    loop {
        let OpResult::Scan { pairs, next } = db.must(KvOp::HScan {
            key: b("h"),
            cursor,
            count: 7,
        }) else {
            panic!()
        };
        seen.extend(pairs.into_iter().map(|(f, _)| f));
        match next {
            Some(n) => cursor = n,
            None => break,
        }
    }
    let want: Vec<Bytes> = fields.iter().map(|f| b(f)).collect();
    assert_eq!(seen, want);
}

#[test]
fn key_scan_returns_user_keys_of_the_requested_type() {
    let mut db = Db::new();
    for i in 0..30 {
        db.set(&format!("s{i}"), "v");
        db.hset(&format!("h{i}"), &[("f", "v"), ("g", "w")]);
    }
    let mut cursor = Bytes::new();
    let mut strings = Vec::new();
    loop {
        let OpResult::KeyScan { keys, next } = db.must(KvOp::KeyScan {
            cursor,
            count: 10,
            type_filter: Some(KeyType::String {}),
        }) else {
            panic!()
        };
        strings.extend(keys);
        match next {
            Some(n) => cursor = n,
            None => break,
        }
    }
    strings.sort();
    let mut want: Vec<Bytes> = (0..30).map(|i| b(&format!("s{i}"))).collect();
    want.sort();
    assert_eq!(strings, want);
}

#[test]
fn keys_outside_the_range_are_refused() {
    let mut db = Db::new();
    db.range.start = Bytes::from_static(b"r\x80\x00");
    let low_slot_key = "bar"; // slot 5061 < 0x8000 >> 2
    assert_eq!(
        db.run(KvOp::StrGet {
            key: b(low_slot_key)
        }),
        Err(RpcError::RangeNotFound {
            range_id: RangeId(1)
        })
    );
}

#[test]
fn raw_scan_skips_expired_entries_and_resumes() {
    let mut db = Db::new();
    for i in 0..20u8 {
        let expiry = if i % 3 == 0 {
            Expiry::At {
                at_ms: db.now_ms + 5,
            }
        } else {
            Expiry::Persist {}
        };
        db.must(KvOp::Put {
            key: Bytes::from(vec![b'k', i]),
            value: b("v"),
            expiry,
            cond: Cond::Always {},
            return_old: false,
        });
    }
    db.now_ms += 10;
    let mut start = Bytes::new();
    let mut got = Vec::new();
    loop {
        let OpResult::Scan { pairs, next } = db.must(KvOp::Scan {
            start: start.clone(),
            end: Bytes::new(),
            limit: 4,
            reverse: false,
            keys_only: true,
        }) else {
            panic!()
        };
        got.extend(pairs.into_iter().map(|(k, _)| k[1]));
        match next {
            Some(n) => start = Bytes::from([&n[..], &[0]].concat()),
            None => break,
        }
    }
    let want: Vec<u8> = (0..20).filter(|i| i % 3 != 0).collect();
    assert_eq!(got, want);
}

#[test]
fn compare_and_set_swaps_only_on_a_match() {
    let mut db = Db::new();
    let cas = |expected: Option<&str>, new: Option<&str>| KvOp::CompareAndSet {
        key: b("c"),
        expected: expected.map(b),
        new: new.map(b),
        expiry: Expiry::Keep {},
    };
    assert_eq!(
        db.must(cas(None, Some("1"))),
        OpResult::Cas {
            swapped: true,
            current: Some(b("1"))
        }
    );
    assert_eq!(
        db.must(cas(None, Some("2"))),
        OpResult::Cas {
            swapped: false,
            current: Some(b("1"))
        }
    );
    assert_eq!(
        db.must(cas(Some("1"), None)),
        OpResult::Cas {
            swapped: true,
            current: None
        }
    );
    assert!(db.store.is_empty());
}

// ---- model test -------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
enum MVal {
    Str(Vec<u8>),
    Hash(BTreeMap<Vec<u8>, Vec<u8>>),
}

#[derive(Debug, Clone)]
enum Cmd {
    Set(u8, u8, u8), // key, value, 0 plain / 1 NX / 2 XX
    Get(u8),
    Del(u8),
    Append(u8, u8),
    Incr(u8, i8),
    HSet(u8, u8, u8),
    HDel(u8, u8),
    HGet(u8, u8),
    HLen(u8),
    HGetAll(u8),
    Type(u8),
    Expire(u8, u8),
    Tick(u8),
}

fn cmd() -> impl Strategy<Value = Cmd> {
    let k = 0u8..4;
    prop_oneof![
        (k.clone(), 0u8..4, 0u8..3).prop_map(|(k, v, c)| Cmd::Set(k, v, c)),
        k.clone().prop_map(Cmd::Get),
        k.clone().prop_map(Cmd::Del),
        (k.clone(), 0u8..4).prop_map(|(k, v)| Cmd::Append(k, v)),
        (k.clone(), any::<i8>()).prop_map(|(k, d)| Cmd::Incr(k, d)),
        (k.clone(), 0u8..4, 0u8..4).prop_map(|(k, f, v)| Cmd::HSet(k, f, v)),
        (k.clone(), 0u8..4).prop_map(|(k, f)| Cmd::HDel(k, f)),
        (k.clone(), 0u8..4).prop_map(|(k, f)| Cmd::HGet(k, f)),
        k.clone().prop_map(Cmd::HLen),
        k.clone().prop_map(Cmd::HGetAll),
        k.clone().prop_map(Cmd::Type),
        (k, 0u8..20).prop_map(|(k, ms)| Cmd::Expire(k, ms)),
        (0u8..10).prop_map(Cmd::Tick),
    ]
}

fn key(k: u8) -> Bytes {
    Bytes::from(format!("key{k}"))
}

fn val(v: u8) -> Bytes {
    Bytes::from(if v == 3 {
        "12".to_string()
    } else {
        format!("v{v}")
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    /// Random command sequences give the same answers as a plain model of strings and hashes
    /// with lazy expiry, and never leave fields behind a deleted or emptied hash when the
    /// whole keyspace is deleted at the end.
    #[test]
    fn commands_match_a_model_of_strings_and_hashes(cmds in prop::collection::vec(cmd(), 1..80)) {
        let mut db = Db::new();
        let mut model: BTreeMap<u8, (MVal, u64)> = BTreeMap::new();
        for c in cmds {
            let now = db.now_ms;
            model.retain(|_, (_, exp)| *exp == 0 || *exp > now);
            match c {
                Cmd::Set(k, v, cond) => {
                    let exists = model.contains_key(&k);
                    let cond_ok = match cond { 1 => !exists, 2 => exists, _ => true };
                    let cond = [Cond::Always {}, Cond::IfAbsent {}, Cond::IfPresent {}][cond as usize];
                    let r = db.must(KvOp::StrSet { key: key(k), value: val(v), expiry: Expiry::Persist {}, cond, get_old: false });
                    prop_assert_eq!(r, OpResult::Written { written: cond_ok });
                    if cond_ok { model.insert(k, (MVal::Str(val(v).to_vec()), 0)); }
                }
                Cmd::Get(k) => {
                    let want = match model.get(&k) {
                        None => Ok(OpResult::Value { value: None }),
                        Some((MVal::Str(s), _)) => Ok(OpResult::Value { value: Some(Bytes::from(s.clone())) }),
                        Some(_) => Err(RpcError::WrongType {}),
                    };
                    prop_assert_eq!(db.run(KvOp::StrGet { key: key(k) }), want);
                }
                Cmd::Del(k) => {
                    let r = db.must(KvOp::KeyDel { key: key(k) });
                    prop_assert_eq!(r, OpResult::Bool { value: model.remove(&k).is_some() });
                }
                Cmd::Append(k, v) => {
                    let r = db.run(KvOp::StrAppend { key: key(k), value: val(v) });
                    match model.get_mut(&k) {
                        Some((MVal::Hash(_), _)) => prop_assert_eq!(r, Err(RpcError::WrongType {})),
                        Some((MVal::Str(s), _)) => { s.extend_from_slice(&val(v)); prop_assert_eq!(r, Ok(OpResult::Int { value: s.len() as i64 })); }
                        None => { model.insert(k, (MVal::Str(val(v).to_vec()), 0)); prop_assert_eq!(r, Ok(OpResult::Int { value: val(v).len() as i64 })); }
                    }
                }
                Cmd::Incr(k, d) => {
                    let r = db.run(KvOp::StrIncrBy { key: key(k), delta: i64::from(d) });
                    match model.get_mut(&k) {
                        Some((MVal::Hash(_), _)) => prop_assert_eq!(r, Err(RpcError::WrongType {})),
                        Some((MVal::Str(s), _)) => match std::str::from_utf8(s).ok().and_then(|t| t.parse::<i64>().ok()).filter(|_| !s.starts_with(b"0") || s.len() == 1) {
                            Some(n) => { let n = n + i64::from(d); *s = n.to_string().into_bytes(); prop_assert_eq!(r, Ok(OpResult::Int { value: n })); }
                            None => prop_assert_eq!(r, Err(RpcError::NotAnInteger {})),
                        },
                        None => { model.insert(k, (MVal::Str(i64::from(d).to_string().into_bytes()), 0)); prop_assert_eq!(r, Ok(OpResult::Int { value: i64::from(d) })); }
                    }
                }
                Cmd::HSet(k, f, v) => {
                    let r = db.run(KvOp::HSet { key: key(k), pairs: vec![(val(f), val(v))], only_new: false });
                    let entry = model.entry(k).or_insert((MVal::Hash(BTreeMap::new()), 0));
                    match &mut entry.0 {
                        MVal::Str(_) => prop_assert_eq!(r, Err(RpcError::WrongType {})),
                        MVal::Hash(h) => { let added = h.insert(val(f).to_vec(), val(v).to_vec()).is_none(); prop_assert_eq!(r, Ok(OpResult::Int { value: i64::from(added) })); }
                    }
                }
                Cmd::HDel(k, f) => {
                    let r = db.run(KvOp::HDel { key: key(k), fields: vec![val(f)] });
                    match model.get_mut(&k) {
                        Some((MVal::Str(_), _)) => prop_assert_eq!(r, Err(RpcError::WrongType {})),
                        Some((MVal::Hash(h), _)) => {
                            let removed = h.remove(&val(f).to_vec()).is_some();
                            if h.is_empty() { model.remove(&k); }
                            prop_assert_eq!(r, Ok(OpResult::Int { value: i64::from(removed) }));
                        }
                        None => prop_assert_eq!(r, Ok(OpResult::Int { value: 0 })),
                    }
                }
                Cmd::HGet(k, f) => {
                    let want = match model.get(&k) {
                        Some((MVal::Str(_), _)) => Err(RpcError::WrongType {}),
                        Some((MVal::Hash(h), _)) => Ok(OpResult::Value { value: h.get(&val(f).to_vec()).map(|v| Bytes::from(v.clone())) }),
                        None => Ok(OpResult::Value { value: None }),
                    };
                    prop_assert_eq!(db.run(KvOp::HGet { key: key(k), field: val(f) }), want);
                }
                Cmd::HLen(k) => {
                    let want = match model.get(&k) {
                        Some((MVal::Str(_), _)) => Err(RpcError::WrongType {}),
                        Some((MVal::Hash(h), _)) => Ok(OpResult::Int { value: h.len() as i64 }),
                        None => Ok(OpResult::Int { value: 0 }),
                    };
                    prop_assert_eq!(db.run(KvOp::HLen { key: key(k) }), want);
                }
                Cmd::HGetAll(k) => {
                    let want = match model.get(&k) {
                        Some((MVal::Str(_), _)) => Err(RpcError::WrongType {}),
                        Some((MVal::Hash(h), _)) => Ok(OpResult::Pairs { pairs: h.iter().map(|(f, v)| (Bytes::from(f.clone()), Bytes::from(v.clone()))).collect() }),
                        None => Ok(OpResult::Pairs { pairs: vec![] }),
                    };
                    prop_assert_eq!(db.run(KvOp::HGetAll { key: key(k) }), want);
                }
                Cmd::Type(k) => {
                    let want = match model.get(&k) {
                        Some((MVal::Str(_), _)) => KeyType::String {},
                        Some((MVal::Hash(_), _)) => KeyType::Hash {},
                        None => KeyType::None {},
                    };
                    prop_assert_eq!(db.must(KvOp::KeyType { key: key(k) }), OpResult::Type { key_type: want });
                }
                Cmd::Expire(k, ms) => {
                    let at = now + u64::from(ms);
                    let r = db.must(KvOp::KeyExpire { key: key(k), at_ms: at, cond: ExpireCond::Always {} });
                    let exists = model.contains_key(&k);
                    prop_assert_eq!(r, OpResult::Bool { value: exists });
                    if exists {
                        if at <= now { model.remove(&k); } else if let Some(e) = model.get_mut(&k) { e.1 = at; }
                    }
                }
                Cmd::Tick(ms) => db.now_ms += u64::from(ms),
            }
        }
    }
}

#[test]
fn store_is_a_kv_store() {
    // Keeps the trait import honest: the model store answers a direct lookup.
    let s = ModelStore::default();
    assert!(s.get(b"x").is_none());
}
