//! Routing: a cached copy of the master's route table, a pool of connections to DS shards,
//! and [`Router::exec`], which runs a batch of operations (one client pipeline) with as few
//! `call_batch`es as there are destination shards, retrying operations that met a stale route
//! (`NotLeader`, `EpochMismatch`, `RangeNotFound`, `ServerBusy`, a failed connect) after a
//! route refresh, with bounded, backed-off attempts. A `NotLeader` that names the leader's
//! shard is followed at once (at most [`MAX_QUICK_HOPS`] attempts in a row without a pause),
//! and a shard that could not be reached is replaced by the range's other replicas for the
//! rest of the run: after its leader's node dies, a range's new leader is found by asking
//! the survivors, before the master's table says so.
//!
//! Every write carries this proxy's write id (`KvWrite`: a random client id chosen at start
//! and a sequence number from a counter), the same in every copy, so that its range applies
//! it once however often it arrives. A write whose outcome is unknown (the connection closed
//! or the call timed out after it was sent) is therefore re-sent like a read, if its range
//! deduplicates it and within [`Router::resend_budget`]; otherwise (raw operations,
//! `RangeFlush`, a spent budget) it is reported as an error. Reads are retried.
// perf-critical: every data command goes through `exec`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use net::message::handshake::ROUTE_WATCH_VERSION;
use net::message::kv::{DEDUP_WINDOW_MS, KvOp, KvRequest, KvResponse, KvWrite, OpResult};
use net::message::{
    GetRouteTable, Hello, Message, ROUTE_WATCH_MAX_WAIT_MS, RangeDescriptor, Role, RouteCtx,
    WatchRouteTable,
};
use net::route_cache::RouteCache;
use net::tokio_transport::{Client, Pool};
use net::transport::{CallError, TransportConfig};
use net::{ClusterId, NodeId, RpcError};

/// Why an operation failed, as the proxy reports it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ExecError {
    /// The shard refused or failed the operation.
    #[error("{0}")]
    Rpc(RpcError),
    /// No route or no shard answered within the retry budget.
    #[error("cluster unavailable: {0}")]
    Unavailable(String),
    /// A write was sent but its outcome is unknown.
    #[error("write outcome unknown: {0}")]
    Unknown(String),
}

/// Pause after a failed route watch, and the polling period towards a master that predates
/// the watch.
const WATCH_RETRY: Duration = Duration::from_secs(1);

/// Routing knobs.
#[derive(Debug, Clone)]
pub struct RouterConfig {
    /// Master addresses (`host:port`), tried in order.
    pub masters: Vec<String>,
    /// How long an operation is retried (counted from its first attempt). The default, 5 s,
    /// is long enough for a range to elect a new leader after its leader's node fails and
    /// for the master to learn of it. An operation is given up only when this *and*
    /// `min_attempts` are both spent: attempts that each wait out a call timeout (a node
    /// that stopped with calls in flight) still get as many tries as before.
    pub retry_budget: Duration,
    /// Attempts an operation gets at least, however long they take. Default 30.
    pub min_attempts: u32,
    /// Backoff before the second attempt; doubles each attempt up to `max_backoff`.
    pub backoff: Duration,
    /// Longest pause between attempts. Default 25 ms: while a range elects, its replicas
    /// answer `NotLeader` without a hint, and the first attempt after the election is at most
    /// this late (a budget counted in time, not attempts, lets it be short).
    pub max_backoff: Duration,
    /// Connections per shard.
    pub conns_per_shard: usize,
    /// How long after a command started a write whose outcome is unknown may still be
    /// re-sent with its write id (capped: [`Router::resend_budget`]). Default 3 s.
    pub write_resend: Duration,
    /// Transport bounds and timeouts.
    pub transport: TransportConfig,
    /// **Test only** ([`crate::fault`]): acknowledge every 8th plain SET without sending it.
    /// Default false; set only by `tierkv proxy` from its environment.
    pub test_only_drop_acked_sets: bool,
    /// Whether the writes of a pipeline that go to one range travel as one `Multi`
    /// ([`crate::pack`]). Default true; `CONFIG SET tierkv-pack-writes` changes it.
    pub pack_writes: bool,
}

impl Default for RouterConfig {
    fn default() -> Self {
        Self {
            masters: Vec::new(),
            retry_budget: Duration::from_secs(5),
            min_attempts: 30,
            backoff: Duration::from_millis(5),
            max_backoff: Duration::from_millis(25),
            conns_per_shard: 2,
            write_resend: Duration::from_secs(3),
            transport: TransportConfig::default(),
            test_only_drop_acked_sets: false,
            pack_writes: true,
        }
    }
}

