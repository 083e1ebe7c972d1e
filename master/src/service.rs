//! The tokio side of the master: the `net` request handler, the server loop and the timer
//! (scheduler, TSO pre-allocation, snapshots).
//!
//! Requests that may write the log (fsync) run on `spawn_blocking` with the core's mutex;
//! lookups and store heartbeats take the mutex inline (it is never held across an await).
//! A handler dropped mid-way (connection closed) never leaves a half-applied change: the
//! blocking part runs to completion on its own thread.

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use net::message::handshake::{Acceptor, Role};
use net::message::{
    GetRouteTable, Message, Pong, ROUTE_WATCH_MAX_WAIT_MS, RouteTable, TsoBatch, WatchRouteTable,
};
use net::transport::{Handled, TransportConfig};
use net::{ClusterId, NodeId, RpcError};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::core::scale::ProvisionAction;
use crate::core::{Core, MasterConfig, RouteCache};
use crate::log::{LogError, RecoveryReport};
use crate::metrics::Metrics;
use crate::provision::Provisioner;
use crate::schedule::Proposal;
use crate::tso::{MAX_BATCH, TsoAllocator};

/// The master's source of time (unix milliseconds); tests replace it.
pub trait Clock: Send + Sync + fmt::Debug {
    /// Milliseconds since the unix epoch (may step backwards).
    fn now_ms(&self) -> u64;
}

/// The system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    }
}

/// A clock that only moves when told to (tests).
#[derive(Debug, Clone, Default)]
pub struct ManualClock(Arc<AtomicU64>);

