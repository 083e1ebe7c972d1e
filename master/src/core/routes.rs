//! The route cache: a copy of the ranges and store addresses that lookups read under their
//! own lock, so a route lookup never waits for a log fsync holding the core's mutex. The
//! core updates it after each applied command, touching only what the command changed.

use std::collections::BTreeMap;
use std::ops::Bound;

use bytes::Bytes;
use net::message::{GetRouteTable, RangeDescriptor, Route, RouteTable, StoreInfo};
use net::{RangeId, StoreId};

use crate::state::{ClusterState, Command, StoreState};

/// Ranges by start key and id, and shard addresses by store, at one route version.
#[derive(Debug, Default, Clone)]
pub struct RouteCache {
    version: u64,
    starts: BTreeMap<Bytes, RangeId>,
    ranges: BTreeMap<RangeId, RangeDescriptor>,
    stores: BTreeMap<StoreId, StoreInfo>,
}

impl RouteCache {
    /// A cache of everything in `state`.
    pub fn from_state(state: &ClusterState) -> Self {
        let mut c = Self {
            version: state.route_version(),
            ..Self::default()
        };
        for r in state.ranges() {
            c.put_range(r.clone());
        }
        for s in state.stores() {
            c.put_store(state, s.info.store_id);
        }
        c
    }

    fn put_range(&mut self, r: RangeDescriptor) {
        if let Some(old) = self.ranges.get(&r.id) {
            self.starts.remove(&old.start);
        }
        self.starts.insert(r.start.clone(), r.id);
        self.ranges.insert(r.id, r);
    }

    fn put_store(&mut self, state: &ClusterState, id: StoreId) {
        match state.store(id) {
            Some(s) if s.state != StoreState::Tombstone => {
                self.stores.insert(id, s.info.clone());
            }
            _ => {
                self.stores.remove(&id);
            }
        }
    }

    /// Brings the cache up to date after `cmd` was applied to `state`.
    pub fn on_applied(&mut self, cmd: &Command, state: &ClusterState) {
        let put = |c: &mut Self, id: RangeId| {
            if let Some(r) = state.range(id) {
                c.put_range(r.clone());
            }
        };
        match cmd {
            Command::PutStore { meta } => self.put_store(state, meta.info.store_id),
            Command::SetStoreState { store_id, .. } => self.put_store(state, *store_id),
            Command::Bootstrap { range } | Command::PutRange { range } => put(self, range.id),
            Command::BootstrapRanges { ranges } => {
                for r in ranges {
                    put(self, r.id);
                }
            }
            Command::Split { left, right } => {
                put(self, left.id);
                put(self, right.id);
            }
            Command::Merge { left, right } => {
                if let Some(old) = self.ranges.remove(&right.id) {
                    self.starts.remove(&old.start);
                }
                put(self, left.id);
            }
            Command::RequestCapacity { record, .. } => {
                for s in &record.stores {
                    self.put_store(state, *s);
                }
            }
            Command::Init { .. }
            | Command::UpdateCapacity { .. }
            | Command::ReserveIds { .. }
            | Command::SetTsoLimit { .. }
            | Command::SetConfig { .. }
            | Command::SetMaxMemory { .. } => {}
        }
        self.version = state.route_version();
        debug_assert_eq!(self.ranges.len(), state.range_count());
    }

    /// The route of the range holding `key`.
    pub fn route_by_key(&self, key: &[u8]) -> Route {
        let range = self
            .starts
            .range::<[u8], _>((Bound::Unbounded, Bound::Included(key)))
            .next_back()
            .and_then(|(_, id)| self.ranges.get(id))
            .filter(|r| r.contains(key));
        self.route(range)
    }

    /// The route of range `id`.
    pub fn route_by_id(&self, id: RangeId) -> Route {
        self.route(self.ranges.get(&id))
    }

    fn route(&self, range: Option<&RangeDescriptor>) -> Route {
        let leader_addr = range.and_then(|r| {
            let leader = r.leader?;
            let rep = r.replicas.iter().find(|x| x.replica_id == leader)?;
            let store = self.stores.get(&rep.store_id)?;
            store.shard_addrs.get(rep.shard_id.0 as usize).cloned()
        });
        Route {
            route_version: self.version,
            range: range.cloned(),
            leader_addr,
        }
    }

    /// The whole table, unless the caller's version is current.
    pub fn route_table(&self, req: GetRouteTable) -> RouteTable {
        if req.known_version == self.version {
            return RouteTable {
                route_version: self.version,
                unchanged: true,
                ranges: vec![],
                stores: vec![],
            };
        }
        RouteTable {
            route_version: self.version,
            unchanged: false,
            ranges: self
                .starts
                .values()
                .filter_map(|id| self.ranges.get(id).cloned())
                .collect(),
            stores: self.stores.values().cloned().collect(),
        }
    }
}
