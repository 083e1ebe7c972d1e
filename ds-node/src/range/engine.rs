// perf-critical: every applied write and every read goes through this store.
//! [`MasstreeStore`]: the shard's [`KvStore`] over the Masstree hot tier, with cold entries.
//!
//! An entry is *hot* (its stored bytes inline), *cold* (only a [`LogPointer`] to a durable
//! copy of exactly those bytes in the shard log: segment, offset, length, crc32c), or both
//! (a cold entry loaded back by a read keeps its pointer, so demoting it again costs no
//! write). A write always stores a hot entry without a pointer: the bytes an entry stores are
//! derived by the state machine (type byte + value), so they are no slice of the Raft entry
//! that carried the command. Demotion (`server::demote`) gives them a durable copy first.
//!
//! The state machine is synchronous and reads values from memory, so a cold entry must be
//! loaded (`server::cold`) before an operation that touches it is applied. Reaching a cold
//! entry through [`KvStore::get`] or [`KvStore::scan`] anyway is a bug of that prefetch: a
//! debug assertion fails, and in release the read is counted ([`take_cold_misses`]) and
//! answered with an empty value, which the caller turns into an error (a read) or a stopped
//! range (a write), never into a silent empty value.
//!
//! The store counts the live bytes each segment of the shard log holds for its pointers, so
//! that no segment a pointer points into is released ([`is_pinned`]).
//!
//! [`take_cold_misses`]: MasstreeStore::take_cold_misses
//! [`is_pinned`]: MasstreeStore::is_pinned

use std::cell::Cell;
use std::collections::BTreeMap;
use std::ops::{Bound, ControlFlow};

use bytes::Bytes;
use engines::masstree::{Direction, EntryRef, LogPointer, Masstree, OwnedEntry, SegmentId, Value};

use super::store::{Entry, KvStore};

mod gc;
pub use gc::{GcItem, GcWalk};

/// An entry as stored: its bytes, or where they are in the shard log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stored {
    /// In memory.
    Hot(Entry),
    /// Only in the shard log.
    Cold {
        /// The durable copy of the entry's bytes.
        pointer: LogPointer,
        /// Expiry in Unix milliseconds; 0 = never.
        expire_at_ms: u64,
    },
}

/// A hot entry chosen for demotion: its bytes, and the pointer it already has (a loaded cold
/// entry), if any.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// The key.
    pub key: Bytes,
    /// The stored bytes.
    pub value: Bytes,
    /// A durable copy it already has.
    pub pointer: Option<LogPointer>,
}

/// Allocator bytes counted per entry for its heap allocation (suffix, pointer, value): the
/// allocator's header and rounding (glibc: 8 B header, 16 B granularity, so 8–23 B).
pub const ALLOC_OVERHEAD: usize = 16;

/// The memory a store accounts for, which `maxmemory` bounds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Accounted {
    /// Arena pages of the tree's nodes, live and free slots (entries live in border nodes).
    pub arena_bytes: u64,
    /// Heap bytes of key suffixes, log pointers and inline values.
    pub heap_bytes: u64,
    /// [`ALLOC_OVERHEAD`] per entry.
    pub alloc_overhead_bytes: u64,
}

impl Accounted {
    /// The sum.
    pub fn total(&self) -> u64 {
        self.arena_bytes + self.heap_bytes + self.alloc_overhead_bytes
    }
}

/// Whether a cold read promotes its value: when reads are allowed to (below `promote-below`,
/// demotion not behind) and the entry's previous cold read was at most `window` ticks
/// before `tick`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Promotion {
    /// The policy clock now (wrapping).
    pub tick: u16,
    /// Most ticks between two cold reads that promote.
    pub window: u16,
    /// Whether promotion is allowed at all now.
    pub allowed: bool,
}

impl Promotion {
    /// Never promotes.
    pub const NEVER: Promotion = Promotion {
        tick: 0,
        window: 0,
        allowed: false,
    };

