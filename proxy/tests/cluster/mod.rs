//! A real in-process cluster for the proxy's tests: the real master service (tokio, on a
//! thread of its own), real DS nodes (`ds_node::run`: glommio shards, shard log, raft-rs)
//! that register with it, and the proxy (`proxy::serve`) routing from the master's route
//! table — everything on 127.0.0.1 with ports of its own (port 0), data under a temporary
//! directory removed at the end. Dropping the cluster stops the proxy, the nodes and the
//! master, in that order.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ds_node::{DsConfig, NodeHandle};
use master::core::MasterConfig;
use net::message::handshake::{Hello, Role};
use net::message::{GetRouteTable, RangeDescriptor, ReplicaRole, RouteTable};
use net::transport::TransportConfig;
use net::{ClusterId, Message, NodeId};
use proxy::server::{ProxyConfig, Shared};
use test_support::master::RunningMaster;
use tokio::runtime::Runtime;

/// A running cluster.
pub struct RealCluster {
    /// The master's RPC address.
    pub master_addr: String,
    /// The proxy's Redis address (`host:port`).
    pub addr: String,
    /// The proxy's shared state (router counters, metrics).
    pub shared: Arc<Shared>,
    /// The DS nodes; `None` once stopped.
    pub nodes: Vec<Option<NodeHandle>>,
    /// The runtime the proxy runs on (tests may run clients on it too).
    pub rt: Runtime,
    root: PathBuf,
    stop_proxy: Option<tokio::sync::oneshot::Sender<()>>,
    proxy_task: Option<tokio::task::JoinHandle<()>>,
    master: Option<RunningMaster>,
}

/// DS node settings for tests: unpinned, ephemeral ports, small logs, fast ticks and
/// heartbeats (the master learns leaders and sizes quickly).
pub fn node_cfg(root: &std::path::Path, name: &str, master: &str, shards: usize) -> DsConfig {
    DsConfig {
        data_dir: root.join(name),
        shards,
        pin: false,
        base_port: 0,
        master_addr: Some(master.to_string()),
        log_file_bytes: 64 << 20,
        segment_bytes: 4 << 20,
        zero_log_file: false,
        tick_ms: 20,
        heartbeat_ms: 100,
        io_memory_bytes: 1 << 20,
        cached_entries: 256,
        checkpoint_entries: 1000,
        checkpoint_check_ms: 100,
        ..DsConfig::default()
    }
}

