//! RPCs to the master (`docs/format/wire.md` §4.5).

use bytes::Bytes;

use crate::codec::{wire_enum, wire_struct};
use crate::ids::{ClusterId, Epoch, ProxyId, RangeId, ReplicaId, ShardId, StoreId, Timestamp};
use crate::route::RangeDescriptor;

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
    /// Split the range at a key; an empty `split_key` asks the leader to pick one (the
    /// approximate middle, on a user-key boundary). `new_replica_ids` has one id per replica, in
    /// the order of the range's replica list.
    Split {
        #[cfg_attr(test, proptest(strategy = "crate::arb::bytes()"))]
        split_key: Bytes,
        new_range_id: RangeId,
        #[cfg_attr(test, proptest(strategy = "crate::arb::small_vec()"))]
        new_replica_ids: Vec<ReplicaId>,
    },
    /// Merge the right neighbour `right` (the master's descriptor of it) into this range
    /// (version 8); the replicas of both must sit pairwise on the same (store, shard).
    Merge { right: RangeDescriptor },
}
wire_enum!(Operator: u8, "operator" {
    0 => AddLearner { store, shard, replica_id },
    1 => PromoteLearner { replica_id },
    2 => RemoveReplica { replica_id },
    3 => TransferLeader { to_replica },
    4 => Split { split_key: key, new_range_id, new_replica_ids },
    5 => Merge { right },
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

/// Register a storage node (or update its addresses and labels). A `store_id` of 0 asks the
/// master to allocate one.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct StoreRegister {
    /// Identity, addresses and labels (`store_id` 0: allocate one).
    pub store: StoreInfo,
    /// Memory the store may use for values, bytes (0: the cluster default `maxmemory`).
    pub mem_capacity: u64,
    /// Disk the store may use, bytes (0: the cluster default `maxdisksize`).
    pub disk_capacity: u64,
}
wire_struct!(StoreRegister {
    store,
    mem_capacity,
    disk_capacity
});

/// The master's answer to [`StoreRegister`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct StoreRegisterResp {
    /// The cluster the store now belongs to.
    pub cluster_id: ClusterId,
    /// The store's id (allocated if the request carried 0).
    pub store_id: StoreId,
    /// Whether the cluster has its first range already.
    pub bootstrapped: bool,
}
wire_struct!(StoreRegisterResp {
    cluster_id,
    store_id,
    bootstrapped
});

/// Create the first range, covering the whole keyspace, with one voter on `store`/`shard`.
/// Idempotent: a cluster that is already bootstrapped answers with its current first range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct Bootstrap {
    /// A registered store.
    pub store_id: StoreId,
    /// The shard that asks (the master checks that the store has it). The first ranges go
    /// one to each shard of the store, whichever shard asks.
    pub shard_id: ShardId,
}
wire_struct!(Bootstrap { store_id, shard_id });

/// The master's answer to [`Bootstrap`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct BootstrapResp {
    /// The cluster.
    pub cluster_id: ClusterId,
    /// The first ranges that are still as the bootstrap made them (epoch `(1, 1)`), in key
    /// order: all of them when this request created them. Each store shard named in one
    /// creates it if it does not have it.
    pub ranges: Vec<RangeDescriptor>,
    /// Whether this request created them (false: the cluster was already bootstrapped).
    pub created: bool,
}
wire_struct!(BootstrapResp {
    cluster_id,
    ranges,
    created
});

/// Ask for the whole route table unless the caller's copy (`known_version`) is current.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct GetRouteTable {
    /// The version the caller holds (0: none).
    pub known_version: u64,
}
wire_struct!(GetRouteTable { known_version });

/// Longest a [`WatchRouteTable`] waits; below the transport's default request timeout (5 s),
/// so that a watch never looks like a lost call.
pub const ROUTE_WATCH_MAX_WAIT_MS: u32 = 4_000;

