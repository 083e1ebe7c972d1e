//! The master's synchronous core: the durable state, the id allocator, heartbeat soft state
//! and the operators in flight. One method per RPC; time is a parameter, errors are the
//! `RpcError`s the peer sees. The tokio service (`crate::service`) puts it behind a mutex.

mod manual;
mod memory;
mod operator;
mod routes;
pub mod scale;
pub mod validate;

pub use operator::{DECISIONS_KEPT, Decision, RunningOperator};
pub use routes::RouteCache;

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use net::message::{
    Bootstrap, BootstrapResp, GetRouteTable, IdBlock, MergeReport, MergeReportResp, ProbeReport,
    ProbeReportResp, RangeDescriptor, RangeHeartbeat, RangeHeartbeatResp, Replica, ReplicaRole,
    Route, RouteTable, ShardHeartbeat, ShardLoad, SplitIds, SplitReport, SplitReportResp,
    SplitRequest, StoreHeartbeat, StoreHeartbeatResp, StoreRegister, StoreRegisterResp,
};
use net::{ClusterId, Epoch, RangeId, ReplicaId, RpcError, ShardId, StoreId, Timestamp};

use crate::detector::{Detector, DetectorConfig};
use crate::log::{DurableState, LogError, ProposeError, RecoveryReport};
use crate::schedule::{Checker, RangeLoad, ScheduleConfig, StoreLoad, default_checkers};
use crate::state::{
    ClusterConfig, ClusterState, Command, CommandError, StoreMeta, StoreState, is_stale,
};

/// Where the `i`-th of `n` first ranges starts: the empty key for the first, the end of the
/// keyspace (empty) for `i == n`, else the start of hash slot `SLOTS * i / n`, so Redis keys
/// spread evenly and a key's entries never straddle two ranges.
fn slot_boundary(i: usize, n: usize) -> Bytes {
    if i == 0 || i >= n {
        return Bytes::new();
    }
    let slot = usize::from(net::keyspace::SLOTS) * i / n;
    net::keyspace::slot_start(u16::try_from(slot).unwrap_or(net::keyspace::SLOTS))
}

/// The largest `AllocIds` count.
pub const MAX_ID_BATCH: u32 = 1_000_000;

/// Master settings.
#[derive(Debug, Clone)]
pub struct MasterConfig {
    /// Where the log and snapshots live.
    pub data_dir: PathBuf,
    /// Cluster id for a new data dir (`None`: derived from the clock). Ignored on restart.
    pub cluster_id: Option<ClusterId>,
    /// Config of a new cluster. Ignored on restart.
    pub cluster: ClusterConfig,
    /// How far ahead of the clock the TSO limit is persisted, ms. Default 3,000.
    pub tso_window_ms: u64,
    /// Ids reserved per log write. Default 1,000.
    pub id_reserve_step: u64,
    /// Snapshot after this many commands. Default 10,000.
    pub snapshot_every: u64,
    /// An operator not finished after this long is dropped, ms. Default 60,000.
    pub operator_timeout_ms: u64,
    /// Scheduler period, ms. Default 1,000.
    pub schedule_interval_ms: u64,
    /// Scheduler settings.
    pub schedule: ScheduleConfig,
    /// Elastic scaling settings.
    pub scale: crate::autoscale::ScaleConfig,
}

impl MasterConfig {
    /// Defaults with the given data dir.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            cluster_id: None,
            cluster: ClusterConfig::default(),
            tso_window_ms: 3000,
            id_reserve_step: 1000,
            snapshot_every: 10_000,
            operator_timeout_ms: 60_000,
            schedule_interval_ms: 1000,
            schedule: ScheduleConfig::default(),
            scale: crate::autoscale::ScaleConfig::default(),
        }
    }
}

fn bad(msg: impl Into<String>) -> RpcError {
    RpcError::BadRequest {
        message: msg.into(),
    }
}

fn rpc_error(e: ProposeError) -> RpcError {
    match e {
        ProposeError::Rejected(c) => match c {
            CommandError::UnknownRange(range_id) => RpcError::RangeNotFound { range_id },
            CommandError::StaleEpoch { current } => RpcError::EpochMismatch {
                ranges: vec![*current],
            },
            other => bad(other.to_string()),
        },
        ProposeError::Log(e) => RpcError::Internal {
            code: 1,
            message: format!("master log: {e}"),
        },
    }
}

