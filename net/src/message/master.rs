//! RPCs to the master (`docs/format/wire.md` §4.5).

use bytes::Bytes;

use crate::codec::{wire_enum, wire_struct};
use crate::ids::{ClusterId, RangeId, ReplicaId, ShardId, StoreId, Timestamp};
use crate::message::route::RangeDescriptor;

/// A storage node's identity and addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct StoreInfo {
    /// The node.
    pub store_id: StoreId,
    /// Its node-level address (`host:port`).
    pub addr: String,
    /// The address of each shard, indexed by shard id.
    #[cfg_attr(test, proptest(strategy = "crate::arb::small_vec()"))]
    pub shard_addrs: Vec<String>,
    /// Placement labels such as `zone`, `rack`.
    #[cfg_attr(test, proptest(strategy = "crate::arb::small_vec()"))]
    pub labels: Vec<(String, String)>,
}
wire_struct!(StoreInfo {
    store_id,
    addr,
    shard_addrs,
    labels
});

/// Load of one shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[allow(missing_docs)] // self-describing counters
pub struct ShardStats {
    pub shard_id: ShardId,
    pub ranges: u32,
    pub leaders: u32,
    pub ops_per_sec: u64,
    pub mem_used: u64,
    pub disk_used: u64,
}
wire_struct!(ShardStats {
    shard_id,
    ranges,
    leaders,
    ops_per_sec,
    mem_used,
    disk_used
});

/// Load and capacity of a storage node.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[allow(missing_docs)] // self-describing counters (bytes, operations per second)
pub struct StoreStats {
    pub ops_per_sec: u64,
    pub mem_used: u64,
    pub mem_capacity: u64,
    pub disk_used: u64,
    pub disk_capacity: u64,
    pub net_in_bytes: u64,
    pub net_out_bytes: u64,
    #[cfg_attr(test, proptest(strategy = "crate::arb::small_vec()"))]
    pub shards: Vec<ShardStats>,
}
wire_struct!(StoreStats {
    ops_per_sec,
    mem_used,
    mem_capacity,
    disk_used,
    disk_capacity,
    net_in_bytes,
    net_out_bytes,
    shards
});

/// Periodic report of a storage node.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct StoreHeartbeat {
    /// Who.
    pub store: StoreInfo,
    /// Its load.
    pub stats: StoreStats,
}
wire_struct!(StoreHeartbeat { store, stats });

/// The master's answer to a store heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct StoreHeartbeatResp {
    /// The cluster the store belongs to.
    pub cluster_id: ClusterId,
    /// Current version of the route table.
    pub route_version: u64,
}
wire_struct!(StoreHeartbeatResp {
    cluster_id,
    route_version
});

/// Load of one range, as its leader sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[allow(missing_docs)] // self-describing counters
pub struct RangeStats {
    pub size_bytes: u64,
    pub keys: u64,
    pub read_qps: u64,
    pub write_qps: u64,
    pub read_bytes_per_sec: u64,
    pub write_bytes_per_sec: u64,
}
wire_struct!(RangeStats {
    size_bytes,
    keys,
    read_qps,
    write_qps,
    read_bytes_per_sec,
    write_bytes_per_sec
});

/// Periodic report of a range leader.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct RangeHeartbeat {
    /// The range as the leader knows it.
    pub range: RangeDescriptor,
    /// The leader replica.
    pub leader: ReplicaId,
    /// Its load.
    pub stats: RangeStats,
    /// Replicas still catching up.
    #[cfg_attr(test, proptest(strategy = "crate::arb::small_vec()"))]
    pub pending: Vec<ReplicaId>,
    /// Replicas not heard from.
    #[cfg_attr(test, proptest(strategy = "crate::arb::small_vec()"))]
    pub down: Vec<ReplicaId>,
}
wire_struct!(RangeHeartbeat {
    range,
    leader,
    stats,
    pending,
    down
});

/// Work the master asks a range leader to do.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[allow(missing_docs)] // described in docs/format/wire.md §4.5
pub enum Operator {
    /// Add a replica as a learner.
    AddLearner {
        store: StoreId,
        shard: ShardId,
        replica_id: ReplicaId,
    },
    /// Promote a caught-up learner to voter.
    PromoteLearner { replica_id: ReplicaId },
    /// Remove a replica.
    RemoveReplica { replica_id: ReplicaId },
    /// Hand leadership to another replica.
    TransferLeader { to_replica: ReplicaId },
    /// Split the range at a key.
    Split {
        #[cfg_attr(test, proptest(strategy = "crate::arb::bytes()"))]
        split_key: Bytes,
        new_range_id: RangeId,
        #[cfg_attr(test, proptest(strategy = "crate::arb::small_vec()"))]
        new_replica_ids: Vec<ReplicaId>,
    },
}
wire_enum!(Operator: u8, "operator" {
    0 => AddLearner { store, shard, replica_id },
    1 => PromoteLearner { replica_id },
    2 => RemoveReplica { replica_id },
    3 => TransferLeader { to_replica },
    4 => Split { split_key: key, new_range_id, new_replica_ids },
});

/// The master's answer to a range heartbeat.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct RangeHeartbeatResp {
    /// Work to do, if any.
    pub operator: Option<Operator>,
}
wire_struct!(RangeHeartbeatResp { operator });

/// Which range holds `key`?
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct RouteByKey {
    /// The internal key.
    #[cfg_attr(test, proptest(strategy = "crate::arb::bytes()"))]
    pub key: Bytes,
}
wire_struct!(RouteByKey { key: key });

/// Where is range `range_id`?
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct RouteById {
    /// The range.
    pub range_id: RangeId,
}
wire_struct!(RouteById { range_id });

/// A route: the range (none if unknown) and its leader's shard address.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct Route {
    /// Version of the route table this answer comes from.
    pub route_version: u64,
    /// The range.
    pub range: Option<RangeDescriptor>,
    /// `host:port` of the leader's shard.
    pub leader_addr: Option<String>,
}
wire_struct!(Route {
    route_version,
    range,
    leader_addr
});

/// Allocate `count` cluster-unique ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct AllocIds {
    /// How many.
    pub count: u32,
}
wire_struct!(AllocIds { count });

/// Ids `first .. first + count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct IdBlock {
    /// First id.
    pub first: u64,
    /// How many.
    pub count: u32,
}
wire_struct!(IdBlock { first, count });

/// Ask for `count` timestamps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct TsoRequest {
    /// How many.
    pub count: u32,
}
wire_struct!(TsoRequest { count });

/// Timestamps `first .. first + count`, strictly greater than any served before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct TsoBatch {
    /// First timestamp.
    pub first: Timestamp,
    /// How many.
    pub count: u32,
}
wire_struct!(TsoBatch { first, count });
