//! The scheduler: pure functions from a view of the cluster to operator proposals, each with
//! an explanation that the master logs (and will show on the admin page).
//!
//! [`schedule`] runs every [`Checker`] in order over a [`Plan`]; a checker looks at the
//! [`ScheduleInput`] and calls [`Plan::propose`], which refuses a proposal for a range that
//! already has an operator or that would push a store over its concurrent-operator limit.
//! Store liveness comes from the failure detector ([`ScheduleInput::health`], probes and
//! heartbeats); autoscaling will plug in as more checkers. Checkers are pure but for bounded
//! soft memory kept across runs: the split attempts per range ([`SplitChecker`]) and the
//! cool-down of ranges moved by load ([`Cooldown`], shared by the balancers).

mod balance;
mod cooldown;
mod load;
pub mod merge;
mod replica;
mod shard;
mod split;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use net::message::{RangeDescriptor, RangeStats, ReplicaRole, StoreStats};
use net::{RangeId, ReplicaId, ShardId, StoreId};

use crate::detector::Health;
use crate::state::{ClusterState, StoreMeta, StoreState};

pub use balance::{LeaderBalance, ReplicaBalance};
pub use cooldown::Cooldown;
pub use load::LoadBalance;
pub use merge::MergeSmall;
pub use replica::ReplicaChecker;
pub use shard::ShardBalance;
pub use split::SplitChecker;

/// Scheduler settings.
#[derive(Debug, Clone)]
pub struct ScheduleConfig {
    /// Operators in flight that involve one store. Default 4.
    pub max_ops_per_store: usize,
    /// Split a range above this size, bytes. Default 96 MiB.
    pub split_size_bytes: u64,
    /// Split a range above this many reads + writes per second. Default 30,000.
    pub split_qps: u64,
    /// A store silent for this long (and, with probes, unreachable by a majority of them for
    /// as long) is dead: its replicas are replaced, ms. Default 30,000.
    pub store_down_after_ms: u64,
    /// A store reached by any probe within this is healthy, ms. Default 5,000.
    pub probe_window_ms: u64,
    /// A probe silent for this long no longer votes, ms. Default 15,000.
    pub probe_expiry_ms: u64,
    /// Balance replicas when the fullest and emptiest stores differ by at least this. Default 2.
    pub replica_imbalance: usize,
    /// Balance leaders when the stores with most and fewest leaders differ by at least this.
    /// Default 2.
    pub leader_imbalance: usize,
    /// Balancing moves proposed per run. Default 4.
    pub balance_moves_per_run: usize,
    /// Balance by load when the hottest live store serves more than this many times the
    /// ops/s of the coldest. Default 1.5.
    pub load_balance_ratio: f64,
    /// ... and more than this many ops/s (an idle cluster never churns). Default 1,000.
    pub load_balance_min_ops: u64,
    /// A range moved by load (or for hot-range relief) is not moved again by load for this
    /// long, ms. Default 120,000.
    pub load_balance_cooldown_ms: u64,
    /// `ShardBalance` moves a range off a store's hot shard only once this many scheduler
    /// runs in a row found that shard over the ratio (ranges heartbeat at different moments,
    /// so the first second of a load can show one shard busy and the other idle). Default 3.
    pub shard_balance_runs: u32,
    /// A range split this many times in a row without its epoch changing cannot be split
    /// (one hot key); it is relieved by a move instead. Default 3.
    pub split_attempts_max: u32,
    /// Merge two neighbours when each is below this size, bytes (and together below half of
    /// `split_size_bytes`, so they do not split back). Default 0: merges off.
    pub merge_size_bytes: u64,
    /// ... and each serves fewer reads + writes per second than this (together fewer than half
    /// of `split_qps`). Default 100.
    pub merge_qps: u64,
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        Self {
            max_ops_per_store: 4,
            split_size_bytes: 96 << 20,
            split_qps: 30_000,
            store_down_after_ms: 30_000,
            probe_window_ms: 5_000,
            probe_expiry_ms: 15_000,
            replica_imbalance: 2,
            leader_imbalance: 2,
            balance_moves_per_run: 4,
            load_balance_ratio: 1.5,
            load_balance_min_ops: 1_000,
            load_balance_cooldown_ms: 120_000,
            shard_balance_runs: 3,
            split_attempts_max: 3,
            merge_size_bytes: 0,
            merge_qps: 100,
        }
    }
}

