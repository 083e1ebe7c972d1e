//! Keys the DS nodes expire, as Redis's `expired` keyspace events and as client-side caching
//! invalidations: while this proxy wants either (`notify-keyspace-events` with `x`, or some
//! client of the cluster tracks), it asks every range for the keys its sweeps deleted since
//! it last asked (`KvOp::ExpiredSince`, each range's expiry log in `ds-node`
//! `range::expired_log`), every [`POLL`].
//!
//! Each proxy asks for itself and publishes to its own subscribers only (never through the
//! mesh: every proxy would then publish each event twice). An event comes when the range's
//! sweep deletes the key — like Redis's active expiry, after the key's time, not at it (the
//! sweep visits at most 256 of a range's keys per tick) — and a key read after its
//! time but before the sweep is absent for the reader without an event yet. A poller starts
//! from when it was wanted: keys expired before (or while it was off) are not reported.
//! Ranges that do not answer are asked again at the next poll; their events are late, not
//! lost, unless their log (4,096 keys) wrapped meanwhile. A range's first question asks for
//! the keys of sweeps since expirations became wanted (within one poll interval), so a key
//! that expires just after `CONFIG SET notify-keyspace-events Ex` is reported.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use net::RangeId;
use net::message::kv::{ExpiredKey, KvOp, OpResult};
use tokio::sync::watch;

use crate::notify::{self, Event};
use crate::shared::{Shared, now_ms};

/// How often the ranges are asked.
pub const POLL: Duration = Duration::from_millis(100);

/// Polls the ranges' expiry logs until `stop`.
pub async fn run(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let mut cursors: HashMap<RangeId, u64> = HashMap::new();
    // When expirations became wanted (Unix ms; 0: they are not).
    let mut since_ms = 0;
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            () = tokio::time::sleep(POLL) => {}
        }
        if !wanted(&shared) {
            // Started again later, it begins from then.
            cursors.clear();
            since_ms = 0;
            continue;
        }
        if since_ms == 0 {
            // Wanted since some time within the last poll interval.
            since_ms = now_ms().saturating_sub(POLL.as_millis() as u64);
        }
        poll(&shared, &mut cursors, since_ms).await;
    }
}

/// Whether expirations are wanted now: `expired` events, or invalidations.
fn wanted(shared: &Shared) -> bool {
    let flags = shared.settings.notify_flags();
    let events = flags & notify::EXPIRED != 0 && flags & (notify::KEYSPACE | notify::KEYEVENT) != 0;
    events || shared.tracker.active(now_ms())
}

/// One round: every range asked after its cursor; what came back published.
async fn poll(shared: &Shared, cursors: &mut HashMap<RangeId, u64>, since_ms: u64) {
    let ranges = shared.router.ranges();
    let ops = ranges
        .iter()
        .map(|r| {
            let after = cursors.get(&r.id).copied().unwrap_or(0);
            (r.start.clone(), KvOp::ExpiredSince { after, since_ms })
        })
        .collect();
    let answers = shared.router.exec(ops).await;
    let mut expired = Vec::new();
    for (r, a) in ranges.iter().zip(answers) {
        if let Ok(OpResult::Expired { next, keys }) = a {
            cursors.insert(r.id, next);
            expired.extend(keys);
        }
    }
    cursors.retain(|id, _| ranges.iter().any(|r| r.id == *id));
    if !expired.is_empty() {
        publish(shared, &expired);
    }
}

/// Publishes `keys` as `expired` events (this proxy's subscribers) and invalidates them for
/// this proxy's tracking clients.
pub fn publish(shared: &Shared, keys: &[ExpiredKey]) {
    let flags = shared.settings.notify_flags();
    let local = |channel: &Bytes, payload: &Bytes| {
        shared.pubsub.publish(channel, payload, false);
    };
    for k in keys {
        let e = Event {
            class: notify::EXPIRED,
            name: "expired",
            key: k.key.clone(),
            db: k.db,
        };
        notify::publish_event(&shared.pubsub, local, flags, &e);
    }
    if shared.tracker.local() {
        let names: Vec<Bytes> = keys.iter().map(|k| k.key.clone()).collect();
        let mut out = shared.tracker.invalidate(&names, None);
        out.extend(shared.tracker.broadcast());
        let clients = &shared.client_table;
        shared
            .tracker
            .deliver(&shared.pubsub, |c| clients.get(c).is_some(), out);
    }
}
