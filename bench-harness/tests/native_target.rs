//! The native target against a real cluster in this process — a master (`test_support::master`
//! on tokio, one replica per range) and a DS node (`ds_node::run`, two shards): YCSB A, C, E,
//! F and the set/get loops load and run over `native://MASTER` with no error (with shared
//! shard connections, and set/get also with one per connection), every read finds its record,
//! and every report file parses as it does for a RESP target; open loop and `compare` accept
//! native targets too.
#![allow(clippy::unwrap_used)] // a test fails by panicking

use std::time::{Duration, Instant, SystemTime};

use bench_harness::compare::compare;
use bench_harness::runner::{RunConfig, load, run};
use bench_harness::target::Target;
use bench_harness::workload::Workload;
use test_support::master::RunningMaster;

mod common;

/// A master and a DS node; stopped on drop.
struct Cluster {
    master_addr: String,
    node: Option<ds_node::NodeHandle>,
    master: Option<RunningMaster>,
    _dir: tempfile::TempDir,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Some(node) = self.node.take() {
            let _ = node.shutdown();
        }
        drop(self.master.take()); // stops the master and joins its thread
    }
}

fn must_start_cluster() -> Cluster {
    let dir = tempfile::tempdir().unwrap();
    let master = test_support::master::start(dir.path().join("master"), |c| {
        c.cluster.replication_factor = 1;
    });
    let master_addr = master.addr().to_string();
    let node = ds_node::run(ds_node::DsConfig {
        data_dir: dir.path().join("ds"),
        shards: 2,
        pin: false,
        base_port: 0,
        master_addr: Some(master_addr.clone()),
        log_file_bytes: 64 << 20,
        segment_bytes: 4 << 20,
        zero_log_file: false,
        tick_ms: 10,
        heartbeat_ms: 100,
        io_memory_bytes: 1 << 20,
        ..ds_node::DsConfig::default()
    })
    .unwrap();
    Cluster {
        master_addr,
        node: Some(node),
        master: Some(master),
        _dir: dir,
    }
}

fn config(target: &str, workload: &str) -> RunConfig {
    let mut cfg = RunConfig::new(target, Workload::named(workload).unwrap());
    cfg.records = 300;
    cfg.operations = 1200;
    cfg.connections = 4;
    cfg.pipeline = 4;
    cfg.progress = false;
    cfg.interval = Duration::from_millis(50);
    cfg
}

/// Loads until the first range is bootstrapped and has elected its leader (the master
/// bootstraps it when the node registers).
async fn must_load_when_ready(cfg: &RunConfig) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match load(cfg).await {
            Ok(_) => return,
            Err(e) if Instant::now() < deadline => {
                eprintln!("cluster not ready yet: {e:#}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("the cluster never took the load: {e:#}"),
        }
    }
}

#[test]
fn workloads_run_over_the_native_target_and_their_reports_parse() {
    let cluster = must_start_cluster();
    let target = format!("native://{}", cluster.master_addr);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let reports = tempfile::tempdir().unwrap();
    rt.block_on(must_load_when_ready(&config(&target, "set")));
    // Shared shard connections (the default), then one per connection for set and get.
    let runs = ["a", "c", "e", "f", "set", "get"]
        .map(|w| (w, 2))
        .into_iter()
        .chain([("set", 0), ("get", 0)]);
    for (name, shard_conns) in runs {
        let mut cfg = config(&target, name);
        cfg.shard_conns = shard_conns;
        let name = format!("{name}-{shard_conns}");
        let started = SystemTime::now();
        let result = rt.block_on(async {
            load(&cfg).await.unwrap();
            run(&cfg).await.unwrap()
        });
        assert_eq!(result.errors, 0, "workload {name}");
        assert_eq!(result.misses, 0, "workload {name}: every record was loaded");
        let ops: u64 = result.histograms.values().map(|h| h.len()).sum();
        assert_eq!(
            ops, cfg.operations,
            "workload {name} recorded every operation"
        );
        assert!(result.throughput() > 0.0, "workload {name}");
        common::must_write_parseable_reports(&result, &reports.path().join(&name), started);
    }

    // Open loop: the schedule holds 400 operations at 2000/s back for about 0.2 s.
    let mut cfg = config(&target, "get");
    cfg.operations = 400;
    cfg.rate = Some(2000.0);
    let result = rt.block_on(run(&cfg)).unwrap();
    assert_eq!(result.errors, 0);
    assert!(
        result.elapsed >= Duration::from_millis(180),
        "{:?}",
        result.elapsed
    );

    // `compare` takes a native target on either side.
    let a = config(&target, "get");
    let rounds = rt.block_on(compare(&a, &a.clone(), 2, false)).unwrap();
    assert_eq!(rounds.len(), 2);
    assert!(rounds.iter().all(|r| r.a > 0.0 && r.b > 0.0));
}

#[test]
fn an_unreachable_master_is_an_error_not_a_hang() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    // Port 1 on loopback: nothing listens there.
    let err = rt
        .block_on(Target::open(
            "native://127.0.0.1:1",
            0,
            Default::default(),
            None,
        ))
        .unwrap_err();
    assert!(
        format!("{err:#}").contains("route table from master 127.0.0.1:1"),
        "{err:#}"
    );
}
