//! Shared routing structures (`docs/format/wire.md` §4.1).

use bytes::Bytes;

use crate::codec::{wire_enum, wire_struct};
use crate::ids::{Epoch, RangeId, ReplicaId, ShardId, StoreId};

/// What a request was routed with: the range and the epoch the sender believes current.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct RouteCtx {
    /// The range the sender believes holds the key.
    pub range_id: RangeId,
    /// The epoch of that range in the sender's route cache.
    pub epoch: Epoch,
}
wire_struct!(RouteCtx { range_id, epoch });

/// A replica's role in its Raft group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum ReplicaRole {
    /// Votes and counts for the quorum.
    Voter {},
    /// Receives the log but does not vote (a replica catching up).
    Learner {},
}
wire_enum!(ReplicaRole: u8, "replica role" { 0 => Voter {}, 1 => Learner {} });

/// One replica of a range and where it lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct Replica {
    /// Raft peer id.
    pub replica_id: ReplicaId,
    /// The storage node.
    pub store_id: StoreId,
    /// The shard (core) of that node.
    pub shard_id: ShardId,
    /// Voter or learner.
    pub role: ReplicaRole,
}
wire_struct!(Replica {
    replica_id,
    store_id,
    shard_id,
    role
});

/// A range: its key interval, epoch, replicas and last known leader.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct RangeDescriptor {
    /// The range id.
    pub id: RangeId,
    /// First key of the range (inclusive).
    #[cfg_attr(test, proptest(strategy = "crate::arb::bytes()"))]
    pub start: Bytes,
    /// End of the range (exclusive); empty means +∞.
    #[cfg_attr(test, proptest(strategy = "crate::arb::bytes()"))]
    pub end: Bytes,
    /// The range's epoch.
    pub epoch: Epoch,
    /// Its replicas.
    #[cfg_attr(test, proptest(strategy = "crate::arb::small_vec()"))]
    pub replicas: Vec<Replica>,
    /// The last known leader, if any.
    pub leader: Option<ReplicaId>,
}
wire_struct!(RangeDescriptor {
    id,
    start: key,
    end: key,
    epoch,
    replicas,
    leader
});

impl RangeDescriptor {
    /// Whether `key` falls in `[start, end)`.
    pub fn contains(&self, key: &[u8]) -> bool {
        key >= &self.start[..] && (self.end.is_empty() || key < &self.end[..])
    }
}

/// Where the leader of a range is believed to be.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct LeaderHint {
    /// The leader replica.
    pub replica: Replica,
    /// `host:port` of the shard that holds it.
    pub addr: String,
}
wire_struct!(LeaderHint { replica, addr });

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_end_means_unbounded() {
        let r = RangeDescriptor {
            id: RangeId(1),
            start: Bytes::from_static(b"b"),
            end: Bytes::new(),
            epoch: Epoch::default(),
            replicas: vec![],
            leader: None,
        };
        assert!(!r.contains(b"a"));
        assert!(r.contains(b"b"));
        assert!(r.contains(&[0xff; 100]));
    }
}
