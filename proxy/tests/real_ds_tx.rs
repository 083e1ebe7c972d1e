//! FLUSHALL and MULTI/EXEC through the proxy on a real DS node (glommio shards, shard log,
//! raft-rs): both are Raft entries, so they survive a restart of the node.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::{Client, Env, multibulk, real_ds};

/// A node on `dir` (two shards), a fake master routing range 1 to it, and a proxy in front.
struct Stack {
    node: ds_node::NodeHandle,
    env: Env,
    _master: real_ds::FakeMaster,
}

fn start(dir: &std::path::Path) -> Stack {
    let node = ds_node::run(real_ds::ds_config(dir, 2)).unwrap();
    let (env, master) = real_ds::proxy_for(&node, |_| {});
    Stack {
        node,
        env,
        _master: master,
    }
}

fn wait_writable(c: &mut Client) {
    real_ds::until_served(c, Duration::from_secs(10));
}

#[test]
fn flushall_and_exec_are_durable_across_a_restart_of_a_real_ds_node() {
    let dir = std::env::temp_dir().join(format!("proxy-real-ds-tx-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let s = start(&dir);
    let mut c = s.env.client();
    wait_writable(&mut c);
    for i in 0..300 {
        assert_eq!(c.cmd(&format!("SET k{i} v")), "+OK\r\n");
        assert_eq!(c.cmd(&format!("HSET h{i} f v")), ":1\r\n");
    }
    assert_eq!(c.cmd("DBSIZE"), ":601\r\n");
    assert_eq!(c.cmd("FLUSHALL"), "+OK\r\n");
    assert_eq!(c.cmd("DBSIZE"), ":0\r\n");
    // The pipeline client libraries send: MULTI, the commands and EXEC in one write.
    let mut req = Vec::new();
    for line in ["MULTI", "SET {t}a 1", "INCR {t}a", "INCR {t}b", "EXEC"] {
        let args: Vec<&[u8]> = line.split(' ').map(str::as_bytes).collect();
        req.extend(multibulk(&args));
    }
    c.send(&req);
    let replies: Vec<String> = (0..5)
        .map(|_| String::from_utf8(c.read_reply().unwrap()).unwrap())
        .collect();
    assert_eq!(replies[4], "*3\r\n+OK\r\n:2\r\n:1\r\n");
    assert_eq!(c.cmd("WATCH {t}a"), "+OK\r\n");
    assert_eq!(c.cmd("INCR {t}a"), ":3\r\n");
    assert_eq!(c.cmd("MULTI"), "+OK\r\n");
    assert_eq!(c.cmd("INCR {t}b"), "+QUEUED\r\n");
    assert_eq!(c.cmd("EXEC"), "*-1\r\n");
    drop(c);
    let Stack { node, env, .. } = s;
    drop(env);
    node.shutdown().unwrap();

    let s = start(&dir);
    let mut c = s.env.client();
    wait_writable(&mut c);
    assert_eq!(
        c.cmd("MGET k0 k299 {t}a {t}b"),
        "*4\r\n$-1\r\n$-1\r\n$1\r\n3\r\n$1\r\n1\r\n"
    );
    assert_eq!(c.cmd("HGETALL h7"), "*0\r\n");
    assert_eq!(c.cmd("DBSIZE"), ":3\r\n");
    drop(c);
    let Stack { node, env, .. } = s;
    drop(env);
    node.shutdown().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

/// How long FLUSHALL takes on one range of a real DS node, by key count (O(n) at apply).
/// Run with `cargo test -p proxy --profile ci --test real_ds_tx -- --ignored --nocapture`.
#[test]
#[ignore = "a benchmark: prints figures for the proxy guide"]
fn benchmark_flushall_time_by_key_count() {
    let dir = std::env::temp_dir().join(format!("proxy-real-ds-flush-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let s = start(&dir);
    let mut c = s.env.client();
    wait_writable(&mut c);
    for n in [10_000usize, 100_000] {
        for chunk in 0..n / 1000 {
            let mut req = Vec::new();
            for i in 0..1000 {
                let k = format!("k{}", chunk * 1000 + i);
                req.extend(multibulk(&[b"SET", k.as_bytes(), b"0123456789abcdef"]));
            }
            c.send(&req);
            for _ in 0..1000 {
                assert_eq!(c.read_reply().unwrap(), b"+OK\r\n");
            }
        }
        let t = Instant::now();
        assert_eq!(c.cmd("FLUSHALL"), "+OK\r\n");
        let el = t.elapsed();
        println!("FLUSHALL of {n} keys: {:.1} ms", el.as_secs_f64() * 1e3);
        assert_eq!(c.cmd("DBSIZE"), ":0\r\n");
    }
    drop(c);
    let Stack { node, env, .. } = s;
    drop(env);
    node.shutdown().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
