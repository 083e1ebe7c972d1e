//! A pipeline's writes of one key share a wave (one Raft round) and still apply in pipeline
//! order on a real DS node — also when the first waits for memory (`server::throttle`) and a
//! later one would not (`ds_node::server::fence`). Only the master is faked.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{Client, multibulk, real_ds};

fn pipeline(c: &mut Client, cmds: &[Vec<&[u8]>]) -> Vec<String> {
    let mut req = Vec::new();
    for args in cmds {
        req.extend(multibulk(args));
    }
    c.send(&req);
    (0..cmds.len())
        .map(|_| String::from_utf8(c.read_reply().unwrap()).unwrap())
        .collect()
}

/// A node of 2 MiB of memory with demotion stopped (1 byte/s), so that writes above the line
/// wait up to `wait_ms` and are then refused; a proxy in front; a client it serves, reading
/// with `read_timeout`.
fn memory_bound_node(
    dir: &std::path::Path,
    wait_ms: u64,
    read_timeout: Duration,
) -> (
    ds_node::NodeHandle,
    common::Env,
    real_ds::FakeMaster,
    Client,
) {
    let cfg = ds_node::DsConfig {
        maxmemory: 2 << 20,
        policy_tick_ms: 10,
        policy_demote_bytes_per_sec: 1,
        write_throttle_max_wait_ms: wait_ms,
        ..real_ds::ds_config(dir, 1)
    };
    let node = ds_node::run(cfg).unwrap();
    let (env, master) = real_ds::proxy_for(&node, |c| {
        c.router.transport.request_timeout = read_timeout;
    });
    let mut c = env.client();
    real_ds::until_served(&mut c, Duration::from_secs(10));
    c.stream.set_read_timeout(Some(read_timeout)).unwrap();
    (node, env, master, c)
}

/// Writes `f0`, `f1`, ... of `value` through `c` until one is refused (the shard is above
/// its line); how many were sent.
fn fill_until_refused(c: &mut Client, value: &[u8]) -> usize {
    let mut filled = 0;
    loop {
        let r = c.cmd_args(&[b"SET", format!("f{filled}").as_bytes(), value]);
        filled += 1;
        if r != "+OK\r\n" {
            return filled;
        }
        assert!(filled < 4096, "never above the line");
    }
}

#[test]
fn pipelined_writes_of_one_key_apply_in_pipeline_order() {
    let dir = test_support::tempdir::TempDir::new("proxy-pipeline-order");
    let node = ds_node::run(real_ds::ds_config(dir.path(), 1)).unwrap();
    let (env, _master) = real_ds::proxy_for(&node, |_| {});
    let mut c = env.client();
    real_ds::until_served(&mut c, Duration::from_secs(10));
    for round in 0..20 {
        let mut cmds: Vec<Vec<&[u8]>> = Vec::new();
        let values: Vec<String> = (0..50).map(|i| format!("{round}-{i}")).collect();
        for v in &values {
            cmds.push(vec![b"INCR", b"n"]);
            cmds.push(vec![b"SET", b"s", v.as_bytes()]);
            cmds.push(vec![b"APPEND", b"a", b"x"]);
            cmds.push(vec![b"DEL", b"d"]);
            cmds.push(vec![b"SET", b"d", v.as_bytes()]);
        }
        let replies = pipeline(&mut c, &cmds);
        for (i, r) in replies.chunks(5).enumerate() {
            let n = round * 50 + i + 1;
            assert_eq!(r[0], format!(":{n}\r\n"), "INCR #{n}");
            assert_eq!(r[1], "+OK\r\n");
            assert_eq!(r[2], format!(":{n}\r\n"), "APPEND #{n}");
            let deleted = if n == 1 { ":0\r\n" } else { ":1\r\n" };
            assert_eq!(r[3], deleted, "DEL #{n}");
            assert_eq!(r[4], "+OK\r\n");
        }
        let last = values.last().unwrap();
        assert_eq!(c.cmd("GET s"), format!("${}\r\n{last}\r\n", last.len()));
        assert_eq!(c.cmd("GET d"), format!("${}\r\n{last}\r\n", last.len()));
    }
    drop(c);
    drop(env);
    node.shutdown().unwrap();
}

