// perf-critical: every write of the shard is proposed here.
//! Writes: a client operation encoded as a log entry and proposed to its range's Raft group;
//! its proposer waits until the entry applies (`server::apply` answers it).
//!
//! An operation module: imports the shard state, `disk_limit` and `throttle`.

use futures_channel::oneshot;
use net::RpcError;
use net::message::kv::{KvOp, KvResponse};

use super::peer::{Peer, Pending};
use super::shard::{MAX_PROPOSAL_BYTES, Shard, ShardDevice, now_ms};
use crate::range::codec::{encode_proposal, encode_write};
use crate::range::dedup::WriteId;

/// Proposes write `op` to the range's group; the receiver gets the answer when its entry
/// applies (`server::apply`). Refused when the range has too many proposals in flight, the
/// disk is full (`server::disk_limit`) or the entry would be too large.
pub fn propose<D: ShardDevice>(
    shard: &Shard<D>,
    p: &mut Peer,
    op: KvOp,
    id: Option<WriteId>,
) -> Result<oneshot::Receiver<KvResponse>, RpcError> {
    if p.pending_count() >= shard.cfg.max_inflight_proposals {
        shard.metrics.borrow_mut().busy_total += 1;
        return Err(RpcError::ServerBusy {});
    }
    if let Some(e) = super::disk_limit::refusal(shard, &op) {
        return Err(e);
    }
    let data = match id {
        Some(id) => encode_write(now_ms(), id, &op),
        None => encode_proposal(now_ms(), &op),
    };
    if data.len() > MAX_PROPOSAL_BYTES {
        shard.metrics.borrow_mut().over_limit_total += 1;
        return Err(RpcError::ValueTooLarge {
            len: data.len() as u64,
            max: MAX_PROPOSAL_BYTES as u64,
        });
    }
    let before = p.last_index();
    let write_bytes = data.len();
    let writes_in = match &op {
        KvOp::Multi { ops, .. } => ops.iter().filter(|o| o.is_write()).count().max(1) as u64,
        _ => 1,
    };
    if p.raft_mut().propose(Vec::new(), data).is_err() {
        return Err(shard.not_leader(p));
    }
    let index = p.last_index();
    if index <= before {
        return Err(shard.not_leader(p));
    }
    let (tx, rx) = oneshot::channel();
    // Counted as memory to come until it applies (`server::throttle`).
    let charge =
        super::throttle::may_grow(&op).then(|| shard.policy.throttle.charge(write_bytes as u64));
    p.add_pending(
        index,
        Pending {
            term: p.term(),
            tx,
            at: shard.now(),
            charge,
        },
    );
    shard.metrics.borrow_mut().proposals_total += 1;
    shard
        .load
        .borrow_mut()
        .writes(p.desc().id.0, writes_in, write_bytes);
    shard.wake.notify();
    Ok(rx)
}
