//! Client-side caching (`CLIENT TRACKING`, Redis's `tracking.c`): this proxy remembers which
//! of its clients read which keys and tells them when a key changes, so that they may keep
//! copies of values (`docs/guides/proxy.md`, "Client-side caching").
//!
//! Modes, as in Redis: *default* (a key a tracking client read — a command flagged
//! `readonly` — is remembered for it, invalidated once on its next change, and forgotten),
//! *BCAST* (every change of a key under one of the client's prefixes, nothing remembered),
//! `OPTIN` / `OPTOUT` (remember only after `CLIENT CACHING yes`, or not after `CLIENT CACHING
//! no`), `NOLOOP` (not the client's own changes) and `REDIRECT id` (the pushes go to another
//! connection: as RESP3 pushes, or to a RESP2 connection in pub/sub mode as messages of
//! `__redis__:invalidate`). Like Redis's, the table is per key name, not per database, and a
//! `FLUSHALL` / `FLUSHDB` invalidates everything with one null push.
//!
//! Where a change comes from: the writes that run through a proxy. This proxy invalidates the
//! keys of every write command it runs (`write` in the command table, all its key
//! arguments; a script's declared keys) once the reply is known, and tells the other proxies
//! of the cluster through the mesh ([`net::message::PeerInvalidate`]) — only those that said
//! they have tracking clients, so a cluster without tracking pays nothing. An expiry set by a
//! command (`SET … PX`, `EXPIRE`…) is scheduled here and on the peers, and invalidates the
//! key when it falls due ([`run`]). Not seen: an expiry a script sets, and the expiry of a
//! key whose time-to-live was set before any client tracked (the DS nodes do not report
//! expirations to proxies).
//!
//! Bounded: the table holds at most `tracking-table-max-keys` keys (Redis's default 1M); over
//! it, keys are forgotten (and their clients told, as if they changed) a bounded number per
//! command and per tick. Pending expiries are bounded by [`EXPIRIES_MAX`].
//!
//! Cost when no client of the cluster tracks: one atomic load per command.
// perf-critical: `capture` runs for every command.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;

use crate::pubsub::{Hub, Message};

/// Redis's default `tracking-table-max-keys`.
pub const DEFAULT_MAX_KEYS: usize = 1_000_000;
/// Keys forgotten at most per remembered read when the table is over its limit (Redis: 100
/// more per tick while it stays over).
const EVICT_PER_READ: usize = 100;
/// Keys forgotten at most per tick of [`run`].
const EVICT_PER_TICK: usize = 10_000;
/// Expiries waiting at most; past it the latest is dropped (its key may then stay cached
/// after it expires).
pub const EXPIRIES_MAX: usize = 1 << 20;
/// How often [`run`] wakes without a due expiry.
const TICK: Duration = Duration::from_millis(100);
/// How often a proxy with tracking clients says so to its peers.
const ANNOUNCE_EVERY_MS: u64 = 10_000;
/// How long a peer's announcement holds.
const PEER_TRACKING_MS: u64 = 60_000;
/// `CLIENT TRACKING ON` options.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Options {
    /// `REDIRECT id`.
    pub redirect: Option<u64>,
    /// `BCAST`.
    pub bcast: bool,
    /// `OPTIN`.
    pub optin: bool,
    /// `OPTOUT`.
    pub optout: bool,
    /// `NOLOOP`.
    pub noloop: bool,
    /// `PREFIX`es (BCAST; none: the empty prefix).
    pub prefixes: Vec<Bytes>,
}

/// A connection's tracking state, read on every command without a lock; the connection's
/// entry in the [`Tracker`] is removed when this is dropped.
#[derive(Debug, Default)]
pub struct SessionTracking {
    /// Tracking is on, with these options.
    pub on: Option<Options>,
    /// `CLIENT CACHING yes|no` was given for the next command (or transaction).
    pub caching: bool,
    guard: Option<Guard>,
}

