//! Elastic scaling in the core: capacity requests (pre-allocated through the log), the
//! autoscaler's verdicts, drains, and the provisioner calls the service makes for them.
//!
//! Life of an expansion: [`Core::request_capacity`] logs `RequestCapacity` (refused when it
//! would over-commit) and queues a [`ProvisionAction::Start`]; the service calls the
//! provisioner off the lock; each new store that registers is claimed by the oldest
//! expansion still waiting ([`Core::claim_store`]); once every new store leads a range the
//! request is done. A shrink logs `RequestCapacity` (its store goes offline, so the replica
//! checker moves every replica away); once no range has a replica there the provisioner is
//! asked to stop it, and then the store becomes a tombstone.

use std::collections::{BTreeMap, VecDeque};

use hdrhistogram::Histogram;
use net::{RpcError, StoreId};

use super::{Core, DECISIONS_KEPT, Decision, bad};
use crate::autoscale::{NodeLoad, Verdict};
use crate::capacity::{ProvisionId, ProvisionKind, ProvisionState, Provisioning};
use crate::provision::{StartNodes, StopNode};
use crate::state::{Command, StoreState};

/// A provisioner call the service makes outside the core's lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProvisionAction {
    /// Start nodes.
    Start(StartNodes),
    /// Stop a drained node.
    Stop(StopNode),
}

impl ProvisionAction {
    /// The capacity request it serves.
    pub fn id(&self) -> ProvisionId {
        match self {
            Self::Start(s) => s.id,
            Self::Stop(s) => s.id,
        }
    }
}

/// Counters and latencies of scaling (soft state: since start).
#[derive(Debug)]
pub struct ScaleStats {
    /// Autoscaler verdicts acted on, by kind.
    pub decisions: BTreeMap<&'static str, u64>,
    /// Capacity requests by kind and outcome (`requested`, `done`, `failed`, `refused`).
    pub requests: BTreeMap<(&'static str, &'static str), u64>,
    /// Provisioner calls, by outcome.
    pub calls: BTreeMap<&'static str, u64>,
    /// Provisioner call latency, µs.
    pub call_us: Histogram<u64>,
    /// Expansion: threshold crossed (or request) → a range led on every new store, ms.
    pub expand_ms: Histogram<u64>,
    /// Shrink: request → store stopped and tombstoned, ms.
    pub shrink_ms: Histogram<u64>,
}

impl Default for ScaleStats {
    fn default() -> Self {
        let h = || Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("static bounds");
        Self {
            decisions: BTreeMap::new(),
            requests: BTreeMap::new(),
            calls: BTreeMap::new(),
            call_us: h(),
            expand_ms: h(),
            shrink_ms: h(),
        }
    }
}

/// Scaling's soft state in the core.
#[derive(Debug, Default)]
pub struct ScaleState {
    pub(super) autoscaler: crate::autoscale::Autoscaler,
    pub(super) actions: VecDeque<ProvisionAction>,
    /// When the threshold was first crossed, per expansion the autoscaler started.
    pub(super) crossed_ms: BTreeMap<ProvisionId, u64>,
    /// Shrinks whose stop this master run has queued.
    pub(super) stopping: std::collections::BTreeSet<ProvisionId>,
    pub(super) stats: ScaleStats,
}

impl Core {
    /// Scaling counters and latencies.
    pub fn scale_stats(&self) -> &ScaleStats {
        &self.scale.stats
    }

    /// The autoscaler (its last verdict, for the admin page).
    pub fn autoscaler(&self) -> &crate::autoscale::Autoscaler {
        &self.scale.autoscaler
    }

    /// Replaces the scaling settings (admin API; not persisted: the config file holds the
    /// defaults a restart returns to).
    pub fn set_scale_config(&mut self, cfg: crate::autoscale::ScaleConfig) -> Result<(), RpcError> {
        cfg.validate().map_err(bad)?;
        tracing::info!(?cfg, "scaling settings changed");
        self.cfg.scale = cfg;
        Ok(())
    }

