//! The range state machine's set operations (and HRANDFIELD) against a model: random
//! sequences of set commands on a few keys, compared after every step with a `BTreeSet`
//! per key (plus strings, for WRONGTYPE); rules that a model cannot show get their own test.
#![allow(clippy::unwrap_used)] // a test fails by panicking

mod common;

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use common::store::Db;
use net::RpcError;
use net::message::kv::{Cond, Expiry, KeyType, KvOp, OpResult, SetAlgebra, SetOp};
use proptest::prelude::*;

/// A model store whose clock moves 1 ms before each command.
fn db() -> Db {
    Db::new().stepping(1)
}

impl Db {
    fn set(&mut self, op: SetOp) -> Result<OpResult, RpcError> {
        self.run(KvOp::Set { op })
    }
}

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

#[derive(Debug, Clone, PartialEq)]
enum Val {
    Set(BTreeSet<Bytes>),
    Str,
}

type Model = BTreeMap<Bytes, Val>;

/// The set at `key` (empty when absent), or WRONGTYPE.
fn model_set(m: &Model, key: &Bytes) -> Result<BTreeSet<Bytes>, RpcError> {
    match m.get(key) {
        None => Ok(BTreeSet::new()),
        Some(Val::Set(s)) => Ok(s.clone()),
        Some(Val::Str) => Err(RpcError::WrongType {}),
    }
}

fn store_set(m: &mut Model, key: &Bytes, s: BTreeSet<Bytes>) {
    if s.is_empty() {
        m.remove(key);
    } else {
        m.insert(key.clone(), Val::Set(s));
    }
}

fn algebra(a: SetAlgebra, sets: Vec<BTreeSet<Bytes>>) -> BTreeSet<Bytes> {
    let mut it = sets.into_iter();
    let first = it.next().unwrap_or_default();
    match a {
        SetAlgebra::Inter {} => it.fold(first, |acc, s| &acc & &s),
        SetAlgebra::Union {} => it.fold(first, |acc, s| &acc | &s),
        SetAlgebra::Diff {} => it.fold(first, |acc, s| &acc - &s),
    }
}

fn bulks(v: Vec<Bytes>) -> OpResult {
    OpResult::Bulks { values: v }
}

fn int(v: i64) -> OpResult {
    OpResult::Int { value: v }
}

/// Applies `op` to the model; `None` when the result is random (checked separately).
fn model_apply(m: &mut Model, op: &SetOp) -> Option<Result<OpResult, RpcError>> {
    Some(match op {
        SetOp::Card { key } => model_set(m, key).map(|s| int(s.len() as i64)),
        SetOp::Add { key, members } => model_set(m, key).map(|mut s| {
            let before = s.len();
            s.extend(members.iter().cloned());
            let added = s.len() - before;
            store_set(m, key, s);
            int(added as i64)
        }),
        SetOp::Rem { key, members } => model_set(m, key).map(|mut s| {
            let removed = members.iter().filter(|x| s.remove(*x)).count();
            store_set(m, key, s);
            int(removed as i64)
        }),
        SetOp::Members { key } => model_set(m, key).map(|s| bulks(s.into_iter().collect())),
        SetOp::IsMember { key, members } => model_set(m, key).map(|s| OpResult::Ints {
            values: members.iter().map(|x| i64::from(s.contains(x))).collect(),
        }),
        SetOp::Move { key, dst, member } => {
            if !m.contains_key(key) {
                return Some(Ok(OpResult::Bool { value: false }));
            }
            let src = model_set(m, key);
            let to = model_set(m, dst);
            match (src, to) {
                (Ok(mut s), Ok(mut d)) => {
                    if key == dst {
                        return Some(Ok(OpResult::Bool {
                            value: s.contains(member),
                        }));
                    }
                    let moved = s.remove(member);
                    if moved {
                        d.insert(member.clone());
                        store_set(m, key, s);
                        store_set(m, dst, d);
                    }
                    Ok(OpResult::Bool { value: moved })
                }
                (Err(e), _) | (_, Err(e)) => Err(e),
            }
        }
        SetOp::Combine {
            algebra: a,
            key,
            keys,
        } => {
            let sets: Result<Vec<_>, _> = std::iter::once(key)
                .chain(keys)
                .map(|k| model_set(m, k))
                .collect();
            sets.map(|s| bulks(algebra(*a, s).into_iter().collect()))
        }
        SetOp::Store {
            algebra: a,
            key,
            keys,
        } => {
            let sets: Result<Vec<_>, _> = keys.iter().map(|k| model_set(m, k)).collect();
            sets.map(|s| {
                let r = algebra(*a, s);
                let n = r.len();
                m.remove(key);
                store_set(m, key, r);
                int(n as i64)
            })
        }
        SetOp::InterCard { key, keys, limit } => {
            let sets: Result<Vec<_>, _> = std::iter::once(key)
                .chain(keys)
                .map(|k| model_set(m, k))
                .collect();
            sets.map(|s| {
                let n = algebra(SetAlgebra::Inter {}, s).len() as u64;
                int((if *limit == 0 { n } else { n.min(*limit) }) as i64)
            })
        }
        SetOp::Replace { key, members } => {
            let s: BTreeSet<Bytes> = members.iter().cloned().collect();
            let n = s.len();
            m.remove(key);
            store_set(m, key, s);
            Ok(int(n as i64))
        }
        SetOp::Pop { .. } | SetOp::RandMember { .. } | SetOp::Scan { .. } => return None,
    })
}

