//! Index-mode checkpoints (`checkpoint-mode = "index"`): the shard's key index
//! (`engines::lsm`) is the durable base of every range instead of range files
//! (`docs/ARCHITECTURE.md`, "ds-node: the key index replaces range checkpoints").
//!
//! [`checkpoint`] runs in the shard's compaction task (and for the garbage collector):
//! 1. capture (every range at its applied index): each range's applied index, term and
//!    descriptor, and the keys changed since the last checkpoint with their entries as of
//!    that instant — the instant is O(1) and the entries are taken [`CAPTURE_STEP`] keys at a
//!    time, yielding between steps while writes go on (the engine keeps the entry a write
//!    replaces until the capture has taken it: `engines` `masstree::changes`). Only when the
//!    shard holds an unbacked value too long for one record is the capture taken whole, at
//!    once, with a range file for that range (below);
//! 2. unbacked values written as `Relocated` records (one group commit per
//!    [`demote::STEP_BYTES`](super::demote::STEP_BYTES)), their entries given the pointers;
//! 3. the entries (tombstones for keys gone) pushed into a run in key order, yielding;
//! 4. the run and the manifest flushed (`finish_ranges`): durable;
//! 5. released pointers forgotten, each range's Raft log compacted below its applied index,
//!    superseded range files removed, runs compacted when due.
//!
//! A failure after the capture puts its keys back in the changed set. Recovery's side
//! ([`load_all`], [`manifest_base`]) is used by `recover`.

use std::rc::Rc;

use bytes::Bytes;
use engines::lsm::{
    CompactionPolicy, IndexEntry, IndexValue, KeyIndex, LsmConfig, RangeApplied, merged_segments,
};
use engines::segments::SharedStore;
use engines::vlog::{AppendRecord, LogIndex, LogRecord, ValueSpan, Vlog};
use nvme::OwnerTag;

use super::checkpoint::{self, compact_below};
use super::peer::conf_state_of;
use super::shard::{Shard, ShardDevice, ShardState};
use crate::range::checkpoint::{self as ckpt, CheckpointMeta};
use crate::range::engine::Captured;
use crate::range::storage::SnapshotPoint;

/// Owner tag of the key index's run segments (the shard log is `LOG_OWNER`, 1).
pub const RUN_OWNER: OwnerTag = OwnerTag(2);
/// Owner tag of the key index's manifest segments.
pub const MANIFEST_OWNER: OwnerTag = OwnerTag(3);
/// Entries pushed between two yields to the executor.
const PUSH_STEP: usize = 1024;
/// Changed keys one capture step takes (one synchronous slice of the shard: a lookup and a
/// copy of a pre-image or an unbacked value each).
pub const CAPTURE_STEP: usize = 1024;

/// What one index checkpoint did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IndexCheckpointReport {
    /// Keys captured (entries and tombstones written).
    pub entries: u64,
    /// Tombstones among them.
    pub tombstones: u64,
    /// Unbacked values written to the shard log.
    pub values: u64,
    /// Device bytes written: value records, run frames (the manifest is in the index's
    /// metrics).
    pub written_bytes: u64,
    /// Ranges whose Raft log was compacted.
    pub compacted: u64,
    /// Range files written because a range held an unbacked value too long for a record.
    pub fallback_files: u64,
}

/// Index mode: segments the shard log leaves free for the key index's checkpoint runs, so
/// that a full log can still be checkpointed (the deletes and moves that let it free space
/// reach the index), beyond the room to rewrite the index's runs
/// ([`leave_room_for_index`]).
pub const INDEX_RESERVE_SEGMENTS: u32 = 3;

/// Free segments of the store the key index never allocates: the shard log's last room for
/// Raft entries (`log_room`; the log leaves [`INDEX_RESERVE_SEGMENTS`], more than
/// this, to the index: checkpoints can always start when the log is full).
pub const INDEX_LEAVES_SEGMENTS: u32 = 1;

