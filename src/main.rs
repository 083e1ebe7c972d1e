//! `tierkv`: the one binary. It parses the command line and wires the library crates together;
//! it holds no logic of its own.

use std::path::PathBuf;
use std::time::SystemTime;

use anyhow::Context;
use bench_harness::runner::RunConfig;
use bench_harness::workload::{Distribution, Workload, parse_size};
use clap::{Args, Parser, Subcommand};

mod allocator;
mod ctl;
mod dev;

/// tierkv: a distributed key-value database that unifies a cache and a store.
#[derive(Debug, Parser)]
#[command(name = "tierkv", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a whole cluster in this process — a master, one DS node and the Redis proxy — with
    /// its data under one directory. Connect with any Redis client.
    Dev(DevArgs),
    /// Run a master: cluster metadata, TSO, routes and the scheduler (`docs/guides/master.md`).
    Master(MasterArgs),
    /// Run a storage (DS) node: one shard per core, each with its own port, Raft groups,
    /// shard log and Masstree (`docs/guides/ds-node.md`).
    Ds(DsArgs),
    /// Run a Redis proxy in front of the cluster (`docs/guides/proxy.md`).
    Proxy(ProxyArgs),
    /// Run a failure-detection probe: pings every DS shard and the master each round and
    /// reports reachability to the master (`docs/guides/master.md`, failure detection).
    Probe(ProbeArgs),
    /// Benchmark a RESP server (a tierkv proxy, redis-server, …) or, with
    /// `--target native://MASTER:PORT`, the DS shards directly, with YCSB workloads A–F or
    /// set/get loops; writes a text summary and .hgrm, .hlog, .json and .svg reports.
    Bench(BenchArgs),
    /// Operate a running cluster through the master's admin API: status, stores, ranges,
    /// probes, drain/undrain a store, move or split a range, scale out and in.
    Ctl(ctl::CtlArgs),
}

/// Mutual TLS 1.3 on every internal connection: all three files or none (the guides'
/// "Internal TLS" sections; the flags override the config file's `tls-*` keys).
#[derive(Debug, Args)]
struct TlsArgs {
    /// PEM file of the cluster CA (`tls-ca`).
    #[arg(long)]
    tls_ca: Option<PathBuf>,
    /// PEM file of this node's certificate chain, SAN `tierkv-internal` (`tls-cert`).
    #[arg(long)]
    tls_cert: Option<PathBuf>,
    /// PEM file of this node's private key (`tls-key`).
    #[arg(long)]
    tls_key: Option<PathBuf>,
}

impl TlsArgs {
    /// The files when all three flags are given, `None` when none is.
    fn paths(&self) -> anyhow::Result<Option<net::tls::TlsPaths>> {
        Ok(net::tls::TlsPaths::from_parts(
            self.tls_ca.clone(),
            self.tls_cert.clone(),
            self.tls_key.clone(),
        )?)
    }
}

/// Loads the TLS files (if any) into a TLS config.
fn load_tls(paths: Option<&net::tls::TlsPaths>) -> anyhow::Result<Option<net::tls::TlsConfig>> {
    paths
        .map(|p| net::tls::TlsConfig::load(p).context("tls"))
        .transpose()
}

#[derive(Debug, Args)]
struct DevArgs {
    /// Data directory.
    #[arg(long, default_value = "./tierkv-data")]
    data_dir: PathBuf,
    /// Redis port.
    #[arg(long, default_value_t = 6379)]
    port: u16,
    /// DS shards (default: one per core).
    #[arg(long)]
    shards: Option<usize>,
    /// Clients must AUTH with this password (`CONFIG SET requirepass` changes it).
    #[arg(long)]
    requirepass: Option<String>,
    /// Failure-detection probes run in this process (named dev-probe-0.., zone "dev").
    #[arg(long, default_value_t = 1)]
    probes: usize,
    /// Memory the DS node's shards may hold (Redis units: 32mb, 1gb; 0 = unlimited); above
    /// it the coldest values move to the shard log. Default: a quarter of the machine's RAM.
    #[arg(long, value_parser = parse_memory_flag)]
    maxmemory: Option<u64>,
    /// The DS node's durable base: `files` (whole-range checkpoint files, the default) or
    /// `index` (the shard's key index, incremental checkpoints).
    #[arg(long, value_enum, default_value = "files")]
    checkpoint_mode: DevCheckpointMode,
    /// Size of each DS shard's log file (Redis units: 512mb, 8gb), which holds every value
    /// and, in index mode, the key index: the most data one shard can store. Default 1gb
    /// in index mode, 512mb in files mode.
    #[arg(long, value_parser = parse_memory_flag)]
    log_size: Option<u64>,
    /// Elastic scaling: the master starts more `tierkv ds` processes on this machine when
    /// the load per node stays high and drains and stops them when it stays low
    /// (`tierkv ctl scale` shows and tunes it).
    #[arg(long)]
    elastic: bool,
    /// With `--elastic`: most nodes in all, the embedded one included.
    #[arg(long, default_value_t = 3)]
    max_nodes: u32,
    #[command(flatten)]
    tls: TlsArgs,
}

