//! MULTI / EXEC / DISCARD / WATCH and FLUSHALL / FLUSHDB through the proxy: replies compared
//! with a real `redis-server`, the one-write pipeline client libraries send, atomicity under
//! concurrent clients, WATCH aborts, keys in several ranges, and flushes of every range.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use common::{Client, Env, multibulk};

/// Every key of a transaction shares the `{t}` hash tag, so one range holds them.
const SCRIPT: &[&str] = &[
    "SET {t}a 1",
    "FLUSHALL",
    "GET {t}a",
    "FLUSHALL SYNC",
    "FLUSHALL ASYNC",
    "FLUSHALL sync async",
    "FLUSHALL foo",
    "FLUSHDB",
    "FLUSHDB ASYNC",
    "FLUSHDB x y",
    "FUNCTION FLUSH",
    "FUNCTION FLUSH ASYNC",
    "FUNCTION FLUSH foo",
    "FUNCTION FLUSH a b",
    "FUNCTION foo",
    "FUNCTION",
    "SET {t}a 1",
    "MULTI",
    "MULTI",
    "SET {t}a 2",
    "INCR {t}a",
    "GET {t}a",
    "PING",
    "ECHO hi",
    "EXEC",
    "EXEC",
    "DISCARD",
    "EXEC x",
    "MULTI",
    "SET {t}a",
    "EXEC",
    "MULTI",
    "NOSUCH x",
    "EXEC",
    "MULTI",
    "EXEC x",
    "EXEC",
    "MULTI",
    "SET {t}s str",
    "INCR {t}s",
    "HSET {t}s f v",
    "SET {t}s v XX NX",
    "GET {t}s",
    "MGET {t}s {t}a {t}none",
    "DEL {t}s {t}none",
    "EXEC",
    "MULTI",
    "WATCH {t}a",
    "EXEC",
    "MULTI",
    "SET {t}a 10",
    "DISCARD",
    "GET {t}a",
    "MULTI",
    "EXEC",
    "WATCH {t}a",
    "SET {t}a 5",
    "MULTI",
    "INCR {t}a",
    "EXEC",
    "GET {t}a",
    "WATCH {t}a {t}b",
    "WATCH {t}a",
    "MULTI",
    "INCR {t}a",
    "EXEC",
    "WATCH {t}a",
    "UNWATCH",
    "SET {t}a 7",
    "MULTI",
    "INCR {t}a",
    "EXEC",
    "WATCH",
    "UNWATCH x",
    "WATCH {t}a",
    "FLUSHALL",
    "MULTI",
    "PING",
    "EXEC",
    "WATCH {t}none",
    "FLUSHALL",
    "MULTI",
    "PING",
    "EXEC",
    "MULTI",
    "SET {t}x 1",
    "FLUSHALL",
    "GET {t}x",
    "SET {t}y 2",
    "DBSIZE",
    "EXEC",
    "GET {t}y",
    "MULTI",
    "HSET {t}h f 1",
    "DEL {t}h",
    "HSET {t}h g 2",
    "HGETALL {t}h",
    "UNWATCH",
    "EXEC",
    "MSETNX {t}m1 a {t}m2 b",
    "MGET {t}m1 {t}m2",
    "MSETNX {t}m2 x {t}m3 c",
    "MGET {t}m2 {t}m3",
    "MSETNX {t}m3",
    "MSETNX {t}m3 a {t}m4",
    "MSETNX {t}m5 a {t}m5 b",
    "GET {t}m5",
    "MULTI",
    "MSETNX {t}m6 a",
    "GET {t}m6",
    "EXEC",
];

fn args(line: &str) -> Vec<&[u8]> {
    line.split(' ').map(str::as_bytes).collect()
}

