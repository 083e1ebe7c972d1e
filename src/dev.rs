//! `tierkv dev`: a master, one DS node, the Redis proxy and `--probes` failure-detection
//! probes (default 1) in one process, data under one directory. Start order: master (so the
//! node can register), node (registers, is bootstrapped with the first range), proxy (routes
//! from the master's table), probes. Stop order on Ctrl-C or SIGTERM: probes, proxy (no new
//! commands), node (shards stop after their current turn), master.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use tokio::sync::{oneshot, watch};

/// Where and how the embedded cluster runs.
#[derive(Debug, Clone)]
pub struct DevConfig {
    /// Data directory (`master/` and `ds/` inside it).
    pub data_dir: PathBuf,
    /// Redis port of the proxy.
    pub port: u16,
    /// DS shards (one executor per shard).
    pub shards: usize,
    /// The proxy's `requirepass`.
    pub requirepass: Option<String>,
    /// Failure-detection probes to run in this process.
    pub probes: usize,
    /// The DS node's `maxmemory`, bytes (0 = unlimited).
    pub maxmemory: u64,
    /// The DS node's `checkpoint-mode`.
    pub checkpoint_mode: ds_node::CheckpointMode,
    /// Each shard's log file, bytes (`None`: 1 GiB in index mode, 512 MiB in files mode);
    /// rounded down to a whole number of segments.
    pub log_file_bytes: Option<u64>,
    /// Elastic: the master starts and stops more `tierkv ds` processes on this machine with
    /// the load, up to this many nodes in all (`None`: one node, no autoscaling).
    pub elastic_max_nodes: Option<u32>,
    /// Mutual TLS on every internal connection (master, node, proxy, probes and elastic
    /// nodes all use these files). `None`: plain TCP.
    pub tls: Option<net::tls::TlsPaths>,
}

/// The DS shards' segment size: 16 MiB in index mode (the key index's runs take whole
/// segments, which 64 MiB ones would make a large share of the device), 64 MiB in files mode.
fn segment_bytes(mode: ds_node::CheckpointMode) -> u64 {
    match mode {
        ds_node::CheckpointMode::Index => 16 << 20,
        ds_node::CheckpointMode::Files => 64 << 20,
    }
}

/// Each shard's log file: `--log-size` rounded down to whole segments, else 1 GiB in index
/// mode (the log holds every value and shares the device with the key index; 1M keys × 100 B
/// load into it) and 512 MiB in files mode. The DS node refuses a log of fewer than 4
/// segments with a clear error.
fn log_file_bytes(cfg: &DevConfig) -> u64 {
    let seg = segment_bytes(cfg.checkpoint_mode);
    match (cfg.log_file_bytes, cfg.checkpoint_mode) {
        (Some(b), _) => b / seg * seg,
        (None, ds_node::CheckpointMode::Index) => 1 << 30,
        (None, ds_node::CheckpointMode::Files) => 512 << 20,
    }
}

