//! The cluster-wide `maxmemory` over loopback TCP (protocol 6, `docs/format/wire.md` §4.5
//! "Memory"): a store's shards report their memory and get no override until a proxy sets
//! one; `SetMaxMemory` answers with the cluster's sums; the override reaches every shard,
//! survives a master restart, and a store that joins later gets it with its first report.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::Arc;

use ::master::core::MasterConfig;
use ::master::service::{Master, SystemClock};
use net::message::handshake::{Hello, Role};
use net::message::*;
use net::tokio_transport::Client;
use net::transport::TransportConfig;
use net::{ClusterId, NodeId, RpcError, ShardId, StoreId};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

struct Running {
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

async fn start(dir: &std::path::Path) -> Running {
    let mut cfg = MasterConfig::new(dir);
    cfg.schedule_interval_ms = 3_600_000;
    let (master, _) = Master::open(cfg, Arc::new(SystemClock)).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        master
            .serve(listener, TransportConfig::default(), 64, async {
                let _ = stopped.await;
            })
            .await;
    });
    Running { addr, stop, task }
}

async fn stop(r: Running) {
    let _ = r.stop.send(());
    r.task.await.unwrap();
}

async fn connect(addr: SocketAddr) -> Client {
    let hello = Hello::new(Role::Proxy {}, ClusterId(0), NodeId(0));
    let c = Client::connect(&addr.to_string(), hello, TransportConfig::default())
        .await
        .unwrap();
    assert!(c.peer().version >= handshake::MEMORY_VERSION);
    c
}

async fn must_call(c: &Client, m: impl Into<Message>) -> Message {
    let reply = c.call(m.into()).await.unwrap();
    assert!(!matches!(reply, Message::Error(_)), "{reply:?}");
    reply
}

async fn register(c: &Client, n: u64, mem_capacity: u64) -> StoreId {
    let store = StoreInfo {
        store_id: StoreId(0),
        addr: format!("127.0.0.{n}:7000"),
        shard_addrs: vec![format!("127.0.0.{n}:7001"), format!("127.0.0.{n}:7002")],
        labels: Vec::new(),
    };
    let reg = StoreRegister {
        store,
        mem_capacity,
        disk_capacity: 1 << 30,
    };
    match must_call(c, reg).await {
        Message::StoreRegisterResp(r) => r.store_id,
        other => panic!("{other:?}"),
    }
}

/// Shard `shard` of `store` reports (budget, used, hot, cold, keys); the setting it gets.
async fn report(c: &Client, store: StoreId, shard: u32, figures: [u64; 5]) -> Option<u64> {
    let m = ShardMemory {
        store_id: store,
        shard_id: ShardId(shard),
        budget_bytes: figures[0],
        used_bytes: figures[1],
        hot_value_bytes: figures[2],
        cold_value_bytes: figures[3],
        keys: figures[4],
    };
    match must_call(c, m).await {
        Message::MemorySetting(s) => s.maxmemory,
        other => panic!("{other:?}"),
    }
}

async fn cluster(c: &Client) -> ClusterMemory {
    match must_call(c, GetClusterMemory {}).await {
        Message::ClusterMemory(m) => m,
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_maxmemory_set_through_the_master_reaches_every_shard_and_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let run = start(dir.path()).await;
    let c = connect(run.addr).await;
    let a = register(&c, 1, 0).await;
    assert_eq!(report(&c, a, 0, [32 << 20, 1000, 600, 0, 10]).await, None);
    assert_eq!(report(&c, a, 1, [32 << 20, 2000, 900, 50, 20]).await, None);
    let m = cluster(&c).await;
    assert_eq!(m.maxmemory_override, None);
    assert_eq!(m.node_maxmemory, 64 << 20, "the budgets its shards apply");
    assert_eq!(
        (m.maxmemory_total, m.used_bytes, m.hot_value_bytes),
        (64 << 20, 3000, 1500)
    );
    assert_eq!(
        (m.cold_value_bytes, m.keys, m.stores, m.shards),
        (50, 30, 1, 2)
    );

    let Message::ClusterMemory(set) = must_call(
        &c,
        SetMaxMemory {
            maxmemory_bytes: 1 << 20,
        },
    )
    .await
    else {
        panic!()
    };
    assert_eq!(
        (set.maxmemory_override, set.node_maxmemory),
        (Some(1 << 20), 1 << 20)
    );
    assert_eq!(
        report(&c, a, 1, [512 << 10, 2000, 900, 50, 20]).await,
        Some(1 << 20)
    );

    // A report from a shard the store does not have is refused.
    let bad = c
        .call(
            ShardMemory {
                store_id: a,
                shard_id: ShardId(2),
                budget_bytes: 0,
                used_bytes: 0,
                hot_value_bytes: 0,
                cold_value_bytes: 0,
                keys: 0,
            }
            .into(),
        )
        .await
        .unwrap();
    assert!(
        matches!(bad, Message::Error(RpcError::BadRequest { .. })),
        "{bad:?}"
    );
    drop(c);
    stop(run).await;

    // After a restart the override is still there, and a store that joins gets it.
    let run = start(dir.path()).await;
    let c = connect(run.addr).await;
    assert_eq!(cluster(&c).await.maxmemory_override, Some(1 << 20));
    let b = register(&c, 2, 0).await;
    assert_eq!(report(&c, b, 0, [0, 10, 0, 0, 0]).await, Some(1 << 20));
    assert_eq!(
        report(&c, a, 0, [512 << 10, 10, 0, 0, 0]).await,
        Some(1 << 20)
    );
    drop(c);
    stop(run).await;
}
