//! The settings `CONFIG SET` changes while the proxy runs: `requirepass`,
//! `client-query-buffer-limit`, `timeout` and `notify-keyspace-events`. Each connection reads them when it needs them
//! (a new AUTH, each read, each timer check), so a change applies to connections already open:
//! - `requirepass`: new AUTHs check the new password and new connections must authenticate;
//!   connections that already authenticated stay authenticated (as Redis keeps them).
//! - `client-query-buffer-limit`: from the next read of every connection.
//! - `timeout`: within [`crate::server`]'s check interval (10 s at most).

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// Smallest `client-query-buffer-limit` (Redis's: 1 MiB).
pub const QUERY_BUFFER_LIMIT_MIN: usize = 1024 * 1024;
/// Largest `timeout` in seconds (Redis's: `INT_MAX`).
pub const TIMEOUT_SECS_MAX: u64 = i32::MAX as u64;

/// Live settings, shared by every connection.
#[derive(Debug)]
pub struct Settings {
    /// Redis's encoding thresholds (`CONFIG SET hash-max-listpack-entries` …).
    pub encodings: crate::encodings::Encodings,
    requirepass: RwLock<Option<Arc<[u8]>>>,
    query_buffer_limit: AtomicUsize,
    idle_timeout_secs: AtomicU64,
    /// `notify-keyspace-events` ([`crate::notify`] flags; 0: none).
    notify_flags: AtomicU32,
    busy_reply_threshold_ms: AtomicU64,
}

/// `busy-reply-threshold` (alias `lua-time-limit`) when not set: Redis's 5000 ms.
pub const BUSY_REPLY_THRESHOLD_MS: u64 = 5000;

impl Settings {
    /// Settings starting at these values (`idle_timeout` in whole seconds, as Redis keeps it).
    pub fn new(
        requirepass: Option<&str>,
        query_buffer_limit: usize,
        idle_timeout: Duration,
    ) -> Self {
        Self {
            encodings: crate::encodings::Encodings::default(),
            requirepass: RwLock::new(requirepass.map(|p| Arc::from(p.as_bytes()))),
            query_buffer_limit: AtomicUsize::new(query_buffer_limit),
            idle_timeout_secs: AtomicU64::new(idle_timeout.as_secs()),
            notify_flags: AtomicU32::new(0),
            busy_reply_threshold_ms: AtomicU64::new(BUSY_REPLY_THRESHOLD_MS),
        }
    }

    /// The password, if one is set.
    pub fn requirepass(&self) -> Option<Arc<[u8]>> {
        self.requirepass
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Sets the password; empty clears it (`CONFIG SET requirepass ""`).
    pub fn set_requirepass(&self, pass: &[u8]) {
        let v = (!pass.is_empty()).then(|| Arc::from(pass));
        *self
            .requirepass
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = v;
    }

    /// `client-query-buffer-limit` in bytes.
    pub fn query_buffer_limit(&self) -> usize {
        self.query_buffer_limit.load(Ordering::Relaxed)
    }

    /// Sets `client-query-buffer-limit`.
    pub fn set_query_buffer_limit(&self, bytes: usize) {
        self.query_buffer_limit.store(bytes, Ordering::Relaxed);
    }

    /// `timeout`: how long a client may stay idle; zero is never.
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.idle_timeout_secs.load(Ordering::Relaxed))
    }

    /// `notify-keyspace-events` as [`crate::notify`] flags.
    pub fn notify_flags(&self) -> u32 {
        self.notify_flags.load(Ordering::Relaxed)
    }

    /// Sets `notify-keyspace-events`.
    pub fn set_notify_flags(&self, flags: u32) {
        self.notify_flags.store(flags, Ordering::Relaxed);
    }

    /// `busy-reply-threshold`: how long a script runs before its range answers `-BUSY` and
    /// `SCRIPT KILL` may stop it.
    pub fn busy_reply_threshold(&self) -> Duration {
        Duration::from_millis(self.busy_reply_threshold_ms.load(Ordering::Relaxed))
    }

    /// Sets `busy-reply-threshold` in milliseconds.
    pub fn set_busy_reply_threshold_ms(&self, ms: u64) {
        self.busy_reply_threshold_ms.store(ms, Ordering::Relaxed);
    }

    /// Sets `timeout` in seconds.
    pub fn set_idle_timeout_secs(&self, secs: u64) {
        self.idle_timeout_secs.store(secs, Ordering::Relaxed);
    }
}

/// Parses a Redis memory value (`memtoull`): digits with an optional unit `b`, `k` (1000),
/// `kb` (1024), `m`, `mb`, `g`, `gb`, any case.
pub fn parse_memory(s: &[u8]) -> Option<u64> {
    let s = std::str::from_utf8(s).ok()?.to_ascii_lowercase();
    let digits = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(digits);
    let mul: u64 = match unit {
        "" | "b" => 1,
        "k" => 1000,
        "kb" => 1024,
        "m" => 1000 * 1000,
        "mb" => 1024 * 1024,
        "g" => 1000 * 1000 * 1000,
        "gb" => 1024 * 1024 * 1024,
        _ => return None,
    };
    if num.is_empty() {
        return None;
    }
    num.parse::<u64>().ok()?.checked_mul(mul)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_values_parse_like_memtoull() {
        assert_eq!(parse_memory(b"1mb"), Some(1 << 20));
        assert_eq!(parse_memory(b"2GB"), Some(2 << 30));
        assert_eq!(parse_memory(b"1k"), Some(1000));
        assert_eq!(parse_memory(b"1073741824"), Some(1 << 30));
        for bad in [&b"abc"[..], b"", b"mb", b"-1", b"1.5mb", b"1tb"] {
            assert_eq!(parse_memory(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn an_empty_requirepass_clears_the_password() {
        let s = Settings::new(Some("a"), QUERY_BUFFER_LIMIT_MIN, Duration::ZERO);
        assert_eq!(s.requirepass().as_deref(), Some(&b"a"[..]));
        s.set_requirepass(b"");
        assert_eq!(s.requirepass(), None);
        s.set_requirepass(b"b\xff");
        assert_eq!(s.requirepass().as_deref(), Some(&b"b\xff"[..]));
    }
}