#[test]
fn a_write_waiting_for_memory_keeps_its_place_before_a_later_delete() {
    let dir = test_support::tempdir::TempDir::new("proxy-pipeline-throttle");
    // Writes above the line wait up to 4 s.
    let (node, env, _master, mut c) = memory_bound_node(dir.path(), 4000, Duration::from_secs(30));
    // Fill past the line with 4 KiB values until a write has to wait (and is refused).
    let value = vec![b'v'; 4096];
    let mut fill = env.client();
    let filled = fill_until_refused(&mut fill, &value);
    // Above the line now: the SET waits for memory; the DEL of the same key, behind it in the
    // pipeline, must not apply first.
    let mut req = multibulk(&[b"SET", b"k", &value]);
    req.extend(multibulk(&[b"DEL", b"k"]));
    c.send(&req);
    std::thread::sleep(Duration::from_millis(300));
    // Make room from another connection (deletes are never throttled).
    let mut freer = env.client();
    for i in 0..filled {
        freer.cmd(&format!("DEL f{i}"));
    }
    assert_eq!(
        String::from_utf8(c.read_reply().unwrap()).unwrap(),
        "+OK\r\n"
    );

    assert_eq!(
        String::from_utf8(c.read_reply().unwrap()).unwrap(),
        ":1\r\n",
        "the DEL came after the SET"
    );
    assert_eq!(c.cmd("EXISTS k"), ":0\r\n");
    drop((c, fill, freer));
    drop(env);
    node.shutdown().unwrap();
}

/// Writes of one pipeline that all wait for memory wait side by side: each is refused with
/// Redis's OOM error once `write-throttle-max-wait-ms` passes, not one after another.
#[test]
fn a_pipeline_of_writes_waiting_for_memory_is_refused_within_the_wait_limit() {
    let dir = test_support::tempdir::TempDir::new("proxy-pipeline-oom");
    let (node, env, _master, mut c) = memory_bound_node(dir.path(), 1000, Duration::from_secs(120));
    let value = vec![b'v'; 4096];
    fill_until_refused(&mut c, &value);
    let mut req = Vec::new();
    for i in 0..64 {
        req.extend(multibulk(&[b"SET", format!("p{i}").as_bytes(), &value]));
    }
    let started = std::time::Instant::now();
    c.send(&req);
    let mut refused = 0;
    for i in 0..64 {
        let r = String::from_utf8(c.read_reply().unwrap()).unwrap();
        eprintln!("{:?} SET p{i}: {}", started.elapsed(), r.trim_end());
        // Room may come back meanwhile (the fill's dedup records expire): some are admitted.
        assert!(r == "+OK\r\n" || r.starts_with("-OOM"), "SET p{i}: {r}");
        refused += usize::from(r.starts_with("-OOM"));
    }
    let took = started.elapsed();
    eprintln!("64 throttled SETs answered in {took:?}, {refused} refused");
    assert!(refused > 0, "no SET had to wait");
    // One buffer's worth per round trip, as before, took 22 s here.
    assert!(
        took < Duration::from_secs(6),
        "64 throttled SETs took {took:?}"
    );
    drop(c);
    drop(env);
    node.shutdown().unwrap();
}

/// The `INFO` counter `name` of the proxy `c` is connected to.
fn info_counter(c: &mut Client, name: &str) -> u64 {
    let info = c.cmd("INFO stats");
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .unwrap_or_else(|| panic!("no {name} in INFO: {info}"))
        .trim()
        .parse()
        .unwrap()
}

