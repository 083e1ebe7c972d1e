//! Requests over a size limit, through the proxy to a real DS node (issue 21, items 1 and 4):
//! each is refused with a Redis-style error that stays with that request — the connection and
//! every other client go on — nothing is committed that the engine could refuse, and the node
//! restarts on the same data and serves it.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{Client, Env, real_ds};
use net::limits::MAX_KEY_ELEMENT_BYTES;

fn ds_config(dir: &std::path::Path) -> ds_node::DsConfig {
    real_ds::ds_config(dir, 1)
}

/// A proxy in front of `node`, routed by a fake master holding one range on shard 0. Its
/// request timeout allows a 64 MiB value to cross a loaded 2-core machine (about 50 ms per
/// MiB end to end in the ci profile; Redis itself takes about 25 ms per MiB with redis-cli).
fn proxy_for(node: &ds_node::NodeHandle) -> (Env, real_ds::FakeMaster) {
    real_ds::proxy_for(node, |c| {
        c.router.transport.request_timeout = Duration::from_secs(60);
    })
}

fn must_serve(c: &mut Client) {
    c.stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    real_ds::until_served(c, Duration::from_secs(20));
}

fn key(n: usize) -> Vec<u8> {
    vec![b'k'; n]
}

#[test]
fn oversized_keys_are_refused_per_request_and_the_node_restarts_on_its_data() {
    let dir = std::env::temp_dir().join(format!("proxy-hostile-limits-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let node = ds_node::run(ds_config(&dir)).unwrap();
    let (env, _master) = proxy_for(&node);
    let mut c = env.client();
    must_serve(&mut c);
    let mut other = env.client();

    // The poison pill: every key length that passed the proxy and aborted the apply.
    for n in 65_529..=65_536 {
        let r = c.cmd_args(&[b"SET", &key(n), b"v"]);
        assert!(r.starts_with("-ERR key too large: "), "{n}: {r}");
        // The same connection and another client go on.
        assert_eq!(c.cmd("PING"), "+PONG\r\n");
        assert_eq!(other.cmd(&format!("SET other{n} {n}")), "+OK\r\n");
    }
    // Key and field together, and a key past the wire's 64 KiB.
    let r = c.cmd_args(&[b"HSET", &key(40_000), &vec![b'f'; 25_473], b"v"]);
    assert!(r.starts_with("-ERR key too large: "), "{r}");
    let r = c.cmd_args(&[b"GET", &key(70_000)]);
    assert!(r.starts_with("-ERR key too large: "), "{r}");
    // In a pipeline, only the oversized command fails.
    let mut req = common::multibulk(&[b"SET", b"before", b"1"]);
    req.extend(common::multibulk(&[b"SET", &key(65_536), b"x"]));
    req.extend(common::multibulk(&[b"SET", b"after", b"2"]));
    c.send(&req);
    assert_eq!(c.read_reply().unwrap(), b"+OK\r\n");
    assert!(c.read_reply().unwrap().starts_with(b"-ERR key too large"));
    assert_eq!(c.read_reply().unwrap(), b"+OK\r\n");
    // The limit itself is stored.
    let at_limit = key(MAX_KEY_ELEMENT_BYTES);
    assert_eq!(c.cmd_args(&[b"SET", &at_limit, b"edge"]), "+OK\r\n");
    assert_eq!(c.cmd_args(&[b"GET", &at_limit]), "$4\r\nedge\r\n");
    drop((c, other));
    drop(env);
    node.shutdown().unwrap();

    // Restarted on the same data: the log replays without a fault and every key is there.
    let node = ds_node::run(ds_config(&dir)).unwrap();
    let (env, _master) = proxy_for(&node);
    let mut c = env.client();
    must_serve(&mut c);
    assert_eq!(c.cmd_args(&[b"GET", &at_limit]), "$4\r\nedge\r\n");
    assert_eq!(c.cmd("GET after"), "$1\r\n2\r\n");
    assert_eq!(c.cmd("GET other65536"), "$5\r\n65536\r\n");
    let metrics = ds_node::admin::render(&node.metrics());
    assert!(
        metrics.contains("ds_ranges_stopped_total 0"),
        "no range stopped:\n{metrics}"
    );
    drop(c);
    drop(env);
    node.shutdown().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

fn big_value(n: usize, seed: u8) -> Vec<u8> {
    (0..n).map(|i| (i as u8).wrapping_mul(31) ^ seed).collect()
}

fn bulk(v: &[u8]) -> Vec<u8> {
    let mut out = format!("${}\r\n", v.len()).into_bytes();
    out.extend_from_slice(v);
    out.extend_from_slice(b"\r\n");
    out
}

/// Values larger than a shard-log batch (1 MiB) and than the old 64 MiB frame limit are
/// stored as several log records and read back whole, before and after a restart; one over
/// `proto-max-bulk-len` is refused without breaking the connection.
fn large_values_round_trip(sizes: &[usize]) {
    // Removed when dropped, also when an assertion fails: these runs write GBs.
    let tmp = test_support::tempdir::TempDir::new("proxy-large-values");
    let dir = tmp.path().to_path_buf();
    let mut cfg = ds_config(&dir);
    // Production's layout: 64 MiB segments in a zeroed (allocated) file.
    cfg.log_file_bytes = 1 << 30;
    cfg.segment_bytes = 64 << 20;
    cfg.zero_log_file = true;
    cfg.io_memory_bytes = 8 << 20;
    let node = ds_node::run(cfg.clone()).unwrap();
    let (env, _master) = proxy_for(&node);
    let mut c = env.client();
    must_serve(&mut c);
    for (i, &n) in sizes.iter().enumerate() {
        let v = big_value(n, i as u8);
        let k = format!("big{i}");
        assert_eq!(
            c.cmd_args(&[b"SET", k.as_bytes(), &v]),
            "+OK\r\n",
            "SET {n}"
        );
        c.send(&common::multibulk(&[b"GET", k.as_bytes()]));
        assert!(c.read_reply().unwrap() == bulk(&v), "GET {n}");
        assert_eq!(c.cmd(&format!("STRLEN {k}")), format!(":{n}\r\n"));
        assert_eq!(c.cmd("PING"), "+PONG\r\n");
    }
    drop(c);
    drop(env);
    node.shutdown().unwrap();
    let node = ds_node::run(cfg).unwrap();
    let (env, _master) = proxy_for(&node);
    let mut c = env.client();
    must_serve(&mut c);
    for (i, &n) in sizes.iter().enumerate() {
        c.send(&common::multibulk(&[b"GET", format!("big{i}").as_bytes()]));
        assert!(
            c.read_reply().unwrap() == bulk(&big_value(n, i as u8)),
            "GET {n} after restart"
        );
    }
    drop(c);
    drop(env);
    node.shutdown().unwrap();
}

#[test]
fn values_larger_than_a_log_batch_round_trip_across_a_restart() {
    large_values_round_trip(&[(1 << 20) - 100, (1 << 20) + 1, 3 << 20, 9 << 20]);
}

/// 64 MiB through the in-process stack (the old frame limit), before and after a restart.
#[test]
fn a_64_mib_value_round_trips_across_a_restart() {
    large_values_round_trip(&[64 << 20]);
}

/// The largest value Redis accepts by default. Needs ~4 GiB of memory and tens of seconds:
/// `cargo test -p proxy --profile ci --test hostile_limits -- --ignored`.
#[test]
#[ignore = "512 MiB through the whole stack: run by hand (figures in the issue note)"]
fn a_512_mib_value_round_trips_across_a_restart() {
    large_values_round_trip(&[512 << 20]);
}

#[test]
fn setrange_past_proto_max_bulk_len_is_refused_and_the_connection_goes_on() {
    let dir = std::env::temp_dir().join(format!("proxy-bulk-limit-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let node = ds_node::run(ds_config(&dir)).unwrap();
    let (env, _master) = proxy_for(&node);
    let mut c = env.client();
    must_serve(&mut c);
    assert_eq!(c.cmd("SET k 1"), "+OK\r\n");
    let too_far = (512 << 20) - 1;
    let r = c.cmd(&format!("SETRANGE k {too_far} xy"));
    assert_eq!(
        r, "-ERR string exceeds maximum allowed size (proto-max-bulk-len)\r\n",
        "as Redis"
    );
    assert_eq!(c.cmd(&format!("SETRANGE nokey {too_far} ")), ":0\r\n");
    assert_eq!(c.cmd("GET k"), "$1\r\n1\r\n");
    drop(c);
    drop(env);
    node.shutdown().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
