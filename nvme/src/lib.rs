//! `nvme`: block devices (`uring`, `spdk`, `mem`, `faulty`) and the segment store on top.
//!
//! Dependencies: no workspace crate. This crate must never depend on tokio, `net` or `engines`.
#![deny(unsafe_code)]
