//! The native target: operations go as `KvRequest`s straight to the leader shard of each key's
//! range, as the master's route table describes it — no proxy in between.
//!
//! [`Routes`] is the route table, shared by every connection task of a phase and refreshed
//! (coalesced) when a shard answers `NotLeader`, `EpochMismatch`, `RangeNotFound` or
//! `ServerBusy`, or cannot be reached. [`NativeConn`] is one connection task's set of
//! persistent clients, one per shard address (or, with `shard_conns` > 0, a pool of that many
//! connections per shard shared by every task, as the proxy keeps); it sends a batch as one `call_batch` per
//! destination shard, all shards at once, and retries the operations that met a stale route
//! with bounded, backed-off attempts. A write whose outcome is unknown (the connection closed
//! or the call timed out after sending) is counted as an error, never retried.
//!
//! Mapping of the workload's operations: READ → `StrGet`, UPDATE / INSERT → `StrSet` (a plain
//! `SET`: no condition, no expiry), READ-MODIFY-WRITE → `StrGet` then `StrSet`, SCAN → a raw
//! `Scan` of `len` entries with their values, starting at the first record's metadata key and
//! ending at the end of the Redis keyspace. The shard clamps a scan to its range, so a scan
//! that reaches the end of a range returns fewer records (one request per scan, as the RESP
//! path sends one `MGET`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use anyhow::bail;
use bytes::Bytes;
use net::keyspace::{Db, SLOTS, meta_key, slot_start};
use net::message::handshake::{Hello, Role};
use net::message::kv::{Cond, Expiry, KvOp, KvRequest, KvResponse, OpResult};
use net::message::{GetRouteTable, Message, RouteCtx};
use net::route_cache::RouteCache;
use net::tokio_transport::{Client, Pool};
use net::transport::{CallError, TransportConfig};
use net::{ClusterId, NodeId};

use crate::keys::record_key;
use crate::op::Op;
use crate::resp::Reply;

/// Attempts per operation, the first included.
const MAX_ATTEMPTS: u32 = 10;
/// Backoff before the second attempt; it doubles up to [`MAX_BACKOFF`] (about 1 s in all).
const FIRST_BACKOFF: Duration = Duration::from_millis(5);
/// The longest wait between two attempts.
const MAX_BACKOFF: Duration = Duration::from_millis(200);

/// A client that has not learned the cluster id yet.
fn anonymous() -> Hello {
    Hello::new(Role::Client {}, ClusterId(0), NodeId(0))
}

/// The master's route table as the benchmark last fetched it, shared by connection tasks.
#[derive(Debug)]
pub struct Routes {
    master: String,
    transport: TransportConfig,
    table: RwLock<Arc<RouteCache>>,
    /// Shard connections shared by every connection task (`None`: each task has its own).
    pool: Option<Pool>,
    /// Serializes refreshes and holds the connection to the master.
    refresh: tokio::sync::Mutex<Option<Client>>,
    /// Local count of installed tables: a refresh is skipped when another task installed one
    /// after the caller read the table.
    generation: AtomicU64,
    /// The cluster id the master announced (0 until then); shards of a cluster refuse
    /// connectors without it.
    cluster_id: AtomicU64,
    /// Route table fetches after the first.
    pub refreshes: AtomicU64,
    /// Operations sent again after a stale route or an unreachable shard.
    pub retries: AtomicU64,
}

