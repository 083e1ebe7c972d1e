//! Opening a shard: its log (created and formatted when absent), every range recovered from
//! its newest checkpoint and the committed entries after it, and new ranges created.
//!
//! An operation module: imports the shard state and the operations recovery replays
//! (`checkpoint`, `cold`, `split`, `conf_change`), never the ready loop or the handler.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::path::Path;
use std::rc::Rc;

use engines::segments::SharedStore;
use engines::vlog::{EntryRecord, LogIndex, LogRecord, Vlog, VlogConfig};
use net::RangeId;
use net::glommio_transport::Pool;
use net::message::RangeDescriptor;
use net::message::handshake::{Hello, Role};
use net::transport::TransportConfig;
use net::{ClusterId, NodeId, StoreId};
use nvme::uring::{UringDevice, UringOptions};
use nvme::{FormatOptions, SegmentStore};
use raft::eraftpb::{Entry, HardState};

use super::apply::{self, Committed};
use super::checkpoint_store::{CheckpointStore, FsCheckpointStore};
use super::clock::{Clock, SystemClock};
use super::conf_change::{apply_conf_change_to_desc, entry_type_of};
use super::metrics::ShardMetrics;
use super::peer::conf_state_of;
use super::policy_state::PolicyState;
use super::shard::{
    Device, INIT_INDEX, LOG_OWNER, MAX_PROPOSAL_BYTES, Shard, ShardDevice, ShardState, Wakeup,
    stop_range,
};
use crate::config::{CheckpointMode, DsConfig};
use crate::range::checkpoint::{self as ckpt, CheckpointMeta};
use crate::range::codec::{decode_meta, decode_tombstone, encode_meta};
use crate::range::db_keys::{self, DbKeys};
use crate::range::storage::{RaftLogCache, SnapshotPoint};

/// Opens (creating if absent) the shard log file; true: it was just created (unformatted).
async fn open_file(cfg: &DsConfig, path: &Path) -> anyhow::Result<(Device, bool)> {
    let fresh = !path.exists();
    let opts = UringOptions {
        write_through: cfg.log_write_through,
        ..UringOptions::default()
    };
    if fresh {
        let dev = if cfg.zero_log_file {
            UringDevice::create_file_zeroed(path, cfg.log_file_bytes, opts).await
        } else {
            UringDevice::create_file(path, cfg.log_file_bytes, opts).await
        }
        .map_err(|e| anyhow::anyhow!("create shard log {}: {e}", path.display()))?;
        return Ok((dev, true));
    }
    let dev = UringDevice::open(path, opts)
        .await
        .map_err(|e| anyhow::anyhow!("open shard log {}: {e}", path.display()))?;
    Ok((dev, false))
}

/// Opens the shard log on `dev` (formatting it first when `fresh`), recovering it; returns
/// it with its segment store (shared with the key index in index mode).
async fn open_log<D: ShardDevice>(
    cfg: &DsConfig,
    dev: D,
    fresh: bool,
) -> anyhow::Result<(Vlog<D>, SharedStore<D>)> {
    let dev = if fresh {
        let store = SegmentStore::format(
            dev,
            FormatOptions {
                segment_size: cfg.segment_bytes,
                ..FormatOptions::default()
            },
        )
        .await
        .map_err(|e| anyhow::anyhow!("format shard log: {e}"))?;
        store.into_device()
    } else {
        dev
    };
    let store = SharedStore::open(dev)
        .await
        .map_err(|e| anyhow::anyhow!("open the shard log's segment store: {e}"))?;
    let (log, rep) = Vlog::open_on(store.clone(), LOG_OWNER, log_config(cfg))
        .await
        .map_err(|e| anyhow::anyhow!("recover shard log: {e}"))?;
    if !fresh {
        tracing::info!(?rep, "shard log recovered");
    }
    Ok((log, store))
}

