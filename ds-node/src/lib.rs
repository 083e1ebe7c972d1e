//! `ds-node`: the storage node. One pinned glommio executor per core (a *shard*) owning its
//! ranges, their Raft groups, its shard log and its engine (see `docs/ARCHITECTURE.md`).
//!
//! Dependencies: `net`, `engines`, `nvme`. This crate must never depend on tokio.
//!
//! Status: not built yet (issue 7). The crate exists so that the workspace has its final shape.
#![forbid(unsafe_code)]
