//! Reports of a run: a text summary, `.hgrm` percentile distributions (the format of
//! HdrHistogram's `outputPercentileDistribution`), an HdrHistogram interval log, JSON, and an
//! SVG plot of latency by percentile.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::Context;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::V2DeflateSerializer;
use hdrhistogram::serialization::interval_log::{IntervalLogWriterBuilder, Tag};
use serde_json::json;

use crate::runner::RunResult;

/// Percentiles of the text summary.
const SUMMARY: [f64; 4] = [50.0, 90.0, 99.0, 99.9];

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// The text summary: throughput, then one line per operation kind.
pub fn summary(r: &RunResult) -> String {
    let mut s = String::new();
    let cfg = &r.config;
    let mode = match cfg.rate {
        Some(rate) => format!("open loop at {rate:.0} ops/s"),
        None => format!("closed loop, pipeline {}", cfg.pipeline),
    };
    let _ = writeln!(
        s,
        "workload {} on {}: {} ops, {} records of {} B, {} connections, {mode}",
        cfg.workload.name, cfg.target, cfg.operations, cfg.records, cfg.value_size, cfg.connections
    );
    let _ = writeln!(
        s,
        "throughput {:.0} ops/s over {:.2} s; errors {}, read misses {}",
        r.throughput(),
        r.elapsed.as_secs_f64(),
        r.errors,
        r.misses
    );
    let _ = writeln!(
        s,
        "{:8} {:>10} {:>12} {:>10} {:>10} {:>10} {:>10} {:>10}",
        "op", "count", "ops/s", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "max ms"
    );
    for (kind, h) in &r.histograms {
        let _ = write!(
            s,
            "{:8} {:>10} {:>12.0}",
            kind.name(),
            h.len(),
            h.len() as f64 / r.elapsed.as_secs_f64().max(1e-9)
        );
        for p in SUMMARY {
            let _ = write!(s, " {:>10.3}", ms(h.value_at_percentile(p)));
        }
        let _ = writeln!(s, " {:>10.3}", ms(h.max()));
    }
    s
}

/// A percentile distribution in the `.hgrm` format, values in milliseconds.
pub fn hgrm(h: &Histogram<u64>) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:>12} {:>14} {:>10} {:>14}\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    );
    let mut total = 0u64;
    for v in h.iter_quantiles(5) {
        let q = v.quantile_iterated_to();
        let value = ms(v.value_iterated_to());
        total += v.count_since_last_iteration();
        if q < 1.0 {
            let _ = writeln!(
                s,
                "{value:12.3} {q:2.12} {total:10} {:14.2}",
                1.0 / (1.0 - q)
            );
        } else {
            let _ = writeln!(s, "{value:12.3} {q:2.12} {total:10}");
        }
    }
    let _ = writeln!(
        s,
        "#[Mean    = {:12.3}, StdDeviation   = {:12.3}]",
        h.mean() / 1000.0,
        h.stdev() / 1000.0
    );
    let _ = writeln!(
        s,
        "#[Max     = {:12.3}, Total count    = {:12}]",
        ms(h.max()),
        h.len()
    );
    let _ = writeln!(
        s,
        "#[Buckets = {:12}, SubBuckets     = {:12}]",
        h.buckets(),
        (2 * 10u64.pow(h.sigfig().into())).next_power_of_two()
    );
    s
}

/// The JSON report: configuration, machine, and per-operation figures.
pub fn json(r: &RunResult) -> serde_json::Value {
    let cfg = &r.config;
    let ops: serde_json::Map<String, serde_json::Value> = r
        .histograms
        .iter()
        .map(|(kind, h)| {
            (
                kind.name().to_string(),
                json!({
                    "count": h.len(),
                    "throughput_ops_per_sec": h.len() as f64 / r.elapsed.as_secs_f64().max(1e-9),
                    "mean_ms": h.mean() / 1000.0,
                    "p50_ms": ms(h.value_at_percentile(50.0)),
                    "p90_ms": ms(h.value_at_percentile(90.0)),
                    "p99_ms": ms(h.value_at_percentile(99.0)),
                    "p999_ms": ms(h.value_at_percentile(99.9)),
                    "max_ms": ms(h.max()),
                }),
            )
        })
        .collect();
    json!({
        "workload": cfg.workload.name,
        "target": cfg.target,
        "records": cfg.records,
        "operations": cfg.operations,
        "value_size": cfg.value_size,
        "connections": cfg.connections,
        "pipeline": cfg.pipeline,
        "rate": cfg.rate,
        "seed": cfg.seed,
        "elapsed_sec": r.elapsed.as_secs_f64(),
        "throughput_ops_per_sec": r.throughput(),
        "errors": r.errors,
        "read_misses": r.misses,
        "machine": {
            "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
            "kernel": std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim(),
        },
        "ops": ops,
    })
}

