//! Every workload runs against a real RESP server (a `redis-server` child process on its own
//! port) and every report file parses: the `.hgrm` has the standard header, percentiles and
//! footer; the JSON has every field; the interval log decodes; the SVG is one document with a
//! line per operation kind. Skipped, with a reason printed, where `redis-server` is missing
//! (CI installs it).
#![allow(clippy::unwrap_used)] // a test fails by panicking

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use bench_harness::runner::{RunConfig, load, run};
use bench_harness::workload::Workload;

mod common;

struct Server {
    child: Child,
    addr: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts a redis-server on a free port. A port picked by binding port 0 can be taken again
/// before redis binds it (another test does the same), so a server that exits at start is
/// retried on a new port, and the server is only used once it answers while still running.
fn start_redis() -> Option<Server> {
    for _ in 0..5 {
        let port = TcpListener::bind("127.0.0.1:0")
            .ok()?
            .local_addr()
            .ok()?
            .port();
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .spawn();
        let Ok(mut child) = child else {
            eprintln!("SKIPPED: redis-server is not installed (apt-get install redis-server)");
            return None;
        };
        let addr = format!("127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if child.try_wait().ok().flatten().is_some() {
                break; // exited: the port was taken; try another
            }
            if std::net::TcpStream::connect(&addr).is_ok() {
                std::thread::sleep(Duration::from_millis(50));
                if child.try_wait().ok().flatten().is_none() {
                    return Some(Server { child, addr });
                }
                break;
            }
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    panic!("could not start redis-server on a free port in 5 attempts");
}

/// The two tests share the machine's ports and CPU: run them one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn every_workload_runs_and_its_reports_parse() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let Some(server) = start_redis() else { return };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    for name in ["a", "b", "c", "d", "e", "f", "set", "get"] {
        let mut cfg = RunConfig::new(&server.addr, Workload::named(name).unwrap());
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
    let Some(server) = start_redis() else { return };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut cfg = RunConfig::new(&server.addr, Workload::named("get").unwrap());
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
