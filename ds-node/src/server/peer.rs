//! One range on this shard: its descriptor, Raft group and the requests waiting on it.
//! Part of the shard state (a leaf: imports no `server` module but `transfers`, `lease` and
//! `throttle_state`).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures_channel::oneshot;
use net::message::kv::{KvOp, KvResponse};
use net::message::{RangeDescriptor, ReplicaRole};
use raft::eraftpb::ConfState;
use raft::{RawNode, StateRole};

use super::lease::Lease;
use super::throttle_state::Charge;
use crate::range::storage::RaftLogCache;

/// How long a request may wait for its proposal or read before it is answered `Timeout`.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// `RpcError::Internal` code of a request to a stopped range ([`Peer::stopped`]).
pub const RANGE_STOPPED: u32 = 3;

/// Where a request's answer goes.
pub type Waiter = oneshot::Sender<KvResponse>;

/// A proposal waiting for its entry to apply.
#[derive(Debug)]
pub struct Pending {
    /// The term the entry was proposed in (another term at that index: it was dropped).
    pub term: u64,
    /// The answer.
    pub tx: Waiter,
    /// When it was proposed.
    pub at: Instant,
    /// Its bytes counted as memory to come (`server::throttle`), for a write that may add
    /// data; released when this is dropped.
    pub charge: Option<Charge>,
}

/// A read waiting for its ReadIndex (and then for apply to reach it).
#[derive(Debug)]
pub struct WaitingRead {
    /// The operation.
    pub op: KvOp,
    /// The answer.
    pub tx: Waiter,
    /// The read index once known.
    pub index: Option<u64>,
    /// When it arrived.
    pub at: Instant,
}

/// A range replica hosted by this shard.
pub struct Peer {
    /// The range descriptor (replicas = the Raft configuration).
    pub desc: RangeDescriptor,
    /// This replica's Raft id.
    pub replica_id: u64,
    /// The Raft group.
    pub node: RawNode<RaftLogCache>,
    /// Proposals by log index.
    pub pending: BTreeMap<u64, Pending>,
    /// Reads by ReadIndex context.
    pub reads: BTreeMap<u64, WaitingRead>,
    /// Next ReadIndex context.
    pub next_read: u64,
    /// The role after the last ready (to count leader changes).
    pub last_role: StateRole,
    /// Where the next TTL sweep starts (empty: the range's start).
    pub sweep_cursor: bytes::Bytes,
    /// Log index of the last sweep proposed; no new sweep until it applied.
    pub sweep_in_flight: u64,
    /// False for a replica created for a leader's message that has not installed its first
    /// snapshot yet: it has no key range and serves nothing.
    pub initialized: bool,
    /// A snapshot stepped into raft-rs, to install when raft-rs hands it back in a ready.
    pub snapshot_in: Option<super::transfers::Received>,
    /// When this replica was created (to give up on a replica that never initializes).
    pub created: Instant,
    /// Approximate (key + value bytes, keys) of the range: exact at its last checkpoint or
    /// snapshot, then moved by every applied entry (reported to the master for splits).
    pub approx_size: (i64, i64),
    /// Keys and keys with an expiry per database (`DBSIZE`, `INFO keyspace`): exact, kept by
    /// every applied write and sweep, rebuilt when the range is loaded (`range::db_keys`).
    pub db_keys: crate::range::db_keys::DbKeys,
    /// When this leader last proposed a split (the master repeats its operator until the
    /// split shows in a heartbeat).
    pub split_proposed_at: Option<Instant>,
    /// Why the range stopped: applying a committed entry broke an engine invariant. A
    /// stopped replica applies, steps and checkpoints nothing more and answers every request
    /// with an error; the shard's other ranges go on. Recovery stops it again at the same
    /// entry (deterministic), so a restart never crash-loops.
    pub stopped: Option<String>,
    /// The read lease while this replica leads ([`Lease`]).
    pub lease: Lease,
    /// A leader transfer was started and may still be running: acknowledgements renew
    /// nothing until it is seen over ([`Peer::extend_lease`]).
    pub transferring: bool,
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
    /// Moves the range's approximate size by `d`, what an applied entry's writes returned.
    pub fn add_size(&mut self, d: crate::range::store::SizeDelta) {
        self.approx_size.0 += d.bytes;
        self.approx_size.1 += d.keys;
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
    pub fn transfer_leader(&mut self, to: u64, now: Instant) {
        self.lease.fence(now);
        self.transferring = true;
        self.node.transfer_leader(to);
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
