//! `ds-node`: the storage node. One pinned glommio executor per core (a *shard*) owning its
//! ranges, their Raft groups, its shard log and its engine (see `docs/ARCHITECTURE.md`).
//!
//! Modules built so far (issue 7 is in progress):
//! - [`keyspace`]: how Redis keys map to internal keys — the hash slot prefix, the metadata
//!   entry and one sub-key per hash field (DESIGN §2).
//! - [`range`]: the range state machine without a runtime: [`range::apply`] executes every
//!   client operation (`net::message::kv::KvOp`) against a [`range::store::KvStore`],
//!   deterministically, so every replica applying the same Raft entries reaches the same
//!   state.
//!
//! Still to come: the shards (glommio executors), Raft groups over the shard log, the
//! ready loop, listeners and workers.
//!
//! Dependencies: `net`, `engines`, `nvme`. This crate must never depend on tokio.
//! Threading: a range belongs to one shard; nothing here is shared between threads.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod keyspace;
pub mod range;