/// A shard's last heartbeat (protocol version 3).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ShardLoadSeen {
    /// When it arrived (master clock, ms).
    pub heartbeat_ms: u64,
    /// What it said.
    pub load: ShardLoad,
}

fn detector_config(s: &ScheduleConfig) -> DetectorConfig {
    DetectorConfig {
        down_after_ms: s.store_down_after_ms,
        probe_window_ms: s.probe_window_ms,
        probe_expiry_ms: s.probe_expiry_ms,
    }
}

/// The master's state and the work it has in flight.
#[derive(Debug)]
pub struct Core {
    cfg: MasterConfig,
    durable: DurableState,
    next_id: u64,
    store_loads: BTreeMap<StoreId, StoreLoad>,
    shard_loads: BTreeMap<(StoreId, ShardId), ShardLoadSeen>,
    /// Each shard's latest memory report (protocol version 6; soft state).
    shard_memory: BTreeMap<(StoreId, ShardId), net::message::ShardMemory>,
    range_loads: BTreeMap<RangeId, RangeLoad>,
    detector: Detector,
    operators: BTreeMap<RangeId, RunningOperator>,
    checkers: Vec<Box<dyn Checker>>,
    decisions: VecDeque<Decision>,
    /// Operators scheduled since start, per checker.
    scheduled_total: BTreeMap<&'static str, u64>,
    routes: Arc<RwLock<RouteCache>>,
    /// The route version, for route-table watches (`WatchRouteTable`) to wait on.
    route_watch: Arc<tokio::sync::watch::Sender<u64>>,
    refused: validate::RefusalCounts,
    scale: scale::ScaleState,
    /// Merges recorded since start (`master_merges_total`).
    merges_total: u64,
}

impl Core {
    /// Opens the data dir, recovers, and initialises a new cluster if it is empty.
    pub fn open(cfg: MasterConfig, now_ms: u64) -> Result<(Self, RecoveryReport), LogError> {
        let (mut durable, report) = DurableState::open(&cfg.data_dir)?;
        if durable.state().cluster_id() == ClusterId(0) {
            let cluster_id = cfg.cluster_id.unwrap_or(ClusterId(
                (now_ms << 16) | u64::from(std::process::id() & 0xffff),
            ));
            let init = Command::Init {
                cluster_id,
                config: cfg.cluster,
            };
            durable.propose(&init).map_err(|e| match e {
                ProposeError::Log(e) => e,
                ProposeError::Rejected(c) => LogError::Corruption {
                    file: cfg.data_dir.clone(),
                    offset: 0,
                    reason: format!("init refused: {c}"),
                },
            })?;
        }
        let next_id = durable.state().id_end().max(1);
        let routes = Arc::new(RwLock::new(RouteCache::from_state(durable.state())));
        let route_watch = Arc::new(tokio::sync::watch::Sender::new(
            durable.state().route_version(),
        ));
        let detector = Detector::new(detector_config(&cfg.schedule));
        Ok((
            Self {
                cfg,
                durable,
                next_id,
                store_loads: BTreeMap::new(),
                shard_loads: BTreeMap::new(),
                shard_memory: BTreeMap::new(),
                range_loads: BTreeMap::new(),
                detector,
                operators: BTreeMap::new(),
                checkers: default_checkers(),
                decisions: VecDeque::new(),
                scheduled_total: BTreeMap::new(),
                merges_total: 0,
                routes,
                route_watch,
                refused: validate::RefusalCounts::new(),
                scale: scale::ScaleState::default(),
            },
            report,
        ))
    }

    /// The durable state.
    pub fn state(&self) -> &ClusterState {
        self.durable.state()
    }

    /// The settings.
    pub fn config(&self) -> &MasterConfig {
        &self.cfg
    }

    /// Operators in flight.
    pub fn operators(&self) -> &BTreeMap<RangeId, RunningOperator> {
        &self.operators
    }

    /// The latest scheduler decisions, oldest first.
    pub fn decisions(&self) -> &VecDeque<Decision> {
        &self.decisions
    }

    /// Last heartbeat of each range.
    pub fn range_loads(&self) -> &BTreeMap<RangeId, RangeLoad> {
        &self.range_loads
    }

    /// Last heartbeat of each store.
    pub fn store_loads(&self) -> &BTreeMap<StoreId, StoreLoad> {
        &self.store_loads
    }

    /// Last heartbeat of each shard (from stores that speak protocol version 3).
    pub fn shard_loads(&self) -> &BTreeMap<(StoreId, ShardId), ShardLoadSeen> {
        &self.shard_loads
    }

