// perf-critical: every request of the shard enters here.
//! Requests from clients (`KvRequest`) and peers (`RaftBatch`). Lease reads are answered at
//! once ([`Handled::Now`]); writes and ReadIndex reads answer when their entry applies.

use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;

use futures_channel::oneshot;
use net::message::kv::{KvRequest, KvResponse};
use net::message::{Pong, RaftBatch, Replica, ReplicaRole};
use net::transport::Handled;
use net::{Message, RpcError};
use raft::eraftpb::Message as RaftMsg;

use super::metrics::ShardMetrics;
use super::peer::{Peer, RANGE_STOPPED, REQUEST_TIMEOUT};
use super::read::Answer;
use super::shard::{MAX_UNINITIALIZED, Shard, ShardDevice, ShardState};
use super::validate::{self, Refusal};
use crate::range::dedup::WriteId;

/// A reply that completes later.
pub type Reply = Pin<Box<dyn Future<Output = Option<Message>>>>;

fn now_reply(r: KvResponse) -> Handled<Reply> {
    Handled::Now(Some(Message::KvResponse(r)))
}

fn err(e: RpcError) -> Handled<Reply> {
    now_reply(KvResponse::Err { error: e })
}

fn later(rx: oneshot::Receiver<KvResponse>) -> Handled<Reply> {
    Handled::Later(Box::pin(async move {
        let timeout = crate::core::sleep(REQUEST_TIMEOUT);
        let r = futures_lite::future::or(async { rx.await.ok() }, async {
            timeout.await;
            None
        })
        .await;
        let r = r.unwrap_or(KvResponse::Err {
            error: RpcError::Timeout {},
        });
        Some(Message::KvResponse(r))
    }))
}

/// Handles one message for `shard`.
pub fn handle<D: ShardDevice>(shard: &Rc<Shard<D>>, msg: Message) -> Handled<Reply> {
    match msg {
        Message::KvRequest(req) => kv(shard, req, None, Memory::MayWait),
        Message::KvWrite(w) => {
            let id = WriteId {
                client: w.client,
                seq: w.seq,
            };
            fenced_write(shard, w.request, id, Memory::MayWait)
        }
        Message::RaftBatch(b) => {
            raft_batch(shard, b);
            Handled::Now(Some(Message::Pong(Pong { nonce: 0 })))
        }
        Message::SnapshotChunk(c) => Handled::Now(Some(Message::SnapshotAck(
            super::snapshot::on_chunk(shard, c),
        ))),
        Message::Ping(p) => Handled::Now(Some(Message::Pong(Pong { nonce: p.nonce }))),
        other => Handled::Now(Some(Message::Error(RpcError::BadRequest {
            message: format!("a DS shard does not serve {}", other.name()),
        }))),
    }
}

/// Whether a write may still wait for memory (`server::throttle`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Memory {
    /// First arrival: above the line, it waits.
    MayWait,
    /// It waited already and the shard came under the line: proposed now.
    Waited,
}

/// A write with its id, through the shard's write fences (`server::fence`): refused with
/// `ServerBusy` while an earlier write of its client and key is fenced; a fence put up behind
/// it when it is refused with an error the proxy retries.
fn fenced_write<D: ShardDevice>(
    shard: &Rc<Shard<D>>,
    req: KvRequest,
    id: WriteId,
    memory: Memory,
) -> Handled<Reply> {
    let Some(key) = req.op.dedup_key().cloned() else {
        return kv(shard, req, Some(id), memory);
    };
    let now = shard.now();
    if !shard.fences.borrow_mut().admits(id, &key, now) {
        shard.metrics.borrow_mut().write_fenced_total += 1;
        return err(RpcError::ServerBusy {});
    }
    let handled = kv(shard, req, Some(id), memory);
    if let Handled::Now(Some(Message::KvResponse(KvResponse::Err { error }))) = &handled
        && error.is_retryable()
    {
        shard.fences.borrow_mut().raise(id, key, now);
    }
    handled
}

