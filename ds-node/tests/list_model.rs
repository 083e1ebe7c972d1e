//! The range state machine's list operations against a `VecDeque` model of Redis 7's list
//! semantics (`t_list.c`): random sequences of every list operation on a few colliding keys
//! and elements, through `ds_node::range::apply::execute` on a `ModelStore`. Lists stay
//! short, so sequences cross 0 and 1 elements often and the head moves back and forth
//! across `LIST_START`. After every step the store must hold exactly one entry per element
//! plus one metadata entry per non-empty list (empty lists are deleted; pops, LTRIM and LREM
//! delete the entries they drop).
#![allow(clippy::unwrap_used)] // a test fails by panicking

mod common;

use std::collections::{BTreeMap, VecDeque};

use bytes::Bytes;
use common::store::Db;
use ds_node::range::store::KvStore;
use net::RpcError;
use net::message::kv::{Cond, Expiry, KvOp, ListOp, OpResult};
use proptest::prelude::*;

const KEYS: [&str; 3] = ["a", "b", "s"]; // "s" holds a string
const ELEMS: [&str; 3] = ["x", "y", "z"];

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

fn key() -> impl Strategy<Value = Bytes> {
    prop::sample::select(&KEYS[..]).prop_map(b)
}

fn elem() -> impl Strategy<Value = Bytes> {
    prop::sample::select(&ELEMS[..]).prop_map(b)
}

fn idx() -> impl Strategy<Value = i64> {
    prop_oneof![-6i64..6, Just(i64::MIN), Just(i64::MAX)]
}

fn list_op() -> impl Strategy<Value = ListOp> {
    prop_oneof![
        4 => (key(), prop::collection::vec(elem(), 1..4), any::<bool>(), prop::bool::weighted(0.2))
            .prop_map(|(key, elements, left, only_existing)| ListOp::Push {
                key,
                elements,
                left,
                only_existing
            }),
        3 => (key(), any::<bool>(), prop::option::of(0u64..4))
            .prop_map(|(key, left, count)| ListOp::Pop { key, left, count }),
        1 => key().prop_map(|key| ListOp::Len { key }),
        2 => (key(), idx(), idx()).prop_map(|(key, start, stop)| ListOp::Range { key, start, stop }),
        1 => (key(), idx()).prop_map(|(key, index)| ListOp::Index { key, index }),
        1 => (key(), idx(), elem()).prop_map(|(key, index, element)| ListOp::Set { key, index, element }),
        1 => (key(), any::<bool>(), elem(), elem()).prop_map(|(key, before, pivot, element)| {
            ListOp::Insert { key, before, pivot, element }
        }),
        1 => (key(), -3i64..3, elem()).prop_map(|(key, count, element)| ListOp::Rem { key, count, element }),
        1 => (key(), idx(), idx()).prop_map(|(key, start, stop)| ListOp::Trim { key, start, stop }),
        1 => (key(), elem(), prop_oneof![-3i64..0, 1i64..3], prop::option::of(0u64..3), 0u64..4)
            .prop_map(|(key, element, rank, count, maxlen)| ListOp::Pos { key, element, rank, count, maxlen }),
        2 => (key(), key(), any::<bool>(), any::<bool>()).prop_map(|(src, dst, from_left, to_left)| {
            ListOp::Move { src, dst, from_left, to_left }
        }),
        1 => (prop::collection::vec(key(), 1..3), any::<bool>(), 1u64..4).prop_map(|(keys, left, count)| {
            ListOp::MPop { key: keys[0].clone(), others: keys[1..].to_vec(), left, count }
        }),
    ]
}

/// Redis's lists, plainly.
#[derive(Default)]
struct Model {
    lists: BTreeMap<Bytes, VecDeque<Bytes>>,
}

type Res = Result<OpResult, RpcError>;

fn int(v: usize) -> Res {
    Ok(OpResult::Int {
        value: i64::try_from(v).unwrap(),
    })
}

fn bulks(values: Vec<Bytes>) -> Res {
    Ok(OpResult::Bulks { values })
}

fn bad(m: &str) -> RpcError {
    RpcError::BadRequest { message: m.into() }
}

/// `addListRangeReply`'s clamping.
fn clamp(len: usize, start: i64, stop: i64) -> Option<(usize, usize)> {
    let len = i64::try_from(len).unwrap();
    let mut s = if start < 0 {
        len.saturating_add(start)
    } else {
        start
    };
    let mut e = if stop < 0 {
        len.saturating_add(stop)
    } else {
        stop
    };
    s = s.max(0);
    if s > e || s >= len {
        return None;
    }
    e = e.min(len - 1);
    Some((usize::try_from(s).unwrap(), usize::try_from(e).unwrap()))
}

