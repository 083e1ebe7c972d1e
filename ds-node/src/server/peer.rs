//! One range on this shard: its descriptor, Raft group and the requests waiting on it.
//! Part of the shard state (a leaf: imports no `server` module but `transfers`, `lease` and
//! `throttle_state`).
//!
//! Every field is private: the operations change a replica through methods named after what
//! they do (`add_pending`, `take_pending`, `start_read_index`, `take_ready_reads`,
//! `renew_lease`, `fail_waiting`, `add_size`, `stop`, `mark_initialized`, `change_desc`, ...),
//! so the rules that tie its parts together (ReadIndex contexts shared with lease renewals,
//! the lease fenced by transfers, a stopped range's waiters answered) live here only. The
//! Raft group is reached through `raft()`/`raft_mut()`.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures_channel::oneshot;
use net::message::kv::{KvOp, KvResponse};
use net::message::{RangeDescriptor, ReplicaRole};
use raft::eraftpb::ConfState;
use raft::{RawNode, StateRole};

use super::lease::Lease;
use super::throttle_state::Charge;
use crate::range::db_keys::DbKeys;
use crate::range::storage::RaftLogCache;
use crate::range::zrank::ZRanks;

/// How long a request may wait for its proposal or read before it is answered `Timeout`.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// `RpcError::Internal` code of a request to a stopped range ([`Peer::stopped`]).
pub const RANGE_STOPPED: u32 = 3;

/// Where a request's answer goes.
pub type Waiter = oneshot::Sender<KvResponse>;

/// A proposal waiting for its entry to apply.
#[derive(Debug)]
pub(super) struct Pending {
    /// The term the entry was proposed in (another term at that index: it was dropped).
    pub(super) term: u64,
    /// The answer.
    pub(super) tx: Waiter,
    /// When it was proposed.
    pub(super) at: Instant,
    /// Its bytes counted as memory to come (`server::throttle`), for a write that may add
    /// data; released when this is dropped.
    #[expect(
        dead_code,
        reason = "held, never read: dropping it releases the charge"
    )]
    pub(super) charge: Option<Charge>,
}

/// A read waiting for its ReadIndex (and then for apply to reach it).
#[derive(Debug)]
pub(super) struct WaitingRead {
    /// The operation.
    pub(super) op: KvOp,
    /// The answer.
    pub(super) tx: Waiter,
    /// The read index once known.
    index: Option<u64>,
    /// When it arrived.
    pub(super) at: Instant,
}

