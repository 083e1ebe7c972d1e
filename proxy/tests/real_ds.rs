//! The proxy in front of a real DS node (`ds_node::run`: glommio shards, shard log, raft-rs,
//! one replica of range 1 on shard 0) — only the master is faked (a fixed route table).
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{Env, multibulk, real_ds};

fn ds_config(dir: &std::path::Path) -> ds_node::DsConfig {
    real_ds::ds_config(dir, 2)
}

#[test]
fn redis_commands_work_end_to_end_on_a_real_ds_node() {
    let dir = std::env::temp_dir().join(format!("proxy-real-ds-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let node = ds_node::run(ds_config(&dir)).unwrap();
    let (env, _master) = real_ds::proxy_for(&node, |_| {});
    let mut c = env.client();
    real_ds::until_served(&mut c, Duration::from_secs(10));
    let cases = [
        ("SET k v", "+OK\r\n"),
        ("GET k", "$1\r\nv\r\n"),
        ("INCR n", ":1\r\n"),
        ("INCRBY n 41", ":42\r\n"),
        ("INCR k", "-ERR value is not an integer or out of range\r\n"),
        ("HSET h a 1 b 2", ":2\r\n"),
        (
            "HGETALL h",
            "*4\r\n$1\r\na\r\n$1\r\n1\r\n$1\r\nb\r\n$1\r\n2\r\n",
        ),
        (
            "GET h",
            "-WRONGTYPE Operation against a key holding the wrong kind of value\r\n",
        ),
        ("MGET k n nokey", "*3\r\n$1\r\nv\r\n$2\r\n42\r\n$-1\r\n"),
        ("EXPIRE k 100", ":1\r\n"),
        ("TTL k", ":100\r\n"),
        ("DEL k n h", ":3\r\n"),
        ("EXISTS k n h", ":0\r\n"),
    ];
    for (cmd, want) in cases {
        assert_eq!(c.cmd(cmd), want, "{cmd}");
    }
    // A pipeline of writes and reads of the same keys keeps Redis order.
    let mut req = Vec::new();
    for i in 0..500 {
        req.extend(multibulk(&[
            b"SET",
            format!("p{}", i % 50).as_bytes(),
            i.to_string().as_bytes(),
        ]));
        req.extend(multibulk(&[b"GET", format!("p{}", i % 50).as_bytes()]));
    }
    c.send(&req);
    for i in 0..500 {
        assert_eq!(c.read_reply().unwrap(), b"+OK\r\n");
        let v = i.to_string();
        assert_eq!(
            String::from_utf8(c.read_reply().unwrap()).unwrap(),
            format!("${}\r\n{v}\r\n", v.len()),
            "GET after SET #{i}"
        );
    }
    assert_eq!(c.cmd("DBSIZE"), ":51\r\n");
    drop(c);
    drop(env);
    node.shutdown().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

/// `redis-benchmark` through the proxy to a real DS node (single replica, fsync'd shard log).
/// Run with `cargo test -p proxy --profile ci --test real_ds -- --ignored --nocapture`.
#[test]
#[ignore = "a benchmark: prints figures for docs/benchmarks.md"]
fn benchmark_redis_benchmark_through_the_proxy_to_a_real_ds_node() {
    use std::process::Command;
    let dir = std::env::temp_dir().join(format!("proxy-real-ds-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let node = ds_node::run(ds_config(&dir)).unwrap();
    let (env, _master) = real_ds::proxy_for(&node, |_| {});
    let mut c = env.client();
    real_ds::until_served(&mut c, Duration::from_secs(10));
    let (h, p) = env.addr.rsplit_once(':').unwrap();
    println!("| test | pipeline | ops/s | p50 ms |");
    println!("|---|---|---|---|");
    for pipeline in ["1", "16"] {
        for test in ["set", "get"] {
            let out = Command::new("redis-benchmark")
                .args(["-h", h, "-p", p, "-t", test, "-n", "50000", "-c", "50"])
                .args(["-P", pipeline, "-q", "-r", "100000", "-d", "100"])
                .output();
            let Ok(out) = out else {
                eprintln!("SKIPPED: redis-benchmark not available");
                return;
            };
            let text = String::from_utf8_lossy(&out.stdout);
            let line = text.rsplit('\r').next().unwrap_or("").trim().to_string();
            println!("| {test} | {pipeline} | {line} |");
        }
    }
    drop(c);
    drop(env);
    node.shutdown().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

/// A whole in-process cluster: the real master service, a real DS node that registers with it
/// and is bootstrapped by it, and the proxy routing from the master's route table.
#[test]
fn a_real_master_ds_and_proxy_cluster_serves_redis() {
    let base = std::env::temp_dir().join(format!("proxy-real-cluster-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    let master = test_support::master::start(base.join("master"), |_| {});
    let master_addr = master.addr().to_string();
    let mut ds = ds_config(&base.join("ds"));
    ds.master_addr = Some(master_addr.clone());
    let node = ds_node::run(ds).unwrap();
    let env = Env::start_with(1, |c| c.router.masters = vec![master_addr.clone()]);
    let mut c = env.client();
    real_ds::until_served(&mut c, Duration::from_secs(20));
    let cases = [
        ("SET k v", "+OK\r\n"),
        ("GET k", "$1\r\nv\r\n"),
        ("HSET h a 1", ":1\r\n"),
        ("HGET h a", "$1\r\n1\r\n"),
        ("MSET a 1 b 2", "+OK\r\n"),
        ("MGET a b k", "*3\r\n$1\r\n1\r\n$1\r\n2\r\n$1\r\nv\r\n"),
        ("DBSIZE", ":5\r\n"),
    ];
    for (cmd, want) in cases {
        assert_eq!(c.cmd(cmd), want, "{cmd}");
    }
    drop(c);
    drop(env);
    node.shutdown().unwrap();
    master.stop();
    let _ = std::fs::remove_dir_all(&base);
}

/// Keys a real DS node expires reach the proxy: an `expired` keyspace event for a
/// subscriber, and an invalidation for a tracking client that read the key, although its
/// time to live was set before the client tracked (the proxy polls each range's expiry log).
#[test]
fn keys_the_ds_expires_become_expired_events_and_invalidations() {
    let dir = std::env::temp_dir().join(format!("proxy-real-ds-exp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let node = ds_node::run(ds_config(&dir)).unwrap();
    let (env, _master) = real_ds::proxy_for(&node, |_| {});
    let mut c = env.client();
    real_ds::until_served(&mut c, Duration::from_secs(10));
    assert_eq!(c.cmd("SET cached v PX 600"), "+OK\r\n");
    assert_eq!(c.cmd("CONFIG SET notify-keyspace-events Ex"), "+OK\r\n");
    let mut sub = env.client();
    assert!(
        sub.cmd("SUBSCRIBE __keyevent@0__:expired")
            .contains("subscribe")
    );
    let mut cache = env.client();
    cache.cmd("HELLO 3");
    assert_eq!(cache.cmd("CLIENT TRACKING on"), "+OK\r\n");
    assert_eq!(cache.cmd("GET cached"), "$1\r\nv\r\n");
    assert_eq!(c.cmd("SET soon v PX 50"), "+OK\r\n");
    let mut events = Vec::new();
    for _ in 0..2 {
        let m = String::from_utf8(sub.read_reply().unwrap()).unwrap();
        events.push(m);
    }
    events.sort();
    assert_eq!(
        events,
        vec![
            "*3\r\n$7\r\nmessage\r\n$22\r\n__keyevent@0__:expired\r\n$4\r\nsoon\r\n",
            "*3\r\n$7\r\nmessage\r\n$22\r\n__keyevent@0__:expired\r\n$6\r\ncached\r\n",
        ]
    );
    assert_eq!(
        String::from_utf8(cache.read_reply().unwrap()).unwrap(),
        ">2\r\n$10\r\ninvalidate\r\n*1\r\n$6\r\ncached\r\n"
    );
    drop(node);
    let _ = std::fs::remove_dir_all(&dir);
}

/// `DEBUG`'s harmless subcommands answer as Redis's do; the others are refused by name.
#[test]
fn debug_sleep_and_object_answer_as_redis_and_other_subcommands_are_refused() {
    let dir = std::env::temp_dir().join(format!("proxy-real-ds-debug-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let node = ds_node::run(ds_config(&dir)).unwrap();
    let (env, _master) = real_ds::proxy_for(&node, |_| {});
    let mut c = env.client();
    real_ds::until_served(&mut c, Duration::from_secs(10));
    assert_eq!(c.cmd("SET k hello"), "+OK\r\n");
    assert_eq!(
        c.cmd("DEBUG OBJECT k"),
        "+Value at:0x0 refcount:1 encoding:embstr serializedlength:6 lru:0 lru_seconds_idle:0\r\n"
    );
    assert_eq!(c.cmd("DEBUG OBJECT nokey"), "-ERR no such key\r\n");
    let t = std::time::Instant::now();
    assert_eq!(c.cmd("DEBUG SLEEP 0.3"), "+OK\r\n");
    assert!(t.elapsed() >= Duration::from_millis(300));
    assert_eq!(c.cmd("DEBUG SLEEP abc"), "+OK\r\n");
    assert_eq!(
        c.cmd("DEBUG RELOAD"),
        "-ERR unknown subcommand or wrong number of arguments for 'RELOAD'. Try DEBUG HELP.\r\n"
    );
    assert!(c.cmd("DEBUG HELP").contains("SLEEP <seconds>"));
    drop(node);
    let _ = std::fs::remove_dir_all(&dir);
}
