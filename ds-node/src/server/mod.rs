//! A shard: its ranges (Raft groups), shard log, engine, listener, ready loop and workers.
//!
//! # Layers
//!
//! Imports point one way, down this list (TiKV raftstore-v2 style); a module imports only
//! modules of its own or a lower layer, never one above it:
//!
//! 1. **Shard state** (leaves): `shard` ([`Shard`], `ShardState`, new Raft groups, replica
//!    addresses, the clock edge), `clock` (the shard's monotonic clock: real, or moved by a
//!    test), `checkpoint_store` (the file operations behind
//!    checkpoints: the file system, or a crashable memory directory for tests), `peer` (one range's Raft group and waiting requests), `lease` (a leader's read lease),
//!    `metrics`, `gc_metrics` and `arena_metrics` (figures), `policy_state` (the memory policy's budget and
//!    loads in flight), `throttle_state` (writes waiting for memory, their figures),
//!    `transfers` (snapshot transfers in and out), `validate` (Raft
//!    messages checked before raft-rs sees them). They import `range`, `config`, `load` and
//!    lower leaves only (`shard` → `peer` → `transfers`, `lease`, `throttle_state`; `metrics` →
//!    `policy_state` → `throttle_state`, `clock`; `metrics` → `gc_metrics`, `arena_metrics`, `validate`), never an
//!    operation.
//! 2. **Operations**, each taking the state it needs: `checkpoint` (checkpoints on disk, log
//!    compaction), `cold` (loads of cold values before an apply), `demote` (making entries
//!    cold), `log_room` (whether the shard log can take the ready loop's next group
//!    commit), `index_checkpoint` (index-mode checkpoints into the key index), `disk_limit` (`maxdisksize`), `throttle` (new writes wait for memory above
//!    the `maxmemory` line), `policy` (the memory policy's task), `gc_move` and `gc` (the
//!    log garbage collector), `transport` (peer connections and Raft batches), `snapshot` (snapshots streamed and installed), `split` (range splits),
//!    `conf_change` (membership changes, replica destruction), `read` (lease and ReadIndex
//!    reads), `write` (proposals), `ttl` (expiry sweeps), `apply` (committed entries
//!    applied by kind, for the ready loop and recovery), `recover` (opening a shard,
//!    recovering and creating ranges), `figures` (the shard's figures for the admin thread). Within the layer an operation may call one listed
//!    before it, never one after it (e.g. `snapshot` uses `transport`, `cold` and
//!    `checkpoint`; `recover` uses `split` and `conf_change`). An operation that must tell
//!    the layer above something returns it (`apply::Effects`: the ready loop appends the
//!    records, creates the right ranges of splits and destroys removed replicas).
//! 3. **Drivers** (the top): `ready` (the one ready loop per shard: group commit across all
//!    groups, apply, answers) and `handler` (requests from clients and peers). Nothing in
//!    `server` imports them; `crate::node` starts them.
//!
//! # Visibility
//!
//! The shard state's fields are `pub(super)` ([`Shard`], `ShardState`: the operations here
//! read and change them directly) or private (`Peer`: changed only through its methods, named
//! after what callers do). Code outside `server` (the heartbeat worker, `crate::node`,
//! `crate::offline`, the tests) reaches the state through methods only (`Shard::state`,
//! `ShardState::peers`, `Shard::shutdown`, ...). Ranges, replicas and stores are
//! `net::RangeId`, `net::ReplicaId` and `net::StoreId` in every signature here.

pub mod apply;
pub mod arena_metrics;
pub mod checkpoint;
pub mod checkpoint_store;
pub mod clock;
pub mod cold;
pub mod conf_change;
pub mod demote;
pub mod disk_limit;
pub mod fence;
pub mod figures;
pub mod gc;
pub mod gc_metrics;
pub mod gc_move;
pub mod handler;
pub mod index_checkpoint;
pub mod lease;
pub mod log_room;
pub mod merge;
pub mod metrics;
pub mod peer;
pub mod policy;
pub mod policy_state;
pub mod read;
pub mod ready;
pub mod recover;
pub mod shard;
pub mod snapshot;
pub mod split;
pub mod throttle;
pub mod throttle_state;
pub mod transfers;
pub mod transport;
pub mod ttl;
pub mod validate;
pub mod write;

pub use metrics::ShardMetrics;
pub use shard::{Shard, ShardDevice};
