//! Cold reads: **prefetch, then apply**.
//!
//! The state machine (`range::apply`) is synchronous and reads entries from memory; an entry
//! may be cold (only a pointer into the shard log, `range::engine`). So before an operation
//! runs, the shard
//!
//! 1. **plans** ([`plan`]): finds the cold entries the operation can touch, from the
//!    operation alone and the tree's current shape — for each Redis key it names, every
//!    cold entry under the key's prefix (metadata, elements, dedup records); raw keys
//!    (strings and metadata-only operations: the metadata entry alone; a write's dedup
//!    record by its exact key); raw keys exactly; a key scan the page it will visit; a raw scan the pages it will visit; a
//!    transaction the union of its operations and watched keys; a sweep entry its keys and
//!    their collections' metadata. A range flush deletes without reading values and loads
//!    nothing.
//! 2. **loads** them ([`load`]): [`READS_IN_FLIGHT`] device reads at a time through the
//!    shard log (`Vlog::read_value`: one aligned read of the value's blocks, crc32c of the
//!    bytes checked), and puts each value back in memory next to its pointer
//!    (`MasstreeStore::load`; demoting it again costs no write);
//! 3. **re-plans**, because the demotion task may run while the reads are in flight, until
//!    nothing is missing (at most [`ROUNDS`] rounds), and then applies in the same
//!    synchronous step — no `.await` between the last plan and the apply, so nothing can
//!    demote in between.
//!
//! Where this runs:
//! - committed entries: the ready loop loads for every entry of a turn before applying any
//!   (`ready::finish`); recovery before each replayed entry (`Shard::recover`). An entry
//!   only ever *adds* hot entries, so the union planned before the turn covers what later
//!   entries of the turn reach. A load that fails (device error, checksum) stops the range
//!   on this replica (its clients get an error; other replicas are unaffected): a write
//!   cannot be applied without the value, and must not be applied differently.
//! - reads (lease reads in `handler`, ReadIndex reads in `ready`): a read that needs no
//!   load is answered at once, in place; one that does is handed to its own task, which
//!   loads, re-checks the range (still here, still leader) and answers. So a hot read never
//!   waits behind a cold one. A failed load is an error reply ([`COLD_READ_FAILED`]) and a
//!   counter, never a value.
//!
//! A cold entry reached by the state machine without having been loaded is a bug of the
//! plan: a debug assertion fails (tests), and in release the store counts it
//! (`take_cold_misses`): a read answers an error, a write stops the range.
//!
//! Bounded: one operation loads at most [`MAX_LOAD_BYTES`] (else it fails with an error);
//! reads in flight per load are [`READS_IN_FLIGHT`].

use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::Poll;

use bytes::Bytes;
use engines::masstree::LogPointer;
use engines::vlog::Error as LogError;
use futures_channel::oneshot;
use net::RpcError;
use net::message::RangeDescriptor;
use net::message::kv::{KvOp, KvResponse, OpFamily, WriteOp};

use super::metrics::ShardMetrics;
use super::shard::{Shard, ShardDevice};
use crate::keyspace::{self, Db};
use crate::range::apply::{ApplyCtx, execute};
use crate::range::db_walk;
use crate::range::engine::{Loaded, MasstreeStore};

/// Device reads one load keeps in flight.
pub const READS_IN_FLIGHT: usize = 32;
/// Plan-load rounds before giving up (the demotion task kept making entries cold).
pub const ROUNDS: usize = 8;
/// Most value bytes one operation (or one turn of committed entries) loads.
pub const MAX_LOAD_BYTES: u64 = 1 << 30;
/// `RpcError::Internal` code of a read whose cold value could not be loaded.
pub const COLD_READ_FAILED: u32 = 4;

/// Why cold entries could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ColdError {
    /// The device failed or the bytes did not match their checksum.
    #[error("cold value read failed: {0}")]
    Read(#[source] LogError),
    /// More than [`MAX_LOAD_BYTES`] to load for one operation.
    #[error("operation would load {0} bytes of cold values (limit {MAX_LOAD_BYTES})")]
    TooLarge(u64),
    /// The entries kept turning cold while they were loaded.
    #[error("cold entries kept being demoted while they were loaded")]
    Unstable,
}

impl ColdError {
    /// The error a client sees.
    pub fn to_rpc(&self) -> RpcError {
        RpcError::Internal {
            code: COLD_READ_FAILED,
            message: self.to_string(),
        }
    }
}

