//! The master's deterministic state machine: stores, ranges, the id allocator's and the TSO's
//! high-water marks, the cluster config and the cluster's `maxmemory` override. Every change is a [`Command`], validated and then
//! applied in log order; the state machine reads no clock and does no I/O (time arrives inside
//! commands), so three masters replaying the same commands reach the same state.

use std::collections::BTreeMap;
use std::ops::Bound;

use bytes::{Bytes, BytesMut};
use net::codec::{DecodeError, Reader, Wire};
use net::message::{RangeDescriptor, StoreInfo};
use net::{ClusterId, Epoch, RangeId, ReplicaId, ShardId, StoreId, Timestamp};

use crate::capacity::{
    Capacity, FINISHED_KEPT, MAX_ACTIVE, ProvisionId, ProvisionKind, ProvisionState, Provisioning,
};
use crate::codec::{disk_enum, disk_struct};

/// Cluster-wide settings, changed by [`Command::SetConfig`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClusterConfig {
    /// Voters per range. Default 3, valid 1 ..= 7.
    pub replication_factor: u32,
    /// `maxmemory` of a store that registers without one, bytes. Default 4 GiB.
    pub default_max_memory_bytes: u64,
    /// `maxdisksize` of a store that registers without one, bytes. Default 256 GiB.
    pub default_max_disk_bytes: u64,
}
disk_struct!(ClusterConfig {
    replication_factor,
    default_max_memory_bytes,
    default_max_disk_bytes
});

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            replication_factor: 3,
            default_max_memory_bytes: 4 << 30,
            default_max_disk_bytes: 256 << 30,
        }
    }
}

/// The life cycle of a store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StoreState {
    /// Serving; may receive replicas.
    Up,
    /// Being drained: receives no new replicas, its replicas move away.
    Offline,
    /// Gone for good; its id is never reused.
    Tombstone,
}

impl Wire for StoreState {
    fn encode(&self, buf: &mut BytesMut) {
        let tag: u8 = match self {
            Self::Up => 0,
            Self::Offline => 1,
            Self::Tombstone => 2,
        };
        tag.encode(buf);
    }
    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        match r.u8("store state")? {
            0 => Ok(Self::Up),
            1 => Ok(Self::Offline),
            2 => Ok(Self::Tombstone),
            tag => Err(DecodeError::UnknownTag {
                what: "store state",
                tag: tag.into(),
            }),
        }
    }
}

/// What the master knows durably about a store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreMeta {
    /// Identity, node and shard addresses, labels.
    pub info: StoreInfo,
    /// `maxmemory`, bytes.
    pub mem_capacity: u64,
    /// `maxdisksize`, bytes.
    pub disk_capacity: u64,
    /// Life cycle state.
    pub state: StoreState,
    /// When it first registered (master clock, unix ms).
    pub registered_ms: u64,
}
disk_struct!(StoreMeta {
    info,
    mem_capacity,
    disk_capacity,
    state,
    registered_ms
});

impl StoreMeta {
    /// The value of label `key` (`zone`, `rack`), if set.
    pub fn label(&self, key: &str) -> Option<&str> {
        self.info
            .labels
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// A change to the cluster state (`docs/format/master-log.md` §4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// First command of a new cluster.
    Init {
        /// The cluster id; never 0.
        cluster_id: ClusterId,
        /// Initial config.
        config: ClusterConfig,
    },
    /// Adds or replaces a store.
    PutStore {
        /// The store.
        meta: StoreMeta,
    },
    /// Changes a store's life cycle state.
    SetStoreState {
        /// The store.
        store_id: StoreId,
        /// New state.
        state: StoreState,
    },
    /// Creates the first range (written by builds before `BootstrapRanges`; still applied when
    /// an old log is replayed).
    Bootstrap {
        /// It must cover the whole keyspace.
        range: RangeDescriptor,
    },
    /// Replaces the descriptor of a known range with a newer one.
    PutRange {
        /// The new descriptor.
        range: RangeDescriptor,
    },
    /// Records a split.
    Split {
        /// The old range after the split.
        left: RangeDescriptor,
        /// The new range.
        right: RangeDescriptor,
    },
    /// Records a merge (format version 4): `left` grew over `right`, which is gone.
    Merge {
        /// The left range after the merge.
        left: RangeDescriptor,
        /// The right range as it was merged.
        right: RangeDescriptor,
    },
    /// Ids below `end` may be handed out.
    ReserveIds {
        /// Exclusive high-water mark.
        end: u64,
    },
    /// Timestamps below `limit` may be served.
    SetTsoLimit {
        /// Exclusive high-water mark.
        limit: Timestamp,
    },
    /// Replaces the config.
    SetConfig {
        /// New config.
        config: ClusterConfig,
    },
    /// Creates the first ranges: in key order, together covering the whole keyspace.
    BootstrapRanges {
        /// At least one; each starts where the previous one ends.
        ranges: Vec<RangeDescriptor>,
    },
    /// Records a new capacity request (state `Requested`), checked against the limits it
    /// carries: an expansion must keep up + coming nodes ≤ `max_stores`, a shrink must keep
    /// them ≥ `min_stores`. A shrink also marks its store offline (it starts draining).
    RequestCapacity {
        /// The new record.
        record: Provisioning,
        /// Most stores the cluster may have (up + coming), checked on apply.
        max_stores: u32,
        /// Fewest stores the cluster may keep, checked on apply.
        min_stores: u32,
    },
    /// Moves a capacity request on: new state and the stores it now names.
    UpdateCapacity {
        /// The request.
        id: ProvisionId,
        /// Its new state (a legal step from the current one).
        state: ProvisionState,
        /// Expand: the stores registered for it so far; shrink: unchanged.
        stores: Vec<StoreId>,
    },
    /// Sets the `maxmemory` of every DS node (overriding each node's own setting).
    SetMaxMemory {
        /// Per node, bytes; 0: no limit.
        bytes: u64,
    },
}
disk_enum!(Command, "command" {
    0 => Init { cluster_id, config },
    1 => PutStore { meta },
    2 => SetStoreState { store_id, state },
    3 => Bootstrap { range },
    4 => PutRange { range },
    5 => Split { left, right },
    6 => ReserveIds { end },
    7 => SetTsoLimit { limit },
    8 => SetConfig { config },
    9 => BootstrapRanges { ranges },
    10 => RequestCapacity { record, max_stores, min_stores },
    11 => UpdateCapacity { id, state, stores },
    12 => SetMaxMemory { bytes },
    13 => Merge { left, right },
});

impl Command {
    /// Short name for logs and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Init { .. } => "init",
            Self::PutStore { .. } => "put_store",
            Self::SetStoreState { .. } => "set_store_state",
            Self::Bootstrap { .. } => "bootstrap",
            Self::PutRange { .. } => "put_range",
            Self::Split { .. } => "split",
            Self::Merge { .. } => "merge",
            Self::ReserveIds { .. } => "reserve_ids",
            Self::SetTsoLimit { .. } => "set_tso_limit",
            Self::SetConfig { .. } => "set_config",
            Self::BootstrapRanges { .. } => "bootstrap_ranges",
            Self::RequestCapacity { .. } => "request_capacity",
            Self::UpdateCapacity { .. } => "update_capacity",
            Self::SetMaxMemory { .. } => "set_max_memory",
        }
    }
}

