//! Peer transport: Raft messages queued per destination shard, cut into `RaftBatch` frames
//! and sent on their own tasks over cached connections to peer shards.
//!
//! An operation module below the ready loop: imports the shard state only (`shard`,
//! `peer`); `server::snapshot` uses its connections.

use std::collections::HashMap;
use std::rc::Rc;

use net::message::{RaftBatch, RaftEnvelope};
use net::{Message as NetMessage, RangeId, ReplicaId, ShardId};
use raft::eraftpb::Message as RaftMsg;

use super::peer::Peer;
use super::shard::{Shard, ShardDevice};

/// Messages of one turn: Raft batches per destination address, and snapshots to stream.
#[derive(Debug, Default)]
pub struct Outbox {
    /// Raft messages per destination shard address.
    pub batches: HashMap<String, Vec<RaftEnvelope>>,
    /// (address, range, from replica, the `MsgSnapshot`).
    pub snapshots: Vec<(String, net::RangeId, ReplicaId, RaftMsg)>,
}

/// Queues Raft messages per destination shard address (snapshots apart: they are streamed).
pub fn collect<D: ShardDevice>(
    shard: &Shard<D>,
    p: &Peer,
    msgs: Vec<RaftMsg>,
    reply_to: &HashMap<(net::RangeId, net::ReplicaId), net::message::Replica>,
    out: &mut Outbox,
) {
    use protobuf::Message as _;
    use raft::eraftpb::MessageType;
    for m in msgs {
        let replica = p
            .desc()
            .replicas
            .iter()
            .find(|r| r.replica_id.0 == m.to)
            .copied()
            .or_else(|| reply_to.get(&(p.desc().id, net::ReplicaId(m.to))).copied());
        let Some(r) = replica else {
            continue;
        };
        let Some(addr) = shard.replica_addr(&r) else {
            tracing::debug!(to = m.to, "no address for replica");
            continue;
        };
        if m.get_msg_type() == MessageType::MsgSnapshot {
            out.snapshots.push((addr, p.range_id(), p.replica_id(), m));
            continue;
        }
        let Ok(bytes) = m.write_to_bytes() else {
            continue;
        };
        out.batches.entry(addr).or_default().push(RaftEnvelope {
            range_id: RangeId(p.desc().id.0),
            from_replica: p.replica_id(),
            to_replica: ReplicaId(m.to),
            message: bytes.into(),
        });
    }
}

/// A connection to the peer shard at `addr` (re-used; re-opened after a failure).
pub async fn peer_client<D: ShardDevice>(
    shard: &Rc<Shard<D>>,
    addr: &str,
) -> anyhow::Result<net::glommio_transport::Client> {
    let client = shard.peer_conns.borrow().get(addr).cloned();
    match client.filter(|c| !c.is_closed()) {
        Some(c) => Ok(c),
        None => {
            let c = net::glommio_transport::Client::connect(
                addr,
                shard.pool_hello,
                shard.peer_transport.clone(),
            )
            .await
            .map_err(|e| anyhow::anyhow!("connect {addr}: {e}"))?;
            shard
                .peer_conns
                .borrow_mut()
                .insert(addr.to_string(), c.clone());
            Ok(c)
        }
    }
}

/// Sends one `RaftBatch` per destination (one-way), each on its own task. The snapshots of
/// the outbox are left for the caller (`server::snapshot` streams them).
pub fn send_batches<D: ShardDevice>(shard: &Rc<Shard<D>>, out: &mut Outbox) {
    let batches = out
        .batches
        .drain()
        .flat_map(|(addr, messages)| split_batch(messages).map(move |m| (addr.clone(), m)));
    for (addr, messages) in batches {
        let batch = RaftBatch {
            from_store: shard.store_id,
            from_shard: ShardId(shard.index),
            messages,
        };
        let shard = Rc::clone(shard);
        crate::core::spawn(async move {
            // A call, not a one-way send: a peer that stopped answering (a dead process, or a
            // stopped in-process node whose socket lingers) shows up as an error, and the
            // connection is dropped and re-opened on the next batch.
            let client = match peer_client(&shard, &addr).await {
                Ok(c) => c,
                Err(e) => {
                    tracing::debug!(addr, "raft batch not sent: {e}");
                    return;
                }
            };
            if let Err(e) = client.call(NetMessage::RaftBatch(batch)).await {
                tracing::debug!(addr, "raft batch not delivered: {e}");
                shard.peer_conns.borrow_mut().remove(&addr);
            }
        });
    }
}

/// Bytes of Raft messages in one `RaftBatch` frame, past which the rest go in the next frame
/// (a message is never cut: one carrying a large entry travels alone, within the frame
/// limit that admits the largest entry).
const RAFT_BATCH_BYTES_MAX: usize = 16 << 20;

/// Cuts one destination's messages into batches of at most [`RAFT_BATCH_BYTES_MAX`] bytes
/// (or one message each when larger), in order.
fn split_batch(messages: Vec<RaftEnvelope>) -> impl Iterator<Item = Vec<RaftEnvelope>> {
    let mut out: Vec<Vec<RaftEnvelope>> = Vec::new();
    let mut bytes = 0;
    for m in messages {
        let len = m.message.len();
        match out.last_mut() {
            Some(cur) if bytes + len <= RAFT_BATCH_BYTES_MAX => cur.push(m),
            _ => {
                out.push(vec![m]);
                bytes = 0;
            }
        }
        bytes += len;
    }
    out.into_iter()
}
