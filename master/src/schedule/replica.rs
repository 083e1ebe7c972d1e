//! Replication: reach the replication factor, replace replicas on stores that are offline,
//! finish or drop stray learners, and remove extra replicas.

use std::collections::BTreeMap;

use net::StoreId;
use net::message::{RangeDescriptor, Replica, ReplicaRole};

use super::{Checker, Plan, Proposal, Step, voters};
use crate::state::StoreState;

/// Keeps every range at the replication factor, spread across zones.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReplicaChecker;

impl Checker for ReplicaChecker {
    fn name(&self) -> &'static str {
        "replica"
    }

    fn check(&self, plan: &mut Plan<'_>) {
        let state = plan.input.state;
        let rf = state.config().replication_factor as usize;
        let mut counts = plan.replica_counts();
        for range in state.ranges() {
            if plan.is_busy(range.id) {
                continue;
            }
            let p = propose_for(plan, range, rf, &counts);
            if let Some(p) = p {
                let added: Vec<StoreId> = p
                    .steps
                    .iter()
                    .filter_map(|s| match s {
                        Step::AddLearner { store, .. } => Some(*store),
                        _ => None,
                    })
                    .collect();
                if plan.propose(p) {
                    for s in added {
                        *counts.entry(s).or_insert(0) += 1;
                    }
                }
            }
        }
    }
}

fn propose_for(
    plan: &Plan<'_>,
    range: &RangeDescriptor,
    rf: usize,
    counts: &BTreeMap<StoreId, usize>,
) -> Option<Proposal> {
    let state = plan.input.state;
    let n_voters = voters(range).count();
    // Not up (drained or gone) or down (no heartbeat within `store-down-after-ms`): its
    // replicas are replaced. A store that comes back is then found with an extra replica.
    let bad_store = |r: &Replica| {
        !plan.is_alive(r.store_id)
            || state
                .store(r.store_id)
                .is_none_or(|s| s.state != StoreState::Up)
    };
    let mk = |steps: Vec<Step>, stores: Vec<StoreId>, reason: String| Proposal {
        range_id: range.id,
        steps,
        stores,
        checker: "replica",
        reason,
    };
    // A learner left without an operator (e.g. the master restarted mid-move).
    if let Some(l) = range
        .replicas
        .iter()
        .find(|r| r.role == ReplicaRole::Learner {})
    {
        let pending = plan
            .input
            .ranges
            .get(&range.id)
            .is_some_and(|load| load.pending.contains(&l.replica_id));
        if n_voters < rf && !bad_store(l) && !pending {
            return Some(mk(
                vec![Step::Promote {
                    replica_id: l.replica_id,
                }],
                vec![l.store_id],
                format!(
                    "range {} has {n_voters} of {rf} voters and a caught-up learner p{} on store {}",
                    range.id, l.replica_id, l.store_id
                ),
            ));
        }
        if n_voters >= rf || bad_store(l) {
            return Some(mk(
                vec![Step::Remove {
                    replica_id: l.replica_id,
                }],
                vec![l.store_id],
                format!(
                    "range {} has a stray learner p{} on store {}",
                    range.id, l.replica_id, l.store_id
                ),
            ));
        }
        return None;
    }
    if n_voters < rf {
        let (target, why) = plan.pick_target(range, &[], counts)?;
        let shard = plan.least_loaded_shard(target);
        return Some(mk(
            vec![
                Step::AddLearner {
                    store: target.info.store_id,
                    shard,
                },
                Step::PromoteAdded,
            ],
            vec![target.info.store_id],
            format!(
                "range {} has {n_voters} of {rf} voters; add on {why}",
                range.id
            ),
        ));
    }
    // Replace a voter on an offline store (only when the factor is met, so there is quorum).
    if let Some(old) = voters(range).find(|r| bad_store(r)) {
        if n_voters == rf {
            let (target, why) = plan.pick_target(range, &[old.store_id], counts)?;
            let shard = plan.least_loaded_shard(target);
            let mut steps = Vec::new();
            // With another voter, hand leadership over first; a lone voter (replication
            // factor 1) keeps it until its removal, when the leader transfers it to the
            // promoted replica before removing itself.
            if range.leader == Some(old.replica_id) {
                if let Some(to) = voters(range).find(|r| r.replica_id != old.replica_id) {
                    steps.push(Step::TransferLeader { to: to.replica_id });
                }
            }
            steps.extend([
                Step::AddLearner {
                    store: target.info.store_id,
                    shard,
                },
                Step::PromoteAdded,
                Step::Remove {
                    replica_id: old.replica_id,
                },
            ]);
            return Some(mk(
                steps,
                vec![target.info.store_id, old.store_id],
                format!(
                    "range {}: replica p{} is on store {} which is not up; replace it on {why}",
                    range.id, old.replica_id, old.store_id
                ),
            ));
        }
    }
    if n_voters > rf {
        let victim = pick_extra(plan, range)?;
        let mut steps = Vec::new();
        if range.leader == Some(victim.replica_id) {
            let to = voters(range).find(|r| r.replica_id != victim.replica_id)?;
            steps.push(Step::TransferLeader { to: to.replica_id });
        }
        steps.push(Step::Remove {
            replica_id: victim.replica_id,
        });
        return Some(mk(
            steps,
            vec![victim.store_id],
            format!(
                "range {} has {n_voters} voters, more than {rf}; remove p{} on store {}",
                range.id, victim.replica_id, victim.store_id
            ),
        ));
    }
    None
}

/// The voter to drop when there are too many: one on a store that is not up, else one sharing
/// its store with another voter of the range (a move between shards left unfinished), else
/// one in the most crowded zone, else on the store with most replicas (ties: highest store
/// id, then the later replica).
fn pick_extra<'r>(plan: &Plan<'_>, range: &'r RangeDescriptor) -> Option<&'r Replica> {
    let state = plan.input.state;
    let counts = plan.replica_counts();
    let mut zone_counts: BTreeMap<Option<&str>, usize> = BTreeMap::new();
    for r in voters(range) {
        let zone = state.store(r.store_id).and_then(|s| s.label("zone"));
        *zone_counts.entry(zone).or_insert(0) += 1;
    }
    voters(range).max_by_key(|r| {
        let store = state.store(r.store_id);
        let down = !plan.is_alive(r.store_id) || store.is_none_or(|s| s.state != StoreState::Up);
        let zone = store.and_then(|s| s.label("zone"));
        let crowd = zone_counts.get(&zone).copied().unwrap_or(0);
        let n = counts.get(&r.store_id).copied().unwrap_or(0);
        let shares = voters(range).filter(|x| x.store_id == r.store_id).count() > 1;
        (down, shares, crowd, n, r.store_id)
    })
}
