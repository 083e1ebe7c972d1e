//! The client side of the Jepsen-style harness (`tests/jepsen.rs` of the root package runs
//! the cluster and the nemesis):
//!
//! - [`workload`]: concurrent clients doing GET/SET on register keys and INCRBY/GET on
//!   counter keys through a RESP endpoint, each with a timeout, recording every operation's
//!   invocation, completion and outcome into a [`History`]; and the final reads.
//! - [`analysis`]: the verdict on a history — per-key linearizability ([`crate::lincheck`])
//!   and, separately, that no acknowledged write was lost in the final state.

pub mod analysis;
pub mod workload;

pub use analysis::{Analysis, analyse};
pub use workload::{History, Workload, final_reads, run_client};
