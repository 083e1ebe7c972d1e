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

use std::collections::{BTreeMap, BTreeSet};

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

    /// Records that `key`'s index entry changed.
    #[inline]
    pub(super) fn mark_changed(&mut self, key: &[u8]) {
        if self.changes.on && !self.changes.keys.contains(key) {
            self.changes.keys.insert(Bytes::copy_from_slice(key));
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
        let keys = std::mem::take(&mut self.changes.keys);
        let released = std::mem::take(&mut self.changes.released);
        for (seg, n) in released {
            *self.changes.released_in_flight.entry(seg).or_default() += n;
        }
        keys.into_iter()
            .map(|k| {
                let c = match self.tree.get(&k) {
                    None => Captured::Gone,
                    Some(e) => Captured::Entry {
                        pointer: e.pointer(),
                        unbacked: match (e.pointer(), e.value()) {
                            (None, Some(v)) => Some(Bytes::copy_from_slice(v)),
                            _ => None,
                        },
                        expire_at_ms: e.expire_at_ms().unwrap_or(0),
                    },
                };
                (k, c)
            })
            .collect()
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

    /// Gives hot entry `key` the pointer `pointer` (a durable copy of `bytes`, written by a
    /// checkpoint) if it still holds exactly `bytes` and has no pointer; it stays hot. Returns
    /// whether it did. Not a change: the index names this pointer.
    pub fn back_value(&mut self, key: &[u8], bytes: &[u8], pointer: LogPointer) -> bool {
        let Some(mut e) = self.tree.get_mut(key) else {
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
