//! The master side of probes and load, through its request handler and admin pages, on a
//! manual clock: shard heartbeats from every shard show on `/stores` and `/metrics`; three
//! probes report; one probe blind to a node does not make it unhealthy; a node no probe
//! reaches and that stopped heartbeating is dead after `store-down-after-ms` (and healthy
//! again once it answers; replica replacement is checked on a real cluster in
//! `tests/probes_failover.rs`); a probe report with a bad name and a shard heartbeat for a
//! shard the store does not have are refused.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use ::master::admin::respond;
use ::master::core::MasterConfig;
use ::master::detector::Health;
use ::master::service::{Handling, ManualClock, Master};
use net::message::{
    Bootstrap, Message, ProbeReport, ProbeResult, ShardHeartbeat, ShardLoad, StoreInfo,
    StoreRegister,
};
use net::{ShardId, StoreId};

fn now(m: &Master, msg: Message) -> Message {
    match m.handle_now(msg) {
        Handling::Done(r) => r,
        Handling::Later(m) => panic!("{} not answered at once", m.name()),
    }
}

fn shard_hb(store: StoreId, shard: u32, writes: u64) -> Message {
    Message::ShardHeartbeat(ShardHeartbeat {
        store_id: store,
        shard_id: ShardId(shard),
        load: ShardLoad {
            ranges: 1,
            leaders: 1,
            write_ops_per_sec: writes,
            read_ops_per_sec: 7,
            keys: 100,
            mem_used: 1000,
            ..ShardLoad::default()
        },
    })
}

fn probe(name: &str, reach: &[(StoreId, bool)]) -> Message {
    Message::ProbeReport(ProbeReport {
        probe: name.into(),
        zone: format!("zone-{name}"),
        master_rtt_us: 10,
        results: reach
            .iter()
            .map(|&(store_id, reachable)| ProbeResult {
                store_id,
                shard_id: ShardId(0),
                reachable,
                rtt_us: u64::from(reachable) * 50,
            })
            .collect(),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_decide_health_and_shard_loads_show_on_the_admin_pages() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1_000_000);
    let mut cfg = MasterConfig::new(dir.path());
    cfg.schedule.store_down_after_ms = 3000;
    cfg.schedule.probe_window_ms = 1500;
    cfg.schedule.probe_expiry_ms = 5000;
    let (m, _) = Master::open(cfg, Arc::new(clock.clone())).unwrap();
    let stores: Vec<StoreId> = m.with_core(|c| {
        let ids: Vec<StoreId> = (1..=4)
            .map(|n| {
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
            .collect();
        c.bootstrap(Bootstrap {
            store_id: ids[0],
            shard_id: ShardId(0),
        })
        .unwrap();
        ids
    });
    let (a, b, c, d) = (stores[0], stores[1], stores[2], stores[3]);

    // Refusals.
    assert!(matches!(now(&m, shard_hb(a, 2, 1)), Message::Error(_)));
    assert!(matches!(now(&m, probe("", &[])), Message::Error(_)));

    // Every shard of every store reports; three probes: p1 cannot reach `b`.
    let round = |t: u64, dead: Option<StoreId>| {
        clock.set(t);
        for s in &stores {
            if Some(*s) != dead {
                for shard in 0..2 {
                    assert!(matches!(
                        now(&m, shard_hb(*s, shard, 40)),
                        Message::StoreHeartbeatResp(_)
                    ));
                }
            }
        }
        for p in ["p1", "p2", "p3"] {
            let reach: Vec<(StoreId, bool)> = stores
                .iter()
                .map(|s| (*s, Some(*s) != dead && !(p == "p1" && *s == b)))
                .collect();
            assert!(matches!(
                now(&m, probe(p, &reach)),
                Message::ProbeReportResp(_)
            ));
        }
    };
    let health = |s: StoreId| m.with_core(|c| c.detector().health(s));
    let mut t = 1_000_000;
    for _ in 0..20 {
        t += 500;
        round(t, None);
        m.tick().await;
        assert_eq!(
            health(b),
            Some(Health::Healthy),
            "a blind probe kills nothing"
        );
    }
    let stores_page = respond(&m, "/stores").2;
    assert!(
        stores_page.contains("\"health\":\"healthy\""),
        "{stores_page}"
    );
    assert!(
        stores_page.contains("\"p1\":\"unreachable"),
        "{stores_page}"
    );
    assert!(
        stores_page.contains("\"write_ops_per_sec\":40"),
        "{stores_page}"
    );
    assert!(
        stores_page.contains("\"ops_per_sec\":94"),
        "two shards summed: {stores_page}"
    );
    let metrics = respond(&m, "/metrics").2;
    assert!(
        metrics.contains(&format!(
            "master_shard_write_ops_per_sec{{store=\"{a}\",shard=\"1\"}} 40"
        )),
        "{metrics}"
    );
    assert!(metrics.contains("master_probes_reporting 3"), "{metrics}");
    let probes_page = respond(&m, "/probes").2;
    assert!(
        probes_page.contains("\"zone\":\"zone-p2\""),
        "{probes_page}"
    );

    // `c` dies: no probe reaches it, its shards stop heartbeating. Suspect, then dead.
    let killed = t;
    let mut dead_at = None;
    while t < killed + 6000 {
        t += 500;
        round(t, Some(c));
        m.tick().await;
        if dead_at.is_none() && health(c) == Some(Health::Dead) {
            dead_at = Some(t);
        }
        assert_eq!(health(d), Some(Health::Healthy));
    }
    let dead_at = dead_at.expect("c declared dead");
    assert!(
        dead_at >= killed + 3000,
        "dead {} ms after the last heartbeat",
        dead_at - killed
    );
    assert!(
        dead_at <= killed + 4000,
        "dead {} ms after the last heartbeat",
        dead_at - killed
    );
    let metrics = respond(&m, "/metrics").2;
    assert!(
        metrics.contains(&format!(
            "master_store_health{{store=\"{c}\",state=\"dead\"}} 1"
        )),
        "{metrics}"
    );
    assert!(
        metrics.contains("master_store_health_transitions_total{from=\"suspect\",to=\"dead\"} 1"),
        "{metrics}"
    );

    // It answers again: healthy at once.
    t += 500;
    round(t, None);
    m.tick().await;
    assert_eq!(health(c), Some(Health::Healthy));
}
