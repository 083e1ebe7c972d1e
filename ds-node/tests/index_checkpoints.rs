//! `checkpoint-mode = "index"` end to end on a single-replica DS node (real stack: glommio,
//! uring shard log and key index on one device, raft-rs, net): a restart loads keys and
//! pointers from the key index with every value cold and reads back every acknowledged
//! write, hot, cold and computed (INCR, APPEND); deletes and expiries checkpointed as
//! tombstones do not come back; a checkpoint after touching 1 % of the keys writes a small
//! fraction of the first one's bytes; a node killed with SIGKILL mid-load loses nothing.
//! (Splits and snapshot installs in index mode: `tests/shard_crash.rs`.)
#![allow(clippy::unwrap_used)]
// Test threads drive the node from outside its shards: blocking calls are fine here.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::crash::{count_differing, kill9_with_batch_in_flight, serve_child_node};
use common::single::{
    Retry, b, free_addr, metric, metric_settled, metric_until, must_ok, run_ops, run_ops_in_flight,
    set, single_cfg, spawn_child_node,
};
use ds_node::{CheckpointMode, DsConfig, run};
use net::message::kv::{Cond, Expiry, KvOp, KvResponse, OpResult};

fn index_cfg(dir: &std::path::Path) -> DsConfig {
    DsConfig {
        checkpoint_mode: CheckpointMode::Index,
        checkpoint_entries: 50,
        ..single_cfg(dir)
    }
}

fn get(k: &str) -> KvOp {
    KvOp::StrGet { key: b(k) }
}

fn value_of(r: &KvResponse) -> Option<Bytes> {
    match r {
        KvResponse::Ok {
            result: OpResult::Value { value },
        } => value.clone(),
        other => panic!("read failed: {other:?}"),
    }
}

/// 300 strings (backed by their Raft entries), 50 counters and 50 appended strings (values
/// computed at apply time: unbacked until a checkpoint writes them).
fn load_ops() -> Vec<KvOp> {
    let mut ops: Vec<KvOp> = (0..300)
        .map(|i| set(&format!("s{i:03}"), format!("v{i}-{}", "x".repeat(i % 80))))
        .collect();
    for i in 0..50 {
        ops.push(KvOp::StrIncrBy {
            key: b(format!("n{i:02}")),
            delta: i as i64 + 1,
        });
        ops.push(KvOp::StrAppend {
            key: b(format!("a{i:02}")),
            value: b(format!("head{i}")),
        });
        ops.push(KvOp::StrAppend {
            key: b(format!("a{i:02}")),
            value: b("+tail"),
        });
    }
    ops
}

fn all_keys() -> Vec<String> {
    let mut keys: Vec<String> = (0..300).map(|i| format!("s{i:03}")).collect();
    keys.extend((0..50).map(|i| format!("n{i:02}")));
    keys.extend((0..50).map(|i| format!("a{i:02}")));
    keys
}

fn read_all(addr: &str, keys: &[String]) -> Vec<Option<Bytes>> {
    let got = run_ops(addr, keys.iter().map(|k| get(k)).collect());
    got.iter().map(value_of).collect()
}

