//! Three DS nodes in one process serving one range with three voters (a static initial
//! configuration, no master): their configs and a client that follows the leader. Shared by
//! `three_replicas.rs` and `script_kill_replicas.rs`.

use std::time::Duration;

use ds_node::DsConfig;
use ds_node::config::{InitialReplica, PeerStore};
use net::message::RouteCtx;
use net::message::handshake::{Hello, Role};
use net::message::kv::{KvOp, KvRequest, KvResponse};
use net::transport::TransportConfig;
use net::{ClusterId, Epoch, Message, NodeId, RangeId, RpcError};

/// The route of range 1 at its first epoch.
pub fn ctx() -> RouteCtx {
    RouteCtx {
        range_id: RangeId(1),
        epoch: Epoch {
            conf_ver: 1,
            version: 1,
        },
    }
}

/// A port free now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Node `id` (1..=3) of the trio, its data under `root`, `ports` the three shard ports.
pub fn node_cfg(root: &std::path::Path, id: u64, ports: &[u16]) -> DsConfig {
    DsConfig {
        checkpoint_mode: super::single::test_checkpoint_mode(),
        data_dir: root.join(format!("n{id}")),
        shards: 1,
        pin: false,
        store_id: id,
        base_port: ports[id as usize - 1],
        log_file_bytes: 64 << 20,
        segment_bytes: 4 << 20,
        zero_log_file: false,
        tick_ms: 20,
        io_memory_bytes: 1 << 20,
        // A tiny Raft cache: the restarted node lags by more than it, so the leader must
        // fetch older entries from its shard log asynchronously.
        cached_entries: 8,
        initial_replicas: (1..=3)
            .map(|i| InitialReplica {
                replica_id: i,
                store_id: i,
                shard_id: 0,
            })
            .collect(),
        peers: (1..=3)
            .map(|i| PeerStore {
                store_id: i,
                shard_addrs: vec![format!("127.0.0.1:{}", ports[i as usize - 1])],
            })
            .collect(),
        ..DsConfig::default()
    }
}

/// Sends `op` to whichever node leads, following NotLeader hints and retrying; returns the
/// response and the leader's address.
pub async fn must_call(addrs: &[String], op: KvOp) -> (KvResponse, String) {
    let hello = Hello::new(Role::Client {}, ClusterId(0), NodeId(0));
    let cfg = TransportConfig {
        request_timeout: Duration::from_secs(3),
        connect_timeout: Duration::from_millis(300),
        ..TransportConfig::default()
    };
    for round in 0..400 {
        let addr = &addrs[round % addrs.len()];
        let Ok(c) = net::glommio_transport::Client::connect(addr, hello, cfg.clone()).await else {
            continue;
        };
        match c
            .call(Message::KvRequest(KvRequest {
                ctx: ctx(),
                op: op.clone(),
            }))
            .await
        {
            Ok(Message::KvResponse(KvResponse::Err {
                error: RpcError::NotLeader { .. } | RpcError::Timeout {},
            }))
            | Err(_) => glommio::timer::sleep(Duration::from_millis(25)).await,
            Ok(Message::KvResponse(r)) => return (r, addr.clone()),
            Ok(other) => panic!("unexpected {other:?}"),
        }
    }
    panic!("no leader answered");
}
