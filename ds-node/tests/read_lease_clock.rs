//! The read lease runs on the shard's clock (`server::clock`), not on the wall: three
//! replicas of range 1 in-process, each shard opened on its own `ManualClock`. While the
//! leader's clock stands still its lease never runs out, however much real time passes —
//! every read is answered from local state and no renewal round is sent — and the first read
//! after the clock is moved past the lease goes through ReadIndex, which renews it.
//!
//! Before the clock seam this could not be tested: the lease read `Instant::now()`, so a
//! test could neither hold a lease past its duration nor end one at a chosen read.
#![allow(clippy::unwrap_used)]

#[path = "common/mode.rs"]
mod mode;

use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ds_node::DsConfig;
use ds_node::config::{InitialReplica, PeerStore};
use ds_node::server::checkpoint_store::MemCheckpointStore;
use ds_node::server::clock::ManualClock;
use ds_node::server::lease::Lease;
use ds_node::server::recover::ShardStorage;
use ds_node::server::{Shard, handler, ready};
use net::keyspace::{Db, meta_key};
use net::message::RouteCtx;
use net::message::handshake::{Acceptor, Role};
use net::message::kv::{Cond, Expiry, KvOp, KvRequest, KvResponse, OpResult};
use net::transport::Handled;
use net::{ClusterId, Message, NodeId, RpcError};
use nvme::mem::MemDevice;

type Dev = Rc<MemDevice>;
type TestShard = Shard<Dev>;

fn cfg(id: u64, addrs: &[String]) -> DsConfig {
    DsConfig {
        checkpoint_mode: mode::test_checkpoint_mode(),
        data_dir: std::env::temp_dir().join("tierkv-read-lease-clock-unused"),
        store_id: id,
        shards: 1,
        pin: false,
        base_port: 0,
        log_file_bytes: 32 << 20,
        segment_bytes: 1536 << 10,
        tick_ms: 5,
        election_ticks: 10,
        heartbeat_ticks: 2,
        initial_replicas: (1..=3)
            .map(|i| InitialReplica {
                replica_id: i,
                store_id: i,
                shard_id: 0,
            })
            .collect(),
        peers: (1..=3)
            .map(|i| PeerStore {
                store_id: i,
                shard_addrs: vec![addrs[i as usize - 1].clone()],
            })
            .collect(),
        ..DsConfig::default()
    }
}

/// One store: its shard, its clock and the task serving its listener.
struct Store {
    shard: Rc<TestShard>,
    clock: Rc<ManualClock>,
    _serving: ds_node::core::OwnedTask,
}

async fn start_store(id: u64, addrs: &[String]) -> Store {
    let cfg = cfg(id, addrs);
    let listener = ds_node::core::Listener::bind(&addrs[id as usize - 1]).unwrap();
    let transport = cfg.transport().unwrap();
    let clock = Rc::new(ManualClock::new());
    let storage = ShardStorage {
        device: Rc::new(MemDevice::new(cfg.log_file_bytes, 4096).unwrap()),
        fresh: true,
        checkpoints: Rc::new(MemCheckpointStore::new()),
        clock: Rc::clone(&clock) as _,
    };
    let election = cfg.tick() * u32::try_from(cfg.election_ticks).unwrap();
    let shard = Shard::open_on(cfg, 0, net::StoreId(id), ClusterId(0), storage)
        .await
        .unwrap();
    // A shard refuses votes for an election timeout after it starts (on its clock).
    clock.advance(election * 2);
    shard
        .create_range(shard.initial_descriptor())
        .await
        .unwrap();
    ds_node::core::spawn(ready::run(Rc::clone(&shard)));
    let acceptor = Acceptor {
        role: Role::DsNode {},
        cluster_id: ClusterId(0),
        node_id: NodeId(id),
    };
    let h = Rc::clone(&shard);
    let handler = Rc::new(move |m| handler::handle(&h, m));
    let serving = ds_node::core::spawn_owned(async move {
        let _ = listener.serve(acceptor, transport, 64, handler).await;
    });
    Store {
        shard,
        clock,
        _serving: serving,
    }
}

fn free_addr() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
}

async fn leader_of(stores: &[Store]) -> &Store {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        for s in stores {
            let leads = s
                .shard
                .state()
                .peers()
                .get(&net::RangeId(1))
                .is_some_and(|p| p.is_leader());
            if leads {
                return s;
            }
        }
        glommio::timer::sleep(Duration::from_millis(5)).await;
    }
    panic!("no leader elected");
}

