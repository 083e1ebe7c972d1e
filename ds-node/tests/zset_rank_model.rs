//! Rank indexes (`range::zrank`) against the counting path and a `BTreeMap`: random writes
//! (ZADD, ZINCRBY, ZREM, ZPOPMIN/ZPOPMAX, ZREMRANGEBY*, ZUNIONSTORE, RENAME, DEL) on sets that
//! cross the index threshold both ways, applied to two stores alike — one with rank indexes
//! (a tiny threshold and bucket size, so buckets split and merge all the time), one
//! without — and after every write every rank query of every key asked of both: ZRANK,
//! ZREVRANK, ZRANGE by rank, ZCOUNT, ZLEXCOUNT, ZRANGEBYSCORE/ZREVRANGEBYSCORE with LIMIT and
//! ZREMRANGEBYRANK's selection. Both answers must be equal, and ranks must be the model's.
#![allow(clippy::unwrap_used)] // a test fails by panicking

mod common;

use std::collections::BTreeMap;

use bytes::Bytes;
use common::store::Db;
use ds_node::range::zrank::RankConfig;
use net::message::kv::{KvOp, OpResult, ZSetOp};
use net::message::zset::{add_flags, by, combine};
use proptest::prelude::*;

/// Keys: two with varied scores, one whose scores are all 0 (member ranges seek).
const KEYS: [&str; 3] = ["k0", "k1", "u"];
const MEMBERS: usize = 120;
const THRESHOLD: u64 = 16;

type Zset = BTreeMap<Bytes, f64>;

/// The same writes applied to a store with rank indexes and to one without.
struct Pair {
    indexed: Db,
    counted: Db,
}

impl Pair {
    fn new() -> Self {
        let cfg = RankConfig {
            threshold: THRESHOLD,
            bucket: 2,
            memory_max_bytes: 1 << 20,
        };
        Self {
            indexed: Db::new().with_rank_indexes(cfg),
            counted: Db::new(),
        }
    }

    /// Runs `op` on both stores; their answers, which must be equal.
    fn run(&mut self, op: KvOp) -> OpResult {
        let indexed = self.indexed.run(&op);
        let counted = self.counted.run(&op);
        assert_eq!(indexed, counted, "indexed and counted differ on {op:?}");
        indexed.unwrap_or(OpResult::Unit {})
    }

    fn z(&mut self, op: ZSetOp) -> OpResult {
        self.run(KvOp::ZSet { op })
    }

    fn hits(&self) -> u64 {
        let z = self.indexed.zranks.as_ref().unwrap().borrow();
        z.stats().hits
    }
}

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

fn member(i: usize) -> Bytes {
    Bytes::from(format!("m{i:03}"))
}

fn score_of(key: usize, s: i8) -> f64 {
    if KEYS[key] == "u" { 0.0 } else { f64::from(s) }
}

/// Redis's order: score, then member.
fn ordered(z: &Zset) -> Vec<(Bytes, f64)> {
    let mut v: Vec<(Bytes, f64)> = z.iter().map(|(m, s)| (m.clone(), *s)).collect();
    v.sort_by(|a, b| a.1.partial_cmp(&b.1).unwrap().then_with(|| a.0.cmp(&b.0)));
    v
}

#[derive(Debug, Clone)]
enum Cmd {
    /// ZADD of members `from..from+n` with scores from `s` (stepping).
    AddMany(usize, usize, usize, i8),
    Incr(usize, usize, i8),
    Rem(usize, Vec<usize>),
    Pop(usize, bool, u64),
    RemRank(usize, i64, i64),
    RemScore(usize, i8, i8),
    RemLex(usize, usize, usize),
    Union(usize, usize),
    Rename(usize, usize),
    Del(usize),
}

fn cmd() -> impl Strategy<Value = Cmd> {
    let k = 0..KEYS.len();
    let m = 0..MEMBERS;
    prop_oneof![
        6 => (k.clone(), m.clone(), 1usize..30, -20i8..20)
            .prop_map(|(k, f, n, s)| Cmd::AddMany(k, f, n, s)),
        3 => (k.clone(), m.clone(), -5i8..5).prop_map(|(k, m, s)| Cmd::Incr(k, m, s)),
        2 => (k.clone(), prop::collection::vec(m.clone(), 1..12)).prop_map(|(k, m)| Cmd::Rem(k, m)),
        2 => (k.clone(), any::<bool>(), 0u64..12).prop_map(|(k, x, c)| Cmd::Pop(k, x, c)),
        1 => (k.clone(), -40i64..40, -40i64..40).prop_map(|(k, a, z)| Cmd::RemRank(k, a, z)),
        1 => (k.clone(), -20i8..20, -20i8..20).prop_map(|(k, a, z)| Cmd::RemScore(k, a, z)),
        1 => (k.clone(), m.clone(), m.clone()).prop_map(|(k, a, z)| Cmd::RemLex(k, a, z)),
        1 => (k.clone(), k.clone()).prop_map(|(d, s)| Cmd::Union(d, s)),
        1 => (k.clone(), k.clone()).prop_map(|(s, d)| Cmd::Rename(s, d)),
        1 => k.prop_map(Cmd::Del),
    ]
}

