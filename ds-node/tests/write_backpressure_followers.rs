//! Write backpressure is the leader's alone (`server::throttle`): followers apply every
//! committed entry, even far above their own `maxmemory` line. Three DS nodes in one process
//! (`common::trio`); node 1 has a large budget and leads (the others' election timeout is
//! 100 times longer); nodes 2 and 3 have 1 MiB and a demotion capped at 1 byte per second, so
//! they stay above their line. Four times their line is written through the leader: every
//! write is acknowledged, and both followers apply all of it without throttling anything.
#![allow(clippy::unwrap_used)]
// Test threads drive the nodes from outside their shards: blocking calls are fine here.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod common;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::trio::{free_port, must_call, node_cfg};
use ds_node::run;
use net::message::kv::{Cond, Expiry, KvOp, KvResponse};

const FOLLOWER_MAXMEMORY: u64 = 1 << 20;
const VALUE: usize = 8192;
/// Four times the followers' write line (110 % of their budget) in values.
const KEYS: usize = (4 * FOLLOWER_MAXMEMORY as usize * 110 / 100) / VALUE;

fn metric(admin: &str, name: &str) -> u64 {
    let mut s = std::net::TcpStream::connect(admin).unwrap();
    write!(s, "GET /metrics HTTP/1.1\r\nhost: x\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(f64::NAN) as u64
}

/// Metric `name` of `admin` once it reaches `at_least`, or its value after 10 s.
fn metric_until(admin: &str, name: &str, at_least: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let v = metric(admin, name);
        if v >= at_least || Instant::now() > deadline {
            return v;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn followers_apply_every_committed_write_above_their_own_line() {
    let root = test_support::tempdir::TempDir::new("write-backpressure-followers");
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let admins: Vec<String> = (0..3)
        .map(|_| format!("127.0.0.1:{}", free_port()))
        .collect();
    let nodes: Vec<_> = (1..=3u64)
        .map(|i| {
            let mut c = node_cfg(root.path(), i, &ports);
            c.admin_addr = Some(admins[i as usize - 1].clone());
            c.policy_tick_ms = 10;
            if i == 1 {
                c.maxmemory = 64 << 20;
            } else {
                c.maxmemory = FOLLOWER_MAXMEMORY;
                c.policy_demote_bytes_per_sec = 1;
                c.election_ticks *= 100;
            }
            run(c).unwrap()
        })
        .collect();
    let addrs: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    let leader = addrs[0].clone();
    glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .io_memory(512 << 10)
        .spawn(move || async move {
            for i in 0..KEYS {
                let op = KvOp::StrSet {
                    key: Bytes::from(format!("k{i:05}")),
                    value: Bytes::from(vec![(i % 251) as u8; VALUE]),
                    expiry: Expiry::Persist {},
                    cond: Cond::Always {},
                    get_old: false,
                };
                let (r, at) = must_call(&addrs, op).await;
                assert!(matches!(r, KvResponse::Ok { .. }), "write {i}: {r:?}");
                assert_eq!(at, leader, "node 1 leads");
            }
        })
        .unwrap()
        .join()
        .unwrap();
    let line = FOLLOWER_MAXMEMORY / 100 * 110;
    let data = (KEYS * VALUE) as u64;
    let applied = metric(&admins[0], "ds_raft_applied_total");
    for admin in &admins[1..] {
        // Every committed entry applied (the followers' count catches up with the leader's).
        assert!(metric_until(admin, "ds_raft_applied_total", applied) >= applied);
        let accounted = metric_until(admin, "ds_memory_accounted_bytes", data);
        eprintln!(
            "follower {admin}: accounted {} KiB, its line {} KiB",
            accounted >> 10,
            line >> 10
        );
        assert!(accounted >= data && accounted > 3 * line, "{accounted}");
        assert_eq!(metric(admin, "ds_write_throttled_total"), 0);
    }
    assert_eq!(metric(&admins[0], "ds_write_throttled_total"), 0);
    for n in nodes {
        n.shutdown().unwrap();
    }
}