impl SessionTracking {
    /// Whether a read command's keys are remembered now (default mode, and OPTIN/OPTOUT
    /// as `CLIENT CACHING` said).
    pub fn remembers(&self) -> bool {
        match &self.on {
            Some(o) if !o.bcast => !(o.optin && !self.caching || o.optout && self.caching),
            _ => false,
        }
    }

    /// Called after each command run outside `MULTI`: `CLIENT CACHING` holds for one
    /// command (any `CLIENT` subcommand keeps it, as Redis's `resetClient`).
    pub fn after_command(&mut self, name: Option<&str>, in_multi: bool) {
        if !in_multi && name != Some("client") {
            self.caching = false;
        }
    }

    /// Turns tracking on for client `id` (its entry in `tracker` replaced).
    pub fn enable(&mut self, tracker: &Arc<Tracker>, id: u64, opts: Options) {
        self.on = Some(tracker.enable(id, opts));
        // Kept when tracking is turned on again: dropping it would unregister the client.
        if self.guard.is_none() {
            self.guard = Some(Guard {
                tracker: Arc::clone(tracker),
                id,
            });
        }
    }

    /// Turns tracking off.
    pub fn disable(&mut self) {
        self.on = None;
        self.caching = false;
        self.guard = None;
    }
}

/// Removes a client from the tracker when its connection ends.
#[derive(Debug)]
struct Guard {
    tracker: Arc<Tracker>,
    id: u64,
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.tracker.disable(self.id);
    }
}

#[derive(Debug)]
struct Client {
    opts: Options,
    /// Its `REDIRECT` target was found gone (`CLIENT TRACKINGINFO` `broken_redirect`).
    broken: bool,
}

#[derive(Debug, Default)]
struct Table {
    clients: HashMap<u64, Client>,
    /// Default mode: key → the clients that read it (ids of clients that stopped tracking
    /// are dropped lazily, as Redis does).
    keys: HashMap<Bytes, Vec<u64>>,
    /// Entries of `keys` (Redis's `tracking_total_items`).
    items: usize,
    /// BCAST: prefix → its clients.
    prefixes: BTreeMap<Bytes, BTreeSet<u64>>,
    /// BCAST: keys changed under each prefix since the last [`Tracker::broadcast`], with
    /// the client that changed each last (`None`: an expiry or a peer), for `NOLOOP`.
    pending: BTreeMap<Bytes, BTreeMap<Bytes, Option<u64>>>,
}

/// One push to deliver, decided under the table's lock and posted after it.
#[derive(Debug)]
pub struct Out {
    client: u64,
    redirect: Option<u64>,
    keys: Option<Arc<[Bytes]>>,
}

/// The tracking state of this proxy's clients.
#[derive(Debug)]
pub struct Tracker {
    table: Mutex<Table>,
    /// Tracking clients of this proxy (read without the lock).
    clients: AtomicUsize,
    /// BCAST changes wait for [`Tracker::broadcast`] (read without the lock).
    pending: AtomicBool,
    /// Until when (ms since the Unix epoch) some peer has tracking clients.
    peers_until_ms: AtomicU64,
    /// `tracking-table-max-keys` (0: no limit).
    max_keys: AtomicUsize,
    expiries: Mutex<Expiries>,
    /// Counters (`INFO stats`, `/metrics`).
    pub stats: Stats,
}

/// Counters of client-side caching.
#[derive(Debug, Default)]
pub struct Stats {
    /// Invalidation pushes queued to clients.
    pub invalidations: AtomicU64,
    /// Keys forgotten because the table was full.
    pub evicted_keys: AtomicU64,
    /// Invalidations received from peers (keys; a flush counts one).
    pub from_peers: AtomicU64,
    /// Expiries dropped because [`EXPIRIES_MAX`] were waiting.
    pub expiries_dropped: AtomicU64,
}

