//! `engines`: the storage engines of a shard — the engine boundary (`engine`: the `Engine`
//! trait the range state machine applies to, the `BTreeMap` model engine and the Masstree
//! engine, all checked by `tests/engine_conformance.rs`), the Masstree hot tier (`masstree`),
//! the shard log (`vlog`: Raft log and value log in one, `docs/format/shard-log.md`), the LSM
//! key index (`lsm`, `docs/format/key-index.md`) and the tiering policy (`tiered`, later).
//! `segments` shares one segment store between the shard log and the key index. `pointer`
//! holds `LogPointer` and `SegmentId`, which all of them use.
//!
//! Imports point one way: `engine` → `masstree` → `pointer`; `lsm` → `segments` →
//! `vlog::SharedDevice`; `lsm` uses the types of `vlog` (`RangeId`, `LogIndex`); `vlog` and
//! `lsm` use `pointer`; nothing imports `engine` or `lsm`.
//!
//! Dependencies: `nvme` only. This crate must never depend on `net`, `ds-node` or tokio.
//! Threading: every structure here is owned by one shard (one thread); nothing is `Sync`.
#![deny(unsafe_code)]

pub mod engine;
pub mod lsm;
pub mod masstree;
pub mod pointer;
pub mod segments;
pub mod vlog;
