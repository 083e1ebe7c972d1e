//! Per-database key counts of a range (`DBSIZE`, `INFO keyspace`): the number of Redis keys
//! (metadata entries, of every type) and of those with an expiry, per database, plus the sum
//! of those expiry times (for `avg_ttl`).
//!
//! Kept exactly by apply: the range's writes and sweeps run against a [`Counted`] store,
//! which sees every put and delete of a metadata entry and the entry's expiry before and
//! after. The same wrapper sums the size changes the engine's writes return
//! ([`Counted::size`]): the range's approximate size moves by exactly what its entries
//! changed, with no figure left behind in the engine. Nothing else writes metadata entries of a live range (demotion and GC move a
//! value's bytes, not the entry), so the counts depend only on the entries applied: every
//! replica has the same. They are not persisted: [`recount`] rebuilds them from the store
//! when a range is loaded (recovery, snapshot install, the right side of a split), like the
//! range's size, at the cost of one walk of its keys. A split recounts the right side only
//! and subtracts it from the left ([`DbKeys::minus`]): one side must be walked either way,
//! and the right one is walked again for its first checkpoint.
//!
//! A key whose expiry passed still counts until a write or a sweep deletes it, as in Redis
//! (`dbsize` counts keys its active expiry has not reached yet).

use bytes::Bytes;
use net::keyspace::{DATABASES, Db, REDIS_PREFIX};
use net::message::kv::DbStat;

use super::db_walk::after;
use super::store::{Entry, KvStore, SizeDelta};
use crate::keyspace::user_key_of_meta;

/// The counts of one database.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DbCount {
    /// Keys.
    pub keys: u64,
    /// Keys with an expiry.
    pub expires: u64,
    /// Sum of the expiry times of those keys, Unix ms.
    pub expire_at_sum: u128,
}

/// The counts of every database of a range.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DbKeys {
    dbs: [DbCount; DATABASES as usize],
}

impl DbKeys {
    /// The counts of database `db`.
    pub fn get(&self, db: Db) -> DbCount {
        self.dbs[usize::from(db.get())]
    }

    /// Keys of every database.
    pub fn total_keys(&self) -> u64 {
        self.dbs.iter().map(|c| c.keys).sum()
    }

    /// Counts a metadata entry of `db` appearing with expiry `at` (0: none).
    fn add(&mut self, db: Db, at: u64) {
        let c = &mut self.dbs[usize::from(db.get())];
        c.keys += 1;
        if at != 0 {
            c.expires += 1;
            c.expire_at_sum += u128::from(at);
        }
    }

    /// Uncounts a metadata entry of `db` that had expiry `at`. Saturating: the counts never
    /// go below zero even if an entry counted nowhere is removed (a bug elsewhere must not
    /// wrap them to 2^64).
    fn remove(&mut self, db: Db, at: u64) {
        let c = &mut self.dbs[usize::from(db.get())];
        c.keys = c.keys.saturating_sub(1);
        if at != 0 {
            c.expires = c.expires.saturating_sub(1);
            c.expire_at_sum = c.expire_at_sum.saturating_sub(u128::from(at));
        }
    }

    /// What is left of these counts once `part` (counted on a subset of the same keys) is
    /// taken away: the left side of a split, `part` being the right side.
    pub fn minus(&self, part: &DbKeys) -> DbKeys {
        let mut out = *self;
        for (o, p) in out.dbs.iter_mut().zip(part.dbs.iter()) {
            o.keys = o.keys.saturating_sub(p.keys);
            o.expires = o.expires.saturating_sub(p.expires);
            o.expire_at_sum = o.expire_at_sum.saturating_sub(p.expire_at_sum);
        }
        out
    }

    /// The answer to `DbStats`: every database with a key, in order.
    pub fn stats(&self) -> Vec<DbStat> {
        (0..DATABASES)
            .filter_map(Db::new)
            .filter_map(|db| {
                let c = self.get(db);
                (c.keys > 0).then(|| DbStat {
                    db,
                    keys: c.keys,
                    expires: c.expires,
                    mean_expire_at_ms: mean(c.expire_at_sum, c.expires),
                })
            })
            .collect()
    }
}