    fn allows(&self, previous: Option<u16>) -> bool {
        self.allowed && previous.is_some_and(|t| self.tick.wrapping_sub(t) <= self.window)
    }
}

/// What [`MasstreeStore::load_with`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loaded {
    /// The entry was no longer cold with that pointer: nothing changed.
    Stale,
    /// Loaded for the operation only.
    Transient,
    /// Loaded to stay hot.
    Promoted,
}

/// Figures of the store for `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ColdStats {
    /// Entries held only as a pointer.
    pub cold_entries: u64,
    /// Value bytes of those entries (on the device).
    pub cold_value_bytes: u64,
    /// Value bytes held in memory.
    pub hot_value_bytes: u64,
}

/// The shard's store: one Masstree shared by every range of the shard (their keys are
/// disjoint).
#[derive(Debug, Default)]
pub struct MasstreeStore {
    tree: Masstree,
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
    /// Bytes pointed at by live entries, per shard-log segment.
    live: BTreeMap<SegmentId, u64>,
    cold_entries: u64,
    cold_bytes: u64,
    /// Cold entries read through `get`/`scan` since the last `take_cold_misses`.
    cold_misses: Cell<u64>,
}

fn stored_len(e: &EntryRef<'_>) -> usize {
    match e.value() {
        Some(v) => v.len(),
        None => e.pointer().map_or(0, |p| p.len as usize),
    }
}

fn owned_len(e: &OwnedEntry) -> i64 {
    match (&e.inline, e.pointer) {
        (Some(v), _) => v.len() as i64,
        (None, Some(p)) => i64::from(p.len),
        (None, None) => 0,
    }
}

