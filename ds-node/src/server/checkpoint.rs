//! Range checkpoints on disk and shard-log compaction.
//!
//! A checkpoint is the state of one range at one applied index (format in
//! [`crate::range::checkpoint`]), kept as
//! `data-dir/checkpoints/shard-<i>/range-<id>-<index>.ckpt` (written to a temporary name,
//! `fsync`ed, renamed, directory `fsync`ed: a crash leaves no torn file under a final name).
//! The newest index wins; older files are deleted once a newer one is durable, so a
//! checkpoint written late by the compaction task can never hide a newer snapshot installed
//! meanwhile. Every range has one from its creation on, so recovery is always "load the
//! newest checkpoint, replay the shard log after it".
//!
//! [`run`] is the shard's compaction task: when a range applied
//! `checkpoint-entries` entries since its last checkpoint — or the shard log is half full, or
//! raft-rs asked for a snapshot newer than the last checkpoint — it writes a new checkpoint,
//! then compacts the range's Raft log below it (keeping a short tail for followers that are
//! only a little behind) and frees the log segments no range needs any more. Without this a
//! long-running shard fills its log and stops accepting writes.
//!
//! Building a checkpoint walks the range in the Masstree in one go (the tree has no snapshot
//! isolation, and the walks must see one applied index): two walks, three with cold entries
//! ([`encode_stored`]: sizes, then entries straight into a buffer of the exact size), during
//! which it holds the shard, about 100 ns per key. Ranges are kept small by splitting; the LSM (tiering
//! issue) replaces full checkpoints by incremental ones.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

use engines::vlog::{LogIndex, SegmentId};

use super::checkpoint_store::CheckpointStore;
use super::metrics::ShardMetrics;
use super::peer::conf_state_of;
use super::shard::{Shard, ShardDevice, ShardState};
use crate::range::checkpoint::{self, CheckpointMeta};
use crate::range::engine::{MasstreeStore, StoredRef};
use crate::range::storage::SnapshotPoint;
use crate::range::store::{Entry, KvStore};

/// The directory of a shard's checkpoints (on the file system).
pub fn dir(cfg: &crate::config::DsConfig, index: u32) -> PathBuf {
    cfg.data_dir
        .join("checkpoints")
        .join(format!("shard-{index}"))
}

/// Counts a file operation while it runs: the shard waits for them at shutdown (a blocking
/// thread that finishes after its executor is gone panics in glommio).
struct FileOp<'a, D: ShardDevice>(&'a Shard<D>);

impl<'a, D: ShardDevice> FileOp<'a, D> {
    fn start(shard: &'a Shard<D>) -> Self {
        shard.file_ops.set(shard.file_ops.get() + 1);
        FileOp(shard)
    }
}

impl<D: ShardDevice> Drop for FileOp<'_, D> {
    fn drop(&mut self) {
        self.0.file_ops.set(self.0.file_ops.get() - 1);
    }
}

/// What a range file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum FileKind {
    /// `.ckpt`: the range's whole state at its index (both modes).
    Full,
    /// `.base` (index mode only): the range's descriptor at its index, no keys — they are in
    /// the shard's key index (a split's right range).
    Base,
}

impl FileKind {
    fn suffix(self) -> &'static str {
        match self {
            Self::Full => ".ckpt",
            Self::Base => ".base",
        }
    }
}

fn file_name(range: net::RangeId, index: u64, kind: FileKind) -> String {
    format!("range-{range}-{index:020}{}", kind.suffix())
}

/// The range files of `range` among `names`, by index.
fn files_of(names: Vec<String>, range: net::RangeId) -> Vec<(u64, FileKind, String)> {
    let prefix = format!("range-{range}-");
    let mut out: Vec<(u64, FileKind, String)> = names
        .into_iter()
        .filter_map(|name| {
            let rest = name.strip_prefix(&prefix)?;
            let (kind, idx) = [FileKind::Full, FileKind::Base]
                .into_iter()
                .find_map(|k| Some((k, rest.strip_suffix(k.suffix())?)))?;
            Some((idx.parse::<u64>().ok()?, kind, name))
        })
        .collect();
    out.sort();
    out
}

