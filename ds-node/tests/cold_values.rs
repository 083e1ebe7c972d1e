//! Cold values end to end on a single-replica DS node (real stack: glommio, uring shard log,
//! raft-rs, net): values of every type demoted through the admin endpoint's `POST /demote`
//! read back identical, through single reads, multi-key reads and scans; writes to cold
//! entries apply to the right values; a corrupted cold value is an error reply and a
//! counter, never data; a restart keeps every acknowledged write with the demoted values
//! still cold (checkpoint pointers); segments holding live values survive log compaction
//! while cold reads run concurrently.
#![allow(clippy::unwrap_used)]
// Test threads drive the node from outside its shards: blocking calls are fine here.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::crash::{
    count_differing, kill9_with_batch_in_flight, must_write_acknowledged, serve_child_node,
};
use common::single::{
    Retry, b, corrupt_in_log, demote_all, free_addr, http, metric_until, must_ok, run_ops, set,
    single_cfg, spawn_child_node,
};
use ds_node::{DsConfig, run};
use net::message::kv::{KvOp, KvResponse, OpResult};
use net::message::list::ListOp;
use net::message::set::SetOp;
use net::message::zset::ZSetOp;

fn get(k: &str) -> KvOp {
    KvOp::StrGet { key: b(k) }
}

fn hash_field(i: usize) -> (Bytes, Bytes) {
    (
        b(format!("field-{i:03}")),
        b(format!("hash-value-{i}-{}", "h".repeat(i % 50))),
    )
}

/// Writes of every type: strings, a hash, a list, a set, a sorted set.
fn load_ops() -> Vec<KvOp> {
    let mut ops: Vec<KvOp> = (0..300)
        .map(|i| {
            set(
                &format!("str-{i:03}"),
                format!("value-{i}-{}", "x".repeat(i % 90)),
            )
        })
        .collect();
    ops.push(KvOp::HSet {
        key: b("hash"),
        pairs: (0..200).map(hash_field).collect(),
        only_new: false,
    });
    ops.push(KvOp::List {
        op: ListOp::Push {
            key: b("list"),
            elements: (0..100).map(|i| b(format!("element-{i}"))).collect(),
            left: false,
            only_existing: false,
        },
    });
    ops.push(KvOp::Set {
        op: SetOp::Add {
            key: b("set"),
            members: (0..100).map(|i| b(format!("member-{i}"))).collect(),
        },
    });
    ops.push(KvOp::ZSet {
        op: ZSetOp::Add {
            key: b("zset"),
            flags: 0,
            scores: (0..100).map(|i| i as f64 * 1.5).collect(),
            members: (0..100).map(|i| b(format!("z-{i}"))).collect(),
        },
    });
    ops
}

/// Reads that cover every value written by [`load_ops`], one by one and many at once.
fn read_ops() -> Vec<KvOp> {
    let mut ops: Vec<KvOp> = (0..300).map(|i| get(&format!("str-{i:03}"))).collect();
    ops.push(KvOp::Multi {
        watches: vec![],
        ops: (0..300)
            .step_by(7)
            .map(|i| get(&format!("str-{i:03}")))
            .collect(),
    });
    ops.push(KvOp::HGetAll { key: b("hash") });
    ops.push(KvOp::HGet {
        key: b("hash"),
        field: hash_field(17).0,
    });
    ops.push(KvOp::List {
        op: ListOp::Range {
            key: b("list"),
            start: 0,
            stop: -1,
        },
    });
    ops.push(KvOp::Set {
        op: SetOp::Members { key: b("set") },
    });
    ops.push(KvOp::ZSet {
        op: ZSetOp::Scores {
            key: b("zset"),
            members: (0..100).map(|i| b(format!("z-{i}"))).collect(),
        },
    });
    ops.push(KvOp::KeyScan {
        cursor: Bytes::new(),
        count: 5000,
        type_filter: None,
    });
    ops
}