/// What a shard runs on: its log device, its checkpoint directory and its clock (the seams a
/// test replaces: a faulty device, a crashable directory, a [`ManualClock`](super::clock::ManualClock)).
#[derive(Debug)]
pub struct ShardStorage<D> {
    /// The shard log's device.
    pub device: D,
    /// The device is new: format it before opening the log.
    pub fresh: bool,
    /// The ranges' checkpoints.
    pub checkpoints: Rc<dyn CheckpointStore>,
    /// The shard's monotonic clock (`server::clock`).
    pub clock: Rc<dyn Clock>,
}

/// The shard log's settings: entries up to the largest proposal the handler admits (longer
/// ones are written as fragment records, `docs/format/shard-log.md` §3).
fn log_config(cfg: &DsConfig) -> VlogConfig {
    VlogConfig {
        entry_bytes_max: MAX_PROPOSAL_BYTES,
        reserve_segments: match cfg.checkpoint_mode {
            CheckpointMode::Files => 0,
            CheckpointMode::Index => super::index_checkpoint::INDEX_RESERVE_SEGMENTS,
        },
        ..VlogConfig::default()
    }
}

/// Whether `outer` covers the key span of `inner`.
fn covers(outer: &RangeDescriptor, inner: &RangeDescriptor) -> bool {
    outer.start <= inner.start
        && (outer.end.is_empty() || (!inner.end.is_empty() && inner.end <= outer.end))
}

/// The log after a range's checkpoint, replayed.
#[derive(Debug, Default)]
struct Replayed {
    /// The entries after the checkpoint the Raft cache keeps: the last `cached-entries`
    /// committed ones and every uncommitted one (the rest stay in the shard log; holding
    /// them all made a restart's memory peak the whole log tail).
    entries: Vec<Entry>,
    /// Index and term of the entry just before `entries[0]`, when entries were dropped.
    before: Option<(u64, u64)>,
    /// The entry that stopped the range (`Peer::stopped`), if one does again.
    stopped: Option<(u64, String)>,
    /// A commit-merge replay left to the live loop (`server::merge`): its index.
    paused: Option<u64>,
}

/// What replaying one entry did.
enum Replay {
    /// Applied (or nothing to apply).
    Done,
    /// The entry broke an engine invariant: the range stops there.
    Fault(String),
    /// A commit-merge: this entry and the ones after it are left to the live loop, which
    /// applies it once this shard's right replica applied its freeze (`server::merge`).
    Pause,
}

impl Replayed {
    /// Drops the entries at or below `droppable` once more than `2 × keep` are held
    /// (amortized: each entry is moved at most once or twice).
    fn drop_below(&mut self, droppable: u64, keep: usize) {
        if self.entries.len() <= 2 * keep.max(1) {
            return;
        }
        let n = self.entries.partition_point(|e| e.index <= droppable);
        if let Some(last) = n.checked_sub(1).and_then(|i| self.entries.get(i)) {
            self.before = Some((last.index, last.term));
            self.entries.drain(..n);
        }
    }
}

impl Shard<Device> {
    /// Opens shard `index` of the node whose data directory `cfg` names: its log file and
    /// checkpoint directory (see [`Shard::open_on`]).
    pub async fn open(
        cfg: DsConfig,
        index: u32,
        store_id: StoreId,
        cluster_id: ClusterId,
    ) -> anyhow::Result<Rc<Self>> {
        std::fs::create_dir_all(&cfg.data_dir)?;
        let path = cfg.data_dir.join(format!("shard-{index}.log"));
        let (device, fresh) = open_file(&cfg, &path).await?;
        let checkpoints = Rc::new(FsCheckpointStore::new(super::checkpoint::dir(&cfg, index)));
        let storage = ShardStorage {
            device,
            fresh,
            checkpoints,
            clock: Rc::new(SystemClock),
        };
        Self::open_on(cfg, index, store_id, cluster_id, storage).await
    }
}

