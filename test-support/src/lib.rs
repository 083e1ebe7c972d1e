//! Test harnesses shared by the tests of ds-node, proxy and bench-harness; a dev-dependency
//! only, never a normal one.
//!
//! - [`master::start`]: the real master service in this process, on a thread and a tokio
//!   runtime of its own, listening on a free port of 127.0.0.1.
//! - [`redis::start`]: a `redis-server` child process on a free port, or `None` (with a
//!   printed reason) where `redis-server` is not installed.
//! - [`cluster::Cluster`]: master, three DS nodes and a proxy as child processes (optionally
//!   in network namespaces), for the Jepsen-style test and the failover benchmark.
//! - [`dev::Dev`]: `tierkv dev` as a child process, ready and killed on drop.
//! - [`procs`], [`http`], [`resp`]: child processes (killed on drop), JSON admin pages and a
//!   RESP client, for tests that run a cluster of `tierkv` processes.
//! - [`netns`]: network namespaces and a bridge, to partition those processes (root only).
//! - [`jepsen`]: the clients and the analysis of the Jepsen-style harness.
//! - [`lincheck`]: a per-key linearizability checker (register and counter models) for the
//!   histories of the Jepsen-style harness (`tests/jepsen.rs` of the root package).
//! - [`tempdir::TempDir`]: a data directory removed when dropped, even by a failing test.

pub mod cluster;
pub mod dev;
pub mod http;
pub mod jepsen;
pub mod lincheck;
pub mod master;
pub mod netns;
pub mod procs;
pub mod redis;
pub mod resp;
pub mod tempdir;
