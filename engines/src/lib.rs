//! `engines`: the storage engines of a shard — the Masstree hot tier (`masstree`), the shard log
//! (`vlog`: Raft log and value log in one, `docs/format/shard-log.md`), the LSM key index
//! (`lsm`, `docs/format/key-index.md`) and the tiering policy (`tiered`, later). `segments`
//! shares one segment store between the shard log and the key index.
//!
//! Imports point one way: `lsm` → `segments` → `vlog::SharedDevice`; `lsm` uses the types of
//! `masstree` (`LogPointer`) and `vlog` (`RangeId`, `LogIndex`); nothing imports `lsm`.
//!
//! Dependencies: `nvme` only. This crate must never depend on `net`, `ds-node` or tokio.
//! Threading: every structure here is owned by one shard (one thread); nothing is `Sync`.
#![deny(unsafe_code)]

pub mod lsm;
pub mod masstree;
pub mod segments;
pub mod vlog;
