//! The log garbage collector end to end on a single-replica DS node (glommio, uring shard
//! log, raft-rs): with demotion running continuously under an overwrite workload, the shard
//! log's disk use settles instead of growing (a log that only grew would run out of
//! segments several times over), every key reads back, and a kill -9 while passes run loses
//! no acknowledged write.
#![allow(clippy::unwrap_used)]
// Test threads drive the node from outside its shards: blocking calls are fine here.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::crash::{count_differing, kill9_with_batch_in_flight, serve_child_node};
use common::single::{
    Retry, free_addr, http_ok, metric_until, run_ops, set, single_cfg, spawn_child_node,
};
use ds_node::{DsConfig, run};
use net::message::kv::{KvOp, KvResponse};

const LOG_BYTES: u64 = 32 << 20;
const SEGMENT_BYTES: u64 = 2 << 20;

fn cfg(dir: &std::path::Path) -> DsConfig {
    DsConfig {
        log_file_bytes: LOG_BYTES,
        segment_bytes: SEGMENT_BYTES,
        checkpoint_entries: 300,
        checkpoint_check_ms: 20,
        demote_every_ms: 20,
        gc_every_ms: 20,
        gc_bytes_per_sec: 256 << 20,
        ..single_cfg(dir)
    }
}

fn value(key: usize, round: usize) -> Vec<u8> {
    let mut v = format!("{key}/{round}/").into_bytes();
    v.resize(4000, b'a' + (round % 26) as u8);
    v
}

/// One round of overwrites of every key; records the acknowledged values in `model`.
fn must_overwrite(addr: &str, keys: usize, round: usize, model: &mut BTreeMap<String, Vec<u8>>) {
    let ops: Vec<KvOp> = (0..keys)
        .map(|k| set(&format!("key-{k:04}"), value(k, round)))
        .collect();
    for (k, r) in run_ops(addr, ops).into_iter().enumerate() {
        assert!(matches!(r, KvResponse::Ok { .. }), "round {round}: {r:?}");
        model.insert(format!("key-{k:04}"), value(k, round));
    }
}

/// Every key of `model` reads back its value; returns how many differ.
fn count_lost(addr: &str, model: &BTreeMap<String, Vec<u8>>) -> usize {
    count_differing(
        addr,
        model.iter().map(|(k, v)| (k.as_bytes(), Some(&v[..]))),
    )
}

#[test]
fn disk_use_settles_under_overwrites_with_continuous_demotion() {
    let dir = test_support::tempdir::TempDir::new("gc-settles");
    // Values are backed by their Raft entries: log compaction alone keeps the log near 6 MiB,
    // below the default start (25 % of the log). Start at 5 % so that passes run and move
    // backed values out of the oldest Raft segments.
    let c = DsConfig {
        gc_start_percent: 5,
        ..cfg(dir.path())
    };
    let node = run(c.clone()).unwrap();
    let addr = node.shard_addrs[0].clone();
    let admin = node.admin_addr.unwrap();
    let mut model = BTreeMap::new();
    let keys = 400; // ~1.6 MB of live values
    let mut most_used = 0f64;
    // 24 rounds write ~38 MB of values (demotion copies none: they are backed by their
    // entries): more than the 32 MiB log.
    for round in 0..24 {
        must_overwrite(&addr, keys, round, &mut model);
        if round >= 12 {
            most_used = most_used.max(metric_until(admin, "ds_log_used_bytes", |_| true));
        }
    }
    let freed = metric_until(admin, "ds_gc_segments_freed_total", |v| v > 0.0);
    let moved = metric_until(admin, "ds_gc_moved_bytes_total", |v| v > 0.0);
    let demoted = metric_until(admin, "ds_demotions_total", |v| v > 0.0);
    let wa = metric_until(admin, "ds_log_write_amplification", |_| true);
    eprintln!(
        "log used at most {most_used} B in the second half; gc freed {freed} segments, \
         moved {moved} B; {demoted} demotions; write amplification {wa}"
    );
    assert!(freed > 0.0 && moved > 0.0 && demoted > 0.0);
    // Every value is a SET: backed by its Raft entry, demoted without a copy; what the
    // collector moved were backed values out of Raft segments (they read back below).
    let backed = metric_until(admin, "ds_backed_values_total", |v| v > 0.0);
    let copied = metric_until(admin, "ds_demoted_bytes_written_total", |_| true);
    assert!(
        backed >= (24 * keys) as f64 && copied == 0.0,
        "backed {backed}, copied {copied}"
    );
    assert!(
        most_used <= (LOG_BYTES / 2) as f64,
        "disk use did not settle: {most_used} bytes of a {LOG_BYTES}-byte log"
    );
    assert_eq!(count_lost(&addr, &model), 0);
    let m = http_ok(admin, "GET", "/metrics");
    for name in [
        "ds_gc_passes_total",
        "ds_log_live_bytes",
        "ds_log_write_amplification",
        "ds_gc_pass_seconds_count",
    ] {
        assert!(m.contains(name), "{name} missing from /metrics");
    }
    drop(node);
    let node = run(c).unwrap();
    assert_eq!(count_lost(&node.shard_addrs[0], &model), 0, "after restart");
}