/// Keeps the shard log out of the free segments the key index needs: room to rewrite every
/// run it holds (a compaction of all of them, counted by their bytes: [`merged_segments`])
/// plus [`INDEX_RESERVE_SEGMENTS`] for checkpoint runs. Called when the index opens and after each checkpoint (which may have compacted):
/// a larger index makes the log count as full sooner (`disk_limit`), never the index stuck
/// without room to checkpoint the deletes and moves that free space.
pub fn leave_room_for_index<D: ShardDevice>(log: &Vlog<D>, index: &KeyIndex<D>) {
    let runs = index.runs();
    let data: u64 = runs.iter().map(|r| r.data_bytes).sum();
    let held: usize = runs.iter().map(|r| r.segments).sum();
    let rewrite = merged_segments(data, held as u64, index.store().segment_size());
    let reserve = u32::try_from(rewrite).unwrap_or(u32::MAX);
    log.set_reserve_segments(reserve.saturating_add(INDEX_RESERVE_SEGMENTS));
}

/// Opens the shard's key index on the log's segment store.
pub async fn open<D: ShardDevice>(store: SharedStore<D>) -> anyhow::Result<KeyIndex<D>> {
    let mut cfg = LsmConfig::new(RUN_OWNER, MANIFEST_OWNER);
    // A run takes at least one segment of the store the log shares: keep few of them.
    cfg.compaction = CompactionPolicy {
        fan_in: 2,
        size_ratio: 4,
        max_runs: 3,
    };
    // The store's last free segment is the shard log's: its Raft entries when nothing else
    // fits (`log_room::turn_fits`). The log in turn leaves `INDEX_RESERVE_SEGMENTS` to us.
    cfg.reserve_segments = INDEX_LEAVES_SEGMENTS;
    let (index, rep) = KeyIndex::open(store, cfg)
        .await
        .map_err(|e| anyhow::anyhow!("open key index: {e}"))?;
    tracing::info!(?rep, "key index opened");
    Ok(index)
}

/// The range's base recorded by the key index's manifest (applied index, term, descriptor).
pub fn manifest_base<D: ShardDevice>(
    index: &KeyIndex<D>,
    range: net::RangeId,
) -> anyhow::Result<Option<CheckpointMeta>> {
    let Some(blob) = index.range_meta(engines::vlog::RangeId(range.0)) else {
        return Ok(None);
    };
    let meta = ckpt::decode_meta(&blob)
        .map_err(|e| anyhow::anyhow!("range {range}: metadata in the key index: {e}"))?;
    let applied = index.applied(engines::vlog::RangeId(range.0));
    anyhow::ensure!(
        applied == Some(LogIndex(meta.index)),
        "range {range}: the key index's metadata is at {} but its applied index is {applied:?}",
        meta.index
    );
    Ok(Some(meta))
}

/// Loads every live entry of the key index into the engine as a cold entry (keys and
/// pointers; no value is read). Change tracking must be off. Returns the entries loaded.
pub async fn load_all<D: ShardDevice>(shard: &Shard<D>) -> anyhow::Result<u64> {
    let Some(index) = shard.lsm.as_ref() else {
        return Ok(0);
    };
    let mut it = index.range(b"", None);
    let mut n = 0u64;
    while let Some((key, v)) = it
        .next()
        .await
        .map_err(|e| anyhow::anyhow!("read the key index: {e}"))?
    {
        anyhow::ensure!(
            v.pointer.is_well_formed(),
            "key index entry with a malformed pointer"
        );
        shard.state.borrow_mut().engine.put_cold(
            Bytes::from(key.into_vec()),
            v.pointer,
            v.expire_at_ms,
        );
        n += 1;
        if n % PUSH_STEP as u64 == 0 {
            crate::core::yield_if_needed().await;
        }
    }
    Ok(n)
}

/// What a capture took.
struct Capture {
    changes: Vec<(Bytes, Captured)>,
    ranges: Vec<(net::RangeId, SnapshotPoint, Vec<u8>)>,
    /// Ranges whose range file at the captured index is their base (not removed after).
    kept_files: Vec<net::RangeId>,
    /// Ranges holding an unbacked value too long for one log record: their whole state as a
    /// range file at the captured index (the fallback base, written before the manifest).
    fallback: Vec<(net::RangeId, u64, checkpoint::Encoded)>,
}