/// Ask for the whole route table as soon as its version differs from `known_version`, waiting
/// up to `wait_ms` (capped at [`ROUTE_WATCH_MAX_WAIT_MS`]) for a change: a long poll by which
/// the master pushes routing changes (splits, leader moves, replicas replaced) to proxies.
/// The answer is a [`RouteTable`], `unchanged` when the wait ended without a change.
/// Protocol version 4.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct WatchRouteTable {
    /// The version the caller holds; `u64::MAX` (never a version) when it holds none, so that
    /// the answer comes at once even from a master still at version 0.
    pub known_version: u64,
    /// How long to wait for a change, in milliseconds.
    pub wait_ms: u32,
}
wire_struct!(WatchRouteTable {
    known_version,
    wait_ms
});

/// The route table: every range and every store, at one version.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct RouteTable {
    /// The version; it grows with every change of a range or a store address.
    pub route_version: u64,
    /// True when `known_version` was current: `ranges` and `stores` are then empty.
    pub unchanged: bool,
    /// Every range, ordered by start key.
    #[cfg_attr(test, proptest(strategy = "crate::arb::small_vec()"))]
    pub ranges: Vec<RangeDescriptor>,
    /// Every store, with its shard addresses.
    #[cfg_attr(test, proptest(strategy = "crate::arb::small_vec()"))]
    pub stores: Vec<StoreInfo>,
}
wire_struct!(RouteTable {
    route_version,
    unchanged,
    ranges,
    stores
});

/// A range leader asks for the ids of a split at `split_key`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct SplitRequest {
    /// The range to split.
    pub range_id: RangeId,
    /// Its epoch as the leader knows it; a stale epoch is refused.
    pub epoch: Epoch,
    /// The first key of the new right-hand range; strictly inside the range.
    #[cfg_attr(test, proptest(strategy = "crate::arb::bytes()"))]
    pub split_key: Bytes,
}
wire_struct!(SplitRequest {
    range_id,
    epoch,
    split_key: key
});

/// The ids of a split: the new range and one new replica id per replica of the old range, in
/// the order of its replica list.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct SplitIds {
    /// The id of the new right-hand range.
    pub new_range_id: RangeId,
    /// Replica ids of the new range.
    #[cfg_attr(test, proptest(strategy = "crate::arb::small_vec()"))]
    pub new_replica_ids: Vec<ReplicaId>,
}
wire_struct!(SplitIds {
    new_range_id,
    new_replica_ids
});

/// A range leader reports a split it applied: the old range shrank to `left`, `right` is new.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct SplitReport {
    /// The old range after the split (same id, newer epoch).
    pub left: RangeDescriptor,
    /// The new range.
    pub right: RangeDescriptor,
}
wire_struct!(SplitReport { left, right });

/// The master's answer to [`SplitReport`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct SplitReportResp {
    /// The route table version after recording the split.
    pub route_version: u64,
}
wire_struct!(SplitReportResp { route_version });

/// A left range's leader reports a merge it applied (version 8): `left` grew over `right`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct MergeReport {
    /// The left range after the merge (same id, newer epoch, `end` = the right's end).
    pub left: RangeDescriptor,
    /// The right range as it was frozen (gone after the merge).
    pub right: RangeDescriptor,
}
wire_struct!(MergeReport { left, right });

/// The master's answer to [`MergeReport`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct MergeReportResp {
    /// The route table version after recording the merge.
    pub route_version: u64,
}
wire_struct!(MergeReportResp { route_version });

/// Load of one shard and of the ranges it leads, measured over the shard's last heartbeat
/// interval (rates are per second; protocol version 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[allow(missing_docs)] // self-describing counters (bytes, operations per second)
pub struct ShardLoad {
    pub ranges: u32,
    pub leaders: u32,
    pub read_ops_per_sec: u64,
    pub write_ops_per_sec: u64,
    pub read_bytes_per_sec: u64,
    pub write_bytes_per_sec: u64,
    pub keys: u64,
    pub size_bytes: u64,
    pub mem_used: u64,
    pub disk_used: u64,
}
wire_struct!(ShardLoad {
    ranges,
    leaders,
    read_ops_per_sec,
    write_ops_per_sec,
    read_bytes_per_sec,
    write_bytes_per_sec,
    keys,
    size_bytes,
    mem_used,
    disk_used
});