/// Runs a random operation on both sides and checks the random ones by their rules.
fn check_random(db: &mut Db, m: &mut Model, op: &SetOp) {
    let got = db.set(op.clone());
    let (key, set) = (op.key(), model_set(m, op.key()));
    let set = match (set, &got) {
        (Err(e), _) => return assert_eq!(got, Err(e), "{op:?}"),
        (Ok(s), _) => s,
    };
    match (op, got.unwrap()) {
        (SetOp::Pop { count, .. }, OpResult::Bulks { values }) => {
            let want = count.unwrap_or(1).min(set.len() as u64) as usize;
            let popped: BTreeSet<Bytes> = values.iter().cloned().collect();
            assert_eq!((values.len(), popped.len()), (want, want), "{op:?}");
            assert!(popped.is_subset(&set), "{op:?}");
            store_set(m, key, &set - &popped);
        }
        (SetOp::RandMember { count, .. }, OpResult::Bulks { values }) => {
            let want = if *count < 0 {
                if set.is_empty() {
                    0
                } else {
                    count.unsigned_abs() as usize
                }
            } else {
                (*count as usize).min(set.len())
            };
            assert_eq!(values.len(), want, "{op:?}");
            assert!(values.iter().all(|v| set.contains(v)), "{op:?}");
            if *count >= 0 {
                let distinct: BTreeSet<_> = values.iter().collect();
                assert_eq!(distinct.len(), values.len(), "{op:?}");
            }
        }
        (SetOp::Scan { count, .. }, _) => {
            // A whole scan from cursor 0 returns every member.
            let mut seen = BTreeSet::new();
            let mut cursor = 0u64;
            loop {
                let r = db.set(SetOp::Scan {
                    key: key.clone(),
                    cursor,
                    count: *count,
                });
                let OpResult::Scan { pairs, next } = r.unwrap() else {
                    panic!("not a scan")
                };
                seen.extend(pairs.into_iter().map(|(k, _)| k));
                match next {
                    Some(n) => {
                        let n = u64::from_be_bytes(n[..].try_into().unwrap());
                        assert!(n > cursor, "the cursor advances");
                        cursor = n;
                    }
                    None => break,
                }
            }
            assert_eq!(seen, set, "{op:?}");
        }
        (op, r) => panic!("unexpected {r:?} for {op:?}"),
    }
}

fn keys() -> impl Strategy<Value = Bytes> {
    prop_oneof![Just(b("a")), Just(b("b")), Just(b("c")), Just(b("s"))]
}

