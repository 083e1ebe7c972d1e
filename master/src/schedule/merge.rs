//! Merges of small, cold neighbours (`MergeSmall`): two neighbouring ranges each below
//! `merge-size-bytes` and `merge-qps`, and together below half of `split-size-bytes` and
//! `split-qps` (hysteresis: the merged range does not split back), are merged. Their replicas
//! must sit pairwise on the same (store, shard) — the DS nodes merge by descriptor, no data
//! moves (`docs/guides/ds-node.md` "Range merges") — so the checker first co-locates them:
//! one replica of the right range moves onto a place of the left's per run (the move steps
//! of `move-range`), and the right range then stays out of the balancers' way for the shared
//! cool-down. Once co-located, it proposes `Step::Merge` for the left range.

use std::sync::Arc;

use net::message::{RangeDescriptor, ReplicaRole};
use net::{ReplicaId, ShardId, StoreId};

use super::cooldown::Cooldown;
use super::{Checker, Plan, Proposal, RangeLoad, Step};

/// Proposes merges of small, cold neighbours, co-locating them first.
#[derive(Debug, Default)]
pub struct MergeSmall {
    moved: Arc<Cooldown>,
}

impl MergeSmall {
    /// A checker sharing `cooldown` with the balancers (a range it moves is left alone).
    pub fn new(cooldown: Arc<Cooldown>) -> Self {
        Self { moved: cooldown }
    }
}

impl Checker for MergeSmall {
    fn name(&self) -> &'static str {
        "merge-small"
    }

    fn check(&self, plan: &mut Plan<'_>) {
        let cfg = plan.input.config;
        if cfg.merge_size_bytes == 0 {
            return;
        }
        self.moved
            .expire(plan.input.now_ms, cfg.load_balance_cooldown_ms);
        let ranges: Vec<RangeDescriptor> = plan.input.state.ranges().cloned().collect();
        let mut by_start = ranges;
        by_start.sort_by(|a, b| a.start.cmp(&b.start));
        // Ranges in a merge proposed this run (the plan marks only the left busy).
        let mut taken = std::collections::BTreeSet::new();
        for pair in by_start.windows(2) {
            let (left, right) = (&pair[0], &pair[1]);
            let busy = |id| plan.is_busy(id) || taken.contains(&id);
            if busy(left.id) || busy(right.id) {
                continue;
            }
            let Some(why) = small_and_cold(plan, left, right) else {
                continue;
            };
            if colocated(left, right) {
                let p = Proposal {
                    range_id: left.id,
                    steps: vec![Step::Merge { right: right.id }],
                    stores: left.replicas.iter().map(|r| r.store_id).collect(),
                    checker: "merge-small",
                    reason: format!("merge r{} into r{}: {why}", right.id, left.id),
                };
                if plan.propose(p) {
                    taken.insert(right.id);
                }
            } else if !self.moved.is_cooling(right.id) {
                let Some((steps, stores)) = colocate_steps(left, right) else {
                    continue;
                };
                let p = Proposal {
                    range_id: right.id,
                    steps,
                    stores,
                    checker: "merge-small",
                    reason: format!(
                        "co-locate r{} with r{} to merge them: {why}",
                        right.id, left.id
                    ),
                };
                if plan.propose(p) {
                    self.moved.record(right.id, plan.input.now_ms);
                }
            }
        }
    }
}

/// Why `left` and `right` should merge (both small and cold, together well under the split
/// thresholds), or `None`. Both need a load report.
pub fn small_and_cold(
    plan: &Plan<'_>,
    left: &RangeDescriptor,
    right: &RangeDescriptor,
) -> Option<String> {
    let cfg = plan.input.config;
    let load = |d: &RangeDescriptor| plan.input.ranges.get(&d.id).map(figures);
    let ((ls, lq), (rs, rq)) = (load(left)?, load(right)?);
    let each = ls < cfg.merge_size_bytes
        && rs < cfg.merge_size_bytes
        && lq < cfg.merge_qps
        && rq < cfg.merge_qps;
    let together = ls + rs < cfg.split_size_bytes / 2 && lq + rq < cfg.split_qps / 2;
    (each && together && left.replicas.len() == right.replicas.len()).then(|| {
        format!(
            "{ls} + {rs} bytes < merge-size-bytes {} each, {lq} + {rq} ops/s < merge-qps {} each",
            cfg.merge_size_bytes, cfg.merge_qps
        )
    })
}

