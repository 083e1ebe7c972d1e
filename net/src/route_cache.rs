//! A client's copy of the master's route table, indexed for lookups by key: every range with
//! the address of the shard to send its requests to. The proxy and the bench harness's native
//! target both route with it (each adds its own refresh and retry policy).

use crate::message::{RangeDescriptor, Replica, RouteTable};

/// A range and the address of its leader's shard (the first replica's when no leader is
/// known; `None` when the table does not name that store's shard).
#[derive(Debug, Clone)]
pub struct Route {
    /// The range.
    pub range: RangeDescriptor,
    /// `host:port` of the shard to send to.
    pub addr: Option<String>,
    /// `host:port` of the shards of the range's other replicas, in replica order: where a
    /// client asks when `addr` cannot be reached (a replica that knows a newer leader names
    /// it in its `NotLeader` hint).
    pub others: Vec<String>,
}

/// Routes ordered by start key.
#[derive(Debug, Default, Clone)]
pub struct RouteCache {
    routes: Vec<Route>,
}

impl RouteCache {
    /// Indexes the ranges of `t`, resolving each one's leader to its shard address.
    pub fn new(t: RouteTable) -> Self {
        let shard_addr = |r: &Replica| {
            let store = t.stores.iter().find(|s| s.store_id == r.store_id)?;
            store
                .shard_addrs
                .get(usize::try_from(r.shard_id.0).ok()?)
                .cloned()
        };
        let mut routes: Vec<Route> = t
            .ranges
            .iter()
            .map(|range| {
                let replica = range
                    .leader
                    .and_then(|l| range.replicas.iter().find(|r| r.replica_id == l))
                    .or_else(|| range.replicas.first());
                let others = range
                    .replicas
                    .iter()
                    .filter(|r| replica.is_none_or(|l| l.replica_id != r.replica_id))
                    .filter_map(shard_addr)
                    .collect();
                Route {
                    range: range.clone(),
                    addr: replica.and_then(shard_addr),
                    others,
                }
            })
            .collect();
        routes.sort_by(|a, b| a.range.start.cmp(&b.range.start));
        Self { routes }
    }

    /// The route of internal key `key`, if a range holds it.
    pub fn find(&self, key: &[u8]) -> Option<&Route> {
        let i = self
            .routes
            .partition_point(|r| &r.range.start[..] <= key)
            .checked_sub(1)?;
        let r = &self.routes[i];
        r.range.contains(key).then_some(r)
    }

    /// Every route, in key order.
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{Epoch, RangeId, ReplicaId, ShardId, StoreId};
    use crate::message::{ReplicaRole, StoreInfo};
    use bytes::Bytes;

    fn range(
        id: u64,
        start: &'static [u8],
        end: &'static [u8],
        leader: Option<u64>,
    ) -> RangeDescriptor {
        RangeDescriptor {
            id: RangeId(id),
            start: Bytes::from_static(start),
            end: Bytes::from_static(end),
            epoch: Epoch::default(),
            replicas: (1..=2)
                .map(|s| Replica {
                    replica_id: ReplicaId(id * 10 + s),
                    store_id: StoreId(s),
                    shard_id: ShardId(1),
                    role: ReplicaRole::Voter {},
                })
                .collect(),
            leader: leader.map(ReplicaId),
        }
    }

    #[test]
    fn keys_find_their_range_and_its_leaders_shard() {
        let stores = (1..=2)
            .map(|s| StoreInfo {
                store_id: StoreId(s),
                addr: format!("h{s}:0"),
                shard_addrs: vec![format!("h{s}:1"), format!("h{s}:2")],
                labels: Vec::new(),
            })
            .collect();
        let t = RouteTable {
            route_version: 3,
            unchanged: false,
            // Out of order on purpose; range 2 has no known leader.
            ranges: vec![range(2, b"m", b"", None), range(1, b"", b"m", Some(12))],
            stores,
        };
        let c = RouteCache::new(t);
        assert_eq!(c.routes().len(), 2);
        let a = c.find(b"a").unwrap();
        assert_eq!((a.range.id, a.addr.as_deref()), (RangeId(1), Some("h2:2")));
        assert_eq!(
            a.others,
            ["h1:2"],
            "the leader's replica is not among the others"
        );
        let z = c.find(b"z").unwrap();
        assert_eq!((z.range.id, z.addr.as_deref()), (RangeId(2), Some("h1:2")));
        assert_eq!(z.others, ["h2:2"]);
        assert_eq!(c.find(b"m").unwrap().range.id, RangeId(2));
        assert!(RouteCache::default().find(b"a").is_none());
    }
}
