//! Routing while the cluster changes under the proxy: a real master, three real DS nodes and
//! the proxy. Once the first range has three voters, several connections pipeline SETs of
//! new keys and GETs of acknowledged ones through the proxy while (a) the master splits ranges
//! again and again (split threshold 32 KiB) and (b) the node leading the first range is
//! stopped mid-load, so its ranges elect new leaders elsewhere.
//!
//! Checked: no command gets an error reply — except `-ERR write outcome unknown`, and only
//! for a SET in a pipeline that was in flight while the leader's node stopped (its
//! connection closed after the SET was sent; the proxy must not retry such a write, and says
//! so); every acknowledged SET reads back, during the load and after it; the proxy retried
//! and refreshed its routes; the master split the range several times during the load.
#![allow(clippy::unwrap_used)]

mod cluster;
mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use cluster::{RealCluster, leader_store, voters};
use common::{Client, multibulk};

const CONNECTIONS: usize = 4;
/// SETs of new keys and GETs of acknowledged keys per pipeline (16 commands).
const SETS: usize = 12;
const GETS: usize = 4;

fn value(conn: usize, i: usize) -> String {
    format!("{conn}-{i}-{}", "v".repeat(200))
}

fn key(conn: usize, i: usize) -> String {
    format!("load:{conn}:{i:06}")
}

/// What one connection saw.
#[derive(Default)]
struct Outcome {
    /// Acknowledged SETs: key index → value index.
    acked: Vec<usize>,
    /// SETs answered `write outcome unknown`: when, and the reply.
    unknown: Vec<(usize, Instant, String)>,
    /// Any other error reply or wrong GET result.
    errors: Vec<String>,
    pipelines: usize,
}

fn bulk(v: &str) -> String {
    format!("${}\r\n{v}\r\n", v.len())
}

/// One connection's load until `stop`: pipelines of SETs of new keys and GETs of keys this
/// connection had acknowledged.
fn load(addr: String, conn: usize, stop: Arc<AtomicBool>) -> Outcome {
    let mut c = Client::connect(&addr);
    c.stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut out = Outcome::default();
    let mut next = 0usize;
    let mut rng = conn as u64 + 1;
    while !stop.load(Ordering::Relaxed) {
        let mut req = Vec::new();
        let sets: Vec<usize> = (next..next + SETS).collect();
        next += SETS;
        for &i in &sets {
            req.extend(multibulk(&[
                b"SET",
                key(conn, i).as_bytes(),
                value(conn, i).as_bytes(),
            ]));
        }
        let mut gets = Vec::new();
        for _ in 0..GETS {
            if out.acked.is_empty() {
                break;
            }
            rng = rng
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let i = out.acked[(rng >> 33) as usize % out.acked.len()];
            req.extend(multibulk(&[b"GET", key(conn, i).as_bytes()]));
            gets.push(i);
        }
        c.send(&req);
        let replies: Vec<String> = (0..sets.len() + gets.len())
            .map(|_| String::from_utf8_lossy(&c.read_reply().expect("proxy closed")).into_owned())
            .collect();
        let answered = Instant::now();
        out.pipelines += 1;
        for (&i, r) in sets.iter().zip(&replies) {
            if r == "+OK\r\n" {
                out.acked.push(i);
            } else if r.starts_with("-ERR write outcome unknown") {
                out.unknown.push((i, answered, r.clone()));
            } else {
                out.errors.push(format!("SET {}: {r:?}", key(conn, i)));
            }
        }
        for (&i, r) in gets.iter().zip(&replies[sets.len()..]) {
            if *r != bulk(&value(conn, i)) {
                out.errors.push(format!("GET {}: {r:?}", key(conn, i)));
            }
        }
    }
    out
}

#[test]
fn pipelined_load_survives_splits_and_a_leader_change_without_errors() {
    // Leader balancing off: only the splits and the stopped leader move things.
    load_through_splits_and_a_leader_change("routing-under-change", 1000);
}

