//! [`Shard`]: everything one core owns, and how it is opened (recovery).

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::poll_fn;
use std::path::Path;
use std::rc::Rc;
use std::task::{Poll, Waker};

use engines::vlog::{EntryRecord, LogIndex, LogRecord, RangeId as LogRangeId, Vlog, VlogConfig};
use net::glommio_transport::Pool;
use net::message::handshake::{Hello, Role};
use net::message::{RangeDescriptor, Replica, ReplicaRole};
use net::transport::TransportConfig;
use net::{ClusterId, NodeId, ReplicaId, StoreId};
use nvme::uring::{UringDevice, UringOptions};
use nvme::{FormatOptions, OwnerTag, SegmentStore};
use raft::eraftpb::{ConfChangeType, ConfChangeV2, Entry, EntryType, HardState};
use raft::{RawNode, StateRole};
use raft_proto::ConfChangeI;

use super::metrics::ShardMetrics;
use super::peer::{Peer, conf_state_of};
use crate::config::DsConfig;
use crate::range::apply::{ApplyCtx, execute};
use crate::range::checkpoint::{self as ckpt, CheckpointMeta};
use crate::range::codec::{decode_meta, decode_tombstone, decode_write, encode_meta};
use crate::range::engine::MasstreeStore;
use crate::range::storage::{RaftLogCache, SnapshotPoint};

/// Raft index (and term) a new range starts at: its entries `1..=5` count as compacted into
/// its first (empty) checkpoint, so a replica created later — which has no log and no
/// configuration — is always caught up by a snapshot first (TiKV's `RAFT_INIT_LOG_INDEX`).
pub const INIT_INDEX: u64 = 5;

/// The owner tag of a shard log in its segment store.
pub const LOG_OWNER: OwnerTag = OwnerTag(1);

/// The device a shard log runs on.
pub type Device = UringDevice;

/// Wakes the ready loop.
#[derive(Debug, Default)]
pub struct Wakeup {
    set: Cell<bool>,
    waker: RefCell<Option<Waker>>,
}

impl Wakeup {
    /// Marks work and wakes the loop.
    pub fn notify(&self) {
        self.set.set(true);
        if let Some(w) = self.waker.borrow_mut().take() {
            w.wake();
        }
    }

    /// Waits until notified (returns at once if notified since the last wait).
    pub async fn wait(&self) {
        poll_fn(|cx| {
            if self.set.replace(false) {
                Poll::Ready(())
            } else {
                *self.waker.borrow_mut() = Some(cx.waker().clone());
                Poll::Pending
            }
        })
        .await;
    }
}

/// Mutable state of a shard (borrowed only between awaits).
#[derive(Debug, Default)]
pub struct ShardState {
    /// Ranges by id.
    pub peers: BTreeMap<u64, Peer>,
    /// The engine shared by the shard's ranges.
    pub engine: MasstreeStore,
    /// Range metadata records to append with the next group commit.
    pub meta_records: Vec<LogRecord>,
    /// Finished shard-log fetches: (range, raft-rs context) to hand back.
    pub fetched: Vec<(u64, raft::GetEntriesContext)>,
    /// Snapshot transfers in and out.
    pub transfers: super::snapshot::Transfers,
    /// Where replicas that sent us Raft messages live: `(range, replica)` → replica (store
    /// and shard), so a replica that does not know its range's configuration yet can answer.
    pub reply_to: HashMap<(u64, u64), Replica>,
    /// Replicas destroyed on this shard: `(range, replica id)`; messages to them are dropped.
    pub tombstones: HashSet<(u64, u64)>,
    /// Ranges whose replica here was removed by a conf change, to destroy after this turn.
    pub to_destroy: Vec<u64>,
    /// Right ranges of splits applied this turn, to create after it (with the left range's
    /// new descriptor when this replica led it).
    pub splits: Vec<(RangeDescriptor, Option<RangeDescriptor>)>,
    /// Replicas created for leaders' messages in the current second.
    pub creations: super::handler::CreationBudget,
    /// When refused Raft messages were last logged (the log is rate-limited).
    pub refusals_logged_at: Option<std::time::Instant>,
    /// Per range, the shard-log segments its newest checkpoint's cold entries point into
    /// (never released while it is the newest).
    pub checkpoint_segments: BTreeMap<u64, std::collections::BTreeSet<engines::vlog::SegmentId>>,
    /// A demotion is running (`server::demote`; one at a time).
    pub demoting: bool,
    /// A garbage-collection pass is running (`server::gc`; one at a time).
    pub collecting: bool,
    /// Ranges whose checkpoint is being written (one at a time per range).
    pub checkpointing: std::collections::BTreeSet<u64>,
}

