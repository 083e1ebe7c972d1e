//! Range merges (issue 19) with a real master: a range is split by the operator's `split`,
//! keys are written on both sides, and `merge-range` folds the right range back into the left
//! while a client keeps writing and reading keys of both sides. Afterwards every acknowledged
//! write reads back, one range covers both spans in the master's route table, a request
//! carrying an old epoch is re-routed (`EpochMismatch` for the left, `RangeNotFound` for the
//! right), and after a restart of the node (recovery replays or loads the merge) every
//! acknowledged value is still there. A last case leaves it to the master's `MergeSmall`
//! checker to fold a small idle split back.
#![allow(clippy::unwrap_used)]
// Test threads drive the node from outside its shards: blocking calls are fine here.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use ds_node::{NodeHandle, run};
use net::message::handshake::{Hello, Role};
use net::message::kv::{Cond, Expiry, KvOp, KvRequest, KvResponse};
use net::message::{RangeDescriptor, RouteCtx};
use net::{ClusterId, Message, NodeId, RpcError};

/// `n` keys whose hash slots lie in `[lo, hi)`.
fn keys_in_slots(lo: u16, hi: u16, n: usize) -> Vec<String> {
    (0..)
        .map(|i| format!("key{i}"))
        .filter(|k| (lo..hi).contains(&net::keyspace::slot(k.as_bytes())))
        .take(n)
        .collect()
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

/// Writes `key = key:n` over `keys` in turn until `stop`, reading each back at once (the read
/// must see the value just written); the last acknowledged value per key.
fn writer(maddr: String, keys: Vec<String>, stop: Arc<AtomicBool>) -> BTreeMap<String, String> {
    common::on_executor(move || {
        Box::pin(async move {
            let mut acked = BTreeMap::new();
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                for k in &keys {
                    n += 1;
                    let v = format!("{k}:{n}");
                    let r = common::must_call(&maddr, k.as_bytes(), set(k, &v)).await;
                    assert!(matches!(r, KvResponse::Ok { .. }), "SET {k}: {r:?}");
                    acked.insert(k.clone(), v.clone());
                    let got = common::must_get(&maddr, k).await;
                    assert_eq!(got.as_deref(), Some(v.as_bytes()), "GET {k} after SET");
                }
            }
            acked
        })
    })
}

/// The master's descriptor of the range holding Redis key `key`.
fn range_of(maddr: &str, key: &str) -> RangeDescriptor {
    let t = common::table_blocking(maddr);
    let ik = net::keyspace::meta_key(net::keyspace::Db::ZERO, key.as_bytes());
    t.ranges.into_iter().find(|r| r.contains(&ik)).unwrap()
}