/// Parses a size flag in Redis's units (`32mb`, `1gb`, bytes without a unit).
fn parse_memory_flag(s: &str) -> Result<u64, String> {
    proxy::settings::parse_memory(s.as_bytes())
        .ok_or_else(|| format!("{s:?} is not a size (e.g. 268435456, 256mb, 4gb)"))
}

/// A quarter of the machine's RAM (`MemTotal` in `/proc/meminfo`); 0 (unlimited) where it
/// cannot be read.
/// `tierkv dev --checkpoint-mode` (ds-node's `checkpoint-mode`).
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum DevCheckpointMode {
    Index,
    Files,
}

fn default_maxmemory() -> u64 {
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024 / 4)
}

#[derive(Debug, Args)]
struct ProbeArgs {
    /// The master's RPC address.
    #[arg(long)]
    master: String,
    /// The probe's zone label (1..=64 bytes).
    #[arg(long)]
    zone: String,
    /// The probe's name, unique in the cluster and stable across restarts (default
    /// `probe-<zone>-<host name>`).
    #[arg(long)]
    name: Option<String>,
    /// The cluster secret's file (the master creates `<its data-dir>/cluster-secret`).
    #[arg(long)]
    cluster_secret_file: PathBuf,
    /// Time between rounds, ms.
    #[arg(long, default_value_t = 1000)]
    interval_ms: u64,
    /// A shard that does not answer a ping within this is unreachable, ms.
    #[arg(long, default_value_t = 500)]
    deadline_ms: u64,
    #[command(flatten)]
    tls: TlsArgs,
}

#[derive(Debug, Args)]
struct MasterArgs {
    /// TOML config file (every key optional; defaults in `docs/config/master.toml`).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Load and check the config, print it, and exit.
    #[arg(long)]
    config_check: bool,
    /// Overrides `data-dir`.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Overrides `listen` (the RPC address).
    #[arg(long)]
    listen: Option<String>,
    /// Overrides `admin-listen` (the HTTP admin address; "" disables it).
    #[arg(long)]
    admin_listen: Option<String>,
    /// Overrides `cluster-secret-file`. Without any secret the master creates
    /// `<data-dir>/cluster-secret` and uses it.
    #[arg(long)]
    cluster_secret_file: Option<PathBuf>,
    #[command(flatten)]
    tls: TlsArgs,
}

#[derive(Debug, Args)]
struct DsArgs {
    /// TOML config file (every key optional; defaults in `docs/config/ds.toml`).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Load and check the config, print it, and exit.
    #[arg(long)]
    config_check: bool,
    /// Overrides `data-dir`.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Overrides `master-addr`.
    #[arg(long)]
    master: Option<String>,
    /// Overrides `base-port` (shard i listens on base-port + i; 0 picks free ports).
    #[arg(long)]
    base_port: Option<u16>,
    /// Overrides `shards`.
    #[arg(long)]
    shards: Option<usize>,
    /// Overrides `maxmemory` (Redis units: 32mb, 1gb; 0 = unlimited).
    #[arg(long, value_parser = parse_memory_flag)]
    maxmemory: Option<u64>,
    /// Overrides `cluster-secret-file` (the master creates `<its data-dir>/cluster-secret`).
    #[arg(long)]
    cluster_secret_file: Option<PathBuf>,
    #[command(flatten)]
    tls: TlsArgs,
}

