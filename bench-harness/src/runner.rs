//! The load phase and the run phase.
//!
//! Closed loop: each connection sends `pipeline` operations in one write, waits for all their
//! replies, and records each operation's latency from the batch's send time. Open loop (a
//! target rate): each connection owns an equal share of the rate and a schedule of intended
//! start times; an operation's latency runs from its **intended** start, so a stall shows up
//! in every request that should have been sent during it (no coordinated omission).
//!
//! Both phases speak to the target through [`crate::target`]: a RESP server or, with
//! `native://MASTER:PORT`, the DS shards themselves; the measuring is the same for both.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use hdrhistogram::Histogram;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::keys::record_key;
use crate::resp::Reply;
use crate::target::{Op, Target};
use crate::workload::{OpKind, Workload};

/// Latencies are recorded in microseconds, up to a minute, 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

/// What to run.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// `host:port` (or `resp://host:port`) of a RESP server, or `native://host:port` of a
    /// master whose DS shards are driven directly.
    pub target: String,
    /// The workload.
    pub workload: Workload,
    /// Records loaded before the run (and the keyspace of reads and updates).
    pub records: u64,
    /// Operations in the run phase.
    pub operations: u64,
    /// Bytes per value.
    pub value_size: usize,
    /// Concurrent connections.
    pub connections: usize,
    /// Operations per write on each connection (closed loop).
    pub pipeline: usize,
    /// Total target rate in operations per second (open loop); `None`: closed loop.
    pub rate: Option<f64>,
    /// Seed of every random choice.
    pub seed: u64,
    /// Print a progress line on a terminal.
    pub progress: bool,
    /// Length of one interval of the interval log.
    pub interval: Duration,
    /// Native targets only: connections per shard shared by all connections, as the proxy
    /// pools them (0: each connection has its own connection to each shard). Default 2, the
    /// proxy's default, so that comparing the two isolates the proxy hop.
    pub shard_conns: usize,
    /// Native targets only: the cluster secret (default: none, for a cluster run with
    /// `insecure-no-auth`).
    pub cluster_secret: net::auth::ClusterSecret,
    /// Native targets only: mutual TLS settings (default none: plain TCP).
    pub cluster_tls: Option<net::tls::TlsConfig>,
}

impl RunConfig {
    /// Defaults for `target` and `workload`: 1,000 records and operations of 100 B values,
    /// 50 connections, no pipelining, closed loop, 2 shared connections per shard.
    pub fn new(target: &str, workload: Workload) -> Self {
        RunConfig {
            target: target.to_string(),
            workload,
            records: 1000,
            operations: 1000,
            value_size: 100,
            connections: 50,
            pipeline: 1,
            rate: None,
            seed: 1,
            progress: std::io::stderr().is_terminal(),
            interval: Duration::from_secs(1),
            shard_conns: 2,
            cluster_secret: net::auth::ClusterSecret::insecure(),
            cluster_tls: None,
        }
    }
}

/// Histograms of one interval (or of the whole run), by operation kind.
pub type Histograms = BTreeMap<OpKind, Histogram<u64>>;

/// What a run measured.
#[derive(Debug, Clone)]
pub struct RunResult {
    /// Latency of every operation, by kind.
    pub histograms: Histograms,
    /// Per interval: its histograms (interval `i` starts at `i × interval`).
    pub intervals: Vec<Histograms>,
    /// Wall time of the run phase.
    pub elapsed: Duration,
    /// Operations that got an error reply.
    pub errors: u64,
    /// Reads that found no value.
    pub misses: u64,
    /// The configuration.
    pub config: RunConfig,
}