/// Longest unbacked value a checkpoint writes as a `Relocated` record (a record must fit in
/// one commit batch); a range holding a longer one gets a range file instead.
const MAX_VALUE: usize = super::demote::MAX_VALUE;

fn oversized(c: &Captured) -> bool {
    unbacked(c).is_some_and(|b| b.len() > MAX_VALUE)
}

/// Step 1: every initialized range's base and the start of the changes' capture, at one
/// instant; the changes themselves come in steps ([`take_changes`]) unless the shard holds
/// an unbacked value too long for a record (then all at once, with fallback range files).
fn capture(st: &mut ShardState) -> anyhow::Result<Capture> {
    let mut ranges = Vec::new();
    for (&id, p) in &st.peers {
        if !p.is_initialized() {
            continue;
        }
        let index = p.applied();
        let term = p.raft().raft.raft_log.term(index).map_err(|e| {
            anyhow::anyhow!("range {id}: term of applied index {index} unknown: {e}")
        })?;
        let desc = p.desc().clone();
        let conf = conf_state_of(&desc);
        let meta = ckpt::encode(&CheckpointMeta { index, term, desc }, std::iter::empty());
        ranges.push((id, SnapshotPoint { index, term, conf }, meta));
    }
    if !st.engine.holds_unbacked_over() {
        st.engine.begin_capture();
        return Ok(Capture {
            changes: Vec::new(),
            ranges,
            kept_files: Vec::new(),
            fallback: Vec::new(),
        });
    }
    let changes = st.engine.capture_changes();
    let mut fallback: Vec<(net::RangeId, u64, checkpoint::Encoded)> = Vec::new();
    for (key, _) in changes.iter().filter(|(_, c)| oversized(c)) {
        let Some(p) = st.peers.values().find(|p| p.desc().contains(key)) else {
            continue;
        };
        let id = p.desc().id;
        if fallback.iter().any(|(r, _, _)| *r == id) {
            continue;
        }
        let Some((_, point, _)) = ranges.iter().find(|(r, _, _)| *r == id) else {
            continue;
        };
        let meta = CheckpointMeta {
            index: point.index,
            term: point.term,
            desc: p.desc().clone(),
        };
        fallback.push((
            id,
            point.index,
            checkpoint::encode_stored(&st.engine, &meta),
        ));
    }
    Ok(Capture {
        changes,
        ranges,
        kept_files: Vec::new(),
        fallback,
    })
}

/// Step 1, continued: takes the capture's changes [`CAPTURE_STEP`] keys at a time.
async fn take_changes<D: ShardDevice>(shard: &Shard<D>, cap: &mut Capture) -> anyhow::Result<()> {
    loop {
        let t = shard.now();
        let step = shard.state.borrow_mut().engine.capture_step(CAPTURE_STEP);
        if step.is_empty() {
            return Ok(());
        }
        record_capture_step(shard, t);
        // The engine reported no such value at the instant, and a capture returns the
        // instant's entries: one here is a broken invariant, not data to write.
        anyhow::ensure!(
            !step.iter().any(|(_, c)| oversized(c)),
            "an incremental capture met an unbacked value longer than a record"
        );
        cap.changes.extend(step);
        // Always one turn: the ready loop applies what arrived meanwhile (the point of steps).
        crate::core::yield_now().await;
        if hold_between_steps() {
            crate::core::sleep(std::time::Duration::from_millis(3)).await;
        }
    }
}

/// Test hook (failpoint `ds_node::index_checkpoint::between_capture_steps` set to `return`):
/// holds the capture a few milliseconds between two steps, so that writes surely land
/// between them.
fn hold_between_steps() -> bool {
    crate::failpoint!("ds_node::index_checkpoint::between_capture_steps", |_| true);
    false
}

fn record_capture_step<D: ShardDevice>(shard: &Shard<D>, since: std::time::Instant) {
    let us = shard.now().saturating_duration_since(since).as_micros() as u64;
    let mut m = shard.metrics.borrow_mut();
    super::metrics::ShardMetrics::record(&mut m.index_capture_step_us, us);
}

