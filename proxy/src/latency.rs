//! `LATENCY`: Redis's latency monitor for this proxy. A command whose reply took at least
//! `latency-monitor-threshold` milliseconds (0, the default: off) is a sample of the event
//! `command`, or `fast-command` for the commands flagged `fast`; each event keeps its last
//! 160 samples, one per second (the worst of that second), and its all-time high —
//! `LATENCY HISTORY / LATEST / GRAPH / DOCTOR / RESET`. `LATENCY HISTOGRAM` answers from the
//! per-command histograms of [`crate::metrics`].
//!
//! The time is the command's own execution ([`crate::timing`]: its dispatch and its shard
//! round trip, not its wait behind earlier commands of its batch nor a blocking command's
//! time blocked), as for `SLOWLOG`. The threshold is one atomic load per command; the mutex
//! is taken only for a sample.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;

use crate::metrics::Metrics;
use crate::resp::Reply;

/// Samples kept per event (Redis's `LATENCY_TS_LEN`).
const SERIES_LEN: usize = 160;
/// Columns of `LATENCY GRAPH`.
const GRAPH_COLUMNS: usize = 80;
/// Rows of `LATENCY GRAPH`'s sparkline.
const GRAPH_ROWS: usize = 4;

/// One second's worst latency of an event.
#[derive(Debug, Clone, Copy, Default)]
struct Point {
    /// Unix seconds; 0: the slot is empty.
    time: u64,
    /// Milliseconds.
    latency: u64,
}

/// An event's samples, a ring of [`SERIES_LEN`] seconds.
#[derive(Debug)]
struct Series {
    points: [Point; SERIES_LEN],
    /// The slot the next new second goes to.
    next: usize,
    /// All-time high (ms).
    max: u64,
}

impl Series {
    fn new() -> Self {
        Self {
            points: [Point::default(); SERIES_LEN],
            next: 0,
            max: 0,
        }
    }

    /// Adds `latency` ms at `now`: within the second of the last sample only its worst is kept.
    fn add(&mut self, now: u64, latency: u64) {
        self.max = self.max.max(latency);
        let last = &mut self.points[(self.next + SERIES_LEN - 1) % SERIES_LEN];
        if last.time == now {
            last.latency = last.latency.max(latency);
            return;
        }
        self.points[self.next] = Point { time: now, latency };
        self.next = (self.next + 1) % SERIES_LEN;
    }

    /// The samples, oldest first.
    fn samples(&self) -> impl Iterator<Item = Point> + '_ {
        (0..SERIES_LEN)
            .map(|j| self.points[(self.next + j) % SERIES_LEN])
            .filter(|p| p.time != 0)
    }

    fn latest(&self) -> Point {
        self.points[(self.next + SERIES_LEN - 1) % SERIES_LEN]
    }
}

/// The proxy's latency monitor.
#[derive(Debug, Default)]
pub struct LatencyMonitor {
    /// `latency-monitor-threshold` (ms; 0: off).
    threshold_ms: AtomicU64,
    events: Mutex<BTreeMap<&'static str, Series>>,
}

impl LatencyMonitor {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<&'static str, Series>> {
        self.events
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// `latency-monitor-threshold` in milliseconds (0: off).
    pub fn threshold_ms(&self) -> u64 {
        self.threshold_ms.load(Ordering::Relaxed)
    }

    /// Sets `latency-monitor-threshold` (ms; 0 turns the monitor off).
    pub fn set_threshold_ms(&self, ms: u64) {
        self.threshold_ms.store(ms, Ordering::Relaxed);
    }

    /// One command's reply time; a sample of `command` (`fast-command` when `fast()`, asked
    /// only then) when it reaches the threshold.
    pub fn command(&self, usec: u64, fast: impl FnOnce() -> bool) {
        let threshold = self.threshold_ms();
        let ms = usec / 1000;
        if threshold == 0 || ms < threshold {
            return;
        }
        let event = if fast() { "fast-command" } else { "command" };
        self.add(event, ms, unix_secs());
    }

    fn add(&self, event: &'static str, ms: u64, now: u64) {
        self.lock()
            .entry(event)
            .or_insert_with(Series::new)
            .add(now, ms);
    }

