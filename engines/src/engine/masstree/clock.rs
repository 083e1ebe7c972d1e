//! The clock hand of the memory policy (`server::policy`): which hot entries to demote.
//!
//! The hand walks the store in key order from a cursor (wrapping at the end) and looks at
//! each entry's access state, kept in spare bits of the Masstree entry (no side map):
//! - a hot entry loaded for one operation only (*transient*) is taken first: it has a durable
//!   copy, so dropping it costs no I/O (but none while a load is in flight: the operation
//!   it prepares may need it);
//! - a hot entry whose access bit is set (written, or read since the hand last passed) loses
//!   the bit and stays: its second chance;
//! - a hot entry without the bit is taken, unless its value is longer than `max_value`, it
//!   expires before `expiring_before_ms` (a copy would only pin log space), or it is an
//!   unbacked value no longer than a pointer (cold, it would take more memory, not less);
//! - cold entries are passed over.
//!
//! One call is bounded: at most `visits` entries looked at, `entries` taken, about `bytes`
//! of values taken.
//!
//! Why a scan does not flush the hot set: a value read by a scan that was cold is loaded
//! transient and dropped again (it never competes with hot entries), and a scan of hot entries
//! only sets bits that entries read more often set again before the hand returns.

use std::ops::ControlFlow;

use bytes::Bytes;

use super::{Candidate, MasstreeEngine, loaded_before};
use crate::masstree::POINTER_BYTES;

/// Bounds of one sweep.
#[derive(Debug, Clone, Copy)]
pub struct SweepLimits {
    /// Most entries looked at.
    pub visits: usize,
    /// Most entries taken.
    pub entries: usize,
    /// Value bytes after which no more entries are taken.
    pub bytes: usize,
    /// Longest value taken (unless transient).
    pub max_value: usize,
    /// Entries expiring before this Unix time (ms) stay hot.
    pub expiring_before_ms: u64,
    /// Transient entries are taken only if loaded before this policy tick (`Some`: the
    /// start of the oldest load in flight, whose operation may need what it loaded,
    /// `server::cold`); `None`: all are.
    pub transient_before: Option<u16>,
}

/// What one sweep found.
#[derive(Debug, Default)]
pub struct Sweep {
    /// Entries to demote (in key order).
    pub candidates: Vec<Candidate>,
    /// Where the hand stopped (the next call starts there); `None`: it reached the end.
    pub next: Option<Bytes>,
    /// Entries looked at.
    pub visited: usize,
    /// Access bits cleared (second chances given).
    pub second_chances: usize,
}

