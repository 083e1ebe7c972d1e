//! Raft snapshots between DS nodes: a range's latest checkpoint file streamed in chunks.
//!
//! raft-rs decides *when* a replica needs a snapshot (its next entry was compacted away, or it
//! is new). Its `MsgSnapshot` carries only the identity of the snapshot (index, term,
//! configuration); the ready loop hands such a message to [`send`] instead of the batch:
//!
//! 1. the sender reads the range's checkpoint file (the newest one: a checkpoint is at least
//!    as new as the log's truncation point, so the entries after it are still in the log) and
//!    sets the message's metadata from the file;
//! 2. it sends the bytes as `SnapshotChunk`s, one chunk in flight, each acknowledged by a
//!    `SnapshotAck` ([`on_chunk`]); the receiver checks order and size bounds as chunks
//!    arrive and the checksum of the whole when the last one does;
//! 3. it then sends the `MsgSnapshot` (its data is the transfer id) in a `RaftBatch`; the
//!    receiver steps it only if the transfer it names arrived complete and checked, and does
//!    not overlap another range of the shard;
//! 4. raft-rs on the receiver returns the snapshot in a ready: the ready loop installs it
//!    ([`super::ready`]): checkpoint file first, engine range replaced, then the range's
//!    descriptor and log truncation in the same group commit as its hard state;
//! 5. the sender reports `Finish` (or `Failure` at any error) to raft-rs.
//!
//! Bounds: at most [`MAX_SENDS`] transfers out and [`MAX_INCOMING`] in per shard; a
//! transfer larger than `max-snapshot-bytes` is refused; unfinished transfers are dropped
//! after [`TRANSFER_TTL`].

use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use net::message::{RaftBatch, RaftEnvelope, SnapshotAck, SnapshotChunk};
use net::{Message as NetMessage, RangeId, ReplicaId, ShardId, StoreId};
use raft::SnapshotStatus;
use raft::eraftpb::Message as RaftMsg;

use super::peer::conf_state_of;
use super::shard::Shard;
use crate::range::checkpoint::{self, CheckpointMeta};

/// Most snapshot transfers a shard sends at once.
pub const MAX_SENDS: usize = 2;
/// Most snapshot transfers a shard receives at once (including complete ones not yet used).
pub const MAX_INCOMING: usize = 4;
/// How long an unfinished or unused transfer is kept.
pub const TRANSFER_TTL: Duration = Duration::from_secs(60);

/// A transfer being received.
#[derive(Debug)]
pub struct Incoming {
    range: u64,
    next_seq: u32,
    data: Vec<u8>,
    started: Instant,
}

/// A complete, checked transfer waiting for its `MsgSnapshot`.
#[derive(Debug, Clone)]
pub struct Received {
    /// The checkpoint bytes (checksum verified).
    pub data: Rc<Vec<u8>>,
    /// Its identity.
    pub meta: CheckpointMeta,
    at: Instant,
}

/// Snapshot transfers of one shard.
#[derive(Debug, Default)]
pub struct Transfers {
    incoming: HashMap<u64, Incoming>,
    received: HashMap<u64, Received>,
    /// Transfers being sent.
    pub sending: usize,
    next_id: u64,
}

impl Transfers {
    fn expire(&mut self) {
        let now = Instant::now();
        self.incoming
            .retain(|_, t| now.duration_since(t.started) < TRANSFER_TTL);
        self.received
            .retain(|_, t| now.duration_since(t.at) < TRANSFER_TTL);
    }

    /// Takes the complete transfer `id` of `range`.
    pub fn take(&mut self, id: u64, range: u64) -> Option<Received> {
        match self.received.get(&id) {
            Some(r) if r.meta.desc.id.0 == range => self.received.remove(&id),
            _ => None,
        }
    }
}

/// The transfer id a `MsgSnapshot`'s data names.
pub fn transfer_id(m: &RaftMsg) -> Option<u64> {
    let d = &m.get_snapshot().data;
    (d.len() == 8).then(|| {
        let mut a = [0u8; 8];
        a.copy_from_slice(d);
        u64::from_le_bytes(a)
    })
}

