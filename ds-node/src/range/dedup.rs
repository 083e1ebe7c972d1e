//! Write deduplication by request id: a write that carries a [`WriteId`] applies once per id
//! within [`WINDOW_MS`], so a replayed or retried write (the same `INCRBY` sent twice)
//! changes the range once and the second copy gets the first one's answer.
//!
//! Decided at apply time, from the log only, so every replica decides the same: the first
//! entry with a given id executes and stores its response in a *dedup record* — an engine
//! entry under the written key's own prefix (`keyspace::dedup_key`), expiring `WINDOW_MS`
//! after the entry's time (the leader's clock, carried in the entry). A later entry with the
//! same id, applied before that expiry, finds the record, changes nothing, and answers with
//! the stored response. Because the record is an ordinary entry of the range:
//! - it survives restarts (replayed from the log or loaded from a checkpoint), travels in
//!   snapshots to new replicas, and stays with its key's range through splits (split points
//!   fall between user keys, and the record shares its key's prefix);
//! - expired records are deleted by the leader's TTL sweep like any expired entry, so memory
//!   is bounded by the writes of one window (a key in the engine's side tree per write:
//!   `MasstreeStore::set_side_keys`, so that a record opens no Masstree layer under its key).
//!   The sweep's walk of the range looks at a few thousand entries a second, far too few for
//!   records made at the write rate (a 1M-key range is walked in minutes, during which a
//!   30k writes/s load leaves millions of records in memory and in the key index): every
//!   replica also queues the records it applies in the order they expire ([`RecordQueue`]),
//!   and the leader's sweep deletes the expired ones from the queue's head.
//!
//! Only Redis writes of one key and `Multi`s that write are deduplicated (their record has a
//! home range: the key, or the `Multi`'s first written key, `KvOp::dedup_key`); raw
//! operations, `RangeFlush` and writes without an id apply as before. A key so long that its record key
//! would pass the engine's key limit is not deduplicated either.

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};
use net::RpcError;
use net::codec::{Wire, decode_exact};
use net::message::kv::{KvOp, KvResponse, OpResult};

use super::checkpoint::MAX_KEY;
use super::store::{Entry, KvStore};
use crate::keyspace;

/// How long a write id is remembered, in milliseconds of entry time (the proxy gives up on a
/// request well within it).
pub const WINDOW_MS: u64 = net::message::kv::DEDUP_WINDOW_MS;

/// A write's identity: the client (a proxy instance picks a random one) and its request
/// sequence number; a retry reuses both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct WriteId {
    /// The client.
    pub client: u64,
    /// The client's request number.
    pub seq: u64,
}

/// The dedup record's key for `op` written under `id`, if `op` is deduplicated.
pub fn record_key(op: &KvOp, id: WriteId) -> Option<Bytes> {
    let (db, key) = op.dedup_target(keyspace::Db::ZERO)?;
    let k = keyspace::dedup_key(db, key, id.client, id.seq);
    (k.len() <= MAX_KEY).then_some(k)
}

/// Applies `op` (through `exec`) unless an entry with the same `id` applied within the
/// window: then returns that entry's response and changes nothing. `now_ms` is the entry's
/// time. Deterministic: the same entries in the same order give the same results.
pub fn apply_once<S: KvStore>(
    store: &mut S,
    id: Option<WriteId>,
    op: &KvOp,
    now_ms: u64,
    exec: impl FnOnce(&mut S) -> Result<OpResult, RpcError>,
) -> KvResponse {
    apply_once_recorded(store, id, op, now_ms, exec).0
}

