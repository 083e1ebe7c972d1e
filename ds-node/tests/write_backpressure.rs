//! Write backpressure under `maxmemory` (`server::throttle`) on a single-replica DS node (real
//! stack: glommio, uring shard log, raft-rs, net). Demotion is made slow on purpose with
//! `policy-demote-bytes-per-sec`, so that writers outrun it whatever the machine's load:
//! - with demotion all but stopped, memory stays under the write line (checked with the
//!   shard's peak gauge, taken after every apply, not by sampling), writes past the line are
//!   refused with Redis's OOM error and never applied, while reads, deletes and EXPIRE pass;
//!   once demotion catches up, writes succeed again;
//! - with demotion slow but running, writers wait for it instead of failing.
#![allow(clippy::unwrap_used)]
// Test threads drive the node from outside its shards: blocking calls are fine here.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod common;

use std::time::Instant;

use bytes::Bytes;
use common::single::{Retry, call, http_ok, metric_at_least, run_ops, single_cfg, with_client};
use ds_node::{DsConfig, run};
use net::RpcError;
use net::message::kv::{Cond, ExpireCond, Expiry, KvOp, KvResponse, OpResult, WriteOp};

const MAXMEMORY: u64 = 4 << 20;
const VALUE: usize = 4096;
/// The write line at the default `write-throttle-percent` (110).
const LINE: u64 = MAXMEMORY / 100 * 110;
/// What may land above the line: the one proposal that passes just under it (a 4 KiB value
/// or a batch of eight), its entries' overhead, and the tree's arena growing by a page
/// block for them.
const SLACK: u64 = 256 << 10;
const STREAMS: usize = 4;
const OOM: &str = "OOM command not allowed when used memory > 'maxmemory'.";

fn cfg(dir: &std::path::Path, demote_bytes_per_sec: u64, max_wait_ms: u64) -> DsConfig {
    DsConfig {
        log_file_bytes: 256 << 20,
        segment_bytes: 8 << 20,
        cached_entries: 16,
        maxmemory: MAXMEMORY,
        policy_tick_ms: 10,
        policy_demote_bytes_per_sec: demote_bytes_per_sec,
        write_throttle_max_wait_ms: max_wait_ms,
        ..single_cfg(dir)
    }
}

/// Metric `name` as published now, as an integer.
fn metric(admin: std::net::SocketAddr, name: &str) -> u64 {
    common::single::metric(admin, name) as u64
}

fn key(i: usize) -> Bytes {
    Bytes::from(format!("k{i:06}"))
}

fn value(i: usize) -> Bytes {
    let mut v = format!("{i:06}:").into_bytes();
    v.resize(VALUE, (i % 251) as u8);
    Bytes::from(v)
}

fn set(i: usize) -> KvOp {
    KvOp::StrSet {
        key: key(i),
        value: value(i),
        expiry: Expiry::Persist {},
        cond: Cond::Always {},
        get_old: false,
    }
}

fn get(i: usize) -> KvOp {
    KvOp::StrGet { key: key(i) }
}

fn is_oom(r: &KvResponse) -> bool {
    matches!(r, KvResponse::Err { error: RpcError::Redis { message } } if message == OOM)
}

fn is_ok(r: &KvResponse) -> bool {
    matches!(r, KvResponse::Ok { .. })
}

/// `STREAMS` concurrent writers of `make(i)` for `i` in `0..n` (stream `s` takes every
/// `STREAMS`-th); a stream stops after `stop_after_oom` OOM refusals. Returns, per `i`,
/// whether it was acknowledged (`Some(true)`), refused for memory (`Some(false)`) or not
/// sent; any other answer fails the test.
fn write_streams(
    addr: &str,
    n: usize,
    make: fn(usize) -> KvOp,
    stop_after_oom: usize,
) -> Vec<Option<bool>> {
    with_client(addr, move |c| async move {
        let mut tasks = Vec::new();
        for s in 0..STREAMS {
            let c = c.clone();
            tasks.push(glommio::spawn_local(async move {
                let mut out = Vec::new();
                let mut ooms = 0;
                for i in (s..n).step_by(STREAMS) {
                    let r = call(&c, make(i), Retry::NoLeader).await;
                    assert!(is_ok(&r) || is_oom(&r), "write {i}: {r:?}");
                    out.push((i, is_ok(&r)));
                    ooms += usize::from(!is_ok(&r));
                    if ooms >= stop_after_oom {
                        break;
                    }
                }
                out
            }));
        }
        let mut all = vec![None; n];
        for t in tasks {
            for (i, ok) in t.await {
                all[i] = Some(ok);
            }
        }
        all
    })
}

/// The value GET answered.
fn got(r: &KvResponse) -> Option<Bytes> {
    match r {
        KvResponse::Ok {
            result: OpResult::Value { value },
        } => value.clone(),
        other => panic!("{other:?}"),
    }
}