/// A request, with its request id for a write that is applied once per id: checked against
/// the limits and the range (here, running, same epoch, led by this replica), then read or
/// proposed — a write that could add data to a shard above its memory line first waits
/// (`server::throttle`), then goes through these checks again.
fn kv<D: ShardDevice>(
    shard: &Rc<Shard<D>>,
    req: KvRequest,
    id: Option<WriteId>,
    memory: Memory,
) -> Handled<Reply> {
    if let Err(e) = req.op.check_limits(net::limits::DEFAULT_MAX_VALUE_BYTES) {
        shard.metrics.borrow_mut().over_limit_total += 1;
        return err(e.into());
    }
    let mut st = shard.state.borrow_mut();
    let ShardState {
        peers,
        engine,
        frozen,
        ..
    } = &mut *st;
    let Some(p) = peers
        .get_mut(&req.ctx.range_id)
        .filter(|p| p.is_initialized())
    else {
        return err(RpcError::RangeNotFound {
            range_id: req.ctx.range_id,
        });
    };
    if frozen.contains_key(&req.ctx.range_id) {
        // Being merged into its left neighbour (`server::merge`): retried once it is gone.
        return err(RpcError::ServerBusy {});
    }
    if let Some(why) = p.stopped() {
        return err(RpcError::Internal {
            code: RANGE_STOPPED,
            message: format!("range {} stopped: {why}", p.desc().id),
        });
    }
    if req.ctx.epoch != p.desc().epoch {
        let desc = p.desc().clone();
        return err(RpcError::EpochMismatch {
            ranges: with_split_neighbours(peers, desc),
        });
    }
    if !p.is_leader() {
        return err(shard.not_leader(p));
    }
    if req.op.is_write() {
        let accounted = engine.accounted().total();
        if memory == Memory::MayWait && super::throttle::must_wait(shard, accounted, &req.op) {
            drop(st);
            // Later writes of its key wait behind it (`server::fence`).
            if let (Some(id), Some(key)) = (id, req.op.dedup_key()) {
                shard
                    .fences
                    .borrow_mut()
                    .raise(id, key.clone(), shard.now());
            }
            return throttled(shard, req, id);
        }
        match super::write::propose(shard, p, req.op, id) {
            Ok(rx) => later(rx),
            Err(e) => err(e),
        }
    } else {
        match super::read::start(shard, p, engine, req.op) {
            Ok(Answer::Now(r)) => now_reply(r),
            Ok(Answer::Later(rx)) => later(rx),
            Err(e) => err(e),
        }
    }
}

/// A write that waits for memory, then is checked and proposed as if it just arrived (the
/// range may have moved or lost its leader meanwhile), or is refused with the OOM error.
fn throttled<D: ShardDevice>(
    shard: &Rc<Shard<D>>,
    req: KvRequest,
    id: Option<WriteId>,
) -> Handled<Reply> {
    let shard = Rc::clone(shard);
    Handled::Later(Box::pin(async move {
        if let Err(e) = super::throttle::wait(&shard).await {
            if let (Some(id), Some(key)) = (id, req.op.dedup_key()) {
                shard.fences.borrow_mut().lower(id, key);
            }
            return Some(Message::KvResponse(KvResponse::Err { error: e }));
        }
        let handled = match id {
            // Its own fence comes down as it passes (`WriteFences::admits`).
            Some(id) => fenced_write(&shard, req, id, Memory::Waited),
            None => kv(&shard, req, None, Memory::Waited),
        };
        match handled {
            Handled::Now(m) => m,
            Handled::Later(reply) => reply.await,
        }
    }))
}

/// Most ranges an `EpochMismatch` describes.
const MISMATCH_RANGES: usize = 8;

/// `desc` and the ranges of this shard that continue it to the right (a range split here
/// leaves its right part on the same shard), so a client with the old epoch can route the
/// keys that moved without asking the master, which may not know the split yet.
fn with_split_neighbours(
    peers: &std::collections::BTreeMap<net::RangeId, super::peer::Peer>,
    desc: net::message::RangeDescriptor,
) -> Vec<net::message::RangeDescriptor> {
    let mut out = vec![desc];
    while out.len() < MISMATCH_RANGES {
        let end = out.last().map(|d| d.end.clone()).unwrap_or_default();
        if end.is_empty() {
            break;
        }
        match peers
            .values()
            .find(|p| p.is_initialized() && p.desc().start == end)
        {
            Some(p) => {
                let mut d = p.desc().clone();
                if p.is_leader() {
                    d.leader = Some(p.replica_id());
                }
                out.push(d);
            }
            None => break,
        }
    }
    out
}

