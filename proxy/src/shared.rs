//! What every connection of the proxy shares: its settings, the router, metrics, blocked
//! clients and pub/sub subscriptions, and the clock. Below the commands and the connection
//! loop, which both read it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::metrics::Metrics;
use crate::resp::Limits;
use crate::route::{Router, RouterConfig};
use crate::settings::Settings;

/// Proxy settings.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// The listen address, as reported by `INFO`/`CONFIG GET port`.
    pub listen: String,
    /// `requirepass`: clients must `AUTH` first when set (the starting value; `CONFIG SET
    /// requirepass` changes it, see [`Settings`]).
    pub requirepass: Option<String>,
    /// Connected clients at most; more are answered `-ERR max number of clients reached`.
    pub max_clients: usize,
    /// Parser limits (`proto-max-bulk-len`, query buffer limits; `max_query_buffer_bytes` is
    /// `client-query-buffer-limit`'s starting value).
    pub limits: Limits,
    /// Redis's `timeout`: a client idle this long is closed; zero (the default) never.
    pub idle_timeout: Duration,
    /// A partial request that receives no byte this long closes the connection. Default
    /// 30 s; zero: never.
    pub partial_request_timeout: Duration,
    /// When a password is set, a connection not authenticated this long after it was
    /// accepted is closed. Default 10 s; zero: never.
    pub auth_timeout: Duration,
    /// Largest output of one batch before the client is disconnected. Default 256 MiB.
    pub max_output_bytes: usize,
    /// A write that makes no progress this long disconnects the client. Default 30 s.
    pub output_stall: Duration,
    /// Commands per batch at most. Default 1,024.
    pub max_pipeline: usize,
    /// How long shutdown waits for connections to finish their batch. Default 5 s.
    pub shutdown_grace: Duration,
    /// Routing and shard connections.
    pub router: RouterConfig,
    /// The mesh with the other proxies (off unless `mesh.listen` is set).
    pub mesh: crate::mesh::MeshConfig,
    /// The TOML file the proxy was started from, which `CONFIG REWRITE` updates (none:
    /// `CONFIG REWRITE` answers Redis's "running without a config file").
    pub config_file: Option<std::path::PathBuf>,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:6379".into(),
            requirepass: None,
            max_clients: 10_000,
            limits: Limits::default(),
            idle_timeout: Duration::ZERO,
            partial_request_timeout: Duration::from_secs(30),
            auth_timeout: Duration::from_secs(10),
            max_output_bytes: 256 * 1024 * 1024,
            output_stall: Duration::from_secs(30),
            max_pipeline: 1024,
            shutdown_grace: Duration::from_secs(5),
            router: RouterConfig::default(),
            mesh: crate::mesh::MeshConfig::default(),
            config_file: None,
        }
    }
}

/// State shared by every connection.
#[derive(Debug)]
pub struct Shared {
    /// Settings.
    pub cfg: ProxyConfig,
    /// The settings `CONFIG SET` changes (they start from `cfg`).
    pub settings: Settings,
    /// Routing.
    pub router: Router,
    /// Metrics.
    pub metrics: Metrics,
    /// Connected clients.
    pub clients: AtomicUsize,
    /// Clients blocked now (`CLIENT UNBLOCK`).
    pub blocked: crate::unblock::Blocked,
    /// The connected clients (`CLIENT LIST`, `CLIENT KILL`).
    pub client_table: crate::clients::Clients,
    /// Pub/sub subscriptions of this proxy's clients.
    pub pubsub: Arc<crate::pubsub::Hub>,
    /// Client-side caching (`CLIENT TRACKING`) of this proxy's clients.
    pub tracker: Arc<crate::tracking::Tracker>,
    /// The links to the other proxies of the cluster ([`crate::mesh`]).
    pub mesh: Arc<crate::mesh::Mesh>,
    /// Scripts by SHA1 (`SCRIPT LOAD`, `EVALSHA`).
    pub scripts: crate::script_cache::ScriptCache,
    /// This proxy's copy of the function libraries.
    pub functions: crate::functions::Registry,
    next_id: AtomicU64,
    /// When the proxy started.
    pub started: Instant,
    /// Connections to `MIGRATE` targets.
    pub migrate_sockets: Arc<crate::sockets::Sockets>,
    /// `SLOWLOG` and its settings.
    pub slowlog: crate::slowlog::SlowLog,
    /// `LATENCY`'s monitor and its threshold.
    pub latency: crate::latency::LatencyMonitor,
    /// `CLIENT PAUSE`'s state.
    pub pause: crate::pause::Pause,
    /// The users (`ACL`, `AUTH`).
    pub acl: crate::acl::Acl,
    /// Set by `SHUTDOWN`: [`crate::server::serve`] stops, and so does the process around it.
    shutdown: tokio::sync::watch::Sender<bool>,
    /// Until every range served once after start (or [`LOADING_MAX`] passed): commands
    /// that need data answer `-LOADING`, as redis-server's do while it loads its dataset.
    loading: AtomicBool,
    /// Unix seconds of the last `SAVE`/`BGSAVE` (the proxy's start before any): `LASTSAVE`.
    last_save: AtomicU64,
}

