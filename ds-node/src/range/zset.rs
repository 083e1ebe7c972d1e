//! Sorted sets (Redis `t_zset.c`): a metadata entry (version, count), one engine entry per
//! member at `'Z' | version | member` (value: the score) and one per member in score order
//! at `'z' | version | score_bytes(score) | member` (value empty), [`crate::keyspace`].
//!
//! A member's score is a point read; the score index gives Redis's order (score, then member
//! bytes). A set of more than `zrank::THRESHOLD` members gets a rank index on its first
//! rank query ([`crate::range::zrank`], kept by `zinsert`/`zdelete`): a rank, a member at a
//! rank and a count are `O(log n + B)`; a smaller set counts entries (`O(rank)`, from the
//! nearer end), the reference the index is tested against (`rank`). Scores are stored with -0 made +0 (Redis's listpack
//! encoding, the one small sorted sets use, prints -0 as 0 once stored).

mod combine;
mod ranges;
mod rank;
mod spec;

use bytes::Bytes;
use net::RpcError;
use net::message::kv::{OpResult, ZSetOp};
use net::message::zset::add_flags;

use super::apply::{Apply, Live, len_i64, new_version, ok_int};
use super::meta::Meta;
use super::store::{Entry, KvStore};
use crate::keyspace::{self, ZSET_MEMBER, ZSET_SCORE, element_key, element_prefix};

/// Index entries read per engine scan.
const PAGE: usize = 1024;

/// The most members ZRANDMEMBER with a negative count draws (its reply is built in memory).
const MAX_RANDOM_DRAWS: u64 = 1 << 24;

/// A live sorted set.
#[derive(Debug, Clone, Copy)]
pub(super) struct Z {
    pub(super) version: u64,
    pub(super) count: u64,
    pub(super) expire: u64,
}

/// `RpcError::BadRequest` with Redis's text (the proxy adds `ERR `).
pub(super) fn bad(message: &str) -> RpcError {
    RpcError::BadRequest {
        message: message.into(),
    }
}

/// The stored form of a score: -0 as +0.
pub(super) fn stored(score: f64) -> f64 {
    score + 0.0
}

impl<S: KvStore> Apply<'_, '_, S> {
    /// Executes a sorted-set operation.
    pub(super) fn zset(&mut self, op: &ZSetOp) -> Result<OpResult, RpcError> {
        match op {
            ZSetOp::Card { key } => {
                let count = self.zset_meta(key)?.map_or(0, |(_, count, _)| count);
                ok_int(i64::try_from(count).unwrap_or(i64::MAX))
            }
            ZSetOp::Add {
                key,
                flags,
                scores,
                members,
            } => self.zadd(key, *flags, scores, members),
            ZSetOp::Rem { key, members } => self.zrem(key, members),
            ZSetOp::Scores { key, members } => {
                let z = self.zget(key)?;
                let values = members
                    .iter()
                    .map(|m| z.and_then(|z| self.zscore(key, z.version, m)))
                    .collect();
                Ok(OpResult::Floats { values })
            }
            ZSetOp::Rank { key, member, rev } => self.zrank(key, member, *rev),
            ZSetOp::Pop {
                key,
                keys,
                max,
                count,
                named,
            } => self.zpop_first(key, keys, *max, *count, *named),
            ZSetOp::RandMember {
                key,
                count,
                single,
                seed,
            } => self.zrandmember(key, *count, *single, *seed),
            ZSetOp::Scan { key, cursor, count } => self.zscan(key, cursor, *count),
            ZSetOp::Replace {
                key,
                scores,
                members,
            } => {
                let items: Vec<(f64, Bytes)> = scores
                    .iter()
                    .copied()
                    .zip(members.iter().cloned())
                    .collect();
                ok_int(self.zreplace(key, &items))
            }
            ZSetOp::Range { .. }
            | ZSetOp::RangeStore { .. }
            | ZSetOp::Count { .. }
            | ZSetOp::RemRange { .. } => self.zset_ranges(op),
            ZSetOp::Combine { .. } | ZSetOp::InterCard { .. } => self.zset_combine(op),
        }
    }