/// A pipeline of writes of every packable kind, an error among them, and reads of other
/// keys; `p` prefixes every key.
fn mixed_pipeline(p: &str) -> Vec<Vec<Vec<u8>>> {
    let mut cmds: Vec<Vec<Vec<u8>>> = Vec::new();
    let arg =
        |parts: &[&str]| -> Vec<Vec<u8>> { parts.iter().map(|s| s.as_bytes().to_vec()).collect() };
    cmds.push(arg(&["SET", &format!("{p}str"), "x"]));
    for i in 0..8 {
        let n = i.to_string();
        cmds.push(arg(&["LPUSH", &format!("{p}list"), &n]));
        cmds.push(arg(&["SADD", &format!("{p}set"), &n, "same"]));
        cmds.push(arg(&["ZADD", &format!("{p}zset"), &n, &format!("m{n}")]));
        cmds.push(arg(&["HSET", &format!("{p}hash"), &n, &n]));
        cmds.push(arg(&["INCRBY", &format!("{p}n"), &n]));
        // Wrong type: an error of its own, the next writes still apply.
        cmds.push(arg(&["LPUSH", &format!("{p}str"), &n]));
        cmds.push(arg(&["SET", &format!("{p}k{n}"), &n]));
        cmds.push(arg(&["GET", &format!("{p}other")]));
    }
    // Writes that only free, of keys not written above (a pack of their own).
    cmds.push(arg(&["DEL", &format!("{p}gone0"), &format!("{p}gone1")]));
    cmds.push(arg(&["EXPIRE", &format!("{p}gone2"), "100"]));
    cmds
}

fn run_pipeline(c: &mut Client, cmds: &[Vec<Vec<u8>>]) -> Vec<String> {
    let borrowed: Vec<Vec<&[u8]>> = cmds
        .iter()
        .map(|a| a.iter().map(Vec::as_slice).collect())
        .collect();
    pipeline(c, &borrowed)
}

/// Pipelined writes to one range travel as packs (`proxy::pack`) and answer exactly as they
/// do one by one: each its own reply, an error among them included, in pipeline order.
#[test]
fn packed_pipeline_writes_answer_as_they_do_one_by_one() {
    let dir = test_support::tempdir::TempDir::new("proxy-pipeline-packs");
    let node = ds_node::run(real_ds::ds_config(dir.path(), 1)).unwrap();
    let (env, _master) = real_ds::proxy_for(&node, |_| {});
    let mut c = env.client();
    real_ds::until_served(&mut c, Duration::from_secs(10));

    let before = info_counter(&mut c, "tierkv_write_packs");
    let packed = run_pipeline(&mut c, &mixed_pipeline("a:"));
    let packs = info_counter(&mut c, "tierkv_write_packs") - before;
    assert!(
        packs >= 2,
        "{packs} packs: the writes that add and those that free make two"
    );
    assert!(
        info_counter(&mut c, "tierkv_write_packed_ops") >= 2 * packs,
        "packs of fewer than two writes"
    );

    assert_eq!(c.cmd("CONFIG SET tierkv-pack-writes no"), "+OK\r\n");
    let before = info_counter(&mut c, "tierkv_write_packs");
    let alone = run_pipeline(&mut c, &mixed_pipeline("b:"));
    assert_eq!(
        info_counter(&mut c, "tierkv_write_packs"),
        before,
        "packed while off"
    );
    assert_eq!(
        packed, alone,
        "packed replies differ from one-by-one replies"
    );
    assert!(packed.iter().any(|r| r.starts_with("-WRONGTYPE")));
    for p in ["a:", "b:"] {
        assert_eq!(
            c.cmd(&format!("LRANGE {p}list 0 2")),
            "*3\r\n$1\r\n7\r\n$1\r\n6\r\n$1\r\n5\r\n"
        );
        assert_eq!(c.cmd(&format!("GET {p}n")), "$2\r\n28\r\n");
        assert_eq!(c.cmd(&format!("EXISTS {p}k0 {p}k7 {p}gone0")), ":2\r\n");
        assert_eq!(c.cmd(&format!("SCARD {p}set")), ":9\r\n");
    }
    drop(c);
    drop(env);
    node.shutdown().unwrap();
}
