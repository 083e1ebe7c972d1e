//! One probe round against a real master (in-process): the probe learns the stores from the
//! route table, pings each shard with a deadline — one answers, one port is closed, one is a
//! listener that never answers — and the master accepts the report. A pinger that is cut off
//! from an address (a partition seen by this probe only) reports it unreachable.
#![allow(clippy::unwrap_used)] // a test fails by panicking

use std::sync::Arc;
use std::time::{Duration, Instant};

use net::message::handshake::{Acceptor, Role};
use net::message::{Message, Pong, StoreInfo, StoreRegister};
use net::transport::TransportConfig;
use net::{ClusterId, NodeId, StoreId};
use probe::round::{RoundState, round};
use probe::{NetPinger, PingError, Pinger, ProbeConfig, ProbeStats};
use test_support::tempdir::TempDir;

/// Serves `l` as a `net` endpoint of cluster `cluster` that answers pings, like a DS shard.
fn pong_server(l: tokio::net::TcpListener, cluster: ClusterId) {
    let acceptor = Acceptor {
        role: Role::DsNode {},
        cluster_id: cluster,
        node_id: NodeId(1),
    };
    let handler = Arc::new(|m: Message| async move {
        match m {
            Message::Ping(p) => Some(Message::Pong(Pong { nonce: p.nonce })),
            _ => None,
        }
    });
    tokio::spawn(net::tokio_transport::serve(
        l,
        acceptor,
        TransportConfig::default(),
        16,
        handler,
        std::future::pending(),
    ));
}

fn closed_port() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
}

/// A pinger cut off from some addresses.
struct Cut {
    inner: NetPinger,
    cut: Vec<String>,
}

impl Pinger for Cut {
    async fn ping(&self, addr: &str, deadline: Duration) -> Result<Duration, PingError> {
        if self.cut.iter().any(|a| a == addr) {
            tokio::time::sleep(deadline).await;
            return Err(PingError::Timeout(deadline));
        }
        self.inner.ping(addr, deadline).await
    }
}

async fn register(pinger: &NetPinger, master: &str, shards: Vec<String>) -> (StoreId, ClusterId) {
    let req = StoreRegister {
        store: StoreInfo {
            store_id: StoreId(0),
            addr: shards[0].clone(),
            shard_addrs: shards,
            labels: vec![],
        },
        mem_capacity: 0,
        disk_capacity: 0,
    };
    match pinger
        .pool()
        .call(master, Message::StoreRegister(req))
        .await
        .unwrap()
    {
        Message::StoreRegisterResp(r) => (r.store_id, r.cluster_id),
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_round_reports_which_shards_answered_within_the_deadline() {
    let dir = TempDir::new("probe-round");
    let m = test_support::master::start(dir.path().to_path_buf(), |_| {});
    let up_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up = up_listener.local_addr().unwrap().to_string();
    let closed = closed_port();
    // Accepts TCP but never completes a handshake: a stopped (SIGSTOP) node.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_addr = silent.local_addr().unwrap().to_string();

    let cfg = ProbeConfig {
        deadline: Duration::from_millis(2000),
        ..ProbeConfig::new("p1", "zone-a", m.addr())
    };
    let pinger = Arc::new(NetPinger::new(cfg.transport.clone()));
    let (store, cluster) = register(&pinger, m.addr(), vec![up.clone(), closed, silent_addr]).await;
    pong_server(up_listener, cluster);
    let stats = ProbeStats::default();
    let mut state = RoundState::default();
    let start = Instant::now();
    let pool = pinger.pool().clone();
    let report = round(&cfg, &pool, &pinger, &mut state, &stats)
        .await
        .unwrap();
    assert!(
        start.elapsed() < Duration::from_secs(8),
        "pings ran with a deadline"
    );
    assert_eq!(state.targets().len(), 3);
    let seen: Vec<(StoreId, u32, bool)> = report
        .results
        .iter()
        .map(|r| (r.store_id, r.shard_id.0, r.reachable))
        .collect();
    assert_eq!(
        seen,
        vec![(store, 0, true), (store, 1, false), (store, 2, false)]
    );
    assert!(report.results[0].rtt_us > 0);
    assert!(report.master_rtt_us > 0);
    assert_eq!(
        stats
            .reports_total
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );

    // The same probe cut off from the live shard sees nothing answer.
    let cut = Arc::new(Cut {
        inner: NetPinger::new(cfg.transport.clone()),
        cut: vec![up],
    });
    let pool = cut.inner.pool().clone();
    let mut state = RoundState::default();
    let report = round(&cfg, &pool, &cut, &mut state, &stats).await.unwrap();
    assert!(report.results.iter().all(|r| !r.reachable));
    drop(silent);
    m.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_with_a_bad_name_is_refused_by_the_master() {
    let dir = TempDir::new("probe-bad-name");
    let m = test_support::master::start(dir.path().to_path_buf(), |_| {});
    let cfg = ProbeConfig::new("", "zone-a", m.addr());
    let pinger = Arc::new(NetPinger::new(cfg.transport.clone()));
    let pool = pinger.pool().clone();
    let err = round(
        &cfg,
        &pool,
        &pinger,
        &mut RoundState::default(),
        &ProbeStats::default(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, probe::ProbeError::Refused(_)), "{err}");
    m.stop();
}