    /// `(version, count, expiry)` of sorted set `key`; WRONGTYPE for another type.
    pub(super) fn zset_meta(&self, key: &[u8]) -> Result<Option<(u64, u64, u64)>, RpcError> {
        match self.live(key)? {
            None => Ok(None),
            Some(Live {
                meta: Meta::ZSet { version, count },
                expire_at_ms,
            }) => Ok(Some((version, count, expire_at_ms))),
            Some(_) => Err(RpcError::WrongType {}),
        }
    }

    /// The live sorted set `key`; WRONGTYPE for another type.
    pub(super) fn zget(&self, key: &[u8]) -> Result<Option<Z>, RpcError> {
        Ok(self.zset_meta(key)?.map(|(version, count, expire)| Z {
            version,
            count,
            expire,
        }))
    }

    /// The score of `member`.
    pub(super) fn zscore(&self, key: &[u8], version: u64, member: &[u8]) -> Option<f64> {
        let e = self
            .store
            .get(&element_key(self.db, key, ZSET_MEMBER, version, member))?;
        let bytes: [u8; 8] = e.value.as_ref().try_into().ok()?;
        Some(keyspace::score_of(bytes))
    }

    /// Stores `member` with `score` (both entries; the caller removed an older score).
    pub(super) fn zinsert(&mut self, key: &[u8], version: u64, member: &[u8], score: f64) {
        let sb = keyspace::score_bytes(stored(score));
        let entry = |value: Bytes| Entry {
            value,
            expire_at_ms: 0,
        };
        self.store.put(
            element_key(self.db, key, ZSET_MEMBER, version, member),
            entry(Bytes::copy_from_slice(&sb)),
        );
        let k = index_key(self.db, key, version, sb, member);
        let suffix = k.len() - 8 - member.len();
        self.store.put(k.clone(), entry(Bytes::new()));
        self.rank_inserted(key, version, &k[suffix..]);
    }

    /// Removes `member`, whose score is `score` (both entries).
    pub(super) fn zdelete(&mut self, key: &[u8], version: u64, member: &[u8], score: f64) {
        self.store
            .delete(&element_key(self.db, key, ZSET_MEMBER, version, member));
        let sb = keyspace::score_bytes(stored(score));
        let k = index_key(self.db, key, version, sb, member);
        self.store.delete(&k);
        self.rank_removed(key, version, &k[k.len() - 8 - member.len()..]);
    }

    /// Writes the metadata of `z` with `count` members, or deletes the key when empty.
    pub(super) fn zset_count(&mut self, key: &[u8], z: Z, count: u64) {
        if count == 0 {
            self.store.delete(&keyspace::meta_key(self.db, key));
        } else {
            let meta = Meta::ZSet {
                version: z.version,
                count,
            };
            self.write_meta(key, &meta, z.expire);
        }
    }

    fn zadd(
        &mut self,
        key: &[u8],
        flags: u8,
        scores: &[f64],
        members: &[Bytes],
    ) -> Result<OpResult, RpcError> {
        let incr = flags & add_flags::INCR != 0;
        let z = match self.zget(key)? {
            Some(z) => z,
            None if flags & add_flags::XX != 0 => return Ok(add_reply(incr, flags, None, 0, 0)),
            None => Z {
                version: new_version(&self.ctx),
                count: 0,
                expire: 0,
            },
        };
        let (mut added, mut updated, mut last) = (0i64, 0i64, None);
        let mut count = z.count;
        for (&score, member) in scores.iter().zip(members) {
            match self.zadd_one(key, z.version, flags, score, member)? {
                Added::New(s) => {
                    added += 1;
                    count += 1;
                    last = Some(s);
                }
                Added::Updated(s) => {
                    updated += 1;
                    last = Some(s);
                }
                Added::Same(s) => last = Some(s),
                Added::Nop => {}
            }
        }
        if count != z.count || z.count == 0 {
            self.zset_count(key, z, count);
        }
        Ok(add_reply(incr, flags, last, added, updated))
    }

