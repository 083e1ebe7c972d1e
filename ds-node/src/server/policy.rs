//! The memory policy (`maxmemory`, DESIGN §4 "Policy"): keeps a shard's accounted memory
//! under its share of the node's `maxmemory`, and decides which cold reads promote.
//!
//! - **Budget**: `maxmemory / shards` per shard ([`shard_budget`]), where `maxmemory` is the
//!   cluster's override when the master has one (`CONFIG SET maxmemory` through a proxy,
//!   delivered to every shard in the answer to its memory report each heartbeat:
//!   [`set_node_maxmemory`]) and the node's own setting otherwise; what counts is
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
//! - **Backpressure** (`server::throttle`): while writes wait for memory, or the shard is
//!   above its write line, steps are [`URGENT_FACTOR`] times larger, and waiting writes are
//!   woken after every step. `policy-demote-bytes-per-sec` (0: none) caps the value bytes
//!   demoted per second: a step then takes at most a tenth of a second's worth and the task
//!   sleeps as long as its bytes allow.
//! - **Stuck**: a step that finds nothing to demote and clears no access bit waits a tick;
//!   a whole lap like that (keys and nodes alone exceed the budget) is counted
//!   (`ds_policy_stuck_total`): cold keys leaving memory is not built yet.
//! - **Arena compaction**: once per tick, whether demoting or idle, up to
//!   [`COMPACT_STEPS_PER_TICK`] steps of the tree's arena compaction ([`compact`]: each at
//!   most [`COMPACT_STEP_MOVES`] node moves, the task yielding to the shard's other tasks
//!   between steps; started only once enough arena pages are reclaimable), so that the pages deleted and expired keys
//!   leave behind go back to the allocator and out of the accounted memory
//!   (`ds_arena_*`).

use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::demote::{self, DemoteReport, EXPIRING_SOON_MS, MAX_VALUE, STEP_BYTES, STEP_ENTRIES};
/// The policy's figures (kept with its state, in the shard's leaf modules).
pub use super::policy_state::{PolicyMetrics, shard_budget};
use super::shard::{Shard, ShardDevice, now_ms};
use super::throttle;
use crate::range::clock::{self, SweepLimits};

/// Demotion stops below this percentage of the budget once it started.
pub const LOW_WATER_PERCENT: u64 = 90;
/// Most entries one step of the clock hand looks at.
pub const STEP_VISITS: usize = 8 * STEP_ENTRIES;
/// Most tree nodes one arena compaction step moves (each a copy of at most 704 bytes and the
/// rewrite of the links to it, about 1 µs: a step takes about 0.25 ms, `docs/benchmarks.md`).
pub const COMPACT_STEP_MOVES: usize = 256;
/// Most arena compaction steps per tick (the task yields between them): at the default
/// 100 ms tick, 10,240 node moves a second.
pub const COMPACT_STEPS_PER_TICK: usize = 4;
/// How much larger a step is while writes wait for memory (`server::throttle`): fewer,
/// larger steps make room sooner (the demoted values are written in appends of at most
/// [`STEP_BYTES`] each, `demote::step`).
pub const URGENT_FACTOR: usize = 4;

/// Applies the node's `maxmemory` from the master (`None`: no override, the node's own
/// setting) to this shard: its budget becomes its share. The policy task and the write
/// throttle read the budget at their next check (within `policy-tick-ms`): a lower one starts
/// demotion, a higher one ends it; writes waiting for memory look again at once.
pub fn set_node_maxmemory<D: ShardDevice>(shard: &Shard<D>, maxmemory: Option<u64>) {
    let node = maxmemory.unwrap_or(shard.cfg.maxmemory);
    let budget = shard_budget(node, shard.cfg.shards);
    let old = shard.policy.budget.replace(budget);
    if old != budget {
        tracing::info!(
            shard = shard.index,
            old,
            budget,
            overridden = maxmemory.is_some(),
            "memory budget changed"
        );
        shard.policy.throttle.notify();
    }
}

/// This shard's memory report for the master (`docs/format/wire.md` §4.5 "Memory"), `keys`
/// being its replicas' keys.
pub fn memory_report<D: ShardDevice>(shard: &Shard<D>, keys: u64) -> net::message::ShardMemory {
    let st = shard.state.borrow();
    let c = st.engine.cold_stats();
    net::message::ShardMemory {
        store_id: shard.store_id(),
        shard_id: net::ShardId(shard.index),
        budget_bytes: shard.policy.budget.get(),
        used_bytes: st.engine.accounted().total(),
        hot_value_bytes: c.hot_value_bytes,
        cold_value_bytes: c.cold_value_bytes,
        keys,
    }
}

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

/// Where the hand is and what its current lap did.
#[derive(Debug, Default)]
struct Hand {
    cursor: Bytes,
    lap_taken: usize,
    lap_second_chances: usize,
}

