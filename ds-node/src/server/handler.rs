// perf-critical: every request of the shard enters here.
//! Requests from clients (`KvRequest`) and peers (`RaftBatch`). Lease reads are answered at
//! once ([`Handled::Now`]); writes and ReadIndex reads answer when their entry applies.

use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::time::Instant;

use futures_channel::oneshot;
use net::message::kv::{KvRequest, KvResponse};
use net::message::{LeaderHint, Pong, RaftBatch, Replica, ReplicaRole};
use net::transport::Handled;
use net::{Message, RpcError};
use raft::eraftpb::Message as RaftMsg;

use super::metrics::ShardMetrics;
use super::peer::{Peer, Pending, WaitingRead};
use super::shard::{Shard, ShardState, now_ms};
use crate::range::apply::{ApplyCtx, execute};
use crate::range::codec::encode_proposal;

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
        let timeout = crate::core::sleep(super::ready::REQUEST_TIMEOUT);
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
pub fn handle(shard: &Rc<Shard>, msg: Message) -> Handled<Reply> {
    match msg {
        Message::KvRequest(req) => kv(shard, req),
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

fn not_leader(shard: &Shard, p: &Peer) -> RpcError {
    shard.metrics.borrow_mut().not_leader_total += 1;
    let leader = p.leader_id();
    let hint = p
        .desc
        .replicas
        .iter()
        .find(|r| leader != 0 && r.replica_id.0 == leader)
        .and_then(|r| {
            shard
                .replica_addr(r)
                .map(|addr| LeaderHint { replica: *r, addr })
        });
    RpcError::NotLeader { hint }
}

/// `RpcError::Internal` code of a request to a stopped range (`Peer::stopped`).
pub const RANGE_STOPPED: u32 = 3;

/// Largest encoded proposal: a value of the largest size plus its key and framing; a
/// request whose values add up to more is refused before anything is proposed.
pub const MAX_PROPOSAL_BYTES: usize = net::limits::DEFAULT_MAX_VALUE_BYTES + (1 << 20);

fn kv(shard: &Rc<Shard>, req: KvRequest) -> Handled<Reply> {
    if let Err(e) = net::limits::check_op(&req.op, net::limits::DEFAULT_MAX_VALUE_BYTES) {
        shard.metrics.borrow_mut().over_limit_total += 1;
        return err(e.into());
    }
    let mut st = shard.state.borrow_mut();
    let ShardState { peers, engine, .. } = &mut *st;
    let Some(p) = peers.get_mut(&req.ctx.range_id.0).filter(|p| p.initialized) else {
        return err(RpcError::RangeNotFound {
            range_id: req.ctx.range_id,
        });
    };
    if let Some(why) = &p.stopped {
        return err(RpcError::Internal {
            code: RANGE_STOPPED,
            message: format!("range {} stopped: {why}", p.desc.id),
        });
    }
    if req.ctx.epoch != p.desc.epoch {
        let desc = p.desc.clone();
        return err(RpcError::EpochMismatch {
            ranges: with_split_neighbours(peers, desc),
        });
    }
    if !p.is_leader() {
        return err(not_leader(shard, p));
    }
    if !req.op.is_write() {
        if p.lease_read_ok() {
            shard.metrics.borrow_mut().lease_reads_total += 1;
            let ctx = ApplyCtx {
                now_ms: now_ms(),
                index: p.applied(),
                range: &p.desc,
            };
            return now_reply(match execute(engine, &req.op, &ctx) {
                Ok(result) => KvResponse::Ok { result },
                Err(error) => KvResponse::Err { error },
            });
        }
        if !p.node.raft.commit_to_current_term() {
            // raft-rs drops ReadIndex requests until the leader commits in its term (a few
            // ms after election): the client retries (hint: this replica).
            return err(not_leader(shard, p));
        }
        if p.reads.len() >= shard.cfg.max_inflight_proposals {
            shard.metrics.borrow_mut().busy_total += 1;
            return err(RpcError::ServerBusy {});
        }
        shard.metrics.borrow_mut().read_index_total += 1;
        let id = p.next_read;
        p.next_read += 1;
        let (tx, rx) = oneshot::channel();
        p.reads.insert(
            id,
            WaitingRead {
                op: req.op,
                tx,
                index: None,
                at: Instant::now(),
            },
        );
        p.node.read_index(id.to_le_bytes().to_vec());
        shard.wake.notify();
        return later(rx);
    }
    if p.pending.len() >= shard.cfg.max_inflight_proposals {
        shard.metrics.borrow_mut().busy_total += 1;
        return err(RpcError::ServerBusy {});
    }
    let data = encode_proposal(now_ms(), &req.op);
    if data.len() > MAX_PROPOSAL_BYTES {
        shard.metrics.borrow_mut().over_limit_total += 1;
        return err(RpcError::ValueTooLarge {
            len: data.len() as u64,
            max: MAX_PROPOSAL_BYTES as u64,
        });
    }
    let before = p.node.raft.raft_log.last_index();
    if p.node.propose(Vec::new(), data).is_err() {
        return err(not_leader(shard, p));
    }
    let index = p.node.raft.raft_log.last_index();
    if index <= before {
        return err(not_leader(shard, p));
    }
    let (tx, rx) = oneshot::channel();
    p.pending.insert(
        index,
        Pending {
            term: p.node.raft.term,
            tx,
            at: Instant::now(),
        },
    );
    shard.metrics.borrow_mut().proposals_total += 1;
    shard.wake.notify();
    later(rx)
}

/// Most ranges an `EpochMismatch` describes.
const MISMATCH_RANGES: usize = 8;

/// `desc` and the ranges of this shard that continue it to the right (a range split here
/// leaves its right part on the same shard), so a client with the old epoch can route the
/// keys that moved without asking the master, which may not know the split yet.
fn with_split_neighbours(
    peers: &std::collections::BTreeMap<u64, super::peer::Peer>,
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
            .find(|p| p.initialized && p.desc.start == end)
        {
            Some(p) => {
                let mut d = p.desc.clone();
                if p.is_leader() {
                    d.leader = Some(net::ReplicaId(p.replica_id));
                }
                out.push(d);
            }
            None => break,
        }
    }
    out
}

fn raft_batch(shard: &Shard, b: RaftBatch) {
    use protobuf::Message as _;
    use raft::eraftpb::MessageType;
    let mut st = shard.state.borrow_mut();
    let mut bad = 0;
    for env in b.messages {
        let Ok(mut m) = RaftMsg::parse_from_bytes(&env.message) else {
            bad += 1;
            continue;
        };
        let range = env.range_id.0;
        if m.to != env.to_replica.0 || m.from != env.from_replica.0 || m.from == 0 || m.to == 0 {
            bad += 1;
            continue;
        }
        st.reply_to.insert(
            (range, m.from),
            Replica {
                replica_id: env.from_replica,
                store_id: b.from_store,
                shard_id: b.from_shard,
                role: ReplicaRole::Voter {},
            },
        );
        if !st.peers.contains_key(&range) {
            // A leader talking to a replica this shard does not have yet: a replica being
            // added. Create it empty; its first snapshot gives it the range. Only a leader's
            // messages create one, never for a destroyed replica.
            let from_leader = matches!(
                m.get_msg_type(),
                MessageType::MsgAppend | MessageType::MsgHeartbeat | MessageType::MsgSnapshot
            );
            if !from_leader || m.term == 0 || st.tombstones.contains(&(range, m.to)) {
                bad += 1;
                continue;
            }
            match shard.new_uninitialized(range, m.to) {
                Ok(p) => {
                    st.peers.insert(range, p);
                    shard.metrics.borrow_mut().replicas_created_total += 1;
                    tracing::info!(
                        range,
                        replica = m.to,
                        "replica created for a leader's message"
                    );
                }
                Err(e) => {
                    tracing::warn!(range, "cannot create replica: {e:#}");
                    bad += 1;
                    continue;
                }
            }
        }
        if m.get_msg_type() == MessageType::MsgSnapshot {
            // Step it only with its data received whole, and if its range does not overlap
            // another range of this shard (a stale snapshot would destroy keys).
            let got = super::snapshot::transfer_id(&m).and_then(|id| st.transfers.take(id, range));
            let Some(got) = got else {
                bad += 1;
                continue;
            };
            let d = &got.meta.desc;
            let overlaps = st.peers.iter().any(|(&id, o)| {
                id != range
                    && o.initialized
                    && (d.end.is_empty() || o.desc.start < d.end)
                    && (o.desc.end.is_empty() || d.start < o.desc.end)
            });
            if overlaps {
                tracing::warn!(
                    range,
                    "snapshot overlaps another range of this shard; dropped"
                );
                bad += 1;
                continue;
            }
            m.mut_snapshot().data = Default::default();
            if let Some(p) = st.peers.get_mut(&range) {
                p.snapshot_in = Some(got);
            }
        }
        let Some(p) = st.peers.get_mut(&range).filter(|p| p.stopped.is_none()) else {
            bad += 1;
            continue;
        };
        if m.to != p.replica_id {
            bad += 1;
            continue;
        }
        if p.node.step(m).is_err() {
            bad += 1;
        }
    }
    drop(st);
    if bad > 0 {
        shard.metrics.borrow_mut().bad_raft_messages_total += bad;
    }
    shard.wake.notify();
}

/// Records `v` µs (kept for symmetry with the ready loop's figures).
pub fn record_us(h: &mut hdrhistogram::Histogram<u64>, v: u64) {
    ShardMetrics::record(h, v);
}
