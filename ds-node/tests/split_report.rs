//! A split whose report to the master is lost (the replica that applied it as leader stopped
//! first: a crash, a restart) still reaches the master: the range's leader sees in the
//! master's route table that its own version is newer, rebuilds the first missing split from
//! the ranges on its shard and reports it (`server::split::unreported`). Here every first
//! report is dropped at the `ds_node::shard::split::report` failpoint, so the master can only
//! learn the splits that way; without it, the keys of every right range stayed unroutable
//! (`EpochMismatch` for ever), which a whole-cluster restart right after a split showed.
//!
//! Needs the `failpoints` feature (this crate's test builds have it: see `Cargo.toml`).
#![allow(clippy::unwrap_used)]
// Test threads drive the node from outside its shards: blocking calls are fine here.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use ds_node::run;
use net::message::kv::{Cond, Expiry, KvOp, KvResponse};

const KEYS: usize = 400;

fn key(i: usize) -> String {
    format!("user:{i:04}")
}

#[test]
fn splits_whose_reports_were_lost_reach_the_master_from_the_leaders_heartbeat() {
    let scenario = fail::FailScenario::setup();
    fail::cfg("ds_node::shard::split::report", "return").unwrap();
    let (root, master, maddr) = splitting_master("split-report");
    let node = run(node_cfg(&root, "a", &maddr)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while range1(&table_blocking(&maddr)).is_none() {
        assert!(Instant::now() < deadline, "no first range");
        std::thread::sleep(Duration::from_millis(100));
    }

    // ~120 KiB of strings: the range splits several times while they are written; each
    // write is routed by the master's table, so it waits until the master knows its range.
    let m = maddr.clone();
    on_executor(move || {
        Box::pin(async move {
            for i in 0..KEYS {
                let k = key(i);
                let r = must_call(
                    &m,
                    k.as_bytes(),
                    KvOp::StrSet {
                        key: Bytes::from(k.clone()),
                        value: Bytes::from(format!("{i}-{}", "v".repeat(300))),
                        expiry: Expiry::Persist {},
                        cond: Cond::Always {},
                        get_old: false,
                    },
                )
                .await;
                assert!(matches!(r, KvResponse::Ok { .. }), "{k}: {r:?}");
            }
        })
    });

    // The master ends up with every range the node has, each split reported late.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let metrics = node.metrics();
        let ranges = table_blocking(&maddr).ranges.len() as u64;
        // (The node republishes its figures every 200 ms: they may trail the master.)
        if metrics.splits_total >= 2
            && ranges == metrics.splits_total + 1
            && metrics.splits_reported_late_total == metrics.splits_total
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the master knows {ranges} ranges; the node split {} times, {} reported late",
            metrics.splits_total,
            metrics.splits_reported_late_total
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // Every key reads back through the master's routes.
    let m = maddr.clone();
    on_executor(move || {
        Box::pin(async move {
            for i in (0..KEYS).step_by(7) {
                let k = key(i);
                let v = must_get(&m, &k).await;
                assert!(
                    v.is_some_and(|v| v.starts_with(format!("{i}-").as_bytes())),
                    "{k}"
                );
            }
        })
    });
    node.shutdown().unwrap();
    drop(master);
    scenario.teardown();
    let _ = std::fs::remove_dir_all(&root);
}
