//! Raft snapshots between DS nodes: a range's latest checkpoint file streamed in chunks.
//!
//! raft-rs decides *when* a replica needs a snapshot (its next entry was compacted away, or it
//! is new). Its `MsgSnapshot` carries only the identity of the snapshot (index, term,
//! configuration); the ready loop hands such a message to [`send`] instead of the batch:
//!
//! 1. the sender reads the range's checkpoint file (the newest one: a checkpoint is at least
//!    as new as the log's truncation point, so the entries after it are still in the log) —
//!    in index mode it builds the same bytes from the tree at the applied index — and sets
//!    the message's metadata from them;
//! 2. it sends the bytes as `SnapshotChunk`s, one chunk in flight, each acknowledged by a
//!    `SnapshotAck` ([`on_chunk`]); the receiver checks order and size bounds as chunks
//!    arrive and the checksum of the whole when the last one does;
//! 3. it then sends the `MsgSnapshot` (its data is the transfer id) in a `RaftBatch`; the
//!    receiver steps it only if the transfer it names arrived complete and checked, and does
//!    not overlap another range of the shard;
//! 4. raft-rs on the receiver returns the snapshot in a ready: the ready loop installs it
//!    ([`install`]): checkpoint file first, engine range replaced, then the range's
//!    descriptor and log truncation in the same group commit as its hard state;
//! 5. the sender reports `Finish` (or `Failure` at any error) to raft-rs.
//!
//! Bounds: at most [`MAX_SENDS`] transfers out and [`super::transfers::MAX_INCOMING`] in per
//! shard; a transfer larger than `max-snapshot-bytes` is refused; unfinished transfers are
//! dropped after [`super::transfers::TRANSFER_TTL`]. The transfers' state lives in
//! [`super::transfers`] (part of the shard state); this module is the operation.

use std::rc::Rc;

use engines::vlog::{AppendRecord, LogIndex, LogRecord, TruncateMode};
use net::message::{RaftBatch, RaftEnvelope, SnapshotAck, SnapshotChunk};
use net::{Message as NetMessage, ReplicaId, ShardId};
use raft::SnapshotStatus;
use raft::eraftpb::Message as RaftMsg;

use super::peer::{Peer, conf_state_of};
use super::shard::{Shard, ShardDevice, now_ms};
use super::transfers::Accepted;
use super::transport::peer_client;
use crate::range::checkpoint;
use crate::range::codec::encode_meta;
use crate::range::engine::MasstreeStore;

/// Most snapshot transfers a shard sends at once.
pub const MAX_SENDS: usize = 2;

/// Handles one chunk of an incoming transfer ([`super::transfers::Transfers::accept`]).
pub fn on_chunk<D: ShardDevice>(shard: &Shard<D>, c: SnapshotChunk) -> SnapshotAck {
    let got =
        shard
            .state
            .borrow_mut()
            .transfers
            .accept(&c, shard.cfg.max_snapshot_bytes, shard.now());
    let accepted = match got {
        Ok(Accepted::Partial) => true,
        Ok(Accepted::Complete) => {
            shard.metrics.borrow_mut().snapshots_received_total += 1;
            true
        }
        Err(why) => {
            tracing::warn!(range = %c.range_id, id = c.snapshot_id, seq = c.seq, "snapshot chunk refused: {why}");
            shard.metrics.borrow_mut().snapshot_chunks_refused_total += 1;
            false
        }
    };
    SnapshotAck {
        range_id: c.range_id,
        snapshot_id: c.snapshot_id,
        seq: c.seq,
        accepted,
    }
}

fn report<D: ShardDevice>(shard: &Shard<D>, range: net::RangeId, to: ReplicaId, ok: bool) {
    if let Some(p) = shard.state.borrow_mut().peers.get_mut(&range) {
        let status = if ok {
            SnapshotStatus::Finish
        } else {
            SnapshotStatus::Failure
        };
        p.raft_mut().report_snapshot(to.0, status);
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
pub async fn send<D: ShardDevice>(
    shard: Rc<Shard<D>>,
    addr: String,
    range: net::RangeId,
    from: ReplicaId,
    mut m: RaftMsg,
) {
    let to = ReplicaId(m.to);
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
            tracing::info!(%range, %to, addr, "snapshot not sent: {e:#}");
            false
        }
    };
    shard.state.borrow_mut().transfers.sending -= 1;
    report(&shard, range, to, ok);
}

