//! [`Shard`]: everything one core owns — the shard state every operation works on — and
//! the small helpers over it (new Raft groups, replica addresses, the clock edge).
//!
//! A leaf of the `server` layering (see `server/mod.rs`): it imports the other state modules
//! (`peer`, `metrics`, `policy_state`, `transfers`) and `range`, never an operation module.
//! Opening and recovery are in `recover`, destroying a replica in `conf_change`.
//!
//! The fields of [`Shard`] and [`ShardState`] are `pub(super)`: the `server` operations use
//! them; everything outside `server` goes through the methods below (`state`, `peers`,
//! `cfg`, `shutdown`, `apply_route_table`, ...).

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::poll_fn;
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use engines::vlog::{LogIndex, LogRecord, Vlog};
use net::glommio_transport::Pool;
use net::message::handshake::Hello;
use net::message::{RangeDescriptor, Replica, ReplicaRole};
use net::transport::TransportConfig;
use net::{ReplicaId, StoreId};
use nvme::uring::UringDevice;
use nvme::{BlockDevice, OwnerTag};
use raft::RawNode;
use raft::eraftpb::HardState;

use super::checkpoint_store::CheckpointStore;
use super::clock::Clock;
use super::lease::Lease;
use super::metrics::ShardMetrics;
use super::peer::Peer;
use super::policy_state::PolicyState;
use super::transfers::Transfers;
use crate::config::DsConfig;
use crate::range::engine::MasstreeStore;
use crate::range::storage::RaftLogCache;

/// Raft index (and term) a new range starts at: its entries `1..=5` count as compacted into
/// its first (empty) checkpoint, so a replica created later — which has no log and no
/// configuration — is always caught up by a snapshot first (TiKV's `RAFT_INIT_LOG_INDEX`).
pub const INIT_INDEX: u64 = 5;

/// The owner tag of a shard log in its segment store.
pub const LOG_OWNER: OwnerTag = OwnerTag(1);

/// The device a shard log runs on in production.
pub type Device = UringDevice;

/// A device a shard log can run on: any [`BlockDevice`] that lives as long as the shard's
/// tasks. Production shards run on [`Device`] (the default type parameter of [`Shard`]); the
/// crash tests run a whole shard on `nvme::faulty::FaultyDevice` (monomorphised: no cost).
pub trait ShardDevice: BlockDevice + 'static {}

impl<D: BlockDevice + 'static> ShardDevice for D {}

/// Largest encoded proposal: a value of the largest size plus its key and framing; a
/// request whose values add up to more is refused before anything is proposed (and the
/// shard log's entries go up to it, `docs/format/shard-log.md` §3).
pub const MAX_PROPOSAL_BYTES: usize = net::limits::DEFAULT_MAX_VALUE_BYTES + (1 << 20);

/// Most replicas of one shard created for a leader's message and still waiting for their
/// first snapshot.
pub const MAX_UNINITIALIZED: usize = 32;

/// Most replicas one shard creates for leaders' messages per second.
pub const CREATIONS_PER_SEC: u32 = 8;

/// The shard's budget of replica creations: [`CREATIONS_PER_SEC`] per one-second window.
#[derive(Debug, Default)]
pub struct CreationBudget {
    window: Option<Instant>,
    used: u32,
}

