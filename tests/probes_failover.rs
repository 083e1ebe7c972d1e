//! Probes and failover on a real cluster of processes: a `tierkv master`, four `tierkv ds`
//! nodes (one shard each; replication factor 3, so one node is the spare) and a
//! `tierkv proxy`, with three probes in this process reporting to the master.
//!
//! 0. Every shard reports its load: the leader's writes show per shard on `/stores` and per
//!    range on `/ranges`.
//! 1. One probe is cut off from a healthy node that holds a replica (its pings to that node's
//!    shard time out, as in a partition between that probe and the node): for longer than
//!    `store-down-after-ms` the node stays healthy on every poll of `/stores`, and the votes
//!    show the blind probe's view.
//! 2. The node leading the range is killed with SIGKILL while a writer keeps writing through
//!    the proxy: the master declares it dead (majority of probes + heartbeats stopped) after
//!    `store-down-after-ms`, replaces its replica on the spare node, writes go on, and every
//!    write acknowledged before, during and after is read back.
#![allow(clippy::unwrap_used)] // a test fails by panicking

use std::path::Path;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use probe::{NetPinger, PingError, Pinger, ProbeConfig, ProbeStats};
use test_support::http::{get_json as http_get, get_text};
use test_support::procs::{Procs, free_port, spawn, wait_until};
use test_support::resp::Conn;

const DOWN_AFTER_MS: u64 = 3000;

fn tierkv(args: &[&str], log: &Path) -> Child {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tierkv"));
    c.args(args);
    spawn(c, log)
}

fn connect(port: u16) -> Option<Conn> {
    Conn::connect(("127.0.0.1", port), Duration::from_secs(5)).ok()
}

/// Writes `key` until the proxy acknowledges it (new connection after an error).
fn must_set(conn: &mut Option<Conn>, port: u16, key: &str, stop: &AtomicBool) -> bool {
    while !stop.load(Ordering::Relaxed) {
        if conn.is_none() {
            *conn = connect(port);
        }
        if let Some(c) = conn.as_mut() {
            match c.call(&["SET", key, &format!("v-{key}")]) {
                Ok(r) if r.is_ok() => return true,
                Ok(_) => std::thread::sleep(Duration::from_millis(50)),
                Err(_) => *conn = None,
            }
        }
    }
    false
}

/// A pinger cut off from some addresses (a partition between one probe and one node).
struct Cut {
    inner: NetPinger,
    cut: Arc<Mutex<Vec<String>>>,
}

impl Pinger for Cut {
    async fn ping(&self, addr: &str, deadline: Duration) -> Result<Duration, PingError> {
        let cut = self.cut.lock().unwrap().iter().any(|a| a == addr);
        if cut {
            tokio::time::sleep(deadline).await;
            return Err(PingError::Timeout(deadline));
        }
        self.inner.ping(addr, deadline).await
    }
}

fn store_health(stores: &serde_json::Value, id: u64) -> String {
    stores
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == id)
        .map(|s| s["health"].as_str().unwrap_or("none").to_string())
        .unwrap_or_default()
}

/// `(store, shard address)` of every store, the range's voters' stores and its leader's store.
type Topology = (Vec<(u64, String)>, Vec<u64>, u64);