fn lex(i: usize) -> Bytes {
    let mut v = b"[".to_vec();
    v.extend_from_slice(&member(i));
    Bytes::from(v)
}

/// Applies `c` to both stores and to `model`.
fn write(p: &mut Pair, model: &mut [Zset; 3], c: &Cmd) {
    let key = |k: usize| b(KEYS[k]);
    match c.clone() {
        Cmd::AddMany(k, from, n, s) => {
            let pairs: Vec<(f64, Bytes)> = (0..n)
                .map(|i| {
                    let sc = score_of(k, s.wrapping_add((i % 7) as i8));
                    (sc, member((from + i * 3) % MEMBERS))
                })
                .collect();
            for (sc, m) in &pairs {
                model[k].insert(m.clone(), *sc);
            }
            p.z(ZSetOp::Add {
                key: key(k),
                flags: 0,
                scores: pairs.iter().map(|x| x.0).collect(),
                members: pairs.iter().map(|x| x.1.clone()).collect(),
            });
        }
        Cmd::Incr(k, m, s) => {
            let by_ = score_of(k, s);
            *model[k].entry(member(m)).or_insert(0.0) += by_;
            p.z(ZSetOp::Add {
                key: key(k),
                flags: add_flags::INCR,
                scores: vec![by_],
                members: vec![member(m)],
            });
        }
        Cmd::Rem(k, ms) => {
            for m in &ms {
                model[k].remove(&member(*m));
            }
            p.z(ZSetOp::Rem {
                key: key(k),
                members: ms.iter().map(|m| member(*m)).collect(),
            });
        }
        Cmd::Pop(k, max, count) => {
            let mut v = ordered(&model[k]);
            if max {
                v.reverse();
            }
            for (m, _) in v.iter().take(count as usize) {
                model[k].remove(m);
            }
            p.z(ZSetOp::Pop {
                key: key(k),
                keys: vec![],
                max,
                count,
                named: false,
            });
        }
        Cmd::RemRank(k, a, z) => rem_range(p, model, k, by::RANK, a.to_string(), z.to_string()),
        Cmd::RemScore(k, a, z) => rem_range(p, model, k, by::SCORE, a.to_string(), z.to_string()),
        Cmd::RemLex(k, a, z) => {
            let (lo, hi) = (lex(a.min(z)), lex(a.max(z)));
            if KEYS[k] == "u" {
                model[k].retain(|m, _| !(m[..] >= lo[1..] && m[..] <= hi[1..]));
                p.z(ZSetOp::RemRange {
                    key: key(k),
                    by: by::LEX,
                    min: lo,
                    max: hi,
                });
            }
        }
        Cmd::Union(d, s) => {
            let mut out = model[d].clone();
            for (m, sc) in &model[s] {
                *out.entry(m.clone()).or_insert(0.0) += sc;
            }
            if KEYS[d] == "u" || KEYS[s] == "u" {
                return;
            }
            model[d] = out;
            p.z(ZSetOp::Combine {
                key: key(d),
                keys: vec![key(d), key(s)],
                kind: combine::UNION,
                weights: vec![],
                aggregate: combine::SUM,
                store: true,
            });
        }
        Cmd::Rename(s, d) => {
            if s == d || model[s].is_empty() || (KEYS[d] == "u") != (KEYS[s] == "u") {
                return;
            }
            model[d] = std::mem::take(&mut model[s]);
            p.run(KvOp::KeyRename {
                key: key(s),
                dst: key(d),
                nx: false,
            });
        }
        Cmd::Del(k) => {
            model[k].clear();
            p.run(KvOp::KeyDel { key: key(k) });
        }
    }
}

