//! Merges of small, cold neighbours: what the master checks before it asks a left range's
//! leader to merge its right neighbour (`Operator::Merge`; the protocol runs on the DS nodes,
//! `docs/guides/ds-node.md` "Range merges").

use net::message::RangeDescriptor;

/// Whether `left` and `right` are neighbours (`left.end == right.start`) whose replicas sit
/// pairwise on the same (store, shard): the only ranges a DS node merges, by descriptor.
pub fn colocated(left: &RangeDescriptor, right: &RangeDescriptor) -> bool {
    if left.id == right.id || left.end.is_empty() || left.end != right.start {
        return false;
    }
    let places = |d: &RangeDescriptor| {
        let mut v: Vec<_> = d.replicas.iter().map(|r| (r.store_id, r.shard_id)).collect();
        v.sort();
        v
    };
    let (a, b) = (places(left), places(right));
    a == b && a.windows(2).all(|w| w[0] != w[1])
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use net::message::{Replica, ReplicaRole};
    use net::{Epoch, RangeId, ReplicaId, ShardId, StoreId};

    fn range(id: u64, start: &'static [u8], end: &'static [u8], places: &[(u64, u32)]) -> RangeDescriptor {
        RangeDescriptor {
            id: RangeId(id),
            start: Bytes::from_static(start),
            end: Bytes::from_static(end),
            epoch: Epoch {
                conf_ver: 1,
                version: 1,
            },
            replicas: places
                .iter()
                .enumerate()
                .map(|(i, (store, shard))| Replica {
                    replica_id: ReplicaId(id * 10 + i as u64),
                    store_id: StoreId(*store),
                    shard_id: ShardId(*shard),
                    role: ReplicaRole::Voter {},
                })
                .collect(),
            leader: None,
        }
    }

    #[test]
    fn neighbours_on_the_same_stores_and_shards_are_colocated_in_any_order() {
        let l = range(1, b"a", b"m", &[(1, 0), (2, 1), (3, 0)]);
        let r = range(2, b"m", b"z", &[(3, 0), (1, 0), (2, 1)]);
        assert!(colocated(&l, &r));
    }

    #[test]
    fn another_shard_a_gap_or_a_missing_replica_is_not_colocated() {
        let l = range(1, b"a", b"m", &[(1, 0), (2, 0)]);
        assert!(!colocated(&l, &range(2, b"m", b"z", &[(1, 0), (2, 1)])));
        assert!(!colocated(&l, &range(2, b"n", b"z", &[(1, 0), (2, 0)])));
        assert!(!colocated(&l, &range(2, b"m", b"z", &[(1, 0)])));
        assert!(!colocated(&range(1, b"a", b"", &[(1, 0)]), &range(2, b"", b"a", &[(1, 0)])));
    }
}