    /// The failure detector: probes, votes and each store's health.
    pub fn detector(&self) -> &Detector {
        &self.detector
    }

    fn propose(&mut self, cmd: &Command) -> Result<(), RpcError> {
        self.durable.propose(cmd).map_err(|e| {
            if matches!(e, ProposeError::Log(_)) {
                tracing::error!(command = cmd.name(), "master log write failed: {e}");
            }
            rpc_error(e)
        })?;
        let mut routes = self.routes.write().unwrap_or_else(|p| p.into_inner());
        routes.on_applied(cmd, self.durable.state());
        let version = self.durable.state().route_version();
        self.route_watch.send_if_modified(|seen| {
            let changed = *seen != version;
            *seen = version;
            changed
        });
        #[cfg(debug_assertions)]
        if self.durable.state().range_count() < 4096 {
            let all = GetRouteTable { known_version: 0 };
            assert_eq!(
                routes.route_table(all),
                self.route_table(all),
                "route cache drifted"
            );
        }
        Ok(())
    }

    /// The route cache lookups read (updated after every applied command).
    pub fn routes(&self) -> Arc<RwLock<RouteCache>> {
        self.routes.clone()
    }

    /// The route version as it changes: route-table watches subscribe to it.
    pub fn route_watch(&self) -> Arc<tokio::sync::watch::Sender<u64>> {
        self.route_watch.clone()
    }

    /// Hands out `count` consecutive ids; persists a new reservation first when needed.
    pub fn alloc_ids(&mut self, count: u32) -> Result<IdBlock, RpcError> {
        if !(1..=MAX_ID_BATCH).contains(&count) {
            return Err(bad(format!("id count {count} not in 1..={MAX_ID_BATCH}")));
        }
        let end = self.next_id + u64::from(count);
        if end > self.state().id_end() {
            let reserve = end + self.cfg.id_reserve_step;
            self.propose(&Command::ReserveIds { end: reserve })?;
        }
        let first = self.next_id;
        self.next_id = end;
        debug_assert!(end <= self.state().id_end());
        Ok(IdBlock { first, count })
    }

    fn alloc_one(&mut self) -> Result<u64, RpcError> {
        self.alloc_ids(1).map(|b| b.first)
    }

    /// Persists a TSO limit (the allocator itself lives in the service).
    pub fn persist_tso_limit(&mut self, limit: Timestamp) -> Result<(), RpcError> {
        if limit <= self.state().tso_limit() {
            return Ok(());
        }
        self.propose(&Command::SetTsoLimit { limit })
    }

    /// Registers (or updates) a store.
    pub fn register_store(
        &mut self,
        req: StoreRegister,
        now_ms: u64,
    ) -> Result<StoreRegisterResp, RpcError> {
        let mut info = req.store;
        if info.shard_addrs.is_empty() {
            return Err(bad("a store needs at least one shard address"));
        }
        let existing = self.state().store(info.store_id).cloned();
        let same_addr = self.state().stores().find(|s| {
            s.info.addr == info.addr
                && s.info.store_id != info.store_id
                && s.state != StoreState::Tombstone
        });
        if let Some(other) = same_addr {
            // As PD does: a second identity at one address would let a new process inherit
            // (or shadow) replicas it does not have.
            return Err(bad(format!(
                "address {} already belongs to store {}",
                info.addr, other.info.store_id
            )));
        }
        if info.store_id == StoreId(0) {
            info.store_id = StoreId(self.alloc_one()?);
        } else if existing.is_none() && info.store_id.0 >= self.next_id {
            return Err(bad(format!(
                "store id {} was not allocated by this master; register with id 0",
                info.store_id
            )));
        }
        let config = *self.state().config();
        let meta = StoreMeta {
            info,
            mem_capacity: if req.mem_capacity == 0 {
                config.default_max_memory_bytes
            } else {
                req.mem_capacity
            },
            disk_capacity: if req.disk_capacity == 0 {
                config.default_max_disk_bytes
            } else {
                req.disk_capacity
            },
            state: existing.as_ref().map_or(StoreState::Up, |e| e.state),
            registered_ms: existing.as_ref().map_or(now_ms, |e| e.registered_ms),
        };
        let store_id = meta.info.store_id;
        if existing.as_ref() != Some(&meta) {
            self.propose(&Command::PutStore { meta })?;
            tracing::info!(store = %store_id, "store registered");
            if existing.is_none() {
                self.claim_store(store_id, now_ms);
            }
        }
        self.store_loads.entry(store_id).or_default().heartbeat_ms = now_ms;
        Ok(StoreRegisterResp {
            cluster_id: self.state().cluster_id(),
            store_id,
            bootstrapped: self.state().is_bootstrapped(),
        })
    }

