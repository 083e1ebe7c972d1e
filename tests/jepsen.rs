//! A Jepsen-style test of a real cluster: a `tierkv master`, three `tierkv ds` nodes (one
//! shard each, replication factor 3) and a `tierkv proxy`, as separate processes of the
//! release-like binary. Each DS node runs in a network namespace of its own
//! (`test_support::netns`), so it can be partitioned from its peers.
//!
//! - Ten clients do GET/SET on register keys and INCRBY/GET on counter keys through the
//!   proxy, each operation bounded by a timeout, and record every invocation and outcome
//!   (`test_support::jepsen`).
//! - Meanwhile a nemesis, on a schedule, kills (-9) and restarts a node, pauses one
//!   (SIGSTOP … SIGCONT), cuts one off from the other two (blackhole routes both ways) —
//!   half the time it picks the range's leader — and kills (-9) and restarts the master and
//!   the proxy.
//! - At the end it heals everything, every key is read, and the history is checked: each
//!   key linearizable (`test_support::lincheck`, register and counter models) and no
//!   acknowledged write missing from the final state.
//!
//! The CI run does `JEPSEN_OPS` operations (default 20,000); set it higher for a longer run
//! (results in `docs/reliability.md`). `JEPSEN_SEED`, `JEPSEN_TIMEOUT_MS` and
//! `JEPSEN_FAULT_MS` set the seed, the clients' timeout (1 s) and how long a fault lasts
//! (2 s). A second test proves the harness can fail: a proxy started with the test-only fault
//! of `proxy::fault` (every 8th acknowledged SET dropped) must be caught. Partitions need root (network namespaces); without them the test runs
//! kills and pauses only and says so, except under `CI=true`, where it fails.
#![allow(clippy::unwrap_used)] // a test fails by panicking

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use test_support::http::get_json;
use test_support::jepsen::workload::Rng;
use test_support::jepsen::{History, Workload, analyse, final_reads, run_client};
use test_support::lincheck::Limits;
use test_support::netns::Lab;
use test_support::procs::{Procs, free_port, logs, signal, spawn, wait_until};
use test_support::resp::Conn;

const NODES: usize = 3;
const CLIENTS: u32 = 10;
const REGISTERS: usize = 3;
const COUNTERS: usize = 3;
/// Each client does at most one operation per `PACE`: 1,000 operations/s in all, so the
/// 20,000 operations of the CI run last about 20 s (more with the faults' stalls), for six
/// or more faults.
const PACE: Duration = Duration::from_millis(10);
/// How long one client operation may take before its outcome is unknown (by default;
/// `JEPSEN_TIMEOUT_MS`); also the timeout of the readiness checks.
const OP_TIMEOUT: Duration = Duration::from_secs(1);
/// How long each fault lasts (by default; `JEPSEN_FAULT_MS`).
const FAULT_HOLD: Duration = Duration::from_secs(2);

/// A run's knobs, from the environment.
#[derive(Debug, Clone, Copy)]
struct Settings {
    /// `JEPSEN_OPS`: operations (default 20,000).
    ops: u64,
    /// `JEPSEN_SEED`: the clients' and nemesis's seed (default: the clock).
    seed: u64,
    /// `JEPSEN_TIMEOUT_MS`: a client operation's timeout.
    timeout: Duration,
    /// `JEPSEN_FAULT_MS`: how long a fault lasts.
    hold: Duration,
}

fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    Some(
        v.parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a number")),
    )
}

impl Settings {
    fn from_env(default_ops: u64) -> Settings {
        let clock = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64);
        let ms = Duration::from_millis;
        Settings {
            ops: env_u64("JEPSEN_OPS").unwrap_or(default_ops),
            seed: env_u64("JEPSEN_SEED").unwrap_or(clock),
            timeout: env_u64("JEPSEN_TIMEOUT_MS").map_or(OP_TIMEOUT, ms),
            hold: env_u64("JEPSEN_FAULT_MS").map_or(FAULT_HOLD, ms),
        }
    }
}

/// One test at a time: each runs a cluster of five processes on a 2-core machine.
static SERIAL: Mutex<()> = Mutex::new(());

