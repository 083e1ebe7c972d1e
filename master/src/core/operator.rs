//! Operators: turning the scheduler's proposals into steps with allocated ids, handing the
//! current step to the range leader, and noticing from heartbeats when a step is done.

use bytes::Bytes;
use net::message::{Operator, RangeDescriptor, ReplicaRole};
use net::{Epoch, RangeId, ReplicaId, RpcError, StoreId};
use std::collections::BTreeMap;

use super::{Core, bad};
use crate::schedule::{Proposal, ScheduleInput, Step, schedule};

/// An operator being executed: steps sent one at a time in range heartbeat responses.
#[derive(Debug, Clone)]
pub struct RunningOperator {
    /// The steps.
    pub steps: Vec<Operator>,
    /// Index of the current step.
    pub current: usize,
    /// Stores involved (count against the per-store limit).
    pub stores: Vec<StoreId>,
    /// When it was created, ms.
    pub created_ms: u64,
    /// The range's epoch when it was created.
    pub epoch: Epoch,
    /// Why.
    pub reason: String,
}

/// How many scheduler decisions [`Core::decisions`] keeps.
pub const DECISIONS_KEPT: usize = 128;

/// A scheduler decision, kept for the admin page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// When, ms.
    pub at_ms: u64,
    /// Which checker.
    pub checker: &'static str,
    /// The operator, e.g. `r7: add-learner s3/0, promote`.
    pub operator: String,
    /// Why.
    pub reason: String,
}

impl Core {
    /// Moves the range's operator past the steps `desc` shows done; returns the next step.
    pub(super) fn advance_operator(
        &mut self,
        desc: &RangeDescriptor,
        now_ms: u64,
    ) -> Option<Operator> {
        let op = self.operators.get_mut(&desc.id)?;
        while let Some(step) = op.steps.get(op.current) {
            if !step_done(step, desc, op.epoch) {
                break;
            }
            tracing::info!(
                range = %desc.id,
                step = op.current + 1,
                of = op.steps.len(),
                reason = op.reason,
                "operator step done: {step:?}"
            );
            op.current += 1;
        }
        let timed_out = now_ms.saturating_sub(op.created_ms) > self.cfg.operator_timeout_ms;
        if op.current >= op.steps.len() || timed_out {
            let op = self.operators.remove(&desc.id)?;
            if timed_out && op.current < op.steps.len() {
                tracing::warn!(range = %desc.id, reason = op.reason, "operator timed out");
            } else {
                tracing::info!(range = %desc.id, reason = op.reason, "operator finished");
            }
            return None;
        }
        op.steps.get(op.current).cloned()
    }

    /// Runs the scheduler: drops timed-out operators, turns proposals into operators
    /// (allocating their ids) and logs each with its reason. Returns the proposals accepted.
    pub fn schedule(&mut self, now_ms: u64) -> Vec<Proposal> {
        let timeout = self.cfg.operator_timeout_ms;
        self.operators.retain(|range, op| {
            let keep = now_ms.saturating_sub(op.created_ms) <= timeout;
            if !keep {
                tracing::warn!(range = %range, reason = op.reason, "operator timed out");
            }
            keep
        });
        self.detect(now_ms);
        let health: BTreeMap<StoreId, crate::detector::Health> = self
            .detector
            .verdicts()
            .iter()
            .map(|(s, v)| (*s, v.health))
            .collect();
        let busy: BTreeMap<RangeId, Vec<StoreId>> = self
            .operators
            .iter()
            .map(|(r, op)| (*r, op.stores.clone()))
            .collect();
        let in_flight: BTreeMap<RangeId, Vec<Step>> = self
            .operators
            .iter()
            .map(|(r, op)| (*r, remaining_steps(op)))
            .collect();
        let input = ScheduleInput {
            state: self.durable.state(),
            stores: &self.store_loads,
            ranges: &self.range_loads,
            busy: &busy,
            in_flight: &in_flight,
            health: &health,
            config: &self.cfg.schedule,
            now_ms,
        };
        let proposals = schedule(input, &self.checkers);
        self.autoscale(now_ms);
        self.advance_provisioning(now_ms);
        let mut accepted = Vec::new();
        for p in proposals {
            match self.materialize(&p, now_ms) {
                Ok(op) => {
                    tracing::info!(
                        checker = p.checker,
                        operator = %p,
                        "scheduled: {}",
                        p.reason
                    );
                    self.operators.insert(p.range_id, op);
                    *self.scheduled_total.entry(p.checker).or_insert(0) += 1;
                    if self.decisions.len() == DECISIONS_KEPT {
                        self.decisions.pop_front();
                    }
                    self.decisions.push_back(Decision {
                        at_ms: now_ms,
                        checker: p.checker,
                        operator: p.to_string(),
                        reason: p.reason.clone(),
                    });
                    accepted.push(p);
                }
                Err(e) => tracing::warn!(operator = %p, "could not schedule: {e}"),
            }
        }
        accepted
    }