    /// The average load of the stores that are up and reporting.
    pub fn node_load(&self) -> Option<NodeLoad> {
        let mut n = 0u64;
        let (mut ops, mut mem, mut disk, mut net) = (0u64, 0u64, 0u64, 0u64);
        for st in self.state().stores().filter(|s| s.state == StoreState::Up) {
            let id = st.info.store_id;
            let shards: Vec<_> = self
                .shard_loads
                .range((id, net::ShardId(0))..=(id, net::ShardId(u32::MAX)))
                .map(|(_, l)| l.load)
                .collect();
            let (o, m, d, b) = if shards.is_empty() {
                let Some(l) = self.store_loads.get(&id).filter(|l| l.heartbeat_ms > 0) else {
                    continue;
                };
                (l.stats.ops_per_sec, l.stats.mem_used, l.stats.disk_used, 0)
            } else {
                shards.iter().fold((0, 0, 0, 0), |a, l| {
                    (
                        a.0 + l.read_ops_per_sec + l.write_ops_per_sec,
                        a.1 + l.mem_used,
                        a.2 + l.disk_used,
                        a.3 + l.read_bytes_per_sec + l.write_bytes_per_sec,
                    )
                })
            };
            n += 1;
            ops += o;
            net += b;
            mem += m.saturating_mul(100) / st.mem_capacity.max(1);
            disk += d.saturating_mul(100) / st.disk_capacity.max(1);
        }
        (n > 0).then(|| NodeLoad {
            nodes: n as u32,
            ops_per_sec: ops / n,
            mem_percent: (mem / n).min(u64::from(u32::MAX)) as u32,
            disk_percent: (disk / n).min(u64::from(u32::MAX)) as u32,
            net_bytes_per_sec: net / n,
        })
    }

    fn count_request(&mut self, kind: ProvisionKind, outcome: &'static str) {
        *self
            .scale
            .stats
            .requests
            .entry((kind.label(), outcome))
            .or_insert(0) += 1;
    }

    fn log_decision(&mut self, now_ms: u64, operator: String, reason: String) {
        if self.decisions.len() == DECISIONS_KEPT {
            self.decisions.pop_front();
        }
        self.decisions.push_back(Decision {
            at_ms: now_ms,
            checker: "autoscale",
            operator,
            reason,
        });
    }

    /// The store a shrink removes when none is named: the most recently registered store
    /// that is up (a StatefulSet removes its highest ordinal, the newest pod).
    fn shrink_victim(&self) -> Option<StoreId> {
        self.state()
            .stores()
            .filter(|s| s.state == StoreState::Up)
            .max_by_key(|s| (s.registered_ms, s.info.store_id))
            .map(|s| s.info.store_id)
    }

