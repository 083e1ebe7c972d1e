// perf-critical: every committed entry of the shard is applied here.
//! Committed entries applied on this replica: decoded once ([`decode`]) and applied by kind —
//! client writes ([`write`], through `range::apply`), TTL sweeps, splits and conf changes.
//! The ready loop applies a turn's entries with [`entries`] (answering proposers); recovery
//! replays the shard log through the same [`decode`] and [`write`].
//!
//! An operation module: imports the shard state and the operations an entry runs (`cold`,
//! `split`, `conf_change`); what the ready loop must do after the turn (records to append,
//! right ranges to create, replicas to destroy) is handed back in [`Effects`].

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Instant;

use bytes::Bytes;
use engines::vlog::{LogIndex, LogRecord, Term, Vlog};
use net::message::RangeDescriptor;
use net::message::kv::{KvOp, KvResponse, OpResult};
use nvme::BlockDevice;
use raft::eraftpb::{ConfChangeV2, Entry, EntryType};

use super::conf_change::{apply_conf_change_to_desc, decode_conf_change};
use super::metrics::ShardMetrics;
use super::peer::Peer;
use super::shard::{Shard, ShardDevice, stop_range};
use crate::range::apply::{ApplyCtx, execute};
use crate::range::codec::{
    FreezeCmd, MergeCmd, SplitCmd, decode_freeze, decode_merge, decode_split, decode_sweep,
    decode_write_spans, encode_meta,
};
use crate::range::db_keys::{self, Counted, DbKeys};
use crate::range::dedup::{self, WriteId};
use crate::range::engine::{Backing, MasstreeStore};
use crate::range::store::SizeDelta;
use crate::range::zrank::ZRanks;

/// A committed entry, decoded.
#[derive(Debug)]
pub enum Committed {
    /// No data (a new leader's first entry).
    Empty,
    /// A client write, with its request id when it is applied once per id.
    Write {
        /// The leader's clock when it was proposed.
        now_ms: u64,
        /// The request id.
        id: Option<WriteId>,
        /// The operation.
        op: KvOp,
        /// The values it carries verbatim, with where they start in the entry's payload
        /// (`codec::decode_write_spans`): what may back the engine's writes.
        values: Vec<(usize, Bytes)>,
    },
    /// A TTL sweep of the listed keys.
    Sweep {
        /// The leader's clock when it was proposed.
        now_ms: u64,
        /// The keys it deletes if still expired or dead.
        keys: Vec<Bytes>,
    },
    /// A range split.
    Split(SplitCmd),
    /// The freeze of a merge's right range (`server::merge`).
    Freeze(FreezeCmd),
    /// The commit of a merge into this (left) range (`server::merge`).
    Merge(MergeCmd),
    /// A membership change (`None`: undecodable, ignored).
    ConfChange(Option<ConfChangeV2>),
    /// A normal entry no decoder accepts (skipped).
    Undecodable,
}

/// Decodes a committed entry of type `t`.
pub fn decode(t: EntryType, data: &[u8]) -> Committed {
    if t != EntryType::EntryNormal {
        return Committed::ConfChange(decode_conf_change(t, data));
    }
    if data.is_empty() {
        Committed::Empty
    } else if let Some((now_ms, id, op, values)) = decode_write_spans(data) {
        Committed::Write {
            now_ms,
            id,
            op,
            values,
        }
    } else if let Some((now_ms, keys)) = decode_sweep(data) {
        Committed::Sweep { now_ms, keys }
    } else if let Some(cmd) = decode_split(data) {
        Committed::Split(cmd)
    } else if let Some(cmd) = decode_freeze(data) {
        Committed::Freeze(cmd)
    } else if let Some(cmd) = decode_merge(data) {
        Committed::Merge(cmd)
    } else {
        Committed::Undecodable
    }
}

/// What applying a client write did.
#[derive(Debug)]
pub struct Written {
    /// The answer to the client.
    pub resp: KvResponse,
    /// The key of the dedup record the write made, if it made one.
    pub record: Option<Bytes>,
    /// The range's size change: the sum of what the engine's writes returned.
    pub size: SizeDelta,
    /// The engine's refusal if the write broke an invariant or reached a cold entry that was
    /// not loaded (the range stops at this entry).
    pub fault: Option<String>,
}