#[test]
fn hot_values_larger_than_the_log_are_unbacked_not_copied_and_never_fill_it() {
    if common::single::test_checkpoint_mode() == ds_node::CheckpointMode::Index {
        // Files mode only: in index mode every value has its durable copy in the log (the
        // index points there), so hot values larger than the log cannot be held.
        return;
    }
    let dir = test_support::tempdir::TempDir::new("gc-unback");
    // No demotion: every value stays hot, backed by the Raft entry that carried it. 5,000
    // values of 4 KB (20 MB) do not fit the 16 MiB log: once their entries are below a
    // checkpoint, passes must drop those pointers (the values reach the checkpoints from
    // memory) or the log fills and writes stop.
    let c = DsConfig {
        log_file_bytes: 16 << 20,
        demote_every_ms: 0,
        checkpoint_entries: 1000,
        ..cfg(dir.path())
    };
    let node = run(c.clone()).unwrap();
    let admin = node.admin_addr.unwrap();
    let mut model = BTreeMap::new();
    must_overwrite(&node.shard_addrs[0], 5000, 0, &mut model);
    let unbacked = metric_until(admin, "ds_gc_unbacked_bytes_total", |v| v > 0.0);
    let moved = metric_until(admin, "ds_gc_moved_bytes_total", |_| true);
    let demoted = metric_until(admin, "ds_demoted_bytes_written_total", |_| true);
    eprintln!("unbacked {unbacked} B, moved {moved} B, demoted {demoted} B");
    assert!(unbacked > 0.0, "no pointer dropped");
    assert_eq!((moved, demoted), (0.0, 0.0), "a hot value was copied");
    assert_eq!(count_lost(&node.shard_addrs[0], &model), 0);
    drop(node);
    let node = run(c).unwrap();
    assert_eq!(count_lost(&node.shard_addrs[0], &model), 0, "after restart");
}

/// The child of [`kill9_while_collecting_loses_no_acknowledged_write`]: a node that demotes
/// and collects continuously, with collection paced slowly so passes are long, until killed.
#[test]
#[ignore = "a helper run by its parent test"]
fn gc_child_process() {
    serve_child_node(|dir| DsConfig {
        gc_bytes_per_sec: 8 << 20,
        gc_start_percent: 0,
        ..cfg(dir)
    })
}

