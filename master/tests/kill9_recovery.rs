//! Out-of-process crash test (STYLE.md §6): the test binary re-runs itself as a child that
//! allocates ids, serves timestamps, registers stores and takes snapshots as fast as it can,
//! printing every acknowledged result; the parent `kill -9`s it at a random moment, reopens
//! the data dir and checks that no acknowledged change was lost, no id was handed out twice
//! and no timestamp repeated or went back. Repeated over many rounds on one data dir.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use ::master::core::MasterConfig;
use ::master::service::{Master, SystemClock};
use bytes::Bytes;
use net::message::{
    AllocIds, Bootstrap, Message, RangeDescriptor, SplitReport, SplitRequest, StoreInfo,
    StoreRegister, TsoRequest,
};
use net::{RangeId, RpcError, ShardId, StoreId};
use rand::Rng;

const CHILD_ENV: &str = "MASTER_KILL9_CHILD_DIR";

fn config(dir: &Path) -> MasterConfig {
    let mut cfg = MasterConfig::new(dir);
    cfg.tso_window_ms = 20; // persist the TSO limit often
    cfg.id_reserve_step = 64; // and the id reservation
    cfg.snapshot_every = 40; // and snapshot often
    cfg
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

async fn call(m: &Arc<Master>, msg: impl Into<Message>) -> Result<Message, RpcError> {
    match m.clone().handle(msg.into()).await.unwrap() {
        Message::Error(e) => Err(e),
        other => Ok(other),
    }
}

/// The child: runs until killed. Lines starting with `ack` are acknowledged results.
#[test]
fn crash_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return; // only runs as the child of `acknowledged_changes_survive_kill_9`
    };
    let rt = runtime();
    rt.block_on(async {
        let (m, _) = Master::open(config(Path::new(&dir)), Arc::new(SystemClock)).unwrap();
        let mut out = std::io::stdout().lock();
        for i in 0u64.. {
            match i % 16 {
                0 => {
                    let store = StoreInfo {
                        store_id: StoreId(0),
                        addr: format!("child-{}-{i}:1", std::process::id()),
                        shard_addrs: vec![format!("10.1.0.{}:2", i % 250)],
                        labels: vec![],
                    };
                    let req = StoreRegister {
                        store,
                        mem_capacity: i + 1,
                        disk_capacity: 0,
                    };
                    let Ok(Message::StoreRegisterResp(r)) = call(&m, req).await else {
                        panic!("register failed")
                    };
                    writeln!(out, "ack store {} {}", r.store_id, i + 1).unwrap();
                }
                5 => {
                    m.tick().await;
                }
                9 => {
                    let right = must_split_last_range(&m).await;
                    writeln!(out, "ack split {right} 0").unwrap();
                }
                n if n % 2 == 0 => {
                    let count = (i % 37 + 1) as u32;
                    let Ok(Message::IdBlock(b)) = call(&m, AllocIds { count }).await else {
                        panic!("alloc failed")
                    };
                    writeln!(out, "ack ids {} {}", b.first, b.count).unwrap();
                }
                _ => {
                    let count = (i % 101 + 1) as u32;
                    let Ok(Message::TsoBatch(b)) = call(&m, TsoRequest { count }).await else {
                        panic!("tso failed")
                    };
                    writeln!(out, "ack ts {} {}", b.first.0, b.count).unwrap();
                }
            }
            out.flush().unwrap();
        }
    });
}

/// Bootstraps if needed (on the first store) and splits the last range at a fresh key;
/// returns the new range's id.
async fn must_split_last_range(m: &Arc<Master>) -> u64 {
    let first_store = m.with_core(|c| c.state().stores().next().map(|s| s.info.store_id));
    let boot = Bootstrap {
        store_id: first_store.unwrap(),
        shard_id: ShardId(0),
    };
    call(m, boot).await.unwrap();
    let last: RangeDescriptor = m.with_core(|c| c.state().ranges().last().cloned().unwrap());
    let key = Bytes::from(format!("k{:020}", last.id.0));
    let req = SplitRequest {
        range_id: last.id,
        epoch: last.epoch,
        split_key: key.clone(),
    };
    let Ok(Message::SplitIds(ids)) = call(m, req).await else {
        panic!("split request failed")
    };
    let mut left = last.clone();
    left.end = key.clone();
    left.epoch.version += 1;
    let mut right = left.clone();
    right.id = ids.new_range_id;
    right.start = key;
    right.end = Bytes::new();
    for (r, id) in right.replicas.iter_mut().zip(&ids.new_replica_ids) {
        r.replica_id = *id;
    }
    right.leader = right.replicas.first().map(|r| r.replica_id);
    let Ok(Message::SplitReportResp(_)) = call(m, SplitReport { left, right }).await else {
        panic!("split report failed")
    };
    ids.new_range_id.0
}

