//! Balance by load: a store's load is the ops/s it serves — reads and writes of the ranges it
//! leads, writes of the others it holds. When the hottest live store serves more than
//! `load-balance-ratio` times the coldest and more than `load-balance-min-ops`, its hottest
//! movable range moves: leadership to a voter on a colder store if that helps, else the
//! replica to the coldest store. A move never makes its target hotter than its source was
//! (so the same range cannot bounce back), never reduces the range's zone spread, and a moved
//! range is left alone for `load-balance-cooldown-ms`.
//!
//! Placement is per store: moving a replica between the shards of one store would need two
//! replicas of a range on one store, which the state machine refuses (see the guide).

use std::collections::BTreeMap;
use std::sync::Arc;

use net::message::RangeDescriptor;
use net::{RangeId, ReplicaId, StoreId};

use super::balance::keeps_zone_spread;
use super::cooldown::Cooldown;
use super::{Checker, Plan, Proposal, Step, voters};
use crate::state::StoreState;

/// Ops/s served per store.
pub(super) type Loads = BTreeMap<StoreId, u64>;

/// Moves ranges off the hottest store.
#[derive(Debug, Default)]
pub struct LoadBalance {
    cooldown: Arc<Cooldown>,
}

/// A range's reads/s and writes/s, from its leader's last heartbeat (0 without one).
pub(super) fn range_ops(plan: &Plan<'_>, range: &RangeDescriptor) -> (u64, u64) {
    plan.input
        .ranges
        .get(&range.id)
        .map_or((0, 0), |l| (l.stats.read_qps, l.stats.write_qps))
}

/// Where a range's load lands once `steps` are done: (store, leads) per replica.
fn placement_after(range: &RangeDescriptor, steps: &[Step]) -> Vec<(StoreId, bool)> {
    let store_of = |id: ReplicaId| {
        range
            .replicas
            .iter()
            .find(|x| x.replica_id == id)
            .map(|x| x.store_id)
    };
    let mut leader = range.leader.and_then(store_of);
    let mut stores: Vec<StoreId> = range.replicas.iter().map(|x| x.store_id).collect();
    let mut added = None;
    for step in steps {
        match step {
            Step::AddLearner { store, .. } => {
                stores.push(*store);
                added = Some(*store);
            }
            Step::TransferLeader { to } => leader = store_of(*to).or(leader),
            Step::TransferLeaderToAdded => leader = added.or(leader),
            Step::Remove { replica_id } => {
                let Some(gone) = store_of(*replica_id) else {
                    continue;
                };
                stores.retain(|s| *s != gone);
                if leader == Some(gone) {
                    // A lone voter hands leadership to the promoted replica.
                    leader = added.or_else(|| stores.first().copied());
                }
            }
            Step::PromoteAdded | Step::Promote { .. } | Step::Split => {}
        }
    }
    stores.into_iter().map(|s| (s, leader == Some(s))).collect()
}

/// The ops/s each store serves once this run's proposals are done (operators already in
/// flight count where their range is now): every live target store (at 0 if it holds
/// nothing) and every store holding a replica.
pub(super) fn store_loads(plan: &Plan<'_>) -> Loads {
    let state = plan.input.state;
    let mut loads: Loads = state
        .stores()
        .filter(|s| plan.is_target(s))
        .map(|s| (s.info.store_id, 0))
        .collect();
    let proposed: BTreeMap<RangeId, &[Step]> = plan
        .proposals()
        .iter()
        .map(|p| (p.range_id, p.steps.as_slice()))
        .collect();
    for r in state.ranges() {
        let (reads, writes) = range_ops(plan, r);
        let steps = proposed.get(&r.id).copied().unwrap_or(&[]);
        for (store, leads) in placement_after(r, steps) {
            let served = if leads { reads + writes } else { writes };
            *loads.entry(store).or_insert(0) += served;
        }
    }
    loads
}

/// What a range's replica on a store contributes to that store's load.
fn contribution(plan: &Plan<'_>, range: &RangeDescriptor, store: StoreId) -> u64 {
    let (reads, writes) = range_ops(plan, range);
    match range.replicas.iter().find(|x| x.store_id == store) {
        Some(rep) if range.leader == Some(rep.replica_id) => reads + writes,
        Some(_) => writes,
        None => 0,
    }
}