/// `sum / n` rounded down (0 when `n` is 0), clamped to `u64`.
fn mean(sum: u128, n: u64) -> u64 {
    if n == 0 {
        return 0;
    }
    u64::try_from(sum / u128::from(n)).unwrap_or(u64::MAX)
}

/// A store that counts what is written through it: the metadata entries written and deleted
/// into a [`DbKeys`], and the sum of the size changes every write returned. A put or delete
/// of a metadata entry costs one more lookup (its expiry before), without loading a cold
/// value.
#[derive(Debug)]
pub struct Counted<'a, S> {
    store: &'a mut S,
    keys: &'a mut DbKeys,
    size: SizeDelta,
}

impl<'a, S: KvStore> Counted<'a, S> {
    /// `store`, counting into `keys`, its size change from zero.
    pub fn new(store: &'a mut S, keys: &'a mut DbKeys) -> Self {
        Self {
            store,
            keys,
            size: SizeDelta::ZERO,
        }
    }

    /// The sum of the size changes of the writes made through this store.
    pub fn size(&self) -> SizeDelta {
        self.size
    }
}

impl<S: KvStore> KvStore for Counted<'_, S> {
    #[inline]
    fn get(&self, key: &[u8]) -> Option<Entry> {
        self.store.get(key)
    }

    #[inline]
    fn put(&mut self, key: Bytes, entry: Entry) -> SizeDelta {
        if let Some((db, _)) = user_key_of_meta(&key) {
            if let Some(old) = self.store.expiry(&key) {
                self.keys.remove(db, old);
            }
            self.keys.add(db, entry.expire_at_ms);
        }
        let d = self.store.put(key, entry);
        self.size += d;
        d
    }

    #[inline]
    fn delete(&mut self, key: &[u8]) -> Option<SizeDelta> {
        if let Some((db, _)) = user_key_of_meta(key) {
            if let Some(old) = self.store.expiry(key) {
                self.keys.remove(db, old);
            }
        }
        let d = self.store.delete(key)?;
        self.size += d;
        Some(d)
    }

    fn scan(
        &self,
        start: &[u8],
        end: Option<&[u8]>,
        limit: usize,
        reverse: bool,
    ) -> Vec<(Bytes, Entry)> {
        self.store.scan(start, end, limit, reverse)
    }

    #[inline]
    fn expiry(&self, key: &[u8]) -> Option<u64> {
        self.store.expiry(key)
    }

    #[inline]
    fn is_cold(&self, key: &[u8]) -> bool {
        self.store.is_cold(key)
    }

    fn scan_values(&self, start: &[u8], end: Option<&[u8]>, limit: usize) -> Vec<Bytes> {
        self.store.scan_values(start, end, limit)
    }
    fn scan_keys(&self, start: &[u8], end: Option<&[u8]>, limit: usize) -> Vec<Bytes> {
        self.store.scan_keys(start, end, limit)
    }
}

/// Keys fetched per page of a recount.
const PAGE: usize = 4096;