/// The policy task of `shard` (see the module documentation).
pub async fn run<D: ShardDevice>(shard: Rc<Shard<D>>) {
    let tick = Duration::from_millis(shard.cfg.policy_tick_ms);
    let mut hand = Hand::default();
    let mut compacted = Instant::now();
    while !shard.stop.get() {
        if compacted.elapsed() >= tick {
            for _ in 0..COMPACT_STEPS_PER_TICK {
                if !compact(&shard) {
                    break;
                }
                futures_lite::future::yield_now().await;
            }
            compacted = Instant::now();
        }
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
                let urgent = p.throttle.waiting() > 0 || throttle::over_line(&shard);
                let (progress, bytes) = step(&shard, &mut hand, urgent).await;
                // Writes waiting for memory look again after every step.
                p.throttle.notify();
                pace(&shard, bytes).await;
                if !progress {
                    crate::core::sleep(tick).await;
                }
                crate::core::yield_if_needed().await;
            }
            Decision::Idle { promote } => {
                p.behind.set(false);
                p.promote.set(promote);
                p.throttle.notify();
                crate::core::sleep(tick).await;
            }
        }
    }
}

/// Runs one arena compaction step of at most [`COMPACT_STEP_MOVES`] moves and records it
/// (only a step that moved or released something is counted and timed); returns whether
/// compaction has more to do.
pub fn compact<D: ShardDevice>(shard: &Shard<D>) -> bool {
    let started = Instant::now();
    let step = shard
        .state
        .borrow_mut()
        .engine
        .compact_step(COMPACT_STEP_MOVES);
    if step.moved == 0 && step.pages_released == 0 {
        return false;
    }
    let us = started.elapsed().as_micros() as u64;
    let mut m = shard.metrics.borrow_mut();
    m.arena.compact_steps_total += 1;
    super::metrics::ShardMetrics::record(&mut m.arena.step_us, us);
    if step.done {
        tracing::debug!(shard = shard.index, "arena compaction finished");
    }
    !step.done
}

/// Bounds of one step: larger while writes wait for memory ([`URGENT_FACTOR`]), and with a
/// `policy-demote-bytes-per-sec` cap at most a tenth of a second of it.
pub fn step_limits(urgent: bool, bytes_per_sec: u64) -> (usize, usize, usize) {
    let factor = if urgent { URGENT_FACTOR } else { 1 };
    let mut bytes = STEP_BYTES * factor;
    if bytes_per_sec > 0 {
        let tenth = usize::try_from(bytes_per_sec / 10).unwrap_or(usize::MAX);
        bytes = bytes.min(tenth.max(1));
    }
    (STEP_VISITS * factor, STEP_ENTRIES * factor, bytes)
}

/// With `policy-demote-bytes-per-sec` set, sleeps as long as demoting `bytes` is allowed to
/// take (in slices, so that the shard can stop).
async fn pace<D: ShardDevice>(shard: &Shard<D>, bytes: u64) {
    let rate = shard.cfg.policy_demote_bytes_per_sec;
    if rate == 0 || bytes == 0 {
        return;
    }
    let mut left = Duration::from_secs_f64(bytes as f64 / rate as f64);
    let slice = Duration::from_millis(shard.cfg.policy_tick_ms);
    while !left.is_zero() && !shard.stop.get() {
        let d = left.min(slice);
        crate::core::sleep(d).await;
        left -= d;
    }
}

/// One step of the hand: whether to go on at once (false: stuck or failed, wait a tick), and
/// the value bytes it demoted.
async fn step<D: ShardDevice>(shard: &Shard<D>, hand: &mut Hand, urgent: bool) -> (bool, u64) {
    let (visits, entries, bytes) = step_limits(urgent, shard.cfg.policy_demote_bytes_per_sec);
    let limits = SweepLimits {
        visits,
        entries,
        bytes,
        max_value: MAX_VALUE,
        expiring_before_ms: now_ms().saturating_add(EXPIRING_SOON_MS),
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
    if urgent {
        m.throttle.urgent_steps_total += 1;
    }
    if let Err(e) = r {
        m.policy.errors_total += 1;
        m.cold.demotion_errors_total += 1;
        tracing::warn!(shard = shard.index, "policy demotion failed: {e}");
        return (false, rep.bytes);
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
        return (progress && !stuck, rep.bytes);
    };
    hand.cursor = next;
    (progress, rep.bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DsConfig;
    use crate::server::policy_state::PolicyState;

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
    fn steps_grow_while_writes_wait_and_shrink_under_a_rate_cap() {
        assert_eq!(
            step_limits(false, 0),
            (STEP_VISITS, STEP_ENTRIES, STEP_BYTES)
        );
        assert_eq!(
            step_limits(true, 0),
            (
                STEP_VISITS * URGENT_FACTOR,
                STEP_ENTRIES * URGENT_FACTOR,
                STEP_BYTES * URGENT_FACTOR
            )
        );
        assert_eq!(step_limits(true, 40_960).2, 4096);
        assert_eq!(step_limits(false, 1).2, 1);
    }

    #[test]
    fn a_node_maxmemory_is_split_evenly_among_its_shards() {
        assert_eq!(shard_budget(1 << 20, 4), 256 << 10);
        assert_eq!(shard_budget(0, 4), 0, "no limit stays no limit");
        assert_eq!(shard_budget(10, 0), 10, "no shard count is one shard");
    }

    #[test]
    fn promotion_is_refused_while_demotion_is_behind() {
        let cfg = DsConfig {
            maxmemory: 1 << 20,
            ..DsConfig::default()
        };
        let p = PolicyState::new(&cfg, std::rc::Rc::new(super::super::clock::SystemClock));
        p.promote.set(true);
        assert!(p.promotion().allowed);
        p.behind.set(true);
        assert!(!p.promotion().allowed);
        assert_eq!(p.promotion().window, 600);
    }
}
