//! Timestamp allocation (`physical ms << 18 | logical`) against a persisted high-water mark.
//!
//! Pure: the clock reading is a parameter. Every served timestamp is below the persisted
//! `limit`; after a restart the allocator resumes at that limit, so timestamps strictly
//! increase across restarts and across clock steps backwards (as PD does, the limit is kept a
//! window ahead of the clock so that persisting it is off the request path).

use net::Timestamp;

/// Bits of the logical counter.
pub const LOGICAL_BITS: u32 = 18;
/// The largest batch: one millisecond of logical space.
pub const MAX_BATCH: u32 = 1 << LOGICAL_BITS;

/// Composes a timestamp from its parts.
pub fn compose(physical_ms: u64, logical: u64) -> Timestamp {
    debug_assert!(logical < (1 << LOGICAL_BITS));
    Timestamp((physical_ms << LOGICAL_BITS) | logical)
}

/// The physical (millisecond) part of a timestamp.
pub fn physical_ms(ts: Timestamp) -> u64 {
    ts.0 >> LOGICAL_BITS
}

/// What a serve needs before it can proceed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NeedLimit {
    /// Persist a limit of at least this, then retry.
    pub limit: Timestamp,
}

/// The allocator's in-memory state.
#[derive(Debug, Clone)]
pub struct TsoAllocator {
    /// Next timestamp must be at least this.
    next: u64,
    /// Persisted limit (exclusive): nothing at or above it is served.
    limit: u64,
    window_ms: u64,
}

impl TsoAllocator {
    /// An allocator resuming at the persisted `limit`, keeping the limit `window_ms` ahead of
    /// the clock (default 3,000 ms).
    pub fn new(persisted_limit: Timestamp, window_ms: u64) -> Self {
        Self {
            next: persisted_limit.0.max(1),
            limit: persisted_limit.0,
            window_ms: window_ms.max(1),
        }
    }

    /// The persisted limit this allocator knows.
    pub fn limit(&self) -> Timestamp {
        Timestamp(self.limit)
    }

    /// Records that a limit was persisted.
    pub fn raise_limit(&mut self, limit: Timestamp) {
        self.limit = self.limit.max(limit.0);
    }

    /// Serves `count` (1 ..= [`MAX_BATCH`]) consecutive timestamps at clock reading `now_ms`:
    /// returns the first. Fails if the persisted limit must grow first.
    pub fn serve(&mut self, now_ms: u64, count: u32) -> Result<Timestamp, NeedLimit> {
        assert!(
            (1..=MAX_BATCH).contains(&count),
            "batch size checked by caller"
        );
        let first = self.next.max(compose(now_ms, 0).0);
        let end = first + u64::from(count);
        if end > self.limit {
            let ahead = compose(now_ms.max(physical_ms(Timestamp(end))) + self.window_ms, 0);
            return Err(NeedLimit {
                limit: Timestamp(ahead.0.max(end)),
            });
        }
        self.next = end;
        Ok(Timestamp(first))
    }

    /// A limit to persist ahead of need (when less than half the window is left), if any.
    pub fn want_limit(&self, now_ms: u64) -> Option<Timestamp> {
        let base = now_ms.max(physical_ms(Timestamp(self.next)));
        let low = compose(base + self.window_ms / 2, 0).0;
        (self.limit < low).then(|| compose(base + self.window_ms, 0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Serves like the master does: persist (here: just raise) the limit when asked.
    fn must_serve(t: &mut TsoAllocator, now: u64, n: u32, persisted: &mut Timestamp) -> u64 {
        loop {
            match t.serve(now, n) {
                Ok(ts) => {
                    assert!(ts.0 + u64::from(n) <= persisted.0, "served above the limit");
                    return ts.0;
                }
                Err(need) => {
                    *persisted = (*persisted).max(need.limit);
                    t.raise_limit(*persisted);
                }
            }
        }
    }

    #[test]
    fn timestamps_increase_when_the_clock_steps_back() {
        let mut p = Timestamp(0);
        let mut t = TsoAllocator::new(p, 3000);
        let a = must_serve(&mut t, 10_000, 5, &mut p);
        let b = must_serve(&mut t, 9_000, 5, &mut p);
        let c = must_serve(&mut t, 9_001, 1, &mut p);
        assert!(a + 5 <= b && b + 5 <= c);
        assert_eq!(physical_ms(Timestamp(a)), 10_000);
    }

    #[test]
    fn logical_overflow_within_a_millisecond_moves_to_the_next() {
        let mut p = Timestamp(0);
        let mut t = TsoAllocator::new(p, 3000);
        let a = must_serve(&mut t, 50, MAX_BATCH, &mut p);
        let b = must_serve(&mut t, 50, 10, &mut p);
        assert_eq!(a, compose(50, 0).0);
        assert_eq!(b, compose(51, 0).0);
    }

    #[test]
    fn a_stalled_clock_still_yields_distinct_timestamps() {
        let mut p = Timestamp(0);
        let mut t = TsoAllocator::new(p, 3000);
        let mut last = 0;
        for _ in 0..10_000 {
            let ts = must_serve(&mut t, 7, 100, &mut p);
            assert!(ts > last);
            last = ts + 99;
        }
    }

    #[test]
    fn restart_resumes_above_everything_served_even_if_the_clock_went_back() {
        let mut p = Timestamp(0);
        let mut t = TsoAllocator::new(p, 3000);
        let before = must_serve(&mut t, 1_000_000, 1000, &mut p) + 999;
        let mut t2 = TsoAllocator::new(p, 3000);
        let after = must_serve(&mut t2, 10, 1, &mut p);
        assert!(after > before);
    }

    #[test]
    fn the_limit_is_persisted_ahead_of_the_clock() {
        let mut t = TsoAllocator::new(Timestamp(0), 3000);
        let want = t.want_limit(1000).unwrap();
        assert_eq!(want, compose(4000, 0));
        t.raise_limit(want);
        assert_eq!(t.want_limit(2000), None);
        assert!(t.want_limit(2600).is_some());
        assert!(
            t.serve(3999, 10).is_ok(),
            "no persist needed within the window"
        );
    }
}