/// The cached route table and its version.
#[derive(Debug, Default)]
struct Table {
    version: u64,
    cache: RouteCache,
}

/// Counters of the router, for `INFO`.
#[derive(Debug, Default)]
pub struct RouterStats {
    /// Operations retried after a stale route or a failed connect.
    pub retries: AtomicU64,
    /// Route table fetches from the master.
    pub refreshes: AtomicU64,
    /// Route tables the master pushed through the watch (each a routing change).
    pub pushes: AtomicU64,
    /// Operations that ended in `ExecError::Unavailable` / `Unknown`.
    pub failures: AtomicU64,
    /// Packs of pipelined writes sent (`crate::pack`), each one `Multi`.
    pub packs: AtomicU64,
    /// Writes sent in those packs.
    pub packed_ops: AtomicU64,
    /// Packs a shard refused as a whole, whose writes were then sent one by one.
    pub packs_refused: AtomicU64,
}

/// The route cache and the shard connections; shared by every client connection.
#[derive(Debug)]
pub struct Router {
    cfg: RouterConfig,
    table: RwLock<Arc<Table>>,
    refresh_lock: tokio::sync::Mutex<()>,
    pool: Pool,
    /// Counters.
    pub stats: RouterStats,
    /// Waiters of blocking commands, woken by the writes that go through [`Self::exec`].
    pub blocking: crate::waiters::Registry,
    /// The master's last answer about the cluster's memory (`CONFIG GET maxmemory`, `INFO`).
    pub memory: crate::memory_cache::MemoryCache,
    /// The write client id of this proxy.
    client: u64,
    /// The last write sequence number handed out.
    next_seq: AtomicU64,
    resend_budget: Duration,
    /// The test-only fault, when `cfg.test_only_drop_acked_sets` is on.
    fault: Option<crate::fault::DropAckedSets>,
    /// Whether pipelined writes are packed ([`crate::pack`]).
    pack_writes: std::sync::atomic::AtomicBool,
}

/// A resolved destination of one operation.
struct Dest {
    ctx: RouteCtx,
    addr: String,
}

impl Router {
    /// A router; the route table is fetched on first use.
    pub fn new(cfg: RouterConfig) -> Self {
        let hello = Hello::new(Role::Proxy {}, ClusterId(0), NodeId(0));
        let pool = Pool::new(hello, cfg.transport.clone(), cfg.conns_per_shard);
        Self {
            resend_budget: resend_budget(&cfg),
            table: RwLock::new(Arc::new(Table::default())),
            refresh_lock: tokio::sync::Mutex::new(()),
            pool,
            stats: RouterStats::default(),
            blocking: crate::waiters::Registry::default(),
            memory: crate::memory_cache::MemoryCache::default(),
            client: random_client_id(),
            next_seq: AtomicU64::new(0),
            fault: cfg
                .test_only_drop_acked_sets
                .then(crate::fault::DropAckedSets::default),
            pack_writes: std::sync::atomic::AtomicBool::new(cfg.pack_writes),
            cfg,
        }
    }

