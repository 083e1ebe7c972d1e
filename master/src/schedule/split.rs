//! Splits: a range above the size or load threshold is split; its leader picks the key.
//!
//! A range that cannot be split — its leader reports one key, or it was split
//! `split-attempts-max` times in a row without its epoch changing (the leader found no key) —
//! is not proposed for a split again. If it is hot, it is relieved instead: its leadership or
//! its leader's replica moves to a colder store ([`super::load::plan_move`]), or, when no
//! store helps, the leader's replica moves to the least-loaded shard of its store
//! ([`super::shard::plan_shard_move`]); at most once per `load-balance-cooldown-ms`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use net::RangeId;
use net::message::RangeDescriptor;

use super::cooldown::Cooldown;
use super::load::{plan_move, store_loads};
use super::shard::{Gain, plan_shard_move, shard_loads};
use super::{Checker, Plan, Proposal, Step};

/// Splits proposed for a range at one epoch version.
#[derive(Debug, Clone, Copy)]
struct Attempts {
    version: u64,
    proposed: u32,
}

/// Proposes splits of ranges that are too big or too hot, and relief of hot ranges that
/// cannot be split.
#[derive(Debug, Default)]
pub struct SplitChecker {
    attempts: Mutex<BTreeMap<RangeId, Attempts>>,
    relieved: Arc<Cooldown>,
}

/// Why a range cannot be split, if it cannot.
fn unsplittable(
    plan: &Plan<'_>,
    range: &RangeDescriptor,
    attempts: &BTreeMap<RangeId, Attempts>,
) -> Option<String> {
    let keys = plan.input.ranges.get(&range.id).map_or(0, |l| l.stats.keys);
    if keys == 1 {
        return Some("it holds a single key".into());
    }
    let max = plan.input.config.split_attempts_max;
    attempts
        .get(&range.id)
        .filter(|a| a.version == range.epoch.version && a.proposed >= max)
        .map(|a| {
            format!(
                "{} splits left its epoch at version {}",
                a.proposed, a.version
            )
        })
}

impl SplitChecker {
    /// A checker sharing `cooldown` (with [`super::LoadBalance`]).
    pub fn new(cooldown: Arc<Cooldown>) -> Self {
        Self {
            attempts: Mutex::default(),
            relieved: cooldown,
        }
    }

    /// Records a split proposed for `range`; logs when it reaches the attempts limit.
    fn record(
        &self,
        plan: &Plan<'_>,
        range: &RangeDescriptor,
        attempts: &mut BTreeMap<RangeId, Attempts>,
    ) {
        let version = range.epoch.version;
        let a = attempts.entry(range.id).or_insert(Attempts {
            version,
            proposed: 0,
        });
        if a.version != version {
            *a = Attempts {
                version,
                proposed: 0,
            };
        }
        a.proposed += 1;
        if a.proposed == plan.input.config.split_attempts_max {
            tracing::info!(
                range = %range.id,
                version,
                attempts = a.proposed,
                "range split {} times without its epoch changing: no more splits, it will be relieved by moves if hot",
                a.proposed
            );
        }
    }

    /// Moves a hot range that cannot be split off its leader's store if a colder store
    /// helps, else off its leader's shard to the coldest shard of that store.
    fn relieve(&self, plan: &mut Plan<'_>, range: &RangeDescriptor, why: &str) {
        if self.relieved.is_cooling(range.id) || plan.is_busy(range.id) {
            return;
        }
        let Some(leader) = range
            .leader
            .and_then(|l| range.replicas.iter().find(|r| r.replica_id == l))
        else {
            return;
        };
        let cause = format!(
            "hot range relief: above split-qps {} and {why}",
            plan.input.config.split_qps
        );
        let loads = store_loads(plan);
        let p = plan_move(
            plan,
            &loads,
            range,
            leader.store_id,
            "hot-range-relief",
            &cause,
        )
        .or_else(|| {
            let place = (leader.store_id, leader.shard_id);
            let why = ("hot-range-relief", cause.as_str());
            let loads = shard_loads(plan);
            plan_shard_move(plan, &loads, range, place, Gain::TargetStaysColder, why)
        });
        let Some(p) = p else {
            return;
        };
        if plan.propose(p) {
            self.relieved.record(range.id, plan.input.now_ms);
        }
    }
}

/// Why `range` should be split, if it should.
fn split_reason(plan: &Plan<'_>, range: &RangeDescriptor) -> Option<(String, bool)> {
    let input = plan.input;
    let load = input.ranges.get(&range.id)?;
    let size = load.stats.size_bytes;
    let qps = load.stats.read_qps + load.stats.write_qps;
    let hot = qps > input.config.split_qps;
    if size > input.config.split_size_bytes {
        let why = format!(
            "range {} is {} MiB, above {} MiB",
            range.id,
            size >> 20,
            input.config.split_size_bytes >> 20
        );
        Some((why, hot))
    } else if hot {
        let why = format!(
            "range {} serves {qps} ops/s, above {}",
            range.id, input.config.split_qps
        );
        Some((why, hot))
    } else {
        None
    }
}

impl Checker for SplitChecker {
    fn name(&self) -> &'static str {
        "split"
    }

    fn check(&self, plan: &mut Plan<'_>) {
        let input = plan.input;
        let mut attempts = self.attempts.lock().unwrap_or_else(|p| p.into_inner());
        attempts.retain(|r, _| input.state.range(*r).is_some());
        self.relieved
            .expire(input.now_ms, input.config.load_balance_cooldown_ms);
        for range in input.state.ranges() {
            let Some((reason, hot)) = split_reason(plan, range) else {
                continue;
            };
            if let Some(why) = unsplittable(plan, range, &attempts) {
                if hot {
                    self.relieve(plan, range, &why);
                }
                continue;
            }
            let Some(leader) = range
                .leader
                .and_then(|l| range.replicas.iter().find(|r| r.replica_id == l))
            else {
                continue;
            };
            let accepted = plan.propose(Proposal {
                range_id: range.id,
                steps: vec![Step::Split],
                stores: vec![leader.store_id],
                checker: "split",
                reason,
            });
            if accepted {
                self.record(plan, range, &mut attempts);
            }
        }
    }
}
