//! The clock hand of the memory policy (`server::policy`): which hot entries to demote.
//!
//! The hand walks the store in key order from a cursor (wrapping at the end) and looks at
//! each entry's access state, kept in spare bits of the Masstree entry (no side map):
//! - a hot entry loaded for one operation only (*transient*) is taken first: it has a durable
//!   copy, so dropping it costs no I/O;
//! - a hot entry whose access bit is set (written, or read since the hand last passed) loses
//!   the bit and stays: its second chance;
//! - a hot entry without the bit is taken, unless its value is longer than `max_value` or it
//!   expires before `expiring_before_ms` (a copy would only pin log space);
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

use super::engine::{Candidate, MasstreeStore};

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
pub fn sweep(store: &MasstreeStore, from: &[u8], limits: &SweepLimits) -> Sweep {
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
        let take = if e.is_transient() && e.pointer().is_some() {
            true
        } else if e.take_accessed() {
            out.second_chances += 1;
            false
        } else {
            let expiring = e
                .expire_at_ms()
                .is_some_and(|t| t < limits.expiring_before_ms);
            v.len() <= limits.max_value && !expiring
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
