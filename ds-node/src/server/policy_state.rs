//! A shard's memory-policy state (`server::policy` decides and demotes; `server::cold` loads):
//! the budget, whether demotion is behind, whether cold reads promote, and the cold loads in
//! flight; and the policy's figures. A leaf of the shard state: imports only the leaf
//! `throttle_state` (writes waiting for memory).

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use super::clock::Clock;

use super::throttle_state::ThrottleState;
use crate::config::DsConfig;
use crate::range::engine::Promotion;

/// The policy clock's unit (cold-read stamps, the promotion window, and the load epochs that
/// keep transient entries for the loads in flight): 16-bit stamps wrap after 109 minutes.
pub const TICK: Duration = Duration::from_millis(100);

/// A shard's share of its node's `maxmemory` (0: no limit) among `shards`.
pub fn shard_budget(node_maxmemory: u64, shards: usize) -> u64 {
    node_maxmemory / shards.max(1) as u64
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
    /// Writes waiting for memory (`server::throttle`).
    pub throttle: ThrottleState,
    started: Instant,
    clock: Rc<dyn Clock>,
    window_ticks: u16,
}

impl PolicyState {
    /// The state for a shard of a node configured with `cfg`, its ticks on `clock`.
    pub fn new(cfg: &DsConfig, clock: Rc<dyn Clock>) -> Self {
        let window = cfg.promote_window_ms / TICK.as_millis() as u64;
        Self {
            budget: Cell::new(shard_budget(cfg.maxmemory, cfg.shards)),
            behind: Cell::new(false),
            promote: Cell::new(cfg.maxmemory == 0),
            loads_in_flight: RefCell::new(BTreeMap::new()),
            throttle: ThrottleState::default(),
            started: clock.now(),
            clock,
            window_ticks: u16::try_from(window).unwrap_or(u16::MAX),
        }
    }

    fn now_ticks(&self) -> u64 {
        (self
            .clock
            .now()
            .saturating_duration_since(self.started)
            .as_millis()
            / TICK.as_millis()) as u64
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