    /// Creates the first ranges (idempotent): the keyspace cut at hash-slot boundaries into
    /// one range per shard of the asking store, each with one voter on its shard, so every
    /// core of the first store takes writes from the start. Once bootstrapped, answers with
    /// the first ranges that are still as created (a shard that crashed before creating its
    /// range creates it then).
    pub fn bootstrap(&mut self, req: Bootstrap) -> Result<BootstrapResp, RpcError> {
        let cluster_id = self.state().cluster_id();
        if self.state().is_bootstrapped() {
            let initial = Epoch {
                conf_ver: 1,
                version: 1,
            };
            return Ok(BootstrapResp {
                cluster_id,
                ranges: self
                    .state()
                    .ranges()
                    .filter(|r| r.epoch == initial)
                    .cloned()
                    .collect(),
                created: false,
            });
        }
        let store = self
            .state()
            .store(req.store_id)
            .ok_or_else(|| bad(format!("store {} is not registered", req.store_id)))?;
        let shards = store.info.shard_addrs.len();
        if req.shard_id.0 as usize >= shards {
            return Err(bad(format!(
                "store {} has no shard {}",
                req.store_id, req.shard_id
            )));
        }
        let n = shards.min(crate::state::MAX_BOOTSTRAP_RANGES);
        let block = self.alloc_ids(2 * n as u32)?;
        let ranges: Vec<RangeDescriptor> = (0..n)
            .map(|i| {
                let replica_id = ReplicaId(block.first + 2 * i as u64 + 1);
                RangeDescriptor {
                    id: RangeId(block.first + 2 * i as u64),
                    start: slot_boundary(i, n),
                    end: slot_boundary(i + 1, n),
                    epoch: Epoch {
                        conf_ver: 1,
                        version: 1,
                    },
                    replicas: vec![Replica {
                        replica_id,
                        store_id: req.store_id,
                        shard_id: ShardId(i as u32),
                        role: ReplicaRole::Voter {},
                    }],
                    leader: Some(replica_id),
                }
            })
            .collect();
        self.propose(&Command::BootstrapRanges {
            ranges: ranges.clone(),
        })?;
        tracing::info!(ranges = n, store = %req.store_id, "cluster bootstrapped");
        Ok(BootstrapResp {
            cluster_id,
            ranges,
            created: true,
        })
    }

    /// Records a store heartbeat.
    pub fn store_heartbeat(
        &mut self,
        hb: StoreHeartbeat,
        now_ms: u64,
    ) -> Result<StoreHeartbeatResp, RpcError> {
        let id = hb.store.store_id;
        if self.state().store(id).is_none() {
            return Err(bad(format!("heartbeat from unregistered store {id}")));
        }
        self.store_loads.insert(
            id,
            StoreLoad {
                heartbeat_ms: now_ms,
                stats: hb.stats,
            },
        );
        Ok(StoreHeartbeatResp {
            cluster_id: self.state().cluster_id(),
            route_version: self.state().route_version(),
        })
    }

    /// Records one shard's heartbeat; it also counts as a heartbeat of its store (so a store
    /// whose shard 0 is stuck but whose other shards report is not silent).
    pub fn shard_heartbeat(
        &mut self,
        hb: ShardHeartbeat,
        now_ms: u64,
    ) -> Result<StoreHeartbeatResp, RpcError> {
        let id = hb.store_id;
        let Some(store) = self.state().store(id) else {
            return Err(bad(format!("heartbeat from unregistered store {id}")));
        };
        if hb.shard_id.0 as usize >= store.info.shard_addrs.len() {
            return Err(bad(format!("store {id} has no shard {}", hb.shard_id)));
        }
        let shards = store.info.shard_addrs.len() as u32;
        self.shard_loads
            .retain(|(s, sh), _| *s != id || sh.0 < shards);
        self.shard_loads.insert(
            (id, hb.shard_id),
            ShardLoadSeen {
                heartbeat_ms: now_ms,
                load: hb.load,
            },
        );
        self.store_loads.entry(id).or_default().heartbeat_ms = now_ms;
        Ok(StoreHeartbeatResp {
            cluster_id: self.state().cluster_id(),
            route_version: self.state().route_version(),
        })
    }

