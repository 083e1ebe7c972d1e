//! DS nodes in one test process with a master (`test_support::master`), and a client that
//! routes by the master's route table (shared by the multi-node tests).
#![allow(clippy::unwrap_used, dead_code)]

pub mod child;
pub mod crash;
pub mod mode;
pub mod single;
pub mod store;
pub mod trio;

use std::time::{Duration, Instant};

use ds_node::DsConfig;
use net::message::handshake::{Hello, Role};
use net::message::kv::{KvOp, KvRequest, KvResponse};
use net::message::{GetRouteTable, RangeDescriptor, ReplicaRole, RouteCtx, RouteTable};
use net::transport::TransportConfig;
use net::{ClusterId, Message, NodeId, RpcError};

pub fn node_cfg(root: &std::path::Path, name: &str, maddr: &str) -> DsConfig {
    DsConfig {
        checkpoint_mode: single::test_checkpoint_mode(),
        data_dir: root.join(name),
        shards: 1,
        pin: false,
        base_port: 0,
        master_addr: Some(maddr.to_string()),
        log_file_bytes: 64 << 20,
        segment_bytes: 4 << 20,
        zero_log_file: false,
        tick_ms: 20,
        heartbeat_ms: 100,
        io_memory_bytes: 1 << 20,
        cached_entries: 16,
        checkpoint_entries: 100,
        checkpoint_check_ms: 50,
        ..DsConfig::default()
    }
}

/// A fresh directory `ds-<name>-<pid>` in the temp dir with a master running in it that
/// schedules at once and splits every range above 32 KiB (the split tests): the directory
/// (nodes go beside `master/`), the master and its address.
pub fn splitting_master(
    name: &str,
) -> (
    std::path::PathBuf,
    test_support::master::RunningMaster,
    String,
) {
    let root = std::env::temp_dir().join(format!("ds-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(root.join("master")).unwrap();
    let master = test_support::master::start(root.join("master"), |c| {
        test_support::master::fast_scheduling(c);
        c.schedule.split_size_bytes = 32 << 10;
    });
    let maddr = master.addr().to_string();
    (root, master, maddr)
}

/// Runs `f` on a temporary glommio executor.
pub fn on_executor<T: Send + 'static>(
    f: impl FnOnce() -> std::pin::Pin<Box<dyn std::future::Future<Output = T>>> + Send + 'static,
) -> T {
    glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .io_memory(512 << 10)
        .spawn(f)
        .unwrap()
        .join()
        .unwrap()
}

fn hello() -> Hello {
    Hello::new(Role::Client {}, ClusterId(0), NodeId(0))
}

fn transport() -> TransportConfig {
    TransportConfig {
        request_timeout: Duration::from_secs(3),
        connect_timeout: Duration::from_millis(300),
        ..TransportConfig::default()
    }
}

pub async fn table(maddr: &str) -> RouteTable {
    let m = net::glommio_transport::Client::connect(maddr, hello(), transport())
        .await
        .unwrap();
    match m
        .call(Message::GetRouteTable(GetRouteTable { known_version: 0 }))
        .await
        .unwrap()
    {
        Message::RouteTable(t) => t,
        other => panic!("{other:?}"),
    }
}

pub fn table_blocking(maddr: &str) -> RouteTable {
    let m = maddr.to_string();
    on_executor(move || Box::pin(async move { table(&m).await }))
}

/// The first range as the master knows it.
pub fn range1(t: &RouteTable) -> Option<RangeDescriptor> {
    t.ranges.first().cloned()
}

pub fn voters(d: &RangeDescriptor) -> Vec<u64> {
    let mut v: Vec<u64> = d
        .replicas
        .iter()
        .filter(|r| r.role == ReplicaRole::Voter {})
        .map(|r| r.store_id.0)
        .collect();
    v.sort();
    v
}

/// Sends `op` to the leader of the range holding `route_key` (an internal key) as the master's
/// route table describes it, following `NotLeader` and `EpochMismatch`, retrying while
/// leaders change, ranges split and merge (`ServerBusy` from a range frozen for a merge).
pub async fn must_call_at(maddr: &str, route_key: &[u8], op: KvOp) -> KvResponse {
    must_call_within(maddr, route_key, op, transport().request_timeout).await
}

/// [`must_call_at`] with each attempt's reply awaited up to `per_call` (large values).
pub async fn must_call_within(
    maddr: &str,
    route_key: &[u8],
    op: KvOp,
    per_call: Duration,
) -> KvResponse {
    let deadline = Instant::now() + Duration::from_secs(60).max(per_call * 4);
    // Shards of a cluster refuse a connector without the cluster's id: learn it first.
    let master = net::glommio_transport::Client::connect(maddr, hello(), transport())
        .await
        .unwrap();
    let member = Hello {
        cluster_id: master.peer().cluster_id,
        ..hello()
    };
    let mut last = String::new();
    while Instant::now() < deadline {
        let t = table(maddr).await;
        let Some(d) = t.ranges.iter().find(|r| r.contains(route_key)).cloned() else {
            glommio::timer::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let ctx = RouteCtx {
            range_id: d.id,
            epoch: d.epoch,
        };
        for r in &d.replicas {
            let Some(addr) = t
                .stores
                .iter()
                .find(|s| s.store_id == r.store_id)
                .and_then(|s| s.shard_addrs.get(r.shard_id.0 as usize).cloned())
            else {
                continue;
            };
            let cfg = TransportConfig {
                request_timeout: per_call,
                ..transport()
            };
            let Ok(c) = net::glommio_transport::Client::connect(&addr, member, cfg).await else {
                continue;
            };
            match c
                .call(Message::KvRequest(KvRequest {
                    ctx,
                    op: op.clone(),
                }))
                .await
            {
                Ok(Message::KvResponse(KvResponse::Err {
                    error:
                        e @ (RpcError::NotLeader { .. }
                        | RpcError::Timeout {}
                        | RpcError::EpochMismatch { .. }
                        | RpcError::RangeNotFound { .. }
                        | RpcError::ServerBusy {}),
                })) => last = format!("{addr}: {e:?}"),
                Err(e) => last = format!("{addr}: {e}"),
                Ok(Message::KvResponse(r)) => return r,
                Ok(other) => panic!("unexpected {other:?}"),
            }
        }
        glommio::timer::sleep(Duration::from_millis(50)).await;
    }
    panic!("no leader answered in time; last: {last}");
}

/// [`must_call_at`] for an operation on Redis key `key`.
pub async fn must_call(maddr: &str, key: &[u8], op: KvOp) -> KvResponse {
    must_call_at(
        maddr,
        &net::keyspace::meta_key(net::keyspace::Db::ZERO, key),
        op,
    )
    .await
}

/// The value of string key `key` in database 0 through its range's leader (`None`: absent);
/// panics on any other answer.
pub async fn must_get(maddr: &str, key: &str) -> Option<bytes::Bytes> {
    let op = KvOp::StrGet {
        key: bytes::Bytes::copy_from_slice(key.as_bytes()),
    };
    match must_call(maddr, key.as_bytes(), op).await {
        KvResponse::Ok {
            result: net::message::kv::OpResult::Value { value },
        } => value,
        other => panic!("GET {key}: {other:?}"),
    }
}
