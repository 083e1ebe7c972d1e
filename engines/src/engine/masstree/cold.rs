//! Tiering of the [`MasstreeEngine`]: which hot entries demotion may make cold, demoting
//! them, loading cold entries back for an operation (prefetch-then-apply, ds-node
//! `server::cold`) and promoting values read twice within a window.
//!
//! Every step keeps the cold figures ([`ColdStats`](super::ColdStats)) and the live bytes per
//! segment exact.

use std::ops::{Bound, ControlFlow};

use bytes::Bytes;

use super::{MasstreeEngine, SizeDelta, pin};
use crate::masstree::{EntryRef, Value};
use crate::pointer::LogPointer;

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

/// What [`MasstreeEngine::load_with`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loaded {
    /// The entry was no longer cold with that pointer: nothing changed.
    Stale,
    /// Loaded for the operation only.
    Transient,
    /// Loaded to stay hot.
    Promoted,
}

impl MasstreeEngine {
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
            self.walk_back(from, |k, e| {
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
        let Some(mut e) = self.entry_mut(key) else {
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
        let Some(mut e) = self.entry_mut(key) else {
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
        let old = match self.find(key) {
            Some(g) if g.value() == Some(bytes) => g.pointer(),
            _ => return false,
        };
        if old.is_some_and(|o| o != pointer) {
            self.before_change(key);
        }
        let Some(mut e) = self.entry_mut(key) else {
            return false;
        };
        if old != Some(pointer) {
            e.set_pointer(pointer);
        }
        if e.demote().is_none() {
            return false;
        }
        if let Some(o) = old.filter(|o| *o != pointer) {
            self.release(&o);
            self.mark_changed(key);
        }
        if old != Some(pointer) {
            pin(&mut self.live, &pointer);
        }
        self.cold_entries += 1;
        self.cold_bytes += u64::from(pointer.len);
        true
    }

    /// Inserts a cold entry (recovery from a checkpoint that names a pointer); returns the
    /// size change, its value counted by the pointer's length.
    pub fn put_cold(&mut self, key: Bytes, pointer: LogPointer, expire_at_ms: u64) -> SizeDelta {
        let mut v = Value::pointer(pointer);
        if expire_at_ms != 0 {
            v = v.with_expiry_ms(expire_at_ms);
        }
        let Some(delta) = self.insert(&key, v, pointer.stored_len()) else {
            return SizeDelta::ZERO;
        };
        pin(&mut self.live, &pointer);
        self.cold_entries += 1;
        self.cold_bytes += u64::from(pointer.len);
        delta
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
    use crate::engine::{Engine, Entry};
    use crate::pointer::SegmentId;

    use crate::engine::masstree::test_util::{hot, ptr};

    #[test]
    fn demoted_entries_pin_their_segment_until_overwritten_or_deleted() {
        let mut s = MasstreeEngine::new();
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
        assert!(s.delete(b"b").is_some());
        assert!(!s.is_pinned(SegmentId(4)));
        assert_eq!(s.cold_stats().cold_entries, 0);
        assert_eq!(s.get(b"a"), Some(hot(b"new")));
    }

    #[test]
    fn entries_about_to_expire_and_long_values_stay_hot() {
        let mut s = MasstreeEngine::new();
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
        let mut s = MasstreeEngine::new();
        s.put(Bytes::from_static(b"a"), hot(b"old"));
        s.put(Bytes::from_static(b"a"), hot(b"newer"));
        assert!(!s.demote(b"a", b"old", ptr(1, 0, b"old")));
        assert_eq!(s.get(b"a"), Some(hot(b"newer")));
        assert!(s.live_bytes().is_empty());
    }

    #[test]
    fn a_loaded_entry_reads_back_and_demotes_again_without_a_new_copy() {
        let mut s = MasstreeEngine::new();
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
}