    /// Logs a capacity request (pre-allocating an expansion's nodes, or starting a shrink's
    /// drain) and queues the provisioner call an expansion needs. Refused when it would
    /// take the cluster past `max-stores` counting nodes already coming, or below
    /// `min-stores`.
    pub fn request_capacity(
        &mut self,
        kind: ProvisionKind,
        store: Option<StoreId>,
        reason: String,
        now_ms: u64,
    ) -> Result<Provisioning, RpcError> {
        let stores = match kind {
            ProvisionKind::Expand => Vec::new(),
            ProvisionKind::Shrink => {
                vec![
                    store
                        .or_else(|| self.shrink_victim())
                        .ok_or_else(|| bad("no store is up"))?,
                ]
            }
        };
        let timeout = match kind {
            ProvisionKind::Expand => self.cfg.scale.provision_timeout_ms,
            ProvisionKind::Shrink => self.cfg.scale.drain_timeout_ms,
        };
        let mut reason = reason;
        reason.truncate(crate::capacity::MAX_REASON_BYTES);
        let record = Provisioning {
            id: ProvisionId(self.alloc_one()?),
            kind,
            nodes: 1,
            stores,
            state: ProvisionState::Requested,
            requested_ms: now_ms,
            deadline_ms: now_ms + timeout,
            reason,
        };
        // A shrink never leaves fewer stores up than the replication factor: the drained
        // store's replicas need somewhere to go.
        let rf = self.state().config().replication_factor;
        let cmd = Command::RequestCapacity {
            record: record.clone(),
            max_stores: self.cfg.scale.max_stores,
            min_stores: self.cfg.scale.min_stores.max(rf),
        };
        if let Err(e) = self.propose(&cmd) {
            self.count_request(kind, "refused");
            tracing::warn!(kind = kind.label(), "capacity request refused: {e}");
            return Err(e);
        }
        self.count_request(kind, "requested");
        let cap = self.state().capacity();
        tracing::info!(id = %record.id, kind = kind.label(), stores = ?record.stores, up = cap.up, coming = cap.coming, "capacity requested: {}", record.reason);
        self.log_decision(
            now_ms,
            format!("{} #{}", kind.label(), record.id),
            record.reason.clone(),
        );
        if kind == ProvisionKind::Expand {
            self.scale
                .actions
                .push_back(ProvisionAction::Start(StartNodes {
                    id: record.id,
                    nodes: record.nodes,
                    target_stores: cap.committed(),
                }));
        }
        Ok(record)
    }

    fn update_capacity(
        &mut self,
        p: &Provisioning,
        state: ProvisionState,
        stores: Vec<StoreId>,
        now_ms: u64,
        why: &str,
    ) -> Result<(), RpcError> {
        self.propose(&Command::UpdateCapacity {
            id: p.id,
            state,
            stores,
        })?;
        if state.is_final() {
            let outcome = if state == ProvisionState::Done {
                "done"
            } else {
                "failed"
            };
            self.count_request(p.kind, outcome);
            let took = now_ms.saturating_sub(p.requested_ms);
            if state == ProvisionState::Done {
                let from = self
                    .scale
                    .crossed_ms
                    .remove(&p.id)
                    .unwrap_or(p.requested_ms);
                let h = match p.kind {
                    ProvisionKind::Expand => &mut self.scale.stats.expand_ms,
                    ProvisionKind::Shrink => &mut self.scale.stats.shrink_ms,
                };
                let _ = h.record(now_ms.saturating_sub(from).max(1));
            }
            self.scale.crossed_ms.remove(&p.id);
            if state == ProvisionState::Failed {
                tracing::warn!(id = %p.id, kind = p.kind.label(), took_ms = took, "capacity request failed: {why}");
            } else {
                tracing::info!(id = %p.id, kind = p.kind.label(), took_ms = took, "capacity request done: {why}");
            }
        } else {
            tracing::info!(id = %p.id, kind = p.kind.label(), state = state.label(), "capacity request: {why}");
        }
        Ok(())
    }

    /// Counts a newly registered store for the oldest expansion still waiting for a node.
    pub(super) fn claim_store(&mut self, store: StoreId, now_ms: u64) {
        let waiting = self
            .state()
            .provisioning()
            .find(|p| p.kind == ProvisionKind::Expand && p.coming() > 0)
            .cloned();
        let Some(p) = waiting else {
            return;
        };
        let mut stores = p.stores.clone();
        stores.push(store);
        let state = if stores.len() == p.nodes as usize {
            ProvisionState::Online
        } else {
            ProvisionState::Requested
        };
        let why = format!("store {store} registered");
        if let Err(e) = self.update_capacity(&p, state, stores, now_ms, &why) {
            tracing::error!(id = %p.id, "could not record store {store} for the expansion: {e}");
        }
    }

    fn replicas_on(&self, store: StoreId) -> (usize, usize) {
        let mut replicas = 0;
        let mut leaders = 0;
        for r in self.state().ranges() {
            if let Some(rep) = r.replicas.iter().find(|x| x.store_id == store) {
                replicas += 1;
                if r.leader == Some(rep.replica_id) {
                    leaders += 1;
                }
            }
        }
        (replicas, leaders)
    }