/// Longest the startup `-LOADING` state lasts: a range still unreachable after it is an
/// outage, which commands wait on and report (`cluster unavailable`) like any other.
pub const LOADING_MAX: Duration = Duration::from_secs(10);

/// Redis's reply to a command that needs data while the dataset loads.
pub const LOADING_ERROR: &str = "LOADING Redis is loading the dataset in memory";

impl Shared {
    /// Shared state for `cfg`.
    pub fn new(cfg: ProxyConfig) -> Arc<Self> {
        let router = Router::new(cfg.router.clone());
        let mesh = Arc::new(crate::mesh::Mesh::new(cfg.mesh.clone(), router.client_id()));
        router.blocking.set_fanout(mesh.clone());
        let settings = Settings::new(
            cfg.requirepass.as_deref(),
            cfg.limits.max_query_buffer_bytes,
            cfg.idle_timeout,
        );
        let acl = crate::acl::Acl::new(cfg.requirepass.as_deref().map(str::as_bytes));
        Arc::new(Self {
            acl,
            cfg,
            settings,
            router,
            metrics: Metrics::default(),
            clients: AtomicUsize::new(0),
            blocked: crate::unblock::Blocked::default(),
            client_table: crate::clients::Clients::default(),
            pubsub: Arc::default(),
            tracker: Arc::default(),
            mesh,
            scripts: crate::script_cache::ScriptCache::default(),
            functions: crate::functions::Registry::default(),
            next_id: AtomicU64::new(1),
            started: Instant::now(),
            migrate_sockets: Arc::default(),
            slowlog: crate::slowlog::SlowLog::default(),
            latency: crate::latency::LatencyMonitor::default(),
            pause: crate::pause::Pause::default(),
            shutdown: tokio::sync::watch::Sender::new(false),
            loading: AtomicBool::new(true),
            last_save: AtomicU64::new(now_us() / 1_000_000),
        })
    }

    /// Records a save now: every write acknowledged so far is durable (in the Raft logs of
    /// a quorum of replicas), which is what `SAVE` promises.
    pub fn mark_saved(&self) {
        self.last_save
            .fetch_max(now_us() / 1_000_000, Ordering::Relaxed);
    }

    /// Unix seconds of the last save (`LASTSAVE`).
    pub fn last_save(&self) -> u64 {
        self.last_save.load(Ordering::Relaxed)
    }

    /// Whether the proxy is still loading: started, and not every range has served yet.
    pub fn loading(&self) -> bool {
        self.loading.load(Ordering::Relaxed)
    }

    /// Ends the loading state (`server::finish_loading`).
    pub fn loaded(&self) {
        self.loading.store(false, Ordering::Relaxed);
    }

    /// Asks the proxy, and the process it runs in, to stop (`SHUTDOWN`).
    pub fn request_shutdown(&self) {
        self.shutdown.send_replace(true);
    }

    /// Completes once `SHUTDOWN` was requested.
    pub async fn shutdown_requested(&self) {
        let mut rx = self.shutdown.subscribe();
        let _ = rx.wait_for(|stop| *stop).await;
    }

    /// A new connection's `CLIENT ID`.
    pub fn next_client_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }
}

/// Unix time in milliseconds (the clock relative expiries are computed from).
pub fn now_ms() -> u64 {
    now_us() / 1000
}

/// Unix time in microseconds.
pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}
