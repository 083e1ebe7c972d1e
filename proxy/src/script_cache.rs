//! The proxy's script cache (`SCRIPT LOAD`, `EVALSHA`): SHA1 → body, bounded by bytes; the
//! oldest script goes first when a new one would not fit. Per proxy, as Redis Cluster's cache
//! is per node: `EVALSHA` of a script this proxy has not seen answers `NOSCRIPT`, and clients
//! fall back to `EVAL` (which caches it).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use bytes::Bytes;

/// The default bound of the cache.
pub const DEFAULT_MAX_BYTES: usize = 64 << 20;

/// SHA1 (lower-case hex) → script body.
#[derive(Debug)]
pub struct ScriptCache {
    max_bytes: usize,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    bodies: HashMap<String, Bytes>,
    /// Insertion order, oldest first (entries flushed or evicted may linger: skipped).
    order: VecDeque<String>,
    bytes: usize,
}

impl ScriptCache {
    /// An empty cache of at most `max_bytes` of scripts.
    pub fn new(max_bytes: usize) -> Self {
        Self {
            max_bytes,
            inner: Mutex::new(Inner::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves the map consistent (each update is one
        // insert or remove): keep serving.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Caches `body` under `sha`; a body larger than the whole cache is not kept.
    pub fn insert(&self, sha: String, body: Bytes) {
        if body.len() > self.max_bytes {
            return;
        }
        let mut inner = self.lock();
        if inner.bodies.contains_key(&sha) {
            return;
        }
        while inner.bytes + body.len() > self.max_bytes {
            let Some(old) = inner.order.pop_front() else {
                break;
            };
            if let Some(b) = inner.bodies.remove(&old) {
                inner.bytes -= b.len();
            }
        }
        inner.bytes += body.len();
        inner.order.push_back(sha.clone());
        inner.bodies.insert(sha, body);
    }

    /// The body of `sha` (any case).
    pub fn get(&self, sha: &[u8]) -> Option<Bytes> {
        let sha = std::str::from_utf8(sha).ok()?.to_ascii_lowercase();
        self.lock().bodies.get(&sha).cloned()
    }

    /// Whether `sha` (any case) is cached.
    pub fn contains(&self, sha: &[u8]) -> bool {
        self.get(sha).is_some()
    }

    /// Drops every script.
    pub fn flush(&self) {
        *self.lock() = Inner::default();
    }

    /// Scripts cached, and their bytes (`INFO memory`'s `number_of_cached_scripts`).
    pub fn stats(&self) -> (usize, usize) {
        let inner = self.lock();
        (inner.bodies.len(), inner.bytes)
    }
}

impl Default for ScriptCache {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_BYTES)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_scripts_leave_first_when_the_cache_is_full() {
        let cache = ScriptCache::new(10);
        cache.insert("a".into(), Bytes::from_static(b"1234"));
        cache.insert("b".into(), Bytes::from_static(b"1234"));
        cache.insert("c".into(), Bytes::from_static(b"1234"));
        assert!(!cache.contains(b"a"));
        assert!(cache.contains(b"B") && cache.contains(b"c"));
        assert_eq!(cache.stats(), (2, 8));
        cache.insert("huge".into(), Bytes::from(vec![0u8; 11]));
        assert!(!cache.contains(b"huge"));
        cache.flush();
        assert_eq!(cache.stats(), (0, 0));
    }
}