/// A range replica hosted by this shard.
pub struct Peer {
    /// The range descriptor (replicas = the Raft configuration).
    desc: RangeDescriptor,
    /// This replica's Raft id.
    replica_id: net::ReplicaId,
    /// The Raft group.
    node: RawNode<RaftLogCache>,
    /// Proposals by log index.
    pending: BTreeMap<u64, Pending>,
    /// Reads by ReadIndex context.
    reads: BTreeMap<u64, WaitingRead>,
    /// Next ReadIndex context (shared by reads and lease renewals).
    next_read: u64,
    /// The role after the last ready (to count leader changes).
    last_role: StateRole,
    /// Where the next TTL sweep starts (empty: the range's start).
    pub(super) sweep_cursor: bytes::Bytes,
    /// Log index of the last sweep proposed; no new sweep until it applied.
    pub(super) sweep_in_flight: u64,
    /// The dedup records this replica applied, in the order they expire (`range::dedup`).
    pub(super) dedup_records: crate::range::dedup::RecordQueue,
    /// False for a replica created for a leader's message that has not installed its first
    /// snapshot yet: it has no key range and serves nothing.
    initialized: bool,
    /// A snapshot stepped into raft-rs, to install when raft-rs hands it back in a ready.
    snapshot_in: Option<super::transfers::Received>,
    /// When this replica was created (to give up on a replica that never initializes).
    created: Instant,
    /// Approximate (key + value bytes, keys) of the range: exact at its last checkpoint or
    /// snapshot, then moved by every applied entry (reported to the master for splits).
    approx_size: (i64, i64),
    /// Keys and keys with an expiry per database (`DBSIZE`, `INFO keyspace`): exact, kept by
    /// every applied write and sweep, rebuilt when the range is loaded (`range::db_keys`).
    db_keys: DbKeys,
    /// Rank indexes of the range's large sorted sets (`range::zrank`): derived, in memory,
    /// dropped whenever the range is reloaded ([`Peer::set_db_keys`]) and rebuilt on use.
    zranks: RefCell<ZRanks>,
    /// The keys its sweeps deleted because they expired (`KvOp::ExpiredSince`).
    expired: crate::range::expired_log::ExpiredLog,
    /// When this leader last proposed a split (the master repeats its operator until the
    /// split shows in a heartbeat).
    split_proposed_at: Option<Instant>,
    /// When this leader last proposed a merge step (freeze or commit, `server::merge`).
    merge_proposed_at: Option<Instant>,
    /// Committed entries not applied yet because a commit-merge among them waits for this
    /// shard's right replica to apply its freeze (`server::merge`), in log order.
    deferred: Vec<raft::eraftpb::Entry>,
    /// Why the range stopped: applying a committed entry broke an engine invariant. A
    /// stopped replica applies, steps and checkpoints nothing more and answers every request
    /// with an error; the shard's other ranges go on. Recovery stops it again at the same
    /// entry (deterministic), so a restart never crash-loops.
    stopped: Option<String>,
    /// The read lease while this replica leads ([`Lease`]).
    lease: Lease,
    /// A leader transfer was started and may still be running: acknowledgements renew
    /// nothing until it is seen over ([`Peer::extend_lease`]).
    transferring: bool,
}

impl std::fmt::Debug for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peer")
            .field("range", &self.desc.id)
            .field("replica_id", &self.replica_id)
            .field("pending", &self.pending.len())
            .field("initialized", &self.initialized)
            .finish_non_exhaustive()
    }
}

impl Peer {
    /// A replica `replica_id` of the range `desc` with Raft group `node`, created at `now`,
    /// waiting for nothing; `initialized` unless created for a leader's message. Its lease
    /// lasts `lease` per quorum acknowledgement.
    pub fn new(
        desc: RangeDescriptor,
        replica_id: net::ReplicaId,
        node: RawNode<RaftLogCache>,
        initialized: bool,
        lease: Duration,
        now: Instant,
    ) -> Self {
        Self {
            desc,
            replica_id,
            node,
            pending: BTreeMap::new(),
            reads: BTreeMap::new(),
            next_read: 1,
            last_role: StateRole::Follower,
            sweep_cursor: bytes::Bytes::new(),
            sweep_in_flight: 0,
            dedup_records: Default::default(),
            initialized,
            snapshot_in: None,
            created: now,
            approx_size: (0, 0),
            db_keys: Default::default(),
            zranks: RefCell::default(),
            expired: Default::default(),
            split_proposed_at: None,
            merge_proposed_at: None,
            deferred: Vec::new(),
            stopped: None,
            lease: Lease::new(lease),
            transferring: false,
        }
    }

    /// The range descriptor (its replicas are the Raft configuration).
    #[inline]
    pub fn desc(&self) -> &RangeDescriptor {
        &self.desc
    }

    /// The range's id.
    #[inline]
    pub fn range_id(&self) -> net::RangeId {
        self.desc.id
    }

    /// Replaces the descriptor (a snapshot installed it).
    pub fn set_desc(&mut self, desc: RangeDescriptor) {
        self.desc = desc;
    }

    /// Changes the descriptor with `f` (an applied split or membership change); what `f`
    /// returns.
    pub fn change_desc<R>(&mut self, f: impl FnOnce(&mut RangeDescriptor) -> R) -> R {
        f(&mut self.desc)
    }