    fn zadd_one(
        &mut self,
        key: &[u8],
        version: u64,
        flags: u8,
        score: f64,
        member: &Bytes,
    ) -> Result<Added, RpcError> {
        let has = |f: u8| flags & f != 0;
        let Some(cur) = self.zscore(key, version, member) else {
            if has(add_flags::XX) {
                return Ok(Added::Nop);
            }
            self.zinsert(key, version, member, score);
            return Ok(Added::New(score));
        };
        if has(add_flags::NX) {
            return Ok(Added::Nop);
        }
        let new = if has(add_flags::INCR) {
            let s = cur + score;
            if s.is_nan() {
                return Err(bad("resulting score is not a number (NaN)"));
            }
            s
        } else {
            score
        };
        if (has(add_flags::GT) && new <= cur) || (has(add_flags::LT) && new >= cur) {
            return Ok(Added::Nop);
        }
        if new == cur {
            return Ok(Added::Same(new));
        }
        self.zdelete(key, version, member, cur);
        self.zinsert(key, version, member, new);
        Ok(Added::Updated(new))
    }

    fn zrem(&mut self, key: &[u8], members: &[Bytes]) -> Result<OpResult, RpcError> {
        let Some(z) = self.zget(key)? else {
            return ok_int(0);
        };
        let mut removed = 0u64;
        for m in members {
            if let Some(score) = self.zscore(key, z.version, m) {
                self.zdelete(key, z.version, m, score);
                removed += 1;
            }
        }
        if removed > 0 {
            self.zset_count(key, z, z.count.saturating_sub(removed));
        }
        ok_int(i64::try_from(removed).unwrap_or(i64::MAX))
    }

    fn zrank(&mut self, key: &[u8], member: &[u8], rev: bool) -> Result<OpResult, RpcError> {
        let values = match self.zget(key)? {
            None => Vec::new(),
            Some(z) => match self.zscore(key, z.version, member) {
                None => Vec::new(),
                Some(score) => {
                    let target = index_key(
                        self.db,
                        key,
                        z.version,
                        keyspace::score_bytes(score),
                        member,
                    );
                    let before = self.rank_before(key, z, &target);
                    let rank = if rev {
                        z.count.saturating_sub(before + 1)
                    } else {
                        before
                    };
                    vec![i64::try_from(rank).unwrap_or(i64::MAX)]
                }
            },
        };
        Ok(OpResult::Ints { values })
    }

    /// Number of entries in `[lo, hi)`, read in pages.
    pub(super) fn count_keys(&self, lo: &[u8], hi: &[u8]) -> u64 {
        let mut n = 0u64;
        let mut lo = Bytes::copy_from_slice(lo);
        loop {
            if lo.as_ref() >= hi {
                return n;
            }
            let page = self.store.scan(&lo, Some(hi), PAGE, false);
            n += page.len() as u64;
            match page.last() {
                Some((k, _)) if page.len() == PAGE => lo = super::apply::after(k),
                _ => return n,
            }
        }
    }

    /// Pops up to `count` members from the first non-empty of `key` and `keys` (ZMPOP) or of
    /// `key` alone (ZPOPMIN/ZPOPMAX).
    fn zpop_first(
        &mut self,
        key: &Bytes,
        keys: &[Bytes],
        max: bool,
        count: u64,
        named: bool,
    ) -> Result<OpResult, RpcError> {
        for k in std::iter::once(key).chain(keys) {
            let Some(z) = self.zget(k)? else {
                continue;
            };
            let popped = self.zpop(k, z, max, count);
            let mut items = Vec::with_capacity(popped.len() + 1);
            if named {
                items.push((k.clone(), 0.0));
            }
            items.extend(popped.into_iter().map(|(s, m)| (m, s)));
            return Ok(OpResult::Scored { items });
        }
        Ok(OpResult::Scored { items: Vec::new() })
    }

