//! `maxmemory` end to end on a single-replica DS node (real stack: glommio, uring shard log,
//! raft-rs, net): twelve times `maxmemory` of 4 KiB values is written through Raft while the
//! memory policy demotes; the shard's accounted memory (held under the write line by
//! backpressure, `server::throttle`) and the process's RSS stay bounded;
//! the shard ends under its budget; every key reads back with its value (cold ones from the
//! device).
#![allow(clippy::unwrap_used)]
// Test threads drive the node from outside its shards: blocking calls are fine here.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::crash::{
    count_differing, kill9_with_batch_in_flight, must_write_acknowledged, serve_child_node,
};
use common::single::{
    Retry, call, free_addr, metric_at_least, set, single_cfg, spawn_child_node, with_client,
};
use ds_node::{DsConfig, run};
use net::message::kv::{Expiry, KvOp, KvResponse, OpResult, WriteOp};

const MAXMEMORY: u64 = 8 << 20;
const VALUE: usize = 4096;
/// 12 × `MAXMEMORY` of values.
const KEYS: usize = (12 * MAXMEMORY as usize) / VALUE;
const BATCH: usize = 32;
const STREAMS: usize = 4;

fn cfg(dir: &std::path::Path) -> DsConfig {
    DsConfig {
        log_file_bytes: 320 << 20,
        segment_bytes: 8 << 20,
        cached_entries: 16,
        maxmemory: MAXMEMORY,
        policy_tick_ms: 10,
        ..single_cfg(dir)
    }
}

/// Metric `name` as published now, as an integer.
fn metric(admin: std::net::SocketAddr, name: &str) -> u64 {
    common::single::metric(admin, name) as u64
}

fn key(i: usize) -> Bytes {
    Bytes::from(format!("k{i:07}"))
}

/// The value of key `i`: its number, then a byte pattern of it.
fn value(i: usize) -> Bytes {
    let mut v = format!("{i:07}:").into_bytes();
    v.resize(VALUE, (i % 251) as u8);
    Bytes::from(v)
}

/// Runs batches `0..n` (made by `make`, answers checked by `check`) on `STREAMS` concurrent
/// streams, each op retried while there is no leader yet; nothing is kept (the test's own
/// memory stays out of the RSS figures).
fn run_batches(addr: &str, n: usize, make: fn(usize) -> KvOp, check: fn(usize, KvResponse)) {
    with_client(addr, move |c| async move {
        let mut tasks = Vec::new();
        for s in 0..STREAMS {
            let c = c.clone();
            tasks.push(glommio::spawn_local(async move {
                for i in (s..n).step_by(STREAMS) {
                    check(i, call(&c, make(i), Retry::NoLeaderOrOom).await);
                }
            }));
        }
        for t in tasks {
            t.await;
        }
    });
}

fn batch_keys(b: usize) -> std::ops::Range<usize> {
    b * BATCH..((b + 1) * BATCH).min(KEYS)
}

fn write_batch(b: usize) -> KvOp {
    KvOp::BatchWrite {
        ops: batch_keys(b)
            .map(|i| WriteOp::Put {
                key: key(i),
                value: value(i),
                expiry: Expiry::Persist {},
            })
            .collect(),
    }
}

fn must_ok(_: usize, r: KvResponse) {
    assert!(matches!(r, KvResponse::Ok { .. }), "{r:?}");
}

fn read_batch(b: usize) -> KvOp {
    KvOp::BatchGet {
        keys: batch_keys(b).map(key).collect(),
    }
}

fn must_read_back(b: usize, r: KvResponse) {
    let KvResponse::Ok {
        result: OpResult::Values { values },
    } = r
    else {
        panic!("{r:?}")
    };
    assert_eq!(values.len(), batch_keys(b).len());
    for (i, v) in batch_keys(b).zip(values) {
        assert_eq!(v.as_deref(), Some(&value(i)[..]), "key {i}");
    }
}

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib << 10
}

/// Samples the accounted memory and RSS every 20 ms until stopped: (peak accounted, peak RSS).
fn sampler(admin: std::net::SocketAddr) -> (Arc<AtomicBool>, std::thread::JoinHandle<(u64, u64)>) {
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let h = std::thread::spawn(move || {
        let (mut acc, mut rss) = (0u64, 0u64);
        while !s.load(Ordering::Relaxed) {
            acc = acc.max(metric(admin, "ds_memory_accounted_bytes"));
            rss = rss.max(rss_bytes());
            std::thread::sleep(Duration::from_millis(20));
        }
        (acc, rss)
    });
    (stop, h)
}