#[test]
fn kill9_while_collecting_loses_no_acknowledged_write() {
    let dir = test_support::tempdir::TempDir::new("gc-kill9");
    let (port, admin) = (free_addr().port(), free_addr());
    let addr = format!("127.0.0.1:{port}");
    let mut model = BTreeMap::new();
    for attempt in 0..2 {
        let child = spawn_child_node("gc_child_process", dir.path(), port, admin);
        if attempt > 0 {
            assert_eq!(
                count_lost(&addr, &model),
                0,
                "after kill -9 number {attempt}"
            );
        }
        let mut round = attempt * 100;
        let start = Instant::now();
        while start.elapsed() < Duration::from_millis(2500) {
            must_overwrite(&addr, 200, round, &mut model);
            round += 1;
        }
        // Kill while passes run (they are paced to 8 MiB/s) and a last batch is in flight.
        let passes = metric_until(admin, "ds_gc_passes_total", |v| v > 0.0);
        assert!(passes > 0.0, "no collection pass ran");
        kill9_with_batch_in_flight(child, &addr, 100, Retry::NoLeader);
    }
    let _child = spawn_child_node("gc_child_process", dir.path(), port, admin);
    assert_eq!(count_lost(&addr, &model), 0, "after the last kill -9");
}

fn is_disk_full(r: &KvResponse) -> bool {
    matches!(
        r,
        KvResponse::Err {
            error: net::RpcError::DiskFull {}
        }
    )
}

#[test]
fn maxdisksize_refuses_writes_then_accepts_them_after_deletes() {
    let dir = test_support::tempdir::TempDir::new("gc-maxdisksize");
    // Index mode shares the device with the key index's runs and leaves segments free for
    // it (`INDEX_RESERVE_SEGMENTS`): the log file needs that much more room.
    let index = common::single::test_checkpoint_mode() == ds_node::CheckpointMode::Index;
    let c = DsConfig {
        maxdisksize: 12 << 20,
        log_file_bytes: if index {
            LOG_BYTES + (16 << 20)
        } else {
            LOG_BYTES
        },
        ..cfg(dir.path())
    };
    let node = run(c).unwrap();
    let addr = node.shard_addrs[0].clone();
    let admin = node.admin_addr.unwrap();
    // New keys until the node refuses: the live data outgrows the limit.
    let mut model = BTreeMap::new();
    let mut refused = None;
    'fill: for batch in 0..100 {
        let ops: Vec<KvOp> = (0..100)
            .map(|i| set(&format!("key-{:04}", batch * 100 + i), value(i, batch)))
            .collect();
        for (i, r) in run_ops(&addr, ops).into_iter().enumerate() {
            if is_disk_full(&r) {
                refused = Some(batch * 100 + i);
                break 'fill;
            }
            assert!(matches!(r, KvResponse::Ok { .. }), "{r:?}");
            model.insert(format!("key-{:04}", batch * 100 + i), value(i, batch));
        }
    }
    let refused = refused.expect("writes past maxdisksize were refused");
    eprintln!("refused after {refused} keys of 4000 B");
    assert!(metric_until(admin, "ds_disk_full_refusals_total", |v| v >= 1.0) >= 1.0);
    // Reads and deletes keep working on the full node.
    assert_eq!(count_lost(&addr, &model), 0);
    let doomed: Vec<String> = model.keys().filter(|_| true).cloned().collect();
    let doomed: Vec<String> = doomed
        .into_iter()
        .enumerate()
        .filter(|(i, _)| i % 10 != 0)
        .map(|(_, k)| k)
        .collect();
    let dels = doomed
        .iter()
        .map(|k| KvOp::KeyDel {
            key: Bytes::from(k.clone()),
        })
        .collect();
    for r in run_ops(&addr, dels) {
        assert!(
            matches!(r, KvResponse::Ok { .. }),
            "a delete on a full node: {r:?}"
        );
    }
    for k in &doomed {
        model.remove(k);
    }
    // Collection frees the space: writes are accepted again.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = run_ops(&addr, vec![set("after", b"again")]).remove(0);
        if matches!(r, KvResponse::Ok { .. }) {
            break;
        }
        assert!(is_disk_full(&r), "{r:?}");
        assert!(
            Instant::now() < deadline,
            "writes still refused after the deletes"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    model.insert("after".into(), b"again".to_vec());
    assert_eq!(count_lost(&addr, &model), 0);
}
