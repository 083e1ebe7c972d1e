//! Elastic scaling with the local provisioner, end to end: `tierkv dev --elastic
//! --max-nodes 2` (one embedded node, two shards, so two ranges), thresholds lowered through
//! `tierkv ctl scale set` so it runs in seconds.
//!
//! 1. Load above `expand-above` for `sustain-ms` → the master pre-allocates one node and the
//!    local provisioner starts a `tierkv ds`; a range and its leadership move to it; the new
//!    node serves part of the load (the first node's share falls).
//! 2. Load removed → below `shrink-below` for `shrink-sustain-ms` → the newest node is
//!    drained (nothing left on it), stopped and made a tombstone; every key written before
//!    is read back.
//! 3. Two `tierkv ctl scale expand` at once against room for one more node → exactly one is
//!    accepted, the other refused as over-committed, and one node comes online.
#![allow(clippy::unwrap_used)] // a test fails by panicking

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use test_support::procs::{free_port, wait_until};
use test_support::resp::Conn;

struct Dev {
    child: Child,
    admin: String,
}

impl Drop for Dev {
    fn drop(&mut self) {
        // SIGTERM: the master's local provisioner stops the nodes it started.
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_dev(dir: &Path, port: u16) -> Dev {
    let log = std::fs::File::create(dir.join("dev.log")).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_tierkv"))
        .args(["dev", "--elastic", "--max-nodes", "2", "--shards", "2"])
        .args([
            "--maxmemory",
            "0",
            "--port",
            &port.to_string(),
            "--data-dir",
        ])
        .arg(dir.join("data"))
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let admin = loop {
        let line = lines.next().expect("tierkv dev exited early").unwrap();
        if let Some(rest) = line.trim().strip_prefix("admin:") {
            let url = rest.split_whitespace().next().unwrap();
            break url
                .trim_start_matches("http://")
                .trim_end_matches("/status")
                .to_string();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    Dev { child, admin }
}

fn ctl(admin: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tierkv"))
        .args(["ctl", "--master", admin, "--json"])
        .args(args)
        .output()
        .unwrap()
}

fn ctl_json(admin: &str, args: &[&str]) -> Option<Value> {
    let out = ctl(admin, args);
    out.status
        .success()
        .then(|| serde_json::from_slice(&out.stdout).ok())
        .flatten()
}

fn stores(admin: &str) -> Vec<Value> {
    ctl_json(admin, &["stores"])
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default()
}

fn up_stores(admin: &str) -> Vec<Value> {
    stores(admin)
        .into_iter()
        .filter(|s| s["state"] == "up")
        .collect()
}

/// Writes then reads keys spread over every hash slot, as fast as it can, until `stop`.
fn load(port: u16, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let mut ops = 0u64;
        let mut conn: Option<Conn> = None;
        while !stop.load(Ordering::Relaxed) {
            if conn.is_none() {
                conn = Conn::connect(("127.0.0.1", port), Duration::from_secs(5)).ok();
            }
            let Some(c) = conn.as_mut() else {
                std::thread::sleep(Duration::from_millis(50));
                continue;
            };
            let k = format!("load-{}", ops % 512);
            match c.call(&["SET", &k, "x"]).and_then(|_| c.call(&["GET", &k])) {
                Ok(_) => ops += 2,
                Err(_) => conn = None,
            }
        }
        ops
    })
}

/// SETs `key`, waiting out the proxy's startup `-LOADING` (as Redis clients do) for 10 s.
fn must_set(port: u16, key: &str) {
    let mut c = Conn::connect(("127.0.0.1", port), Duration::from_secs(5)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = c.call(&["SET", key, &format!("v-{key}")]).unwrap();
        let loading = format!("{r:?}").contains("LOADING");
        if loading && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
            continue;
        }
        assert!(r.is_ok(), "SET {key}: {r:?}");
        return;
    }
}

#[test]
fn load_starts_a_node_and_idleness_drains_and_stops_it_without_losing_a_key() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let dev = start_dev(dir.path(), port);
    let admin = dev.admin.clone();
    wait_until(dir.path(), "one store up", Duration::from_secs(30), || {
        (up_stores(&admin).len() == 1).then_some(())
    });
    let set = ctl(
        &admin,
        &[
            "scale",
            "set",
            "enabled=true",
            "sustain-ms=1000",
            "shrink-sustain-ms=3000",
            "cooldown-ms=1000",
            "expand-ops-per-sec=300",
            "shrink-ops-per-sec=100",
            "expand-mem-percent=0",
            "expand-disk-percent=0",
            "shrink-mem-percent=0",
            "shrink-disk-percent=0",
        ],
    );
    assert!(
        set.status.success(),
        "{}",
        String::from_utf8_lossy(&set.stderr)
    );
    let keys: Vec<String> = (0..200).map(|i| format!("before-{i}")).collect();
    for k in &keys {
        must_set(port, k);
    }

