//! Sorted sets in the range state machine against a plain model: random sequences of ZSetOps
//! applied through `execute` on a `ModelStore`, each result compared with what the model
//! (member → score maps, ordered by score then member) says Redis answers.
#![allow(clippy::unwrap_used)] // a test fails by panicking

mod common;

use std::collections::BTreeMap;

use bytes::Bytes;
use common::store::Db;
use net::RpcError;
use net::message::kv::{KvOp, OpResult, ZSetOp};
use net::message::zset::{add_flags, by, combine};
use proptest::prelude::*;

const KEYS: [&str; 3] = ["k0", "k1", "k2"];
const MEMBERS: [&str; 5] = ["a", "b", "c", "d", "e"];
const SCORES: [f64; 8] = [
    f64::NEG_INFINITY,
    -1.5,
    -0.0,
    0.0,
    1.0,
    2.5,
    3.0000000000000004,
    f64::INFINITY,
];

type Zset = BTreeMap<Bytes, f64>;

impl Db {
    fn z(&mut self, op: ZSetOp) -> Result<OpResult, RpcError> {
        self.run(KvOp::ZSet { op })
    }
}

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

/// Redis's order: score (-0 = 0), then member.
fn ordered(z: &Zset) -> Vec<(Bytes, f64)> {
    let mut v: Vec<(Bytes, f64)> = z.iter().map(|(m, s)| (m.clone(), *s)).collect();
    v.sort_by(|a, b| a.1.partial_cmp(&b.1).unwrap().then_with(|| a.0.cmp(&b.0)));
    v
}

fn text(s: f64) -> Bytes {
    let t = if s == f64::INFINITY {
        "+inf".to_string()
    } else if s == f64::NEG_INFINITY {
        "-inf".to_string()
    } else {
        format!("{s:e}")
    };
    Bytes::from(t)
}

fn bound(s: f64, excl: bool) -> Bytes {
    let mut t = if excl { b"(".to_vec() } else { Vec::new() };
    t.extend_from_slice(&text(s));
    Bytes::from(t)
}

#[derive(Debug, Clone)]
enum Cmd {
    Add(usize, u8, Vec<(usize, usize)>),
    Rem(usize, Vec<usize>),
    Scores(usize, Vec<usize>),
    Rank(usize, usize, bool),
    RankRange(usize, i64, i64, bool),
    ScoreRange(usize, (usize, bool), (usize, bool), bool, i64, i64),
    Count(usize, (usize, bool), (usize, bool)),
    RemRank(usize, i64, i64),
    Pop(usize, bool, u64),
    Store(usize, usize, usize, u8, u8, (usize, usize)),
}

fn cmd() -> impl Strategy<Value = Cmd> {
    let k = 0..KEYS.len();
    let m = 0..MEMBERS.len();
    let s = 0..SCORES.len();
    let flags = prop::sample::select(vec![
        0,
        add_flags::NX,
        add_flags::XX,
        add_flags::GT,
        add_flags::LT,
        add_flags::CH,
        add_flags::XX | add_flags::GT | add_flags::CH,
        add_flags::INCR,
        add_flags::INCR | add_flags::NX,
    ]);
    let sb = (s.clone(), any::<bool>());
    prop_oneof![
        4 => (k.clone(), flags, prop::collection::vec((s.clone(), m.clone()), 1..4))
            .prop_map(|(k, f, mut p)| {
                if f & add_flags::INCR != 0 {
                    p.truncate(1);
                }
                Cmd::Add(k, f, p)
            }),
        1 => (k.clone(), prop::collection::vec(m.clone(), 1..3)).prop_map(|(k, m)| Cmd::Rem(k, m)),
        1 => (k.clone(), prop::collection::vec(m.clone(), 1..3)).prop_map(|(k, m)| Cmd::Scores(k, m)),
        1 => (k.clone(), m.clone(), any::<bool>()).prop_map(|(k, m, r)| Cmd::Rank(k, m, r)),
        1 => (k.clone(), -7i64..7, -7i64..7, any::<bool>())
            .prop_map(|(k, a, z, r)| Cmd::RankRange(k, a, z, r)),
        1 => (k.clone(), sb.clone(), sb.clone(), any::<bool>(), -1i64..3, -1i64..3)
            .prop_map(|(k, lo, hi, r, o, c)| Cmd::ScoreRange(k, lo, hi, r, o, c)),
        1 => (k.clone(), sb.clone(), sb).prop_map(|(k, lo, hi)| Cmd::Count(k, lo, hi)),
        1 => (k.clone(), -7i64..7, -7i64..7).prop_map(|(k, a, z)| Cmd::RemRank(k, a, z)),
        1 => (k.clone(), any::<bool>(), 0u64..4).prop_map(|(k, x, c)| Cmd::Pop(k, x, c)),
        1 => (k.clone(), k.clone(), k, 0u8..3, 0u8..3, (0usize..3, 0usize..3))
            .prop_map(|(d, a, z, kind, agg, w)| Cmd::Store(d, a, z, kind, agg, w)),
    ]
}