    /// Forgets `event` (every event when `None`); how many were forgotten.
    fn reset(&self, event: Option<&[u8]>) -> usize {
        let mut events = self.lock();
        let before = events.len();
        events.retain(|name, _| event.is_some_and(|e| !name.as_bytes().eq_ignore_ascii_case(e)));
        before - events.len()
    }

    fn history(&self, event: &[u8]) -> Reply {
        let events = self.lock();
        let Some(series) = find(&events, event) else {
            return Reply::Array(Vec::new());
        };
        let pairs = series.samples().map(|p| {
            Reply::Array(vec![
                Reply::Int(as_int(p.time)),
                Reply::Int(as_int(p.latency)),
            ])
        });
        Reply::Array(pairs.collect())
    }

    fn latest(&self) -> Reply {
        let events = self.lock();
        let rows = events.iter().map(|(name, s)| {
            let p = s.latest();
            Reply::Array(vec![
                Reply::Bulk(Bytes::from_static(name.as_bytes())),
                Reply::Int(as_int(p.time)),
                Reply::Int(as_int(p.latency)),
                Reply::Int(as_int(s.max)),
            ])
        });
        Reply::Array(rows.collect())
    }

    fn graph(&self, event: &[u8]) -> Reply {
        let events = self.lock();
        let Some((name, series)) = events
            .iter()
            .find(|(name, _)| name.as_bytes().eq_ignore_ascii_case(event))
        else {
            return Reply::err(format_args!(
                "No samples available for event '{}'",
                String::from_utf8_lossy(event)
            ));
        };
        Reply::Verbatim(Bytes::from(graph(name, series, unix_secs())))
    }

    fn doctor(&self, slower_than_us: i64) -> Reply {
        let events = self.lock();
        Reply::Verbatim(Bytes::from(doctor(
            &events,
            self.threshold_ms(),
            slower_than_us,
            unix_secs(),
        )))
    }
}

fn find<'a>(events: &'a BTreeMap<&'static str, Series>, event: &[u8]) -> Option<&'a Series> {
    events
        .iter()
        .find(|(name, _)| name.as_bytes().eq_ignore_ascii_case(event))
        .map(|(_, s)| s)
}