fn rem_range(p: &mut Pair, model: &mut [Zset; 3], k: usize, by_: u8, a: String, z: String) {
    let r = p.z(ZSetOp::RemRange {
        key: b(KEYS[k]),
        by: by_,
        min: Bytes::from(a.clone()),
        max: Bytes::from(z.clone()),
    });
    // The removed members are checked by the queries that follow; the model follows the
    // store's own order.
    let v = ordered(&model[k]);
    let n = v.len() as i64;
    let gone: Vec<Bytes> = if by_ == by::RANK {
        let (mut s, mut e) = (a.parse::<i64>().unwrap(), z.parse::<i64>().unwrap());
        s = if s < 0 { (n + s).max(0) } else { s };
        e = if e < 0 { n + e } else { e.min(n - 1) };
        if s > e || s >= n {
            vec![]
        } else {
            v[s as usize..=e as usize]
                .iter()
                .map(|x| x.0.clone())
                .collect()
        }
    } else {
        let (lo, hi) = (a.parse::<f64>().unwrap(), z.parse::<f64>().unwrap());
        v.iter()
            .filter(|x| x.1 >= lo && x.1 <= hi)
            .map(|x| x.0.clone())
            .collect()
    };
    assert_eq!(
        r,
        OpResult::Int {
            value: gone.len() as i64
        }
    );
    for m in gone {
        model[k].remove(&m);
    }
}