/// Why a command does not apply. The state is unchanged when one is returned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CommandError {
    /// The cluster has no `Init` yet.
    #[error("cluster not initialised")]
    NotInitialized,
    /// `Init` on an initialised cluster.
    #[error("cluster already initialised")]
    AlreadyInitialized,
    /// `Bootstrap` when ranges exist.
    #[error("cluster already bootstrapped")]
    AlreadyBootstrapped,
    /// The store is not registered.
    #[error("store {0} is not registered")]
    UnknownStore(StoreId),
    /// The range is not known.
    #[error("range {0} not found")]
    UnknownRange(RangeId),
    /// The descriptor is older than the master's.
    #[error("stale epoch for range {}", current.id)]
    StaleEpoch {
        /// The master's descriptor.
        current: Box<RangeDescriptor>,
    },
    /// The key interval would overlap another range.
    #[error("range {range} would overlap range {other}")]
    Overlap {
        /// The range being changed.
        range: RangeId,
        /// The range it would overlap.
        other: RangeId,
    },
    /// An expansion would take the cluster past its node limit.
    #[error(
        "expansion by {asked} refused: {up} stores up + {coming} coming would exceed the limit of {max}"
    )]
    OverCommitted {
        /// Stores up.
        up: u32,
        /// Nodes already requested, not online yet.
        coming: u32,
        /// Nodes this request asked for.
        asked: u32,
        /// The limit.
        max: u32,
    },
    /// Anything else that makes the command invalid.
    #[error("invalid command: {0}")]
    Invalid(String),
}

fn invalid(msg: impl Into<String>) -> CommandError {
    CommandError::Invalid(msg.into())
}

/// The replicated cluster state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterState {
    applied_index: u64,
    cluster_id: ClusterId,
    config: ClusterConfig,
    route_version: u64,
    id_end: u64,
    tso_limit: Timestamp,
    stores: BTreeMap<StoreId, StoreMeta>,
    ranges: BTreeMap<RangeId, RangeDescriptor>,
    /// Start key → range id; ranges never overlap.
    starts: BTreeMap<Bytes, RangeId>,
    /// Capacity requests: every active one and the latest finished ones.
    provisioning: BTreeMap<ProvisionId, Provisioning>,
    /// The `maxmemory` every DS node applies, bytes (0: no limit); none: each its own.
    max_memory: Option<u64>,
}

impl ClusterState {
    /// Index of the last applied command (0: none).
    pub fn applied_index(&self) -> u64 {
        self.applied_index
    }
    /// The cluster id (0 before `Init`).
    pub fn cluster_id(&self) -> ClusterId {
        self.cluster_id
    }
    /// The cluster config.
    pub fn config(&self) -> &ClusterConfig {
        &self.config
    }
    /// The `maxmemory` every DS node applies, bytes (0: no limit); none: each node keeps its
    /// own setting.
    pub fn max_memory(&self) -> Option<u64> {
        self.max_memory
    }
    /// Grows with every change of a range or a store's addresses.
    pub fn route_version(&self) -> u64 {
        self.route_version
    }
    /// Ids below this may have been handed out; the allocator resumes here.
    pub fn id_end(&self) -> u64 {
        self.id_end
    }
    /// Timestamps below this may have been served; the TSO resumes here.
    pub fn tso_limit(&self) -> Timestamp {
        self.tso_limit
    }
    /// Whether the first range exists.
    pub fn is_bootstrapped(&self) -> bool {
        !self.ranges.is_empty()
    }
    /// A store.
    pub fn store(&self, id: StoreId) -> Option<&StoreMeta> {
        self.stores.get(&id)
    }
    /// Every store, by id.
    pub fn stores(&self) -> impl Iterator<Item = &StoreMeta> {
        self.stores.values()
    }
    /// A range by id.
    pub fn range(&self, id: RangeId) -> Option<&RangeDescriptor> {
        self.ranges.get(&id)
    }
    /// Every range, in key order.
    pub fn ranges(&self) -> impl Iterator<Item = &RangeDescriptor> {
        self.starts.values().filter_map(|id| self.ranges.get(id))
    }
    /// Number of ranges.
    pub fn range_count(&self) -> usize {
        self.ranges.len()
    }
    /// The range holding `key`, if any (there can be a gap while a split is reported).
    pub fn range_by_key(&self, key: &[u8]) -> Option<&RangeDescriptor> {
        let (_, id) = self
            .starts
            .range::<[u8], _>((Bound::Unbounded, Bound::Included(key)))
            .next_back()?;
        self.ranges.get(id).filter(|r| r.contains(key))
    }
    /// `host:port` of the shard that holds the leader of `range`, if known.
    pub fn leader_addr(&self, range: &RangeDescriptor) -> Option<String> {
        let leader = range.leader?;
        let rep = range.replicas.iter().find(|r| r.replica_id == leader)?;
        let store = self.stores.get(&rep.store_id)?;
        store.info.shard_addrs.get(rep.shard_id.0 as usize).cloned()
    }

    /// Capacity requests (active and recently finished), by id.
    pub fn provisioning(&self) -> impl Iterator<Item = &Provisioning> {
        self.provisioning.values()
    }

    /// A capacity request.
    pub fn provision(&self, id: ProvisionId) -> Option<&Provisioning> {
        self.provisioning.get(&id)
    }

    /// The node count the planner works with: stores up, nodes coming, stores leaving.
    pub fn capacity(&self) -> Capacity {
        let up = self
            .stores
            .values()
            .filter(|s| s.state == StoreState::Up)
            .count() as u32;
        let mut c = Capacity {
            up,
            ..Capacity::default()
        };
        for p in self.provisioning.values().filter(|p| !p.state.is_final()) {
            c.coming += p.coming();
            if p.kind == ProvisionKind::Shrink {
                c.leaving += 1;
            }
        }
        c
    }