    /// Moves every capacity request on: deadlines, expansions whose new stores lead a range,
    /// drains that finished (queues the stop) or ran out of time (the store goes back up).
    pub(super) fn advance_provisioning(&mut self, now_ms: u64) {
        let active: Vec<Provisioning> = self
            .state()
            .provisioning()
            .filter(|p| !p.state.is_final())
            .cloned()
            .collect();
        for p in active {
            let r = match (p.kind, p.state) {
                (ProvisionKind::Expand, ProvisionState::Requested) if now_ms > p.deadline_ms => {
                    let why = format!(
                        "{} of {} nodes registered by the deadline",
                        p.stores.len(),
                        p.nodes
                    );
                    self.update_capacity(&p, ProvisionState::Failed, p.stores.clone(), now_ms, &why)
                }
                (ProvisionKind::Expand, ProvisionState::Online) => {
                    let led = p.stores.iter().all(|s| self.replicas_on(*s).1 > 0);
                    let late = now_ms > p.deadline_ms + self.cfg.scale.provision_timeout_ms;
                    if !led && !late {
                        continue;
                    }
                    // The nodes are there either way; a balancer that moved nothing to them
                    // in a whole timeout must not hold the autoscaler forever.
                    let why = if led {
                        "every new store leads a range"
                    } else {
                        "online, but not every new store leads a range after a timeout"
                    };
                    self.update_capacity(&p, ProvisionState::Done, p.stores.clone(), now_ms, why)
                }
                (ProvisionKind::Shrink, ProvisionState::Requested) => {
                    self.advance_drain(&p, now_ms)
                }
                (ProvisionKind::Shrink, ProvisionState::Online)
                    if !self.scale.stopping.contains(&p.id) =>
                {
                    // Drained, but this master never asked for the stop (it restarted after
                    // logging `online`): ask again (stopping a node that is gone is refused,
                    // which fails the request).
                    self.queue_stop(&p);
                    continue;
                }
                _ => continue,
            };
            if let Err(e) = r {
                tracing::error!(id = %p.id, "capacity request not updated: {e}");
            }
        }
    }

    fn advance_drain(&mut self, p: &Provisioning, now_ms: u64) -> Result<(), RpcError> {
        let store = p.stores[0];
        let (replicas, leaders) = self.replicas_on(store);
        if replicas == 0 {
            let why = format!("store {store} drained: no replica, no leader left; stopping it");
            self.update_capacity(p, ProvisionState::Online, p.stores.clone(), now_ms, &why)?;
            self.queue_stop(p);
            return Ok(());
        }
        if now_ms > p.deadline_ms {
            let why = format!(
                "drain of store {store} timed out with {replicas} replicas ({leaders} leaders) left; store back up"
            );
            self.update_capacity(p, ProvisionState::Failed, p.stores.clone(), now_ms, &why)?;
            self.propose(&Command::SetStoreState {
                store_id: store,
                state: StoreState::Up,
            })?;
        }
        Ok(())
    }

    /// Queues the provisioner's stop of a drained shrink's store (once per master run).
    fn queue_stop(&mut self, p: &Provisioning) {
        let store = p.stores[0];
        let Some(meta) = self.state().store(store) else {
            return;
        };
        let stop = StopNode {
            id: p.id,
            store,
            addr: meta.info.addr.clone(),
            target_stores: self.state().capacity().up,
        };
        self.scale.stopping.insert(p.id);
        self.scale.actions.push_back(ProvisionAction::Stop(stop));
    }

