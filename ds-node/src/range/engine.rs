// perf-critical: every applied write and every read goes through this store.
//! [`MasstreeStore`]: the shard's [`KvStore`] over the Masstree hot tier.
//!
//! Every value is kept inline (hot) together with the [`LogPointer`] of the shard-log record
//! of the Raft entry that wrote it (set with [`MasstreeStore::set_source`] before an entry is
//! applied), so the tiering issue can drop the inline copy and keep the pointer. The value
//! bytes a Redis key stores are derived by the state machine (type byte + value), so the
//! pointer names the *record* that produced the value, not the value's own bytes: a cold read
//! re-derives it from that record. Expiry is stored with the entry.

use std::ops::{Bound, ControlFlow};

use bytes::Bytes;
use engines::masstree::{Direction, LogPointer, Masstree, Value};

use super::store::{Entry, KvStore};

/// The shard's store: one Masstree shared by every range of the shard (their keys are
/// disjoint).
#[derive(Debug, Default)]
pub struct MasstreeStore {
    tree: Masstree,
    source: Option<LogPointer>,
    /// Change of (bytes, keys) since the last [`take_delta`](Self::take_delta): the state
    /// machine charges it to the range whose entry it applied (range size for the master's
    /// split decisions, without scanning).
    delta: (i64, i64),
    /// The first write the tree refused since the last [`take_fault`](Self::take_fault): an
    /// internal invariant broken (`net::limits` keeps every key the state machine builds
    /// within the tree's limit). The caller stops the range instead of the process.
    fault: Option<String>,
    /// Writes refused by the tree, ever (a metric).
    faults_total: u64,
}

impl MasstreeStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the log record the following writes come from (`None`: not known, e.g. reads).
    pub fn set_source(&mut self, ptr: Option<LogPointer>) {
        self.source = ptr;
    }

    /// The log pointer recorded for `key`, if any.
    pub fn pointer(&self, key: &[u8]) -> Option<LogPointer> {
        self.tree.get(key).and_then(|e| e.pointer())
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.tree.len()
    }

    /// Whether the store is empty.
    pub fn is_empty(&self) -> bool {
        self.tree.is_empty()
    }

    /// Bytes of memory the tree uses.
    pub fn memory_bytes(&self) -> usize {
        self.tree.memory_bytes()
    }

    /// Returns and clears the first write the tree refused since the last call.
    pub fn take_fault(&mut self) -> Option<String> {
        self.fault.take()
    }

    /// Writes the tree refused since the store was created.
    pub fn faults_total(&self) -> u64 {
        self.faults_total
    }

    /// Returns and resets the change of (key + value bytes, keys) since the last call.
    pub fn take_delta(&mut self) -> (i64, i64) {
        std::mem::take(&mut self.delta)
    }

    /// (key + value bytes, keys) of `[start, end)` (`end` empty: unbounded), without copying.
    pub fn size_of(&self, start: &[u8], end: &[u8]) -> (u64, u64) {
        let (mut bytes, mut keys) = (0u64, 0u64);
        self.walk(start, end, |k, v| {
            bytes += (k.len() + v) as u64;
            keys += 1;
            ControlFlow::Continue(())
        });
        (bytes, keys)
    }

    /// The first key at or after which half of the bytes of `[start, end)` lie (`None` for
    /// an empty range), without copying values.
    pub fn middle_key(&self, start: &[u8], end: &[u8]) -> Option<Bytes> {
        let (total, _) = self.size_of(start, end);
        let mut seen = 0u64;
        let mut out = None;
        self.walk(start, end, |k, v| {
            seen += (k.len() + v) as u64;
            if seen * 2 >= total {
                out = Some(Bytes::copy_from_slice(k));
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        });
        out
    }

    fn walk(&self, start: &[u8], end: &[u8], mut f: impl FnMut(&[u8], usize) -> ControlFlow<()>) {
        self.tree.scan(
            Bound::Included(start),
            Direction::Forward,
            usize::MAX,
            |k, e| {
                if !end.is_empty() && k >= end {
                    return ControlFlow::Break(());
                }
                f(k, e.value().map_or(0, <[u8]>::len))
            },
        );
    }
}

fn owned_len(e: &engines::masstree::OwnedEntry) -> i64 {
    e.inline.as_ref().map_or(0, Vec::len) as i64
}

fn to_entry(e: engines::masstree::EntryRef<'_>) -> Entry {
    Entry {
        value: Bytes::copy_from_slice(e.value().unwrap_or_default()),
        expire_at_ms: e.expire_at_ms().unwrap_or(0),
    }
}

impl KvStore for MasstreeStore {
    fn get(&self, key: &[u8]) -> Option<Entry> {
        self.tree.get(key).map(to_entry)
    }

    fn put(&mut self, key: Bytes, entry: Entry) {
        let mut v = Value::inline(&entry.value);
        if let Some(p) = self.source {
            v = v.with_pointer(p);
        }
        if entry.expire_at_ms != 0 {
            v = v.with_expiry_ms(entry.expire_at_ms);
        }
        // The only refusal is a key over 64 KiB; `net::limits` bounds the state machine's
        // keys below it, so a refusal is a broken invariant: recorded, never a panic.
        match self.tree.insert(&key, v) {
            Ok(Some(old)) => self.delta.0 += entry.value.len() as i64 - owned_len(&old),
            Ok(None) => {
                self.delta.0 += (key.len() + entry.value.len()) as i64;
                self.delta.1 += 1;
            }
            Err(e) => {
                self.faults_total += 1;
                tracing::error!(key_len = key.len(), "engine refused a write: {e}");
                self.fault.get_or_insert_with(|| e.to_string());
            }
        }
    }

    fn delete(&mut self, key: &[u8]) -> bool {
        match self.tree.remove(key) {
            Some(old) => {
                self.delta.0 -= key.len() as i64 + owned_len(&old);
                self.delta.1 -= 1;
                true
            }
            None => false,
        }
    }

    fn scan(
        &self,
        start: &[u8],
        end: Option<&[u8]>,
        limit: usize,
        reverse: bool,
    ) -> Vec<(Bytes, Entry)> {
        let mut out = Vec::new();
        if limit == 0 || end.is_some_and(|e| e <= start) {
            return out;
        }
        if reverse {
            let from = end.map_or(Bound::Unbounded, Bound::Excluded);
            self.tree
                .scan(from, Direction::Reverse, usize::MAX, |k, e| {
                    if k < start {
                        return ControlFlow::Break(());
                    }
                    out.push((Bytes::copy_from_slice(k), to_entry(e)));
                    if out.len() >= limit {
                        ControlFlow::Break(())
                    } else {
                        ControlFlow::Continue(())
                    }
                });
        } else {
            self.tree.scan(
                Bound::Included(start),
                Direction::Forward,
                usize::MAX,
                |k, e| {
                    if end.is_some_and(|end| k >= end) {
                        return ControlFlow::Break(());
                    }
                    out.push((Bytes::copy_from_slice(k), to_entry(e)));
                    if out.len() >= limit {
                        ControlFlow::Break(())
                    } else {
                        ControlFlow::Continue(())
                    }
                },
            );
        }
        out
    }
}