    /// Checks that `cmd` applies, without changing anything.
    pub fn check(&self, cmd: &Command) -> Result<(), CommandError> {
        if !matches!(cmd, Command::Init { .. }) && self.cluster_id == ClusterId(0) {
            return Err(CommandError::NotInitialized);
        }
        match cmd {
            Command::Init { cluster_id, config } => {
                if self.cluster_id != ClusterId(0) {
                    return Err(CommandError::AlreadyInitialized);
                }
                if *cluster_id == ClusterId(0) {
                    return Err(invalid("cluster id 0"));
                }
                check_config(config)
            }
            Command::PutStore { meta } => {
                if meta.info.store_id == StoreId(0) {
                    return Err(invalid("store id 0"));
                }
                if meta.info.shard_addrs.is_empty() {
                    return Err(invalid("a store needs at least one shard address"));
                }
                match self.stores.get(&meta.info.store_id) {
                    Some(old) if old.state == StoreState::Tombstone => Err(invalid(format!(
                        "store {} is a tombstone",
                        old.info.store_id
                    ))),
                    _ => Ok(()),
                }
            }
            Command::SetStoreState { store_id, .. } => self
                .stores
                .get(store_id)
                .map(|_| ())
                .ok_or(CommandError::UnknownStore(*store_id)),
            Command::Bootstrap { range } => {
                if self.is_bootstrapped() {
                    return Err(CommandError::AlreadyBootstrapped);
                }
                if !range.start.is_empty() || !range.end.is_empty() {
                    return Err(invalid("the first range must cover the whole keyspace"));
                }
                self.check_descriptor(range)
            }
            Command::BootstrapRanges { ranges } => {
                if self.is_bootstrapped() {
                    return Err(CommandError::AlreadyBootstrapped);
                }
                check_tiling(ranges)?;
                ranges.iter().try_for_each(|r| self.check_descriptor(r))
            }
            Command::PutRange { range } => {
                let old = self
                    .ranges
                    .get(&range.id)
                    .ok_or(CommandError::UnknownRange(range.id))?;
                if is_stale(range.epoch, old.epoch) {
                    return Err(CommandError::StaleEpoch {
                        current: Box::new(old.clone()),
                    });
                }
                self.check_descriptor(range)?;
                self.check_no_overlap(range, &[range.id])
            }
            Command::Split { left, right } => self.check_split(left, right),
            Command::Merge { left, right } => self.check_merge(left, right),
            Command::RequestCapacity {
                record,
                max_stores,
                min_stores,
            } => self.check_request(record, *max_stores, *min_stores),
            Command::UpdateCapacity { id, state, stores } => self.check_update(*id, *state, stores),
            Command::ReserveIds { .. }
            | Command::SetTsoLimit { .. }
            | Command::SetMaxMemory { .. } => Ok(()),
            Command::SetConfig { config } => check_config(config),
        }
    }

    /// Applies the command at log index `index` (must be `applied_index() + 1`). The state is
    /// unchanged if it returns an error.
    pub fn apply(&mut self, index: u64, cmd: &Command) -> Result<(), CommandError> {
        assert_eq!(index, self.applied_index + 1, "commands apply in order");
        self.check(cmd)?;
        self.applied_index = index;
        match cmd {
            Command::Init { cluster_id, config } => {
                self.cluster_id = *cluster_id;
                self.config = *config;
            }
            Command::PutStore { meta } => {
                let id = meta.info.store_id;
                let changed = self.stores.get(&id).is_none_or(|old| old.info != meta.info);
                self.stores.insert(id, meta.clone());
                if changed {
                    self.route_version += 1;
                }
            }
            Command::SetStoreState { store_id, state } => {
                if let Some(s) = self.stores.get_mut(store_id) {
                    s.state = *state;
                }
                self.route_version += 1;
            }
            Command::Bootstrap { range } => {
                self.insert_range(range.clone());
                self.route_version += 1;
            }
            Command::BootstrapRanges { ranges } => {
                for r in ranges {
                    self.insert_range(r.clone());
                }
                self.route_version += 1;
            }
            Command::PutRange { range } => {
                if let Some(old) = self.ranges.remove(&range.id) {
                    self.starts.remove(&old.start);
                }
                self.insert_range(range.clone());
                self.route_version += 1;
            }
            Command::Split { left, right } => {
                if let Some(old) = self.ranges.remove(&left.id) {
                    self.starts.remove(&old.start);
                }
                self.insert_range(left.clone());
                self.insert_range(right.clone());
                self.route_version += 1;
            }
            Command::Merge { left, right } => {
                if let Some(old) = self.ranges.remove(&right.id) {
                    self.starts.remove(&old.start);
                }
                if let Some(old) = self.ranges.remove(&left.id) {
                    self.starts.remove(&old.start);
                }
                self.insert_range(left.clone());
                self.route_version += 1;
            }
            Command::ReserveIds { end } => self.id_end = self.id_end.max(*end),
            Command::SetTsoLimit { limit } => self.tso_limit = self.tso_limit.max(*limit),
            Command::SetConfig { config } => self.config = *config,
            Command::SetMaxMemory { bytes } => self.max_memory = Some(*bytes),
            Command::RequestCapacity { record, .. } => {
                if record.kind == ProvisionKind::Shrink {
                    for s in &record.stores {
                        if let Some(st) = self.stores.get_mut(s) {
                            st.state = StoreState::Offline;
                        }
                    }
                    self.route_version += 1;
                }
                self.provisioning.insert(record.id, record.clone());
            }
            Command::UpdateCapacity { id, state, stores } => {
                if let Some(p) = self.provisioning.get_mut(id) {
                    p.state = *state;
                    p.stores.clone_from(stores);
                }
                self.prune_finished();
            }
        }
        #[cfg(debug_assertions)]
        self.verify();
        Ok(())
    }

    /// Drops the oldest final requests beyond [`FINISHED_KEPT`] (deterministic: by id).
    fn prune_finished(&mut self) {
        let finished: Vec<ProvisionId> = self
            .provisioning
            .values()
            .filter(|p| p.state.is_final())
            .map(|p| p.id)
            .collect();
        for id in finished
            .iter()
            .take(finished.len().saturating_sub(FINISHED_KEPT))
        {
            self.provisioning.remove(id);
        }
    }

