//! Databases (`SELECT 0..15`) against a real `redis-server`: the same scripts go to Redis and
//! to the proxy (over four ranges; keys that go together share a `{hash tag}`, as across
//! ranges they must), and every reply must be identical — SELECT, MOVE, COPY …
//! DB, DBSIZE, FLUSHDB against FLUSHALL, KEYS per database, SELECT inside MULTI, WATCH per
//! database, RESET, and SWAPDB's argument errors (SWAPDB itself is refused by tierkv with a
//! stated reason: checked on its own). Skipped, with a printed reason, when `redis-server` is
//! not installed.
#![allow(clippy::unwrap_used)]

mod common;

use common::diff::Differ;
use common::{Client, Env};

const SCRIPT: &[&str] = &[
    "SET k zero",
    "SELECT 1",
    "GET k",
    "SET k one",
    "HSET {t}h f v",
    "RPUSH {t}l a b c",
    "SADD s x",
    "ZADD z 1 m",
    "DBSIZE",
    "SELECT 0",
    "GET k",
    "DBSIZE",
    "EXISTS {t}h {t}l s z",
    "SELECT 16",
    "SELECT -1",
    "SELECT one",
    "SELECT 15",
    "DBSIZE",
    "SELECT 1",
    "MOVE {t}h 2",
    "MOVE {t}h 2",
    "MOVE nokey 2",
    "MOVE k 1",
    "MOVE k 16",
    "MOVE k x",
    "MOVE k 0",
    "SELECT 0",
    "GET k",
    "MOVE k 1",
    "EXISTS k",
    "SELECT 2",
    "HGETALL {t}h",
    "COPY {t}h {t}h2",
    "COPY {t}h {t}h3 DB 3",
    "COPY {t}h {t}h3 DB 3",
    "COPY {t}h {t}h3 DB 3 REPLACE",
    "COPY {t}h {t}h DB 2",
    "COPY {t}h {t}h DB 4",
    "COPY {t}h {t}h DB 16",
    "COPY {t}h {t}h DB x",
    "SELECT 3",
    "HGETALL {t}h3",
    "DBSIZE",
    "SELECT 1",
    "LRANGE {t}l 0 -1",
    "RENAME {t}l {t}l2",
    "LRANGE {t}l2 0 -1",
    "EXPIRE s 100",
    "MOVE s 5",
    "SELECT 5",
    "TTL s",
    "SMEMBERS s",
    "SELECT 1",
    "FLUSHDB",
    "DBSIZE",
    "SELECT 2",
    "DBSIZE",
    "FLUSHDB ASYNC",
    "FLUSHDB bad",
    "DBSIZE",
    "SELECT 3",
    "DBSIZE",
    "SELECT 5",
    "SMEMBERS s",
    "SWAPDB 0 16",
    "SWAPDB x 1",
    "SWAPDB 0 y",
    "SWAPDB 3 3",
    "CONFIG GET databases",
    "MULTI",
    "SET t 1",
    "SELECT 6",
    "SET t 6",
    "EXEC",
    "GET t",
    "SELECT 5",
    "GET t",
    "MULTI",
    "SELECT 99",
    "EXEC",
    "GET t",
    "FLUSHALL",
    "DBSIZE",
    "SELECT 6",
    "DBSIZE",
    "GET t",
    "SET after-reset x",
    "RESET",
    "GET after-reset",
];

#[test]
fn database_commands_reply_as_redis_server_does() {
    let Some(redis) = test_support::redis::start() else {
        return;
    };
    let env = Env::start(4);
    let mut d = Differ::new(Client::connect(redis.addr()), env.client());
    for line in SCRIPT {
        d.check(line);
    }
    d.assert_same();
}

/// The bulk strings of a flat array reply, sorted.
fn sorted_bulks(reply: &str) -> Vec<String> {
    let mut out: Vec<String> = reply
        .split("\r\n")
        .skip(1)
        .filter(|l| !l.starts_with('$') && !l.is_empty())
        .map(str::to_owned)
        .collect();
    out.sort();
    out
}

