//! Ranks of a sorted set: from the range's rank index of the set when it has one
//! ([`crate::range::zrank`], `O(log(n/B) + B)`), else counted (`O(rank)`). The counting
//! path stays the reference: both answer every query alike (`tests/zset_rank_model.rs`).
//!
//! The index is kept here too: [`Apply::rank_inserted`] and [`Apply::rank_removed`] are
//! called by the only two functions that write a live set's score index entries
//! (`zinsert`, `zdelete`), and answer the index's bucket splits from the engine.

use bytes::Bytes;
use net::keyspace::Db;

use super::{PAGE, Z};
use crate::keyspace::{self, ZSET_SCORE, element_prefix};
use crate::range::apply::Apply;
use crate::range::store::KvStore;
use crate::range::zrank::{Fixup, RankIndex, ZRanks};

impl<S: KvStore> Apply<'_, '_, S> {
    /// Entries of the score index of `z` that sort before engine key `target`.
    pub(super) fn rank_before(&self, key: &[u8], z: Z, target: &[u8]) -> u64 {
        let prefix = element_prefix(self.db, key, ZSET_SCORE, z.version);
        if target <= prefix.as_ref() {
            return 0;
        }
        if !target.starts_with(&prefix) {
            return z.count;
        }
        let suffix = &target[prefix.len()..];
        let spot = self.ranked(key, z, |idx| idx.locate(suffix));
        match spot {
            Some(None) => 0,
            Some(Some(spot)) => {
                let start = join(&prefix, &spot.first);
                spot.before + self.count_keys(&start, target)
            }
            None => self.count_keys(&prefix, target),
        }
    }

    /// Entries of the score index of `z` in `[lo, hi)` (both within it): a difference of
    /// two ranks with an index, else a count.
    pub(super) fn count_between(&self, key: &[u8], z: Z, lo: &[u8], hi: &[u8]) -> u64 {
        if self.ranked(key, z, |_| ()).is_some() {
            self.rank_before(key, z, hi)
                .saturating_sub(self.rank_before(key, z, lo))
        } else {
            self.count_keys(lo, hi)
        }
    }

    /// The engine key of the entry at forward rank `r` of `z`, when the set has an index
    /// (`None` without one: the caller walks).
    pub(super) fn key_at_rank(&self, key: &[u8], z: Z, r: u64) -> Option<Option<Bytes>> {
        let spot = self.ranked(key, z, |idx| idx.at_rank(r))?;
        let Some(spot) = spot else {
            return Some(None);
        };
        let prefix = element_prefix(self.db, key, ZSET_SCORE, z.version);
        let start = join(&prefix, &spot.first);
        let skip = usize::try_from(r - spot.before).unwrap_or(usize::MAX);
        Some(self.nth_key(&prefix, &start, skip))
    }

    /// Whether `z` is answered by a rank index.
    pub(super) fn has_rank_index(&self, key: &[u8], z: Z) -> bool {
        self.ranked(key, z, |_| ()).is_some()
    }

    /// Notes score index suffix `suffix` (score bytes and member) of `key`'s `version`
    /// inserted in the engine.
    pub(super) fn rank_inserted(&mut self, key: &[u8], version: u64, suffix: &[u8]) {
        let Some(cell) = self.ctx.zranks else {
            return;
        };
        let mut ranks = cell.borrow_mut();
        let fix = ranks.update(self.db, key, version, |i| i.inserted(suffix));
        self.fix_up(&mut ranks, key, version, fix);
    }

    /// Notes score index suffix `suffix` of `key`'s `version` deleted from the engine (no
    /// engine read: a bucket's first suffix is only a lower bound).
    pub(super) fn rank_removed(&mut self, key: &[u8], version: u64, suffix: &[u8]) {
        let Some(cell) = self.ctx.zranks else {
            return;
        };
        cell.borrow_mut()
            .update(self.db, key, version, |i| i.removed(suffix));
    }

    /// Drops the rank index of `key` of database `db` (its elements are rewritten or
    /// deleted wholesale: a rename, a copy).
    pub(in crate::range) fn rank_drop(&self, db: Db, key: &[u8]) {
        if let Some(cell) = self.ctx.zranks {
            cell.borrow_mut().drop_key(db, key);
        }
    }

    /// Answers a split the index asked for after an insertion, from the engine (already
    /// changed); an index the engine cannot answer for is dropped.
    fn fix_up(&self, ranks: &mut ZRanks, key: &[u8], version: u64, fix: Fixup) {
        let Fixup::Split { at, first, mid } = fix else {
            return;
        };
        let prefix = element_prefix(self.db, key, ZSET_SCORE, version);
        match self.nth_key(&prefix, &join(&prefix, &first), mid as usize) {
            Some(k) => ranks.with(self.db, key, |idx| {
                idx.split(at, mid, k.slice(prefix.len()..));
            }),
            None => ranks.drop_key(self.db, key),
        }
    }

    /// Runs `f` on the rank index of `z`, building it first when the set is big enough and
    /// it fits; `None` when the set is counted.
    fn ranked<T>(&self, key: &[u8], z: Z, f: impl FnOnce(&RankIndex) -> T) -> Option<T> {
        let cell = self.ctx.zranks?;
        let mut ranks = cell.borrow_mut();
        if ranks.get(self.db, key, z.version, z.count).is_none() {
            if !ranks.wants(z.count) || !self.make_room(&mut ranks, z.count) {
                return None;
            }
            let idx = self.build_rank_index(key, z, ranks.config().bucket);
            ranks.insert(self.db, key, idx);
        }
        ranks.note_hit();
        ranks.get(self.db, key, z.version, z.count).map(f)
    }

    /// Whether an index of `count` entries fits, after dropping those of sets no longer
    /// live when it does not.
    fn make_room(&self, ranks: &mut ZRanks, count: u64) -> bool {
        if ranks.fits(count) {
            return true;
        }
        ranks.retain(|db, key, version| {
            let live = self.live_in(db, key).ok().flatten();
            live.and_then(|l| l.meta.version()) == Some(version)
        });
        ranks.fits(count)
    }

    /// One walk of the score index of `z`.
    fn build_rank_index(&self, key: &[u8], z: Z, bucket: u32) -> RankIndex {
        let prefix = element_prefix(self.db, key, ZSET_SCORE, z.version);
        let end = keyspace::prefix_end(&prefix);
        let mut lo = prefix.clone();
        let mut idx = RankIndex::empty(z.version, bucket);
        loop {
            let page = self.store.scan_keys(&lo, end.as_deref(), PAGE);
            for k in &page {
                idx.push_last(&k[prefix.len()..]);
            }
            match page.last() {
                Some(last) if page.len() == PAGE => lo = crate::range::apply::after(last),
                _ => break,
            }
        }
        idx.finish();
        idx
    }

    /// The key `skip` entries after `start` (inclusive) within `prefix`.
    fn nth_key(&self, prefix: &[u8], start: &[u8], skip: usize) -> Option<Bytes> {
        let end = keyspace::prefix_end(prefix);
        let mut lo = Bytes::copy_from_slice(start);
        let mut left = skip;
        loop {
            let want = (left + 1).min(PAGE);
            let page = self.store.scan_keys(&lo, end.as_deref(), want);
            if left < page.len() {
                return page.into_iter().nth(left);
            }
            if page.len() < want {
                return None;
            }
            left -= page.len();
            lo = crate::range::apply::after(page.last()?);
        }
    }
}

/// `prefix` then `suffix`.
fn join(prefix: &[u8], suffix: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(prefix.len() + suffix.len());
    k.extend_from_slice(prefix);
    k.extend_from_slice(suffix);
    k
}