/// One shard (core) of a DS node.
#[derive(Debug)]
pub struct Shard {
    /// Shard index.
    pub index: u32,
    /// This node's store id.
    pub store_id: u64,
    /// Settings.
    pub cfg: DsConfig,
    /// The shard log (Raft log + value log).
    pub log: Rc<Vlog<Device>>,
    /// Ranges and engine.
    pub state: RefCell<ShardState>,
    /// Wakes the ready loop.
    pub wake: Wakeup,
    /// Connections to the master.
    pub pool: Rc<Pool>,
    /// Connections to peer shards (Raft traffic), dropped when a batch fails.
    pub peer_conns: RefCell<HashMap<String, net::glommio_transport::Client>>,
    /// The hello this shard connects with.
    pub pool_hello: Hello,
    /// Transport settings for peer connections (short request timeout).
    pub peer_transport: TransportConfig,
    /// Counters.
    pub metrics: RefCell<ShardMetrics>,
    /// Reads and writes per range since the last heartbeat (`crate::load`).
    pub load: RefCell<crate::load::LoadTracker>,
    /// Shard addresses of every known store.
    pub addrs: RefCell<HashMap<u64, Vec<String>>>,
    /// Set to stop the shard's loops.
    pub stop: Cell<bool>,
    /// The shard log reached `maxdisksize` (`server::disk_limit`): writes that add data are
    /// refused (a `Cell`: the request handler checks it while it holds the state).
    pub disk_full: Cell<bool>,
    /// The master's descriptors of the ranges it places on this shard (from its last route
    /// table): a replica is created for a leader's message only if listed here.
    pub master_ranges: RefCell<HashMap<u64, RangeDescriptor>>,
    /// Version of the master's route table the store addresses come from.
    pub route_version: Cell<u64>,
    /// File operations running on the blocking pool (waited for at shutdown).
    pub file_ops: Cell<usize>,
    /// The memory policy's state (`server::policy`).
    pub policy: super::policy::PolicyState,
}

/// Unix time in milliseconds (the clock edge of the shard).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn raft_config(cfg: &DsConfig, id: u64, applied: u64) -> raft::Config {
    raft::Config {
        id,
        election_tick: cfg.election_ticks,
        heartbeat_tick: cfg.heartbeat_ticks,
        applied,
        max_size_per_msg: 1 << 20,
        max_inflight_msgs: 256,
        check_quorum: true,
        pre_vote: true,
        read_only_option: raft::ReadOnlyOption::LeaseBased,
        ..raft::Config::default()
    }
}

fn logger() -> slog::Logger {
    slog::Logger::root(slog::Discard, slog::o!())
}

/// Opens (creating and formatting if absent) the shard log file.
async fn open_log(cfg: &DsConfig, path: &Path) -> anyhow::Result<(Vlog<Device>, bool)> {
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
        let store = SegmentStore::format(
            dev,
            FormatOptions {
                segment_size: cfg.segment_bytes,
                ..FormatOptions::default()
            },
        )
        .await
        .map_err(|e| anyhow::anyhow!("format shard log: {e}"))?;
        let dev = store.into_device();
        let (log, _) = Vlog::open(dev, LOG_OWNER, log_config())
            .await
            .map_err(|e| anyhow::anyhow!("open new shard log: {e}"))?;
        return Ok((log, true));
    }
    let dev = UringDevice::open(path, opts)
        .await
        .map_err(|e| anyhow::anyhow!("open shard log {}: {e}", path.display()))?;
    let (log, rep) = Vlog::open(dev, LOG_OWNER, log_config())
        .await
        .map_err(|e| anyhow::anyhow!("recover shard log {}: {e}", path.display()))?;
    tracing::info!(path = %path.display(), ?rep, "shard log recovered");
    Ok((log, false))
}

