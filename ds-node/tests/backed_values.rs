//! Values backed by the Raft entries that carried them (`docs/format/shard-log.md` §3,
//! "Backed values"), end to end on a single-replica DS node (glommio, uring shard log,
//! raft-rs, net): SET values and hash fields are recorded backed when applied, so demoting
//! them writes nothing to the device (the shard log's own byte counter barely moves and no
//! demoted-value record is written) and they read back identical from their entries; values
//! computed at apply time (INCR, APPEND) are still written when demoted; a restart keeps
//! every value (cold ones through checkpoint pointers into Raft entries, leading byte
//! included); a corrupted byte in a backed value is an error reply, never data.
//!
//! Kill -9 with continuous demotion of backed values is `cold_values.rs`
//! (`kill9_with_periodic_demotion_loses_no_acknowledged_write`); the collector moving backed
//! values out of Raft segments is `gc_node.rs` (`disk_use_settles_…`).
#![allow(clippy::unwrap_used)]
// Test threads drive the node from outside its shards: blocking calls are fine here.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod common;

use common::single::{
    b, corrupt_in_log, demote_all, metric_settled, metric_until, must_ok, run_ops, set, single_cfg,
};
use ds_node::{DsConfig, run};
use net::message::kv::{KvOp, KvResponse, OpResult};

fn str_value(i: usize) -> String {
    format!("string-{i}-{}", "s".repeat(2000 + i))
}

fn field_value(i: usize) -> String {
    format!("field-value-{i}-{}", "f".repeat(1000 + i))
}

/// 200 strings of ~2 KiB and a hash of 50 fields of ~1 KiB: every value set verbatim.
fn load_ops() -> Vec<KvOp> {
    let mut ops: Vec<KvOp> = (0..200)
        .map(|i| set(&format!("str-{i:03}"), str_value(i)))
        .collect();
    ops.push(KvOp::HSet {
        key: b("hash"),
        pairs: (0..50)
            .map(|i| (b(format!("f-{i:02}")), b(field_value(i))))
            .collect(),
        only_new: false,
    });
    ops
}

fn value(v: impl Into<String>) -> KvResponse {
    KvResponse::Ok {
        result: OpResult::Value { value: Some(b(v)) },
    }
}

/// Reads every loaded value and checks it (each read of a cold value is a device read).
fn must_read_back(addr: &str) {
    let mut ops: Vec<KvOp> = (0..200)
        .map(|i| KvOp::StrGet {
            key: b(format!("str-{i:03}")),
        })
        .collect();
    ops.extend((0..50).map(|i| KvOp::HGet {
        key: b("hash"),
        field: b(format!("f-{i:02}")),
    }));
    let got = run_ops(addr, ops);
    for (i, r) in got.iter().enumerate() {
        let want = if i < 200 {
            str_value(i)
        } else {
            field_value(i - 200)
        };
        assert_eq!(r, &value(want), "read {i}");
    }
}

#[test]
fn set_values_are_backed_and_demoting_them_writes_nothing() {
    let dir = test_support::tempdir::TempDir::new("backed-demote");
    let node = run(single_cfg(dir.path())).unwrap();
    let addr = node.shard_addrs[0].clone();
    let admin = node.admin_addr.unwrap();
    must_ok(&run_ops(&addr, load_ops()));
    let backed = metric_until(admin, "ds_backed_values_total", |v| v >= 250.0);
    assert!(backed >= 250.0, "backed values {backed}");
    let written = metric_settled(admin, "ds_log_device_written_bytes_total");
    let report = demote_all(admin);
    assert!(report.contains("entries="), "{report}");
    let cold = metric_until(admin, "ds_cold_entries", |v| v >= 250.0);
    assert!(cold >= 250.0, "cold entries {cold}");
    // ~450 KiB of values made cold: a copy of them would show; a checkpoint record may not.
    let delta = metric_settled(admin, "ds_log_device_written_bytes_total") - written;
    assert!(delta < 64.0 * 1024.0, "demotion wrote {delta} bytes");
    // Only the hash's metadata entry (type, version, count: computed) is written, one record.
    let copied = metric_settled(admin, "ds_demoted_bytes_written_total");
    assert!(copied <= 64.0, "demotion copied {copied} bytes");
    must_read_back(&addr);
    let reads = metric_until(admin, "ds_cold_reads_total", |v| v >= 250.0);
    assert!(reads >= 250.0, "cold reads {reads}");

    // Values computed at apply time are not slices of their entry: demotion writes them.
    must_ok(&run_ops(
        &addr,
        vec![
            KvOp::StrIncrBy {
                key: b("counter"),
                delta: 41,
            },
            KvOp::StrAppend {
                key: b("str-000"),
                value: b("-appended"),
            },
        ],
    ));
    demote_all(admin);
    let demoted = metric_until(admin, "ds_demoted_bytes_written_total", |v| v > copied);
    assert!(demoted > copied, "computed values were not written");
    let r = run_ops(
        &addr,
        vec![
            KvOp::StrGet { key: b("counter") },
            KvOp::StrGet { key: b("str-000") },
            KvOp::StrGet { key: b("str-001") },
        ],
    );
    assert_eq!(
        r,
        vec![
            value("41"),
            value(format!("{}-appended", str_value(0))),
            value(str_value(1))
        ]
    );
}

