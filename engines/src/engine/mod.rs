//! The engine boundary (DESIGN §4): the [`Engine`] trait the range state machine applies to,
//! the [`Entry`] it reads and writes, and its implementations — [`ModelEngine`] (a `BTreeMap`,
//! the reference of the conformance suite `engines/tests/engine_conformance.rs`) and
//! [`MasstreeEngine`] (the shard's engine over the Masstree hot tier, with cold entries).
//!
//! The interface is synchronous: the hot tier answers from memory. An operation declares the
//! keys it touches before it runs, so the caller loads the cold entries among them first
//! (prefetch-then-apply: ds-node `server::cold` with [`MasstreeEngine::cold_in`] and
//! [`MasstreeEngine::load`]); the state machine then applies without waiting, and it does not
//! change when tiering does.
//!
//! Imports: `model` uses only this module; `masstree` uses `crate::masstree` (the tree) and
//! `crate::pointer`. Nothing else in the crate imports `engine`.

use bytes::Bytes;

pub mod masstree;
mod model;

pub use masstree::MasstreeEngine;
pub use model::ModelEngine;

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

/// What a write changed in an engine's size: key + value bytes and keys (a cold entry counts
/// its value's length on the device). Writes return it; the state machine sums what its
/// operations returned into the range's size, so no figure travels by a side channel.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SizeDelta {
    /// Change of key + value bytes.
    pub bytes: i64,
    /// Change of keys.
    pub keys: i64,
}

impl SizeDelta {
    /// No change.
    pub const ZERO: SizeDelta = SizeDelta { bytes: 0, keys: 0 };

    /// A new entry of `key_len` + `value_len` bytes.
    #[inline]
    pub fn added(key_len: usize, value_len: usize) -> SizeDelta {
        SizeDelta {
            bytes: (key_len + value_len) as i64,
            keys: 1,
        }
    }

    /// An entry of `key_len` + `value_len` bytes removed.
    #[inline]
    pub fn removed(key_len: usize, value_len: usize) -> SizeDelta {
        SizeDelta {
            bytes: -((key_len + value_len) as i64),
            keys: -1,
        }
    }

    /// A value of `old_len` bytes replaced by one of `new_len` (same key).
    #[inline]
    pub fn replaced(old_len: usize, new_len: usize) -> SizeDelta {
        SizeDelta {
            bytes: new_len as i64 - old_len as i64,
            keys: 0,
        }
    }
}

impl std::ops::AddAssign for SizeDelta {
    #[inline]
    fn add_assign(&mut self, d: SizeDelta) {
        self.bytes += d.bytes;
        self.keys += d.keys;
    }
}

impl std::ops::Add for SizeDelta {
    type Output = SizeDelta;
    #[inline]
    fn add(mut self, d: SizeDelta) -> SizeDelta {
        self += d;
        self
    }
}

/// An ordered key-value store with per-entry expiry: what the range state machine applies to.
///
/// Entries carry an expiry (Unix milliseconds, 0 = none) next to the value, because the
/// engine keeps it per entry (Masstree entries, the LSM key index) and can drop expired
/// values without reading them. Expiry is data here: `get` and `scan` return expired entries
/// too, and the state machine decides what an expired entry means.
///
/// Writes return their [`SizeDelta`]; the sum of what they returned is always the engine's
/// size recounted (the conformance suite checks it after every step).
pub trait Engine {
    /// The entry at `key`, expired or not.
    fn get(&self, key: &[u8]) -> Option<Entry>;
    /// Inserts or replaces; returns the size change (zero if the engine refused the write).
    fn put(&mut self, key: Bytes, entry: Entry) -> SizeDelta;
    /// Removes; the size change if the key was there, `None` if it was not.
    fn delete(&mut self, key: &[u8]) -> Option<SizeDelta>;
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
    /// Whether `key`'s value is only on the device (never, for an engine without cold
    /// entries).
    fn is_cold(&self, _key: &[u8]) -> bool {
        false
    }
    /// The values of up to `limit` entries with keys in `[start, end)`, in key order, without
    /// their keys (a list's elements: one copy per element instead of two).
    fn scan_values(&self, start: &[u8], end: Option<&[u8]>, limit: usize) -> Vec<Bytes> {
        self.scan(start, end, limit, false)
            .into_iter()
            .map(|(_, e)| e.value)
            .collect()
    }
    /// Up to `limit` keys in `[start, end)` in key order, without their values (an engine
    /// with cold entries answers without loading them).
    fn scan_keys(&self, start: &[u8], end: Option<&[u8]>, limit: usize) -> Vec<Bytes> {
        self.scan(start, end, limit, false)
            .into_iter()
            .map(|(k, _)| k)
            .collect()
    }
}