/// Key scans of the whole keyspace, following cursors, with every page's keys.
fn scan_all(addr: &str) -> Vec<Bytes> {
    let mut keys = Vec::new();
    let mut cursor = Bytes::new();
    loop {
        let r = run_ops(
            addr,
            vec![KvOp::KeyScan {
                cursor: cursor.clone(),
                count: 64,
                type_filter: None,
            }],
        );
        match &r[0] {
            KvResponse::Ok {
                result: OpResult::KeyScan { keys: k, next },
            } => {
                keys.extend(k.iter().cloned());
                match next {
                    Some(n) => cursor = n.clone(),
                    None => return keys,
                }
            }
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn demoted_values_of_every_type_read_back_identical() {
    let dir = test_support::tempdir::TempDir::new("cold-read-back");
    let node = run(single_cfg(dir.path())).unwrap();
    let addr = node.shard_addrs[0].clone();
    let admin = node.admin_addr.unwrap();
    must_ok(&run_ops(&addr, load_ops()));
    let before = run_ops(&addr, read_ops());
    let keys_before = scan_all(&addr);
    assert!(keys_before.len() >= 304, "{}", keys_before.len());
    let report = demote_all(admin);
    assert!(report.contains("entries="), "{report}");
    let cold = metric_until(admin, "ds_cold_entries", |v| v >= 300.0 + 200.0 + 300.0);
    assert!(cold >= 800.0, "cold entries {cold}");
    let hot = metric_until(admin, "ds_value_bytes{tier=\"hot\"}", |v| v < 4096.0);
    assert!(hot < 4096.0, "hot value bytes left: {hot}");
    // Scans over cold metadata (every key's entry is cold now) see the same keys.
    assert_eq!(scan_all(&addr), keys_before);
    // Demote again between groups of reads: every group loads its values from the device.
    let mut after = Vec::new();
    for ops in read_ops().chunks(25) {
        demote_all(admin);
        after.extend(run_ops(&addr, ops.to_vec()));
    }
    assert_eq!(after, before);
    let reads = metric_until(admin, "ds_cold_reads_total", |v| v >= 800.0);
    assert!(reads >= 800.0, "cold reads {reads}");
    assert_eq!(
        metric_until(admin, "ds_cold_read_errors_total", |v| v == 0.0),
        0.0
    );
}

#[test]
fn writes_to_cold_entries_apply_to_their_values() {
    let dir = test_support::tempdir::TempDir::new("cold-writes");
    let node = run(single_cfg(dir.path())).unwrap();
    let addr = node.shard_addrs[0].clone();
    let admin = node.admin_addr.unwrap();
    must_ok(&run_ops(
        &addr,
        vec![
            set("counter", "41"),
            set("text", "hello"),
            KvOp::HSet {
                key: b("h"),
                pairs: vec![(b("n"), b("10")), (b("s"), b("abc"))],
                only_new: false,
            },
        ],
    ));
    demote_all(admin);
    let r = run_ops(
        &addr,
        vec![
            KvOp::StrIncrBy {
                key: b("counter"),
                delta: 1,
            },
            KvOp::StrAppend {
                key: b("text"),
                value: b(" world"),
            },
            KvOp::HIncrBy {
                key: b("h"),
                field: b("n"),
                delta: 5,
            },
        ],
    );
    must_ok(&r);
    demote_all(admin);
    let r = run_ops(
        &addr,
        vec![get("counter"), get("text"), KvOp::HGetAll { key: b("h") }],
    );
    let value = |r: &KvResponse| match r {
        KvResponse::Ok {
            result: OpResult::Value { value },
        } => value.clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!(value(&r[0]), Some(b("42")));
    assert_eq!(value(&r[1]), Some(b("hello world")));
    match &r[2] {
        KvResponse::Ok {
            result: OpResult::Pairs { pairs },
        } => assert_eq!(pairs, &vec![(b("n"), b("15")), (b("s"), b("abc"))]),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_corrupted_cold_value_is_an_error_reply_not_data() {
    let dir = test_support::tempdir::TempDir::new("cold-corrupt");
    let node = run(single_cfg(dir.path())).unwrap();
    let addr = node.shard_addrs[0].clone();
    let admin = node.admin_addr.unwrap();
    let needle = format!("precious-{}-{}", std::process::id(), "p".repeat(200));
    must_ok(&run_ops(
        &addr,
        vec![set("victim", &needle), set("bystander", "fine")],
    ));
    demote_all(admin);
    assert!(corrupt_in_log(dir.path(), needle.as_bytes()) >= 1);
    let r = run_ops(&addr, vec![get("victim"), get("bystander"), get("victim")]);
    for i in [0, 2] {
        match &r[i] {
            KvResponse::Err {
                error: net::RpcError::Internal { code, message },
            } => {
                assert_eq!(*code, 4, "{message}");
                assert!(message.contains("checksum"), "{message}");
            }
            other => panic!("a corrupted value must not read back: {other:?}"),
        }
    }
    assert_eq!(
        r[1],
        KvResponse::Ok {
            result: OpResult::Value {
                value: Some(b("fine"))
            }
        }
    );
    let failures = metric_until(admin, "ds_cold_checksum_failures_total", |v| v >= 2.0);
    assert!(failures >= 2.0, "checksum failures {failures}");
}

#[test]
fn restart_keeps_acknowledged_writes_and_demoted_values_stay_cold() {
    let dir = test_support::tempdir::TempDir::new("cold-restart");
    let c = DsConfig {
        checkpoint_entries: 50,
        ..single_cfg(dir.path())
    };
    let expected: Vec<KvResponse>;
    {
        let node = run(c.clone()).unwrap();
        let addr = node.shard_addrs[0].clone();
        let admin = node.admin_addr.unwrap();
        must_ok(&run_ops(&addr, load_ops()));
        demote_all(admin);
        // Writes after the demotion (some overwrite cold values), then a checkpoint that
        // names the cold ones by pointer, then more writes only in the log's tail.
        let mut more: Vec<KvOp> = (0..100)
            .map(|i| set(&format!("str-{:03}", i * 3), format!("rewritten-{i}")))
            .collect();
        more.push(KvOp::StrAppend {
            key: b("str-001"),
            value: b("-appended"),
        });
        must_ok(&run_ops(&addr, more));
        metric_until(admin, "ds_checkpoints_total", |v| v >= 2.0);
        demote_all(admin);
        must_ok(&run_ops(&addr, vec![set("str-002", "tail-write")]));
        expected = run_ops(&addr, read_ops());
        drop(node);
    }
    let node = run(c).unwrap();
    let addr = node.shard_addrs[0].clone();
    let admin = node.admin_addr.unwrap();
    let cold = metric_until(admin, "ds_cold_entries", |v| v >= 500.0);
    assert!(cold >= 500.0, "cold entries after restart: {cold}");
    assert_eq!(run_ops(&addr, read_ops()), expected);
}

#[test]
fn segments_with_live_values_survive_compaction_while_cold_reads_run() {
    let dir = test_support::tempdir::TempDir::new("cold-compaction");
    let c = DsConfig {
        checkpoint_entries: 200,
        ..single_cfg(dir.path())
    };
    let node = run(c.clone()).unwrap();
    let addr = node.shard_addrs[0].clone();
    let admin = node.admin_addr.unwrap();
    let filler = |round: usize| -> Vec<KvOp> {
        (0..400)
            .map(|i| {
                set(
                    &format!("fill-{i}"),
                    format!("{round}-{}", "f".repeat(4000)),
                )
            })
            .collect()
    };
    // Old segments full of overwritten values, then the demoted values, then more.
    for round in 0..3 {
        must_ok(&run_ops(&addr, filler(round)));
    }
    must_ok(&run_ops(&addr, load_ops()));
    let expected = run_ops(&addr, read_ops());
    demote_all(admin);
    let freed_before = metric_until(admin, "ds_log_segments_freed_total", |v| v > 0.0);
    let writing = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let reader = {
        let (addr, admin, expected) = (addr.clone(), admin, expected.clone());
        let writing = writing.clone();
        std::thread::spawn(move || {
            let mut rounds = 0;
            while writing.load(std::sync::atomic::Ordering::SeqCst) || rounds == 0 {
                demote_all(admin);
                assert_eq!(run_ops(&addr, read_ops()), expected);
                rounds += 1;
            }
            rounds
        })
    };
    for round in 3..8 {
        must_ok(&run_ops(&addr, filler(round)));
    }
    writing.store(false, std::sync::atomic::Ordering::SeqCst);
    let rounds = reader.join().unwrap();
    assert!(rounds >= 1);
    // Compaction ran (segments before the demoted values were freed; checkpoints naming
    // pointers were written after the demotion); the segments holding live values stay.
    assert!(freed_before > 0.0, "no segment was freed ({freed_before})");
    let checkpoints = metric_until(admin, "ds_checkpoints_total", |v| v >= 6.0);
    assert!(checkpoints >= 6.0, "{checkpoints} checkpoints");

    let live = http(admin, "GET", "/metrics").1;
    assert!(
        live.contains("ds_log_segment_live_bytes{shard=\"0\""),
        "{live}"
    );
    drop(node);
    let node = run(c).unwrap();
    let addr = node.shard_addrs[0].clone();
    assert_eq!(run_ops(&addr, read_ops()), expected);
}

/// The child of [`kill9_with_periodic_demotion_loses_no_acknowledged_write`]: a node that
/// demotes everything every 30 ms and checkpoints every 100 entries, until killed.
#[test]
#[ignore = "a helper run by its parent test"]
fn cold_child_process() {
    serve_child_node(|dir| DsConfig {
        checkpoint_entries: 100,
        checkpoint_check_ms: 20,
        demote_every_ms: 30,
        ..single_cfg(dir)
    })
}

/// Writes (new keys, overwrites and appends to keys that periodic demotion keeps making
/// cold) run while the node demotes and checkpoints; the node is killed with SIGKILL; after
/// a restart every acknowledged write reads back.
#[test]
fn kill9_with_periodic_demotion_loses_no_acknowledged_write() {
    let dir = test_support::tempdir::TempDir::new("cold-kill9");
    let (port, admin) = (free_addr().port(), free_addr());
    let addr = format!("127.0.0.1:{port}");
    let child = spawn_child_node("cold_child_process", dir.path(), port, admin);
    // Acknowledged state: key -> value, in order.
    let mut model = std::collections::BTreeMap::new();
    let start = Instant::now();
    let mut round = 0;
    while start.elapsed() < Duration::from_millis(2500) {
        let mut ops = Vec::new();
        for i in 0..40 {
            let key = format!("k{}", (round * 13 + i) % 300);
            if i % 3 == 0 {
                ops.push(KvOp::StrAppend {
                    key: b(key.clone()),
                    value: b(format!("+{round}")),
                });
            } else {
                ops.push(set(&key, format!("v{round}-{i}-{}", "y".repeat(i * 5))));
            }
        }
        must_write_acknowledged(&addr, ops, Retry::NoLeader, &mut model);
        round += 1;
    }
    // The writes reached cold values (appends load them) while demotion ran.
    assert!(metric_until(admin, "ds_demotions_total", |v| v > 100.0) > 100.0);
    assert!(metric_until(admin, "ds_cold_reads_total", |v| v > 10.0) > 10.0);
    // Kill while a last batch is in flight (its outcome is unknown: not in the model).
    kill9_with_batch_in_flight(child, &addr, 1, Retry::NoLeader);
    let _child = spawn_child_node("cold_child_process", dir.path(), port, admin);
    let lost = count_differing(&addr, model.iter().map(|(k, v)| (&k[..], Some(&v[..]))));
    assert!(round > 5, "only {round} rounds");
    assert_eq!(
        lost,
        0,
        "{lost} of {} keys differ after kill -9",
        model.len()
    );
}
