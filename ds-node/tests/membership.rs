//! Three DS nodes with a real master (in-process): the master grows the first range from one
//! replica to three (add learner → the new store creates the replica for the leader's first
//! message → snapshot from a checkpoint → promote); writes replicate; stopping the leader's
//! node elects a new leader that has every acknowledged write; a node wiped and started again
//! joins as a new store, the master replaces the lost replica on it and it catches up by
//! snapshot; in the end every replica holds byte-identical data (offline full scans) and
//! counts the same keys (`ds_redis_keys`: the counts a snapshot install rebuilds, then apply
//! keeps, on cold entries too).
//!
//! Checkpoints are taken every 100 entries here, so the snapshots carry data and the logs are
//! compacted far below what a new replica needs. Every node demotes all its values every
//! 50 ms, so checkpoints name cold entries and snapshots are sent with values read from the
//! sender's log.
#![allow(clippy::unwrap_used)]
// Test threads drive the node from outside its shards: blocking calls are fine here.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use ds_node::{NodeHandle, run};
use net::message::RangeDescriptor;
use net::message::kv::{Cond, Expiry, KvOp, KvResponse, OpResult};

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
                let r = must_call(&m, format!("k{i:05}").as_bytes(), set(i)).await;
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
                    format!("k{i:05}").as_bytes(),
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

/// Every node demotes all its values every 50 ms: snapshots are built from checkpoints whose
/// entries are mostly cold (the sender reads them from its log), writes and reads load them.
fn cold_cfg(root: &std::path::Path, name: &str, maddr: &str) -> ds_node::DsConfig {
    ds_node::DsConfig {
        demote_every_ms: 50,
        ..node_cfg(root, name, maddr)
    }
}

type Nodes = Vec<(String, Option<NodeHandle>)>;

/// Stops the node of range 1's leader as the master knows it; its index in `nodes` and its
/// store id.
fn stop_leader_node(maddr: &str, nodes: &mut Nodes) -> (usize, u64) {
    let d = range1(&table_blocking(maddr)).unwrap();
    let leader_store = d
        .leader
        .and_then(|l| d.replicas.iter().find(|r| r.replica_id == l))
        .map(|r| r.store_id.0)
        .unwrap();
    let li = nodes
        .iter()
        .position(|(_, n)| n.as_ref().is_some_and(|n| n.store_id == leader_store))
        .unwrap();
    nodes[li].1.take().unwrap().shutdown().unwrap();
    (li, leader_store)
}