#[test]
fn keys_and_scan_list_only_the_selected_database() {
    let Some(redis) = test_support::redis::start() else {
        return;
    };
    let env = Env::start(4);
    let mut r = Client::connect(redis.addr());
    let mut p = env.client();
    for c in [&mut r, &mut p] {
        for i in 0..60 {
            c.cmd(&format!("SELECT {}", i % 3));
            assert_eq!(c.cmd(&format!("SET key:{i} v")), "+OK\r\n");
        }
    }
    for db in 0..4 {
        let want = {
            r.cmd(&format!("SELECT {db}"));
            sorted_bulks(&r.cmd("KEYS *"))
        };
        p.cmd(&format!("SELECT {db}"));
        assert_eq!(sorted_bulks(&p.cmd("KEYS *")), want, "KEYS in {db}");
        assert_eq!(p.cmd("DBSIZE"), r.cmd("DBSIZE"), "DBSIZE in {db}");
        // A whole SCAN of the proxy's database gives the same keys.
        let mut cursor = "0".to_string();
        let mut scanned = Vec::new();
        loop {
            let reply = p.cmd(&format!("SCAN {cursor} COUNT 7"));
            let lines: Vec<&str> = reply.split("\r\n").collect();
            cursor = lines[2].to_string();
            scanned.extend(
                lines[4..]
                    .iter()
                    .filter(|l| !l.starts_with('$') && !l.is_empty())
                    .map(|l| l.to_string()),
            );
            if cursor == "0" {
                break;
            }
        }
        scanned.sort();
        assert_eq!(scanned, want, "SCAN in {db}");
    }
}

#[test]
fn a_watch_in_one_database_ignores_writes_to_the_same_key_in_another() {
    let Some(redis) = test_support::redis::start() else {
        return;
    };
    let env = Env::start(4);
    let addrs = [redis.addr().to_string(), env.addr.clone()];
    let mut replies: Vec<Vec<String>> = Vec::new();
    for addr in &addrs {
        let mut a = Client::connect(addr);
        let mut other = Client::connect(addr);
        let mut out = Vec::new();
        for line in ["SELECT 1", "SET w 1", "WATCH w"] {
            out.push(a.cmd(line));
        }
        // The same key in database 0: the watch of database 1 is not touched.
        out.push(other.cmd("SET w changed-in-0"));
        for line in ["MULTI", "INCR w", "EXEC"] {
            out.push(a.cmd(line));
        }
        out.push(a.cmd("WATCH w"));
        out.push(other.cmd("SELECT 1"));
        out.push(other.cmd("SET w changed-in-1"));
        // Aborted: the queued SELECT does not apply either.
        for line in ["MULTI", "SELECT 4", "INCR w", "EXEC", "GET w"] {
            out.push(a.cmd(line));
        }
        replies.push(out);
    }
    assert_eq!(replies[1], replies[0]);
    assert!(replies[0].contains(&"*1\r\n:2\r\n".to_string()));
    assert!(replies[0].contains(&"*-1\r\n".to_string()));
}

#[test]
fn swapdb_is_refused_with_its_reason_and_changes_nothing() {
    let env = Env::start(2);
    let mut p = env.client();
    p.cmd("SET k in-0");
    let reply = p.cmd("SWAPDB 0 1");
    assert!(
        reply.starts_with("-ERR SWAPDB is not supported"),
        "{reply:?}"
    );
    assert_eq!(p.cmd("GET k"), "$4\r\nin-0\r\n");
    p.cmd("SELECT 1");
    assert_eq!(p.cmd("GET k"), "$-1\r\n");
    assert!(p.cmd("CLIENT INFO").contains(" db=1 "));
}

#[test]
fn a_blocked_pop_is_served_by_a_push_to_its_own_database_only() {
    let env = Env::start(2);
    let mut blocked = env.client();
    let mut pusher = env.client();
    blocked.cmd("SELECT 3");
    blocked.send(&common::multibulk(&[b"BLPOP", b"q", b"5"]));
    let one = proxy::keyspace::Db::new(3).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while env.shared.router.blocking.queued_in(one, b"q") == 0 {
        assert!(std::time::Instant::now() < deadline, "BLPOP never blocked");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    // Database 0's `q` does not serve it.
    assert_eq!(pusher.cmd("RPUSH q in-0"), ":1\r\n");
    pusher.cmd("SELECT 3");
    assert_eq!(pusher.cmd("RPUSH q in-3"), ":1\r\n");
    let reply = String::from_utf8(blocked.read_reply().unwrap()).unwrap();
    assert_eq!(reply, "*2\r\n$1\r\nq\r\n$4\r\nin-3\r\n");
    pusher.cmd("SELECT 0");
    assert_eq!(pusher.cmd("LRANGE q 0 -1"), "*1\r\n$4\r\nin-0\r\n");
}
