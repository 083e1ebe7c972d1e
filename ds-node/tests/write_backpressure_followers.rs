//! Write backpressure is the leader's alone (`server::throttle`): followers apply every
//! committed entry, even far above their own `maxmemory` line. Three DS nodes in one process
//! (`common::trio`) start with a large budget; once a leader is elected, its two followers
//! are restarted one at a time with 1 MiB and a demotion capped at 1 byte per second, so
//! they stay above their line. Four times their line is written through the leader: every
//! write is acknowledged, and both followers apply all of it without throttling anything.
#![allow(clippy::unwrap_used)]
// Test threads drive the nodes from outside their shards: blocking calls are fine here.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::on_executor;
use common::trio::{free_port, must_call, node_cfg};
use ds_node::server::ShardMetrics;
use ds_node::{DsConfig, NodeHandle, run};
use net::message::kv::{Cond, Expiry, KvOp, KvResponse};

const FOLLOWER_MAXMEMORY: u64 = 1 << 20;
const VALUE: usize = 8192;
/// Four times the followers' write line (110 % of their budget) in values.
const KEYS: usize = (4 * FOLLOWER_MAXMEMORY as usize * 110 / 100) / VALUE;

fn set(i: usize) -> KvOp {
    KvOp::StrSet {
        key: Bytes::from(format!("k{i:05}")),
        value: Bytes::from(vec![(i % 251) as u8; VALUE]),
        expiry: Expiry::Persist {},
        cond: Cond::Always {},
        get_old: false,
    }
}

/// Writes keys `range` through whichever node leads; the leader's address (the same for
/// every write).
fn must_write(addrs: &[String], range: std::ops::Range<usize>) -> String {
    let addrs = addrs.to_vec();
    on_executor(move || {
        Box::pin(async move {
            let mut leader: Option<String> = None;
            for i in range {
                let (r, at) = must_call(&addrs, set(i)).await;
                assert!(matches!(r, KvResponse::Ok { .. }), "write {i}: {r:?}");
                assert!(leader.as_ref().is_none_or(|l| *l == at), "the leader moved");
                leader = Some(at);
            }
            leader.unwrap()
        })
    })
}

/// The node's figures once `done` holds for them, or after 10 s.
fn metrics_until(n: &NodeHandle, done: impl Fn(&ShardMetrics) -> bool) -> ShardMetrics {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let m = n.metrics();
        if done(&m) || Instant::now() > deadline {
            return m;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn small(mut c: DsConfig) -> DsConfig {
    c.maxmemory = FOLLOWER_MAXMEMORY;
    c.policy_demote_bytes_per_sec = 1;
    c
}

#[test]
fn followers_apply_every_committed_write_above_their_own_line() {
    let root = test_support::tempdir::TempDir::new("write-backpressure-followers");
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let addrs: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    let cfg = |i: usize| DsConfig {
        maxmemory: 64 << 20,
        policy_tick_ms: 10,
        ..node_cfg(root.path(), i as u64 + 1, &ports)
    };
    let mut nodes: Vec<Option<NodeHandle>> = (0..3).map(|i| Some(run(cfg(i)).unwrap())).collect();
    let leader = must_write(&addrs, 0..1);
    let li = addrs.iter().position(|a| *a == leader).unwrap();
    let followers: Vec<usize> = (0..3).filter(|&i| i != li).collect();
    // One follower at a time, so that the leader keeps its quorum; each has applied a
    // write since its restart before the next goes.
    for (round, &f) in followers.iter().enumerate() {
        nodes[f].take().unwrap().shutdown().unwrap();
        nodes[f] = Some(run(small(cfg(f))).unwrap());
        assert_eq!(must_write(&addrs, 1 + round..2 + round), leader);
        let m = metrics_until(nodes[f].as_ref().unwrap(), |m| m.applied_total > 0);
        assert!(m.applied_total > 0, "node {f} never caught up");
    }
    assert_eq!(must_write(&addrs, 0..KEYS), leader);
    let line = FOLLOWER_MAXMEMORY / 100 * 110;
    let data = (KEYS * VALUE) as u64;
    for &f in &followers {
        let m = metrics_until(nodes[f].as_ref().unwrap(), |m| {
            m.policy.accounted_bytes >= data
        });
        eprintln!(
            "follower {f}: accounted {} KiB, its line {} KiB",
            m.policy.accounted_bytes >> 10,
            line >> 10
        );
        assert!(
            m.policy.accounted_bytes >= data,
            "node {f} did not apply everything"
        );
        assert!(data > 3 * line);
        assert_eq!(m.throttle.throttled_total, 0);
    }
    let m = nodes[li].as_ref().unwrap().metrics();
    assert_eq!(m.throttle.throttled_total, 0);
    for n in nodes.into_iter().flatten() {
        n.shutdown().unwrap();
    }
}
