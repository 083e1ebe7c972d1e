//! The memory policy (`maxmemory`, DESIGN §4 "Policy"): keeps a shard's accounted memory
//! under its share of the node's `maxmemory`, and decides which cold reads promote.
//!
//! - **Budget**: `maxmemory / shards` per shard; what counts is
//!   `MasstreeStore::accounted` (tree arena pages, key suffixes, pointers, inline values, a
//!   per-entry allocator overhead). Not counted: the shard log's buffers, Raft's cached
//!   entries, network buffers, allocator slack, code.
//! - **Demotion**: a task per shard ([`run`]). Above the budget it works step after step
//!   until the shard is under [`LOW_WATER_PERCENT`] % of it (hysteresis); each step moves the
//!   clock hand (`range::clock`) over at most [`STEP_VISITS`] entries and demotes what it
//!   picks with `demote::step` (backed values dropped without I/O; the others written as
//!   demoted records in one group commit). Under the budget it checks every
//!   `policy-tick-ms`.
//! - **Promotion**: a cold value is loaded *transient* (for its operation only, dropped after
//!   a lease read, or first for the clock); a second cold read within `promote-window-ms`
//!   keeps it hot, while the shard is under `promote-below-percent` % of its budget and
//!   demotion is not behind.
//! - **Stuck**: a step that finds nothing to demote and clears no access bit waits a tick;
//!   a whole lap like that (keys and nodes alone exceed the budget) is counted
//!   (`ds_policy_stuck_total`): cold keys leaving memory is not built yet.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::demote::{self, DemoteReport, EXPIRING_SOON_MS, MAX_VALUE, STEP_BYTES, STEP_ENTRIES};
use super::shard::Shard;
use crate::config::DsConfig;
use crate::range::clock::{self, SweepLimits};
use crate::range::engine::Promotion;

/// Demotion stops below this percentage of the budget once it started.
pub const LOW_WATER_PERCENT: u64 = 90;
/// Most entries one step of the clock hand looks at.
pub const STEP_VISITS: usize = 8 * STEP_ENTRIES;
/// The policy clock's unit (cold-read stamps, the promotion window, and the load epochs that
/// keep transient entries for the loads in flight): 16-bit stamps wrap after 109 minutes.
pub const TICK: Duration = Duration::from_millis(100);

/// What the policy decides for one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Demote one step.
    Demote,
    /// Nothing to demote; whether cold reads may promote.
    Idle {
        /// Promotion allowed.
        promote: bool,
    },
}

/// Decides from the accounted memory, the budget (0: unlimited), whether demotion was
/// already running (hysteresis) and `promote-below-percent`.
pub fn decide(accounted: u64, budget: u64, behind: bool, promote_below_percent: u32) -> Decision {
    if budget == 0 {
        return Decision::Idle { promote: true };
    }
    let low = budget / 100 * LOW_WATER_PERCENT;
    if accounted > budget || (behind && accounted > low) {
        return Decision::Demote;
    }
    let promote_below = budget / 100 * u64::from(promote_below_percent);
    Decision::Idle {
        promote: accounted < promote_below,
    }
}

/// A shard's policy state, shared by the policy task and cold loads (one thread).
#[derive(Debug)]
pub struct PolicyState {
    /// The shard's budget, bytes (0: unlimited).
    pub budget: Cell<u64>,
    /// Whether demotion is running (above the budget, not yet under the low water).
    pub behind: Cell<bool>,
    /// Whether cold reads may promote now.
    pub promote: Cell<bool>,
    /// Start ticks of the cold loads in flight (`cold::load_until_hot`), with their count:
    /// transient entries loaded since the oldest started are neither taken by the hand nor
    /// dropped after reads, so that the operation a load prepares finds what it loaded
    /// (else it re-plans, and a write gives up after `cold::ROUNDS`). Bounded by the
    /// operations in flight.
    loads_in_flight: RefCell<BTreeMap<u64, u32>>,
    started: Instant,
    window_ticks: u16,
}

