//! TTL: on every tick, each leader looks at the next entries of its range and proposes the
//! deletion of the expired ones and of the elements of dead collections (`range::sweep`;
//! bounded work per tick). The sweep entry applies like any other (`server::apply`).
//!
//! An operation module: imports the shard state only.

use bytes::Bytes;

use super::shard::{Shard, ShardDevice, ShardState, now_ms};
use crate::range::codec::encode_sweep;

/// Most entries a leader examines per range and tick for expired keys.
pub const SWEEP_SCAN_PER_TICK: usize = 256;

/// Most expired dedup records a leader deletes per range and tick, from its record queue
/// (`range::dedup::RecordQueue`): 40,960 a second at the default 100 ms tick, above what one
/// range applies.
pub const SWEEP_RECORDS_PER_TICK: usize = 4096;

/// On a tick: every leader looks at the next [`SWEEP_SCAN_PER_TICK`] entries of its range
/// and proposes the deletion of the expired ones, of elements of dead collections
/// (`range::sweep`; bounded work per tick) and of the expired dedup records at the head of
/// its record queue. Other replicas drop their queue's expired records (it stays bounded;
/// records a later leader does not have queued are found by its walk).
pub fn sweep_expired<D: ShardDevice>(shard: &Shard<D>, st: &mut ShardState) {
    let now = now_ms();
    let ShardState { peers, engine, .. } = st;
    for p in peers.values_mut() {
        if !p.is_initialized() {
            continue;
        }
        if !p.is_leader() {
            p.dedup_records.take_expired(now, usize::MAX);
            continue;
        }
        if p.sweep_in_flight > p.applied() {
            continue;
        }
        let start = if p.sweep_cursor.is_empty() || p.sweep_cursor < p.desc().start {
            p.desc().start.clone()
        } else {
            p.sweep_cursor.clone()
        };
        let end = (!p.desc().end.is_empty()).then_some(&p.desc().end[..]);
        let got = engine.scan_expiry(&start, end.unwrap_or_default(), SWEEP_SCAN_PER_TICK);
        p.sweep_cursor = match got.last() {
            Some((k, _)) if got.len() == SWEEP_SCAN_PER_TICK => {
                let mut next = k.to_vec();
                next.push(0);
                next.into()
            }
            _ => bytes::Bytes::new(),
        };
        let mut expired = crate::range::sweep::select(&*engine, got, now);
        let records = p.dedup_records.take_expired(now, SWEEP_RECORDS_PER_TICK);
        let d = p.desc();
        let inside = |k: &Bytes| *k >= d.start && (d.end.is_empty() || *k < d.end);
        expired.extend(records.into_iter().filter(inside));
        if expired.is_empty() {
            continue;
        }
        if p.raft_mut()
            .propose(Vec::new(), encode_sweep(now, &expired))
            .is_ok()
        {
            p.sweep_in_flight = p.last_index();
            shard.wake.notify();
        }
    }
}
