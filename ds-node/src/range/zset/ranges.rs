//! Ranges of a sorted set: by rank (a seek to the first rank through the set's rank index,
//! `O(log n + B + k)`; a small set walks from the nearer end, `O(rank + k)`), by score (a
//! seek, `O(log n + k)`, and `LIMIT offset` through the rank index) and by member (a seek
//! within the one score when all scores are equal, Redis's precondition; otherwise Redis's
//! listpack walk, `O(n)`). Counts are a difference of two ranks.

use bytes::Bytes;
use net::RpcError;
use net::message::kv::{OpResult, ZSetOp};

use super::spec::{self, LexBound, ScoreBound, Spec};
use super::{Z, bad, index_key, stored};
use crate::keyspace::{self, ZSET_SCORE, element_prefix};
use crate::range::apply::{Apply, after, ok_int};
use crate::range::store::KvStore;

impl<S: KvStore> Apply<'_, '_, S> {
    /// Executes `Range`, `RangeStore`, `Count` and `RemRange`.
    pub(in crate::range) fn zset_ranges(&mut self, op: &ZSetOp) -> Result<OpResult, RpcError> {
        match op {
            ZSetOp::Range {
                key,
                by,
                min,
                max,
                rev,
                offset,
                count,
            } => {
                let spec = spec::parse(*by, min, max)?;
                let items = match self.zget(key)? {
                    None => Vec::new(),
                    Some(z) => self.select(key, z, &spec, *rev, *offset, *count),
                };
                Ok(OpResult::Scored {
                    items: items.into_iter().map(|(s, m)| (m, s)).collect(),
                })
            }
            ZSetOp::RangeStore {
                key,
                keys,
                by,
                min,
                max,
                rev,
                offset,
                count,
            } => {
                let src = keys
                    .first()
                    .ok_or_else(|| bad("ZRANGESTORE needs a source"))?;
                let spec = spec::parse(*by, min, max)?;
                let items = match self.zget(src)? {
                    None => Vec::new(),
                    Some(z) => self.select(src, z, &spec, *rev, *offset, *count),
                };
                ok_int(self.zreplace(key, &items))
            }
            ZSetOp::Count { key, by, min, max } => {
                let spec = spec::parse(*by, min, max)?;
                let Some(z) = self.zget(key)? else {
                    return ok_int(0);
                };
                let n = match self.seek_bounds(key, z, &spec) {
                    Some(Some((lo, hi))) => self.count_between(key, z, &lo, &hi),
                    Some(None) => 0,
                    None => self.select(key, z, &spec, false, 0, -1).len() as u64,
                };
                ok_int(i64::try_from(n).unwrap_or(i64::MAX))
            }
            ZSetOp::RemRange { key, by, min, max } => {
                let spec = spec::parse(*by, min, max)?;
                let Some(z) = self.zget(key)? else {
                    return ok_int(0);
                };
                let items = self.select(key, z, &spec, false, 0, -1);
                for (s, m) in &items {
                    self.zdelete(key, z.version, m, *s);
                }
                if !items.is_empty() {
                    self.zset_count(key, z, z.count.saturating_sub(items.len() as u64));
                }
                ok_int(i64::try_from(items.len()).unwrap_or(i64::MAX))
            }
            _ => Err(bad("not a range operation")),
        }
    }

    /// The members of `spec`, in order (reversed when `rev`), `LIMIT offset count` applied
    /// for score and member ranges (count < 0: all; offset < 0: none).
    pub(in crate::range) fn select(
        &self,
        key: &[u8],
        z: Z,
        spec: &Spec,
        rev: bool,
        offset: i64,
        count: i64,
    ) -> Vec<(f64, Bytes)> {
        if let Spec::Rank(start, stop) = spec {
            return self.by_rank(key, z, *start, *stop, rev);
        }
        let Ok(offset) = usize::try_from(offset) else {
            return Vec::new();
        };
        let limit = usize::try_from(count).unwrap_or(usize::MAX);
        match self.seek_bounds(key, z, spec) {
            Some(Some((lo, hi))) => self.walk_offset(key, z, (lo, hi), rev, offset, limit),
            Some(None) => Vec::new(),
            None => {
                let Spec::Lex(min, max) = spec else {
                    return Vec::new();
                };
                let all = self.lex_walk(key, z, min, max, rev);
                all.into_iter().skip(offset).take(limit).collect()
            }
        }
    }