    fn check_request(
        &self,
        record: &Provisioning,
        max_stores: u32,
        min_stores: u32,
    ) -> Result<(), CommandError> {
        record.check_shape().map_err(invalid)?;
        if record.state != ProvisionState::Requested {
            return Err(invalid("a new capacity request starts as requested"));
        }
        if self.provisioning.contains_key(&record.id) {
            return Err(invalid(format!("capacity request {} exists", record.id)));
        }
        let active = self.provisioning.values().filter(|p| !p.state.is_final());
        if active.count() >= MAX_ACTIVE {
            return Err(invalid(format!(
                "{MAX_ACTIVE} capacity requests are in flight already"
            )));
        }
        let cap = self.capacity();
        match record.kind {
            ProvisionKind::Expand => {
                if !record.stores.is_empty() {
                    return Err(invalid("a new expansion names no store yet"));
                }
                if cap.committed() + record.nodes > max_stores {
                    return Err(CommandError::OverCommitted {
                        up: cap.up,
                        coming: cap.coming,
                        asked: record.nodes,
                        max: max_stores,
                    });
                }
            }
            ProvisionKind::Shrink => {
                let store = record.stores[0];
                let meta = self
                    .stores
                    .get(&store)
                    .ok_or(CommandError::UnknownStore(store))?;
                if meta.state != StoreState::Up {
                    return Err(invalid(format!("store {store} is not up")));
                }
                if cap.up <= min_stores {
                    return Err(invalid(format!(
                        "shrink would leave {} stores up, below the minimum {min_stores}",
                        cap.up.saturating_sub(1)
                    )));
                }
            }
        }
        Ok(())
    }

    fn check_update(
        &self,
        id: ProvisionId,
        state: ProvisionState,
        stores: &[StoreId],
    ) -> Result<(), CommandError> {
        let p = self
            .provisioning
            .get(&id)
            .ok_or_else(|| invalid(format!("capacity request {id} not found")))?;
        if !p.state.may_become(state) {
            return Err(invalid(format!(
                "capacity request {id}: {} may not become {}",
                p.state.label(),
                state.label()
            )));
        }
        let next = Provisioning {
            state,
            stores: stores.to_vec(),
            ..p.clone()
        };
        next.check_shape().map_err(invalid)?;
        if p.kind == ProvisionKind::Shrink && stores != p.stores.as_slice() {
            return Err(invalid("a shrink's store never changes"));
        }
        for s in stores {
            if !self.stores.contains_key(s) {
                return Err(CommandError::UnknownStore(*s));
            }
            let claimed = self
                .provisioning
                .values()
                .any(|o| o.id != id && o.kind == ProvisionKind::Expand && o.stores.contains(s));
            if p.kind == ProvisionKind::Expand && claimed {
                return Err(invalid(format!(
                    "store {s} already counts for another expansion"
                )));
            }
        }
        Ok(())
    }

    fn insert_range(&mut self, range: RangeDescriptor) {
        let previous = self.starts.insert(range.start.clone(), range.id);
        assert!(previous.is_none(), "two ranges start at the same key");
        self.ranges.insert(range.id, range);
    }

    fn check_descriptor(&self, range: &RangeDescriptor) -> Result<(), CommandError> {
        if range.id == RangeId(0) {
            return Err(invalid("range id 0"));
        }
        if !range.end.is_empty() && range.start >= range.end {
            return Err(invalid(format!("range {} has start >= end", range.id)));
        }
        let mut places: Vec<(StoreId, ShardId)> = Vec::with_capacity(range.replicas.len());
        let mut ids: Vec<ReplicaId> = Vec::with_capacity(range.replicas.len());
        for rep in &range.replicas {
            let store = self
                .stores
                .get(&rep.store_id)
                .ok_or(CommandError::UnknownStore(rep.store_id))?;
            if rep.shard_id.0 as usize >= store.info.shard_addrs.len() {
                return Err(invalid(format!(
                    "store {} has no shard {}",
                    rep.store_id, rep.shard_id
                )));
            }
            // Two replicas of a range may share a store only on different shards, and only
            // two: the source and the target of a move between the shards of one store.
            let on_store = places.iter().filter(|(s, _)| *s == rep.store_id).count();
            if places.contains(&(rep.store_id, rep.shard_id)) || on_store >= 2 {
                return Err(invalid(format!(
                    "range {} has two replicas on store {} shard {} (or three on the store)",
                    range.id, rep.store_id, rep.shard_id
                )));
            }
            if ids.contains(&rep.replica_id) || rep.replica_id == ReplicaId(0) {
                return Err(invalid(format!("range {} repeats a replica id", range.id)));
            }
            places.push((rep.store_id, rep.shard_id));
            ids.push(rep.replica_id);
        }
        if let Some(leader) = range.leader {
            if !ids.contains(&leader) {
                return Err(invalid(format!(
                    "range {}: leader {leader} is not a replica",
                    range.id
                )));
            }
        }
        Ok(())
    }

    /// Fails if `[range.start, range.end)` overlaps a range not in `except`.
    fn check_no_overlap(
        &self,
        range: &RangeDescriptor,
        except: &[RangeId],
    ) -> Result<(), CommandError> {
        // An inverted range would make the map lookup below panic (found by fuzzing snapshots).
        if !range.end.is_empty() && range.start >= range.end {
            return Err(invalid(format!("range {} has start >= end", range.id)));
        }
        let before = self
            .starts
            .range::<[u8], _>((Bound::Unbounded, Bound::Included(&range.start[..])))
            .next_back();
        let end = if range.end.is_empty() {
            Bound::Unbounded
        } else {
            Bound::Excluded(&range.end[..])
        };
        let inside = self
            .starts
            .range::<[u8], _>((Bound::Excluded(&range.start[..]), end));
        for (_, id) in before.into_iter().chain(inside) {
            if except.contains(id) {
                continue;
            }
            let other = &self.ranges[id];
            let disjoint = (!other.end.is_empty() && other.end <= range.start)
                || (!range.end.is_empty() && range.end <= other.start);
            if !disjoint {
                return Err(CommandError::Overlap {
                    range: range.id,
                    other: *id,
                });
            }
        }
        Ok(())
    }

    fn check_split(
        &self,
        left: &RangeDescriptor,
        right: &RangeDescriptor,
    ) -> Result<(), CommandError> {
        let old = self
            .ranges
            .get(&left.id)
            .ok_or(CommandError::UnknownRange(left.id))?;
        if is_stale(left.epoch, old.epoch) || left.epoch.version <= old.epoch.version {
            return Err(CommandError::StaleEpoch {
                current: Box::new(old.clone()),
            });
        }
        if self.ranges.contains_key(&right.id) || right.id == left.id {
            return Err(invalid(format!("split: range {} already exists", right.id)));
        }
        if left.start != old.start || right.end != old.end || left.end != right.start {
            return Err(invalid(
                "split: left and right must exactly cover the old range",
            ));
        }
        if left.end.is_empty() || left.end <= left.start {
            return Err(invalid("split: the split key must be inside the range"));
        }
        self.check_descriptor(left)?;
        self.check_descriptor(right)?;
        self.check_no_overlap(right, &[left.id])
    }

