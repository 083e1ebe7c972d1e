//! The proxy answers a write the DS node refuses for memory (`ds_node::server::throttle`)
//! with Redis 7's own error, and reads and deletes keep working. A real DS node (one shard,
//! 3 MiB `maxmemory`, demotion capped at 1 byte per second so it cannot keep up, writes
//! waiting at most 100 ms); only the master is faked. Of the 3 MiB, about 1.4 MiB is the
//! engine's two arena pages (704 KiB each: the keys' tree, and the dedup records' once the
//! first write leaves one), counted whole in the accounted memory.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::real_ds;

const OOM: &str = "-OOM command not allowed when used memory > 'maxmemory'.\r\n";

fn ds_config(dir: &std::path::Path) -> ds_node::DsConfig {
    ds_node::DsConfig {
        maxmemory: 3 << 20,
        policy_tick_ms: 10,
        policy_demote_bytes_per_sec: 1,
        write_throttle_max_wait_ms: 100,
        ..real_ds::ds_config(dir, 1)
    }
}

#[test]
fn writes_over_maxmemory_get_redis_oom_error_and_reads_and_deletes_pass() {
    let dir = std::env::temp_dir().join(format!("proxy-real-ds-oom-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let node = ds_node::run(ds_config(&dir)).unwrap();
    let (env, _master) = real_ds::proxy_for(&node, |_| {});
    let mut c = env.client();
    real_ds::until_served(&mut c, Duration::from_secs(10));
    // 4 KiB values until the node refuses (3.3 MiB line at 110 %, less the arena pages: a
    // few hundred keys).
    let value = "v".repeat(4096);
    let (acked, refusal) = real_ds::set_until_refused(&mut c, &value, 2000);
    assert_eq!(refusal, OOM);
    assert!(acked > 256, "refused after {acked} keys");
    // Reads, deletes and expiry pass; the refused key was not written.
    assert_eq!(c.cmd("GET k0"), format!("$4096\r\n{value}\r\n"));
    assert_eq!(c.cmd(&format!("EXISTS k{acked}")), ":0\r\n");
    assert_eq!(c.cmd("EXPIRE k1 100"), ":1\r\n");
    assert_eq!(c.cmd("DEL k0 k1"), ":2\r\n");
    let info = c.cmd("INFO errorstats");
    assert!(info.contains("errorstat_OOM:count=1"), "{info}");
    drop(c);
    drop(env);
    node.shutdown().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
