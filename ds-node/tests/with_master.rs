//! A DS node with a real master (in-process, on tokio): the node registers its shard
//! addresses, the master assigns the store id, the node asks for the bootstrap and every shard
//! creates its first range; the ranges then serve writes and reads routed with the master's
//! descriptors, and the leaders' range heartbeats reach the master. A shard whose first range
//! the master recorded but the node never made durable creates it when it starts again.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use bytes::Bytes;
use ds_node::{DsConfig, run};
use net::message::handshake::{Hello, Role};
use net::message::kv::{Cond, Expiry, KvOp, KvRequest, KvResponse, OpResult};
use net::message::{GetRouteTable, RouteCtx};
use net::transport::TransportConfig;
use net::{ClusterId, Message, NodeId};

#[test]
fn registers_bootstraps_and_serves_the_first_range() {
    let root = std::env::temp_dir().join(format!("ds-master-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(root.join("master")).unwrap();
    let master = test_support::master::start(root.join("master"), |_| {});
    let maddr = master.addr().to_string();
    let node = run(DsConfig {
        checkpoint_mode: common::mode::test_checkpoint_mode(),
        data_dir: root.join("ds"),
        shards: 2,
        pin: false,
        base_port: 0,
        master_addr: Some(maddr.clone()),
        log_file_bytes: 64 << 20,
        segment_bytes: 4 << 20,
        zero_log_file: false,
        tick_ms: 10,
        heartbeat_ms: 100,
        io_memory_bytes: 1 << 20,
        ..DsConfig::default()
    })
    .unwrap();
    let shard0 = node.shard_addrs[0].clone();
    let store_id = node.store_id;
    assert_ne!(store_id, 0);
    let ok = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .io_memory(512 << 10)
        .spawn(move || async move {
            let hello = Hello::new(Role::Client {}, ClusterId(0), NodeId(0));
            let m =
                net::glommio_transport::Client::connect(&maddr, hello, TransportConfig::default())
                    .await
                    .unwrap();
            let table = match m
                .call(Message::GetRouteTable(GetRouteTable { known_version: 0 }))
                .await
                .unwrap()
            {
                Message::RouteTable(t) => t,
                other => panic!("{other:?}"),
            };
            let store = table
                .stores
                .iter()
                .find(|s| s.store_id.0 == store_id)
                .unwrap();
            assert_eq!(store.shard_addrs.len(), 2);
            let range = table.ranges.first().unwrap().clone();
            assert_eq!(range.replicas[0].store_id.0, store_id);
            let ctx = RouteCtx {
                range_id: range.id,
                epoch: range.epoch,
            };
            // A shard of the cluster refuses a connector without the cluster's id.
            let hello = Hello {
                cluster_id: m.peer().cluster_id,
                ..hello
            };
            let c =
                net::glommio_transport::Client::connect(&shard0, hello, TransportConfig::default())
                    .await
                    .unwrap();
            let mut wrote = false;
            for _ in 0..300 {
                let op = KvOp::StrSet {
                    key: Bytes::from_static(b"hello"),
                    value: Bytes::from_static(b"world"),
                    expiry: Expiry::Persist {},
                    cond: Cond::Always {},
                    get_old: false,
                };
                match c
                    .call(Message::KvRequest(KvRequest { ctx, op }))
                    .await
                    .unwrap()
                {
                    Message::KvResponse(KvResponse::Ok { .. }) => {
                        wrote = true;
                        break;
                    }
                    _ => glommio::timer::sleep(Duration::from_millis(10)).await,
                }
            }
            assert!(wrote);
            let op = KvOp::StrGet {
                key: Bytes::from_static(b"hello"),
            };
            let r = c
                .call(Message::KvRequest(KvRequest { ctx, op }))
                .await
                .unwrap();
            assert!(matches!(
                r,
                Message::KvResponse(KvResponse::Ok {
                    result: OpResult::Value { value: Some(_) }
                })
            ));
            // Range heartbeats tell the master who leads.
            for _ in 0..100 {
                glommio::timer::sleep(Duration::from_millis(50)).await;
                if let Message::RouteTable(t) = m
                    .call(Message::GetRouteTable(GetRouteTable { known_version: 0 }))
                    .await
                    .unwrap()
                {
                    if t.ranges.first().is_some_and(|r| r.leader.is_some()) {
                        return true;
                    }
                }
            }
            false
        })
        .unwrap()
        .join()
        .unwrap();
    assert!(ok, "the master never learnt the leader");
    node.shutdown().unwrap();
    master.stop();
    let _ = std::fs::remove_dir_all(&root);
}

mod common;

/// A glommio client of the master for the raw RPCs this test sends itself.
async fn master_client(maddr: &str) -> net::glommio_transport::Client {
    let hello = Hello::new(Role::DsNode {}, ClusterId(0), NodeId(0));
    net::glommio_transport::Client::connect(maddr, hello, TransportConfig::default())
        .await
        .unwrap()
}

/// Writes `key = key` through its range's leader and reads it back.
async fn write_and_read(maddr: &str, key: &[u8]) {
    let v = Bytes::copy_from_slice(key);
    let set = KvOp::StrSet {
        key: v.clone(),
        value: v.clone(),
        expiry: Expiry::Persist {},
        cond: Cond::Always {},
        get_old: false,
    };
    assert!(matches!(
        common::must_call(maddr, key, set).await,
        KvResponse::Ok { .. }
    ));
    let got = common::must_call(maddr, key, KvOp::StrGet { key: v.clone() }).await;
    assert_eq!(
        got,
        KvResponse::Ok {
            result: OpResult::Value { value: Some(v) }
        }
    );
}

/// Keys whose hash slots fall in each half of the slot space.
fn keys_in_both_halves() -> Vec<Vec<u8>> {
    let low = (0..)
        .map(|i| format!("k{i}"))
        .find(|k| net::keyspace::slot(k.as_bytes()) < 8192);
    let high = (0..)
        .map(|i| format!("k{i}"))
        .find(|k| net::keyspace::slot(k.as_bytes()) >= 8192);
    vec![low.unwrap().into_bytes(), high.unwrap().into_bytes()]
}

#[test]
fn every_shard_of_the_first_store_leads_one_first_range_even_after_a_lost_bootstrap() {
    let root = std::env::temp_dir().join(format!("ds-master-spread-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);

    // A fresh cluster: one range per shard, each led by its own shard.
    let master =
        test_support::master::start(root.join("m1"), test_support::master::fast_scheduling);
    let maddr = master.addr().to_string();
    let mut cfg = common::node_cfg(&root, "ds1", &maddr);
    cfg.shards = 2;
    let node = run(cfg).unwrap();
    let store_id = node.store_id;
    let m = maddr.clone();
    common::on_executor(move || {
        Box::pin(async move {
            let t = common::table(&m).await;
            assert_eq!(t.ranges.len(), 2, "{:?}", t.ranges);
            for (i, r) in t.ranges.iter().enumerate() {
                assert_eq!(r.replicas.len(), 1);
                assert_eq!(r.replicas[0].store_id.0, store_id);
                assert_eq!(r.replicas[0].shard_id.0 as usize, i);
            }
            assert_eq!(t.ranges[1].start, net::keyspace::slot_start(8192));
            for k in keys_in_both_halves() {
                write_and_read(&m, &k).await;
            }
        })
    });
    node.shutdown().unwrap();
    master.stop();

    // The master recorded the bootstrap but the node stopped before any shard made its
    // range durable: on restart every shard asks again and creates its own.
    let master =
        test_support::master::start(root.join("m2"), test_support::master::fast_scheduling);
    let maddr = master.addr().to_string();
    let m = maddr.clone();
    let store = common::on_executor(move || {
        Box::pin(async move {
            let c = master_client(&m).await;
            let info = net::message::StoreInfo {
                store_id: net::StoreId(0),
                addr: "127.0.0.1:1".into(),
                shard_addrs: vec!["127.0.0.1:1".into(), "127.0.0.1:2".into()],
                labels: Vec::new(),
            };
            let Ok(Message::StoreRegisterResp(r)) = c
                .call(Message::StoreRegister(net::message::StoreRegister {
                    store: info,
                    mem_capacity: 0,
                    disk_capacity: 0,
                }))
                .await
            else {
                panic!("register")
            };
            let boot = net::message::Bootstrap {
                store_id: r.store_id,
                shard_id: net::ShardId(0),
            };
            let Ok(Message::BootstrapResp(b)) = c.call(Message::Bootstrap(boot)).await else {
                panic!("bootstrap")
            };
            assert!(b.created && b.ranges.len() == 2);
            r.store_id.0
        })
    });
    let mut cfg = common::node_cfg(&root, "ds2", &maddr);
    cfg.shards = 2;
    std::fs::create_dir_all(&cfg.data_dir).unwrap();
    std::fs::write(cfg.data_dir.join("store-id"), store.to_string()).unwrap();
    let node = run(cfg).unwrap();
    assert_eq!(node.store_id, store);
    let m = maddr.clone();
    common::on_executor(move || {
        Box::pin(async move {
            for k in keys_in_both_halves() {
                write_and_read(&m, &k).await;
            }
        })
    });
    node.shutdown().unwrap();
    master.stop();
    let _ = std::fs::remove_dir_all(&root);
}