    fn zpop(&mut self, key: &[u8], z: Z, max: bool, count: u64) -> Vec<(f64, Bytes)> {
        let want = usize::try_from(count.min(z.count)).unwrap_or(usize::MAX);
        if want == 0 {
            return Vec::new();
        }
        let (lo, hi) = self.index_bounds(key, z.version);
        let items = self.walk(lo, hi, max, 0, want);
        for (s, m) in &items {
            self.zdelete(key, z.version, m, *s);
        }
        self.zset_count(key, z, z.count - items.len() as u64);
        items
    }

    fn zscan(&self, key: &[u8], cursor: &[u8], count: u32) -> Result<OpResult, RpcError> {
        let Some(z) = self.zget(key)? else {
            return Ok(OpResult::Scan {
                pairs: Vec::new(),
                next: None,
            });
        };
        let prefix = element_prefix(self.db, key, ZSET_MEMBER, z.version);
        let start = if cursor.is_empty() {
            prefix.clone()
        } else {
            super::apply::after(&element_key(self.db, key, ZSET_MEMBER, z.version, cursor))
        };
        let end = keyspace::prefix_end(&prefix);
        let limit = count.max(1) as usize;
        let pairs: Vec<(Bytes, Bytes)> = self
            .store
            .scan(&start, end.as_deref(), limit, false)
            .into_iter()
            .filter_map(|(k, e)| {
                let m = k.get(prefix.len()..)?;
                let bytes: [u8; 8] = e.value.as_ref().try_into().ok()?;
                let score = keyspace::score_of(bytes).to_be_bytes();
                Some((Bytes::copy_from_slice(m), Bytes::copy_from_slice(&score)))
            })
            .collect();
        let next = (pairs.len() == limit)
            .then(|| pairs.last().map(|(m, _)| m.clone()))
            .flatten();
        Ok(OpResult::Scan { pairs, next })
    }

    fn zrandmember(
        &self,
        key: &[u8],
        count: i64,
        single: bool,
        seed: u64,
    ) -> Result<OpResult, RpcError> {
        let Some(z) = self.zget(key)? else {
            return Ok(OpResult::Scored { items: Vec::new() });
        };
        if count < 0 && count.unsigned_abs() > MAX_RANDOM_DRAWS {
            // Redis streams such a reply; a shard builds it in memory, so it is bounded.
            return Err(bad(
                "ZRANDMEMBER count too large (tierkv draws at most 16777216 with repetition)",
            ));
        }
        let (lo, hi) = self.index_bounds(key, z.version);
        let all = self.walk(lo, hi, false, 0, usize::MAX);
        let mut rng = SplitMix(seed);
        let n = all.len() as u64;
        let pick = |rng: &mut SplitMix| {
            let (s, m) = &all[(rng.next() % n.max(1)) as usize];
            (m.clone(), *s)
        };
        let items = if single {
            vec![pick(&mut rng)]
        } else if count < 0 {
            (0..count.unsigned_abs()).map(|_| pick(&mut rng)).collect()
        } else if count.unsigned_abs() >= n {
            all.into_iter().map(|(s, m)| (m, s)).collect()
        } else {
            // A partial Fisher-Yates shuffle: `count` distinct members.
            let mut idx: Vec<usize> = (0..all.len()).collect();
            let k = count.unsigned_abs() as usize;
            for i in 0..k {
                let j = i + (rng.next() % (idx.len() - i) as u64) as usize;
                idx.swap(i, j);
            }
            idx[..k]
                .iter()
                .map(|&i| (all[i].1.clone(), all[i].0))
                .collect()
        };
        Ok(OpResult::Scored { items })
    }