impl Routes {
    /// Connects to the master at `master` (`host:port`) and fetches its route table.
    /// `shard_conns`: connections per shard address shared by every connection task; 0 gives
    /// each connection task its own connection to each shard.
    /// `secret`: the cluster secret the connections prove (the insecure empty one for a
    /// cluster run without); `tls`: the cluster's mutual TLS settings, if it uses them.
    pub async fn open(
        master: &str,
        shard_conns: usize,
        secret: net::auth::ClusterSecret,
        tls: Option<net::tls::TlsConfig>,
    ) -> anyhow::Result<Arc<Self>> {
        let transport = TransportConfig {
            secret,
            tls,
            ..TransportConfig::default()
        };
        let routes = Arc::new(Routes {
            master: master.to_string(),
            pool: (shard_conns > 0).then(|| Pool::new(anonymous(), transport.clone(), shard_conns)),
            transport,
            table: RwLock::new(Arc::new(RouteCache::default())),
            refresh: tokio::sync::Mutex::new(None),
            generation: AtomicU64::new(0),
            cluster_id: AtomicU64::new(0),
            refreshes: AtomicU64::new(0),
            retries: AtomicU64::new(0),
        });
        if let Err(e) = routes.fetch().await {
            bail!("fetch the route table from master {master}: {e}");
        }
        Ok(routes)
    }

    /// The hello of a connection: a client of the cluster the master announced.
    fn hello(&self) -> Hello {
        let id = ClusterId(self.cluster_id.load(Ordering::Acquire));
        Hello::new(Role::Client {}, id, NodeId(0))
    }

    /// Adopts the cluster id the master announced.
    fn learn_cluster_id(&self, id: ClusterId) {
        self.cluster_id.store(id.0, Ordering::Release);
        if let Some(pool) = &self.pool {
            pool.learn_cluster_id(id);
        }
    }

    /// The number of ranges in the cached table.
    pub fn ranges(&self) -> usize {
        self.table().1.routes().len()
    }

    fn table(&self) -> (u64, Arc<RouteCache>) {
        let t = self.table.read().unwrap_or_else(|p| p.into_inner()).clone();
        (self.generation.load(Ordering::Acquire), t)
    }

    /// Fetches the table unless one was installed after generation `seen` (concurrent
    /// refreshes coalesce).
    async fn refresh(&self, seen: u64) -> Result<(), String> {
        self.fetch_if_stale(Some(seen)).await
    }

    async fn fetch(&self) -> Result<(), String> {
        self.fetch_if_stale(None).await
    }

    async fn fetch_if_stale(&self, seen: Option<u64>) -> Result<(), String> {
        let mut master = self.refresh.lock().await;
        if let Some(seen) = seen {
            if self.generation.load(Ordering::Acquire) > seen {
                return Ok(()); // another task refreshed meanwhile
            }
            self.refreshes.fetch_add(1, Ordering::Relaxed);
        }
        let client = match master.as_ref().filter(|c| !c.is_closed()) {
            Some(c) => c.clone(),
            None => {
                let c = Client::connect(&self.master, self.hello(), self.transport.clone())
                    .await
                    .map_err(|e| format!("master {}: {e}", self.master))?;
                self.learn_cluster_id(c.peer().cluster_id);
                *master = Some(c.clone());
                c
            }
        };
        let reply = client
            .call(GetRouteTable { known_version: 0 }.into())
            .await
            .map_err(|e| format!("master {}: {e}", self.master))?;
        let t = match reply {
            Message::RouteTable(t) => t,
            Message::Error(e) => return Err(format!("master {}: {e}", self.master)),
            other => {
                return Err(format!(
                    "master {}: unexpected {}",
                    self.master,
                    other.name()
                ));
            }
        };
        *self.table.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(RouteCache::new(t));
        self.generation.fetch_add(1, Ordering::AcqRel);
        Ok(())
    }
}

/// The request of an operation and the internal key it is routed by.
fn request_of(op: &Op) -> (Bytes, KvOp) {
    match op {
        Op::Get(k) => {
            let key = Bytes::copy_from_slice(k.as_bytes());
            (meta_key(Db::ZERO, &key), KvOp::StrGet { key })
        }
        Op::Set(k, v) => {
            let key = Bytes::copy_from_slice(k.as_bytes());
            let op = KvOp::StrSet {
                key: key.clone(),
                value: v.clone(),
                expiry: Expiry::Persist {},
                cond: Cond::Always {},
                get_old: false,
            };
            (meta_key(Db::ZERO, &key), op)
        }
        Op::Scan { first, len } => {
            let start = meta_key(Db::ZERO, record_key(*first).as_bytes());
            let op = KvOp::Scan {
                start: start.clone(),
                end: slot_start(SLOTS),
                limit: u32::try_from(*len).unwrap_or(u32::MAX),
                reverse: false,
                keys_only: false,
            };
            (start, op)
        }
    }
}