/// Periodic report of one shard of a storage node (every shard sends its own; protocol
/// version 3). Answered with [`StoreHeartbeatResp`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct ShardHeartbeat {
    /// The node.
    pub store_id: StoreId,
    /// The shard.
    pub shard_id: ShardId,
    /// Its load.
    pub load: ShardLoad,
}
wire_struct!(ShardHeartbeat {
    store_id,
    shard_id,
    load
});

/// Whether one probe reached one DS shard in its last round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct ProbeResult {
    /// The node.
    pub store_id: StoreId,
    /// The shard pinged.
    pub shard_id: ShardId,
    /// Whether a `Pong` came back within the probe's deadline.
    pub reachable: bool,
    /// Round-trip time of the ping, µs (0 when unreachable).
    pub rtt_us: u64,
}
wire_struct!(ProbeResult {
    store_id,
    shard_id,
    reachable,
    rtt_us
});

/// One probe's round: every DS shard it pinged (protocol version 3).
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct ProbeReport {
    /// The probe's name, stable across its rounds (at most 64 bytes).
    pub probe: String,
    /// The probe's zone label (at most 64 bytes).
    pub zone: String,
    /// Round-trip time of the probe's last ping of the master, µs.
    pub master_rtt_us: u64,
    /// One result per DS shard (at most 4,096).
    #[cfg_attr(test, proptest(strategy = "crate::arb::small_vec()"))]
    pub results: Vec<ProbeResult>,
}
wire_struct!(ProbeReport {
    probe,
    zone,
    master_rtt_us,
    results
});

/// The master's answer to [`ProbeReport`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct ProbeReportResp {
    /// Current version of the route table (a probe refreshes its targets when it moved).
    pub route_version: u64,
}
wire_struct!(ProbeReportResp { route_version });

/// Shortest time-to-live the master grants a proxy registration, ms.
pub const PROXY_TTL_MIN_MS: u32 = 1_000;
/// Longest time-to-live the master grants a proxy registration, ms.
pub const PROXY_TTL_MAX_MS: u32 = 60_000;
/// Longest mesh address a proxy may register, bytes.
pub const PROXY_ADDR_MAX_BYTES: usize = 256;
/// Proxies the master's directory holds at most.
pub const PROXIES_MAX: usize = 1_024;

/// A proxy registers (or renews) its mesh listener with the master's in-memory directory
/// (protocol version 5). The answer is [`ProxyPeers`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct ProxyRegister {
    /// The proxy, chosen at random when it starts (never 0).
    pub proxy_id: ProxyId,
    /// The `host:port` other proxies reach its mesh listener on (at most
    /// [`PROXY_ADDR_MAX_BYTES`]).
    pub peer_addr: String,
    /// How long the registration should live without renewal, ms (clamped to
    /// [`PROXY_TTL_MIN_MS`]`..=`[`PROXY_TTL_MAX_MS`]).
    pub ttl_ms: u32,
}
wire_struct!(ProxyRegister {
    proxy_id,
    peer_addr,
    ttl_ms
});

/// One live proxy of the directory.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct ProxyPeer {
    /// The proxy.
    pub proxy_id: ProxyId,
    /// Its mesh listener.
    pub peer_addr: String,
}
wire_struct!(ProxyPeer {
    proxy_id,
    peer_addr
});

/// The master's answer to [`ProxyRegister`]: the TTL granted and every other live proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct ProxyPeers {
    /// The time-to-live granted, ms: renew well before it passes.
    pub ttl_ms: u32,
    /// The live proxies other than the caller (at most [`PROXIES_MAX`]).
    #[cfg_attr(test, proptest(strategy = "crate::arb::small_vec()"))]
    pub peers: Vec<ProxyPeer>,
}
wire_struct!(ProxyPeers { ttl_ms, peers });