fn members() -> impl Strategy<Value = Vec<Bytes>> {
    prop::collection::vec(
        prop_oneof![
            (0u8..8).prop_map(|i| Bytes::from(vec![b'm', i])),
            Just(Bytes::new()),
            Just(Bytes::from_static(b"\0")),
            Just(Bytes::from_static(b"longer member 12345")),
            Just(Bytes::from_static(b"longer member 12346")),
        ],
        1..5,
    )
}

fn algebras() -> impl Strategy<Value = SetAlgebra> {
    prop_oneof![
        Just(SetAlgebra::Inter {}),
        Just(SetAlgebra::Union {}),
        Just(SetAlgebra::Diff {}),
    ]
}

#[derive(Debug, Clone)]
enum Step {
    Op(SetOp),
    Str(Bytes),
    Del(Bytes),
}

fn steps() -> impl Strategy<Value = Step> {
    let key_list = || prop::collection::vec(keys(), 0..3);
    prop_oneof![
        (keys(), members()).prop_map(|(key, members)| Step::Op(SetOp::Add { key, members })),
        (keys(), members()).prop_map(|(key, members)| Step::Op(SetOp::Rem { key, members })),
        keys().prop_map(|key| Step::Op(SetOp::Card { key })),
        keys().prop_map(|key| Step::Op(SetOp::Members { key })),
        (keys(), members()).prop_map(|(key, members)| Step::Op(SetOp::IsMember { key, members })),
        (keys(), prop::option::of(0u64..6))
            .prop_map(|(key, count)| Step::Op(SetOp::Pop { key, count })),
        (keys(), -8i64..8, any::<u64>())
            .prop_map(|(key, count, seed)| Step::Op(SetOp::RandMember { key, count, seed })),
        (keys(), keys(), members()).prop_map(|(key, dst, m)| Step::Op(SetOp::Move {
            key,
            dst,
            member: m[0].clone()
        })),
        (algebras(), keys(), key_list())
            .prop_map(|(algebra, key, keys)| Step::Op(SetOp::Combine { algebra, key, keys })),
        (algebras(), keys(), prop::collection::vec(keys(), 1..4))
            .prop_map(|(algebra, key, keys)| Step::Op(SetOp::Store { algebra, key, keys })),
        (keys(), key_list(), 0u64..4).prop_map(|(key, keys, limit)| Step::Op(SetOp::InterCard {
            key,
            keys,
            limit
        })),
        (keys(), prop::collection::vec(members(), 0..2)).prop_map(|(key, m)| Step::Op(
            SetOp::Replace {
                key,
                members: m.concat()
            }
        )),
        (keys(), 1u32..4).prop_map(|(key, count)| Step::Op(SetOp::Scan {
            key,
            cursor: 0,
            count
        })),
        keys().prop_map(Step::Str),
        keys().prop_map(Step::Del),
    ]
}

