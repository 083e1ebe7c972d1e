//! A real DS node (`ds_node::run`: glommio shards, shard log, raft-rs, one replica of range 1
//! on shard 0) behind the proxy, with only the master faked (a fixed route table): the setup
//! of the proxy's real-DS tests.

use std::path::Path;
use std::time::{Duration, Instant};

use proxy::server::ProxyConfig;
use tokio::runtime::Runtime;

use super::{Client, Env, one_range_table, start_master};

/// A small node for tests: `shards` unpinned shards, a 64 MiB shard log of 4 MiB segments,
/// 10 ms ticks, 1 MiB of io_uring memory.
pub fn ds_config(dir: &Path, shards: usize) -> ds_node::DsConfig {
    ds_node::DsConfig {
        data_dir: dir.to_path_buf(),
        shards,
        pin: false,
        base_port: 0,
        log_file_bytes: 64 << 20,
        segment_bytes: 4 << 20,
        zero_log_file: false,
        tick_ms: 10,
        io_memory_bytes: 1 << 20,
        ..ds_node::DsConfig::default()
    }
}

/// A fake master placing range 1 on shard 0 of a node, served by a runtime of its own
/// (stopped when dropped).
pub struct FakeMaster {
    /// Where it listens.
    pub addr: String,
    _rt: Runtime,
}

/// A fake master whose route table puts range 1 on shard 0 at `shard_addrs`.
pub fn fake_master(shard_addrs: Vec<String>) -> FakeMaster {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let addr = rt.block_on(start_master(one_range_table(shard_addrs, 0)));
    FakeMaster { addr, _rt: rt }
}

/// A proxy in front of `node` (its config `tweak`ed), routed by a fake master. Drop the
/// [`Env`] before the master.
pub fn proxy_for(
    node: &ds_node::NodeHandle,
    tweak: impl FnOnce(&mut ProxyConfig),
) -> (Env, FakeMaster) {
    let master = fake_master(node.shard_addrs.clone());
    let env = Env::start_with(1, |c| {
        c.router.masters = vec![master.addr.clone()];
        tweak(c);
    });
    (env, master)
}

/// Waits until the fresh range has elected its leader and a write through `c` succeeds
/// (`NotLeader` answers are retried meanwhile).
pub fn until_served(c: &mut Client, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let r = c.cmd("SET warm 1");
        if r == "+OK\r\n" {
            return;
        }
        assert!(Instant::now() < deadline, "no leader: {r}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `SET k0 value`, `SET k1 value`, … until a write is refused; how many were acknowledged
/// and the refusal. Panics when `max` were acknowledged without one.
pub fn set_until_refused(c: &mut Client, value: &str, max: usize) -> (usize, String) {
    let mut acked = 0;
    loop {
        let r = c.cmd_args(&[b"SET", format!("k{acked}").as_bytes(), value.as_bytes()]);
        if r != "+OK\r\n" {
            return (acked, r);
        }
        acked += 1;
        assert!(acked < max, "never refused");
    }
}