    /// This replica's Raft id.
    #[inline]
    pub fn replica_id(&self) -> net::ReplicaId {
        self.replica_id
    }

    /// The Raft group.
    #[inline]
    pub fn raft(&self) -> &RawNode<RaftLogCache> {
        &self.node
    }

    /// The Raft group, to step, propose, tick or advance it.
    #[inline]
    pub fn raft_mut(&mut self) -> &mut RawNode<RaftLogCache> {
        &mut self.node
    }

    /// The Raft group's current term.
    #[inline]
    pub fn term(&self) -> u64 {
        self.node.raft.term
    }

    /// The index of the last entry in the Raft log.
    #[inline]
    pub fn last_index(&self) -> u64 {
        self.node.raft.raft_log.last_index()
    }

    /// Whether this replica has a key range (false until a replica created for a leader's
    /// message installs its first snapshot).
    #[inline]
    pub fn is_initialized(&self) -> bool {
        self.initialized
    }

    /// Notes that the replica's first snapshot installed: it has a key range now.
    pub fn mark_initialized(&mut self) {
        self.initialized = true;
    }

    /// Why the range stopped, if it did ([`Peer::stop`]).
    #[inline]
    pub fn stopped(&self) -> Option<&str> {
        self.stopped.as_deref()
    }

    /// Whether the range is stopped ([`Peer::stop`]).
    #[inline]
    pub fn is_stopped(&self) -> bool {
        self.stopped.is_some()
    }

    /// Stops the range for `why` (applying a committed entry broke an engine invariant):
    /// every waiting proposal is answered with `why` as a `RANGE_STOPPED` error, and the
    /// replica applies, steps and checkpoints nothing more.
    pub fn stop(&mut self, why: String) {
        self.fail_pending(|| KvResponse::Err {
            error: net::RpcError::Internal {
                code: RANGE_STOPPED,
                message: why.clone(),
            },
        });
        self.stopped = Some(why);
    }

    /// The range's keys and keys with an expiry per database.
    #[inline]
    pub fn db_keys(&self) -> &DbKeys {
        &self.db_keys
    }

    /// The per-database key counts, for an applied sweep that counts what it deletes.
    #[inline]
    pub fn db_keys_mut(&mut self) -> &mut DbKeys {
        &mut self.db_keys
    }

    /// The keys the range's sweeps deleted because they expired.
    #[inline]
    pub fn expired(&self) -> &crate::range::expired_log::ExpiredLog {
        &self.expired
    }

    /// The expiry log, for an applied sweep.
    #[inline]
    pub fn expired_mut(&mut self) -> &mut crate::range::expired_log::ExpiredLog {
        &mut self.expired
    }

    /// Replaces the per-database key counts (recounted after a load, snapshot or split).
    /// The range's contents were replaced or cut: its rank indexes are dropped too (rebuilt
    /// on first use).
    pub fn set_db_keys(&mut self, keys: DbKeys) {
        self.db_keys = keys;
        self.zranks.get_mut().clear();
    }

    /// The rank indexes of the range's large sorted sets.
    #[inline]
    pub fn zranks(&self) -> &RefCell<ZRanks> {
        &self.zranks
    }

    /// The descriptor, the per-database key counts and the rank indexes, for an applied
    /// write that checks its keys against the range, counts what it adds or removes and
    /// keeps the rank indexes.
    #[inline]
    pub fn apply_state_mut(&mut self) -> (&RangeDescriptor, &mut DbKeys, &RefCell<ZRanks>) {
        (&self.desc, &mut self.db_keys, &self.zranks)
    }

    /// Notes the group's role after a ready; whether leadership was gained or lost.
    pub fn note_role(&mut self, role: StateRole) -> bool {
        let changed = role != self.last_role
            && (role == StateRole::Leader || self.last_role == StateRole::Leader);
        self.last_role = role;
        changed
    }