/// How often refused Raft messages are logged (at debug, with counts).
const REFUSAL_LOG_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// Why one Raft message of a batch was dropped.
enum Dropped {
    /// Undecodable, inconsistent with its envelope, or refused by raft-rs.
    Bad,
    /// Refused by validation (counted by reason).
    Refused(Refusal),
}

fn raft_batch<D: ShardDevice>(shard: &Shard<D>, b: RaftBatch) {
    let mut st = shard.state.borrow_mut();
    let mut bad = 0;
    let mut refused = [0u64; Refusal::ALL.len()];
    let from = (b.from_store, b.from_shard);
    for env in b.messages {
        match raft_message(shard, &mut st, from, env) {
            Ok(()) => {}
            Err(Dropped::Bad) => bad += 1,
            Err(Dropped::Refused(r)) => refused[r.index()] += 1,
        }
    }
    let any_refused = refused.iter().any(|&n| n > 0);
    let now = shard.now();
    let log_now = any_refused
        && st
            .refusals_logged_at
            .is_none_or(|t| now.saturating_duration_since(t) >= REFUSAL_LOG_EVERY);
    if log_now {
        st.refusals_logged_at = Some(now);
    }
    drop(st);
    let mut m = shard.metrics.borrow_mut();
    m.bad_raft_messages_total += bad;
    for (total, n) in m.raft_refused_total.iter_mut().zip(refused) {
        *total += n;
    }
    drop(m);
    if log_now {
        let counts: Vec<(&str, u64)> = Refusal::ALL
            .iter()
            .map(|r| (r.label(), refused[r.index()]))
            .filter(|&(_, n)| n > 0)
            .collect();
        tracing::debug!(store = %b.from_store, ?counts, "raft messages refused");
    }
    shard.wake.notify();
}

/// Validates one Raft message and steps it into its range's group (creating the replica
/// first for a leader's message, if the master places it here).
fn raft_message<D: ShardDevice>(
    shard: &Shard<D>,
    st: &mut ShardState,
    (from_store, from_shard): (net::StoreId, net::ShardId),
    env: net::message::RaftEnvelope,
) -> Result<(), Dropped> {
    use raft::eraftpb::MessageType;
    let mut m = crate::range::raft_pb::decode_message(&env.message).map_err(|_| Dropped::Bad)?;
    let range = env.range_id;
    if m.to != env.to_replica.0 || m.from != env.from_replica.0 || m.from == 0 || m.to == 0 {
        return Err(Dropped::Bad);
    }
    if !st.peers.contains_key(&range) {
        let p = replica_for(shard, st, range, &m)?;
        st.peers.insert(range, p);
        shard.metrics.borrow_mut().replicas_created_total += 1;
        tracing::info!(
            %range,
            replica = m.to,
            "replica created for a leader's message"
        );
    }
    let p = st.peers.get(&range).ok_or(Dropped::Bad)?;
    if m.to != p.replica_id().0 {
        return Err(Dropped::Refused(Refusal::Address));
    }
    if !p.is_initialized() && !master_places(shard, range, net::ReplicaId(m.from), None) {
        return Err(Dropped::Refused(Refusal::NotMember));
    }
    validate::check(&p.raft().raft, p.is_initialized(), &m).map_err(Dropped::Refused)?;
    let vote = matches!(
        m.get_msg_type(),
        MessageType::MsgRequestVote | MessageType::MsgRequestPreVote
    );
    // A vote forced by a leader transfer is safe: that leader fenced its own lease.
    if vote && m.context != raft::CAMPAIGN_TRANSFER && shard.refuses_votes_after_start() {
        return Err(Dropped::Refused(Refusal::VoteAfterStart));
    }
    if m.get_msg_type() == MessageType::MsgSnapshot {
        let got = snapshot_in(st, range, &m)?;
        m.mut_snapshot().data = Default::default();
        if let Some(p) = st.peers.get_mut(&range) {
            p.keep_snapshot(got);
        }
    }
    // Only now, with the sender a member: bounded by the ranges here and their members.
    st.reply_to.insert(
        (range, net::ReplicaId(m.from)),
        Replica {
            replica_id: env.from_replica,
            store_id: from_store,
            shard_id: from_shard,
            role: ReplicaRole::Voter {},
        },
    );
    // A stopped range (an apply hit an invariant) takes no more Raft traffic.
    let p = st
        .peers
        .get_mut(&range)
        .filter(|p| !p.is_stopped())
        .ok_or(Dropped::Bad)?;
    p.raft_mut().step(m).map_err(|_| Dropped::Bad)
}

