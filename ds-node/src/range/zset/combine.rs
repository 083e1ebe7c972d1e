//! `ZUNION`/`ZINTER`/`ZDIFF` (and `STORE`), `ZINTERCARD` on sources of one range, as
//! `zunionInterDiffGenericCommand` computes them: sources are sorted sets or sets (score 1),
//! union and intersection take the sources smallest first (the order of the sums), a weight
//! times a score that is NaN counts as 0, a sum that is NaN (inf + -inf) is 0.

use std::collections::BTreeMap;

use bytes::Bytes;
use net::RpcError;
use net::message::kv::{OpResult, ZSetOp};
use net::message::zset::combine;

use super::{bad, stored};
use crate::keyspace::{self, SET_MEMBER, element_prefix};
use crate::range::apply::{Apply, Live, ok_int};
use crate::range::meta::Meta;
use crate::range::store::KvStore;

/// One source: its members with their scores.
type Source = BTreeMap<Bytes, f64>;

impl<S: KvStore> Apply<'_, '_, S> {
    /// Executes `Combine` and `InterCard`.
    pub(in crate::range) fn zset_combine(&mut self, op: &ZSetOp) -> Result<OpResult, RpcError> {
        match op {
            ZSetOp::Combine {
                key,
                keys,
                kind,
                weights,
                aggregate,
                store,
            } => {
                let sources = self.sources(keys)?;
                let items = compute(sources, *kind, weights, *aggregate)?;
                if *store {
                    let stored: Vec<(f64, Bytes)> =
                        items.into_iter().map(|(m, s)| (s, m)).collect();
                    ok_int(self.zreplace(key, &stored))
                } else {
                    Ok(OpResult::Scored { items })
                }
            }
            ZSetOp::InterCard { keys, limit, .. } => {
                let sources = self.sources(keys)?;
                let mut n = inter(sources, &[], combine::SUM).len() as u64;
                if *limit > 0 {
                    n = n.min(*limit);
                }
                ok_int(i64::try_from(n).unwrap_or(i64::MAX))
            }
            _ => Err(bad("not a combining operation")),
        }
    }

    /// Every source, in argument order (absent: empty); WRONGTYPE for another type.
    fn sources(&self, keys: &[Bytes]) -> Result<Vec<Source>, RpcError> {
        keys.iter().map(|k| self.source(k)).collect()
    }

    fn source(&self, key: &[u8]) -> Result<Source, RpcError> {
        match self.live(key)? {
            None => Ok(Source::new()),
            Some(Live {
                meta: Meta::ZSet { version, .. },
                ..
            }) => {
                let (lo, hi) = self.index_bounds(key, version);
                Ok(self
                    .walk(lo, hi, false, 0, usize::MAX)
                    .into_iter()
                    .map(|(s, m)| (m, s))
                    .collect())
            }
            Some(Live {
                meta: Meta::Set { version, .. },
                ..
            }) => {
                let prefix = element_prefix(key, SET_MEMBER, version);
                let end = keyspace::prefix_end(&prefix);
                Ok(self
                    .store
                    .scan(&prefix, end.as_deref(), usize::MAX, false)
                    .into_iter()
                    .filter_map(|(k, _)| Some((Bytes::copy_from_slice(k.get(prefix.len()..)?), 1.0)))
                    .collect())
            }
            Some(_) => Err(RpcError::WrongType {}),
        }
    }
}

/// The result of combining `sources`, in Redis's order: `(member, score)` by score (-0 as 0)
/// then member. Scores are as computed (a -0 prints as -0 in a ZUNION reply).
pub(crate) fn compute(
    sources: Vec<Source>,
    kind: u8,
    weights: &[f64],
    aggregate: u8,
) -> Result<Vec<(Bytes, f64)>, RpcError> {
    let map = match kind {
        combine::UNION => union(sources, weights, aggregate),
        combine::INTER => inter(sources, weights, aggregate),
        combine::DIFF => diff(sources),
        _ => return Err(bad("unknown set operation")),
    };
    let mut items: Vec<(Bytes, f64)> = map.into_iter().collect();
    items.sort_by(|a, b| {
        stored(a.1)
            .total_cmp(&stored(b.1))
            .then_with(|| a.0.cmp(&b.0))
    });
    Ok(items)
}

/// Sources with their weights (1 when not given), smallest first (a stable sort, as glibc's
/// `qsort` merge sort is).
fn weighted(sources: Vec<Source>, weights: &[f64]) -> Vec<(Source, f64)> {
    let mut v: Vec<(Source, f64)> = sources
        .into_iter()
        .enumerate()
        .map(|(i, s)| (s, weights.get(i).copied().unwrap_or(1.0)))
        .collect();
    v.sort_by_key(|(s, _)| s.len());
    v
}

fn aggregate_into(target: &mut f64, val: f64, aggregate: u8) {
    match aggregate {
        combine::MIN => {
            if val < *target {
                *target = val;
            }
        }
        combine::MAX => {
            if val > *target {
                *target = val;
            }
        }
        _ => {
            *target += val;
            if target.is_nan() {
                *target = 0.0;
            }
        }
    }
}

fn first_score(weight: f64, score: f64) -> f64 {
    let s = weight * score;
    if s.is_nan() { 0.0 } else { s }
}

fn union(sources: Vec<Source>, weights: &[f64], aggregate: u8) -> Source {
    let mut acc = Source::new();
    for (src, w) in weighted(sources, weights) {
        for (m, s) in src {
            let v = first_score(w, s);
            match acc.get_mut(&m) {
                Some(t) => aggregate_into(t, v, aggregate),
                None => {
                    acc.insert(m, v);
                }
            }
        }
    }
    acc
}

fn inter(sources: Vec<Source>, weights: &[f64], aggregate: u8) -> Source {
    let srcs = weighted(sources, weights);
    let mut out = Source::new();
    let Some(((first, w0), rest)) = srcs.split_first() else {
        return out;
    };
    'members: for (m, s) in first {
        let mut score = first_score(*w0, *s);
        for (src, w) in rest {
            let Some(v) = src.get(m) else {
                continue 'members;
            };
            aggregate_into(&mut score, v * w, aggregate);
        }
        out.insert(m.clone(), score);
    }
    out
}

fn diff(sources: Vec<Source>) -> Source {
    let mut it = sources.into_iter();
    let Some(mut first) = it.next() else {
        return Source::new();
    };
    for other in it {
        first.retain(|m, _| !other.contains_key(m));
    }
    first
}