/// Every key of the model reads back the same: type, members and count.
fn check_all(db: &mut Db, m: &Model) {
    for k in ["a", "b", "c", "s"].map(b) {
        let t = db.run(KvOp::KeyType { key: k.clone() }).unwrap();
        let want = match m.get(&k) {
            None => KeyType::None {},
            Some(Val::Set(_)) => KeyType::Set {},
            Some(Val::Str) => KeyType::String {},
        };
        assert_eq!(t, OpResult::Type { key_type: want }, "type of {k:?}");
        if let Some(Val::Set(s)) = m.get(&k) {
            let members = db.set(SetOp::Members { key: k.clone() }).unwrap();
            assert_eq!(members, bulks(s.iter().cloned().collect()));
            let card = db.set(SetOp::Card { key: k.clone() }).unwrap();
            assert_eq!(card, int(s.len() as i64));
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_set_commands_match_the_model(steps in prop::collection::vec(steps(), 1..60)) {
        let mut db = db();
        let mut m = Model::new();
        for step in steps {
            match step {
                Step::Str(key) => {
                    db.run(KvOp::StrSet {
                        key: key.clone(),
                        value: b("x"),
                        expiry: Expiry::Persist {},
                        cond: Cond::Always {},
                        get_old: false,
                    }).unwrap();
                    m.insert(key, Val::Str);
                }
                Step::Del(key) => {
                    db.run(KvOp::KeyDel { key: key.clone() }).unwrap();
                    m.remove(&key);
                }
                Step::Op(op) => match model_apply(&mut m, &op) {
                    Some(want) => prop_assert_eq!(db.set(op.clone()), want, "{:?}", op),
                    None => check_random(&mut db, &mut m, &op),
                },
            }
            check_all(&mut db, &m);
        }
    }
}

#[test]
fn an_emptied_set_leaves_no_entry_behind() {
    let mut db = db();
    db.set(SetOp::Add {
        key: b("k"),
        members: vec![b("x"), b("y")],
    })
    .unwrap();
    db.set(SetOp::Pop {
        key: b("k"),
        count: Some(1),
    })
    .unwrap();
    db.set(SetOp::Rem {
        key: b("k"),
        members: vec![b("x"), b("y")],
    })
    .unwrap();
    assert!(db.store.is_empty(), "{:?}", db.store);
}

#[test]
fn spop_is_the_same_on_every_replica_and_differs_between_entries() {
    let fill = |db: &mut Db| {
        let members = (0..50).map(|i| b(&format!("m{i}"))).collect();
        db.set(SetOp::Add {
            key: b("k"),
            members,
        })
        .unwrap();
    };
    let (mut r1, mut r2) = (db(), db());
    fill(&mut r1);
    fill(&mut r2);
    let pop = SetOp::Pop {
        key: b("k"),
        count: Some(3),
    };
    let a: Vec<_> = (0..5).map(|_| r1.set(pop.clone()).unwrap()).collect();
    let c: Vec<_> = (0..5).map(|_| r2.set(pop.clone()).unwrap()).collect();
    assert_eq!(a, c);
    assert_ne!(a[0], a[1]);
    assert_eq!(r1.store, r2.store);
}

#[test]
fn a_store_in_a_multi_over_a_set_created_by_the_same_entry_keeps_only_the_result() {
    let mut db = db();
    db.set(SetOp::Add {
        key: b("src"),
        members: vec![b("1"), b("2")],
    })
    .unwrap();
    let ops = vec![
        KvOp::Set {
            op: SetOp::Add {
                key: b("dst"),
                members: vec![b("old")],
            },
        },
        KvOp::Set {
            op: SetOp::Store {
                algebra: SetAlgebra::Union {},
                key: b("dst"),
                keys: vec![b("src")],
            },
        },
    ];
    db.run(KvOp::Multi {
        watches: vec![],
        ops,
    })
    .unwrap();
    let members = db.set(SetOp::Members { key: b("dst") }).unwrap();
    assert_eq!(members, bulks(vec![b("1"), b("2")]));
    assert_eq!(db.set(SetOp::Card { key: b("dst") }).unwrap(), int(2));
}

#[test]
fn a_store_drops_the_destination_expiry_and_a_move_keeps_the_source_one() {
    let mut db = db();
    let add = |db: &mut Db, k: &str| {
        db.set(SetOp::Add {
            key: b(k),
            members: vec![b("x"), b("y")],
        })
        .unwrap()
    };
    add(&mut db, "a");
    add(&mut db, "d");
    let at = db.now_ms + 100_000;
    for k in ["a", "d"] {
        db.run(KvOp::KeyExpire {
            key: b(k),
            at_ms: at,
            cond: net::message::kv::ExpireCond::Always {},
        })
        .unwrap();
    }
    db.set(SetOp::Move {
        key: b("a"),
        dst: b("n"),
        member: b("x"),
    })
    .unwrap();
    db.set(SetOp::Store {
        algebra: SetAlgebra::Union {},
        key: b("d"),
        keys: vec![b("a")],
    })
    .unwrap();
    let ttl = |db: &mut Db, k: &str| db.run(KvOp::KeyTtl { key: b(k) }).unwrap();
    use net::message::kv::TtlState;
    assert_eq!(
        ttl(&mut db, "a"),
        OpResult::Ttl {
            ttl: TtlState::ExpiresAt { at_ms: at }
        }
    );
    assert_eq!(
        ttl(&mut db, "d"),
        OpResult::Ttl {
            ttl: TtlState::Persistent {}
        }
    );
}

#[test]
fn hrandfield_chooses_fields_of_the_hash_with_their_values() {
    let mut db = db();
    let pairs: Vec<(Bytes, Bytes)> = (0..20)
        .map(|i| (b(&format!("f{i}")), b(&format!("v{i}"))))
        .collect();
    db.run(KvOp::HSet {
        key: b("h"),
        pairs: pairs.clone(),
        only_new: false,
    })
    .unwrap();
    let all: BTreeMap<Bytes, Bytes> = pairs.into_iter().collect();
    let rand = |db: &mut Db, count, with_values| {
        let r = db.run(KvOp::HRandField {
            key: b("h"),
            count,
            with_values,
            seed: 42,
        });
        match r.unwrap() {
            OpResult::Pairs { pairs } => pairs,
            other => panic!("{other:?}"),
        }
    };
    let one = rand(&mut db, None, false);
    assert_eq!(one.len(), 1);
    assert!(all.contains_key(&one[0].0) && one[0].1.is_empty());
    let distinct = rand(&mut db, Some(15), true);
    let names: BTreeSet<_> = distinct.iter().map(|(f, _)| f.clone()).collect();
    assert_eq!(names.len(), 15);
    assert!(distinct.iter().all(|(f, v)| all.get(f) == Some(v)));
    assert_eq!(rand(&mut db, Some(50), false).len(), 20);
    let repeats = rand(&mut db, Some(-50), true);
    assert_eq!(repeats.len(), 50);
    assert!(repeats.iter().all(|(f, v)| all.get(f) == Some(v)));
    assert_eq!(
        db.run(KvOp::HRandField {
            key: b("nohash"),
            count: Some(-3),
            with_values: false,
            seed: 1
        }),
        Ok(OpResult::Pairs { pairs: vec![] })
    );
    db.set(SetOp::Add {
        key: b("s"),
        members: vec![b("x")],
    })
    .unwrap();
    assert_eq!(
        db.run(KvOp::HRandField {
            key: b("s"),
            count: None,
            with_values: false,
            seed: 1
        }),
        Err(RpcError::WrongType {})
    );
}

#[test]
fn random_choices_of_a_large_set_are_members_and_spread() {
    let mut db = db();
    let members: Vec<Bytes> = (0..3000).map(|i| b(&format!("element:{i:06}"))).collect();
    for chunk in members.chunks(500) {
        db.set(SetOp::Add {
            key: b("big"),
            members: chunk.to_vec(),
        })
        .unwrap();
    }
    let all: BTreeSet<Bytes> = members.into_iter().collect();
    let OpResult::Bulks { values } = db
        .set(SetOp::RandMember {
            key: b("big"),
            count: -3000,
            seed: 5,
        })
        .unwrap()
    else {
        panic!()
    };
    assert!(values.iter().all(|v| all.contains(v)));
    let distinct: BTreeSet<_> = values.iter().collect();
    // Probing is not uniform, but it must reach a good part of the set.
    assert!(distinct.len() > 300, "{}", distinct.len());
    let OpResult::Bulks { values } = db
        .set(SetOp::RandMember {
            key: b("big"),
            count: 100,
            seed: 6,
        })
        .unwrap()
    else {
        panic!()
    };
    let distinct: BTreeSet<_> = values.iter().collect();
    assert_eq!(distinct.len(), 100);
    assert_eq!(
        db.set(SetOp::RandMember {
            key: b("big"),
            count: -(1 << 23),
            seed: 6,
        }),
        Err(RpcError::BadRequest {
            message: "value is out of range".into()
        })
    );
}