#[test]
fn restart_loads_keys_with_every_value_cold_and_reads_back_every_write() {
    let dir = test_support::tempdir::TempDir::new("index-restart");
    let c = index_cfg(dir.path());
    let keys = all_keys();
    let (expected, pending);
    {
        let node = run(c.clone()).unwrap();
        let (addr, admin) = (node.shard_addrs[0].clone(), node.admin_addr.unwrap());
        must_ok(&run_ops(&addr, load_ops()));
        // The keys are in the index but for the last few changes (below the checkpoint
        // threshold: they are replayed from the log).
        metric_settled(admin, "ds_lsm_checkpoints_total");
        pending = metric_settled(admin, "ds_index_changed_keys");
        assert!(pending < 50.0, "{pending} keys not checkpointed");
        // A write only in the log's tail (no checkpoint after it: it is replayed).
        must_ok(&run_ops(&addr, vec![set("s000", "tail")]));
        expected = read_all(&addr, &keys);
        drop(node);
    }
    let node = run(c).unwrap();
    let (addr, admin) = (node.shard_addrs[0].clone(), node.admin_addr.unwrap());
    // Loaded from the index: keys and pointers only (the replayed tail is hot).
    let want = 400.0 - pending - 1.0;
    let cold = metric_until(admin, "ds_cold_entries", |v| v >= want);
    assert!(
        cold >= want,
        "cold entries after restart: {cold} (want {want})"
    );
    let got = read_all(&addr, &keys);
    assert_eq!(got, expected);
    assert_eq!(got[0].as_deref(), Some(&b"tail"[..]));
    assert_eq!(got[300].as_deref(), Some(&b"1"[..]), "n00 = 1");
    assert_eq!(got[350].as_deref(), Some(&b"head0+tail"[..]));
}

#[test]
fn deletes_and_expiries_do_not_come_back_after_restart() {
    let dir = test_support::tempdir::TempDir::new("index-deletes");
    let c = index_cfg(dir.path());
    let keys: Vec<String> = (0..200).map(|i| format!("d{i:03}")).collect();
    {
        let node = run(c.clone()).unwrap();
        let (addr, admin) = (node.shard_addrs[0].clone(), node.admin_addr.unwrap());
        must_ok(&run_ops(
            &addr,
            keys.iter().map(|k| set(k, "live")).collect(),
        ));
        metric_until(admin, "ds_index_changed_keys", |v| v == 0.0);
        let checkpoints = metric(admin, "ds_lsm_checkpoints_total");
        // Deleted and expired after the keys reached the index: tombstones and expiries.
        let mut ops: Vec<KvOp> = keys[..100]
            .iter()
            .map(|k| KvOp::KeyDel { key: b(k.clone()) })
            .collect();
        ops.extend(keys[100..150].iter().map(|k| KvOp::StrSet {
            key: b(k.clone()),
            value: b("expiring"),
            expiry: Expiry::At { at_ms: 1 },
            cond: Cond::Always {},
            get_old: false,
        }));
        must_ok(&run_ops(&addr, ops));
        metric_until(admin, "ds_lsm_checkpoints_total", |v| v > checkpoints);
        metric_until(admin, "ds_index_changed_keys", |v| v == 0.0);
        // One more delete only in the log's tail.
        must_ok(&run_ops(&addr, vec![KvOp::KeyDel { key: b("d199") }]));
        drop(node);
    }
    let node = run(c).unwrap();
    let addr = node.shard_addrs[0].clone();
    let got = read_all(&addr, &keys);
    for (i, v) in got.iter().enumerate() {
        let live = (150..199).contains(&i);
        assert_eq!(v.is_some(), live, "{}: {v:?}", keys[i]);
    }
}

#[test]
fn a_checkpoint_after_touching_one_percent_of_keys_writes_a_small_fraction() {
    let dir = test_support::tempdir::TempDir::new("index-incremental");
    let c = DsConfig {
        checkpoint_entries: 40,
        ..index_cfg(dir.path())
    };
    let node = run(c).unwrap();
    let (addr, admin) = (node.shard_addrs[0].clone(), node.admin_addr.unwrap());
    for chunk in 0..10 {
        let ops = (0..500)
            .map(|i| {
                let k = chunk * 500 + i;
                set(&format!("key-{k:05}"), format!("{k}-{}", "v".repeat(100)))
            })
            .collect();
        must_ok(&run_ops(&addr, ops));
    }
    metric_until(admin, "ds_index_changed_keys", |v| v == 0.0);
    // The checkpoints' own bytes (value records and run frames): a compaction of the runs,
    // which may fall on any checkpoint, rewrites the whole index and is not counted.
    let full = metric_settled(admin, "ds_checkpoint_bytes_total");
    let checkpoints = metric(admin, "ds_lsm_checkpoints_total");
    // 1 %: 50 of the 5000 keys.
    let ops = (0..50)
        .map(|i| set(&format!("key-{:05}", i * 100), "touched"))
        .collect();
    must_ok(&run_ops(&addr, ops));
    metric_until(admin, "ds_lsm_checkpoints_total", |v| v > checkpoints);
    metric_until(admin, "ds_index_changed_keys", |v| v == 0.0);
    let after = metric_settled(admin, "ds_checkpoint_bytes_total");
    let incremental = after - full;
    assert!(incremental > 0.0, "no checkpoint after the touch");
    assert!(
        incremental * 20.0 < full,
        "the checkpoint after touching 1 % wrote {incremental} B, the load {full} B"
    );
}