/// The cluster's processes and how to restart and partition its DS nodes.
/// Fields drop in order: the processes are killed before their namespaces and data go.
struct Cluster {
    procs: Procs,
    lab: Option<Lab>,
    dir: tempfile::TempDir,
    /// Slot in `procs` and command-line arguments of each DS node.
    ds: Vec<(usize, Vec<String>)>,
    /// `ip:port` each DS node's shard listens on.
    ds_addrs: Vec<String>,
    admin: u16,
    proxy_addr: String,
    /// The master's and the proxy's slots and arguments (to restart them after a kill).
    master: (usize, Vec<String>),
    proxy: (usize, Vec<String>, Vec<(String, String)>),
}

impl Cluster {
    /// Starts master, nodes and proxy (with `proxy_env` in the proxy's environment) and
    /// waits until the range has three voters and a leader and the proxy takes a write.
    fn start(lab: Option<Lab>, proxy_env: &[(&str, &str)]) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_path_buf();
        let secret = d.join("cluster-secret");
        net::auth::ClusterSecret::load_or_create(&secret).unwrap();
        let secret = secret.to_str().unwrap().to_string();
        let host = lab.as_ref().map_or("127.0.0.1".into(), Lab::host_ip);
        let master_addr = format!("{host}:{}", free_port());
        let (admin, redis) = (free_port(), free_port());
        std::fs::write(
            d.join("master.toml"),
            format!(
                "data-dir = \"{}\"\nlisten = \"{master_addr}\"\nadmin-listen = \"127.0.0.1:{admin}\"\n\
                 cluster-secret-file = \"{secret}\"\nschedule-interval-ms = 200\n\
                 [cluster]\nreplication-factor = 3\n[schedule]\nstore-down-after-ms = 30000\n",
                d.join("master").display()
            ),
        )
        .unwrap();
        let mut c = Cluster {
            procs: Procs::default(),
            lab,
            dir,
            ds: Vec::new(),
            ds_addrs: Vec::new(),
            admin,
            proxy_addr: format!("127.0.0.1:{redis}"),
            master: (0, Vec::new()),
            proxy: (0, Vec::new(), Vec::new()),
        };
        let master_args = [
            "master",
            "--config",
            d.join("master.toml").to_str().unwrap(),
        ]
        .map(String::from)
        .to_vec();
        c.master = (c.procs.add(c.spawn_master(&master_args)), master_args);
        wait_until(&d, "the master", Duration::from_secs(20), || {
            get_json(admin, "/status")
        });
        for i in 0..NODES {
            let ip = c.lab.as_ref().map_or("127.0.0.1".into(), |l| l.node_ip(i));
            let port = free_port().to_string();
            let cfg = d.join(format!("ds{i}.toml"));
            std::fs::write(
                &cfg,
                format!(
                    "host = \"{ip}\"\nshards = 1\npin = false\nheartbeat-ms = 200\n\
                     log-file-bytes = 67108864\nsegment-bytes = 8388608\n"
                ),
            )
            .unwrap();
            let args: Vec<String> = [
                "ds",
                "--config",
                cfg.to_str().unwrap(),
                "--data-dir",
                d.join(format!("ds{i}")).to_str().unwrap(),
                "--master",
                &master_addr,
                "--base-port",
                &port,
                "--cluster-secret-file",
                &secret,
            ]
            .map(String::from)
            .to_vec();
            c.ds_addrs.push(format!("{ip}:{port}"));
            let slot = c.procs.add(spawn(c.ds_command(i, &args), &c.ds_log(i)));
            c.ds.push((slot, args));
            if i == 0 {
                // The first node bootstraps the range; the others join it.
                wait_until(&d, "the first node", Duration::from_secs(20), || {
                    let r = get_json(admin, "/ranges")?;
                    (!r.as_array()?.is_empty()).then_some(())
                });
            }
        }
        let proxy_args = [
            "proxy",
            "--listen",
            &c.proxy_addr,
            "--master",
            &master_addr,
            "--cluster-secret-file",
            &secret,
        ]
        .map(String::from)
        .to_vec();
        let env: Vec<(String, String)> = proxy_env
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect();
        let slot = c.procs.add(c.spawn_proxy(&proxy_args, &env));
        c.proxy = (slot, proxy_args, env);
        wait_until(&d, "3 voters and a leader", Duration::from_secs(30), || {
            c.leader().filter(|_| c.voters() == Some(NODES))
        });
        wait_until(
            &d,
            "a write through the proxy",
            Duration::from_secs(20),
            || {
                let mut conn = Conn::connect(&c.proxy_addr, OP_TIMEOUT).ok()?;
                conn.call(&["SET", "jepsen-ready", "1"])
                    .ok()?
                    .is_ok()
                    .then_some(())
            },
        );
        c
    }

    fn spawn_master(&self, args: &[String]) -> std::process::Child {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_tierkv"));
        cmd.args(args);
        spawn(cmd, &self.dir.path().join("master.log"))
    }

    fn spawn_proxy(&self, args: &[String], env: &[(String, String)]) -> std::process::Child {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_tierkv"));
        cmd.args(args).envs(env.iter().map(|(k, v)| (k, v)));
        spawn(cmd, &self.dir.path().join("proxy.log"))
    }

    /// Kills (-9) the master or the proxy, as the nemesis asks.
    fn kill_service(&mut self, fault: Fault) {
        let slot = match fault {
            Fault::KillMaster => self.master.0,
            _ => self.proxy.0,
        };
        self.procs.kill(slot);
    }

    /// Starts the master or the proxy again, with the same arguments, ports and data.
    fn restart_service(&mut self, fault: Fault) {
        if fault == Fault::KillMaster {
            let child = self.spawn_master(&self.master.1);
            self.procs.replace(self.master.0, child);
        } else {
            let child = self.spawn_proxy(&self.proxy.1, &self.proxy.2);
            self.procs.replace(self.proxy.0, child);
        }
    }

    fn ds_log(&self, i: usize) -> std::path::PathBuf {
        self.dir.path().join(format!("ds{i}.log"))
    }

    fn ds_command(&self, i: usize, args: &[String]) -> Command {
        let mut cmd = match &self.lab {
            Some(lab) => lab.command(i, env!("CARGO_BIN_EXE_tierkv")),
            None => Command::new(env!("CARGO_BIN_EXE_tierkv")),
        };
        cmd.args(args);
        cmd
    }

    fn range(&self) -> Option<serde_json::Value> {
        Some(
            get_json(self.admin, "/ranges")?
                .as_array()?
                .first()?
                .clone(),
        )
    }

    fn voters(&self) -> Option<usize> {
        let r = self.range()?;
        Some(
            r["replicas"]
                .as_array()?
                .iter()
                .filter(|x| x["role"] == "voter")
                .count(),
        )
    }

    /// The node whose shard leads the range, as the master last heard.
    fn leader(&self) -> Option<usize> {
        let r = self.range()?;
        let leader = r["leader"].as_u64()?;
        let replicas = r["replicas"].as_array()?;
        let store = replicas.iter().find(|x| x["id"] == leader)?["store"].as_u64()?;
        let stores = get_json(self.admin, "/stores")?;
        let s = stores.as_array()?.iter().find(|s| s["id"] == store)?;
        let addr = s["shards"][0].as_str()?;
        self.ds_addrs.iter().position(|a| a == addr)
    }

    fn pid(&self, i: usize) -> u32 {
        self.procs.pid(self.ds[i].0).unwrap()
    }

    fn kill(&mut self, i: usize) {
        self.procs.kill(self.ds[i].0);
    }

    fn restart(&mut self, i: usize) {
        let cmd = self.ds_command(i, &self.ds[i].1);
        let child = spawn(cmd, &self.ds_log(i));
        self.procs.replace(self.ds[i].0, child);
    }

    /// Panics if a process exited on its own (a crash is a finding, not a fault).
    fn assert_alive(&mut self) {
        for slot in 0..NODES + 2 {
            assert!(
                !self.procs.exited(slot),
                "process {slot} exited on its own\n{}",
                logs(self.dir.path(), 30)
            );
        }
    }
}