impl RealCluster {
    /// A master (tuned by `tune_master`), `nodes` DS nodes of `shards` shards each, and a
    /// proxy (tuned by `tune_proxy`). Returns once the proxy listens; the first range may not
    /// have a leader yet (see [`RealCluster::must_serve`]).
    pub fn start(
        name: &str,
        nodes: usize,
        shards: usize,
        tune_master: impl FnOnce(&mut MasterConfig) + Send + 'static,
        tune_proxy: impl FnOnce(&mut ProxyConfig),
    ) -> RealCluster {
        let root = std::env::temp_dir().join(format!("proxy-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("master")).unwrap();
        let master = test_support::master::start(root.join("master"), |c| {
            test_support::master::fast_scheduling(c);
            tune_master(c);
        });
        let master_addr = master.addr().to_string();
        let handles = (0..nodes)
            .map(|i| {
                let cfg = node_cfg(&root, &format!("ds{i}"), &master_addr, shards);
                Some(ds_node::run(cfg).unwrap())
            })
            .collect();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let mut cfg = ProxyConfig {
            listen: addr.clone(),
            ..ProxyConfig::default()
        };
        cfg.router.masters = vec![master_addr.clone()];
        tune_proxy(&mut cfg);
        let shared = Shared::new(cfg);
        let (stop_proxy, stopped) = tokio::sync::oneshot::channel::<()>();
        let s = shared.clone();
        let proxy_task = rt.spawn(async move {
            proxy::serve(listener, s, async {
                let _ = stopped.await;
            })
            .await;
        });
        // The proxy's startup loading state ends once every range served (elections).
        let deadline = Instant::now() + proxy::shared::LOADING_MAX + Duration::from_secs(2);
        while shared.loading() {
            assert!(Instant::now() < deadline, "the proxy never ended loading");
            std::thread::sleep(Duration::from_millis(2));
        }
        RealCluster {
            master_addr,
            addr,
            shared,
            nodes: handles,
            rt,
            root,
            stop_proxy: Some(stop_proxy),
            proxy_task: Some(proxy_task),
            master: Some(master),
        }
    }

    /// The master's route table, fetched over a connection of its own (not the proxy's, so
    /// the proxy's refresh counters only count the proxy's own refreshes).
    pub fn route_table(&self) -> RouteTable {
        let addr = self.master_addr.clone();
        self.rt.block_on(async move {
            let hello = Hello::new(Role::Client {}, ClusterId(0), NodeId(0));
            let c = net::tokio_transport::Client::connect(&addr, hello, TransportConfig::default())
                .await
                .unwrap();
            match c
                .call(Message::GetRouteTable(GetRouteTable { known_version: 0 }))
                .await
                .unwrap()
            {
                Message::RouteTable(t) => t,
                other => panic!("master answered {other:?}"),
            }
        })
    }

    /// Polls the master's route table until `done` holds (or panics after `timeout`).
    pub fn must_wait_for(
        &self,
        what: &str,
        timeout: Duration,
        mut done: impl FnMut(&RouteTable) -> bool,
    ) -> RouteTable {
        let deadline = Instant::now() + timeout;
        loop {
            let t = self.route_table();
            if done(&t) {
                return t;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: not after {timeout:?}: {t:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Polls `SET` through the proxy until the cluster serves it (the first range has a
    /// leader the master knows of).
    pub fn must_serve(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let mut s = std::net::TcpStream::connect(&self.addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
            use std::io::{Read, Write};
            s.write_all(b"*3\r\n$3\r\nSET\r\n$11\r\n__warm_up__\r\n$1\r\n1\r\n")
                .unwrap();
            let mut buf = [0u8; 512];
            let n = s.read(&mut buf).unwrap();
            let r = String::from_utf8_lossy(&buf[..n]).into_owned();
            if r == "+OK\r\n" {
                s.write_all(b"*2\r\n$3\r\nDEL\r\n$11\r\n__warm_up__\r\n")
                    .unwrap();
                let n = s.read(&mut buf).unwrap();
                assert_eq!(&buf[..n], b":1\r\n");
                return;
            }
            assert!(Instant::now() < deadline, "the cluster never served: {r}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops DS node `i` (all its shards) and waits for it.
    pub fn stop_node(&mut self, i: usize) {
        if let Some(n) = self.nodes[i].take() {
            n.shutdown().unwrap();
        }
    }

    /// The index of the node whose store is `store_id`.
    pub fn node_of_store(&self, store_id: u64) -> Option<usize> {
        self.nodes
            .iter()
            .position(|n| n.as_ref().is_some_and(|n| n.store_id == store_id))
    }
}

/// The store ids of a range's voters, sorted.
pub fn voters(d: &RangeDescriptor) -> Vec<u64> {
    let mut v: Vec<u64> = d
        .replicas
        .iter()
        .filter(|r| r.role == ReplicaRole::Voter {})
        .map(|r| r.store_id.0)
        .collect();
    v.sort_unstable();
    v
}

/// The store id of a range's leader, if the master knows it.
pub fn leader_store(d: &RangeDescriptor) -> Option<u64> {
    let l = d.leader?;
    d.replicas
        .iter()
        .find(|r| r.replica_id == l)
        .map(|r| r.store_id.0)
}

impl Drop for RealCluster {
    fn drop(&mut self) {
        if let Some(tx) = self.stop_proxy.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.proxy_task.take() {
            let _ = self.rt.block_on(t);
        }
        for n in self.nodes.iter_mut() {
            if let Some(n) = n.take() {
                let _ = n.shutdown();
            }
        }
        drop(self.master.take()); // stops the master and joins its thread
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.root);
        }
    }
}