/// A value computed at apply time that is too long for one log record (two APPENDs of
/// 300 KB) cannot be written into the index: its range gets a full range file at each
/// checkpoint instead, so it survives later checkpoints (which remove older files) and a
/// restart.
#[test]
fn an_unbacked_value_too_long_for_a_record_survives_checkpoints_and_restart() {
    let dir = test_support::tempdir::TempDir::new("index-oversized");
    let c = index_cfg(dir.path());
    let half = "z".repeat(300_000);
    {
        let node = run(c.clone()).unwrap();
        let (addr, admin) = (node.shard_addrs[0].clone(), node.admin_addr.unwrap());
        let append = || KvOp::StrAppend {
            key: b("big"),
            value: b(half.clone()),
        };
        must_ok(&run_ops(&addr, vec![append(), append()]));
        for round in 0..3 {
            let before = metric_until(admin, "ds_lsm_checkpoints_total", |v| v.is_finite());
            let ops = (0..60)
                .map(|i| set(&format!("r{round}-{i}"), "small"))
                .collect();
            must_ok(&run_ops(&addr, ops));
            let after = metric_until(admin, "ds_lsm_checkpoints_total", |v| v > before);
            assert!(after > before, "no checkpoint in round {round}");
        }
        assert_eq!(metric(admin, "ds_checkpoint_errors_total"), 0.0);
        drop(node);
    }
    let node = run(c).unwrap();
    let addr = node.shard_addrs[0].clone();
    let got = value_of(&run_ops(&addr, vec![get("big")])[0]);
    assert_eq!(got.map(|v| v.len()), Some(600_000));
    assert_eq!(
        value_of(&run_ops(&addr, vec![get("r2-59")])[0]).as_deref(),
        Some(&b"small"[..])
    );
}

/// A data dir written in files mode (range checkpoint files, some values cold) opens in index
/// mode: the newest range files are the bases, every key reads back, the first index
/// checkpoint takes them all, and a second restart (from the index alone) still has them.
#[test]
fn a_files_mode_data_dir_opens_in_index_mode_with_every_key() {
    let dir = test_support::tempdir::TempDir::new("index-from-files");
    let files = DsConfig {
        checkpoint_mode: CheckpointMode::Files,
        ..index_cfg(dir.path())
    };
    let keys = all_keys();
    let expected;
    {
        let node = run(files).unwrap();
        let (addr, admin) = (node.shard_addrs[0].clone(), node.admin_addr.unwrap());
        must_ok(&run_ops(&addr, load_ops()));
        common::single::demote_all(admin);
        metric_until(admin, "ds_checkpoints_total", |v| v >= 2.0);
        expected = read_all(&addr, &keys);
        drop(node);
    }
    for restart in 0..2 {
        let node = run(index_cfg(dir.path())).unwrap();
        let (addr, admin) = (node.shard_addrs[0].clone(), node.admin_addr.unwrap());
        assert_eq!(read_all(&addr, &keys), expected, "restart {restart}");
        if restart == 0 {
            // Everything loaded from the files is a change: the first checkpoint takes it.
            let ckpts = metric_until(admin, "ds_lsm_checkpoints_total", |v| v >= 1.0);
            assert!(ckpts >= 1.0);
            metric_until(admin, "ds_index_changed_keys", |v| v < 50.0);
            must_ok(&run_ops(
                &addr,
                (0..60).map(|i| set(&format!("x{i}"), "y")).collect(),
            ));
            metric_until(admin, "ds_lsm_checkpoints_total", |v| v > ckpts);
        }
        drop(node);
    }
}