impl<D: ShardDevice> Shard<D> {
    /// Opens shard `index` on `storage`: its log (recovering every range in it into the
    /// engine) and checkpoints. Its connections to the master and to peers carry
    /// `cluster_id` (0 while unknown) and prove the cluster secret of `cfg` (resolved:
    /// [`DsConfig::resolve_secret`]).
    pub async fn open_on(
        cfg: DsConfig,
        index: u32,
        store_id: StoreId,
        cluster_id: ClusterId,
        storage: ShardStorage<D>,
    ) -> anyhow::Result<Rc<Self>> {
        let t = storage.clock.now();
        let (log, store) = open_log(&cfg, storage.device, storage.fresh).await?;
        let lsm = match cfg.checkpoint_mode {
            CheckpointMode::Files => None,
            CheckpointMode::Index => {
                let index = super::index_checkpoint::open(store).await?;
                super::index_checkpoint::leave_room_for_index(&log, &index);
                Some(Rc::new(index))
            }
        };
        let ms = storage.clock.now().duration_since(t).as_millis();
        tracing::info!(shard = index, ms, "shard log opened");
        let hello = Hello::new(Role::DsNode {}, cluster_id, NodeId(store_id.0));
        let transport = cfg.transport()?;
        let pool = Pool::new(hello, transport.clone());
        let mut addrs = HashMap::new();
        for p in &cfg.peers {
            addrs.insert(StoreId(p.store_id), p.shard_addrs.clone());
        }
        let policy = PolicyState::new(&cfg, storage.clock.clone());
        let shard = Rc::new(Self {
            index,
            store_id,
            cfg,
            log: Rc::new(log),
            checkpoints: storage.checkpoints,
            lsm,
            state: RefCell::new(ShardState::new()),
            wake: Wakeup::default(),
            pool,
            peer_conns: RefCell::new(HashMap::new()),
            pool_hello: hello,
            peer_transport: TransportConfig {
                request_timeout: std::time::Duration::from_secs(1),
                connect_timeout: std::time::Duration::from_millis(500),
                ..transport
            },
            metrics: RefCell::new(ShardMetrics::default()),
            load: RefCell::new(crate::load::LoadTracker::default()),
            addrs: RefCell::new(addrs),
            stop: Cell::new(false),
            disk_full: Cell::new(false),
            log_stalled: Cell::new(false),
            master_ranges: RefCell::new(HashMap::new()),
            route_version: Cell::new(0),
            file_ops: Cell::new(0),
            policy,
            fences: RefCell::default(),
            started: storage.clock.now(),
            clock: storage.clock,
        });
        shard.recover().await?;
        Ok(shard)
    }

    /// Rebuilds every range: its checkpoint into the engine, then the committed entries of the
    /// shard log after it (descriptor evolving with the conf changes replayed), the entries
    /// into the Raft cache, the hard state.
    async fn recover(self: &Rc<Self>) -> anyhow::Result<()> {
        let started = self.clock.now();
        if self.lsm.is_some() {
            // Keys and pointers, values cold; everything after this is a change.
            let t = self.clock.now();
            let n = super::index_checkpoint::load_all(self).await?;
            let ms = self.clock.now().duration_since(t).as_millis();
            tracing::info!(entries = n, ms, "key index loaded");
            self.state
                .borrow_mut()
                .engine
                .track_changes_noting_unbacked_over(super::demote::MAX_VALUE);
        }
        let mut ranges = self.log.ranges();
        ranges.sort();
        for range in ranges {
            self.recover_range(range).await?;
        }
        // Splits whose right range never became durable: create it again (its keys were just
        // rebuilt by the left range's replay).
        let splits = std::mem::take(&mut self.state.borrow_mut().splits);
        for (right, _) in splits {
            if !self.state.borrow().peers.contains_key(&right.id) {
                tracing::info!(range = %right.id, "re-creating the right range of a replayed split");
                super::split::create_right(self, right, None).await?;
            }
        }
        self.finish_recovered_merges().await?;
        self.clear_destroyed()?;
        let ms = self.clock.now().duration_since(started).as_millis();
        tracing::info!(shard = self.index, ms, "shard recovered");
        Ok(())
    }