/// Moves load of `range` off `from`: leadership to the coldest voter store that stays below
/// `from`'s load, else `from`'s replica (with leadership if it leads) to the coldest target
/// store that stays below it and keeps the zone spread. `cause` ends the reason.
pub(super) fn plan_move(
    plan: &Plan<'_>,
    loads: &Loads,
    range: &RangeDescriptor,
    from: StoreId,
    checker: &'static str,
    cause: &str,
) -> Option<Proposal> {
    let src = loads.get(&from).copied().unwrap_or(0);
    let (reads, writes) = range_ops(plan, range);
    let figures = format!(
        "range {} ({reads} reads/s, {writes} writes/s); {cause}",
        range.id
    );
    let load_of = |s: StoreId| loads.get(&s).copied().unwrap_or(0);
    let target_ok = |s: StoreId| {
        plan.input
            .state
            .store(s)
            .is_some_and(|m| plan.is_target(m) && plan.has_budget(s))
    };
    let old = range.replicas.iter().find(|x| x.store_id == from)?;
    let leads = range.leader == Some(old.replica_id);
    if leads && reads > 0 {
        let best = voters(range)
            .filter(|v| v.store_id != from && target_ok(v.store_id))
            .map(|v| (load_of(v.store_id), v.store_id, v.replica_id))
            .filter(|(lt, _, _)| lt + reads < src)
            .min();
        if let Some((lt, to, to_replica)) = best {
            return Some(Proposal {
                range_id: range.id,
                steps: vec![Step::TransferLeader { to: to_replica }],
                stores: vec![from, to],
                checker,
                reason: format!(
                    "store {from} serves {src} ops/s, store {to} {lt}; move the leader of {figures} (store {to} to {})",
                    lt + reads
                ),
            });
        }
    }
    if old.role != (net::message::ReplicaRole::Voter {}) {
        return None;
    }
    let moved = contribution(plan, range, from);
    if moved == 0 {
        return None;
    }
    let (lt, to_meta) = plan
        .input
        .state
        .stores()
        .filter(|s| s.state == StoreState::Up && target_ok(s.info.store_id))
        .filter(|s| !range.replicas.iter().any(|x| x.store_id == s.info.store_id))
        .filter(|s| keeps_zone_spread(plan, range, from, s.info.store_id))
        .map(|s| (load_of(s.info.store_id), s))
        .filter(|(lt, _)| lt + moved < src)
        .min_by_key(|(lt, s)| (*lt, s.info.store_id))?;
    let to = to_meta.info.store_id;
    let mut steps = vec![
        Step::AddLearner {
            store: to,
            shard: plan.least_loaded_shard(to_meta),
        },
        Step::PromoteAdded,
    ];
    if leads {
        steps.push(Step::TransferLeaderToAdded);
    }
    steps.push(Step::Remove {
        replica_id: old.replica_id,
    });
    Some(Proposal {
        range_id: range.id,
        steps,
        stores: vec![from, to],
        checker,
        reason: format!(
            "store {from} serves {src} ops/s, store {to} {lt}; move the replica{} of {figures} (store {to} to {})",
            if leads { " and leader" } else { "" },
            lt + moved
        ),
    })
}

/// Whether `hot` and `cold` differ enough to move load.
fn imbalanced(plan: &Plan<'_>, hot: u64, cold: u64) -> bool {
    let cfg = plan.input.config;
    hot > cfg.load_balance_min_ops && hot as f64 > cold as f64 * cfg.load_balance_ratio
}

impl LoadBalance {
    /// A checker sharing `cooldown` (with [`super::SplitChecker`]'s hot-range relief).
    pub fn new(cooldown: Arc<Cooldown>) -> Self {
        Self { cooldown }
    }

    /// One move off the hottest store that can shed load, if the loads call for it.
    fn move_one(&self, plan: &Plan<'_>, loads: &Loads) -> Option<Proposal> {
        let state = plan.input.state;
        let load_of = |s: StoreId| loads.get(&s).copied().unwrap_or(0);
        let cold_load = state
            .stores()
            .filter(|s| plan.is_target(s))
            .map(|s| load_of(s.info.store_id))
            .min()?;
        let mut sources: Vec<(u64, StoreId)> = state
            .stores()
            .filter(|s| s.state == StoreState::Up && plan.is_alive(s.info.store_id))
            .map(|s| (load_of(s.info.store_id), s.info.store_id))
            .filter(|(l, s)| imbalanced(plan, *l, cold_load) && plan.has_budget(*s))
            .collect();
        sources.sort_by_key(|(l, s)| (std::cmp::Reverse(*l), *s));
        sources
            .into_iter()
            .find_map(|(l, hot)| self.move_off(plan, loads, hot, l, cold_load))
    }

    /// The hottest range of `hot` that can move to a colder store.
    fn move_off(
        &self,
        plan: &Plan<'_>,
        loads: &Loads,
        hot: StoreId,
        hot_load: u64,
        cold_load: u64,
    ) -> Option<Proposal> {
        let state = plan.input.state;
        let mut candidates: Vec<(u64, &RangeDescriptor)> = state
            .ranges()
            .filter(|r| !plan.is_busy(r.id) && !self.cooldown.is_cooling(r.id))
            .map(|r| (contribution(plan, r, hot), r))
            .filter(|(c, _)| *c > 0)
            .collect();
        candidates.sort_by_key(|(c, r)| (std::cmp::Reverse(*c), r.id));
        let cause = format!(
            "load ratio {:.2} above {}",
            hot_load as f64 / cold_load.max(1) as f64,
            plan.input.config.load_balance_ratio
        );
        candidates
            .into_iter()
            .find_map(|(_, r)| plan_move(plan, loads, r, hot, "load-balance", &cause))
    }
}

impl Checker for LoadBalance {
    fn name(&self) -> &'static str {
        "load-balance"
    }

    fn check(&self, plan: &mut Plan<'_>) {
        let cfg = plan.input.config;
        let now = plan.input.now_ms;
        self.cooldown.expire(now, cfg.load_balance_cooldown_ms);
        for _ in 0..cfg.balance_moves_per_run {
            let loads = store_loads(plan);
            let Some(p) = self.move_one(plan, &loads) else {
                return;
            };
            let range = p.range_id;
            if !plan.propose(p) {
                return;
            }
            self.cooldown.record(range, now);
        }
    }
}
