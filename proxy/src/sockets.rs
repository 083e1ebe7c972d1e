//! Connections this proxy opens to other Redis-protocol servers — `MIGRATE` targets —
//! cached per `host:port` and closed after [`IDLE`] unused (Redis's
//! `migrate_cached_sockets`). A connection is taken out while in use, so two clients never
//! share one.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::io::BufReader;
use tokio::net::TcpStream;

/// How long a cached connection to a target may stay unused (Redis: 10 s).
pub const IDLE: Duration = Duration::from_secs(10);
/// Most cached connections (Redis: 64); the oldest is closed for a new one.
pub const MAX_SOCKETS: usize = 64;

/// A cached connection and the database it has selected.
#[derive(Debug)]
pub struct Cached {
    /// The connection.
    pub conn: BufReader<TcpStream>,
    /// The database it has selected (`None`: not known).
    pub db: Option<i64>,
    /// When it was last used.
    pub last_use: Instant,
}

/// Connections to migration targets, shared by the proxy's clients.
#[derive(Debug, Default)]
pub struct Sockets {
    cached: Mutex<HashMap<String, Cached>>,
}

impl Sockets {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Cached>> {
        self.cached.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Cached connections now (`INFO` `migrate_cached_sockets`), after closing idle ones.
    pub fn count(&self) -> usize {
        let mut c = self.lock();
        c.retain(|_, s| s.last_use.elapsed() < IDLE);
        c.len()
    }

    /// The cached connection to `target`, taken out of the cache.
    pub fn take(&self, target: &str) -> Option<Cached> {
        let mut c = self.lock();
        c.retain(|_, s| s.last_use.elapsed() < IDLE);
        c.remove(target)
    }

    /// Puts a connection (back) in the cache.
    pub fn put(&self, target: String, mut s: Cached) {
        s.last_use = Instant::now();
        let mut c = self.lock();
        if c.len() >= MAX_SOCKETS {
            let oldest = c
                .iter()
                .min_by_key(|(_, s)| s.last_use)
                .map(|(k, _)| k.clone());
            oldest.map(|k| c.remove(&k));
        }
        c.insert(target, s);
    }
}