    /// Whether `desc` is the right range of a merge whose left range, recovered before it,
    /// already covers it (the left's post-merge checkpoint was durable, the right's tombstone
    /// not): then its keys are the left's and it is buried unloaded (loading its checkpoint
    /// would bring back its keys as they were frozen, over the left's newer ones).
    async fn merged_away(&self, desc: &RangeDescriptor) -> anyhow::Result<bool> {
        let covered = self.state.borrow().peers.values().any(|p| {
            // A merge leaves the left's version above the right's; a left that stopped
            // before replaying the split that made `desc` is older than it.
            p.desc().id != desc.id
                && p.desc().epoch.version > desc.epoch.version
                && covers(p.desc(), desc)
        });
        if !covered {
            return Ok(false);
        }
        let me = desc
            .replicas
            .iter()
            .find(|r| r.store_id == self.store_id && r.shard_id.0 == self.index)
            .map(|r| r.replica_id);
        let Some(me) = me else {
            anyhow::bail!(
                "range {}: no replica of this shard in its descriptor",
                desc.id
            );
        };
        tracing::info!(range = %desc.id, "finishing a merge found at recovery (right range covered)");
        self.bury(desc.id, me).await?;
        self.metrics.borrow_mut().merges_total += 1;
        Ok(true)
    }

    /// Right ranges recovered frozen whose left range already covers them (its post-merge
    /// checkpoint was durable): destroyed now, keeping their keys (`server::merge`).
    async fn finish_recovered_merges(self: &Rc<Self>) -> anyhow::Result<()> {
        let done: Vec<(RangeId, RangeId)> = {
            let st = self.state.borrow();
            st.frozen
                .iter()
                .filter(|(right, (_, left))| {
                    let (Some(l), Some(r)) = (st.peers.get(left), st.peers.get(right)) else {
                        return false;
                    };
                    covers(l.desc(), r.desc())
                })
                .map(|(right, (_, left))| (*left, *right))
                .collect()
        };
        for (left, right) in done {
            tracing::info!(%left, %right, "finishing a merge found at recovery");
            super::merge::finish(self, left, right).await?;
        }
        Ok(())
    }

    /// Rebuilds one range of the shard log (a destroyed one leaves its tombstone).
    async fn recover_range(&self, range: RangeId) -> anyhow::Result<()> {
        let Some(meta) = self.log.conf_state(range) else {
            // Hard state of a replica that never got its first snapshot: nothing to keep.
            tracing::info!(%range, "range without a descriptor in the shard log; skipped");
            return Ok(());
        };
        if let Some(replica) = decode_tombstone(&meta) {
            self.state
                .borrow_mut()
                .tombstones
                .insert((range, net::ReplicaId(replica)));
            super::checkpoint::remove(self, range).await;
            return Ok(());
        }
        let Some(desc) = decode_meta(&meta) else {
            anyhow::bail!("range {range}: undecodable descriptor in the shard log");
        };
        if self.merged_away(&desc).await? {
            return Ok(());
        }
        let base = if self.lsm.is_some() {
            self.load_base(range).await?
        } else {
            self.load_checkpoint(range).await?
        };
        let hs = self.log.hard_state(range).unwrap_or_default();
        let commit = hs.commit.0.max(base.index);
        let mut desc = base.desc.clone();
        let t = self.clock.now();
        let replayed = self
            .replay_log(range, &mut desc, base.index, commit)
            .await?;
        let replay_ms = self.clock.now().duration_since(t).as_millis();
        let raft_hs = HardState {
            term: hs.term.0.max(base.term),
            vote: hs.vote,
            commit,
            ..HardState::default()
        };
        let mut cache = RaftLogCache::new(raft_hs, conf_state_of(&desc), base.index, base.term);
        if let Some((index, term)) = replayed.before {
            cache.resume_after(index, term);
        }
        cache.append(&replayed.entries);
        cache.set_snapshot(SnapshotPoint {
            index: base.index,
            term: base.term,
            conf: conf_state_of(&base.desc),
        });
        let keep = self.cfg.cached_entries as u64;
        cache.compact_to(commit.saturating_sub(keep));
        tracing::info!(range = %range, checkpoint = base.index, commit, replayed = commit.saturating_sub(base.index), replay_ms, "range recovered");
        let halted = replayed
            .stopped
            .as_ref()
            .map(|(i, _)| *i)
            .or(replayed.paused);
        let applied = halted.map_or(commit, |i| i - 1);
        // A range with this replica as its only member needs no votes: it leads at once
        // instead of after an election timeout (1-2 s by default) on every restart.
        let single = desc.replicas.len() == 1;
        let mut peer = self.new_peer(desc, cache, applied, None)?;
        if let Some((index, fault)) = replayed.stopped {
            stop_range(self, &mut peer, index, fault);
        } else if single {
            let _ = peer.raft_mut().campaign();
            self.wake.notify();
        }
        let (b, k) = self
            .state
            .borrow()
            .engine
            .size_of(&peer.desc().start, &peer.desc().end);
        peer.set_size(b as i64, k as i64);
        peer.set_db_keys(db_keys::recount(
            &self.state.borrow().engine,
            &peer.desc().start,
            &peer.desc().end,
        ));
        self.state.borrow_mut().peers.insert(range, peer);
        Ok(())
    }

