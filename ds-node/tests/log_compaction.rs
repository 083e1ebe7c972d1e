//! A long-running shard does not fill its log: with a 32 MiB shard log, 128 MiB of writes
//! (overwrites of 4,000 keys with 4 KiB values) are all acknowledged, because ranges are
//! checkpointed, their Raft log is compacted below the checkpoint and the freed segments are
//! reused. After a restart (newest checkpoint + the log after it) every key has its last value.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::on_executor;
use ds_node::{DsConfig, run};
use net::message::RouteCtx;
use net::message::handshake::{Hello, Role};
use net::message::kv::{Cond, Expiry, KvOp, KvRequest, KvResponse, OpResult};
use net::transport::TransportConfig;
use net::{ClusterId, Epoch, Message, NodeId, RangeId, RpcError};

const KEYS: usize = 4000;
const ROUNDS: usize = 8;
const WRITERS: usize = 16;

fn cfg(dir: &std::path::Path) -> DsConfig {
    DsConfig {
        data_dir: dir.to_path_buf(),
        shards: 1,
        pin: false,
        base_port: 0,
        log_file_bytes: 32 << 20,
        segment_bytes: 2 << 20,
        zero_log_file: false,
        tick_ms: 10,
        io_memory_bytes: 1 << 20,
        checkpoint_entries: 1000,
        checkpoint_check_ms: 20,
        // Range files: this test is about the log below a range checkpoint file (index mode
        // keeps the values in the log, which this 32 MiB log cannot hold twice over:
        // `gc_node.rs` and `benches/gc_write_amp.rs` cover it).
        checkpoint_mode: ds_node::CheckpointMode::Files,
        ..DsConfig::default()
    }
}

fn ctx() -> RouteCtx {
    RouteCtx {
        range_id: RangeId(1),
        epoch: Epoch {
            conf_ver: 1,
            version: 1,
        },
    }
}

fn value(key: usize, round: usize) -> Bytes {
    let mut v = format!("{key}:{round}:").into_bytes();
    v.resize(4096, b'a' + (round % 26) as u8);
    Bytes::from(v)
}

/// `SET key{k} value(k, round)`.
fn set_op(k: usize, round: usize) -> KvOp {
    KvOp::StrSet {
        key: Bytes::from(format!("key{k}")),
        value: value(k, round),
        expiry: Expiry::Persist {},
        cond: Cond::Always {},
        get_old: false,
    }
}

async fn call(c: &net::glommio_transport::Client, op: KvOp) -> KvResponse {
    for _ in 0..2000 {
        match c
            .call(Message::KvRequest(KvRequest {
                ctx: ctx(),
                op: op.clone(),
            }))
            .await
            .unwrap()
        {
            Message::KvResponse(KvResponse::Err {
                error: RpcError::NotLeader { .. } | RpcError::ServerBusy {},
            }) => glommio::timer::sleep(Duration::from_millis(5)).await,
            Message::KvResponse(r) => return r,
            other => panic!("unexpected {other:?}"),
        }
    }
    panic!("no answer");
}

async fn connect(addr: &str) -> net::glommio_transport::Client {
    let hello = Hello::new(Role::Client {}, ClusterId(0), NodeId(0));
    // A full log holds writes back until the collector frees space: seconds, not the
    // default 5 s request timeout's worth of certainty.
    let cfg = TransportConfig {
        request_timeout: Duration::from_secs(60),
        ..TransportConfig::default()
    };
    net::glommio_transport::Client::connect(addr, hello, cfg)
        .await
        .unwrap()
}

fn check_all(addr: String) {
    on_executor(move || {
        Box::pin(async move {
            let c = connect(&addr).await;
            for k in 0..KEYS {
                let r = call(
                    &c,
                    KvOp::StrGet {
                        key: Bytes::from(format!("key{k}")),
                    },
                )
                .await;
                match r {
                    KvResponse::Ok {
                        result: OpResult::Value { value: v },
                    } => assert_eq!(v, Some(value(k, ROUNDS - 1)), "key{k}"),
                    other => panic!("key{k}: {other:?}"),
                }
            }
        })
    });
}

