//! Failover time (issue 19; DESIGN §7): from `kill -9` of the node whose shard leads the range
//! to the first write the proxy acknowledges after it, over `FAILOVER_ROUNDS` kills (default
//! 20) on the three-node cluster of `test_support::cluster` (replication factor 3). After each
//! kill the node is restarted on its data and the cluster is left to settle (three voters, a
//! stable leader, writes acknowledged) before the next round.
//!
//! ```sh
//! cargo bench --profile ci -p tierkv --bench failover
//! FAILOVER_ROUNDS=40 cargo bench --profile ci -p tierkv --bench failover
//! TIERKV_BENCH_BIN=/tmp/tierkv-before cargo bench --profile ci -p tierkv --bench failover
//! ```
//!
//! `TIERKV_BENCH_BIN` runs another build's binary (a before/after pair on one machine).
//!
//! The writer is one client doing `SET` in a loop (a new connection after any error, 2 ms
//! apart after an error reply): what an application with a retry loop sees. The time is
//! bounded below by the election timeout (a follower campaigns only after it has heard
//! nothing from the leader for a randomised 1–2 election timeouts), then the new leader's
//! first heartbeat to the master (it learns who leads) and the proxy's route refresh.
#![allow(clippy::unwrap_used)] // a benchmark fails by panicking

use std::path::Path;
use std::time::{Duration, Instant};

use test_support::cluster::{Cluster, NODES};
use test_support::resp::Conn;

/// Longest a single kill may take to fail over before the run is declared broken.
const GIVE_UP: Duration = Duration::from_secs(30);

fn rounds() -> usize {
    std::env::var("FAILOVER_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20)
}

/// Writes `key` through the proxy until one write is acknowledged; returns how many
/// attempts failed first.
fn write_until_ok(c: &Cluster, key: &str, conn: &mut Option<Conn>) -> usize {
    let start = Instant::now();
    let mut failed = 0;
    loop {
        assert!(
            start.elapsed() < GIVE_UP,
            "no write acknowledged in {GIVE_UP:?}"
        );
        if conn.is_none() {
            *conn = Conn::connect(&c.proxy_addr, Duration::from_secs(5)).ok();
        }
        let ok = conn
            .as_mut()
            .map(|k| k.call(&["SET", key, "v"]))
            .map(|r| match r {
                Ok(r) => r.is_ok(),
                Err(_) => {
                    *conn = None;
                    false
                }
            });
        if ok == Some(true) {
            return failed;
        }
        failed += 1;
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Waits until the master reports three voters and the same leader for a second, and a
/// write is acknowledged; returns the leader's node.
fn settle(c: &Cluster, conn: &mut Option<Conn>) -> usize {
    let start = Instant::now();
    let mut last = None;
    let mut since = Instant::now();
    loop {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "cluster never settled"
        );
        let now = c.leader().filter(|_| c.voters() == Some(NODES));
        if now != last {
            (last, since) = (now, Instant::now());
        }
        if let Some(l) = last
            && since.elapsed() >= Duration::from_secs(1)
        {
            write_until_ok(c, "settle", conn);
            return l;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn main() {
    // `cargo bench` passes `--bench`; a test run of the bench target (`cargo test --benches`)
    // passes nothing we need: run only when asked to bench.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let bin = std::env::var("TIERKV_BENCH_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_tierkv").to_string());
    let mut c = Cluster::start(Path::new(&bin), None, &[]);
    let mut conn = None;
    let mut times = Vec::new();
    for round in 0..rounds() {
        let leader = settle(&c, &mut conn);
        let t0 = Instant::now();
        c.kill(leader);
        let failed = write_until_ok(&c, &format!("after-kill-{round}"), &mut conn);
        let took = t0.elapsed();
        let took_ms = took.as_millis();
        println!(
            "round {round:>2}: killed ds{leader}; first write after {took_ms:>5} ms \
             ({failed} failed attempts)"
        );
        times.push(took);
        c.restart(leader);
        c.assert_alive();
    }
    times.sort();
    let ms = |d: Duration| d.as_millis();
    println!(
        "failover (kill -9 of the leader's node -> first acknowledged write), {} kills: \
         p50 {} ms, p99 {} ms, min {} ms, max {} ms",
        times.len(),
        ms(percentile(&times, 0.5)),
        ms(percentile(&times, 0.99)),
        ms(times[0]),
        ms(times[times.len() - 1])
    );
}
