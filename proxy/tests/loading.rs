//! A proxy that starts while its ranges cannot serve yet (leaders being elected after a
//! restart) answers `-LOADING` to commands that need data, as redis-server does while it
//! loads its dataset, and says `loading:1` in `INFO`; it serves them once every range has
//! answered a read.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::{Client, Env};

const LOADING: &str = "-LOADING Redis is loading the dataset in memory\r\n";

fn loading_field(c: &mut Client) -> String {
    let info = c.cmd("INFO persistence");
    info.lines()
        .find_map(|l| l.strip_prefix("loading:"))
        .unwrap_or_else(|| panic!("no loading field in {info}"))
        .to_string()
}

#[test]
fn a_starting_proxy_answers_loading_until_every_range_serves() {
    let env = Env::start(2);
    // Every shard answers NotLeader to its next requests, as while a range elects a leader;
    // only the new proxy's probes reach them (the commands below are answered by the proxy).
    for s in &env.cluster.shards {
        s.fail_not_leader.store(1_000, Ordering::Relaxed);
    }
    let (addr, shared) = env.start_another_proxy();
    let mut c = Client::connect(&addr);
    assert!(shared.loading());
    assert_eq!(c.cmd("SET k v"), LOADING);
    assert_eq!(c.cmd("GET k"), LOADING);
    assert_eq!(
        c.cmd("PING"),
        LOADING,
        "redis-server refuses PING while loading too"
    );
    assert_eq!(loading_field(&mut c), "1");
    // Inside MULTI the refusal aborts the transaction, as any rejected command does.
    assert_eq!(c.cmd("MULTI"), "+OK\r\n");
    assert_eq!(c.cmd("SET k v"), LOADING);
    assert_eq!(
        c.cmd("EXEC"),
        "-EXECABORT Transaction discarded because of previous errors.\r\n"
    );

    // The ranges serve again: the next probe round ends loading.
    for s in &env.cluster.shards {
        s.fail_not_leader.store(0, Ordering::Relaxed);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while shared.loading() {
        assert!(Instant::now() < deadline, "loading never ended");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(loading_field(&mut c), "0");
    assert_eq!(c.cmd("SET k v"), "+OK\r\n");
    assert_eq!(c.cmd("GET k"), "$1\r\nv\r\n");
    assert_eq!(c.cmd("PING"), "+PONG\r\n");
}

#[test]
fn loading_ends_at_the_first_probe_round_over_serving_ranges() {
    let env = Env::start(4);
    let started = Instant::now();
    let (addr, shared) = env.start_another_proxy();
    while shared.loading() {
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "loading lasted over 2 s with every range serving"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    let mut c = Client::connect(&addr);
    assert_eq!(c.cmd("SET k v"), "+OK\r\n");
    assert_eq!(loading_field(&mut c), "0");
}
