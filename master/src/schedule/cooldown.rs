//! A bounded memory of recently moved ranges, so a range moved by load is left alone for a
//! while (no ping-pong while its new leader's load figures settle).

use std::collections::BTreeMap;
use std::sync::Mutex;

use net::RangeId;

use super::{Plan, Proposal};

/// Ranges remembered at most; the oldest is forgotten first.
pub const COOLDOWN_KEPT: usize = 4096;

/// When each recently moved range was moved (master clock, ms).
#[derive(Debug, Default)]
pub struct Cooldown {
    moved_ms: Mutex<BTreeMap<RangeId, u64>>,
}

impl Cooldown {
    /// Forgets moves older than `cooldown_ms`.
    pub fn expire(&self, now_ms: u64, cooldown_ms: u64) {
        let mut m = self.moved_ms.lock().unwrap_or_else(|p| p.into_inner());
        m.retain(|_, at| now_ms.saturating_sub(*at) < cooldown_ms);
    }

    /// Whether `range` moved within the cool-down (as of the last [`Cooldown::expire`]).
    pub fn is_cooling(&self, range: RangeId) -> bool {
        let m = self.moved_ms.lock().unwrap_or_else(|p| p.into_inner());
        m.contains_key(&range)
    }

    /// Remembers that `range` moved at `now_ms`, forgetting the oldest move when full.
    pub fn record(&self, range: RangeId, now_ms: u64) {
        let mut m = self.moved_ms.lock().unwrap_or_else(|p| p.into_inner());
        if m.len() >= COOLDOWN_KEPT && !m.contains_key(&range) {
            if let Some(oldest) = m.iter().min_by_key(|(r, at)| (**at, **r)).map(|(r, _)| *r) {
                m.remove(&oldest);
            }
        }
        m.insert(range, now_ms);
    }

    /// Runs a balancer: up to `balance-moves-per-run` moves, each picked by `next` on the
    /// plan as the previous ones left it; a proposed range is then left alone for
    /// `load-balance-cooldown-ms`. Stops at the first run out of moves or refused proposal.
    pub(super) fn propose_moves<'p>(
        &self,
        plan: &mut Plan<'p>,
        mut next: impl FnMut(&mut Plan<'p>) -> Option<Proposal>,
    ) {
        let cfg = plan.input.config;
        let now = plan.input.now_ms;
        self.expire(now, cfg.load_balance_cooldown_ms);
        for _ in 0..cfg.balance_moves_per_run {
            let Some(p) = next(plan) else {
                return;
            };
            let range = p.range_id;
            if !plan.propose(p) {
                return;
            }
            self.record(range, now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_move_cools_down_then_is_forgotten() {
        let c = Cooldown::default();
        c.record(RangeId(7), 1000);
        c.expire(1500, 1000);
        assert!(c.is_cooling(RangeId(7)));
        c.expire(2000, 1000);
        assert!(!c.is_cooling(RangeId(7)));
    }

    #[test]
    fn the_memory_is_bounded_and_forgets_the_oldest_move() {
        let c = Cooldown::default();
        for i in 0..COOLDOWN_KEPT as u64 + 1 {
            c.record(RangeId(i), i);
        }
        assert!(!c.is_cooling(RangeId(0)));
        assert!(c.is_cooling(RangeId(1)));
        assert!(c.is_cooling(RangeId(COOLDOWN_KEPT as u64)));
    }
}