#[test]
fn transaction_and_flush_replies_are_byte_identical_to_redis_server() {
    let Some(redis) = test_support::redis::start() else {
        return;
    };
    let env = Env::start(4);
    let mut r = Client::connect(redis.addr());
    let mut p = env.client();
    let mut diffs = Vec::new();
    for line in SCRIPT {
        let want = r.cmd_args(&args(line));
        let got = p.cmd_args(&args(line));
        if want != got {
            diffs.push(format!("{line:?}\n  redis: {want:?}\n  proxy: {got:?}"));
        }
    }
    assert!(
        diffs.is_empty(),
        "{} differences:\n{}",
        diffs.len(),
        diffs.join("\n")
    );
}

#[test]
fn multi_set_incr_exec_sent_in_one_write_applies_once_and_answers_as_redis() {
    let env = Env::start(4);
    let mut c = env.client();
    let mut req = Vec::new();
    for line in ["MULTI", "SET k 1", "INCR k", "EXEC", "GET k"] {
        req.extend(multibulk(&args(line)));
    }
    c.send(&req);
    let replies: Vec<String> = (0..5)
        .map(|_| String::from_utf8(c.read_reply().unwrap()).unwrap())
        .collect();
    assert_eq!(
        replies,
        [
            "+OK\r\n",
            "+QUEUED\r\n",
            "+QUEUED\r\n",
            "*2\r\n+OK\r\n:2\r\n",
            "$1\r\n2\r\n"
        ]
    );
}

#[test]
fn exec_whose_keys_span_ranges_is_refused_and_applies_nothing() {
    let env = Env::start(4);
    let mut c = env.client();
    // "a" and "b" are in different slots and, with 4 ranges over the slots, different ranges.
    assert_eq!(c.cmd("MULTI"), "+OK\r\n");
    assert_eq!(c.cmd("SET a 1"), "+QUEUED\r\n");
    assert_eq!(c.cmd("SET {a}b 1"), "+QUEUED\r\n");
    assert_eq!(c.cmd("SET b 1"), "+QUEUED\r\n");
    let r = c.cmd("EXEC");
    assert!(
        r.starts_with("-CROSSSLOT Keys in request don't hash to the same range"),
        "{r}"
    );
    assert!(r.contains("{hash tag}"), "{r}");
    assert_eq!(c.cmd("MGET a {a}b b"), "*3\r\n$-1\r\n$-1\r\n$-1\r\n");
    assert_eq!(c.cmd("EXEC"), "-ERR EXEC without MULTI\r\n");
    assert!(c.cmd("MSETNX a 1 b 2").starts_with("-CROSSSLOT"));
    // A command run alone (DBSIZE) between the two keys does not make it two transactions.
    assert_eq!(c.cmd("MULTI"), "+OK\r\n");
    assert_eq!(c.cmd("SET a 1"), "+QUEUED\r\n");
    assert_eq!(c.cmd("DBSIZE"), "+QUEUED\r\n");
    assert_eq!(c.cmd("SET b 1"), "+QUEUED\r\n");
    assert!(c.cmd("EXEC").starts_with("-CROSSSLOT"));
    assert_eq!(c.cmd("DBSIZE"), ":0\r\n");
    assert_eq!(c.cmd("MGET a b"), "*2\r\n$-1\r\n$-1\r\n");
}

