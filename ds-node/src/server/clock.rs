//! The shard's clock (a leaf: imports nothing of `server`): every decision a shard takes on
//! time — the read lease, request and transfer timeouts, cool-downs, the memory policy's
//! ticks, latency figures — reads [`Clock::now`] of the clock the shard was opened with
//! (`Shard::now`), never `Instant::now` directly. Production shards run on [`SystemClock`];
//! a test opens a shard on a [`ManualClock`] and moves time itself, so that a lease runs out
//! or a timeout fires exactly when the test says.
//!
//! What stays on real time: glommio's timers (`crate::core::sleep`) and the ready loop's tick
//! pacing, which decide only *when* the loop wakes up, not what it decides then; and Unix
//! time (`shard::now_ms`), which the leader writes into entries.

use std::cell::Cell;
use std::fmt::Debug;
use std::time::{Duration, Instant};

/// A monotonic clock.
pub trait Clock: Debug {
    /// The current instant.
    fn now(&self) -> Instant;
}

/// The process's monotonic clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[inline]
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// A clock that stands still until it is advanced (tests; single-threaded like a shard).
#[derive(Debug)]
pub struct ManualClock {
    now: Cell<Instant>,
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}

impl ManualClock {
    /// A clock standing at the real instant it was created.
    pub fn new() -> Self {
        Self {
            now: Cell::new(Instant::now()),
        }
    }

    /// Moves the clock `by` forward.
    pub fn advance(&self, by: Duration) {
        self.now.set(self.now.get() + by);
    }
}

impl Clock for ManualClock {
    #[inline]
    fn now(&self) -> Instant {
        self.now.get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_advanced() {
        let c = ManualClock::new();
        let t0 = c.now();
        std::thread::yield_now();
        assert_eq!(c.now(), t0);
        c.advance(Duration::from_millis(250));
        assert_eq!(c.now(), t0 + Duration::from_millis(250));
    }
}