/// The same with the master's leader balancing on. In the 1.5 s before the master counts the
/// stopped store as down, leader balancing sees it leading nothing and proposes moving a
/// leader to its replica, again at every heartbeat. raft-rs drops every proposal while a
/// transfer is pending, so the DS leader transfers only to a caught-up, reachable voter and
/// never over a pending transfer (`ds-node/src/worker/heartbeat.rs`); before that, writes
/// stalled past the proxy's retry budget about one run in four.
#[test]
fn pipelined_load_survives_a_leader_change_with_leader_balancing_on() {
    load_through_splits_and_a_leader_change("routing-under-change-balanced", 2);
}

fn load_through_splits_and_a_leader_change(name: &str, leader_imbalance: usize) {
    let mut cluster = RealCluster::start(
        name,
        3,
        1,
        move |m| {
            m.schedule.split_size_bytes = 32 << 10;
            m.schedule.leader_imbalance = leader_imbalance;
        },
        |_| {},
    );
    cluster.must_wait_for(
        "three voters on the first range",
        Duration::from_secs(90),
        |t| t.ranges.first().is_some_and(|d| voters(d).len() == 3),
    );
    cluster.must_serve(Duration::from_secs(60));
    let ranges_before = cluster.route_table().ranges.len();
    let retries_before = cluster.shared.router.stats.retries.load(Ordering::Relaxed);
    let refreshes_before = cluster
        .shared
        .router
        .stats
        .refreshes
        .load(Ordering::Relaxed);

    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..CONNECTIONS)
        .map(|conn| {
            let (addr, stop) = (cluster.addr.clone(), stop.clone());
            std::thread::spawn(move || load(addr, conn, stop))
        })
        .collect();

    // Let the master split the range under the load, then stop the first range's leader.
    let start = Instant::now();
    let t = cluster.must_wait_for("splits under load", Duration::from_secs(60), |t| {
        t.ranges.len() >= ranges_before + 2 && t.ranges.iter().all(|d| d.leader.is_some())
    });
    let leader = leader_store(&t.ranges[0]).expect("the first range has a leader");
    let victim = cluster.node_of_store(leader).unwrap();
    let led: usize = t
        .ranges
        .iter()
        .filter(|d| leader_store(d) == Some(leader))
        .count();
    eprintln!(
        "{} ranges after {:?}; stopping node {victim} (store {leader}), leader of {led}",
        t.ranges.len(),
        start.elapsed()
    );
    let dead_addr = cluster.nodes[victim].as_ref().unwrap().shard_addrs[0].clone();
    let kill_started = Instant::now();
    cluster.stop_node(victim);
    // Every range gets a leader on a live store, and the load runs on for a while after.
    let t = cluster.must_wait_for("new leaders", Duration::from_secs(60), |t| {
        t.ranges
            .iter()
            .all(|d| leader_store(d).is_some_and(|s| s != leader))
    });
    eprintln!("new leaders after {:?}", kill_started.elapsed());
    let keep_going = Instant::now() + Duration::from_secs(3);
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < keep_going || cluster.route_table().ranges.len() < t.ranges.len() + 2 {
        assert!(
            Instant::now() < deadline,
            "no further splits after the leader change"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    stop.store(true, Ordering::Relaxed);
    let outcomes: Vec<Outcome> = workers.into_iter().map(|w| w.join().unwrap()).collect();
    eprintln!("load stopped after {:?}", start.elapsed());
    let ranges_after = cluster.route_table().ranges.len();
    let stats = &cluster.shared.router.stats;
    let retries = stats.retries.load(Ordering::Relaxed) - retries_before;
    let refreshes = stats.refreshes.load(Ordering::Relaxed) - refreshes_before;
    let acked: usize = outcomes.iter().map(|o| o.acked.len()).sum();
    let unknown: usize = outcomes.iter().map(|o| o.unknown.len()).sum();
    eprintln!(
        "{} pipelines, {acked} SETs acknowledged, {unknown} of unknown outcome; ranges {} -> \
         {ranges_after}; {retries} retries, {refreshes} route refreshes",
        outcomes.iter().map(|o| o.pipelines).sum::<usize>(),
        ranges_before,
    );

    // No error reply but the one allowed class, and that only for pipelines in flight while
    // the node stopped.
    let errors: Vec<&String> = outcomes.iter().flat_map(|o| &o.errors).collect();
    if !errors.is_empty() {
        diagnose(&cluster, &errors);
    }
    assert!(
        errors.is_empty(),
        "{} error replies, e.g. {:?}",
        errors.len(),
        &errors[..errors.len().min(10)]
    );
    let unknown_prefix = format!("-ERR write outcome unknown: {dead_addr}: ");
    for o in &outcomes {
        for (i, answered, r) in &o.unknown {
            assert!(
                r.starts_with(&unknown_prefix) && *answered >= kill_started,
                "SET #{i}: outcome unknown, but not on the stopped node {dead_addr}: {r:?}"
            );
        }
    }
    assert!(acked >= 1000, "only {acked} SETs acknowledged");
    assert!(
        ranges_after >= ranges_before + 3,
        "only {ranges_before} -> {ranges_after} ranges"
    );
    assert!(
        retries > 0 && refreshes > 0,
        "{retries} retries, {refreshes} refreshes"
    );
    // Each pipeline's SETs to one range travel packed (`proxy::pack`); after a split, a pack
    // whose keys now span ranges is refused whole and its SETs go one by one.
    let packs = stats.packs.load(Ordering::Relaxed);
    let refused = stats.packs_refused.load(Ordering::Relaxed);
    eprintln!("{packs} packs, {refused} refused whole and sent one by one");
    assert!(packs > 0, "no pipeline's writes were packed");

    // Every acknowledged SET reads back (pipelined, through the proxy).
    let mut c = Client::connect(&cluster.addr);
    c.stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut wrong = HashMap::new();
    for (conn, o) in outcomes.iter().enumerate() {
        for chunk in o.acked.chunks(256) {
            let mut req = Vec::new();
            for &i in chunk {
                req.extend(multibulk(&[b"GET", key(conn, i).as_bytes()]));
            }
            c.send(&req);
            for &i in chunk {
                let r = String::from_utf8_lossy(&c.read_reply().unwrap()).into_owned();
                if r != bulk(&value(conn, i)) {
                    wrong.insert(key(conn, i), r);
                }
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{} acknowledged SETs do not read back, e.g. {:?}",
        wrong.len(),
        wrong.iter().take(5).collect::<Vec<_>>()
    );
    eprintln!("read back after {:?}", start.elapsed());
    drop(cluster);
    eprintln!("cluster stopped after {:?}", start.elapsed());
}

/// On failure: what the master and every live node say about the range of each failed key.
fn diagnose(cluster: &RealCluster, errors: &[&String]) {
    use net::message::RouteCtx;
    use net::message::kv::{KvOp, KvRequest};
    let t = cluster.route_table();
    for e in errors.iter().take(3) {
        let Some(k) = e
            .split(' ')
            .nth(1)
            .map(|k| k.trim_end_matches(':').to_string())
        else {
            continue;
        };
        let mk = proxy::keyspace::meta_key(proxy::keyspace::Db::ZERO, k.as_bytes());
        let Some(d) = t.ranges.iter().find(|d| d.contains(&mk)) else {
            eprintln!("{k}: no range in the master's table");
            continue;
        };
        eprintln!("{k}: master says {d:?}");
        for s in &t.stores {
            let addr = s.shard_addrs[0].clone();
            let ctx = RouteCtx {
                range_id: d.id,
                epoch: d.epoch,
            };
            let op = KvOp::StrGet {
                key: k.clone().into(),
            };
            let maddr = cluster.master_addr.clone();
            let r = cluster.rt.block_on(async move {
                // Pooled: learns the cluster id from the master, which shards require.
                let pool = net::tokio_transport::Pool::new(
                    net::message::handshake::Hello::new(
                        net::message::handshake::Role::Client {},
                        net::ClusterId(0),
                        net::NodeId(0),
                    ),
                    net::transport::TransportConfig::default(),
                    1,
                );
                pool.get(&maddr).await?;
                let c = pool.get(&addr).await?;
                c.call(net::Message::KvRequest(KvRequest { ctx, op })).await
            });
            eprintln!("  store {} at {:?}: {r:?}", s.store_id, s.shard_addrs);
        }
    }
}
