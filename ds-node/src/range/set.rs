//! Sets (Redis `t_set.c`): a metadata entry (version, count) and one engine entry per member
//! at `'S' | version | member` (value empty). Membership is a point lookup; listing a set
//! scans its version's prefix; the size is the metadata's count. An emptied set is deleted;
//! replacing one (the STORE forms) drops its metadata and writes a new version.

use std::collections::BTreeSet;

use bytes::Bytes;
use net::RpcError;
use net::message::kv::{OpResult, SetAlgebra, SetOp};

use super::apply::{Apply, Live, after, len_i64, new_version, ok_int};
use super::meta::Meta;
use super::sample::{Elements, MAX_REPEATS, Rng};
use super::store::{Entry, KvStore};
use crate::keyspace::{self, SET_MEMBER};

/// A source set of an algebra: its key, and its version and size when it exists.
type Source<'k> = (&'k Bytes, Option<(u64, u64)>);

fn bulks(values: Vec<Bytes>) -> Result<OpResult, RpcError> {
    Ok(OpResult::Bulks { values })
}

fn empty() -> Entry {
    Entry {
        value: Bytes::new(),
        expire_at_ms: 0,
    }
}

/// The SSCAN cursor of a member: its first 8 bytes (zero-padded), big-endian.
fn cursor_of(member: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    let n = member.len().min(8);
    b[..n].copy_from_slice(&member[..n]);
    u64::from_be_bytes(b)
}

/// The first member an SSCAN cursor may stand for: its bytes without trailing zeros.
fn cursor_start(cursor: u64) -> Vec<u8> {
    let mut b = cursor.to_be_bytes().to_vec();
    while b.last() == Some(&0) {
        b.pop();
    }
    b
}

/// Refuses a count with repeats larger than [`MAX_REPEATS`].
pub(super) fn repeats_in_range(n: u64) -> Result<(), RpcError> {
    if n > MAX_REPEATS {
        return Err(RpcError::BadRequest {
            message: "value is out of range".into(),
        });
    }
    Ok(())
}

impl<S: KvStore> Apply<'_, '_, S> {
    /// Executes a set operation.
    pub(super) fn set(&mut self, op: &SetOp) -> Result<OpResult, RpcError> {
        match op {
            SetOp::Card { key } => {
                let count = self.set_meta(key)?.map_or(0, |(_, count, _)| count);
                ok_int(i64::try_from(count).unwrap_or(i64::MAX))
            }
            SetOp::Add { key, members } => self.sadd(key, members),
            SetOp::Rem { key, members } => self.srem(key, members),
            SetOp::Members { key } => bulks(match self.set_meta(key)? {
                Some((version, _, _)) => self.set_members(key, version),
                None => Vec::new(),
            }),
            SetOp::IsMember { key, members } => {
                let version = self.set_meta(key)?.map(|(v, _, _)| v);
                let values = members
                    .iter()
                    .map(|m| i64::from(version.is_some_and(|v| self.set_has(key, v, m))))
                    .collect();
                Ok(OpResult::Ints { values })
            }
            SetOp::Pop { key, count } => self.spop(key, *count),
            SetOp::RandMember { key, count, seed } => self.srandmember(key, *count, *seed),
            SetOp::Move { key, dst, member } => self.smove(key, dst, member),
            SetOp::Combine { algebra, key, keys } => {
                let sources = self.set_sources(std::iter::once(key).chain(keys))?;
                bulks(self.set_combine(*algebra, &sources, 0))
            }
            SetOp::Store { algebra, key, keys } => {
                let sources = self.set_sources(keys.iter())?;
                let result = self.set_combine(*algebra, &sources, 0);
                self.set_replace(key, result)
            }
            SetOp::InterCard { key, keys, limit } => {
                let sources = self.set_sources(std::iter::once(key).chain(keys))?;
                let n = self
                    .set_combine(SetAlgebra::Inter {}, &sources, *limit)
                    .len();
                ok_int(len_i64(n))
            }
            SetOp::Replace { key, members } => {
                let unique: BTreeSet<Bytes> = members.iter().cloned().collect();
                self.set_replace(key, unique.into_iter().collect())
            }
            SetOp::Scan { key, cursor, count } => self.sscan(key, *cursor, *count),
        }
    }

    /// `(version, count, expiry)` of set `key`; WRONGTYPE for another type.
    pub(super) fn set_meta(&self, key: &[u8]) -> Result<Option<(u64, u64, u64)>, RpcError> {
        match self.live(key)? {
            None => Ok(None),
            Some(Live {
                meta: Meta::Set { version, count },
                expire_at_ms,
            }) => Ok(Some((version, count, expire_at_ms))),
            Some(_) => Err(RpcError::WrongType {}),
        }
    }

    /// Whether `member` is in version `version` of set `key` (a member too long to be
    /// stored is in no set).
    fn set_has(&self, key: &[u8], version: u64, member: &[u8]) -> bool {
        net::limits::user_key(key, member.len()).is_ok()
            && self
                .store
                .get(&keyspace::element_key(
                    self.db, key, SET_MEMBER, version, member,
                ))
                .is_some()
    }

