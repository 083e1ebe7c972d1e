//! Balance by load: a store's load is the ops/s it serves — reads and writes of the ranges it
//! leads, writes of the others it holds. When the hottest live store serves more than
//! `load-balance-ratio` times the coldest and more than `load-balance-min-ops`, its hottest
//! movable range moves: leadership to a voter on a colder store if that helps, else the
//! replica to the coldest store. A move never makes its target hotter than its source was
//! (so the same range cannot bounce back), never reduces the range's zone spread, and a moved
//! range is left alone for `load-balance-cooldown-ms`.
//!
//! Placement here is per store; [`super::ShardBalance`] balances the shards within a store.

use std::collections::BTreeMap;
use std::sync::Arc;

use net::message::{RangeDescriptor, Replica, ReplicaRole};
use net::{RangeId, ReplicaId, ShardId, StoreId};

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

/// Where a range's replica sits: (store, shard).
pub(super) type Place = (StoreId, ShardId);

/// Where a range's load lands once `steps` are done: (place, leads) per replica. Replicas are
/// followed by id, so a move between two shards of one store keeps both places apart.
pub(super) fn placement_after(range: &RangeDescriptor, steps: &[Step]) -> Vec<(Place, bool)> {
    // (replica id, or `None` for the one a step adds; its place)
    let mut reps: Vec<(Option<ReplicaId>, Place)> = range
        .replicas
        .iter()
        .map(|x| (Some(x.replica_id), (x.store_id, x.shard_id)))
        .collect();
    let mut leader: Option<Option<ReplicaId>> = range.leader.map(Some);
    for step in steps {
        match step {
            Step::AddLearner { store, shard } => reps.push((None, (*store, *shard))),
            Step::TransferLeader { to } => leader = Some(Some(*to)),
            Step::TransferLeaderToAdded => leader = Some(None),
            Step::Remove { replica_id } => {
                reps.retain(|(id, _)| *id != Some(*replica_id));
                if leader == Some(Some(*replica_id)) {
                    // A lone voter hands leadership to the promoted replica.
                    let added = reps.iter().any(|(id, _)| id.is_none());
                    leader = if added {
                        Some(None)
                    } else {
                        reps.first().map(|(id, _)| *id)
                    };
                }
            }
            Step::PromoteAdded | Step::Promote { .. } | Step::Split | Step::Merge { .. } => {}
        }
    }
    reps.into_iter()
        .map(|(id, place)| (place, leader == Some(id)))
        .collect()
}

/// The ops/s each store serves once this run's proposals and the operators in flight are
/// done: every live target store (at 0 if it holds nothing) and every store holding a
/// replica.
pub(super) fn store_loads(plan: &Plan<'_>) -> Loads {
    let mut loads: Loads = plan
        .input
        .state
        .stores()
        .filter(|s| plan.is_target(s))
        .map(|s| (s.info.store_id, 0))
        .collect();
    for ((store, _), served) in served_after(plan) {
        *loads.entry(store).or_insert(0) += served;
    }
    loads
}

/// The ops/s each replica serves once this run's proposals and the operators in flight are
/// done: (place, ops/s) per replica of every range — reads and writes where it leads,
/// writes elsewhere.
pub(super) fn served_after(plan: &Plan<'_>) -> Vec<(Place, u64)> {
    let proposed: BTreeMap<RangeId, &[Step]> = plan
        .proposals()
        .iter()
        .map(|p| (p.range_id, p.steps.as_slice()))
        .collect();
    let mut out = Vec::new();
    for r in plan.input.state.ranges() {
        let (reads, writes) = range_ops(plan, r);
        let steps = proposed
            .get(&r.id)
            .copied()
            .or_else(|| plan.input.in_flight.get(&r.id).map(Vec::as_slice))
            .unwrap_or(&[]);
        for (place, leads) in placement_after(r, steps) {
            out.push((place, if leads { reads + writes } else { writes }));
        }
    }
    out
}

/// What a range's replica on a store contributes to that store's load.
fn contribution(plan: &Plan<'_>, range: &RangeDescriptor, store: StoreId) -> u64 {
    let (reads, writes) = range_ops(plan, range);
    range
        .replicas
        .iter()
        .filter(|x| x.store_id == store)
        .map(|x| {
            if range.leader == Some(x.replica_id) {
                reads + writes
            } else {
                writes
            }
        })
        .sum()
}