/// [`apply_once`], also returning the key of the dedup record the write made (for the
/// range's [`RecordQueue`]).
pub fn apply_once_recorded<S: KvStore>(
    store: &mut S,
    id: Option<WriteId>,
    op: &KvOp,
    now_ms: u64,
    exec: impl FnOnce(&mut S) -> Result<OpResult, RpcError>,
) -> (KvResponse, Option<Bytes>) {
    let Some(key) = id.and_then(|id| record_key(op, id)) else {
        return (respond(exec(store)), None);
    };
    if let Some(e) = store.get(&key).filter(|e| !e.is_expired(now_ms)) {
        if let Ok(r) = decode_exact::<KvResponse>(e.value) {
            return (r, None);
        }
    }
    let r = exec(store);
    if r.as_ref().is_err_and(RpcError::is_retryable) {
        // Refused before anything applied (its key is no longer in this range, after a
        // split): the retry must apply, so nothing is recorded — a record would answer every
        // retry with this refusal, and would sit under a key of another range.
        return (respond(r), None);
    }
    let r = respond(r);
    let mut b = BytesMut::new();
    r.encode(&mut b);
    store.put(
        key.clone(),
        Entry {
            value: b.freeze(),
            expire_at_ms: now_ms.saturating_add(WINDOW_MS),
        },
    );
    (r, Some(key))
}

/// The dedup records a range applied, in apply order — the order they expire in, up to the
/// skew between successive leaders' clocks (a record popped a little late is harmless).
/// Soft state: a record missed (a restart, a full queue, a follower's queue dropped while
/// it was not leader) is found by the sweep's walk instead.
#[derive(Debug, Default)]
pub struct RecordQueue {
    q: VecDeque<(u64, Bytes)>,
}

impl RecordQueue {
    /// Most records queued per range (about 100 bytes each); beyond, the oldest are dropped.
    pub const MAX: usize = 1 << 19;

    /// Queues the record `key` made by a write applied at `now_ms` (deleting a record that is
    /// gone or not yet expired is a no-op).
    pub fn push(&mut self, now_ms: u64, key: Bytes) {
        if self.q.len() >= Self::MAX {
            self.q.pop_front();
        }
        self.q.push_back((now_ms.saturating_add(WINDOW_MS), key));
    }

    /// Removes and returns up to `limit` records expired at `now_ms`, oldest first.
    pub fn take_expired(&mut self, now_ms: u64, limit: usize) -> Vec<Bytes> {
        let mut out = Vec::new();
        while out.len() < limit {
            match self.q.front() {
                Some((at, _)) if *at <= now_ms => {
                    out.extend(self.q.pop_front().map(|(_, k)| k));
                }
                _ => break,
            }
        }
        out
    }

    /// Takes in the records of `other` (a range merged into this one), keeping the queue in
    /// expiry order and within [`RecordQueue::MAX`] (the oldest dropped).
    pub fn absorb(&mut self, other: RecordQueue) {
        if other.q.is_empty() {
            return;
        }
        let mut all: Vec<(u64, Bytes)> = self.q.drain(..).chain(other.q).collect();
        all.sort_by_key(|(at, _)| *at);
        let skip = all.len().saturating_sub(Self::MAX);
        self.q = all.into_iter().skip(skip).collect();
    }

    /// Records queued.
    pub fn len(&self) -> usize {
        self.q.len()
    }

    /// Whether none is queued.
    pub fn is_empty(&self) -> bool {
        self.q.is_empty()
    }
}

fn respond(r: Result<OpResult, RpcError>) -> KvResponse {
    match r {
        Ok(result) => KvResponse::Ok { result },
        Err(error) => KvResponse::Err { error },
    }
}

#[cfg(test)]
mod queue_tests {
    use super::*;

    #[test]
    fn a_merged_ranges_records_join_the_queue_in_expiry_order() {
        let mut left = RecordQueue::default();
        let mut right = RecordQueue::default();
        for (t, k) in [(100, "a"), (300, "c")] {
            left.push(t, Bytes::from(k));
        }
        right.push(200, Bytes::from("b"));
        left.absorb(right);
        assert_eq!(left.len(), 3);
        let got = left.take_expired(300 + WINDOW_MS, 10);
        assert_eq!(
            got,
            vec![Bytes::from("a"), Bytes::from("b"), Bytes::from("c")]
        );
    }