    /// Keeps snapshot `got` (stepped into raft-rs) until raft-rs hands it back in a ready.
    pub fn keep_snapshot(&mut self, got: super::transfers::Received) {
        self.snapshot_in = Some(got);
    }

    /// The snapshot kept for the ready that installs it, if its index is `index`.
    pub fn take_snapshot(&mut self, index: u64) -> Option<super::transfers::Received> {
        self.snapshot_in.take().filter(|r| r.meta.index == index)
    }

    /// Whether this replica was created at least `ttl` before `now` (an uninitialized one is
    /// then given up).
    pub fn older_than(&self, ttl: Duration, now: Instant) -> bool {
        now.saturating_duration_since(self.created) >= ttl
    }

    /// Whether this leader proposed a split less than `cool_down` before `now`.
    pub fn split_recently(&self, cool_down: Duration, now: Instant) -> bool {
        self.split_proposed_at
            .is_some_and(|t| now.saturating_duration_since(t) < cool_down)
    }

    /// Whether this leader proposed a merge step less than `cool_down` before `now`.
    pub fn merge_recently(&self, cool_down: Duration, now: Instant) -> bool {
        self.merge_proposed_at
            .is_some_and(|t| now.saturating_duration_since(t) < cool_down)
    }

    /// Notes that this leader proposed a merge step at `now`.
    pub fn note_merge_proposed(&mut self, now: Instant) {
        self.merge_proposed_at = Some(now);
    }

    /// Keeps committed entries to apply later (a commit-merge waits, `server::merge`).
    pub fn defer(&mut self, entries: impl IntoIterator<Item = raft::eraftpb::Entry>) {
        self.deferred.extend(entries);
    }

    /// The first entry waiting to be applied (a commit-merge), if any.
    pub fn first_deferred(&self) -> Option<&raft::eraftpb::Entry> {
        self.deferred.first()
    }

    /// Whether committed entries wait to be applied.
    pub fn has_deferred(&self) -> bool {
        !self.deferred.is_empty()
    }

    /// The deferred entries followed by `more` (newly committed), to apply in log order.
    pub fn take_deferred_then(
        &mut self,
        more: Vec<raft::eraftpb::Entry>,
    ) -> Vec<raft::eraftpb::Entry> {
        if self.deferred.is_empty() {
            return more;
        }
        let mut all = std::mem::take(&mut self.deferred);
        all.extend(more);
        all
    }

    /// Notes that this leader proposed a split at `now`.
    pub fn note_split_proposed(&mut self, now: Instant) {
        self.split_proposed_at = Some(now);
    }

    /// Moves the range's approximate size by `d`, what an applied entry's writes returned.
    pub fn add_size(&mut self, d: crate::range::store::SizeDelta) {
        self.approx_size.0 += d.bytes;
        self.approx_size.1 += d.keys;
    }

    /// Sets the range's approximate size to (key + value bytes, keys), measured.
    pub fn set_size(&mut self, bytes: i64, keys: i64) {
        self.approx_size = (bytes, keys);
    }

    /// The range's approximate (key + value bytes, keys), never below zero.
    pub fn approx_size(&self) -> (u64, u64) {
        let (b, k) = self.approx_size;
        (b.max(0) as u64, k.max(0) as u64)
    }

    /// Proposals waiting for their entry to apply.
    pub fn pending_count(&self) -> usize {
        self.pending.len()
    }

    /// Makes `w` wait for the entry proposed at `index`.
    pub(super) fn add_pending(&mut self, index: u64, w: Pending) {
        debug_assert!(!self.pending.contains_key(&index));
        self.pending.insert(index, w);
    }

    /// The proposal waiting for entry `index`, no longer waiting.
    pub(super) fn take_pending(&mut self, index: u64) -> Option<Pending> {
        self.pending.remove(&index)
    }

