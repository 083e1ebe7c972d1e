//! Keyspace notifications against a real `redis-server`: the same script of writes goes to
//! Redis and to the proxy (over four ranges; keys that go together share a `{hash tag}`)
//! with `notify-keyspace-events KEA`, and a subscriber to `__key*__:*` on each must receive
//! the same messages in the same order — generic, string, list, set, hash and sorted-set
//! events, stores, moves between keys and databases, expiries set in the past, and commands
//! inside `MULTI`/`EXEC`. The script empties no collection and stores no empty result: those
//! `del` events are not published by tierkv (`proxy::notify`). Skipped when `redis-server` is not installed, except under
//! `CI=true`, where that fails.
#![allow(clippy::unwrap_used)]

mod common;

use common::{Client, Env};

const SCRIPT: &[&str] = &[
    "SET {a}s v",
    "SET {a}s v NX",
    "SET {a}s w XX EX 1000",
    "SETNX {a}s x",
    "SETEX {a}t 1000 v",
    "MSET {a}m1 1 {a}m2 2",
    "MSETNX {a}m1 1 {a}m3 3",
    "APPEND {a}s more",
    "INCR {a}n",
    "DECRBY {a}n 5",
    "INCRBYFLOAT {a}n 1.5",
    "SETRANGE {a}s 2 zz",
    "SETRANGE {a}s 2 \"\"",
    "SETBIT {a}b 7 1",
    "GETSET {a}s new",
    "GETEX {a}s EX 500",
    "GETEX {a}s PERSIST",
    "GETDEL {a}t",
    "GETDEL {a}t",
    "EXPIRE {a}s 100",
    "PEXPIRE {a}s 100000",
    "PERSIST {a}s",
    "PERSIST {a}s",
    "EXPIRE {a}m3 -1",
    "RENAME {a}s {a}s2",
    "RENAMENX {a}s2 {a}m1",
    "COPY {a}s2 {a}s3",
    "DEL {a}s3",
    "DEL {a}nokey",
    "DEL {a}m1 {a}m2",
    "LPUSH {l}a 1 2 3",
    "RPUSH {l}a 4",
    "LPUSHX {l}none 1",
    "RPUSHX {l}a 5",
    "LPOP {l}a",
    "RPOP {l}a 2",
    "LPOP {l}none",
    "LINSERT {l}a BEFORE 1 0",
    "LINSERT {l}a BEFORE 42 0",
    "LSET {l}a 0 x",
    "LREM {l}a 0 x",
    "LREM {l}a 0 absent",
    "LTRIM {l}a 0 10",
    "LMOVE {l}a {l}b LEFT RIGHT",
    "RPUSH {l}b 8 9",
    "RPOPLPUSH {l}b {l}a",
    "LMPOP 2 {l}none {l}a RIGHT",
    "SADD {s}a x y z",
    "SADD {s}a x",
    "SREM {s}a nothere",
    "SREM {s}a x",
    "SMOVE {s}a {s}b y",
    "SADD {s}c z q",
    "SINTERSTORE {s}d {s}a {s}c",
    "SUNIONSTORE {s}e {s}a {s}b",
    "SDIFFSTORE {s}f {s}a {s}a",
    "HSET {h}a f 1 g 2",
    "HMSET {h}a f 3",
    "HSETNX {h}a f 4",
    "HSETNX {h}a k 4",
    "HINCRBY {h}a f 1",
    "HINCRBYFLOAT {h}a f 0.5",
    "HDEL {h}a nothere",
    "HDEL {h}a g",
    "ZADD {z}a 1 a 2 b",
    "ZADD {z}a INCR 5 a",
    "ZINCRBY {z}a 1 b",
    "ZREM {z}a nothere",
    "ZREM {z}a a",
    "ZADD {z}a 3 c 4 d 5 e 6 f",
    "ZREMRANGEBYSCORE {z}a 3 3",
    "ZREMRANGEBYRANK {z}a 0 0",
    "ZREMRANGEBYLEX {z}a [zzz [zzzz",
    "ZADD {z}a 7 g 8 h",
    "ZPOPMIN {z}a",
    "ZPOPMAX {z}a",
    "ZADD {z}b 1 x 2 y",
    "ZUNIONSTORE {z}c 2 {z}a {z}b",
    "ZINTERSTORE {z}d 2 {z}a {z}b",
    "ZRANGESTORE {z}e {z}b 0 -1",
    "MULTI",
    "SET {a}tx 1",
    "INCR {a}tx",
    "EXEC",
    "SELECT 3",
    "SET {a}other 1",
    "MOVE {a}other 4",
    "SELECT 0",
];

