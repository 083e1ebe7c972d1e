//! Three DS nodes with a real master (in-process): the master grows the first range from one
//! replica to three (add learner → the new store creates the replica for the leader's first
//! message → snapshot from a checkpoint → promote); writes replicate; stopping the leader's
//! node elects a new leader that has every acknowledged write; a node wiped and started again
//! joins as a new store, the master replaces the lost replica on it and it catches up by
//! snapshot; in the end every replica holds byte-identical data (offline full scans).
//!
//! Checkpoints are taken every 100 entries here, so the snapshots carry data and the logs are
//! compacted far below what a new replica needs.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use ::master::core::MasterConfig;
use ::master::service::{Master, SystemClock};
use bytes::Bytes;
use ds_node::{DsConfig, NodeHandle, run};
use net::message::handshake::{Hello, Role};
use net::message::kv::{Cond, Expiry, KvOp, KvRequest, KvResponse, OpResult};
use net::message::{GetRouteTable, RangeDescriptor, ReplicaRole, RouteCtx, RouteTable};
use net::transport::TransportConfig;
use net::{ClusterId, Message, NodeId, RpcError};

fn node_cfg(root: &std::path::Path, name: &str, maddr: &str) -> DsConfig {
    DsConfig {
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

fn start_master(dir: std::path::PathBuf) -> (String, tokio::sync::oneshot::Sender<()>) {
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let mut cfg = MasterConfig::new(&dir);
            cfg.schedule_interval_ms = 100;
            cfg.operator_timeout_ms = 20_000;
            cfg.schedule.store_down_after_ms = 1500;
            let (m, _) = Master::open(cfg, Arc::new(SystemClock)).unwrap();
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            addr_tx.send(l.local_addr().unwrap().to_string()).unwrap();
            m.serve(l, TransportConfig::default(), 64, async move {
                let _ = stop_rx.await;
            })
            .await;
        });
    });
    (addr_rx.recv().unwrap(), stop_tx)
}

/// Runs `f` on a temporary glommio executor.
fn on_executor<T: Send + 'static>(
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

async fn table(maddr: &str) -> RouteTable {
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

fn table_blocking(maddr: &str) -> RouteTable {
    let m = maddr.to_string();
    on_executor(move || Box::pin(async move { table(&m).await }))
}

/// The first range as the master knows it.
fn range1(t: &RouteTable) -> Option<RangeDescriptor> {
    t.ranges.first().cloned()
}

fn voters(d: &RangeDescriptor) -> Vec<u64> {
    let mut v: Vec<u64> = d
        .replicas
        .iter()
        .filter(|r| r.role == ReplicaRole::Voter {})
        .map(|r| r.store_id.0)
        .collect();
    v.sort();
    v
}

/// Sends `op` to the range's leader as the master's route table describes it, following
/// `NotLeader` and `EpochMismatch`, retrying while leaders change.
async fn must_call(maddr: &str, op: KvOp) -> KvResponse {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = String::new();
    while Instant::now() < deadline {
        let t = table(maddr).await;
        let Some(d) = range1(&t) else {
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
            let Ok(c) = net::glommio_transport::Client::connect(&addr, hello(), transport()).await
            else {
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
                        | RpcError::RangeNotFound { .. }),
                })) => last = format!("{addr}: {e:?}"),
                Err(e) => last = format!("{addr}: {e}"),
                Ok(Message::KvResponse(r)) => return r,
                Ok(other) => panic!("unexpected {other:?}"),
            }
        }
        glommio::timer::sleep(Duration::from_millis(50)).await;
    }
    panic!("no leader answered within 60 s; last: {last}");
}

fn set(i: usize) -> KvOp {
    KvOp::StrSet {
        key: Bytes::from(format!("k{i:05}")),
        value: Bytes::from(format!("value-{i}-{}", "x".repeat(i % 200))),
        expiry: Expiry::Persist {},
        cond: Cond::Always {},
        get_old: false,
    }
}

fn write(maddr: &str, keys: std::ops::Range<usize>) {
    let m = maddr.to_string();
    on_executor(move || {
        Box::pin(async move {
            for i in keys {
                let r = must_call(&m, set(i)).await;
                assert!(matches!(r, KvResponse::Ok { .. }), "k{i}: {r:?}");
            }
        })
    });
}

fn read_all(maddr: &str, n: usize) {
    let m = maddr.to_string();
    on_executor(move || {
        Box::pin(async move {
            for i in 0..n {
                let r = must_call(
                    &m,
                    KvOp::StrGet {
                        key: Bytes::from(format!("k{i:05}")),
                    },
                )
                .await;
                let want = format!("value-{i}-{}", "x".repeat(i % 200));
                match r {
                    KvResponse::Ok {
                        result: OpResult::Value { value },
                    } => assert_eq!(value, Some(Bytes::from(want)), "k{i}"),
                    other => panic!("k{i}: {other:?}"),
                }
            }
        })
    });
}

