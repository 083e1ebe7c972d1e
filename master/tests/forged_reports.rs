//! Forged range heartbeats and split reports (issue 21 item 5): the master refuses each one
//! that its state cannot explain, counts it, and persists nothing — after a restart the
//! ranges are exactly as before. Before validation, one heartbeat moving a range's end and
//! version was accepted and persisted: half the keys lost their route for good.
#![allow(clippy::unwrap_used)]

use bytes::Bytes;
use master::core::validate::Refusal;
use master::core::{Core, MasterConfig};
use net::message::{
    Bootstrap, RangeDescriptor, RangeHeartbeat, RangeStats, Replica, ReplicaRole, SplitReport,
    StoreInfo, StoreRegister,
};
use net::{RangeId, ReplicaId, RpcError, ShardId, StoreId};

fn open(dir: &std::path::Path) -> Core {
    let mut cfg = MasterConfig::new(dir);
    cfg.schedule_interval_ms = 3_600_000;
    Core::open(cfg, 1_000).unwrap().0
}

fn register(core: &mut Core, n: u32) -> StoreId {
    let store = StoreInfo {
        store_id: StoreId(0),
        addr: format!("h{n}:1"),
        shard_addrs: vec![format!("h{n}:2"), format!("h{n}:3")],
        labels: vec![],
    };
    core.register_store(
        StoreRegister {
            store,
            mem_capacity: 0,
            disk_capacity: 0,
        },
        1_000,
    )
    .unwrap()
    .store_id
}

fn hb(range: RangeDescriptor) -> RangeHeartbeat {
    let leader = range.replicas[0].replica_id;
    RangeHeartbeat {
        range,
        leader,
        stats: RangeStats::default(),
        pending: vec![],
        down: vec![],
    }
}

fn ranges(core: &Core) -> Vec<RangeDescriptor> {
    core.state().ranges().cloned().collect()
}

#[test]
fn forged_range_reports_are_refused_and_not_persisted() {
    let dir = tempfile::tempdir().unwrap();
    let mut core = open(dir.path());
    let s1 = register(&mut core, 1);
    let s2 = register(&mut core, 2);
    core.bootstrap(Bootstrap {
        store_id: s1,
        shard_id: ShardId(0),
    })
    .unwrap();
    let before = ranges(&core);
    let version = core.state().route_version();
    let r = before[0].clone();
    assert!(!r.end.is_empty(), "two first ranges: the first one ends");

    // The heartbeat: the range ends earlier at a newer version (a split the master
    // never heard of): refused.
    let mut shrunk = r.clone();
    shrunk.end = Bytes::from_static(b"\x00");
    shrunk.epoch.version += 1;
    let e = core.range_heartbeat(hb(shrunk), 2_000).unwrap_err();
    assert!(matches!(e, RpcError::BadRequest { .. }), "{e:?}");
    // An epoch jump with nothing changed (every later real heartbeat would look stale).
    let mut jump = r.clone();
    jump.epoch.conf_ver += 1_000_000;
    core.range_heartbeat(hb(jump), 2_000).unwrap_err();
    // The leader reported on a store the master does not place it on.
    let mut moved = r.clone();
    moved.replicas[0].store_id = s2;
    core.range_heartbeat(hb(moved), 2_000).unwrap_err();
    // A replica the master never allocated, added by a "conf change".
    let mut added = r.clone();
    added.epoch.conf_ver += 1;
    added.replicas.push(Replica {
        replica_id: ReplicaId(1 << 40),
        store_id: s2,
        shard_id: ShardId(0),
        role: ReplicaRole::Voter {},
    });
    core.range_heartbeat(hb(added), 2_000).unwrap_err();
    // A range that does not exist.
    let mut unknown = r.clone();
    unknown.id = RangeId(1 << 40);
    assert!(matches!(
        core.range_heartbeat(hb(unknown), 2_000),
        Err(RpcError::RangeNotFound { .. })
    ));
    // A split report whose right half lives on other stores than the left (its ids were
    // allocated, as for a real split).
    let ids = core.alloc_ids(2).unwrap().first;
    let mut left = r.clone();
    left.end = Bytes::from_static(b"\x00\x10");
    left.epoch.version += 1;
    let right = RangeDescriptor {
        id: RangeId(ids),
        start: left.end.clone(),
        end: r.end.clone(),
        epoch: left.epoch,
        replicas: vec![Replica {
            replica_id: ReplicaId(ids + 1),
            store_id: s2,
            shard_id: ShardId(0),
            role: ReplicaRole::Voter {},
        }],
        leader: None,
    };
    core.split_report(SplitReport { left, right }).unwrap_err();

    let counts = core.refused_reports().clone();
    for reason in [
        Refusal::Interval,
        Refusal::ConfVer,
        Refusal::Leader,
        Refusal::Membership,
        Refusal::UnknownRange,
        Refusal::Split,
    ] {
        assert_eq!(counts.get(&reason), Some(&1), "{reason:?}: {counts:?}");
    }
    assert_eq!(ranges(&core), before);
    assert_eq!(core.state().route_version(), version);
    // A correct heartbeat still goes through (and records its leader only).
    core.range_heartbeat(hb(r.clone()), 3_000).unwrap();

    drop(core);
    let core = open(dir.path());
    assert_eq!(
        ranges(&core),
        before,
        "the restarted master has the same ranges"
    );
}