    fn table(&self) -> Arc<Table> {
        self.table.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The version of the cached route table (0: none yet).
    pub fn version(&self) -> u64 {
        self.table().version
    }

    /// The ranges of the cached table, in key order.
    pub fn ranges(&self) -> Vec<RangeDescriptor> {
        self.table()
            .cache
            .routes()
            .iter()
            .map(|r| r.range.clone())
            .collect()
    }

    /// Whether every range of the route table serves now: one leader read of each (a raw
    /// `Get` of its start key, one call per shard, one attempt, no retry). The proxy's
    /// startup `-LOADING` state ends at the first round that finds them all serving
    /// (`server::finish_loading`).
    pub async fn every_range_serves(&self) -> bool {
        let mut table = self.table();
        if table.version == 0 {
            if self.refresh(0).await.is_err() {
                return false;
            }
            table = self.table();
        }
        let routes = table.cache.routes();
        let mut groups: HashMap<&str, Vec<Message>> = HashMap::new();
        for r in routes {
            let Some(addr) = r.addr.as_deref() else {
                return false;
            };
            let ctx = RouteCtx {
                range_id: r.range.id,
                epoch: r.range.epoch,
            };
            let op = KvOp::Get {
                key: r.range.start.clone(),
            };
            groups
                .entry(addr)
                .or_default()
                .push(Message::KvRequest(KvRequest { ctx, op }));
        }
        if groups.is_empty() {
            return false;
        }
        let calls = groups.into_iter().map(|(addr, msgs)| async move {
            let Ok(c) = self.pool.get(addr).await else {
                return false;
            };
            call(&c, msgs).await.is_ok_and(|replies| {
                replies
                    .iter()
                    .all(|r| matches!(r, Ok(Message::KvResponse(KvResponse::Ok { .. }))))
            })
        });
        futures_util::future::join_all(calls)
            .await
            .into_iter()
            .all(|served| served)
    }

    /// Fetches the route table unless one newer than `seen` was installed meanwhile
    /// (concurrent refreshes coalesce).
    pub async fn refresh(&self, seen: u64) -> Result<(), ExecError> {
        let _guard = self.refresh_lock.lock().await;
        if self.version() > seen {
            return Ok(());
        }
        self.stats.refreshes.fetch_add(1, Ordering::Relaxed);
        let mut last = String::from("no master address configured");
        for addr in &self.cfg.masters {
            let reply = match self.pool.get(addr).await {
                Ok(c) => c.call(GetRouteTable { known_version: 0 }.into()).await,
                Err(e) => Err(e),
            };
            match reply {
                Ok(Message::RouteTable(t)) => {
                    self.install(t);
                    return Ok(());
                }
                Ok(Message::Error(e)) => last = format!("master {addr}: {e}"),
                Ok(other) => last = format!("master {addr}: unexpected {}", other.name()),
                Err(e) => last = format!("master {addr}: {e}"),
            }
        }
        tracing::warn!("route refresh failed: {last}");
        Err(ExecError::Unavailable(last))
    }

    /// Sends `msg` to the first master that answers it over a connection of protocol
    /// `min_version` or later (masters that speak less, or answer `Error`, are skipped); the
    /// answer and the cluster id that master announced.
    pub async fn call_master(
        &self,
        msg: Message,
        min_version: u16,
    ) -> Result<(Message, ClusterId), String> {
        let mut last = String::from("no master address configured");
        for addr in &self.cfg.masters {
            let client = match self.pool.get(addr).await {
                Ok(c) => c,
                Err(e) => {
                    last = format!("master {addr}: {e}");
                    continue;
                }
            };
            let version = client.peer().version;
            if version < min_version {
                last = format!("master {addr} speaks protocol {version} < {min_version}");
                continue;
            }
            match client.call(msg.clone()).await {
                Ok(Message::Error(e)) => last = format!("master {addr}: {e}"),
                Ok(m) => return Ok((m, client.peer().cluster_id)),
                Err(e) => last = format!("master {addr}: {e}"),
            }
        }
        Err(last)
    }

    /// Keeps one route-table watch in flight to the master until `stop` turns true, installing
    /// every table it pushes: a split, a leader move or a replaced replica reaches this proxy
    /// within one round trip, before any client request meets the stale route. Over a
    /// connection that predates the watch (protocol < 4) it polls once a second instead.
    pub async fn watch_routes(&self, mut stop: tokio::sync::watch::Receiver<bool>) {
        // No table yet: `u64::MAX` is never a route version, so the first answer is the table.
        let mut known = u64::MAX;
        while !*stop.borrow() {
            let step = async {
                match self.watch_once(known).await {
                    Ok(version) => known = version,
                    Err(e) => {
                        tracing::debug!("route watch: {e}");
                        tokio::time::sleep(WATCH_RETRY).await;
                    }
                }
            };
            tokio::select! {
                _ = stop.changed() => return,
                () = step => {}
            }
        }
    }

    /// One watch (or poll) of the first master that answers; the master's route version.
    async fn watch_once(&self, known: u64) -> Result<u64, String> {
        let mut last = String::from("no master address configured");
        for addr in &self.cfg.masters {
            let client = match self.pool.get(addr).await {
                Ok(c) => c,
                Err(e) => {
                    last = format!("master {addr}: {e}");
                    continue;
                }
            };
            let msg: Message = if client.peer().version >= ROUTE_WATCH_VERSION {
                WatchRouteTable {
                    known_version: known,
                    wait_ms: self.watch_wait_ms(),
                }
                .into()
            } else {
                tokio::time::sleep(WATCH_RETRY).await;
                GetRouteTable {
                    known_version: known,
                }
                .into()
            };
            match client.call(msg).await {
                Ok(Message::RouteTable(t)) => {
                    let version = t.route_version;
                    if !t.unchanged {
                        if known != u64::MAX {
                            self.stats.pushes.fetch_add(1, Ordering::Relaxed);
                        }
                        self.install(t);
                    }
                    return Ok(version);
                }
                Ok(Message::Error(e)) => last = format!("master {addr}: {e}"),
                Ok(other) => last = format!("master {addr}: unexpected {}", other.name()),
                Err(e) => last = format!("master {addr}: {e}"),
            }
        }
        Err(last)
    }

    /// How long a watch may wait: the master's cap, and well inside the request timeout.
    fn watch_wait_ms(&self) -> u32 {
        let timeout = self.cfg.transport.request_timeout.as_millis();
        let within = timeout.saturating_sub(1000).max(timeout / 2);
        u32::try_from(within)
            .unwrap_or(u32::MAX)
            .min(ROUTE_WATCH_MAX_WAIT_MS)
    }

    fn install(&self, t: net::message::RouteTable) {
        let route_version = t.route_version;
        let cache = RouteCache::new(t);
        // Versions only grow; a table from a lagging master must not replace a newer one.
        let mut cur = self.table.write().unwrap_or_else(|p| p.into_inner());
        let version = route_version.max(cur.version + 1);
        *cur = Arc::new(Table { version, cache });
    }

    /// The id of the range holding internal key `key` in the cached route table, if known
    /// (no refresh: for `-BUSY`, which only concerns ranges a script was routed to).
    pub fn cached_range_id(&self, key: &[u8]) -> Option<u64> {
        self.table().cache.find(key).map(|r| r.range.id.0)
    }

    /// The range containing internal key `key` and its leader address, refreshing once if
    /// the cache has none.
    pub async fn range_of(&self, key: &[u8]) -> Result<RangeDescriptor, ExecError> {
        for _ in 0..2 {
            let table = self.table();
            if let Some(r) = table.cache.find(key) {
                return Ok(r.range.clone());
            }
            self.refresh(table.version).await?;
        }
        Err(ExecError::Unavailable("no range holds the key".into()))
    }

    /// Runs `ops` (each with the internal key it routes by); results in the same order.
    ///
    /// Writes travel as `KvWrite`s with this proxy's write id, the same for every copy. A
    /// write whose copy may have applied (its call was sent, then the connection closed or
    /// the call timed out) is re-sent only if its range deduplicates it
    /// ([`KvOp::dedup_key`]) and only within [`Router::resend_budget`] of the start;
    /// otherwise it ends as [`ExecError::Unknown`].
    ///
    /// The writes of `ops` that go to one range travel as one `Multi` when they may
    /// (`crate::pack`; `tierkv-pack-writes`).
    pub async fn exec(&self, ops: Vec<(Bytes, KvOp)>) -> Vec<Result<OpResult, ExecError>> {
        let results = self.exec_unwoken(&ops).await;
        let done = ops
            .iter()
            .zip(&results)
            .filter_map(|((_, op), r)| Some((op, r.as_ref().ok()?)));
        self.blocking.after_exec(done).await;
        results
    }

    /// [`Self::exec`] without waking the blocked clients its writes fed: the caller wakes
    /// them (`waiters::fed_by`, `Registry::wake_fed`) when it is done — `EXEC` does after the
    /// whole transaction, as Redis serves blocked clients after it.
    pub async fn exec_unwoken(&self, ops: &[(Bytes, KvOp)]) -> Vec<Result<OpResult, ExecError>> {
        let plan = if self.fault.is_none() && self.pack_writes.load(Ordering::Relaxed) {
            let table = self.table();
            crate::pack::plan(ops, |k| table.cache.find(k).map(|r| r.range.id.0))
        } else {
            None
        };
        match plan {
            Some(plan) => self.exec_packed(ops, plan).await,
            None => self.exec_routed(ops).await,
        }
    }

    /// Whether pipelined writes are packed (`CONFIG SET tierkv-pack-writes`).
    pub fn packs_writes(&self) -> bool {
        self.pack_writes.load(Ordering::Relaxed)
    }

    /// Turns the packing of pipelined writes on or off.
    pub fn set_pack_writes(&self, on: bool) {
        self.pack_writes.store(on, Ordering::Relaxed);
    }

    /// Runs `plan` for `ops`: each pack's results go to its operations; the operations of a
    /// pack the shard refused as a whole (nothing of it applied, `crate::pack`) run again one
    /// by one.
    async fn exec_packed(
        &self,
        ops: &[(Bytes, KvOp)],
        plan: crate::pack::Plan,
    ) -> Vec<Result<OpResult, ExecError>> {
        use crate::pack::Slot;
        let sent = self.exec_routed(&plan.ops).await;
        let mut results: Vec<Option<Result<OpResult, ExecError>>> = vec![None; ops.len()];
        let mut again = Vec::new();
        for (slot, result) in plan.slots.into_iter().zip(sent) {
            let idx = match slot {
                Slot::One(i) => {
                    results[i] = Some(result);
                    continue;
                }
                Slot::Pack(idx) => idx,
            };
            self.stats.packs.fetch_add(1, Ordering::Relaxed);
            self.stats
                .packed_ops
                .fetch_add(idx.len() as u64, Ordering::Relaxed);
            match result {
                Ok(OpResult::Multi { results: each }) if each.len() == idx.len() => {
                    for (i, r) in idx.into_iter().zip(each) {
                        results[i] = Some(match r {
                            KvResponse::Ok { result } => Ok(result),
                            KvResponse::Err { error } => Err(ExecError::Rpc(error)),
                        });
                    }
                }
                Err(ExecError::Rpc(e)) if crate::pack::refused_whole(&e) => {
                    self.stats.packs_refused.fetch_add(1, Ordering::Relaxed);
                    again.extend(idx);
                }
                Ok(other) => {
                    let e = ExecError::Unavailable(format!("a packed write got {other:?}"));
                    idx.into_iter()
                        .for_each(|i| results[i] = Some(Err(e.clone())));
                }
                Err(e) => idx
                    .into_iter()
                    .for_each(|i| results[i] = Some(Err(e.clone()))),
            }
        }
        if !again.is_empty() {
            again.sort_unstable();
            let alone: Vec<(Bytes, KvOp)> = again.iter().map(|&i| ops[i].clone()).collect();
            for (i, r) in again.into_iter().zip(self.exec_routed(&alone).await) {
                results[i] = Some(r);
            }
        }
        results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(ExecError::Unavailable("no result".into()))))
            .collect()
    }

    /// Runs `ops` as they are: routed, sent, retried.
    async fn exec_routed(&self, ops: &[(Bytes, KvOp)]) -> Vec<Result<OpResult, ExecError>> {
        let mut run = Run::new(self, ops);
        let mut pending: Vec<usize> = (0..ops.len()).collect();
        if let Some(fault) = &self.fault {
            pending.retain(|&i| {
                let drop = fault.drops(&ops[i].1);
                if drop {
                    run.results[i] = Some(Ok(OpResult::Written { written: true }));
                }
                !drop
            });
        }
        let mut backoff = self.cfg.backoff;
        let deadline = Instant::now() + self.cfg.retry_budget;
        let mut last_refresh: Option<Instant> = None;
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            let mut table = self.table();
            if table.version == 0
                || pending
                    .iter()
                    .any(|&i| table.cache.find(&ops[i].0).is_none())
            {
                if let Err(e) = self.refresh(table.version).await {
                    run.last_err = reason(e);
                }
                table = self.table();
            }
            // Group by destination, keeping each group's operations in pipeline order.
            let mut groups: HashMap<String, Vec<(usize, RouteCtx)>> = HashMap::new();
            let mut retry = Vec::new();
            for &i in &pending {
                if run.too_late_to_resend(i) {
                    continue;
                }
                match run.destination(&table, i) {
                    Some(d) => groups.entry(d.addr).or_default().push((i, d.ctx)),
                    None => retry.push(i),
                }
            }
            let run_ref = &run;
            let calls = groups.into_iter().map(|(addr, group)| {
                let msgs: Vec<Message> = group
                    .iter()
                    .map(|&(i, ctx)| run_ref.message(i, ctx))
                    .collect();
                async move {
                    let replies = match self.pool.get(&addr).await {
                        Ok(c) => call(&c, msgs).await,
                        Err(e) => Err(e),
                    };
                    (addr, group, replies)
                }
            });
            for (addr, group, replies) in futures_util::future::join_all(calls).await {
                match replies {
                    Ok(replies) => {
                        for ((i, _), reply) in group.into_iter().zip(replies) {
                            run.reply(i, &addr, reply, &mut retry);
                        }
                    }
                    Err(e) => {
                        for (i, _) in group {
                            run.failed(i, &addr, &e, &mut retry);
                        }
                    }
                }
            }
            if retry.is_empty() {
                if run.lost_call {
                    // Logged by `refresh` if it fails; the results stand either way.
                    let _ = self.refresh(table.version).await;
                }
                break;
            }
            retry.sort_unstable();
            pending = retry;
            if attempts >= self.cfg.min_attempts && Instant::now() + backoff > deadline {
                break;
            }
            self.stats
                .retries
                .fetch_add(pending.len() as u64, Ordering::Relaxed);
            if run.may_hop(&pending) {
                // The leader was named: ask it now, on the same table.
                continue;
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(self.cfg.max_backoff.max(self.cfg.backoff));
            // The master's table at most every REFRESH_EVERY while retrying (the route watch
            // pushes changes anyway): short pauses must not turn into a flood of refreshes.
            if last_refresh.is_none_or(|t| t.elapsed() >= REFRESH_EVERY) {
                last_refresh = Some(Instant::now());
                if let Err(e) = self.refresh(table.version).await {
                    run.last_err = reason(e);
                }
            }
        }
        run.finish()
    }

    /// How long after a command started a write whose outcome is unknown may still be
    /// re-sent: `write_resend`, capped at the range's deduplication window minus the
    /// request timeout and [`CLOCK_SKEW_MARGIN`]. Every copy is written to its connection
    /// within this budget or not at all (a call is not written after its timeout), so every
    /// copy is proposed within `budget + request_timeout` (plus transit) of the first: inside
    /// the window, with the margin left for the clocks of two leaders proposing copies.
    pub fn resend_budget(&self) -> Duration {
        self.resend_budget
    }

    /// This proxy's write client id (random, non-zero, chosen at start).
    pub fn client_id(&self) -> u64 {
        self.client
    }

    /// A sequence number for each write of `ops` (empty when none writes).
    fn write_seqs(&self, ops: &[(Bytes, KvOp)]) -> Vec<u64> {
        let writes = ops.iter().filter(|(_, op)| op.is_write()).count() as u64;
        if writes == 0 {
            return Vec::new();
        }
        let mut next = self.next_seq.fetch_add(writes, Ordering::Relaxed);
        ops.iter()
            .map(|(_, op)| {
                if op.is_write() {
                    next = next.wrapping_add(1);
                    next
                } else {
                    0
                }
            })
            .collect()
    }
}