/// Writes the fallback range files (before the manifest: the manifest then records the same
/// index, and recovery prefers a full range file at the manifest's index).
async fn write_fallback<D: ShardDevice>(
    shard: &Shard<D>,
    cap: &mut Capture,
    rep: &mut IndexCheckpointReport,
) -> anyhow::Result<()> {
    for (range, index, encoded) in std::mem::take(&mut cap.fallback) {
        rep.written_bytes += encoded.bytes.len() as u64;
        let segments = encoded.segments;
        checkpoint::write(shard, range, index, Rc::new(encoded.bytes)).await?;
        shard
            .state
            .borrow_mut()
            .checkpoint_segments
            .insert(range, segments);
        rep.fallback_files += 1;
        cap.kept_files.push(range);
    }
    Ok(())
}

/// Step 2: writes the captured unbacked values as `Relocated` records and records their
/// pointers (in the capture and on the entries that still hold the bytes).
async fn write_values<D: ShardDevice>(
    shard: &Shard<D>,
    changes: &mut [(Bytes, Captured)],
    rep: &mut IndexCheckpointReport,
) -> anyhow::Result<()> {
    let todo: Vec<usize> = changes
        .iter()
        .enumerate()
        .filter(|(_, (_, c))| unbacked(c).is_some() && !oversized(c))
        .map(|(i, _)| i)
        .collect();
    let mut at = 0;
    while at < todo.len() {
        let (mut end, mut bytes) = (at, 0usize);
        while end < todo.len() && (end == at || bytes < super::demote::STEP_BYTES) {
            bytes += unbacked(&changes[todo[end]].1).map_or(0, |b| b.len());
            end += 1;
        }
        let batch = &todo[at..end];
        let records: Vec<AppendRecord> = {
            let st = shard.state.borrow();
            batch
                .iter()
                .map(|&i| value_record(&st, &changes[i]))
                .collect()
        };
        let bytes = records
            .iter()
            .map(|r| r.record.encoded_len() as u64)
            .sum::<u64>();
        super::log_room::maintenance_fits(shard, bytes).map_err(|e| anyhow::anyhow!(e))?;
        rep.written_bytes += bytes;
        let appended = shard
            .log
            .append(records)
            .await
            .map_err(|e| anyhow::anyhow!("write unbacked values: {e}"))?;
        record_pointers(shard, batch, appended, changes, rep)?;
        at = end;
        crate::core::yield_if_needed().await;
    }
    Ok(())
}

/// Records the pointers of the values just written: in the capture, and on the entries that
/// still hold exactly those bytes.
fn record_pointers<D: ShardDevice>(
    shard: &Shard<D>,
    batch: &[usize],
    appended: Vec<engines::vlog::Appended>,
    changes: &mut [(Bytes, Captured)],
    rep: &mut IndexCheckpointReport,
) -> anyhow::Result<()> {
    let engine = &mut shard.state.borrow_mut().engine;
    for (&i, a) in batch.iter().zip(appended) {
        let p = a
            .value
            .ok_or_else(|| anyhow::anyhow!("the shard log returned no value pointer"))?;
        let (key, c) = &mut changes[i];
        if let Captured::Entry {
            pointer, unbacked, ..
        } = c
        {
            let mut named = p;
            if let Some(b) = unbacked.take() {
                if !engine.back_value(key, &b, p) {
                    named = copy_the_entry_names(engine, key, p).unwrap_or_else(|| {
                        engine.hold_until_next_checkpoint(&p);
                        p
                    });
                }
            }
            *pointer = Some(named);
        }
        rep.values += 1;
    }
    Ok(())
}

/// The pointer `key`'s entry holds if it names the same bytes as `written` (demotion gave
/// the captured value its own copy while the checkpoint wrote one): the index must name the
/// copy the tree pins, because nothing pins `written` and its segment may be released
/// before the next checkpoint names the entry's copy (a demotion is not a change). `None`
/// when the entry changed since the capture: the index names `written` until the next
/// checkpoint records the change, so `written` stays pinned until then (recovery loads the
/// entry, and replaying the change may read it).
fn copy_the_entry_names(
    engine: &crate::range::engine::MasstreeStore,
    key: &[u8],
    written: engines::masstree::LogPointer,
) -> Option<engines::masstree::LogPointer> {
    engine.pointer(key).filter(|q| {
        q.leading_byte().is_none() && q.len == written.len && q.checksum == written.checksum
    })
}