    /// Records come out once expired, oldest first, at most `limit` at a time; a full queue
    /// drops its oldest.
    #[test]
    fn the_queue_gives_back_expired_records_oldest_first_and_stays_bounded() {
        let mut q = RecordQueue::default();
        for (t, k) in [(100, "a"), (200, "b"), (300, "c")] {
            q.push(t, Bytes::from(k));
        }
        assert!(q.take_expired(100 + WINDOW_MS - 1, 10).is_empty());
        assert_eq!(q.take_expired(300 + WINDOW_MS, 2), ["a", "b"]);
        assert_eq!(q.take_expired(300 + WINDOW_MS, 2), ["c"]);
        assert!(q.is_empty());
        for i in 0..RecordQueue::MAX + 3 {
            q.push(i as u64, Bytes::from(i.to_string()));
        }
        assert_eq!(q.len(), RecordQueue::MAX);
        assert_eq!(q.take_expired(u64::MAX, 1), ["3"]);
    }
}

#[cfg(test)]
mod tests {
    //! The state machine (`execute` on a `ModelStore`) driven through `apply_once`.
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::range::apply::{ApplyCtx, execute};
    use crate::range::store::ModelStore;
    use net::message::RangeDescriptor;

    fn desc() -> RangeDescriptor {
        RangeDescriptor {
            id: net::RangeId(1),
            start: Bytes::new(),
            end: Bytes::new(),
            epoch: net::Epoch::default(),
            replicas: vec![],
            leader: None,
        }
    }

    fn incr(store: &mut ModelStore, id: Option<WriteId>, now_ms: u64) -> KvResponse {
        let op = KvOp::StrIncrBy {
            key: Bytes::from_static(b"counter"),
            delta: 5,
        };
        let d = desc();
        let ctx = ApplyCtx {
            now_ms,
            index: 1,
            range: &d,
            zranks: None,
        };
        apply_once(store, id, &op, now_ms, |s| execute(s, &op, &ctx))
    }

    fn int(r: &KvResponse) -> i64 {
        match r {
            KvResponse::Ok {
                result: OpResult::Int { value },
            } => *value,
            other => panic!("{other:?}"),
        }
    }

    const ID: WriteId = WriteId { client: 7, seq: 1 };

    #[test]
    fn the_same_write_id_applied_twice_applies_once() {
        let mut s = ModelStore::default();
        let first = incr(&mut s, Some(ID), 1_000);
        let again = incr(&mut s, Some(ID), 1_500);
        assert_eq!(int(&first), 5);
        assert_eq!(again, first, "the duplicate gets the first answer");
        let next = incr(&mut s, Some(WriteId { seq: 2, ..ID }), 1_600);
        assert_eq!(int(&next), 10, "another id applies");
    }

    #[test]
    fn a_write_refused_because_its_key_left_the_range_is_not_recorded_and_its_retry_applies() {
        let mut s = ModelStore::default();
        let op = KvOp::StrIncrBy {
            key: Bytes::from_static(b"counter"),
            delta: 5,
        };
        let mut elsewhere = desc();
        // A range that ends before every Redis key: the key is not in it.
        elsewhere.end = Bytes::from_static(b"a");
        let ctx = ApplyCtx {
            now_ms: 1_000,
            index: 1,
            range: &elsewhere,
            zranks: None,
        };
        let refused = apply_once(&mut s, Some(ID), &op, 1_000, |st| execute(st, &op, &ctx));
        assert!(
            matches!(
                refused,
                KvResponse::Err {
                    error: RpcError::RangeNotFound { .. }
                }
            ),
            "{refused:?}"
        );
        assert!(s.is_empty(), "nothing recorded");
        assert_eq!(int(&incr(&mut s, Some(ID), 1_100)), 5, "the retry applies");
    }

    #[test]
    fn writes_without_an_id_always_apply() {
        let mut s = ModelStore::default();
        incr(&mut s, None, 1_000);
        assert_eq!(int(&incr(&mut s, None, 1_000)), 10);
    }

