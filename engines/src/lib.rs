//! `engines`: the storage engines of a shard — the Masstree hot tier (`masstree`), the shard log
//! (`vlog`: Raft log and value log in one, `docs/format/shard-log.md`), the LSM key index
//! (`lsm`, later) and the tiering policy (`tiered`, later).
//!
//! Dependencies: `nvme` only. This crate must never depend on `net`, `ds-node` or tokio.
//! Threading: every structure here is owned by one shard (one thread); nothing is `Sync`.
#![deny(unsafe_code)]

pub mod masstree;
pub mod vlog;