#[test]
fn concurrent_transactions_are_never_seen_half_applied() {
    let env = Env::start(4);
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..3)
        .map(|_| {
            let addr = env.addr.clone();
            std::thread::spawn(move || {
                let mut c = Client::connect(&addr);
                for _ in 0..200 {
                    let mut req = Vec::new();
                    for line in ["MULTI", "INCR {t}a", "INCR {t}b", "EXEC"] {
                        req.extend(multibulk(&args(line)));
                    }
                    c.send(&req);
                    for _ in 0..3 {
                        c.read_reply().unwrap();
                    }
                    let exec = String::from_utf8(c.read_reply().unwrap()).unwrap();
                    assert!(exec.starts_with("*2\r\n:"), "{exec}");
                }
            })
        })
        .collect();
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let addr = env.addr.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut c = Client::connect(&addr);
                let mut seen = 0;
                while !stop.load(Ordering::Relaxed) {
                    let mut req = Vec::new();
                    for line in ["MULTI", "MGET {t}a {t}b", "EXEC"] {
                        req.extend(multibulk(&args(line)));
                    }
                    c.send(&req);
                    c.read_reply().unwrap();
                    c.read_reply().unwrap();
                    let exec = String::from_utf8(c.read_reply().unwrap()).unwrap();
                    let vals: Vec<&str> = exec.split("\r\n").collect();
                    // *1 *2 $n a $n b  (or $-1 $-1 before the first write)
                    let (a, b) = if vals[2] == "$-1" {
                        (vals[2], vals[3])
                    } else {
                        (vals[3], vals[5])
                    };
                    assert_eq!(a, b, "a transaction was seen half applied: {exec:?}");
                    seen += 1;
                }
                seen
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        assert!(r.join().unwrap() > 0);
    }
    let mut c = env.client();
    assert_eq!(c.cmd("MGET {t}a {t}b"), "*2\r\n$3\r\n600\r\n$3\r\n600\r\n");
}

#[test]
fn watch_aborts_exec_when_another_client_changed_the_key() {
    let env = Env::start(4);
    let mut a = env.client();
    let mut b = env.client();
    assert_eq!(a.cmd("SET {u}k 1"), "+OK\r\n");
    assert_eq!(a.cmd("WATCH {u}k"), "+OK\r\n");
    assert_eq!(b.cmd("SET {u}k 2"), "+OK\r\n");
    assert_eq!(a.cmd("MULTI"), "+OK\r\n");
    assert_eq!(a.cmd("SET {u}other x"), "+QUEUED\r\n");
    assert_eq!(a.cmd("EXEC"), "*-1\r\n");
    assert_eq!(a.cmd("GET {u}other"), "$-1\r\n");
    // RESP3: the null.
    a.cmd("HELLO 3");
    assert_eq!(a.cmd("WATCH {u}k"), "+OK\r\n");
    assert_eq!(b.cmd("HSET {u}k2 f v"), ":1\r\n");
    assert_eq!(b.cmd("EXPIRE {u}k 100"), ":1\r\n");
    assert_eq!(a.cmd("MULTI"), "+OK\r\n");
    assert_eq!(a.cmd("GET {u}k"), "+QUEUED\r\n");
    assert_eq!(a.cmd("EXEC"), "_\r\n");
    // Watched keys outside the transaction's range.
    assert_eq!(a.cmd("WATCH a"), "+OK\r\n");
    assert_eq!(a.cmd("MULTI"), "+OK\r\n");
    assert_eq!(a.cmd("SET b 1"), "+QUEUED\r\n");
    assert!(a.cmd("EXEC").starts_with("-CROSSSLOT"));
}

#[test]
fn flushall_empties_every_range() {
    let env = Env::start(4);
    let mut c = env.client();
    for i in 0..200 {
        assert_eq!(c.cmd(&format!("SET k{i} v")), "+OK\r\n");
        assert_eq!(c.cmd(&format!("HSET h{i} f v")), ":1\r\n");
    }
    assert_eq!(c.cmd("DBSIZE"), ":400\r\n");
    let per_range: Vec<usize> = env
        .cluster
        .ranges()
        .iter()
        .map(|r| env.cluster.len_of(r.id))
        .collect();
    assert!(
        per_range.iter().filter(|&&n| n > 0).count() >= 4,
        "{per_range:?}"
    );
    assert_eq!(c.cmd("FLUSHALL"), "+OK\r\n");
    assert_eq!(c.cmd("DBSIZE"), ":0\r\n");
    for r in env.cluster.ranges() {
        assert_eq!(env.cluster.len_of(r.id), 0, "range {:?} kept entries", r.id);
    }
    assert_eq!(c.cmd("COMMAND INFO flushall")[..4].to_string(), "*1\r\n");
}
