//! What a command means for client-side caching: its reads are remembered before it runs
//! ([`capture`]), its changes are invalidated once its reply is known ([`apply`]).
//!
//! Remembering before the read runs closes a race a single-threaded Redis does not have: a
//! write through another connection (or proxy) that lands while the read is in flight
//! invalidates the key for this client, and the push reaches it after the read's reply (a
//! connection writes pushes between batches), so a stale copy is always dropped.

use bytes::Bytes;

use super::expiry_of;
use crate::cmd::Session;
use crate::resp::Reply;
use crate::shared::{Shared, now_ms};

/// A change a command may make, to invalidate once its reply is known.
#[derive(Debug, Clone)]
pub enum Track {
    /// A write: its keys, and the expiry it sets on the first (ms since the Unix epoch).
    Write {
        /// Every key argument.
        keys: Vec<Bytes>,
        /// The expiry set.
        expiry: Option<u64>,
    },
    /// A script or function call that may write: its declared keys (a script may have
    /// written before it failed, so they are invalidated whatever its reply).
    Script(Vec<Bytes>),
    /// `FLUSHALL` / `FLUSHDB`: every key.
    Flush,
}

/// Before the command `args` runs: remembers the keys it reads for the session when it
/// remembers reads, and returns the change it may make when any client of the cluster
/// tracks. One atomic load when nobody tracks. Commands queued in `MULTI` are captured at
/// `EXEC` ([`capture_queued`]).
pub fn capture(shared: &Shared, sess: &Session, args: &[Bytes]) -> Option<Box<Track>> {
    if !sess.tracking.remembers() && !shared.tracker.active(now_ms()) {
        return None;
    }
    if sess.tx.active() {
        return None;
    }
    capture_queued(shared, sess, args)
}

/// [`capture`] of a command run by `EXEC` (the transaction is over by then).
pub fn capture_queued(shared: &Shared, sess: &Session, args: &[Bytes]) -> Option<Box<Track>> {
    let spec = crate::cmd::table::lookup(args.first()?)?;
    let remembers = sess.tracking.remembers();
    let keys = || -> Vec<Bytes> {
        crate::cmd::server::key_positions(args)
            .map(|p| p.into_iter().map(|i| args[i].clone()).collect())
            .unwrap_or_default()
    };
    let remember = |keys: &[Bytes]| {
        let out = shared.tracker.remember(sess.id, keys);
        deliver(shared, out);
    };
    match spec.name {
        "flushall" | "flushdb" => Some(Box::new(Track::Flush)),
        "eval" | "evalsha" | "fcall" | "eval_ro" | "evalsha_ro" | "fcall_ro" => {
            let keys = keys();
            if remembers {
                remember(&keys);
            }
            let write = !spec.flags.contains(&"readonly");
            (write && !keys.is_empty()).then(|| Box::new(Track::Script(keys)))
        }
        // A shard channel is a key for routing, not data.
        "spublish" | "ssubscribe" | "sunsubscribe" => None,
        _ if spec.flags.contains(&"write") => {
            let keys = keys();
            let expiry = expiry_of(spec.name, args, now_ms());
            (!keys.is_empty()).then(|| Box::new(Track::Write { keys, expiry }))
        }
        _ if remembers && spec.flags.contains(&"readonly") => {
            remember(&keys());
            None
        }
        _ => None,
    }
}

/// Invalidates `track` of client `id`'s command once its `reply` is known: here, and on the
/// peers that have tracking clients. A failed write changed nothing.
pub fn apply(shared: &Shared, id: u64, track: &Track, reply: &Reply) {
    let t = &shared.tracker;
    let ok = !matches!(reply, Reply::Error(_));
    let peers = t.peers_track(now_ms());
    let out = match track {
        // An expiry the write sets is invalidated when the DS node's sweep deletes the key
        // (`crate::expired` polls the ranges' expiry logs while anyone tracks): scheduling it
        // here too would send it twice.
        Track::Write { keys, .. } if ok => {
            if peers {
                shared.mesh.invalidate_peers(keys, false, 0, t.local());
            }
            t.invalidate(keys, Some(id))
        }
        Track::Script(keys) => {
            if peers {
                shared.mesh.invalidate_peers(keys, false, 0, t.local());
            }
            t.invalidate(keys, Some(id))
        }
        Track::Flush if ok => {
            if peers {
                shared.mesh.invalidate_peers(&[], true, 0, t.local());
            }
            t.flush()
        }
        _ => Vec::new(),
    };
    deliver(shared, out);
}

/// Sends the BCAST pushes of the changes made since the last call (at the end of each
/// batch a connection ran).
pub fn broadcast(shared: &Shared) {
    if shared.tracker.has_pending() {
        deliver(shared, shared.tracker.broadcast());
    }
}

fn deliver(shared: &Shared, out: Vec<super::Out>) {
    if !out.is_empty() {
        let clients = &shared.client_table;
        shared
            .tracker
            .deliver(&shared.pubsub, |c| clients.get(c).is_some(), out);
    }
}

/// The background work of client-side caching, until `stop`: invalidates keys whose
/// expiry fell due (here and, through the mesh, nowhere else: each proxy schedules its own
/// from what its peers tell it), forgets keys over `tracking-table-max-keys`, and tells the
/// peers every [`ANNOUNCE_EVERY_MS`] while this proxy has tracking clients.
pub async fn run(shared: std::sync::Arc<Shared>, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut announced_ms = 0u64;
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            () = tokio::time::sleep(super::TICK) => {}
        }
        let now = now_ms();
        tick(&shared, now);
        if shared.tracker.local() && now >= announced_ms + super::ANNOUNCE_EVERY_MS {
            announced_ms = now;
            shared.mesh.invalidate_peers(&[], false, 0, true);
        }
    }
}

/// One tick of [`run`] at `now_ms`.
pub fn tick(shared: &Shared, now_ms: u64) {
    let t = &shared.tracker;
    let due = t.due(now_ms, super::EVICT_PER_TICK);
    let mut out = if due.is_empty() {
        Vec::new()
    } else {
        t.invalidate(&due, None)
    };
    out.extend(t.evict(&mut t.lock(), super::EVICT_PER_TICK));
    if t.has_pending() {
        out.extend(t.broadcast());
    }
    if !out.is_empty() {
        t.deliver(
            &shared.pubsub,
            |id| shared.client_table.get(id).is_some(),
            out,
        );
    }
}
