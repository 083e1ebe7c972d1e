//! End to end over loopback TCP: a master on 127.0.0.1:0 driven with
//! `net::tokio_transport::Client` the way DS nodes and proxies will drive it — register,
//! bootstrap, heartbeats and operators, routes, splits, ids, TSO — then restarted on the same
//! data dir: ids and timestamps keep increasing, the routes survive.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::Arc;

use ::master::core::MasterConfig;
use ::master::service::{Master, SystemClock};
use bytes::Bytes;
use net::message::handshake::{Hello, Role};
use net::message::*;
use net::tokio_transport::Client;
use net::transport::TransportConfig;
use net::{ClusterId, Epoch, NodeId, RangeId, ReplicaId, RpcError, ShardId, StoreId};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

struct Running {
    master: Arc<Master>,
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

async fn start(dir: &std::path::Path) -> Running {
    let mut cfg = MasterConfig::new(dir);
    cfg.schedule_interval_ms = 3_600_000; // the test runs the scheduler itself
    let (master, _) = Master::open(cfg, Arc::new(SystemClock)).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let m = master.clone();
    let task = tokio::spawn(async move {
        m.serve(listener, TransportConfig::default(), 64, async {
            let _ = stopped.await;
        })
        .await;
    });
    Running {
        master,
        addr,
        stop,
        task,
    }
}

async fn stop(r: Running) {
    let _ = r.stop.send(());
    r.task.await.unwrap();
    drop(r.master);
}

async fn connect(addr: SocketAddr) -> Client {
    let hello = Hello::new(Role::DsNode {}, ClusterId(0), NodeId(0));
    Client::connect(&addr.to_string(), hello, TransportConfig::default())
        .await
        .unwrap()
}

async fn must_call(c: &Client, m: impl Into<Message>) -> Message {
    let reply = c.call(m.into()).await.unwrap();
    assert!(!matches!(reply, Message::Error(_)), "{reply:?}");
    reply
}

async fn must_fail(c: &Client, m: impl Into<Message>) -> RpcError {
    match c.call(m.into()).await.unwrap() {
        Message::Error(e) => e,
        other => panic!("expected an error, got {other:?}"),
    }
}

/// A store with one shard (so one first range); `bootstrap_gives_…` covers several shards.
fn store_info(n: u64) -> StoreInfo {
    store_with_shards(n, 1)
}

fn store_with_shards(n: u64, shards: u16) -> StoreInfo {
    StoreInfo {
        store_id: StoreId(0),
        addr: format!("127.0.0.{n}:7000"),
        shard_addrs: (1..=shards)
            .map(|s| format!("127.0.0.{n}:{}", 7000 + s))
            .collect(),
        labels: vec![("zone".into(), format!("z{n}"))],
    }
}

async fn tso(c: &Client, count: u32) -> u64 {
    match must_call(c, TsoRequest { count }).await {
        Message::TsoBatch(b) => {
            assert_eq!(b.count, count);
            b.first.0
        }
        other => panic!("{other:?}"),
    }
}

async fn heartbeat(c: &Client, range: &RangeDescriptor) -> Message {
    c.call(
        RangeHeartbeat {
            range: range.clone(),
            leader: range.leader.unwrap(),
            stats: RangeStats::default(),
            pending: vec![],
            down: vec![],
        }
        .into(),
    )
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bootstrap_gives_each_shard_of_the_first_store_one_range_of_the_slots() {
    let dir = tempfile::tempdir().unwrap();
    let run = start(dir.path()).await;
    let c = connect(run.addr).await;
    let Message::StoreRegisterResp(r) = must_call(
        &c,
        StoreRegister {
            store: store_with_shards(1, 4),
            mem_capacity: 0,
            disk_capacity: 0,
        },
    )
    .await
    else {
        panic!()
    };
    // Any shard may ask; the first ranges go one to each shard.
    let boot = Bootstrap {
        store_id: r.store_id,
        shard_id: ShardId(2),
    };
    let Message::BootstrapResp(b) = must_call(&c, boot).await else {
        panic!()
    };
    assert!(b.created);
    assert_eq!(b.ranges.len(), 4);
    let starts: Vec<Bytes> = b.ranges.iter().map(|r| r.start.clone()).collect();
    let expected: Vec<Bytes> = [0u16, 4096, 8192, 12288]
        .iter()
        .map(|&s| {
            if s == 0 {
                Bytes::new()
            } else {
                net::keyspace::slot_start(s)
            }
        })
        .collect();
    assert_eq!(starts, expected);
    for (i, range) in b.ranges.iter().enumerate() {
        let end = b
            .ranges
            .get(i + 1)
            .map_or_else(Bytes::new, |n| n.start.clone());
        assert_eq!(range.end, end, "the ranges tile the keyspace");
        assert_eq!(
            range.epoch,
            Epoch {
                conf_ver: 1,
                version: 1
            }
        );
        assert_eq!(range.replicas.len(), 1);
        assert_eq!(range.replicas[0].shard_id, ShardId(i as u32));
        assert_eq!(range.leader, Some(range.replicas[0].replica_id));
    }
    // A Redis key routes to the range of its slot, on the shard that owns it.
    for key in [&b"a"[..], b"user:1", b"{x}y", b"zz"] {
        let slot = net::keyspace::slot(key);
        let Message::Route(route) = must_call(
            &c,
            RouteByKey {
                key: net::keyspace::meta_key(net::keyspace::Db::ZERO, key),
            },
        )
        .await
        else {
            panic!()
        };
        assert_eq!(
            route.range.unwrap().id,
            b.ranges[usize::from(slot / 4096)].id
        );
        let shard = usize::from(slot / 4096) + 1;
        assert_eq!(
            route.leader_addr,
            Some(format!("127.0.0.1:{}", 7000 + shard))
        );
    }
    // Idempotent, and kept across a restart.
    stop(run).await;
    let run = start(dir.path()).await;
    let c = connect(run.addr).await;
    let Message::BootstrapResp(again) = must_call(&c, boot).await else {
        panic!()
    };
    assert!(!again.created);
    assert_eq!(again.ranges, b.ranges);
    stop(run).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn master_serves_stores_and_proxies_and_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let run = start(dir.path()).await;
    let c = connect(run.addr).await;
    assert_eq!(c.peer().cluster_id, run.master.cluster_id());

    // Register three stores; the master allocates their ids.
    let mut stores = Vec::new();
    for n in 1..=3 {
        let Message::StoreRegisterResp(r) = must_call(
            &c,
            StoreRegister {
                store: store_info(n),
                mem_capacity: 0,
                disk_capacity: 0,
            },
        )
        .await
        else {
            panic!()
        };
        assert!(!r.bootstrapped);
        stores.push(r.store_id);
    }
    assert!(stores.windows(2).all(|w| w[0] < w[1]));

    // Bad input gets errors and the master keeps serving.
    let mut stranger = store_info(9);
    stranger.store_id = StoreId(999_999);
    let e = must_fail(
        &c,
        StoreHeartbeat {
            store: stranger,
            stats: StoreStats::default(),
        },
    )
    .await;
    assert!(matches!(e, RpcError::BadRequest { .. }), "{e}");
    let e = must_fail(&c, TsoRequest { count: 0 }).await;
    assert!(matches!(e, RpcError::BadRequest { .. }), "{e}");

    // Bootstrap: the first range covers everything, with one voter on store 1, shard 0.
    let boot = Bootstrap {
        store_id: stores[0],
        shard_id: ShardId(0),
    };
    let Message::BootstrapResp(b) = must_call(&c, boot).await else {
        panic!()
    };
    assert!(b.created);
    let [first] = &b.ranges[..] else {
        panic!("one shard, one first range: {:?}", b.ranges)
    };
    let first = first.clone();
    assert!(first.start.is_empty() && first.end.is_empty());
    let Message::BootstrapResp(again) = must_call(&c, boot).await else {
        panic!()
    };
    assert!(!again.created, "bootstrap is idempotent");
    assert_eq!(again.ranges, vec![first.clone()]);

    // Store heartbeat.
    let mut info = store_info(1);
    info.store_id = stores[0];
    let Message::StoreHeartbeatResp(h) = must_call(
        &c,
        StoreHeartbeat {
            store: info,
            stats: StoreStats::default(),
        },
    )
    .await
    else {
        panic!()
    };
    assert_eq!(h.cluster_id, run.master.cluster_id());

    // Route lookups.
    let Message::Route(route) = must_call(
        &c,
        RouteByKey {
            key: Bytes::from_static(b"anything"),
        },
    )
    .await
    else {
        panic!()
    };
    assert_eq!(route.range.as_ref().unwrap().id, first.id);
    assert_eq!(route.leader_addr.as_deref(), Some("127.0.0.1:7001"));
    let Message::Route(none) = must_call(
        &c,
        RouteById {
            range_id: RangeId(424_242),
        },
    )
    .await
    else {
        panic!()
    };
    assert!(none.range.is_none());

    // The scheduler adds a replica: learner first, promoted once the leader reports it.
    let scheduled = run.master.tick().await;
    assert_eq!(scheduled.len(), 1, "{scheduled:?}");
    let Message::RangeHeartbeatResp(r) = heartbeat(&c, &first).await else {
        panic!()
    };
    let Some(Operator::AddLearner {
        store,
        shard,
        replica_id,
    }) = r.operator
    else {
        panic!("{r:?}")
    };
    assert!(store == stores[1] || store == stores[2]);
    let mut grown = first.clone();
    grown.epoch.conf_ver += 1;
    grown.replicas.push(Replica {
        replica_id,
        store_id: store,
        shard_id: shard,
        role: ReplicaRole::Learner {},
    });
    let Message::RangeHeartbeatResp(r) = heartbeat(&c, &grown).await else {
        panic!()
    };
    assert_eq!(r.operator, Some(Operator::PromoteLearner { replica_id }));
    grown.epoch.conf_ver += 1;
    grown.replicas[1].role = ReplicaRole::Voter {};
    let Message::RangeHeartbeatResp(r) = heartbeat(&c, &grown).await else {
        panic!()
    };
    assert_eq!(r.operator, None, "the operator is done");

    // A heartbeat with an older epoch is refused with the current descriptor.
    let Message::Error(RpcError::EpochMismatch { ranges }) = heartbeat(&c, &first).await else {
        panic!()
    };
    assert_eq!(ranges, vec![grown.clone()]);

    // The full route table, and "unchanged" for a current copy.
    let Message::RouteTable(t) = must_call(&c, GetRouteTable { known_version: 0 }).await else {
        panic!()
    };
    assert_eq!(t.ranges, vec![grown.clone()]);
    assert_eq!(t.stores.len(), 3);
    let Message::RouteTable(t2) = must_call(
        &c,
        GetRouteTable {
            known_version: t.route_version,
        },
    )
    .await
    else {
        panic!()
    };
    assert!(t2.unchanged && t2.ranges.is_empty());

    // Split at "m": ids first, then the report.
    let Message::SplitIds(ids) = must_call(
        &c,
        SplitRequest {
            range_id: grown.id,
            epoch: grown.epoch,
            split_key: Bytes::from_static(b"m"),
        },
    )
    .await
    else {
        panic!()
    };
    assert_eq!(ids.new_replica_ids.len(), 2);
    let mut left = grown.clone();
    left.end = Bytes::from_static(b"m");
    left.epoch.version += 1;
    let right = RangeDescriptor {
        id: ids.new_range_id,
        start: Bytes::from_static(b"m"),
        end: Bytes::new(),
        epoch: left.epoch,
        replicas: grown
            .replicas
            .iter()
            .zip(&ids.new_replica_ids)
            .map(|(r, id)| Replica {
                replica_id: *id,
                ..*r
            })
            .collect(),
        leader: Some(ids.new_replica_ids[0]),
    };
    must_call(
        &c,
        SplitReport {
            left: left.clone(),
            right: right.clone(),
        },
    )
    .await;
    let Message::Route(r) = must_call(
        &c,
        RouteByKey {
            key: Bytes::from_static(b"zebra"),
        },
    )
    .await
    else {
        panic!()
    };
    assert_eq!(r.range.unwrap().id, right.id);
    // A retried report (reply lost) is accepted again; a report of an older split is not.
    must_call(
        &c,
        SplitReport {
            left: left.clone(),
            right: right.clone(),
        },
    )
    .await;
    let mut older = left.clone();
    older.epoch.version -= 1;
    let mut other_right = right.clone();
    other_right.start = Bytes::from_static(b"n");
    older.end = other_right.start.clone();
    let e = must_fail(
        &c,
        SplitReport {
            left: older,
            right: other_right,
        },
    )
    .await;
    assert!(matches!(e, RpcError::EpochMismatch { .. }), "{e}");
    // Splits of unknown ranges and keys outside the range are refused.
    let e = must_fail(
        &c,
        SplitRequest {
            range_id: RangeId(777_777),
            epoch: Epoch::default(),
            split_key: Bytes::from_static(b"q"),
        },
    )
    .await;
    assert_eq!(
        e,
        RpcError::RangeNotFound {
            range_id: RangeId(777_777)
        }
    );
    let e = must_fail(
        &c,
        SplitRequest {
            range_id: left.id,
            epoch: left.epoch,
            split_key: Bytes::from_static(b"z"),
        },
    )
    .await;
    assert!(matches!(e, RpcError::BadRequest { .. }), "key outside: {e}");

    // Ids and timestamps before the restart.
    let Message::IdBlock(ids_before) = must_call(&c, AllocIds { count: 10 }).await else {
        panic!()
    };
    let mut last_ts = 0;
    for n in [1, 100, 1, 1000] {
        let ts = tso(&c, n).await;
        assert!(ts > last_ts);
        last_ts = ts + u64::from(n) - 1;
    }
    drop(c);
    stop(run).await;

    // Restart on the same dir.
    let run = start(dir.path()).await;
    let c = connect(run.addr).await;
    let ts = tso(&c, 1).await;
    assert!(ts > last_ts, "timestamp went back across a restart");
    let Message::IdBlock(ids_after) = must_call(&c, AllocIds { count: 10 }).await else {
        panic!()
    };
    assert!(ids_after.first >= ids_before.first + 10, "id reused");
    let Message::RouteTable(t) = must_call(&c, GetRouteTable { known_version: 0 }).await else {
        panic!()
    };
    assert_eq!(t.ranges, vec![left, right]);
    let replica_ids: Vec<ReplicaId> = t.ranges[1].replicas.iter().map(|r| r.replica_id).collect();
    assert_eq!(replica_ids, ids.new_replica_ids);
    let m = run.master.metrics().render();
    assert!(m.contains("master_rpc_total{kind=\"TsoRequest\"} 1"), "{m}");
    stop(run).await;
}

async fn watch(c: &Client, known_version: u64, wait_ms: u32) -> RouteTable {
    match must_call(
        c,
        WatchRouteTable {
            known_version,
            wait_ms,
        },
    )
    .await
    {
        Message::RouteTable(t) => t,
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_watch_answers_at_the_change_and_otherwise_when_its_wait_ends() {
    let dir = tempfile::tempdir().unwrap();
    let run = start(dir.path()).await;
    let c = connect(run.addr).await;
    let first = watch(&c, u64::MAX, 4_000).await;
    assert!(!first.unchanged, "a caller without a table gets it at once");

    // Nothing changes: the watch waits its whole (short) wait, then says so.
    let t = std::time::Instant::now();
    let quiet = watch(&c, first.route_version, 300).await;
    assert!(quiet.unchanged && quiet.ranges.is_empty());
    assert_eq!(quiet.route_version, first.route_version);
    assert!(
        t.elapsed() >= std::time::Duration::from_millis(290),
        "{:?}",
        t.elapsed()
    );

    // A store registers while a watch waits: the watch answers with the new table at once,
    // and other requests on the same connection are served meanwhile.
    let pending = {
        let c = connect(run.addr).await;
        tokio::spawn(async move {
            let t = std::time::Instant::now();
            (watch(&c, first.route_version, 4_000).await, t.elapsed())
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let other = tso(&c, 1).await;
    assert!(other > 0);
    must_call(
        &c,
        StoreRegister {
            store: store_info(7),
            mem_capacity: 0,
            disk_capacity: 0,
        },
    )
    .await;
    let (pushed, waited) = pending.await.unwrap();
    assert!(!pushed.unchanged);
    assert!(pushed.route_version > first.route_version);
    assert!(pushed.stores.iter().any(|s| s.addr == "127.0.0.7:7000"));
    assert!(
        waited < std::time::Duration::from_millis(2_000),
        "the watch answered the change after {waited:?}, not at it"
    );

    // A wait above the cap is cut to the cap (below the 5 s request timeout).
    let t = std::time::Instant::now();
    let capped = watch(&c, pushed.route_version, u32::MAX).await;
    assert!(capped.unchanged);
    let took = t.elapsed();
    assert!(took < std::time::Duration::from_millis(4_900), "{took:?}");
    stop(run).await;
}
