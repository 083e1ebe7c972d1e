//! Model test of the state machine: random splits, descriptor updates (newer, stale,
//! overlapping) and malformed splits. After every command: a refused command left the state
//! unchanged, the ranges still tile the keyspace without overlap, epochs never went back, and
//! lookup by key agrees with a linear scan.
#![allow(clippy::unwrap_used)]

use ::master::state::{ClusterConfig, ClusterState, Command, StoreMeta, StoreState};
use bytes::Bytes;
use net::message::{RangeDescriptor, Replica, ReplicaRole, StoreInfo};
use net::{ClusterId, Epoch, RangeId, ReplicaId, ShardId, StoreId};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Split {
        key: Vec<u8>,
    },
    Update {
        at: Vec<u8>,
        dconf: i8,
        dver: i8,
        store: u8,
    },
    BadSplit {
        key: Vec<u8>,
        gap: bool,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let key = prop::collection::vec(0u8..4, 0..4);
    prop_oneof![
        3 => key.clone().prop_map(|key| Op::Split { key }),
        2 => (key.clone(), -1i8..=1, -1i8..=1, 1u8..=3)
            .prop_map(|(at, dconf, dver, store)| Op::Update { at, dconf, dver, store }),
        1 => (key, any::<bool>()).prop_map(|(key, gap)| Op::BadSplit { key, gap }),
    ]
}

fn store(id: u64) -> StoreMeta {
    StoreMeta {
        info: StoreInfo {
            store_id: StoreId(id),
            addr: format!("h{id}:1"),
            shard_addrs: vec![format!("h{id}:2")],
            labels: vec![],
        },
        mem_capacity: 1,
        disk_capacity: 1,
        state: StoreState::Up,
        registered_ms: 0,
    }
}

fn replica(id: u64, store: u64) -> Replica {
    Replica {
        replica_id: ReplicaId(id),
        store_id: StoreId(store),
        shard_id: ShardId(0),
        role: ReplicaRole::Voter {},
    }
}

fn bump(v: u64, d: i8) -> u64 {
    (v as i64 + i64::from(d)).max(0) as u64
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn state_machine_keeps_its_invariants_under_random_commands(ops in prop::collection::vec(op(), 1..60)) {
        let mut s = ClusterState::default();
        let mut index = 0;
        let mut apply = |s: &mut ClusterState, c: Command| {
            let before = s.clone();
            let r = s.apply(index + 1, &c);
            match &r {
                Ok(()) => index += 1,
                Err(_) => assert_eq!(&before, s, "a refused command changed the state"),
            }
            r
        };
        apply(&mut s, Command::Init { cluster_id: ClusterId(1), config: ClusterConfig::default() }).unwrap();
        for id in 1..=3 {
            apply(&mut s, Command::PutStore { meta: store(id) }).unwrap();
        }
        let first = RangeDescriptor {
            id: RangeId(1),
            start: Bytes::new(),
            end: Bytes::new(),
            epoch: Epoch { conf_ver: 1, version: 1 },
            replicas: vec![replica(1, 1)],
            leader: Some(ReplicaId(1)),
        };
        apply(&mut s, Command::Bootstrap { range: first }).unwrap();
        let mut next_id = 100;
        for op in ops {
            let epochs: Vec<(RangeId, Epoch)> = s.ranges().map(|r| (r.id, r.epoch)).collect();
            match op {
                Op::Split { key } => {
                    let old = s.range_by_key(&key).unwrap().clone();
                    let mut left = old.clone();
                    left.end = Bytes::from(key.clone());
                    left.epoch.version += 1;
                    let mut right = left.clone();
                    right.id = RangeId(next_id);
                    right.start = Bytes::from(key.clone());
                    right.end = old.end.clone();
                    right.replicas = vec![replica(next_id, 1)];
                    right.leader = None;
                    next_id += 1;
                    let r = apply(&mut s, Command::Split { left, right });
                    prop_assert_eq!(r.is_ok(), key.as_slice() > &old.start[..], "{:?}", r);
                }
                Op::Update { at, dconf, dver, store } => {
                    let old = s.range_by_key(&at).unwrap().clone();
                    let mut new = old.clone();
                    new.epoch = Epoch { conf_ver: bump(old.epoch.conf_ver, dconf), version: bump(old.epoch.version, dver) };
                    new.replicas = vec![replica(next_id, u64::from(store))];
                    new.leader = Some(ReplicaId(next_id));
                    next_id += 1;
                    let stale = new.epoch.conf_ver < old.epoch.conf_ver || new.epoch.version < old.epoch.version;
                    let r = apply(&mut s, Command::PutRange { range: new });
                    prop_assert_eq!(r.is_err(), stale, "{:?}", r);
                }
                Op::BadSplit { key, gap } => {
                    let old = s.range_by_key(&key).unwrap().clone();
                    let mut left = old.clone();
                    left.epoch.version += 1;
                    let mut right = left.clone();
                    right.id = RangeId(next_id);
                    next_id += 1;
                    left.end = Bytes::from(key.clone());
                    let mut rs = key.clone();
                    if gap { rs.push(9) } else { rs.clear() }
                    right.start = Bytes::from(rs);
                    let bad = Command::Split { left, right };
                    prop_assert!(apply(&mut s, bad).is_err());
                }
            }
            s.verify();
            // Epochs never go back.
            for (id, e) in epochs {
                let now = s.range(id).unwrap().epoch;
                prop_assert!(now.conf_ver >= e.conf_ver && now.version >= e.version);
            }
            // The ranges tile the keyspace, and lookups agree with a scan.
            let ranges: Vec<RangeDescriptor> = s.ranges().cloned().collect();
            prop_assert!(ranges[0].start.is_empty() && ranges.last().unwrap().end.is_empty());
            for w in ranges.windows(2) {
                prop_assert_eq!(&w[0].end, &w[1].start);
            }
            for k in [vec![], vec![0], vec![1, 2], vec![3, 3, 3], vec![2]] {
                let scan = ranges.iter().find(|r| r.contains(&k)).map(|r| r.id);
                prop_assert_eq!(s.range_by_key(&k).map(|r| r.id), scan);
            }
        }
    }
}
