//! Native-client benchmark of one DS node with a single-replica range: 50 connections (one
//! request in flight each), 100-byte values, puts then gets; prints ops/s and
//! p50/p99/p999. Optionally runs `redis-server --appendonly yes --appendfsync always` +
//! `redis-benchmark -t set -c 50 -P 1` in the same run as the peer.
//!
//! `cargo run -p ds-node --profile ci --example node_bench -- [secs] [shards] [redis|three]`
//! (`three`: three nodes in this process, one 3-voter range, puts to the leader).
#![allow(clippy::unwrap_used, clippy::expect_used)]
// The bench's client threads are not shards: blocking calls are fine here.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ds_node::{DsConfig, run};
use hdrhistogram::Histogram;
use net::message::RouteCtx;
use net::message::handshake::{Hello, Role};
use net::message::kv::{Cond, Expiry, KvOp, KvRequest, KvResponse};
use net::transport::TransportConfig;
use net::{ClusterId, Epoch, Message, NodeId, RangeId};

const CONNS: usize = 50;

fn ctx() -> RouteCtx {
    RouteCtx {
        range_id: RangeId(1),
        epoch: Epoch {
            conf_ver: 1,
            version: 1,
        },
    }
}

fn phase(addr: String, secs: u64, write: bool) -> (f64, Histogram<u64>) {
    glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .io_memory(1 << 20)
        .spawn(move || async move {
            let hello = Hello::new(Role::Client {}, ClusterId(0), NodeId(0));
            let hist = Rc::new(RefCell::new(
                Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap(),
            ));
            let done = Rc::new(RefCell::new(0u64));
            let start = Instant::now();
            let stop = start + Duration::from_secs(secs);
            let mut tasks = Vec::new();
            for c in 0..CONNS {
                let cl = net::glommio_transport::Client::connect(
                    &addr,
                    hello,
                    TransportConfig::default(),
                )
                .await
                .unwrap();
                let (hist, done) = (hist.clone(), done.clone());
                tasks.push(glommio::spawn_local(async move {
                    let mut i = 0u64;
                    while Instant::now() < stop {
                        let key = Bytes::from(format!("key:{c}:{}", i % 10_000));
                        let op = if write {
                            KvOp::StrSet {
                                key,
                                value: Bytes::from(vec![b'x'; 100]),
                                expiry: Expiry::Persist {},
                                cond: Cond::Always {},
                                get_old: false,
                            }
                        } else {
                            KvOp::StrGet { key }
                        };
                        let t = Instant::now();
                        let r = cl
                            .call(Message::KvRequest(KvRequest { ctx: ctx(), op }))
                            .await;
                        assert!(
                            matches!(r, Ok(Message::KvResponse(KvResponse::Ok { .. }))),
                            "{r:?}"
                        );
                        hist.borrow_mut()
                            .saturating_record(t.elapsed().as_micros() as u64);
                        *done.borrow_mut() += 1;
                        i += 1;
                    }
                }));
            }
            for t in tasks {
                t.await;
            }
            let ops = *done.borrow() as f64 / start.elapsed().as_secs_f64();
            let h = hist.borrow().clone();
            (ops, h)
        })
        .unwrap()
        .join()
        .unwrap()
}