/// The child of [`kill9_in_index_mode_loses_no_acknowledged_write`]: an index-mode node that
/// checkpoints every 30 entries and demotes every 40 ms, until killed.
#[test]
#[ignore = "a helper run by its parent test"]
fn index_child_process() {
    serve_child_node(|dir| DsConfig {
        checkpoint_entries: 30,
        checkpoint_check_ms: 20,
        demote_every_ms: 40,
        ..index_cfg(dir)
    })
}

/// Sets, appends (computed values) and deletes run while the index-mode node checkpoints and
/// demotes; it is killed with SIGKILL with a batch in flight; after a restart every
/// acknowledged write reads back and every acknowledged delete stays deleted.
#[test]
fn kill9_in_index_mode_loses_no_acknowledged_write() {
    let dir = test_support::tempdir::TempDir::new("index-kill9");
    let (port, admin) = (free_addr().port(), free_addr());
    let addr = format!("127.0.0.1:{port}");
    let child = spawn_child_node("index_child_process", dir.path(), port, admin);
    let mut model: std::collections::BTreeMap<Bytes, Option<Vec<u8>>> = Default::default();
    let start = Instant::now();
    let mut round = 0usize;
    while start.elapsed() < Duration::from_millis(2500) {
        let mut ops = Vec::new();
        for i in 0..40 {
            let key = b(format!("k{}", (round * 13 + i) % 300));
            ops.push(match i % 4 {
                0 => KvOp::StrAppend {
                    key,
                    value: b(format!("+{round}")),
                },
                1 => KvOp::KeyDel { key },
                _ => set(
                    &String::from_utf8_lossy(&key),
                    format!("v{round}-{i}-{}", "y".repeat(i * 5)),
                ),
            });
        }
        let r = run_ops(&addr, ops.clone());
        for (op, r) in ops.iter().zip(&r) {
            assert!(matches!(r, KvResponse::Ok { .. }), "{r:?}");
            match op {
                KvOp::StrSet { key, value, .. } => {
                    model.insert(key.clone(), Some(value.to_vec()));
                }
                KvOp::StrAppend { key, value } => {
                    let v = model.entry(key.clone()).or_insert(None);
                    v.get_or_insert_with(Vec::new).extend_from_slice(value);
                }
                KvOp::KeyDel { key } => {
                    model.insert(key.clone(), None);
                }
                _ => unreachable!(),
            }
        }
        round += 1;
    }
    assert!(metric_until(admin, "ds_lsm_checkpoints_total", |v| v > 5.0) > 5.0);
    kill9_with_batch_in_flight(child, &addr, 1, Retry::NoLeader);
    let _child = spawn_child_node("index_child_process", dir.path(), port, admin);
    let lost = count_differing(&addr, model.iter().map(|(k, v)| (&k[..], v.as_deref())));
    assert!(round > 5, "only {round} rounds");
    assert_eq!(
        lost,
        0,
        "{lost} of {} keys differ after kill -9",
        model.len()
    );
}

#[test]
#[ignore = "a helper run by its parent test"]
fn index_child_process_large_captures() {
    // Writes land between the capture's steps (else a step rarely waits for anything).
    let _scenario = fail::FailScenario::setup();
    fail::cfg("ds_node::index_checkpoint::between_capture_steps", "return").unwrap();
    serve_child_node(|dir| DsConfig {
        checkpoint_entries: 2500,
        checkpoint_check_ms: 10,
        ..index_cfg(dir)
    })
}