/// The user-key prefix shared by every internal key of Redis key `key` (its metadata key
/// without the trailing tag byte; `keyspace` keeps every entry of a key under it).
fn user_prefix(db: Db, key: &[u8]) -> Bytes {
    let m = keyspace::meta_key(db, key);
    m.slice(..m.len() - 1)
}

/// Appends the cold entries `op` can touch in `range` at `now_ms` to `out` (see the module
/// documentation).
pub fn plan(
    engine: &MasstreeStore,
    op: &KvOp,
    range: &RangeDescriptor,
    now_ms: u64,
    out: &mut Vec<(Bytes, LogPointer)>,
) {
    plan_in(engine, Db::ZERO, op, range, now_ms, out);
}

/// [`plan`] for an operation running in database `db` (an `InDb` sets it for what it wraps).
fn plan_in(
    engine: &MasstreeStore,
    db: Db,
    op: &KvOp,
    range: &RangeDescriptor,
    now_ms: u64,
    out: &mut Vec<(Bytes, LogPointer)>,
) {
    let exact = |k: &[u8], out: &mut Vec<(Bytes, LogPointer)>| {
        if let Some(p) = engine.cold_pointer(k) {
            out.push((Bytes::copy_from_slice(k), p));
        }
    };
    match op {
        KvOp::Get { key }
        | KvOp::Put { key, .. }
        | KvOp::Delete { key }
        | KvOp::CompareAndSet { key, .. }
        | KvOp::Increment { key, .. } => exact(key, out),
        KvOp::BatchGet { keys } => keys.iter().for_each(|k| exact(k, out)),
        KvOp::BatchWrite { ops } => {
            for w in ops {
                let (WriteOp::Put { key, .. } | WriteOp::Delete { key }) = w;
                exact(key, out);
            }
        }
        KvOp::Scan {
            start,
            end,
            limit,
            reverse,
            ..
        } => plan_raw_scan(engine, range, (start, end), *limit, *reverse, now_ms, out),
        KvOp::KeyScan {
            cursor,
            count,
            type_filter,
        } => plan_key_scan(
            engine,
            range,
            db,
            (cursor, *count, type_filter.is_some()),
            out,
        ),
        KvOp::Multi { watches, ops } => {
            for w in watches {
                plan_user_key(engine, db, &w.key, out);
            }
            for o in ops {
                plan_in(engine, db, o, range, now_ms, out);
            }
        }
        KvOp::InDb { db, op } => plan_in(engine, *db, op, range, now_ms, out),
        KvOp::KeyCopyDb {
            key, dst, dst_db, ..
        } => {
            plan_user_key(engine, db, key, out);
            plan_user_key(engine, *dst_db, dst, out);
        }
        KvOp::RangeFlush {} | KvOp::DbFlush {} | KvOp::DbStats {} | KvOp::ExpiredSince { .. } => {}
        KvOp::Eval { anchor, keys, .. } => {
            // A script may touch its keys and any key of its anchor's slot.
            let slot = net::keyspace::slot(anchor);
            for k in keys.iter().filter(|k| net::keyspace::slot(k) != slot) {
                plan_user_key(engine, db, k, out);
            }
            plan_slot(engine, db, slot, out);
        }
        _ if reads_metadata_only(op) => {
            for k in op.redis_key().into_iter().chain(op.other_redis_keys()) {
                exact(&keyspace::meta_key(db, k), out);
            }
        }
        _ => {
            for k in op.redis_key().into_iter().chain(op.other_redis_keys()) {
                plan_user_key(engine, db, k, out);
            }
        }
    }
}

/// Operations on strings and on a key's metadata read the metadata entry of their keys and
/// nothing else (the string is in it).
fn reads_metadata_only(op: &KvOp) -> bool {
    op.family() == OpFamily::String
        || matches!(
            op,
            KvOp::KeyExists { .. }
                | KvOp::KeyTtl { .. }
                | KvOp::KeyType { .. }
                | KvOp::KeyExpire { .. }
                | KvOp::KeyPersist { .. }
        )
}

/// Every cold entry of user key `key` — metadata and elements — except its dedup records,
/// which only their own write reads (by exact key, [`plan_payload`]).
fn plan_user_key(engine: &MasstreeStore, db: Db, key: &[u8], out: &mut Vec<(Bytes, LogPointer)>) {
    plan_prefix(engine, &user_prefix(db, key), out);
}

