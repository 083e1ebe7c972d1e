//! [`MasstreeEngine`]: the shard's [`Engine`] over the Masstree hot tier, with cold entries.
//!
//! An entry is *hot* (its stored bytes inline), *cold* (only a [`LogPointer`] to a durable
//! copy of exactly those bytes in the shard log: segment, offset, length, crc32c), or both
//! (a cold entry loaded back by a read keeps its pointer, so demoting it again costs no
//! write). A write stores a hot entry, *backed* (hot with a pointer) when its bytes are a value
//! the Raft entry being applied carries verbatim, alone or after a one-byte type tag
//! ([`Backing`], set by ds-node's apply with [`set_backing`]; the pointer then carries that
//! byte, `LogPointer::leading_byte`): demoting it costs no write. Other entries (values
//! computed at apply time) are unbacked; demotion (ds-node `server::demote`) gives them a
//! durable copy first.
//!
//! [`set_backing`]: MasstreeEngine::set_backing
//!
//! The state machine is synchronous and reads values from memory, so a cold entry must be
//! loaded (ds-node `server::cold`, with [`cold_in`] and [`load`]) before an operation that touches it is applied. Reaching a cold
//! entry through [`Engine::get`] or [`Engine::scan`] anyway is a bug of that prefetch: a
//! debug assertion fails, and in release the read is counted ([`take_cold_misses`]) and
//! answered with an empty value, which the caller turns into an error (a read) or a stopped
//! range (a write), never into a silent empty value.
//!
//! **Side keys.** Keys that the caller's test ([`set_side_keys`]) picks live in a second tree,
//! and every walk merges the two in key order ([`Masstree::scan_merged`]), so the store
//! behaves as one ordered map. ds-node puts its *dedup records* there: a record shares every
//! byte of its Redis key's internal key, so in the main tree each record opened up to one
//! Masstree layer (a 704-byte border) per 8 bytes of that key — ~1.6 KB per recent write for
//! 23-byte keys — and left the borders half empty when it went. In a tree of their own they
//! cost what any key costs.
//!
//! [`set_side_keys`]: MasstreeEngine::set_side_keys
//!
//! The store counts the live bytes each segment of the shard log holds for its pointers, so
//! that no segment a pointer points into is released ([`is_pinned`]).
//!
//! Submodules: `backing` (the Raft entry being applied), `cold` (demotion, loads and
//! promotion), `gc` (the garbage collector's walk and pointer swap), `clock` (the memory
//! policy's clock hand). Each adds methods to [`MasstreeEngine`] or reads it; none imports
//! another.
//!
//! [`take_cold_misses`]: MasstreeEngine::take_cold_misses
//! [`is_pinned`]: MasstreeEngine::is_pinned
//! [`cold_in`]: MasstreeEngine::cold_in
//! [`load`]: MasstreeEngine::load

// perf-critical: every applied write and every read goes through this engine. The point
// operations are `#[inline]` so that ds-node, which calls them through generic apply code,
// inlines them as it did when this engine lived in ds-node (no LTO in release).

use std::cell::Cell;
use std::collections::BTreeMap;
use std::ops::{Bound, ControlFlow};

use bytes::Bytes;

use super::{Engine, Entry, SizeDelta};
use crate::masstree::{
    ArenaStats, CompactStep, Direction, EntryMut, EntryRef, Masstree, OwnedEntry, Value,
};
use crate::pointer::{LogPointer, SegmentId};

mod backing;
mod changes;
pub mod clock;
mod cold;
mod gc;
#[cfg(test)]
mod test_util;

pub use backing::Backing;
pub use changes::Captured;
pub use cold::{Candidate, Loaded, Promotion, loaded_before};
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

/// An entry as stored, borrowed from the tree ([`MasstreeEngine::for_each_stored`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoredRef<'a> {
    /// In memory.
    Hot {
        /// The value's bytes.
        value: &'a [u8],
        /// Expiry in Unix milliseconds; 0 = never.
        expire_at_ms: u64,
    },
    /// Only in the shard log.
    Cold {
        /// The durable copy of the entry's bytes.
        pointer: LogPointer,
        /// Expiry in Unix milliseconds; 0 = never.
        expire_at_ms: u64,
    },
}

