//! `bench-harness`: YCSB workloads, RESP and native clients, hdrhistogram reports and peer
//! comparisons.
//!
//! Status: not built yet (issue 9). The crate exists so that the workspace has its final shape.
#![forbid(unsafe_code)]