impl PolicyState {
    /// The state for a shard of a node configured with `cfg`.
    pub fn new(cfg: &DsConfig) -> Self {
        let window = cfg.promote_window_ms / TICK.as_millis() as u64;
        Self {
            budget: Cell::new(cfg.maxmemory / cfg.shards.max(1) as u64),
            behind: Cell::new(false),
            promote: Cell::new(cfg.maxmemory == 0),
            loads_in_flight: RefCell::new(BTreeMap::new()),
            started: Instant::now(),
            window_ticks: u16::try_from(window).unwrap_or(u16::MAX),
        }
    }

    fn now_ticks(&self) -> u64 {
        (self.started.elapsed().as_millis() / TICK.as_millis()) as u64
    }

    /// Transient entries loaded before this tick may go (`None`: all): the start of the
    /// oldest load in flight.
    pub fn transient_before(&self) -> Option<u16> {
        let first = self.loads_in_flight.borrow().keys().next().copied();
        first.map(|t| t as u16)
    }

    /// What a cold read loaded now does.
    pub fn promotion(&self) -> Promotion {
        Promotion {
            // Wraps every 109 minutes: a false "twice within the window" then is one extra
            // promotion, harmless.
            tick: self.now_ticks() as u16,
            window: self.window_ticks,
            allowed: self.promote.get() && !self.behind.get(),
        }
    }
}

/// Figures of the policy (`ds_policy_*` on `/metrics`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PolicyMetrics {
    /// Budget of the shard(s), bytes (gauge).
    pub budget_bytes: u64,
    /// Accounted memory, bytes (gauge).
    pub accounted_bytes: u64,
    /// Shards whose demotion is behind (gauge).
    pub behind: u64,
    /// Entries demoted by the policy.
    pub demotions_total: u64,
    /// Value bytes they held.
    pub demoted_bytes_total: u64,
    /// Steps of the clock hand.
    pub steps_total: u64,
    /// Access bits cleared by the hand.
    pub second_chances_total: u64,
    /// Laps of the hand that found nothing to demote (keys alone over the budget).
    pub stuck_total: u64,
    /// Steps that failed (a log write).
    pub errors_total: u64,
    /// Cold values loaded to stay hot.
    pub promotions_total: u64,
    /// Cold values loaded for one operation (cold hits).
    pub transient_loads_total: u64,
    /// Transient values dropped right after their read.
    pub transient_drops_total: u64,
}

impl PolicyMetrics {
    /// Adds another shard's figures.
    pub fn merge(&mut self, o: &PolicyMetrics) {
        self.budget_bytes += o.budget_bytes;
        self.accounted_bytes += o.accounted_bytes;
        self.behind += o.behind;
        self.demotions_total += o.demotions_total;
        self.demoted_bytes_total += o.demoted_bytes_total;
        self.steps_total += o.steps_total;
        self.second_chances_total += o.second_chances_total;
        self.stuck_total += o.stuck_total;
        self.errors_total += o.errors_total;
        self.promotions_total += o.promotions_total;
        self.transient_loads_total += o.transient_loads_total;
        self.transient_drops_total += o.transient_drops_total;
    }
}

/// Records a cold load in flight for as long as it lives (also when its future is dropped).
#[derive(Debug)]
pub struct LoadInFlight<'a> {
    policy: &'a PolicyState,
    started: u64,
}

impl<'a> LoadInFlight<'a> {
    /// Starts recording.
    pub fn new(policy: &'a PolicyState) -> Self {
        let started = policy.now_ticks();
        *policy
            .loads_in_flight
            .borrow_mut()
            .entry(started)
            .or_default() += 1;
        Self { policy, started }
    }
}

impl Drop for LoadInFlight<'_> {
    fn drop(&mut self) {
        let mut m = self.policy.loads_in_flight.borrow_mut();
        if let Some(n) = m.get_mut(&self.started) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.started);
            }
        }
    }
}

/// Where the hand is and what its current lap did.
#[derive(Debug, Default)]
struct Hand {
    cursor: Bytes,
    lap_taken: usize,
    lap_second_chances: usize,
}

