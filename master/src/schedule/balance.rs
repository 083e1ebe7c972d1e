//! Balance: move replicas from the fullest store to the emptiest, and leadership from the
//! store with most leaders to the one with fewest, never reducing a range's zone spread.
//! Ranges moved by load (or hot-range relief) within the cool-down are left alone, so count
//! balancing does not undo load balancing.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use net::StoreId;
use net::message::RangeDescriptor;

use super::cooldown::Cooldown;
use super::{Checker, Plan, Proposal, Step, voters};

/// Evens out replica counts across live stores.
#[derive(Debug, Clone, Default)]
pub struct ReplicaBalance {
    moved: Arc<Cooldown>,
}

/// Evens out leader counts across live stores.
#[derive(Debug, Clone, Default)]
pub struct LeaderBalance {
    moved: Arc<Cooldown>,
}

impl ReplicaBalance {
    /// A checker leaving alone the ranges `moved` remembers.
    pub fn new(moved: Arc<Cooldown>) -> Self {
        Self { moved }
    }
}

impl LeaderBalance {
    /// A checker leaving alone the ranges `moved` remembers.
    pub fn new(moved: Arc<Cooldown>) -> Self {
        Self { moved }
    }
}

fn zones<'a>(plan: &Plan<'a>, stores: impl Iterator<Item = StoreId>) -> BTreeSet<Option<&'a str>> {
    stores
        .map(|s| plan.input.state.store(s).and_then(|m| m.label("zone")))
        .collect()
}

fn live_targets(plan: &Plan<'_>) -> Vec<StoreId> {
    plan.input
        .state
        .stores()
        .filter(|s| plan.is_target(s))
        .map(|s| s.info.store_id)
        .collect()
}

impl Checker for ReplicaBalance {
    fn name(&self) -> &'static str {
        "replica-balance"
    }

    fn check(&self, plan: &mut Plan<'_>) {
        let cfg = plan.input.config;
        let state = plan.input.state;
        let live = live_targets(plan);
        if live.len() < 2 {
            return;
        }
        let mut counts = plan.replica_counts();
        for _ in 0..cfg.balance_moves_per_run {
            let count = |s: &StoreId| counts.get(s).copied().unwrap_or(0);
            let from = live
                .iter()
                .filter(|s| plan.has_budget(**s))
                .max_by_key(|s| (count(s), std::cmp::Reverse(**s)));
            let to = live
                .iter()
                .filter(|s| plan.has_budget(**s))
                .min_by_key(|s| (count(s), **s));
            let (Some(&from), Some(&to)) = (from, to) else {
                return;
            };
            let (nf, nt) = (count(&from), count(&to));
            if nf < nt + cfg.replica_imbalance {
                return;
            }
            let Some(to_meta) = state.store(to) else {
                return;
            };
            let candidate = state.ranges().find(|r| {
                !plan.is_busy(r.id)
                    && !self.moved.is_cooling(r.id)
                    && r.replicas.iter().any(|x| x.store_id == from)
                    && !r.replicas.iter().any(|x| x.store_id == to)
                    && keeps_zone_spread(plan, r, from, to)
                    && voters(r).count() >= 1
            });
            let Some(range) = candidate else {
                return;
            };
            let Some(old) = range.replicas.iter().find(|x| x.store_id == from) else {
                return;
            };
            let mut steps = Vec::new();
            // A lone voter (replication factor 1) keeps leadership until its removal, when
            // it hands it to the promoted replica first.
            if range.leader == Some(old.replica_id) {
                if let Some(next) = voters(range).find(|x| x.replica_id != old.replica_id) {
                    steps.push(Step::TransferLeader {
                        to: next.replica_id,
                    });
                }
            }
            steps.extend([
                Step::AddLearner {
                    store: to,
                    shard: plan.least_loaded_shard(to_meta),
                },
                Step::PromoteAdded,
                Step::Remove {
                    replica_id: old.replica_id,
                },
            ]);
            let accepted = plan.propose(Proposal {
                range_id: range.id,
                steps,
                stores: vec![from, to],
                checker: "replica-balance",
                reason: format!(
                    "store {from} has {nf} replicas and store {to} has {nt}; move range {}",
                    range.id
                ),
            });
            if !accepted {
                return;
            }
            *counts.entry(from).or_insert(0) -= 1;
            *counts.entry(to).or_insert(0) += 1;
        }
    }
}

