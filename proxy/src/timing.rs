//! How long each command of a connection took to execute, for `SLOWLOG`, `INFO
//! commandstats`, `LATENCY HISTOGRAM` / `INFO latencystats` and the latency monitor — what
//! Redis times in `call()`: the command's own work, not the time it waited in the input
//! buffer or behind the commands before it.
//!
//! A command's time is the sum of
//!
//! - its parse and dispatch: from the clock read that ended the connection's previous step
//!   (the previous command's dispatch, a batch's round trips, the read of the input) to the
//!   read just after its dispatch ([`Stopwatch::lap`]: one clock read per command);
//! - for a data command, the round trip of the shard request(s) that carried its
//!   operations: from the start of the wave holding its first operation to the end of the
//!   wave holding its last ([`Waves::round_trip`]; a batch is usually one wave, whose round
//!   trip every command in it shares, and one clock read ends each wave);
//! - for a command run alone (`KEYS`, `SCAN`, `DEBUG SLEEP`, `EXEC`, …), its run;
//! - for a blocking command, its first attempt and the attempt that served it, not the time
//!   it was blocked ([`crate::blocking::Executed`]).
//!
//! Not counted: the read of the input, the commands before it in the batch, waves before
//! its own, waiting for a `CLIENT PAUSE` to end, building and encoding the reply from the
//! shard's results (microseconds), writing it to the socket.
// perf-critical: one clock read per command.

use std::time::{Duration, Instant};

/// The last clock read on a connection's command path.
#[derive(Debug, Clone, Copy)]
pub struct Stopwatch {
    mark: Instant,
}

impl Stopwatch {
    /// A stopwatch whose mark is now.
    pub fn new() -> Self {
        Self {
            mark: Instant::now(),
        }
    }

    /// The time since the last read, and a new mark (one clock read).
    pub fn lap(&mut self) -> Duration {
        let now = Instant::now();
        let took = now.saturating_duration_since(self.mark);
        self.mark = now;
        took
    }

    /// Moves the mark to now without timing anything (after a wait that is no command's).
    pub fn restart(&mut self) {
        self.mark = Instant::now();
    }

    /// The last clock read.
    pub fn mark(&self) -> Instant {
        self.mark
    }
}

impl Default for Stopwatch {
    fn default() -> Self {
        Self::new()
    }
}

/// One wave of a batch: the operations before `ops_end` not in an earlier wave, sent at
/// `from` and answered at `to`.
#[derive(Debug, Clone, Copy)]
struct Span {
    ops_end: usize,
    from: Instant,
    to: Instant,
}

/// The waves a batch ran in, in order (reused from batch to batch: no allocation once it
/// has held the most waves a batch needs).
#[derive(Debug, Default)]
pub struct Waves {
    spans: Vec<Span>,
}

impl Waves {
    /// Forgets the previous batch.
    pub fn clear(&mut self) {
        self.spans.clear();
    }

    /// Records that the operations up to `ops_end` (exclusive) ran in a wave sent at `from`
    /// and answered at `to`.
    pub fn push(&mut self, ops_end: usize, from: Instant, to: Instant) {
        debug_assert!(self.spans.last().is_none_or(|s| s.ops_end <= ops_end));
        self.spans.push(Span { ops_end, from, to });
    }

    /// The round trip of operations `first .. first + len`: from the start of the wave
    /// holding the first to the end of the wave holding the last (zero without operations).
    pub fn round_trip(&self, first: usize, len: usize) -> Duration {
        if len == 0 {
            return Duration::ZERO;
        }
        let wave_of = |op: usize| self.spans.partition_point(|s| s.ops_end <= op);
        let (Some(a), Some(b)) = (
            self.spans.get(wave_of(first)),
            self.spans.get(wave_of(first + len - 1)),
        ) else {
            return Duration::ZERO;
        };
        b.to.saturating_duration_since(a.from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_command_is_timed_by_the_waves_holding_its_operations_not_the_ones_before() {
        let t0 = Instant::now();
        let mut w = Waves::default();
        // Wave 1: ops 0..3, 0–10 ms; wave 2: ops 3..5, 10–30 ms; wave 3: op 5, 30–31 ms.
        w.push(3, t0, t0 + ms(10));
        w.push(5, t0 + ms(10), t0 + ms(30));
        w.push(6, t0 + ms(30), t0 + ms(31));
        assert_eq!(w.round_trip(0, 3), ms(10));
        assert_eq!(w.round_trip(2, 1), ms(10));
        assert_eq!(w.round_trip(3, 2), ms(20));
        // A command whose operations span waves 2 and 3.
        assert_eq!(w.round_trip(4, 2), ms(21));
        assert_eq!(w.round_trip(5, 1), ms(1));
        assert_eq!(w.round_trip(0, 6), ms(31));
    }

    #[test]
    fn a_command_without_operations_has_no_round_trip() {
        let t0 = Instant::now();
        let mut w = Waves::default();
        w.push(2, t0, t0 + ms(5));
        assert_eq!(w.round_trip(1, 0), Duration::ZERO);
        // Past the recorded waves (cannot happen in a batch): no time rather than a panic.
        assert_eq!(w.round_trip(7, 1), Duration::ZERO);
        w.clear();
        assert_eq!(w.round_trip(0, 1), Duration::ZERO);
    }

    #[test]
    fn a_lap_is_the_time_since_the_previous_read() {
        let mut s = Stopwatch::new();
        let before = s.mark();
        let lap = s.lap();
        assert!(s.mark() >= before);
        assert_eq!(s.mark().saturating_duration_since(before), lap);
    }
}
