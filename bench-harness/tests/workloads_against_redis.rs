//! Every workload runs against a real RESP server (a `redis-server` child process on its own
//! port) and every report file parses: the `.hgrm` has the standard header, percentiles and
//! footer; the JSON has every field; the interval log decodes; the SVG is one document with a
//! line per operation kind. Skipped, with a reason printed, where `redis-server` is missing
//! (CI installs it).
#![allow(clippy::unwrap_used)] // a test fails by panicking

use std::time::{Duration, SystemTime};

use bench_harness::runner::{RunConfig, load, run};
use bench_harness::workload::Workload;

mod common;

/// The two tests share the machine's ports and CPU: run them one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn every_workload_runs_and_its_reports_parse() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let Some(server) = test_support::redis::start() else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    for name in ["a", "b", "c", "d", "e", "f", "set", "get"] {
        let mut cfg = RunConfig::new(server.addr(), Workload::named(name).unwrap());
        cfg.records = 500;
        cfg.operations = 2000;
        cfg.connections = 4;
        cfg.pipeline = 4;
        cfg.progress = false;
        cfg.interval = Duration::from_millis(50);
        let started = SystemTime::now();
        let result = rt.block_on(async {
            load(&cfg).await.unwrap();
            run(&cfg).await.unwrap()
        });
        assert_eq!(result.errors, 0, "workload {name}");
        let ops: u64 = result.histograms.values().map(|h| h.len()).sum();
        assert_eq!(ops, 2000, "workload {name} recorded every operation");
        common::must_write_parseable_reports(&result, &dir.path().join(name), started);
    }
}

#[test]
fn open_loop_runs_at_the_target_rate() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let Some(server) = test_support::redis::start() else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut cfg = RunConfig::new(server.addr(), Workload::named("get").unwrap());
    cfg.records = 100;
    cfg.operations = 1000;
    cfg.connections = 4;
    cfg.rate = Some(2000.0);
    cfg.progress = false;
    let result = rt.block_on(async {
        load(&cfg).await.unwrap();
        run(&cfg).await.unwrap()
    });
    // 1000 operations at 2000/s take about half a second: not much less (the schedule holds
    // them back), and the throughput is near the rate.
    assert!(
        result.elapsed >= Duration::from_millis(450),
        "{:?}",
        result.elapsed
    );
    assert!(result.throughput() < 2300.0, "{}", result.throughput());
}