/// Moves the hand from `from` within `limits` (see the module documentation).
pub fn sweep(store: &MasstreeEngine, from: &[u8], limits: &SweepLimits) -> Sweep {
    let mut out = Sweep::default();
    let mut bytes = 0usize;
    let mut stopped_at = None;
    store.walk(from, &[], |k, e| {
        if out.visited >= limits.visits
            || out.candidates.len() >= limits.entries
            || bytes >= limits.bytes
        {
            stopped_at = Some(Bytes::copy_from_slice(k));
            return ControlFlow::Break(());
        }
        out.visited += 1;
        let Some(v) = e.value() else {
            return ControlFlow::Continue(());
        };
        let take = if e.is_transient() {
            e.pointer().is_some() && loaded_before(e.cold_read_stamp(), limits.transient_before)
        } else if e.take_accessed() {
            out.second_chances += 1;
            false
        } else {
            let expiring = e
                .expire_at_ms()
                .is_some_and(|t| t < limits.expiring_before_ms);
            // An unbacked value no longer than a pointer would cost more memory cold.
            let gains = e.pointer().is_some() || v.len() > POINTER_BYTES;
            v.len() <= limits.max_value && !expiring && gains
        };
        if take {
            bytes += v.len();
            out.candidates.push(Candidate {
                key: Bytes::copy_from_slice(k),
                value: Bytes::copy_from_slice(v),
                pointer: e.pointer(),
            });
        }
        ControlFlow::Continue(())
    });
    out.next = stopped_at;
    out
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::super::{Loaded, Promotion};
    use super::*;
    use crate::engine::{Engine, Entry};
    use crate::pointer::{LogPointer, SegmentId};

    const ALL: SweepLimits = SweepLimits {
        visits: 64,
        entries: 16,
        bytes: 1 << 20,
        max_value: 1 << 20,
        expiring_before_ms: 0,
        transient_before: None,
    };

    fn key(i: usize) -> Bytes {
        Bytes::from(format!("key{i:06}"))
    }

    fn store(n: usize, value_len: usize) -> MasstreeEngine {
        let mut s = MasstreeEngine::new();
        for i in 0..n {
            let entry = Entry {
                value: Bytes::from(vec![i as u8; value_len]),
                expire_at_ms: 0,
            };
            s.put(key(i), entry);
        }
        s
    }

    /// Demotes what one sweep picks (a durable copy made up for entries without one, as
    /// `demote::step` writes it); returns the cursor.
    fn demote_step(s: &mut MasstreeEngine, from: &[u8], limits: &SweepLimits) -> Option<Bytes> {
        let sw = sweep(s, from, limits);
        for c in sw.candidates {
            let p = c.pointer.unwrap_or(LogPointer {
                segment: SegmentId(1),
                offset: 0,
                len: c.value.len() as u32,
                checksum: crc32c::crc32c(&c.value),
            });
            assert!(s.demote(&c.key, &c.value, p));
        }
        sw.next
    }

    /// Sweeps until the store accounts at most `target` bytes (or a bounded number of steps),
    /// calling `between` after each step (the traffic that runs meanwhile).
    fn demote_to(
        s: &mut MasstreeEngine,
        target: u64,
        cursor: &mut Bytes,
        mut between: impl FnMut(&mut MasstreeEngine),
    ) {
        for _ in 0..10_000 {
            if s.accounted().total() <= target {
                return;
            }
            *cursor = demote_step(s, cursor, &ALL).unwrap_or_default();
            between(s);
        }
    }

    /// Reads `key(i)` as the shard does: a cold entry is loaded first (the value `store`
    /// wrote), promoted on its second read within the window, else dropped after the read.
    fn read(s: &mut MasstreeEngine, i: usize, promote: &Promotion) {
        if let Some(p) = s.cold_pointer(&key(i)) {
            let v = vec![i as u8; p.len as usize];
            assert_ne!(s.load_with(&key(i), p, &v, promote), Loaded::Stale);
            assert_eq!(s.get(&key(i)).map(|e| e.value), Some(Bytes::from(v)));
            s.drop_transient(&key(i), p, None);
        } else {
            assert!(s.get(&key(i)).is_some());
        }
    }

    /// Reads every key in key order (a scan of values).
    fn scan_all(s: &mut MasstreeEngine, n: usize, promote: &Promotion) {
        for i in 0..n {
            read(s, i, promote);
        }
    }

    #[test]
    fn referenced_entries_get_a_second_chance_and_unreferenced_ones_are_taken() {
        let s = store(4, 32);
        // Every write is an access: the first lap only clears bits.
        let first = sweep(&s, b"", &ALL);
        assert_eq!((first.candidates.len(), first.second_chances), (0, 4));
        s.get(&key(2));
        let second = sweep(&s, b"", &ALL);
        let taken: Vec<Bytes> = second.candidates.iter().map(|c| c.key.clone()).collect();
        assert_eq!(taken, vec![key(0), key(1), key(3)]);
        assert_eq!(second.second_chances, 1);
    }

    #[test]
    fn unbacked_values_no_longer_than_a_pointer_stay_hot() {
        let s = store(3, POINTER_BYTES);
        let _ = sweep(&s, b"", &ALL);
        let second = sweep(&s, b"", &ALL);
        assert!(second.candidates.is_empty(), "{:?}", second.candidates);
        let s = store(3, POINTER_BYTES + 1);
        let _ = sweep(&s, b"", &ALL);
        assert_eq!(sweep(&s, b"", &ALL).candidates.len(), 3);
    }

    #[test]
    fn transient_entries_are_taken_first_but_not_while_a_load_is_in_flight() {
        let mut s = store(3, 10);
        let p = LogPointer {
            segment: SegmentId(1),
            offset: 0,
            len: 10,
            checksum: crc32c::crc32c(&[1; 10]),
        };
        assert!(s.demote(&key(1), &[1; 10], p));
        assert_eq!(
            s.load_with(&key(1), p, &[1; 10], &Promotion::NEVER),
            Loaded::Transient
        );
        // Loaded at tick 0 (`Promotion::NEVER`): a load in flight since tick 0 may need it.
        let busy = SweepLimits {
            transient_before: Some(0),
            ..ALL
        };
        let none = sweep(&s, b"", &busy);
        assert!(none.candidates.is_empty(), "{:?}", none.candidates);
        assert!(loaded_before(Some(0), Some(1)) && loaded_before(Some(65_535), Some(3)));
        assert!(!loaded_before(Some(5), Some(5)) && !loaded_before(Some(6), Some(5)));
        s.get(&key(0));
        s.get(&key(2));
        let first = sweep(&s, b"", &ALL);
        let taken: Vec<Bytes> = first.candidates.iter().map(|c| c.key.clone()).collect();
        assert_eq!(
            taken,
            vec![key(1)],
            "referenced entries get their second chance"
        );
        assert_eq!(first.candidates[0].pointer, Some(p));
    }

    #[test]
    fn one_sweep_is_bounded_and_resumes_where_it_stopped() {
        let s = store(100, 10);
        let limits = SweepLimits { visits: 30, ..ALL };
        let a = sweep(&s, b"", &limits);
        assert_eq!(a.visited, 30);
        assert_eq!(a.next, Some(key(30)));
        let b = sweep(&s, &key(90), &limits);
        assert_eq!((b.visited, b.next), (10, None));
    }

    #[test]
    fn the_hot_set_survives_a_scan_of_everything() {
        let (n, hot) = (2000usize, 100usize);
        let mut s = store(n, 200);
        // The tree without values, plus a quarter of the values.
        let budget = s.accounted().total() - (n as u64 * 200) + (n as u64 * 200) / 4;
        let mut cursor = Bytes::new();
        // No promotion: what keeps the hot set in memory is the access bit alone.
        let promote = Promotion {
            tick: 0,
            window: 60,
            allowed: false,
        };
        let read_hot = |s: &mut MasstreeEngine| {
            for i in 0..hot {
                read(s, i * 7, &promote);
            }
        };
        demote_to(&mut s, budget, &mut cursor, read_hot);
        let hot_before = (0..hot).filter(|i| !s.is_cold(&key(i * 7))).count();
        assert_eq!(hot_before, hot, "the hot set is in memory after demotion");
        scan_all(&mut s, n, &promote);
        for _ in 0..20 {
            read_hot(&mut s);
            demote_to(&mut s, budget, &mut cursor, read_hot);
        }
        assert!(s.accounted().total() <= budget);
        let hot_kept = (0..hot).filter(|i| !s.is_cold(&key(i * 7))).count();
        assert_eq!(hot_kept, hot, "every key of the hot set is still in memory");
        let cold = (0..n).filter(|i| s.is_cold(&key(*i))).count();
        assert!(cold >= n / 2, "the scan brought nothing back: {cold} cold");
        assert_eq!(s.take_cold_misses(), 0);
    }

    #[test]
    fn a_cold_value_read_twice_within_the_window_is_promoted_only_when_allowed() {
        let mut s = store(1, 5);
        let p = LogPointer {
            segment: SegmentId(1),
            offset: 0,
            len: 5,
            checksum: crc32c::crc32c(&[0; 5]),
        };
        let read = |s: &mut MasstreeEngine, tick: u16, allowed: bool| {
            let promote = Promotion {
                tick,
                window: 10,
                allowed,
            };
            let r = s.load_with(&key(0), p, &[0; 5], &promote);
            if r == Loaded::Transient {
                assert!(s.drop_transient(&key(0), p, None));
            }
            r
        };
        assert!(s.demote(&key(0), &[0; 5], p));
        assert_eq!(read(&mut s, 100, true), Loaded::Transient);
        assert_eq!(
            read(&mut s, 120, true),
            Loaded::Transient,
            "outside the window"
        );
        assert_eq!(
            read(&mut s, 125, false),
            Loaded::Transient,
            "over promote-below"
        );
        assert_eq!(read(&mut s, 126, true), Loaded::Promoted);
        assert!(!s.is_cold(&key(0)));
        assert!(
            !s.drop_transient(&key(0), p, None),
            "a promoted value stays hot"
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]
        #[test]
        fn demotion_brings_the_store_under_any_budget_its_keys_fit_in(
            lens in proptest::collection::vec(0usize..3000, 1..400),
            share in 0.05f64..1.0,
            touched in proptest::collection::vec(any::<prop::sample::Index>(), 0..50),
        ) {
            let mut s = MasstreeEngine::new();
            for (i, l) in lens.iter().enumerate() {
                s.put(key(i), Entry { value: Bytes::from(vec![7u8; *l]), expire_at_ms: 0 });
            }
            let full = s.accounted();
            // What cannot leave memory: the tree, and a pointer in place of each value that
            // demotion takes (those longer than a pointer: the others stay hot).
            let kept: usize = lens.iter().map(|l| (*l).min(POINTER_BYTES)).sum();
            let floor = full.total() - lens.iter().sum::<usize>() as u64 + kept as u64;
            let budget = floor + ((full.total() - floor) as f64 * share) as u64;
            let mut cursor = Bytes::new();
            for t in &touched {
                s.get(&key(t.index(lens.len())));
            }
            demote_to(&mut s, budget, &mut cursor, |_| {});
            prop_assert!(s.accounted().total() <= budget);
            for (i, l) in lens.iter().enumerate() {
                // Every key is still there, hot with its value or cold with its length.
                match s.cold_pointer(&key(i)) {
                    Some(p) => prop_assert_eq!(p.len as usize, *l),
                    None => prop_assert_eq!(s.get(&key(i)).map(|e| e.value.len()), Some(*l)),
                }
            }
        }
    }
}