fn as_int(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn unix_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `LATENCY GRAPH`: a title line, a rule, then a sparkline of the samples (oldest first,
/// [`GRAPH_ROWS`] rows, each column labelled with how long ago its sample was).
fn graph(event: &str, series: &Series, now: u64) -> String {
    let samples: Vec<Point> = series.samples().collect();
    let low = samples.iter().map(|p| p.latency).min().unwrap_or(0);
    let high = samples.iter().map(|p| p.latency).max().unwrap_or(0);
    let mut out = format!(
        "{event} - high {high} ms, low {low} ms (all time high {} ms)\n{}\n",
        series.max,
        "-".repeat(GRAPH_COLUMNS)
    );
    let labels: Vec<String> = samples.iter().map(|p| ago(now, p.time)).collect();
    for (i, chunk) in samples.chunks(GRAPH_COLUMNS).enumerate() {
        if i > 0 {
            out.push('\n');
        }
        let labels = &labels[i * GRAPH_COLUMNS..i * GRAPH_COLUMNS + chunk.len()];
        sparkline(&mut out, chunk, labels, (low, high));
    }
    out
}

/// How long ago `then` was: `12s`, `3m`, `5h`, `2d`.
fn ago(now: u64, then: u64) -> String {
    let secs = now.saturating_sub(then);
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m", secs / 60),
        3600..86_400 => format!("{}h", secs / 3600),
        _ => format!("{}d", secs / 86_400),
    }
}

/// Renders `points` as a filled sparkline of [`GRAPH_ROWS`] rows scaled to `(low, high)`,
/// then a blank line and the labels written downwards, one character per row.
fn sparkline(out: &mut String, points: &[Point], labels: &[String], (low, high): (u64, u64)) {
    const FILL: [char; 3] = ['_', 'o', '#'];
    let levels = FILL.len() * GRAPH_ROWS;
    let span = (high - low).max(1) as f64;
    let step = |p: &Point| {
        let s = ((p.latency - low) as f64 * levels as f64 / span) as usize;
        s.min(levels - 1)
    };
    for row in 0..GRAPH_ROWS {
        // Row 0 is the top: it shows only the highest levels.
        let floor = (GRAPH_ROWS - row - 1) * FILL.len();
        let line: String = points
            .iter()
            .map(|p| match step(p).checked_sub(floor) {
                Some(i) if i < FILL.len() => FILL[i],
                Some(_) => '|',
                None => ' ',
            })
            .collect();
        out.push_str(&line);
        out.push('\n');
    }
    out.push_str(&" ".repeat(points.len()));
    out.push('\n');
    let longest = labels.iter().map(String::len).max().unwrap_or(0);
    for k in 0..longest {
        let line: String = labels
            .iter()
            .map(|l| l.as_bytes().get(k).map_or(' ', |&c| char::from(c)))
            .collect();
        out.push_str(&line);
        out.push('\n');
    }
}

/// One event's figures over its samples (Redis's `analyzeLatencyForEvent`).
struct EventStats {
    samples: u64,
    avg: u64,
    /// Mean absolute deviation from `avg`.
    mad: u64,
    /// Seconds since the oldest sample, at least 1.
    period: u64,
}

fn analyze(series: &Series, now: u64) -> EventStats {
    let points: Vec<Point> = series.samples().collect();
    let n = points.len() as u64;
    let sum: u64 = points.iter().map(|p| p.latency).sum();
    let avg = sum.checked_div(n).unwrap_or(0);
    let dev: u64 = points.iter().map(|p| p.latency.abs_diff(avg)).sum();
    let oldest = points.iter().map(|p| p.time).min().unwrap_or(now);
    EventStats {
        samples: n,
        avg,
        mad: dev.checked_div(n).unwrap_or(0),
        period: now.saturating_sub(oldest).max(1),
    }
}

/// `LATENCY DOCTOR`: each event's figures and what to look at.
fn doctor(
    events: &BTreeMap<&'static str, Series>,
    threshold_ms: u64,
    slower_than_us: i64,
    now: u64,
) -> String {
    if events.is_empty() {
        return if threshold_ms == 0 {
            "Latency monitoring is disabled in this proxy. Use \"CONFIG SET \
             latency-monitor-threshold <milliseconds>\" to enable it.\n"
                .into()
        } else {
            "No latency spike was observed on this proxy so far.\n".into()
        };
    }
    let mut out = String::from("Latency spikes observed on this proxy:\n\n");
    for (i, (name, series)) in events.iter().enumerate() {
        let s = analyze(series, now);
        let _ = writeln!(
            out,
            "{}. {name}: {} latency spikes (average {}ms, mean deviation {}ms, period {:.2} \
             sec). Worst all time event {}ms.",
            i + 1,
            s.samples,
            s.avg,
            s.mad,
            s.period as f64 / s.samples.max(1) as f64,
            series.max
        );
    }
    out.push_str("\nWhat to look at:\n");
    out.push_str(
        "- A command's time here is its reply time through the proxy: the round trip to the \
         shards and the Raft commit of a write are in it. `INFO latencystats` and \
         `LATENCY HISTOGRAM` show the distribution per command; a DS node's /metrics shows \
         its log flush and apply times (ds_log_flush_seconds, ds_raft_propose_apply_seconds).\n",
    );
    if slower_than_us < 0 {
        out.push_str(
            "- The slow log is off: `CONFIG SET slowlog-log-slower-than 10000` records which \
             commands were slow.\n",
        );
    } else {
        out.push_str("- `SLOWLOG GET` lists the slow commands with their arguments.\n");
    }
    if events.contains_key("fast-command") {
        out.push_str(
            "- O(1) commands were slow: look at the machine's load, the DS nodes' disks and \
             the network between the proxy and the shards.\n",
        );
    }
    out
}

/// `LATENCY <subcommand> ...`.
pub fn command(
    mon: &LatencyMonitor,
    metrics: &Metrics,
    slower_than_us: i64,
    args: &[Bytes],
) -> Reply {
    let Some(sub) = args.get(1) else {
        return Reply::err("wrong number of arguments for 'latency' command");
    };
    let sub_lc = String::from_utf8_lossy(sub).to_ascii_lowercase();
    let arity_ok = match sub_lc.as_str() {
        "history" | "graph" => args.len() == 3,
        "latest" | "doctor" | "help" => args.len() == 2,
        "reset" | "histogram" => true,
        _ => {
            return Reply::err(format_args!(
                "unknown subcommand '{}'. Try LATENCY HELP.",
                String::from_utf8_lossy(sub)
            ));
        }
    };
    if !arity_ok {
        return Reply::err(format_args!(
            "wrong number of arguments for 'latency|{sub_lc}' command"
        ));
    }
    match sub_lc.as_str() {
        "history" => mon.history(&args[2]),
        "graph" => mon.graph(&args[2]),
        "latest" => mon.latest(),
        "doctor" => mon.doctor(slower_than_us),
        "reset" if args.len() == 2 => Reply::Int(as_int(mon.reset(None) as u64)),
        "reset" => {
            let n: usize = args[2..].iter().map(|e| mon.reset(Some(e))).sum();
            Reply::Int(as_int(n as u64))
        }
        "histogram" => histogram(metrics, &args[2..]),
        _ => Reply::Array(HELP.iter().map(|l| Reply::Simple(l)).collect()),
    }
}

/// `LATENCY HISTOGRAM [command ...]`: per command, its calls and the cumulative count of
/// replies by power-of-two time bucket (Redis's buckets: 1,024 ns doubling, in µs).
fn histogram(metrics: &Metrics, names: &[Bytes]) -> Reply {
    let wanted: Vec<String> = names
        .iter()
        .map(|n| String::from_utf8_lossy(n).to_ascii_lowercase())
        .collect();
    let pick = |stat: &str| {
        wanted.is_empty()
            || wanted.iter().any(|w| {
                w == stat
                    || stat
                        .split_once('|')
                        .is_some_and(|(container, _)| container == w)
            })
    };
    let rows = metrics.histograms(pick).into_iter().map(|h| {
        let (name, calls) = (h.name, h.calls);
        let buckets = h
            .buckets
            .into_iter()
            .map(|(usec, n)| (Reply::Int(as_int(usec)), Reply::Int(as_int(n))))
            .collect();
        let body = Reply::Map(vec![
            (
                Reply::Bulk(Bytes::from_static(b"calls")),
                Reply::Int(as_int(calls)),
            ),
            (
                Reply::Bulk(Bytes::from_static(b"histogram_usec")),
                Reply::Map(buckets),
            ),
        ]);
        (Reply::Bulk(Bytes::from_static(name.as_bytes())), body)
    });
    Reply::Map(rows.collect())
}

const HELP: &[&str] = &[
    "LATENCY <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "DOCTOR",
    "    Return a human readable latency analysis report.",
    "GRAPH <event>",
    "    Return an ASCII latency graph for the <event> class.",
    "HISTORY <event>",
    "    Return time-latency samples for the <event> class.",
    "LATEST",
    "    Return the latest latency samples for all events.",
    "RESET [<event> ...]",
    "    Reset latency data of one or more <event> classes.",
    "    (default: reset all data for all event classes)",
    "HISTOGRAM [COMMAND ...]",
    "    Return a cumulative distribution of latencies in the format of a histogram for the specified command names.",
    "    If no commands are specified then all histograms are replied.",
    "HELP",
    "    Prints this help.",
];

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    #[test]
    fn samples_under_the_threshold_or_with_it_off_are_not_recorded() {
        let m = LatencyMonitor::default();
        m.command(900_000, || false);
        assert!(m.lock().is_empty(), "threshold 0 is off");
        m.set_threshold_ms(100);
        m.command(99_999, || false);
        assert!(m.lock().is_empty());
        m.command(100_000, || true);
        assert_eq!(
            m.lock().keys().copied().collect::<Vec<_>>(),
            ["fast-command"]
        );
    }

    #[test]
    fn one_second_keeps_its_worst_sample_and_the_ring_keeps_the_last_160() {
        let m = LatencyMonitor::default();
        m.add("command", 5, 1000);
        m.add("command", 9, 1000);
        m.add("command", 7, 1000);
        let events = m.lock();
        let s = &events["command"];
        assert_eq!(
            s.samples().map(|p| (p.time, p.latency)).collect::<Vec<_>>(),
            [(1000, 9)]
        );
        drop(events);
        for t in 0..400 {
            m.add("command", t, 2000 + t);
        }
        let events = m.lock();
        let s = &events["command"];
        let times: Vec<u64> = s.samples().map(|p| p.time).collect();
        assert_eq!(times.len(), SERIES_LEN);
        assert_eq!(times.first(), Some(&(2400 - SERIES_LEN as u64)));
        assert_eq!(times.last(), Some(&2399));
        assert_eq!(s.max, 399);
    }

    #[test]
    fn reset_counts_the_events_it_forgets_whatever_their_case() {
        let m = LatencyMonitor::default();
        m.add("command", 5, 1);
        m.add("fast-command", 5, 1);
        assert_eq!(m.reset(Some(b"nope")), 0);
        assert_eq!(m.reset(Some(b"COMMAND")), 1);
        assert_eq!(m.reset(None), 1);
        assert_eq!(m.reset(None), 0);
    }

    #[test]
    fn history_latest_and_errors_answer_as_redis() {
        let m = LatencyMonitor::default();
        let metrics = Metrics::default();
        let run = |a: &[&str]| {
            let args: Vec<Bytes> = a.iter().map(|s| b(s)).collect();
            command(&m, &metrics, 10_000, &args)
        };
        assert_eq!(
            run(&["latency", "history", "command"]),
            Reply::Array(vec![])
        );
        m.add("command", 250, 1_700_000_000);
        assert_eq!(
            run(&["latency", "history", "command"]),
            Reply::Array(vec![Reply::Array(vec![
                Reply::Int(1_700_000_000),
                Reply::Int(250)
            ])])
        );
        assert_eq!(
            run(&["latency", "latest"]),
            Reply::Array(vec![Reply::Array(vec![
                Reply::Bulk(b("command")),
                Reply::Int(1_700_000_000),
                Reply::Int(250),
                Reply::Int(250),
            ])])
        );
        assert_eq!(
            run(&["latency", "help", "xxx"]),
            Reply::err("wrong number of arguments for 'latency|help' command")
        );
        assert_eq!(
            run(&["latency", "nope"]),
            Reply::err("unknown subcommand 'nope'. Try LATENCY HELP.")
        );
        assert_eq!(
            run(&["latency", "graph", "blabla"]),
            Reply::err("No samples available for event 'blabla'")
        );
    }

    #[test]
    fn the_graph_scales_samples_between_low_and_high_and_labels_their_age() {
        let mut s = Series::new();
        s.add(100, 300);
        s.add(101, 400);
        s.add(102, 500);
        let g = graph("command", &s, 110);
        let lines: Vec<&str> = g.lines().collect();
        assert_eq!(
            lines[0],
            "command - high 500 ms, low 300 ms (all time high 500 ms)"
        );
        assert_eq!(lines[1], "-".repeat(GRAPH_COLUMNS));
        // The lowest sample sits on the bottom row, the highest reaches the top one.
        assert_eq!(lines[2].chars().nth(2), Some('#'));
        assert_eq!(lines[2].chars().next(), Some(' '));
        assert_eq!(lines[5].chars().next(), Some('_'));
        // Ages 10s, 9s, 8s written downwards.
        assert_eq!(lines[7], "198");
        assert_eq!(lines[8], "0ss");
        assert_eq!(lines[9], "s  ");
    }

    #[test]
    fn the_doctor_reports_each_event_and_says_when_monitoring_is_off() {
        let m = LatencyMonitor::default();
        let text = |r: Reply| match r {
            Reply::Verbatim(t) => String::from_utf8(t.to_vec()).unwrap(),
            other => panic!("{other:?}"),
        };
        assert!(text(m.doctor(10_000)).contains("disabled"));
        m.add("command", 300, unix_secs());
        m.add("command", 500, unix_secs() + 1);
        let report = text(m.doctor(-1));
        assert!(
            report.contains("1. command: 2 latency spikes (average 400ms, mean deviation 100ms"),
            "{report}"
        );
        assert!(report.contains("slow log is off"), "{report}");
    }
}