    /// Runs the autoscaler over the current load and acts on its verdict.
    pub(super) fn autoscale(&mut self, now_ms: u64) {
        let load = self.node_load();
        let cap = self.state().capacity();
        let in_flight = self
            .state()
            .provisioning()
            .filter(|p| !p.state.is_final())
            .count();
        let mut cfg = self.cfg.scale.clone();
        cfg.min_stores = cfg.min_stores.max(self.state().config().replication_factor);
        let verdict = self
            .scale
            .autoscaler
            .observe(&cfg, load, cap, in_flight, now_ms);
        let crossed = self.scale.autoscaler.above_since();
        let (kind, reason) = match verdict {
            Verdict::Hold(_) => return,
            Verdict::Expand(r) => (ProvisionKind::Expand, r),
            Verdict::Shrink(r) => (ProvisionKind::Shrink, r),
        };
        *self.scale.stats.decisions.entry(kind.label()).or_insert(0) += 1;
        tracing::info!(kind = kind.label(), "autoscaler: {reason}");
        self.scale.autoscaler.acted(now_ms);
        match self.request_capacity(kind, None, reason, now_ms) {
            Ok(p) => {
                if let Some(at) = crossed.filter(|_| kind == ProvisionKind::Expand) {
                    self.scale.crossed_ms.insert(p.id, at);
                }
            }
            Err(e) => tracing::warn!(kind = kind.label(), "autoscaler request refused: {e}"),
        }
    }

    /// Provisioner calls to make (the service takes them after each scheduler run).
    pub fn take_provision_actions(&mut self) -> Vec<ProvisionAction> {
        self.scale.actions.drain(..).collect()
    }

    /// Records a provisioner call's outcome: a failure fails the request; a stop that
    /// succeeded makes the store a tombstone and the shrink done.
    pub fn provision_result(
        &mut self,
        action: &ProvisionAction,
        result: Result<(), String>,
        took_us: u64,
        now_ms: u64,
    ) {
        let outcome = if result.is_ok() { "ok" } else { "error" };
        *self.scale.stats.calls.entry(outcome).or_insert(0) += 1;
        let _ = self.scale.stats.call_us.record(took_us.max(1));
        let Some(p) = self.state().provision(action.id()).cloned() else {
            return;
        };
        if p.state.is_final() {
            return;
        }
        let r = match (action, result) {
            (_, Err(e)) => {
                self.update_capacity(&p, ProvisionState::Failed, p.stores.clone(), now_ms, &e)
            }
            (ProvisionAction::Start(_), Ok(())) => Ok(()),
            (ProvisionAction::Stop(s), Ok(())) => self
                .propose(&Command::SetStoreState {
                    store_id: s.store,
                    state: StoreState::Tombstone,
                })
                .and_then(|()| {
                    let why = format!("store {} stopped and removed", s.store);
                    self.update_capacity(&p, ProvisionState::Done, p.stores.clone(), now_ms, &why)
                }),
        };
        if let Err(e) = r {
            tracing::error!(id = %p.id, "capacity request not updated: {e}");
        }
    }