    /// `[lo, hi)` of the index entries of a score range, or of a member range when every
    /// score is equal (`Some(None)`: empty); `None`: a member range over unequal scores.
    fn seek_bounds(&self, key: &[u8], z: Z, spec: &Spec) -> Option<Option<(Bytes, Bytes)>> {
        let prefix = element_prefix(self.db, key, ZSET_SCORE, z.version);
        let (lo, hi) = match spec {
            Spec::Rank(..) => return None,
            Spec::Score(min, max) => (score_lo(&prefix, *min), score_hi(&prefix, *max)),
            Spec::Lex(min, max) => {
                let score = self.uniform_score(key, z)?;
                let base = index_key(self.db, key, z.version, keyspace::score_bytes(score), &[]);
                match (lex_lo(&base, min), lex_hi(&base, max)) {
                    (Some(lo), Some(hi)) => (lo, hi),
                    _ => return Some(None),
                }
            }
        };
        Some((lo < hi).then_some((lo, hi)))
    }

    /// [`Apply::walk`] of `[lo, hi)` of `z`'s score index, skipping `offset` through the
    /// rank index when the set has one (a seek to the rank instead of a walk past it).
    fn walk_offset(
        &self,
        key: &[u8],
        z: Z,
        (lo, hi): (Bytes, Bytes),
        rev: bool,
        offset: usize,
        limit: usize,
    ) -> Vec<(f64, Bytes)> {
        if offset == 0 || limit == 0 || !self.has_rank_index(key, z) {
            return self.walk(lo, Some(hi), rev, offset, limit);
        }
        let (a, b) = (self.rank_before(key, z, &lo), self.rank_before(key, z, &hi));
        let offset = offset as u64;
        if a.saturating_add(offset) >= b {
            return Vec::new();
        }
        let r = if rev { b - 1 - offset } else { a + offset };
        match self.key_at_rank(key, z, r).flatten() {
            Some(k) if rev => self.walk(lo, Some(after(&k)), true, 0, limit),
            Some(k) => self.walk(k, Some(hi), false, 0, limit),
            None => Vec::new(),
        }
    }

    /// The score of every member when all are equal.
    fn uniform_score(&self, key: &[u8], z: Z) -> Option<f64> {
        let (lo, hi) = self.index_bounds(key, z.version);
        let first = self.walk(lo.clone(), hi.clone(), false, 0, 1);
        let last = self.walk(lo, hi, true, 0, 1);
        match (first.first(), last.first()) {
            (Some(a), Some(b)) if a.0 == b.0 => Some(a.0),
            _ => None,
        }
    }

    /// Redis's listpack walk for a member range over unequal scores: from the start (end),
    /// skip to the first member in the range, then take members while in it.
    fn lex_walk(
        &self,
        key: &[u8],
        z: Z,
        min: &LexBound,
        max: &LexBound,
        rev: bool,
    ) -> Vec<(f64, Bytes)> {
        let (lo, hi) = self.index_bounds(key, z.version);
        let all = self.walk(lo, hi, rev, 0, usize::MAX);
        // `zzlIsInLexRange`: an empty range, a last member below min or a first member above
        // max (in score order) select nothing.
        let (first, last) = match (all.first(), all.last()) {
            (Some(a), Some(b)) if rev => (&b.1, &a.1),
            (Some(a), Some(b)) => (&a.1, &b.1),
            _ => return Vec::new(),
        };
        if empty_lex(min, max) || !min.below(last) || !max.above(first) {
            return Vec::new();
        }
        let (enter, stay): (&MemberTest<'_>, &MemberTest<'_>) = if rev {
            (&|m| max.above(m), &|m| min.below(m))
        } else {
            (&|m| min.below(m), &|m| max.above(m))
        };
        all.into_iter()
            .skip_while(|(_, m)| !enter(m))
            .take_while(|(_, m)| stay(m))
            .collect()
    }

