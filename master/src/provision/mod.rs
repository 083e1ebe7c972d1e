//! Provisioners: what the autoscaler asks for nodes and tells to stop them. Two
//! implementations: [`local::LocalSpawner`] starts and stops `tierkv ds` processes on this
//! machine (`tierkv dev --elastic`, tests); [`hook::CommandHook`] runs an operator's command
//! (e.g. `kubectl scale statefulset tierkv-ds --replicas={replicas}`) with its exit status
//! checked and a timeout.
//!
//! The calls block (a process spawn, a command run to completion): the service makes them on
//! a blocking thread, never with the core's lock held.

pub mod hook;
pub mod local;

use std::fmt;

use net::StoreId;

use crate::capacity::ProvisionId;

/// Ask for new nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartNodes {
    /// The capacity request.
    pub id: ProvisionId,
    /// How many new nodes.
    pub nodes: u32,
    /// Stores the cluster should have once they are up (for replica-count based hooks).
    pub target_stores: u32,
}

/// Stop a drained node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StopNode {
    /// The capacity request.
    pub id: ProvisionId,
    /// The store (it holds no replica any more).
    pub store: StoreId,
    /// Its address (first shard).
    pub addr: String,
    /// Stores the cluster should have once it is gone.
    pub target_stores: u32,
}

/// Why a provisioner call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProvisionError {
    /// The process or command could not be started.
    #[error("start {what}: {source}")]
    Spawn {
        /// What was started.
        what: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The command ran and failed.
    #[error("{what} exited with {status}: {stderr}")]
    Failed {
        /// The command.
        what: String,
        /// Its exit status.
        status: std::process::ExitStatus,
        /// The end of its standard error.
        stderr: String,
    },
    /// The command did not finish in time (it was killed).
    #[error("{what} did not finish within {timeout_ms} ms (killed)")]
    Timeout {
        /// The command.
        what: String,
        /// The limit.
        timeout_ms: u64,
    },
    /// This provisioner does not know the node.
    #[error("store {0} was not started by this provisioner")]
    UnknownNode(StoreId),
    /// Bounds or settings refuse the request.
    #[error("{0}")]
    Refused(String),
}

/// Starts and stops DS nodes.
pub trait Provisioner: Send + Sync + fmt::Debug {
    /// Name for logs and the admin page (`local`, `command`).
    fn name(&self) -> &'static str;
    /// Asks for `req.nodes` new nodes; returns once they are requested (they register with
    /// the master on their own).
    fn start_nodes(&self, req: &StartNodes) -> Result<(), ProvisionError>;
    /// Stops a drained node; returns once it is stopped or its stop was accepted.
    fn stop_node(&self, req: &StopNode) -> Result<(), ProvisionError>;
    /// Called once when the master stops: a provisioner that owns processes stops them.
    fn shutdown(&self) {}
}