fn topology(admin: u16) -> Option<Topology> {
    let stores = http_get(admin, "/stores")?;
    let ranges = http_get(admin, "/ranges")?;
    let addrs = stores
        .as_array()?
        .iter()
        .map(|s| {
            (
                s["id"].as_u64().unwrap(),
                s["shards"][0].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let r = &ranges.as_array()?[0];
    let voters: Vec<u64> = r["replicas"]
        .as_array()?
        .iter()
        .filter(|x| x["role"] == "voter")
        .map(|x| x["store"].as_u64().unwrap())
        .collect();
    let leader = r["leader"].as_u64()?;
    let leader_store = r["replicas"]
        .as_array()?
        .iter()
        .find(|x| x["id"] == leader)?["store"]
        .as_u64()?;
    Some((addrs, voters, leader_store))
}

#[test]
fn a_blind_probe_kills_nothing_and_a_killed_node_is_declared_dead_and_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let secret_file = d.join("cluster-secret");
    let (secret, _) = net::auth::ClusterSecret::load_or_create(&secret_file).unwrap();
    let secret_arg = secret_file.to_str().unwrap();
    let (rpc, admin, redis_port) = (free_port(), free_port(), free_port());
    let proxy_metrics = free_port();
    let master_addr = format!("127.0.0.1:{rpc}");
    std::fs::write(
        d.join("master.toml"),
        format!(
            "data-dir = \"{}\"\nlisten = \"{master_addr}\"\nadmin-listen = \"127.0.0.1:{admin}\"\n\
             cluster-secret-file = \"{secret_arg}\"\nschedule-interval-ms = 200\noperator-timeout-ms = 20000\n\
             [cluster]\nreplication-factor = 3\n\
             [schedule]\nstore-down-after-ms = {DOWN_AFTER_MS}\nprobe-window-ms = 1500\nprobe-expiry-ms = 5000\n",
            d.join("master").display()
        ),
    )
    .unwrap();
    std::fs::write(
        d.join("ds.toml"),
        "shards = 1\npin = false\nheartbeat-ms = 200\nlog-file-bytes = 67108864\nsegment-bytes = 8388608\n",
    )
    .unwrap();
    let mut procs = Procs::default();
    let mut ds_ports = Vec::new();
    let m = d.join("master.toml");
    procs.add(tierkv(
        &["master", "--config", m.to_str().unwrap()],
        &d.join("master.log"),
    ));
    wait_until(d, "the master", Duration::from_secs(20), || {
        http_get(admin, "/status").map(|_| ())
    });
    let mut ds = Vec::new();
    for i in 0..4 {
        let data = d.join(format!("ds{i}"));
        let port = free_port().to_string();
        ds_ports.push(format!("127.0.0.1:{port}"));
        let cfg = d.join("ds.toml");
        ds.push(procs.add(tierkv(
            &[
                "ds",
                "--config",
                cfg.to_str().unwrap(),
                "--data-dir",
                data.to_str().unwrap(),
                "--master",
                &master_addr,
                "--base-port",
                &port,
                "--cluster-secret-file",
                secret_arg,
            ],
            &d.join(format!("ds{i}.log")),
        )));
        if i == 0 {
            // The first node bootstraps the cluster's range; the others join it.
            wait_until(d, "the first node", Duration::from_secs(20), || {
                let r = http_get(admin, "/ranges")?;
                (!r.as_array()?.is_empty()).then_some(())
            });
        }
    }
    procs.add(tierkv(
        &[
            "proxy",
            "--listen",
            &format!("127.0.0.1:{redis_port}"),
            "--master",
            &master_addr,
            "--cluster-secret-file",
            secret_arg,
            "--metrics-listen",
            &format!("127.0.0.1:{proxy_metrics}"),
        ],
        &d.join("proxy.log"),
    ));
    let (addrs, voters, leader) = wait_until(d, "3 voters", Duration::from_secs(30), || {
        topology(admin).filter(|(a, v, _)| a.len() == 4 && v.len() == 3)
    });
    eprintln!("stores {addrs:?}, voters {voters:?}, leader on store {leader}");

    // Three probes in this process; p1 can be cut off from chosen addresses.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let cut = Arc::new(Mutex::new(Vec::<String>::new()));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    for name in ["p1", "p2", "p3"] {
        let mut cfg = ProbeConfig::new(name, format!("zone-{name}"), master_addr.clone());
        cfg.interval = Duration::from_millis(200);
        cfg.deadline = Duration::from_millis(400);
        cfg.transport.secret = secret.clone();
        let inner = NetPinger::new(cfg.transport.clone());
        let pool = inner.pool().clone();
        let cut = if name == "p1" {
            cut.clone()
        } else {
            Arc::default()
        };
        let mut stop = stop_rx.clone();
        rt.spawn(probe::run(
            cfg,
            pool,
            Arc::new(Cut { inner, cut }),
            Arc::new(ProbeStats::default()),
            async move {
                let _ = stop.wait_for(|s| *s).await;
            },
        ));
    }
    wait_until(d, "three probes reporting", Duration::from_secs(10), || {
        let p = http_get(admin, "/probes")?;
        (p.as_array()?
            .iter()
            .filter(|x| x["reporting"] == true)
            .count()
            == 3)
            .then_some(())
    });

    // A writer through the proxy for the whole test.
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let writer = {
        let (stop, acked) = (stop.clone(), acked.clone());
        std::thread::spawn(move || {
            let mut conn = None;
            for i in 0.. {
                let key = format!("key-{i}");
                if !must_set(&mut conn, redis_port, &key, &stop) {
                    break;
                }
                acked.lock().unwrap().push(key);
            }
        })
    };
    wait_until(d, "first writes", Duration::from_secs(20), || {
        (acked.lock().unwrap().len() >= 20).then_some(())
    });

    // Load: every node's shard reports (protocol 3); the leader's shows the writes, per shard
    // and per range.
    wait_until(
        d,
        "load on /stores and /ranges",
        Duration::from_secs(10),
        || {
            let stores = http_get(admin, "/stores")?;
            let ranges = http_get(admin, "/ranges")?;
            let all_report = stores
                .as_array()?
                .iter()
                .all(|s| s["shard_loads"].as_array().is_some_and(|l| l.len() == 1));
            let leader_writes = stores
            .as_array()?
            .iter()
            .find(|s| s["id"] == leader)?["shard_loads"][0]["write_ops_per_sec"]
            .as_u64()?;
            let range_writes = ranges[0]["write_qps"].as_u64()?;
            (all_report && leader_writes > 0 && range_writes > 0).then_some(())
        },
    );

    // 1. p1 cannot reach a healthy follower for longer than down-after: it stays healthy.
    let blind = *voters.iter().find(|s| **s != leader).unwrap();
    let blind_addr = addrs.iter().find(|(s, _)| *s == blind).unwrap().1.clone();
    cut.lock().unwrap().push(blind_addr);
    let until = Instant::now() + Duration::from_millis(DOWN_AFTER_MS + 1500);
    let mut saw_p1_unreachable = false;
    while Instant::now() < until {
        let stores = http_get(admin, "/stores").unwrap();
        assert_eq!(store_health(&stores, blind), "healthy", "{stores}");
        let s = stores
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["id"] == blind)
            .unwrap();
        saw_p1_unreachable |= s["votes"]["p1"]
            .as_str()
            .unwrap_or("")
            .starts_with("unreachable");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        saw_p1_unreachable,
        "the blind probe's vote shows on /stores"
    );

    // 2. Kill the leader's node: dead after down-after, its replica replaced on the spare.
    let before_kill = acked.lock().unwrap().len();
    let leader_addr = &addrs.iter().find(|(s, _)| *s == leader).unwrap().1;
    let victim = ds_ports.iter().position(|a| a == leader_addr).unwrap();
    let killed_at = Instant::now();
    procs.kill(ds[victim]);
    wait_until(
        d,
        "the killed node declared dead",
        Duration::from_secs(15),
        || (store_health(&http_get(admin, "/stores")?, leader) == "dead").then_some(()),
    );
    let detect = killed_at.elapsed();
    eprintln!("kill -9 to dead: {detect:?}");
    assert!(detect >= Duration::from_millis(DOWN_AFTER_MS), "{detect:?}");
    // The blind probe still cannot reach `blind`, but the others do.
    assert_eq!(
        store_health(&http_get(admin, "/stores").unwrap(), blind),
        "healthy"
    );
    let (_, voters_after, _) =
        wait_until(d, "the replica replaced", Duration::from_secs(30), || {
            topology(admin).filter(|(_, v, _)| v.len() == 3 && !v.contains(&leader))
        });
    eprintln!("voters after: {voters_after:?}");
    // The master pushed the changed routes to the proxy through its route watch.
    wait_until(
        d,
        "a route push to the proxy",
        Duration::from_secs(10),
        || {
            let info = connect(redis_port)?.call(&["INFO", "stats"]).ok()?.text()?;
            let pushes: u64 = info
                .lines()
                .find_map(|l| l.strip_prefix("route_pushes:"))?
                .trim()
                .parse()
                .ok()?;
            (pushes > 0).then_some(())
        },
    );
    // `tierkv proxy --metrics-listen` serves the same counter to Prometheus.
    let proxy_text = get_text(proxy_metrics, "/metrics").unwrap();
    let pushed = proxy_text
        .lines()
        .find_map(|l| l.strip_prefix("proxy_route_pushes_total "))
        .and_then(|v| v.trim().parse::<u64>().ok());
    assert!(pushed.is_some_and(|n| n > 0), "{proxy_text}");
    wait_until(
        d,
        "writes after the failover",
        Duration::from_secs(20),
        || (acked.lock().unwrap().len() >= before_kill + 50).then_some(()),
    );
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();

    // Every acknowledged write is there.
    let acked = acked.lock().unwrap().clone();
    let mut conn = connect(redis_port).unwrap();
    for key in &acked {
        assert_eq!(
            conn.call(&["GET", key]).unwrap().text(),
            Some(format!("v-{key}")),
            "{key}"
        );
    }
    eprintln!(
        "{} acknowledged writes read back ({} after the kill)",
        acked.len(),
        acked.len() - before_kill
    );
    let metrics = get_text(admin, "/metrics").unwrap();
    assert!(
        metrics.contains(&format!(
            "master_store_health{{store=\"{leader}\",state=\"dead\"}} 1"
        )),
        "{metrics}"
    );
    let _ = stop_tx.send(true);
    drop(rt);
}
