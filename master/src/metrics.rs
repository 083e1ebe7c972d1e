//! RPC counters and latency histograms, rendered in the Prometheus text format.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Duration;

use hdrhistogram::Histogram;

/// Counters and a latency histogram (µs, 3 significant digits) of one RPC kind.
#[derive(Debug, Clone)]
pub struct RpcStats {
    /// Requests handled.
    pub total: u64,
    /// Requests answered with an error.
    pub errors: u64,
    /// Handling latency, microseconds.
    pub latency_us: Histogram<u64>,
}

impl RpcStats {
    fn new() -> Self {
        Self {
            total: 0,
            errors: 0,
            latency_us: Histogram::new_with_bounds(1, 60_000_000, 3)
                .expect("constant bounds are valid"),
        }
    }
}

/// Per-RPC statistics of one master.
#[derive(Debug, Default)]
pub struct Metrics {
    rpcs: Mutex<BTreeMap<&'static str, RpcStats>>,
}

impl Metrics {
    /// Records one request of kind `name`.
    pub fn record(&self, name: &'static str, elapsed: Duration, error: bool) {
        let mut rpcs = self.rpcs.lock().unwrap_or_else(|p| p.into_inner());
        let s = rpcs.entry(name).or_insert_with(RpcStats::new);
        s.total += 1;
        if error {
            s.errors += 1;
        }
        let us = (elapsed.as_micros() as u64).clamp(1, 60_000_000);
        s.latency_us.saturating_record(us);
    }

    /// A copy of the statistics of every RPC kind seen.
    pub fn snapshot(&self) -> BTreeMap<&'static str, RpcStats> {
        self.rpcs.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The Prometheus text exposition: `master_rpc_total`, `master_rpc_errors_total` and
    /// `master_rpc_duration_seconds` quantiles, labelled by message kind.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let snap = self.snapshot();
        let _ = writeln!(out, "# TYPE master_rpc_total counter");
        for (k, s) in &snap {
            let _ = writeln!(out, "master_rpc_total{{kind=\"{k}\"}} {}", s.total);
        }
        let _ = writeln!(out, "# TYPE master_rpc_errors_total counter");
        for (k, s) in &snap {
            let _ = writeln!(out, "master_rpc_errors_total{{kind=\"{k}\"}} {}", s.errors);
        }
        let _ = writeln!(out, "# TYPE master_rpc_duration_seconds summary");
        for (k, s) in &snap {
            for q in [0.5, 0.99, 0.999] {
                let v = s.latency_us.value_at_quantile(q) as f64 / 1e6;
                let _ = writeln!(
                    out,
                    "master_rpc_duration_seconds{{kind=\"{k}\",quantile=\"{q}\"}} {v}"
                );
            }
            let _ = writeln!(
                out,
                "master_rpc_duration_seconds_count{{kind=\"{k}\"}} {}",
                s.total
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorded_requests_show_in_the_text_exposition() {
        let m = Metrics::default();
        m.record("TsoRequest", Duration::from_micros(40), false);
        m.record("TsoRequest", Duration::from_micros(60), true);
        let text = m.render();
        assert!(
            text.contains("master_rpc_total{kind=\"TsoRequest\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("master_rpc_errors_total{kind=\"TsoRequest\"} 1"),
            "{text}"
        );
        assert_eq!(m.snapshot()["TsoRequest"].latency_us.len(), 2);
    }
}