    /// Index mode: the range's base — the newer of the key index's manifest entry and the
    /// range's newest file; a full checkpoint file (range creation, snapshot install) replaces
    /// the range's keys in the engine, the others keep the keys the index loaded.
    async fn load_base(&self, range: RangeId) -> anyhow::Result<CheckpointMeta> {
        use super::checkpoint::FileKind;
        let index = self.lsm.as_ref().expect("index mode");
        let manifest = super::index_checkpoint::manifest_base(index, range)?;
        let file = super::checkpoint::read_newest(self, range).await?;
        match (manifest, file) {
            // A full file at the manifest's own index is a fallback base (a range holding a
            // value too long for the index's records): the file wins the tie.
            (Some(m), Some((i, kind, _)))
                if m.index > i || (m.index == i && kind != FileKind::Full) =>
            {
                Ok(m)
            }
            (Some(m), None) => Ok(m),
            (_, Some((_, FileKind::Base, bytes))) => ckpt::decode_meta(&bytes)
                .map_err(|e| anyhow::anyhow!("range {range}: base file: {e}")),
            (_, Some((_, FileKind::Full, bytes))) => {
                let c = ckpt::decode(&bytes)
                    .map_err(|e| anyhow::anyhow!("range {range}: checkpoint file: {e}"))?;
                let meta = c.meta.clone();
                // Range creation and snapshot files hold no cold entries (nothing to pin).
                super::checkpoint::load(&mut self.state.borrow_mut().engine, c);
                Ok(meta)
            }
            (None, None) => anyhow::bail!(
                "range {range} is in the shard log but neither the key index nor a range file \
                 ({}) has its base",
                super::checkpoint::path(self, range).display()
            ),
        }
    }

    /// Index mode: deletes the keys the index still holds for ranges destroyed here (their
    /// deletions may not have reached a checkpoint), unless a live range covers them.
    fn clear_destroyed(&self) -> anyhow::Result<()> {
        let Some(index) = self.lsm.as_ref() else {
            return Ok(());
        };
        let destroyed: Vec<RangeId> = {
            let st = self.state.borrow();
            st.tombstones.iter().map(|(r, _)| *r).collect()
        };
        for range in destroyed {
            let Some(m) = super::index_checkpoint::manifest_base(index, range)? else {
                continue;
            };
            let (start, end) = (&m.desc.start, &m.desc.end);
            let mut st = self.state.borrow_mut();
            let overlaps = st.peers.values().any(|p| {
                let d = p.desc();
                (end.is_empty() || d.start < *end) && (d.end.is_empty() || *start < d.end)
            });
            if !overlaps {
                super::checkpoint::clear_range(&mut st.engine, start, end);
            }
        }
        Ok(())
    }

