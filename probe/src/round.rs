//! One probe round: refresh the targets from the master's route table, ping every DS shard
//! and the master, report to the master.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use net::message::handshake::LOAD_AND_PROBES_VERSION;
use net::message::{GetRouteTable, Message, ProbeReport, ProbeResult, StoreInfo};
use net::tokio_transport::Pool;
use net::transport::CallError;
use net::{ShardId, StoreId};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::config::ProbeConfig;
use crate::pinger::Pinger;

/// Most shards one probe pings (the master refuses longer reports).
pub const MAX_TARGETS: usize = 4096;

/// Why a round sent no report.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProbeError {
    /// The master could not be called.
    #[error("master {addr}: {source}")]
    Master {
        /// Its address.
        addr: String,
        /// What failed.
        source: CallError,
    },
    /// The master speaks a protocol without probe reports.
    #[error("master speaks protocol {0}; probe reports need {LOAD_AND_PROBES_VERSION}")]
    OldMaster(u16),
    /// The master refused the request.
    #[error("master refused: {0}")]
    Refused(String),
    /// The master answered with the wrong message.
    #[error("master answered {0}")]
    Unexpected(&'static str),
}

/// A probe's counters (read by `tierkv dev` and tests).
#[derive(Debug, Default)]
pub struct ProbeStats {
    /// Rounds run.
    pub rounds_total: AtomicU64,
    /// Reports the master accepted.
    pub reports_total: AtomicU64,
    /// Rounds that sent no report.
    pub round_errors_total: AtomicU64,
    /// Shard pings answered.
    pub pings_ok_total: AtomicU64,
    /// Shard pings not answered within the deadline.
    pub pings_failed_total: AtomicU64,
}

/// One DS shard to ping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The node.
    pub store_id: StoreId,
    /// The shard.
    pub shard_id: ShardId,
    /// Its address.
    pub addr: String,
}

/// What a probe keeps between rounds.
#[derive(Debug, Default)]
pub struct RoundState {
    route_version: u64,
    targets: Vec<Target>,
}

impl RoundState {
    /// The shards pinged each round.
    pub fn targets(&self) -> &[Target] {
        &self.targets
    }
}

/// Every shard of every store, at most [`MAX_TARGETS`].
pub fn targets_of(stores: &[StoreInfo]) -> Vec<Target> {
    stores
        .iter()
        .flat_map(|s| {
            s.shard_addrs.iter().enumerate().map(|(i, a)| Target {
                store_id: s.store_id,
                shard_id: ShardId(i as u32),
                addr: a.clone(),
            })
        })
        .take(MAX_TARGETS)
        .collect()
}

async fn call_master(cfg: &ProbeConfig, pool: &Pool, msg: Message) -> Result<Message, ProbeError> {
    let master = |source| ProbeError::Master {
        addr: cfg.master.clone(),
        source,
    };
    let client = pool.get(&cfg.master).await.map_err(master)?;
    if matches!(msg, Message::ProbeReport(_)) && client.peer().version < LOAD_AND_PROBES_VERSION {
        return Err(ProbeError::OldMaster(client.peer().version));
    }
    match client.call(msg).await.map_err(master)? {
        Message::Error(e) => Err(ProbeError::Refused(e.to_string())),
        m => Ok(m),
    }
}

/// Runs one round; returns the report the master accepted.
pub async fn round<P: Pinger>(
    cfg: &ProbeConfig,
    pool: &Pool,
    pinger: &Arc<P>,
    state: &mut RoundState,
    stats: &ProbeStats,
) -> Result<ProbeReport, ProbeError> {
    stats.rounds_total.fetch_add(1, Ordering::Relaxed);
    let table = GetRouteTable {
        known_version: state.route_version,
    };
    match call_master(cfg, pool, Message::GetRouteTable(table)).await? {
        Message::RouteTable(t) if t.unchanged => {}
        Message::RouteTable(t) => {
            state.targets = targets_of(&t.stores);
            state.route_version = t.route_version;
        }
        other => return Err(ProbeError::Unexpected(other.name())),
    }
    let master_rtt_us = match pinger.ping(&cfg.master, cfg.deadline).await {
        Ok(rtt) => rtt.as_micros() as u64,
        Err(e) => {
            tracing::info!(master = %cfg.master, "master ping failed: {e}");
            0
        }
    };
    let results = ping_all(cfg, pinger, &state.targets, stats).await;
    let report = ProbeReport {
        probe: cfg.name.clone(),
        zone: cfg.zone.clone(),
        master_rtt_us,
        results,
    };
    match call_master(cfg, pool, Message::ProbeReport(report.clone())).await? {
        Message::ProbeReportResp(r) => {
            if r.route_version != state.route_version {
                // The stores changed: refresh the targets next round.
                state.route_version = 0;
            }
            stats.reports_total.fetch_add(1, Ordering::Relaxed);
            Ok(report)
        }
        other => Err(ProbeError::Unexpected(other.name())),
    }
}

/// Pings every target, at most `cfg.max_parallel` at once; results in target order.
async fn ping_all<P: Pinger>(
    cfg: &ProbeConfig,
    pinger: &Arc<P>,
    targets: &[Target],
    stats: &ProbeStats,
) -> Vec<ProbeResult> {
    let limit = Arc::new(Semaphore::new(cfg.max_parallel.max(1)));
    let mut set = JoinSet::new();
    for (i, t) in targets.iter().enumerate() {
        let (pinger, limit, addr, deadline) =
            (pinger.clone(), limit.clone(), t.addr.clone(), cfg.deadline);
        set.spawn(async move {
            let _slot = limit.acquire_owned().await;
            (i, pinger.ping(&addr, deadline).await)
        });
    }
    let mut results: Vec<ProbeResult> = targets
        .iter()
        .map(|t| ProbeResult {
            store_id: t.store_id,
            shard_id: t.shard_id,
            reachable: false,
            rtt_us: 0,
        })
        .collect();
    while let Some(done) = set.join_next().await {
        let Ok((i, outcome)) = done else { continue };
        let Some(r) = results.get_mut(i) else {
            continue;
        };
        match outcome {
            Ok(rtt) => {
                r.reachable = true;
                r.rtt_us = (rtt.as_micros() as u64).max(1);
                stats.pings_ok_total.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                tracing::debug!(store = %r.store_id, shard = %r.shard_id, "ping failed: {e}");
                stats.pings_failed_total.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    results
}
