//! `proxy`: the stateless Redis front end (tokio) that routes commands to DS shards.
//!
//! Modules:
//! - [`resp`]: RESP2/RESP3 request parsing (multibulk and inline, with Redis 7's limits) and
//!   reply encoding for either protocol version. Sans-IO: bytes in, commands out.
//!
//! Still to come (issue 8): the connection loop, command translation to `net` operations,
//! routing with a cached route table, and the multi-range commands.
//!
//! Dependencies: `net` only. This crate must never depend on `engines`, `nvme` or glommio.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod resp;
