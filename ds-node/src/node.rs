//! [`run`]: starts a DS node — registration with the master, one executor per shard — and
//! returns a [`NodeHandle`].
#![allow(
    clippy::disallowed_types,
    reason = "start-up and the handle run off the shards; a shard locks its metrics publication slot (uncontended) once per 200 ms"
)]

use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use net::message::handshake::{Acceptor, Hello, Role};
use net::{ClusterId, Message, NodeId};

use crate::config::DsConfig;
use crate::core::{Listener, ShardThread};
use crate::server::{Shard, ShardMetrics, handler, ready};

/// A running DS node.
#[derive(Debug)]
pub struct NodeHandle {
    /// This node's store id.
    pub store_id: u64,
    /// `host:port` of each shard.
    pub shard_addrs: Vec<String>,
    /// Bound address of the admin endpoint, if enabled.
    pub admin_addr: Option<std::net::SocketAddr>,
    stop: Arc<AtomicBool>,
    threads: Vec<ShardThread>,
    admin: Option<std::thread::JoinHandle<()>>,
    metrics: Vec<Arc<Mutex<Option<ShardMetrics>>>>,
}

impl NodeHandle {
    /// Stops every shard and waits for them.
    pub fn shutdown(self) -> anyhow::Result<()> {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads {
            t.join()?;
        }
        if let Some(a) = self.admin {
            a.thread().unpark();
            let _ = a.join();
        }
        Ok(())
    }

    /// The shards' counters and histograms (published about every 200 ms), merged.
    pub fn metrics(&self) -> ShardMetrics {
        crate::admin::merged(&self.metrics)
    }
}

fn store_id_file(cfg: &DsConfig) -> std::path::PathBuf {
    cfg.data_dir.join("store-id")
}

/// What registration with the master told this node.
struct Registered {
    store_id: u64,
    bootstrapped: bool,
    /// The cluster's id (learned from the master's handshake answer); 0 stand-alone.
    cluster_id: ClusterId,
}

/// Registers with the master (when configured): the store id and the cluster id.
fn register(cfg: &DsConfig, shard_addrs: &[String]) -> anyhow::Result<Registered> {
    let Some(master) = cfg.master_addr.clone() else {
        return Ok(Registered {
            store_id: cfg.store_id,
            bootstrapped: true,
            cluster_id: ClusterId(0),
        });
    };
    let transport = cfg.transport()?;
    std::fs::create_dir_all(&cfg.data_dir)?;
    let known = std::fs::read_to_string(store_id_file(cfg))
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(0);
    let info = net::message::StoreInfo {
        store_id: net::StoreId(known),
        addr: shard_addrs.first().cloned().unwrap_or_default(),
        shard_addrs: shard_addrs.to_vec(),
        labels: Vec::new(),
    };
    let resp = crate::core::block_on(move || {
        Box::pin(async move {
            let hello = Hello::new(Role::DsNode {}, ClusterId(0), NodeId(known));
            let c = net::glommio_transport::Client::connect(&master, hello, transport)
                .await
                .map_err(|e| format!("connect master: {e}"))?;
            let cluster_id = c.peer().cluster_id;
            let r = c
                .call(Message::StoreRegister(net::message::StoreRegister {
                    store: info,
                    mem_capacity: 0,
                    disk_capacity: 0,
                }))
                .await
                .map_err(|e| format!("register: {e}"))?;
            match r {
                Message::StoreRegisterResp(r) if r.cluster_id == cluster_id => Ok(r),
                Message::StoreRegisterResp(r) => Err(format!(
                    "register: the master says cluster {} after a handshake as cluster {cluster_id}",
                    r.cluster_id
                )),
                other => Err(format!("register: unexpected answer {}", other.name())),
            }
        })
    })?
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    std::fs::write(store_id_file(cfg), resp.store_id.0.to_string())?;
    tracing::info!(store = %resp.store_id, cluster = %resp.cluster_id, bootstrapped = resp.bootstrapped, "registered with the master");
    Ok(Registered {
        store_id: resp.store_id.0,
        bootstrapped: resp.bootstrapped,
        cluster_id: resp.cluster_id,
    })
}

