//! Forged Raft traffic sent straight to a DS node's shard ports (issue 21 item 5): nothing a
//! stray peer sends may crash the node, change a range or create replicas.
//!
//! The node has two shards holding replicas 1 and 2 of range 1; replica 3 is configured on a
//! store that does not exist, so replicas 1 and 2 elect a leader between them and the forged
//! messages can name a real member (3) as their sender. Before validation, the first
//! message below (a heartbeat committing index 10^12) made raft-rs panic and the process
//! abort.
#![allow(clippy::unwrap_used)]
// Test threads drive the node from outside its shards: blocking calls are fine here.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

#[path = "common/mode.rs"]
mod mode;

use std::time::Duration;

use bytes::Bytes;
use ds_node::config::InitialReplica;
use ds_node::server::ShardMetrics;
use ds_node::{DsConfig, NodeHandle, run};
use net::glommio_transport::Client;
use net::message::handshake::{Hello, Role};
use net::message::kv::{Cond, Expiry, KvOp, KvRequest, KvResponse, OpResult};
use net::message::{RaftBatch, RaftEnvelope, RouteCtx};
use net::transport::TransportConfig;
use net::{ClusterId, Epoch, Message, NodeId, RangeId, ReplicaId, RpcError, ShardId, StoreId};
use raft::eraftpb::{Entry, Message as RaftMsg, MessageType};

fn cfg(dir: &std::path::Path, replicas: u64) -> DsConfig {
    DsConfig {
        checkpoint_mode: mode::test_checkpoint_mode(),
        data_dir: dir.to_path_buf(),
        shards: 2,
        pin: false,
        base_port: 0,
        log_file_bytes: 64 << 20,
        segment_bytes: 4 << 20,
        zero_log_file: false,
        tick_ms: 10,
        io_memory_bytes: 1 << 20,
        admin_addr: Some("127.0.0.1:0".into()),
        initial_replicas: if replicas == 1 {
            Vec::new()
        } else {
            vec![
                InitialReplica {
                    replica_id: 1,
                    store_id: 1,
                    shard_id: 0,
                },
                InitialReplica {
                    replica_id: 2,
                    store_id: 1,
                    shard_id: 1,
                },
                InitialReplica {
                    replica_id: 3,
                    store_id: 99,
                    shard_id: 0,
                },
            ]
        },
        ..DsConfig::default()
    }
}

fn ctx() -> RouteCtx {
    RouteCtx {
        range_id: RangeId(1),
        epoch: Epoch {
            conf_ver: 1,
            version: 1,
        },
    }
}

fn set(k: &str, v: &str) -> KvOp {
    KvOp::StrSet {
        key: Bytes::from(k.to_string()),
        value: Bytes::from(v.to_string()),
        expiry: Expiry::Persist {},
        cond: Cond::Always {},
        get_old: false,
    }
}

fn get(k: &str) -> KvOp {
    KvOp::StrGet {
        key: Bytes::from(k.to_string()),
    }
}

/// Runs `f` with a client of each shard of `node` on a temporary glommio executor.
fn with_clients<T: Send + 'static>(
    addrs: Vec<String>,
    f: impl FnOnce(Vec<Client>) -> std::pin::Pin<Box<dyn std::future::Future<Output = T>>>
    + Send
    + 'static,
) -> T {
    glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .io_memory(512 << 10)
        .spawn(move || async move {
            let mut cs = Vec::new();
            for a in addrs {
                let hello = Hello::new(Role::Client {}, ClusterId(0), NodeId(0));
                cs.push(
                    Client::connect(&a, hello, TransportConfig::default())
                        .await
                        .unwrap(),
                );
            }
            f(cs).await
        })
        .unwrap()
        .join()
        .unwrap()
}

/// Sends `op` to whichever shard leads range 1 (retrying while there is no leader).
async fn must_call(cs: &[Client], op: KvOp) -> KvResponse {
    for _ in 0..500 {
        for c in cs {
            let r = c
                .call(Message::KvRequest(KvRequest {
                    ctx: ctx(),
                    op: op.clone(),
                }))
                .await
                .unwrap();
            match r {
                Message::KvResponse(KvResponse::Err {
                    error: RpcError::NotLeader { .. },
                }) => {}
                Message::KvResponse(r) => return r,
                other => panic!("unexpected {other:?}"),
            }
        }
        glommio::timer::sleep(Duration::from_millis(10)).await;
    }
    panic!("no leader");
}

fn value(r: KvResponse) -> Option<Bytes> {
    match r {
        KvResponse::Ok {
            result: OpResult::Value { value },
        } => value,
        other => panic!("unexpected {other:?}"),
    }
}

fn raft(t: MessageType, from: u64, to: u64, term: u64) -> RaftMsg {
    let mut m = RaftMsg::default();
    m.set_msg_type(t);
    m.from = from;
    m.to = to;
    m.term = term;
    m
}

fn batch(range: u64, msgs: Vec<RaftMsg>) -> Message {
    Message::RaftBatch(RaftBatch {
        from_store: StoreId(99),
        from_shard: ShardId(0),
        messages: msgs
            .into_iter()
            .map(|m| RaftEnvelope {
                range_id: RangeId(range),
                from_replica: ReplicaId(m.from),
                to_replica: ReplicaId(m.to),
                message: protobuf::Message::write_to_bytes(&m).unwrap().into(),
            })
            .collect(),
    })
}

fn entry(index: u64, term: u64) -> Entry {
    Entry {
        index,
        term,
        data: b"forged".to_vec().into(),
        ..Entry::default()
    }
}