#[test]
fn overwriting_four_times_the_log_size_keeps_working_and_survives_a_restart() {
    let dir = std::env::temp_dir().join(format!("ds-compaction-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let node = run(cfg(&dir)).unwrap();
    let addr = node.shard_addrs[0].clone();
    let a = addr.clone();
    on_executor(move || {
        Box::pin(async move {
            let c = connect(&a).await;
            let mut tasks = Vec::new();
            for w in 0..WRITERS {
                let c = c.clone();
                tasks.push(glommio::spawn_local(async move {
                    for round in 0..ROUNDS {
                        for k in (w..KEYS).step_by(WRITERS) {
                            let r = call(&c, set_op(k, round)).await;
                            assert!(matches!(r, KvResponse::Ok { .. }), "key{k}: {r:?}");
                        }
                    }
                }));
            }
            for t in tasks {
                t.await;
            }
        })
    });
    let m = node.metrics();
    eprintln!("{}", m.summary());
    assert!(
        m.checkpoints_total >= 10,
        "{} checkpoints",
        m.checkpoints_total
    );
    assert!(
        m.segments_freed_total >= 32,
        "{} segments freed",
        m.segments_freed_total
    );
    check_all(addr);
    node.shutdown().unwrap();
    let files = std::fs::read_dir(dir.join("checkpoints/shard-0"))
        .unwrap()
        .count();
    assert_eq!(files, 1, "older checkpoints are deleted");

    let node = run(cfg(&dir)).unwrap();
    check_all(node.shard_addrs[0].clone());
    node.shutdown().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

/// Index mode keeps values in its log, so this 32 MiB log holding 16 MiB of live values runs
/// out of segments under the same overwrites: it must refuse writes (`DiskFull`, Redis's
/// `-OOM`) while it is low on segments — never stop the shard ("shard log failed") — and
/// every key must hold its last acknowledged value, before and after a restart.
#[test]
fn an_index_mode_log_low_on_segments_refuses_writes_instead_of_stopping_the_shard() {
    let dir = std::env::temp_dir().join(format!("ds-low-space-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let cfg = low_space_cfg(&dir);
    let node = run(cfg.clone()).unwrap();
    let addr = node.shard_addrs[0].clone();
    let (last, refused) = overwrite_until_refused(addr.clone());
    eprintln!("refused {refused} writes; {}", node.metrics().summary());
    expect_values(addr, last.clone());
    node.shutdown().unwrap();
    let node = run(cfg).unwrap();
    expect_values(node.shard_addrs[0].clone(), last);
    node.shutdown().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

/// Deleting most keys of that full index-mode log must work: the deletes' own Raft entries
/// need log space, and neither they nor the collector's and checkpoints' writes may fail a
/// group commit (the ready loop holds turns back when the log has no room for them, value
/// writes leave the ready loop its share, and collector passes copy hot values too and take
/// on only what fits). Every delete is acknowledged, the space comes back (a third of the
/// deleted keys are written again), and every key holds its last acknowledged value before
/// and after a restart.
#[test]
fn a_full_index_mode_log_takes_deletes_and_then_writes_again() {
    let dir = std::env::temp_dir().join(format!("ds-full-deletes-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let cfg = low_space_cfg(&dir);
    let node = run(cfg.clone()).unwrap();
    let addr = node.shard_addrs[0].clone();
    let (mut last, refused) = overwrite_until_refused(addr.clone());
    assert!(refused > 0, "the log never ran short: nothing tested");
    eprintln!("after overwrites: {}", node.metrics().summary());
    let deleted: Vec<usize> = (0..KEYS).filter(|k| k % 4 != 0).collect();
    run_all(addr.clone(), deleted.clone(), |c, k| async move {
        let r = call(&c, KvOp::KeyDel { key: key(k) }).await;
        assert!(matches!(r, KvResponse::Ok { .. }), "DEL key{k}: {r:?}");
    });
    for &k in &deleted {
        last[k] = None;
    }
    let m = node.metrics();
    eprintln!(
        "after deletes: {} gc {:?} lsm {:?}",
        m.summary(),
        gc_figures(&m.gc),
        m.lsm
            .as_ref()
            .map(|l| (l.runs, l.segments_freed_total, l.compactions_total))
    );
    // Space comes back through the collector and the index checkpoints: writes are refused
    // until then (never failed otherwise), and must all land within the deadline. A third
    // of the deleted keys come back (the live data then takes half of what ran the log
    // short in the first phase).
    let rewritten: Vec<usize> = deleted.iter().copied().filter(|k| k % 4 == 1).collect();
    run_all(addr.clone(), rewritten.clone(), |c, k| async move {
        let until = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            match call(&c, set_op(k, ROUNDS)).await {
                KvResponse::Ok { .. } => return,
                KvResponse::Err {
                    error: RpcError::DiskFull {},
                } if std::time::Instant::now() < until => {
                    glommio::timer::sleep(Duration::from_millis(20)).await;
                }
                other => panic!("SET key{k} after the deletes: {other:?}"),
            }
        }
    });
    for &k in &rewritten {
        last[k] = Some(ROUNDS);
    }
    expect_values(addr, last.clone());
    node.shutdown().unwrap();
    let node = run(cfg).unwrap();
    expect_values(node.shard_addrs[0].clone(), last);
    node.shutdown().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

fn gc_figures(g: &ds_node::server::gc_metrics::GcMetrics) -> [(&str, u64); 8] {
    [
        ("room", g.log_room_bytes),
        ("passes", g.passes_total),
        ("errors", g.errors_total),
        ("victims", g.victims_total),
        ("unbacked_bytes", g.unbacked_bytes_total),
        ("freed", g.segments_freed_total),
        ("used", g.log_used_bytes),
        ("live", g.log_live_bytes),
    ]
}

fn low_space_cfg(dir: &std::path::Path) -> DsConfig {
    DsConfig {
        checkpoint_mode: ds_node::CheckpointMode::Index,
        gc_every_ms: 20,
        ..cfg(dir)
    }
}

fn key(k: usize) -> Bytes {
    Bytes::from(format!("key{k}"))
}

/// `ROUNDS` overwrites of every key by `WRITERS` writers; a write is acknowledged or refused
/// with `DiskFull`, nothing else. Returns each key's last acknowledged round and the refusals.
fn overwrite_until_refused(addr: String) -> (Vec<Option<usize>>, u64) {
    on_executor(move || {
        Box::pin(async move {
            let c = connect(&addr).await;
            let mut tasks = Vec::new();
            for w in 0..WRITERS {
                let c = c.clone();
                tasks.push(glommio::spawn_local(async move {
                    let mut acked = Vec::new();
                    let mut refused = 0u64;
                    for round in 0..ROUNDS {
                        for k in (w..KEYS).step_by(WRITERS) {
                            match call(&c, set_op(k, round)).await {
                                KvResponse::Ok { .. } => acked.push((k, round)),
                                KvResponse::Err {
                                    error: RpcError::DiskFull {},
                                } => refused += 1,
                                other => panic!("key{k}: {other:?}"),
                            }
                        }
                    }
                    (acked, refused)
                }));
            }
            let mut last = vec![None; KEYS];
            let mut refused = 0;
            for t in tasks {
                let (acked, r) = t.await;
                refused += r;
                for (k, round) in acked {
                    last[k] = Some(round);
                }
            }
            (last, refused)
        })
    })
}

/// Runs `op` on each of `keys` from `WRITERS` concurrent tasks; each call must finish within
/// two minutes (a shard that stopped committing would hang them).
fn run_all<F, Fut>(addr: String, keys: Vec<usize>, op: F)
where
    F: Fn(net::glommio_transport::Client, usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + 'static,
{
    on_executor(move || {
        Box::pin(async move {
            let c = connect(&addr).await;
            let keys = std::rc::Rc::new(keys);
            let mut tasks = Vec::new();
            for w in 0..WRITERS {
                let (c, keys, op) = (c.clone(), keys.clone(), op.clone());
                tasks.push(glommio::spawn_local(async move {
                    for &k in keys.iter().skip(w).step_by(WRITERS) {
                        let deadline = glommio::timer::sleep(Duration::from_secs(120));
                        let done = futures_lite::future::or(
                            async {
                                op(c.clone(), k).await;
                                true
                            },
                            async {
                                deadline.await;
                                false
                            },
                        )
                        .await;
                        assert!(done, "key{k}: no answer within two minutes");
                    }
                }));
            }
            for t in tasks {
                t.await;
            }
        })
    });
}

/// Every key holds its last acknowledged value (`None`: absent).
fn expect_values(addr: String, last: Vec<Option<usize>>) {
    on_executor(move || {
        Box::pin(async move {
            let c = connect(&addr).await;
            for (k, round) in last.iter().enumerate() {
                let r = call(&c, KvOp::StrGet { key: key(k) }).await;
                let KvResponse::Ok {
                    result: OpResult::Value { value: v },
                } = r
                else {
                    panic!("key{k}: {r:?}");
                };
                assert_eq!(v, round.map(|r| value(k, r)), "key{k}");
            }
        })
    });
}
