//! The garbage collector's view of the store: which entries point into the segments being
//! collected, and the pointer swap that moves them (`server::gc`).
//!
//! Both keep the live-byte accounting of [`MasstreeEngine`] exact: a swap unpins the old
//! segment and pins the new one by the same length.

use std::collections::BTreeSet;
use std::ops::ControlFlow;

use crate::pointer::{LogPointer, SegmentId};
use bytes::Bytes;

use super::{MasstreeEngine, pin};

/// An entry whose pointer names a segment being collected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GcItem {
    /// The key.
    pub key: Bytes,
    /// Its pointer (into a victim).
    pub pointer: LogPointer,
    /// Its bytes when they are in memory too (then no device read is needed).
    pub inline: Option<Bytes>,
}

/// Bounds of one [`MasstreeEngine::gc_items`] walk.
#[derive(Debug, Clone, Copy)]
pub struct GcWalk {
    /// Most items returned.
    pub max_items: usize,
    /// Most pointed-at bytes returned.
    pub max_bytes: u64,
    /// Most entries visited.
    pub max_visits: usize,
}

impl MasstreeEngine {
    /// Entries from `from` on (key order) whose pointer names one of `victims`, within
    /// `walk`'s bounds, and the key to continue at (`None`: the end of the store).
    pub fn gc_items(
        &self,
        from: &[u8],
        victims: &BTreeSet<SegmentId>,
        walk: GcWalk,
    ) -> (Vec<GcItem>, Option<Bytes>) {
        let (mut out, mut bytes, mut visited) = (Vec::new(), 0u64, 0usize);
        let mut next = None;
        self.walk(from, &[], |k, e| {
            if visited >= walk.max_visits || out.len() >= walk.max_items || bytes >= walk.max_bytes
            {
                next = Some(Bytes::copy_from_slice(k));
                return ControlFlow::Break(());
            }
            visited += 1;
            if let Some(p) = e.pointer().filter(|p| victims.contains(&p.segment)) {
                bytes += u64::from(p.len);
                out.push(GcItem {
                    key: Bytes::copy_from_slice(k),
                    pointer: p,
                    inline: e.value().map(Bytes::copy_from_slice),
                });
            }
            ControlFlow::Continue(())
        });
        (out, next)
    }

    /// Makes `key` point at `new` (a durable copy of the same bytes) if it still points at
    /// `old`; returns whether it did. A write in between wins (the copy is dead bytes). The
    /// entry stays hot or cold as it was.
    pub fn relocate(&mut self, key: &[u8], old: LogPointer, new: LogPointer) -> bool {
        assert_eq!(
            (old.len, old.checksum),
            (new.len, new.checksum),
            "a relocated copy holds the same bytes"
        );
        if self.find(key).and_then(|e| e.pointer()) != Some(old) {
            return false;
        }
        self.before_change(key);
        let Some(mut e) = self.entry_mut(key) else {
            return false;
        };
        e.set_pointer(new);
        self.release(&old);
        pin(&mut self.live, &new);
        self.mark_changed(key);
        true
    }

    /// Drops `key`'s pointer if it still is `old` and the value is hot (in memory, and not
    /// loaded for one operation only): the collector frees a segment holding a backed
    /// value without copying it, since the value is in memory and reaches the next
    /// checkpoint from there. Returns whether it did; a cold or transient entry keeps its
    /// pointer (its copy must be moved).
    pub fn unback(&mut self, key: &[u8], old: LogPointer) -> bool {
        let hot_with_old = self
            .tree
            .get(key)
            .is_some_and(|g| g.pointer() == Some(old) && g.value().is_some() && !g.is_transient());
        if !hot_with_old {
            return false;
        }
        self.before_change(key);
        let Some(mut e) = self.entry_mut(key) else {
            return false;
        };
        if !e.clear_pointer() {
            return false;
        }
        self.release(&old);
        self.mark_changed(key);
        true
    }