/// The checkpoint (`.ckpt`) files of `range` among `names`, by index.
fn of_range(names: Vec<String>, range: net::RangeId) -> Vec<(u64, String)> {
    files_of(names, range)
        .into_iter()
        .filter(|(_, k, _)| *k == FileKind::Full)
        .map(|(i, _, n)| (i, n))
        .collect()
}

/// A description of where `range`'s checkpoints live, for error messages.
pub fn path<D: ShardDevice>(shard: &Shard<D>, range: net::RangeId) -> PathBuf {
    Path::new(&shard.checkpoints.location()).join(format!("range-{range}-*.ckpt"))
}

/// Writes `bytes` as the checkpoint of `range` at `index`, atomically and durably, then
/// deletes the range's older checkpoints.
pub async fn write<D: ShardDevice>(
    shard: &Shard<D>,
    range: net::RangeId,
    index: u64,
    bytes: Rc<Vec<u8>>,
) -> anyhow::Result<()> {
    write_kind(shard, range, index, bytes, FileKind::Full).await
}

/// Writes `bytes` (a range checkpoint, entries or not) as a range file of `kind` at `index`,
/// atomically and durably, then deletes the range's older files.
pub async fn write_kind<D: ShardDevice>(
    shard: &Shard<D>,
    range: net::RangeId,
    index: u64,
    bytes: Rc<Vec<u8>>,
    kind: FileKind,
) -> anyhow::Result<()> {
    let _op = FileOp::start(shard);
    // The file system store moves owned data to the blocking pool: the caller's bytes when
    // it holds the only reference (new checkpoints, splits), a copy when a received snapshot
    // is still shared.
    let data = Rc::try_unwrap(bytes).unwrap_or_else(|shared| shared.as_ref().clone());
    write_durably(
        shard.checkpoints.as_ref(),
        &file_name(range, index, kind),
        data,
    )
    .await
    .map_err(|e| anyhow::anyhow!("write checkpoint of range {range}: {e}"))?;
    remove_older(shard.checkpoints.as_ref(), range, index)
        .await
        .map_err(|e| anyhow::anyhow!("remove old checkpoints of range {range}: {e}"))
}

/// Writes `name` so that a crash leaves either no file of that name or all of `data`: to a
/// temporary name, `fsync`ed, renamed, directory `fsync`ed.
async fn write_durably(
    store: &dyn CheckpointStore,
    name: &str,
    data: Vec<u8>,
) -> std::io::Result<()> {
    let tmp = match name.strip_suffix(".ckpt") {
        Some(stem) => format!("{stem}.tmp"),
        None => format!("{name}.tmp"),
    };
    store.write(&tmp, data).await?;
    store.sync(&tmp).await?;
    crate::failpoint!("ds_node::shard::checkpoint::before_rename");
    store.rename(&tmp, name).await?;
    store.sync_dir().await
}

async fn remove_older(
    store: &dyn CheckpointStore,
    range: net::RangeId,
    index: u64,
) -> std::io::Result<()> {
    for (i, _, name) in files_of(store.list().await?, range) {
        if i < index {
            store.remove(&name).await?;
        }
    }
    Ok(())
}

/// Removes the range files of `range` older than `index` (index mode: the key index's
/// manifest supersedes them).
pub async fn remove_before<D: ShardDevice>(
    shard: &Shard<D>,
    range: net::RangeId,
    index: u64,
) -> std::io::Result<()> {
    let _op = FileOp::start(shard);
    remove_older(shard.checkpoints.as_ref(), range, index).await
}

/// Reads the newest range file of `range`, of either kind: (index, kind, bytes).
pub async fn read_newest<D: ShardDevice>(
    shard: &Shard<D>,
    range: net::RangeId,
) -> anyhow::Result<Option<(u64, FileKind, Vec<u8>)>> {
    let _op = FileOp::start(shard);
    let store = shard.checkpoints.as_ref();
    let names = store
        .list()
        .await
        .map_err(|e| anyhow::anyhow!("list {}: {e}", store.location()))?;
    let Some((index, kind, newest)) = files_of(names, range).pop() else {
        return Ok(None);
    };
    let bytes = store
        .read(&newest)
        .await
        .map_err(|e| anyhow::anyhow!("read {newest} in {}: {e}", store.location()))?;
    Ok(bytes.map(|b| (index, kind, b)))
}

