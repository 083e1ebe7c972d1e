//! The set algebra of `ZUNION`/`ZINTER`/`ZDIFF` as `zunionInterDiffGenericCommand` computes it,
//! shared by the shards (sources in one range) and the proxy (sources across ranges): union
//! and intersection take the sources smallest first (the order of the sums), a weight times a
//! score that is NaN counts as 0, a sum that is NaN (inf + -inf) is 0.

use std::collections::BTreeMap;

use bytes::Bytes;

use super::combine;

/// One source: its members with their scores.
pub type Source = BTreeMap<Bytes, f64>;

/// The stored form of a score: -0 as +0.
fn stored(score: f64) -> f64 {
    score + 0.0
}

/// The result of combining `sources` ([`combine`] kind and aggregate; `None`: an unknown
/// kind), in Redis's order: `(member, score)` by score (-0 as 0)
/// then member. Scores are as computed (a -0 prints as -0 in a ZUNION reply).
pub fn compute(
    sources: Vec<Source>,
    kind: u8,
    weights: &[f64],
    aggregate: u8,
) -> Option<Vec<(Bytes, f64)>> {
    let map = match kind {
        combine::UNION => union(sources, weights, aggregate),
        combine::INTER => inter(sources, weights, aggregate),
        combine::DIFF => diff(sources),
        _ => return None,
    };
    let mut items: Vec<(Bytes, f64)> = map.into_iter().collect();
    items.sort_by(|a, b| {
        stored(a.1)
            .total_cmp(&stored(b.1))
            .then_with(|| a.0.cmp(&b.0))
    });
    Some(items)
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

/// The intersection (`ZINTER`, `ZINTERCARD`).
pub fn inter(sources: Vec<Source>, weights: &[f64], aggregate: u8) -> Source {
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