/// (size bytes, reads + writes per second) of a range's last report.
fn figures(l: &RangeLoad) -> (u64, u64) {
    (
        l.stats.size_bytes,
        l.stats.read_qps.saturating_add(l.stats.write_qps),
    )
}

/// The steps moving one replica of `right` that has no partner onto a place of `left` that
/// has none (the `move-range` steps), with the stores involved; `None` when nothing fits.
fn colocate_steps(
    left: &RangeDescriptor,
    right: &RangeDescriptor,
) -> Option<(Vec<Step>, Vec<StoreId>)> {
    let place = |r: &net::message::Replica| (r.store_id, r.shard_id);
    let lp: Vec<(StoreId, ShardId)> = left.replicas.iter().map(place).collect();
    let rp: Vec<(StoreId, ShardId)> = right.replicas.iter().map(place).collect();
    let old = right
        .replicas
        .iter()
        .find(|r| !lp.contains(&place(r)) && r.role == ReplicaRole::Voter {})?;
    let (to, to_shard) = *lp.iter().find(|p| !rp.contains(p))?;
    let leads = right.leader == Some(old.replica_id);
    let within = old.store_id == to;
    let other: Option<ReplicaId> = right
        .replicas
        .iter()
        .find(|r| r.replica_id != old.replica_id && r.role == ReplicaRole::Voter {})
        .map(|r| r.replica_id);
    let mut steps = Vec::new();
    if let (true, false, Some(o)) = (leads, within, other) {
        // Between stores a leading source hands leadership to another voter first.
        steps.push(Step::TransferLeader { to: o });
    }
    steps.push(Step::AddLearner {
        store: to,
        shard: to_shard,
    });
    steps.push(Step::PromoteAdded);
    if leads && (within || other.is_none()) {
        steps.push(Step::TransferLeaderToAdded);
    }
    steps.push(Step::Remove {
        replica_id: old.replica_id,
    });
    let mut stores = vec![old.store_id, to];
    stores.dedup();
    Some((steps, stores))
}

/// Whether `left` and `right` are neighbours (`left.end == right.start`) whose replicas sit
/// pairwise on the same (store, shard): the only ranges a DS node merges, by descriptor.
pub fn colocated(left: &RangeDescriptor, right: &RangeDescriptor) -> bool {
    if left.id == right.id || left.end.is_empty() || left.end != right.start {
        return false;
    }
    let places = |d: &RangeDescriptor| {
        let mut v: Vec<_> = d
            .replicas
            .iter()
            .map(|r| (r.store_id, r.shard_id))
            .collect();
        v.sort();
        v
    };
    let (a, b) = (places(left), places(right));
    a == b && a.windows(2).all(|w| w[0] != w[1])
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use net::message::{Replica, ReplicaRole};
    use net::{Epoch, RangeId, ReplicaId, ShardId, StoreId};

    fn range(
        id: u64,
        start: &'static [u8],
        end: &'static [u8],
        places: &[(u64, u32)],
    ) -> RangeDescriptor {
        RangeDescriptor {
            id: RangeId(id),
            start: Bytes::from_static(start),
            end: Bytes::from_static(end),
            epoch: Epoch {
                conf_ver: 1,
                version: 1,
            },
            replicas: places
                .iter()
                .enumerate()
                .map(|(i, (store, shard))| Replica {
                    replica_id: ReplicaId(id * 10 + i as u64),
                    store_id: StoreId(*store),
                    shard_id: ShardId(*shard),
                    role: ReplicaRole::Voter {},
                })
                .collect(),
            leader: None,
        }
    }

    #[test]
    fn neighbours_on_the_same_stores_and_shards_are_colocated_in_any_order() {
        let l = range(1, b"a", b"m", &[(1, 0), (2, 1), (3, 0)]);
        let r = range(2, b"m", b"z", &[(3, 0), (1, 0), (2, 1)]);
        assert!(colocated(&l, &r));
    }

    #[test]
    fn another_shard_a_gap_or_a_missing_replica_is_not_colocated() {
        let l = range(1, b"a", b"m", &[(1, 0), (2, 0)]);
        assert!(!colocated(&l, &range(2, b"m", b"z", &[(1, 0), (2, 1)])));
        assert!(!colocated(&l, &range(2, b"n", b"z", &[(1, 0), (2, 0)])));
        assert!(!colocated(&l, &range(2, b"m", b"z", &[(1, 0)])));
        assert!(!colocated(
            &range(1, b"a", b"", &[(1, 0)]),
            &range(2, b"", b"a", &[(1, 0)])
        ));
    }
}
