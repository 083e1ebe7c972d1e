//! `ACL LOG`: the newest refusals (denied commands, keys, channels, failed `AUTH`s), at most
//! [`MAX_ENTRIES`]; a refusal like one of the 10 newest (same reason, context, object and
//! user, within 60 s) bumps that entry's count instead (`addACLLogEntry`).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;

/// Entries kept (Redis's `acllog-max-len` default).
pub const MAX_ENTRIES: usize = 128;
/// Refusals this close in time are grouped.
const GROUPING: Duration = Duration::from_secs(60);
/// Entries looked at for grouping.
const SCAN: usize = 10;

/// What was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// A command the user may not run.
    Command,
    /// A key the user may not access.
    Key,
    /// A channel the user may not use.
    Channel,
    /// A failed `AUTH`.
    Auth,
}

impl Reason {
    fn name(self) -> &'static str {
        match self {
            Reason::Command => "command",
            Reason::Key => "key",
            Reason::Channel => "channel",
            Reason::Auth => "auth",
        }
    }
}

/// Where the refused call came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Context {
    /// Sent by the client.
    Toplevel,
    /// Queued in `MULTI`.
    Multi,
    /// Called by a script.
    Lua,
}

impl Context {
    fn name(self) -> &'static str {
        match self {
            Context::Toplevel => "toplevel",
            Context::Multi => "multi",
            Context::Lua => "lua",
        }
    }
}

/// One refusal.
#[derive(Debug, Clone)]
pub struct Entry {
    /// What was refused.
    pub reason: Reason,
    /// Where the call came from.
    pub context: Context,
    /// The command, key or channel refused (`AUTH` for a failed authentication).
    pub object: Bytes,
    /// The user refused.
    pub username: Bytes,
    /// `CLIENT INFO` of the client refused.
    pub client_info: String,
}

#[derive(Debug)]
struct Kept {
    entry: Entry,
    count: u64,
    at: Instant,
}

/// An entry as `ACL LOG` shows it.
#[derive(Debug, Clone)]
pub struct Shown {
    /// Refusals grouped in this entry.
    pub count: u64,
    /// `command`, `key`, `channel` or `auth`.
    pub reason: &'static str,
    /// `toplevel`, `multi` or `lua`.
    pub context: &'static str,
    /// What was refused.
    pub object: Bytes,
    /// Who was refused.
    pub username: Bytes,
    /// Seconds since the last refusal of the entry.
    pub age_seconds: f64,
    /// `CLIENT INFO` of the last client refused.
    pub client_info: String,
}

/// The log, newest first.
#[derive(Debug, Default)]
pub struct AclLog {
    entries: VecDeque<Kept>,
}

impl AclLog {
    /// Records `entry`, grouped with a recent similar one.
    pub fn add(&mut self, entry: Entry) {
        let now = Instant::now();
        let similar = self.entries.iter().take(SCAN).position(|k| {
            k.entry.reason == entry.reason
                && k.entry.context == entry.context
                && now.duration_since(k.at) <= GROUPING
                && k.entry.object == entry.object
                && k.entry.username == entry.username
        });
        if let Some(i) = similar
            && let Some(mut kept) = self.entries.remove(i)
        {
            kept.count += 1;
            kept.at = now;
            kept.entry.client_info = entry.client_info;
            self.entries.push_front(kept);
            return;
        }
        self.entries.push_front(Kept {
            entry,
            count: 1,
            at: now,
        });
        self.entries.truncate(MAX_ENTRIES);
    }

    /// The `count` newest entries.
    pub fn newest(&self, count: usize) -> Vec<Shown> {
        self.entries
            .iter()
            .take(count)
            .map(|k| Shown {
                count: k.count,
                reason: k.entry.reason.name(),
                context: k.entry.context.name(),
                object: k.entry.object.clone(),
                username: k.entry.username.clone(),
                age_seconds: k.at.elapsed().as_secs_f64(),
                client_info: k.entry.client_info.clone(),
            })
            .collect()
    }

    /// Forgets every entry.
    pub fn reset(&mut self) {
        self.entries.clear();
    }
}