/// The model's answer to ZADD, changing `z`.
fn model_add(z: &mut Zset, flags: u8, pairs: &[(f64, Bytes)]) -> Result<OpResult, RpcError> {
    let has = |f: u8| flags & f != 0;
    let (mut added, mut changed, mut last) = (0, 0, None);
    for (score, m) in pairs {
        match z.get(m).copied() {
            None if has(add_flags::XX) => {}
            None => {
                z.insert(m.clone(), score + 0.0);
                added += 1;
                last = Some(*score);
            }
            Some(_) if has(add_flags::NX) => {}
            Some(cur) => {
                let new = if has(add_flags::INCR) {
                    cur + score
                } else {
                    *score
                };
                if new.is_nan() {
                    return Err(RpcError::BadRequest {
                        message: "resulting score is not a number (NaN)".into(),
                    });
                }
                if (has(add_flags::GT) && new <= cur) || (has(add_flags::LT) && new >= cur) {
                    continue;
                }
                if new != cur {
                    z.insert(m.clone(), new + 0.0);
                    changed += 1;
                }
                last = Some(new);
            }
        }
    }
    Ok(if has(add_flags::INCR) {
        OpResult::Floats { values: vec![last] }
    } else if has(add_flags::CH) {
        OpResult::Int {
            value: added + changed,
        }
    } else {
        OpResult::Int { value: added }
    })
}

fn rank_slice(v: &[(Bytes, f64)], start: i64, stop: i64, rev: bool) -> Vec<(Bytes, f64)> {
    let n = v.len() as i64;
    let s = if start < 0 { n + start } else { start }.max(0);
    let e = if stop < 0 { n + stop } else { stop };
    if s > e || s >= n {
        return Vec::new();
    }
    let e = e.min(n - 1);
    let mut all = v.to_vec();
    if rev {
        all.reverse();
    }
    all[s as usize..=e as usize].to_vec()
}

fn in_score(s: f64, lo: (f64, bool), hi: (f64, bool)) -> bool {
    let above = if lo.1 { s > lo.0 } else { s >= lo.0 };
    let below = if hi.1 { s < hi.0 } else { s <= hi.0 };
    above && below
}

fn scored(items: Vec<(Bytes, f64)>) -> OpResult {
    OpResult::Scored { items }
}

fn combine_model(srcs: [&Zset; 2], kind: u8, agg: u8, w: [f64; 2]) -> Zset {
    let agg_f = |t: f64, v: f64| match agg {
        combine::MIN => {
            if v < t {
                v
            } else {
                t
            }
        }
        combine::MAX => {
            if v > t {
                v
            } else {
                t
            }
        }
        _ => {
            let s = t + v;
            if s.is_nan() { 0.0 } else { s }
        }
    };
    let first = |wt: f64, s: f64| if (wt * s).is_nan() { 0.0 } else { wt * s };
    // Smallest first (stable), as Redis sorts the sources.
    let mut order = [(srcs[0], w[0]), (srcs[1], w[1])];
    if order[1].0.len() < order[0].0.len() {
        order.swap(0, 1);
    }
    let mut out = Zset::new();
    match kind {
        combine::UNION => {
            for (z, wt) in order {
                for (m, s) in z {
                    let v = first(wt, *s);
                    let e = out.get(m).map_or(v, |t| agg_f(*t, v));
                    out.insert(m.clone(), e);
                }
            }
        }
        combine::INTER => {
            for (m, s) in order[0].0 {
                if let Some(s2) = order[1].0.get(m) {
                    out.insert(m.clone(), agg_f(first(order[0].1, *s), s2 * order[1].1));
                }
            }
        }
        _ => {
            for (m, s) in srcs[0] {
                if !srcs[1].contains_key(m) {
                    out.insert(m.clone(), *s);
                }
            }
        }
    }
    out.into_iter().map(|(m, s)| (m, s + 0.0)).collect()
}