/// A range whose load should leave a store, and the figures for the reason.
struct Source<'p, 'a> {
    plan: &'p Plan<'a>,
    loads: &'p Loads,
    range: &'p RangeDescriptor,
    from: StoreId,
    /// `from`'s load.
    src: u64,
    checker: &'static str,
    figures: String,
}

impl Source<'_, '_> {
    fn load_of(&self, s: StoreId) -> u64 {
        self.loads.get(&s).copied().unwrap_or(0)
    }

    fn target_ok(&self, s: StoreId) -> bool {
        let plan = self.plan;
        plan.input
            .state
            .store(s)
            .is_some_and(|m| plan.is_target(m) && plan.has_budget(s))
    }

    fn proposal(&self, steps: Vec<Step>, to: StoreId, what: &str, after: u64) -> Proposal {
        let (from, src, lt) = (self.from, self.src, self.load_of(to));
        Proposal {
            range_id: self.range.id,
            steps,
            stores: vec![from, to],
            checker: self.checker,
            reason: format!(
                "store {from} serves {src} ops/s, store {to} {lt}; move the {what} of {} (store {to} to {after})",
                self.figures
            ),
        }
    }

    /// Leadership to the coldest voter store that stays below the source's load.
    fn transfer_leader(&self, reads: u64) -> Option<Proposal> {
        let (lt, to, to_replica) = voters(self.range)
            .filter(|v| v.store_id != self.from && self.target_ok(v.store_id))
            .map(|v| (self.load_of(v.store_id), v.store_id, v.replica_id))
            .filter(|(lt, _, _)| lt + reads < self.src)
            .min()?;
        let steps = vec![Step::TransferLeader { to: to_replica }];
        Some(self.proposal(steps, to, "leader", lt + reads))
    }

    /// The source's voter (with leadership if it leads) to the coldest target store that
    /// stays below the source's load and keeps the zone spread.
    fn move_replica(&self, old: &Replica, leads: bool) -> Option<Proposal> {
        let moved = contribution(self.plan, self.range, self.from);
        if moved == 0 || old.role != (ReplicaRole::Voter {}) {
            return None;
        }
        let range = self.range;
        let (lt, to_meta) = self
            .plan
            .input
            .state
            .stores()
            .filter(|s| s.state == StoreState::Up && self.target_ok(s.info.store_id))
            .filter(|s| !range.replicas.iter().any(|x| x.store_id == s.info.store_id))
            .filter(|s| keeps_zone_spread(self.plan, range, self.from, s.info.store_id))
            .map(|s| (self.load_of(s.info.store_id), s))
            .filter(|(lt, _)| lt + moved < self.src)
            .min_by_key(|(lt, s)| (*lt, s.info.store_id))?;
        let to = to_meta.info.store_id;
        let mut steps = vec![
            Step::AddLearner {
                store: to,
                shard: self.plan.least_loaded_shard(to_meta),
            },
            Step::PromoteAdded,
        ];
        if leads {
            steps.push(Step::TransferLeaderToAdded);
        }
        steps.push(Step::Remove {
            replica_id: old.replica_id,
        });
        let what = if leads {
            "replica and leader"
        } else {
            "replica"
        };
        Some(self.proposal(steps, to, what, lt + moved))
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
    let (reads, writes) = range_ops(plan, range);
    let source = Source {
        plan,
        loads,
        range,
        from,
        src: loads.get(&from).copied().unwrap_or(0),
        checker,
        figures: format!(
            "range {} ({reads} reads/s, {writes} writes/s); {cause}",
            range.id
        ),
    };
    let old = range.replicas.iter().find(|x| x.store_id == from)?;
    let leads = range.leader == Some(old.replica_id);
    let by_leader = if leads && reads > 0 {
        source.transfer_leader(reads)
    } else {
        None
    };
    by_leader.or_else(|| source.move_replica(old, leads))
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
        self.cooldown.propose_moves(plan, |plan| {
            let loads = store_loads(plan);
            self.move_one(plan, &loads)
        });
    }
}