/// Reads the newest checkpoint of `range` (`None`: there is none).
pub async fn read<D: ShardDevice>(
    shard: &Shard<D>,
    range: net::RangeId,
) -> anyhow::Result<Option<Vec<u8>>> {
    let _op = FileOp::start(shard);
    let store = shard.checkpoints.as_ref();
    let names = store
        .list()
        .await
        .map_err(|e| anyhow::anyhow!("list {}: {e}", store.location()))?;
    let Some((_, newest)) = of_range(names, range).pop() else {
        return Ok(None);
    };
    store
        .read(&newest)
        .await
        .map_err(|e| anyhow::anyhow!("read {newest} in {}: {e}", store.location()))
}

/// Removes every checkpoint of a destroyed range.
pub async fn remove<D: ShardDevice>(shard: &Shard<D>, range: net::RangeId) {
    let _op = FileOp::start(shard);
    let _ = remove_older(shard.checkpoints.as_ref(), range, u64::MAX).await;
}

/// (key + value bytes, keys) of entries: the size a range is charged with.
pub fn entries_size(entries: &[(bytes::Bytes, Entry)]) -> (i64, i64) {
    entries.iter().fold((0, 0), |(b, k), (key, e)| {
        (b + (key.len() + e.value.len()) as i64, k + 1)
    })
}

/// Deletes every key of `[start, end)` from the engine.
pub fn clear_range(engine: &mut MasstreeStore, start: &[u8], end: &[u8]) {
    let end = (!end.is_empty()).then_some(end);
    loop {
        let got = engine.scan_keys(start, end, 4096);
        if got.is_empty() {
            return;
        }
        for k in got {
            engine.delete(&k);
        }
    }
}

/// Replaces the range's keys in the engine by a checkpoint's (cold entries stay cold: their
/// pointers name this node's shard log).
pub fn load(engine: &mut MasstreeStore, c: checkpoint::Checkpoint) {
    clear_range(engine, &c.meta.desc.start, &c.meta.desc.end);
    for (k, e) in c.entries {
        engine.put(k, e);
    }
    for (k, c) in c.cold {
        engine.put_cold(k, c.pointer, c.expire_at_ms);
    }
}

/// A checkpoint encoded from the engine.
#[derive(Debug)]
pub struct Encoded {
    /// The checkpoint bytes.
    pub bytes: Vec<u8>,
    /// (key + value bytes, keys) of its entries.
    pub size: (i64, i64),
    /// The shard-log segments its cold entries point into (kept while it is the newest).
    pub segments: BTreeSet<SegmentId>,
}

/// Encodes `[start, end)` of the engine at `meta`: hot entries with their values, cold ones
/// by pointer. Straight from the tree, in three walks (sizes; hot entries; cold entries, if
/// any) into one buffer of the checkpoint's exact size: no copy of the range in between. A
/// checkpoint of a big list this way touches its own bytes once; through a copy (a key and a
/// value allocation per entry, a vector of them, a buffer doubled as it grew and copied at the
/// end) it touched several times as much fresh memory, and a shard under a pipelined LPUSH
/// spent a fifth of its time there (docs/benchmarks.md, "Write path CPU per operation").
pub fn encode_stored(engine: &MasstreeStore, meta: &CheckpointMeta) -> Encoded {
    let (start, end) = (&meta.desc.start[..], &meta.desc.end[..]);
    let (mut hot, mut cold, mut body) = (0u64, 0u64, 0usize);
    let mut size = (0i64, 0i64);
    let mut segments = BTreeSet::new();
    engine.for_each_stored(start, end, |k, s| {
        match s {
            StoredRef::Hot { value, .. } => {
                hot += 1;
                body += checkpoint::hot_len(k.len(), value.len());
                size.0 += (k.len() + value.len()) as i64;
            }
            StoredRef::Cold { pointer, .. } => {
                cold += 1;
                body += checkpoint::cold_len(k.len());
                size.0 += (k.len() + pointer.stored_len()) as i64;
                segments.insert(pointer.segment);
            }
        }
        size.1 += 1;
    });
    let mut w = checkpoint::Writer::new(meta, hot, cold, body);
    engine.for_each_stored(start, end, |k, s| {
        if let StoredRef::Hot {
            value,
            expire_at_ms,
        } = s
        {
            w.hot(k, value, expire_at_ms);
        }
    });
    if cold > 0 {
        engine.for_each_stored(start, end, |k, s| {
            if let StoredRef::Cold {
                pointer,
                expire_at_ms,
            } = s
            {
                w.cold(
                    k,
                    &checkpoint::ColdEntry {
                        pointer,
                        expire_at_ms,
                    },
                );
            }
        });
    }
    Encoded {
        bytes: w.finish(),
        size,
        segments,
    }
}