/// Keys to invalidate when they expire: (time in ms since the Unix epoch, key).
#[derive(Debug, Default)]
struct Expiries {
    due: BTreeSet<(u64, Bytes)>,
}

impl Default for Tracker {
    fn default() -> Self {
        Self {
            table: Mutex::default(),
            clients: AtomicUsize::new(0),
            pending: AtomicBool::new(false),
            peers_until_ms: AtomicU64::new(0),
            max_keys: AtomicUsize::new(DEFAULT_MAX_KEYS),
            expiries: Mutex::default(),
            stats: Stats::default(),
        }
    }
}

/// `INFO` figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Figures {
    /// `tracking_clients`.
    pub clients: usize,
    /// `tracking_total_keys`.
    pub keys: usize,
    /// `tracking_total_items`.
    pub items: usize,
    /// `tracking_total_prefixes`.
    pub prefixes: usize,
}

impl Tracker {
    fn lock(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether some client of this proxy tracks.
    pub fn local(&self) -> bool {
        self.clients.load(Ordering::Relaxed) > 0
    }

    /// Whether a write must be invalidated: some client of this proxy or of a peer tracks.
    pub fn active(&self, now_ms: u64) -> bool {
        self.local() || self.peers_until_ms.load(Ordering::Relaxed) > now_ms
    }

    /// Whether a peer said it has tracking clients within [`PEER_TRACKING_MS`].
    pub fn peers_track(&self, now_ms: u64) -> bool {
        self.peers_until_ms.load(Ordering::Relaxed) > now_ms
    }

    /// A peer said it has tracking clients.
    pub fn peer_tracks(&self, now_ms: u64) {
        self.peers_until_ms
            .fetch_max(now_ms + PEER_TRACKING_MS, Ordering::Relaxed);
    }

    /// `tracking-table-max-keys`.
    pub fn max_keys(&self) -> usize {
        self.max_keys.load(Ordering::Relaxed)
    }

    /// Sets `tracking-table-max-keys` (0: no limit); the excess goes over the next ticks.
    pub fn set_max_keys(&self, n: usize) {
        self.max_keys.store(n, Ordering::Relaxed);
    }

    /// `INFO` figures.
    pub fn figures(&self) -> Figures {
        let t = self.lock();
        Figures {
            clients: t.clients.len(),
            keys: t.keys.len(),
            items: t.items,
            prefixes: t.prefixes.len(),
        }
    }

    /// Client `id`'s `broken_redirect` flag.
    pub fn broken(&self, id: u64) -> bool {
        self.lock().clients.get(&id).is_some_and(|c| c.broken)
    }

    /// The prefix of `prefixes` that overlaps one of client `id`'s or another of
    /// `prefixes`, with Redis's error text.
    pub fn prefix_collision(&self, id: u64, prefixes: &[Bytes]) -> Option<String> {
        let overlap = |a: &[u8], b: &[u8]| {
            let n = a.len().min(b.len());
            a[..n] == b[..n]
        };
        let t = self.lock();
        let mine: Vec<&Bytes> = t
            .clients
            .get(&id)
            .map(|c| c.opts.prefixes.iter().collect())
            .unwrap_or_default();
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        for (i, p) in prefixes.iter().enumerate() {
            if let Some(old) = mine.iter().find(|old| overlap(old, p)) {
                return Some(format!(
                    "Prefix '{}' overlaps with an existing prefix '{}'. Prefixes for a single client must not overlap.",
                    text(p),
                    text(old)
                ));
            }
            if let Some(other) = prefixes[i + 1..].iter().find(|o| overlap(o, p)) {
                return Some(format!(
                    "Prefix '{}' overlaps with another provided prefix '{}'. Prefixes for a single client must not overlap.",
                    text(p),
                    text(other)
                ));
            }
        }
        None
    }

    /// Client `id` tracks with `opts` (BCAST prefixes are added to the ones it had, as
    /// Redis does when tracking is turned on again); the options in force.
    fn enable(&self, id: u64, mut opts: Options) -> Options {
        let mut t = self.lock();
        if let Some(old) = t.clients.remove(&id) {
            if opts.bcast {
                let mut all = old.opts.prefixes;
                all.extend(opts.prefixes);
                opts.prefixes = all;
            } else {
                unregister_prefixes(&mut t, id, &old.opts.prefixes);
            }
        } else {
            self.clients.fetch_add(1, Ordering::Relaxed);
        }
        if opts.bcast {
            if opts.prefixes.is_empty() {
                opts.prefixes.push(Bytes::new());
            }
            opts.prefixes.sort();
            opts.prefixes.dedup();
            for p in &opts.prefixes {
                t.prefixes.entry(p.clone()).or_default().insert(id);
            }
        }
        t.clients.insert(
            id,
            Client {
                opts: opts.clone(),
                broken: false,
            },
        );
        opts
    }

    /// Client `id` stops tracking (its remembered keys are dropped lazily; all of them
    /// once no client tracks).
    fn disable(&self, id: u64) {
        let mut t = self.lock();
        if let Some(c) = t.clients.remove(&id) {
            self.clients.fetch_sub(1, Ordering::Relaxed);
            unregister_prefixes(&mut t, id, &c.opts.prefixes);
        }
        if t.clients.is_empty() {
            t.keys = HashMap::new();
            t.items = 0;
            t.pending.clear();
        }
    }

    /// Remembers that client `id` read `keys`; the pushes of keys forgotten to stay within
    /// `tracking-table-max-keys`.
    pub fn remember(&self, id: u64, keys: &[Bytes]) -> Vec<Out> {
        let mut t = self.lock();
        for key in keys {
            let ids = t.keys.entry(key.clone()).or_default();
            if !ids.contains(&id) {
                ids.push(id);
                t.items += 1;
            }
        }
        self.evict(&mut t, EVICT_PER_READ)
    }

    /// Forgets up to `budget` keys while the table is over its limit, as if they changed.
    fn evict(&self, t: &mut Table, budget: usize) -> Vec<Out> {
        let max = self.max_keys();
        if max == 0 || t.keys.len() <= max {
            return Vec::new();
        }
        let n = (t.keys.len() - max).min(budget);
        let victims: Vec<Bytes> = t.keys.keys().take(n).cloned().collect();
        self.stats
            .evicted_keys
            .fetch_add(victims.len() as u64, Ordering::Relaxed);
        let mut out = Vec::new();
        for key in &victims {
            invalidate_key(t, key, None, &mut out);
        }
        out
    }

    /// The pushes for a change of `keys` by client `origin` (`None`: an expiry or a peer):
    /// one per key for each client that read it. The keys under BCAST prefixes wait for
    /// [`Self::broadcast`], so that the changes of one batch or transaction reach a BCAST
    /// client as one push per prefix, as Redis sends them once per event-loop turn.
    pub fn invalidate(&self, keys: &[Bytes], origin: Option<u64>) -> Vec<Out> {
        let mut t = self.lock();
        let mut out = Vec::new();
        for key in keys {
            invalidate_key(&mut t, key, origin, &mut out);
        }
        let Table {
            prefixes, pending, ..
        } = &mut *t;
        for prefix in prefixes.keys() {
            for key in keys.iter().filter(|k| k.starts_with(prefix)) {
                pending
                    .entry(prefix.clone())
                    .or_default()
                    .insert(key.clone(), origin);
                self.pending.store(true, Ordering::Relaxed);
            }
        }
        out
    }

    /// Whether BCAST changes wait for [`Self::broadcast`].
    pub fn has_pending(&self) -> bool {
        self.pending.load(Ordering::Relaxed)
    }

    /// The BCAST pushes of the changes since the last call: for each prefix, its keys to
    /// each of its clients (a `NOLOOP` client's own last changes left out).
    pub fn broadcast(&self) -> Vec<Out> {
        let mut t = self.lock();
        self.pending.store(false, Ordering::Relaxed);
        let pending = std::mem::take(&mut t.pending);
        let mut out = Vec::new();
        for (prefix, keys) in pending {
            let Some(ids) = t.prefixes.get(&prefix) else {
                continue;
            };
            let all: Arc<[Bytes]> = keys.keys().cloned().collect();
            for id in ids {
                let Some(c) = t.clients.get(id) else { continue };
                let keys = if c.opts.noloop && keys.values().any(|o| *o == Some(*id)) {
                    let mine: Arc<[Bytes]> = keys
                        .iter()
                        .filter(|(_, o)| **o != Some(*id))
                        .map(|(k, _)| k.clone())
                        .collect();
                    if mine.is_empty() {
                        continue;
                    }
                    mine
                } else {
                    all.clone()
                };
                out.push(Out {
                    client: *id,
                    redirect: c.opts.redirect,
                    keys: Some(keys),
                });
            }
        }
        out
    }

    /// The pushes of a flush (every tracking client: every key), and the table emptied.
    pub fn flush(&self) -> Vec<Out> {
        let mut t = self.lock();
        t.keys = HashMap::new();
        t.items = 0;
        t.clients
            .iter()
            .map(|(id, c)| Out {
                client: *id,
                redirect: c.opts.redirect,
                keys: None,
            })
            .collect()
    }

    /// Posts `out` to the clients' mailboxes (or their redirection targets'); a target that
    /// is gone (`exists` false) marks the client's redirection broken and tells it.
    pub fn deliver(&self, hub: &Hub, exists: impl Fn(u64) -> bool, out: Vec<Out>) {
        for o in out {
            let push = Push::Invalidate {
                keys: o.keys,
                redirected: o.redirect.is_some(),
            };
            let target = o.redirect.unwrap_or(o.client);
            if hub.post_to(target, Message::tracking(push)) {
                self.stats.invalidations.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            if let Some(r) = o.redirect
                && !exists(r)
            {
                if let Some(c) = self.lock().clients.get_mut(&o.client) {
                    c.broken = true;
                }
                hub.post_to(o.client, Message::tracking(Push::RedirBroken(r)));
            }
        }
    }

    /// Schedules an invalidation of `key` when it expires at `at_ms`.
    pub fn schedule(&self, key: Bytes, at_ms: u64) {
        let mut e = self.expiries.lock().unwrap_or_else(|p| p.into_inner());
        e.due.insert((at_ms, key));
        if e.due.len() > EXPIRIES_MAX {
            e.due.pop_last();
            self.stats.expiries_dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Keys whose expiry is due at `now_ms` (at most `max`), taken out of the schedule.
    fn due(&self, now_ms: u64, max: usize) -> Vec<Bytes> {
        let mut e = self.expiries.lock().unwrap_or_else(|p| p.into_inner());
        let mut keys = Vec::new();
        while keys.len() < max {
            match e.due.first() {
                Some((at, _)) if *at <= now_ms => {
                    if let Some((_, key)) = e.due.pop_first() {
                        keys.push(key);
                    }
                }
                _ => break,
            }
        }
        keys
    }

    /// Expiries waiting.
    pub fn scheduled(&self) -> usize {
        self.expiries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .due
            .len()
    }
}

/// Client-side caching's figures in the Prometheus text format: `proxy_tracking_clients`,
/// `proxy_tracking_keys`, `proxy_tracking_items`, `proxy_tracking_prefixes`,
/// `proxy_tracking_expiries` (gauges) and `proxy_tracking_<counter>_total`.
pub fn write_prometheus(t: &Tracker, out: &mut String) {
    use std::fmt::Write;
    let f = t.figures();
    for (name, v) in [
        ("clients", f.clients),
        ("keys", f.keys),
        ("items", f.items),
        ("prefixes", f.prefixes),
        ("expiries", t.scheduled()),
    ] {
        let _ = writeln!(
            out,
            "# TYPE proxy_tracking_{name} gauge\nproxy_tracking_{name} {v}"
        );
    }
    let s = &t.stats;
    for (name, c) in [
        ("invalidations", &s.invalidations),
        ("evicted_keys", &s.evicted_keys),
        ("from_peers", &s.from_peers),
        ("expiries_dropped", &s.expiries_dropped),
    ] {
        let v = c.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "# TYPE proxy_tracking_{name}_total counter\nproxy_tracking_{name}_total {v}"
        );
    }
}

/// Removes `key` from the default-mode table and queues a push for each of its clients.
fn invalidate_key(t: &mut Table, key: &Bytes, origin: Option<u64>, out: &mut Vec<Out>) {
    let Some(ids) = t.keys.remove(key) else {
        return;
    };
    t.items -= ids.len();
    let one: Arc<[Bytes]> = Arc::from([key.clone()]);
    for id in ids {
        let Some(c) = t.clients.get(&id) else {
            continue;
        };
        // A client that switched to BCAST gets nothing for what it read before.
        if c.opts.bcast || c.opts.noloop && origin == Some(id) {
            continue;
        }
        out.push(Out {
            client: id,
            redirect: c.opts.redirect,
            keys: Some(one.clone()),
        });
    }
}

fn unregister_prefixes(t: &mut Table, id: u64, prefixes: &[Bytes]) {
    for p in prefixes {
        if let Some(ids) = t.prefixes.get_mut(p) {
            ids.remove(&id);
            if ids.is_empty() {
                t.prefixes.remove(p);
            }
        }
    }
}

/// The expiry (ms since the Unix epoch) a write command sets on its first key, read from
/// its arguments: `SET … EX|PX|EXAT|PXAT`, `SETEX`, `PSETEX`, `GETEX … EX|PX|EXAT|PXAT`,
/// `EXPIRE`, `PEXPIRE`, `EXPIREAT`, `PEXPIREAT`, `RESTORE key ttl … [ABSTTL]`.
pub fn expiry_of(name: &str, args: &[Bytes], now_ms: u64) -> Option<u64> {
    let num = |i: usize| -> Option<u64> {
        let s = std::str::from_utf8(args.get(i)?).ok()?;
        s.parse::<i64>().ok().map(|n| n.max(0).unsigned_abs())
    };
    let rel_s = |n: u64| now_ms.saturating_add(n.saturating_mul(1000));
    let rel_ms = |n: u64| now_ms.saturating_add(n);
    let option = |from: usize| {
        (from..args.len().saturating_sub(1)).find_map(|i| {
            let a = args[i].to_ascii_lowercase();
            match &a[..] {
                b"ex" => num(i + 1).map(rel_s),
                b"px" => num(i + 1).map(rel_ms),
                b"exat" => num(i + 1).map(|n| n.saturating_mul(1000)),
                b"pxat" => num(i + 1),
                _ => None,
            }
        })
    };
    match name {
        "set" => option(3),
        "getex" => option(2),
        "setex" => num(2).map(rel_s),
        "psetex" => num(2).map(rel_ms),
        "expire" => num(2).map(rel_s),
        "pexpire" => num(2).map(rel_ms),
        "expireat" => num(2).map(|n| n.saturating_mul(1000)),
        "pexpireat" => num(2),
        "restore" => {
            let ttl = num(2).filter(|&t| t > 0)?;
            let abs = args[4..].iter().any(|a| a.eq_ignore_ascii_case(b"absttl"));
            Some(if abs { ttl } else { rel_ms(ttl) })
        }
        _ => None,
    }
}

mod hook;
pub mod push;
pub use hook::{Track, apply, broadcast, capture, capture_queued, run, tick};
pub use push::{CHANNEL, Push};

#[cfg(test)]
mod tests;