#[derive(Debug, Args)]
struct ProxyArgs {
    /// TOML config file with any of `listen`, `masters`, `requirepass`, `max-clients`,
    /// `client-query-buffer-limit`, `timeout`, `partial-request-timeout-ms`,
    /// `auth-timeout-ms`, `cluster-secret-file`, `cluster-secret`, `insecure-no-auth`,
    /// `metrics-listen`, `tls-ca`, `tls-cert`, `tls-key`, `mesh-listen`, `mesh-advertise`
    /// (`docs/config/proxy.toml`).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Load and check the config, print it, and exit.
    #[arg(long)]
    config_check: bool,
    /// Overrides `mesh-listen`: the internal listener other proxies connect to (pub/sub
    /// across proxies, cross-proxy wake-ups of blocked pops); `off` disables the mesh.
    #[arg(long)]
    mesh_listen: Option<String>,
    /// Overrides `listen` (the Redis address).
    #[arg(long)]
    listen: Option<String>,
    /// Overrides `masters` (repeat for several).
    #[arg(long)]
    master: Vec<String>,
    /// Overrides `requirepass`.
    #[arg(long)]
    requirepass: Option<String>,
    /// Overrides `cluster-secret-file` (the master creates `<its data-dir>/cluster-secret`).
    #[arg(long)]
    cluster_secret_file: Option<PathBuf>,
    /// Overrides `metrics-listen`: serve the proxy's Prometheus `/metrics` on this address.
    #[arg(long)]
    metrics_listen: Option<String>,
    #[command(flatten)]
    tls: TlsArgs,
}

/// The keys of `proxy.toml`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(rename_all = "kebab-case", default, deny_unknown_fields)]
struct ProxyFile {
    listen: Option<String>,
    masters: Vec<String>,
    requirepass: Option<String>,
    max_clients: Option<usize>,
    client_query_buffer_limit: Option<usize>,
    timeout: Option<u64>,
    partial_request_timeout_ms: Option<u64>,
    auth_timeout_ms: Option<u64>,
    cluster_secret_file: Option<PathBuf>,
    cluster_secret: Option<String>,
    insecure_no_auth: bool,
    metrics_listen: Option<String>,
    tls_ca: Option<PathBuf>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    mesh_listen: Option<String>,
    mesh_advertise: Option<String>,
}

/// The mesh listener of a proxy: `mesh-listen` when given (`off`: none), otherwise the host
/// of `listen` with any free port, unless that host is a wildcard address (other proxies
/// could not be told where to connect: set `mesh-listen` or `mesh-advertise`).
fn mesh_listen(given: Option<String>, advertise: Option<&str>, listen: &str) -> Option<String> {
    match given.as_deref() {
        Some("off") => return None,
        Some(_) => return given,
        None => {}
    }
    let host = listen.rsplit_once(':').map_or(listen, |(h, _)| h);
    let wildcard = matches!(host, "0.0.0.0" | "[::]" | "::" | "");
    if wildcard && advertise.is_none() {
        eprintln!(
            "proxy mesh off: `listen` is a wildcard address; set mesh-listen and \
             mesh-advertise to link this proxy with the others"
        );
        return None;
    }
    Some(format!("{host}:0"))
}

/// What `tierkv ds` and `tierkv proxy` say when started with no cluster secret.
const NO_SECRET: &str = "no cluster secret: pass --cluster-secret-file FILE (the master creates \
     <its data-dir>/cluster-secret on first start) or set cluster-secret-file in the config; \
     `insecure-no-auth = true` runs without authentication";

#[derive(Debug, Args)]
struct BenchArgs {
    /// Target: `host:port` (or `resp://host:port`) of a RESP server, or
    /// `native://host:port` of a master: the native protocol straight to the leader shards
    /// of each key's range, routed by the master's route table.
    #[arg(long, default_value = "127.0.0.1:6379")]
    target: String,
    /// A second target (either kind): run the same workload on both in alternating rounds
    /// and print the per-round throughput ratios (target / compare) and their median.
    #[arg(long)]
    compare: Option<String>,
    /// Rounds of `--compare`.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Workload: a, b, c, d, e, f (YCSB core workloads), set or get.
    #[arg(long, short, default_value = "a")]
    workload: String,
    /// Override the workload's key distribution: uniform, zipfian or latest.
    #[arg(long)]
    distribution: Option<String>,
    /// Records loaded before the run.
    #[arg(long, default_value_t = 100_000)]
    records: u64,
    /// Operations in the run.
    #[arg(long, default_value_t = 100_000)]
    operations: u64,
    /// Value size (`100`, `1KiB`, …).
    #[arg(long, default_value = "100")]
    value_size: String,
    /// Connections.
    #[arg(long, short, default_value_t = 50)]
    connections: usize,
    /// Pipeline depth per connection (closed loop).
    #[arg(long, short = 'P', default_value_t = 1)]
    pipeline: usize,
    /// Open loop at this total rate (ops/s); latency counts from each request's intended
    /// start time. Without it the run is closed loop.
    #[arg(long)]
    rate: Option<f64>,
    /// Native targets: connections per shard shared by all `--connections`, as the proxy
    /// pools them; 0 gives each connection its own connection to each shard.
    #[arg(long, default_value_t = 2)]
    shard_conns: usize,
    /// Native targets: the cluster secret file (`tierkv dev` keeps it in
    /// `<data-dir>/cluster-secret`).
    #[arg(long)]
    cluster_secret_file: Option<PathBuf>,
    /// Skip the load phase (the records are already there).
    #[arg(long)]
    no_load: bool,
    /// Seed of every random choice.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Never print the progress bar.
    #[arg(long)]
    no_progress: bool,
    /// Write reports as `<out>.json`, `<out>.svg`, `<out>.hlog`, `<out>.<op>.hgrm`.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Native targets: the cluster's mutual TLS files.
    #[command(flatten)]
    tls: TlsArgs,
}

