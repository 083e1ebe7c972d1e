//! A shard: its ranges (Raft groups), shard log, engine, listener, ready loop and workers.
//!
//! - `shard`: [`Shard`] — state, opening and recovery (replay of the shard log).
//! - `peer`: one range's Raft group and its waiting requests.
//! - `ready`: the one ready loop per shard (group commit across all groups).
//! - `handler`: requests from clients and peers (`KvRequest`, `RaftBatch`).
//! - `metrics`: counters and histograms.
//! - `checkpoint`: range checkpoints on disk, log compaction and segment reclamation.
//! - `snapshot`: Raft snapshots streamed between nodes, and replicas created for them.
//! - `split`: range splits.
//! - `validate`: Raft messages from the network checked before raft-rs sees them.

pub mod checkpoint;
pub mod cold;
pub mod demote;
pub mod disk_limit;
pub mod gc;
pub mod gc_metrics;
pub mod gc_move;
pub mod handler;
pub mod metrics;
pub mod peer;
pub mod policy;
pub mod ready;
pub mod shard;
pub mod snapshot;
pub mod split;
pub mod validate;

pub use metrics::ShardMetrics;
pub use shard::Shard;