    /// Drains a store (offline: its replicas move away) or puts it back up; putting a store
    /// back up fails the shrink that was draining it.
    pub fn drain_store(
        &mut self,
        store: StoreId,
        drain: bool,
        now_ms: u64,
    ) -> Result<(), RpcError> {
        let meta = self
            .state()
            .store(store)
            .ok_or_else(|| bad(format!("store {store} is not registered")))?;
        if meta.state == StoreState::Tombstone {
            return Err(bad(format!("store {store} is a tombstone")));
        }
        let state = if drain {
            StoreState::Offline
        } else {
            StoreState::Up
        };
        if !drain {
            let shrink = self
                .state()
                .provisioning()
                .find(|p| {
                    p.kind == ProvisionKind::Shrink && !p.state.is_final() && p.stores == [store]
                })
                .cloned();
            if let Some(p) = shrink {
                if p.state == ProvisionState::Online {
                    return Err(bad(format!(
                        "store {store} is being stopped by capacity request {}",
                        p.id
                    )));
                }
                self.update_capacity(
                    &p,
                    ProvisionState::Failed,
                    p.stores.clone(),
                    now_ms,
                    "undrained by an operator",
                )?;
            }
        }
        self.propose(&Command::SetStoreState {
            store_id: store,
            state,
        })?;
        tracing::info!(store = %store, drain, "store {}", if drain { "draining" } else { "up again" });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::autoscale::Thresholds;
    use crate::core::MasterConfig;
    use net::ShardId;
    use net::message::{Bootstrap, ShardHeartbeat, ShardLoad, StoreInfo, StoreRegister};

    fn core(dir: &std::path::Path) -> Core {
        let mut cfg = MasterConfig::new(dir);
        cfg.cluster.replication_factor = 1;
        cfg.scale.enabled = true;
        cfg.scale.max_stores = 2;
        cfg.scale.expand_above = Thresholds {
            ops_per_sec: 100,
            ..Thresholds::default()
        };
        cfg.scale.shrink_below = Thresholds {
            ops_per_sec: 10,
            ..Thresholds::default()
        };
        cfg.scale.sustain_ms = 1000;
        cfg.scale.shrink_sustain_ms = 2000;
        cfg.scale.cooldown_ms = 0;
        Core::open(cfg, 1).unwrap().0
    }

    fn register(c: &mut Core, port: u16, now: u64) -> StoreId {
        let store = StoreInfo {
            store_id: StoreId(0),
            addr: format!("127.0.0.1:{port}"),
            shard_addrs: vec![format!("127.0.0.1:{port}")],
            labels: vec![],
        };
        let r = StoreRegister {
            store,
            mem_capacity: 0,
            disk_capacity: 0,
        };
        c.register_store(r, now).unwrap().store_id
    }

    fn load(c: &mut Core, store: StoreId, ops: u64, now: u64) {
        let hb = ShardHeartbeat {
            store_id: store,
            shard_id: ShardId(0),
            load: ShardLoad {
                write_ops_per_sec: ops,
                ..ShardLoad::default()
            },
        };
        c.shard_heartbeat(hb, now).unwrap();
    }

    #[test]
    fn sustained_load_expands_by_one_preallocated_node_and_never_past_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = core(dir.path());
        let s1 = register(&mut c, 1, 10);
        c.bootstrap(Bootstrap {
            store_id: s1,
            shard_id: ShardId(0),
        })
        .unwrap();
        load(&mut c, s1, 500, 100);
        c.schedule(100);
        assert!(c.take_provision_actions().is_empty(), "not sustained yet");
        load(&mut c, s1, 500, 1200);
        c.schedule(1200);
        let actions = c.take_provision_actions();
        assert!(
            matches!(&actions[..], [ProvisionAction::Start(s)] if s.nodes == 1 && s.target_stores == 2),
            "{actions:?}"
        );
        assert_eq!(c.state().capacity().coming, 1);
        // A second request, from ctl, finds the capacity pre-allocated.
        let again = c.request_capacity(ProvisionKind::Expand, None, "ctl".into(), 1300);
        assert!(again.is_err(), "over-committed");
        // The node registers: the expansion is online.
        let s2 = register(&mut c, 2, 1400);
        let p = c.state().provisioning().next().unwrap().clone();
        assert_eq!(
            (p.state, p.stores.clone()),
            (ProvisionState::Online, vec![s2])
        );
        assert_eq!(c.scale_stats().requests[&("expand", "refused")], 1);
    }