    /// Live bytes of the store's pointers in every segment (the sum of
    /// [`live_bytes`](Self::live_bytes)).
    pub fn live_bytes_total(&self) -> u64 {
        self.live.values().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Engine;

    use crate::engine::masstree::test_util::{hot, ptr};

    const ALL: GcWalk = GcWalk {
        max_items: usize::MAX,
        max_bytes: u64::MAX,
        max_visits: usize::MAX,
    };

    #[test]
    fn a_hot_backed_value_is_unbacked_in_place_and_a_cold_one_keeps_its_pointer() {
        let mut s = MasstreeEngine::new();
        for (k, v) in [(b"h", b"hh"), (b"c", b"cc")] {
            s.put(Bytes::copy_from_slice(k), hot(v));
            assert!(s.demote(k, v, ptr(1, 8, v)));
        }
        // `h` comes back into memory, still backed.
        assert!(s.load(b"h", ptr(1, 8, b"hh"), b"hh"));
        s.tree.get_mut(b"h").unwrap().set_transient(false);
        assert_eq!(s.live_bytes().get(&SegmentId(1)), Some(&4));
        assert!(
            !s.unback(b"h", ptr(1, 16, b"hh")),
            "only the pointer it holds"
        );
        assert!(s.unback(b"h", ptr(1, 8, b"hh")));
        assert_eq!(s.pointer(b"h"), None);
        assert_eq!(
            s.get(b"h").map(|e| e.value),
            Some(Bytes::from_static(b"hh"))
        );
        assert!(
            !s.unback(b"c", ptr(1, 8, b"cc")),
            "a cold value's pointer is its copy"
        );
        assert_eq!(s.live_bytes().get(&SegmentId(1)), Some(&2));
    }

    #[test]
    fn items_are_the_entries_pointing_into_victims_hot_or_cold() {
        let mut s = MasstreeEngine::new();
        for (k, v, seg) in [(b"a", b"aa", 1), (b"b", b"bb", 2), (b"c", b"cc", 1)] {
            s.put(Bytes::copy_from_slice(k), hot(v));
            assert!(s.demote(k, v, ptr(seg, 8, v)));
        }
        s.put(Bytes::from_static(b"d"), hot(b"dd"));
        let p = ptr(1, 8, b"cc");
        assert!(s.load(b"c", p, b"cc"));
        let victims = BTreeSet::from([SegmentId(1)]);
        let (items, next) = s.gc_items(b"", &victims, ALL);
        assert_eq!(next, None);
        assert_eq!(
            items,
            vec![
                GcItem {
                    key: Bytes::from_static(b"a"),
                    pointer: ptr(1, 8, b"aa"),
                    inline: None
                },
                GcItem {
                    key: Bytes::from_static(b"c"),
                    pointer: p,
                    inline: Some(Bytes::from_static(b"cc"))
                },
            ]
        );
    }

    #[test]
    fn a_walk_stops_at_its_bounds_and_resumes_where_it_stopped() {
        let mut s = MasstreeEngine::new();
        for i in 0..10u8 {
            let k = [b'k', i];
            s.put(Bytes::copy_from_slice(&k), hot(b"v"));
            assert!(s.demote(&k, b"v", ptr(1, 8 * u64::from(i), b"v")));
        }
        let victims = BTreeSet::from([SegmentId(1)]);
        let walk = GcWalk {
            max_visits: 3,
            ..ALL
        };
        let (mut keys, mut from) = (Vec::new(), Some(Bytes::new()));
        while let Some(f) = from {
            let (items, next) = s.gc_items(&f, &victims, walk);
            assert!(items.len() <= 3);
            keys.extend(items.into_iter().map(|i| i.key));
            from = next;
        }
        assert_eq!(keys.len(), 10);
        assert!(keys.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn relocation_moves_the_live_bytes_and_a_write_in_between_wins() {
        let mut s = MasstreeEngine::new();
        s.put(Bytes::from_static(b"a"), hot(b"alpha"));
        s.put(Bytes::from_static(b"b"), hot(b"beta"));
        let (pa, pb) = (ptr(1, 8, b"alpha"), ptr(1, 64, b"beta"));
        assert!(s.demote(b"a", b"alpha", pa));
        assert!(s.demote(b"b", b"beta", pb));
        assert_eq!(s.live_bytes().get(&SegmentId(1)), Some(&9));
        assert!(s.relocate(b"a", pa, ptr(5, 8, b"alpha")));
        s.put(Bytes::from_static(b"b"), hot(b"written"));
        assert!(!s.relocate(b"b", pb, ptr(5, 64, b"beta")));
        assert!(!s.is_pinned(SegmentId(1)));
        assert_eq!(s.live_bytes().get(&SegmentId(5)), Some(&5));
        assert_eq!(s.live_bytes_total(), 5);
        assert_eq!(s.cold_pointer(b"a"), Some(ptr(5, 8, b"alpha")));
        assert_eq!(s.cold_stats().cold_entries, 1);
        assert_eq!(s.get(b"b"), Some(hot(b"written")));
    }
}