fn bench(args: BenchArgs) -> anyhow::Result<()> {
    let mut workload = Workload::named(&args.workload)?;
    if let Some(d) = &args.distribution {
        workload.distribution = Distribution::parse(d)?;
    }
    let mut cfg = RunConfig::new(&args.target, workload);
    cfg.records = args.records;
    cfg.operations = args.operations;
    cfg.value_size = parse_size(&args.value_size)?;
    cfg.connections = args.connections;
    cfg.pipeline = args.pipeline;
    cfg.rate = args.rate;
    cfg.seed = args.seed;
    cfg.shard_conns = args.shard_conns;
    if let Some(path) = &args.cluster_secret_file {
        cfg.cluster_secret = net::auth::ClusterSecret::load(path)
            .with_context(|| format!("cluster secret {}", path.display()))?;
    }
    cfg.cluster_tls = load_tls(args.tls.paths()?.as_ref())?;
    cfg.progress = cfg.progress && !args.no_progress;
    let rt = tokio::runtime::Runtime::new().context("start tokio")?;
    rt.block_on(async {
        if let Some(other) = &args.compare {
            let mut b = cfg.clone();
            b.target = other.clone();
            let rounds =
                bench_harness::compare::compare(&cfg, &b, args.rounds, !args.no_load).await?;
            println!("round  {:>14} {:>14}  ratio", cfg.target, b.target);
            for (i, r) in rounds.iter().enumerate() {
                println!("{i:5}  {:>14.0} {:>14.0}  {:.3}", r.a, r.b, r.ratio());
            }
            let ratios: Vec<f64> = rounds.iter().map(|r| r.ratio()).collect();
            println!(
                "median ratio {:.3}",
                bench_harness::compare::median(&ratios)
            );
            return Ok(());
        }
        if !args.no_load {
            let took = bench_harness::runner::load(&cfg).await?;
            eprintln!(
                "loaded {} records in {}",
                cfg.records,
                bench_harness::report::secs(took)
            );
        }
        let started = SystemTime::now();
        let result = bench_harness::runner::run(&cfg).await?;
        print!("{}", bench_harness::report::summary(&result));
        if let Some(prefix) = &args.out {
            for f in bench_harness::report::write_all(&result, prefix, started)? {
                eprintln!("wrote {}", f.display());
            }
        }
        anyhow::Ok(())
    })
}

fn master(args: MasterArgs) -> anyhow::Result<()> {
    let mut cfg = match &args.config {
        Some(path) => master::config::ServerConfig::load(path)
            .with_context(|| format!("load {}", path.display()))?,
        None => master::config::ServerConfig::parse("").context("default master config")?,
    };
    if let Some(d) = args.data_dir {
        cfg.master.data_dir = d;
    }
    if let Some(l) = args.listen {
        cfg.listen = l;
    }
    if let Some(a) = args.admin_listen {
        cfg.admin_listen = (!a.is_empty()).then_some(a);
    }
    if let Some(f) = args.cluster_secret_file {
        cfg.cluster_secret = None;
        cfg.cluster_secret_file = Some(f);
    }
    if let Some(p) = args.tls.paths()? {
        cfg.tls = Some(p);
    }
    if args.config_check {
        println!("{cfg:#?}");
        return Ok(());
    }
    let rt = tokio::runtime::Runtime::new().context("start tokio")?;
    rt.block_on(master::run::run(
        cfg,
        std::sync::Arc::new(master::service::SystemClock),
        master::run::shutdown_signal(),
        |rpc, admin| {
            println!("master listening on {rpc}");
            if let Some(a) = admin {
                println!("admin pages at http://{a}/status");
            }
        },
    ))
    .context("run master")
}

