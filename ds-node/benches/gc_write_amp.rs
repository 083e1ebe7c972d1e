//! Write amplification and disk use of the log garbage collector: a single-replica DS node
//! (in process, uring shard log) with demotion every 20 ms loads a dataset and overwrites it
//! three times, each round in a new random key order; reports device bytes written per user byte (the shard log's own count and
//! the process's `/proc/self/io` `write_bytes`, which adds checkpoint files) and the shard
//! log's disk use against the live bytes, after every round.
//!
//! `cargo bench --profile ci -p ds-node --bench gc_write_amp [-- KEYS VALUE_BYTES SPACE_PERCENT]`
//! (defaults 8000 keys × 4096 B, `gc-space-percent` 150). Results: `docs/benchmarks.md`.
#![allow(clippy::unwrap_used, clippy::print_stdout)]
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::time::{Duration, Instant};

use bytes::Bytes;
use ds_node::{DsConfig, run};
use net::message::RouteCtx;
use net::message::handshake::{Hello, Role};
use net::message::kv::{Cond, Expiry, KvOp, KvRequest, KvResponse};
use net::transport::TransportConfig;
use net::{ClusterId, Epoch, Message, NodeId, RangeId};

fn ctx() -> RouteCtx {
    RouteCtx {
        range_id: RangeId(1),
        epoch: Epoch {
            conf_ver: 1,
            version: 1,
        },
    }
}

/// Sends `ops` with up to 64 in flight on one connection; panics on an error reply.
fn must_write(addr: &str, ops: Vec<KvOp>) {
    let addr = addr.to_string();
    glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .io_memory(512 << 10)
        .spawn(move || async move {
            let hello = Hello::new(Role::Client {}, ClusterId(0), NodeId(0));
            let c = std::rc::Rc::new(
                net::glommio_transport::Client::connect(&addr, hello, TransportConfig::default())
                    .await
                    .unwrap(),
            );
            for chunk in ops.chunks(64) {
                let calls: Vec<_> = chunk
                    .iter()
                    .map(|op| {
                        let c = c.clone();
                        let op = op.clone();
                        glommio::spawn_local(async move { call(&c, op).await })
                    })
                    .collect();
                for t in calls {
                    t.await;
                }
            }
        })
        .unwrap()
        .join()
        .unwrap();
}

async fn call(c: &net::glommio_transport::Client, op: KvOp) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = c
            .call(Message::KvRequest(KvRequest {
                ctx: ctx(),
                op: op.clone(),
            }))
            .await
            .unwrap();
        match r {
            Message::KvResponse(KvResponse::Ok { .. }) => return,
            Message::KvResponse(KvResponse::Err {
                error: net::RpcError::NotLeader { .. },
            }) if Instant::now() < deadline => {
                glommio::timer::sleep(Duration::from_millis(20)).await;
            }
            other => panic!("{other:?}"),
        }
    }
}

/// `0..n` in a pseudo-random order (a different one per round): overwrites in load order
/// would free whole segments in log order, the best case of a FIFO collector.
fn shuffled(n: usize, round: u64) -> Vec<usize> {
    let mut v: Vec<usize> = (0..n).collect();
    let mut x = 0x9E37_79B9_7F4A_7C15u64 ^ (round + 1);
    for i in (1..n).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.swap(i, (x % (i as u64 + 1)) as usize);
    }
    v
}

fn process_write_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/io")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("write_bytes: "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let keys = args.first().copied().unwrap_or(8000) as usize;
    let value_bytes = args.get(1).copied().unwrap_or(4096) as usize;
    let space_percent = args.get(2).copied().unwrap_or(150) as u32;
    let dir = std::env::temp_dir().join(format!("tierkv-gc-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let cfg = DsConfig {
        data_dir: dir.clone(),
        shards: 1,
        pin: false,
        base_port: 0,
        log_file_bytes: 128 << 20,
        segment_bytes: 2 << 20,
        zero_log_file: false,
        io_memory_bytes: 1 << 20,
        checkpoint_entries: 2000,
        checkpoint_check_ms: 50,
        demote_every_ms: 20,
        gc_every_ms: 50,
        gc_space_percent: space_percent,
        ..DsConfig::default()
    };
    println!(
        "dataset {keys} keys x {value_bytes} B = {} MiB; log {} MiB in {} MiB segments; \
         gc-space-percent {}, gc-start-percent {}, gc-bytes-per-sec {}",
        (keys * value_bytes) >> 20,
        cfg.log_file_bytes >> 20,
        cfg.segment_bytes >> 20,
        cfg.gc_space_percent,
        cfg.gc_start_percent,
        cfg.gc_bytes_per_sec
    );
    let node = run(cfg).unwrap();
    let addr = node.shard_addrs[0].clone();
    let io0 = process_write_bytes();
    let t0 = Instant::now();
    let mut user = 0u64;
    println!(
        "round  user_MiB  log_dev_MiB  WA_log  WA_proc  log_used_MiB  live_MiB  used/live  gc_moved_MiB  gc_freed_segs  secs"
    );
    for round in 0..4u64 {
        let ops: Vec<KvOp> = shuffled(keys, round)
            .into_iter()
            .map(|k| {
                let mut v = format!("{k}/{round}/").into_bytes();
                v.resize(value_bytes, b'a' + round as u8);
                KvOp::StrSet {
                    key: Bytes::from(format!("key-{k:08}")),
                    value: Bytes::from(v),
                    expiry: Expiry::Persist {},
                    cond: Cond::Always {},
                    get_old: false,
                }
            })
            .collect();
        must_write(&addr, ops);
        user += (keys * value_bytes) as u64;
        // Let demotion and collection catch up, as they would between bursts.
        std::thread::sleep(Duration::from_millis(1500));
        let m = node.metrics();
        let mib = |b: u64| b as f64 / f64::from(1 << 20);
        println!(
            "{round:>5}  {:>8.1}  {:>11.1}  {:>6.2}  {:>7.2}  {:>12.1}  {:>8.1}  {:>9.2}  {:>12.1}  {:>13}  {:>4.1}",
            mib(user),
            mib(m.gc.device_written_bytes),
            m.gc.device_written_bytes as f64 / user as f64,
            (process_write_bytes() - io0) as f64 / user as f64,
            mib(m.gc.log_used_bytes),
            mib(m.gc.log_live_bytes),
            m.gc.log_used_bytes as f64 / m.gc.log_live_bytes.max(1) as f64,
            mib(m.gc.moved_bytes_total),
            m.gc.segments_freed_total,
            t0.elapsed().as_secs_f64()
        );
    }
    drop(node);
    let _ = std::fs::remove_dir_all(&dir);
}