    /// Loads the newest checkpoint of `range` into the engine; returns its identity.
    async fn load_checkpoint(&self, range: RangeId) -> anyhow::Result<CheckpointMeta> {
        let path = super::checkpoint::path(self, range);
        let bytes = super::checkpoint::read(self, range).await?.ok_or_else(|| {
            anyhow::anyhow!(
                "range {range} is in the shard log but its checkpoint {} is missing (a data \
                 dir written with checkpoint-mode = \"index\", the default, does not open in \
                 files mode: start it with checkpoint-mode = \"index\")",
                path.display()
            )
        })?;
        let c = ckpt::decode(&bytes)
            .map_err(|e| anyhow::anyhow!("checkpoint {}: {e}", path.display()))?;
        drop(bytes);
        let meta = c.meta.clone();
        let mut st = self.state.borrow_mut();
        st.checkpoint_segments
            .insert(range, super::checkpoint::segments_of(&c));
        super::checkpoint::load(&mut st.engine, c);
        Ok(meta)
    }

    /// Reads the range's entries after its checkpoint at `base` and replays those up to
    /// `commit` (each after loading the cold values it touches), evolving `desc` with the
    /// splits and conf changes replayed.
    async fn replay_log(
        &self,
        range: RangeId,
        desc: &mut RangeDescriptor,
        base: u64,
        commit: u64,
    ) -> anyhow::Result<Replayed> {
        let mut out = Replayed::default();
        let mut next = base + 1;
        // Committed entries at or below this leave the window the cache keeps.
        let droppable = commit.saturating_sub(self.cfg.cached_entries as u64);
        let Some((first, last)) = self.log.bounds(range) else {
            return Ok(out);
        };
        if last.0 <= base {
            return Ok(out);
        }
        anyhow::ensure!(
            first.0 <= base + 1,
            "range {range}: the shard log resumes at {} but the checkpoint ends at {base}",
            first.0
        );
        let mut lo = base + 1;
        while lo <= last.0 {
            let hi = (lo + 1024).min(last.0 + 1);
            let got = self
                .log
                .entries(range, LogIndex(lo), LogIndex(hi), usize::MAX)
                .await
                .map_err(|e| anyhow::anyhow!("read range {range} entries: {e}"))?;
            for e in got.iter() {
                anyhow::ensure!(
                    e.index.0 == next,
                    "range {range}: gap in the shard log at {}",
                    e.index.0
                );
                next += 1;
                if e.index.0 <= commit && out.stopped.is_none() && out.paused.is_none() {
                    super::cold::prefetch_entry(self, desc, &e.payload)
                        .await
                        .map_err(|err| {
                            anyhow::anyhow!(
                                "range {range}: load cold values for entry {}: {err}",
                                e.index.0
                            )
                        })?;
                    match self.replay(desc, e) {
                        Replay::Done => {}
                        Replay::Fault(fault) => out.stopped = Some((e.index.0, fault)),
                        Replay::Pause => out.paused = Some(e.index.0),
                    }
                }
                out.entries.push(Entry {
                    entry_type: entry_type_of(e.entry_type),
                    term: e.term.0,
                    index: e.index.0,
                    data: e.payload.clone().into(),
                    ..Entry::default()
                });
            }
            anyhow::ensure!(!got.is_empty(), "range {range}: entries {lo}.. unreadable");
            // Entries from a paused commit-merge on are applied by the live loop: kept.
            let keep_from = out.paused.map_or(droppable, |i| droppable.min(i - 1));
            out.drop_below(keep_from, self.cfg.cached_entries);
            lo = hi;
            crate::core::yield_if_needed().await;
        }
        Ok(out)
    }