/// The shard log's settings: entries up to the largest proposal the handler admits (longer
/// ones are written as fragment records, `docs/format/shard-log.md` §3).
fn log_config() -> VlogConfig {
    VlogConfig {
        entry_bytes_max: super::handler::MAX_PROPOSAL_BYTES,
        ..VlogConfig::default()
    }
}

impl Shard {
    /// Opens shard `index`: its log (recovering every range in it into the engine). Its
    /// connections to the master and to peers carry `cluster_id` (0 while unknown) and prove
    /// the cluster secret of `cfg` (resolved: [`DsConfig::resolve_secret`]).
    pub async fn open(
        cfg: DsConfig,
        index: u32,
        store_id: u64,
        cluster_id: ClusterId,
    ) -> anyhow::Result<Rc<Self>> {
        std::fs::create_dir_all(&cfg.data_dir)?;
        let path = cfg.data_dir.join(format!("shard-{index}.log"));
        let (log, _fresh) = open_log(&cfg, &path).await?;
        let hello = Hello::new(Role::DsNode {}, cluster_id, NodeId(store_id));
        let transport = cfg.transport()?;
        let pool = Pool::new(hello, transport.clone());
        let mut addrs = HashMap::new();
        for p in &cfg.peers {
            addrs.insert(p.store_id, p.shard_addrs.clone());
        }
        let policy = super::policy::PolicyState::new(&cfg);
        let shard = Rc::new(Self {
            index,
            store_id,
            cfg,
            log: Rc::new(log),
            state: RefCell::new(ShardState::default()),
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
            master_ranges: RefCell::new(HashMap::new()),
            route_version: Cell::new(0),
            file_ops: Cell::new(0),
            policy,
        });
        shard.recover().await?;
        Ok(shard)
    }

