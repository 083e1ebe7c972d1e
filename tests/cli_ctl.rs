//! `tierkv ctl` against a `tierkv dev` (one node, two shards: two ranges): every subcommand,
//! as a table and as JSON, and the operations' effects seen on the master's pages; refusals
//! exit non-zero with the master's reason.
#![allow(clippy::unwrap_used)] // a test fails by panicking

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use test_support::procs::{free_port, wait_until};

struct Dev(Child);

impl Drop for Dev {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn ctl(admin: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tierkv"))
        .args(["ctl", "--master", admin])
        .args(args)
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    assert!(
        o.status.success(),
        "ctl failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn json(admin: &str, args: &[&str]) -> Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    serde_json::from_str(&text(&ctl(admin, &all))).unwrap()
}

fn refused(o: &Output, why: &str) {
    assert!(!o.status.success(), "expected a refusal");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains(why), "stderr {err:?} lacks {why:?}");
}

#[test]
fn every_ctl_subcommand_works_against_tierkv_dev() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port().to_string();
    let mut child = Command::new(env!("CARGO_BIN_EXE_tierkv"))
        .args(["dev", "--shards", "2", "--maxmemory", "0", "--port", &port])
        .arg("--data-dir")
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let _dev = Dev(child);
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
    let a = admin.as_str();
    wait_until(
        dir.path(),
        "two ranges led",
        Duration::from_secs(30),
        || {
            let r = json(a, &["ranges"]);
            let ranges = r.as_array()?;
            (ranges.len() == 2 && ranges.iter().all(|x| !x["leader"].is_null())).then_some(())
        },
    );

    // Reads: tables with their headers, JSON as the master serves it.
    assert!(text(&ctl(a, &["status"])).contains("replication_factor   1"));
    let stores = text(&ctl(a, &["stores"]));
    assert!(stores.starts_with("ID  ADDR"), "{stores}");
    assert!(stores.lines().nth(1).unwrap().contains(" up "), "{stores}");
    let store = json(a, &["stores"])[0]["id"].as_u64().unwrap().to_string();
    let ranges = text(&ctl(a, &["ranges"]));
    assert_eq!(ranges.lines().count(), 3, "{ranges}");
    assert!(ranges.contains(&format!("s{store}/0*")), "{ranges}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while json(a, &["probes"]).as_array().unwrap().is_empty() {
        assert!(Instant::now() < deadline, "the dev probe never reported");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(text(&ctl(a, &["probes"])).contains("dev-probe-0"));
    assert!(json(a, &["status"])["bootstrapped"] == true);

    // Drain and undrain.
    assert!(text(&ctl(a, &["drain", &store])).contains("draining"));
    assert_eq!(json(a, &["stores"])[0]["state"], "offline");
    assert!(text(&ctl(a, &["undrain", &store])).contains("up"));
    assert_eq!(json(a, &["stores"])[0]["state"], "up");
    refused(&ctl(a, &["drain", "999"]), "not registered");

    // Move: the only store already holds the range; an unknown range is refused too.
    let first = json(a, &["ranges"])[0]["id"].as_u64().unwrap().to_string();
    refused(
        &ctl(a, &["move-range", &first, "--to", &store]),
        "already has a replica",
    );
    refused(&ctl(a, &["move-range", "424242", "--to", &store]), "424242");

    // Split at a key's hash slot: a third range appears.
    let last = json(a, &["ranges"])[1]["id"].as_u64().unwrap().to_string();
    let out = text(&ctl(a, &["split", &last, "--slot", "12000"]));
    assert!(out.contains("split"), "{out}");
    wait_until(
        dir.path(),
        "the split recorded",
        Duration::from_secs(30),
        || (json(a, &["ranges"]).as_array()?.len() == 3).then_some(()),
    );
    refused(
        &ctl(a, &["split", &first, "--slot", "12000"]),
        "not strictly inside",
    );

    // Move between the shards of the store: the first range lives on shard 0.
    refused(
        &ctl(a, &["move-range", &first, "--to", &store, "--shard", "0"]),
        "shard 0",
    );
    let out = text(&ctl(
        a,
        &["move-range", &first, "--to", &store, "--shard", "1"],
    ));
    assert!(out.contains(&format!("add-learner s{store}/1")), "{out}");

    // Scale: without a provisioner the request is recorded, then fails; bad settings are
    // refused before anything changes.
    let out = text(&ctl(a, &["scale", "expand"]));
    assert!(out.contains("expand request"), "{out}");
    wait_until(
        dir.path(),
        "the expansion failed",
        Duration::from_secs(20),
        || {
            let s = json(a, &["scale", "status"]);
            (s["requests"][0]["state"] == "failed").then_some(())
        },
    );
    let status = text(&ctl(a, &["scale", "status"]));
    assert!(status.contains("autoscaling  off"), "{status}");
    assert!(status.contains("failed"), "{status}");
    refused(
        &ctl(a, &["scale", "set", "shrink-ops-per-sec=90000"]),
        "must be below",
    );
    refused(&ctl(a, &["scale", "set", "nonsense"]), "not key=value");
    assert!(text(&ctl(a, &["scale", "set", "expand-ops-per-sec=123456"])).contains("changed"));
    assert_eq!(
        json(a, &["scale", "status"])["expand_above"]["ops_per_sec"],
        123456
    );
    // The scaling metrics are on /metrics.
    let metrics =
        test_support::http::get_text(a.rsplit(':').next().unwrap().parse().unwrap(), "/metrics")
            .unwrap();
    assert!(
        metrics.contains("master_capacity_requests_total{kind=\"expand\",outcome=\"failed\"} 1")
    );

    // No master there: a clear error.
    let port = free_port().to_string();
    refused(&ctl(&format!("127.0.0.1:{port}"), &["status"]), "connect");
}