fn position(len: usize, index: i64) -> Option<usize> {
    let len = i64::try_from(len).unwrap();
    let i = if index < 0 {
        len.checked_add(index)?
    } else {
        index
    };
    (0..len).contains(&i).then(|| usize::try_from(i).unwrap())
}

impl Model {
    fn get(&self, k: &Bytes) -> Result<Option<&VecDeque<Bytes>>, RpcError> {
        if k == "s" {
            return Err(RpcError::WrongType {});
        }
        Ok(self.lists.get(k))
    }

    fn pop(&mut self, k: &Bytes, left: bool, n: u64) -> Vec<Bytes> {
        let l = self.lists.get_mut(k).unwrap();
        let mut out = Vec::new();
        for _ in 0..n {
            match if left { l.pop_front() } else { l.pop_back() } {
                Some(v) => out.push(v),
                None => break,
            }
        }
        self.tidy(k);
        out
    }

    fn tidy(&mut self, k: &Bytes) {
        if self.lists.get(k).is_some_and(VecDeque::is_empty) {
            self.lists.remove(k);
        }
    }

    fn apply(&mut self, op: &ListOp) -> Res {
        match op {
            ListOp::Len { key } => int(self.get(key)?.map_or(0, VecDeque::len)),
            ListOp::Push {
                key,
                elements,
                left,
                only_existing,
            } => {
                if self.get(key)?.is_none() && *only_existing {
                    return int(0);
                }
                let l = self.lists.entry(key.clone()).or_default();
                for e in elements {
                    if *left {
                        l.push_front(e.clone());
                    } else {
                        l.push_back(e.clone());
                    }
                }
                int(l.len())
            }
            ListOp::Pop { key, left, count } => {
                if self.get(key)?.is_none() {
                    return Ok(OpResult::Value { value: None });
                }
                match count {
                    None => Ok(OpResult::Value {
                        value: self.pop(key, *left, 1).pop(),
                    }),
                    Some(n) => bulks(self.pop(key, *left, *n)),
                }
            }
            ListOp::Range { key, start, stop } => {
                let Some(l) = self.get(key)? else {
                    return bulks(vec![]);
                };
                bulks(match clamp(l.len(), *start, *stop) {
                    None => vec![],
                    Some((s, e)) => l.range(s..=e).cloned().collect(),
                })
            }
            ListOp::Index { key, index } => {
                let l = self.get(key)?;
                let value = l.and_then(|l| position(l.len(), *index).map(|p| l[p].clone()));
                Ok(OpResult::Value { value })
            }
            ListOp::Set {
                key,
                index,
                element,
            } => {
                let len = self.get(key)?.ok_or_else(|| bad("no such key"))?.len();
                let p = position(len, *index).ok_or_else(|| bad("index out of range"))?;
                self.lists.get_mut(key).unwrap()[p] = element.clone();
                Ok(OpResult::Unit {})
            }
            ListOp::Insert {
                key,
                before,
                pivot,
                element,
            } => {
                let Some(l) = self.get(key)? else {
                    return int(0);
                };
                let Some(p) = l.iter().position(|e| e == pivot) else {
                    return Ok(OpResult::Int { value: -1 });
                };
                let l = self.lists.get_mut(key).unwrap();
                l.insert(p + usize::from(!before), element.clone());
                int(l.len())
            }
            ListOp::Rem {
                key,
                count,
                element,
            } => {
                if self.get(key)?.is_none() {
                    return int(0);
                }
                let l = self.lists.get_mut(key).unwrap();
                let limit = count.unsigned_abs();
                let mut removed = 0u64;
                let order: Vec<usize> = if *count < 0 {
                    (0..l.len()).rev().collect()
                } else {
                    (0..l.len()).collect()
                };
                let mut drop = vec![false; l.len()];
                for i in order {
                    if limit != 0 && removed == limit {
                        break;
                    }
                    if l[i] == element {
                        drop[i] = true;
                        removed += 1;
                    }
                }
                let mut i = 0;
                l.retain(|_| {
                    i += 1;
                    !drop[i - 1]
                });
                self.tidy(key);
                int(usize::try_from(removed).unwrap())
            }
            ListOp::Trim { key, start, stop } => {
                let Some(l) = self.get(key)? else {
                    return Ok(OpResult::Unit {});
                };
                let kept: VecDeque<Bytes> = match clamp(l.len(), *start, *stop) {
                    None => VecDeque::new(),
                    Some((s, e)) => l.range(s..=e).cloned().collect(),
                };
                self.lists.insert(key.clone(), kept);
                self.tidy(key);
                Ok(OpResult::Unit {})
            }
            ListOp::Pos {
                key,
                element,
                rank,
                count,
                maxlen,
            } => {
                let Some(l) = self.get(key)? else {
                    return Ok(OpResult::Ints { values: vec![] });
                };
                let n = l.len();
                let from_tail = *rank < 0;
                let rank = rank.unsigned_abs();
                let want = count.map_or(1, |c| if c == 0 { u64::MAX } else { c });
                let (mut matches, mut values) = (0u64, vec![]);
                for step in 0..n {
                    if *maxlen != 0 && step as u64 >= *maxlen {
                        break;
                    }
                    let i = if from_tail { n - 1 - step } else { step };
                    if l[i] == element {
                        matches += 1;
                        if matches >= rank {
                            values.push(i64::try_from(i).unwrap());
                            if values.len() as u64 >= want {
                                break;
                            }
                        }
                    }
                }
                Ok(OpResult::Ints { values })
            }
            ListOp::Move {
                src,
                dst,
                from_left,
                to_left,
            } => {
                if self.get(src)?.is_none() {
                    return Ok(OpResult::Value { value: None });
                }
                self.get(dst)?;
                let v = self.pop(src, *from_left, 1).pop().unwrap();
                let d = self.lists.entry(dst.clone()).or_default();
                if *to_left {
                    d.push_front(v.clone());
                } else {
                    d.push_back(v.clone());
                }
                Ok(OpResult::Value { value: Some(v) })
            }
            ListOp::MPop {
                key,
                others,
                left,
                count,
            } => {
                for k in std::iter::once(key).chain(others) {
                    if self.get(k)?.is_none() {
                        continue;
                    }
                    let mut out = vec![k.clone()];
                    out.extend(self.pop(k, *left, *count));
                    return bulks(out);
                }
                bulks(vec![])
            }
        }
    }

