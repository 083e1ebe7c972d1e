// perf-critical: every read of the shard passes here.
//! Reads: answered from the lease at once, or through ReadIndex (the ready loop answers them
//! once apply reaches their index). A read that must load cold values first is answered by
//! its own task (`server::cold`), so a hot read never waits behind a cold one.
//!
//! An operation module: imports the shard state and `cold`; the request handler starts
//! reads, the ready loop answers the waiting ones.

use std::rc::Rc;
use std::time::Instant;

use futures_channel::oneshot;
use net::RpcError;
use net::message::kv::{KvOp, KvResponse, OpResult};

use super::metrics::ShardMetrics;
use super::peer::Peer;
use super::shard::{Shard, ShardDevice, now_ms};
use crate::range::apply::{ApplyCtx, execute};
use crate::range::engine::MasstreeStore;

/// How a read is answered.
#[derive(Debug)]
pub enum Answer {
    /// Now, from local state.
    Now(KvResponse),
    /// Later, on this receiver.
    Later(oneshot::Receiver<KvResponse>),
}

/// Starts a read on this range's leader: from the lease when it holds, else through
/// ReadIndex.
pub fn start<D: ShardDevice>(
    shard: &Rc<Shard<D>>,
    p: &mut Peer,
    engine: &mut MasstreeStore,
    op: KvOp,
) -> Result<Answer, RpcError> {
    let key_bytes = op.redis_key().map_or(0, |k| k.len());
    shard.load.borrow_mut().read(p.desc().id.0, key_bytes);
    let now = shard.now();
    p.note_read(now);
    if p.lease_read_ok(now) {
        lease(shard, p, engine, op)
    } else {
        read_index(shard, p, op)
    }
}

/// A read answered from local state now, or by its own task when it must load cold values
/// first (hot reads do not wait for it).
fn lease<D: ShardDevice>(
    shard: &Rc<Shard<D>>,
    p: &mut Peer,
    engine: &mut MasstreeStore,
    op: KvOp,
) -> Result<Answer, RpcError> {
    shard.metrics.borrow_mut().lease_reads_total += 1;
    if let Some(resp) = from_peer(p, &op) {
        return Ok(Answer::Now(resp));
    }
    let now = now_ms();
    if super::cold::read_needs_load(engine, &op, p.desc(), now) {
        let (tx, rx) = oneshot::channel();
        super::cold::spawn_read(shard, p.range_id(), op, None, tx);
        return Ok(Answer::Later(rx));
    }
    let ctx = ApplyCtx {
        now_ms: now,
        index: p.applied(),
        range: p.desc(),
        zranks: Some(p.zranks()),
    };
    let r = execute(engine, &op, &ctx);
    if engine.take_cold_misses() > 0 {
        shard.metrics.borrow_mut().cold.misses_total += 1;
        return Err(super::cold::ColdError::Unstable.to_rpc());
    }
    Ok(Answer::Now(match r {
        Ok(result) => KvResponse::Ok { result },
        Err(error) => KvResponse::Err { error },
    }))
}

/// The answer to a read the range's state answers without the engine: `DbStats`, from the
/// counts apply keeps (`range::db_keys`), and `ExpiredSince`, from the expiry log
/// (`range::expired_log`). `None` for every other read.
fn from_peer(p: &Peer, op: &KvOp) -> Option<KvResponse> {
    match op.in_db(net::keyspace::Db::ZERO).1 {
        KvOp::DbStats {} => Some(KvResponse::Ok {
            result: OpResult::DbStats {
                start: p.desc().start.clone(),
                end: p.desc().end.clone(),
                dbs: p.db_keys().stats(),
            },
        }),
        KvOp::ExpiredSince { after, since_ms } => {
            let (next, keys) = p.expired().since(*after, *since_ms);
            Some(KvResponse::Ok {
                result: OpResult::Expired { next, keys },
            })
        }
        _ => None,
    }
}

/// A read that waits for a ReadIndex (and for apply to reach it; the ready loop answers).
fn read_index<D: ShardDevice>(
    shard: &Rc<Shard<D>>,
    p: &mut Peer,
    op: KvOp,
) -> Result<Answer, RpcError> {
    if !p.raft().raft.commit_to_current_term() {
        // raft-rs drops ReadIndex requests until the leader commits in its term (a few ms
        // after election): the client retries (hint: this replica).
        return Err(shard.not_leader(p));
    }
    if p.reads_count() >= shard.cfg.max_inflight_proposals {
        shard.metrics.borrow_mut().busy_total += 1;
        return Err(RpcError::ServerBusy {});
    }
    shard.metrics.borrow_mut().read_index_total += 1;
    let (tx, rx) = oneshot::channel();
    p.start_read_index(op, tx, shard.now());
    shard.wake.notify();
    Ok(Answer::Later(rx))
}

/// Notes the index raft-rs returned for the ReadIndex request `ctx` of this range: a quorum
/// acknowledged the heartbeat sent for it, so the lease runs from when it was asked. `now`
/// is the shard's clock.
pub fn note_read_state(p: &mut Peer, ctx: &[u8], index: u64, now: Instant) {
    let Some(id) = ctx
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .map(u64::from_le_bytes)
    else {
        return;
    };
    if let Some(at) = p.read_index_returned(id, index) {
        let term = p.term();
        p.extend_lease(term, at, now);
    }
}

/// Starts a heartbeat round that renews the lease of a leader being read, before the
/// lease runs out (so reads do not stall on a ReadIndex round when it does). Called on
/// each tick, with the shard's clock reading `now`.
pub fn renew_lease(p: &mut Peer, metrics: &mut ShardMetrics, now: Instant) {
    if p.renew_lease(now) {
        metrics.lease_renewals_total += 1;
    }
}

/// Answers the range's reads whose index is known and applied (by their own task when they
/// must load cold values first); a replica that lost leadership fails the rest.
pub fn answer_ready<D: ShardDevice>(
    shard: &Rc<Shard<D>>,
    p: &mut Peer,
    engine: &mut MasstreeStore,
) {
    if p.reads_count() == 0 {
        return;
    }
    let applied = p.applied();
    let now = now_ms();
    let at = shard.now();
    for r in p.take_ready_reads() {
        if let Some(resp) = from_peer(p, &r.op) {
            let _ = r.tx.send(resp);
            continue;
        }
        if super::cold::read_needs_load(engine, &r.op, p.desc(), now) {
            // Answered by its own task once loaded: hot reads do not wait for it.
            super::cold::spawn_read(shard, p.range_id(), r.op, Some(applied), r.tx);
            continue;
        }
        let ctx = ApplyCtx {
            now_ms: now,
            index: applied,
            range: p.desc(),
            zranks: Some(p.zranks()),
        };
        let resp = match execute(engine, &r.op, &ctx) {
            Ok(result) => KvResponse::Ok { result },
            Err(error) => KvResponse::Err { error },
        };
        ShardMetrics::record(
            &mut shard.metrics.borrow_mut().read_index_us,
            at.saturating_duration_since(r.at).as_micros() as u64,
        );
        let _ = r.tx.send(resp);
    }
    // A replica that lost leadership cannot answer its waiting reads.
    if !p.is_leader() {
        p.fail_reads(|| KvResponse::Err {
            error: net::RpcError::NotLeader { hint: None },
        });
    }
}
