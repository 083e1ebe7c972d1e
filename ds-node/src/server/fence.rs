//! Write fences: the writes of one pipeline apply in the order they were sent, even when an
//! earlier one is refused for a moment or waits for memory.
//!
//! The proxy sends the writes of one client's pipeline to one key together, in order, with
//! increasing sequence numbers (`KvWrite { client, seq }`), and the shard proposes them in the
//! order they arrive, so they apply in that order — unless an earlier one is not proposed at
//! once: refused with an error the proxy retries (`ServerBusy` with too many proposals in
//! flight, `NotLeader` during a leader transfer that is then given up, ...) or held back by
//! the memory throttle (`server::throttle`). A later write of the same key would then apply
//! first, and the retried one after it.
//!
//! So when a write of key `k` from client `c` with sequence `s` is not proposed at once, the
//! shard puts up a fence `(c, k) → s`: every write of `c` to `k` with a later sequence is
//! refused with `ServerBusy` (retried by the proxy, in order, after the fenced write's
//! outcome is known) until the fence comes down:
//! - the fenced write arrives again (the proxy's retry: it is then checked and proposed as
//!   any write, and may put the fence up again);
//! - a write held back by the throttle stops waiting (proposed, or refused for memory);
//! - [`FENCE_TTL`] passes (the proxy gave up on the fenced write: nothing waits behind it).
//!
//! Writes of other clients or other keys, and earlier sequences, never meet a fence. The set
//! is empty almost always: the check is one `is_empty` on the hot path.
//! A leaf of the shard state: imports nothing from `server`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::range::dedup::WriteId;

/// How long a fence stands without its write coming back: longer than the proxy's retry
/// backoff (at most 200 ms) plus a round trip, far shorter than a client's timeout.
pub const FENCE_TTL: Duration = Duration::from_secs(1);

/// Most fences a shard keeps; beyond it the oldest are dropped early (a dropped fence can
/// only let a retried write apply after a later one: what happens without fences).
pub const MAX_FENCES: usize = 4096;

/// One fence: the sequence of the write it waits for, and when it went up.
#[derive(Debug, Clone, Copy)]
struct Fence {
    seq: u64,
    at: Instant,
}

/// The shard's write fences, by client and key.
#[derive(Debug, Default)]
pub struct WriteFences {
    fences: HashMap<(u64, Bytes), Fence>,
    /// Writes refused because a fence stood before them (a metric).
    refused_total: u64,
}

impl WriteFences {
    /// Whether write `id` of `key` may go on at `now`: false when a fence for an earlier
    /// write of the same client and key stands. The fenced write itself takes its fence
    /// down.
    pub fn admits(&mut self, id: WriteId, key: &Bytes, now: Instant) -> bool {
        if self.fences.is_empty() {
            return true;
        }
        let k = (id.client, key.clone());
        let Some(f) = self.fences.get(&k).copied() else {
            return true;
        };
        if now.saturating_duration_since(f.at) >= FENCE_TTL || id.seq == f.seq {
            self.fences.remove(&k);
            return true;
        }
        if seq_after(id.seq, f.seq) {
            self.refused_total += 1;
            return false;
        }
        true
    }

    /// Puts a fence up behind write `id` of `key` (it was not proposed at `now`).
    pub fn raise(&mut self, id: WriteId, key: Bytes, now: Instant) {
        if self.fences.len() >= MAX_FENCES {
            self.fences
                .retain(|_, f| now.saturating_duration_since(f.at) < FENCE_TTL);
            if self.fences.len() >= MAX_FENCES {
                self.fences.clear();
            }
        }
        let k = (id.client, key);
        match self.fences.get(&k) {
            // An earlier write of this key is fenced already: the fence stays on it.
            Some(f) if seq_after(id.seq, f.seq) => {}
            _ => {
                self.fences.insert(
                    k,
                    Fence {
                        seq: id.seq,
                        at: now,
                    },
                );
            }
        }
    }

    /// Takes down the fence behind write `id` of `key`, if it is the one standing.
    pub fn lower(&mut self, id: WriteId, key: &Bytes) {
        let k = (id.client, key.clone());
        if self.fences.get(&k).is_some_and(|f| f.seq == id.seq) {
            self.fences.remove(&k);
        }
    }

    /// Fences standing now.
    pub fn len(&self) -> usize {
        self.fences.len()
    }

    /// Whether no fence stands.
    pub fn is_empty(&self) -> bool {
        self.fences.is_empty()
    }

    /// Writes refused behind a fence, ever.
    pub fn refused_total(&self) -> u64 {
        self.refused_total
    }
}

/// Whether sequence `a` comes after `b` (sequences wrap: compared within half the space).
fn seq_after(a: u64, b: u64) -> bool {
    a != b && a.wrapping_sub(b) < (1 << 63)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(client: u64, seq: u64) -> WriteId {
        WriteId { client, seq }
    }

    #[test]
    fn a_later_write_of_the_key_waits_for_the_fenced_one_to_come_back() {
        let (k, t) = (Bytes::from_static(b"k"), Instant::now());
        let mut f = WriteFences::default();
        f.raise(id(7, 10), k.clone(), t);
        assert!(!f.admits(id(7, 11), &k, t), "a later write of the key");
        assert!(f.admits(id(7, 9), &k, t), "an earlier sequence");
        assert!(f.admits(id(8, 11), &k, t), "another client");
        assert!(
            f.admits(id(7, 11), &Bytes::from_static(b"j"), t),
            "another key"
        );
        assert!(f.admits(id(7, 10), &k, t), "the fenced write's retry");
        assert!(f.admits(id(7, 11), &k, t), "after the retry");
        assert_eq!(f.refused_total(), 1);
        assert!(f.is_empty());
    }

    #[test]
    fn a_fence_comes_down_when_lowered_or_after_its_ttl() {
        let (k, t) = (Bytes::from_static(b"k"), Instant::now());
        let mut f = WriteFences::default();
        f.raise(id(1, 5), k.clone(), t);
        f.lower(id(1, 6), &k);
        assert!(
            !f.admits(id(1, 6), &k, t),
            "lowering another write's fence does nothing"
        );
        f.lower(id(1, 5), &k);
        assert!(f.admits(id(1, 6), &k, t));
        f.raise(id(1, 5), k.clone(), t);
        assert!(f.admits(id(1, 6), &k, t + FENCE_TTL), "expired");
        assert!(f.is_empty());
    }

    #[test]
    fn the_earliest_fenced_write_keeps_the_fence() {
        let (k, t) = (Bytes::from_static(b"k"), Instant::now());
        let mut f = WriteFences::default();
        f.raise(id(1, 5), k.clone(), t);
        f.raise(id(1, 6), k.clone(), t);
        assert!(!f.admits(id(1, 6), &k, t), "6 still waits for 5");
        f.raise(id(1, 4), k.clone(), t);
        assert!(!f.admits(id(1, 5), &k, t), "5 now waits for 4");
    }

    #[test]
    fn sequences_compare_across_the_wrap() {
        assert!(seq_after(1, u64::MAX));
        assert!(!seq_after(u64::MAX, 1));
        assert!(!seq_after(3, 3));
    }

    #[test]
    fn the_set_stays_bounded() {
        let t = Instant::now();
        let mut f = WriteFences::default();
        for i in 0..(MAX_FENCES as u64 + 10) {
            f.raise(id(1, i), Bytes::from(i.to_string()), t);
        }
        assert!(f.len() <= MAX_FENCES);
    }
}