impl ManualClock {
    /// A clock reading `ms`.
    pub fn new(ms: u64) -> Self {
        Self(Arc::new(AtomicU64::new(ms)))
    }
    /// Sets the reading (may go backwards).
    pub fn set(&self, ms: u64) {
        self.0.store(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// What [`Master::handle_now`] did with a request.
#[derive(Debug)]
pub enum Handling {
    /// Answered: the reply.
    Done(Message),
    /// Needs the log or a wait: pass it to [`Master::handle`].
    Later(Message),
}

/// A running master: the core, the TSO and the metrics.
#[derive(Debug)]
pub struct Master {
    core: Mutex<Core>,
    /// Read by lookups without the core's mutex (which may be held across an fsync).
    routes: Arc<RwLock<RouteCache>>,
    /// The route version as it changes (`WatchRouteTable` waits on it).
    route_watch: Arc<tokio::sync::watch::Sender<u64>>,
    tso: Mutex<TsoAllocator>,
    /// Serialises persisting the TSO limit.
    tso_persist: tokio::sync::Mutex<()>,
    clock: Arc<dyn Clock>,
    metrics: Metrics,
    cluster_id: ClusterId,
    tick_ms: u64,
    /// The proxies of the mesh (in memory with a TTL, never logged).
    proxies: Mutex<crate::directory::ProxyDirectory>,
    /// Starts and stops nodes for capacity requests (set once the RPC port is known).
    provisioner: RwLock<Option<Arc<dyn Provisioner>>>,
}

fn internal(message: impl Into<String>) -> RpcError {
    RpcError::Internal {
        code: 2,
        message: message.into(),
    }
}

impl Master {
    /// Opens the data dir (recovering or initialising it).
    pub fn open(
        cfg: MasterConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<(Arc<Self>, RecoveryReport), LogError> {
        let window = cfg.tso_window_ms;
        let tick_ms = cfg.schedule_interval_ms.max(1);
        let (core, report) = Core::open(cfg, clock.now_ms())?;
        let tso = TsoAllocator::new(core.state().tso_limit(), window);
        let cluster_id = core.state().cluster_id();
        tracing::info!(
            cluster = %cluster_id,
            snapshot_index = report.snapshot_index,
            replayed = report.replayed,
            "master opened"
        );
        let me = Self {
            routes: core.routes(),
            route_watch: core.route_watch(),
            core: Mutex::new(core),
            tso: Mutex::new(tso),
            tso_persist: tokio::sync::Mutex::new(()),
            clock,
            metrics: Metrics::default(),
            cluster_id,
            tick_ms,
            proxies: Mutex::default(),
            provisioner: RwLock::new(None),
        };
        Ok((Arc::new(me), report))
    }

    /// The cluster id.
    pub fn cluster_id(&self) -> ClusterId {
        self.cluster_id
    }

    /// The handshake identity of this master.
    pub fn acceptor(&self) -> Acceptor {
        Acceptor {
            role: Role::Master {},
            cluster_id: self.cluster_id,
            node_id: NodeId(0),
        }
    }

    /// The master's clock, ms.
    pub fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    /// RPC statistics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Runs `f` with the core locked (admin pages, tests). Do not call from a hot path.
    pub fn with_core<R>(&self, f: impl FnOnce(&mut Core) -> R) -> R {
        f(&mut self.lock_core())
    }

    fn lock_core(&self) -> MutexGuard<'_, Core> {
        self.core.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_proxies(&self) -> MutexGuard<'_, crate::directory::ProxyDirectory> {
        self.proxies.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Proxies registered in the directory now, and registrations expired so far.
    pub fn proxies(&self) -> (usize, u64) {
        let now = self.clock.now_ms();
        let mut d = self.lock_proxies();
        d.expire(now);
        (d.live(now), d.expired_total())
    }

    fn read_routes(&self) -> RwLockReadGuard<'_, RouteCache> {
        self.routes.read().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_tso(&self) -> MutexGuard<'_, TsoAllocator> {
        self.tso.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` on the core on a blocking thread (it may fsync).
    async fn blocking<R: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&mut Core, u64) -> R + Send + 'static,
    ) -> Result<R, RpcError> {
        let me = self.clone();
        tokio::task::spawn_blocking(move || {
            let now = me.clock.now_ms();
            let mut core = me.lock_core();
            f(&mut core, now)
        })
        .await
        .map_err(|e| internal(format!("master task failed: {e}")))
    }

    /// Serves `count` timestamps, persisting a higher limit first when needed.
    pub async fn tso(self: &Arc<Self>, count: u32) -> Result<TsoBatch, RpcError> {
        if !(1..=MAX_BATCH).contains(&count) {
            return Err(RpcError::BadRequest {
                message: format!("tso count {count} not in 1..={MAX_BATCH}"),
            });
        }
        loop {
            let need = match self.lock_tso().serve(self.clock.now_ms(), count) {
                Ok(first) => return Ok(TsoBatch { first, count }),
                Err(need) => need,
            };
            let _one_at_a_time = self.tso_persist.lock().await;
            if self.lock_tso().limit() >= need.limit {
                continue;
            }
            self.persist_tso_limit(need.limit).await?;
        }
    }

    async fn persist_tso_limit(self: &Arc<Self>, limit: net::Timestamp) -> Result<(), RpcError> {
        self.blocking(move |core, _| core.persist_tso_limit(limit))
            .await??;
        self.lock_tso().raise_limit(limit);
        Ok(())
    }

    /// Sets the provisioner capacity requests use (none: they fail at once).
    pub fn set_provisioner(&self, p: Option<Arc<dyn Provisioner>>) {
        *self.provisioner.write().unwrap_or_else(|e| e.into_inner()) = p;
    }

    /// The provisioner, if one is set.
    pub fn provisioner(&self) -> Option<Arc<dyn Provisioner>> {
        self.provisioner
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// One timer tick: persist the TSO limit ahead of need, run the scheduler (and the
    /// autoscaler), snapshot if due, then start the provisioner calls that are due. Returns
    /// the operators scheduled.
    pub async fn tick(self: &Arc<Self>) -> Vec<Proposal> {
        self.tso_tick().await;
        let scheduled = self
            .blocking(|core, now| {
                let p = core.schedule(now);
                if let Err(e) = core.maybe_snapshot() {
                    tracing::error!("master snapshot failed: {e:#}");
                }
                (p, core.take_provision_actions())
            })
            .await;
        let (proposals, actions) = scheduled.unwrap_or_default();
        for a in actions {
            tokio::spawn(self.clone().provision(a));
        }
        proposals
    }

    /// Runs a provisioner call on a blocking thread (never under the core's lock) and
    /// records its outcome.
    pub async fn provision(self: Arc<Self>, action: ProvisionAction) {
        let start = Instant::now();
        let result = match self.provisioner() {
            None => Err("no provisioner is configured ([scale] provisioner)".to_string()),
            Some(p) => {
                let a = action.clone();
                tokio::task::spawn_blocking(move || match &a {
                    ProvisionAction::Start(s) => p.start_nodes(s),
                    ProvisionAction::Stop(s) => p.stop_node(s),
                })
                .await
                .map_err(|e| format!("provisioner task failed: {e}"))
                .and_then(|r| r.map_err(|e| e.to_string()))
            }
        };
        if let Err(e) = &result {
            tracing::warn!(id = %action.id(), "provisioner call failed: {e}");
        }
        let took_us = start.elapsed().as_micros() as u64;
        let _ = self
            .blocking(move |core, now| core.provision_result(&action, result, took_us, now))
            .await;
    }

    async fn tso_tick(self: &Arc<Self>) {
        let _one_at_a_time = self.tso_persist.lock().await;
        let want = self.lock_tso().want_limit(self.clock.now_ms());
        if let Some(limit) = want {
            if let Err(e) = self.persist_tso_limit(limit).await {
                tracing::error!("persisting the TSO limit failed: {e}");
            }
        }
    }

    /// Answers `msg` at once if it needs neither the log nor a wait (lookups, pings, store
    /// heartbeats, a TSO batch within the persisted window); otherwise gives it back for
    /// [`Master::handle`]. For a transport fast path that answers without spawning a future.
    pub fn handle_now(&self, msg: Message) -> Handling {
        let start = Instant::now();
        let name = msg.name();
        let reply = match msg {
            Message::Ping(p) => Ok(Pong { nonce: p.nonce }.into()),
            Message::TsoRequest(r) if (1..=MAX_BATCH).contains(&r.count) => {
                let served = self.lock_tso().serve(self.clock.now_ms(), r.count);
                match served {
                    Ok(first) => Ok(TsoBatch {
                        first,
                        count: r.count,
                    }
                    .into()),
                    Err(_) => return Handling::Later(Message::TsoRequest(r)),
                }
            }
            Message::RouteByKey(r) => Ok(self.read_routes().route_by_key(&r.key).into()),
            Message::RouteById(r) => Ok(self.read_routes().route_by_id(r.range_id).into()),
            Message::GetRouteTable(r) => Ok(self.read_routes().route_table(r).into()),
            Message::StoreHeartbeat(hb) => {
                let now = self.clock.now_ms();
                self.lock_core().store_heartbeat(hb, now).map(Message::from)
            }
            Message::ShardHeartbeat(hb) => {
                let now = self.clock.now_ms();
                self.lock_core().shard_heartbeat(hb, now).map(Message::from)
            }
            Message::ProbeReport(r) => {
                let now = self.clock.now_ms();
                self.lock_core().probe_report(r, now).map(Message::from)
            }
            Message::ProxyRegister(r) => {
                let now = self.clock.now_ms();
                self.lock_proxies().register(r, now).map(Message::from)
            }
            Message::ShardMemory(m) => self.lock_core().shard_memory(m).map(Message::from),
            Message::GetClusterMemory(_) => Ok(self.lock_core().cluster_memory().into()),
            other => return Handling::Later(other),
        };
        Handling::Done(self.finish(name, start, reply))
    }

    fn finish(
        &self,
        name: &'static str,
        start: Instant,
        reply: Result<Message, RpcError>,
    ) -> Message {
        let reply = match reply {
            Ok(m) => m,
            Err(e) => {
                tracing::debug!(request = name, "refused: {e}");
                Message::Error(e)
            }
        };
        self.metrics
            .record(name, start.elapsed(), matches!(reply, Message::Error(_)));
        reply
    }

    /// Handles one request.
    pub async fn handle(self: Arc<Self>, msg: Message) -> Option<Message> {
        let start = Instant::now();
        let name = msg.name();
        let reply = self.dispatch(msg).await;
        Some(self.finish(name, start, reply))
    }

    /// Answers a route-table watch: the table as soon as its version differs from the
    /// caller's, or `unchanged` when the (capped) wait ends first.
    async fn watch_route_table(&self, w: WatchRouteTable) -> RouteTable {
        let known = GetRouteTable {
            known_version: w.known_version,
        };
        // Subscribe before reading the table: a change between the two wakes the wait.
        let mut changes = self.route_watch.subscribe();
        let wait = Duration::from_millis(u64::from(w.wait_ms.min(ROUTE_WATCH_MAX_WAIT_MS)));
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let table = self.read_routes().route_table(known);
            if !table.unchanged {
                return table;
            }
            match tokio::time::timeout_at(deadline, changes.changed()).await {
                Ok(Ok(())) => continue,
                // The deadline passed, or the master is shutting down.
                Ok(Err(_)) | Err(_) => return table,
            }
        }
    }

    async fn dispatch(self: &Arc<Self>, msg: Message) -> Result<Message, RpcError> {
        Ok(match msg {
            Message::Ping(p) => Pong { nonce: p.nonce }.into(),
            Message::TsoRequest(r) => self.tso(r.count).await?.into(),
            Message::RouteByKey(r) => self.read_routes().route_by_key(&r.key).into(),
            Message::RouteById(r) => self.read_routes().route_by_id(r.range_id).into(),
            Message::GetRouteTable(r) => self.read_routes().route_table(r).into(),
            Message::WatchRouteTable(w) => self.watch_route_table(w).await.into(),
            Message::StoreHeartbeat(hb) => {
                let now = self.clock.now_ms();
                self.lock_core().store_heartbeat(hb, now)?.into()
            }
            Message::ShardHeartbeat(hb) => {
                let now = self.clock.now_ms();
                self.lock_core().shard_heartbeat(hb, now)?.into()
            }
            Message::ProbeReport(r) => {
                let now = self.clock.now_ms();
                self.lock_core().probe_report(r, now)?.into()
            }
            Message::ProxyRegister(r) => {
                let now = self.clock.now_ms();
                self.lock_proxies().register(r, now)?.into()
            }
            Message::ShardMemory(m) => self.lock_core().shard_memory(m)?.into(),
            Message::GetClusterMemory(_) => self.lock_core().cluster_memory().into(),
            Message::SetMaxMemory(r) => self
                .blocking(move |c, _| c.set_max_memory(r))
                .await??
                .into(),
            Message::StoreRegister(r) => self
                .blocking(move |c, now| c.register_store(r, now))
                .await??
                .into(),
            Message::Bootstrap(r) => self.blocking(move |c, _| c.bootstrap(r)).await??.into(),
            Message::RangeHeartbeat(hb) => self
                .blocking(move |c, now| c.range_heartbeat(hb, now))
                .await??
                .into(),
            Message::AllocIds(r) => self
                .blocking(move |c, _| c.alloc_ids(r.count))
                .await??
                .into(),
            Message::SplitRequest(r) => {
                self.blocking(move |c, _| c.split_request(r)).await??.into()
            }
            Message::SplitReport(r) => self.blocking(move |c, _| c.split_report(r)).await??.into(),
            Message::MergeReport(r) => self.blocking(move |c, _| c.merge_report(r)).await??.into(),
            other => {
                return Err(RpcError::BadRequest {
                    message: format!("the master does not serve {}", other.name()),
                });
            }
        })
    }

    async fn run_timer(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let tso_period = Duration::from_millis(50);
        let mut last_schedule = Instant::now();
        loop {
            tokio::select! {
                _ = stop.changed() => return,
                () = tokio::time::sleep(tso_period) => {}
            }
            if last_schedule.elapsed() >= Duration::from_millis(self.tick_ms) {
                last_schedule = Instant::now();
                self.tick().await;
            } else {
                self.tso_tick().await;
            }
        }
    }

    /// Serves `listener` until `shutdown` completes, with the timer running alongside; on
    /// shutdown waits for every connection task and the timer to end.
    pub async fn serve(
        self: Arc<Self>,
        listener: TcpListener,
        cfg: TransportConfig,
        max_connections: usize,
        shutdown: impl Future<Output = ()>,
    ) {
        let (stop_tx, stop_rx) = watch::channel(false);
        let timer = tokio::spawn(self.clone().run_timer(stop_rx));
        let me = self.clone();
        // Reads and TSO batches within the window are answered on the connection's task
        // without a future; the rest run as futures (and on blocking threads when they fsync).
        let handler = Arc::new(move |msg: Message| match me.handle_now(msg) {
            Handling::Done(reply) => Handled::Now(Some(reply)),
            Handling::Later(msg) => Handled::Later(me.clone().handle(msg)),
        });
        net::tokio_transport::serve_handled(
            listener,
            self.acceptor(),
            cfg,
            max_connections,
            handler,
            shutdown,
        )
        .await;
        let _ = stop_tx.send(true);
        if let Err(e) = timer.await {
            tracing::error!("master timer task failed: {e}");
        }
    }
}