    // 1. Load: a node is started, and ranges and leaders move to it.
    let stop = Arc::new(AtomicBool::new(false));
    let loaders: Vec<_> = (0..2).map(|_| load(port, stop.clone())).collect();
    let new_store = wait_until(
        dir.path(),
        "a second store up",
        Duration::from_secs(40),
        || {
            let up = up_stores(&admin);
            (up.len() == 2).then(|| up[1]["id"].as_u64().unwrap())
        },
    );
    wait_until(
        dir.path(),
        "the expansion done",
        Duration::from_secs(40),
        || {
            let s = ctl_json(&admin, &["scale", "status"])?;
            let done = s["requests"]
                .as_array()?
                .iter()
                .any(|r| r["kind"] == "expand" && r["state"] == "done");
            done.then_some(())
        },
    );
    let ranges = ctl_json(&admin, &["ranges"]).unwrap();
    let led_there = ranges.as_array().unwrap().iter().any(|r| {
        r["replicas"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["store"] == new_store && p["id"] == r["leader"])
    });
    assert!(led_there, "no range is led on the new store: {ranges}");
    // The new node serves part of the load.
    wait_until(
        dir.path(),
        "load on the new node",
        Duration::from_secs(20),
        || {
            let st = stores(&admin);
            let ops = |id: u64| {
                st.iter()
                    .find(|s| s["id"] == id)
                    .and_then(|s| s["ops_per_sec"].as_u64())
                    .unwrap_or(0)
            };
            let first = st[0]["id"].as_u64().unwrap();
            let (a, b) = (ops(first), ops(new_store));
            (b > 0 && a + b > 0 && a * 10 < (a + b) * 9).then_some(())
        },
    );

    // 2. Idle: the new node is drained, stopped and removed; nothing is lost.
    stop.store(true, Ordering::Relaxed);
    for l in loaders {
        assert!(l.join().unwrap() > 0);
    }
    wait_until(
        dir.path(),
        "the new store removed",
        Duration::from_secs(60),
        || {
            let st = stores(&admin);
            st.iter()
                .any(|s| s["id"] == new_store && s["state"] == "tombstone")
                .then_some(())
        },
    );
    let ranges = ctl_json(&admin, &["ranges"]).unwrap();
    assert!(
        !ranges
            .to_string()
            .contains(&format!("\"store\":{new_store},")),
        "a replica is left on the removed store: {ranges}"
    );
    let mut c = Conn::connect(("127.0.0.1", port), Duration::from_secs(5)).unwrap();
    for k in &keys {
        let v = c.call(&["GET", k]).unwrap();
        assert_eq!(v.text().as_deref(), Some(format!("v-{k}").as_str()), "{k}");
    }

    // 3. Two expansions at once, room for one: exactly one node is pre-allocated.
    let off = ctl(&admin, &["scale", "set", "enabled=false"]);
    assert!(off.status.success());
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| ctl(&admin, &["scale", "expand"]));
        let b = s.spawn(|| ctl(&admin, &["scale", "expand"]));
        (a.join().unwrap(), b.join().unwrap())
    });
    let accepted = [&a, &b].iter().filter(|o| o.status.success()).count();
    assert_eq!(accepted, 1, "{a:?} {b:?}");
    let refused = if a.status.success() { &b } else { &a };
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("exceed the limit"),
        "{refused:?}"
    );
    let s = ctl_json(&admin, &["scale", "status"]).unwrap();
    let cap = &s["capacity"];
    assert_eq!(
        cap["up"].as_u64().unwrap() + cap["coming"].as_u64().unwrap(),
        2,
        "{s}"
    );
    wait_until(
        dir.path(),
        "the one new node up",
        Duration::from_secs(30),
        || (up_stores(&admin).len() == 2).then_some(()),
    );
    assert_eq!(up_stores(&admin).len(), 2);
    drop(dev);
}