/// Allocator bytes counted per entry for its heap allocation (suffix, pointer, value): the
/// allocator's header and rounding (glibc: 8 B header, 16 B granularity, so 8–23 B).
pub const ALLOC_OVERHEAD: usize = 16;

/// The memory a store accounts for, which `maxmemory` bounds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Accounted {
    /// Arena pages of the tree's nodes present, live and free slots (entries live in border
    /// nodes); released pages are not counted (`Masstree::compact_step` releases them).
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

/// Figures of the store for `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ColdStats {
    /// Entries held only as a pointer.
    pub cold_entries: u64,
    /// Value bytes of those entries (on the device).
    pub cold_value_bytes: u64,
    /// Value bytes held in memory.
    pub hot_value_bytes: u64,
    /// Values recorded backed by their Raft entry when written, ever.
    pub backed_values_total: u64,
    /// Value bytes of those (the bytes a demotion of them need not write).
    pub backed_bytes_total: u64,
}

/// The shard's store: one Masstree shared by every range of the shard (their keys are
/// disjoint).
#[derive(Debug, Default)]
pub struct MasstreeEngine {
    tree: Masstree,
    /// The keys [`set_side_keys`](Self::set_side_keys)' test picks, in a tree of their own
    /// (created at the first such key, dropped when it empties).
    side: Option<Box<Masstree>>,
    /// Which keys go to `side`.
    side_of: Option<fn(&[u8]) -> bool>,
    /// Arena pages and bytes of side trees dropped when they emptied (for the counters of
    /// [`arena_stats`](Self::arena_stats)).
    side_released: (u64, u64),
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
    /// The Raft entry being applied, whose values may back what `put` stores.
    backing: Option<Backing>,
    backed_values_total: u64,
    backed_bytes_total: u64,
    /// Changes since the last key-index checkpoint (`changes`; off unless turned on).
    changes: changes::Changes,
}

fn stored_len(e: &EntryRef<'_>) -> usize {
    match e.value() {
        Some(v) => v.len(),
        None => e.pointer().map_or(0, |p| p.stored_len()),
    }
}

fn owned_len(e: &OwnedEntry) -> usize {
    match (&e.inline, e.pointer) {
        (Some(v), _) => v.len(),
        (None, Some(p)) => p.stored_len(),
        (None, None) => 0,
    }
}

impl MasstreeEngine {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Puts the keys `is_side` picks in a tree of their own (see the module documentation).
    /// Set once, on an empty store; changes nothing the store answers, only where it keeps
    /// those keys.
    pub fn set_side_keys(&mut self, is_side: fn(&[u8]) -> bool) {
        debug_assert!(self.is_empty(), "side keys are chosen before the first key");
        self.side_of = Some(is_side);
    }

    #[inline]
    fn is_side(&self, key: &[u8]) -> bool {
        self.side_of.is_some_and(|f| f(key))
    }

    /// The tree that holds (or would hold) `key`; `None` for a side key while no side tree
    /// exists.
    #[inline]
    fn tree_of(&self, key: &[u8]) -> Option<&Masstree> {
        if self.is_side(key) {
            self.side.as_deref()
        } else {
            Some(&self.tree)
        }
    }

    /// Visits the keys of both trees in `dir` order from `from` (see [`Masstree::scan`]).
    #[inline]
    fn scan_all(
        &self,
        from: Bound<&[u8]>,
        dir: Direction,
        f: impl FnMut(&[u8], EntryRef<'_>) -> ControlFlow<()>,
    ) {
        match &self.side {
            Some(side) => self.tree.scan_merged(side, from, dir, usize::MAX, f),
            None => self.tree.scan(from, dir, usize::MAX, f),
        };
    }

    /// The entry of `key`, from whichever tree holds it.
    #[inline]
    fn find(&self, key: &[u8]) -> Option<EntryRef<'_>> {
        self.tree_of(key)?.get(key)
    }