    /// Records a probe's round (soft state: the detector evaluates it on the next scheduler
    /// run).
    pub fn probe_report(
        &mut self,
        r: ProbeReport,
        now_ms: u64,
    ) -> Result<ProbeReportResp, RpcError> {
        let state = self.durable.state();
        self.detector
            .on_report(&r, |s| state.store(s).is_some(), now_ms)
            .map_err(|e| bad(e.to_string()))?;
        Ok(ProbeReportResp {
            route_version: state.route_version(),
        })
    }

    /// Re-evaluates every store's health and logs each change with the probes' votes.
    pub fn detect(&mut self, now_ms: u64) {
        let stores: BTreeMap<StoreId, Option<u64>> = self
            .state()
            .stores()
            .filter(|s| s.state != StoreState::Tombstone)
            .map(|s| {
                let id = s.info.store_id;
                (id, self.store_loads.get(&id).map(|l| l.heartbeat_ms))
            })
            .collect();
        for t in self.detector.evaluate(&stores, now_ms) {
            let (from, to) = (t.from.label(), t.to.health.label());
            if t.to.health == crate::detector::Health::Dead {
                tracing::warn!(store = %t.store, from, to, "store declared dead: {}", t.to);
            } else {
                tracing::info!(store = %t.store, from, to, "store health changed: {}", t.to);
            }
        }
    }

    /// Records a range heartbeat, updates the descriptor if it is newer, advances the range's
    /// operator and returns its current step.
    pub fn range_heartbeat(
        &mut self,
        hb: RangeHeartbeat,
        now_ms: u64,
    ) -> Result<RangeHeartbeatResp, RpcError> {
        let id = hb.range.id;
        let Some(current) = self.state().range(id) else {
            self.count_refusal(validate::Refusal::UnknownRange);
            return Err(RpcError::RangeNotFound { range_id: id });
        };
        if let Err(r) = validate::check_heartbeat(self.state(), self.next_id, current, &hb) {
            return Err(self.refused(r));
        }
        let current = current.clone();
        let mut desc = hb.range;
        if desc.epoch == current.epoch
            && (desc.replicas != current.replicas
                || desc.start != current.start
                || desc.end != current.end)
        {
            // Same epoch, different content: ours wins (only a newer epoch may change the
            // membership or the interval); the leader is still taken from the heartbeat.
            tracing::warn!(range = %id, "range heartbeat disagrees with the master at the same epoch");
            desc = current.clone();
        }
        desc.leader = Some(hb.leader);
        if desc != current {
            self.propose(&Command::PutRange {
                range: desc.clone(),
            })?;
        }
        self.range_loads.insert(
            id,
            RangeLoad {
                heartbeat_ms: now_ms,
                stats: hb.stats,
                pending: hb.pending,
                down: hb.down,
            },
        );
        Ok(RangeHeartbeatResp {
            operator: self.advance_operator(&desc, now_ms),
        })
    }

    /// The route of the range holding `key`.
    pub fn route_by_key(&self, key: &[u8]) -> Route {
        self.route(self.state().range_by_key(key))
    }

    /// The route of range `id`.
    pub fn route_by_id(&self, id: RangeId) -> Route {
        self.route(self.state().range(id))
    }

    fn route(&self, range: Option<&RangeDescriptor>) -> Route {
        Route {
            route_version: self.state().route_version(),
            leader_addr: range.and_then(|r| self.state().leader_addr(r)),
            range: range.cloned(),
        }
    }

    /// The whole route table, unless the caller's version is current.
    pub fn route_table(&self, req: GetRouteTable) -> RouteTable {
        let state = self.state();
        let version = state.route_version();
        if req.known_version == version {
            return RouteTable {
                route_version: version,
                unchanged: true,
                ranges: vec![],
                stores: vec![],
            };
        }
        RouteTable {
            route_version: version,
            unchanged: false,
            ranges: state.ranges().cloned().collect(),
            stores: state
                .stores()
                .filter(|s| s.state != StoreState::Tombstone)
                .map(|s| s.info.clone())
                .collect(),
        }
    }