    /// Replaces `key` with `items` (a new version, no expiry); deletes it when empty. The
    /// number of members stored.
    pub(super) fn zreplace(&mut self, key: &[u8], items: &[(f64, Bytes)]) -> i64 {
        // Never the version of what it replaces (created by this same entry, in a MULTI).
        let old = self.live(key).ok().flatten().and_then(|l| l.meta.version());
        let version = new_version(&self.ctx).max(old.map_or(0, |v| v.saturating_add(1)));
        let z = Z {
            version,
            count: 0,
            expire: 0,
        };
        let mut count = 0u64;
        for (s, m) in items {
            if let Some(old) = self.zscore(key, z.version, m) {
                self.zdelete(key, z.version, m, old);
                count -= 1;
            }
            self.zinsert(key, z.version, m, *s);
            count += 1;
        }
        self.zset_count(key, z, count);
        len_i64(count as usize)
    }

    /// The score index of version `version` of `key`: `[lo, hi)`.
    pub(super) fn index_bounds(&self, key: &[u8], version: u64) -> (Bytes, Option<Bytes>) {
        let prefix = element_prefix(self.db, key, ZSET_SCORE, version);
        let end = keyspace::prefix_end(&prefix);
        (prefix, end)
    }

    /// Index entries in `[lo, hi)` from the low end (or the high end when `rev`), skipping
    /// `offset`, at most `limit`: `(score, member)`.
    pub(super) fn walk(
        &self,
        mut lo: Bytes,
        mut hi: Option<Bytes>,
        rev: bool,
        mut offset: usize,
        limit: usize,
    ) -> Vec<(f64, Bytes)> {
        let mut out = Vec::new();
        while out.len() < limit {
            if hi.as_ref().is_some_and(|h| *h <= lo) {
                break;
            }
            let want = if offset > 0 {
                offset.min(PAGE * 16)
            } else {
                (limit - out.len()).min(PAGE)
            };
            let page = self.store.scan(&lo, hi.as_deref(), want, rev);
            let full = page.len() == want;
            let last = page.last().map(|(k, _)| k.clone());
            for (k, _) in page {
                if offset > 0 {
                    offset -= 1;
                } else if let Some(item) = decode_index(&k) {
                    out.push(item);
                }
            }
            match last.filter(|_| full) {
                Some(k) if rev => hi = Some(k),
                Some(k) => lo = super::apply::after(&k),
                None => break,
            }
        }
        out
    }
}

/// What ZADD did to one member (its score after).
enum Added {
    New(f64),
    Updated(f64),
    Same(f64),
    Nop,
}

fn add_reply(incr: bool, flags: u8, last: Option<f64>, added: i64, updated: i64) -> OpResult {
    if incr {
        OpResult::Floats { values: vec![last] }
    } else if flags & add_flags::CH != 0 {
        OpResult::Int {
            value: added + updated,
        }
    } else {
        OpResult::Int { value: added }
    }
}

/// The score index key of `member` with score bytes `sb`.
pub(super) fn index_key(
    db: keyspace::Db,
    key: &[u8],
    version: u64,
    sb: [u8; 8],
    member: &[u8],
) -> Bytes {
    let mut element = Vec::with_capacity(8 + member.len());
    element.extend_from_slice(&sb);
    element.extend_from_slice(member);
    element_key(db, key, ZSET_SCORE, version, &element)
}

/// `(score, member)` of a score index key: the 8 score bytes and the member follow the
/// `'z' | version` prefix, whose length is fixed by the user key's length prefix.
pub(super) fn decode_index(k: &[u8]) -> Option<(f64, Bytes)> {
    let (_, _, tail) = keyspace::parse_user(k)?;
    let at = 1 + 8;
    let sb: [u8; 8] = tail.get(at..at + 8)?.try_into().ok()?;
    Some((
        keyspace::score_of(sb),
        Bytes::copy_from_slice(tail.get(at + 8..)?),
    ))
}

/// A deterministic generator for ZRANDMEMBER (seeded by the proxy).
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}