/// Runs the embedded cluster until Ctrl-C / SIGTERM.
pub fn run(cfg: DevConfig) -> anyhow::Result<()> {
    let redis_addr = format!("127.0.0.1:{}", cfg.port);
    // Claim the Redis port first so a clash is reported before anything else starts.
    let std_listener = std::net::TcpListener::bind(&redis_addr).map_err(|e| {
        anyhow::anyhow!(
            "port {} is not available ({e}); is another Redis or tierkv running? Choose one with --port",
            cfg.port
        )
    })?;
    std_listener.set_nonblocking(true)?;
    std::fs::create_dir_all(&cfg.data_dir)
        .with_context(|| format!("create {}", cfg.data_dir.display()))?;
    // One random cluster secret per data dir (created on the first start, mode 0600): the
    // master, the DS node and the proxy prove it to each other on every connection.
    let secret_file = cfg.data_dir.join("cluster-secret");
    let (secret, _) = net::auth::ClusterSecret::load_or_create(&secret_file)
        .with_context(|| format!("cluster secret {}", secret_file.display()))?;
    let tls = crate::load_tls(cfg.tls.as_ref())?;

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("start tokio")?;
    rt.block_on(async move {
        // 1. Master, on ephemeral ports, one replica per range (there is one node).
        let mut mcfg = master::config::ServerConfig::parse("").context("master defaults")?;
        mcfg.master.data_dir = cfg.data_dir.join("master");
        mcfg.master.cluster.replication_factor = 1;
        mcfg.listen = "127.0.0.1:0".into();
        mcfg.admin_listen = Some("127.0.0.1:0".into());
        mcfg.cluster_secret_file = Some(secret_file.clone());
        mcfg.tls = cfg.tls.clone();
        if let Some(max) = cfg.elastic_max_nodes {
            let sc = &mut mcfg.master.scale;
            sc.enabled = true;
            sc.provisioner = master::autoscale::ProvisionerKind::Local;
            sc.max_stores = max.max(1);
            sc.local_shards = cfg.shards;
            sc.local_maxmemory = cfg.maxmemory;
            sc.local_data_dir = Some(cfg.data_dir.join("elastic"));
            // A one-machine cluster reacts in seconds, not minutes.
            sc.sustain_ms = 10_000;
            sc.shrink_sustain_ms = 60_000;
            sc.cooldown_ms = 30_000;
            sc.validate().map_err(anyhow::Error::msg)?;
        }
        let (stop_master, master_stop_rx) = watch::channel(false);
        let (ready_tx, ready_rx) = oneshot::channel::<(SocketAddr, Option<SocketAddr>)>();
        let master_task = tokio::spawn(master::run::run(
            mcfg,
            Arc::new(master::service::SystemClock),
            wait_for(master_stop_rx),
            move |rpc, admin| {
                let _ = ready_tx.send((rpc, admin));
            },
        ));
        let Ok((master_addr, admin_addr)) = ready_rx.await else {
            let err = master_task.await.context("master task")?;
            bail!("master did not start: {err:?}");
        };

        // 2. The DS node: registers with the master, which bootstraps the first range on it.
        let dcfg = ds_node::config::DsConfig {
            data_dir: cfg.data_dir.join("ds"),
            shards: cfg.shards,
            base_port: 0,
            master_addr: Some(master_addr.to_string()),
            log_file_bytes: log_file_bytes(&cfg),
            segment_bytes: segment_bytes(cfg.checkpoint_mode),
            cluster_secret_file: Some(secret_file.clone()),
            admin_addr: Some("127.0.0.1:0".into()),
            maxmemory: cfg.maxmemory,
            checkpoint_mode: cfg.checkpoint_mode,
            tls_ca: cfg.tls.as_ref().map(|t| t.ca.clone()),
            tls_cert: cfg.tls.as_ref().map(|t| t.cert.clone()),
            tls_key: cfg.tls.as_ref().map(|t| t.key.clone()),
            ..Default::default()
        };
        let node = tokio::task::spawn_blocking(move || ds_node::node::run(dcfg))
            .await
            .context("start DS node")??;

        // 3. The proxy on the Redis port.
        let mut pcfg = proxy::server::ProxyConfig {
            listen: redis_addr.clone(),
            requirepass: cfg.requirepass.clone(),
            ..Default::default()
        };
        pcfg.router.masters = vec![master_addr.to_string()];
        pcfg.router.transport.secret = secret.clone();
        pcfg.router.transport.tls = tls.clone();
        let shared = proxy::server::Shared::new(pcfg);
        let listener = tokio::net::TcpListener::from_std(std_listener)?;
        let (stop_proxy, proxy_stop_rx) = watch::channel(false);
        let metrics = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let proxy_metrics_addr = metrics.local_addr()?;
        tokio::spawn(proxy::server::serve_metrics(
            metrics,
            shared.clone(),
            wait_for(proxy_stop_rx.clone()),
        ));
        let proxy_task = tokio::spawn(proxy::server::serve(
            listener,
            shared.clone(),
            wait_for(proxy_stop_rx),
        ));

        // 4. The probes: they report to the master, whose failure detector then uses them.
        let (stop_probes, probes_stop_rx) = watch::channel(false);
        let mut probe_tasks = tokio::task::JoinSet::new();
        for i in 0..cfg.probes {
            let mut pc =
                probe::ProbeConfig::new(format!("dev-probe-{i}"), "dev", master_addr.to_string());
            pc.transport.secret = secret.clone();
            pc.transport.tls = tls.clone();
            let pinger = Arc::new(probe::NetPinger::new(pc.transport.clone()));
            let pool = pinger.pool().clone();
            probe_tasks.spawn(probe::run(
                pc,
                pool,
                pinger,
                Arc::default(),
                wait_for(probes_stop_rx.clone()),
            ));
        }

        println!("tierkv dev is running (data in {})", cfg.data_dir.display());
        println!("  Redis:   redis-cli -p {}", cfg.port);
        println!("  shards:  {}", node.shard_addrs.join(", "));
        println!("  master:  {master_addr}");
        println!("  secret:  {}  (internal ports)", secret_file.display());
        if let Some(t) = &cfg.tls {
            println!("  tls:     mutual TLS 1.3, CA {}", t.ca.display());
        }
        println!("  probes:  {}", cfg.probes);
        if cfg.maxmemory == 0 {
            println!("  maxmemory: unlimited (--maxmemory sets it)");
        } else {
            println!(
                "  maxmemory: {} MiB over {} shards; colder values move to disk (--maxmemory)",
                cfg.maxmemory >> 20,
                cfg.shards
            );
        }
        if let Some(a) = admin_addr {
            println!("  admin:   http://{a}/status  (/stores, /ranges, /probes, /scale, /metrics)");
            println!("  ctl:     tierkv ctl --master {a} status");
        }
        if let Some(max) = cfg.elastic_max_nodes {
            println!(
                "  elastic: up to {max} nodes, started and stopped with the load (tierkv ctl scale status)"
            );
        }
        println!("  proxy:   http://{proxy_metrics_addr}/metrics");
        if let Some(a) = node.admin_addr {
            println!("  DS node: http://{a}/metrics  (POST /demote makes values cold)");
        }
        println!("Ctrl-C (or redis-cli SHUTDOWN) stops it; starting it again keeps every key.");

        tokio::select! {
            () = master::run::shutdown_signal() => {}
            () = shared.shutdown_requested() => eprintln!("SHUTDOWN from a client"),
        }
        eprintln!("stopping: probes, proxy, DS node, master");
        let _ = stop_probes.send(true);
        while probe_tasks.join_next().await.is_some() {}
        let _ = stop_proxy.send(true);
        let _ = proxy_task.await;
        tokio::task::spawn_blocking(move || node.shutdown())
            .await
            .context("stop DS node")??;
        let _ = stop_master.send(true);
        master_task
            .await
            .context("master task")?
            .context("master")?;
        anyhow::Ok(())
    })
}

async fn wait_for(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}
