//! The storage interface the state machine applies to, and [`ModelStore`], a `BTreeMap`
//! implementation used as the reference in tests.
//!
//! Entries carry an expiry (Unix milliseconds, 0 = none) next to the value, because the
//! engine keeps it per entry (Masstree entries, the LSM key index) and can drop expired values
//! without reading them.
//!
//! This interface is synchronous: the hot tier answers from memory. Cold entries are loaded
//! before an operation is applied (`server::cold`), so the state machine never waits.

use std::collections::BTreeMap;
use std::ops::Bound;

use bytes::Bytes;

/// One stored entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The value.
    pub value: Bytes,
    /// Expiry in Unix milliseconds; 0 = never.
    pub expire_at_ms: u64,
}

impl Entry {
    /// Whether the entry is expired at `now_ms`.
    pub fn is_expired(&self, now_ms: u64) -> bool {
        self.expire_at_ms != 0 && self.expire_at_ms <= now_ms
    }
}

/// An ordered key-value store with per-entry expiry.
pub trait KvStore {
    /// The entry at `key`, expired or not.
    fn get(&self, key: &[u8]) -> Option<Entry>;
    /// Inserts or replaces.
    fn put(&mut self, key: Bytes, entry: Entry);
    /// Removes; whether the key was there.
    fn delete(&mut self, key: &[u8]) -> bool;
    /// Up to `limit` entries with keys in `[start, end)` (`end` `None`: unbounded), in key
    /// order, or in reverse order from the end when `reverse`.
    fn scan(
        &self,
        start: &[u8],
        end: Option<&[u8]>,
        limit: usize,
        reverse: bool,
    ) -> Vec<(Bytes, Entry)>;
    /// The expiry of `key` (0 = none) if present, without its value.
    fn expiry(&self, key: &[u8]) -> Option<u64> {
        self.get(key).map(|e| e.expire_at_ms)
    }
    /// Whether `key`'s value is only on the device (never, for a store without cold entries).
    fn is_cold(&self, _key: &[u8]) -> bool {
        false
    }
    /// Up to `limit` keys in `[start, end)` in key order, without their values (a store with
    /// cold entries answers without loading them).
    fn scan_keys(&self, start: &[u8], end: Option<&[u8]>, limit: usize) -> Vec<Bytes> {
        self.scan(start, end, limit, false)
            .into_iter()
            .map(|(k, _)| k)
            .collect()
    }
}

/// The reference store: a `BTreeMap`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ModelStore {
    map: BTreeMap<Bytes, Entry>,
}

impl ModelStore {
    /// Number of entries, expired included.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

impl KvStore for ModelStore {
    fn get(&self, key: &[u8]) -> Option<Entry> {
        self.map.get(key).cloned()
    }
    fn put(&mut self, key: Bytes, entry: Entry) {
        self.map.insert(key, entry);
    }
    fn delete(&mut self, key: &[u8]) -> bool {
        self.map.remove(key).is_some()
    }
    fn scan(
        &self,
        start: &[u8],
        end: Option<&[u8]>,
        limit: usize,
        reverse: bool,
    ) -> Vec<(Bytes, Entry)> {
        let lo = Bound::Included(start);
        let hi = end.map_or(Bound::Unbounded, Bound::Excluded);
        if end.is_some_and(|e| e <= start) {
            return Vec::new();
        }
        let range = self.map.range::<[u8], _>((lo, hi));
        let take = |it: &mut dyn Iterator<Item = (&Bytes, &Entry)>| {
            it.take(limit)
                .map(|(k, e)| (k.clone(), e.clone()))
                .collect::<Vec<_>>()
        };
        if reverse {
            take(&mut range.rev())
        } else {
            take(&mut range.into_iter())
        }
    }
}