fn key() -> Bytes {
    Bytes::from_static(b"leased")
}

/// Sends `op` to the leader's shard until it is answered by it (not a redirection).
async fn call(shard: &Rc<TestShard>, op: KvOp) -> KvResponse {
    let mk = meta_key(Db::default(), &key());
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        let ctx = shard
            .state()
            .peers()
            .get(&net::RangeId(1))
            .map(|p| RouteCtx {
                range_id: p.desc().id,
                epoch: p.desc().epoch,
            });
        assert!(shard.state().peers()[&net::RangeId(1)].desc().contains(&mk));
        let req = Message::KvRequest(KvRequest {
            ctx: ctx.unwrap(),
            op: op.clone(),
        });
        let msg = match handler::handle(shard, req) {
            Handled::Now(m) => m,
            Handled::Later(f) => f.await,
        };
        match msg {
            Some(Message::KvResponse(KvResponse::Err {
                error: RpcError::NotLeader { .. } | RpcError::ServerBusy {},
            })) => glommio::timer::sleep(Duration::from_millis(2)).await,
            Some(Message::KvResponse(r)) => return r,
            other => panic!("unexpected answer {other:?}"),
        }
    }
    panic!("no answer within 5 s");
}

async fn must_read(shard: &Rc<TestShard>) {
    match call(shard, KvOp::StrGet { key: key() }).await {
        KvResponse::Ok {
            result: OpResult::Value { value: Some(v) },
        } => assert_eq!(v, Bytes::from_static(b"v")),
        other => panic!("read failed: {other:?}"),
    }
}

/// (lease reads, ReadIndex reads, lease renewals) of `shard`.
fn reads(shard: &TestShard) -> (u64, u64, u64) {
    let m = shard.metrics();
    (
        m.lease_reads_total,
        m.read_index_total,
        m.lease_renewals_total,
    )
}

#[test]
fn a_leader_reads_locally_until_its_clock_passes_the_lease_then_through_read_index() {
    glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .io_memory(512 << 10)
        .spawn(|| async move { lease_follows_the_manual_clock().await })
        .unwrap()
        .join()
        .unwrap();
}

async fn lease_follows_the_manual_clock() {
    let addrs: Vec<String> = (0..3).map(|_| free_addr()).collect();
    let mut stores = Vec::new();
    for id in 1..=3 {
        stores.push(start_store(id, &addrs).await);
    }
    let leader = leader_of(&stores).await;
    let set = KvOp::StrSet {
        key: key(),
        value: Bytes::from_static(b"v"),
        expiry: Expiry::Persist {},
        cond: Cond::Always {},
        get_old: false,
    };
    // Committed in the leader's term: the lease runs from the proposal, on its clock.
    assert!(matches!(
        call(&leader.shard, set).await,
        KvResponse::Ok { .. }
    ));
    let cfg = leader.shard.cfg();
    let lease = Lease::duration(cfg.tick(), cfg.election_ticks);
    let before = reads(&leader.shard);
    let real = Instant::now();
    for _ in 0..10 {
        must_read(&leader.shard).await;
        glommio::timer::sleep(lease / 2).await;
    }
    assert!(
        real.elapsed() > lease * 4,
        "real time passed the lease several times"
    );
    let (lease_reads, read_index, renewals) = reads(&leader.shard);
    assert_eq!(
        lease_reads - before.0,
        10,
        "every read is served from the lease"
    );
    assert_eq!(read_index, before.1, "no read went through ReadIndex");
    assert_eq!(
        renewals, before.2,
        "a lease that is not ending is not renewed"
    );

    leader.clock.advance(lease * 2);
    must_read(&leader.shard).await;
    let (lease_reads2, read_index2, _) = reads(&leader.shard);
    assert_eq!(
        read_index2,
        read_index + 1,
        "the read after the lease uses ReadIndex"
    );
    assert_eq!(
        lease_reads2, lease_reads,
        "no read was served from an expired lease"
    );

    // The ReadIndex round's quorum renewed the lease from when it was sent.
    must_read(&leader.shard).await;
    let (lease_reads3, read_index3, _) = reads(&leader.shard);
    assert_eq!(
        lease_reads3,
        lease_reads2 + 1,
        "the renewed lease serves reads again"
    );
    assert_eq!(read_index3, read_index2);
    for s in &stores {
        s.shard.shutdown();
    }
}