impl CreationBudget {
    /// Takes one creation at `now`; false when this window's budget is spent.
    pub fn take(&mut self, now: Instant) -> bool {
        if self
            .window
            .is_none_or(|w| now.saturating_duration_since(w) >= Duration::from_secs(1))
        {
            self.window = Some(now);
            self.used = 0;
        }
        if self.used >= CREATIONS_PER_SEC {
            return false;
        }
        self.used += 1;
        true
    }
}

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
    pub(super) peers: BTreeMap<net::RangeId, Peer>,
    /// The engine shared by the shard's ranges.
    pub(super) engine: MasstreeStore,
    /// Range metadata records to append with the next group commit.
    pub(super) meta_records: Vec<LogRecord>,
    /// Finished shard-log fetches: (range, raft-rs context) to hand back.
    pub(super) fetched: Vec<(net::RangeId, raft::GetEntriesContext)>,
    /// Snapshot transfers in and out.
    pub(super) transfers: Transfers,
    /// Where replicas that sent us Raft messages live: `(range, replica)` → replica (store
    /// and shard), so a replica that does not know its range's configuration yet can answer.
    pub(super) reply_to: HashMap<(net::RangeId, ReplicaId), Replica>,
    /// Replicas destroyed on this shard: `(range, replica id)`; messages to them are dropped.
    pub(super) tombstones: HashSet<(net::RangeId, ReplicaId)>,
    /// Ranges whose replica here was removed by a conf change, to destroy after this turn.
    pub(super) to_destroy: Vec<net::RangeId>,
    /// Right ranges of splits applied this turn, to create after it (with the left range's
    /// new descriptor when this replica led it).
    pub(super) splits: Vec<(RangeDescriptor, Option<RangeDescriptor>)>,
    /// Right ranges of merges frozen here (`server::merge`): range → (freeze index, left).
    pub(super) frozen: Frozen,
    /// Merges applied this turn, `(left, right)`, to finish after it (`merge::finish`).
    pub(super) merges: Vec<(net::RangeId, net::RangeId)>,
    /// Ranges holding deferred committed entries (`Peer::defer`), retried after each turn.
    pub(super) deferring: std::collections::BTreeSet<net::RangeId>,
    /// Replicas created for leaders' messages in the current second.
    pub(super) creations: CreationBudget,
    /// When refused Raft messages were last logged (the log is rate-limited).
    pub(super) refusals_logged_at: Option<std::time::Instant>,
    /// Per range, the shard-log segments its newest checkpoint's cold entries point into
    /// (never released while it is the newest).
    pub(super) checkpoint_segments:
        BTreeMap<net::RangeId, std::collections::BTreeSet<engines::vlog::SegmentId>>,
    /// A demotion is running (`server::demote`; one at a time).
    pub(super) demoting: bool,
    /// A garbage-collection pass is running (`server::gc`; one at a time).
    pub(super) collecting: bool,
    /// Ranges whose checkpoint is being written (one at a time per range).
    pub(super) checkpointing: std::collections::BTreeSet<net::RangeId>,
    /// An index checkpoint is running (`server::index_checkpoint`; one at a time).
    pub(super) index_checkpointing: bool,
}

/// One shard (core) of a DS node, its shard log on a device of type `D`.
#[derive(Debug)]
pub struct Shard<D: ShardDevice = Device> {
    /// Shard index.
    pub(super) index: u32,
    /// This node's store id.
    pub(super) store_id: StoreId,
    /// Settings.
    pub(super) cfg: DsConfig,
    /// The shard log (Raft log + value log).
    pub(super) log: Rc<Vlog<D>>,
    /// Where the ranges' checkpoints are written (`server::checkpoint`).
    pub(super) checkpoints: Rc<dyn CheckpointStore>,
    /// The shard's key index (`checkpoint-mode = "index"`; `None` in files mode).
    pub(super) lsm: Option<Rc<engines::lsm::KeyIndex<D>>>,
    /// Ranges and engine.
    pub(super) state: RefCell<ShardState>,
    /// Wakes the ready loop.
    pub(super) wake: Wakeup,
    /// Connections to the master.
    pub(super) pool: Rc<Pool>,
    /// Connections to peer shards (Raft traffic), dropped when a batch fails.
    pub(super) peer_conns: RefCell<HashMap<String, net::glommio_transport::Client>>,
    /// The hello this shard connects with.
    pub(super) pool_hello: Hello,
    /// Transport settings for peer connections (short request timeout).
    pub(super) peer_transport: TransportConfig,
    /// Counters.
    pub(super) metrics: RefCell<ShardMetrics>,
    /// Reads and writes per range since the last heartbeat (`crate::load`).
    pub(super) load: RefCell<crate::load::LoadTracker>,
    /// Shard addresses of every known store.
    pub(super) addrs: RefCell<HashMap<StoreId, Vec<String>>>,
    /// Set to stop the shard's loops.
    pub(super) stop: Cell<bool>,
    /// The shard log reached `maxdisksize` (`server::disk_limit`): writes that add data are
    /// refused (a `Cell`: the request handler checks it while it holds the state).
    pub(super) disk_full: Cell<bool>,
    /// The ready loop is holding Raft entries back: the shard log has no room for them
    /// (`server::log_room`). Counts as full for writes that add data.
    pub(super) log_stalled: Cell<bool>,
    /// The master's descriptors of the ranges it places on this shard (from its last route
    /// table): a replica is created for a leader's message only if listed here.
    pub(super) master_ranges: RefCell<HashMap<net::RangeId, RangeDescriptor>>,
    /// Version of the master's route table the store addresses come from.
    pub(super) route_version: Cell<u64>,
    /// File operations running on the blocking pool (waited for at shutdown).
    pub(super) file_ops: Cell<usize>,
    /// The memory policy's state (`server::policy`).
    pub(super) policy: PolicyState,
    /// Write fences: a pipeline's writes of one key apply in order (`server::fence`).
    pub(super) fences: RefCell<super::fence::WriteFences>,
    /// When this shard started: for an election timeout after it, its replicas refuse
    /// votes (they forgot which leader they heard from last; see `server::lease`).
    pub(super) started: Instant,
    /// The monotonic clock every time decision reads (`server::clock`).
    pub(super) clock: Rc<dyn Clock>,
}

