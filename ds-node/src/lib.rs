//! `ds-node`: the storage node. One pinned glommio executor per core (a *shard*) owning its
//! ranges, their Raft groups, its shard log and its engine (see `docs/ARCHITECTURE.md` and
//! `docs/guides/ds-node.md`).
//!
//! Modules:
//! - [`keyspace`]: how Redis keys map to internal keys (DESIGN §2).
//! - [`range`]: the runtime-free range state machine — [`range::apply`] executes every
//!   `KvOp` against a [`range::store::KvStore`]; [`range::engine`] is the Masstree-backed
//!   store; [`range::storage`] the in-memory raft-rs `Storage`; [`range::codec`] the bytes
//!   ds-node writes into the shard log.
//! - [`server`]: a shard — recovery, the ready loop (group commit across all Raft groups),
//!   request handling — in three layers whose imports point down only: the shard state,
//!   one module per operation, the ready loop and the handler on top (its header).
//! - [`worker`]: master heartbeats and bootstrap; [`load`]: the reads and writes per range
//!   the heartbeats report (a leaf: no imports from this crate).
//! - [`core`]: glommio glue (the only module naming glommio).
//! - [`config`], [`node`]: settings and [`run`]; [`admin`]: `GET /metrics`.
//! - [`offline`]: the contents of a stopped node's data directory (replica comparisons).
//!
//! Dependencies: `net`, `engines`, `nvme`. This crate must never depend on tokio.
//! Threading: a range belongs to one shard; shards share nothing mutable (each talks to peers
//! and the master over TCP); inside a shard state is `Rc`/`RefCell`, never borrowed across
//! an `.await`.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

/// A failpoint of the `fail` crate named `name` (`ds_node::shard::<operation>::<point>`,
/// listed in `docs/guides/ds-node.md`), compiled in with the `failpoints` feature only:
/// without it the macro expands to nothing. With a closure, a `return` action makes the
/// enclosing function return the closure's value.
macro_rules! failpoint {
    ($name:literal) => {
        #[cfg(feature = "failpoints")]
        fail::fail_point!($name);
    };
    ($name:literal, $on_return:expr) => {
        #[cfg(feature = "failpoints")]
        fail::fail_point!($name, $on_return);
    };
}
pub(crate) use failpoint;

pub mod admin;
pub mod config;
pub mod core;
pub mod keyspace;
pub mod load;
pub mod node;
pub mod offline;
pub mod range;
pub mod server;
pub mod worker;

pub use config::{CheckpointMode, DsConfig};
pub use node::{NodeHandle, run};