    #[test]
    fn a_drained_store_is_stopped_then_tombstoned() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = core(dir.path());
        let s1 = register(&mut c, 1, 10);
        let s2 = register(&mut c, 2, 20);
        c.bootstrap(Bootstrap {
            store_id: s1,
            shard_id: ShardId(0),
        })
        .unwrap();
        for (now, ops) in [(100, 1), (1200, 1), (2200, 1)] {
            load(&mut c, s1, ops, now);
            load(&mut c, s2, ops, now);
            c.schedule(now);
        }
        // The newest store (s2) holds nothing: it is drained at once and stopped.
        let actions = c.take_provision_actions();
        let stop = match &actions[..] {
            [a @ ProvisionAction::Stop(s)] if s.store == s2 => a.clone(),
            other => panic!("{other:?}"),
        };
        assert_eq!(c.state().store(s2).unwrap().state, StoreState::Offline);
        c.provision_result(&stop, Ok(()), 5, 2300);
        assert_eq!(c.state().store(s2).unwrap().state, StoreState::Tombstone);
        let p = c.state().provisioning().next().unwrap();
        assert_eq!(p.state, ProvisionState::Done);
        // At min-stores (1): no further shrink.
        load(&mut c, s1, 1, 9000);
        c.schedule(9000);
        c.schedule(20000);
        assert!(c.take_provision_actions().is_empty());
    }

    #[test]
    fn a_failed_provisioner_call_fails_the_request_and_frees_the_capacity() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = core(dir.path());
        register(&mut c, 1, 10);
        c.request_capacity(ProvisionKind::Expand, None, "ctl".into(), 100)
            .unwrap();
        let a = c.take_provision_actions().remove(0);
        c.provision_result(&a, Err("no quota".into()), 10, 200);
        assert_eq!(c.state().capacity().coming, 0);
        assert_eq!(c.scale_stats().calls["error"], 1);
        c.request_capacity(ProvisionKind::Expand, None, "ctl".into(), 300)
            .unwrap();
    }

    #[test]
    fn undrain_gives_the_store_back_and_fails_its_shrink() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = core(dir.path());
        let s1 = register(&mut c, 1, 10);
        let s2 = register(&mut c, 2, 20);
        c.bootstrap(Bootstrap {
            store_id: s2,
            shard_id: ShardId(0),
        })
        .unwrap();
        let p = c
            .request_capacity(ProvisionKind::Shrink, Some(s2), "ctl".into(), 30)
            .unwrap();
        c.schedule(40);
        assert!(
            c.take_provision_actions().is_empty(),
            "s2 still holds a range"
        );
        c.drain_store(s2, false, 50).unwrap();
        assert_eq!(c.state().store(s2).unwrap().state, StoreState::Up);
        assert_eq!(
            c.state().provision(p.id).unwrap().state,
            ProvisionState::Failed
        );
        c.drain_store(s1, true, 60).unwrap();
        assert_eq!(c.state().store(s1).unwrap().state, StoreState::Offline);
    }

    #[test]
    fn a_shrink_never_leaves_fewer_stores_than_the_replication_factor() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = MasterConfig::new(dir.path());
        cfg.cluster.replication_factor = 2;
        let mut c = Core::open(cfg, 1).unwrap().0;
        let s1 = register(&mut c, 1, 10);
        register(&mut c, 2, 20);
        let e = c.request_capacity(ProvisionKind::Shrink, Some(s1), "ctl".into(), 30);
        assert!(e.is_err(), "two stores, replication factor 2");
        register(&mut c, 3, 40);
        c.request_capacity(ProvisionKind::Shrink, Some(s1), "ctl".into(), 50)
            .unwrap();
    }

    #[test]
    fn a_restarted_master_asks_again_to_stop_a_drained_store() {
        let dir = tempfile::tempdir().unwrap();
        let s2 = {
            let mut c = core(dir.path());
            register(&mut c, 1, 10);
            let s2 = register(&mut c, 2, 20);
            c.request_capacity(ProvisionKind::Shrink, Some(s2), "ctl".into(), 30)
                .unwrap();
            c.schedule(40);
            let actions = c.take_provision_actions();
            assert!(matches!(&actions[..], [ProvisionAction::Stop(s)] if s.store == s2));
            s2
            // The master stops before the stop's outcome is recorded.
        };
        let mut c = core(dir.path());
        let p = c.state().provisioning().next().unwrap().clone();
        assert_eq!(p.state, ProvisionState::Online);
        c.schedule(100);
        let actions = c.take_provision_actions();
        assert!(
            matches!(&actions[..], [ProvisionAction::Stop(s)] if s.store == s2),
            "{actions:?}"
        );
        c.schedule(200);
        assert!(c.take_provision_actions().is_empty(), "asked once per run");
    }
}