    /// Figures of both trees, added.
    fn memory_stats(&self) -> crate::masstree::MemoryStats {
        let mut s = self.tree.memory_stats();
        if let Some(t) = &self.side {
            s.add(&t.memory_stats());
        }
        s
    }

    /// The log pointer recorded for `key`, if any.
    pub fn pointer(&self, key: &[u8]) -> Option<LogPointer> {
        self.find(key).and_then(|e| e.pointer())
    }

    /// The pointer of `key` if its entry is cold (not in memory).
    pub fn cold_pointer(&self, key: &[u8]) -> Option<LogPointer> {
        let e = self.find(key)?;
        if e.value().is_some() {
            None
        } else {
            e.pointer()
        }
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.tree.len() + self.side.as_ref().map_or(0, |t| t.len())
    }

    /// Whether the store is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes of memory the trees use.
    pub fn memory_bytes(&self) -> usize {
        self.tree.memory_bytes() + self.side.as_ref().map_or(0, |t| t.memory_bytes())
    }

    /// Runs one step of the tree's arena compaction, at most `budget` node moves
    /// ([`Masstree::compact_step`]: only once enough pages are reclaimable). The pages it
    /// releases leave [`accounted`](Self::accounted) at once.
    pub fn compact_step(&mut self, budget: usize) -> CompactStep {
        let mut step = self.tree.compact_step(budget);
        if let Some(t) = self.side.as_mut() {
            let more = t.compact_step(budget - step.moved);
            step.moved += more.moved;
            step.pages_released += more.pages_released;
            step.bytes_released += more.bytes_released;
            step.done &= more.done;
        }
        step
    }

    /// The trees' arena figures (pages present and released, nodes moved), added.
    pub fn arena_stats(&self) -> ArenaStats {
        let mut a = self.tree.arena_stats();
        a.pages_released_total += self.side_released.0;
        a.bytes_released_total += self.side_released.1;
        if let Some(t) = &self.side {
            let b = t.arena_stats();
            a.pages += b.pages;
            a.reclaimable_pages += b.reclaimable_pages;
            a.pages_released_total += b.pages_released_total;
            a.bytes_released_total += b.bytes_released_total;
            a.nodes_moved_total += b.nodes_moved_total;
        }
        a
    }

    /// Hot and cold figures.
    pub fn cold_stats(&self) -> ColdStats {
        ColdStats {
            cold_entries: self.cold_entries,
            cold_value_bytes: self.cold_bytes,
            hot_value_bytes: self.memory_stats().value_bytes as u64,
            backed_values_total: self.backed_values_total,
            backed_bytes_total: self.backed_bytes_total,
        }
    }

    /// Sets the Raft entry whose values back what [`put`](Engine::put) stores until the next
    /// call (`None`: nothing is backed). The caller sets it for the writes of one entry only.
    pub fn set_backing(&mut self, backing: Option<Backing>) {
        self.backing = backing.filter(|b| !b.is_empty());
    }

    /// Live bytes per segment: what the store's pointers name.
    pub fn live_bytes(&self) -> &BTreeMap<SegmentId, u64> {
        &self.live
    }

