//! The leader's read lease, on the monotonic clock (a leaf: imports nothing of `server`).
//!
//! A leader answers a read from its own state only while no other replica can have become
//! leader. raft-rs's `check_quorum` alone does not give that: a leader counts *ticks*, checks
//! its quorum only once per election timeout, and a paused process (SIGSTOP, a long GC-like
//! stall, a swapped-out page) ticks not at all, so a deposed leader can go on answering
//! stale reads for a second or more after the others elected a new one (the Jepsen history
//! of 2026-12-06: reads of an isolated leader returned a value overwritten 65 ms earlier).
//!
//! The rule here, TiKV's: the lease runs for [`Lease::duration`] from the moment a message
//! was *sent* that a quorum then acknowledged — a heartbeat round (ReadIndex), or an append
//! (a proposal committed in this term). Why that is safe: a follower that acknowledged a
//! message sent at `t` heard from this leader at or after `t`, and with `check_quorum` it
//! refuses to vote for anyone (raft-rs `in_lease`) until `election_ticks` of its own ticks
//! have passed, which is at least `(election_ticks - 1) × tick` of real time (ticks are never
//! closer than one interval). Any new leader needs a vote from some member of that quorum,
//! so none exists before `t + (election_ticks - 1) × tick`; the lease stops at nine tenths of
//! that. Two holes close elsewhere: a replica that restarts forgets whom it heard from, so a
//! shard refuses votes for an election timeout after it starts (`handler`); and a leader
//! transfer lets the target be elected at once (`MsgTimeoutNow` skips `in_lease`), so
//! starting one [fences](Lease::fence) the lease: nothing sent before the fence renews it.

use std::time::{Duration, Instant};

/// A leader's read lease.
#[derive(Debug)]
pub struct Lease {
    /// How long a quorum acknowledgement keeps the lease.
    duration: Duration,
    /// The term the lease belongs to.
    term: u64,
    /// When it runs out (none: no lease).
    until: Option<Instant>,
    /// Acknowledgements of messages sent at or before this instant renew nothing.
    fenced_at: Option<Instant>,
    /// The renewal round in flight: its ReadIndex context and when it was sent.
    renewal: Option<(u64, Instant)>,
    /// When a read last asked for the lease (renewals only for ranges being read).
    last_read: Option<Instant>,
}

impl Lease {
    /// A lease with no time left, kept `duration` by each quorum acknowledgement.
    pub fn new(duration: Duration) -> Self {
        Self {
            duration,
            term: 0,
            until: None,
            fenced_at: None,
            renewal: None,
            last_read: None,
        }
    }

    /// The lease a quorum acknowledgement gives: nine tenths of the shortest time a follower
    /// that acknowledged refuses votes, `(election_ticks - 1)` tick intervals.
    pub fn duration(tick: Duration, election_ticks: usize) -> Duration {
        let ticks = u32::try_from(election_ticks.saturating_sub(1)).unwrap_or(u32::MAX);
        tick.saturating_mul(ticks) * 9 / 10
    }

    /// Whether the lease of `term` holds at `now`.
    pub fn holds(&self, term: u64, now: Instant) -> bool {
        self.term == term && self.until.is_some_and(|u| now < u)
    }

    /// A quorum acknowledged a message of `term` sent at `sent_at`: the lease holds until
    /// `sent_at + duration` (never shortened; a fenced send renews nothing).
    pub fn extend(&mut self, term: u64, sent_at: Instant) {
        if self.fenced_at.is_some_and(|f| sent_at <= f) {
            return;
        }
        if term != self.term {
            self.term = term;
            self.until = None;
        }
        let until = sent_at + self.duration;
        self.until = Some(self.until.map_or(until, |u| u.max(until)));
    }

    /// Ends the lease now: acknowledgements of messages sent until now renew nothing (a
    /// leader transfer may elect another replica at once).
    pub fn fence(&mut self, now: Instant) {
        self.until = None;
        self.fenced_at = Some(now);
        self.renewal = None;
    }