/// A store's last heartbeat.
#[derive(Debug, Clone, Default)]
pub struct StoreLoad {
    /// When it arrived (master clock, ms).
    pub heartbeat_ms: u64,
    /// What it said.
    pub stats: StoreStats,
}

/// A range leader's last heartbeat.
#[derive(Debug, Clone, Default)]
pub struct RangeLoad {
    /// When it arrived (master clock, ms).
    pub heartbeat_ms: u64,
    /// Size and load.
    pub stats: RangeStats,
    /// Replicas catching up.
    pub pending: Vec<ReplicaId>,
    /// Replicas not heard from.
    pub down: Vec<ReplicaId>,
}

/// Everything the scheduler looks at.
#[derive(Debug, Clone, Copy)]
pub struct ScheduleInput<'a> {
    /// The durable state.
    pub state: &'a ClusterState,
    /// Last store heartbeats.
    pub stores: &'a BTreeMap<StoreId, StoreLoad>,
    /// Last range heartbeats.
    pub ranges: &'a BTreeMap<RangeId, RangeLoad>,
    /// Ranges with an operator in flight, and the stores each involves.
    pub busy: &'a BTreeMap<RangeId, Vec<StoreId>>,
    /// The steps in flight operators still have to take (the load balancers count a moving
    /// range where its operator will put it, so two runs do not both move load off one
    /// store or shard for the same imbalance).
    pub in_flight: &'a BTreeMap<RangeId, Vec<Step>>,
    /// The failure detector's verdict per store (a store missing here falls back to the
    /// heartbeat rule).
    pub health: &'a BTreeMap<StoreId, Health>,
    /// Settings.
    pub config: &'a ScheduleConfig,
    /// Master clock, ms.
    pub now_ms: u64,
}

/// One step of a proposal; replica and range ids are allocated when it becomes an operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Add a learner on `store`/`shard` (a new replica id).
    AddLearner {
        /// Target store.
        store: StoreId,
        /// Target shard.
        shard: ShardId,
    },
    /// Promote the learner added by the previous step.
    PromoteAdded,
    /// Promote an existing learner.
    Promote {
        /// The learner.
        replica_id: ReplicaId,
    },
    /// Remove a replica.
    Remove {
        /// The replica.
        replica_id: ReplicaId,
    },
    /// Move leadership.
    TransferLeader {
        /// The new leader.
        to: ReplicaId,
    },
    /// Move leadership to the learner added (and promoted) by an earlier step.
    TransferLeaderToAdded,
    /// Split; the leader picks the key.
    Split,
    /// Merge the right neighbour `right` into the range (replicas co-located first).
    Merge {
        /// The right neighbour.
        right: RangeId,
    },
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::AddLearner { store, shard } => write!(f, "add-learner s{store}/{shard}"),
            Self::PromoteAdded => write!(f, "promote"),
            Self::Promote { replica_id } => write!(f, "promote p{replica_id}"),
            Self::Remove { replica_id } => write!(f, "remove p{replica_id}"),
            Self::TransferLeader { to } => write!(f, "transfer-leader p{to}"),
            Self::TransferLeaderToAdded => write!(f, "transfer-leader added"),
            Self::Split => write!(f, "split"),
            Self::Merge { right } => write!(f, "merge r{right}"),
        }
    }
}