    /// Applies one recovered, committed entry to the engine (and splits and conf changes to
    /// `desc`) through the live loop's decoder and write apply (`server::apply`); returns the
    /// engine's refusal if the entry broke an invariant (the range stops there).
    fn replay(&self, desc: &mut RangeDescriptor, e: &EntryRecord) -> Replay {
        let mut st = self.state.borrow_mut();
        let decoded = apply::decode(entry_type_of(e.entry_type), &e.payload);
        if st.frozen.contains_key(&e.range)
            && matches!(decoded, Committed::Write { .. } | Committed::Sweep { .. })
        {
            // Frozen for a merge: the live loop refused it too.
            return Replay::Done;
        }
        let fault = match decoded {
            Committed::Write {
                now_ms,
                id,
                op,
                values,
            } => {
                // Counted by a walk once the range is rebuilt (`recover_range`).
                let mut uncounted = DbKeys::default();
                let backing = apply::backing_at(
                    &self.log,
                    e.range,
                    e.index.0,
                    e.term.0,
                    e.payload.len(),
                    values,
                );
                apply::write(
                    &mut st.engine,
                    (&mut uncounted, None),
                    desc,
                    e.index.0,
                    now_ms,
                    id,
                    &op,
                    backing,
                )
                .fault
            }
            Committed::Sweep { now_ms, keys } => {
                crate::range::sweep::apply(&mut st.engine, now_ms, &keys);
                None
            }
            Committed::Split(cmd) => {
                if let Some(right) = super::split::apply_to_desc(desc, &cmd) {
                    st.splits.push((right, None));
                }
                None
            }
            Committed::ConfChange(Some(cc)) => {
                apply_conf_change_to_desc(desc, &cc);
                None
            }
            Committed::Freeze(cmd) => {
                if cmd.epoch == desc.epoch {
                    st.frozen.entry(e.range).or_insert((e.index.0, cmd.into));
                }
                None
            }
            Committed::Merge(_) => return Replay::Pause,
            Committed::ConfChange(None) | Committed::Empty | Committed::Undecodable => None,
        };
        fault.map_or(Replay::Done, Replay::Fault)
    }

    /// Creates a new range on this shard (bootstrap or a static initial range): writes its
    /// first (empty) checkpoint, then its descriptor and hard state to the log.
    pub async fn create_range(&self, desc: RangeDescriptor) -> anyhow::Result<()> {
        if self.state.borrow().peers.contains_key(&desc.id) {
            return Ok(());
        }
        let meta = CheckpointMeta {
            index: INIT_INDEX,
            term: INIT_INDEX,
            desc: desc.clone(),
        };
        let bytes = ckpt::encode(&meta, std::iter::empty());
        super::checkpoint::write(self, desc.id, INIT_INDEX, Rc::new(bytes)).await?;
        let range = desc.id;
        self.log
            .append(vec![
                LogRecord::ConfState {
                    range,
                    data: encode_meta(&desc),
                }
                .into(),
                LogRecord::HardState {
                    range,
                    state: engines::vlog::HardState {
                        term: engines::vlog::Term(INIT_INDEX),
                        vote: 0,
                        commit: LogIndex(INIT_INDEX),
                    },
                }
                .into(),
            ])
            .await
            .map_err(|e| anyhow::anyhow!("persist range {} descriptor: {e}", desc.id))?;
        let hs = HardState {
            term: INIT_INDEX,
            commit: INIT_INDEX,
            ..HardState::default()
        };
        let conf = conf_state_of(&desc);
        let mut cache = RaftLogCache::new(hs, conf.clone(), INIT_INDEX, INIT_INDEX);
        cache.set_snapshot(SnapshotPoint {
            index: INIT_INDEX,
            term: INIT_INDEX,
            conf,
        });
        let single = desc.replicas.len() == 1;
        let id = desc.id.0;
        let mut peer = self.new_peer(desc, cache, INIT_INDEX, None)?;
        if single {
            let _ = peer.raft_mut().campaign();
        }
        self.state.borrow_mut().peers.insert(net::RangeId(id), peer);
        self.wake.notify();
        Ok(())
    }
}