impl RunResult {
    /// Operations completed per second.
    pub fn throughput(&self) -> f64 {
        let ops: u64 = self.histograms.values().map(|h| h.len()).sum();
        ops as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

fn value(rng: &mut StdRng, size: usize) -> Bytes {
    (0..size).map(|_| rng.gen_range(b'a'..=b'z')).collect()
}

/// Inserts records `0..records` with pipelined writes (`SET` / `StrSet`) over `connections`
/// connections.
pub async fn load(cfg: &RunConfig) -> anyhow::Result<Duration> {
    let target = Target::open(
        &cfg.target,
        cfg.shard_conns,
        cfg.cluster_secret.clone(),
        cfg.cluster_tls.clone(),
    )
    .await?;
    let start = Instant::now();
    let conns = cfg.connections.clamp(1, 64) as u64;
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..conns {
        let (target, size, records, seed) = (target.clone(), cfg.value_size, cfg.records, cfg.seed);
        tasks.spawn(async move {
            let mut conn = target.connect().await?;
            let mut rng = StdRng::seed_from_u64(seed ^ (c << 32));
            let mut n = c;
            let mut batch = Vec::with_capacity(64);
            while n < records {
                batch.clear();
                while n < records && batch.len() < 64 {
                    batch.push(Op::Set(record_key(n), value(&mut rng, size)));
                    n += conns;
                }
                for (reply, _) in conn.exec(&batch).await? {
                    if let Reply::Error(e) = reply {
                        bail!("load: SET failed: {e}");
                    }
                }
            }
            anyhow::Ok(())
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.context("load task")??;
    }
    Ok(start.elapsed())
}

/// Shared progress of a run.
struct Shared {
    inserted: AtomicU64,
    done: AtomicU64,
}

/// One connection's results.
struct ConnResult {
    histograms: Histograms,
    intervals: Vec<Histograms>,
    errors: u64,
    misses: u64,
}

/// Runs the workload's operations against the target.
pub async fn run(cfg: &RunConfig) -> anyhow::Result<RunResult> {
    cfg.workload.validate()?;
    if cfg.connections == 0 || cfg.pipeline == 0 {
        bail!("connections and pipeline must be at least 1");
    }
    let target = Target::open(
        &cfg.target,
        cfg.shard_conns,
        cfg.cluster_secret.clone(),
        cfg.cluster_tls.clone(),
    )
    .await?;
    let shared = Arc::new(Shared {
        inserted: AtomicU64::new(0),
        done: AtomicU64::new(0),
    });
    let start = Instant::now();
    let conns = cfg.connections as u64;
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..conns {
        let quota = cfg.operations / conns + u64::from(c < cfg.operations % conns);
        let (cfg, shared, target) = (cfg.clone(), shared.clone(), target.clone());
        tasks.spawn(async move { run_connection(cfg, target, c, quota, shared, start).await });
    }
    let progress = cfg.progress.then(|| {
        let (shared, total) = (shared.clone(), cfg.operations);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(500)).await;
                let done = shared.done.load(Ordering::Relaxed);
                let rate = done as f64 / start.elapsed().as_secs_f64().max(1e-9);
                let pct = (done * 100).checked_div(total).unwrap_or(100);
                let bar: String = (0..40)
                    .map(|i| if i * 100 / 40 < pct { '=' } else { ' ' })
                    .collect();
                eprint!("\r[{bar}] {pct:3}% {done}/{total} ops, {rate:.0} ops/s ");
            }
        })
    });
    let mut result = RunResult {
        histograms: Histograms::new(),
        intervals: Vec::new(),
        elapsed: Duration::ZERO,
        errors: 0,
        misses: 0,
        config: cfg.clone(),
    };
    while let Some(r) = tasks.join_next().await {
        let part = r.context("run task")??;
        merge(&mut result.histograms, &part.histograms);
        for (i, h) in part.intervals.iter().enumerate() {
            if result.intervals.len() <= i {
                result.intervals.resize_with(i + 1, Histograms::new);
            }
            merge(&mut result.intervals[i], h);
        }
        result.errors += part.errors;
        result.misses += part.misses;
    }
    result.elapsed = start.elapsed();
    if let Some(p) = progress {
        p.abort();
        eprintln!();
    }
    Ok(result)
}

fn merge(into: &mut Histograms, from: &Histograms) {
    for (kind, h) in from {
        into.entry(*kind)
            .or_insert_with(new_histogram)
            .add(h)
            .expect("histograms share their bounds");
    }
}