/// Applies client write `op` (entry `index` of the range `desc`) to the engine, once per
/// request id, counting the keys it creates and deletes into `keys` and keeping the range's
/// rank indexes `zranks` (none in recovery: they are rebuilt on use). What the engine stores
/// that is one of `backing`'s values is recorded backed by the entry.
#[allow(
    clippy::too_many_arguments,
    reason = "one entry's fields, passed through"
)]
pub fn write(
    engine: &mut MasstreeStore,
    (keys, zranks): (&mut DbKeys, Option<&RefCell<ZRanks>>),
    desc: &RangeDescriptor,
    index: u64,
    now_ms: u64,
    id: Option<WriteId>,
    op: &KvOp,
    backing: Option<Backing>,
) -> Written {
    let ctx = ApplyCtx {
        now_ms,
        index,
        range: desc,
        zranks,
    };
    engine.set_backing(backing);
    let mut counted = Counted::new(engine, keys);
    let (resp, record) =
        dedup::apply_once_recorded(&mut counted, id, op, now_ms, |s| execute(s, op, &ctx));
    let size = counted.size();
    engine.set_backing(None);
    let fault = super::cold::miss_fault(engine).or_else(|| engine.take_fault());
    Written {
        resp,
        record,
        size,
        fault,
    }
}

/// The values of entry `e` of `range` placed in the shard log (`None` when the log does not
/// hold the entry as one whole record with the same payload, or it carries no value).
pub fn backing<D: BlockDevice>(
    log: &Vlog<D>,
    range: net::RangeId,
    e: &Entry,
    values: Vec<(usize, Bytes)>,
) -> Option<Backing> {
    backing_at(log, range, e.index, e.term, e.data.len(), values)
}

/// [`backing`] for entry `index` of term `term` with a payload of `payload_len` bytes.
pub fn backing_at<D: BlockDevice>(
    log: &Vlog<D>,
    range: net::RangeId,
    index: u64,
    term: u64,
    payload_len: usize,
    values: Vec<(usize, Bytes)>,
) -> Option<Backing> {
    if values.is_empty() {
        return None;
    }
    let at = log.entry_payload_at(range, LogIndex(index), Term(term))?;
    (at.len == payload_len as u64).then(|| Backing::new(at.segment, at.offset, at.len, values))
}

/// What applying entries asks the ready loop to do after its turn.
#[derive(Debug)]
pub struct Effects<'a> {
    /// Range metadata records for the next group commit.
    pub meta_records: &'a mut Vec<LogRecord>,
    /// Ranges whose replica here a conf change removed.
    pub to_destroy: &'a mut Vec<net::RangeId>,
    /// Right ranges of splits to create (with the left's descriptor when this replica led).
    pub splits: &'a mut Vec<(RangeDescriptor, Option<RangeDescriptor>)>,
    /// Merge right ranges frozen on this shard (`server::merge`).
    pub frozen: &'a mut super::merge::Frozen,
    /// Merges applied, `(left, right)`, to finish after the turn.
    pub merges: &'a mut Vec<(net::RangeId, net::RangeId)>,
    /// Ranges that deferred entries (a commit-merge waits for its right replica here).
    pub deferring: &'a mut std::collections::BTreeSet<net::RangeId>,
}

/// What one entry did.
enum Outcome {
    /// Applied; the proposer's answer (`None`: `Unit`).
    Applied(Option<KvResponse>),
    /// The entry broke an engine invariant: the range stopped before it.
    Stopped,
    /// A commit-merge whose right replica here has not applied its freeze: this entry and
    /// the ones after it wait (`Peer::defer`).
    Deferred,
}

fn unit() -> KvResponse {
    KvResponse::Ok {
        result: OpResult::Unit {},
    }
}

/// Applies committed entries and answers their proposers; returns the index of the last
/// entry applied (the one before an entry that stopped the range, see [`stop_range`]).
pub fn entries<D: ShardDevice>(
    shard: &Rc<Shard<D>>,
    p: &mut Peer,
    engine: &mut MasstreeStore,
    fx: &mut Effects<'_>,
    entries: Vec<Entry>,
) -> u64 {
    let mut applied = 0;
    let now = shard.now();
    let mut last = entries.first().map_or(0, |e| e.index.saturating_sub(1));
    let mut entries = entries.into_iter();
    while let Some(e) = entries.next() {
        if p.is_stopped() {
            break;
        }
        let result = match entry(shard, p, engine, fx, &e) {
            Outcome::Applied(result) => result,
            Outcome::Stopped => break,
            Outcome::Deferred => {
                p.defer(std::iter::once(e).chain(entries));
                fx.deferring.insert(p.range_id());
                break;
            }
        };
        applied += 1;
        crate::failpoint!("ds_node::shard::write::after_apply");
        answer_proposer(shard, p, &e, result, now);
        last = e.index;
    }
    shard.metrics.borrow_mut().applied_total += applied;
    last
}

