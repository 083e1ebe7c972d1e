//! Malformed and out-of-order RPCs get errors with the right codes, and the master keeps
//! serving: heartbeats from unknown stores or for unknown ranges, stale epochs, an epoch jump
//! no membership change explains, splits of
//! ranges that do not exist or that do not cover the old range, response kinds sent as
//! requests, counts out of bounds, and a peer that sends garbage bytes.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use ::master::core::MasterConfig;
use ::master::service::{Master, SystemClock};
use bytes::Bytes;
use net::message::handshake::{Hello, Role};
use net::message::*;
use net::tokio_transport::Client;
use net::transport::TransportConfig;
use net::{ClusterId, Epoch, NodeId, RangeId, ReplicaId, RpcError, ShardId, StoreId, Timestamp};
use tokio::io::AsyncWriteExt;

async fn call(c: &Client, m: impl Into<Message>) -> Result<Message, RpcError> {
    match c.call(m.into()).await.unwrap() {
        Message::Error(e) => Err(e),
        other => Ok(other),
    }
}

fn is_bad_request(r: Result<Message, RpcError>) -> bool {
    matches!(r, Err(RpcError::BadRequest { .. }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_errors_and_the_master_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = MasterConfig::new(dir.path());
    cfg.schedule_interval_ms = 3_600_000;
    let (m, _) = Master::open(cfg, Arc::new(SystemClock)).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server =
        tokio::spawn(
            m.clone()
                .serve(listener, TransportConfig::default(), 16, async move {
                    let _ = stopped.await;
                }),
        );
    let hello = Hello::new(Role::DsNode {}, ClusterId(0), NodeId(0));
    let c = Client::connect(&addr, hello, TransportConfig::default())
        .await
        .unwrap();

    // Before any store or range exists.
    let store = StoreInfo {
        store_id: StoreId(0),
        addr: "h:1".into(),
        shard_addrs: vec!["h:2".into()],
        labels: vec![],
    };
    let unknown = Bootstrap {
        store_id: StoreId(12345),
        shard_id: ShardId(0),
    };
    assert!(
        is_bad_request(call(&c, unknown).await),
        "bootstrap by a stranger"
    );
    let mut forged = store.clone();
    forged.store_id = StoreId(999_999);
    let reg = |s: StoreInfo| StoreRegister {
        store: s,
        mem_capacity: 0,
        disk_capacity: 0,
    };
    assert!(
        is_bad_request(call(&c, reg(forged.clone())).await),
        "self-chosen store id"
    );
    let mut no_shards = store.clone();
    no_shards.shard_addrs.clear();
    assert!(is_bad_request(call(&c, reg(no_shards)).await));
    let hb = StoreHeartbeat {
        store: forged,
        stats: StoreStats::default(),
    };
    assert!(
        is_bad_request(call(&c, hb).await),
        "heartbeat from unknown store"
    );

    // A store and the first range.
    let Ok(Message::StoreRegisterResp(r)) = call(&c, reg(store.clone())).await else {
        panic!()
    };
    // A second store at the same address is refused; the same store again is fine.
    assert!(
        is_bad_request(call(&c, reg(store.clone())).await),
        "duplicate address"
    );
    let mut again = store.clone();
    again.store_id = r.store_id;
    assert!(matches!(
        call(&c, reg(again)).await,
        Ok(Message::StoreRegisterResp(same)) if same.store_id == r.store_id
    ));
    let boot = Bootstrap {
        store_id: r.store_id,
        shard_id: ShardId(0),
    };
    assert!(is_bad_request(
        call(
            &c,
            Bootstrap {
                shard_id: ShardId(5),
                ..boot
            }
        )
        .await
    ));
    let Ok(Message::BootstrapResp(b)) = call(&c, boot).await else {
        panic!()
    };
    let range = b.ranges[0].clone();
    let range_hb = |d: RangeDescriptor| RangeHeartbeat {
        leader: d.leader.unwrap(),
        range: d,
        stats: RangeStats::default(),
        pending: vec![],
        down: vec![],
    };

    // Range heartbeats: unknown range, stale epoch, leader not a replica, unknown store.
    let mut stranger = range.clone();
    stranger.id = RangeId(4242);
    assert_eq!(
        call(&c, range_hb(stranger)).await,
        Err(RpcError::RangeNotFound {
            range_id: RangeId(4242)
        })
    );
    // A jump of version (a split the master never heard of) is refused; a learner added by
    // one conf change, on another store under an allocated id, is accepted.
    let mut jumped = range.clone();
    jumped.epoch.version = 5;
    assert!(
        is_bad_request(call(&c, range_hb(jumped)).await),
        "version jump"
    );
    let mut store2 = store.clone();
    store2.addr = "h:3".into();
    let Ok(Message::StoreRegisterResp(r2)) = call(&c, reg(store2)).await else {
        panic!()
    };
    let Ok(Message::IdBlock(block)) = call(&c, AllocIds { count: 1 }).await else {
        panic!()
    };
    let mut newer = range.clone();
    newer.epoch.conf_ver += 1;
    newer.replicas.push(Replica {
        replica_id: ReplicaId(block.first),
        store_id: r2.store_id,
        shard_id: ShardId(0),
        role: ReplicaRole::Learner {},
    });
    call(&c, range_hb(newer.clone())).await.unwrap();
    assert_eq!(
        call(&c, range_hb(range.clone())).await,
        Err(RpcError::EpochMismatch {
            ranges: vec![newer.clone()]
        })
    );
    let mut bad_leader = range_hb(newer.clone());
    bad_leader.leader = ReplicaId(777);
    assert!(is_bad_request(call(&c, bad_leader).await));
    let mut ghost_store = newer.clone();
    ghost_store.epoch.conf_ver += 1;
    ghost_store.replicas.push(Replica {
        replica_id: ReplicaId(9000),
        store_id: StoreId(9000),
        shard_id: ShardId(0),
        role: ReplicaRole::Learner {},
    });
    assert!(is_bad_request(call(&c, range_hb(ghost_store)).await));

    // Splits: unknown range, key outside, halves that do not cover the range, unallocated id.
    let split = |id, key: &'static [u8]| SplitRequest {
        range_id: id,
        epoch: newer.epoch,
        split_key: Bytes::from_static(key),
    };
    assert_eq!(
        call(&c, split(RangeId(31337), b"m")).await,
        Err(RpcError::RangeNotFound {
            range_id: RangeId(31337)
        })
    );
    assert!(
        is_bad_request(call(&c, split(newer.id, b"")).await),
        "key at start"
    );
    let stale_split = SplitRequest {
        epoch: Epoch::default(),
        ..split(newer.id, b"m")
    };
    assert!(matches!(
        call(&c, stale_split).await,
        Err(RpcError::EpochMismatch { .. })
    ));
    let Ok(Message::SplitIds(ids)) = call(&c, split(newer.id, b"m")).await else {
        panic!()
    };
    let mut left = newer.clone();
    left.end = Bytes::from_static(b"m");
    left.epoch.version += 1;
    let mut right = newer.clone();
    right.id = ids.new_range_id;
    right.start = Bytes::from_static(b"n"); // gap between "m" and "n"
    right.replicas[0].replica_id = ids.new_replica_ids[0];
    right.leader = Some(ids.new_replica_ids[0]);
    let report = |l: &RangeDescriptor, r: &RangeDescriptor| SplitReport {
        left: l.clone(),
        right: r.clone(),
    };
    assert!(is_bad_request(call(&c, report(&left, &right)).await), "gap");
    let mut unallocated = right.clone();
    unallocated.start = Bytes::from_static(b"m");
    unallocated.id = RangeId(1 << 40);
    assert!(is_bad_request(call(&c, report(&left, &unallocated)).await));
    let mut ghost_left = left.clone();
    ghost_left.id = RangeId(31337);
    unallocated.id = ids.new_range_id;
    assert_eq!(
        call(&c, report(&ghost_left, &unallocated)).await,
        Err(RpcError::RangeNotFound {
            range_id: RangeId(31337)
        })
    );

    // Response kinds sent as requests, and counts out of bounds.
    let not_a_request = TsoBatch {
        first: Timestamp(1),
        count: 1,
    };
    assert!(is_bad_request(call(&c, not_a_request).await));
    assert!(is_bad_request(call(&c, AllocIds { count: 0 }).await));
    assert!(is_bad_request(call(&c, AllocIds { count: u32::MAX }).await));
    assert!(is_bad_request(
        call(&c, TsoRequest { count: 1 << 20 }).await
    ));

    // A peer that sends garbage is disconnected; everyone else is still served.
    let mut raw = tokio::net::TcpStream::connect(&addr).await.unwrap();
    raw.write_all(&[0xAB; 4096]).await.unwrap();
    drop(raw);
    let Ok(Message::TsoBatch(t)) = call(&c, TsoRequest { count: 10 }).await else {
        panic!()
    };
    assert_eq!(t.count, 10);
    let Ok(Message::Route(route)) = call(
        &c,
        RouteByKey {
            key: Bytes::from_static(b"k"),
        },
    )
    .await
    else {
        panic!()
    };
    assert_eq!(route.range, Some(newer));
    let errors = m.metrics().snapshot()["RangeHeartbeat"].errors;
    assert_eq!(errors, 5);

    let _ = stop.send(());
    server.await.unwrap();
}