/// `0..n` in a pseudo-random order fixed by `seed` (Fisher–Yates over an xorshift).
fn shuffled(n: usize, seed: u64) -> Vec<usize> {
    let mut v: Vec<usize> = (0..n).collect();
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    for i in (1..n).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.swap(i, (x % (i as u64 + 1)) as usize);
    }
    v
}

/// Appends (not idempotent: one applied twice shows) to 6,000 keys in a new random order
/// each round, while the node's checkpoints capture thousands of changed keys each, in
/// steps between which the appends keep being applied; killed with SIGKILL while the
/// appends run, restarted: every key holds exactly its acknowledged appends (and those of
/// the batch in flight at most once) — a capture that took a key's value from after its
/// instant would have that key's later appends replayed twice.
#[test]
fn appends_applied_between_capture_steps_are_neither_lost_nor_replayed_twice() {
    let dir = test_support::tempdir::TempDir::new("index-capture-steps");
    let (port, admin) = (free_addr().port(), free_addr());
    let addr = format!("127.0.0.1:{port}");
    let child = spawn_child_node(
        "index_child_process_large_captures",
        dir.path(),
        port,
        admin,
    );
    let keys: Vec<Bytes> = (0..6000).map(|i| b(format!("c{i:05}"))).collect();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (keys, addr, stop) = (keys.clone(), addr.clone(), stop.clone());
        std::thread::spawn(move || append_until_killed(&addr, &keys, &stop))
    };
    let enough = metric_until(admin, "ds_lsm_checkpoints_total", |v| v >= 8.0);
    let steps = metric(admin, "ds_index_capture_step_seconds_count");
    assert!(enough >= 8.0, "{enough} checkpoints");
    assert!(
        steps >= 3.0 * enough,
        "{steps} capture steps for {enough} checkpoints: captures were not taken in steps"
    );
    child.kill9();
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let (model, in_flight, rounds) = writer.join().unwrap();
    assert!(rounds >= 2, "only {rounds} rounds before the kill");
    let _child = spawn_child_node(
        "index_child_process_large_captures",
        dir.path(),
        port,
        admin,
    );
    let got = run_ops(
        &addr,
        keys.iter()
            .map(|k| KvOp::StrGet { key: k.clone() })
            .collect(),
    );
    let mut wrong = 0;
    for (i, r) in got.iter().enumerate() {
        let v = value_of(r).map(|v| v.to_vec()).unwrap_or_default();
        let ok = v == model[i]
            || in_flight
                .as_ref()
                .is_some_and(|(idx, t)| idx.contains(&i) && v == [&model[i][..], t].concat());
        if !ok {
            wrong += 1;
            if wrong < 5 {
                let (v, m) = (
                    String::from_utf8_lossy(&v),
                    String::from_utf8_lossy(&model[i]),
                );
                eprintln!("{:?}: {v:?}, want {m:?}", keys[i]);
            }
        }
    }
    assert_eq!(
        wrong,
        0,
        "{wrong} of {} keys differ after kill -9",
        keys.len()
    );
}

/// The acknowledged appends per key, the batch in flight when the node died (its key
/// indexes and token), and the rounds completed.
type Appended = (Vec<Vec<u8>>, Option<(Vec<usize>, Vec<u8>)>, usize);