/// The checkpoint `data` with every cold entry's value read from the shard log (checksums
/// checked), as a checkpoint without cold entries: what a replica elsewhere can load.
async fn with_cold_values<D: ShardDevice>(
    shard: &Shard<D>,
    data: Vec<u8>,
) -> anyhow::Result<Vec<u8>> {
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

async fn transfer<D: ShardDevice>(
    shard: &Rc<Shard<D>>,
    addr: &str,
    range: net::RangeId,
    from: ReplicaId,
    m: &mut RaftMsg,
) -> anyhow::Result<()> {
    use protobuf::Message as _;
    let data = if shard.lsm.is_some() {
        // Index mode: the range as the tree holds it now (at its applied index).
        let built = super::checkpoint::build(&shard.state.borrow(), range);
        built
            .map(|(e, _)| e.bytes)
            .ok_or_else(|| anyhow::anyhow!("range {range} is not initialized here"))?
    } else {
        super::checkpoint::read(shard, range)
            .await?
            .ok_or_else(|| anyhow::anyhow!("range {range} has no checkpoint"))?
    };
    let data = with_cold_values(shard, data).await?;
    let meta = checkpoint::decode_meta(&data)?;
    anyhow::ensure!(
        meta.desc.replicas.iter().any(|r| r.replica_id.0 == m.to),
        "the newest checkpoint (index {}) predates replica {}",
        meta.index,
        m.to
    );
    let id = {
        let n = shard.state.borrow_mut().transfers.next_send_number();
        (shard.store_id.0 << 40) ^ (u64::from(shard.index) << 32) ^ n ^ (now_ms() << 20)
    };
    let client = peer_client(shard, addr).await?;
    let chunk = shard.cfg.snapshot_chunk_bytes;
    let n = data.len().div_ceil(chunk).max(1);
    for seq in 0..n {
        let part = &data[seq * chunk..((seq + 1) * chunk).min(data.len())];
        let r = client
            .call(NetMessage::SnapshotChunk(SnapshotChunk {
                range_id: range,
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
            from_store: shard.store_id,
            from_shard: ShardId(shard.index),
            messages: vec![RaftEnvelope {
                range_id: range,
                from_replica: from,
                to_replica: ReplicaId(m.to),
                message: bytes.into(),
            }],
        }))
        .await
        .map_err(|e| anyhow::anyhow!("snapshot message: {e}"))?;
    tracing::info!(
        %range,
        to = m.to,
        index = meta.index,
        bytes = data.len(),
        "snapshot sent"
    );
    Ok(())
}

/// Installs the snapshot raft-rs handed back in a ready (received and stepped earlier, see
/// above): the range's keys in the engine are replaced, the Raft cache restarts
/// at the snapshot, and the log records that make it durable are queued for this turn's group
/// commit. Returns the snapshot index and the checkpoint bytes to write before that commit.
pub fn install<D: ShardDevice>(
    shard: &Shard<D>,
    p: &mut Peer,
    engine: &mut MasstreeStore,
    snap: &raft::eraftpb::Snapshot,
    records: &mut Vec<AppendRecord>,
) -> anyhow::Result<(u64, Rc<Vec<u8>>)> {
    let md = snap.get_metadata();
    let range = p.range_id();
    let recv = p.take_snapshot(md.index).ok_or_else(|| {
        anyhow::anyhow!(
            "range {range}: raft-rs returned a snapshot at {} that was never received",
            md.index
        )
    })?;
    let c = crate::range::checkpoint::decode(&recv.data)
        .map_err(|e| anyhow::anyhow!("range {range}: snapshot: {e}"))?;
    if p.is_initialized() {
        super::checkpoint::clear_range(engine, &p.desc().start, &p.desc().end);
    }
    p.set_desc(c.meta.desc.clone());
    p.mark_initialized();
    let (b, k) = super::checkpoint::entries_size(&c.entries);
    p.set_size(b, k);
    super::checkpoint::load(engine, c);
    p.set_db_keys(crate::range::db_keys::recount(
        engine,
        &p.desc().start,
        &p.desc().end,
    ));
    p.raft_mut()
        .mut_store()
        .apply_snapshot(crate::range::storage::SnapshotPoint {
            index: md.index,
            term: md.term,
            conf: md.get_conf_state().clone(),
        });
    records.push(AppendRecord::from(LogRecord::ConfState {
        range,
        data: encode_meta(p.desc()),
    }));
    for mode in [TruncateMode::Compact, TruncateMode::Suffix] {
        records.push(AppendRecord::from(LogRecord::Truncate {
            range,
            mode,
            index: LogIndex(md.index + 1),
        }));
    }
    shard.metrics.borrow_mut().snapshots_applied_total += 1;
    tracing::info!(%range, index = md.index, "snapshot installed");
    Ok((md.index, recv.data))
}