/// The nemesis's faults, in the order it applies them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    Partition,
    Kill,
    Pause,
    KillMaster,
    KillProxy,
}

const FAULTS: [Fault; 5] = [
    Fault::Partition,
    Fault::Kill,
    Fault::Pause,
    Fault::KillMaster,
    Fault::KillProxy,
];

/// What the nemesis did and when (ms since the start), for the report.
#[derive(Debug, Default)]
struct Timeline(Vec<(u64, String)>);

/// Applies one fault after another (each held `hold`, then `quiet` without faults) until
/// `stop`; then heals everything. Returns how many faults of each kind it applied.
fn nemesis(
    c: &mut Cluster,
    stop: &AtomicBool,
    start: Instant,
    s: &Settings,
    timeline: &mut Timeline,
) -> [usize; 5] {
    let (hold, quiet) = (s.hold, Duration::from_millis(1000));
    let mut rng = Rng::new(s.seed);
    let mut done = [0; 5];
    let mut note = |what: String| timeline.0.push((start.elapsed().as_millis() as u64, what));
    for round in 0.. {
        pause_unless(stop, quiet);
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let k = round % FAULTS.len();
        let fault = FAULTS[k];
        let target = match c.leader() {
            Some(l) if rng.below(2) == 0 => l,
            _ => rng.below(NODES as u64) as usize,
        };
        match fault {
            Fault::Partition => {
                let Some(lab) = &c.lab else { continue };
                lab.isolate(target).unwrap();
                note(format!("isolate ds{target}"));
                pause_unless(stop, hold);
                lab.heal();
                note("heal".into());
            }
            Fault::Kill => {
                c.kill(target);
                note(format!("kill -9 ds{target}"));
                pause_unless(stop, hold);
                c.restart(target);
                note(format!("restart ds{target}"));
            }
            Fault::Pause => {
                let pid = c.pid(target);
                signal(pid, "STOP");
                note(format!("SIGSTOP ds{target}"));
                pause_unless(stop, hold);
                signal(pid, "CONT");
                note(format!("SIGCONT ds{target}"));
            }
            Fault::KillMaster | Fault::KillProxy => {
                let name = if fault == Fault::KillMaster {
                    "master"
                } else {
                    "proxy"
                };
                c.kill_service(fault);
                note(format!("kill -9 {name}"));
                pause_unless(stop, hold);
                c.restart_service(fault);
                note(format!("restart {name}"));
            }
        }
        done[k] += 1;
        c.assert_alive();
    }
    done
}