    /// Whether a live pointer points into `segment` (it must not be released).
    pub fn is_pinned(&self, segment: SegmentId) -> bool {
        self.live.contains_key(&segment) || self.released_pins(segment)
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

    /// The first and the last key of `[start, end)` (`end` empty: unbounded), `None` for an
    /// empty range: two seeks, whatever the range holds.
    pub fn edge_keys(&self, start: &[u8], end: &[u8]) -> Option<(Bytes, Bytes)> {
        let mut first = None;
        self.walk(start, end, |k, _| {
            first = Some(Bytes::copy_from_slice(k));
            ControlFlow::Break(())
        });
        let first = first?;
        let from = if end.is_empty() {
            Bound::Unbounded
        } else {
            Bound::Excluded(end)
        };
        let mut last = None;
        self.walk_back(from, |k, _| {
            last = Some(Bytes::copy_from_slice(k));
            ControlFlow::Break(())
        });
        // A key at or after `first` exists, so the backward seek finds one inside.
        Some((first.clone(), last.unwrap_or(first)))
    }

    fn walk(
        &self,
        start: &[u8],
        end: &[u8],
        mut f: impl FnMut(&[u8], EntryRef<'_>) -> ControlFlow<()>,
    ) {
        self.scan_all(Bound::Included(start), Direction::Forward, |k, e| {
            if !end.is_empty() && k >= end {
                return ControlFlow::Break(());
            }
            f(k, e)
        });
    }

    /// Walks `[.., from)` (`from` excluded; `Unbounded`: from the last key) backwards over
    /// both trees.
    pub(crate) fn walk_back(
        &self,
        from: Bound<&[u8]>,
        f: impl FnMut(&[u8], EntryRef<'_>) -> ControlFlow<()>,
    ) {
        self.scan_all(from, Direction::Reverse, f);
    }

    /// The memory the store accounts for ([`Accounted`]).
    pub fn accounted(&self) -> Accounted {
        let s = self.memory_stats();
        Accounted {
            arena_bytes: s.reserved_bytes as u64,
            heap_bytes: (s.suffix_bytes + s.pointer_bytes + s.value_bytes) as u64,
            alloc_overhead_bytes: (s.entries * ALLOC_OVERHEAD) as u64,
        }
    }
    /// Calls `f` with every entry of `[start, end)` (`end` empty: unbounded) as stored, in
    /// key order, without copying keys or values.
    pub fn for_each_stored(
        &self,
        start: &[u8],
        end: &[u8],
        mut f: impl FnMut(&[u8], StoredRef<'_>),
    ) {
        self.walk(start, end, |k, e| {
            let expire_at_ms = e.expire_at_ms().unwrap_or(0);
            let s = match (e.value(), e.pointer()) {
                (Some(value), _) => StoredRef::Hot {
                    value,
                    expire_at_ms,
                },
                (None, Some(pointer)) => StoredRef::Cold {
                    pointer,
                    expire_at_ms,
                },
                (None, None) => StoredRef::Hot {
                    value: &[],
                    expire_at_ms,
                },
            };
            f(k, s);
            ControlFlow::Continue(())
        });
    }

    /// Every entry of `[start, end)` (`end` empty: unbounded) as stored, in key order.
    pub fn scan_stored(&self, start: &[u8], end: &[u8]) -> Vec<(Bytes, Stored)> {
        let mut out = Vec::new();
        self.for_each_stored(start, end, |k, s| {
            let s = match s {
                StoredRef::Hot {
                    value,
                    expire_at_ms,
                } => Stored::Hot(Entry {
                    value: Bytes::copy_from_slice(value),
                    expire_at_ms,
                }),
                StoredRef::Cold {
                    pointer,
                    expire_at_ms,
                } => Stored::Cold {
                    pointer,
                    expire_at_ms,
                },
            };
            out.push((Bytes::copy_from_slice(k), s));
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

    /// Inserts `v` (of `len` stored bytes) and keeps the accounting; the size change, or
    /// `None` if the tree refused it.
    #[inline]
    fn insert(&mut self, key: &[u8], v: Value<'_>, len: usize) -> Option<SizeDelta> {
        self.mark_changed(key);
        // The only refusal is a key over 64 KiB; `net::limits` bounds the state machine's
        // keys below it, so a refusal is a broken invariant: recorded, never a panic.
        let tree = if self.is_side(key) {
            self.side.get_or_insert_with(Default::default)
        } else {
            &mut self.tree
        };
        match tree.insert(key, v) {
            Ok(Some(old)) => {
                self.forget(&old);
                Some(SizeDelta::replaced(owned_len(&old), len))
            }
            Ok(None) => Some(SizeDelta::added(key.len(), len)),
            Err(e) => {
                // Not logged here: the caller logs it where it handles it (it stops the range).
                self.faults_total += 1;
                self.fault
                    .get_or_insert_with(|| format!("key of {} bytes: {e}", key.len()));
                None
            }
        }
    }

    /// Drops the accounting of an entry taken out of the tree.
    #[inline]
    fn forget(&mut self, old: &OwnedEntry) {
        if let Some(p) = old.pointer {
            self.release(&p);
            if old.inline.is_none() {
                self.cold_entries -= 1;
                self.cold_bytes -= u64::from(p.len);
            }
        }
    }

    /// Takes `key` out of whichever tree holds it (a side tree left empty goes, its arena
    /// pages with it).
    #[inline]
    fn remove_entry(&mut self, key: &[u8]) -> Option<OwnedEntry> {
        if !self.is_side(key) {
            return self.tree.remove(key);
        }
        let side = self.side.as_mut()?;
        let old = side.remove(key);
        if side.is_empty() {
            let (a, reserved) = (side.arena_stats(), side.memory_stats().reserved_bytes);
            self.side_released.0 += a.pages_released_total + a.pages as u64;
            self.side_released.1 += a.bytes_released_total + reserved as u64;
            self.side = None;
        }
        old
    }

    /// A mutable view of the entry of `key`, from whichever tree holds it.
    #[inline]
    fn entry_mut(&mut self, key: &[u8]) -> Option<EntryMut<'_>> {
        if self.is_side(key) {
            self.side.as_mut()?.get_mut(key)
        } else {
            self.tree.get_mut(key)
        }
    }

    #[inline]
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

impl Engine for MasstreeEngine {
    #[inline]
    fn get(&self, key: &[u8]) -> Option<Entry> {
        self.find(key).map(|e| self.entry_of(e))
    }

    #[inline]
    fn put(&mut self, key: Bytes, entry: Entry) -> SizeDelta {
        let mut v = Value::inline(&entry.value);
        if entry.expire_at_ms != 0 {
            v = v.with_expiry_ms(entry.expire_at_ms);
        }
        let backed = match self.backing.as_mut() {
            None => None,
            Some(b) => b.pointer_for(&entry.value),
        };
        if let Some(p) = backed {
            v = v.with_pointer(p);
        }
        let Some(delta) = self.insert(&key, v, entry.value.len()) else {
            return SizeDelta::ZERO;
        };
        if let Some(p) = backed {
            pin(&mut self.live, &p);
            self.backed_values_total += 1;
            self.backed_bytes_total += u64::from(p.len);
        } else {
            self.note_unbacked(&key, entry.value.len());
        }
        delta
    }

    #[inline]
    fn delete(&mut self, key: &[u8]) -> Option<SizeDelta> {
        self.before_change(key);
        let old = self.remove_entry(key)?;
        self.mark_changed(key);
        self.forget(&old);
        Some(SizeDelta::removed(key.len(), owned_len(&old)))
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
            self.walk_back(from, |k, e| {
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

    #[inline]
    fn expiry(&self, key: &[u8]) -> Option<u64> {
        self.find(key).map(|e| e.expire_at_ms().unwrap_or(0))
    }

    #[inline]
    fn is_cold(&self, key: &[u8]) -> bool {
        self.cold_pointer(key).is_some()
    }

    fn scan_values(&self, start: &[u8], end: Option<&[u8]>, limit: usize) -> Vec<Bytes> {
        let mut out = Vec::new();
        if limit == 0 || end.is_some_and(|e| e <= start) {
            return out;
        }
        self.walk(start, end.unwrap_or_default(), |_, e| {
            out.push(self.entry_of(e).value);
            if out.len() >= limit {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        });
        out
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

#[cfg(test)]
mod tests {
    use super::*;

    use super::test_util::{hot, ptr};

    #[test]
    fn edge_keys_are_the_first_and_last_keys_inside_the_range() {
        let mut s = MasstreeEngine::new();
        assert_eq!(s.edge_keys(b"", b""), None);
        for k in [&b"a"[..], b"b", b"bz", b"c", b"d"] {
            s.put(Bytes::copy_from_slice(k), hot(b"v"));
        }
        let edges = |start: &[u8], end: &[u8]| {
            s.edge_keys(start, end)
                .map(|(f, l)| (f.to_vec(), l.to_vec()))
        };
        assert_eq!(edges(b"", b""), Some((b"a".to_vec(), b"d".to_vec())));
        // `end` is excluded, `start` included.
        assert_eq!(edges(b"b", b"d"), Some((b"b".to_vec(), b"c".to_vec())));
        assert_eq!(edges(b"bb", b"c"), Some((b"bz".to_vec(), b"bz".to_vec())));
        assert_eq!(edges(b"c", b""), Some((b"c".to_vec(), b"d".to_vec())));
        // Empty ranges, inside and past the keys.
        assert_eq!(edges(b"bb", b"bc"), None);
        assert_eq!(edges(b"e", b""), None);
    }

    #[test]
    fn scan_values_are_the_values_of_the_same_scan() {
        let mut s = MasstreeEngine::new();
        for i in 0..50u32 {
            s.put(
                Bytes::from(format!("k{i:03}")),
                Entry {
                    value: Bytes::from(format!("value {i}")),
                    expire_at_ms: 0,
                },
            );
        }
        for (start, end, limit) in [
            (&b""[..], None, usize::MAX),
            (b"k010", Some(&b"k020"[..]), usize::MAX),
            (b"k010", Some(&b"k020"[..]), 3),
            (b"k045", None, 100),
            (b"k020", Some(&b"k010"[..]), 5),
            (b"k000", None, 0),
        ] {
            let scanned: Vec<Bytes> = s
                .scan(start, end, limit, false)
                .into_iter()
                .map(|(_, e)| e.value)
                .collect();
            assert_eq!(s.scan_values(start, end, limit), scanned);
        }
        assert_eq!(s.scan_values(b"k010", Some(b"k020"), 3).len(), 3);
    }

    #[test]
    fn sizes_count_cold_values_by_their_pointer() {
        let mut s = MasstreeEngine::new();
        assert_eq!(
            s.put(Bytes::from_static(b"k"), hot(b"12345")),
            SizeDelta::added(1, 5)
        );
        assert!(s.demote(b"k", b"12345", ptr(1, 0, b"12345")));
        assert_eq!(s.size_of(b"", b""), (6, 1));
        assert_eq!(s.delete(b"k"), Some(SizeDelta::removed(1, 5)));
    }

    #[test]
    fn a_value_of_the_entry_being_applied_is_stored_backed_and_demotes_for_free() {
        let mut s = MasstreeEngine::new();
        let carried = Bytes::from_static(b"user bytes");
        s.set_backing(Some(Backing::new(
            SegmentId(5),
            4096,
            64,
            vec![(20, carried.clone())],
        )));
        // Stored as a type tag followed by the carried bytes: backed with that leading byte.
        s.put(Bytes::from_static(b"k"), hot(b"\x01user bytes"));
        // Derived bytes (not the carried ones) stay unbacked.
        s.put(Bytes::from_static(b"n"), hot(b"\x0142"));
        s.set_backing(None);
        let p = s.pointer(b"k").expect("backed");
        assert_eq!(
            (p.segment, p.byte_offset(), p.len),
            (SegmentId(5), 4116, 10)
        );
        assert_eq!(
            (p.leading_byte(), p.checksum),
            (Some(1), crc32c::crc32c(&carried))
        );
        assert_eq!(s.pointer(b"n"), None);
        assert_eq!(s.live_bytes().get(&SegmentId(5)), Some(&10));
        assert_eq!(s.cold_stats().backed_values_total, 1);
        // A demotion candidate that already has a durable copy: no write needed.
        let (c, _) = s.demotion_candidates(b"k", 1, 1 << 20, 1 << 20, 0);
        assert_eq!(c[0].pointer, Some(p));
        assert!(s.demote(b"k", b"\x01user bytes", p));
        assert_eq!(s.cold_pointer(b"k"), Some(p));
        // Sizes count the bytes the pointer stands for (leading byte included).
        assert_eq!(s.size_of(b"k", b"l"), (1 + 11, 1));
        assert_eq!(s.delete(b"k"), Some(SizeDelta::removed(1, 11)));
        assert!(s.live_bytes().is_empty());
    }

    #[test]
    fn scans_report_cold_entries_by_pointer_and_keys_without_loading() {
        let mut s = MasstreeEngine::new();
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
