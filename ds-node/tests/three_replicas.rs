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
use common::trio::{free_port, must_call, node_cfg};
use ds_node::{NodeHandle, run};
use net::message::kv::{Cond, Expiry, KvOp, KvResponse, OpResult};

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