/// Sleeps `d`, or less if `stop` is set meanwhile.
fn pause_unless(stop: &AtomicBool, d: Duration) {
    let until = Instant::now() + d;
    while Instant::now() < until && !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs the clients (and, with `faults`, the nemesis) for `ops` operations, reads every key
/// at the end and returns the history with the nemesis's counts and timeline.
fn run(c: &mut Cluster, s: &Settings, faults: bool) -> (History, [usize; 5], Timeline) {
    let start = Instant::now();
    let w = Workload {
        addr: c.proxy_addr.clone(),
        registers: REGISTERS,
        counters: COUNTERS,
        timeout: s.timeout,
        ops: s.ops,
        pace: PACE,
        start,
    };
    let seed = s.seed;
    let invoked = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|id| {
            let (w, invoked, stop) = (w.clone(), invoked.clone(), stop.clone());
            std::thread::spawn(move || run_client(id, &w, &invoked, &stop, seed))
        })
        .collect();
    let mut timeline = Timeline::default();
    let mut done = [0; 5];
    let all_done = || clients.iter().all(|t| t.is_finished());
    if faults {
        let nemesis_stop = AtomicBool::new(false);
        std::thread::scope(|scope| {
            let watcher = scope.spawn(|| {
                while !all_done() {
                    std::thread::sleep(Duration::from_millis(50));
                }
                nemesis_stop.store(true, Ordering::Relaxed);
            });
            done = nemesis(c, &nemesis_stop, start, s, &mut timeline);
            watcher.join().unwrap();
        });
    }
    let mut h = History::new(&w);
    for t in clients {
        h.merge(t.join().unwrap());
    }
    stop.store(true, Ordering::Relaxed);
    // Healed: the nemesis undid its last fault before returning.
    let unread = final_reads(&w, &mut h, Duration::from_secs(60));
    assert!(
        unread.is_empty(),
        "no final read of {unread:?} within 60 s\n{}",
        logs(c.dir.path(), 30)
    );
    eprintln!("{} operations in {:?}", h.counts().0, start.elapsed());
    (h, done, timeline)
}