    /// A merge is recorded when `left` is a newer descriptor of a known range that now ends
    /// where the known `right` ended, `right` is the known right neighbour (the same epoch, or
    /// an older one: it froze at the epoch it had), and the new version is above both.
    fn check_merge(
        &self,
        left: &RangeDescriptor,
        right: &RangeDescriptor,
    ) -> Result<(), CommandError> {
        let old = self
            .ranges
            .get(&left.id)
            .ok_or(CommandError::UnknownRange(left.id))?;
        let known = self
            .ranges
            .get(&right.id)
            .ok_or(CommandError::UnknownRange(right.id))?;
        if is_stale(left.epoch, old.epoch)
            || left.epoch.version <= old.epoch.version.max(known.epoch.version)
        {
            return Err(CommandError::StaleEpoch {
                current: Box::new(old.clone()),
            });
        }
        if known.epoch != right.epoch || known.start != right.start || known.end != right.end {
            return Err(CommandError::StaleEpoch {
                current: Box::new(known.clone()),
            });
        }
        if left.id == right.id
            || old.end != right.start
            || left.start != old.start
            || left.end != right.end
        {
            return Err(invalid(
                "merge: the left range must end where the right starts and grow over it",
            ));
        }
        self.check_descriptor(left)?;
        self.check_no_overlap(left, &[left.id, right.id])
    }

    /// Walks the whole state and asserts its invariants (tests and debug builds).
    pub fn verify(&self) {
        assert_eq!(self.starts.len(), self.ranges.len());
        let mut prev_end: Option<&Bytes> = None;
        for (start, id) in &self.starts {
            let r = &self.ranges[id];
            assert_eq!(&r.start, start);
            if let Some(end) = prev_end {
                assert!(!end.is_empty() && end <= start, "ranges overlap");
            }
            prev_end = Some(&r.end);
        }
    }

    /// Encodes the state for a snapshot (`docs/format/master-log.md` §3).
    pub fn encode_snapshot(&self, buf: &mut BytesMut) {
        self.cluster_id.encode(buf);
        self.config.encode(buf);
        self.route_version.encode(buf);
        self.id_end.encode(buf);
        self.tso_limit.encode(buf);
        let stores: Vec<StoreMeta> = self.stores.values().cloned().collect();
        stores.encode(buf);
        let ranges: Vec<RangeDescriptor> = self.ranges().cloned().collect();
        ranges.encode(buf);
        let provisioning: Vec<Provisioning> = self.provisioning.values().cloned().collect();
        provisioning.encode(buf);
        self.max_memory.encode(buf);
    }

    /// Decodes a snapshot's state (current format version) taken at `applied_index`,
    /// checking its invariants.
    pub fn decode_snapshot(applied_index: u64, r: &mut Reader) -> Result<Self, DecodeError> {
        Self::decode_snapshot_version(SNAPSHOT_VERSION, applied_index, r)
    }

    /// Decodes a snapshot's state written by format `version` (1: no capacity requests;
    /// 2: with them; 3: and the `maxmemory` override).
    pub fn decode_snapshot_version(
        version: u32,
        applied_index: u64,
        r: &mut Reader,
    ) -> Result<Self, DecodeError> {
        let mut s = Self::decode_v1_fields(applied_index, r)?;
        if version >= 2 {
            let provisioning: Vec<Provisioning> = Wire::decode(r)?;
            for p in provisioning {
                p.check_shape()
                    .map_err(|_| DecodeError::InvalidValue("snapshot capacity request"))?;
                if s.provisioning
                    .last_key_value()
                    .is_some_and(|(&id, _)| id >= p.id)
                {
                    return Err(DecodeError::InvalidValue(
                        "snapshot capacity requests out of order",
                    ));
                }
                s.provisioning.insert(p.id, p);
            }
        }
        if version >= 3 {
            s.max_memory = Wire::decode(r)?;
        }
        Ok(s)
    }

    fn decode_v1_fields(applied_index: u64, r: &mut Reader) -> Result<Self, DecodeError> {
        let mut s = Self {
            applied_index,
            cluster_id: Wire::decode(r)?,
            config: Wire::decode(r)?,
            route_version: Wire::decode(r)?,
            id_end: Wire::decode(r)?,
            tso_limit: Wire::decode(r)?,
            ..Self::default()
        };
        // A snapshot lists stores by increasing id and ranges in key order, each once (as
        // `encode_snapshot` writes them); anything else is corruption, not a state to guess at.
        let stores: Vec<StoreMeta> = Wire::decode(r)?;
        for st in stores {
            if s.stores
                .last_key_value()
                .is_some_and(|(&id, _)| id >= st.info.store_id)
            {
                return Err(DecodeError::InvalidValue("snapshot stores out of order"));
            }
            s.stores.insert(st.info.store_id, st);
        }
        let ranges: Vec<RangeDescriptor> = Wire::decode(r)?;
        for range in ranges {
            if s.ranges.contains_key(&range.id)
                || s.starts
                    .last_key_value()
                    .is_some_and(|(k, _)| *k >= range.start)
            {
                return Err(DecodeError::InvalidValue("snapshot ranges"));
            }
            s.check_no_overlap(&range, &[])
                .map_err(|_| DecodeError::InvalidValue("snapshot ranges overlap"))?;
            s.insert_range(range);
        }
        Ok(s)
    }
}

/// Whether `new` is older than `old` in either counter.
pub fn is_stale(new: Epoch, old: Epoch) -> bool {
    new.conf_ver < old.conf_ver || new.version < old.version
}

/// The snapshot state layout written by this build (`docs/format/master-log.md` §3).
pub const SNAPSHOT_VERSION: u32 = 4;

/// Most ranges one bootstrap creates (one per shard of the first store).
pub const MAX_BOOTSTRAP_RANGES: usize = 1024;

/// Checks that `ranges` are in key order and together cover the whole keyspace, with no gap
/// and no overlap.
fn check_tiling(ranges: &[RangeDescriptor]) -> Result<(), CommandError> {
    let (Some(first), Some(last)) = (ranges.first(), ranges.last()) else {
        return Err(invalid("bootstrap without ranges"));
    };
    if ranges.len() > MAX_BOOTSTRAP_RANGES {
        return Err(invalid(format!(
            "bootstrap of {} ranges (at most {MAX_BOOTSTRAP_RANGES})",
            ranges.len()
        )));
    }
    if !first.start.is_empty() || !last.end.is_empty() {
        return Err(invalid("the first ranges must cover the whole keyspace"));
    }
    for pair in ranges.windows(2) {
        if pair[0].end.is_empty() || pair[0].end != pair[1].start {
            return Err(invalid(format!(
                "range {} does not start where range {} ends",
                pair[1].id, pair[0].id
            )));
        }
    }
    let mut ids: Vec<RangeId> = ranges.iter().map(|r| r.id).collect();
    ids.sort_unstable();
    if ids.windows(2).any(|w| w[0] == w[1]) {
        return Err(invalid("two bootstrap ranges share an id"));
    }
    Ok(())
}

