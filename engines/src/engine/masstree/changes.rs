//! Change tracking for the key index (ds-node's `checkpoint-mode = "index"`,
//! `docs/ARCHITECTURE.md` "ds-node: the key index replaces range checkpoints").
//!
//! While tracking is on, the store records every key whose index entry may differ from the
//! durable key index: written, deleted, or given another pointer. A checkpoint
//! [`capture`](MasstreeEngine::capture_changes)s them at one instant (each range at its
//! applied index): the keys still present with their pointer, expiry and — for an unbacked
//! value — its bytes; the keys gone as tombstones. Cost: proportional to the keys changed.
//!
//! Pointers the tree stops naming (a value overwritten, deleted, moved) may still be named by
//! the durable index until the next checkpoint completes: they stay *released* and keep their
//! segment pinned ([`is_pinned`](MasstreeEngine::is_pinned)) until then.
//!
//! **A capture in bounded steps.** [`begin_capture`](MasstreeEngine::begin_capture) fixes the
//! instant (it only moves the changed set aside, O(1)); [`capture_step`] then takes up to `n`
//! of those keys at a time, in key order, while writes go on between steps. A write to a key
//! the capture has not taken yet first saves the key's entry as it was (a *pre-image*, once
//! per key), so every step returns exactly what the tree held at the instant — which the
//! checkpoint needs, because it records each range's applied index of that instant and
//! recovery replays the log after it (a later value replayed onto would apply some writes
//! twice). The write itself joins the next checkpoint's changes as before. Cost: one empty-set
//! check per write outside a capture; a set lookup per write during one; memory for the
//! pre-images of keys written during a capture (at most one per captured key).
//!
//! A capture's instant must also hold no unbacked value longer than the checkpoint can write
//! as one record (ds-node keeps a whole-range file for those, built at the instant):
//! [`holds_unbacked_over`](MasstreeEngine::holds_unbacked_over) tells the caller to take the
//! whole capture at once then.
//!
//! [`capture_step`]: MasstreeEngine::capture_step

use std::collections::{BTreeMap, BTreeSet, HashMap};

use bytes::Bytes;

use super::{MasstreeEngine, pin, unpin};
use crate::pointer::{LogPointer, SegmentId};

/// The changes since the last completed key-index checkpoint.
#[derive(Debug, Default)]
pub(super) struct Changes {
    pub(super) on: bool,
    /// Keys changed since the last capture, in key order.
    keys: BTreeSet<Bytes>,
    /// Pointers the tree stopped naming since the last capture (live bytes per segment).
    released: BTreeMap<SegmentId, u64>,
    /// Pointers released before the capture of the checkpoint in flight.
    released_in_flight: BTreeMap<SegmentId, u64>,
    /// The capture in progress: keys changed before its instant, not yet taken.
    pending: BTreeSet<Bytes>,
    /// Entries of pending keys written since the instant, as they were at the instant.
    before: HashMap<Bytes, Captured>,
    /// Keys given an unbacked value longer than `big_threshold` (a superset: checked, and
    /// pruned, by `holds_unbacked_over`).
    big_unbacked: BTreeSet<Bytes>,
    /// 0: not tracked.
    big_threshold: usize,
}

/// A changed key as a capture saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Captured {
    /// The key is gone: a tombstone.
    Gone,
    /// The key's entry.
    Entry {
        /// Its durable copy, if it has one.
        pointer: Option<LogPointer>,
        /// Its bytes, when it has no durable copy (an unbacked value, to write first).
        unbacked: Option<Bytes>,
        /// Expiry in Unix milliseconds; 0 = never.
        expire_at_ms: u64,
    },
}

impl MasstreeEngine {
    /// Turns change tracking on or off (off: nothing is recorded, captures are empty).
    pub fn track_changes(&mut self, on: bool) {
        self.changes.on = on;
    }

    /// Keys changed since the last capture.
    pub fn changed_keys(&self) -> usize {
        self.changes.keys.len()
    }

    /// Records that `key`'s index entry is about to change: called *before* the tree is
    /// modified, so that a capture in progress can save the entry as it was.
    #[inline]
    pub(super) fn mark_changed(&mut self, key: &[u8]) {
        if !self.changes.on {
            return;
        }
        if !self.changes.pending.is_empty() {
            self.save_pre_image(key);
        }
        if !self.changes.keys.contains(key) {
            self.changes.keys.insert(Bytes::copy_from_slice(key));
        }
    }

