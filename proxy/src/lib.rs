//! `proxy`: the stateless Redis front end (tokio) that routes commands to DS shards.
//!
//! Dependencies: `net` only. This crate must never depend on `engines`, `nvme` or glommio.
//!
//! Status: not built yet (issue 8). The crate exists so that the workspace has its final shape.
#![forbid(unsafe_code)]