fn unbacked(c: &Captured) -> Option<&Bytes> {
    match c {
        Captured::Entry { unbacked, .. } => unbacked.as_ref(),
        Captured::Gone => None,
    }
}

/// The `Relocated` record holding a captured unbacked value (its range: the one holding the
/// key, for the log's accounting).
fn value_record(st: &ShardState, (key, c): &(Bytes, Captured)) -> AppendRecord {
    let value = unbacked(c).map(|b| b.to_vec()).unwrap_or_default();
    let range = st
        .peers
        .values()
        .find(|p| p.desc().contains(key))
        .map_or(0, |p| p.desc().id.0);
    AppendRecord {
        value: Some(ValueSpan {
            offset: 0,
            len: value.len() as u32,
        }),
        record: LogRecord::Relocated {
            range: engines::vlog::RangeId(range),
            tag: 0,
            value,
        },
    }
}

/// Steps 3–4: the run and the manifest.
async fn write_run<D: ShardDevice>(
    index: &KeyIndex<D>,
    cap: &Capture,
    rep: &mut IndexCheckpointReport,
) -> anyhow::Result<()> {
    let err = |what: &'static str| move |e: engines::lsm::Error| anyhow::anyhow!("{what}: {e}");
    let mut w = index
        .checkpoint(cap.changes.len() as u64)
        .map_err(err("start the run"))?;
    for (i, (key, c)) in cap.changes.iter().enumerate() {
        let entry = match c {
            Captured::Gone => {
                rep.tombstones += 1;
                IndexEntry::Tombstone
            }
            // Too long for a record: its range's fallback file holds it.
            Captured::Entry { pointer: None, .. } if oversized(c) => continue,
            Captured::Entry {
                pointer,
                expire_at_ms,
                ..
            } => IndexEntry::Value(IndexValue {
                pointer: pointer
                    .ok_or_else(|| anyhow::anyhow!("captured entry without pointer"))?,
                expire_at_ms: *expire_at_ms,
                value_type: 0,
            }),
        };
        w.push(key, entry).await.map_err(err("write the run"))?;
        if i % PUSH_STEP == PUSH_STEP - 1 {
            crate::core::yield_if_needed().await;
        }
    }
    rep.entries = cap.changes.len() as u64;
    crate::failpoint!("ds_node::index_checkpoint::before_manifest");
    let applied: Vec<RangeApplied> = cap
        .ranges
        .iter()
        .map(|(id, point, meta)| RangeApplied {
            range: engines::vlog::RangeId(id.0),
            index: LogIndex(point.index),
            meta: Some(meta.clone()),
        })
        .collect();
    let done = w
        .finish_ranges(&applied)
        .await
        .map_err(err("finish the checkpoint"))?;
    rep.written_bytes += done.written_bytes;
    Ok(())
}

/// Runs one index checkpoint of the whole shard (see the module documentation). `Ok(None)`
/// when the shard is not in index mode or a checkpoint is already running.
pub async fn checkpoint<D: ShardDevice>(
    shard: &Rc<Shard<D>>,
) -> anyhow::Result<Option<IndexCheckpointReport>> {
    let Some(index) = shard.lsm.clone() else {
        return Ok(None);
    };
    if std::mem::replace(&mut shard.state.borrow_mut().index_checkpointing, true) {
        return Ok(None);
    }
    let t = shard.now();
    let r = run_steps(shard, &index).await;
    shard.state.borrow_mut().index_checkpointing = false;
    leave_room_for_index(&shard.log, &index);
    match &r {
        Ok(rep) => {
            let ms = shard.now().saturating_duration_since(t).as_millis();
            tracing::info!(
                ms,
                entries = rep.entries,
                bytes = rep.written_bytes,
                "index checkpoint"
            );
            checkpoint::record(shard, t, rep.written_bytes);
        }
        Err(_) => shard.metrics.borrow_mut().checkpoint_errors_total += 1,
    }
    r.map(Some)
}

