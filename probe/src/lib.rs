//! `probe`: the failure-detection probe of a tierkv cluster (`tierkv probe`, DESIGN §7).
//!
//! Every round (default each second) a probe reads the stores from the master's route table,
//! pings every DS shard and the master with a deadline, and sends the master one
//! [`ProbeReport`](net::message::ProbeReport): which shards answered and how fast. The
//! master's failure detector (`master::detector`) combines the reports of several probes,
//! placed in different zones, with the nodes' heartbeats.
//!
//! Modules: [`config`] (settings), [`pinger`] (the [`Pinger`] capability and its `net`
//! implementation), [`round`] (one round: targets, pings, report), [`run`] (the loop).
//!
//! Dependencies: `net` (tokio transport) only. Threading: a tokio task; one round at a time;
//! pings of a round run concurrently, at most `max_parallel` at once.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod config;
pub mod pinger;
pub mod round;
pub mod run;

pub use config::ProbeConfig;
pub use pinger::{NetPinger, PingError, Pinger};
pub use round::{ProbeError, ProbeStats};
pub use run::run;