/// Right ranges of merges frozen on this shard: range → (freeze index, left range)
/// (`server::merge`).
pub type Frozen = std::collections::HashMap<net::RangeId, (u64, net::RangeId)>;

impl ShardState {
    /// An empty state; its engine keeps the dedup records in a tree of their own
    /// (`MasstreeStore::set_side_keys`, [`keyspace::is_dedup_key`](crate::keyspace::is_dedup_key)):
    /// in the main tree each record would open Masstree layers under its Redis key.
    pub(super) fn new() -> Self {
        let mut s = Self::default();
        s.engine.set_side_keys(crate::keyspace::is_dedup_key);
        s
    }

    /// The ranges hosted here, by id.
    pub fn peers(&self) -> &BTreeMap<net::RangeId, Peer> {
        &self.peers
    }

    /// The right ranges of merges frozen here: range → (freeze index, left range).
    pub fn frozen(&self) -> &Frozen {
        &self.frozen
    }

    /// The range `id` hosted here, to change.
    pub fn peer_mut(&mut self, id: net::RangeId) -> Option<&mut Peer> {
        self.peers.get_mut(&id)
    }

    /// The engine shared by the shard's ranges.
    pub fn engine(&self) -> &MasstreeStore {
        &self.engine
    }
}

impl<D: ShardDevice> Shard<D> {
    /// The shard's current instant ([`Clock::now`]).
    #[inline]
    pub fn now(&self) -> Instant {
        self.clock.now()
    }

    /// The shard's index on its node.
    pub fn index(&self) -> u32 {
        self.index
    }

    /// This node's store id.
    pub fn store_id(&self) -> StoreId {
        self.store_id
    }

    /// The shard's settings.
    pub fn cfg(&self) -> &DsConfig {
        &self.cfg
    }

    /// The shard log (Raft log + value log).
    pub fn log(&self) -> &Vlog<D> {
        &self.log
    }

    /// The shard's key index (`None` unless `checkpoint-mode = "index"`).
    pub fn key_index(&self) -> Option<&engines::lsm::KeyIndex<D>> {
        self.lsm.as_deref()
    }

