//! The mesh listener: what a peer's message does on this proxy. Publishes go to this
//! proxy's own subscribers (never forwarded again), queries read its own subscriptions,
//! key-ready signals wake its own waiters as a local write does, pauses hold its own clients,
//! invalidations reach its own tracking clients.
//! Everything is answered at
//! once on the connection's task, in arrival order (no future, so one peer's messages are
//! applied in the order it sent them).

use std::sync::atomic::Ordering;

use bytes::Bytes;
use net::RpcError;
use net::message::{
    MESH_ITEMS_MAX, Message, PauseOrder, PeerInvalidate, PeerInvalidateAck, PeerKeysReadyAck,
    PeerPauseAck, PeerPubsubAnswer, PeerReceivers, Pong, PubsubQuery,
};

use crate::clients::Clients;
use crate::keyspace::Db;
use crate::pause::{Mode, Pause};
use crate::pubsub::{Hub, Kind};
use crate::tracking::Tracker;
use crate::waiters::Registry;

fn bad(message: &str) -> Message {
    Message::Error(RpcError::BadRequest {
        message: message.into(),
    })
}

/// What a peer's message acts on here: this proxy's subscribers, waiters and pause.
#[derive(Debug, Clone, Copy)]
pub struct Local<'a> {
    /// Subscriptions (publishes, pub/sub queries).
    pub hub: &'a Hub,
    /// Blocked commands (key-ready signals).
    pub waiters: &'a Registry,
    /// `CLIENT PAUSE` state.
    pub pause: &'a Pause,
    /// Client-side caching (invalidations).
    pub tracker: &'a Tracker,
    /// The connected clients (redirection targets).
    pub clients: &'a Clients,
}

/// This proxy's answer to a peer's `msg`.
pub fn handle(local: Local<'_>, msg: Message, stats: &super::MeshStats) -> Message {
    let Local {
        hub,
        waiters,
        pause,
        tracker,
        clients,
    } = local;
    match msg {
        Message::PeerInvalidate(p) if p.keys.len() <= MESH_ITEMS_MAX => {
            invalidate(tracker, hub, clients, p);
            Message::PeerInvalidateAck(PeerInvalidateAck {})
        }
        Message::PeerInvalidate(_) => bad("too many keys in one invalidation"),
        Message::PeerPause(p) => {
            apply_pause(pause, p.order);
            Message::PeerPauseAck(PeerPauseAck {})
        }
        Message::PeerPublish(p) => {
            let n = hub.publish(&p.channel, &p.payload, p.shard);
            Message::PeerReceivers(PeerReceivers {
                receivers: n as u64,
            })
        }
        Message::PeerPubsubQuery(q) => match answer(hub, q.query) {
            Some(a) => Message::PeerPubsubAnswer(a),
            None => bad("too many channels in one pubsub query"),
        },
        Message::PeerKeysReady(k) if k.keys.len() <= MESH_ITEMS_MAX => {
            let mut woken = 0u32;
            for r in k.keys {
                let Some(db) = u8::try_from(r.db).ok().and_then(Db::new) else {
                    continue;
                };
                if waiters.wake(&(db, r.key)).is_some() {
                    woken += 1;
                }
            }
            stats
                .woken_by_peers
                .fetch_add(u64::from(woken), Ordering::Relaxed);
            Message::PeerKeysReadyAck(PeerKeysReadyAck { woken })
        }
        Message::PeerKeysReady(_) => bad("too many keys in one key-ready signal"),
        Message::Ping(p) => Message::Pong(Pong { nonce: p.nonce }),
        other => bad(&format!(
            "a proxy's mesh listener does not serve {}",
            other.name()
        )),
    }
}

/// A peer's invalidation, for this proxy's tracking clients: now, or scheduled for when the
/// keys expire.
fn invalidate(tracker: &Tracker, hub: &Hub, clients: &Clients, p: PeerInvalidate) {
    let now = crate::shared::now_ms();
    if p.tracking {
        tracker.peer_tracks(now);
    }
    let n = if p.flush { 1 } else { p.keys.len() as u64 };
    tracker.stats.from_peers.fetch_add(n, Ordering::Relaxed);
    let out = if p.flush {
        tracker.flush()
    } else if p.at_ms > now {
        for key in p.keys {
            tracker.schedule(key, p.at_ms);
        }
        return;
    } else if p.keys.is_empty() {
        return;
    } else {
        let mut out = tracker.invalidate(&p.keys, None);
        out.extend(tracker.broadcast());
        out
    };
    tracker.deliver(hub, |id| clients.get(id).is_some(), out);
}

/// A peer's `CLIENT PAUSE` / `UNPAUSE`, for this proxy's clients (`for_ms` from now: the
/// time the pause had left at the peer).
fn apply_pause(pause: &Pause, order: PauseOrder) {
    // A pause of more than a year is a year (an `Instant` cannot hold any u64 of ms).
    const YEAR_MS: u64 = 365 * 86_400 * 1000;
    let until =
        |ms: u64| tokio::time::Instant::now() + std::time::Duration::from_millis(ms.min(YEAR_MS));
    match order {
        PauseOrder::Unpause {} => pause.unpause(),
        PauseOrder::Write { for_ms } => pause.pause(Mode::Write, until(for_ms)),
        PauseOrder::All { for_ms } => pause.pause(Mode::All, until(for_ms)),
    }
}

/// The answer to `q` from this proxy's own subscriptions; `None` when it asks too much.
fn answer(hub: &Hub, q: PubsubQuery) -> Option<PeerPubsubAnswer> {
    let kind = |shard: bool| if shard { Kind::Shard } else { Kind::Channel };
    Some(match q {
        PubsubQuery::Channels { shard, pattern } => PeerPubsubAnswer {
            channels: hub.channels(kind(shard), pattern.as_deref()),
            counts: Vec::new(),
        },
        PubsubQuery::NumSub { shard, channels } => {
            if channels.len() > MESH_ITEMS_MAX {
                return None;
            }
            let counts = channels
                .iter()
                .map(|c: &Bytes| hub.numsub(kind(shard), c) as u64)
                .collect();
            PeerPubsubAnswer {
                channels: Vec::new(),
                counts,
            }
        }
        PubsubQuery::NumPat {} => PeerPubsubAnswer {
            channels: Vec::new(),
            counts: vec![hub.numpat() as u64],
        },
    })
}