/// The segments the cold entries of a decoded checkpoint point into.
pub fn segments_of(c: &checkpoint::Checkpoint) -> BTreeSet<SegmentId> {
    c.cold.iter().map(|(_, e)| e.pointer.segment).collect()
}

/// Encodes the current state of an initialized range (at its applied index).
/// Never for a range frozen for a merge: its freeze entry must stay in the log for recovery
/// (`server::merge`).
pub fn build(st: &ShardState, range: net::RangeId) -> Option<(Encoded, SnapshotPoint)> {
    if st.frozen.contains_key(&range) {
        return None;
    }
    let p = st
        .peers
        .get(&range)
        .filter(|p| p.is_initialized() && !p.is_stopped())?;
    let index = p.applied();
    let term = p.raft().raft.raft_log.term(index).ok()?;
    let desc = p.desc().clone();
    let conf = conf_state_of(&desc);
    let encoded = encode_stored(&st.engine, &CheckpointMeta { index, term, desc });
    Some((encoded, SnapshotPoint { index, term, conf }))
}

/// Writes a checkpoint of `range` and compacts its Raft log below it. Returns whether the
/// log was compacted.
pub async fn checkpoint_range<D: ShardDevice>(
    shard: &Rc<Shard<D>>,
    range: net::RangeId,
) -> anyhow::Result<bool> {
    // One checkpoint of a range at a time (the compaction task and the garbage collector
    // both write them): two writers of the same index would share a temporary file, and
    // the slower one could leave `checkpoint_segments` naming the older file's segments.
    while shard.state.borrow().checkpointing.contains(&range) {
        if shard.stop.get() {
            return Ok(false);
        }
        crate::core::sleep(Duration::from_millis(5)).await;
    }
    let _one = OneCheckpoint::start(shard, range);
    let t = shard.now();
    let Some((encoded, point)) = build(&shard.state.borrow(), range) else {
        return Ok(false);
    };
    let size = encoded.bytes.len() as u64;
    write(shard, range, point.index, Rc::new(encoded.bytes)).await?;
    crate::failpoint!("ds_node::shard::checkpoint::before_compact");
    shard
        .state
        .borrow_mut()
        .checkpoint_segments
        .insert(range, encoded.segments);
    let compacted = compact_below(shard, range, point).await?;
    record(shard, t, size);
    Ok(compacted)
}

/// The range's durable base is now `point` (a checkpoint file or the key index): sets it as
/// the Raft store's snapshot point and compacts the range's Raft log below it, keeping the
/// entries a follower only a little behind still needs. Returns whether the log was compacted.
pub async fn compact_below<D: ShardDevice>(
    shard: &Shard<D>,
    range: net::RangeId,
    point: SnapshotPoint,
) -> anyhow::Result<bool> {
    let (keep_from, term) = {
        let mut st = shard.state.borrow_mut();
        let Some(p) = st.peers.get_mut(&range) else {
            return Ok(false);
        };
        let index = point.index;
        p.raft_mut().mut_store().set_snapshot(point);
        let mut keep_from = index + 1;
        if p.is_leader() {
            // Keep the entries a follower that is only a little behind still needs: it then
            // catches up from the log instead of by snapshot.
            let me = p.replica_id().0;
            let slack = shard.cfg.cached_entries as u64;
            let lagging = p
                .raft()
                .raft
                .prs()
                .iter()
                .filter(|(id, pr)| **id != me && pr.recent_active)
                .map(|(_, pr)| pr.matched)
                .min();
            if let Some(m) = lagging {
                if m < index && index - m <= slack {
                    keep_from = m + 1;
                }
            }
        }
        let trunc = p.raft().store().truncated_index();
        if keep_from <= trunc + 1 {
            return Ok(false);
        }
        let term = p.raft().raft.raft_log.term(keep_from - 1).unwrap_or(0);
        (keep_from, term)
    };
    shard
        .log
        .compact(range, LogIndex(keep_from))
        .await
        .map_err(|e| anyhow::anyhow!("compact range {range}: {e}"))?;
    crate::failpoint!("ds_node::shard::checkpoint::after_compact");
    if let Some(p) = shard.state.borrow_mut().peers.get_mut(&range) {
        p.raft_mut().mut_store().truncate_to(keep_from - 1, term);
    }
    Ok(true)
}