    /// Operators scheduled since this master started, per checker.
    pub fn scheduled_total(&self) -> &BTreeMap<&'static str, u64> {
        &self.scheduled_total
    }

    pub(super) fn materialize(
        &mut self,
        p: &Proposal,
        now_ms: u64,
    ) -> Result<RunningOperator, RpcError> {
        let range = self
            .state()
            .range(p.range_id)
            .cloned()
            .ok_or(RpcError::RangeNotFound {
                range_id: p.range_id,
            })?;
        let mut steps = Vec::with_capacity(p.steps.len());
        let mut added = None;
        for step in &p.steps {
            let op = match step {
                Step::AddLearner { store, shard } => {
                    let replica_id = ReplicaId(self.alloc_one()?);
                    added = Some(replica_id);
                    Operator::AddLearner {
                        store: *store,
                        shard: *shard,
                        replica_id,
                    }
                }
                Step::PromoteAdded => Operator::PromoteLearner {
                    replica_id: added.ok_or_else(|| bad("promote before add"))?,
                },
                Step::Promote { replica_id } => Operator::PromoteLearner {
                    replica_id: *replica_id,
                },
                Step::Remove { replica_id } => Operator::RemoveReplica {
                    replica_id: *replica_id,
                },
                Step::TransferLeader { to } => Operator::TransferLeader { to_replica: *to },
                Step::TransferLeaderToAdded => Operator::TransferLeader {
                    to_replica: added.ok_or_else(|| bad("transfer to added before add"))?,
                },
                Step::Merge { right } => Operator::Merge {
                    right: self
                        .state()
                        .range(*right)
                        .cloned()
                        .ok_or(RpcError::RangeNotFound { range_id: *right })?,
                },
                Step::Split => {
                    let n = range.replicas.len() as u32;
                    let block = self.alloc_ids(n + 1)?;
                    Operator::Split {
                        split_key: Bytes::new(),
                        new_range_id: RangeId(block.first),
                        new_replica_ids: (1..=u64::from(n))
                            .map(|i| ReplicaId(block.first + i))
                            .collect(),
                    }
                }
            };
            steps.push(op);
        }
        Ok(RunningOperator {
            steps,
            current: 0,
            stores: p.stores.clone(),
            created_ms: now_ms,
            epoch: range.epoch,
            reason: p.reason.clone(),
        })
    }
}

/// Whether `desc` shows `step` done.
fn step_done(step: &Operator, desc: &RangeDescriptor, start: Epoch) -> bool {
    let find = |id: ReplicaId| desc.replicas.iter().find(|r| r.replica_id == id);
    match step {
        Operator::AddLearner { replica_id, .. } => find(*replica_id).is_some(),
        Operator::PromoteLearner { replica_id } => {
            find(*replica_id).is_some_and(|r| r.role == ReplicaRole::Voter {})
        }
        Operator::RemoveReplica { replica_id } => find(*replica_id).is_none(),
        Operator::TransferLeader { to_replica } => desc.leader == Some(*to_replica),
        Operator::Split { .. } => desc.epoch.version > start.version,
        Operator::Merge { right } => desc.end == right.end && desc.epoch.version > start.version,
    }
}

/// The steps `op` has still to take, as the scheduler writes them (a replica added by the
/// operator is "the added one" in the steps after its addition).
fn remaining_steps(op: &RunningOperator) -> Vec<Step> {
    let rest = op.steps.get(op.current..).unwrap_or(&[]);
    let mut added = None;
    rest.iter()
        .map(|step| match step {
            Operator::AddLearner {
                store,
                shard,
                replica_id,
            } => {
                added = Some(*replica_id);
                Step::AddLearner {
                    store: *store,
                    shard: *shard,
                }
            }
            Operator::PromoteLearner { replica_id } if added == Some(*replica_id) => {
                Step::PromoteAdded
            }
            Operator::PromoteLearner { replica_id } => Step::Promote {
                replica_id: *replica_id,
            },
            Operator::TransferLeader { to_replica } if added == Some(*to_replica) => {
                Step::TransferLeaderToAdded
            }
            Operator::TransferLeader { to_replica } => Step::TransferLeader { to: *to_replica },
            Operator::RemoveReplica { replica_id } => Step::Remove {
                replica_id: *replica_id,
            },
            Operator::Split { .. } => Step::Split,
            Operator::Merge { right } => Step::Merge { right: right.id },
        })
        .collect()
}