async fn run_connection(
    cfg: RunConfig,
    target: Target,
    c: u64,
    quota: u64,
    shared: Arc<Shared>,
    start: Instant,
) -> anyhow::Result<ConnResult> {
    let mut conn = target.connect().await?;
    let mut rng = StdRng::seed_from_u64(cfg.seed.wrapping_add(c.wrapping_mul(0x9E37_79B9)));
    let mut chooser = cfg.workload.distribution.chooser(cfg.records);
    let mut out = ConnResult {
        histograms: Histograms::new(),
        intervals: Vec::new(),
        errors: 0,
        misses: 0,
    };
    // Open loop: this connection's share of the rate, one request at a time.
    let period = cfg
        .rate
        .map(|r| Duration::from_secs_f64(cfg.connections as f64 / r.max(1e-9)));
    let depth = if period.is_some() {
        1
    } else {
        cfg.pipeline as u64
    };
    let mut sent = 0u64;
    let (mut ops, mut kinds) = (Vec::new(), Vec::new());
    while sent < quota {
        let n = depth.min(quota - sent);
        let intended = match period {
            Some(p) => {
                let at = start + p.mul_f64(sent as f64);
                tokio::time::sleep_until(at.into()).await;
                at
            }
            None => Instant::now(),
        };
        ops.clear();
        kinds.clear();
        for _ in 0..n {
            let kind = cfg.workload.pick(rng.r#gen());
            let count = cfg.records + shared.inserted.load(Ordering::Relaxed);
            kinds.push(kind);
            ops.push(match kind {
                OpKind::Read | OpKind::ReadModifyWrite => {
                    Op::Get(record_key(chooser.pick(count, &mut rng)))
                }
                OpKind::Update => {
                    let k = record_key(chooser.pick(count, &mut rng));
                    Op::Set(k, value(&mut rng, cfg.value_size))
                }
                OpKind::Insert => {
                    let n = cfg.records + shared.inserted.fetch_add(1, Ordering::Relaxed);
                    Op::Set(record_key(n), value(&mut rng, cfg.value_size))
                }
                OpKind::Scan => {
                    let first = chooser.pick(count, &mut rng);
                    let len = rng.gen_range(1..=cfg.workload.max_scan_len);
                    Op::Scan {
                        first,
                        len: len.min(count - first),
                    }
                }
            });
        }
        let replies = conn.exec(&ops).await?;
        let mut rmw = Vec::new();
        for ((kind, op), (reply, done)) in kinds.iter().zip(&ops).zip(replies) {
            match (&reply, kind) {
                (Reply::Error(_), _) => out.errors += 1,
                (Reply::Nil, OpKind::Read | OpKind::ReadModifyWrite) => out.misses += 1,
                _ => {}
            }
            match op {
                // The read half of a read-modify-write: write the record back next.
                Op::Get(k) if *kind == OpKind::ReadModifyWrite => {
                    rmw.push(Op::Set(k.clone(), value(&mut rng, cfg.value_size)));
                }
                _ => record(&mut out, *kind, intended, done, start, cfg.interval),
            }
        }
        if !rmw.is_empty() {
            for (reply, done) in conn.exec(&rmw).await? {
                if let Reply::Error(_) = reply {
                    out.errors += 1;
                }
                record(
                    &mut out,
                    OpKind::ReadModifyWrite,
                    intended,
                    done,
                    start,
                    cfg.interval,
                );
            }
        }
        sent += n;
        shared.done.fetch_add(n, Ordering::Relaxed);
    }
    Ok(out)
}

/// Records one operation that started (or should have) at `since` and completed at `now`.
fn record(
    out: &mut ConnResult,
    kind: OpKind,
    since: Instant,
    now: Instant,
    start: Instant,
    interval: Duration,
) {
    let us = now
        .saturating_duration_since(since)
        .as_micros()
        .clamp(1, 60_000_000) as u64;
    out.histograms
        .entry(kind)
        .or_insert_with(new_histogram)
        .saturating_record(us);
    let slot =
        (now.saturating_duration_since(start).as_nanos() / interval.as_nanos().max(1)) as usize;
    if out.intervals.len() <= slot {
        out.intervals.resize_with(slot + 1, Histograms::new);
    }
    out.intervals[slot]
        .entry(kind)
        .or_insert_with(new_histogram)
        .saturating_record(us);
}