/// Clock difference allowed between the leaders that propose two copies of one write.
pub const CLOCK_SKEW_MARGIN: Duration = Duration::from_secs(2);

fn resend_budget(cfg: &RouterConfig) -> Duration {
    Duration::from_millis(DEDUP_WINDOW_MS)
        .saturating_sub(cfg.transport.request_timeout)
        .saturating_sub(CLOCK_SKEW_MARGIN)
        .min(cfg.write_resend)
}

/// A random non-zero write client id: from the OS random source, or (if it fails) from the
/// clock and process id through the std hasher's random keys.
fn random_client_id() -> u64 {
    let os = net::auth::Nonce::random()
        .ok()
        .and_then(|n| n.0.first_chunk::<8>().copied())
        .map(u64::from_le_bytes);
    let id = os.unwrap_or_else(|| {
        use std::hash::BuildHasher;
        let now = std::time::SystemTime::now();
        std::collections::hash_map::RandomState::new().hash_one((now, std::process::id()))
    });
    id.max(1)
}

/// One `exec`: its operations' write ids, results so far, and what went wrong.
struct Run<'a> {
    router: &'a Router,
    ops: &'a [(Bytes, KvOp)],
    /// Each operation's write sequence number (0: a read); empty when none writes.
    seqs: Vec<u64>,
    results: Vec<Option<Result<OpResult, ExecError>>>,
    /// For each write a copy of which may have applied, why (empty until one is).
    unsure: Vec<Option<String>>,
    started: Instant,
    last_err: String,
    /// A call failed after it was sent (closed, timed out): its shard may be gone, so the
    /// route table is refreshed before returning and later commands do not wait on it.
    lost_call: bool,
    /// Operations a replica answered `NotLeader` naming the leader's shard: tried there
    /// next, at once ([`MAX_QUICK_HOPS`]).
    redirect: HashMap<usize, String>,
    /// Shards that could not be reached (or lost a call) in this run: their ranges'
    /// operations go to another replica next, which serves them or names the new leader.
    unreachable: Vec<String>,
    /// Attempts made in a row without a pause, each after leader hints.
    quick_hops: u32,
}