fn reply_of(result: &OpResult) -> Reply {
    match result {
        OpResult::Value { value: None } => Reply::Nil,
        _ => Reply::Ok,
    }
}

/// What one attempt made of one operation.
enum Outcome {
    Done(Reply),
    /// A stale route or an unreachable shard: refresh and send again.
    Retry(String),
}

/// One connection task's persistent clients, one per shard address.
#[derive(Debug)]
pub struct NativeConn {
    routes: Arc<Routes>,
    clients: HashMap<String, Client>,
}

impl NativeConn {
    /// A connection set over `routes`; shard connections open on first use.
    pub fn new(routes: Arc<Routes>) -> Self {
        NativeConn {
            routes,
            clients: HashMap::new(),
        }
    }

    async fn client(&mut self, addr: &str) -> Result<Client, CallError> {
        if let Some(pool) = &self.routes.pool {
            return pool.get(addr).await;
        }
        if let Some(c) = self.clients.get(addr).filter(|c| !c.is_closed()) {
            return Ok(c.clone());
        }
        let c = Client::connect(addr, self.routes.hello(), self.routes.transport.clone()).await?;
        self.clients.insert(addr.to_string(), c.clone());
        Ok(c)
    }

    /// Runs `ops`; replies in the same order, each with the instant it arrived.
    pub async fn exec(&mut self, ops: &[Op]) -> Vec<(Reply, Instant)> {
        let reqs: Vec<(Bytes, KvOp)> = ops.iter().map(request_of).collect();
        let mut results: Vec<Option<(Reply, Instant)>> = vec![None; ops.len()];
        let mut pending: Vec<usize> = (0..ops.len()).collect();
        let mut backoff = FIRST_BACKOFF;
        let mut last = String::from("no attempt made");
        for attempt in 1..=MAX_ATTEMPTS {
            let (seen, table) = self.routes.table();
            let retry = self
                .attempt(&table, &reqs, &pending, &mut results, &mut last)
                .await;
            if retry.is_empty() || attempt == MAX_ATTEMPTS {
                pending = retry;
                break;
            }
            self.routes
                .retries
                .fetch_add(retry.len() as u64, Ordering::Relaxed);
            pending = retry;
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
            if let Err(e) = self.routes.refresh(seen).await {
                last = e;
            }
        }
        for i in pending {
            results[i] = Some((
                Reply::Error(format!(
                    "no answer after {MAX_ATTEMPTS} attempts; last: {last}"
                )),
                Instant::now(),
            ));
        }
        results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| (Reply::Error("lost".into()), Instant::now())))
            .collect()
    }

    /// Sends operations `pending` once, grouped by leader shard; returns those to retry.
    async fn attempt(
        &mut self,
        table: &RouteCache,
        reqs: &[(Bytes, KvOp)],
        pending: &[usize],
        results: &mut [Option<(Reply, Instant)>],
        last: &mut String,
    ) -> Vec<usize> {
        let mut retry = Vec::new();
        let mut groups: Vec<(String, Vec<(usize, RouteCtx)>)> = Vec::new();
        for &i in pending {
            let Some((route, addr)) = table
                .find(&reqs[i].0)
                .and_then(|r| Some((r, r.addr.clone()?)))
            else {
                *last = "no range with a known replica holds the key".into();
                retry.push(i);
                continue;
            };
            let ctx = RouteCtx {
                range_id: route.range.id,
                epoch: route.range.epoch,
            };
            match groups.iter_mut().find(|(a, _)| *a == addr) {
                Some((_, g)) => g.push((i, ctx)),
                None => groups.push((addr, vec![(i, ctx)])),
            }
        }
        let mut calls = Vec::with_capacity(groups.len());
        for (addr, group) in groups {
            match self.client(&addr).await {
                Ok(c) => {
                    let msgs: Vec<Message> = group
                        .iter()
                        .map(|&(i, ctx)| {
                            Message::KvRequest(KvRequest {
                                ctx,
                                op: reqs[i].1.clone(),
                            })
                        })
                        .collect();
                    calls.push(async move {
                        let replies = send(&c, msgs).await;
                        (addr, group, replies, Instant::now())
                    });
                }
                Err(e) => {
                    // Nothing was sent: every operation may go again.
                    *last = e.to_string();
                    retry.extend(group.iter().map(|&(i, _)| i));
                }
            }
        }
        for (addr, group, replies, at) in futures_util::future::join_all(calls).await {
            let replies = match replies {
                Ok(r) => r,
                Err(e) => {
                    let e = Err(e);
                    group
                        .iter()
                        .map(|&(i, _)| (i, outcome(&addr, &reqs[i].1, &e)))
                        .for_each(|(i, o)| settle(i, o, at, results, &mut retry, last));
                    self.clients.remove(&addr);
                    continue;
                }
            };
            for ((i, _), reply) in group.into_iter().zip(replies) {
                let o = outcome(&addr, &reqs[i].1, &reply);
                settle(i, o, at, results, &mut retry, last);
            }
        }
        retry.sort_unstable();
        retry
    }
}