    /// Saves `key`'s pre-image if a capture in progress has not taken it yet: called before
    /// a change that [`mark_changed`](Self::mark_changed) records only after the fact.
    #[inline]
    pub(super) fn before_change(&mut self, key: &[u8]) {
        if self.changes.on && !self.changes.pending.is_empty() {
            self.save_pre_image(key);
        }
    }

    #[cold]
    fn save_pre_image(&mut self, key: &[u8]) {
        if self.changes.pending.contains(key) && !self.changes.before.contains_key(key) {
            let c = self.captured(key);
            self.changes.before.insert(Bytes::copy_from_slice(key), c);
        }
    }

    /// Notes that `key` now holds an unbacked value of `len` bytes (see `holds_unbacked_over`).
    #[inline]
    pub(super) fn note_unbacked(&mut self, key: &[u8], len: usize) {
        let t = self.changes.big_threshold;
        if t != 0 && len > t && self.changes.on {
            self.changes
                .big_unbacked
                .insert(Bytes::copy_from_slice(key));
        }
    }

    /// Turns change tracking on with the length above which an unbacked value is noted for
    /// [`holds_unbacked_over`](Self::holds_unbacked_over) (only values written from now on
    /// are noted: call it before the first write the index must learn of).
    pub fn track_changes_noting_unbacked_over(&mut self, threshold: usize) {
        self.changes.big_threshold = threshold;
        self.track_changes(true);
    }

    /// Whether some key holds an unbacked value longer than the threshold given to
    /// [`track_changes_noting_unbacked_over`](Self::track_changes_noting_unbacked_over)
    /// (`false` when none was given). A capture must then be taken whole, at its instant
    /// ([`capture_changes`](Self::capture_changes)).
    pub fn holds_unbacked_over(&mut self) -> bool {
        let threshold = self.changes.big_threshold;
        if threshold == 0 {
            return false;
        }
        let keys = std::mem::take(&mut self.changes.big_unbacked);
        let still: BTreeSet<Bytes> = keys
            .into_iter()
            .filter(|k| {
                self.find(k).is_some_and(|e| {
                    e.pointer().is_none() && e.value().is_some_and(|v| v.len() > threshold)
                })
            })
            .collect();
        let any = !still.is_empty();
        self.changes.big_unbacked = still;
        any
    }

    /// `key`'s entry as a capture records it.
    fn captured(&self, key: &[u8]) -> Captured {
        match self.find(key) {
            None => Captured::Gone,
            Some(e) => Captured::Entry {
                pointer: e.pointer(),
                unbacked: match (e.pointer(), e.value()) {
                    (None, Some(v)) => Some(Bytes::copy_from_slice(v)),
                    _ => None,
                },
                expire_at_ms: e.expire_at_ms().unwrap_or(0),
            },
        }
    }

    /// The tree stops naming `p`: unpinned, but kept pinned as released while tracking.
    #[inline]
    pub(super) fn release(&mut self, p: &LogPointer) {
        unpin(&mut self.live, p);
        if self.changes.on {
            pin(&mut self.changes.released, p);
        }
    }

    /// Whether a pointer released since the last completed checkpoint points into `segment`.
    pub(super) fn released_pins(&self, segment: SegmentId) -> bool {
        self.changes.released.contains_key(&segment)
            || self.changes.released_in_flight.contains_key(&segment)
    }

    /// Takes every key changed since the last capture, in key order, with its entry as of
    /// now. The pointers released so far stay pinned until [`changes_durable`] (or, after a
    /// failure, [`changes_failed`]).
    ///
    /// [`changes_durable`]: Self::changes_durable
    /// [`changes_failed`]: Self::changes_failed
    pub fn capture_changes(&mut self) -> Vec<(Bytes, Captured)> {
        self.begin_capture();
        self.capture_step(usize::MAX)
    }

    /// Starts a capture at this instant and returns the number of keys it will take with
    /// [`capture_step`](Self::capture_step) (see the module documentation). The pointers
    /// released so far stay pinned until [`changes_durable`](Self::changes_durable). The keys
    /// of a capture not taken to its end are folded into this one.
    pub fn begin_capture(&mut self) -> usize {
        self.abort_capture();
        self.changes.pending = std::mem::take(&mut self.changes.keys);
        let released = std::mem::take(&mut self.changes.released);
        for (seg, n) in released {
            *self.changes.released_in_flight.entry(seg).or_default() += n;
        }
        self.changes.pending.len()
    }

