//! `master`: the cluster's metadata, TSO, routes and scheduler (a tokio service).
//!
//! Dependencies: `net` only. This crate must never depend on glommio or `ds-node`.
//!
//! Status: not built yet (issue 6). The crate exists so that the workspace has its final shape.
#![forbid(unsafe_code)]