#[test]
fn twelve_times_maxmemory_stays_bounded_and_every_key_reads_back() {
    let dir = test_support::tempdir::TempDir::new("maxmemory");
    let node = run(cfg(dir.path())).unwrap();
    let addr = node.shard_addrs[0].clone();
    let admin = node.admin_addr.unwrap();
    let rss_start = rss_bytes();
    let (stop, samples) = sampler(admin);
    let t = Instant::now();
    let batches = KEYS.div_ceil(BATCH);
    run_batches(&addr, batches, write_batch, must_ok);
    let wrote = t.elapsed();
    // The shard ends under its budget.
    let deadline = Instant::now() + Duration::from_secs(20);
    while metric(admin, "ds_memory_accounted_bytes") > MAXMEMORY && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let settled = metric(admin, "ds_memory_accounted_bytes");
    // The peak after an apply, before the read-back loads cold values.
    let peak = metric(admin, "ds_memory_accounted_peak_bytes");
    // Every key reads back (most from the device).
    run_batches(&addr, batches, read_batch, must_read_back);
    stop.store(true, Ordering::Relaxed);
    let (peak_accounted, peak_rss) = samples.join().unwrap();
    let demoted = metric_at_least(admin, "ds_policy_demotions_total", KEYS as u64 / 2);
    let cold_reads = metric_at_least(admin, "ds_cold_reads_total", KEYS as u64 / 2);
    let stuck = metric(admin, "ds_policy_stuck_total");
    let data = (KEYS * VALUE) as u64;
    eprintln!(
        "maxmemory {} MiB, data {} MiB in {wrote:?}: accounted peak {} KiB, settled {} KiB; \
         RSS start {} MiB, peak {} MiB; demoted {demoted}, cold reads {cold_reads}, stuck {stuck}",
        MAXMEMORY >> 20,
        data >> 20,
        peak_accounted >> 10,
        settled >> 10,
        rss_start >> 20,
        peak_rss >> 20,
    );
    assert!(settled <= MAXMEMORY, "settled at {settled}");
    // Writes wait for demotion above 110 % of the budget (`server::throttle`): the peak,
    // taken by the shard after every apply, is at most the line plus one batch (32 values,
    // their entries' overhead) and one new arena page of each node kind (720,896 bytes, what
    // an empty tree reserves), whatever the machine's load (775 KiB above the line measured).
    let line = MAXMEMORY / 100 * 110;
    eprintln!(
        "peak after an apply {} KiB (line {} KiB); throttled {}, refused {}",
        peak >> 10,
        line >> 10,
        metric(admin, "ds_write_throttled_total"),
        metric(admin, "ds_write_oom_refused_total")
    );
    assert!(
        peak <= line + (BATCH * VALUE) as u64 + 720_896 + (128 << 10),
        "accounted memory peaked at {peak} after an apply (line {line})"
    );
    // The sampled figure also covers the read-back, which writes nothing: cold values loaded
    // for reads stay (transient) while other loads are in flight (1.1–1.8 × the budget
    // measured here); reads are never throttled.
    assert!(
        peak_accounted <= 3 * MAXMEMORY,
        "accounted memory peaked at {peak_accounted}"
    );
    // RSS also holds what maxmemory does not count (the log's buffers, checkpoints the
    // half-full log triggers, Raft's cache, the test's client, glibc's kept blocks): 47–86
    // MiB measured; bounded well below the data.
    assert!(
        peak_rss < rss_start + data,
        "RSS peaked at {peak_rss} (start {rss_start}) for {data} bytes of data"
    );
    assert!(demoted as usize >= KEYS / 2, "demoted {demoted}");
    assert!(cold_reads as usize >= KEYS / 2, "cold reads {cold_reads}");
    assert_eq!(metric(admin, "ds_cold_read_errors_total"), 0);
    assert_eq!(metric(admin, "ds_cold_misses_total"), 0);
    node.shutdown().unwrap();
}

/// Budget of the crash test's node: just over an empty tree's arena page (720,896 bytes),
/// so that a few hundred KiB of values keep the policy demoting.
const CHILD_MAXMEMORY: u64 = 1 << 20;

/// The child of [`kill9_while_the_policy_demotes_loses_no_acknowledged_write`]: a node with
/// a 1 MiB `maxmemory` that checkpoints every 100 entries, until killed.
#[test]
#[ignore = "a helper run by its parent test"]
fn maxmemory_child_process() {
    serve_child_node(|dir| DsConfig {
        log_file_bytes: 256 << 20,
        checkpoint_entries: 100,
        checkpoint_check_ms: 20,
        maxmemory: CHILD_MAXMEMORY,
        ..cfg(dir)
    })
}

/// Sets, overwrites and appends (appends load values the policy made cold) run while the
/// policy demotes to stay under 1 MiB; the node is killed with SIGKILL while a batch is in
/// flight; after a restart every acknowledged write reads back.
#[test]
fn kill9_while_the_policy_demotes_loses_no_acknowledged_write() {
    let dir = test_support::tempdir::TempDir::new("maxmemory-kill9");
    let (port, admin) = (free_addr().port(), free_addr());
    let addr = format!("127.0.0.1:{port}");
    let child = spawn_child_node("maxmemory_child_process", dir.path(), port, admin);
    let mut model = std::collections::BTreeMap::new();
    let start = Instant::now();
    let mut round = 0usize;
    while start.elapsed() < Duration::from_millis(2500) {
        let mut ops = Vec::new();
        for i in 0..40 {
            let key = format!("k{}", (round * 13 + i) % 400);
            if i % 3 == 0 {
                ops.push(KvOp::StrAppend {
                    key: Bytes::from(key),
                    value: Bytes::from(format!("+{round}")),
                });
            } else {
                ops.push(set(
                    &key,
                    format!("v{round}-{i}-{}", "y".repeat(1000 + i * 40)),
                ));
            }
        }
        // Retried while memory is over the write line too (only on a machine so loaded that
        // the policy could not run for seconds: a Redis client backs off on `-OOM` too).
        must_write_acknowledged(&addr, ops, Retry::NoLeaderOrOom, &mut model);
        round += 1;
    }
    assert!(metric_at_least(admin, "ds_policy_demotions_total", 101) > 100);
    assert!(metric_at_least(admin, "ds_cold_reads_total", 11) > 10);
    // Kill while a last batch is in flight (its outcome is unknown: not in the model).
    kill9_with_batch_in_flight(child, &addr, 1, Retry::NoLeaderOrOom);
    let _child = spawn_child_node("maxmemory_child_process", dir.path(), port, admin);
    let lost = count_differing(&addr, model.iter().map(|(k, v)| (&k[..], Some(&v[..]))));
    assert!(round > 5, "only {round} rounds");
    assert_eq!(
        lost,
        0,
        "{lost} of {} keys differ after kill -9",
        model.len()
    );
}
