//! Hot-range relief through the master's core and admin pages: a range that serves more
//! than `split-qps` but holds one key is not split; its replica and leadership move to the
//! cold store in one operator whose leader transfer names the replica the operator adds, and
//! `/metrics` counts it under its checker.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use ::master::admin::respond;
use ::master::core::MasterConfig;
use ::master::service::{ManualClock, Master};
use net::message::{Bootstrap, Operator, RangeHeartbeat, RangeStats, StoreInfo, StoreRegister};
use net::{ShardId, StoreId};

fn register(m: &Master, n: u64) -> StoreId {
    m.with_core(|c| {
        let req = StoreRegister {
            store: StoreInfo {
                store_id: StoreId(0),
                addr: format!("h{n}:1"),
                shard_addrs: vec![format!("h{n}:2"), format!("h{n}:3")],
                labels: vec![],
            },
            mem_capacity: 0,
            disk_capacity: 0,
        };
        c.register_store(req, 1_000_000).unwrap().store_id
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hot_single_key_range_moves_with_its_leadership_to_the_cold_store() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1_000_000);
    let mut cfg = MasterConfig::new(dir.path());
    cfg.cluster.replication_factor = 1;
    let (m, _) = Master::open(cfg, Arc::new(clock.clone())).unwrap();
    let hot = register(&m, 1);
    let cold = register(&m, 2);
    m.with_core(|c| {
        c.bootstrap(Bootstrap {
            store_id: hot,
            shard_id: ShardId(0),
        })
        .unwrap();
        // Both first ranges are on `hot`: one a single key above split-qps, one warm.
        let ranges: Vec<_> = c.state().ranges().cloned().collect();
        assert_eq!(ranges.len(), 2);
        for (i, r) in ranges.iter().enumerate() {
            let stats = if i == 0 {
                RangeStats {
                    read_qps: 31_000,
                    keys: 1,
                    ..RangeStats::default()
                }
            } else {
                RangeStats {
                    read_qps: 2_000,
                    keys: 500,
                    ..RangeStats::default()
                }
            };
            let hb = RangeHeartbeat {
                range: r.clone(),
                leader: r.leader.unwrap(),
                stats,
                pending: vec![],
                down: vec![],
            };
            c.range_heartbeat(hb, 1_000_000).unwrap();
        }
        let accepted = c.schedule(1_000_000);
        let hot_range = &ranges[0];
        let relief: Vec<_> = accepted
            .iter()
            .filter(|p| p.range_id == hot_range.id)
            .collect();
        assert_eq!(relief.len(), 1, "{accepted:?}");
        assert_eq!(relief[0].checker, "hot-range-relief");
        let op = &c.operators()[&hot_range.id];
        let [
            Operator::AddLearner {
                store, replica_id, ..
            },
            Operator::PromoteLearner {
                replica_id: promoted,
            },
            Operator::TransferLeader { to_replica },
            Operator::RemoveReplica {
                replica_id: removed,
            },
        ] = op.steps.as_slice()
        else {
            panic!("unexpected steps {:?}", op.steps);
        };
        assert_eq!(*store, cold);
        assert_eq!(promoted, replica_id);
        assert_eq!(
            to_replica, replica_id,
            "leadership goes to the added replica"
        );
        assert_eq!(Some(*removed), hot_range.leader);
    });
    let metrics = respond(&m, "/metrics").2;
    assert!(
        metrics.contains("master_schedule_operators_total{checker=\"hot-range-relief\"} 1"),
        "{metrics}"
    );
    assert!(!metrics.contains("checker=\"split\""), "{metrics}");
}