#[test]
fn backed_values_demoted_before_a_checkpoint_read_back_after_restart() {
    let dir = test_support::tempdir::TempDir::new("backed-restart");
    let c = DsConfig {
        checkpoint_entries: 50,
        ..single_cfg(dir.path())
    };
    {
        let node = run(c.clone()).unwrap();
        let addr = node.shard_addrs[0].clone();
        let admin = node.admin_addr.unwrap();
        must_ok(&run_ops(&addr, load_ops()));
        demote_all(admin);
        // More entries than `checkpoint_entries`: the next checkpoint names the cold values
        // by their pointers into the Raft entries (strings with their leading byte).
        let filler: Vec<KvOp> = (0..120).map(|i| set(&format!("filler-{i}"), "x")).collect();
        let before = metric_until(admin, "ds_checkpoints_total", |v| v.is_finite());
        must_ok(&run_ops(&addr, filler));
        let after = metric_until(admin, "ds_checkpoints_total", |v| v > before);
        assert!(after > before, "no checkpoint after the demotion");
        drop(node);
    }
    let node = run(c).unwrap();
    let addr = node.shard_addrs[0].clone();
    let admin = node.admin_addr.unwrap();
    let cold = metric_until(admin, "ds_cold_entries", |v| v >= 250.0);
    assert!(cold >= 250.0, "cold entries after restart: {cold}");
    must_read_back(&addr);
}

#[test]
fn a_corrupted_byte_in_a_backed_value_is_an_error_not_data() {
    let dir = test_support::tempdir::TempDir::new("backed-corrupt");
    let node = run(single_cfg(dir.path())).unwrap();
    let addr = node.shard_addrs[0].clone();
    let admin = node.admin_addr.unwrap();
    let s = format!("string-{}-{}", std::process::id(), "p".repeat(300));
    let f = format!("field-{}-{}", std::process::id(), "q".repeat(300));
    must_ok(&run_ops(
        &addr,
        vec![
            set("victim", &s),
            KvOp::HSet {
                key: b("h"),
                pairs: vec![(b("f"), b(f.clone()))],
                only_new: false,
            },
            set("bystander", "fine"),
        ],
    ));
    demote_all(admin);
    // The values are backed (their only copy is the Raft entry); only the hash's metadata
    // entry (computed) is written, one 64-byte record.
    let copied = metric_settled(admin, "ds_demoted_bytes_written_total");
    assert!(copied <= 64.0, "demotion copied {copied} bytes");
    // One copy each: the Raft entry that carried it.
    assert_eq!(corrupt_in_log(dir.path(), s.as_bytes()), 1);
    assert_eq!(corrupt_in_log(dir.path(), f.as_bytes()), 1);
    let r = run_ops(
        &addr,
        vec![
            KvOp::StrGet { key: b("victim") },
            KvOp::HGet {
                key: b("h"),
                field: b("f"),
            },
            KvOp::StrGet {
                key: b("bystander"),
            },
        ],
    );
    for x in &r[..2] {
        match x {
            KvResponse::Err {
                error: net::RpcError::Internal { code, message },
            } => {
                assert_eq!(*code, 4, "{message}");
                assert!(message.contains("checksum"), "{message}");
            }
            other => panic!("a corrupted value must not read back: {other:?}"),
        }
    }
    assert_eq!(r[2], value("fine"));
    let failures = metric_until(admin, "ds_cold_checksum_failures_total", |v| v >= 2.0);
    assert!(failures >= 2.0, "checksum failures {failures}");
}