    /// The ranges and the engine, to read (borrowed only between awaits).
    pub fn state(&self) -> std::cell::Ref<'_, ShardState> {
        self.state.borrow()
    }

    /// The ranges and the engine, to change (borrowed only between awaits).
    pub fn state_mut(&self) -> std::cell::RefMut<'_, ShardState> {
        self.state.borrow_mut()
    }

    /// The shard's counters.
    pub fn metrics(&self) -> std::cell::Ref<'_, ShardMetrics> {
        self.metrics.borrow()
    }

    /// Connections to the master.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Wakes the ready loop (a range has work: a proposal, a step, a transfer).
    pub fn wake_ready_loop(&self) {
        self.wake.notify();
    }

    /// Stops the shard's loops (they end at their next turn).
    pub fn shutdown(&self) {
        self.stop.set(true);
        self.wake.notify();
    }

    /// Whether the shard is stopping ([`Shard::shutdown`]).
    pub fn is_stopping(&self) -> bool {
        self.stop.get()
    }

    /// File operations still running on the blocking pool.
    pub fn file_ops_running(&self) -> usize {
        self.file_ops.get()
    }

    /// The reads and writes per range since the previous window, which ended `window_ms`
    /// ago; the counts are added to the shard's totals.
    pub fn take_load_window(&self, window_ms: u64) -> crate::load::Window {
        let window = self.load.borrow_mut().take(window_ms);
        self.metrics.borrow_mut().load.add(&window.counts);
        window
    }

    /// Version of the master's route table the store addresses come from.
    pub fn route_version(&self) -> u64 {
        self.route_version.get()
    }

    /// Takes the store addresses and the ranges placed on this shard from the master's
    /// route table `t` (unless unchanged). Returns the ranges whose replica here the table
    /// shows removed ([`Shard::removed_by`]): the caller destroys them.
    pub fn apply_route_table(&self, t: net::message::RouteTable) -> Vec<net::RangeId> {
        if t.unchanged {
            return Vec::new();
        }
        let removed = self.removed_by(&t.ranges);
        let mut addrs = self.addrs.borrow_mut();
        for s in t.stores {
            if !s.shard_addrs.is_empty() {
                addrs.insert(s.store_id, s.shard_addrs);
            }
        }
        // The ranges placed here: a leader's message may create a replica of one.
        let here = |d: &RangeDescriptor| {
            d.replicas
                .iter()
                .any(|r| r.store_id == self.store_id && r.shard_id.0 == self.index)
        };
        *self.master_ranges.borrow_mut() = t
            .ranges
            .into_iter()
            .filter(here)
            .map(|d| (d.id, d))
            .collect();
        self.route_version.set(t.route_version);
        removed
    }

    /// The initialized replicas here that the master describes as removed: their range at
    /// a newer `conf_ver` than they know, without their replica id. The master records only
    /// committed membership (from the leader's heartbeats) and never reuses a replica id, so
    /// such a replica can never be a member again; it missed the commit of its own removal
    /// (the leader stops sending to a replica once it applied the removal), and without this
    /// its data would stay.
    fn removed_by(&self, ranges: &[RangeDescriptor]) -> Vec<net::RangeId> {
        let st = self.state.borrow();
        ranges
            .iter()
            .filter(|d| {
                st.peers.get(&d.id).is_some_and(|p| {
                    p.is_initialized()
                        && d.epoch.conf_ver > p.desc().epoch.conf_ver
                        && !d.replicas.iter().any(|r| r.replica_id == p.replica_id())
                })
            })
            .map(|d| d.id)
            .collect()
    }

    /// Store `store` now listens on `shard_addrs`: its old addresses' peer connections are
    /// dropped (the next Raft batch connects to the new ones).
    pub fn store_moved(&self, store: StoreId, shard_addrs: Vec<String>) {
        let old = self.addrs.borrow_mut().insert(store, shard_addrs);
        let mut conns = self.peer_conns.borrow_mut();
        for addr in old.iter().flatten() {
            conns.remove(addr);
        }
    }

    /// The shard addresses of this node's store, if known.
    pub fn own_addrs(&self) -> Vec<String> {
        self.addrs
            .borrow()
            .get(&self.store_id)
            .cloned()
            .unwrap_or_default()
    }
}