/// Starts a DS node with `cfg` and returns once every shard listens.
pub fn run(mut cfg: DsConfig) -> anyhow::Result<NodeHandle> {
    cfg.validate()?;
    cfg.resolve_secret()?;
    // Bind listeners first (port 0 picks free ports), each on its shard's executor: here only
    // the addresses are decided.
    let shard_addrs: Vec<String> = (0..cfg.shards)
        .map(|i| {
            if cfg.base_port == 0 {
                free_port(&cfg.host)
            } else {
                Ok(format!("{}:{}", cfg.host, cfg.base_port as usize + i))
            }
        })
        .collect::<anyhow::Result<_>>()?;
    let Registered {
        store_id,
        bootstrapped,
        cluster_id,
    } = register(&cfg, &shard_addrs)?;
    let stop = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::new();
    let mut metrics = Vec::new();
    let mut demotes: Vec<crate::server::demote::Requests> = Vec::new();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<anyhow::Result<()>>();
    for i in 0..cfg.shards {
        let (cfg, stop, addr, ready_tx) = (
            cfg.clone(),
            stop.clone(),
            shard_addrs[i].clone(),
            ready_tx.clone(),
        );
        let all_addrs = shard_addrs.clone();
        let published = Arc::new(Mutex::new(None));
        metrics.push(published.clone());
        let requests = crate::server::demote::Requests::default();
        demotes.push(requests.clone());
        let t = crate::core::spawn_shard(i, cfg.pin, cfg.io_memory_bytes, move || async move {
            let r = shard_main(
                cfg,
                i as u32,
                store_id,
                cluster_id,
                bootstrapped,
                addr,
                all_addrs,
                stop,
                (published, requests),
                &ready_tx,
            )
            .await;
            if let Err(e) = &r {
                let _ = ready_tx.send(Err(anyhow::anyhow!("shard {i}: {e:#}")));
            }
            r
        })?;
        threads.push(t);
    }
    for _ in 0..cfg.shards {
        ready_rx
            .recv_timeout(Duration::from_secs(120))
            .map_err(|_| anyhow::anyhow!("a shard did not start"))??;
    }
    let (admin, admin_addr) = match &cfg.admin_addr {
        Some(a) => {
            let l = std::net::TcpListener::bind(a)?;
            let bound = l.local_addr()?;
            let (published, stop) = (metrics.clone(), stop.clone());
            let token = cfg.admin_token.clone().map(|t| t.0);
            let h = std::thread::Builder::new()
                .name("ds-admin".into())
                .spawn(move || crate::admin::serve(l, published, demotes, token, stop))?;
            (Some(h), Some(bound))
        }
        None => (None, None),
    };
    Ok(NodeHandle {
        store_id,
        shard_addrs,
        admin_addr,
        stop,
        threads,
        admin,
        metrics,
    })
}

fn free_port(host: &str) -> anyhow::Result<String> {
    let l = std::net::TcpListener::bind(format!("{host}:0"))?;
    Ok(l.local_addr()?.to_string())
}