/// Appends `"{round}.{batch},"` to every key, a round at a time in batches of 1,000 keys
/// with 64 in flight, until a batch fails (the node was killed) or `stop` is set.
fn append_until_killed(
    addr: &str,
    keys: &[Bytes],
    stop: &std::sync::atomic::AtomicBool,
) -> Appended {
    let mut model: Vec<Vec<u8>> = vec![Vec::new(); keys.len()];
    let mut round = 0usize;
    while !stop.load(std::sync::atomic::Ordering::SeqCst) {
        for (n, chunk) in shuffled(keys.len(), round as u64).chunks(1000).enumerate() {
            let token = format!("{round}.{n},").into_bytes();
            let ops: Vec<KvOp> = chunk
                .iter()
                .map(|&i| KvOp::StrAppend {
                    key: keys[i].clone(),
                    value: Bytes::from(token.clone()),
                })
                .collect();
            let acked = std::panic::catch_unwind(|| run_ops_in_flight(addr, ops, 64))
                .is_ok_and(|r| r.iter().all(|x| matches!(x, KvResponse::Ok { .. })));
            if !acked {
                return (model, Some((chunk.to_vec(), token)), round);
            }
            chunk
                .iter()
                .for_each(|&i| model[i].extend_from_slice(&token));
        }
        round += 1;
    }
    (model, None, round)
}

/// One measurement of [`checkpoint_cost_files_vs_index`]: checkpoint bytes while loading, then
/// while overwriting 1 % of the keys, and the propose→apply p99.9 over the whole run.
fn measure(mode: CheckpointMode) -> (f64, f64, f64) {
    let dir = test_support::tempdir::TempDir::new("index-bench");
    let c = DsConfig {
        checkpoint_mode: mode,
        checkpoint_entries: 2000,
        log_file_bytes: 512 << 20,
        segment_bytes: 8 << 20,
        ..single_cfg(dir.path())
    };
    let node = run(c).unwrap();
    let (addr, admin) = (node.shard_addrs[0].clone(), node.admin_addr.unwrap());
    let value = |k: usize, round: usize| format!("{k}-{round}-{}", "v".repeat(1000));
    for chunk in 0..40 {
        let ops = (0..500)
            .map(|i| set(&format!("key-{:05}", chunk * 500 + i), value(i, 0)))
            .collect();
        must_ok(&run_ops(&addr, ops));
    }
    let loaded = metric_settled(admin, "ds_checkpoint_bytes_total");
    for round in 1..=10 {
        let ops = (0..200)
            .map(|i| set(&format!("key-{:05}", i * 100), value(i, round)))
            .collect();
        must_ok(&run_ops(&addr, ops));
    }
    let touched = metric_settled(admin, "ds_checkpoint_bytes_total") - loaded;
    let text = common::single::http(admin, "GET", "/metrics").1;
    let p999 = text
        .lines()
        .find(|l| l.starts_with("ds_raft_propose_apply_seconds{quantile=\"0.999\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(f64::NAN);
    (loaded, touched, p999 * 1e3)
}

/// Benchmark (run by hand, `docs/benchmarks.md`): 20,000 SETs of 1 KiB, then 2,000 SETs
/// overwriting 1 % of the keys, `checkpoint-entries = 2000`, files vs index mode alternated
/// three times; prints the checkpoint bytes of each phase and the propose→apply p99.9.
#[test]
#[ignore = "a benchmark, run by hand"]
fn checkpoint_cost_files_vs_index() {
    let mut rows = Vec::new();
    for _ in 0..3 {
        for mode in [CheckpointMode::Files, CheckpointMode::Index] {
            let (l, t, p) = measure(mode);
            eprintln!("{mode:?}: load {l} B, 1 % overwrites {t} B, p99.9 {p:.2} ms");
            rows.push((mode, l, t, p));
        }
    }
    for mode in [CheckpointMode::Files, CheckpointMode::Index] {
        let median = |f: fn(&(CheckpointMode, f64, f64, f64)) -> f64| {
            let mut v: Vec<f64> = rows.iter().filter(|r| r.0 == mode).map(f).collect();
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        eprintln!(
            "median {mode:?}: load {} B, 1 % overwrites {} B, p99.9 {:.2} ms",
            median(|r| r.1),
            median(|r| r.2),
            median(|r| r.3)
        );
    }
}
