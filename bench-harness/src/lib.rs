//! `bench-harness`: the benchmark driver behind `tierkv bench`.
//!
//! Modules:
//! - [`workload`]: YCSB core workloads A–F and plain `set`/`get` loops — operation mixes and
//!   key distributions ([`keys`]: uniform, scrambled zipfian, latest, as YCSB defines them).
//! - [`target`]: what a run talks to, behind one interface ([`target::Conn::exec`]): a RESP
//!   server, or the DS shards of a cluster over the native protocol.
//! - [`resp`]: a small pipelining RESP client over tokio TCP.
//! - [`native`]: routing by the master's route table, one client per shard address, retries
//!   on stale routes.
//! - [`runner`]: the load phase and the run phase: connections × pipeline depth, closed loop,
//!   or open loop at a target rate with latency measured from each request's intended start
//!   (no coordinated omission); hdrhistograms per operation type.
//! - [`report`]: text summary, `.hgrm` percentile files, an HdrHistogram interval log, JSON and
//!   an SVG latency-by-percentile plot.
//! - [`compare`]: the same workload against two targets in alternating rounds, with per-round
//!   ratios and their median.
//!
//! Targets: any RESP server (a tierkv proxy, `redis-server`, anything else) as `HOST:PORT`, or
//! `native://MASTER:PORT`: the native `net` protocol straight to the leader shards, as the
//! master's route table places them. Comparing the two on one cluster measures the proxy's
//! overhead.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod compare;
pub mod keys;
pub mod native;
pub mod op;
pub mod report;
pub mod resp;
pub mod runner;
pub mod target;
pub mod workload;
