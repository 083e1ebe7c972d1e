//! Operators an operator asks for (`tierkv ctl move-range`, `split`): built like the
//! scheduler's proposals and run the same way (one step per range heartbeat).

use std::collections::BTreeMap;

use net::message::{Operator, RangeDescriptor, ReplicaRole};
use net::{RangeId, ReplicaId, RpcError, ShardId, StoreId};

use super::{Core, DECISIONS_KEPT, Decision, RunningOperator, bad};
use crate::schedule::{Proposal, Step};
use crate::state::StoreState;

impl Core {
    fn range_for_manual_op(&self, id: RangeId) -> Result<RangeDescriptor, RpcError> {
        let range = self
            .state()
            .range(id)
            .cloned()
            .ok_or(RpcError::RangeNotFound { range_id: id })?;
        if self.operators.contains_key(&id) {
            return Err(bad(format!("range {id} has an operator in flight")));
        }
        Ok(range)
    }

    fn start_manual(&mut self, id: RangeId, op: RunningOperator, what: String, now_ms: u64) {
        tracing::info!(range = %id, "operator requested: {what}");
        if self.decisions.len() == DECISIONS_KEPT {
            self.decisions.pop_front();
        }
        self.decisions.push_back(Decision {
            at_ms: now_ms,
            checker: "ctl",
            operator: what,
            reason: op.reason.clone(),
        });
        self.operators.insert(id, op);
    }

    /// The shard of `store` holding the fewest replicas, other than `busy` (ties: lowest id).
    fn emptiest_shard(&self, store: StoreId, shards: usize, busy: &[ShardId]) -> Option<ShardId> {
        let mut counts: BTreeMap<u32, usize> = (0..shards as u32)
            .filter(|s| !busy.contains(&ShardId(*s)))
            .map(|s| (s, 0))
            .collect();
        for r in self.state().ranges() {
            for rep in r.replicas.iter().filter(|x| x.store_id == store) {
                if let Some(c) = counts.get_mut(&rep.shard_id.0) {
                    *c += 1;
                }
            }
        }
        counts
            .iter()
            .min_by_key(|(s, c)| (**c, **s))
            .map(|(s, _)| ShardId(*s))
    }

    /// Moves the replica of `range` on `from` (default: the leader's) to store `to`, on
    /// `shard` (default: its emptiest shard): add a learner there, promote it, remove the old
    /// one. Between stores, leadership moves first when another voter has it to take. Within
    /// one store (`to` is the replica's own store and `shard`, named, another of its shards), the range
    /// holds two replicas on the store until the removal, and a leading source hands
    /// leadership to the promoted replica first.
    pub fn move_range(
        &mut self,
        id: RangeId,
        to: StoreId,
        from: Option<StoreId>,
        shard: Option<ShardId>,
        now_ms: u64,
    ) -> Result<String, RpcError> {
        let range = self.range_for_manual_op(id)?;
        let target = self
            .state()
            .store(to)
            .ok_or_else(|| bad(format!("store {to} is not registered")))?;
        if target.state != StoreState::Up {
            return Err(bad(format!("store {to} is not up")));
        }
        let shards = target.info.shard_addrs.len();
        let old = match from {
            Some(f) => range.replicas.iter().find(|r| r.store_id == f),
            None => range
                .replicas
                .iter()
                .find(|r| Some(r.replica_id) == range.leader),
        }
        .copied()
        .ok_or_else(|| bad(format!("range {id} has no such replica to move")))?;
        if old.role != (ReplicaRole::Voter {}) {
            return Err(bad("only a voter is moved"));
        }
        let within = old.store_id == to;
        let on_target = range.replicas.iter().any(|r| r.store_id == to);
        if on_target && !(within && shard.is_some()) {
            return Err(bad(format!(
                "range {id} already has a replica on store {to} (name a shard to move it between the store's shards)"
            )));
        }
        let held: Vec<ShardId> = range
            .replicas
            .iter()
            .filter(|r| r.store_id == to)
            .map(|r| r.shard_id)
            .collect();
        let to_shard = match shard {
            Some(s) if s.0 as usize >= shards => {
                return Err(bad(format!("store {to} has no shard {s}")));
            }
            Some(s) if held.contains(&s) => {
                return Err(bad(format!(
                    "range {id} already has a replica on store {to} shard {s}"
                )));
            }
            Some(s) => s,
            None => self
                .emptiest_shard(to, shards, &held)
                .ok_or_else(|| bad(format!("store {to} has no other shard")))?,
        };
        let leads = range.leader == Some(old.replica_id);
        let steps = move_steps(&range, old.replica_id, leads, within, to, to_shard);
        let reason = if within {
            format!(
                "operator: move range {id} on store {to} from shard {} to shard {to_shard}",
                old.shard_id
            )
        } else {
            format!(
                "operator: move range {id} from store {} to store {to}",
                old.store_id
            )
        };
        let stores = if within {
            vec![to]
        } else {
            vec![old.store_id, to]
        };
        let p = Proposal {
            range_id: id,
            steps,
            stores,
            checker: "ctl",
            reason,
        };
        let op = self.materialize(&p, now_ms)?;
        let what = p.to_string();
        self.start_manual(id, op, what.clone(), now_ms);
        Ok(what)
    }