    /// Notes that a read wanted the lease at `now`.
    pub fn note_read(&mut self, now: Instant) {
        self.last_read = Some(now);
    }

    /// Whether to start a renewal round now: the range was read within the last two lease
    /// durations, the lease of `term` ends within half a duration (or has ended), and no
    /// round is in flight (one lost for a whole duration counts as gone).
    pub fn wants_renewal(&self, term: u64, now: Instant) -> bool {
        let read_lately = self
            .last_read
            .is_some_and(|r| now.saturating_duration_since(r) < self.duration * 2);
        let ending = !self.holds(term, now + self.duration / 2);
        let in_flight = self
            .renewal
            .is_some_and(|(_, at)| now.saturating_duration_since(at) < self.duration);
        read_lately && ending && !in_flight
    }

    /// Notes the renewal round `ctx` sent at `now`.
    pub fn start_renewal(&mut self, ctx: u64, now: Instant) {
        self.renewal = Some((ctx, now));
    }

    /// When the renewal round `ctx` was sent, if it is the one in flight (then no longer).
    pub fn take_renewal(&mut self, ctx: u64) -> Option<Instant> {
        match self.renewal {
            Some((c, at)) if c == ctx => {
                self.renewal = None;
                Some(at)
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: Duration = Duration::from_millis(800);

    #[test]
    fn the_duration_is_nine_tenths_of_the_vote_refusal() {
        assert_eq!(
            Lease::duration(Duration::from_millis(100), 10),
            Duration::from_millis(810)
        );
        assert_eq!(
            Lease::duration(Duration::from_millis(100), 1),
            Duration::ZERO
        );
    }

    #[test]
    fn a_new_lease_holds_nothing_until_a_quorum_acknowledges() {
        let mut l = Lease::new(D);
        let t0 = Instant::now();
        assert!(!l.holds(1, t0));
        l.extend(1, t0);
        assert!(l.holds(1, t0 + D / 2));
        assert!(!l.holds(1, t0 + D));
        assert!(!l.holds(2, t0), "a lease belongs to its term");
    }

    #[test]
    fn an_older_acknowledgement_never_shortens_the_lease() {
        let mut l = Lease::new(D);
        let t0 = Instant::now();
        l.extend(1, t0 + D / 2);
        l.extend(1, t0);
        assert!(l.holds(1, t0 + D));
    }

    #[test]
    fn a_fence_ends_the_lease_and_earlier_sends_renew_nothing() {
        let mut l = Lease::new(D);
        let t0 = Instant::now();
        l.extend(1, t0);
        l.fence(t0 + D / 4);
        assert!(!l.holds(1, t0 + D / 4));
        l.extend(1, t0 + D / 8);
        assert!(!l.holds(1, t0 + D / 4), "sent before the fence");
        l.extend(1, t0 + D / 2);
        assert!(l.holds(1, t0 + D));
    }

    #[test]
    fn a_new_term_starts_without_the_old_terms_lease() {
        let mut l = Lease::new(D);
        let t0 = Instant::now();
        l.extend(1, t0 + D);
        l.extend(2, t0);
        assert!(
            !l.holds(2, t0 + D + D / 2),
            "the term-1 deadline is not carried over"
        );
        assert!(l.holds(2, t0 + D / 2));
    }

    #[test]
    fn renewal_is_wanted_only_for_a_read_range_near_its_end_with_none_in_flight() {
        let mut l = Lease::new(D);
        let t0 = Instant::now();
        assert!(!l.wants_renewal(1, t0), "never read");
        l.note_read(t0);
        assert!(l.wants_renewal(1, t0));
        l.start_renewal(7, t0);
        assert!(!l.wants_renewal(1, t0), "one in flight");
        assert_eq!(l.take_renewal(8), None);
        assert_eq!(l.take_renewal(7), Some(t0));
        l.extend(1, t0);
        assert!(!l.wants_renewal(1, t0), "a whole lease ahead");
        assert!(l.wants_renewal(1, t0 + D / 2 + Duration::from_millis(1)));
        assert!(!l.wants_renewal(1, t0 + D * 3), "not read lately");
    }
}
