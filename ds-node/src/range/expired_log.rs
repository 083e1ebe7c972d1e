//! A range's expiry log: the keys its applied sweeps deleted because they expired, in apply
//! order, each at a position `(entry index << 16) | position in the entry`, so that every
//! replica gives a key the same position and a poller's cursor survives a change of leader.
//!
//! Each key also carries the time of the sweep that deleted it, so that a poller's first
//! question takes the keys from when it started wanting them.
//!
//! Proxies read it (`KvOp::ExpiredSince`) to publish Redis's `expired` keyspace events and to
//! invalidate client-side caches. In memory only and bounded to [`CAPACITY`] keys: a poller
//! that falls further behind, or asks after a restart, misses the older ones (as a Redis
//! subscriber that was not connected misses them).

use std::collections::VecDeque;

use bytes::Bytes;
use net::keyspace::Db;
use net::message::kv::ExpiredKey;

/// Keys the log keeps.
pub const CAPACITY: usize = 4_096;
/// Keys one answer carries at most.
pub const ANSWER_MAX: usize = 1_024;

/// The expiry log of one range.
#[derive(Debug, Default)]
pub struct ExpiredLog {
    /// (position, sweep time in Unix ms, key).
    keys: VecDeque<(u64, u64, ExpiredKey)>,
    /// The position of the last key pushed (0: none yet).
    head: u64,
}

impl ExpiredLog {
    /// Records that the sweep proposed at `now_ms` and applied as entry `index` deleted
    /// `keys` (database, user key) because they expired.
    pub fn push(&mut self, index: u64, now_ms: u64, keys: impl IntoIterator<Item = (Db, Bytes)>) {
        for (i, (db, key)) in keys.into_iter().enumerate() {
            // A sweep entry holds at most a few hundred keys; the low 16 bits are enough.
            let at = (index << 16) | (i as u64 & 0xffff);
            self.head = at;
            if self.keys.len() == CAPACITY {
                self.keys.pop_front();
            }
            self.keys.push_back((at, now_ms, ExpiredKey { db, key }));
        }
    }

    /// The keys after position `after` (at most [`ANSWER_MAX`]) and the position to ask
    /// after next; with `after` 0, the keys of sweeps at or after `since_ms`.
    pub fn since(&self, after: u64, since_ms: u64) -> (u64, Vec<ExpiredKey>) {
        let from = if after == 0 {
            self.keys.partition_point(|(_, at_ms, _)| *at_ms < since_ms)
        } else {
            self.keys.partition_point(|(at, _, _)| *at <= after)
        };
        let keys: Vec<&(u64, u64, ExpiredKey)> = self.keys.range(from..).take(ANSWER_MAX).collect();
        let next = keys
            .last()
            .map_or(after.max(self.head).max(1), |(at, _, _)| *at);
        (next, keys.into_iter().map(|(_, _, k)| k.clone()).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(s: &str) -> (Db, Bytes) {
        (Db::ZERO, Bytes::copy_from_slice(s.as_bytes()))
    }

    fn names(keys: &[ExpiredKey]) -> Vec<&[u8]> {
        keys.iter().map(|k| &k.key[..]).collect()
    }

    #[test]
    fn a_poller_gets_each_key_once_in_apply_order_from_where_it_started() {
        let mut log = ExpiredLog::default();
        log.push(5, 1_000, [k("old")]);
        log.push(9, 2_000, [k("a"), k("b")]);
        let (next, keys) = log.since(0, 1_500);
        assert_eq!(
            names(&keys),
            vec![&b"a"[..], b"b"],
            "from when it was wanted"
        );
        log.push(12, 3_000, [k("c")]);
        let (next, keys) = log.since(next, 0);
        assert_eq!(names(&keys), vec![&b"c"[..]]);
        let (again, keys) = log.since(next, 0);
        assert!(keys.is_empty());
        assert_eq!(again, next);
    }

    #[test]
    fn the_log_is_bounded_and_answers_in_bounded_pieces() {
        let mut log = ExpiredLog::default();
        let (start, none) = log.since(0, 1);
        assert!(none.is_empty());
        for i in 0..(CAPACITY as u64 + 10) {
            log.push(i + 1, 10, [k(&format!("k{i}"))]);
        }
        let (next, keys) = log.since(start, 0);
        assert_eq!(keys.len(), ANSWER_MAX);
        assert_eq!(&keys[0].key[..], b"k10", "the oldest 10 were dropped");
        let (_, rest) = log.since(next, 0);
        assert_eq!(&rest[0].key[..], format!("k{}", 10 + ANSWER_MAX).as_bytes());
    }
}