/// Waits until every node counts `keys` keys in database 0.
fn wait_for_key_counts(nodes: &Nodes, keys: u64, within: Duration) {
    let deadline = Instant::now() + within;
    for (name, n) in nodes {
        let n = n.as_ref().unwrap();
        while n.metrics().redis_keys[0] != keys {
            assert!(
                Instant::now() < deadline,
                "node {name} counts {:?} keys, {keys} written",
                n.metrics().redis_keys
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Stops every node and the master, then checks that the replicas hold the same entries
/// (offline dumps, cold values read from the logs), at least `min` of them.
fn assert_replicas_identical(
    nodes: Nodes,
    master: test_support::master::RunningMaster,
    cfg: impl Fn(&str) -> ds_node::DsConfig,
    min: usize,
) {
    let names: Vec<String> = nodes.iter().map(|(n, _)| n.clone()).collect();
    for (_, n) in nodes {
        n.unwrap().shutdown().unwrap();
    }
    master.stop();
    let dumps: Vec<_> = names
        .iter()
        .map(|n| ds_node::offline::dump(&cfg(n)).unwrap())
        .collect();
    for (n, d) in names.iter().zip(&dumps) {
        eprintln!("replica on node {n}: {} entries", d.len());
    }
    assert!(dumps[0].len() >= min);
    assert!(
        dumps.iter().all(|d| *d == dumps[0]),
        "replicas differ after catching up"
    );
}

#[test]
fn master_grows_a_range_to_three_replicas_and_replaces_a_wiped_node_by_snapshot() {
    let root = std::env::temp_dir().join(format!("ds-membership-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(root.join("master")).unwrap();
    let master =
        test_support::master::start(root.join("master"), test_support::master::fast_scheduling);
    let maddr = master.addr().to_string();

    // One node: it bootstraps range 1 alone and takes writes (checkpoints compact its log).
    let mut nodes: Nodes = Vec::new();
    nodes.push(("a".into(), Some(run(cold_cfg(&root, "a", &maddr)).unwrap())));
    write(&maddr, 0..400);

    // Two more: the master adds them as learners, they are caught up by snapshot, promoted.
    for name in ["b", "c"] {
        nodes.push((
            name.into(),
            Some(run(cold_cfg(&root, name, &maddr)).unwrap()),
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
    let cold_reads: u64 = nodes
        .iter()
        .filter_map(|(_, n)| n.as_ref())
        .map(|n| n.metrics().cold.reads_total)
        .sum();
    assert!(cold_reads > 0, "no cold value was read");

    // Stop the leader's node: a new leader has every acknowledged write.
    let (li, leader_store) = stop_leader_node(&maddr, &mut nodes);
    let name = nodes[li].0.clone();
    read_all(&maddr, 800);
    write(&maddr, 800..1000);

    // Wipe it and start it again: a new store; the master replaces the lost replica on it
    // (the logs were compacted long ago: only a snapshot can catch it up).
    std::fs::remove_dir_all(root.join(&name)).unwrap();
    let fresh = run(cold_cfg(&root, &name, &maddr)).unwrap();
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
    wait_for_key_counts(&nodes, 1100, Duration::from_secs(20));

    // Let the last writes reach every replica, stop everything, and compare the replicas.
    std::thread::sleep(Duration::from_millis(1500));
    assert_replicas_identical(nodes, master, |n| node_cfg(&root, n, &maddr), 1100);
    let _ = std::fs::remove_dir_all(&root);
}

fn big_value(n: usize, seed: u8) -> Bytes {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(31) ^ seed)
        .collect::<Vec<u8>>()
        .into()
}

/// Each attempt may move 64 MiB through a loaded 2-core machine (~50 ms per MiB end to end).
const BIG_CALL: Duration = Duration::from_secs(30);

fn set_big(maddr: &str, name: &str, n: usize, seed: u8) {
    let (m, key) = (maddr.to_string(), Bytes::from(name.to_string()));
    on_executor(move || {
        Box::pin(async move {
            let op = KvOp::StrSet {
                key: key.clone(),
                value: big_value(n, seed),
                expiry: Expiry::Persist {},
                cond: Cond::Always {},
                get_old: false,
            };
            let route = net::keyspace::meta_key(net::keyspace::Db::ZERO, &key);
            let r = must_call_within(&m, &route, op, BIG_CALL).await;
            assert!(matches!(r, KvResponse::Ok { .. }), "SET {n}: {r:?}");
        })
    });
}

fn get_big(maddr: &str, name: &str, n: usize, seed: u8) {
    let (m, key) = (maddr.to_string(), Bytes::from(name.to_string()));
    on_executor(move || {
        Box::pin(async move {
            let route = net::keyspace::meta_key(net::keyspace::Db::ZERO, &key);
            let op = KvOp::StrGet { key: key.clone() };
            match must_call_within(&m, &route, op, BIG_CALL).await {
                KvResponse::Ok {
                    result: OpResult::Value { value: Some(v) },
                } => assert!(v == big_value(n, seed), "{key:?}: another value came back"),
                other => panic!("GET {key:?}: {:?}", other),
            }
        })
    });
}

/// Values larger than a log batch (1 MiB) and than the old 64 MiB frame limit, each written
/// as several log records: replicated to followers by Raft entries, sent to new replicas in
/// snapshots (cold: read back from the sender's log), served by a new leader after the old
/// one stops, and byte-identical on every replica in the end (issue 21).
#[test]
fn large_values_replicate_reach_new_replicas_by_snapshot_and_survive_the_leader() {
    let root = std::env::temp_dir().join(format!("ds-large-values-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(root.join("master")).unwrap();
    let master =
        test_support::master::start(root.join("master"), test_support::master::fast_scheduling);
    let maddr = master.addr().to_string();
    let cfg = |name: &str| ds_node::DsConfig {
        // Room for a few copies of 64 MiB (a sparse file: only what is written takes space).
        log_file_bytes: 2 << 30,
        segment_bytes: 64 << 20,
        ..cold_cfg(&root, name, &maddr)
    };
    let sizes = [(1usize << 20) + 1, 9 << 20, 64 << 20];

    let mut nodes: Nodes = Vec::new();
    nodes.push(("a".into(), Some(run(cfg("a")).unwrap())));
    for (i, &n) in sizes.iter().enumerate() {
        set_big(&maddr, &format!("big{i}"), n, i as u8);
    }
    // Small writes after them: checkpoints compact the log past the large values, so new
    // replicas can only get them from a snapshot.
    write(&maddr, 0..300);
    for name in ["b", "c"] {
        nodes.push((name.into(), Some(run(cfg(name)).unwrap())));
    }
    wait_for_three_voters(&maddr, None, &nodes);
    let snaps: u64 = nodes
        .iter()
        .filter_map(|(_, n)| n.as_ref())
        .map(|n| n.metrics().snapshots_applied_total)
        .sum();
    assert!(
        snaps >= 2,
        "the two new replicas installed {snaps} snapshots"
    );
    // One more, replicated by the log to three voters.
    set_big(&maddr, "big3", 33 << 20, 3);

    // Stop the leader's node: the new leader serves every large value.
    let (li, _) = stop_leader_node(&maddr, &mut nodes);
    for (i, &n) in sizes.iter().chain(&[33 << 20]).enumerate() {
        get_big(&maddr, &format!("big{i}"), n, i as u8);
    }
    read_all(&maddr, 300);
    nodes[li].1 = Some(run(cfg(&nodes[li].0)).unwrap());
    write(&maddr, 300..310);

    // Every replica ends with the same bytes (offline dumps read cold values from the logs).
    wait_for_key_counts(&nodes, 314, Duration::from_secs(30));
    assert_replicas_identical(nodes, master, cfg, 314);
    let _ = std::fs::remove_dir_all(&root);
}