    /// Ranks `start..=stop` as `zrangeGenericCommand` clamps them: a seek to the first
    /// through the rank index, else a walk from the nearer end.
    fn by_rank(&self, key: &[u8], z: Z, start: i64, stop: i64, rev: bool) -> Vec<(f64, Bytes)> {
        let n = i64::try_from(z.count).unwrap_or(i64::MAX);
        let mut s = if start < 0 { n + start } else { start };
        let mut e = if stop < 0 { n + stop } else { stop };
        s = s.max(0);
        if s > e || s >= n {
            return Vec::new();
        }
        e = e.min(n - 1);
        // Forward ranks [a, b]: for REV, rank r counts from the end.
        let (a, b) = if rev { (n - 1 - e, n - 1 - s) } else { (s, e) };
        let len = (b - a + 1) as usize;
        let (lo, hi) = self.index_bounds(key, z.version);
        let from_end = n - 1 - b;
        let seek = self.key_at_rank(key, z, a as u64);
        let mut items = if let Some(start) = seek {
            start.map_or_else(Vec::new, |k| self.walk(k, hi, false, 0, len))
        } else if a <= from_end {
            self.walk(lo, hi, false, a as usize, len)
        } else {
            let mut v = self.walk(lo, hi, true, from_end as usize, len);
            v.reverse();
            v
        };
        if rev {
            items.reverse();
        }
        items
    }
}

/// A test on a member.
type MemberTest<'a> = dyn Fn(&[u8]) -> bool + 'a;

/// `zslParseLexRange`'s always-empty ranges: min above max, or equal with an exclusive end.
fn empty_lex(min: &LexBound, max: &LexBound) -> bool {
    use std::cmp::Ordering::{Equal, Greater};
    let rank = |b: &LexBound| match b {
        LexBound::Min => 0,
        LexBound::Member { .. } => 1,
        LexBound::Max => 2,
    };
    let exclusive = |b: &LexBound| {
        matches!(
            b,
            LexBound::Member {
                exclusive: true,
                ..
            }
        )
    };
    let cmp = match (min, max) {
        (LexBound::Member { member: a, .. }, LexBound::Member { member: b, .. }) => a.cmp(b),
        _ => rank(min).cmp(&rank(max)),
    };
    cmp == Greater || (cmp == Equal && (exclusive(min) || exclusive(max)))
}

fn with_score(prefix: &[u8], score: f64) -> Vec<u8> {
    let mut k = prefix.to_vec();
    k.extend_from_slice(&keyspace::score_bytes(stored(score)));
    k
}

fn end_of(k: &[u8]) -> Bytes {
    keyspace::prefix_end(k).unwrap_or_else(|| Bytes::from(vec![0xff; k.len() + 1]))
}

fn score_lo(prefix: &[u8], min: ScoreBound) -> Bytes {
    let k = with_score(prefix, min.value);
    if min.exclusive {
        end_of(&k)
    } else {
        Bytes::from(k)
    }
}

fn score_hi(prefix: &[u8], max: ScoreBound) -> Bytes {
    let k = with_score(prefix, max.value);
    if max.exclusive {
        Bytes::from(k)
    } else {
        end_of(&k)
    }
}

fn lex_lo(base: &[u8], min: &LexBound) -> Option<Bytes> {
    match min {
        LexBound::Min => Some(Bytes::copy_from_slice(base)),
        LexBound::Max => None,
        LexBound::Member { member, exclusive } => {
            let mut k = base.to_vec();
            k.extend_from_slice(member);
            Some(if *exclusive {
                after(&k)
            } else {
                Bytes::from(k)
            })
        }
    }
}

fn lex_hi(base: &[u8], max: &LexBound) -> Option<Bytes> {
    match max {
        LexBound::Min => None,
        LexBound::Max => Some(end_of(base)),
        LexBound::Member { member, exclusive } => {
            let mut k = base.to_vec();
            k.extend_from_slice(member);
            Some(if *exclusive {
                Bytes::from(k)
            } else {
                after(&k)
            })
        }
    }
}
