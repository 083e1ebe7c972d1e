//! Balance by load between the shards of one store. A DS node runs one shard per core; a
//! node whose hot ranges all sit on one shard uses one core while the others idle, whatever
//! the store-level balance says. A shard's load is what its replicas serve (reads and writes
//! of the ranges it leads, writes of the others), summed from the ranges' heartbeats as
//! [`super::LoadBalance`] sums a store's.
//!
//! When a store's hottest shard serves more than `load-balance-ratio` times its coldest and
//! more than `load-balance-min-ops`, the hottest movable voter of the hot shard moves to the
//! coldest shard: add a learner there, promote it, hand it leadership if the source led,
//! remove the source — the steps of a move between stores, so the range has two replicas on
//! the store (on different shards) until the removal. A move must at least halve the gap
//! between the two shards (so it never merely swaps the hot spot, and never undoes itself),
//! and a moved range is left alone for `load-balance-cooldown-ms` (the cool-down shared with
//! the other balancers). A store is balanced only once `shard_balance_runs` scheduler runs in
//! a row found the same shard hot: a range's load is what its last heartbeat said, and at
//! the start of a load one shard's ranges may have reported while the other's had not — a
//! move on that one sample costs a snapshot and is undone by the next.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use net::message::{RangeDescriptor, Replica, ReplicaRole};
use net::{ShardId, StoreId};

use super::cooldown::Cooldown;
use super::load::{Place, range_ops, served_after};
use super::{Checker, Plan, Proposal, Step};
use crate::state::StoreState;

/// Ops/s served per shard of every live store.
pub(super) type ShardLoads = BTreeMap<Place, u64>;

/// Moves ranges from a store's hottest shard to its coldest.
#[derive(Debug, Default)]
pub struct ShardBalance {
    cooldown: Arc<Cooldown>,
    /// Per store: its hot shard, and how many runs in a row found it over the ratio (soft
    /// state: a master restart starts counting again).
    streaks: Mutex<BTreeMap<StoreId, (ShardId, u32)>>,
}

/// The ops/s each shard serves once this run's proposals are done: every shard of every up,
/// live store (at 0 if it holds nothing).
pub(super) fn shard_loads(plan: &Plan<'_>) -> ShardLoads {
    let mut loads: ShardLoads = BTreeMap::new();
    for s in plan.input.state.stores() {
        if s.state != StoreState::Up || !plan.is_alive(s.info.store_id) {
            continue;
        }
        for i in 0..s.info.shard_addrs.len() {
            let shard = ShardId(u32::try_from(i).unwrap_or(u32::MAX));
            loads.insert((s.info.store_id, shard), 0);
        }
    }
    for (place, served) in served_after(plan) {
        if let Some(l) = loads.get_mut(&place) {
            *l += served;
        }
    }
    loads
}

/// The hottest and coldest shards of `store`: ((shard, load), (shard, load)).
fn extremes(loads: &ShardLoads, store: StoreId) -> Option<((ShardId, u64), (ShardId, u64))> {
    let shards = loads
        .range((store, ShardId(0))..=(store, ShardId(u32::MAX)))
        .map(|((_, shard), l)| (*shard, *l));
    let hot = shards
        .clone()
        .max_by_key(|(s, l)| (*l, std::cmp::Reverse(*s)))?;
    let cold = shards.min_by_key(|(s, l)| (*l, *s))?;
    (hot.0 != cold.0).then_some((hot, cold))
}

/// What `rep` of `range` serves: reads and writes if it leads, writes otherwise.
fn served_by(plan: &Plan<'_>, range: &RangeDescriptor, rep: &Replica) -> u64 {
    let (reads, writes) = range_ops(plan, range);
    if range.leader == Some(rep.replica_id) {
        reads + writes
    } else {
        writes
    }
}

/// How much a move must even out the two shards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Gain {
    /// The target stays below the source's load (hot-range relief: the hot range leaves the
    /// other ranges' shard even if its new shard ends up as hot).
    TargetStaysColder,
    /// The gap between the two shards at least halves (balancing: a move that would only
    /// swap the hot spot, costing a snapshot for little, is not made; nor is the reverse).
    HalvesTheGap,
}

impl Gain {
    fn allows(self, src: u64, lt: u64, moved: u64) -> bool {
        match self {
            Gain::TargetStaysColder => lt + moved < src,
            Gain::HalvesTheGap => {
                let gap = src.saturating_sub(lt);
                let after = (src - moved.min(src)).abs_diff(lt + moved);
                lt < src && after.saturating_mul(2) <= gap
            }
        }
    }
}