/// Waits until the master shows range 1 with three voters on `stores` (any three if `None`)
/// and no learner.
fn wait_for_three_voters(
    maddr: &str,
    stores: Option<&[u64]>,
    nodes: &[(String, Option<NodeHandle>)],
) -> RangeDescriptor {
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut next_report = Instant::now() + Duration::from_secs(10);
    loop {
        if Instant::now() > next_report {
            next_report += Duration::from_secs(10);
            for (name, n) in nodes {
                if let Some(n) = n {
                    eprintln!(
                        "node {name} (store {}): {}",
                        n.store_id,
                        n.metrics().summary()
                    );
                }
            }
        }
        let d = range1(&table_blocking(maddr)).unwrap();
        let v = voters(&d);
        let learners = d.replicas.len() - v.len();
        if v.len() == 3 && learners == 0 && stores.is_none_or(|s| s == v) {
            return d;
        }
        assert!(
            Instant::now() < deadline,
            "range 1 never reached three voters: {d:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn master_grows_a_range_to_three_replicas_and_replaces_a_wiped_node_by_snapshot() {
    let root = std::env::temp_dir().join(format!("ds-membership-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(root.join("master")).unwrap();
    let (maddr, stop_master) = start_master(root.join("master"));

    // One node: it bootstraps range 1 alone and takes writes (checkpoints compact its log).
    let mut nodes: Vec<(String, Option<NodeHandle>)> = Vec::new();
    nodes.push(("a".into(), Some(run(node_cfg(&root, "a", &maddr)).unwrap())));
    write(&maddr, 0..400);

    // Two more: the master adds them as learners, they are caught up by snapshot, promoted.
    for name in ["b", "c"] {
        nodes.push((
            name.into(),
            Some(run(node_cfg(&root, name, &maddr)).unwrap()),
        ));
    }
    let d = wait_for_three_voters(&maddr, None, &nodes);
    eprintln!("three voters: {d:?}");
    write(&maddr, 400..800);
    read_all(&maddr, 800);
    let snaps: u64 = nodes
        .iter()
        .filter_map(|(_, n)| n.as_ref())
        .map(|n| n.metrics().snapshots_applied_total)
        .sum();
    assert!(
        snaps >= 2,
        "the two new replicas installed {snaps} snapshots"
    );

    // Stop the leader's node: a new leader has every acknowledged write.
    let t = table_blocking(&maddr);
    let d = range1(&t).unwrap();
    let leader_store = d
        .leader
        .and_then(|l| d.replicas.iter().find(|r| r.replica_id == l))
        .map(|r| r.store_id.0)
        .unwrap();
    let li = nodes
        .iter()
        .position(|(_, n)| n.as_ref().is_some_and(|n| n.store_id == leader_store))
        .unwrap();
    let (name, handle) = &mut nodes[li];
    let name = name.clone();
    handle.take().unwrap().shutdown().unwrap();
    read_all(&maddr, 800);
    write(&maddr, 800..1000);

    // Wipe it and start it again: a new store; the master replaces the lost replica on it
    // (the logs were compacted long ago: only a snapshot can catch it up).
    std::fs::remove_dir_all(root.join(&name)).unwrap();
    let fresh = run(node_cfg(&root, &name, &maddr)).unwrap();
    let fresh_store = fresh.store_id;
    assert_ne!(fresh_store, leader_store);
    nodes[li].1 = Some(fresh);
    let mut want: Vec<u64> = nodes
        .iter()
        .filter_map(|(_, n)| n.as_ref().map(|n| n.store_id))
        .collect();
    want.sort();
    wait_for_three_voters(&maddr, Some(&want), &nodes);
    write(&maddr, 1000..1100);
    read_all(&maddr, 1100);

    // Let the last writes reach every replica, stop everything, and compare the replicas.
    std::thread::sleep(Duration::from_millis(1500));
    let names: Vec<String> = nodes.iter().map(|(n, _)| n.clone()).collect();
    for (_, n) in nodes {
        n.unwrap().shutdown().unwrap();
    }
    let _ = stop_master.send(());
    let dumps: Vec<_> = names
        .iter()
        .map(|n| ds_node::offline::dump(&node_cfg(&root, n, &maddr)).unwrap())
        .collect();
    for (n, d) in names.iter().zip(&dumps) {
        eprintln!("replica on node {n}: {} entries", d.len());
    }
    assert!(dumps[0].len() >= 1100);
    assert!(
        dumps.iter().all(|d| *d == dumps[0]),
        "replicas differ after catching up"
    );
    let _ = std::fs::remove_dir_all(&root);
}