/// Handles one chunk of an incoming transfer.
pub fn on_chunk(shard: &Shard, c: SnapshotChunk) -> SnapshotAck {
    let mut st = shard.state.borrow_mut();
    let t = &mut st.transfers;
    t.expire();
    let id = c.snapshot_id;
    let ack = |accepted| SnapshotAck {
        range_id: c.range_id,
        snapshot_id: id,
        seq: c.seq,
        accepted,
    };
    let refuse = |t: &mut Transfers, why: &str| {
        t.incoming.remove(&id);
        tracing::warn!(range = %c.range_id, id, seq = c.seq, "snapshot chunk refused: {why}");
        shard.metrics.borrow_mut().snapshot_chunks_refused_total += 1;
        ack(false)
    };
    if c.seq == 0 {
        if t.incoming.len() + t.received.len() >= MAX_INCOMING || t.incoming.contains_key(&id) {
            return refuse(t, "too many transfers");
        }
        t.incoming.insert(
            id,
            Incoming {
                range: c.range_id.0,
                next_seq: 0,
                data: Vec::new(),
                started: Instant::now(),
            },
        );
    }
    let Some(inc) = t.incoming.get_mut(&id) else {
        return refuse(t, "unknown transfer");
    };
    if inc.next_seq != c.seq || inc.range != c.range_id.0 {
        return refuse(t, "out of order");
    }
    if (inc.data.len() + c.data.len()) as u64 > shard.cfg.max_snapshot_bytes {
        return refuse(t, "larger than max-snapshot-bytes");
    }
    inc.data.extend_from_slice(&c.data);
    inc.next_seq += 1;
    if !c.last {
        return ack(true);
    }
    let Some(inc) = t.incoming.remove(&id) else {
        return refuse(t, "unknown transfer");
    };
    if checkpoint::has_cold(&inc.data) {
        // Pointers name the sender's shard log: a snapshot must carry values.
        return refuse(t, "snapshot with cold entries");
    }
    match checkpoint::decode_meta(&inc.data) {
        Ok(meta) if meta.desc.id.0 == inc.range => {
            t.received.insert(
                id,
                Received {
                    data: Rc::new(inc.data),
                    meta,
                    at: Instant::now(),
                },
            );
            shard.metrics.borrow_mut().snapshots_received_total += 1;
            ack(true)
        }
        Ok(_) => refuse(t, "snapshot of another range"),
        Err(e) => refuse(t, &e.to_string()),
    }
}

fn report(shard: &Shard, range: u64, to: u64, ok: bool) {
    if let Some(p) = shard.state.borrow_mut().peers.get_mut(&range) {
        let status = if ok {
            SnapshotStatus::Finish
        } else {
            SnapshotStatus::Failure
        };
        p.node.report_snapshot(to, status);
    }
    let mut m = shard.metrics.borrow_mut();
    if ok {
        m.snapshots_sent_total += 1;
    } else {
        m.snapshot_send_failures_total += 1;
    }
    drop(m);
    shard.wake.notify();
}

/// Sends the snapshot raft-rs asked for in `m` to the replica at `addr` (see the module
/// documentation). Runs as its own task.
pub async fn send(shard: Rc<Shard>, addr: String, range: u64, from: u64, mut m: RaftMsg) {
    let to = m.to;
    {
        let mut st = shard.state.borrow_mut();
        if st.transfers.sending >= MAX_SENDS {
            drop(st);
            report(&shard, range, to, false);
            return;
        }
        st.transfers.sending += 1;
    }
    let ok = match transfer(&shard, &addr, range, from, &mut m).await {
        Ok(()) => true,
        Err(e) => {
            tracing::info!(range, to, addr, "snapshot not sent: {e:#}");
            false
        }
    };
    shard.state.borrow_mut().transfers.sending -= 1;
    report(&shard, range, to, ok);
}

