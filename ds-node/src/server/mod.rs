//! A shard: its ranges (Raft groups), shard log, engine, listener, ready loop and workers.
//!
//! - `shard`: [`Shard`] — state, opening and recovery (replay of the shard log).
//! - `peer`: one range's Raft group and its waiting requests.
//! - `ready`: the one ready loop per shard (group commit across all groups).
//! - `handler`: requests from clients and peers (`KvRequest`, `RaftBatch`).
//! - `metrics`: counters and histograms.

pub mod handler;
pub mod metrics;
pub mod peer;
pub mod ready;
pub mod shard;

pub use metrics::ShardMetrics;
pub use shard::Shard;