/// Every cold entry of every key of hash slot `slot` in database `db` (a script's anchor
/// slot), dedup records excepted.
fn plan_slot(engine: &MasstreeStore, db: Db, slot: u16, out: &mut Vec<(Bytes, LogPointer)>) {
    let mut prefix = net::keyspace::slot_start(slot).to_vec();
    prefix.push(db.get());
    plan_prefix(engine, &prefix, out);
}

/// Every cold metadata and element entry under `prefix`.
fn plan_prefix(engine: &MasstreeStore, prefix: &[u8], out: &mut Vec<(Bytes, LogPointer)>) {
    let end = keyspace::prefix_end(prefix).unwrap_or_default();
    let from = out.len();
    engine.cold_in(prefix, &end, false, |_| true, out);
    let mut i = from;
    while i < out.len() {
        let k = &out[i].0;
        if keyspace::user_key_of_meta(k).is_none() && keyspace::parse_element(k).is_none() {
            out.swap_remove(i);
        } else {
            i += 1;
        }
    }
}

/// `range::apply::key_scan` walks keys only; it reads the metadata values of its database's
/// keys when it filters by type.
fn plan_key_scan(
    engine: &MasstreeStore,
    range: &RangeDescriptor,
    db: Db,
    (cursor, count, typed): (&[u8], u32, bool),
    out: &mut Vec<(Bytes, LogPointer)>,
) {
    if !typed {
        return;
    }
    let (lo, hi) = db_walk::scan_bounds(&range.start, &range.end, cursor);
    let page = db_walk::scan_db(engine, db, lo, hi.as_deref(), count as usize);
    for k in page.keys {
        if keyspace::user_key_of_meta(&k).is_some() {
            if let Some(p) = engine.cold_pointer(&k) {
                out.push((k, p));
            }
        }
    }
}

/// `range::apply::raw_scan` reads pages of `limit` entries until `limit` live ones are found.
fn plan_raw_scan(
    engine: &MasstreeStore,
    range: &RangeDescriptor,
    (start, end): (&[u8], &[u8]),
    limit: u32,
    reverse: bool,
    now_ms: u64,
    out: &mut Vec<(Bytes, LogPointer)>,
) {
    let lo = if start > &range.start[..] {
        start
    } else {
        &range.start[..]
    };
    let hi = match (end.is_empty(), range.end.is_empty()) {
        (true, _) => &range.end[..],
        (false, true) => end,
        (false, false) => end.min(&range.end[..]),
    };
    let limit = limit.max(1) as usize;
    let (mut seen, mut live) = (0usize, 0usize);
    engine.cold_in(
        lo,
        hi,
        reverse,
        |expire_at_ms| {
            seen += 1;
            if expire_at_ms == 0 || expire_at_ms > now_ms {
                live += 1;
            }
            !(live >= limit && seen % limit == 0)
        },
        out,
    );
}

/// Appends the cold entries a sweep entry of `keys` reads: the metadata of the collection
/// an element belongs to (a key's own value is not read: `range::sweep` needs its expiry).
pub fn plan_sweep(engine: &MasstreeStore, keys: &[Bytes], out: &mut Vec<(Bytes, LogPointer)>) {
    for k in keys {
        if let Some((db, user, _)) = keyspace::parse_element(k) {
            let m = keyspace::meta_key(db, user);
            if let Some(p) = engine.cold_pointer(&m) {
                out.push((m, p));
            }
        }
    }
}

/// Appends the cold entries a committed entry's payload touches (client writes and sweeps).
pub fn plan_payload(
    engine: &MasstreeStore,
    range: &RangeDescriptor,
    payload: &[u8],
    out: &mut Vec<(Bytes, LogPointer)>,
) {
    if engine.cold_stats().cold_entries == 0 {
        return;
    }
    if let Some((now, id, op)) = crate::range::codec::decode_write(payload) {
        plan(engine, &op, range, now, out);
        let record = id.and_then(|id| crate::range::dedup::record_key(&op, id));
        if let Some(p) = record.as_ref().and_then(|k| engine.cold_pointer(k)) {
            out.extend(record.map(|k| (k, p)));
        }
    } else if let Some((_, keys)) = crate::range::codec::decode_sweep(payload) {
        plan_sweep(engine, &keys, out);
    }
}

