//! Per-command counters and latency histograms (hdrhistogram, microseconds), errors by
//! class, connection counters — reported by `INFO commandstats|latencystats|errorstats|stats`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use hdrhistogram::Histogram;

/// One command's figures.
#[derive(Debug)]
struct CmdStat {
    calls: u64,
    failed: u64,
    usec: u64,
    hist: Histogram<u64>,
}

impl CmdStat {
    fn new() -> Self {
        Self {
            calls: 0,
            failed: 0,
            usec: 0,
            // 1 µs .. 100 s, 2 significant digits; fits any latency we can see.
            hist: Histogram::new_with_bounds(1, 100_000_000, 2)
                .unwrap_or_else(|_| Histogram::new(2).unwrap_or_else(|_| unreachable_hist())),
        }
    }
}

fn unreachable_hist() -> Histogram<u64> {
    panic!("a histogram with valid constant bounds could not be built")
}

/// One command's completion, as the connection loop records it.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// Command name (table entry).
    pub name: &'static str,
    /// Latency in microseconds.
    pub usec: u64,
    /// The error class (first word of the error reply), if the reply was an error.
    pub error: Option<&'static str>,
}

/// One command's `LATENCY HISTOGRAM` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandHistogram {
    /// The command's stat name (`config|resetstat` for a subcommand).
    pub name: &'static str,
    /// Calls recorded.
    pub calls: u64,
    /// `(bucket upper bound in µs, replies at or under it)`, cumulative.
    pub buckets: Vec<(u64, u64)>,
}

/// The proxy's metrics.
#[derive(Debug, Default)]
pub struct Metrics {
    cmds: Mutex<BTreeMap<&'static str, CmdStat>>,
    errors: Mutex<BTreeMap<&'static str, u64>>,
    /// Connections accepted.
    pub connections: AtomicU64,
    /// Connections refused (max clients).
    pub rejected: AtomicU64,
    /// Commands processed.
    pub commands: AtomicU64,
}

impl Metrics {
    /// Records the commands of one pipeline batch (one lock for the batch).
    pub fn record(&self, samples: &[Sample]) {
        if samples.is_empty() {
            return;
        }
        self.commands
            .fetch_add(samples.len() as u64, Ordering::Relaxed);
        let mut cmds = self.cmds.lock().unwrap_or_else(|p| p.into_inner());
        let mut any_err = false;
        for s in samples {
            let c = cmds.entry(s.name).or_insert_with(CmdStat::new);
            c.calls += 1;
            c.usec += s.usec;
            c.hist.saturating_record(s.usec.max(1));
            if s.error.is_some() {
                c.failed += 1;
                any_err = true;
            }
        }
        drop(cmds);
        if any_err {
            let mut errors = self.errors.lock().unwrap_or_else(|p| p.into_inner());
            for class in samples.iter().filter_map(|s| s.error) {
                *errors.entry(class).or_default() += 1;
            }
        }
    }

    /// Records an error reply not tied to a table command (unknown command, protocol error).
    pub fn record_error(&self, class: &'static str) {
        let mut errors = self.errors.lock().unwrap_or_else(|p| p.into_inner());
        *errors.entry(class).or_default() += 1;
    }

