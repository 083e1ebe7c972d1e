//! A replica that misses the commit of its own removal (failpoint
//! `ds_node::shard::conf_change::miss_own_removal`: it applies everything but that change)
//! is destroyed anyway once the master's route table shows the range at a newer `conf_ver`
//! without it. Shown on a move between the two shards of one node: afterwards shard 0 holds
//! none of the range's data.
#![allow(clippy::unwrap_used)]
// Test threads drive the node from outside its shards: blocking calls are fine here.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use ds_node::run;
use net::message::kv::{Cond, Expiry, KvOp, KvResponse};

fn must_set(maddr: &str, key: &str) {
    let m = maddr.to_string();
    let k = key.to_string();
    common::on_executor(move || {
        Box::pin(async move {
            let set = KvOp::StrSet {
                key: Bytes::from(k.clone()),
                value: Bytes::from(k.clone()),
                expiry: Expiry::Persist {},
                cond: Cond::Always {},
                get_old: false,
            };
            let r = common::must_call(&m, k.as_bytes(), set).await;
            assert!(matches!(r, KvResponse::Ok { .. }), "{r:?}");
        })
    });
}

#[test]
fn a_replica_that_missed_its_removal_is_destroyed_from_the_route_table() {
    let scenario = fail::FailScenario::setup();
    fail::cfg("ds_node::shard::conf_change::miss_own_removal", "return").unwrap();
    let root = std::env::temp_dir().join(format!("ds-shard-move-gc-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(root.join("master")).unwrap();
    let master =
        test_support::master::start(root.join("master"), test_support::master::fast_scheduling);
    let maddr = master.addr().to_string();
    let mut cfg = common::node_cfg(&root, "ds", &maddr);
    cfg.shards = 2;
    let node = run(cfg.clone()).unwrap();
    let key = (0..)
        .map(|i| format!("key{i}"))
        .find(|k| net::keyspace::slot(k.as_bytes()) < 8192)
        .unwrap();
    must_set(&maddr, &key);
    let ik = net::keyspace::meta_key(net::keyspace::Db::ZERO, key.as_bytes());
    let range = |t: net::message::RouteTable| t.ranges.into_iter().find(|r| r.contains(&ik));
    let before = range(common::table_blocking(&maddr)).unwrap();
    let q = format!("range={}&to={}&shard=1", before.id, node.store_id);
    let (status, body) = master.admin_post("/move-range", &q);
    assert_eq!(status, 200, "{body}");
    let deadline = Instant::now() + Duration::from_secs(30);
    let after = loop {
        let d = range(common::table_blocking(&maddr)).unwrap();
        if d.replicas.len() == 1 && d.replicas[0].shard_id.0 == 1 {
            break d;
        }
        assert!(Instant::now() < deadline, "the move never finished: {d:?}");
        std::thread::sleep(Duration::from_millis(50));
    };
    // The source learns of its removal only from the route table (every heartbeat, 100 ms).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let destroyed = node.metrics().replicas_destroyed_total;
        if destroyed >= 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the removed replica was never destroyed"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    node.shutdown().unwrap();
    let src = ds_node::offline::dump_shard(&cfg, 0).unwrap();
    assert!(
        !src.iter().any(|(k, _)| after.contains(k)),
        "shard 0 kept the moved range's keys"
    );
    let dst = ds_node::offline::dump_shard(&cfg, 1).unwrap();
    assert!(dst.iter().any(|(k, _)| *k == ik), "shard 1 lacks the key");
    master.stop();
    scenario.teardown();
    let _ = std::fs::remove_dir_all(&root);
}