#[derive(Default)]
struct Seen {
    /// Highest id acknowledged so far (ids only grow).
    max_id: u64,
    /// Highest timestamp acknowledged so far.
    max_ts: u64,
    /// Stores acknowledged: (id, mem capacity).
    stores: Vec<(u64, u64)>,
    /// Ranges created by acknowledged splits.
    splits: Vec<u64>,
    acks: usize,
}

impl Seen {
    fn take(&mut self, line: &str) {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (a, b): (u64, u64) = (f[2].parse().unwrap(), f[3].parse().unwrap());
        match f[1] {
            "ids" => {
                assert!(
                    a > self.max_id,
                    "id {a} handed out twice (max {})",
                    self.max_id
                );
                self.max_id = a + b - 1;
            }
            "ts" => {
                assert!(a > self.max_ts, "timestamp {a} not above {}", self.max_ts);
                self.max_ts = a + b - 1;
            }
            "store" => {
                assert!(a > self.max_id, "store id {a} handed out twice");
                self.max_id = a;
                self.stores.push((a, b));
            }
            "split" => {
                assert!(a > self.max_id, "range id {a} handed out twice");
                self.max_id = a;
                self.splits.push(a);
            }
            other => panic!("unknown ack {other}"),
        }
        self.acks += 1;
    }
}

#[test]
fn acknowledged_changes_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut rng = rand::thread_rng();
    let mut seen = Seen::default();
    let rounds = 12;
    for round in 0..rounds {
        let mut child = Command::new(&exe)
            .args(["crash_child", "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut lines = Vec::new();
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if line.starts_with("ack ") {
                    lines.push(line);
                }
            }
            lines
        });
        std::thread::sleep(Duration::from_millis(rng.gen_range(30..300)));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let lines = reader.join().unwrap();
        // A line cut by the kill has no newline and a short last field: drop it if unparsable.
        for line in &lines {
            if line.split_whitespace().count() == 4 {
                seen.take(line);
            }
        }

        // Reopen and check that everything acknowledged is there, then serve past it.
        let rt = runtime();
        rt.block_on(async {
            let (m, report) = Master::open(config(dir.path()), Arc::new(SystemClock)).unwrap();
            m.with_core(|core| {
                let state = core.state();
                assert!(
                    state.id_end() > seen.max_id,
                    "round {round}: id reservation lost"
                );
                assert!(
                    state.tso_limit().0 > seen.max_ts,
                    "round {round}: TSO limit lost"
                );
                for (id, mem) in &seen.stores {
                    let s = state.store(StoreId(*id)).unwrap_or_else(|| {
                        panic!("round {round}: acknowledged store {id} lost ({report:?})")
                    });
                    assert_eq!(s.mem_capacity, *mem);
                }
                for id in &seen.splits {
                    assert!(
                        state.range(RangeId(*id)).is_some(),
                        "round {round}: acknowledged split (range {id}) lost"
                    );
                }
                state.verify();
            });
            let Ok(Message::IdBlock(b)) = call(&m, AllocIds { count: 1 }).await else {
                panic!()
            };
            seen.take(&format!("ack ids {} 1", b.first));
            let Ok(Message::TsoBatch(t)) = call(&m, TsoRequest { count: 1 }).await else {
                panic!()
            };
            seen.take(&format!("ack ts {} 1", t.first.0));
        });
    }
    assert!(
        seen.acks > rounds * 10,
        "the child did too little: {} acks",
        seen.acks
    );
    assert!(!seen.splits.is_empty());
    eprintln!(
        "{} acknowledged results ({} splits) over {rounds} kills",
        seen.acks,
        seen.splits.len()
    );
}