/// Marks a range's checkpoint as being written while it lives.
struct OneCheckpoint<'a, D: ShardDevice>(&'a Shard<D>, net::RangeId);

impl<'a, D: ShardDevice> OneCheckpoint<'a, D> {
    fn start(shard: &'a Shard<D>, range: net::RangeId) -> Self {
        shard.state.borrow_mut().checkpointing.insert(range);
        Self(shard, range)
    }
}

impl<D: ShardDevice> Drop for OneCheckpoint<'_, D> {
    fn drop(&mut self) {
        self.0.state.borrow_mut().checkpointing.remove(&self.1);
    }
}

/// Counts a checkpoint of `size` bytes started at `t`.
pub fn record<D: ShardDevice>(shard: &Shard<D>, t: Instant, size: u64) {
    let mut m = shard.metrics.borrow_mut();
    m.checkpoints_total += 1;
    m.checkpoint_bytes_total += size;
    let us = shard.now().saturating_duration_since(t).as_micros() as u64;
    ShardMetrics::record(&mut m.checkpoint_us, us);
}

/// Whether the shard log is at least half full.
fn log_under_pressure<D: ShardDevice>(shard: &Shard<D>) -> bool {
    let segments = (shard.cfg.log_file_bytes / shard.cfg.segment_bytes).max(2) - 1;
    (shard.log.segment_usage().len() as u64) * 2 >= segments
}

/// Frees the shard-log segments no range needs and no live value pointer points into — of
/// the engine, or of a range's newest checkpoint (recovery loads it, then replays entries
/// that may read those values before overwriting them).
pub async fn reclaim<D: ShardDevice>(shard: &Shard<D>) -> engines::vlog::Result<usize> {
    let pinned = |seg| {
        let st = shard.state.borrow();
        st.engine.is_pinned(seg) || st.checkpoint_segments.values().any(|s| s.contains(&seg))
    };
    shard.log.reclaim_except(&pinned).await
}

/// How long a replica created for a leader's message may wait for its first snapshot.
pub const UNINITIALIZED_TTL: Duration = Duration::from_secs(300);

/// Drops replicas that were created for a leader's message and never got their snapshot (the
/// leader went away or the replica was removed before it was caught up). They hold nothing.
pub fn forget_stale_uninitialized<D: ShardDevice>(shard: &Shard<D>) {
    let now = shard.now();
    let mut st = shard.state.borrow_mut();
    st.peers
        .retain(|_, p| p.is_initialized() || !p.older_than(UNINITIALIZED_TTL, now));
}

/// The initialized ranges due for a checkpoint: `checkpoint-entries` applied since the last
/// one, raft-rs wants a newer snapshot, or the shard log is half full and the range's log
/// could be compacted.
pub fn due_ranges<D: ShardDevice>(shard: &Shard<D>) -> Vec<net::RangeId> {
    let pressure = log_under_pressure(shard);
    let st = shard.state.borrow();
    st.peers
        .iter()
        .filter(|(_, p)| p.is_initialized())
        .filter(|(_, p)| {
            let store = p.raft().store();
            let since = store.snapshot_point().map_or(0, |s| s.index);
            let applied = p.applied();
            applied > since
                && (store.want_checkpoint.get()
                    || applied - since >= shard.cfg.checkpoint_entries
                    || (pressure && store.truncated_index() < applied))
        })
        .map(|(&id, _)| id)
        .collect()
}

/// Frees the shard-log segments nothing needs or pins any more, counting them.
pub async fn reclaim_counted<D: ShardDevice>(shard: &Shard<D>) {
    match reclaim(shard).await {
        Ok(n) => shard.metrics.borrow_mut().segments_freed_total += n as u64,
        Err(e) => tracing::error!("freeing shard log segments failed: {e}"),
    }
}