/// Shortest time between two route refreshes one `exec` asks the master for while it retries.
const REFRESH_EVERY: Duration = Duration::from_millis(100);

/// Most attempts in a row that follow leader hints without a pause: hints that point in a
/// circle (replicas with stale views) then meet the usual backoff.
const MAX_QUICK_HOPS: u32 = 2;

impl<'a> Run<'a> {
    fn new(router: &'a Router, ops: &'a [(Bytes, KvOp)]) -> Self {
        Self {
            router,
            ops,
            seqs: router.write_seqs(ops),
            results: vec![None; ops.len()],
            unsure: Vec::new(),
            started: Instant::now(),
            last_err: String::new(),
            lost_call: false,
            redirect: HashMap::new(),
            unreachable: Vec::new(),
            quick_hops: 0,
        }
    }

    /// Where operation `i` goes in this attempt: to the shard a replica named as leader in
    /// its last `NotLeader`; else to the table's leader — or, if that shard could not be
    /// reached in this run, to the first of the range's other replicas that could.
    fn destination(&mut self, table: &Table, i: usize) -> Option<Dest> {
        let r = table.cache.find(&self.ops[i].0)?;
        let ctx = RouteCtx {
            range_id: r.range.id,
            epoch: r.range.epoch,
        };
        if let Some(addr) = self.redirect.remove(&i) {
            return Some(Dest { ctx, addr });
        }
        let leader = r.addr.as_ref()?;
        let addr = if self.unreachable.contains(leader) {
            r.others
                .iter()
                .find(|a| !self.unreachable.contains(a))
                .unwrap_or(leader)
        } else {
            leader
        };
        Some(Dest {
            ctx,
            addr: addr.clone(),
        })
    }