fn ds(args: DsArgs) -> anyhow::Result<()> {
    let mut cfg = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("read {}", path.display()))?;
            ds_node::config::DsConfig::from_toml(&text)
                .with_context(|| format!("parse {}", path.display()))?
        }
        None => ds_node::config::DsConfig::default(),
    };
    if let Some(d) = args.data_dir {
        cfg.data_dir = d;
    }
    if let Some(m) = args.master {
        cfg.master_addr = Some(m);
    }
    if let Some(p) = args.base_port {
        cfg.base_port = p;
    }
    if let Some(n) = args.shards {
        cfg.shards = n;
    }
    if let Some(m) = args.maxmemory {
        cfg.maxmemory = m;
    }
    if let Some(f) = args.cluster_secret_file {
        cfg.cluster_secret = None;
        cfg.cluster_secret_file = Some(f);
    }
    if let Some(p) = args.tls.paths()? {
        (cfg.tls_ca, cfg.tls_cert, cfg.tls_key) = (Some(p.ca), Some(p.cert), Some(p.key));
    }
    cfg.validate()?;
    if !cfg.has_secret() && !cfg.insecure_no_auth {
        anyhow::bail!("{NO_SECRET}");
    }
    if args.config_check {
        println!("{cfg:#?}");
        return Ok(());
    }
    let node = ds_node::node::run(cfg).context("start DS node")?;
    println!(
        "DS node (store {}) shards: {}",
        node.store_id,
        node.shard_addrs.join(", ")
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("start signal runtime")?;
    rt.block_on(master::run::shutdown_signal());
    eprintln!("stopping DS node");
    node.shutdown()
}

fn proxy(args: ProxyArgs) -> anyhow::Result<()> {
    let file: ProxyFile = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("read {}", path.display()))?;
            toml::from_str(&text).with_context(|| format!("parse {}", path.display()))?
        }
        None => ProxyFile::default(),
    };
    let mut cfg = proxy::server::ProxyConfig {
        config_file: args.config.clone(),
        ..Default::default()
    };
    if let Some(l) = args.listen.or(file.listen) {
        cfg.listen = l;
    }
    cfg.requirepass = args.requirepass.or(file.requirepass);
    if let Some(n) = file.max_clients {
        cfg.max_clients = n;
    }
    if let Some(n) = file.client_query_buffer_limit {
        cfg.limits.max_query_buffer_bytes = n;
    }
    let ms = std::time::Duration::from_millis;
    cfg.idle_timeout = file
        .timeout
        .map_or(cfg.idle_timeout, std::time::Duration::from_secs);
    cfg.partial_request_timeout = file
        .partial_request_timeout_ms
        .map_or(cfg.partial_request_timeout, ms);
    cfg.auth_timeout = file.auth_timeout_ms.map_or(cfg.auth_timeout, ms);
    cfg.router.masters = if args.master.is_empty() {
        file.masters
    } else {
        args.master
    };
    if cfg.router.masters.is_empty() {
        anyhow::bail!("no master address: pass --master HOST:PORT or set `masters` in the config");
    }
    cfg.router.transport.secret = match (
        args.cluster_secret_file.or(file.cluster_secret_file),
        file.cluster_secret,
    ) {
        (Some(path), _) => net::auth::ClusterSecret::load(&path)
            .with_context(|| format!("cluster secret {}", path.display()))?,
        (None, Some(text)) => {
            net::auth::ClusterSecret::from_text(text.as_bytes()).context("cluster-secret")?
        }
        (None, None) if file.insecure_no_auth => net::auth::ClusterSecret::insecure(),
        (None, None) => anyhow::bail!("{NO_SECRET}"),
    };
    let tls = match args.tls.paths()? {
        Some(p) => Some(p),
        None => net::tls::TlsPaths::from_parts(file.tls_ca, file.tls_cert, file.tls_key)?,
    };
    cfg.router.transport.tls = load_tls(tls.as_ref())?;
    let fault = std::env::var(proxy::fault::ENV).ok();
    cfg.router.test_only_drop_acked_sets = proxy::fault::from_env_value(fault.as_deref())?;
    if cfg.router.test_only_drop_acked_sets {
        eprintln!(
            "WARNING: {}: this proxy LOSES acknowledged writes on purpose (test only)",
            proxy::fault::ENV
        );
    }
    cfg.mesh.advertise = file.mesh_advertise;
    cfg.mesh.listen = mesh_listen(
        args.mesh_listen.or(file.mesh_listen),
        cfg.mesh.advertise.as_deref(),
        &cfg.listen,
    );
    let metrics_listen = args.metrics_listen.or(file.metrics_listen);
    if args.config_check {
        println!("{cfg:#?}\nmetrics-listen: {metrics_listen:?}");
        return Ok(());
    }
    let rt = tokio::runtime::Runtime::new().context("start tokio")?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&cfg.listen)
            .await
            .with_context(|| format!("bind {}", cfg.listen))?;
        println!(
            "proxy listening on {} (masters: {})",
            cfg.listen,
            cfg.router.masters.join(", ")
        );
        let shared = proxy::server::Shared::new(cfg);
        if let Some(addr) = metrics_listen {
            let metrics = tokio::net::TcpListener::bind(&addr)
                .await
                .with_context(|| format!("bind metrics-listen {addr}"))?;
            println!("proxy metrics on http://{addr}/metrics");
            tokio::spawn(proxy::server::serve_metrics(
                metrics,
                shared.clone(),
                master::run::shutdown_signal(),
            ));
        }
        proxy::server::serve(listener, shared, master::run::shutdown_signal()).await;
        anyhow::Ok(())
    })
}

