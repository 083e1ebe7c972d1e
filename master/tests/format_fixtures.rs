//! Byte-level fixtures of the master's on-disk format, version 1 (docs/format/master-log.md):
//! a snapshot plus a log written by this release, committed under `tests/fixtures/v1/`, must
//! recover to the same state forever; so must `tests/fixtures/v2/` (capacity requests) and
//! `tests/fixtures/v3/` (the `maxmemory` override) and `tests/fixtures/v4/` (a merge).
//! Regenerate the newest (only for a new
//! format version, in a new directory) with `MASTER_WRITE_FIXTURES=1 cargo test -p master
//! --test format_fixtures version_4` (the filter matters: the other tests would rewrite their
//! directories in the current format).
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use ::master::capacity::{Capacity, ProvisionId, ProvisionKind, ProvisionState, Provisioning};
use ::master::log::DurableState;
use ::master::state::{ClusterConfig, Command, StoreMeta, StoreState};
use bytes::Bytes;
use net::message::{RangeDescriptor, Replica, ReplicaRole, StoreInfo};
use net::{ClusterId, Epoch, RangeId, ReplicaId, ShardId, StoreId, Timestamp};

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v1")
}

fn voter(id: u64, store: u64) -> Replica {
    Replica {
        replica_id: ReplicaId(id),
        store_id: StoreId(store),
        shard_id: ShardId(0),
        role: ReplicaRole::Voter {},
    }
}

fn range(id: u64, start: &'static [u8], end: &'static [u8], version: u64) -> RangeDescriptor {
    RangeDescriptor {
        id: RangeId(id),
        start: Bytes::from_static(start),
        end: Bytes::from_static(end),
        epoch: Epoch {
            conf_ver: 1,
            version,
        },
        replicas: vec![voter(id + 1, 3)],
        leader: Some(ReplicaId(id + 1)),
    }
}

fn write_fixture(dir: &Path) {
    let (mut d, _) = DurableState::open(dir).unwrap();
    let store = StoreMeta {
        info: StoreInfo {
            store_id: StoreId(3),
            addr: "10.0.0.3:7000".into(),
            shard_addrs: vec!["10.0.0.3:7001".into()],
            labels: vec![("zone".into(), "a".into())],
        },
        mem_capacity: 1 << 30,
        disk_capacity: 1 << 40,
        state: StoreState::Up,
        registered_ms: 1_700_000_000_000,
    };
    let before_snapshot = [
        Command::Init {
            cluster_id: ClusterId(42),
            config: ClusterConfig::default(),
        },
        Command::PutStore { meta: store },
        Command::Bootstrap {
            range: range(10, b"", b"", 1),
        },
        Command::ReserveIds { end: 1000 },
        Command::SetTsoLimit {
            limit: Timestamp(1_700_000_003_000 << 18),
        },
    ];
    for c in &before_snapshot {
        d.propose(c).unwrap();
    }
    d.snapshot().unwrap();
    let after_snapshot = [
        Command::Split {
            left: range(10, b"", b"m", 2),
            right: range(20, b"m", b"", 2),
        },
        Command::SetStoreState {
            store_id: StoreId(3),
            state: StoreState::Offline,
        },
    ];
    for c in &after_snapshot {
        d.propose(c).unwrap();
    }
}

#[test]
fn version_1_fixture_recovers_to_the_recorded_state() {
    // This build writes version 2: the version-1 files are never regenerated.
    // Recover a copy: opening may cut a torn tail, and the fixture must stay as committed.
    let tmp = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(fixture_dir()).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), tmp.path().join(entry.file_name())).unwrap();
    }
    let (d, report) = DurableState::open(tmp.path()).unwrap();
    assert_eq!(report.snapshot_index, 5);
    assert_eq!(report.replayed, 2);
    assert_eq!(report.torn_bytes, 0);
    let s = d.state();
    assert_eq!(s.cluster_id(), ClusterId(42));
    assert_eq!(s.applied_index(), 7);
    assert_eq!(s.id_end(), 1000);
    assert_eq!(s.tso_limit(), Timestamp(1_700_000_003_000 << 18));
    assert_eq!(s.route_version(), 4);
    assert_eq!(s.store(StoreId(3)).unwrap().state, StoreState::Offline);
    assert_eq!(s.store(StoreId(3)).unwrap().label("zone"), Some("a"));
    assert_eq!(s.range_by_key(b"a").unwrap(), &range(10, b"", b"m", 2));
    assert_eq!(s.range_by_key(b"z").unwrap(), &range(20, b"m", b"", 2));
    // And an independent rebuild gives the same state.
    let again = tempfile::tempdir().unwrap();
    write_fixture(again.path());
    let (d2, _) = DurableState::open(again.path()).unwrap();
    assert_eq!(d2.state(), s);
}

