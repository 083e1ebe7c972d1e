//! Write ids (issue 21: "the same request id sent twice applies an INCRBY twice"): the proxy
//! sends every write as a `KvWrite` with its write id, the same in every copy, so a write
//! whose reply was lost is re-sent and still applies once. Against fake shards that apply
//! `KvWrite`s through ds-node's `range::dedup` (see `common`), with one reply swallowed after
//! the write applied.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::Env;

/// A proxy whose calls time out after 300 ms, so a swallowed reply is noticed quickly.
fn env(tweak: impl FnOnce(&mut proxy::server::ProxyConfig)) -> Env {
    Env::start_with(1, |c| {
        c.router.transport.request_timeout = Duration::from_millis(300);
        tweak(c);
    })
}

#[test]
fn a_write_whose_reply_was_lost_is_applied_once_when_retried() {
    let env = env(|_| {});
    let mut c = env.client();
    assert_eq!(c.cmd("SET k 1"), "+OK\r\n");
    let shard = &env.cluster.shards[0];
    let before = shard.writes.load(Ordering::Relaxed);
    // The shard applies the INCR but its answer is lost; the proxy sends it again.
    shard.swallow.store(1, Ordering::Relaxed);
    assert_eq!(c.cmd("INCR k"), ":2\r\n");
    assert_eq!(
        shard.writes.load(Ordering::Relaxed) - before,
        2,
        "the INCR reached the shard twice, as a KvWrite"
    );
    assert_eq!(c.cmd("GET k"), "$1\r\n2\r\n", "applied exactly once");
    // The next write has another id: it applies.
    assert_eq!(c.cmd("INCR k"), ":3\r\n");
}

#[test]
fn a_pipelined_write_whose_reply_was_lost_is_applied_once_and_its_neighbours_too() {
    let env = env(|_| {});
    let mut c = env.client();
    let shard = &env.cluster.shards[0];
    shard.swallow.store(1, Ordering::Relaxed);
    let mut pipeline = Vec::new();
    for cmd in [
        &["INCR", "a"][..],
        &["HINCRBY", "h", "f", "5"],
        &["INCR", "a"],
    ] {
        let args: Vec<&[u8]> = cmd.iter().map(|a| a.as_bytes()).collect();
        pipeline.extend(common::multibulk(&args));
    }
    c.send(&pipeline);
    let replies: Vec<String> = (0..3)
        .map(|_| String::from_utf8(c.read_reply().unwrap()).unwrap())
        .collect();
    assert_eq!(replies, [":1\r\n", ":5\r\n", ":2\r\n"]);
    assert_eq!(c.cmd("HGET h f"), "$1\r\n5\r\n");
}

#[test]
fn a_transaction_whose_reply_was_lost_is_applied_once_when_retried() {
    let env = env(|_| {});
    let mut c = env.client();
    assert_eq!(c.cmd("MULTI"), "+OK\r\n");
    assert_eq!(c.cmd("INCR {t}n"), "+QUEUED\r\n");
    assert_eq!(c.cmd("APPEND {t}s x"), "+QUEUED\r\n");
    let shard = &env.cluster.shards[0];
    let before = shard.writes.load(Ordering::Relaxed);
    shard.swallow.store(1, Ordering::Relaxed);
    assert_eq!(c.cmd("EXEC"), "*2\r\n:1\r\n:1\r\n");
    assert_eq!(
        shard.writes.load(Ordering::Relaxed) - before,
        2,
        "the Multi reached the shard twice"
    );
    assert_eq!(c.cmd("GET {t}n"), "$1\r\n1\r\n");
    assert_eq!(c.cmd("GET {t}s"), "$1\r\nx\r\n");
}

#[test]
fn a_write_whose_outcome_stays_unknown_past_the_resend_budget_is_an_error() {
    let env = env(|c| c.router.write_resend = Duration::from_millis(500));
    assert_eq!(
        env.shared.router.resend_budget(),
        Duration::from_millis(500)
    );
    let mut c = env.client();
    assert_eq!(c.cmd("SET k 1"), "+OK\r\n");
    let shard = &env.cluster.shards[0];
    shard.swallow.store(1000, Ordering::Relaxed);
    let r = c.cmd("INCR k");
    let lost_on = format!("-ERR write outcome unknown: {}: ", shard.addr);
    assert!(r.starts_with(&lost_on), "names the shard that lost it: {r}");
    shard.swallow.store(0, Ordering::Relaxed);
    assert_eq!(
        c.cmd("GET k"),
        "$1\r\n2\r\n",
        "every copy applied once in all"
    );
}

#[test]
fn the_resend_budget_stays_inside_the_dedup_window() {
    let env = env(|c| {
        c.router.write_resend = Duration::from_secs(60);
        c.router.transport.request_timeout = Duration::from_secs(5);
    });
    let window = Duration::from_millis(ds_node::range::dedup::WINDOW_MS);
    let budget = env.shared.router.resend_budget();
    assert_eq!(
        budget + Duration::from_secs(5) + proxy::route::CLOCK_SKEW_MARGIN,
        window
    );
    let env = Env::start_with(1, |c| {
        c.router.transport.request_timeout = Duration::from_secs(9)
    });
    assert_eq!(env.shared.router.resend_budget(), Duration::ZERO);
}

#[test]
fn a_flush_whose_reply_was_lost_is_not_resent_and_a_read_is() {
    let env = env(|_| {});
    let mut c = env.client();
    assert_eq!(c.cmd("SET k 1"), "+OK\r\n");
    let shard = &env.cluster.shards[0];
    // A range does not deduplicate RangeFlush: a second copy could delete writes acknowledged
    // between the two, so its unknown outcome is reported.
    shard.swallow.store(1, Ordering::Relaxed);
    let r = c.cmd("FLUSHALL");
    assert!(r.starts_with("-ERR write outcome unknown"), "{r}");
    assert_eq!(c.cmd("SET k 2"), "+OK\r\n");
    // A read whose answer is lost is retried.
    shard.swallow.store(1, Ordering::Relaxed);
    assert_eq!(c.cmd("GET k"), "$1\r\n2\r\n");
}

#[test]
fn every_proxy_picks_its_own_non_zero_write_client_id() {
    let a = Env::start(1);
    let b = Env::start(1);
    let (a, b) = (a.shared.router.client_id(), b.shared.router.client_id());
    assert_ne!(a, 0);
    assert_ne!(a, b);
}