fn probe(args: ProbeArgs) -> anyhow::Result<()> {
    let name = match args.name {
        Some(n) => n,
        None => {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_string())
                .unwrap_or_else(|_| "localhost".into());
            format!("probe-{}-{host}", args.zone)
        }
    };
    let ok = |s: &str| (1..=master::detector::MAX_PROBE_NAME_BYTES).contains(&s.len());
    if !ok(&name) || !ok(&args.zone) {
        anyhow::bail!("--name and --zone must be 1..=64 bytes");
    }
    if args.interval_ms == 0 || args.deadline_ms == 0 {
        anyhow::bail!("--interval-ms and --deadline-ms must be > 0");
    }
    let mut cfg = probe::ProbeConfig::new(name, args.zone, args.master);
    cfg.interval = std::time::Duration::from_millis(args.interval_ms);
    cfg.deadline = std::time::Duration::from_millis(args.deadline_ms);
    cfg.transport.secret = net::auth::ClusterSecret::load(&args.cluster_secret_file)
        .with_context(|| format!("cluster secret {}", args.cluster_secret_file.display()))?;
    cfg.transport.tls = load_tls(args.tls.paths()?.as_ref())?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("start tokio")?;
    rt.block_on(async move {
        let pinger = std::sync::Arc::new(probe::NetPinger::new(cfg.transport.clone()));
        let pool = pinger.pool().clone();
        let stats = std::sync::Arc::default();
        println!(
            "probe {} (zone {}) reporting to {}",
            cfg.name, cfg.zone, cfg.master
        );
        probe::run(cfg, pool, pinger, stats, master::run::shutdown_signal()).await;
    });
    Ok(())
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

fn main() -> std::process::ExitCode {
    allocator::tune();
    init_logging();
    // Scripts run inside ranges call the proxy's command table (the same on every node).
    ds_node::range::script::install(std::sync::Arc::new(proxy::cmd::script_table::ProxyCommands));
    match run(Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // One line with the whole chain of causes, no backtrace: this is for users.
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Dev(args) => dev::run(dev::DevConfig {
            data_dir: args.data_dir,
            port: args.port,
            shards: args.shards.unwrap_or_else(|| {
                std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
            }),
            requirepass: args.requirepass,
            probes: args.probes,
            maxmemory: args.maxmemory.unwrap_or_else(default_maxmemory),
            checkpoint_mode: match args.checkpoint_mode {
                DevCheckpointMode::Index => ds_node::CheckpointMode::Index,
                DevCheckpointMode::Files => ds_node::CheckpointMode::Files,
            },
            log_file_bytes: args.log_size,
            elastic_max_nodes: args.elastic.then_some(args.max_nodes),
            tls: args.tls.paths()?,
        }),
        Command::Master(args) => master(args),
        Command::Ds(args) => ds(args),
        Command::Proxy(args) => proxy(args),
        Command::Probe(args) => probe(args),
        Command::Bench(args) => bench(args),
        Command::Ctl(args) => ctl::run(args),
    }
}