/// Applies one committed entry by kind.
fn entry<D: ShardDevice>(
    shard: &Rc<Shard<D>>,
    p: &mut Peer,
    engine: &mut MasstreeStore,
    fx: &mut Effects<'_>,
    e: &Entry,
) -> Outcome {
    let decoded = decode(e.get_entry_type(), &e.data);
    if fx.frozen.contains_key(&p.range_id())
        && matches!(decoded, Committed::Write { .. } | Committed::Sweep { .. })
    {
        // Frozen for a merge: its data is final; the proxy retries on the merged range.
        return Outcome::Applied(Some(KvResponse::Err {
            error: net::RpcError::ServerBusy {},
        }));
    }
    match decoded {
        Committed::Empty => Outcome::Applied(None),
        Committed::Freeze(cmd) => {
            freeze(p, fx, cmd, e.index);
            Outcome::Applied(None)
        }
        Committed::Merge(cmd) => merge(shard, p, engine, fx, &cmd, e.index),
        Committed::Write {
            now_ms,
            id,
            op,
            values,
        } => {
            let backing = backing(&shard.log, p.range_id(), e, values);
            let (desc, keys, zranks) = p.apply_state_mut();
            let w = write(
                engine,
                (keys, Some(zranks)),
                desc,
                e.index,
                now_ms,
                id,
                &op,
                backing,
            );
            if let Some(fault) = w.fault {
                stop_range(shard, p, e.index, fault);
                return Outcome::Stopped;
            }
            p.add_size(w.size);
            if let Some(record) = w.record {
                p.dedup_records.push(now_ms, record);
            }
            Outcome::Applied(Some(w.resp))
        }
        Committed::Sweep { now_ms, keys } => {
            let mut counted = Counted::new(engine, p.db_keys_mut());
            let n = crate::range::sweep::apply(&mut counted, now_ms, &keys);
            let size = counted.size();
            p.add_size(size);
            p.expired_mut().push(e.index, now_ms, n.expired_keys);
            let mut m = shard.metrics.borrow_mut();
            m.expired_deleted_total += n.expired;
            m.garbage_deleted_total += n.garbage;
            Outcome::Applied(None)
        }
        Committed::Split(cmd) => Outcome::Applied(split(shard, p, engine, fx, &cmd, e.index)),
        Committed::ConfChange(cc) => {
            if let Some(cc) = cc {
                conf_change(p, fx, &cc);
            }
            Outcome::Applied(Some(unit()))
        }
        Committed::Undecodable => {
            tracing::error!(
                range = p.desc().id.0,
                index = e.index,
                "undecodable entry skipped"
            );
            Outcome::Applied(None)
        }
    }
}

/// Applies a split to the left range (this one); the right range is created after the
/// turn ([`Effects::splits`]). `None` for a stale split.
fn split<D: ShardDevice>(
    shard: &Rc<Shard<D>>,
    p: &mut Peer,
    engine: &MasstreeStore,
    fx: &mut Effects<'_>,
    cmd: &SplitCmd,
    index: u64,
) -> Option<KvResponse> {
    let range = p.range_id();
    let Some(right) = p.change_desc(|d| super::split::apply_to_desc(d, cmd)) else {
        tracing::info!(%range, index, "stale split ignored");
        return None;
    };
    fx.meta_records.push(LogRecord::ConfState {
        range,
        data: encode_meta(p.desc()),
    });
    let left = p.is_leader().then(|| p.desc().clone());
    if let Some(l) = &left {
        // At once: until the master knows, proxies keep sending the left range's old epoch.
        super::split::report_later(shard, l.clone(), right.clone());
    }
    // The moved keys' counts go with them: the right side is walked, the left keeps the rest.
    let moved = db_keys::recount(engine, &right.start, &right.end);
    p.set_db_keys(p.db_keys().minus(&moved));
    fx.splits.push((right, left));
    // The moved keys' size goes with them (measured when created).
    let (b, k) = engine.size_of(&p.desc().start, &p.desc().end);
    p.set_size(b as i64, k as i64);
    Some(unit())
}