use common::script_args as args;

/// Runs the script at `addr` and returns what a `__key*__:*` subscriber received, up to the
/// `done` marker published at the end.
fn events_at(addr: &str) -> Vec<String> {
    let mut c = Client::connect(addr);
    assert_eq!(c.cmd("CONFIG SET notify-keyspace-events KEA"), "+OK\r\n");
    let mut sub = Client::connect(addr);
    sub.send(&common::multibulk(&[
        b"PSUBSCRIBE",
        b"__key*__:*",
        b"marker",
    ]));
    sub.read_reply().unwrap();
    sub.read_reply().unwrap();
    for line in SCRIPT {
        let a = args(line);
        let refs: Vec<&[u8]> = a.iter().map(Vec::as_slice).collect();
        c.cmd_args(&refs);
    }
    assert_eq!(c.cmd("PUBLISH marker done"), ":1\r\n");
    c.cmd_args(&[b"CONFIG", b"SET", b"notify-keyspace-events", b""]);
    let mut out = Vec::new();
    loop {
        let msg = String::from_utf8_lossy(&sub.read_reply().unwrap()).into_owned();
        if msg.contains("marker") {
            return out;
        }
        out.push(msg);
    }
}

#[test]
fn keyspace_notifications_match_redis_server() {
    let Some(redis) = test_support::redis::start() else {
        return;
    };
    let env = Env::start(4);
    let want = events_at(redis.addr());
    let got = events_at(&env.addr);
    let info = env.client().cmd("INFO stats");
    let counted = format!("tierkv_keyspace_events_published:{}\r\n", got.len() / 2);
    assert!(info.contains(&counted), "{counted:?} in {info}");
    assert!(want.len() > 80, "the script makes events: {}", want.len());
    let diffs: Vec<String> = want
        .iter()
        .zip(&got)
        .enumerate()
        .filter(|(_, (w, g))| w != g)
        .map(|(i, (w, g))| format!("#{i}\n  redis: {w:?}\n  proxy: {g:?}"))
        .collect();
    assert!(
        diffs.is_empty() && want.len() == got.len(),
        "{} vs {} events, first differences:\n{}",
        want.len(),
        got.len(),
        diffs.iter().take(5).cloned().collect::<Vec<_>>().join("\n")
    );
}

#[test]
fn config_get_shows_the_classes_as_redis_does() {
    let Some(redis) = test_support::redis::start() else {
        return;
    };
    let env = Env::start(1);
    for addr in [redis.addr(), env.addr.as_str()] {
        let mut c = Client::connect(addr);
        for (set, shown) in [("gKE", "gKE"), ("$lshzxeKE", "$lshzxeKE"), ("KA", "AK")] {
            c.cmd(&format!("CONFIG SET notify-keyspace-events {set}"));
            let got = c.cmd("CONFIG GET notify-keyspace-events");
            assert!(
                got.ends_with(&format!("{shown}\r\n")),
                "{addr}: {set} → {got:?}"
            );
        }
        let bad = c.cmd("CONFIG SET notify-keyspace-events KEq");
        assert!(
            bad.contains("Invalid event class character"),
            "{addr}: {bad:?}"
        );
        c.cmd_args(&[b"CONFIG", b"SET", b"notify-keyspace-events", b""]);
    }
}