fn v2_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v2")
}

fn store_meta(id: u64) -> StoreMeta {
    StoreMeta {
        info: StoreInfo {
            store_id: StoreId(id),
            addr: format!("10.0.0.{id}:7000"),
            shard_addrs: vec![format!("10.0.0.{id}:7001")],
            labels: vec![],
        },
        mem_capacity: 1 << 30,
        disk_capacity: 1 << 40,
        state: StoreState::Up,
        registered_ms: 1_700_000_000_000 + id,
    }
}

fn expansion() -> Provisioning {
    Provisioning {
        id: ProvisionId(500),
        kind: ProvisionKind::Expand,
        nodes: 1,
        stores: vec![],
        state: ProvisionState::Requested,
        requested_ms: 1_700_000_001_000,
        deadline_ms: 1_700_000_061_000,
        reason: "ops/s per node 900 > 500 for 10s".into(),
    }
}

/// Version 2: a snapshot holding a requested expansion, then a log where its node registers,
/// the expansion goes online and a shrink of the first store starts.
fn write_v2_fixture(dir: &Path) {
    let (mut d, _) = DurableState::open(dir).unwrap();
    let before_snapshot = [
        Command::Init {
            cluster_id: ClusterId(43),
            config: ClusterConfig::default(),
        },
        Command::PutStore {
            meta: store_meta(3),
        },
        Command::PutStore {
            meta: store_meta(4),
        },
        Command::Bootstrap {
            range: range(10, b"", b"", 1),
        },
        Command::ReserveIds { end: 1000 },
        Command::RequestCapacity {
            record: expansion(),
            max_stores: 3,
            min_stores: 1,
        },
    ];
    for c in &before_snapshot {
        d.propose(c).unwrap();
    }
    d.snapshot().unwrap();
    let shrink = Provisioning {
        id: ProvisionId(501),
        kind: ProvisionKind::Shrink,
        nodes: 1,
        stores: vec![StoreId(4)],
        state: ProvisionState::Requested,
        requested_ms: 1_700_000_090_000,
        deadline_ms: 1_700_000_690_000,
        reason: "ctl".into(),
    };
    let after_snapshot = [
        Command::PutStore {
            meta: store_meta(5),
        },
        Command::UpdateCapacity {
            id: ProvisionId(500),
            state: ProvisionState::Online,
            stores: vec![StoreId(5)],
        },
        Command::RequestCapacity {
            record: shrink,
            max_stores: 3,
            min_stores: 1,
        },
    ];
    for c in &after_snapshot {
        d.propose(c).unwrap();
    }
}

#[test]
fn version_2_fixture_recovers_capacity_requests() {
    if std::env::var("MASTER_WRITE_FIXTURES").is_ok() {
        let _ = std::fs::remove_dir_all(v2_dir());
        write_v2_fixture(&v2_dir());
    }
    let tmp = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(v2_dir()).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), tmp.path().join(entry.file_name())).unwrap();
    }
    let (d, report) = DurableState::open(tmp.path()).unwrap();
    assert_eq!(report.snapshot_index, 6);
    assert_eq!(report.replayed, 3);
    let s = d.state();
    let e = s.provision(ProvisionId(500)).unwrap();
    assert_eq!(e.state, ProvisionState::Online);
    assert_eq!(e.stores, vec![StoreId(5)]);
    assert_eq!(e.reason, expansion().reason);
    let sh = s.provision(ProvisionId(501)).unwrap();
    assert_eq!(
        (sh.kind, sh.state),
        (ProvisionKind::Shrink, ProvisionState::Requested)
    );
    assert_eq!(s.store(StoreId(4)).unwrap().state, StoreState::Offline);
    assert_eq!(
        s.capacity(),
        Capacity {
            up: 2,
            coming: 0,
            leaving: 1
        }
    );
    let again = tempfile::tempdir().unwrap();
    write_v2_fixture(again.path());
    let (d2, _) = DurableState::open(again.path()).unwrap();
    assert_eq!(d2.state(), s);
}

