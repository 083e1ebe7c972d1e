//! Three DS nodes in one process, one range with three voters (static initial
//! configuration, no master): writes replicate through RaftBatch messages over net; stopping
//! the leader's node elects a new leader that still has every acknowledged write; the
//! stopped node restarts from its shard log and catches up (from entries the leader fetches
//! back from its shard log: the Raft cache keeps only 8-16 entries here).
#![allow(clippy::unwrap_used)]
// Test threads drive the node from outside its shards: blocking calls are fine here.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::on_executor;
use ds_node::config::{InitialReplica, PeerStore};
use ds_node::{DsConfig, NodeHandle, run};
use net::message::RouteCtx;
use net::message::handshake::{Hello, Role};
use net::message::kv::{Cond, Expiry, KvOp, KvRequest, KvResponse, OpResult};
use net::transport::TransportConfig;
use net::{ClusterId, Epoch, Message, NodeId, RangeId, RpcError};

fn ctx() -> RouteCtx {
    RouteCtx {
        range_id: RangeId(1),
        epoch: Epoch {
            conf_ver: 1,
            version: 1,
        },
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn node_cfg(root: &std::path::Path, id: u64, ports: &[u16]) -> DsConfig {
    DsConfig {
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
async fn must_call(addrs: &[String], op: KvOp) -> (KvResponse, String) {
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

fn set(k: String) -> KvOp {
    KvOp::StrSet {
        value: Bytes::from(format!("v-{k}")),
        key: Bytes::from(k),
        expiry: Expiry::Persist {},
        cond: Cond::Always {},
        get_old: false,
    }
}

async fn must_read_all(addrs: &[String], n: usize) {
    for i in 0..n {
        let k = format!("k{i}");
        let (r, _) = must_call(
            addrs,
            KvOp::StrGet {
                key: Bytes::from(k.clone()),
            },
        )
        .await;
        match r {
            KvResponse::Ok {
                result: OpResult::Value { value },
            } => assert_eq!(value, Some(Bytes::from(format!("v-{k}"))), "{k}"),
            other => panic!("{k}: {other:?}"),
        }
    }
}

#[test]
fn three_replicas_replicate_fail_over_and_catch_up() {
    let root = std::env::temp_dir().join(format!("ds-three-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let addrs: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    let mut nodes: Vec<Option<NodeHandle>> = (1..=3)
        .map(|i| Some(run(node_cfg(&root, i, &ports)).unwrap()))
        .collect();
    let a = addrs.clone();
    let leader = on_executor(move || {
        Box::pin(async move {
            let mut leader = String::new();
            for i in 0..100 {
                let (r, l) = must_call(&a, set(format!("k{i}"))).await;
                assert!(matches!(r, KvResponse::Ok { .. }), "{r:?}");
                leader = l;
            }
            must_read_all(&a, 100).await;
            leader
        })
    });
    // Stop the leader's node: a new leader must have every acknowledged write.
    let li = addrs.iter().position(|a| *a == leader).unwrap();
    nodes[li].take().unwrap().shutdown().unwrap();
    let a = addrs.clone();
    on_executor(move || {
        Box::pin(async move {
            must_read_all(&a, 100).await;
            for i in 100..150 {
                let (r, _) = must_call(&a, set(format!("k{i}"))).await;
                assert!(matches!(r, KvResponse::Ok { .. }), "{r:?}");
            }
        })
    });
    // Restart it: it recovers from its log and catches up from the new leader.
    nodes[li] = Some(run(node_cfg(&root, li as u64 + 1, &ports)).unwrap());
    let a = addrs.clone();
    on_executor(move || {
        Box::pin(async move {
            must_read_all(&a, 150).await;
        })
    });
    // The restarted node applied the 50 writes it missed (plus what it had not seen
    // committed), and some leader fetched entries back from its shard log.
    let mut applied = Vec::new();
    let mut fetches = 0;
    for _ in 0..100 {
        std::thread::sleep(Duration::from_millis(100));
        applied = nodes
            .iter()
            .flatten()
            .map(|n| n.metrics().applied_total)
            .collect();
        fetches = nodes
            .iter()
            .flatten()
            .map(|n| n.metrics().log_fetches_total)
            .sum::<u64>();
        if applied[li] >= 50 && fetches > 0 {
            break;
        }
    }
    eprintln!("applied per node (since its last start): {applied:?}; log fetches {fetches}");
    assert!(applied[li] >= 50, "restarted node applied {}", applied[li]);
    assert!(fetches > 0, "no entry was fetched back from a shard log");
    for n in nodes.into_iter().flatten() {
        n.shutdown().unwrap();
    }
    let _ = std::fs::remove_dir_all(&root);
}