impl MasstreeStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// The log pointer recorded for `key`, if any.
    pub fn pointer(&self, key: &[u8]) -> Option<LogPointer> {
        self.tree.get(key).and_then(|e| e.pointer())
    }

    /// The pointer of `key` if its entry is cold (not in memory).
    pub fn cold_pointer(&self, key: &[u8]) -> Option<LogPointer> {
        let e = self.tree.get(key)?;
        if e.value().is_some() {
            None
        } else {
            e.pointer()
        }
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

    /// Hot and cold figures.
    pub fn cold_stats(&self) -> ColdStats {
        ColdStats {
            cold_entries: self.cold_entries,
            cold_value_bytes: self.cold_bytes,
            hot_value_bytes: self.tree.memory_stats().value_bytes as u64,
        }
    }

    /// Live bytes per segment: what the store's pointers name.
    pub fn live_bytes(&self) -> &BTreeMap<SegmentId, u64> {
        &self.live
    }

    /// Whether a live pointer points into `segment` (it must not be released).
    pub fn is_pinned(&self, segment: SegmentId) -> bool {
        self.live.contains_key(&segment)
    }

    /// Returns and clears the first write the tree refused since the last call.
    pub fn take_fault(&mut self) -> Option<String> {
        self.fault.take()
    }

    /// Writes the tree refused since the store was created.
    pub fn faults_total(&self) -> u64 {
        self.faults_total
    }

    /// Returns and resets the count of cold entries read through `get`/`scan` (a prefetch
    /// bug: see the module documentation).
    pub fn take_cold_misses(&self) -> u64 {
        self.cold_misses.replace(0)
    }

    /// Returns and resets the change of (key + value bytes, keys) since the last call.
    pub fn take_delta(&mut self) -> (i64, i64) {
        std::mem::take(&mut self.delta)
    }

    /// (key + value bytes, keys) of `[start, end)` (`end` empty: unbounded), without copying;
    /// a cold entry counts its value's length on the device.
    pub fn size_of(&self, start: &[u8], end: &[u8]) -> (u64, u64) {
        let (mut bytes, mut keys) = (0u64, 0u64);
        self.walk(start, end, |k, e| {
            bytes += (k.len() + stored_len(&e)) as u64;
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
        self.walk(start, end, |k, e| {
            seen += (k.len() + stored_len(&e)) as u64;
            if seen * 2 >= total {
                out = Some(Bytes::copy_from_slice(k));
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        });
        out
    }

    pub(crate) fn walk(
        &self,
        start: &[u8],
        end: &[u8],
        mut f: impl FnMut(&[u8], EntryRef<'_>) -> ControlFlow<()>,
    ) {
        self.tree.scan(
            Bound::Included(start),
            Direction::Forward,
            usize::MAX,
            |k, e| {
                if !end.is_empty() && k >= end {
                    return ControlFlow::Break(());
                }
                f(k, e)
            },
        );
    }

    /// Walks `[start, end)` (`end` empty: unbounded) in key order, or in reverse order from
    /// `end` when `reverse`, and appends the cold entries visited to `out`; after each entry
    /// `more(its expiry, 0 = none)` says whether to visit the next.
    pub fn cold_in(
        &self,
        start: &[u8],
        end: &[u8],
        reverse: bool,
        mut more: impl FnMut(u64) -> bool,
        out: &mut Vec<(Bytes, LogPointer)>,
    ) {
        let mut visit = |k: &[u8], e: EntryRef<'_>| {
            if let (None, Some(p)) = (e.value(), e.pointer()) {
                out.push((Bytes::copy_from_slice(k), p));
            }
            if more(e.expire_at_ms().unwrap_or(0)) {
                ControlFlow::Continue(())
            } else {
                ControlFlow::Break(())
            }
        };
        if reverse {
            let from = if end.is_empty() {
                Bound::Unbounded
            } else {
                Bound::Excluded(end)
            };
            self.tree
                .scan(from, Direction::Reverse, usize::MAX, |k, e| {
                    if k < start {
                        return ControlFlow::Break(());
                    }
                    visit(k, e)
                });
        } else {
            self.walk(start, end, visit);
        }
    }

    /// Puts the loaded bytes of cold entry `key` back in memory (its pointer stays), if the
    /// entry is still cold with `pointer`; returns whether it was. The entry is promoted
    /// (stays hot, referenced) when `promote` says so for its previous cold read, else it is
    /// *transient*: loaded for this operation only, dropped by [`drop_transient`] or first
    /// in line for the clock.
    ///
    /// [`drop_transient`]: Self::drop_transient
    pub fn load_with(
        &mut self,
        key: &[u8],
        pointer: LogPointer,
        bytes: &[u8],
        promote: &Promotion,
    ) -> Loaded {
        let Some(mut e) = self.tree.get_mut(key) else {
            return Loaded::Stale;
        };
        let g = e.get();
        if g.value().is_some() || g.pointer() != Some(pointer) {
            return Loaded::Stale;
        }
        let promoted = promote.allows(g.cold_read_stamp());
        g.set_cold_read_stamp((!promoted).then_some(promote.tick));
        e.promote(bytes);
        e.set_transient(!promoted);
        e.set_accessed(promoted);
        self.cold_entries -= 1;
        self.cold_bytes -= u64::from(pointer.len);
        if promoted {
            Loaded::Promoted
        } else {
            Loaded::Transient
        }
    }

    /// [`load_with`](Self::load_with) without promotion (the entry is transient).
    pub fn load(&mut self, key: &[u8], pointer: LogPointer, bytes: &[u8]) -> bool {
        self.load_with(key, pointer, bytes, &Promotion::NEVER) != Loaded::Stale
    }

    /// Makes `key` cold again if it is still the transient copy loaded with `pointer` (no
    /// I/O: the pointer names a durable copy) before policy tick `before` (`None`: any
    /// time); returns whether it did.
    pub fn drop_transient(&mut self, key: &[u8], pointer: LogPointer, before: Option<u16>) -> bool {
        let Some(mut e) = self.tree.get_mut(key) else {
            return false;
        };
        let g = e.get();
        if !g.is_transient() || g.value().is_none() || g.pointer() != Some(pointer) {
            return false;
        }
        if !loaded_before(g.cold_read_stamp(), before) {
            return false;
        }
        if e.demote().is_none() {
            return false;
        }
        self.cold_entries += 1;
        self.cold_bytes += u64::from(pointer.len);
        true
    }

    /// The memory the store accounts for ([`Accounted`]).
    pub fn accounted(&self) -> Accounted {
        let s = self.tree.memory_stats();
        Accounted {
            arena_bytes: s.reserved_bytes as u64,
            heap_bytes: (s.suffix_bytes + s.pointer_bytes + s.value_bytes) as u64,
            alloc_overhead_bytes: (s.entries * ALLOC_OVERHEAD) as u64,
        }
    }

    /// Up to `max_entries` hot entries from `from` on (key order, at most 8 × `max_entries`
    /// entries visited), holding about `max_bytes` of values, that demotion may make cold,
    /// and the key to continue at (`None`: the end of the store was reached). Values longer
    /// than `max_value` stay hot, and so do entries expiring before `expiring_before_ms`
    /// (they are about to be deleted: a copy would only pin log space).
    pub fn demotion_candidates(
        &self,
        from: &[u8],
        max_entries: usize,
        max_bytes: usize,
        max_value: usize,
        expiring_before_ms: u64,
    ) -> (Vec<Candidate>, Option<Bytes>) {
        let (mut out, mut bytes, mut last) = (Vec::new(), 0usize, None);
        let (mut reached_end, mut visited) = (true, 0usize);
        // Cold entries are visited too: bound the walk, not only what it finds.
        let max_visits = max_entries.saturating_mul(8);
        self.walk(from, &[], |k, e| {
            visited += 1;
            if out.len() >= max_entries || bytes >= max_bytes || visited > max_visits {
                reached_end = false;
                return ControlFlow::Break(());
            }
            last = Some(k.to_vec());
            let expiring = e.expire_at_ms().is_some_and(|t| t < expiring_before_ms);
            if let Some(v) = e.value().filter(|v| v.len() <= max_value && !expiring) {
                bytes += v.len();
                out.push(Candidate {
                    key: Bytes::copy_from_slice(k),
                    value: Bytes::copy_from_slice(v),
                    pointer: e.pointer(),
                });
            }
            ControlFlow::Continue(())
        });
        let next = if reached_end {
            None
        } else {
            last.map(|mut k| {
                k.push(0);
                Bytes::from(k)
            })
        };
        (out, next)
    }

    /// Makes `key` cold with `pointer` (a durable copy of `bytes`) if it still holds exactly
    /// `bytes` in memory; returns whether it did. A write in between wins: the copy is then
    /// dead bytes in the log.
    pub fn demote(&mut self, key: &[u8], bytes: &[u8], pointer: LogPointer) -> bool {
        let Some(mut e) = self.tree.get_mut(key) else {
            return false;
        };
        let g = e.get();
        if g.value() != Some(bytes) {
            return false;
        }
        let old = g.pointer();
        if old != Some(pointer) {
            e.set_pointer(pointer);
        }
        if e.demote().is_none() {
            return false;
        }
        if let Some(o) = old.filter(|o| *o != pointer) {
            unpin(&mut self.live, &o);
        }
        if old != Some(pointer) {
            pin(&mut self.live, &pointer);
        }
        self.cold_entries += 1;
        self.cold_bytes += u64::from(pointer.len);
        true
    }

    /// Inserts a cold entry (recovery from a checkpoint that names a pointer).
    pub fn put_cold(&mut self, key: Bytes, pointer: LogPointer, expire_at_ms: u64) {
        let mut v = Value::pointer(pointer);
        if expire_at_ms != 0 {
            v = v.with_expiry_ms(expire_at_ms);
        }
        if self.insert(&key, v, i64::from(pointer.len)) {
            pin(&mut self.live, &pointer);
            self.cold_entries += 1;
            self.cold_bytes += u64::from(pointer.len);
        }
    }

    /// Every entry of `[start, end)` (`end` empty: unbounded) as stored, in key order.
    pub fn scan_stored(&self, start: &[u8], end: &[u8]) -> Vec<(Bytes, Stored)> {
        let mut out = Vec::new();
        self.walk(start, end, |k, e| {
            let expire_at_ms = e.expire_at_ms().unwrap_or(0);
            let s = match (e.value(), e.pointer()) {
                (Some(v), _) => Stored::Hot(Entry {
                    value: Bytes::copy_from_slice(v),
                    expire_at_ms,
                }),
                (None, Some(pointer)) => Stored::Cold {
                    pointer,
                    expire_at_ms,
                },
                (None, None) => Stored::Hot(Entry {
                    value: Bytes::new(),
                    expire_at_ms,
                }),
            };
            out.push((Bytes::copy_from_slice(k), s));
            ControlFlow::Continue(())
        });
        out
    }

    /// Up to `limit` entries of `[start, end)` with their expiry but *without values* (cold
    /// ones are not loaded): for the leader's expiry sweep, which needs only keys and expiry.
    pub fn scan_expiry(&self, start: &[u8], end: &[u8], limit: usize) -> Vec<(Bytes, Entry)> {
        let mut out = Vec::new();
        self.walk(start, end, |k, e| {
            if out.len() >= limit {
                return ControlFlow::Break(());
            }
            out.push((
                Bytes::copy_from_slice(k),
                Entry {
                    value: Bytes::new(),
                    expire_at_ms: e.expire_at_ms().unwrap_or(0),
                },
            ));
            ControlFlow::Continue(())
        });
        out
    }

    /// Inserts `v` (of `len` stored bytes) and keeps the accounting; whether it went in.
    fn insert(&mut self, key: &[u8], v: Value<'_>, len: i64) -> bool {
        // The only refusal is a key over 64 KiB; `net::limits` bounds the state machine's
        // keys below it, so a refusal is a broken invariant: recorded, never a panic.
        match self.tree.insert(key, v) {
            Ok(Some(old)) => {
                self.delta.0 += len - owned_len(&old);
                self.forget(&old);
                true
            }
            Ok(None) => {
                self.delta.0 += key.len() as i64 + len;
                self.delta.1 += 1;
                true
            }
            Err(e) => {
                self.faults_total += 1;
                tracing::error!(key_len = key.len(), "engine refused a write: {e}");
                self.fault.get_or_insert_with(|| e.to_string());
                false
            }
        }
    }

    /// Drops the accounting of an entry taken out of the tree.
    fn forget(&mut self, old: &OwnedEntry) {
        if let Some(p) = old.pointer {
            unpin(&mut self.live, &p);
            if old.inline.is_none() {
                self.cold_entries -= 1;
                self.cold_bytes -= u64::from(p.len);
            }
        }
    }

    fn entry_of(&self, e: EntryRef<'_>) -> Entry {
        e.touch();
        let value = match e.value() {
            Some(v) => Bytes::copy_from_slice(v),
            None => {
                debug_assert!(
                    e.pointer().is_none(),
                    "a cold entry was reached without being loaded first (prefetch bug)"
                );
                self.cold_misses.set(self.cold_misses.get() + 1);
                Bytes::new()
            }
        };
        Entry {
            value,
            expire_at_ms: e.expire_at_ms().unwrap_or(0),
        }
    }
}

fn pin(live: &mut BTreeMap<SegmentId, u64>, p: &LogPointer) {
    *live.entry(p.segment).or_default() += u64::from(p.len).max(1);
}

fn unpin(live: &mut BTreeMap<SegmentId, u64>, p: &LogPointer) {
    if let Some(n) = live.get_mut(&p.segment) {
        *n = n.saturating_sub(u64::from(p.len).max(1));
        if *n == 0 {
            live.remove(&p.segment);
        }
    }
}

impl KvStore for MasstreeStore {
    fn get(&self, key: &[u8]) -> Option<Entry> {
        self.tree.get(key).map(|e| self.entry_of(e))
    }

    fn put(&mut self, key: Bytes, entry: Entry) {
        let mut v = Value::inline(&entry.value);
        if entry.expire_at_ms != 0 {
            v = v.with_expiry_ms(entry.expire_at_ms);
        }
        self.insert(&key, v, entry.value.len() as i64);
    }

    fn delete(&mut self, key: &[u8]) -> bool {
        match self.tree.remove(key) {
            Some(old) => {
                self.delta.0 -= key.len() as i64 + owned_len(&old);
                self.delta.1 -= 1;
                self.forget(&old);
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
        let mut push = |k: &[u8], e: EntryRef<'_>| {
            out.push((Bytes::copy_from_slice(k), self.entry_of(e)));
            if out.len() >= limit {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        };
        if reverse {
            let from = end.map_or(Bound::Unbounded, Bound::Excluded);
            self.tree
                .scan(from, Direction::Reverse, usize::MAX, |k, e| {
                    if k < start {
                        return ControlFlow::Break(());
                    }
                    push(k, e)
                });
        } else {
            self.walk(start, end.unwrap_or_default(), push);
        }
        out
    }

    fn expiry(&self, key: &[u8]) -> Option<u64> {
        self.tree.get(key).map(|e| e.expire_at_ms().unwrap_or(0))
    }

    fn is_cold(&self, key: &[u8]) -> bool {
        self.cold_pointer(key).is_some()
    }

    fn scan_keys(&self, start: &[u8], end: Option<&[u8]>, limit: usize) -> Vec<Bytes> {
        let mut out = Vec::new();
        if limit == 0 || end.is_some_and(|e| e <= start) {
            return out;
        }
        self.walk(start, end.unwrap_or_default(), |k, _| {
            out.push(Bytes::copy_from_slice(k));
            if out.len() >= limit {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        });
        out
    }
}

/// Whether a transient entry whose load was stamped `stamp` was loaded before tick `before`
/// (`None`: no bound). Ticks wrap: "before" means up to half the tick space earlier.
pub fn loaded_before(stamp: Option<u16>, before: Option<u16>) -> bool {
    match (stamp, before) {
        (_, None) => true,
        (None, Some(_)) => false,
        (Some(s), Some(b)) => (1..=u16::MAX / 2).contains(&b.wrapping_sub(s)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ptr(seg: u32, offset: u64, v: &[u8]) -> LogPointer {
        LogPointer {
            segment: SegmentId(seg),
            offset,
            len: v.len() as u32,
            checksum: crc32c::crc32c(v),
        }
    }

    fn hot(v: &'static [u8]) -> Entry {
        Entry {
            value: Bytes::from_static(v),
            expire_at_ms: 0,
        }
    }

    #[test]
    fn demoted_entries_pin_their_segment_until_overwritten_or_deleted() {
        let mut s = MasstreeStore::new();
        s.put(Bytes::from_static(b"a"), hot(b"alpha"));
        s.put(Bytes::from_static(b"b"), hot(b"beta"));
        let (c, next) = s.demotion_candidates(b"", 10, 1 << 20, 1 << 20, 0);
        assert_eq!((c.len(), next), (2, None));
        assert!(s.demote(b"a", b"alpha", ptr(3, 100, b"alpha")));
        assert!(s.demote(b"b", b"beta", ptr(4, 100, b"beta")));
        assert!(s.is_pinned(SegmentId(3)) && s.is_pinned(SegmentId(4)));
        assert_eq!(s.cold_stats().cold_entries, 2);
        assert_eq!(s.cold_stats().cold_value_bytes, 9);
        assert_eq!(s.cold_stats().hot_value_bytes, 0);
        s.put(Bytes::from_static(b"a"), hot(b"new"));
        assert!(!s.is_pinned(SegmentId(3)));
        assert!(s.delete(b"b"));
        assert!(!s.is_pinned(SegmentId(4)));
        assert_eq!(s.cold_stats().cold_entries, 0);
        assert_eq!(s.get(b"a"), Some(hot(b"new")));
    }

    #[test]
    fn entries_about_to_expire_and_long_values_stay_hot() {
        let mut s = MasstreeStore::new();
        s.put(
            Bytes::from_static(b"soon"),
            Entry {
                value: Bytes::from_static(b"x"),
                expire_at_ms: 1000,
            },
        );
        s.put(
            Bytes::from_static(b"later"),
            Entry {
                value: Bytes::from_static(b"y"),
                expire_at_ms: 9000,
            },
        );
        s.put(Bytes::from_static(b"long"), hot(b"0123456789"));
        let (c, _) = s.demotion_candidates(b"", 10, 1 << 20, 4, 5000);
        let keys: Vec<&[u8]> = c.iter().map(|c| &c.key[..]).collect();
        assert_eq!(keys, vec![&b"later"[..]]);
    }

    #[test]
    fn a_write_between_selection_and_demotion_wins() {
        let mut s = MasstreeStore::new();
        s.put(Bytes::from_static(b"a"), hot(b"old"));
        s.put(Bytes::from_static(b"a"), hot(b"newer"));
        assert!(!s.demote(b"a", b"old", ptr(1, 0, b"old")));
        assert_eq!(s.get(b"a"), Some(hot(b"newer")));
        assert!(s.live_bytes().is_empty());
    }

    #[test]
    fn a_loaded_entry_reads_back_and_demotes_again_without_a_new_copy() {
        let mut s = MasstreeStore::new();
        s.put(Bytes::from_static(b"k"), hot(b"value"));
        let p = ptr(2, 64, b"value");
        assert!(s.demote(b"k", b"value", p));
        let mut cold = Vec::new();
        s.cold_in(b"", b"", false, |_| true, &mut cold);
        assert_eq!(cold, vec![(Bytes::from_static(b"k"), p)]);
        assert_eq!(s.cold_pointer(b"k"), Some(p));
        assert!(s.load(b"k", p, b"value"));
        assert_eq!(s.get(b"k"), Some(hot(b"value")));
        let (c, _) = s.demotion_candidates(b"", 10, 1 << 20, 1 << 20, 0);
        assert_eq!(c[0].pointer, Some(p));
        assert!(s.demote(b"k", b"value", p));
        assert_eq!(s.live_bytes().get(&SegmentId(2)), Some(&5));
    }

    #[test]
    fn sizes_count_cold_values_by_their_pointer() {
        let mut s = MasstreeStore::new();
        s.put(Bytes::from_static(b"k"), hot(b"12345"));
        s.take_delta();
        assert!(s.demote(b"k", b"12345", ptr(1, 0, b"12345")));
        assert_eq!(s.size_of(b"", b""), (6, 1));
        assert!(s.delete(b"k"));
        assert_eq!(s.take_delta(), (-6, -1));
    }

    #[test]
    fn scans_report_cold_entries_by_pointer_and_keys_without_loading() {
        let mut s = MasstreeStore::new();
        s.put(Bytes::from_static(b"a"), hot(b"1"));
        s.put_cold(Bytes::from_static(b"b"), ptr(7, 8, b"22"), 99);
        assert_eq!(
            s.scan_keys(b"", None, 10),
            vec![Bytes::from_static(b"a"), Bytes::from_static(b"b")]
        );
        let st = s.scan_stored(b"", b"");
        assert_eq!(
            st[1].1,
            Stored::Cold {
                pointer: ptr(7, 8, b"22"),
                expire_at_ms: 99
            }
        );
        assert_eq!(s.scan_expiry(b"", b"", 10)[1].1.expire_at_ms, 99);
        assert_eq!(s.take_cold_misses(), 0);
    }
}