    fn set_elements(&self, key: &[u8], version: u64, count: u64) -> Elements<'_, S> {
        let prefix = keyspace::element_prefix(self.db, key, SET_MEMBER, version);
        Elements::new(&*self.store, prefix, count)
    }

    /// Every member of version `version` of set `key`, in byte order.
    fn set_members(&self, key: &[u8], version: u64) -> Vec<Bytes> {
        self.set_elements(key, version, 0)
            .all()
            .into_iter()
            .map(|(m, _)| m)
            .collect()
    }

    /// Writes the metadata of a set of `count` members, or deletes it when empty.
    fn set_count(&mut self, key: &[u8], version: u64, count: u64, expire: u64) {
        if count == 0 {
            self.store.delete(&keyspace::meta_key(self.db, key));
        } else {
            self.write_meta(key, &Meta::Set { version, count }, expire);
        }
    }

    fn sadd(&mut self, key: &[u8], members: &[Bytes]) -> Result<OpResult, RpcError> {
        let (version, count, expire) = match self.set_meta(key)? {
            Some(m) => m,
            None => (new_version(&self.ctx), 0, 0),
        };
        let mut added = 0u64;
        for m in members {
            let k = keyspace::element_key(self.db, key, SET_MEMBER, version, m);
            if self.store.get(&k).is_none() {
                self.store.put(k, empty());
                added += 1;
            }
        }
        if added > 0 {
            self.set_count(key, version, count + added, expire);
        }
        ok_int(i64::try_from(added).unwrap_or(i64::MAX))
    }

    fn srem(&mut self, key: &[u8], members: &[Bytes]) -> Result<OpResult, RpcError> {
        let Some((version, count, expire)) = self.set_meta(key)? else {
            return ok_int(0);
        };
        let mut removed = 0u64;
        for m in members {
            if net::limits::user_key(key, m.len()).is_ok()
                && self
                    .store
                    .delete(&keyspace::element_key(self.db, key, SET_MEMBER, version, m))
                    .is_some()
            {
                removed += 1;
            }
        }
        if removed > 0 {
            self.set_count(key, version, count.saturating_sub(removed), expire);
        }
        ok_int(i64::try_from(removed).unwrap_or(i64::MAX))
    }

    /// `SPOP`: random members chosen with a seed from the entry (the same on every replica).
    fn spop(&mut self, key: &[u8], count: Option<u64>) -> Result<OpResult, RpcError> {
        let Some((version, size, expire)) = self.set_meta(key)? else {
            return bulks(Vec::new());
        };
        let n = count.unwrap_or(1);
        let mut rng = Rng::new(Rng::for_entry(self.ctx.index, self.ctx.now_ms).next() ^ size);
        let chosen = self
            .set_elements(key, version, size)
            .choose(n, false, &mut rng);
        let mut popped = Vec::with_capacity(chosen.len());
        for (m, _) in chosen {
            self.store.delete(&keyspace::element_key(
                self.db, key, SET_MEMBER, version, &m,
            ));
            popped.push(m);
        }
        if !popped.is_empty() {
            let left = size.saturating_sub(popped.len() as u64);
            self.set_count(key, version, left, expire);
        }
        bulks(popped)
    }

    fn srandmember(&self, key: &[u8], count: i64, seed: u64) -> Result<OpResult, RpcError> {
        let Some((version, size, _)) = self.set_meta(key)? else {
            return bulks(Vec::new());
        };
        let repeats = count < 0;
        let n = count.unsigned_abs();
        if repeats {
            repeats_in_range(n)?;
        }
        let chosen = self
            .set_elements(key, version, size)
            .choose(n, repeats, &mut Rng::new(seed));
        bulks(chosen.into_iter().map(|(m, _)| m).collect())
    }

    fn smove(&mut self, src: &Bytes, dst: &Bytes, member: &Bytes) -> Result<OpResult, RpcError> {
        // An absent source answers 0 whatever the destination holds, as Redis does.
        let Some((version, count, expire)) = self.set_meta(src)? else {
            return Ok(OpResult::Bool { value: false });
        };
        self.set_meta(dst)?; // WRONGTYPE when the destination holds another type
        if src == dst {
            let value = self.set_has(src, version, member);
            return Ok(OpResult::Bool { value });
        }
        let k = keyspace::element_key(self.db, src, SET_MEMBER, version, member);
        if self.store.delete(&k).is_none() {
            return Ok(OpResult::Bool { value: false });
        }
        self.set_count(src, version, count.saturating_sub(1), expire);
        self.sadd(dst, std::slice::from_ref(member))?;
        Ok(OpResult::Bool { value: true })
    }

    /// Looks up every source (WRONGTYPE if any is not a set); absent ones are empty.
    fn set_sources<'k>(
        &self,
        keys: impl Iterator<Item = &'k Bytes>,
    ) -> Result<Vec<Source<'k>>, RpcError> {
        keys.map(|k| Ok((k, self.set_meta(k)?.map(|(v, c, _)| (v, c)))))
            .collect()
    }

    /// The result of `algebra` over `sources`, in byte order (an intersection stops at
    /// `limit` members when it is not 0).
    fn set_combine(&self, algebra: SetAlgebra, sources: &[Source<'_>], limit: u64) -> Vec<Bytes> {
        match algebra {
            SetAlgebra::Inter {} => {
                let Some(present) = sources
                    .iter()
                    .map(|(k, s)| s.map(|(v, c)| (*k, v, c)))
                    .collect::<Option<Vec<_>>>()
                else {
                    return Vec::new();
                };
                let Some(&(k0, v0, _)) = present.iter().min_by_key(|(_, _, c)| *c) else {
                    return Vec::new();
                };
                let limit = usize::try_from(limit).unwrap_or(usize::MAX);
                let mut out = Vec::new();
                for m in self.set_members(k0, v0) {
                    if present.iter().all(|&(k, v, _)| self.set_has(k, v, &m)) {
                        out.push(m);
                        if out.len() == limit {
                            break;
                        }
                    }
                }
                out
            }
            SetAlgebra::Union {} => {
                let mut all = BTreeSet::new();
                for (k, s) in sources {
                    if let Some((v, _)) = s {
                        all.extend(self.set_members(k, *v));
                    }
                }
                all.into_iter().collect()
            }
            SetAlgebra::Diff {} => {
                let Some(((k0, Some((v0, _))), rest)) = sources.split_first() else {
                    return Vec::new();
                };
                let rest: Vec<(&Bytes, u64)> = rest
                    .iter()
                    .filter_map(|(k, s)| s.map(|(v, _)| (*k, v)))
                    .collect();
                self.set_members(k0, *v0)
                    .into_iter()
                    .filter(|m| !rest.iter().any(|&(k, v)| self.set_has(k, v, m)))
                    .collect()
            }
        }
    }

    /// Replaces whatever `key` holds by a set of `members` (sorted, distinct; none: delete
    /// the key). The new set has no expiry, as Redis's `setKey`.
    fn set_replace(&mut self, key: &[u8], members: Vec<Bytes>) -> Result<OpResult, RpcError> {
        let old = self.live(key)?;
        let version = new_version(&self.ctx);
        if let Some(Live {
            meta: Meta::Set { version: v, .. },
            ..
        }) = old
        {
            // Only within one entry (a Multi) can the old set share the new version.
            if v == version {
                for m in self.set_members(key, v) {
                    self.store
                        .delete(&keyspace::element_key(self.db, key, SET_MEMBER, v, &m));
                }
            }
        }
        self.store.delete(&keyspace::meta_key(self.db, key));
        for m in &members {
            self.store.put(
                keyspace::element_key(self.db, key, SET_MEMBER, version, m),
                empty(),
            );
        }
        let n = members.len() as u64;
        self.set_count(key, version, n, 0);
        ok_int(len_i64(members.len()))
    }

    /// One `SSCAN` step: `count` members from the cursor on, then every further member
    /// with the same cursor (so that the next cursor is larger); the next cursor is that of
    /// the first member left out (none: the scan is complete).
    fn sscan(&self, key: &[u8], cursor: u64, count: u32) -> Result<OpResult, RpcError> {
        let Some((version, size, _)) = self.set_meta(key)? else {
            return Ok(OpResult::Scan {
                pairs: Vec::new(),
                next: None,
            });
        };
        let el = self.set_elements(key, version, size);
        let prefix = keyspace::element_prefix(self.db, key, SET_MEMBER, version);
        let mut start = [&prefix[..], &cursor_start(cursor)].concat();
        let limit = count.max(1) as usize;
        let page_len = limit.saturating_add(1).min(1024);
        let mut pairs = Vec::new();
        loop {
            let page = el.from(&start, page_len);
            let full = page.len() == page_len;
            for (m, _) in page {
                let c = cursor_of(&m);
                if pairs.len() >= limit && c != cursor {
                    let next = Some(Bytes::copy_from_slice(&c.to_be_bytes()));
                    return Ok(OpResult::Scan { pairs, next });
                }
                start = after(&[&prefix[..], &m].concat()).to_vec();
                pairs.push((m, Bytes::new()));
            }
            if !full {
                return Ok(OpResult::Scan { pairs, next: None });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_starts_at_or_before_every_member_it_stands_for() {
        for m in [
            &b"a"[..],
            b"a\0",
            b"a\0b",
            b"abcdefghij",
            b"",
            b"\0\0",
            b"\xff",
        ] {
            let c = cursor_of(m);
            assert!(&cursor_start(c)[..] <= m, "{m:?}");
        }
        assert_eq!(cursor_start(0), Vec::<u8>::new());
        assert_eq!(cursor_of(b"ab"), u64::from_be_bytes(*b"ab\0\0\0\0\0\0"));
    }
}