    #[test]
    fn an_id_is_forgotten_after_the_window() {
        let mut s = ModelStore::default();
        incr(&mut s, Some(ID), 1_000);
        let late = incr(&mut s, Some(ID), 1_000 + WINDOW_MS);
        assert_eq!(int(&late), 10);
    }

    #[test]
    fn replicas_applying_the_same_entries_agree() {
        // Two stores, the same sequence with duplicates interleaved: identical contents.
        let seq = [
            (1, 100),
            (2, 110),
            (1, 120),
            (3, 130),
            (2, 140),
            (1, 20_000),
        ];
        let run = || {
            let mut s = ModelStore::default();
            let out: Vec<KvResponse> = seq
                .iter()
                .map(|&(n, t)| incr(&mut s, Some(WriteId { seq: n, ..ID }), t))
                .collect();
            (s, out)
        };
        let (a, ra) = run();
        let (b, rb) = run();
        assert_eq!(a, b);
        assert_eq!(ra, rb);
        assert_eq!(
            ra.iter().map(int).collect::<Vec<_>>(),
            [5, 10, 5, 15, 10, 20]
        );
    }

    #[test]
    fn raw_and_read_operations_are_not_deduplicated() {
        let get = KvOp::StrGet {
            key: Bytes::from_static(b"k"),
        };
        assert_eq!(record_key(&get, ID), None);
        let put = KvOp::Increment {
            key: Bytes::from_static(b"k"),
            delta: 1,
        };
        assert_eq!(record_key(&put, ID), None);
    }

    #[test]
    fn a_multi_that_writes_applies_once_per_id() {
        let op = KvOp::Multi {
            watches: vec![],
            ops: vec![
                KvOp::StrGet {
                    key: Bytes::from_static(b"a"),
                },
                KvOp::StrIncrBy {
                    key: Bytes::from_static(b"b"),
                    delta: 2,
                },
            ],
        };
        let d = desc();
        let mut s = ModelStore::default();
        let mut run = |now_ms| {
            let ctx = ApplyCtx {
                now_ms,
                index: 1,
                range: &d,
                zranks: None,
            };
            apply_once(&mut s, Some(ID), &op, now_ms, |s| execute(s, &op, &ctx))
        };
        let first = run(1_000);
        assert_eq!(run(1_200), first, "the copy gets the first answer");
        let incr = KvOp::StrIncrBy {
            key: Bytes::from_static(b"b"),
            delta: 1,
        };
        assert_eq!(op.dedup_key(), Some(&Bytes::from_static(b"b")));
        let ctx = ApplyCtx {
            now_ms: 1_300,
            index: 2,
            range: &d,
            zranks: None,
        };
        let after = apply_once(&mut s, None, &incr, 1_300, |s| execute(s, &incr, &ctx));
        assert_eq!(int(&after), 3, "the Multi's INCRBY applied once");
    }

    #[test]
    fn collection_and_bit_writes_are_deduplicated_and_their_reads_are_not() {
        let key = Bytes::from_static(b"k");
        let setbit = KvOp::Bits {
            op: net::message::kv::BitOp::SetBit {
                key: key.clone(),
                offset: 7,
                value: true,
            },
        };
        assert_eq!(setbit.dedup_key(), Some(&key));
        let getbit = KvOp::Bits {
            op: net::message::kv::BitOp::GetBit {
                key: key.clone(),
                offset: 7,
            },
        };
        assert_eq!(getbit.dedup_key(), None);
    }

    #[test]
    fn a_flush_is_not_deduplicated() {
        assert_eq!(record_key(&KvOp::RangeFlush {}, ID), None);
    }

    #[test]
    fn a_key_too_long_for_its_record_is_not_deduplicated() {
        let op = KvOp::StrIncrBy {
            key: Bytes::from(vec![b'k'; MAX_KEY - 8]),
            delta: 1,
        };
        assert_eq!(record_key(&op, ID), None);
    }
}