/// An SVG plot of latency (ms, y) by percentile (x, log scale of 1/(1-q)), one line per
/// operation kind.
pub fn svg(r: &RunResult) -> String {
    let (w, h, pad) = (800.0, 480.0, 60.0);
    let max_x = 5.0f64; // up to 99.999 %
    let max_ms = r
        .histograms
        .values()
        .map(|hist| ms(hist.max()))
        .fold(0.001f64, f64::max);
    let x = |q: f64| pad + (w - 2.0 * pad) * ((1.0 / (1.0 - q.min(0.99999))).log10() / max_x);
    let y = |v: f64| h - pad - (h - 2.0 * pad) * (v / max_ms);
    let colours = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e"];
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
    );
    let _ = writeln!(
        s,
        "<text x=\"{pad}\" y=\"24\" font-size=\"14\">{} on {}: latency by percentile</text>",
        r.config.workload.name, r.config.target
    );
    for (i, label) in ["0%", "90%", "99%", "99.9%", "99.99%", "99.999%"]
        .iter()
        .enumerate()
    {
        let xi = pad + (w - 2.0 * pad) * (i as f64 / max_x);
        let _ = writeln!(
            s,
            "<line x1=\"{xi:.1}\" y1=\"{pad}\" x2=\"{xi:.1}\" y2=\"{:.1}\" stroke=\"#ddd\"/><text x=\"{xi:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{label}</text>",
            h - pad,
            h - pad + 18.0
        );
    }
    let _ = writeln!(
        s,
        "<text x=\"12\" y=\"{pad}\">{max_ms:.2} ms</text><text x=\"12\" y=\"{:.1}\">0 ms</text>",
        h - pad
    );
    for (i, (kind, hist)) in r.histograms.iter().enumerate() {
        let points: Vec<String> = hist
            .iter_quantiles(5)
            .map(|v| {
                format!(
                    "{:.1},{:.1}",
                    x(v.quantile_iterated_to()),
                    y(ms(v.value_iterated_to()))
                )
            })
            .collect();
        let colour = colours[i % colours.len()];
        let _ = writeln!(
            s,
            "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\" points=\"{}\"/>",
            points.join(" ")
        );
        let _ = writeln!(
            s,
            "<text x=\"{:.1}\" y=\"{:.1}\" fill=\"{colour}\">{}</text>",
            w - pad - 60.0,
            pad + 16.0 * (i as f64 + 1.0),
            kind.name()
        );
    }
    s.push_str("</svg>\n");
    s
}

/// The HdrHistogram interval log: one tagged histogram per operation kind per interval.
pub fn interval_log(r: &RunResult, start: SystemTime) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut serializer = V2DeflateSerializer::new();
    let mut writer = IntervalLogWriterBuilder::new()
        .add_comment("tierkv bench interval log; values in microseconds")
        .with_start_time(start)
        .with_base_time(start)
        .with_max_value_divisor(1000.0)
        .begin_log_with(&mut out, &mut serializer)
        .context("begin interval log")?;
    let len = r.config.interval;
    for (i, hists) in r.intervals.iter().enumerate() {
        for (kind, h) in hists {
            let tag = Tag::new(kind.name());
            writer
                .write_histogram(h, len * i as u32, len, tag)
                .map_err(|e| anyhow::anyhow!("write interval histogram: {e:?}"))?;
        }
    }
    drop(writer);
    Ok(out)
}

/// Writes every report file as `<prefix>.json`, `<prefix>.svg`, `<prefix>.hlog` and
/// `<prefix>.<op>.hgrm`; returns their paths.
pub fn write_all(r: &RunResult, prefix: &Path, start: SystemTime) -> anyhow::Result<Vec<PathBuf>> {
    let with = |ext: &str| {
        let mut p = prefix.as_os_str().to_owned();
        p.push(ext);
        PathBuf::from(p)
    };
    let mut files = Vec::new();
    let mut put = |path: PathBuf, bytes: &[u8]| -> anyhow::Result<()> {
        std::fs::write(&path, bytes).with_context(|| format!("write {}", path.display()))?;
        files.push(path);
        Ok(())
    };
    put(
        with(".json"),
        serde_json::to_string_pretty(&json(r))?.as_bytes(),
    )?;
    put(with(".svg"), svg(r).as_bytes())?;
    put(with(".hlog"), &interval_log(r, start)?)?;
    for (kind, h) in &r.histograms {
        put(with(&format!(".{}.hgrm", kind.name())), hgrm(h).as_bytes())?;
    }
    Ok(files)
}

/// Formats a duration for logs.
pub fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}