/// Whether replacing the replica on `from` by one on `to` keeps as many distinct zones.
pub(super) fn keeps_zone_spread(
    plan: &Plan<'_>,
    r: &RangeDescriptor,
    from: StoreId,
    to: StoreId,
) -> bool {
    let before = zones(plan, r.replicas.iter().map(|x| x.store_id)).len();
    let after = zones(
        plan,
        r.replicas
            .iter()
            .map(|x| x.store_id)
            .filter(|s| *s != from)
            .chain([to]),
    )
    .len();
    after >= before
}

impl Checker for LeaderBalance {
    fn name(&self) -> &'static str {
        "leader-balance"
    }

    fn check(&self, plan: &mut Plan<'_>) {
        let cfg = plan.input.config;
        let state = plan.input.state;
        let live = live_targets(plan);
        if live.len() < 2 {
            return;
        }
        let mut leaders: BTreeMap<StoreId, usize> = live.iter().map(|s| (*s, 0)).collect();
        for r in state.ranges() {
            let store = r
                .leader
                .and_then(|l| r.replicas.iter().find(|x| x.replica_id == l))
                .map(|x| x.store_id);
            if let Some(c) = store.and_then(|s| leaders.get_mut(&s)) {
                *c += 1;
            }
        }
        // Leadership already moving as part of this run's proposals.
        for p in plan.proposals() {
            let Some(r) = state.range(p.range_id) else {
                continue;
            };
            for step in &p.steps {
                if let Step::TransferLeader { to } = step {
                    let store_of = |id| r.replicas.iter().find(|x| x.replica_id == id);
                    if let Some(c) = r
                        .leader
                        .and_then(store_of)
                        .and_then(|x| leaders.get_mut(&x.store_id))
                    {
                        *c = c.saturating_sub(1);
                    }
                    if let Some(c) = store_of(*to).and_then(|x| leaders.get_mut(&x.store_id)) {
                        *c += 1;
                    }
                }
            }
        }
        for _ in 0..cfg.balance_moves_per_run {
            let from = leaders
                .iter()
                .filter(|(s, _)| plan.has_budget(**s))
                .max_by_key(|(s, n)| (**n, std::cmp::Reverse(**s)))
                .map(|(s, n)| (*s, *n));
            let Some((from, nf)) = from else { return };
            // Among the ranges led on `from`, the one whose best other voter is on the store
            // with the fewest leaders.
            let mut best = None;
            let movable =
                |r: &&RangeDescriptor| !plan.is_busy(r.id) && !self.moved.is_cooling(r.id);
            for r in state.ranges().filter(movable) {
                let Some(leader) = r
                    .leader
                    .and_then(|l| r.replicas.iter().find(|x| x.replica_id == l))
                else {
                    continue;
                };
                if leader.store_id != from {
                    continue;
                }
                for v in voters(r).filter(|v| v.store_id != from) {
                    let Some(&nt) = leaders.get(&v.store_id) else {
                        continue;
                    };
                    if nf >= nt + cfg.leader_imbalance
                        && plan.has_budget(v.store_id)
                        && best.is_none_or(|(_, _, _, n)| nt < n)
                    {
                        best = Some((r.id, v.replica_id, v.store_id, nt));
                    }
                }
            }
            let Some((range_id, to_replica, to, nt)) = best else {
                return;
            };
            let accepted = plan.propose(Proposal {
                range_id,
                steps: vec![Step::TransferLeader { to: to_replica }],
                stores: vec![from, to],
                checker: "leader-balance",
                reason: format!(
                    "store {from} leads {nf} ranges and store {to} leads {nt}; move the leader of range {range_id}"
                ),
            });
            if !accepted {
                return;
            }
            *leaders.entry(from).or_insert(0) -= 1;
            *leaders.entry(to).or_insert(0) += 1;
        }
    }
}
