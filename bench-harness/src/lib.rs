//! `bench-harness`: the benchmark driver behind `tierkv bench`.
//!
//! Modules:
//! - [`workload`]: YCSB core workloads A–F and plain `set`/`get` loops — operation mixes and
//!   key distributions ([`keys`]: uniform, scrambled zipfian, latest, as YCSB defines them).
//! - [`resp`]: a small pipelining RESP client over tokio TCP.
//! - [`runner`]: the load phase and the run phase: connections × pipeline depth, closed loop,
//!   or open loop at a target rate with latency measured from each request's intended start
//!   (no coordinated omission); hdrhistograms per operation type.
//! - [`report`]: text summary, `.hgrm` percentile files, an HdrHistogram interval log, JSON and
//!   an SVG latency-by-percentile plot.
//! - [`compare`]: the same workload against two targets in alternating rounds, with per-round
//!   ratios and their median.
//!
//! Targets: any RESP server (a tierkv proxy, `redis-server`, anything else). The native `net`
//! protocol straight to DS shards is not built yet (issue 9).
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod compare;
pub mod keys;
pub mod report;
pub mod resp;
pub mod runner;
pub mod workload;