/// The policy task of `shard` (see the module documentation).
pub async fn run(shard: Rc<Shard>) {
    let tick = Duration::from_millis(shard.cfg.policy_tick_ms);
    let mut hand = Hand::default();
    while !shard.stop.get() {
        let accounted = shard.state.borrow().engine.accounted().total();
        let p = &shard.policy;
        match decide(
            accounted,
            p.budget.get(),
            p.behind.get(),
            shard.cfg.promote_below_percent,
        ) {
            Decision::Demote => {
                p.behind.set(true);
                p.promote.set(false);
                if !step(&shard, &mut hand).await {
                    crate::core::sleep(tick).await;
                }
                crate::core::yield_if_needed().await;
            }
            Decision::Idle { promote } => {
                p.behind.set(false);
                p.promote.set(promote);
                crate::core::sleep(tick).await;
            }
        }
    }
}

/// One step of the hand; whether to go on at once (false: stuck or failed, wait a tick).
async fn step(shard: &Shard, hand: &mut Hand) -> bool {
    let limits = SweepLimits {
        visits: STEP_VISITS,
        entries: STEP_ENTRIES,
        bytes: STEP_BYTES,
        max_value: MAX_VALUE,
        expiring_before_ms: super::shard::now_ms().saturating_add(EXPIRING_SOON_MS),
        transient_before: shard.policy.transient_before(),
    };
    let sweep = clock::sweep(&shard.state.borrow().engine, &hand.cursor, &limits);
    hand.lap_taken += sweep.candidates.len();
    hand.lap_second_chances += sweep.second_chances;
    let mut rep = DemoteReport::default();
    let taken = sweep.candidates.len();
    let r = demote::step(shard, sweep.candidates, &mut rep).await;
    let mut m = shard.metrics.borrow_mut();
    m.policy.steps_total += 1;
    m.policy.second_chances_total += sweep.second_chances as u64;
    m.policy.demotions_total += rep.entries;
    m.policy.demoted_bytes_total += rep.bytes;
    m.cold.demotions_total += rep.entries;
    m.cold.demoted_bytes_written_total += rep.written_bytes;
    if let Err(e) = r {
        m.policy.errors_total += 1;
        m.cold.demotion_errors_total += 1;
        tracing::warn!(shard = shard.index, "policy demotion failed: {e}");
        return false;
    }
    // A step that neither took nor cleared anything (cold entries only) waits a tick, so a
    // shard whose keys alone exceed the budget does not spin.
    let progress = taken > 0 || sweep.second_chances > 0;
    let Some(next) = sweep.next else {
        let stuck = hand.lap_taken == 0 && hand.lap_second_chances == 0;
        *hand = Hand::default();
        if stuck {
            m.policy.stuck_total += 1;
        }
        return progress && !stuck;
    };
    hand.cursor = next;
    progress
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demotion_starts_above_the_budget_and_stops_under_the_low_water() {
        assert_eq!(decide(1001, 1000, false, 70), Decision::Demote);
        assert_eq!(decide(950, 1000, true, 70), Decision::Demote);
        assert_eq!(
            decide(950, 1000, false, 70),
            Decision::Idle { promote: false }
        );
        assert_eq!(
            decide(890, 1000, true, 70),
            Decision::Idle { promote: false }
        );
    }

    #[test]
    fn promotion_only_below_the_threshold_and_always_without_a_budget() {
        assert_eq!(
            decide(690, 1000, false, 70),
            Decision::Idle { promote: true }
        );
        assert_eq!(
            decide(700, 1000, false, 70),
            Decision::Idle { promote: false }
        );
        assert_eq!(
            decide(u64::MAX, 0, true, 70),
            Decision::Idle { promote: true }
        );
    }

    #[test]
    fn promotion_is_refused_while_demotion_is_behind() {
        let cfg = DsConfig {
            maxmemory: 1 << 20,
            ..DsConfig::default()
        };
        let p = PolicyState::new(&cfg);
        p.promote.set(true);
        assert!(p.promotion().allowed);
        p.behind.set(true);
        assert!(!p.promotion().allowed);
        assert_eq!(p.promotion().window, 600);
    }
}
