//! Raft traffic between DS nodes (`docs/format/wire.md` §4.4). Raft messages travel as opaque
//! bytes (raft-rs `eraftpb::Message` in protobuf); `net` never parses them.

use bytes::Bytes;

use crate::codec::wire_struct;
use crate::ids::{RangeId, ReplicaId, ShardId, StoreId};

/// One Raft message of one range.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct RaftEnvelope {
    /// The range (Raft group).
    pub range_id: RangeId,
    /// Sending replica.
    pub from_replica: ReplicaId,
    /// Receiving replica.
    pub to_replica: ReplicaId,
    /// The encoded raft-rs message.
    #[cfg_attr(test, proptest(strategy = "crate::arb::bytes()"))]
    pub message: Bytes,
}
wire_struct!(RaftEnvelope {
    range_id,
    from_replica,
    to_replica,
    message
});

/// All Raft messages from one shard to one peer node in one ready-loop turn. One-way.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct RaftBatch {
    /// The sending node.
    pub from_store: StoreId,
    /// The sending shard of that node (where replies to its replicas go, even before the
    /// receiver knows the range's replicas).
    pub from_shard: ShardId,
    /// The messages.
    #[cfg_attr(test, proptest(strategy = "crate::arb::small_vec()"))]
    pub messages: Vec<RaftEnvelope>,
}
wire_struct!(RaftBatch {
    from_store,
    from_shard,
    messages
});

/// One chunk of a range snapshot sent to a replica that is too far behind.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct SnapshotChunk {
    /// The range.
    pub range_id: RangeId,
    /// The receiving replica.
    pub to_replica: ReplicaId,
    /// Identifies the snapshot transfer.
    pub snapshot_id: u64,
    /// Chunk sequence number, from 0.
    pub seq: u32,
    /// Whether this is the last chunk.
    pub last: bool,
    /// The chunk's bytes.
    #[cfg_attr(test, proptest(strategy = "crate::arb::bytes()"))]
    pub data: Bytes,
}
wire_struct!(SnapshotChunk {
    range_id,
    to_replica,
    snapshot_id,
    seq,
    last,
    data
});

/// Acknowledges one snapshot chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct SnapshotAck {
    /// The range.
    pub range_id: RangeId,
    /// The snapshot transfer.
    pub snapshot_id: u64,
    /// The chunk acknowledged.
    pub seq: u32,
    /// False: the receiver refused the snapshot; the sender stops.
    pub accepted: bool,
}
wire_struct!(SnapshotAck {
    range_id,
    snapshot_id,
    seq,
    accepted
});