fn step(db: &mut Db, model: &mut [Zset; 3], c: &Cmd) {
    let key = |k: usize| b(KEYS[k]);
    let (got, want) = match c.clone() {
        Cmd::Add(k, flags, pairs) => {
            let pairs: Vec<(f64, Bytes)> = pairs
                .iter()
                .map(|(s, m)| (SCORES[*s], b(MEMBERS[*m])))
                .collect();
            let mut z = model[k].clone();
            let want = model_add(&mut z, flags, &pairs);
            if want.is_ok() {
                model[k] = z;
            }
            let op = ZSetOp::Add {
                key: key(k),
                flags,
                scores: pairs.iter().map(|p| p.0).collect(),
                members: pairs.iter().map(|p| p.1.clone()).collect(),
            };
            (db.z(op), want)
        }
        Cmd::Rem(k, ms) => {
            let members: Vec<Bytes> = ms.iter().map(|m| b(MEMBERS[*m])).collect();
            let n = members
                .iter()
                .filter(|m| model[k].remove(*m).is_some())
                .count();
            let op = ZSetOp::Rem {
                key: key(k),
                members,
            };
            (db.z(op), Ok(OpResult::Int { value: n as i64 }))
        }
        Cmd::Scores(k, ms) => {
            let members: Vec<Bytes> = ms.iter().map(|m| b(MEMBERS[*m])).collect();
            let values = members.iter().map(|m| model[k].get(m).copied()).collect();
            let op = ZSetOp::Scores {
                key: key(k),
                members,
            };
            (db.z(op), Ok(OpResult::Floats { values }))
        }
        Cmd::Rank(k, m, rev) => {
            let mut v = ordered(&model[k]);
            if rev {
                v.reverse();
            }
            let values = v
                .iter()
                .position(|(x, _)| x == MEMBERS[m].as_bytes())
                .map(|p| vec![p as i64])
                .unwrap_or_default();
            let op = ZSetOp::Rank {
                key: key(k),
                member: b(MEMBERS[m]),
                rev,
            };
            (db.z(op), Ok(OpResult::Ints { values }))
        }
        Cmd::RankRange(k, start, stop, rev) => {
            let want = rank_slice(&ordered(&model[k]), start, stop, rev);
            let op = ZSetOp::Range {
                key: key(k),
                by: by::RANK,
                min: Bytes::from(start.to_string()),
                max: Bytes::from(stop.to_string()),
                rev,
                offset: 0,
                count: -1,
            };
            (db.z(op), Ok(scored(want)))
        }
        Cmd::ScoreRange(k, lo, hi, rev, offset, count) => {
            let (lo, hi) = ((SCORES[lo.0], lo.1), (SCORES[hi.0], hi.1));
            let mut v: Vec<_> = ordered(&model[k])
                .into_iter()
                .filter(|(_, s)| in_score(*s, lo, hi))
                .collect();
            if rev {
                v.reverse();
            }
            let want = if offset < 0 {
                Vec::new()
            } else {
                let take = usize::try_from(count).unwrap_or(usize::MAX);
                v.into_iter().skip(offset as usize).take(take).collect()
            };
            let op = ZSetOp::Range {
                key: key(k),
                by: by::SCORE,
                min: bound(lo.0, lo.1),
                max: bound(hi.0, hi.1),
                rev,
                offset,
                count,
            };
            (db.z(op), Ok(scored(want)))
        }
        Cmd::Count(k, lo, hi) => {
            let (lo, hi) = ((SCORES[lo.0], lo.1), (SCORES[hi.0], hi.1));
            let n = model[k].values().filter(|s| in_score(**s, lo, hi)).count();
            let op = ZSetOp::Count {
                key: key(k),
                by: by::SCORE,
                min: bound(lo.0, lo.1),
                max: bound(hi.0, hi.1),
            };
            (db.z(op), Ok(OpResult::Int { value: n as i64 }))
        }
        Cmd::RemRank(k, start, stop) => {
            let gone = rank_slice(&ordered(&model[k]), start, stop, false);
            for (m, _) in &gone {
                model[k].remove(m);
            }
            let op = ZSetOp::RemRange {
                key: key(k),
                by: by::RANK,
                min: Bytes::from(start.to_string()),
                max: Bytes::from(stop.to_string()),
            };
            let value = gone.len() as i64;
            (db.z(op), Ok(OpResult::Int { value }))
        }
        Cmd::Pop(k, max, count) => {
            let mut v = ordered(&model[k]);
            if max {
                v.reverse();
            }
            v.truncate(count as usize);
            for (m, _) in &v {
                model[k].remove(m);
            }
            let op = ZSetOp::Pop {
                key: key(k),
                keys: vec![],
                max,
                count,
                named: false,
            };
            (db.z(op), Ok(scored(v)))
        }
        Cmd::Store(d, a, z, kind, agg, (w1, w2)) => {
            let ws = [1.0, 2.0, -1.0];
            let w = [ws[w1], ws[w2]];
            let weights = if kind == combine::DIFF {
                vec![]
            } else {
                w.to_vec()
            };
            let w = if kind == combine::DIFF { [1.0, 1.0] } else { w };
            let out = combine_model([&model[a], &model[z]], kind, agg, w);
            let n = out.len() as i64;
            model[d] = out;
            let op = ZSetOp::Combine {
                key: key(d),
                keys: vec![key(a), key(z)],
                kind,
                weights,
                aggregate: agg,
                store: true,
            };
            (db.z(op), Ok(OpResult::Int { value: n }))
        }
    };
    assert_eq!(show(&got), show(&want), "{c:?}");
    for (k, z) in model.iter().enumerate() {
        let card = db.z(ZSetOp::Card { key: key(k) }).unwrap();
        assert_eq!(
            card,
            OpResult::Int {
                value: z.len() as i64
            },
            "ZCARD {k} after {c:?}"
        );
        let all = db
            .z(ZSetOp::Range {
                key: key(k),
                by: by::RANK,
                min: b("0"),
                max: b("-1"),
                rev: false,
                offset: 0,
                count: -1,
            })
            .unwrap();
        assert_eq!(
            show(&Ok(all)),
            show(&Ok(scored(ordered(z)))),
            "{k} after {c:?}"
        );
    }
}

