//! Checks shared by the benchmark tests: every report file of a run parses.
#![allow(clippy::unwrap_used, dead_code)] // a test fails by panicking

use std::path::Path;
use std::time::SystemTime;

use bench_harness::report;
use bench_harness::runner::RunResult;
use hdrhistogram::serialization::Deserializer;
use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};

/// Writes every report of `result` under `prefix` and checks that each parses: the `.hgrm`
/// has the standard header, percentiles and footer; the JSON has every field; the interval
/// log decodes and holds every operation; the SVG is one document with a line per operation
/// kind.
pub fn must_write_parseable_reports(result: &RunResult, prefix: &Path, started: SystemTime) {
    let ops: u64 = result.histograms.values().map(|h| h.len()).sum();
    let files = report::write_all(result, prefix, started).unwrap();
    assert!(report::summary(result).contains("throughput"));
    for (kind, h) in &result.histograms {
        let text =
            std::fs::read_to_string(format!("{}.{}.hgrm", prefix.display(), kind.name())).unwrap();
        check_hgrm(&text, h.len());
    }
    check_json(
        &std::fs::read_to_string(prefix.with_extension("json")).unwrap(),
        result,
    );
    check_hlog(&std::fs::read(prefix.with_extension("hlog")).unwrap(), ops);
    let svg = std::fs::read_to_string(prefix.with_extension("svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    assert_eq!(svg.matches("<polyline").count(), result.histograms.len());
    assert_eq!(files.len(), 3 + result.histograms.len());
}

fn check_hgrm(text: &str, count: u64) {
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["Value", "Percentile", "TotalCount", "1/(1-Percentile)"]
    );
    let rows: Vec<Vec<f64>> = text
        .lines()
        .skip(2)
        .take_while(|l| !l.starts_with('#'))
        .map(|l| l.split_whitespace().map(|f| f.parse().unwrap()).collect())
        .collect();
    assert!(rows.len() > 5);
    assert!(
        rows.windows(2)
            .all(|w| w[0][0] <= w[1][0] && w[0][1] <= w[1][1])
    );
    let last = rows.last().unwrap();
    assert_eq!(last[1], 1.0);
    assert_eq!(last[2] as u64, count);
    assert!(text.contains("#[Mean    =") && text.contains(&format!("Total count    = {count:12}")));
}

fn check_json(text: &str, result: &RunResult) {
    let v: serde_json::Value = serde_json::from_str(text).unwrap();
    for field in [
        "workload",
        "target",
        "records",
        "operations",
        "value_size",
        "connections",
        "pipeline",
        "rate",
        "seed",
        "elapsed_sec",
        "throughput_ops_per_sec",
        "errors",
        "read_misses",
        "machine",
        "ops",
    ] {
        assert!(v.get(field).is_some(), "JSON lacks {field}");
    }
    for (kind, h) in &result.histograms {
        let op = &v["ops"][kind.name()];
        assert_eq!(op["count"].as_u64(), Some(h.len()));
        for f in [
            "throughput_ops_per_sec",
            "mean_ms",
            "p50_ms",
            "p90_ms",
            "p99_ms",
            "p999_ms",
            "max_ms",
        ] {
            assert!(op[f].is_number(), "JSON ops.{}.{f}", kind.name());
        }
    }
}

fn check_hlog(bytes: &[u8], ops: u64) {
    let mut total = 0;
    let mut de = Deserializer::new();
    for entry in IntervalLogIterator::new(bytes) {
        if let LogEntry::Interval(h) = entry.unwrap() {
            let raw = base64_decode(h.encoded_histogram());
            let hist: hdrhistogram::Histogram<u64> = de.deserialize(&mut &raw[..]).unwrap();
            total += hist.len();
        }
    }
    assert_eq!(total, ops, "the interval log holds every operation");
}

fn base64_decode(s: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0);
    for c in s.bytes().filter(|&c| c != b'=') {
        let v = ALPHABET.iter().position(|&a| a == c).unwrap() as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}