/// The compaction task of a shard in files mode (see the module documentation; index mode
/// runs `index_checkpoint::run` instead).
pub async fn run<D: ShardDevice>(shard: Rc<Shard<D>>) {
    let every = Duration::from_millis(shard.cfg.checkpoint_check_ms);
    while !shard.stop.get() {
        crate::core::sleep(every).await;
        forget_stale_uninitialized(&shard);
        let due = due_ranges(&shard);
        let mut compacted = false;
        for range in due {
            if shard.stop.get() {
                return;
            }
            match checkpoint_range(&shard, range).await {
                Ok(c) => compacted |= c,
                Err(e) => {
                    tracing::error!(%range, "checkpoint failed: {e:#}");
                    shard.metrics.borrow_mut().checkpoint_errors_total += 1;
                }
            }
        }
        if compacted {
            reclaim_counted(&shard).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use engines::masstree::{LogPointer, SegmentId};
    use net::message::RangeDescriptor;
    use net::{Epoch, RangeId};

    use super::*;
    use crate::range::engine::Stored;

    /// The checkpoint through a copy of the range, as `encode_stored` built it before it
    /// encoded straight from the tree.
    fn encode_through_a_copy(engine: &MasstreeStore, meta: &CheckpointMeta) -> Vec<u8> {
        let stored = engine.scan_stored(&meta.desc.start, &meta.desc.end);
        let (mut hot, mut cold) = (Vec::new(), Vec::new());
        for (k, s) in stored {
            match s {
                Stored::Hot(e) => hot.push((k, e)),
                Stored::Cold {
                    pointer,
                    expire_at_ms,
                } => cold.push((
                    k,
                    checkpoint::ColdEntry {
                        pointer,
                        expire_at_ms,
                    },
                )),
            }
        }
        checkpoint::encode_with_cold(
            meta,
            hot.iter().map(|(k, e)| (&k[..], e)),
            cold.iter().map(|(k, c)| (&k[..], c)),
        )
    }

    fn meta(start: &[u8], end: &[u8]) -> CheckpointMeta {
        CheckpointMeta {
            index: 42,
            term: 6,
            desc: RangeDescriptor {
                id: RangeId(7),
                start: Bytes::copy_from_slice(start),
                end: Bytes::copy_from_slice(end),
                epoch: Epoch {
                    conf_ver: 1,
                    version: 2,
                },
                replicas: Vec::new(),
                leader: None,
            },
        }
    }

    #[test]
    fn a_checkpoint_encoded_from_the_tree_is_the_one_encoded_through_a_copy() {
        let mut engine = MasstreeStore::new();
        for i in 0..300u32 {
            let value = vec![b'v'; (i % 40) as usize];
            engine.put(
                Bytes::from(format!("k{i:05}")),
                Entry {
                    value: Bytes::from(value),
                    expire_at_ms: u64::from(i % 3) * 1_000,
                },
            );
        }
        let demoted = |i: u32| i % 7 == 0 && i % 40 != 0;
        for i in (0..300u32).filter(|&i| demoted(i)) {
            let value = vec![b'v'; (i % 40) as usize];
            let pointer = LogPointer {
                segment: SegmentId(i % 4),
                offset: u64::from(i) * 64,
                len: value.len() as u32,
                checksum: crc32c::crc32c(&value),
            };
            assert!(engine.demote(format!("k{i:05}").as_bytes(), &value, pointer));
        }
        // The whole tree (hot and cold), a middle part, a hot-only part and an empty range.
        for (start, end) in [
            (&b""[..], &b""[..]),
            (b"k00100", b"k00200"),
            (b"k00001", b"k00007"),
            (b"x", b""),
        ] {
            let m = meta(start, end);
            let e = encode_stored(&engine, &m);
            assert_eq!(
                e.bytes,
                encode_through_a_copy(&engine, &m),
                "{start:?}..{end:?}"
            );
            let decoded = checkpoint::decode(&e.bytes).expect("decodes");
            let entries = (decoded.entries.len() + decoded.cold.len()) as i64;
            assert_eq!(e.size.1, entries);
            assert_eq!(e.segments, segments_of(&decoded));
        }
        let whole = encode_stored(&engine, &meta(b"", b""));
        assert_eq!(whole.size.1, 300);
        assert_eq!(whole.segments.len(), 4);
    }
}