#[allow(clippy::too_many_arguments)]
async fn shard_main(
    mut cfg: DsConfig,
    index: u32,
    store_id: u64,
    cluster_id: ClusterId,
    bootstrapped: bool,
    addr: String,
    all_addrs: Vec<String>,
    stop: Arc<AtomicBool>,
    (published, demotes): (
        Arc<Mutex<Option<ShardMetrics>>>,
        crate::server::demote::Requests,
    ),
    ready_tx: &std::sync::mpsc::Sender<anyhow::Result<()>>,
) -> anyhow::Result<()> {
    if cfg.base_port == 0 {
        // Free ports were picked per shard: record this store's addresses as a peer entry.
        cfg.peers.retain(|p| p.store_id != store_id);
        cfg.peers.push(crate::config::PeerStore {
            store_id,
            shard_addrs: all_addrs,
        });
    }
    let listener = Listener::bind(&addr)?;
    let shard = Shard::open(cfg.clone(), index, net::StoreId(store_id), cluster_id).await?;
    // Stand-alone bootstrap: the initial range on every shard named in it.
    if cfg.master_addr.is_none() && cfg.bootstrap && shard.state().peers().is_empty() {
        let desc = shard.initial_descriptor();
        let here = desc
            .replicas
            .iter()
            .any(|r| r.store_id.0 == store_id && r.shard_id.0 == index);
        if here {
            shard.create_range(desc).await?;
        }
    }
    // Every shard of an unbootstrapped cluster's first store gets a first range; a shard
    // with no range at all asks again, in case it stopped before creating its own.
    if cfg.master_addr.is_some() && (!bootstrapped || shard.state().peers().is_empty()) {
        crate::worker::heartbeat::bootstrap(&shard).await?;
    }
    let acceptor = Acceptor {
        role: Role::DsNode {},
        cluster_id,
        node_id: NodeId(store_id),
    };
    let transport = cfg.transport()?;
    let h = Rc::clone(&shard);
    let handler = Rc::new(move |m| handler::handle(&h, m));
    let max_conn = cfg.max_connections;
    crate::core::spawn(ready::run(Rc::clone(&shard)));
    match cfg.checkpoint_mode {
        crate::config::CheckpointMode::Files => {
            crate::core::spawn(crate::server::checkpoint::run(Rc::clone(&shard)));
        }
        crate::config::CheckpointMode::Index => {
            crate::core::spawn(crate::server::index_checkpoint::run(Rc::clone(&shard)));
        }
    }
    crate::core::spawn(crate::server::demote::run_periodic(Rc::clone(&shard)));
    crate::core::spawn(crate::server::policy::run(Rc::clone(&shard)));
    crate::core::spawn(crate::server::gc::run(Rc::clone(&shard)));
    if cfg.master_addr.is_some() {
        crate::core::spawn(crate::worker::heartbeat::run(Rc::clone(&shard)));
    }
    let _ = ready_tx.send(Ok(()));
    tracing::info!(shard = index, %addr, "shard serving");
    // The listener lives in its own task (see `core::spawn_owned`): it is closed (dropped)
    // when the node stops; if it fails, the shard stops.
    let listener_done = Rc::new(std::cell::Cell::new(false));
    let done = Rc::clone(&listener_done);
    let serving = crate::core::spawn_owned(async move {
        if let Err(e) = listener.serve(acceptor, transport, max_conn, handler).await {
            tracing::error!("listener stopped: {e}");
        }
        done.set(true);
    });
    let watch = async {
        let mut n = 0u64;
        while !stop.load(Ordering::SeqCst) && !listener_done.get() {
            crate::core::sleep(Duration::from_millis(20)).await;
            crate::server::demote::serve_requests(&shard, &demotes);
            n += 1;
            if n % 10 == 0 {
                publish(&shard, &published);
            }
        }
    };
    watch.await;
    drop(serving);
    publish(&shard, &published);
    shard.shutdown();
    // Checkpoint file operations run on glommio's blocking pool: let them finish before the
    // executor goes (bounded: a stuck file system does not hold shutdown forever).
    for _ in 0..500 {
        if shard.file_ops_running() == 0 {
            break;
        }
        crate::core::sleep(Duration::from_millis(10)).await;
    }
    tracing::info!(shard = index, "{}", shard.metrics().summary());
    Ok(())
}

/// Publishes the shard's figures (with the engine's hot/cold gauges) for the admin thread.
fn publish(shard: &Shard, published: &Mutex<Option<ShardMetrics>>) {
    let m = crate::server::figures::collect(shard);
    if let Ok(mut g) = published.lock() {
        *g = Some(m);
    }
}