    /// Allocates the ids of a split at a key the leader chose.
    pub fn split_request(&mut self, req: SplitRequest) -> Result<SplitIds, RpcError> {
        let range = self
            .state()
            .range(req.range_id)
            .ok_or(RpcError::RangeNotFound {
                range_id: req.range_id,
            })?;
        if is_stale(req.epoch, range.epoch) {
            return Err(RpcError::EpochMismatch {
                ranges: vec![range.clone()],
            });
        }
        let inside =
            req.split_key > range.start && (range.end.is_empty() || req.split_key < range.end);
        if !inside {
            return Err(bad(format!(
                "split key is not strictly inside range {}",
                req.range_id
            )));
        }
        let n = range.replicas.len() as u32;
        let block = self.alloc_ids(n + 1)?;
        Ok(SplitIds {
            new_range_id: RangeId(block.first),
            new_replica_ids: (1..=u64::from(n))
                .map(|i| ReplicaId(block.first + i))
                .collect(),
        })
    }

    /// Records a split the leader applied.
    pub fn split_report(&mut self, rep: SplitReport) -> Result<SplitReportResp, RpcError> {
        if rep.right.id.0 >= self.next_id {
            return Err(bad(format!(
                "range id {} was not allocated by this master",
                rep.right.id
            )));
        }
        let left_id = rep.left.id;
        let state = self.state();
        if state.range(left_id) == Some(&rep.left) && state.range(rep.right.id) == Some(&rep.right)
        {
            // A retry of a report that was recorded (its reply was lost).
            return Ok(SplitReportResp {
                route_version: state.route_version(),
            });
        }
        let Some(old) = state.range(left_id) else {
            self.count_refusal(validate::Refusal::UnknownRange);
            return Err(RpcError::RangeNotFound { range_id: left_id });
        };
        if let Err(r) = validate::check_split(state, self.next_id, old, &rep.left, &rep.right) {
            return Err(self.refused(r));
        }
        self.propose(&Command::Split {
            left: rep.left,
            right: rep.right,
        })?;
        tracing::info!(range = %left_id, "split recorded");
        Ok(SplitReportResp {
            route_version: self.state().route_version(),
        })
    }

    /// Records a merge the left range's leader applied (`Command::Merge`), logged with the
    /// reason of the operator that asked for it.
    pub fn merge_report(&mut self, rep: MergeReport) -> Result<MergeReportResp, RpcError> {
        let state = self.state();
        if state.range(rep.left.id) == Some(&rep.left) && state.range(rep.right.id).is_none() {
            // A retry of a report that was recorded (its reply was lost).
            return Ok(MergeReportResp {
                route_version: state.route_version(),
            });
        }
        let (left, right) = (rep.left.id, rep.right.id);
        if let Some(old) = state
            .range(left)
            .filter(|o| o.epoch.version >= rep.left.epoch.version)
        {
            return Err(RpcError::EpochMismatch {
                ranges: vec![old.clone()],
            });
        }
        self.propose(&Command::Merge {
            left: rep.left,
            right: rep.right,
        })?;
        self.merges_total += 1;
        let reason = self.operators.get(&left).map_or_else(
            || "no operator here (reported late)".to_string(),
            |o| o.reason.clone(),
        );
        tracing::info!(range = %left, %right, %reason, "merge recorded");
        Ok(MergeReportResp {
            route_version: self.state().route_version(),
        })
    }

    /// Merges recorded since this master started.
    pub fn merges_total(&self) -> u64 {
        self.merges_total
    }

    /// Range heartbeats and split reports refused, by reason (soft state: since start).
    pub fn refused_reports(&self) -> &validate::RefusalCounts {
        &self.refused
    }

    fn count_refusal(&mut self, reason: validate::Refusal) {
        *self.refused.entry(reason).or_insert(0) += 1;
    }

    /// Counts `r` and logs it (debug: a stray peer must not flood the log); its error.
    fn refused(&mut self, r: validate::Refused) -> RpcError {
        self.count_refusal(r.reason);
        tracing::debug!(reason = r.reason.label(), "report refused: {}", r.error);
        r.error
    }

    /// Writes a snapshot if enough commands accumulated.
    pub fn maybe_snapshot(&mut self) -> Result<bool, LogError> {
        if self.durable.commands_since_snapshot() < self.cfg.snapshot_every {
            return Ok(false);
        }
        self.durable.snapshot()?;
        Ok(true)
    }

    /// Marks a store offline (drain) or up again.
    pub fn set_store_state(
        &mut self,
        store_id: StoreId,
        state: StoreState,
    ) -> Result<(), RpcError> {
        self.propose(&Command::SetStoreState { store_id, state })
    }
}