    /// `CONFIG RESETSTAT`.
    pub fn reset(&self) {
        self.cmds.lock().unwrap_or_else(|p| p.into_inner()).clear();
        self.errors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    /// `cmdstat_<name>:calls=…,usec=…,usec_per_call=…,rejected_calls=0,failed_calls=…`.
    pub fn write_commandstats(&self, out: &mut String) {
        let cmds = self.cmds.lock().unwrap_or_else(|p| p.into_inner());
        for (name, c) in cmds.iter() {
            let per = c.usec as f64 / c.calls.max(1) as f64;
            let _ = write!(
                out,
                "cmdstat_{name}:calls={},usec={},usec_per_call={per:.2},rejected_calls=0,\
                 failed_calls={}\r\n",
                c.calls, c.usec, c.failed
            );
        }
    }

    /// `latency_percentiles_usec_<name>:p50=…,p99=…,p99.9=…`.
    pub fn write_latencystats(&self, out: &mut String) {
        let cmds = self.cmds.lock().unwrap_or_else(|p| p.into_inner());
        for (name, c) in cmds.iter() {
            let q = |p: f64| c.hist.value_at_quantile(p);
            let _ = write!(
                out,
                "latency_percentiles_usec_{name}:p50={},p99={},p99.9={}\r\n",
                q(0.5),
                q(0.99),
                q(0.999)
            );
        }
    }

    /// `errorstat_<CLASS>:count=…`.
    pub fn write_errorstats(&self, out: &mut String) {
        let errors = self.errors.lock().unwrap_or_else(|p| p.into_inner());
        for (class, n) in errors.iter() {
            let _ = write!(out, "errorstat_{class}:count={n}\r\n");
        }
    }

    /// `LATENCY HISTOGRAM`: for each command `pick` accepts (by its stat name), its calls
    /// and the cumulative count of replies by Redis's buckets — 1,024 ns doubling, each named
    /// by its highest value in µs — skipping buckets that add nothing.
    pub fn histograms(&self, pick: impl Fn(&str) -> bool) -> Vec<CommandHistogram> {
        let cmds = self.cmds.lock().unwrap_or_else(|p| p.into_inner());
        cmds.iter()
            .filter(|(name, _)| pick(name))
            .map(|(name, c)| CommandHistogram {
                name,
                calls: c.calls,
                buckets: cumulative_buckets(&c.hist),
            })
            .collect()
    }

    /// Calls of one command so far (tests, INFO).
    pub fn calls(&self, name: &str) -> u64 {
        let cmds = self.cmds.lock().unwrap_or_else(|p| p.into_inner());
        cmds.get(name).map_or(0, |c| c.calls)
    }
}

impl Metrics {
    /// The Prometheus text exposition of the command figures (`proxy_commands_total`,
    /// `proxy_command_failures_total`, `proxy_command_duration_seconds` as a summary with
    /// p50/p99/p99.9, `proxy_errors_total` by class).
    pub fn write_prometheus(&self, out: &mut String) {
        let cmds = self.cmds.lock().unwrap_or_else(|p| p.into_inner());
        out.push_str("# TYPE proxy_commands_total counter\n");
        for (name, c) in cmds.iter() {
            let _ = writeln!(out, "proxy_commands_total{{cmd=\"{name}\"}} {}", c.calls);
        }
        out.push_str("# TYPE proxy_command_failures_total counter\n");
        for (name, c) in cmds.iter() {
            let _ = writeln!(
                out,
                "proxy_command_failures_total{{cmd=\"{name}\"}} {}",
                c.failed
            );
        }
        out.push_str("# TYPE proxy_command_duration_seconds summary\n");
        for (name, c) in cmds.iter() {
            for q in [0.5, 0.99, 0.999] {
                let v = c.hist.value_at_quantile(q) as f64 / 1e6;
                let _ = writeln!(
                    out,
                    "proxy_command_duration_seconds{{cmd=\"{name}\",quantile=\"{q}\"}} {v}"
                );
            }
            let _ = writeln!(
                out,
                "proxy_command_duration_seconds_sum{{cmd=\"{name}\"}} {}",
                c.usec as f64 / 1e6
            );
            let _ = writeln!(
                out,
                "proxy_command_duration_seconds_count{{cmd=\"{name}\"}} {}",
                c.calls
            );
        }
        drop(cmds);
        let errors = self.errors.lock().unwrap_or_else(|p| p.into_inner());
        out.push_str("# TYPE proxy_errors_total counter\n");
        for (class, n) in errors.iter() {
            let _ = writeln!(out, "proxy_errors_total{{class=\"{class}\"}} {n}");
        }
    }
}

/// The cumulative counts of `hist` (µs) at Redis's `LATENCY HISTOGRAM` bucket bounds.
fn cumulative_buckets(hist: &Histogram<u64>) -> Vec<(u64, u64)> {
    let total = hist.len();
    let mut out = Vec::new();
    let mut previous = 0;
    for k in 0..64 {
        let Some(upper_ns) = 1u64.checked_shl(k).and_then(|p| p.checked_mul(1024)) else {
            break;
        };
        let upper_us = (upper_ns - 1) / 1000;
        let n = hist.count_between(0, upper_us);
        if n > previous {
            out.push((upper_us, n));
            previous = n;
        }
        if n >= total {
            break;
        }
    }
    out
}

/// The class of an error reply: its first word if it is one of Redis's, else `ERR`.
pub fn error_class(text: &str) -> &'static str {
    const CLASSES: &[&str] = &[
        "ERR",
        "WRONGTYPE",
        "NOAUTH",
        "WRONGPASS",
        "NOPROTO",
        "BUSY",
        "OOM",
    ];
    let first = text.split(' ').next().unwrap_or("");
    CLASSES
        .iter()
        .find(|c| **c == first)
        .copied()
        .unwrap_or("ERR")
}