    /// Rebuilds every range: its checkpoint into the engine, then the committed entries of the
    /// shard log after it (descriptor evolving with the conf changes replayed), the entries
    /// into the Raft cache, the hard state.
    async fn recover(self: &Rc<Self>) -> anyhow::Result<()> {
        let mut ranges = self.log.ranges();
        ranges.sort();
        for range in ranges {
            let Some(meta) = self.log.conf_state(range) else {
                // Hard state of a replica that never got its first snapshot: nothing to keep.
                tracing::info!(%range, "range without a descriptor in the shard log; skipped");
                continue;
            };
            if let Some(replica) = decode_tombstone(&meta) {
                self.state
                    .borrow_mut()
                    .tombstones
                    .insert((range.0, replica));
                super::checkpoint::remove(self, range.0).await;
                continue;
            }
            anyhow::ensure!(
                decode_meta(&meta).is_some(),
                "range {range}: undecodable descriptor in the shard log"
            );
            let path = super::checkpoint::path(self, range.0);
            let bytes = super::checkpoint::read(self, range.0)
                .await?
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "range {range} is in the shard log but its checkpoint {} is missing",
                        path.display()
                    )
                })?;
            let c = ckpt::decode(&bytes)
                .map_err(|e| anyhow::anyhow!("checkpoint {}: {e}", path.display()))?;
            drop(bytes);
            let (base, base_term) = (c.meta.index, c.meta.term);
            let mut desc = c.meta.desc.clone();
            let snap_conf = conf_state_of(&desc);
            {
                let mut st = self.state.borrow_mut();
                st.checkpoint_segments
                    .insert(range.0, super::checkpoint::segments_of(&c));
                super::checkpoint::load(&mut st.engine, c);
            }
            let hs = self.log.hard_state(range).unwrap_or_default();
            let commit = hs.commit.0.max(base);
            let mut cache_entries = Vec::new();
            // The entry that stopped the range (`Peer::stopped`), if one does again.
            let mut stopped: Option<(u64, String)> = None;
            if let Some((first, last)) = self.log.bounds(range) {
                if last.0 > base {
                    anyhow::ensure!(
                        first.0 <= base + 1,
                        "range {range}: the shard log resumes at {} but the checkpoint \
                         ends at {base}",
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
                                e.index.0 == base + 1 + cache_entries.len() as u64,
                                "range {range}: gap in the shard log at {}",
                                e.index.0
                            );
                            if e.index.0 <= commit && stopped.is_none() {
                                super::cold::prefetch_entry(self, &desc, &e.payload)
                                    .await
                                    .map_err(|err| {
                                        anyhow::anyhow!(
                                            "range {range}: load cold values for entry {}: {err}",
                                            e.index.0
                                        )
                                    })?;
                                if let Some(fault) = self.replay(&mut desc, e) {
                                    stopped = Some((e.index.0, fault));
                                }
                            }
                            cache_entries.push(Entry {
                                entry_type: entry_type_of(e.entry_type),
                                term: e.term.0,
                                index: e.index.0,
                                data: e.payload.clone().into(),
                                ..Entry::default()
                            });
                        }
                        anyhow::ensure!(
                            !got.is_empty(),
                            "range {range}: entries {lo}.. unreadable"
                        );
                        lo = hi;
                        crate::core::yield_if_needed().await;
                    }
                }
            }
            let raft_hs = HardState {
                term: hs.term.0.max(base_term),
                vote: hs.vote,
                commit,
                ..HardState::default()
            };
            let mut cache = RaftLogCache::new(raft_hs, conf_state_of(&desc), base, base_term);
            cache.append(&cache_entries);
            cache.set_snapshot(SnapshotPoint {
                index: base,
                term: base_term,
                conf: snap_conf,
            });
            let keep = self.cfg.cached_entries as u64;
            cache.compact_to(commit.saturating_sub(keep));
            tracing::info!(range = %range, checkpoint = base, commit, entries = cache_entries.len(), "range recovered");
            let applied = stopped.as_ref().map_or(commit, |(i, _)| i - 1);
            let mut peer = self.new_peer(desc, cache, applied, None)?;
            if let Some((index, fault)) = stopped {
                super::ready::stop_range(self, &mut peer, index, fault);
            }
            let (b, k) = self
                .state
                .borrow()
                .engine
                .size_of(&peer.desc.start, &peer.desc.end);
            peer.approx_size = (b as i64, k as i64);
            self.state.borrow_mut().peers.insert(range.0, peer);
        }
        self.state.borrow_mut().engine.take_delta();
        // Splits whose right range never became durable: create it again (its keys were just
        // rebuilt by the left range's replay).
        let splits = std::mem::take(&mut self.state.borrow_mut().splits);
        for (right, _) in splits {
            if !self.state.borrow().peers.contains_key(&right.id.0) {
                tracing::info!(range = %right.id, "re-creating the right range of a replayed split");
                super::split::create_right(self, right, None).await?;
            }
        }
        Ok(())
    }

    /// Applies one recovered, committed entry to the engine (and conf changes to `desc`);
    /// returns the engine's refusal if the entry broke an invariant (the range stops there).
    fn replay(&self, desc: &mut RangeDescriptor, e: &EntryRecord) -> Option<String> {
        let mut st = self.state.borrow_mut();
        match entry_type_of(e.entry_type) {
            EntryType::EntryNormal => {
                let Some((now, id, op)) = decode_write(&e.payload) else {
                    if let Some((now, keys)) = crate::range::codec::decode_sweep(&e.payload) {
                        crate::range::sweep::apply(&mut st.engine, now, &keys);
                    } else if let Some(cmd) = crate::range::codec::decode_split(&e.payload) {
                        if let Some(right) = super::split::apply_to_desc(desc, &cmd) {
                            st.splits.push((right, None));
                        }
                    }
                    return None;
                };
                let ctx = ApplyCtx {
                    now_ms: now,
                    index: e.index.0,
                    range: desc,
                };
                let _ = crate::range::dedup::apply_once(&mut st.engine, id, &op, now, |s| {
                    execute(s, &op, &ctx)
                });
                super::cold::miss_fault(&st.engine).or_else(|| st.engine.take_fault())
            }
            t => {
                if let Some(cc) = decode_conf_change(t, &e.payload) {
                    apply_conf_change_to_desc(desc, &cc);
                }
                None
            }
        }
    }

    /// Creates a new range on this shard (bootstrap or a static initial range): writes its
    /// first (empty) checkpoint, then its descriptor and hard state to the log.
    pub async fn create_range(&self, desc: RangeDescriptor) -> anyhow::Result<()> {
        if self.state.borrow().peers.contains_key(&desc.id.0) {
            return Ok(());
        }
        let meta = CheckpointMeta {
            index: INIT_INDEX,
            term: INIT_INDEX,
            desc: desc.clone(),
        };
        let bytes = ckpt::encode(&meta, std::iter::empty());
        super::checkpoint::write(self, desc.id.0, INIT_INDEX, Rc::new(bytes)).await?;
        let range = LogRangeId(desc.id.0);
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
            let _ = peer.node.campaign();
        }
        self.state.borrow_mut().peers.insert(id, peer);
        self.wake.notify();
        Ok(())
    }

    /// A replica of `range` (id `replica`) created for a leader's message: no key range and
    /// no configuration until its first snapshot installs (nothing is persisted before).
    pub fn new_uninitialized(&self, range: u64, replica: u64) -> anyhow::Result<Peer> {
        let desc = RangeDescriptor {
            id: net::RangeId(range),
            start: bytes::Bytes::new(),
            end: bytes::Bytes::new(),
            epoch: net::Epoch::default(),
            replicas: Vec::new(),
            leader: None,
        };
        let cache = RaftLogCache::new(HardState::default(), Default::default(), 0, 0);
        self.new_peer(desc, cache, 0, Some(replica))
    }

    /// A Raft group for `desc` on this shard (`me`: the replica id when it is not in `desc`).
    pub fn new_peer(
        &self,
        desc: RangeDescriptor,
        cache: RaftLogCache,
        applied: u64,
        me: Option<u64>,
    ) -> anyhow::Result<Peer> {
        let initialized = me.is_none();
        let me = match me {
            Some(id) => id,
            None => desc
                .replicas
                .iter()
                .find(|r| r.store_id.0 == self.store_id && r.shard_id.0 == self.index)
                .map(|r| r.replica_id.0)
                .ok_or_else(|| anyhow::anyhow!("range {} has no replica on this shard", desc.id))?,
        };
        let log = Rc::clone(&self.log);
        let range = LogRangeId(desc.id.0);
        let cache = cache.with_log(Rc::new(move |i| log.term(range, LogIndex(i)).map(|t| t.0)));
        let node = RawNode::new(&raft_config(&self.cfg, me, applied), cache, &logger())
            .map_err(|e| anyhow::anyhow!("start raft group of range {}: {e}", desc.id))?;
        Ok(Peer {
            desc,
            replica_id: me,
            node,
            pending: BTreeMap::new(),
            reads: BTreeMap::new(),
            next_read: 1,
            last_role: StateRole::Follower,
            sweep_cursor: bytes::Bytes::new(),
            sweep_in_flight: 0,
            initialized,
            snapshot_in: None,
            created: std::time::Instant::now(),
            approx_size: (0, 0),
            split_proposed_at: None,
            stopped: None,
        })
    }

    /// Removes the replica of `range` from this shard after a conf change removed it:
    /// tombstone record first (so a restart does not bring it back), then its keys, its log
    /// entries and its checkpoint.
    pub async fn destroy_range(&self, range: u64) -> anyhow::Result<()> {
        let Some(mut p) = self.state.borrow_mut().peers.remove(&range) else {
            return Ok(());
        };
        let err = || net::message::kv::KvResponse::Err {
            error: net::RpcError::RangeNotFound {
                range_id: net::RangeId(range),
            },
        };
        for (_, w) in std::mem::take(&mut p.pending) {
            let _ = w.tx.send(err());
        }
        for (_, r) in std::mem::take(&mut p.reads) {
            let _ = r.tx.send(err());
        }
        {
            let mut st = self.state.borrow_mut();
            st.tombstones.insert((range, p.replica_id));
            // The addresses learnt for the range's other replicas are no longer needed.
            st.reply_to.retain(|(r, _), _| *r != range);
        }
        let lr = LogRangeId(range);
        self.log
            .append_one(LogRecord::ConfState {
                range: lr,
                data: crate::range::codec::encode_tombstone(p.replica_id),
            })
            .await
            .map_err(|e| anyhow::anyhow!("persist tombstone of range {range}: {e}"))?;
        if p.initialized {
            super::checkpoint::clear_range(
                &mut self.state.borrow_mut().engine,
                &p.desc.start,
                &p.desc.end,
            );
        }
        if let Some((_, last)) = self.log.bounds(lr) {
            self.log
                .compact(lr, LogIndex(last.0 + 1))
                .await
                .map_err(|e| anyhow::anyhow!("compact destroyed range {range}: {e}"))?;
        }
        super::checkpoint::remove(self, range).await;
        self.state.borrow_mut().checkpoint_segments.remove(&range);
        self.metrics.borrow_mut().replicas_destroyed_total += 1;
        tracing::info!(range, replica = p.replica_id, "replica destroyed");
        Ok(())
    }

    /// The address of a replica's shard, if known.
    pub fn replica_addr(&self, r: &Replica) -> Option<String> {
        if r.store_id.0 == self.store_id {
            let port = self.cfg.base_port;
            if port != 0 {
                return Some(format!("{}:{}", self.cfg.host, port + r.shard_id.0 as u16));
            }
        }
        self.addrs
            .borrow()
            .get(&r.store_id.0)
            .and_then(|a| a.get(r.shard_id.0 as usize).cloned())
    }

    /// A default descriptor for a stand-alone node's first range.
    pub fn initial_descriptor(&self) -> RangeDescriptor {
        let replicas: Vec<Replica> = if self.cfg.initial_replicas.is_empty() {
            vec![Replica {
                replica_id: ReplicaId(1),
                store_id: StoreId(self.store_id),
                shard_id: net::ShardId(0),
                role: ReplicaRole::Voter {},
            }]
        } else {
            self.cfg
                .initial_replicas
                .iter()
                .map(|r| Replica {
                    replica_id: ReplicaId(r.replica_id),
                    store_id: StoreId(r.store_id),
                    shard_id: net::ShardId(r.shard_id),
                    role: ReplicaRole::Voter {},
                })
                .collect()
        };
        RangeDescriptor {
            id: net::RangeId(1),
            start: bytes::Bytes::new(),
            end: bytes::Bytes::new(),
            epoch: net::Epoch {
                conf_ver: 1,
                version: 1,
            },
            replicas,
            leader: None,
        }
    }
}