/// Moves the voter of `range` on `from` to the coldest shard of its store, if the move
/// evens the two shards out as `gain` asks. `checker` and `cause` go into the proposal.
pub(super) fn plan_shard_move(
    plan: &Plan<'_>,
    loads: &ShardLoads,
    range: &RangeDescriptor,
    from: Place,
    gain: Gain,
    (checker, cause): (&'static str, &str),
) -> Option<Proposal> {
    let (store, shard) = from;
    let old = range
        .replicas
        .iter()
        .find(|r| r.store_id == store && r.shard_id == shard)?;
    let moved = served_by(plan, range, old);
    if moved == 0 || old.role != (ReplicaRole::Voter {}) || !plan.has_budget(store) {
        return None;
    }
    let src = loads.get(&from).copied().unwrap_or(0);
    let (to, lt) = loads
        .range((store, ShardId(0))..=(store, ShardId(u32::MAX)))
        .filter(|((_, s), _)| {
            !range
                .replicas
                .iter()
                .any(|r| r.store_id == store && r.shard_id == *s)
        })
        .map(|((_, s), l)| (*s, *l))
        .min_by_key(|(s, l)| (*l, *s))
        .filter(|(_, l)| gain.allows(src, *l, moved))?;
    let leads = range.leader == Some(old.replica_id);
    let mut steps = vec![Step::AddLearner { store, shard: to }, Step::PromoteAdded];
    if leads {
        steps.push(Step::TransferLeaderToAdded);
    }
    steps.push(Step::Remove {
        replica_id: old.replica_id,
    });
    let (reads, writes) = range_ops(plan, range);
    let what = if leads {
        "replica and leader"
    } else {
        "replica"
    };
    Some(Proposal {
        range_id: range.id,
        steps,
        stores: vec![store],
        checker,
        reason: format!(
            "store {store} shard {shard} serves {src} ops/s, shard {to} {lt}; move the {what} of range {} ({reads} reads/s, {writes} writes/s) to shard {to} (to {}); {cause}",
            range.id,
            lt + moved
        ),
    })
}

/// Whether `hot` and `cold` differ enough to move load (the store balancer's rule).
fn imbalanced(plan: &Plan<'_>, hot: u64, cold: u64) -> bool {
    let cfg = plan.input.config;
    hot > cfg.load_balance_min_ops && hot as f64 > cold as f64 * cfg.load_balance_ratio
}

impl ShardBalance {
    /// A checker sharing `cooldown` with the other balancers.
    pub fn new(cooldown: Arc<Cooldown>) -> Self {
        Self {
            cooldown,
            streaks: Mutex::default(),
        }
    }

    /// Counts, once per run, the runs in a row each store's hot shard has been over the
    /// ratio; a store in balance (or with another hot shard) starts again.
    fn count_streaks(&self, plan: &Plan<'_>, loads: &ShardLoads) {
        let mut streaks = self.streaks.lock().unwrap_or_else(|p| p.into_inner());
        let hot: BTreeMap<StoreId, ShardId> = plan
            .input
            .state
            .stores()
            .filter_map(|s| {
                let ((hot, hl), (_, cl)) = extremes(loads, s.info.store_id)?;
                imbalanced(plan, hl, cl).then_some((s.info.store_id, hot))
            })
            .collect();
        streaks.retain(|store, (shard, _)| hot.get(store) == Some(shard));
        for (store, shard) in hot {
            streaks.entry(store).or_insert((shard, 0)).1 += 1;
        }
    }

    /// Whether `store`'s hot shard has been over the ratio for enough runs in a row.
    fn sustained(&self, plan: &Plan<'_>, store: StoreId) -> bool {
        let streaks = self.streaks.lock().unwrap_or_else(|p| p.into_inner());
        streaks
            .get(&store)
            .is_some_and(|(_, n)| *n >= plan.input.config.shard_balance_runs)
    }

    /// One move from the hottest shard of the most imbalanced store that can shed load.
    fn move_one(&self, plan: &Plan<'_>, loads: &ShardLoads) -> Option<Proposal> {
        let mut stores: Vec<(u64, StoreId, ShardId, u64)> = plan
            .input
            .state
            .stores()
            .filter(|s| plan.has_budget(s.info.store_id) && self.sustained(plan, s.info.store_id))
            .filter_map(|s| {
                let ((hot, hl), (_, cl)) = extremes(loads, s.info.store_id)?;
                imbalanced(plan, hl, cl).then_some((hl, s.info.store_id, hot, cl))
            })
            .collect();
        stores.sort_by_key(|(hl, s, _, _)| (std::cmp::Reverse(*hl), *s));
        stores
            .into_iter()
            .find_map(|(hl, store, hot, cl)| self.move_off(plan, loads, (store, hot), hl, cl))
    }

    /// The hottest range on shard `hot` that can move to a colder shard of its store.
    fn move_off(
        &self,
        plan: &Plan<'_>,
        loads: &ShardLoads,
        hot: Place,
        hot_load: u64,
        cold_load: u64,
    ) -> Option<Proposal> {
        let mut candidates: Vec<(u64, &RangeDescriptor)> = plan
            .input
            .state
            .ranges()
            .filter(|r| !plan.is_busy(r.id) && !self.cooldown.is_cooling(r.id))
            .filter_map(|r| {
                let rep = r
                    .replicas
                    .iter()
                    .find(|x| (x.store_id, x.shard_id) == hot)?;
                Some((served_by(plan, r, rep), r))
            })
            .filter(|(c, _)| *c > 0)
            .collect();
        candidates.sort_by_key(|(c, r)| (std::cmp::Reverse(*c), r.id));
        let cause = format!(
            "shard load ratio {:.2} above {}",
            hot_load as f64 / cold_load.max(1) as f64,
            plan.input.config.load_balance_ratio
        );
        candidates.into_iter().find_map(|(_, r)| {
            let why = ("shard-balance", cause.as_str());
            plan_shard_move(plan, loads, r, hot, Gain::HalvesTheGap, why)
        })
    }
}

impl Checker for ShardBalance {
    fn name(&self) -> &'static str {
        "shard-balance"
    }

    fn check(&self, plan: &mut Plan<'_>) {
        self.count_streaks(plan, &shard_loads(plan));
        self.cooldown.propose_moves(plan, |plan| {
            let loads = shard_loads(plan);
            self.move_one(plan, &loads)
        });
    }
}
