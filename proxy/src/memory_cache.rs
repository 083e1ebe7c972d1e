//! The master's last answer about the cluster's memory, kept for [`CACHE_TTL`] (the
//! router holds it; [`crate::memory`] asks the master and fills it). Below the router.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use net::message::ClusterMemory;

/// How long an answer of the master is reused.
pub const CACHE_TTL: Duration = Duration::from_secs(1);

/// What the master answered last, and when.
#[derive(Debug, Default)]
pub struct MemoryCache {
    last: Mutex<Option<(Instant, ClusterMemory)>>,
}

impl MemoryCache {
    /// The last answer if it is younger than [`CACHE_TTL`].
    pub fn fresh(&self) -> Option<ClusterMemory> {
        let last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        last.filter(|(at, _)| at.elapsed() < CACHE_TTL)
            .map(|(_, m)| m)
    }

    /// The last answer whatever its age (when the master does not answer now).
    pub fn last(&self) -> Option<ClusterMemory> {
        let last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        last.map(|(_, m)| m)
    }

    /// Keeps `m` as the master's latest answer.
    pub(crate) fn store(&self, m: ClusterMemory) {
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = Some((Instant::now(), m));
    }
}