/// Latency percentiles of the completed operations, and the slowest.
fn latencies(h: &History) -> String {
    let mut d: Vec<u64> = h
        .registers
        .iter()
        .flat_map(|ops| ops.iter().map(|o| o.complete_ns - o.invoke_ns))
        .chain(
            h.counters
                .iter()
                .flat_map(|ops| ops.iter().map(|o| o.complete_ns - o.invoke_ns)),
        )
        .collect();
    d.sort_unstable();
    let at = |q: f64| {
        d.get(((d.len() as f64 * q) as usize).min(d.len().saturating_sub(1)))
            .map_or(0.0, |ns| *ns as f64 / 1e6)
    };
    format!(
        "operation latency: p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms",
        at(0.5),
        at(0.99),
        at(0.999),
        at(1.0)
    )
}

/// Writes every key's history to `dir`, one operation per line.
fn save(h: &History, dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    for (k, ops) in h.registers.iter().enumerate() {
        let text: String = ops.iter().map(|o| format!("{o:?}\n")).collect();
        std::fs::write(
            dir.join(format!("{}.history", Workload::register_key(k))),
            text,
        )
        .unwrap();
    }
    for (k, ops) in h.counters.iter().enumerate() {
        let text: String = ops.iter().map(|o| format!("{o:?}\n")).collect();
        std::fs::write(
            dir.join(format!("{}.history", Workload::counter_key(k))),
            text,
        )
        .unwrap();
    }
}

/// The lab, or `None` (with a `SKIPPED` line) where network namespaces cannot be made;
/// under `CI=true` that is a failure.
fn lab() -> Option<Lab> {
    match Lab::new(NODES) {
        Ok(lab) => Some(lab),
        Err(e) if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("partitions need network namespaces (root) when CI=true: {e}")
        }
        Err(e) => {
            eprintln!(
                "SKIPPED partitions: cannot build network namespaces ({e}); kills and pauses only"
            );
            None
        }
    }
}

#[test]
fn histories_under_kills_pauses_and_partitions_are_linearizable_and_lose_no_acknowledged_write() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let s = Settings::from_env(20_000);
    eprintln!("{s:?}");
    let (ops, seed) = (s.ops, s.seed);
    let mut c = Cluster::start(lab(), &[]);
    let (h, done, timeline) = run(&mut c, &s, true);
    eprintln!("faults applied (partition, kill, pause, kill master, kill proxy): {done:?}");
    eprintln!("nemesis (ms, event): {:?}", timeline.0);
    eprintln!("{}", latencies(&h));
    let started = Instant::now();
    let a = analyse(&h, &Limits::default());
    eprintln!("checked in {:?}\n{}", started.elapsed(), a.report());
    if !a.passed() {
        let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("jepsen-{seed}"));
        save(&h, &out);
        panic!(
            "{}\nnemesis: {:?}\nhistories saved in {}\n{}",
            a.report(),
            timeline.0,
            out.display(),
            logs(c.dir.path(), 20)
        );
    }
    assert!(
        done[1] > 0 && done[2] > 0 && done[3] > 0 && done[4] > 0,
        "kills of nodes, master and proxy and pauses ran: {done:?}"
    );
    assert!(c.lab.is_none() || done[0] > 0, "partitions ran: {done:?}");
    assert!(h.counts().0 as u64 >= ops, "{:?}", h.counts());
}

#[test]
fn a_proxy_that_drops_acknowledged_writes_is_caught_by_the_checker() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let s = Settings {
        ops: 2_000,
        ..Settings::from_env(2_000)
    };
    eprintln!("{s:?}");
    let fault = [(proxy::fault::ENV, proxy::fault::DROP_ACKED_SETS)];
    let mut c = Cluster::start(None, &fault);
    let (h, _, _) = run(&mut c, &s, false);
    let a = analyse(&h, &Limits::default());
    eprintln!("{}", a.report());
    assert!(
        !a.passed(),
        "the checker missed the dropped writes\n{}",
        a.report()
    );
    let bad: Vec<&str> = a.violations().iter().map(|(k, _)| *k).collect();
    assert!(
        !bad.is_empty() && bad.iter().all(|k| k.starts_with("jepsen-r")),
        "register keys (and only those: INCRBY is not dropped) are not linearizable: {bad:?}\n{}",
        a.report()
    );
}