/// Unix time in milliseconds (the clock edge of the shard).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Stops a range whose entry `index` broke an engine invariant (`Peer::stopped`): the entry
/// and everything after it stay unapplied, waiting proposers get an error, and the rest of
/// the shard goes on.
pub fn stop_range<D: ShardDevice>(shard: &Shard<D>, p: &mut Peer, index: u64, why: String) {
    tracing::error!(
        range = %p.desc().id,
        index,
        "range stopped: applying entry {index} failed in the engine: {why}"
    );
    shard.metrics.borrow_mut().ranges_stopped_total += 1;
    let message = format!("range {} stopped at entry {index}: {why}", p.desc().id);
    p.stop(message);
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
        // ReadIndex confirms leadership with a heartbeat round; the lease (`server::lease`)
        // is kept on the monotonic clock here, not by raft-rs's ticks.
        read_only_option: raft::ReadOnlyOption::Safe,
        ..raft::Config::default()
    }
}

fn logger() -> slog::Logger {
    slog::Logger::root(slog::Discard, slog::o!())
}

impl<D: ShardDevice> Shard<D> {
    /// A replica of `range` (id `replica`) created for a leader's message: no key range and
    /// no configuration until its first snapshot installs (nothing is persisted before).
    pub fn new_uninitialized(
        &self,
        range: net::RangeId,
        replica: ReplicaId,
    ) -> anyhow::Result<Peer> {
        let desc = RangeDescriptor {
            id: range,
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
        me: Option<ReplicaId>,
    ) -> anyhow::Result<Peer> {
        let initialized = me.is_none();
        let me = match me {
            Some(id) => id,
            None => desc
                .replicas
                .iter()
                .find(|r| r.store_id == self.store_id && r.shard_id.0 == self.index)
                .map(|r| r.replica_id)
                .ok_or_else(|| anyhow::anyhow!("range {} has no replica on this shard", desc.id))?,
        };
        let log = Rc::clone(&self.log);
        let range = desc.id;
        let cache = cache.with_log(Rc::new(move |i| log.term(range, LogIndex(i)).map(|t| t.0)));
        let node = RawNode::new(&raft_config(&self.cfg, me.0, applied), cache, &logger())
            .map_err(|e| anyhow::anyhow!("start raft group of range {}: {e}", desc.id))?;
        let lease = Lease::duration(self.cfg.tick(), self.cfg.election_ticks);
        Ok(Peer::new(desc, me, node, initialized, lease, self.now()))
    }

    /// `NotLeader` for a request to replica `p` (counted), with the leader's address as a
    /// hint when known.
    pub fn not_leader(&self, p: &Peer) -> net::RpcError {
        self.metrics.borrow_mut().not_leader_total += 1;
        let leader = p.leader_id();
        let hint = p
            .desc()
            .replicas
            .iter()
            .find(|r| leader != 0 && r.replica_id.0 == leader)
            .and_then(|r| {
                self.replica_addr(r)
                    .map(|addr| net::message::LeaderHint { replica: *r, addr })
            });
        net::RpcError::NotLeader { hint }
    }

    /// Whether this shard's replicas still refuse votes because it started less than an
    /// election timeout ago: before the restart they may have acknowledged a leader whose
    /// read lease still runs, and raft-rs's `in_lease` refusal does not survive a restart.
    pub fn refuses_votes_after_start(&self) -> bool {
        let timeout = self
            .cfg
            .tick()
            .saturating_mul(u32::try_from(self.cfg.election_ticks).unwrap_or(u32::MAX));
        self.now().saturating_duration_since(self.started) < timeout
    }

    /// The address of a replica's shard, if known.
    pub fn replica_addr(&self, r: &Replica) -> Option<String> {
        if r.store_id == self.store_id {
            let port = self.cfg.base_port;
            if port != 0 {
                return Some(format!("{}:{}", self.cfg.host, port + r.shard_id.0 as u16));
            }
        }
        self.addrs
            .borrow()
            .get(&r.store_id)
            .and_then(|a| a.get(r.shard_id.0 as usize).cloned())
    }

    /// A default descriptor for a stand-alone node's first range.
    pub fn initial_descriptor(&self) -> RangeDescriptor {
        let replicas: Vec<Replica> = if self.cfg.initial_replicas.is_empty() {
            vec![Replica {
                replica_id: ReplicaId(1),
                store_id: self.store_id,
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
