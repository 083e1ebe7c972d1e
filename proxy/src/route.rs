//! Routing: a cached copy of the master's route table, a pool of connections to DS shards,
//! and [`Router::exec`], which runs a batch of operations (one client pipeline) with as few
//! `call_batch`es as there are destination shards, retrying operations that met a stale route
//! (`NotLeader`, `EpochMismatch`, `RangeNotFound`, `ServerBusy`, a failed connect) after a
//! route refresh, with bounded, backed-off attempts.
//!
//! A write whose outcome is unknown (the connection closed or the call timed out after it was
//! sent) is never retried: it is reported as an error. Reads are retried.
// perf-critical: every data command goes through `exec`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use net::message::kv::{KvOp, KvRequest, KvResponse, OpResult};
use net::message::{GetRouteTable, Hello, Message, RangeDescriptor, Role, RouteCtx};
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

/// Routing knobs.
#[derive(Debug, Clone)]
pub struct RouterConfig {
    /// Master addresses (`host:port`), tried in order.
    pub masters: Vec<String>,
    /// Attempts per operation (the first included). The default, 30, is about 5 s of
    /// backoff: long enough for a range to elect a new leader after its leader's node fails
    /// and for the master to learn of it.
    pub max_attempts: u32,
    /// Backoff before the second attempt; doubles each attempt, capped at 200 ms.
    pub backoff: Duration,
    /// Connections per shard.
    pub conns_per_shard: usize,
    /// Transport bounds and timeouts.
    pub transport: TransportConfig,
}

impl Default for RouterConfig {
    fn default() -> Self {
        Self {
            masters: Vec::new(),
            max_attempts: 30,
            backoff: Duration::from_millis(5),
            conns_per_shard: 2,
            transport: TransportConfig::default(),
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
    /// Operations that ended in `ExecError::Unavailable` / `Unknown`.
    pub failures: AtomicU64,
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
    pub blocking: crate::blocking::Registry,
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
            cfg,
            table: RwLock::new(Arc::new(Table::default())),
            refresh_lock: tokio::sync::Mutex::new(()),
            pool,
            stats: RouterStats::default(),
            blocking: crate::blocking::Registry::default(),
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

    fn install(&self, t: net::message::RouteTable) {
        let route_version = t.route_version;
        let cache = RouteCache::new(t);
        // Versions only grow; a table from a lagging master must not replace a newer one.
        let mut cur = self.table.write().unwrap_or_else(|p| p.into_inner());
        let version = route_version.max(cur.version + 1);
        *cur = Arc::new(Table { version, cache });
    }

    fn resolve(&self, table: &Table, key: &[u8]) -> Option<Dest> {
        let r = table.cache.find(key)?;
        Some(Dest {
            ctx: RouteCtx {
                range_id: r.range.id,
                epoch: r.range.epoch,
            },
            addr: r.addr.clone()?,
        })
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
    pub async fn exec(&self, ops: Vec<(Bytes, KvOp)>) -> Vec<Result<OpResult, ExecError>> {
        let n = ops.len();
        let mut results: Vec<Option<Result<OpResult, ExecError>>> = vec![None; n];
        let mut pending: Vec<usize> = (0..n).collect();
        let mut backoff = self.cfg.backoff;
        let mut last_err = String::new();
        // A call that failed after it was sent (closed, timed out) may mean its shard is gone:
        // the route table is refreshed before returning, so later commands do not wait on it.
        let mut lost_call = false;
        for attempt in 0..self.cfg.max_attempts.max(1) {
            let mut table = self.table();
            if table.version == 0
                || pending
                    .iter()
                    .any(|&i| table.cache.find(&ops[i].0).is_none())
            {
                if let Err(e) = self.refresh(table.version).await {
                    last_err = reason(e);
                }
                table = self.table();
            }
            // Group by destination, keeping each group's operations in pipeline order.
            let mut groups: HashMap<String, Vec<(usize, RouteCtx)>> = HashMap::new();
            let mut retry = Vec::new();
            for &i in &pending {
                match self.resolve(&table, &ops[i].0) {
                    Some(d) => groups.entry(d.addr).or_default().push((i, d.ctx)),
                    None => retry.push(i),
                }
            }
            let calls = groups.into_iter().map(|(addr, group)| {
                let msgs: Vec<Message> = group
                    .iter()
                    .map(|&(i, ctx)| {
                        Message::KvRequest(KvRequest {
                            ctx,
                            op: ops[i].1.clone(),
                        })
                    })
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
                let replies = match replies {
                    Ok(r) => r,
                    Err(e) => {
                        // Nothing was sent (connect failed) or nothing came back.
                        last_err = format!("{addr}: {e}");
                        let sent = !matches!(e, CallError::Connect(_));
                        lost_call |= sent;
                        for (i, _) in group {
                            if sent && ops[i].1.is_write() {
                                results[i] = Some(Err(ExecError::Unknown(last_err.clone())));
                            } else {
                                retry.push(i);
                            }
                        }
                        continue;
                    }
                };
                for ((i, _), reply) in group.into_iter().zip(replies) {
                    match reply {
                        Ok(Message::KvResponse(KvResponse::Ok { result })) => {
                            results[i] = Some(Ok(result));
                        }
                        Ok(Message::KvResponse(KvResponse::Err { error }))
                            if error.is_retryable() =>
                        {
                            last_err = format!("{addr}: {error}");
                            retry.push(i);
                        }
                        Ok(Message::KvResponse(KvResponse::Err { error }))
                        | Ok(Message::Error(error)) => {
                            results[i] = Some(Err(ExecError::Rpc(error)))
                        }
                        Ok(other) => {
                            results[i] = Some(Err(ExecError::Unavailable(format!(
                                "{addr}: unexpected {}",
                                other.name()
                            ))));
                        }
                        Err(e) => {
                            last_err = format!("{addr}: {e}");
                            lost_call = true;
                            if ops[i].1.is_write() {
                                results[i] = Some(Err(ExecError::Unknown(last_err.clone())));
                            } else {
                                retry.push(i);
                            }
                        }
                    }
                }
            }
            if retry.is_empty() {
                if lost_call {
                    // Logged by `refresh` if it fails; the results stand either way.
                    let _ = self.refresh(table.version).await;
                }
                break;
            }
            retry.sort_unstable();
            pending = retry;
            if attempt + 1 == self.cfg.max_attempts.max(1) {
                break;
            }
            self.stats
                .retries
                .fetch_add(pending.len() as u64, Ordering::Relaxed);
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_millis(200));
            if let Err(e) = self.refresh(table.version).await {
                last_err = reason(e);
            }
        }
        let results: Vec<_> = results
            .into_iter()
            .map(|r| {
                r.unwrap_or_else(|| {
                    self.stats.failures.fetch_add(1, Ordering::Relaxed);
                    Err(ExecError::Unavailable(last_err.clone()))
                })
            })
            .collect();
        self.blocking.after_exec(&ops, &results).await;
        results
    }
}

async fn call(
    c: &Client,
    msgs: Vec<Message>,
) -> Result<Vec<Result<Message, CallError>>, CallError> {
    if msgs.len() == 1 {
        let mut msgs = msgs;
        let m = msgs.pop().ok_or(CallError::Closed("empty batch".into()))?;
        return Ok(vec![c.call(m).await]);
    }
    c.call_batch(msgs).await
}

/// The text of a refresh failure, without repeating its prefix.
fn reason(e: ExecError) -> String {
    match e {
        ExecError::Unavailable(m) => m,
        other => other.to_string(),
    }
}
