//! A shard's load (`worker::heartbeat` reports it; `server::handler` counts into it): reads and writes (operations and bytes) served by each range it leads,
//! counted as requests arrive and turned into per-second rates once per heartbeat interval
//! (a window: the counts since the previous heartbeat, divided by its length).
//!
//! Pure (no clock: the interval is a parameter). Bounded: one entry per range that took a
//! request in the current window, and a shard leads a bounded number of ranges.

use std::collections::HashMap;

/// Requests counted in one window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Read requests.
    pub reads: u64,
    /// Write requests.
    pub writes: u64,
    /// Bytes of the read requests' keys.
    pub read_bytes: u64,
    /// Bytes of the write proposals.
    pub write_bytes: u64,
}

/// Per-second rates over one window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rates {
    /// Reads per second.
    pub reads: u64,
    /// Writes per second.
    pub writes: u64,
    /// Read bytes per second.
    pub read_bytes: u64,
    /// Write bytes per second.
    pub write_bytes: u64,
}

impl Counts {
    /// Adds `other` into these.
    pub fn add(&mut self, other: &Counts) {
        self.reads += other.reads;
        self.writes += other.writes;
        self.read_bytes += other.read_bytes;
        self.write_bytes += other.write_bytes;
    }

    /// These counts as rates over `window_ms` (at least 1 ms).
    pub fn per_sec(&self, window_ms: u64) -> Rates {
        let w = u128::from(window_ms.max(1));
        let rate = |n: u64| u64::try_from(u128::from(n) * 1000 / w).unwrap_or(u64::MAX);
        Rates {
            reads: rate(self.reads),
            writes: rate(self.writes),
            read_bytes: rate(self.read_bytes),
            write_bytes: rate(self.write_bytes),
        }
    }
}

/// The counts of the current window, per range.
#[derive(Debug, Default)]
pub struct LoadTracker {
    ranges: HashMap<u64, Counts>,
}

/// One closed window: the shard's counts and rates, and each range's rates.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Window {
    /// The whole shard's counts.
    pub counts: Counts,
    /// The whole shard.
    pub shard: Rates,
    /// Per range id (ranges without requests are absent).
    pub ranges: HashMap<u64, Rates>,
}

impl LoadTracker {
    /// Counts a read of `bytes` on `range`.
    pub fn read(&mut self, range: u64, bytes: usize) {
        let c = self.ranges.entry(range).or_default();
        c.reads += 1;
        c.read_bytes += bytes as u64;
    }

    /// Counts a write of `bytes` on `range`.
    pub fn write(&mut self, range: u64, bytes: usize) {
        self.writes(range, 1, bytes);
    }

    /// Counts `n` writes of `bytes` in all on `range` (a `Multi`'s: a pipeline's writes
    /// packed by the proxy load the range as much as they did one by one).
    pub fn writes(&mut self, range: u64, n: u64, bytes: usize) {
        let c = self.ranges.entry(range).or_default();
        c.writes += n;
        c.write_bytes += bytes as u64;
    }

    /// Closes the window that lasted `window_ms`: returns its rates and starts a new one.
    pub fn take(&mut self, window_ms: u64) -> Window {
        let mut total = Counts::default();
        let ranges = self
            .ranges
            .drain()
            .map(|(id, c)| {
                total.add(&c);
                (id, c.per_sec(window_ms))
            })
            .collect();
        Window {
            counts: total,
            shard: total.per_sec(window_ms),
            ranges,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_the_window_counts_per_second() {
        let mut t = LoadTracker::default();
        for _ in 0..300 {
            t.read(1, 10);
        }
        for _ in 0..100 {
            t.write(2, 1000);
        }
        t.write(1, 50);
        let w = t.take(500);
        assert_eq!(
            w.shard,
            Rates {
                reads: 600,
                writes: 202,
                read_bytes: 6000,
                write_bytes: 200_100,
            }
        );
        assert_eq!(w.ranges[&2].writes, 200);
        assert_eq!(w.ranges[&1].reads, 600);
        assert_eq!(w.ranges[&1].write_bytes, 100);
    }

    #[test]
    fn a_window_starts_empty_after_it_is_taken() {
        let mut t = LoadTracker::default();
        t.read(1, 1);
        assert_eq!(t.take(1000).shard.reads, 1);
        assert_eq!(t.take(1000), Window::default());
    }

    #[test]
    fn a_zero_window_does_not_divide_by_zero() {
        let mut t = LoadTracker::default();
        t.write(1, u64::MAX as usize);
        let w = t.take(0);
        assert_eq!(w.shard.writes, 1000);
        assert_eq!(w.shard.write_bytes, u64::MAX);
    }
}