/// Freezes this range for a merge into `cmd.into` (ignored if stale or frozen already).
fn freeze(p: &Peer, fx: &mut Effects<'_>, cmd: FreezeCmd, index: u64) {
    let range = p.range_id();
    if cmd.epoch != p.desc().epoch || fx.frozen.contains_key(&range) {
        tracing::info!(%range, index, "stale merge freeze ignored");
        return;
    }
    fx.frozen.insert(range, (index, cmd.into));
    tracing::info!(%range, index, into = %cmd.into, "range frozen for a merge");
}

/// Applies a commit-merge to this (left) range once this shard's right replica applied its
/// freeze; the right replica is finished after the turn ([`Effects::merges`]).
fn merge<D: ShardDevice>(
    shard: &Rc<Shard<D>>,
    p: &mut Peer,
    engine: &MasstreeStore,
    fx: &mut Effects<'_>,
    cmd: &MergeCmd,
    index: u64,
) -> Outcome {
    let range = p.range_id();
    let mut probe = p.desc().clone();
    if !super::merge::apply_to_desc(&mut probe, cmd) {
        tracing::info!(%range, index, "stale merge ignored");
        return Outcome::Applied(None);
    }
    if fx.frozen.get(&cmd.right.id) != Some(&(cmd.freeze_index, range)) {
        tracing::debug!(%range, index, right = %cmd.right.id, "merge waits for the right replica's freeze");
        return Outcome::Deferred;
    }
    crate::failpoint!("ds_node::shard::merge::before_apply");
    p.change_desc(|d| *d = probe);
    // The right's keys join the left's counts and size (merged ranges are small).
    let (start, end) = (p.desc().start.clone(), p.desc().end.clone());
    p.set_db_keys(db_keys::recount(engine, &start, &end));
    let (b, k) = engine.size_of(&start, &end);
    p.set_size(b as i64, k as i64);
    fx.meta_records.push(LogRecord::ConfState {
        range,
        data: encode_meta(p.desc()),
    });
    if p.is_leader() {
        super::merge::report_later(shard, p.desc().clone(), cmd.right.clone());
    }
    fx.merges.push((range, cmd.right.id));
    Outcome::Applied(Some(unit()))
}

/// Applies a membership change to the Raft group and the descriptor; a replica it removed
/// from this shard is destroyed after the turn ([`Effects::to_destroy`]).
fn conf_change(p: &mut Peer, fx: &mut Effects<'_>, cc: &ConfChangeV2) {
    let range = p.range_id();
    // Tests: a replica that never learns of its own removal (the commit did not reach it).
    #[cfg(feature = "failpoints")]
    if cc.changes.iter().any(|ch| {
        ch.node_id == p.replica_id().0
            && ch.get_change_type() == raft::eraftpb::ConfChangeType::RemoveNode
    }) {
        fail::fail_point!("ds_node::shard::conf_change::miss_own_removal", |_| ());
    }
    match p.raft_mut().apply_conf_change(cc) {
        Ok(cs) => {
            p.raft_mut().mut_store().set_conf_state(cs);
            p.change_desc(|d| apply_conf_change_to_desc(d, cc));
            fx.meta_records.push(LogRecord::ConfState {
                range,
                data: encode_meta(p.desc()),
            });
            if !p
                .desc()
                .replicas
                .iter()
                .any(|r| r.replica_id == p.replica_id())
            {
                fx.to_destroy.push(range);
            }
        }
        Err(err) => tracing::warn!(%range, "conf change refused: {err}"),
    }
}

/// Answers the proposer of entry `e`, if it waits here: its result when the entry is the
/// one it proposed (same term), `NotLeader` when another leader's entry took its index.
/// `now` is the shard's clock when the turn's entries started to apply.
fn answer_proposer<D: ShardDevice>(
    shard: &Shard<D>,
    p: &mut Peer,
    e: &Entry,
    result: Option<KvResponse>,
    now: Instant,
) {
    let Some(w) = p.take_pending(e.index) else {
        return;
    };
    let resp = if w.term == e.term {
        // Committed in the term it was proposed: a quorum acknowledged an append sent after
        // `w.at`.
        p.extend_lease(w.term, w.at, now);
        ShardMetrics::record(
            &mut shard.metrics.borrow_mut().propose_apply_us,
            now.saturating_duration_since(w.at).as_micros() as u64,
        );
        result.unwrap_or_else(unit)
    } else {
        KvResponse::Err {
            error: net::RpcError::NotLeader { hint: None },
        }
    };
    let _ = w.tx.send(resp);
}