/// Work for one range, with the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proposal {
    /// The range.
    pub range_id: RangeId,
    /// Steps, executed in order.
    pub steps: Vec<Step>,
    /// Stores the operator involves (they count against the per-store limit).
    pub stores: Vec<StoreId>,
    /// Which checker proposed it.
    pub checker: &'static str,
    /// Why, for logs and the admin page.
    pub reason: String,
}

impl fmt::Display for Proposal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "r{}:", self.range_id)?;
        for (i, s) in self.steps.iter().enumerate() {
            write!(f, "{}{s}", if i == 0 { " " } else { ", " })?;
        }
        Ok(())
    }
}

/// A source of proposals. Checkers run in order; earlier ones get the per-store budget first.
pub trait Checker: fmt::Debug + Send + Sync {
    /// Name, for logs.
    fn name(&self) -> &'static str;
    /// Looks at `plan.input` and proposes work through [`Plan::propose`].
    fn check(&self, plan: &mut Plan<'_>);
}

/// The proposals of one scheduler run, and the budget left.
#[derive(Debug)]
pub struct Plan<'a> {
    /// What the checkers look at.
    pub input: ScheduleInput<'a>,
    ops_per_store: BTreeMap<StoreId, usize>,
    busy: BTreeSet<RangeId>,
    out: Vec<Proposal>,
}

impl<'a> Plan<'a> {
    fn new(input: ScheduleInput<'a>) -> Self {
        let mut ops_per_store = BTreeMap::new();
        for stores in input.busy.values() {
            for s in stores {
                *ops_per_store.entry(*s).or_insert(0) += 1;
            }
        }
        Self {
            busy: input.busy.keys().copied().collect(),
            input,
            ops_per_store,
            out: Vec::new(),
        }
    }

    /// Whether `range` has an operator in flight or proposed in this run.
    pub fn is_busy(&self, range: RangeId) -> bool {
        self.busy.contains(&range)
    }

    /// Whether `store` can take one more operator.
    pub fn has_budget(&self, store: StoreId) -> bool {
        self.ops_per_store.get(&store).copied().unwrap_or(0) < self.input.config.max_ops_per_store
    }

    /// Adds a proposal unless its range is busy or a store it involves is at its limit.
    pub fn propose(&mut self, p: Proposal) -> bool {
        if self.is_busy(p.range_id) || !p.stores.iter().all(|s| self.has_budget(*s)) {
            return false;
        }
        for s in &p.stores {
            *self.ops_per_store.entry(*s).or_insert(0) += 1;
        }
        self.busy.insert(p.range_id);
        self.out.push(p);
        true
    }

    /// Proposals so far.
    pub fn proposals(&self) -> &[Proposal] {
        &self.out
    }

    /// Whether `store` may receive a new replica: up and healthy (a suspect store keeps its
    /// replicas but gets no new ones; a store not heard from since this master started counts
    /// as alive).
    pub fn is_target(&self, store: &StoreMeta) -> bool {
        let id = store.info.store_id;
        store.state == StoreState::Up
            && self.is_alive(id)
            && self.input.health.get(&id) != Some(&Health::Suspect)
    }

    /// Whether `store` is not dead: the detector's verdict, or without one, whether it sent a
    /// heartbeat within the down timeout (or none was expected yet). A dead store's replicas
    /// are replaced.
    pub fn is_alive(&self, store: StoreId) -> bool {
        if let Some(h) = self.input.health.get(&store) {
            return *h != Health::Dead;
        }
        match self.input.stores.get(&store) {
            Some(l) => {
                self.input.now_ms.saturating_sub(l.heartbeat_ms)
                    < self.input.config.store_down_after_ms
            }
            None => true,
        }
    }

    /// Replicas per store, counted over all ranges.
    pub fn replica_counts(&self) -> BTreeMap<StoreId, usize> {
        let mut m = BTreeMap::new();
        for r in self.input.state.ranges() {
            for rep in &r.replicas {
                *m.entry(rep.store_id).or_insert(0) += 1;
            }
        }
        m
    }