    /// Takes up to `max` keys of the capture in progress, in key order, each with its entry
    /// as of the capture's instant; empty once every key was taken.
    pub fn capture_step(&mut self, max: usize) -> Vec<(Bytes, Captured)> {
        let mut out = Vec::with_capacity(max.min(self.changes.pending.len()));
        while out.len() < max {
            let Some(k) = self.changes.pending.pop_first() else {
                break;
            };
            let c = match self.changes.before.remove(&k) {
                Some(c) => c,
                None => self.captured(&k),
            };
            out.push((k, c));
        }
        out
    }

    /// Keys of the capture in progress not taken yet.
    pub fn capture_pending(&self) -> usize {
        self.changes.pending.len()
    }

    /// Abandons the capture in progress: the keys it did not take count as changed again
    /// (the caller gives back those it took with [`changes_failed`](Self::changes_failed)).
    pub fn abort_capture(&mut self) {
        let pending = std::mem::take(&mut self.changes.pending);
        self.changes.keys.extend(pending);
        self.changes.before.clear();
    }

    /// The checkpoint of the last capture is durable: the pointers released before it are
    /// no longer named by the index.
    pub fn changes_durable(&mut self) {
        self.changes.released_in_flight.clear();
    }

    /// The checkpoint of the last capture failed: its keys count as changed again.
    pub fn changes_failed(&mut self, keys: impl IntoIterator<Item = Bytes>) {
        self.changes.keys.extend(keys);
    }

    /// Keeps `p` pinned until the checkpoint after the next capture is durable, as if the tree
    /// had named it and released it now: for a copy a checkpoint wrote that no entry took
    /// (the entry changed meanwhile), which its index names until the next one does not.
    pub fn hold_until_next_checkpoint(&mut self, p: &LogPointer) {
        if self.changes.on {
            pin(&mut self.changes.released, p);
        }
    }

