//! `master`: the cluster's metadata, TSO, routes and scheduler (a tokio service).
//!
//! Modules, bottom up:
//! - [`state`]: the deterministic state machine (stores, ranges, id and TSO high-water marks,
//!   config) and its [`state::Command`]s. No clock, no I/O.
//! - [`log`]: the durable command log + snapshot (`docs/format/master-log.md`) and recovery.
//! - [`tso`]: timestamp allocation against a persisted high-water mark (pure; time is a
//!   parameter).
//! - [`detector`]: the failure detector: node health from probe reports and heartbeats (pure;
//!   time is a parameter).
//! - [`capacity`]: capacity requests (`Provisioning` records) and the arithmetic that keeps
//!   concurrent expansions from over-committing (pure); [`autoscale`]: the autoscaler's
//!   thresholds, hysteresis and cool-down (pure).
//! - [`schedule`]: the pure scheduler: cluster view in, operator proposals with explanations
//!   out; checkers plug in through [`schedule::Checker`].
//! - [`core`]: the master's synchronous core: state + log + allocators + soft state
//!   (heartbeat stats, operators in flight); one `&mut` entry point per RPC.
//! - [`directory`]: the proxy directory, in memory with a TTL, never logged (pure; time is a
//!   parameter).
//! - [`service`]: the tokio side: the `net` handler, the server loop, the timer that runs the
//!   scheduler, TSO pre-allocation and snapshots; [`metrics`]: RPC counters and latencies;
//!   [`admin`]: the HTTP admin endpoint (`/health`, `/status`, `/stores`, `/ranges`,
//!   `/metrics`, `/scale`) and [`admin_ops`], its POST operations for `tierkv ctl`.
//! - [`provision`]: the `Provisioner` trait, a local `tierkv ds` spawner and an operator
//!   command hook (blocking calls, made off the core's lock).
//! - [`config`]: the `master.toml` file and its defaults; [`run`]: a whole master process
//!   (bind, serve, graceful shutdown on SIGTERM) for the `tierkv master` subcommand.
//!
//! Dependencies: `net` (tokio transport only). This crate must never depend on glommio,
//! `ds-node`, `engines` or `nvme` (checked by `scripts/check-deps`).
//!
//! Threading: [`core::Core`] sits behind one `std::sync::Mutex`; operations that write the
//! log (fsync) run under `spawn_blocking`, reads are served inline. The TSO fast path takes
//! only the allocator's own lock.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod admin;
pub mod admin_ops;
pub mod autoscale;
pub mod capacity;
mod codec;
pub mod config;
pub mod core;
pub mod detector;
pub mod directory;
pub mod json;
pub mod log;
pub mod metrics;
pub mod provision;
pub mod run;
pub mod schedule;
pub mod service;
pub mod state;
pub mod tso;