/// A new, empty replica for a leader's message to a range this shard does not have: a
/// replica being added. Only for a range the master's route table places here under that
/// replica id with the sender as a member, never for a destroyed replica, and within the
/// shard's creation budget. Nothing is persisted until its first snapshot installs, and the
/// message is validated against it before it is kept.
fn replica_for<D: ShardDevice>(
    shard: &Shard<D>,
    st: &mut ShardState,
    range: net::RangeId,
    m: &RaftMsg,
) -> Result<Peer, Dropped> {
    use raft::eraftpb::MessageType;
    let from_leader = matches!(
        m.get_msg_type(),
        MessageType::MsgAppend | MessageType::MsgHeartbeat | MessageType::MsgSnapshot
    );
    if !from_leader || m.term == 0 {
        return Err(Dropped::Refused(Refusal::Type));
    }
    if st.tombstones.contains(&(range, net::ReplicaId(m.to))) {
        return Err(Dropped::Bad);
    }
    if !master_places(
        shard,
        range,
        net::ReplicaId(m.from),
        Some(net::ReplicaId(m.to)),
    ) {
        return Err(Dropped::Refused(Refusal::UnknownRange));
    }
    let waiting = st.peers.values().filter(|p| !p.is_initialized()).count();
    if waiting >= MAX_UNINITIALIZED || !st.creations.take(shard.now()) {
        return Err(Dropped::Refused(Refusal::CreationLimit));
    }
    let p = shard
        .new_uninitialized(range, net::ReplicaId(m.to))
        .map_err(|e| {
            tracing::warn!(%range, "cannot create replica: {e:#}");
            Dropped::Bad
        })?;
    validate::check(&p.raft().raft, false, m).map_err(Dropped::Refused)?;
    Ok(p)
}

/// Whether the master's last route table lists `from` as a replica of `range` and (with
/// `me`) replica `me` of it on this shard.
fn master_places<D: ShardDevice>(
    shard: &Shard<D>,
    range: net::RangeId,
    from: net::ReplicaId,
    me: Option<net::ReplicaId>,
) -> bool {
    let ranges = shard.master_ranges.borrow();
    let Some(d) = ranges.get(&range) else {
        return false;
    };
    let has = |id: net::ReplicaId| d.replicas.iter().any(|r| r.replica_id == id);
    let here = me.is_none_or(|me| {
        d.replicas.iter().any(|r| {
            r.replica_id == me && r.store_id == shard.store_id && r.shard_id.0 == shard.index
        })
    });
    has(from) && here
}

/// The snapshot data a `MsgSnapshot` names: stepped only with its data received whole, and
/// if its range does not overlap another range of this shard (a stale snapshot would
/// destroy keys).
fn snapshot_in(
    st: &mut ShardState,
    range: net::RangeId,
    m: &RaftMsg,
) -> Result<super::transfers::Received, Dropped> {
    let got = super::transfers::transfer_id(m)
        .and_then(|id| st.transfers.take(id, range))
        .ok_or(Dropped::Bad)?;
    let d = &got.meta.desc;
    let overlaps = st.peers.iter().any(|(&id, o)| {
        id != range
            && o.is_initialized()
            && (d.end.is_empty() || o.desc().start < d.end)
            && (o.desc().end.is_empty() || d.start < o.desc().end)
    });
    if overlaps {
        tracing::warn!(
            %range,
            "snapshot overlaps another range of this shard; dropped"
        );
        return Err(Dropped::Bad);
    }
    Ok(got)
}

/// Records `v` µs (kept for symmetry with the ready loop's figures).
pub fn record_us(h: &mut hdrhistogram::Histogram<u64>, v: u64) {
    ShardMetrics::record(h, v);
}
