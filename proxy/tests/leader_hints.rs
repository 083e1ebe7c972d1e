//! A range's leadership moves (an election) before the master's route table says so: the
//! old leader's shard answers `NotLeader` naming the new leader's, and the proxy asks that
//! shard at once, without waiting out its backoff or for the master.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::Env;
use net::keyspace::{Db, meta_key};

#[test]
fn a_command_follows_a_not_leader_hint_at_once_while_the_master_names_the_old_leader() {
    // A long backoff and a short budget: waiting on the master's table, which never
    // changes here, the command would fail after ~0.6 s.
    let env = Env::start_with(2, |c| {
        c.router.backoff = Duration::from_millis(300);
        c.router.max_backoff = Duration::from_millis(300);
        c.router.retry_budget = Duration::from_millis(650);
        c.router.min_attempts = 3;
    });
    let mut c = env.client();
    assert_eq!(c.cmd("SET k v"), "+OK\r\n");
    let key = meta_key(Db::ZERO, b"k");
    let range = env
        .cluster
        .ranges()
        .into_iter()
        .find(|r| r.contains(&key))
        .unwrap();
    env.cluster.move_leader_quietly(range.id);

    let started = Instant::now();
    assert_eq!(c.cmd("GET k"), "$1\r\nv\r\n");
    assert_eq!(c.cmd("INCR n{k}"), ":1\r\n");
    let mut pipeline = Vec::new();
    for _ in 0..8 {
        pipeline.extend(common::multibulk(&[b"INCR", b"n{k}"]));
    }
    c.send(&pipeline);
    for i in 2..10 {
        assert_eq!(
            String::from_utf8(c.read_reply().unwrap()).unwrap(),
            format!(":{i}\r\n")
        );
    }
    let took = started.elapsed();
    assert!(
        took < Duration::from_millis(250),
        "the hint was not followed at once: {took:?}"
    );
}
