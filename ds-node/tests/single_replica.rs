//! A single-replica range end to end over the real stack (glommio shards, uring shard log,
//! raft-rs, net): writes are proposed, committed by the one voter and answered after apply;
//! reads are lease reads; routing errors are returned; a clean restart recovers every write
//! from the shard log.
#![allow(clippy::unwrap_used)]
// Test threads drive the node from outside its shards: blocking calls are fine here.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

#[path = "common/mode.rs"]
mod mode;

use bytes::Bytes;
use ds_node::{DsConfig, run};
use net::message::RouteCtx;
use net::message::handshake::{Hello, Role};
use net::message::kv::{Cond, Expiry, KvOp, KvRequest, KvResponse, OpResult};
use net::transport::TransportConfig;
use net::{ClusterId, Epoch, Message, NodeId, RangeId, RpcError};

fn cfg(dir: &std::path::Path) -> DsConfig {
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

/// Runs `f` with a client of `addr` on a temporary glommio executor.
fn with_client<T: Send + 'static>(
    addr: String,
    f: impl FnOnce(
        net::glommio_transport::Client,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = T>>>
    + Send
    + 'static,
) -> T {
    glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .io_memory(512 << 10)
        .spawn(move || async move {
            let hello = Hello::new(Role::Client {}, ClusterId(0), NodeId(0));
            let c =
                net::glommio_transport::Client::connect(&addr, hello, TransportConfig::default())
                    .await
                    .unwrap();
            f(c).await
        })
        .unwrap()
        .join()
        .unwrap()
}

async fn call(c: &net::glommio_transport::Client, ctx: RouteCtx, op: KvOp) -> KvResponse {
    // A fresh range elects its leader within a few ticks: retry NotLeader briefly.
    for _ in 0..500 {
        match c
            .call(Message::KvRequest(KvRequest {
                ctx,
                op: op.clone(),
            }))
            .await
            .unwrap()
        {
            Message::KvResponse(KvResponse::Err {
                error: RpcError::NotLeader { .. },
            }) => glommio::timer::sleep(std::time::Duration::from_millis(10)).await,
            Message::KvResponse(r) => return r,
            other => panic!("unexpected {other:?}"),
        }
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

#[test]
fn single_replica_writes_reads_routing_errors_and_restart() {
    let dir = std::env::temp_dir().join(format!("ds-single-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let node = run(cfg(&dir)).unwrap();
    let addr = node.shard_addrs[0].clone();
    let other_shard = node.shard_addrs[1].clone();
    with_client(addr.clone(), |c| {
        Box::pin(async move {
            for i in 0..200 {
                let r = call(&c, ctx(), set(&format!("k{i}"), &format!("v{i}"))).await;
                assert!(matches!(r, KvResponse::Ok { .. }), "{r:?}");
            }
            assert_eq!(
                value(call(&c, ctx(), get("k7")).await),
                Some(Bytes::from("v7"))
            );
            assert_eq!(value(call(&c, ctx(), get("nope")).await), None);
            // Pipelined writes share group commits.
            let futs: Vec<_> = (0..64)
                .map(|i| call(&c, ctx(), set(&format!("p{i}"), "x")))
                .collect();
            for f in futs {
                assert!(matches!(f.await, KvResponse::Ok { .. }));
            }
            let stale = RouteCtx {
                range_id: RangeId(1),
                epoch: Epoch::default(),
            };
            assert!(matches!(
                call(&c, stale, get("k1")).await,
                KvResponse::Err {
                    error: RpcError::EpochMismatch { .. }
                }
            ));
            let missing = RouteCtx {
                range_id: RangeId(9),
                ..ctx()
            };
            assert!(matches!(
                call(&c, missing, get("k1")).await,
                KvResponse::Err {
                    error: RpcError::RangeNotFound { .. }
                }
            ));
        })
    });
    // Shard 1 holds no range.
    with_client(other_shard, |c| {
        Box::pin(async move {
            assert!(matches!(
                call(&c, ctx(), get("k1")).await,
                KvResponse::Err {
                    error: RpcError::RangeNotFound { .. }
                }
            ));
        })
    });
    let m = node.metrics();
    eprintln!("metrics: {}", m.summary());
    // The admin endpoint serves the same figures in the Prometheus text format.
    {
        use std::io::{Read, Write};
        std::thread::sleep(std::time::Duration::from_millis(300));
        let mut s = std::net::TcpStream::connect(node.admin_addr.unwrap()).unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nhost: x\r\n\r\n")
            .unwrap();
        let mut body = String::new();
        s.read_to_string(&mut body).unwrap();
        assert!(body.starts_with("HTTP/1.1 200"), "{body}");
        assert!(body.contains("ds_raft_proposals_total 264"), "{body}");
        assert!(body.contains("ds_raft_propose_apply_seconds{quantile=\"0.99\"}"));
    }
    node.shutdown().unwrap();
    // Restart: the shard log is replayed into the engine.
    // (Same data, new ports: the old ones may be taken by now; the range does not record
    // its own addresses.)
    let node = run(cfg(&dir)).unwrap();
    with_client(node.shard_addrs[0].clone(), |c| {
        Box::pin(async move {
            for i in 0..200 {
                let v = value(call(&c, ctx(), get(&format!("k{i}"))).await);
                assert_eq!(v, Some(Bytes::from(format!("v{i}"))), "k{i}");
            }
        })
    });
    node.shutdown().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

/// Bad input from a peer: a RaftBatch whose message bytes are garbage, one naming an unknown
/// range and one claiming another sender are counted and dropped; a connection sending a
/// garbage frame is closed. The node keeps serving.
#[test]
fn corrupted_raft_messages_and_frames_are_rejected_and_the_node_keeps_serving() {
    use std::io::{Read, Write};

    use net::message::{RaftBatch, RaftEnvelope, SnapshotChunk};
    use net::{ReplicaId, StoreId};

    let dir = std::env::temp_dir().join(format!("ds-badinput-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut c = cfg(&dir);
    c.shards = 1;
    let node = run(c).unwrap();
    let addr = node.shard_addrs[0].clone();
    // A raw garbage frame on a fresh connection.
    let mut s = std::net::TcpStream::connect(&addr).unwrap();
    s.write_all(&[0xde; 64]).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    let mut buf = [0u8; 256];
    let _ = s.read(&mut buf); // closed (or an error frame), never a hang
    with_client(addr, |c| {
        Box::pin(async move {
            assert!(matches!(
                call(&c, ctx(), set("a", "1")).await,
                KvResponse::Ok { .. }
            ));
            let env = |range: u64, from: u64, message: &'static [u8]| RaftEnvelope {
                range_id: RangeId(range),
                from_replica: ReplicaId(from),
                to_replica: ReplicaId(1),
                message: Bytes::from_static(message),
            };
            let batch = RaftBatch {
                from_store: StoreId(99),
                from_shard: net::ShardId(0),
                messages: vec![
                    env(1, 2, b"\xff\xff\xff garbage"),
                    env(77, 2, b""),
                    env(1, 5, b""),
                ],
            };
            c.send(Message::RaftBatch(batch)).await.unwrap();
            // Snapshot transfers: a chunk of an unknown transfer, a chunk out of order, and a
            // complete transfer whose bytes are not a checkpoint are all refused.
            let chunk = |id: u64, seq: u32, last: bool, data: &'static [u8]| {
                Message::SnapshotChunk(SnapshotChunk {
                    range_id: RangeId(1),
                    to_replica: ReplicaId(1),
                    snapshot_id: id,
                    seq,
                    last,
                    data: Bytes::from_static(data),
                })
            };
            let accepted = |m: Message| match m {
                Message::SnapshotAck(a) => a.accepted,
                other => panic!("{other:?}"),
            };
            assert!(!accepted(c.call(chunk(7, 3, false, b"x")).await.unwrap()));
            assert!(accepted(c.call(chunk(8, 0, false, b"part")).await.unwrap()));
            assert!(!accepted(c.call(chunk(8, 2, true, b"gap")).await.unwrap()));
            assert!(accepted(
                c.call(chunk(9, 0, false, b"TKVCKPT\0")).await.unwrap()
            ));
            assert!(!accepted(
                c.call(chunk(9, 1, true, b"garbage")).await.unwrap()
            ));
            // A MsgSnapshot naming a transfer that never completed is dropped.
            let mut m = raft::eraftpb::Message::default();
            m.set_msg_type(raft::eraftpb::MessageType::MsgSnapshot);
            m.from = 2;
            m.to = 1;
            m.term = 99;
            m.mut_snapshot().data = 9u64.to_le_bytes().to_vec().into();
            m.mut_snapshot().mut_metadata().index = 1000;
            let bytes = protobuf::Message::write_to_bytes(&m).unwrap();
            c.send(Message::RaftBatch(RaftBatch {
                from_store: StoreId(99),
                from_shard: net::ShardId(0),
                messages: vec![RaftEnvelope {
                    range_id: RangeId(1),
                    from_replica: ReplicaId(2),
                    to_replica: ReplicaId(1),
                    message: bytes.into(),
                }],
            }))
            .await
            .unwrap();
            assert!(matches!(
                call(&c, ctx(), set("b", "2")).await,
                KvResponse::Ok { .. }
            ));
            assert_eq!(
                value(call(&c, ctx(), get("a")).await),
                Some(Bytes::from("1"))
            );
        })
    });
    // The shards publish their figures about every 200 ms.
    let mut m = node.metrics();
    for _ in 0..50 {
        if m.snapshot_chunks_refused_total >= 3 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        m = node.metrics();
    }
    assert!(m.snapshot_chunks_refused_total >= 3, "{}", m.summary());
    assert_eq!(m.snapshots_applied_total, 0);
    node.shutdown().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

/// TTL: the leader finds expired keys on its ticks (bounded scan per tick) and proposes their
/// deletion; the deletes apply (counted), and keys without expiry stay.
#[test]
fn fields_of_a_deleted_hash_are_reclaimed_in_the_background() {
    let dir = std::env::temp_dir().join(format!("ds-garbage-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut c = cfg(&dir);
    c.shards = 1;
    let node = run(c).unwrap();
    let addr = node.shard_addrs[0].clone();
    with_client(addr, |c| {
        Box::pin(async move {
            let pairs = (0..600)
                .map(|i| (Bytes::from(format!("f{i}")), Bytes::from_static(b"v")))
                .collect();
            let hset = |key: &'static str, pairs| KvOp::HSet {
                key: Bytes::from_static(key.as_bytes()),
                pairs,
                only_new: false,
            };
            let r = call(&c, ctx(), hset("big", pairs)).await;
            assert!(matches!(r, KvResponse::Ok { .. }), "{r:?}");
            let keep = vec![(Bytes::from_static(b"f"), Bytes::from_static(b"v"))];
            let r = call(&c, ctx(), hset("keep", keep)).await;
            assert!(matches!(r, KvResponse::Ok { .. }), "{r:?}");
            let del = KvOp::KeyDel {
                key: Bytes::from_static(b"big"),
            };
            assert!(matches!(call(&c, ctx(), del).await, KvResponse::Ok { .. }));
        })
    });
    let mut reclaimed = 0;
    for _ in 0..200 {
        reclaimed = node.metrics().garbage_deleted_total;
        if reclaimed >= 600 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(
        reclaimed, 600,
        "every field of the deleted hash, and only those"
    );
    node.shutdown().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn leader_deletes_expired_keys_in_the_background() {
    let dir = std::env::temp_dir().join(format!("ds-ttl-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut c = cfg(&dir);
    c.shards = 1;
    let node = run(c).unwrap();
    let addr = node.shard_addrs[0].clone();
    with_client(addr, |c| {
        Box::pin(async move {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis() as u64;
            for i in 0..20 {
                let op = KvOp::StrSet {
                    key: Bytes::from(format!("t{i}")),
                    value: Bytes::from_static(b"x"),
                    // Far enough ahead that every SET applies before its key expires even on a
                    // loaded machine: a key already expired at apply is deleted by the apply
                    // itself, not by the background sweep this test counts.
                    expiry: Expiry::At { at_ms: now + 1500 },
                    cond: Cond::Always {},
                    get_old: false,
                };
                assert!(matches!(call(&c, ctx(), op).await, KvResponse::Ok { .. }));
            }
            assert!(matches!(
                call(&c, ctx(), set("keep", "1")).await,
                KvResponse::Ok { .. }
            ));
            glommio::timer::sleep(std::time::Duration::from_millis(2100)).await;
            assert_eq!(value(call(&c, ctx(), get("t3")).await), None);
            assert_eq!(
                value(call(&c, ctx(), get("keep")).await),
                Some(Bytes::from("1"))
            );
        })
    });
    let mut deleted = 0;
    for _ in 0..100 {
        deleted = node.metrics().expired_deleted_total;
        if deleted >= 20 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(deleted, 20);
    node.shutdown().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