/// The counts of the Redis keys of `[start, end)` (`end` empty: unbounded), from the store:
/// one walk of the range's Redis keys (values are not read; cold entries count like hot ones).
pub fn recount<S: KvStore + ?Sized>(store: &S, start: &[u8], end: &[u8]) -> DbKeys {
    let redis_end: &[u8] = &[REDIS_PREFIX + 1];
    let hi = if end.is_empty() || end > redis_end {
        redis_end
    } else {
        end
    };
    let mut lo = Bytes::copy_from_slice(start.max(&[REDIS_PREFIX][..]));
    let mut out = DbKeys::default();
    while lo[..] < *hi {
        let page = store.scan_keys(&lo, Some(hi), PAGE);
        for k in &page {
            if let Some((db, _)) = user_key_of_meta(k) {
                out.add(db, store.expiry(k).unwrap_or(0));
            }
        }
        match page.last() {
            Some(last) if page.len() == PAGE => lo = after(last),
            _ => break,
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keyspace::{field_key, meta_key};
    use crate::range::store::ModelStore;

    fn db(n: u8) -> Db {
        Db::new(n).expect("a database")
    }

    fn entry(at: u64) -> Entry {
        Entry {
            value: Bytes::from_static(b"\x01v"),
            expire_at_ms: at,
        }
    }

    #[test]
    fn the_size_change_of_a_counted_store_is_the_sum_of_its_writes() {
        let mut s = ModelStore::default();
        let mut k = DbKeys::default();
        let mut c = Counted::new(&mut s, &mut k);
        c.put(meta_key(db(0), b"a"), entry(0));
        c.put(Bytes::from_static(b"raw"), entry(0));
        c.put(meta_key(db(0), b"a"), entry(5));
        c.delete(b"raw");
        c.delete(b"absent");
        let size = c.size();
        let all = s.scan(b"", None, usize::MAX, false);
        let recount = all.iter().fold(SizeDelta::ZERO, |t, (k, e)| {
            t + SizeDelta::added(k.len(), e.value.len())
        });
        assert_eq!(size, recount);
        assert_eq!(size.keys, 1);
    }

    #[test]
    fn only_metadata_entries_count_and_an_overwrite_moves_only_the_expiry() {
        let mut s = ModelStore::default();
        let mut k = DbKeys::default();
        let mut c = Counted::new(&mut s, &mut k);
        c.put(meta_key(db(0), b"a"), entry(0));
        c.put(meta_key(db(3), b"b"), entry(100));
        c.put(field_key(db(3), b"b", 1, b"f"), entry(0));
        c.put(Bytes::from_static(b"raw"), entry(0));
        c.put(meta_key(db(0), b"a"), entry(300));
        c.put(meta_key(db(3), b"b"), entry(0));
        assert_eq!(
            k.get(db(0)),
            DbCount {
                keys: 1,
                expires: 1,
                expire_at_sum: 300
            }
        );
        assert_eq!(
            k.get(db(3)),
            DbCount {
                keys: 1,
                expires: 0,
                expire_at_sum: 0
            }
        );
        let mut c = Counted::new(&mut s, &mut k);
        assert!(c.delete(&meta_key(db(0), b"a")).is_some());
        assert!(c.delete(&meta_key(db(0), b"a")).is_none());
        assert!(c.delete(&field_key(db(3), b"b", 1, b"f")).is_some());
        assert_eq!(k.get(db(0)), DbCount::default());
        assert_eq!(k.total_keys(), 1);
        assert_eq!(k, recount(&s, b"", b""));
    }

    #[test]
    fn stats_list_only_databases_with_keys_and_their_mean_expiry() {
        let mut s = ModelStore::default();
        let mut k = DbKeys::default();
        let mut c = Counted::new(&mut s, &mut k);
        c.put(meta_key(db(2), b"a"), entry(1000));
        c.put(meta_key(db(2), b"b"), entry(2001));
        c.put(meta_key(db(2), b"c"), entry(0));
        c.put(meta_key(db(9), b"a"), entry(0));
        assert_eq!(
            k.stats(),
            vec![
                DbStat {
                    db: db(2),
                    keys: 3,
                    expires: 2,
                    mean_expire_at_ms: 1500
                },
                DbStat {
                    db: db(9),
                    keys: 1,
                    expires: 0,
                    mean_expire_at_ms: 0
                },
            ]
        );
    }

    #[test]
    fn a_recount_of_two_sides_adds_up_to_the_whole_and_minus_gives_the_other_side() {
        let mut s = ModelStore::default();
        for i in 0..10_000u32 {
            let key = format!("key:{i}");
            let d = db((i % 16) as u8);
            s.put(meta_key(d, key.as_bytes()), entry(u64::from(i % 3)));
            s.put(field_key(d, key.as_bytes(), 1, b"f"), entry(0));
        }
        s.put(Bytes::from_static(b"a raw key"), entry(0));
        let whole = recount(&s, b"", b"");
        assert_eq!(whole.total_keys(), 10_000);
        let mid = b"r\x20\x00";
        let left = recount(&s, b"", mid);
        let right = recount(&s, mid, b"");
        assert!(left.total_keys() > 0 && right.total_keys() > 0);
        assert_eq!(whole.minus(&right), left);
        assert_eq!(whole.minus(&left), right);
    }
}