    /// Answers every waiting proposal with `err()`.
    pub fn fail_pending(&mut self, err: impl Fn() -> KvResponse) {
        for (_, w) in std::mem::take(&mut self.pending) {
            let _ = w.tx.send(err());
        }
    }

    /// Answers every waiting read with `err()`.
    pub fn fail_reads(&mut self, err: impl Fn() -> KvResponse) {
        for (_, r) in std::mem::take(&mut self.reads) {
            let _ = r.tx.send(err());
        }
    }

    /// Answers every waiting request, proposals and reads, with `err()`.
    pub fn fail_waiting(&mut self, err: impl Fn() -> KvResponse) {
        self.fail_pending(&err);
        self.fail_reads(&err);
    }

    /// Reads waiting for their ReadIndex or for apply to reach it.
    pub fn reads_count(&self) -> usize {
        self.reads.len()
    }

    /// Queues read `op` (answered on `tx`, arrived at `now`) and asks raft-rs for a read
    /// index for it.
    pub fn start_read_index(&mut self, op: KvOp, tx: Waiter, now: Instant) {
        let id = self.next_read;
        self.next_read += 1;
        let read = WaitingRead {
            op,
            tx,
            index: None,
            at: now,
        };
        self.reads.insert(id, read);
        self.node.read_index(id.to_le_bytes().to_vec());
    }

    /// raft-rs returned read index `index` for ReadIndex context `id`: notes it for the
    /// waiting read, and returns when the round's message was sent (a waiting read's arrival,
    /// or the lease renewal round `id`), `None` for an unknown context.
    pub fn read_index_returned(&mut self, id: u64, index: u64) -> Option<Instant> {
        match self.reads.get_mut(&id) {
            Some(r) => {
                r.index = Some(index);
                Some(r.at)
            }
            None => self.lease.take_renewal(id),
        }
    }

    /// The reads whose index is known and applied, no longer waiting (in context order).
    pub(super) fn take_ready_reads(&mut self) -> Vec<WaitingRead> {
        let applied = self.applied();
        let ready: Vec<u64> = self
            .reads
            .iter()
            .filter(|(_, r)| r.index.is_some_and(|i| i <= applied))
            .map(|(k, _)| *k)
            .collect();
        ready
            .into_iter()
            .filter_map(|k| self.reads.remove(&k))
            .collect()
    }

    /// Notes that a read wanted the lease at `now` (renewals run only for ranges being read).
    pub fn note_read(&mut self, now: Instant) {
        self.lease.note_read(now);
    }

    /// Starts a heartbeat round that renews the lease of this leader, if it is being read
    /// and the lease ends soon (`now`: the shard's clock); whether it started one.
    pub fn renew_lease(&mut self, now: Instant) -> bool {
        let r = &self.node.raft;
        if r.state != StateRole::Leader
            || r.lead_transferee.is_some()
            || r.prs().is_singleton()
            || !r.commit_to_current_term()
            || !self.lease.wants_renewal(r.term, now)
        {
            return false;
        }
        let id = self.next_read;
        self.next_read += 1;
        self.lease.start_renewal(id, now);
        self.node.read_index(id.to_le_bytes().to_vec());
        true
    }

    /// Whether this replica leads its group.
    pub fn is_leader(&self) -> bool {
        self.node.raft.state == StateRole::Leader
    }

    /// Whether a read may be answered from local state now: this replica is leader, holds
    /// its read lease ([`Lease`]: a quorum acknowledged a message sent less than the lease
    /// duration ago, so no other replica can have been elected since), no leader transfer is
    /// running, and it has applied an entry of its own term. That entry (the leader's first,
    /// or later) was committed after every entry an earlier leader acknowledged, so the
    /// applied state holds every acknowledged write; entries committed but not applied yet
    /// are not acknowledged yet either, so a read may miss them (TiKV's `applied_term ==
    /// term` rule). A sole voter needs no lease: no one else can be elected. `now` is the
    /// shard's clock.
    pub fn lease_read_ok(&self, now: Instant) -> bool {
        let r = &self.node.raft;
        r.state == StateRole::Leader
            && r.lead_transferee.is_none()
            && (r.prs().is_singleton() || self.lease.holds(r.term, now))
            && r.raft_log
                .term(r.raft_log.applied())
                .is_ok_and(|t| t == r.term)
    }

