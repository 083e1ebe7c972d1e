//! `proxy`: the stateless Redis front end (tokio) that routes commands to DS shards.
//!
//! Modules:
//! - [`resp`]: RESP2/RESP3 request parsing (multibulk and inline, with Redis 7's limits) and
//!   reply encoding for either protocol version. Sans-IO: bytes in, commands out.
//! - [`server`]: the listener and the per-connection loop (pipelining in batches, replies in
//!   order, output bounds, max clients, graceful shutdown).
//! - [`cmd`]: the command table and the translation of each Redis command into `net`
//!   operations and back into Redis replies (its layers: the header of `cmd`).
//! - [`exec`]: the commands a connection runs alone with its session (EXEC, WATCH,
//!   FLUSHALL, MSETNX, FUNCTION) and the multi-round ones inside `EXEC`; above `cmd`.
//! - [`blocking`]: blocking commands (BLPOP...): waiters per key, woken by writes and polls.
//! - [`glob`]: Redis's glob patterns (KEYS/SCAN/HSCAN MATCH, CONFIG GET), linear-time.
//! - [`db`]: the connection's database (`SELECT`) applied to the operations it sends.
//! - [`route`]: the cached route table, shard connection pool and retries.
//! - [`keyspace`]: the hash slot and metadata-entry key a Redis key routes by.
//! - [`key_counts`]: keys per database summed over the ranges (`DBSIZE`, `INFO keyspace`).
//! - [`mesh`]: the links to the other proxies of the cluster (found through the master's
//!   directory): pub/sub across proxies and cross-proxy wake-ups of blocked pops.
//! - [`metrics`]: per-command counters and latency histograms for `INFO`.
//! - [`timing`]: what a command's time is (its own execution: dispatch, round trip,
//!   attempts), for `SLOWLOG`, `INFO commandstats` and the latency histograms.
//!
//! Dependencies: `net` only. This crate must never depend on `engines`, `nvme` or glommio.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod acl;
pub mod blocking;
pub mod clients;
pub mod cmd;
pub mod config_rewrite;
pub mod db;
pub mod encodings;
pub mod exec;
pub mod expired;
pub mod fault;
pub mod functions;
pub mod glob;
pub mod key_counts;
pub mod keyspace;
pub mod latency;
pub mod memory;
pub mod memory_cache;
pub mod mesh;
pub mod metrics;
pub mod monitor;
pub mod notify;
pub mod pack;
pub mod pause;
pub mod pubsub;
pub mod rdb;
pub mod resp;
pub mod route;
pub mod script_cache;
pub mod script_value;
pub mod server;
pub mod settings;
pub mod shared;
pub mod slowlog;
pub mod sockets;
pub mod timing;
pub mod tracking;
pub mod unblock;
pub mod waiters;

pub use server::{ProxyConfig, Shared, serve, serve_metrics};
