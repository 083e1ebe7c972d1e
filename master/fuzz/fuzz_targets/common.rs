//! Shared by the master fuzz targets: a small valid command history.

use bytes::Bytes;
use master::state::{ClusterConfig, ClusterState, Command, StoreMeta, StoreState};
use net::message::{RangeDescriptor, Replica, ReplicaRole, StoreInfo};
use net::{ClusterId, Epoch, RangeId, ReplicaId, ShardId, StoreId, Timestamp};

fn store(id: u64) -> StoreMeta {
    StoreMeta {
        info: StoreInfo {
            store_id: StoreId(id),
            addr: format!("h{id}:1"),
            shard_addrs: vec![format!("h{id}:2"), format!("h{id}:3")],
            labels: Vec::new(),
        },
        mem_capacity: 0,
        disk_capacity: 0,
        state: StoreState::Up,
        registered_ms: 0,
    }
}

fn range(id: u64, start: &'static [u8], end: &'static [u8], shard: u32) -> RangeDescriptor {
    RangeDescriptor {
        id: RangeId(id),
        start: Bytes::from_static(start),
        end: Bytes::from_static(end),
        epoch: Epoch {
            conf_ver: 1,
            version: 1,
        },
        replicas: vec![Replica {
            replica_id: ReplicaId(id + 1),
            store_id: StoreId(1),
            shard_id: ShardId(shard),
            role: ReplicaRole::Voter {},
        }],
        leader: Some(ReplicaId(id + 1)),
    }
}

/// Commands that apply in order to an empty state: a cluster with two stores, bootstrapped
/// into two ranges, with ids and timestamps reserved.
pub fn history() -> Vec<Command> {
    vec![
        Command::Init {
            cluster_id: ClusterId(7),
            config: ClusterConfig::default(),
        },
        Command::PutStore { meta: store(1) },
        Command::PutStore { meta: store(2) },
        Command::BootstrapRanges {
            ranges: vec![range(10, b"", b"m", 0), range(20, b"m", b"", 1)],
        },
        Command::ReserveIds { end: 1000 },
        Command::SetTsoLimit {
            limit: Timestamp(77 << 18),
        },
    ]
}

/// The state after the first `n` commands of [`history`].
pub fn state_after(n: usize) -> ClusterState {
    let mut s = ClusterState::default();
    for (i, c) in history().iter().take(n).enumerate() {
        s.apply(i as u64 + 1, c).expect("the history applies");
    }
    s
}