    /// Whether the next attempt may go at once: every operation to retry has a leader hint,
    /// and not too many attempts in a row went without a pause.
    fn may_hop(&mut self, retry: &[usize]) -> bool {
        let hop =
            self.quick_hops < MAX_QUICK_HOPS && retry.iter().all(|i| self.redirect.contains_key(i));
        self.quick_hops = if hop { self.quick_hops + 1 } else { 0 };
        hop
    }

    fn seq(&self, i: usize) -> u64 {
        self.seqs.get(i).copied().unwrap_or(0)
    }

    /// Why write `i` may have applied (`None`: it has not been sent without an answer).
    fn unsure(&self, i: usize) -> Option<&String> {
        self.unsure.get(i).and_then(Option::as_ref)
    }

    /// Operation `i` for a range: a write with its id, or a read.
    fn message(&self, i: usize, ctx: RouteCtx) -> Message {
        let request = KvRequest {
            ctx,
            op: self.ops[i].1.clone(),
        };
        match self.seq(i) {
            0 => Message::KvRequest(request),
            seq => Message::KvWrite(KvWrite {
                client: self.router.client,
                seq,
                request,
            }),
        }
    }

    /// Whether write `i` may have applied and its resend budget is spent: then it ends as
    /// `Unknown` instead of being sent again.
    fn too_late_to_resend(&mut self, i: usize) -> bool {
        let Some(why) = self.unsure(i) else {
            return false;
        };
        if self.started.elapsed() < self.router.resend_budget {
            return false;
        }
        self.results[i] = Some(Err(ExecError::Unknown(why.clone())));
        true
    }