fn wait_ranges(maddr: &str, n: usize, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while common::table_blocking(maddr).ranges.len() != n {
        assert!(Instant::now() < deadline, "{what} never landed");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Sends `op` to shard 0 of the node at `addr` with the route context of `d` (an epoch the
/// master may have replaced since): the raw answer.
fn call_with(addr: &str, cluster: ClusterId, d: &RangeDescriptor, op: KvOp) -> KvResponse {
    let (addr, d) = (addr.to_string(), d.clone());
    common::on_executor(move || {
        Box::pin(async move {
            let hello = Hello::new(Role::Proxy {}, cluster, NodeId(0));
            let c = net::glommio_transport::Client::connect(&addr, hello, Default::default())
                .await
                .unwrap();
            let ctx = RouteCtx {
                range_id: d.id,
                epoch: d.epoch,
            };
            match c.call(Message::KvRequest(KvRequest { ctx, op })).await {
                Ok(Message::KvResponse(r)) => r,
                other => panic!("{other:?}"),
            }
        })
    })
}

fn every_acked_value_reads_back(maddr: &str, acked: &BTreeMap<String, String>) {
    let (m, acked) = (maddr.to_string(), acked.clone());
    common::on_executor(move || {
        Box::pin(async move {
            for (k, v) in &acked {
                let got = common::must_get(&m, k).await;
                assert_eq!(got.as_deref(), Some(v.as_bytes()), "acknowledged {k} lost");
            }
        })
    });
}

/// Until every node answers `RangeNotFound` for the merged-away `right` (each replica of it
/// was destroyed), within 30 s.
fn right_gone_everywhere(
    nodes: &[NodeHandle],
    cluster: ClusterId,
    right: &RangeDescriptor,
    key: &str,
) {
    let deadline = Instant::now() + Duration::from_secs(30);
    for n in nodes {
        loop {
            let r = call_with(&n.shard_addrs[0], cluster, right, get(key));
            if matches!(&r, KvResponse::Err { error: RpcError::RangeNotFound { range_id } } if *range_id == right.id)
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "store {}: old right range: {r:?}",
                n.store_id
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Until `ds_merges_total` summed over `nodes` (published about every 200 ms) is `want`: one
/// merge per replica of the merged range.
fn wait_merges(nodes: &[NodeHandle], want: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got: u64 = nodes.iter().map(|x| x.metrics().merges_total).sum();
        if got == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "ds_merges_total {got}, want {want}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn get(k: &str) -> KvOp {
    KvOp::StrGet {
        key: Bytes::from(k.to_string()),
    }
}

fn cluster_id(maddr: &str) -> ClusterId {
    let m = maddr.to_string();
    common::on_executor(move || {
        Box::pin(async move {
            let hello = Hello::new(Role::Proxy {}, ClusterId(0), NodeId(0));
            let c = net::glommio_transport::Client::connect(&m, hello, Default::default())
                .await
                .unwrap();
            c.peer().cluster_id
        })
    })
}

/// The scenario of the module documentation on `n` nodes (one replica of each range on each).
fn merge_while_writing(name: &str, n: usize) {
    let root = std::env::temp_dir().join(format!("ds-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(root.join("master")).unwrap();
    let master =
        test_support::master::start(root.join("master"), test_support::master::fast_scheduling);
    let maddr = master.addr().to_string();
    let cfgs: Vec<_> = (0..n)
        .map(|i| {
            let mut cfg = common::node_cfg(&root, &format!("ds{i}"), &maddr);
            // Merges need the files checkpoint mode (index mode refuses them).
            cfg.checkpoint_mode = ds_node::CheckpointMode::Files;
            cfg
        })
        .collect();
    let mut nodes: Vec<NodeHandle> = cfgs.iter().map(|c| run(c.clone()).unwrap()).collect();
    wait_ranges(&maddr, 1, "bootstrap");
    let deadline = Instant::now() + Duration::from_secs(90);
    while common::range1(&common::table_blocking(&maddr))
        .is_none_or(|d| common::voters(&d).len() < n)
    {
        assert!(Instant::now() < deadline, "never {n} voters");
        std::thread::sleep(Duration::from_millis(100));
    }
    let first = common::table_blocking(&maddr).ranges[0].clone();
    let (status, body) = master.admin_post("/split", &format!("range={}&slot=8192", first.id));
    assert_eq!(status, 200, "{body}");
    wait_ranges(&maddr, 2, "the split");

    let mut keys = keys_in_slots(0, 8192, 6);
    keys.extend(keys_in_slots(8192, 16384, 6));
    let (left, right) = (range_of(&maddr, &keys[0]), range_of(&maddr, &keys[6]));
    assert_ne!(left.id, right.id);
    assert_eq!(left.end, right.start);
    // Refused clearly: the last range has nothing on its right.
    let (status, body) = master.admin_post("/merge-range", &format!("range={}", right.id));
    assert_eq!(status, 409, "{body}");
    assert!(body.contains("nothing on its right"), "{body}");

    let stop = Arc::new(AtomicBool::new(false));
    let w = {
        let (m, k, s) = (maddr.clone(), keys.clone(), stop.clone());
        std::thread::spawn(move || writer(m, k, s))
    };
    std::thread::sleep(Duration::from_millis(300));
    let t = Instant::now();
    // The split's operator may still be finishing (it ends when a heartbeat shows it).
    let (status, body) = loop {
        let (status, body) = master.admin_post("/merge-range", &format!("range={}", left.id));
        if !body.contains("operator in flight") || t.elapsed() > Duration::from_secs(10) {
            break (status, body);
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("merge"), "{body}");
    wait_ranges(&maddr, 1, "the merge");
    let took = t.elapsed();
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    let acked = w.join().unwrap();
    eprintln!(
        "{n} node(s): merge landed in the master's table after {} ms",
        took.as_millis()
    );

    let merged = common::table_blocking(&maddr).ranges[0].clone();
    assert_eq!(merged.id, left.id);
    assert_eq!(
        (merged.start.clone(), merged.end.clone()),
        (left.start.clone(), right.end.clone())
    );
    assert!(merged.epoch.version > left.epoch.version.max(right.epoch.version));
    assert_eq!(acked.len(), keys.len());
    every_acked_value_reads_back(&maddr, &acked);

    // Old epochs are re-routed: the left's gets the merged descriptor, the right is gone.
    let cluster = cluster_id(&maddr);
    match call_with(&nodes[0].shard_addrs[0], cluster, &left, get(&keys[0])) {
        KvResponse::Err {
            error: RpcError::EpochMismatch { ranges },
        } => assert!(
            ranges.iter().any(|r| r.id == left.id && r.end == right.end),
            "{ranges:?}"
        ),
        other => panic!("old left epoch: {other:?}"),
    }
    right_gone_everywhere(&nodes, cluster, &right, &keys[6]);
    wait_merges(&nodes, n as u64);

    // A restart finds one range and every value.
    for x in nodes.drain(..) {
        x.shutdown().unwrap();
    }
    let nodes: Vec<NodeHandle> = cfgs.iter().map(|c| run(c.clone()).unwrap()).collect();
    every_acked_value_reads_back(&maddr, &acked);
    assert_eq!(common::table_blocking(&maddr).ranges.len(), 1);
    right_gone_everywhere(&nodes, cluster, &right, &keys[6]);
    for x in nodes {
        x.shutdown().unwrap();
    }
    master.stop();
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn an_operator_merges_two_ranges_while_a_client_writes_and_reads_both() {
    merge_while_writing("merge-one", 1);
}

#[test]
fn three_replicas_merge_pairwise_on_their_shards() {
    merge_while_writing("merge-three", 3);
}

#[test]
fn the_merge_checker_folds_a_small_idle_split_back() {
    let root = std::env::temp_dir().join(format!("ds-merge-checker-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(root.join("master")).unwrap();
    let master = test_support::master::start(root.join("master"), |c| {
        test_support::master::fast_scheduling(c);
        c.schedule.merge_size_bytes = 1 << 20;
    });
    let maddr = master.addr().to_string();
    let mut cfg = common::node_cfg(&root, "ds", &maddr);
    cfg.checkpoint_mode = ds_node::CheckpointMode::Files;
    let node = run(cfg).unwrap();
    wait_ranges(&maddr, 1, "bootstrap");
    let keys = keys_in_slots(0, 16384, 20);
    let acked: BTreeMap<String, String> =
        keys.iter().map(|k| (k.clone(), format!("{k}:v"))).collect();
    {
        let (m, a) = (maddr.clone(), acked.clone());
        common::on_executor(move || {
            Box::pin(async move {
                for (k, v) in &a {
                    let r = common::must_call(&m, k.as_bytes(), set(k, v)).await;
                    assert!(matches!(r, KvResponse::Ok { .. }), "SET {k}: {r:?}");
                }
            })
        });
    }
    let first = common::table_blocking(&maddr).ranges[0].clone();
    let (status, body) = master.admin_post("/split", &format!("range={}&slot=8192", first.id));
    assert_eq!(status, 200, "{body}");
    wait_ranges(&maddr, 2, "the split");
    // Both halves are tiny and idle: the checker merges them back once their loads arrive.
    wait_ranges(&maddr, 1, "the checker's merge");
    let decisions = master.decisions();
    assert!(
        decisions
            .iter()
            .any(|d| d.starts_with(&format!("merge-small: r{}: merge r", first.id))),
        "{decisions:#?}"
    );
    every_acked_value_reads_back(&maddr, &acked);
    let node = [node];
    wait_merges(&node, 1);
    let [node] = node;
    node.shutdown().unwrap();
    master.stop();
    let _ = std::fs::remove_dir_all(&root);
}
