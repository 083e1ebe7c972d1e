//! The same workload against two targets, alternating A and B for several rounds, because
//! the machines are shared and noisy: only ratios measured side by side mean anything.

use crate::runner::{RunConfig, RunResult, load, run};

/// One round's figures.
#[derive(Debug, Clone)]
pub struct Round {
    /// Throughput of A, ops/s.
    pub a: f64,
    /// Throughput of B, ops/s.
    pub b: f64,
    /// p99 latency of A's reads (or its first op kind), µs.
    pub a_p99_us: u64,
    /// p99 latency of B's, µs.
    pub b_p99_us: u64,
}

impl Round {
    /// Throughput ratio A / B.
    pub fn ratio(&self) -> f64 {
        self.a / self.b.max(1e-9)
    }
}

/// The median of a non-empty slice (upper median for even lengths).
pub fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s.get(s.len() / 2).copied().unwrap_or(f64::NAN)
}

fn p99(r: &RunResult) -> u64 {
    r.histograms
        .values()
        .next()
        .map_or(0, |h| h.value_at_percentile(99.0))
}

/// Loads both targets (if `load_first`), then runs `rounds` alternating rounds (A then B,
/// then B then A, …, so neither always goes first).
pub async fn compare(
    a: &RunConfig,
    b: &RunConfig,
    rounds: usize,
    load_first: bool,
) -> anyhow::Result<Vec<Round>> {
    if load_first {
        load(a).await?;
        load(b).await?;
    }
    let mut out = Vec::with_capacity(rounds);
    for i in 0..rounds.max(1) {
        let (ra, rb) = if i % 2 == 0 {
            let ra = run(a).await?;
            (ra, run(b).await?)
        } else {
            let rb = run(b).await?;
            (run(a).await?, rb)
        };
        out.push(Round {
            a: ra.throughput(),
            b: rb.throughput(),
            a_p99_us: p99(&ra),
            b_p99_us: p99(&rb),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_rounds() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 3.0);
    }
}