    /// Takes the reply to operation `i` from `addr`.
    fn reply(
        &mut self,
        i: usize,
        addr: &str,
        reply: Result<Message, CallError>,
        retry: &mut Vec<usize>,
    ) {
        let result = match reply {
            Ok(Message::KvResponse(KvResponse::Ok { result })) => Ok(result),
            Ok(Message::KvResponse(KvResponse::Err { error })) if error.is_retryable() => {
                if let RpcError::NotLeader { hint: Some(h) } = &error
                    && h.addr != addr
                {
                    self.redirect.insert(i, h.addr.clone());
                }
                self.last_err = format!("{addr}: {error}");
                retry.push(i);
                return;
            }
            Ok(Message::KvResponse(KvResponse::Err { error })) | Ok(Message::Error(error)) => {
                Err(ExecError::Rpc(error))
            }
            Ok(other) => Err(ExecError::Unavailable(format!(
                "{addr}: unexpected {}",
                other.name()
            ))),
            Err(e) => return self.failed(i, addr, &e, retry),
        };
        self.results[i] = Some(result);
    }

    /// Operation `i` got no reply from `addr`: retried if it was not sent, is a read, or is
    /// a write its range deduplicates; else its outcome is unknown.
    fn failed(&mut self, i: usize, addr: &str, e: &CallError, retry: &mut Vec<usize>) {
        if let CallError::TooLarge { len, max } = e {
            self.results[i] = Some(Err(ExecError::Rpc(RpcError::ValueTooLarge {
                len: *len as u64,
                max: *max as u64,
            })));
            return;
        }
        self.last_err = format!("{addr}: {e}");
        if !self.unreachable.iter().any(|a| a == addr) {
            self.unreachable.push(addr.to_string());
        }
        let op = &self.ops[i].1;
        if !e.maybe_sent() {
            retry.push(i);
            return;
        }
        self.lost_call = true;
        if !op.is_write() {
            retry.push(i);
        } else if self.seq(i) != 0 && op.dedup_key().is_some() {
            if self.unsure.is_empty() {
                self.unsure = vec![None; self.ops.len()];
            }
            // The first loss names the shard that may have applied it.
            self.unsure[i].get_or_insert_with(|| self.last_err.clone());
            retry.push(i);
        } else {
            self.results[i] = Some(Err(ExecError::Unknown(self.last_err.clone())));
        }
    }