async fn run_steps<D: ShardDevice>(
    shard: &Rc<Shard<D>>,
    index: &KeyIndex<D>,
) -> anyhow::Result<IndexCheckpointReport> {
    let mut rep = IndexCheckpointReport::default();
    let t = shard.now();
    let mut cap = capture(&mut shard.state.borrow_mut())?;
    record_capture_step(shard, t);
    let durable = async {
        take_changes(shard, &mut cap).await?;
        crate::failpoint!("ds_node::index_checkpoint::after_capture");
        write_values(shard, &mut cap.changes, &mut rep).await?;
        crate::failpoint!("ds_node::index_checkpoint::after_values");
        write_fallback(shard, &mut cap, &mut rep).await?;
        write_run(index, &cap, &mut rep).await
    }
    .await;
    if let Err(e) = durable {
        let keys = cap.changes.into_iter().map(|(k, _)| k);
        let engine = &mut shard.state.borrow_mut().engine;
        engine.abort_capture();
        engine.changes_failed(keys);
        return Err(e);
    }
    {
        // A value only a fallback file holds is captured again by every checkpoint (each
        // writes its range's file anew) until the key changes: the index never names it.
        let engine = &mut shard.state.borrow_mut().engine;
        engine.changes_durable();
        let again = cap.changes.iter().filter(|(_, c)| oversized(c));
        engine.changes_failed(again.map(|(k, _)| k.clone()));
    }
    crate::failpoint!("ds_node::index_checkpoint::after_manifest");
    for (range, point, _) in cap.ranges {
        let index_at = point.index;
        if compact_below(shard, range, point).await? {
            rep.compacted += 1;
        }
        let keep = u64::from(cap.kept_files.contains(&range));
        if keep == 0 {
            // Its older range files (and the pointers they name) are superseded.
            shard.state.borrow_mut().checkpoint_segments.remove(&range);
        }
        if let Err(e) = checkpoint::remove_before(shard, range, index_at + 1 - keep).await {
            tracing::warn!(%range, "removing superseded range files failed: {e}");
        }
    }
    if index.compaction_needed() {
        match index.compact().await {
            // The compaction task's own compaction is running (a garbage collector's
            // checkpoint met it): it does the work; this checkpoint is whole without it.
            Ok(_) | Err(engines::lsm::Error::Busy(_)) => {}
            Err(e) => anyhow::bail!("compact the key index: {e}"),
        }
    }
    Ok(rep)
}

/// The compaction task of a shard in index mode: every `checkpoint-check-ms`, one index
/// checkpoint when a range is due (`checkpoint::due_ranges`) or the changed keys reach
/// `checkpoint-entries`; then the log segments nothing needs are freed.
pub async fn run<D: ShardDevice>(shard: Rc<Shard<D>>) {
    let every = std::time::Duration::from_millis(shard.cfg.checkpoint_check_ms);
    while !shard.stop.get() {
        crate::core::sleep(every).await;
        checkpoint::forget_stale_uninitialized(&shard);
        let changed = shard.state.borrow().engine.changed_keys() as u64;
        if changed < shard.cfg.checkpoint_entries && checkpoint::due_ranges(&shard).is_empty() {
            compact_if_needed(&shard).await;
            continue;
        }
        match self::checkpoint(&shard).await {
            Ok(Some(rep)) if rep.compacted > 0 => checkpoint::reclaim_counted(&shard).await,
            Ok(_) => {}
            Err(e) => tracing::error!("index checkpoint failed: {e:#}"),
        }
    }
}

/// Compacts the key index when its policy asks for it: a compaction deferred for space at a
/// checkpoint (`KeyIndex::compact`) runs as soon as the store has room, without waiting for
/// the next checkpoint — which, on a full log refusing writes, may never come. The log's
/// reserve shrinks with the index afterwards.
async fn compact_if_needed<D: ShardDevice>(shard: &Rc<Shard<D>>) {
    let Some(index) = shard.lsm.clone() else {
        return;
    };
    if !index.compaction_needed() {
        return;
    }
    match index.compact().await {
        Ok(Some(_)) => leave_room_for_index(&shard.log, &index),
        // Deferred for space, or a checkpoint's compaction is running.
        Ok(None) | Err(engines::lsm::Error::Busy(_)) => {}
        Err(e) => tracing::warn!("key index compaction failed: {e}"),
    }
}