fn redis_peer() -> Option<String> {
    let dir = std::env::temp_dir().join(format!("ds-bench-redis-{}", std::process::id()));
    std::fs::create_dir_all(&dir).ok()?;
    let port = 16_379;
    let mut server = std::process::Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
            "--save",
            "",
        ])
        .arg("--dir")
        .arg(&dir)
        .stdout(std::process::Stdio::null())
        .spawn()
        .ok()?;
    std::thread::sleep(Duration::from_millis(500));
    let out = std::process::Command::new("redis-benchmark")
        .args([
            "-p",
            &port.to_string(),
            "-t",
            "set",
            "-c",
            "50",
            "-P",
            "1",
            "-d",
            "100",
            "-n",
            "100000",
            "-r",
            "100000",
            "-q",
        ])
        .output()
        .ok()?;
    let _ = server.kill();
    let _ = server.wait();
    let _ = std::fs::remove_dir_all(&dir);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    text.rsplit('\r').next().map(|l| l.trim().to_string())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let secs: u64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(5);
    let shards: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(1);
    let redis = args.get(3).is_some_and(|s| s == "redis");
    if args.get(3).is_some_and(|s| s == "three") {
        three(secs);
        return;
    }
    let dir = std::env::temp_dir().join(format!("ds-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let node = run(DsConfig {
        data_dir: dir.clone(),
        shards,
        pin: true,
        base_port: 0,
        log_file_bytes: 1 << 30,
        segment_bytes: 64 << 20,
        tick_ms: 10,
        ..DsConfig::default()
    })
    .unwrap();
    let addr = node.shard_addrs[0].clone();
    std::thread::sleep(Duration::from_millis(500));
    println!("| op | conns | ops/s | p50 µs | p99 µs | p999 µs |");
    println!("|---|---|---|---|---|---|");
    for write in [true, false] {
        let (ops, h) = phase(addr.clone(), secs, write);
        println!(
            "| {} | {CONNS} | {ops:.0} | {} | {} | {} |",
            if write {
                "put (StrSet)"
            } else {
                "get (StrGet)"
            },
            h.value_at_quantile(0.5),
            h.value_at_quantile(0.99),
            h.value_at_quantile(0.999)
        );
    }
    std::thread::sleep(Duration::from_millis(300));
    println!("node: {}", node.metrics().summary());
    node.shutdown().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    if redis {
        println!(
            "redis (appendfsync always, -c 50 -P 1, 100 B): {:?}",
            redis_peer()
        );
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Three nodes, one range with three voters; puts go to the leader.
fn three(secs: u64) {
    use ds_node::config::{InitialReplica, PeerStore};
    let root = std::env::temp_dir().join(format!("ds-bench3-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let nodes: Vec<_> = (1..=3u64)
        .map(|id| {
            run(DsConfig {
                data_dir: root.join(format!("n{id}")),
                shards: 1,
                pin: false,
                store_id: id,
                base_port: ports[id as usize - 1],
                log_file_bytes: 1 << 30,
                segment_bytes: 64 << 20,
                tick_ms: 10,
                initial_replicas: (1..=3)
                    .map(|i| InitialReplica {
                        replica_id: i,
                        store_id: i,
                        shard_id: 0,
                    })
                    .collect(),
                peers: (1..=3)
                    .map(|i| PeerStore {
                        store_id: i,
                        shard_addrs: vec![format!("127.0.0.1:{}", ports[i as usize - 1])],
                    })
                    .collect(),
                ..DsConfig::default()
            })
            .unwrap()
        })
        .collect();
    // Find the leader: the node that answers a put.
    let mut leader = None;
    for _ in 0..200 {
        for n in &nodes {
            let addr = n.shard_addrs[0].clone();
            let ok = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
                .io_memory(512 << 10)
                .spawn(move || async move {
                    let hello = Hello::new(Role::Client {}, ClusterId(0), NodeId(0));
                    let c = net::glommio_transport::Client::connect(
                        &addr,
                        hello,
                        TransportConfig::default(),
                    )
                    .await
                    .unwrap();
                    let op = KvOp::StrGet {
                        key: Bytes::from_static(b"x"),
                    };
                    matches!(
                        c.call(Message::KvRequest(KvRequest { ctx: ctx(), op }))
                            .await,
                        Ok(Message::KvResponse(KvResponse::Ok { .. }))
                    )
                })
                .unwrap()
                .join()
                .unwrap();
            if ok {
                leader = Some(n.shard_addrs[0].clone());
            }
        }
        if leader.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let leader = leader.expect("no leader");
    let (ops, h) = phase(leader, secs, true);
    println!("| op | replicas | conns | ops/s | p50 µs | p99 µs | p999 µs |");
    println!("|---|---|---|---|---|---|---|");
    println!(
        "| put (StrSet) | 3 | {CONNS} | {ops:.0} | {} | {} | {} |",
        h.value_at_quantile(0.5),
        h.value_at_quantile(0.99),
        h.value_at_quantile(0.999)
    );
    for n in nodes {
        println!("node {}: {}", n.store_id, n.metrics().summary());
        n.shutdown().unwrap();
    }
    let _ = std::fs::remove_dir_all(&root);
}