/// Results with every float as its bits, so -0 and 0 differ.
fn show(r: &Result<OpResult, RpcError>) -> String {
    match r {
        Ok(OpResult::Scored { items }) => format!(
            "{:?}",
            items
                .iter()
                .map(|(m, s)| (m.clone(), s.to_bits()))
                .collect::<Vec<_>>()
        ),
        Ok(OpResult::Floats { values }) => format!(
            "{:?}",
            values
                .iter()
                .map(|v| v.map(f64::to_bits))
                .collect::<Vec<_>>()
        ),
        other => format!("{other:?}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    #[test]
    fn random_zset_commands_match_the_model(cmds in prop::collection::vec(cmd(), 1..40)) {
        let mut db = Db::new();
        let mut model: [Zset; 3] = Default::default();
        for c in &cmds {
            step(&mut db, &mut model, c);
        }
    }
}

#[test]
fn an_emptied_zset_is_deleted_with_its_entries() {
    let mut db = Db::new();
    db.z(ZSetOp::Add {
        key: b("z"),
        flags: 0,
        scores: vec![1.0, 2.0],
        members: vec![b("a"), b("b")],
    })
    .unwrap();
    assert_eq!(db.store.len(), 5, "metadata + two entries per member");
    db.z(ZSetOp::Rem {
        key: b("z"),
        members: vec![b("a"), b("b")],
    })
    .unwrap();
    assert!(db.store.is_empty(), "nothing left of the sorted set");
}

#[test]
fn negative_zero_is_stored_as_zero_but_incr_answers_it() {
    let mut db = Db::new();
    let r = db.z(ZSetOp::Add {
        key: b("z"),
        flags: add_flags::INCR,
        scores: vec![-0.0],
        members: vec![b("m")],
    });
    assert_eq!(
        show(&r),
        show(&Ok(OpResult::Floats {
            values: vec![Some(-0.0)]
        }))
    );
    let s = db.z(ZSetOp::Scores {
        key: b("z"),
        members: vec![b("m")],
    });
    assert_eq!(
        show(&s),
        show(&Ok(OpResult::Floats {
            values: vec![Some(0.0)]
        }))
    );
}

#[test]
fn range_bounds_that_do_not_parse_are_refused_before_the_type_check() {
    let mut db = Db::new();
    let put = KvOp::StrSet {
        key: b("s"),
        value: b("x"),
        expiry: net::message::kv::Expiry::Persist {},
        cond: net::message::kv::Cond::Always {},
        get_old: false,
    };
    db.run(put).unwrap();
    let range = |min: &str| ZSetOp::Count {
        key: b("s"),
        by: by::SCORE,
        min: b(min),
        max: b("1"),
    };
    assert_eq!(
        db.z(range("x")),
        Err(RpcError::BadRequest {
            message: "min or max is not a float".into()
        })
    );
    assert_eq!(db.z(range("1")), Err(RpcError::WrongType {}));
}
