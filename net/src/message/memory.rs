//! The cluster-wide `maxmemory` and the stores' memory figures (protocol version 6,
//! `docs/format/wire.md` §4.5 "Memory").

use bytes::BytesMut;

use crate::codec::{DecodeError, Reader, Wire, wire_struct};
use crate::ids::{ShardId, StoreId};

/// A proxy sets the `maxmemory` of every DS node (`CONFIG SET maxmemory`). The master logs it
/// before it answers with [`ClusterMemory`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct SetMaxMemory {
    /// Per DS node, bytes; 0: no limit.
    pub maxmemory_bytes: u64,
}
wire_struct!(SetMaxMemory { maxmemory_bytes });

/// A proxy asks for the cluster's memory setting and figures; the answer is
/// [`ClusterMemory`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct GetClusterMemory {}
impl Wire for GetClusterMemory {
    fn encode(&self, _buf: &mut BytesMut) {}
    fn decode(_r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(Self {})
    }
}

/// The cluster's `maxmemory` and the latest memory figures of its shards (sums over every
/// shard of every store that is not a tombstone; every replica counts).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct ClusterMemory {
    /// The setting every node applies (none: each node keeps its own), bytes (0: no limit).
    pub maxmemory_override: Option<u64>,
    /// The override, or without one the largest `maxmemory` a store registered with.
    pub node_maxmemory: u64,
    /// The sum of the budgets the shards apply now, bytes.
    pub maxmemory_total: u64,
    /// Accounted memory of the shards' engines, bytes.
    pub used_bytes: u64,
    /// Value bytes held in memory.
    pub hot_value_bytes: u64,
    /// Value bytes held only on the device.
    pub cold_value_bytes: u64,
    /// Keys of the shards' replicas.
    pub keys: u64,
    /// Stores counted.
    pub stores: u32,
    /// Shards whose report was counted.
    pub shards: u32,
}
wire_struct!(ClusterMemory {
    maxmemory_override,
    node_maxmemory,
    maxmemory_total,
    used_bytes,
    hot_value_bytes,
    cold_value_bytes,
    keys,
    stores,
    shards
});

/// A DS shard's memory report, sent each heartbeat interval; the answer is
/// [`MemorySetting`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct ShardMemory {
    /// The store.
    pub store_id: StoreId,
    /// The shard of it.
    pub shard_id: ShardId,
    /// Its budget as applied now, bytes (0: no limit).
    pub budget_bytes: u64,
    /// Its engine's accounted memory, bytes.
    pub used_bytes: u64,
    /// Value bytes held in memory.
    pub hot_value_bytes: u64,
    /// Value bytes held only on the device.
    pub cold_value_bytes: u64,
    /// Keys of its replicas.
    pub keys: u64,
}
wire_struct!(ShardMemory {
    store_id,
    shard_id,
    budget_bytes,
    used_bytes,
    hot_value_bytes,
    cold_value_bytes,
    keys
});

/// The master's answer to [`ShardMemory`]: the `maxmemory` the shard's node applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct MemorySetting {
    /// Per node, bytes (0: no limit); none: the node keeps its own setting.
    pub maxmemory: Option<u64>,
}
wire_struct!(MemorySetting { maxmemory });