/// Runs the futures, all at once, and returns their outputs in order.
pub(crate) async fn join_all<F: Future>(futs: Vec<F>) -> Vec<F::Output> {
    let mut futs: Vec<Pin<Box<F>>> = futs.into_iter().map(Box::pin).collect();
    let mut outs: Vec<Option<F::Output>> = futs.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (f, o) in futs.iter_mut().zip(outs.iter_mut()) {
            if o.is_none() {
                match f.as_mut().poll(cx) {
                    Poll::Ready(v) => *o = Some(v),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    outs.into_iter().flatten().collect()
}

/// Reads `wanted` from the shard log ([`READS_IN_FLIGHT`] at a time, checksums checked) and
/// puts the values back in memory (entries demoted again or changed meanwhile are left as
/// they are; the caller re-plans). A value read twice within the policy's window is promoted
/// (`server::policy`); the others are loaded *transient* and returned, for the caller to drop
/// after its operation (else the clock takes them first).
pub async fn load<D: ShardDevice>(
    shard: &Shard<D>,
    mut wanted: Vec<(Bytes, LogPointer)>,
) -> Result<Vec<(Bytes, LogPointer)>, ColdError> {
    wanted.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    wanted.dedup_by(|a, b| a.0 == b.0);
    let bytes: u64 = wanted.iter().map(|(_, p)| u64::from(p.len)).sum();
    if bytes > MAX_LOAD_BYTES {
        return Err(ColdError::TooLarge(bytes));
    }
    let mut transient = Vec::new();
    for chunk in wanted.chunks(READS_IN_FLIGHT) {
        let reads = chunk.iter().map(|(_, p)| async move {
            let t = shard.now();
            let r = shard.log.read_value(p).await;
            (r, shard.now().saturating_duration_since(t))
        });
        let got = join_all(reads.collect()).await;
        let promotion = shard.policy.promotion();
        let mut m = shard.metrics.borrow_mut();
        let mut st = shard.state.borrow_mut();
        for ((key, p), (r, took)) in chunk.iter().zip(got) {
            match r {
                Ok(v) => {
                    m.cold.reads_total += 1;
                    m.cold.read_bytes_total += v.len() as u64;
                    ShardMetrics::record(&mut m.cold.read_us, took.as_micros() as u64);
                    match st.engine.load_with(key, *p, &v, &promotion) {
                        Loaded::Promoted => m.policy.promotions_total += 1,
                        Loaded::Transient => {
                            m.policy.transient_loads_total += 1;
                            transient.push((key.clone(), *p));
                        }
                        Loaded::Stale => {}
                    }
                }
                // The entry changed while its value was read (a read task races the ready
                // loop): its segment may have been released and reused meanwhile; the
                // caller re-plans.
                Err(_) if st.engine.cold_pointer(key) != Some(*p) => {}
                Err(e) => {
                    m.cold.read_errors_total += 1;
                    if matches!(e, LogError::Corruption { .. }) {
                        m.cold.checksum_failures_total += 1;
                    }
                    tracing::warn!(key_len = key.len(), "cold value read failed: {e}");
                    return Err(ColdError::Read(e));
                }
            }
        }
    }
    Ok(transient)
}

/// Reads the values `pointers` name ([`READS_IN_FLIGHT`] at a time, checksums checked),
/// without putting them in the engine (snapshots). At most [`MAX_LOAD_BYTES`] per call.
pub async fn read_values<D: ShardDevice>(
    shard: &Shard<D>,
    pointers: &[LogPointer],
) -> Result<Vec<Vec<u8>>, ColdError> {
    let mut out = Vec::with_capacity(pointers.len());
    for chunk in pointers.chunks(READS_IN_FLIGHT) {
        let got = join_all(chunk.iter().map(|p| shard.log.read_value(p)).collect()).await;
        let mut m = shard.metrics.borrow_mut();
        for r in got {
            match r {
                Ok(v) => {
                    m.cold.reads_total += 1;
                    m.cold.read_bytes_total += v.len() as u64;
                    out.push(v);
                }
                Err(e) => {
                    m.cold.read_errors_total += 1;
                    if matches!(e, LogError::Corruption { .. }) {
                        m.cold.checksum_failures_total += 1;
                    }
                    return Err(ColdError::Read(e));
                }
            }
        }
    }
    Ok(out)
}

/// Loads until `plan` finds nothing cold (at most [`ROUNDS`] rounds); returns the entries
/// loaded transient ([`load`]). When it returns `Ok`, the caller must apply before its next
/// `.await`.
pub async fn load_until_hot<D: ShardDevice>(
    shard: &Shard<D>,
    mut plan: impl FnMut(&MasstreeStore, &mut Vec<(Bytes, LogPointer)>),
) -> Result<Vec<(Bytes, LogPointer)>, ColdError> {
    let _counted = super::policy_state::LoadInFlight::new(&shard.policy);
    let mut transient = Vec::new();
    for _ in 0..ROUNDS {
        let mut wanted = Vec::new();
        plan(&shard.state.borrow().engine, &mut wanted);
        if wanted.is_empty() {
            return Ok(transient);
        }
        transient.extend(load(shard, wanted).await?);
    }
    Err(ColdError::Unstable)
}

/// Loads what the committed entry `payload` of the range described by `desc` touches.
pub async fn prefetch_entry<D: ShardDevice>(
    shard: &Shard<D>,
    desc: &RangeDescriptor,
    payload: &[u8],
) -> Result<(), ColdError> {
    load_until_hot(shard, |e, out| plan_payload(e, desc, payload, out))
        .await
        .map(drop)
}

/// The fault a write that reached a cold entry without a load stops its range with.
pub fn miss_fault(engine: &MasstreeStore) -> Option<String> {
    let n = engine.take_cold_misses();
    (n > 0).then(|| format!("{n} cold entries reached without being loaded (prefetch bug)"))
}

/// Whether read `op` of `range` needs a load first.
pub fn read_needs_load(
    engine: &MasstreeStore,
    op: &KvOp,
    range: &RangeDescriptor,
    now_ms: u64,
) -> bool {
    if engine.cold_stats().cold_entries == 0 {
        return false;
    }
    let mut v = Vec::new();
    plan(engine, op, range, now_ms, &mut v);
    !v.is_empty()
}

/// Answers read `op` of `range` on its own task: loads its cold entries, checks the range
/// is still here and led by this replica (a lease read) or applied past `min_index` (a
/// ReadIndex read), executes, and sends the response.
pub fn spawn_read<D: ShardDevice>(
    shard: &Rc<Shard<D>>,
    range: net::RangeId,
    op: KvOp,
    min_index: Option<u64>,
    tx: oneshot::Sender<KvResponse>,
) {
    let shard = Rc::clone(shard);
    crate::core::spawn(async move {
        let resp = read_after_load(&shard, range, &op, min_index).await;
        let _ = tx.send(resp);
    });
}

async fn read_after_load<D: ShardDevice>(
    shard: &Shard<D>,
    range: net::RangeId,
    op: &KvOp,
    min_index: Option<u64>,
) -> KvResponse {
    // The spawner may still hold the shard state (a request handler): start next turn.
    futures_lite::future::yield_now().await;
    let err = |error| KvResponse::Err { error };
    let desc = match shard.state.borrow().peers.get(&range) {
        Some(p) => p.desc().clone(),
        None => {
            return err(RpcError::RangeNotFound { range_id: range });
        }
    };
    let now = super::shard::now_ms();
    let transient = match load_until_hot(shard, |e, out| plan(e, op, &desc, now, out)).await {
        Ok(t) => t,
        Err(e) => return err(e.to_rpc()),
    };
    let resp = answer_loaded(shard, range, op, min_index, &desc, now);
    // Values loaded for this read only go back to the device (no I/O: they have a copy),
    // unless a load in flight started before they were loaded (its operation may need
    // them: the hand takes them later).
    let before = shard.policy.transient_before();
    let mut st = shard.state.borrow_mut();
    let dropped = transient
        .iter()
        .filter(|(k, p)| st.engine.drop_transient(k, *p, before))
        .count();
    shard.metrics.borrow_mut().policy.transient_drops_total += dropped as u64;
    resp
}

/// Executes read `op` once its cold entries are loaded (no `.await`: nothing is demoted
/// in between).
fn answer_loaded<D: ShardDevice>(
    shard: &Shard<D>,
    range: net::RangeId,
    op: &KvOp,
    min_index: Option<u64>,
    desc: &RangeDescriptor,
    now: u64,
) -> KvResponse {
    let err = |error| KvResponse::Err { error };
    let mut st = shard.state.borrow_mut();
    let super::shard::ShardState { peers, engine, .. } = &mut *st;
    let Some(p) = peers.get_mut(&range) else {
        return err(RpcError::RangeNotFound { range_id: range });
    };
    let still_valid = match min_index {
        None => p.is_leader() && p.lease_read_ok(shard.now()),
        Some(i) => p.applied() >= i,
    };
    if !still_valid || p.desc().epoch != desc.epoch {
        return err(RpcError::NotLeader { hint: None });
    }
    let ctx = ApplyCtx {
        now_ms: now,
        index: p.applied(),
        range: p.desc(),
        zranks: Some(p.zranks()),
    };
    let r = execute(engine, op, &ctx);
    if engine.take_cold_misses() > 0 {
        shard.metrics.borrow_mut().cold.misses_total += 1;
        return err(ColdError::Unstable.to_rpc());
    }
    match r {
        Ok(result) => KvResponse::Ok { result },
        Err(error) => KvResponse::Err { error },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::range::meta;
    use crate::range::store::{Entry, KvStore};
    use engines::masstree::SegmentId;
    use net::message::kv::{Cond, Expiry};

    fn cold_store(keys: &[Bytes]) -> MasstreeStore {
        let mut s = MasstreeStore::new();
        for (i, k) in keys.iter().enumerate() {
            let v = Bytes::from(format!("v{i}"));
            s.put(
                k.clone(),
                Entry {
                    value: v.clone(),
                    expire_at_ms: 0,
                },
            );
            let p = LogPointer {
                segment: SegmentId(1),
                offset: 64 * i as u64,
                len: v.len() as u32,
                checksum: crc32c::crc32c(&v),
            };
            assert!(s.demote(k, &v, p));
        }
        s
    }

    fn everything() -> RangeDescriptor {
        RangeDescriptor {
            id: net::RangeId(1),
            start: Bytes::new(),
            end: Bytes::new(),
            epoch: net::Epoch::default(),
            replicas: vec![],
            leader: None,
        }
    }

    fn planned(s: &MasstreeStore, op: &KvOp) -> Vec<Bytes> {
        let range = everything();
        let mut out = Vec::new();
        plan(s, op, &range, 0, &mut out);
        let mut keys: Vec<Bytes> = out.into_iter().map(|(k, _)| k).collect();
        keys.sort();
        keys
    }

    #[test]
    fn a_string_read_loads_its_metadata_entry_only() {
        let meta = keyspace::meta_key(Db::ZERO, b"k");
        let dedup = keyspace::dedup_key(Db::ZERO, b"k", 1, 2);
        let field = keyspace::field_key(Db::ZERO, b"k", 1, b"f");
        let s = cold_store(&[meta.clone(), dedup, field]);
        assert_eq!(
            planned(
                &s,
                &KvOp::StrGet {
                    key: Bytes::from_static(b"k")
                }
            ),
            vec![meta]
        );
    }

    #[test]
    fn a_collection_read_loads_metadata_and_elements_but_not_dedup_records() {
        let meta = keyspace::meta_key(Db::ZERO, b"h");
        let f1 = keyspace::field_key(Db::ZERO, b"h", 1, b"a");
        let f2 = keyspace::field_key(Db::ZERO, b"h", 1, b"b");
        let other = keyspace::meta_key(Db::ZERO, b"h2");
        let s = cold_store(&[
            meta.clone(),
            f1.clone(),
            f2.clone(),
            keyspace::dedup_key(Db::ZERO, b"h", 1, 1),
            other,
        ]);
        let mut want = vec![meta, f1, f2];
        want.sort();
        assert_eq!(
            planned(
                &s,
                &KvOp::HGetAll {
                    key: Bytes::from_static(b"h")
                }
            ),
            want
        );
    }

    #[test]
    fn a_write_loads_its_own_dedup_record_by_exact_key() {
        let id = crate::range::dedup::WriteId { client: 7, seq: 9 };
        let op = KvOp::StrSet {
            key: Bytes::from_static(b"k"),
            value: Bytes::from_static(b"v"),
            expiry: Expiry::Persist {},
            cond: Cond::Always {},
            get_old: false,
        };
        let record = crate::range::dedup::record_key(&op, id).unwrap();
        let s = cold_store(&[
            keyspace::meta_key(Db::ZERO, b"k"),
            record.clone(),
            keyspace::dedup_key(Db::ZERO, b"k", 7, 8),
        ]);
        let payload = crate::range::codec::encode_write(5, id, &op);
        let mut out = Vec::new();
        plan_payload(&s, &everything(), &payload, &mut out);
        let mut keys: Vec<Bytes> = out.into_iter().map(|(k, _)| k).collect();
        keys.sort();
        let mut want = vec![keyspace::meta_key(Db::ZERO, b"k"), record];
        want.sort();
        assert_eq!(keys, want);
    }

    #[test]
    fn every_internal_key_of_a_user_key_shares_its_prefix() {
        let p = user_prefix(Db::ZERO, b"user:1");
        assert!(keyspace::meta_key(Db::ZERO, b"user:1").starts_with(&p));
        assert!(keyspace::field_key(Db::ZERO, b"user:1", 3, b"f").starts_with(&p));
        assert!(keyspace::dedup_key(Db::ZERO, b"user:1", 1, 2).starts_with(&p));
        for tag in keyspace::ELEMENT_TAGS {
            assert!(keyspace::element_prefix(Db::ZERO, b"user:1", tag, 9).starts_with(&p));
        }
        assert!(!keyspace::meta_key(Db::ZERO, b"user:10").starts_with(&p));
    }

    /// A store of string and hash keys in databases 0–3 (a few keys share a slot), every
    /// entry cold, and the same store with every entry hot.
    fn cold_and_hot(keys: &[(u8, u8, bool)]) -> (MasstreeStore, MasstreeStore) {
        let mut cold = MasstreeStore::new();
        let mut hot = MasstreeStore::new();
        for (i, &(db, name, is_hash)) in keys.iter().enumerate() {
            let db = Db::new(db).expect("a database");
            let key = format!("{{t{}}}k{name}", name % 3);
            let mut entries = Vec::new();
            if is_hash {
                let m = meta::Meta::Hash {
                    version: 1,
                    count: 1,
                };
                entries.push((keyspace::meta_key(db, key.as_bytes()), meta::encode(&m)));
                let f = keyspace::field_key(db, key.as_bytes(), 1, b"f");
                entries.push((f, Bytes::from_static(b"fv")));
            } else {
                let m = meta::Meta::Str(Bytes::from(format!("v{i}")));
                entries.push((keyspace::meta_key(db, key.as_bytes()), meta::encode(&m)));
            }
            for (j, (k, v)) in entries.into_iter().enumerate() {
                let e = Entry {
                    value: v.clone(),
                    expire_at_ms: 0,
                };
                hot.put(k.clone(), e.clone());
                cold.put(k.clone(), e);
                let p = LogPointer {
                    segment: SegmentId(1),
                    offset: 4096 * (2 * i + j) as u64,
                    len: v.len() as u32,
                    checksum: crc32c::crc32c(&v),
                };
                cold.demote(&k, &v, p);
            }
        }
        (cold, hot)
    }

    proptest::proptest! {
        /// Whatever the databases, cursor, count and type filter, a SCAN step run after
        /// loading what the plan names reaches no cold entry (a miss panics in debug
        /// builds) and answers what it answers with everything hot.
        #[test]
        fn a_scan_step_after_its_plan_reaches_no_cold_entry_and_matches_the_hot_answer(
            keys in proptest::collection::vec((0u8..4, 0u8..8, proptest::bool::ANY), 0..24),
            db in 0u8..4,
            cursor_of in proptest::option::of(0usize..24),
            count in 1u32..12,
            typed in 0u8..3,
        ) {
            let (mut cold, mut hot) = cold_and_hot(&keys);
            let all = hot.scan_keys(&[], None, usize::MAX);
            let cursor = match cursor_of {
                Some(i) if !all.is_empty() => all[i % all.len()].clone(),
                _ => Bytes::new(),
            };
            let type_filter = match typed {
                0 => None,
                1 => Some(net::message::kv::KeyType::String {}),
                _ => Some(net::message::kv::KeyType::Hash {}),
            };
            let op = KvOp::InDb {
                db: Db::new(db).expect("a database"),
                op: Box::new(KvOp::KeyScan { cursor, count, type_filter }),
            };
            let range = everything();
            let mut wanted = Vec::new();
            plan(&cold, &op, &range, 0, &mut wanted);
            for (k, p) in wanted {
                let v = hot.get(&k).expect("planned entries exist").value;
                assert!(cold.load(&k, p, &v));
            }
            let ctx = ApplyCtx { now_ms: 0, index: 1, range: &range, zranks: None };
            let from_cold = execute(&mut cold, &op, &ctx);
            proptest::prop_assert_eq!(cold.take_cold_misses(), 0);
            proptest::prop_assert_eq!(from_cold, execute(&mut hot, &op, &ctx));
        }
    }
}