fn settle(
    i: usize,
    o: Outcome,
    at: Instant,
    results: &mut [Option<(Reply, Instant)>],
    retry: &mut Vec<usize>,
    last: &mut String,
) {
    match o {
        Outcome::Done(r) => results[i] = Some((r, at)),
        Outcome::Retry(why) => {
            *last = why;
            retry.push(i);
        }
    }
}

/// One request, or a batch in one write.
async fn send(
    c: &Client,
    mut msgs: Vec<Message>,
) -> Result<Vec<Result<Message, CallError>>, CallError> {
    if msgs.len() == 1 {
        let m = msgs.pop().ok_or(CallError::Closed("empty batch".into()))?;
        return Ok(vec![c.call(m).await]);
    }
    c.call_batch(msgs).await
}

fn outcome(addr: &str, op: &KvOp, reply: &Result<Message, CallError>) -> Outcome {
    match reply {
        Ok(Message::KvResponse(KvResponse::Ok { result })) => Outcome::Done(reply_of(result)),
        Ok(Message::KvResponse(KvResponse::Err { error })) if error.is_retryable() => {
            Outcome::Retry(format!("{addr}: {error}"))
        }
        Ok(Message::KvResponse(KvResponse::Err { error })) | Ok(Message::Error(error)) => {
            Outcome::Done(Reply::Error(format!("{addr}: {error}")))
        }
        Ok(other) => Outcome::Done(Reply::Error(format!("{addr}: unexpected {}", other.name()))),
        // Sent, but no answer: a read may go again, a write's outcome is unknown.
        Err(e) if op.is_write() => {
            Outcome::Done(Reply::Error(format!("{addr}: write outcome unknown: {e}")))
        }
        Err(e) => Outcome::Retry(format!("{addr}: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_map_to_string_commands() {
        let (route, op) = request_of(&Op::Get("k".into()));
        assert_eq!(route, meta_key(Db::ZERO, b"k"));
        assert_eq!(op, KvOp::StrGet { key: "k".into() });
        let (_, op) = request_of(&Op::Set("k".into(), Bytes::from_static(b"v")));
        assert!(matches!(
            op,
            KvOp::StrSet {
                cond: Cond::Always {},
                ..
            }
        ));
        let (route, op) = request_of(&Op::Scan { first: 3, len: 7 });
        assert_eq!(route, meta_key(Db::ZERO, record_key(3).as_bytes()));
        assert!(matches!(op, KvOp::Scan { limit: 7, .. }));
        assert_eq!(
            reply_of(&OpResult::Value { value: None }),
            Reply::Nil,
            "a missing key is a miss"
        );
    }
}