fn check_config(c: &ClusterConfig) -> Result<(), CommandError> {
    if !(1..=7).contains(&c.replication_factor) {
        return Err(invalid("replication factor must be 1 ..= 7"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use net::message::{Replica, ReplicaRole};

    pub(crate) fn store(id: u64) -> StoreMeta {
        StoreMeta {
            info: StoreInfo {
                store_id: StoreId(id),
                addr: format!("10.0.0.{id}:7000"),
                shard_addrs: vec![format!("10.0.0.{id}:7001"), format!("10.0.0.{id}:7002")],
                labels: vec![],
            },
            mem_capacity: 1 << 30,
            disk_capacity: 1 << 40,
            state: StoreState::Up,
            registered_ms: 0,
        }
    }

    fn voter(id: u64, store: u64) -> Replica {
        Replica {
            replica_id: ReplicaId(id),
            store_id: StoreId(store),
            shard_id: ShardId(0),
            role: ReplicaRole::Voter {},
        }
    }

    fn range(id: u64, start: &'static [u8], end: &'static [u8], ver: u64) -> RangeDescriptor {
        RangeDescriptor {
            id: RangeId(id),
            start: Bytes::from_static(start),
            end: Bytes::from_static(end),
            epoch: Epoch {
                conf_ver: 1,
                version: ver,
            },
            replicas: vec![voter(id * 10, 1)],
            leader: Some(ReplicaId(id * 10)),
        }
    }

    fn booted() -> ClusterState {
        let mut s = ClusterState::default();
        let cmds = [
            Command::Init {
                cluster_id: ClusterId(7),
                config: ClusterConfig::default(),
            },
            Command::PutStore { meta: store(1) },
            Command::Bootstrap {
                range: range(1, b"", b"", 1),
            },
        ];
        for (i, c) in cmds.iter().enumerate() {
            s.apply(i as u64 + 1, c).unwrap();
        }
        s
    }

    #[test]
    fn commands_round_trip_through_their_encoding() {
        let cmds = [
            Command::Init {
                cluster_id: ClusterId(9),
                config: ClusterConfig::default(),
            },
            Command::PutStore { meta: store(3) },
            Command::SetStoreState {
                store_id: StoreId(3),
                state: StoreState::Offline,
            },
            Command::Split {
                left: range(1, b"", b"m", 2),
                right: range(2, b"m", b"", 2),
            },
            Command::ReserveIds { end: 1000 },
            Command::SetTsoLimit {
                limit: Timestamp(77 << 18),
            },
            Command::BootstrapRanges {
                ranges: vec![range(1, b"", b"m", 1), range(2, b"m", b"", 1)],
            },
        ];
        for c in cmds {
            let bytes = net::codec::encode_to_bytes(&c);
            assert_eq!(net::codec::decode_exact::<Command>(bytes).unwrap(), c);
        }
    }

    /// A bootstrapped state split in two, and a decoder of snapshots made of its fields
    /// with the store and range lists given (as `encode_snapshot` writes them).
    fn split_state() -> ClusterState {
        let mut s = booted();
        let split = Command::Split {
            left: range(1, b"", b"m", 2),
            right: range(2, b"m", b"", 2),
        };
        s.apply(4, &split).unwrap();
        s
    }

    fn decode_with(
        s: &ClusterState,
        stores: Vec<StoreMeta>,
        ranges: Vec<RangeDescriptor>,
    ) -> Result<ClusterState, DecodeError> {
        let mut b = BytesMut::new();
        s.cluster_id.encode(&mut b);
        s.config.encode(&mut b);
        s.route_version.encode(&mut b);
        s.id_end.encode(&mut b);
        s.tso_limit.encode(&mut b);
        stores.encode(&mut b);
        ranges.encode(&mut b);
        Vec::<Provisioning>::new().encode(&mut b);
        s.max_memory.encode(&mut b);
        ClusterState::decode_snapshot(s.applied_index, &mut Reader::new(b.freeze()))
    }

    #[test]
    fn a_snapshot_must_list_stores_and_ranges_once_and_in_order() {
        let s = split_state();
        let stores: Vec<StoreMeta> = s.stores.values().cloned().collect();
        let ranges: Vec<RangeDescriptor> = s.ranges().cloned().collect();
        let mut bytes = BytesMut::new();
        s.encode_snapshot(&mut bytes);
        let mut written = Reader::new(bytes.freeze());
        assert_eq!(ClusterState::decode_snapshot(4, &mut written).unwrap(), s);
        assert_eq!(decode_with(&s, stores.clone(), ranges.clone()).unwrap(), s);
        let twice = vec![stores[0].clone(), stores[0].clone()];
        assert!(
            decode_with(&s, twice, ranges.clone()).is_err(),
            "a store listed twice"
        );
        let reversed: Vec<RangeDescriptor> = ranges.iter().rev().cloned().collect();
        assert!(
            decode_with(&s, stores, reversed).is_err(),
            "ranges out of key order"
        );
    }

    #[test]
    fn a_snapshot_with_an_inverted_range_is_refused_not_a_panic() {
        let s = split_state();
        let stores: Vec<StoreMeta> = s.stores.values().cloned().collect();
        let mut ranges: Vec<RangeDescriptor> = s.ranges().cloned().collect();
        ranges[1].end = Bytes::from_static(b"c"); // starts at "m"
        assert!(decode_with(&s, stores, ranges).is_err());
    }

    #[test]
    fn bootstrap_ranges_must_tile_the_keyspace_once() {
        let mut s = ClusterState::default();
        let init = [
            Command::Init {
                cluster_id: ClusterId(7),
                config: ClusterConfig::default(),
            },
            Command::PutStore { meta: store(1) },
        ];
        for (i, c) in init.iter().enumerate() {
            s.apply(i as u64 + 1, c).unwrap();
        }
        let bad = [
            vec![],
            vec![range(1, b"a", b"", 1)],
            vec![range(1, b"", b"m", 1)],
            vec![range(1, b"", b"m", 1), range(2, b"n", b"", 1)],
            vec![range(1, b"", b"m", 1), range(1, b"m", b"", 1)],
            vec![range(1, b"", b"", 1), range(2, b"", b"", 1)],
        ];
        for ranges in bad {
            let cmd = Command::BootstrapRanges {
                ranges: ranges.clone(),
            };
            assert!(
                matches!(s.apply(3, &cmd), Err(CommandError::Invalid(_))),
                "{ranges:?}"
            );
            assert!(!s.is_bootstrapped());
        }
        let good = Command::BootstrapRanges {
            ranges: vec![range(1, b"", b"m", 1), range(2, b"m", b"", 1)],
        };
        s.apply(3, &good).unwrap();
        assert_eq!(s.range_by_key(b"a").unwrap().id, RangeId(1));
        assert_eq!(s.range_by_key(b"z").unwrap().id, RangeId(2));
        assert_eq!(s.apply(4, &good), Err(CommandError::AlreadyBootstrapped));
    }

    #[test]
    fn split_then_lookup_by_key_finds_each_half() {
        let mut s = booted();
        s.apply(
            4,
            &Command::Split {
                left: range(1, b"", b"m", 2),
                right: range(2, b"m", b"", 2),
            },
        )
        .unwrap();
        assert_eq!(s.range_by_key(b"a").unwrap().id, RangeId(1));
        assert_eq!(s.range_by_key(b"m").unwrap().id, RangeId(2));
        assert_eq!(s.range_by_key(b"zzz").unwrap().id, RangeId(2));
        // put store, bootstrap, split
        assert_eq!(s.route_version(), 3);
    }

    #[test]
    fn a_merge_removes_the_right_range_and_grows_the_left_over_it() {
        let mut s = split_state();
        let merge = Command::Merge {
            left: range(1, b"", b"", 3),
            right: range(2, b"m", b"", 2),
        };
        let bytes = net::codec::encode_to_bytes(&merge);
        assert_eq!(net::codec::decode_exact::<Command>(bytes).unwrap(), merge);
        let version = s.route_version();
        s.apply(5, &merge).unwrap();
        assert_eq!(s.range_count(), 1);
        assert_eq!(s.range_by_key(b"zzz").unwrap().id, RangeId(1));
        assert!(s.range(RangeId(2)).is_none());
        assert_eq!(s.route_version(), version + 1);
        s.verify();
    }

    #[test]
    fn merges_that_do_not_fit_the_known_ranges_are_refused_without_change() {
        let s = split_state();
        let refused = |left: RangeDescriptor, right: RangeDescriptor| {
            let mut t = s.clone();
            let r = t.apply(5, &Command::Merge { left, right });
            assert_eq!(t, s);
            r
        };
        // The version must grow past both ranges'.
        assert!(matches!(
            refused(range(1, b"", b"", 2), range(2, b"m", b"", 2)),
            Err(CommandError::StaleEpoch { .. })
        ));
        // The right range as the master knows it (epoch and span).
        assert!(matches!(
            refused(range(1, b"", b"", 3), range(2, b"m", b"", 1)),
            Err(CommandError::StaleEpoch { .. })
        ));
        // The left must end where the right ended, and keep its start.
        assert!(matches!(
            refused(range(1, b"", b"q", 3), range(2, b"m", b"", 2)),
            Err(CommandError::Invalid(_))
        ));
        assert!(matches!(
            refused(range(1, b"a", b"", 3), range(2, b"m", b"", 2)),
            Err(CommandError::Invalid(_))
        ));
        // Unknown ranges.
        assert_eq!(
            refused(range(1, b"", b"", 3), range(7, b"m", b"", 2)),
            Err(CommandError::UnknownRange(RangeId(7)))
        );
    }

    #[test]
    fn stale_or_overlapping_descriptors_are_refused_without_change() {
        let mut s = booted();
        s.apply(
            4,
            &Command::Split {
                left: range(1, b"", b"m", 3),
                right: range(2, b"m", b"", 3),
            },
        )
        .unwrap();
        let before = s.clone();
        let stale = Command::PutRange {
            range: range(1, b"", b"m", 2),
        };
        assert!(matches!(
            s.apply(5, &stale),
            Err(CommandError::StaleEpoch { .. })
        ));
        let overlap = Command::PutRange {
            range: range(1, b"", b"p", 4),
        };
        assert!(matches!(
            s.apply(5, &overlap),
            Err(CommandError::Overlap { .. })
        ));
        let unknown_split = Command::Split {
            left: range(9, b"", b"c", 9),
            right: range(10, b"c", b"m", 9),
        };
        assert_eq!(
            s.apply(5, &unknown_split),
            Err(CommandError::UnknownRange(RangeId(9)))
        );
        assert_eq!(s, before);
    }

    #[test]
    fn two_replicas_of_a_range_may_share_a_store_only_on_different_shards() {
        let mut s = booted();
        let on = |id: u64, shard: u32| Replica {
            shard_id: ShardId(shard),
            ..voter(id, 1)
        };
        let with = |replicas: Vec<Replica>, conf_ver: u64| Command::PutRange {
            range: RangeDescriptor {
                replicas,
                epoch: Epoch {
                    conf_ver,
                    version: 1,
                },
                ..range(1, b"", b"", 1)
            },
        };
        let before = s.clone();
        let same_shard = with(vec![on(10, 0), on(11, 0)], 2);
        assert!(matches!(
            s.apply(4, &same_shard),
            Err(CommandError::Invalid(_))
        ));
        assert_eq!(s, before);
        // The move's middle: the source on shard 0, the target on shard 1.
        s.apply(4, &with(vec![on(10, 0), on(11, 1)], 2)).unwrap();
        assert_eq!(s.range(RangeId(1)).unwrap().replicas.len(), 2);
        let mut three = store(1);
        three.info.shard_addrs.push("10.0.0.1:7003".into());
        s.apply(5, &Command::PutStore { meta: three }).unwrap();
        let third = with(vec![on(10, 0), on(11, 1), on(12, 2)], 3);
        assert!(matches!(s.apply(6, &third), Err(CommandError::Invalid(_))));
    }

    #[test]
    fn snapshot_encoding_restores_the_same_state() {
        let mut s = booted();
        s.apply(4, &Command::ReserveIds { end: 5000 }).unwrap();
        let mut buf = BytesMut::new();
        s.encode_snapshot(&mut buf);
        let mut r = Reader::new(buf.freeze());
        let back = ClusterState::decode_snapshot(4, &mut r).unwrap();
        r.finish().unwrap();
        assert_eq!(back, s);
    }

    #[test]
    fn high_water_marks_never_go_back() {
        let mut s = booted();
        s.apply(4, &Command::ReserveIds { end: 100 }).unwrap();
        s.apply(5, &Command::ReserveIds { end: 50 }).unwrap();
        assert_eq!(s.id_end(), 100);
        s.apply(
            6,
            &Command::SetTsoLimit {
                limit: Timestamp(9),
            },
        )
        .unwrap();
        s.apply(
            7,
            &Command::SetTsoLimit {
                limit: Timestamp(3),
            },
        )
        .unwrap();
        assert_eq!(s.tso_limit(), Timestamp(9));
    }

    fn expand_request(id: u64, nodes: u32) -> Provisioning {
        Provisioning {
            id: ProvisionId(id),
            kind: ProvisionKind::Expand,
            nodes,
            stores: vec![],
            state: ProvisionState::Requested,
            requested_ms: 10,
            deadline_ms: 1000,
            reason: "test".into(),
        }
    }

    #[test]
    fn two_expansions_against_a_limit_of_one_extra_node_preallocate_exactly_one() {
        let mut s = booted();
        // One store up; the limit is two stores: room for exactly one more node.
        let first = Command::RequestCapacity {
            record: expand_request(100, 1),
            max_stores: 2,
            min_stores: 1,
        };
        let second = Command::RequestCapacity {
            record: expand_request(101, 1),
            max_stores: 2,
            min_stores: 1,
        };
        s.apply(4, &first).unwrap();
        assert_eq!(s.capacity().coming, 1);
        assert!(matches!(
            s.apply(5, &second),
            Err(CommandError::OverCommitted {
                up: 1,
                coming: 1,
                asked: 1,
                max: 2
            })
        ));
        // The node registers: it is up and no longer coming; still no room for another.
        s.apply(5, &Command::PutStore { meta: store(2) }).unwrap();
        let online = Command::UpdateCapacity {
            id: ProvisionId(100),
            state: ProvisionState::Online,
            stores: vec![StoreId(2)],
        };
        s.apply(6, &online).unwrap();
        assert_eq!(
            s.capacity(),
            Capacity {
                up: 2,
                coming: 0,
                leaving: 0
            }
        );
        assert!(s.apply(7, &second).is_err());
    }

    #[test]
    fn a_failed_expansion_releases_its_preallocated_capacity() {
        let mut s = booted();
        let req = |id| Command::RequestCapacity {
            record: expand_request(id, 1),
            max_stores: 2,
            min_stores: 1,
        };
        s.apply(4, &req(100)).unwrap();
        let failed = Command::UpdateCapacity {
            id: ProvisionId(100),
            state: ProvisionState::Failed,
            stores: vec![],
        };
        s.apply(5, &failed).unwrap();
        assert_eq!(s.capacity().coming, 0);
        s.apply(6, &req(101)).unwrap();
        // A final request never moves again.
        let revive = Command::UpdateCapacity {
            id: ProvisionId(100),
            state: ProvisionState::Online,
            stores: vec![],
        };
        assert!(s.apply(7, &revive).is_err());
    }

    #[test]
    fn a_shrink_drains_its_store_and_respects_the_minimum() {
        let mut s = booted();
        s.apply(4, &Command::PutStore { meta: store(2) }).unwrap();
        let shrink = |id, store_id| Command::RequestCapacity {
            record: Provisioning {
                id: ProvisionId(id),
                kind: ProvisionKind::Shrink,
                nodes: 1,
                stores: vec![StoreId(store_id)],
                state: ProvisionState::Requested,
                requested_ms: 1,
                deadline_ms: 2,
                reason: "idle".into(),
            },
            max_stores: 8,
            min_stores: 1,
        };
        s.apply(5, &shrink(200, 2)).unwrap();
        assert_eq!(s.store(StoreId(2)).unwrap().state, StoreState::Offline);
        assert_eq!(
            s.capacity(),
            Capacity {
                up: 1,
                coming: 0,
                leaving: 1
            }
        );
        assert!(s.apply(6, &shrink(201, 1)).is_err(), "below the minimum");
        assert!(s.apply(6, &shrink(201, 2)).is_err(), "already draining");
    }

    #[test]
    fn capacity_requests_survive_a_snapshot_and_old_snapshots_still_load() {
        let mut s = booted();
        s.apply(
            4,
            &Command::RequestCapacity {
                record: expand_request(100, 2),
                max_stores: 5,
                min_stores: 1,
            },
        )
        .unwrap();
        let mut buf = BytesMut::new();
        s.encode_snapshot(&mut buf);
        let back = ClusterState::decode_snapshot(4, &mut Reader::new(buf.freeze())).unwrap();
        assert_eq!(back, s);
        assert_eq!(back.capacity().coming, 2);
        // A version-1 state has no list after the ranges.
        let old = booted();
        let mut v1 = BytesMut::new();
        old.encode_snapshot(&mut v1);
        v1.truncate(v1.len() - 5); // the empty list's count and the absent override's tag
        let mut r = Reader::new(v1.freeze());
        let back = ClusterState::decode_snapshot_version(1, 3, &mut r).unwrap();
        r.finish().unwrap();
        assert_eq!(back, old);
    }

    #[test]
    fn the_maxmemory_override_is_the_latest_set_and_survives_a_snapshot() {
        let mut s = booted();
        assert_eq!(s.max_memory(), None, "no override until one is set");
        s.apply(4, &Command::SetMaxMemory { bytes: 1 << 20 })
            .unwrap();
        s.apply(5, &Command::SetMaxMemory { bytes: 0 }).unwrap();
        assert_eq!(s.max_memory(), Some(0), "0 is an override: no limit");
        let mut buf = BytesMut::new();
        s.encode_snapshot(&mut buf);
        let back = ClusterState::decode_snapshot(5, &mut Reader::new(buf.freeze())).unwrap();
        assert_eq!(back, s);
        assert_eq!(back.max_memory(), Some(0));
    }

    #[test]
    fn a_version_2_snapshot_has_no_maxmemory_override() {
        let old = booted();
        let mut v2 = BytesMut::new();
        old.encode_snapshot(&mut v2);
        v2.truncate(v2.len() - 1); // the absent override's tag
        let mut r = Reader::new(v2.freeze());
        let back = ClusterState::decode_snapshot_version(2, 3, &mut r).unwrap();
        r.finish().unwrap();
        assert_eq!(back, old);
        assert_eq!(back.max_memory(), None);
    }

    #[test]
    fn finished_requests_are_kept_only_up_to_a_bound() {
        let mut s = booted();
        let mut index = 4;
        for id in 0..(FINISHED_KEPT as u64 + 5) {
            let pid = 1000 + id;
            let req = Command::RequestCapacity {
                record: expand_request(pid, 1),
                max_stores: 9,
                min_stores: 1,
            };
            s.apply(index, &req).unwrap();
            let fail = Command::UpdateCapacity {
                id: ProvisionId(pid),
                state: ProvisionState::Failed,
                stores: vec![],
            };
            s.apply(index + 1, &fail).unwrap();
            index += 2;
        }
        assert_eq!(s.provisioning().count(), FINISHED_KEPT);
        assert!(
            s.provision(ProvisionId(1000)).is_none(),
            "the oldest went first"
        );
    }
}