/// Three times `maxmemory` of 4 KiB SETs against a demotion capped at 1 byte per second:
/// writes wait 50 ms, then are refused; the peak stays under the line plus one write; reads,
/// DEL and EXPIRE pass while SETs are refused; refused keys were never written; after a
/// demotion on demand (`POST /demote`) SETs succeed again.
#[test]
fn memory_stays_under_the_line_while_writes_outrun_demotion_and_deletes_still_pass() {
    let dir = test_support::tempdir::TempDir::new("write-backpressure");
    let node = run(cfg(dir.path(), 1, 50)).unwrap();
    let addr = node.shard_addrs[0].clone();
    let admin = node.admin_addr.unwrap();
    let n = 3 * MAXMEMORY as usize / VALUE;
    let outcome = write_streams(&addr, n, set, 8);
    let acked: Vec<usize> = (0..n).filter(|&i| outcome[i] == Some(true)).collect();
    let refused: Vec<usize> = (0..n).filter(|&i| outcome[i] == Some(false)).collect();
    assert!(refused.len() >= STREAMS * 8, "refused {}", refused.len());
    assert!(
        acked.len() as u64 * VALUE as u64 > MAXMEMORY / 2,
        "{}",
        acked.len()
    );

    // Still over the line (demotion is stalled): a SET is refused, reads, DEL and EXPIRE pass.
    let (a, b) = (acked[0], acked[1]);
    let in_a_minute = u64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap()
        + 60_000;
    let r = run_ops(
        &addr,
        vec![
            set(n),
            get(a),
            KvOp::KeyDel { key: key(a) },
            KvOp::KeyExpire {
                key: key(b),
                at_ms: in_a_minute,
                cond: ExpireCond::Always {},
            },
            get(a),
            get(b),
        ],
    );
    assert!(is_oom(&r[0]), "{:?}", r[0]);
    assert!(got(&r[1]) == Some(value(a)), "GET {a} while refusing SETs");
    assert!(is_ok(&r[2]) && is_ok(&r[3]), "{:?} {:?}", r[2], r[3]);
    assert_eq!(got(&r[4]), None);
    assert!(got(&r[5]) == Some(value(b)), "GET {b} after its EXPIRE");

    let peak = metric_at_least(admin, "ds_memory_accounted_peak_bytes", 1);
    let throttled = metric_at_least(admin, "ds_write_throttled_total", refused.len() as u64 + 1);
    // A write counts as throttled when it starts waiting and as refused when it stops: the
    // figures (republished every 200 ms) may show the first before the second.
    let oom = metric_at_least(
        admin,
        "ds_write_oom_refused_total",
        refused.len() as u64 + 1,
    );
    let waits = metric(admin, "ds_write_throttle_seconds_count");
    eprintln!(
        "acked {}, refused {}, peak {} KiB (line {} KiB), throttled {throttled}, oom {oom}",
        acked.len(),
        refused.len(),
        peak >> 10,
        LINE >> 10,
    );
    assert!(
        peak > MAXMEMORY,
        "the writers never reached maxmemory: {peak}"
    );
    assert!(peak <= LINE + SLACK, "peak {peak} above the line {LINE}");
    assert_eq!(oom, refused.len() as u64 + 1);
    assert!(
        throttled >= oom && waits == throttled,
        "{throttled} {oom} {waits}"
    );

    // Demotion catches up (on demand): writes succeed again.
    http_ok(admin, "POST", "/demote?shard=0&fraction=1");
    let r = run_ops(&addr, vec![set(n)]);
    assert!(is_ok(&r[0]), "{:?}", r[0]);
    // Every acknowledged write reads back; no refused write was applied.
    let mut reads: Vec<usize> = acked[2..].to_vec();
    reads.extend(&refused);
    let answers = run_ops(&addr, reads.iter().map(|&i| get(i)).collect());
    for (&i, r) in reads.iter().zip(&answers) {
        let want = (outcome[i] == Some(true)).then(|| value(i));
        assert!(got(r) == want, "key {i}: acknowledged {:?}", outcome[i]);
    }
    node.shutdown().unwrap();
}

fn batch(b: usize) -> KvOp {
    KvOp::BatchWrite {
        ops: (b * 8..(b + 1) * 8)
            .map(|i| WriteOp::Put {
                key: key(i),
                value: value(i),
                expiry: Expiry::Persist {},
            })
            .collect(),
    }
}

/// Three times `maxmemory` in batches of eight 4 KiB values against a demotion capped at
/// 4 MiB/s (well under what four writers push): writers wait for it, every batch is
/// acknowledged, memory stays under the line, and the policy took larger steps.
#[test]
fn writers_wait_for_a_slow_demotion_instead_of_failing() {
    let dir = test_support::tempdir::TempDir::new("write-backpressure-wait");
    let node = run(cfg(dir.path(), 4 << 20, 2000)).unwrap();
    let addr = node.shard_addrs[0].clone();
    let admin = node.admin_addr.unwrap();
    let batches = 3 * MAXMEMORY as usize / VALUE / 8;
    let t = Instant::now();
    let outcome = write_streams(&addr, batches, batch, 1);
    let wrote = t.elapsed();
    assert!(outcome.iter().all(|o| *o == Some(true)), "{outcome:?}");
    let peak = metric_at_least(admin, "ds_memory_accounted_peak_bytes", 1);
    let throttled = metric_at_least(admin, "ds_write_throttled_total", 1);
    let urgent = metric(admin, "ds_policy_urgent_steps_total");
    eprintln!(
        "{batches} batches in {wrote:?}: peak {} KiB (line {} KiB), throttled {throttled}, \
         urgent steps {urgent}",
        peak >> 10,
        LINE >> 10
    );
    assert!(peak <= LINE + SLACK, "peak {peak} above the line {LINE}");
    assert!(throttled > 0 && urgent > 0, "{throttled} {urgent}");
    assert_eq!(metric(admin, "ds_write_oom_refused_total"), 0);
    // Every key reads back (batch writes are raw puts: read with BatchGet).
    let keys: Vec<Bytes> = (0..batches * 8).map(key).collect();
    let r = run_ops(&addr, vec![KvOp::BatchGet { keys }]);
    let KvResponse::Ok {
        result: OpResult::Values { values },
    } = &r[0]
    else {
        panic!("{:?}", r[0])
    };
    assert_eq!(values.len(), batches * 8);
    for (i, v) in values.iter().enumerate() {
        assert!(v.as_deref() == Some(&value(i)[..]), "key {i}");
    }
    node.shutdown().unwrap();
}