    /// The results; an operation without one failed for `last_err` (`Unknown`, with the
    /// loss that made it so, for a write that may have applied).
    fn finish(self) -> Vec<Result<OpResult, ExecError>> {
        let stats = &self.router.stats;
        let mut unsure = self.unsure.into_iter();
        let last_err = self.last_err;
        self.results
            .into_iter()
            .map(|r| {
                let why = unsure.next().flatten();
                r.unwrap_or_else(|| {
                    stats.failures.fetch_add(1, Ordering::Relaxed);
                    match why {
                        Some(why) => Err(ExecError::Unknown(why)),
                        None => Err(ExecError::Unavailable(last_err.clone())),
                    }
                })
            })
            .collect()
    }
}

/// How long the replies of a shard batch holding a script are awaited: a script may run up
/// to its instruction budget on the shard (500,000,000 instructions: ~1.5 s on an idle core,
/// several times that on a loaded one), and a reply given up on is a write of unknown outcome
/// (`ERR write outcome unknown`) although the script ran.
pub const SCRIPT_CALL_TIMEOUT: Duration = Duration::from_secs(30);

async fn call(
    c: &Client,
    msgs: Vec<Message>,
) -> Result<Vec<Result<Message, CallError>>, CallError> {
    if msgs.iter().any(runs_a_script) {
        return c.call_batch_within(msgs, SCRIPT_CALL_TIMEOUT).await;
    }
    if msgs.len() == 1 {
        let mut msgs = msgs;
        let m = msgs.pop().ok_or(CallError::Closed("empty batch".into()))?;
        return Ok(vec![c.call(m).await]);
    }
    c.call_batch(msgs).await
}

/// Whether `m` asks a shard to run a script (`EVAL`, `FCALL`, in any database, alone or in
/// a transaction).
fn runs_a_script(m: &Message) -> bool {
    match m {
        Message::KvRequest(r) => is_script(&r.op),
        Message::KvWrite(w) => is_script(&w.request.op),
        _ => false,
    }
}

fn is_script(op: &KvOp) -> bool {
    match op.in_db(crate::keyspace::Db::ZERO).1 {
        KvOp::Eval { .. } => true,
        KvOp::Multi { ops, .. } => ops.iter().any(is_script),
        _ => false,
    }
}

/// The text of a refresh failure, without repeating its prefix.
fn reason(e: ExecError) -> String {
    match e {
        ExecError::Unavailable(m) => m,
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use net::message::RouteCtx;
    use net::{Epoch, RangeId};

    fn eval() -> KvOp {
        KvOp::Eval {
            anchor: Bytes::from_static(b"k"),
            body: Bytes::from_static(b"return 1"),
            keys: vec![Bytes::from_static(b"k")],
            args: vec![],
            read_only: false,
            call: net::message::script::ScriptCall::SCRIPT,
        }
    }

    fn request(op: KvOp) -> KvRequest {
        KvRequest {
            ctx: RouteCtx {
                range_id: RangeId(1),
                epoch: Epoch::default(),
            },
            op,
        }
    }

    #[test]
    fn a_batch_holding_a_script_anywhere_is_awaited_longer() {
        let in_db1 =
            eval().into_db(crate::keyspace::Db::new(1).unwrap_or(crate::keyspace::Db::ZERO));
        let write = Message::KvWrite(KvWrite {
            client: 1,
            seq: 1,
            request: request(in_db1),
        });
        assert!(runs_a_script(&write));
        let multi = KvOp::Multi {
            watches: vec![],
            ops: vec![
                KvOp::KeyDel {
                    key: Bytes::from_static(b"x"),
                },
                eval(),
            ],
        };
        assert!(runs_a_script(&Message::KvRequest(request(multi))));
        let get = KvOp::StrGet {
            key: Bytes::from_static(b"k"),
        };
        assert!(!runs_a_script(&Message::KvRequest(request(get))));
    }
}