/// Every rank query of key `k` on both stores (equal by [`Pair::run`]); ranks checked
/// against `model` too.
fn queries(p: &mut Pair, model: &[Zset; 3], k: usize, probe: usize) {
    let key = b(KEYS[k]);
    let v = ordered(&model[k]);
    let n = v.len() as i64;
    for (i, m) in [probe, probe * 7 + 3, probe * 13 + 1].iter().enumerate() {
        let m = member(m % MEMBERS);
        let rev = i == 1;
        let want = v.iter().position(|x| x.0 == m).map(|r| {
            let r = r as i64;
            vec![if rev { n - 1 - r } else { r }]
        });
        let got = p.z(ZSetOp::Rank {
            key: key.clone(),
            member: m,
            rev,
        });
        assert_eq!(
            got,
            OpResult::Ints {
                values: want.unwrap_or_default()
            }
        );
    }
    let r = (probe as i64 * 5) % (n.max(1) + 4) - 2;
    for (a, z, rev) in [(r, r + 9, false), (r, r + 3, true), (-r - 1, -1, false)] {
        let got = p.z(ZSetOp::Range {
            key: key.clone(),
            by: by::RANK,
            min: Bytes::from(a.to_string()),
            max: Bytes::from(z.to_string()),
            rev,
            offset: 0,
            count: -1,
        });
        let (s, e) = (
            if a < 0 { (n + a).max(0) } else { a },
            if z < 0 { n + z } else { z.min(n - 1) },
        );
        let mut want: Vec<(Bytes, f64)> = if s > e || s >= n {
            vec![]
        } else if rev {
            v.iter()
                .rev()
                .skip(s as usize)
                .take((e - s + 1) as usize)
                .cloned()
                .collect()
        } else {
            v[s as usize..=e as usize].to_vec()
        };
        want.iter_mut().for_each(|x| x.1 += 0.0);
        assert_eq!(
            got,
            OpResult::Scored { items: want },
            "ZRANGE {a} {z} rev={rev}"
        );
    }
    let lo = (probe % 23) as i64 - 12;
    for (min, max) in [
        (format!("{lo}"), format!("({}", lo + 6)),
        ("-inf".into(), "+inf".into()),
    ] {
        p.z(ZSetOp::Count {
            key: key.clone(),
            by: by::SCORE,
            min: Bytes::from(min.clone()),
            max: Bytes::from(max.clone()),
        });
        for (rev, offset, count) in [
            (false, probe as i64 % 9, 3),
            (true, probe as i64 % 11, 4),
            (false, 1, -1),
        ] {
            let (a, z) = if rev {
                (max.clone(), min.clone())
            } else {
                (min.clone(), max.clone())
            };
            let _ = (a, z);
            p.z(ZSetOp::Range {
                key: key.clone(),
                by: by::SCORE,
                min: Bytes::from(min.clone()),
                max: Bytes::from(max.clone()),
                rev,
                offset,
                count,
            });
        }
    }
    let (a, z) = (lex(probe % MEMBERS), lex((probe * 3) % MEMBERS));
    for (min, max) in [(a.clone(), z.clone()), (b("-"), z), (a, b("+"))] {
        p.z(ZSetOp::Count {
            key: key.clone(),
            by: by::LEX,
            min: min.clone(),
            max: max.clone(),
        });
        p.z(ZSetOp::Range {
            key: key.clone(),
            by: by::LEX,
            min,
            max,
            rev: probe % 2 == 0,
            offset: (probe % 5) as i64,
            count: 5,
        });
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn every_rank_answer_with_an_index_equals_the_counted_one_and_the_model(
        cmds in prop::collection::vec((cmd(), 0usize..1000), 1..80),
    ) {
        let mut p = Pair::new();
        let mut model: [Zset; 3] = Default::default();
        for (c, probe) in &cmds {
            write(&mut p, &mut model, c);
            for k in 0..KEYS.len() {
                queries(&mut p, &model, k, *probe);
            }
        }
    }
}

#[test]
fn a_large_set_is_answered_by_its_index_through_growth_shrinkage_and_deletion() {
    let mut p = Pair::new();
    let mut model: [Zset; 3] = Default::default();
    let script = [
        Cmd::AddMany(0, 0, 29, -3),
        Cmd::AddMany(0, 1, 29, 5),
        Cmd::AddMany(0, 2, 29, 0),
        Cmd::Pop(0, false, 11),
        Cmd::RemRank(0, 3, 20),
        Cmd::Pop(0, true, 11),
        Cmd::AddMany(0, 7, 29, -9),
        Cmd::Rename(0, 1),
        Cmd::AddMany(0, 0, 29, 1),
        Cmd::Del(1),
        Cmd::AddMany(1, 5, 29, 2),
        Cmd::AddMany(2, 0, 29, 0),
        Cmd::AddMany(2, 1, 29, 0),
        Cmd::RemLex(2, 10, 40),
    ];
    for (i, c) in script.iter().enumerate() {
        write(&mut p, &mut model, c);
        for k in 0..KEYS.len() {
            for probe in 0..40 {
                queries(&mut p, &model, k, probe + i);
            }
        }
    }
    assert!(p.hits() > 1000, "the index answered {} queries", p.hits());
    let z = p.indexed.zranks.as_ref().unwrap().borrow();
    assert!(z.memory_bytes() > 0 && z.stats().builds > 1);
}

/// ZADD of members `names` scored by `scores`.
fn zadd(key: &str, names: impl Iterator<Item = usize>, score: impl Fn(usize) -> f64) -> KvOp {
    let (scores, members): (Vec<f64>, Vec<Bytes>) = names.map(|i| (score(i), member(i))).unzip();
    KvOp::ZSet {
        op: ZSetOp::Add {
            key: b(key),
            flags: 0,
            scores,
            members,
        },
    }
}

fn zrank(key: &str, m: usize) -> KvOp {
    KvOp::ZSet {
        op: ZSetOp::Rank {
            key: b(key),
            member: member(m),
            rev: false,
        },
    }
}

#[test]
fn a_set_dropped_and_made_again_in_one_multi_is_not_ranked_by_the_old_index() {
    // Every collection a `Multi` creates gets the entry's version: the set made again after
    // the DEL (or the RENAME's copy) has the version of the one the index was built for.
    let mut p = Pair::new();
    let ops = vec![
        zadd("k0", 0..40, |i| i as f64),
        zrank("k0", 30),
        KvOp::KeyDel { key: b("k0") },
        zadd("k0", 50..90, |i| (i - 50) as f64 + 0.5),
        zrank("k0", 60),
        zadd("k1", 0..40, |i| (40 - i) as f64),
        KvOp::KeyRename {
            key: b("k1"),
            dst: b("k0"),
            nx: false,
        },
        zrank("k0", 30),
        zadd("k0", 100..101, |_| 0.5),
        zrank("k0", 100),
    ];
    let got = p.run(KvOp::Multi {
        watches: vec![],
        ops,
    });
    let OpResult::Multi { results } = got else {
        panic!("{got:?}")
    };
    let ranks: Vec<String> = results.iter().map(|r| format!("{r:?}")).collect();
    let want = |r: i64| {
        format!(
            "{:?}",
            net::message::kv::KvResponse::Ok {
                result: OpResult::Ints { values: vec![r] },
            }
        )
    };
    assert_eq!(ranks[1], want(30));
    assert_eq!(ranks[4], want(10), "member 60 of 50..90 scored i - 49.5");
    assert_eq!(
        ranks[7],
        want(9),
        "member 30 of 0..40 scored 40 - i: after scores 1..=9"
    );
    assert_eq!(ranks[9], want(0), "0.5 before the 40 members scored 1..=40");
    assert!(p.hits() >= 4, "the index answered {} ranks", p.hits());
}
