//! `CONFIG SET maxmemory` through the proxy sets the cluster's `maxmemory` end to end: a real
//! master, a real DS node (two shards, 64 MiB of its own `maxmemory`) and the proxy. After
//! `CONFIG SET maxmemory 1mb` the master answers `CONFIG GET` with it, each shard's budget
//! becomes 512 KiB within a few heartbeats (`ds_maxmemory_bytes` on the node's `/metrics`),
//! demotion starts (every value leaves memory) and every value still reads back (cold ones from the device); `INFO
//! memory` reports the data nodes' figures; and a proxy of a restarted master still reads
//! the setting. With demotion held back, a lowered `maxmemory` refuses writes with Redis's
//! OOM error and a raised one lets them through again.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::{Env, real_ds};

const KEYS: usize = 1000;
const VALUE: usize = 4096;

fn metric(port: u16, name: &str) -> u64 {
    let text = test_support::http::get_text(port, "/metrics").unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0)
}

fn until(what: &str, within: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !f() {
        assert!(Instant::now() < deadline, "{what} not within {within:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn proxy(master: &str) -> Env {
    let master = master.to_string();
    Env::start_with(1, move |c| c.router.masters = vec![master])
}

fn info_field(info: &str, name: &str) -> u64 {
    info.split("\r\n")
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {info}"))
}

#[test]
fn config_set_maxmemory_through_the_proxy_lowers_every_shard_budget_and_survives_a_master_restart()
{
    let root = test_support::tempdir::TempDir::new("proxy-real-ds-maxmemory");
    let master = test_support::master::start(root.path().join("master"), |_| {});
    let node = ds_node::run(ds_node::DsConfig {
        master_addr: Some(master.addr().to_string()),
        heartbeat_ms: 100,
        maxmemory: 64 << 20,
        policy_tick_ms: 10,
        admin_addr: Some("127.0.0.1:0".into()),
        ..real_ds::ds_config(&root.path().join("ds"), 2)
    })
    .unwrap();
    let admin = node.admin_addr.unwrap().port();
    let env = proxy(master.addr());
    let mut c = env.client();
    real_ds::until_served(&mut c, Duration::from_secs(20));
    until(
        "the node's own budgets on /metrics",
        Duration::from_secs(10),
        || metric(admin, "ds_maxmemory_bytes") == 64 << 20,
    );
    until(
        "the node's own maxmemory at the proxy",
        Duration::from_secs(10),
        || c.cmd("CONFIG GET maxmemory") == "*2\r\n$9\r\nmaxmemory\r\n$8\r\n67108864\r\n",
    );
    let value = |i: usize| format!("{i:07}").repeat(VALUE / 7);
    for i in 0..KEYS {
        let r = c.cmd_args(&[b"SET", format!("k{i}").as_bytes(), value(i).as_bytes()]);
        assert_eq!(r, "+OK\r\n", "SET k{i}");
    }
    assert_eq!(
        metric(admin, "ds_policy_demotions_total"),
        0,
        "under 64 MiB"
    );
    until("the writes on /metrics", Duration::from_secs(10), || {
        metric(admin, "ds_memory_accounted_bytes") > (KEYS * VALUE) as u64
    });
    let accounted_before = metric(admin, "ds_memory_accounted_bytes");

    // Redis's parsing and error text stay; a valid value goes to the master.
    assert!(
        c.cmd("CONFIG SET maxmemory 1xb")
            .contains("argument must be a memory value"),
    );
    assert_eq!(c.cmd("CONFIG SET maxmemory 1mb"), "+OK\r\n");
    assert_eq!(
        c.cmd("CONFIG GET maxmemory"),
        "*2\r\n$9\r\nmaxmemory\r\n$7\r\n1048576\r\n"
    );
    until("the budgets to follow", Duration::from_secs(10), || {
        metric(admin, "ds_maxmemory_bytes") == 1 << 20
    });
    // Every value leaves memory (the tree of 1,000 keys alone stays above 1 MiB: cold keys
    // leaving memory is not built, `ds_policy_stuck_total` counts those laps).
    until(
        "demotion under the new budget",
        Duration::from_secs(20),
        || {
            metric(admin, "ds_policy_demotions_total") >= KEYS as u64
                && metric(admin, "ds_memory_accounted_bytes") < accounted_before / 2
        },
    );
    for i in (0..KEYS).step_by(37) {
        let want = value(i);
        let got = c.cmd(&format!("GET k{i}"));
        assert_eq!(got, format!("${}\r\n{want}\r\n", want.len()), "GET k{i}");
    }
    // INFO memory: the data nodes' figures, as the master has them from the heartbeats.
    until(
        "INFO memory to show cold values",
        Duration::from_secs(10),
        || {
            let info = c.cmd("INFO memory");
            info_field(&info, "tierkv_cold_bytes") > 0
        },
    );
    let info = c.cmd("INFO memory");
    assert_eq!(info_field(&info, "maxmemory"), 1 << 20, "{info}");
    assert!(info.contains("maxmemory_human:1.00M\r\n"), "{info}");
    assert!(info_field(&info, "used_memory") > 0, "{info}");
    assert_eq!(info_field(&info, "tierkv_memory_shards"), 2, "{info}");
    assert!(info_field(&info, "tierkv_keys") >= KEYS as u64, "{info}");
    drop(c);
    drop(env);

    // The master restarts (on another port): a proxy of it reads the same setting.
    let master_dir = root.path().join("master");
    master.stop();
    let master = test_support::master::start(master_dir, |_| {});
    let env = proxy(master.addr());
    let mut c = env.client();
    assert_eq!(
        c.cmd("CONFIG GET maxmemory"),
        "*2\r\n$9\r\nmaxmemory\r\n$7\r\n1048576\r\n"
    );
    drop(c);
    drop(env);
    node.shutdown().unwrap();
    master.stop();
}

/// Writes refused with Redis's OOM error under a lowered `maxmemory` (demotion capped at 1
/// byte per second, so it cannot make room) pass again once `CONFIG SET` raises it.
#[test]
fn raising_maxmemory_through_the_proxy_lets_refused_writes_succeed_again() {
    const OOM: &str = "-OOM command not allowed when used memory > 'maxmemory'.\r\n";
    let root = test_support::tempdir::TempDir::new("proxy-real-ds-maxmemory-oom");
    let master = test_support::master::start(root.path().join("master"), |_| {});
    let node = ds_node::run(ds_node::DsConfig {
        master_addr: Some(master.addr().to_string()),
        heartbeat_ms: 100,
        maxmemory: 64 << 20,
        policy_tick_ms: 10,
        policy_demote_bytes_per_sec: 1,
        write_throttle_max_wait_ms: 100,
        admin_addr: Some("127.0.0.1:0".into()),
        ..real_ds::ds_config(&root.path().join("ds"), 1)
    })
    .unwrap();
    let admin = node.admin_addr.unwrap().port();
    let env = proxy(master.addr());
    let mut c = env.client();
    real_ds::until_served(&mut c, Duration::from_secs(20));
    assert_eq!(c.cmd("CONFIG SET maxmemory 2mb"), "+OK\r\n");
    until("the lower budget", Duration::from_secs(10), || {
        metric(admin, "ds_maxmemory_bytes") == 2 << 20
    });
    let value = "v".repeat(VALUE);
    let (acked, refusal) = real_ds::set_until_refused(&mut c, &value, 3000);
    assert_eq!(refusal, OOM);
    assert_eq!(c.cmd("CONFIG SET maxmemory 64mb"), "+OK\r\n");
    until("the higher budget", Duration::from_secs(10), || {
        metric(admin, "ds_maxmemory_bytes") == 64 << 20
    });
    for i in acked..acked + 100 {
        let r = c.cmd_args(&[b"SET", format!("k{i}").as_bytes(), value.as_bytes()]);
        assert_eq!(r, "+OK\r\n", "SET k{i} after raising maxmemory");
    }
    drop(c);
    drop(env);
    node.shutdown().unwrap();
    master.stop();
}