/// The hostile messages, for replica `to` of range 1 (sender: member 3 unless noted).
fn hostile(to: u64) -> Vec<RaftMsg> {
    let mut out = Vec::new();
    // The message: a heartbeat committing 10^12 (raft-rs `commit_to` panicked).
    let mut m = raft(MessageType::MsgHeartbeat, 3, to, 1000);
    m.commit = 1_000_000_000_000;
    out.push(m);
    // An append whose entries jump past its index (raft-rs sliced out of bounds).
    let mut m = raft(MessageType::MsgAppend, 3, to, 1000);
    m.index = 5;
    m.log_term = 5;
    m.commit = 1_000_000_000_000;
    m.entries = vec![entry(40, 1000)].into();
    out.push(m);
    // An empty proposal (raft-rs: "stepped empty MsgProp") and a forged one (an injected write).
    out.push(raft(MessageType::MsgPropose, 3, to, 0));
    let mut m = raft(MessageType::MsgPropose, 3, to, 0);
    m.entries = vec![entry(0, 0)].into();
    out.push(m);
    // A read-index request without its context entry (leader: `entries[0]`).
    out.push(raft(MessageType::MsgReadIndex, 3, to, 1));
    // A sender outside the configuration, a message for another replica, a term near
    // u64::MAX, an acknowledgement of entries the leader never had.
    out.push(raft(MessageType::MsgHeartbeat, 9, to, 1000));
    out.push(raft(MessageType::MsgHeartbeat, 3, 7, 1000));
    out.push(raft(MessageType::MsgRequestVote, 3, to, u64::MAX));
    let mut m = raft(MessageType::MsgAppendResponse, 3, to, 1);
    m.index = u64::MAX - 1;
    out.push(m);
    out
}

fn wait_metrics(node: &NodeHandle, ok: impl Fn(&ShardMetrics) -> bool) -> ShardMetrics {
    // The shards publish their figures about every 200 ms.
    let mut m = node.metrics();
    for _ in 0..100 {
        if ok(&m) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        m = node.metrics();
    }
    m
}

/// Every hostile message is refused and counted; the range keeps its data and its leader
/// keeps serving writes and reads on both shards' ports.
#[test]
fn forged_raft_messages_are_refused_and_the_node_keeps_serving() {
    let dir = std::env::temp_dir().join(format!("ds-hostile-raft-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let node = run(cfg(&dir, 3)).unwrap();
    let sent = 2 * hostile(1).len() as u64;
    with_clients(node.shard_addrs.clone(), |cs| {
        Box::pin(async move {
            assert!(matches!(
                must_call(&cs, set("a", "1")).await,
                KvResponse::Ok { .. }
            ));
            for (i, c) in cs.iter().enumerate() {
                let to = i as u64 + 1;
                for m in hostile(to) {
                    // One message per batch: a refusal must not hide the next message.
                    c.send(batch(1, vec![m])).await.unwrap();
                }
            }
            for i in 0..50 {
                let r = must_call(&cs, set(&format!("k{i}"), "v")).await;
                assert!(matches!(r, KvResponse::Ok { .. }), "{r:?}");
            }
            assert_eq!(
                value(must_call(&cs, get("a")).await),
                Some(Bytes::from("1"))
            );
        })
    });
    let m = wait_metrics(&node, |m| m.raft_refused_total.iter().sum::<u64>() >= sent);
    assert_eq!(
        m.raft_refused_total.iter().sum::<u64>(),
        sent,
        "{:?}",
        m.raft_refused_total
    );
    assert_eq!(m.replicas_created_total, 0);
    node.shutdown().unwrap();
    // And the data directory still opens with everything written.
    let node = run(cfg(&dir, 3)).unwrap();
    with_clients(node.shard_addrs.clone(), |cs| {
        Box::pin(async move {
            assert_eq!(
                value(must_call(&cs, get("k49")).await),
                Some(Bytes::from("v"))
            );
        })
    });
    node.shutdown().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

/// 5,000 leader heartbeats, each for a different range this node does not have (the issue
/// saw 5,000 empty replicas created): none is created, each is counted, and the node serves.
#[test]
fn heartbeats_for_unknown_ranges_create_no_replicas() {
    let dir = std::env::temp_dir().join(format!("ds-hostile-ranges-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let node = run(cfg(&dir, 1)).unwrap();
    with_clients(vec![node.shard_addrs[0].clone()], |cs| {
        Box::pin(async move {
            for chunk in 0..50u64 {
                let msgs: Vec<(u64, RaftMsg)> = (0..100u64)
                    .map(|i| {
                        let range = 1000 + chunk * 100 + i;
                        (range, raft(MessageType::MsgHeartbeat, 2, 1, 5))
                    })
                    .collect();
                let b = RaftBatch {
                    from_store: StoreId(99),
                    from_shard: ShardId(0),
                    messages: msgs
                        .into_iter()
                        .map(|(range, m)| RaftEnvelope {
                            range_id: RangeId(range),
                            from_replica: ReplicaId(m.from),
                            to_replica: ReplicaId(m.to),
                            message: protobuf::Message::write_to_bytes(&m).unwrap().into(),
                        })
                        .collect(),
                };
                cs[0].send(Message::RaftBatch(b)).await.unwrap();
            }
            assert!(matches!(
                must_call(&cs, set("a", "1")).await,
                KvResponse::Ok { .. }
            ));
        })
    });
    let unknown = ds_node::server::validate::Refusal::UnknownRange.index();
    let m = wait_metrics(&node, |m| m.raft_refused_total[unknown] >= 5000);
    assert_eq!(m.raft_refused_total[unknown], 5000);
    assert_eq!(m.replicas_created_total, 0);
    node.shutdown().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
