//! Loopback benchmark of the master: TSO timestamps per second with batch sizes 1 and 100
//! from 64 concurrent clients, and route lookups (throughput from 64 clients, latency from one
//! client on an otherwise idle master).
//!
//! `cargo run --release -p master --example master_bench -- [seconds per run, default 3]`
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use ::master::core::MasterConfig;
use ::master::service::{Master, SystemClock};
use bytes::Bytes;
use hdrhistogram::Histogram;
use net::message::handshake::{Hello, Role};
use net::message::{
    Bootstrap, Message, RangeDescriptor, Replica, ReplicaRole, RouteByKey, SplitReport,
    SplitRequest, StoreInfo, StoreRegister, TsoRequest,
};
use net::tokio_transport::Client;
use net::transport::TransportConfig;
use net::{ClusterId, NodeId, ShardId, StoreId};

const CLIENTS: usize = 64;

async fn connect(addr: &str) -> Client {
    let hello = Hello::new(Role::Proxy {}, ClusterId(0), NodeId(0));
    Client::connect(addr, hello, TransportConfig::default())
        .await
        .unwrap()
}

/// Runs `clients` closed-loop clients over `conns` connections (shared round-robin, so
/// several calls are in flight on one connection) for `secs`; returns (requests, items,
/// latency µs).
async fn drive(
    addr: &str,
    clients: usize,
    conns: usize,
    secs: u64,
    make: impl Fn(u64) -> (Message, u64) + Send + Sync + Clone + 'static,
) -> (u64, u64, Histogram<u64>) {
    let mut pool = Vec::new();
    for _ in 0..conns {
        pool.push(connect(addr).await);
    }
    let mut tasks = Vec::new();
    for c in 0..clients {
        let client = pool[c % conns].clone();
        let make = make.clone();
        tasks.push(tokio::spawn(async move {
            let mut h = Histogram::<u64>::new_with_bounds(1, 10_000_000, 3).unwrap();
            let (mut reqs, mut items) = (0u64, 0u64);
            let end = Instant::now() + Duration::from_secs(secs);
            let mut i = c as u64 * 1_000_003;
            while Instant::now() < end {
                let (msg, n) = make(i);
                i += 1;
                let t = Instant::now();
                let reply = client.call(msg).await.unwrap();
                h.saturating_record(t.elapsed().as_micros() as u64);
                assert!(!matches!(reply, Message::Error(_)), "{reply:?}");
                reqs += 1;
                items += n;
            }
            (reqs, items, h)
        }));
    }
    let mut total = (
        0,
        0,
        Histogram::<u64>::new_with_bounds(1, 10_000_000, 3).unwrap(),
    );
    for t in tasks {
        let (r, n, h) = t.await.unwrap();
        total.0 += r;
        total.1 += n;
        total.2.add(h).unwrap();
    }
    total
}

fn report(name: &str, secs: u64, (reqs, items, h): &(u64, u64, Histogram<u64>)) {
    println!(
        "{name:<48} {:>12.0} items/s {:>10.0} req/s  p50 {:>6} µs  p99 {:>6} µs  p999 {:>6} µs",
        *items as f64 / secs as f64,
        *reqs as f64 / secs as f64,
        h.value_at_quantile(0.5),
        h.value_at_quantile(0.99),
        h.value_at_quantile(0.999),
    );
}

/// Registers a store, bootstraps, and splits the keyspace into `ranges` ranges.
async fn populate(c: &Client, ranges: usize) {
    let store = StoreInfo {
        store_id: StoreId(0),
        addr: "127.0.0.1:1".into(),
        shard_addrs: vec!["127.0.0.1:2".into()],
        labels: vec![],
    };
    let Message::StoreRegisterResp(r) = c
        .call(
            StoreRegister {
                store,
                mem_capacity: 0,
                disk_capacity: 0,
            }
            .into(),
        )
        .await
        .unwrap()
    else {
        panic!()
    };
    let Message::BootstrapResp(b) = c
        .call(
            Bootstrap {
                store_id: r.store_id,
                shard_id: ShardId(0),
            }
            .into(),
        )
        .await
        .unwrap()
    else {
        panic!()
    };
    // Split the last range at increasing keys: k0001, k0002, ...
    let mut last: RangeDescriptor = b.ranges[0].clone(); // one shard: one first range
    for i in 1..ranges {
        let key = Bytes::from(format!("k{i:04}"));
        let Message::SplitIds(ids) = c
            .call(
                SplitRequest {
                    range_id: last.id,
                    epoch: last.epoch,
                    split_key: key.clone(),
                }
                .into(),
            )
            .await
            .unwrap()
        else {
            panic!()
        };
        let mut left = last.clone();
        left.end = key.clone();
        left.epoch.version += 1;
        let right = RangeDescriptor {
            id: ids.new_range_id,
            start: key,
            end: Bytes::new(),
            epoch: left.epoch,
            replicas: vec![Replica {
                replica_id: ids.new_replica_ids[0],
                store_id: r.store_id,
                shard_id: ShardId(0),
                role: ReplicaRole::Voter {},
            }],
            leader: Some(ids.new_replica_ids[0]),
        };
        let reply = c
            .call(
                SplitReport {
                    left,
                    right: right.clone(),
                }
                .into(),
            )
            .await
            .unwrap();
        assert!(matches!(reply, Message::SplitReportResp(_)), "{reply:?}");
        last = right;
    }
}

fn main() {
    let secs: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let (m, _) = Master::open(MasterConfig::new(dir.path()), Arc::new(SystemClock)).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server =
            tokio::spawn(
                m.clone()
                    .serve(listener, TransportConfig::default(), 256, async move {
                        let _ = stopped.await;
                    }),
            );
        let admin = connect(&addr).await;
        populate(&admin, 1000).await;
        println!(
            "master bench: {CLIENTS} clients, {secs} s per run, {} cores",
            std::thread::available_parallelism().map_or(0, |n| n.get())
        );
        for (conns, how) in [(CLIENTS, "64 conns"), (1, "1 conn, pipelined")] {
            for batch in [1u32, 100] {
                let r = drive(&addr, CLIENTS, conns, secs, move |_| {
                    (TsoRequest { count: batch }.into(), u64::from(batch))
                })
                .await;
                report(
                    &format!("tso batch {batch}, {CLIENTS} clients, {how}"),
                    secs,
                    &r,
                );
            }
        }
        let lookup = |i: u64| {
            let key = Bytes::from(format!("k{:04}x", i % 1000));
            (RouteByKey { key }.into(), 1)
        };
        let r = drive(&addr, CLIENTS, CLIENTS, secs, lookup).await;
        report(
            &format!("route by key, {CLIENTS} clients, 64 conns"),
            secs,
            &r,
        );
        let r = drive(&addr, CLIENTS, 1, secs, lookup).await;
        report(
            &format!("route by key, {CLIENTS} clients, 1 conn"),
            secs,
            &r,
        );
        let r = drive(&addr, 1, 1, secs, lookup).await;
        report("route by key, 1 client (idle latency)", secs, &r);
        let _ = stop.send(());
        server.await.unwrap();
        print!("{}", m.metrics().render());
    });
}