/// The checkpoint `data` with every cold entry's value read from the shard log (checksums
/// checked), as a checkpoint without cold entries: what a replica elsewhere can load.
async fn with_cold_values(shard: &Shard, data: Vec<u8>) -> anyhow::Result<Vec<u8>> {
    if !checkpoint::has_cold(&data) {
        return Ok(data);
    }
    let c = checkpoint::decode(&data)?;
    drop(data);
    let pointers: Vec<_> = c.cold.iter().map(|(_, e)| e.pointer).collect();
    let values = super::cold::read_values(shard, &pointers).await?;
    let mut all: Vec<(bytes::Bytes, crate::range::store::Entry)> = c.entries;
    all.extend(c.cold.into_iter().zip(values).map(|((k, e), v)| {
        let entry = crate::range::store::Entry {
            value: v.into(),
            expire_at_ms: e.expire_at_ms,
        };
        (k, entry)
    }));
    all.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    Ok(checkpoint::encode(
        &c.meta,
        all.iter().map(|(k, e)| (&k[..], e)),
    ))
}

async fn transfer(
    shard: &Rc<Shard>,
    addr: &str,
    range: u64,
    from: u64,
    m: &mut RaftMsg,
) -> anyhow::Result<()> {
    use protobuf::Message as _;
    let data = super::checkpoint::read(shard, range)
        .await?
        .ok_or_else(|| anyhow::anyhow!("range {range} has no checkpoint"))?;
    let data = with_cold_values(shard, data).await?;
    let meta = checkpoint::decode_meta(&data)?;
    anyhow::ensure!(
        meta.desc.replicas.iter().any(|r| r.replica_id.0 == m.to),
        "the newest checkpoint (index {}) predates replica {}",
        meta.index,
        m.to
    );
    let id = {
        let mut st = shard.state.borrow_mut();
        st.transfers.next_id += 1;
        (shard.store_id << 40)
            ^ (u64::from(shard.index) << 32)
            ^ st.transfers.next_id
            ^ (super::shard::now_ms() << 20)
    };
    let client = super::ready::peer_client(shard, addr).await?;
    let chunk = shard.cfg.snapshot_chunk_bytes;
    let n = data.len().div_ceil(chunk).max(1);
    for seq in 0..n {
        let part = &data[seq * chunk..((seq + 1) * chunk).min(data.len())];
        let r = client
            .call(NetMessage::SnapshotChunk(SnapshotChunk {
                range_id: RangeId(range),
                to_replica: ReplicaId(m.to),
                snapshot_id: id,
                seq: seq as u32,
                last: seq + 1 == n,
                data: bytes::Bytes::copy_from_slice(part),
            }))
            .await
            .map_err(|e| anyhow::anyhow!("chunk {seq}: {e}"))?;
        match r {
            NetMessage::SnapshotAck(a) if a.accepted && a.seq == seq as u32 => {}
            other => anyhow::bail!("chunk {seq} refused: {other:?}"),
        }
    }
    let s = m.mut_snapshot();
    let md = s.mut_metadata();
    md.index = meta.index;
    md.term = meta.term;
    md.set_conf_state(conf_state_of(&meta.desc));
    s.data = id.to_le_bytes().to_vec().into();
    let bytes = m.write_to_bytes()?;
    client
        .call(NetMessage::RaftBatch(RaftBatch {
            from_store: StoreId(shard.store_id),
            from_shard: ShardId(shard.index),
            messages: vec![RaftEnvelope {
                range_id: RangeId(range),
                from_replica: ReplicaId(from),
                to_replica: ReplicaId(m.to),
                message: bytes.into(),
            }],
        }))
        .await
        .map_err(|e| anyhow::anyhow!("snapshot message: {e}"))?;
    tracing::info!(
        range,
        to = m.to,
        index = meta.index,
        bytes = data.len(),
        "snapshot sent"
    );
    Ok(())
}