fn v3_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v3")
}

/// Version 3: the `maxmemory` override in a snapshot (1 MiB) and in the log after it (2 MiB).
fn write_v3_fixture(dir: &Path) {
    let (mut d, _) = DurableState::open(dir).unwrap();
    let before_snapshot = [
        Command::Init {
            cluster_id: ClusterId(44),
            config: ClusterConfig::default(),
        },
        Command::PutStore {
            meta: store_meta(3),
        },
        Command::Bootstrap {
            range: range(10, b"", b"", 1),
        },
        Command::SetMaxMemory { bytes: 1 << 20 },
    ];
    for c in &before_snapshot {
        d.propose(c).unwrap();
    }
    d.snapshot().unwrap();
    d.propose(&Command::SetMaxMemory { bytes: 2 << 20 })
        .unwrap();
}

#[test]
fn version_3_fixture_recovers_the_maxmemory_override() {
    if std::env::var("MASTER_WRITE_FIXTURES").is_ok() {
        let _ = std::fs::remove_dir_all(v3_dir());
        write_v3_fixture(&v3_dir());
    }
    let tmp = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(v3_dir()).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), tmp.path().join(entry.file_name())).unwrap();
    }
    let (d, report) = DurableState::open(tmp.path()).unwrap();
    assert_eq!((report.snapshot_index, report.replayed), (4, 1));
    assert_eq!(d.state().max_memory(), Some(2 << 20));
    let again = tempfile::tempdir().unwrap();
    write_v3_fixture(again.path());
    let (d2, _) = DurableState::open(again.path()).unwrap();
    assert_eq!(d2.state(), d.state());
}

fn v4_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v4")
}

/// Version 4: a range in a snapshot, then a split and the merge of its two halves in the log.
fn write_v4_fixture(dir: &Path) {
    let (mut d, _) = DurableState::open(dir).unwrap();
    let before_snapshot = [
        Command::Init {
            cluster_id: ClusterId(45),
            config: ClusterConfig::default(),
        },
        Command::PutStore {
            meta: store_meta(3),
        },
        Command::Bootstrap {
            range: range(10, b"", b"", 1),
        },
        Command::ReserveIds { end: 100 },
    ];
    for c in &before_snapshot {
        d.propose(c).unwrap();
    }
    d.snapshot().unwrap();
    d.propose(&Command::Split {
        left: range(10, b"", b"m", 2),
        right: range(20, b"m", b"", 2),
    })
    .unwrap();
    d.propose(&Command::Merge {
        left: range(10, b"", b"", 3),
        right: range(20, b"m", b"", 2),
    })
    .unwrap();
}

#[test]
fn version_4_fixture_recovers_a_merge() {
    if std::env::var("MASTER_WRITE_FIXTURES").is_ok() {
        let _ = std::fs::remove_dir_all(v4_dir());
        write_v4_fixture(&v4_dir());
    }
    let tmp = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(v4_dir()).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), tmp.path().join(entry.file_name())).unwrap();
    }
    let (d, report) = DurableState::open(tmp.path()).unwrap();
    assert_eq!((report.snapshot_index, report.replayed), (4, 2));
    let ranges: Vec<_> = d.state().ranges().cloned().collect();
    assert_eq!(ranges, vec![range(10, b"", b"", 3)]);
    let again = tempfile::tempdir().unwrap();
    write_v4_fixture(again.path());
    let (d2, _) = DurableState::open(again.path()).unwrap();
    assert_eq!(d2.state(), d.state());
}