    /// A quorum acknowledged a message of `term` this leader sent at `sent_at`: the lease
    /// runs from then. While a leader transfer runs, and once when it is seen over, the lease
    /// is fenced instead (the transfer's target may be elected at once). `now` is the
    /// shard's clock.
    pub fn extend_lease(&mut self, term: u64, sent_at: Instant, now: Instant) {
        if term != self.node.raft.term || !self.is_leader() {
            return;
        }
        if self.node.raft.lead_transferee.is_some() {
            self.lease.fence(now);
            self.transferring = true;
            return;
        }
        if self.transferring {
            self.lease.fence(now);
            self.transferring = false;
        }
        self.lease.extend(term, sent_at);
    }

    /// Hands leadership to replica `to`: the lease ends now (its target may be elected
    /// without waiting for the followers' election timeouts). `now` is the shard's clock.
    pub fn transfer_leader(&mut self, to: net::ReplicaId, now: Instant) {
        self.lease.fence(now);
        self.transferring = true;
        self.node.transfer_leader(to.0);
    }

    /// The applied index.
    pub fn applied(&self) -> u64 {
        self.node.raft.raft_log.applied()
    }

    /// The leader's replica id, if known (0 = none).
    pub fn leader_id(&self) -> u64 {
        self.node.raft.leader_id
    }
}

/// The Raft conf state a descriptor's replicas describe.
pub fn conf_state_of(desc: &RangeDescriptor) -> ConfState {
    let mut cs = ConfState::default();
    for r in &desc.replicas {
        match r.role {
            ReplicaRole::Voter {} => cs.voters.push(r.replica_id.0),
            ReplicaRole::Learner {} => cs.learners.push(r.replica_id.0),
        }
    }
    cs
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft::eraftpb::HardState;

    fn peer() -> Peer {
        let desc = RangeDescriptor {
            id: net::RangeId(7),
            start: bytes::Bytes::new(),
            end: bytes::Bytes::new(),
            epoch: net::Epoch::default(),
            replicas: Vec::new(),
            leader: None,
        };
        let cache = RaftLogCache::new(HardState::default(), ConfState::default(), 0, 0);
        let cfg = raft::Config {
            id: 1,
            ..raft::Config::default()
        };
        let logger = slog::Logger::root(slog::Discard, slog::o!());
        let node = RawNode::new(&cfg, cache, &logger).expect("a valid raft config");
        let now = Instant::now();
        Peer::new(
            desc,
            net::ReplicaId(1),
            node,
            true,
            Duration::from_secs(1),
            now,
        )
    }

    #[test]
    fn a_stopped_range_answers_its_waiting_proposals_with_why_it_stopped() {
        let mut p = peer();
        let (tx, mut rx) = oneshot::channel();
        let at = Instant::now();
        let w = Pending {
            term: 1,
            tx,
            at,
            charge: None,
        };
        p.add_pending(6, w);
        assert!(!p.is_stopped());
        p.stop("range 7 stopped at entry 6: broken".into());
        assert!(p.is_stopped());
        assert_eq!(p.stopped(), Some("range 7 stopped at entry 6: broken"));
        assert_eq!(p.pending_count(), 0);
        match rx.try_recv() {
            Ok(Some(KvResponse::Err {
                error: net::RpcError::Internal { code, message },
            })) => {
                assert_eq!(code, RANGE_STOPPED);
                assert_eq!(message, "range 7 stopped at entry 6: broken");
            }
            other => panic!("the waiting proposer got {other:?}"),
        }
    }
}