    /// The shard of `store` with the fewest replicas (ties: lowest id).
    pub fn least_loaded_shard(&self, store: &StoreMeta) -> ShardId {
        let shards = store.info.shard_addrs.len().max(1);
        let mut counts = vec![0usize; shards];
        for r in self.input.state.ranges() {
            for rep in &r.replicas {
                if rep.store_id == store.info.store_id {
                    if let Some(c) = counts.get_mut(rep.shard_id.0 as usize) {
                        *c += 1;
                    }
                }
            }
        }
        let best = (0..shards).min_by_key(|i| (counts[*i], *i)).unwrap_or(0);
        ShardId(best as u32)
    }

    /// The best store for a new replica of `range`, excluding `exclude`: a live, up store
    /// without a replica of it, preferring a zone the range does not use yet, then the
    /// fewest replicas, then the lowest id. Returns the store and why it was chosen.
    pub fn pick_target(
        &self,
        range: &RangeDescriptor,
        exclude: &[StoreId],
        counts: &BTreeMap<StoreId, usize>,
    ) -> Option<(&'a StoreMeta, String)> {
        let state = self.input.state;
        let used_zones: BTreeSet<Option<&str>> = range
            .replicas
            .iter()
            .filter(|r| !exclude.contains(&r.store_id))
            .filter_map(|r| state.store(r.store_id))
            .map(|s| s.label("zone"))
            .collect();
        state
            .stores()
            .filter(|s| self.is_target(s) && self.has_budget(s.info.store_id))
            .filter(|s| !range.replicas.iter().any(|r| r.store_id == s.info.store_id))
            .filter(|s| !exclude.contains(&s.info.store_id))
            .map(|s| {
                let new_zone = s.label("zone").is_some() && !used_zones.contains(&s.label("zone"));
                let n = counts.get(&s.info.store_id).copied().unwrap_or(0);
                (s, new_zone, n)
            })
            .min_by_key(|(s, new_zone, n)| (!*new_zone, *n, s.info.store_id))
            .map(|(s, new_zone, n)| {
                let why = format!(
                    "store {} ({}{} replicas)",
                    s.info.store_id,
                    if new_zone { "new zone, " } else { "" },
                    n
                );
                (s, why)
            })
    }
}

/// Voters of a range.
pub fn voters(range: &RangeDescriptor) -> impl Iterator<Item = &net::message::Replica> {
    range
        .replicas
        .iter()
        .filter(|r| r.role == ReplicaRole::Voter {})
}

/// The default checkers, in priority order: repair and replication first, then splits (and
/// hot-range relief), then balance by load (between stores, then between the shards of each
/// store), then by count.
pub fn default_checkers() -> Vec<Box<dyn Checker>> {
    // A range moved by load or for hot-range relief is left alone by every balancer for the
    // cool-down.
    let moved = std::sync::Arc::new(Cooldown::default());
    vec![
        Box::new(ReplicaChecker),
        Box::new(SplitChecker::new(moved.clone())),
        Box::new(LoadBalance::new(moved.clone())),
        Box::new(ShardBalance::new(moved.clone())),
        Box::new(ReplicaBalance::new(moved.clone())),
        Box::new(LeaderBalance::new(moved.clone())),
        Box::new(MergeSmall::new(moved)),
    ]
}

/// Runs `checkers` over `input` and returns the proposals.
pub fn schedule(input: ScheduleInput<'_>, checkers: &[Box<dyn Checker>]) -> Vec<Proposal> {
    let mut plan = Plan::new(input);
    if !input.state.is_bootstrapped() {
        return Vec::new();
    }
    for c in checkers {
        c.check(&mut plan);
    }
    plan.out
}

#[cfg(test)]
mod load_tests;
#[cfg(test)]
mod merge_tests;
#[cfg(test)]
mod shard_tests;
#[cfg(test)]
mod tests;