/// The raft-rs entry type of a log record's type byte.
pub fn entry_type_of(b: u8) -> EntryType {
    match b {
        1 => EntryType::EntryConfChange,
        2 => EntryType::EntryConfChangeV2,
        _ => EntryType::EntryNormal,
    }
}

/// Decodes a conf-change entry's data.
pub fn decode_conf_change(t: EntryType, data: &[u8]) -> Option<ConfChangeV2> {
    use protobuf::Message as _;
    match t {
        EntryType::EntryConfChange => raft::eraftpb::ConfChange::parse_from_bytes(data)
            .ok()
            .map(ConfChangeI::into_v2),
        EntryType::EntryConfChangeV2 => ConfChangeV2::parse_from_bytes(data).ok(),
        EntryType::EntryNormal => None,
    }
}

/// Applies simple (non-joint) membership changes to a descriptor. The replica's store and
/// shard travel in the change's context as `store_id u64 LE | shard_id u32 LE`.
pub fn apply_conf_change_to_desc(desc: &mut RangeDescriptor, cc: &ConfChangeV2) {
    for ch in &cc.changes {
        let id = ch.node_id;
        let pos = desc.replicas.iter().position(|r| r.replica_id.0 == id);
        match ch.get_change_type() {
            ConfChangeType::RemoveNode => {
                if let Some(p) = pos {
                    desc.replicas.remove(p);
                }
            }
            t => {
                let role = if t == ConfChangeType::AddLearnerNode {
                    ReplicaRole::Learner {}
                } else {
                    ReplicaRole::Voter {}
                };
                match pos {
                    Some(p) => desc.replicas[p].role = role,
                    None => {
                        let c = &cc.context;
                        let store = c
                            .get(..8)
                            .and_then(|b| b.try_into().ok())
                            .map(u64::from_le_bytes);
                        let shard = c
                            .get(8..12)
                            .and_then(|b| b.try_into().ok())
                            .map(u32::from_le_bytes);
                        if let (Some(store), Some(shard)) = (store, shard) {
                            desc.replicas.push(Replica {
                                replica_id: ReplicaId(id),
                                store_id: StoreId(store),
                                shard_id: net::ShardId(shard),
                                role,
                            });
                        }
                    }
                }
            }
        }
    }
    desc.epoch.conf_ver += 1;
}