    /// Merges `id` with its right neighbour. Their replicas must already sit pairwise on the
    /// same (store, shard) (`move-range --shard` co-locates them); the left range's leader
    /// runs the merge (`Operator::Merge`).
    pub fn merge_range(&mut self, id: RangeId, now_ms: u64) -> Result<String, RpcError> {
        let left = self.range_for_manual_op(id)?;
        if left.end.is_empty() {
            return Err(bad(format!(
                "range {id} is the last range: nothing on its right"
            )));
        }
        let right = self
            .state()
            .range_by_key(&left.end)
            .filter(|r| r.start == left.end)
            .cloned()
            .ok_or_else(|| bad(format!("no range starts where range {id} ends")))?;
        if self.operators.contains_key(&right.id) {
            return Err(bad(format!("range {} has an operator in flight", right.id)));
        }
        if !crate::schedule::merge::colocated(&left, &right) {
            return Err(bad(format!(
                "ranges {id} and {} are not pairwise on the same (store, shard); \
                 co-locate them first (move-range --shard)",
                right.id
            )));
        }
        let op = RunningOperator {
            steps: vec![Operator::Merge {
                right: right.clone(),
            }],
            current: 0,
            stores: left.replicas.iter().map(|r| r.store_id).collect(),
            created_ms: now_ms,
            epoch: left.epoch,
            reason: format!("operator: merge range {} into range {id}", right.id),
        };
        let what = format!("r{id}: merge r{}", right.id);
        self.start_manual(id, op, what.clone(), now_ms);
        Ok(what)
    }

    /// Splits `range` at the start of hash slot `slot` (a boundary between user keys), or
    /// where its leader chooses when `slot` is `None`.
    pub fn split_range(
        &mut self,
        id: RangeId,
        slot: Option<u16>,
        now_ms: u64,
    ) -> Result<String, RpcError> {
        let range = self.range_for_manual_op(id)?;
        let key = match slot {
            None => bytes::Bytes::new(),
            Some(s) if s >= net::keyspace::SLOTS => {
                return Err(bad(format!(
                    "slot {s} is not below {}",
                    net::keyspace::SLOTS
                )));
            }
            Some(s) => {
                let k = net::keyspace::slot_start(s);
                let inside = k > range.start && (range.end.is_empty() || k < range.end);
                if !inside {
                    return Err(bad(format!(
                        "the start of slot {s} is not strictly inside range {id}"
                    )));
                }
                k
            }
        };
        let n = range.replicas.len() as u32;
        let block = self.alloc_ids(n + 1)?;
        let op = RunningOperator {
            steps: vec![Operator::Split {
                split_key: key,
                new_range_id: RangeId(block.first),
                new_replica_ids: (1..=u64::from(n))
                    .map(|i| ReplicaId(block.first + i))
                    .collect(),
            }],
            current: 0,
            stores: range.replicas.iter().map(|r| r.store_id).collect(),
            created_ms: now_ms,
            epoch: range.epoch,
            reason: match slot {
                Some(s) => format!("operator: split range {id} at slot {s}"),
                None => format!("operator: split range {id}"),
            },
        };
        let what = format!("r{id}: split -> r{}", block.first);
        self.start_manual(id, op, what.clone(), now_ms);
        Ok(what)
    }
}

/// The steps moving voter `old` of `range` to `to`/`to_shard`. Between stores a leading
/// source hands leadership to another voter first (if there is one); within a store
/// (`within`) it hands leadership to the promoted replica, the path the shard balancer takes.
fn move_steps(
    range: &RangeDescriptor,
    old: ReplicaId,
    leads: bool,
    within: bool,
    to: StoreId,
    to_shard: ShardId,
) -> Vec<Step> {
    let mut steps = Vec::new();
    if leads && !within {
        let other = range
            .replicas
            .iter()
            .find(|r| r.replica_id != old && r.role == ReplicaRole::Voter {});
        if let Some(o) = other {
            steps.push(Step::TransferLeader { to: o.replica_id });
        }
    }
    steps.extend([
        Step::AddLearner {
            store: to,
            shard: to_shard,
        },
        Step::PromoteAdded,
    ]);
    if leads && within {
        steps.push(Step::TransferLeaderToAdded);
    }
    steps.push(Step::Remove { replica_id: old });
    steps
}