    /// Entries the store must hold: one per element, one metadata entry per list, the
    /// string's.
    fn entries(&self) -> usize {
        1 + self.lists.values().map(|l| l.len() + 1).sum::<usize>()
    }
}

/// A model store holding the string key "s" (for WRONGTYPE).
fn db() -> Db {
    let mut db = Db::new();
    let set = KvOp::StrSet {
        key: b("s"),
        value: b("v"),
        expiry: Expiry::Persist {},
        cond: Cond::Always {},
        get_old: false,
    };
    db.run(&set).unwrap();
    db
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn random_list_operations_match_the_model(ops in prop::collection::vec(list_op(), 1..60)) {
        let mut db = db();
        let mut model = Model::default();
        for (i, op) in ops.iter().enumerate() {
            let got = db.run(&KvOp::List { op: op.clone() });
            let want = model.apply(op);
            prop_assert_eq!(&got, &want, "step {} {:?}", i, op);
            prop_assert_eq!(db.store.len(), model.entries(), "entries after step {} {:?}", i, op);
        }
        for k in KEYS.iter().take(2) {
            let all = db.run(&KvOp::List { op: ListOp::Range { key: b(k), start: 0, stop: -1 } });
            let want = bulks(model.lists.get(&b(k)).map(|l| l.iter().cloned().collect()).unwrap_or_default());
            prop_assert_eq!(all, want);
        }
    }
}

#[test]
fn pushes_and_pops_at_both_ends_cross_list_start_and_an_empty_list_is_deleted() {
    let mut db = db();
    let push = |key: &str, e: &str, left| KvOp::List {
        op: ListOp::Push {
            key: b(key),
            elements: vec![b(e)],
            left,
            only_existing: false,
        },
    };
    for (e, left) in [("1", true), ("2", false), ("0", true), ("3", false)] {
        db.run(push("a", e, left)).unwrap();
    }
    let range = KvOp::List {
        op: ListOp::Range {
            key: b("a"),
            start: 0,
            stop: -1,
        },
    };
    assert_eq!(db.run(&range), bulks(vec![b("0"), b("1"), b("2"), b("3")]));
    let pop = |left| KvOp::List {
        op: ListOp::Pop {
            key: b("a"),
            left,
            count: Some(3),
        },
    };
    assert_eq!(db.run(pop(false)), bulks(vec![b("3"), b("2"), b("1")]));
    assert_eq!(db.run(pop(true)), bulks(vec![b("0")]));
    assert_eq!(
        db.run(&KvOp::KeyExists { key: b("a") }),
        Ok(OpResult::Bool { value: false })
    );
    assert_eq!(db.store.len(), 1, "only the string is left");
    assert!(db.store.scan(b"", None, 10, false).len() == 1);
}