    /// Gives hot entry `key` the pointer `pointer` (a durable copy of `bytes`, written by a
    /// checkpoint) if it still holds exactly `bytes` and has no pointer; it stays hot. Returns
    /// whether it did. Not a change: the index names this pointer.
    pub fn back_value(&mut self, key: &[u8], bytes: &[u8], pointer: LogPointer) -> bool {
        let Some(mut e) = self.entry_mut(key) else {
            return false;
        };
        let g = e.get();
        if g.value() != Some(bytes) || g.pointer().is_some() {
            return false;
        }
        e.set_pointer(pointer);
        pin(&mut self.live, &pointer);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Engine;
    use crate::engine::masstree::test_util::{hot, ptr};

    #[test]
    fn a_capture_names_written_deleted_and_moved_keys_once_in_key_order() {
        let mut s = MasstreeEngine::new();
        s.put(Bytes::from_static(b"untracked"), hot(b"1"));
        s.track_changes(true);
        s.put(Bytes::from_static(b"b"), hot(b"2"));
        s.put(Bytes::from_static(b"a"), hot(b"1"));
        s.put(Bytes::from_static(b"b"), hot(b"3"));
        s.delete(b"untracked");
        let got = s.capture_changes();
        let keys: Vec<&[u8]> = got.iter().map(|(k, _)| &k[..]).collect();
        assert_eq!(keys, vec![&b"a"[..], b"b", b"untracked"]);
        assert_eq!(got[2].1, Captured::Gone);
        assert_eq!(
            got[1].1,
            Captured::Entry {
                pointer: None,
                unbacked: Some(Bytes::from_static(b"3")),
                expire_at_ms: 0
            }
        );
        assert_eq!(s.changed_keys(), 0);
        // Backing a captured value is not a change; a failed checkpoint restores its keys.
        assert!(s.back_value(b"b", b"3", ptr(4, 0, b"3")));
        assert_eq!(s.changed_keys(), 0);
        s.changes_failed(got.into_iter().map(|(k, _)| k));
        assert_eq!(s.changed_keys(), 3);
    }

    fn entry(pointer: Option<LogPointer>, unbacked: Option<&'static [u8]>) -> Captured {
        Captured::Entry {
            pointer,
            unbacked: unbacked.map(Bytes::from_static),
            expire_at_ms: 0,
        }
    }

    #[test]
    fn writes_between_capture_steps_do_not_change_what_the_capture_returns() {
        let mut s = MasstreeEngine::new();
        s.track_changes(true);
        for k in [&b"a"[..], b"b", b"c", b"e"] {
            s.put(Bytes::copy_from_slice(k), hot(b"0"));
        }
        s.put_cold(Bytes::from_static(b"f"), ptr(3, 0, b"f0"), 0);
        assert_eq!(s.begin_capture(), 5);
        let first = s.capture_step(1);
        assert_eq!(
            first,
            vec![(Bytes::from_static(b"a"), entry(None, Some(b"0")))]
        );
        // Between steps: a taken key and pending keys written, deleted, moved; a new key.
        s.put(Bytes::from_static(b"a"), hot(b"1"));
        s.put(Bytes::from_static(b"b"), hot(b"1"));
        s.put(Bytes::from_static(b"b"), hot(b"2"));
        s.delete(b"c");
        s.put(Bytes::from_static(b"d"), hot(b"1"));
        assert!(s.relocate(b"f", ptr(3, 0, b"f0"), ptr(4, 0, b"f0")));
        assert_eq!(s.capture_pending(), 4);
        let rest = s.capture_step(10);
        assert_eq!(
            rest,
            vec![
                (Bytes::from_static(b"b"), entry(None, Some(b"0"))),
                (Bytes::from_static(b"c"), entry(None, Some(b"0"))),
                (Bytes::from_static(b"e"), entry(None, Some(b"0"))),
                (
                    Bytes::from_static(b"f"),
                    entry(Some(ptr(3, 0, b"f0")), None)
                ),
            ]
        );
        assert!(s.capture_step(10).is_empty());
        // The pointer the capture names stays pinned until the *next* checkpoint is durable.
        s.changes_durable();
        assert!(s.is_pinned(SegmentId(3)));
        // Every write made during the capture is in the next one, as of its own instant.
        let next = s.capture_changes();
        let keys: Vec<&[u8]> = next.iter().map(|(k, _)| &k[..]).collect();
        assert_eq!(keys, vec![&b"a"[..], b"b", b"c", b"d", b"f"]);
        assert_eq!(next[1].1, entry(None, Some(b"2")));
        assert_eq!(next[2].1, Captured::Gone);
        assert_eq!(next[4].1, entry(Some(ptr(4, 0, b"f0")), None));
        s.changes_durable();
        assert!(!s.is_pinned(SegmentId(3)));
    }

    #[test]
    fn an_abandoned_capture_gives_its_untaken_keys_back() {
        let mut s = MasstreeEngine::new();
        s.track_changes(true);
        s.put(Bytes::from_static(b"a"), hot(b"0"));
        s.put(Bytes::from_static(b"b"), hot(b"0"));
        s.begin_capture();
        let taken = s.capture_step(1);
        s.put(Bytes::from_static(b"b"), hot(b"1"));
        s.abort_capture();
        s.changes_failed(taken.into_iter().map(|(k, _)| k));
        let again = s.capture_changes();
        assert_eq!(
            again,
            vec![
                (Bytes::from_static(b"a"), entry(None, Some(b"0"))),
                (Bytes::from_static(b"b"), entry(None, Some(b"1"))),
            ]
        );
    }

    #[test]
    fn a_long_unbacked_value_is_reported_until_it_is_backed_or_gone() {
        let mut s = MasstreeEngine::new();
        s.track_changes_noting_unbacked_over(4);
        assert!(!s.holds_unbacked_over());
        s.put(Bytes::from_static(b"short"), hot(b"1234"));
        s.put(Bytes::from_static(b"long"), hot(b"12345"));
        assert!(s.holds_unbacked_over());
        assert!(s.back_value(b"long", b"12345", ptr(2, 0, b"12345")));
        assert!(!s.holds_unbacked_over());
        s.put(Bytes::from_static(b"long"), hot(b"123456"));
        assert!(s.holds_unbacked_over());
        s.delete(b"long");
        assert!(!s.holds_unbacked_over());
    }

    #[test]
    fn a_released_pointer_pins_its_segment_until_the_next_checkpoint_is_durable() {
        let mut s = MasstreeEngine::new();
        s.track_changes(true);
        s.put_cold(Bytes::from_static(b"k"), ptr(9, 0, b"old"), 0);
        s.put(Bytes::from_static(b"k"), hot(b"new"));
        assert!(
            s.is_pinned(SegmentId(9)),
            "the durable index may still name it"
        );
        let _ = s.capture_changes();
        assert!(
            s.is_pinned(SegmentId(9)),
            "the checkpoint is not durable yet"
        );
        s.changes_durable();
        assert!(!s.is_pinned(SegmentId(9)));
    }
}
