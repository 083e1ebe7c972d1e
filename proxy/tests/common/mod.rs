//! Test cluster: a fake master and fake DS shards over real sockets, and a raw RESP client.
//!
//! Each fake shard is a `net::tokio_transport::serve_handled` server holding a `ModelStore`
//! per range and answering `KvRequest`s and `KvWrite`s with ds-node's real apply step
//! (`ds_node::range::apply::execute`, through `range::dedup::apply_once` for a write's id),
//! so replies have the exact Redis semantics of the range state machine, and a write sent
//! twice with one id applies once. Each range keeps rank indexes of its sorted sets as a real
//! shard does (`ds_node::range::zrank`), with a threshold of 2 members and buckets of 1 or 2 entries,
//! so the Redis comparisons check ranks answered by an index. The fake master answers `GetRouteTable` and, with the real master's
//! directory, `ProxyRegister` (the proxy mesh). Tests can split ranges,
//! move them between shards and inject `NotLeader` answers.
#![allow(dead_code, clippy::unwrap_used)]

pub mod diff;
pub mod real_ds;

use std::cell::RefCell;
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use ds_node::range::apply::{ApplyCtx, execute};
use ds_node::range::db_keys::recount;
use ds_node::range::dedup::{self, WriteId};
use ds_node::range::store::{KvStore, ModelStore};
use ds_node::range::zrank::{RankConfig, ZRanks};
use net::message::handshake::Acceptor;
use net::message::kv::{KvOp, KvRequest, KvResponse, OpResult};
use net::message::{Message, RangeDescriptor, Replica, ReplicaRole, RouteTable, StoreInfo};
use net::transport::{Handled, TransportConfig};
use net::{ClusterId, Epoch, NodeId, RangeId, ReplicaId, RpcError, ShardId, StoreId};
use proxy::server::{ProxyConfig, Shared};
use tokio::net::TcpListener;
use tokio::runtime::Runtime;

type Ready = std::future::Ready<Option<Message>>;

/// One fake DS shard.
pub struct FakeShard {
    pub addr: String,
    pub index: u32,
    ranges: Mutex<HashMap<RangeId, (RangeDescriptor, ModelStore)>>,
    /// The rank indexes of each range's sorted sets (forgotten when the range moves or splits).
    zranks: Mutex<HashMap<RangeId, RefCell<ZRanks>>>,
    /// Answer this many requests with `NotLeader`.
    pub fail_not_leader: AtomicU32,
    /// Execute but never answer this many requests (a reply lost with the connection).
    pub swallow: AtomicU32,
    pub requests: AtomicU64,
    /// `KvWrite`s executed (each copy counted).
    pub writes: AtomicU64,
    applied: AtomicU64,
    /// Ranges whose leadership moved away from this shard: answered `NotLeader` naming
    /// the new leader's shard.
    moved: Mutex<HashMap<RangeId, String>>,
}

impl FakeShard {
    fn handle(&self, msg: Message) -> Option<Message> {
        let (KvRequest { ctx, op }, id) = match msg {
            Message::KvRequest(r) => (r, None),
            Message::KvWrite(w) => {
                let id = WriteId {
                    client: w.client,
                    seq: w.seq,
                };
                (w.request, Some(id))
            }
            _ => {
                return Some(Message::Error(RpcError::BadRequest {
                    message: "fake shard: KvRequest and KvWrite only".into(),
                }));
            }
        };
        self.requests.fetch_add(1, Ordering::Relaxed);
        let err = |error| Some(Message::KvResponse(KvResponse::Err { error }));
        if self
            .fail_not_leader
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
            .is_ok()
        {
            return err(RpcError::NotLeader { hint: None });
        }
        let mut ranges = self.ranges.lock().unwrap();
        let Some((desc, store)) = ranges.get_mut(&ctx.range_id) else {
            if let Some(addr) = self.moved.lock().unwrap().get(&ctx.range_id) {
                let hint = net::route::LeaderHint {
                    replica: replica(ctx.range_id.0, 0),
                    addr: addr.clone(),
                };
                return err(RpcError::NotLeader { hint: Some(hint) });
            }
            return err(RpcError::RangeNotFound {
                range_id: ctx.range_id,
            });
        };
        if desc.epoch != ctx.epoch {
            return err(RpcError::EpochMismatch {
                ranges: vec![desc.clone()],
            });
        }
        let now_ms = proxy::server::now_ms();
        let index = self.applied.fetch_add(1, Ordering::Relaxed) + 1;
        let mut zranks = self.zranks.lock().unwrap();
        let zr = zranks.entry(ctx.range_id).or_insert_with(|| {
            RefCell::new(ZRanks::new(RankConfig {
                threshold: 2,
                bucket: 1,
                memory_max_bytes: 1 << 20,
            }))
        });
        let actx = ApplyCtx {
            now_ms,
            index,
            range: desc,
            zranks: Some(zr),
        };
        let reply = if matches!(op, KvOp::DbStats {}) {
            // A real shard answers from the counts apply keeps; the fake counts its store.
            KvResponse::Ok {
                result: OpResult::DbStats {
                    start: desc.start.clone(),
                    end: desc.end.clone(),
                    dbs: recount(&*store, &desc.start, &desc.end).stats(),
                },
            }
        } else {
            dedup::apply_once(store, id, &op, now_ms, |s| execute(s, &op, &actx))
        };
        if id.is_some() {
            self.writes.fetch_add(1, Ordering::Relaxed);
        }
        if self
            .swallow
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
            .is_ok()
        {
            return None;
        }
        Some(Message::KvResponse(reply))
    }
}

/// A fake master and fake shards.
pub struct FakeCluster {
    pub master_addr: String,
    pub shards: Vec<Arc<FakeShard>>,
    table: Arc<Mutex<RouteTable>>,
    next_range: AtomicU64,
}

fn replica(range: u64, shard: u32) -> Replica {
    Replica {
        replica_id: ReplicaId(range * 10 + u64::from(shard)),
        store_id: StoreId(1),
        shard_id: ShardId(shard),
        role: ReplicaRole::Voter {},
    }
}

fn place(desc: &mut RangeDescriptor, shard: u32) {
    let r = replica(desc.id.0, shard);
    desc.replicas = vec![r];
    desc.leader = Some(r.replica_id);
}

impl FakeCluster {
    /// `shards` shards; the Redis keyspace split into `ranges` ranges at slot boundaries,
    /// range `i` on shard `i % shards`.
    pub async fn start(shards: u32, ranges: u16) -> FakeCluster {
        // Scripts run in the fake shards call the proxy's command table, as in `tierkv`.
        ds_node::range::script::install(Arc::new(proxy::cmd::script_table::ProxyCommands));
        let mut shard_list = Vec::new();
        for index in 0..shards {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap().to_string();
            let shard = Arc::new(FakeShard {
                addr,
                index,
                ranges: Mutex::new(HashMap::new()),
                zranks: Mutex::new(HashMap::new()),
                fail_not_leader: AtomicU32::new(0),
                swallow: AtomicU32::new(0),
                requests: AtomicU64::new(0),
                writes: AtomicU64::new(0),
                applied: AtomicU64::new(0),
                moved: Mutex::new(HashMap::new()),
            });
            let s = shard.clone();
            let handler = Arc::new(move |m: Message| Handled::<Ready>::Now(s.handle(m)));
            let acceptor = Acceptor {
                role: net::message::Role::DsNode {},
                cluster_id: ClusterId(0),
                node_id: NodeId(100 + u64::from(index)),
            };
            tokio::spawn(net::tokio_transport::serve_handled(
                listener,
                acceptor,
                TransportConfig::default(),
                1000,
                handler,
                std::future::pending(),
            ));
            shard_list.push(shard);
        }
        let mut descs = Vec::new();
        for i in 0..ranges {
            let slot = |i: u16| (u32::from(i) * 16384 / u32::from(ranges)) as u16;
            let start = if i == 0 {
                Bytes::new()
            } else {
                proxy::keyspace::slot_start(slot(i))
            };
            let end = if i + 1 == ranges {
                Bytes::new()
            } else {
                proxy::keyspace::slot_start(slot(i + 1))
            };
            let mut d = RangeDescriptor {
                id: RangeId(u64::from(i) + 1),
                start,
                end,
                epoch: Epoch {
                    conf_ver: 1,
                    version: 1,
                },
                replicas: vec![],
                leader: None,
            };
            let shard = u32::from(i) % shards;
            place(&mut d, shard);
            shard_list[shard as usize]
                .ranges
                .lock()
                .unwrap()
                .insert(d.id, (d.clone(), ModelStore::default()));
            descs.push(d);
        }
        let table = Arc::new(Mutex::new(RouteTable {
            route_version: 1,
            unchanged: false,
            ranges: descs,
            stores: vec![StoreInfo {
                store_id: StoreId(1),
                addr: "127.0.0.1:0".into(),
                shard_addrs: shard_list.iter().map(|s| s.addr.clone()).collect(),
                labels: vec![],
            }],
        }));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let master_addr = listener.local_addr().unwrap().to_string();
        let t = table.clone();
        // The proxy directory of the real master (`master::directory`), for the mesh.
        let proxies = Arc::new(Mutex::new(master::directory::ProxyDirectory::default()));
        let handler = Arc::new(move |m: Message| {
            Handled::<Ready>::Now(Some(match m {
                Message::GetRouteTable(_) => Message::RouteTable(t.lock().unwrap().clone()),
                Message::ProxyRegister(r) => {
                    let now = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .unwrap()
                        .as_millis() as u64;
                    match proxies.lock().unwrap().register(r, now) {
                        Ok(p) => Message::ProxyPeers(p),
                        Err(e) => Message::Error(e),
                    }
                }
                other => Message::Error(RpcError::BadRequest {
                    message: format!("fake master: {}", other.name()),
                }),
            }))
        });
        let acceptor = Acceptor {
            role: net::message::Role::Master {},
            cluster_id: ClusterId(0),
            node_id: NodeId(1),
        };
        tokio::spawn(net::tokio_transport::serve_handled(
            listener,
            acceptor,
            TransportConfig::default(),
            1000,
            handler,
            std::future::pending(),
        ));
        FakeCluster {
            master_addr,
            shards: shard_list,
            table,
            next_range: AtomicU64::new(u64::from(ranges) + 1),
        }
    }

    /// Entries (raw, expired included) stored in range `id`.
    #[allow(dead_code)] // not every test binary uses it
    pub fn len_of(&self, id: RangeId) -> usize {
        let shard = &self.shards[self.shard_of(id)];
        let ranges = shard.ranges.lock().unwrap();
        ranges.get(&id).map_or(0, |(_, store)| store.len())
    }

    /// The current route table's ranges.
    pub fn ranges(&self) -> Vec<RangeDescriptor> {
        self.table.lock().unwrap().ranges.clone()
    }

    fn shard_of(&self, id: RangeId) -> usize {
        self.shards
            .iter()
            .position(|s| s.ranges.lock().unwrap().contains_key(&id))
            .unwrap()
    }

    /// Drops the rank indexes of range `id` on every shard (its contents moved).
    fn forget_ranks(&self, id: RangeId) {
        for s in &self.shards {
            s.zranks.lock().unwrap().remove(&id);
        }
    }

    /// Splits range `id` at internal key `at`; the new right half goes to shard `to`. The
    /// master learns at once; the proxy's cache goes stale.
    pub fn split(&self, id: RangeId, at: Bytes, to: usize) -> RangeId {
        let from = self.shard_of(id);
        self.forget_ranks(id);
        let new_id = RangeId(self.next_range.fetch_add(1, Ordering::Relaxed));
        let (left, right, right_store) = {
            let mut ranges = self.shards[from].ranges.lock().unwrap();
            let (desc, store) = ranges.get_mut(&id).unwrap();
            assert!(desc.contains(&at) && at != desc.start);
            let mut right_store = ModelStore::default();
            for (k, e) in store.scan(&at, None, usize::MAX, false) {
                store.delete(&k);
                right_store.put(k, e);
            }
            let mut right = desc.clone();
            right.id = new_id;
            right.start = at.clone();
            desc.end = at;
            desc.epoch.version += 1;
            right.epoch = desc.epoch;
            place(&mut right, self.shards[to].index);
            (desc.clone(), right, right_store)
        };
        self.shards[to]
            .ranges
            .lock()
            .unwrap()
            .insert(new_id, (right.clone(), right_store));
        let mut t = self.table.lock().unwrap();
        let i = t.ranges.iter().position(|r| r.id == id).unwrap();
        t.ranges[i] = left;
        t.ranges.insert(i + 1, right);
        t.route_version += 1;
        new_id
    }

    /// Moves the leadership of range `id` to the next shard as an election does: same
    /// epoch, the master not told yet, the old shard answering `NotLeader` with a hint to
    /// the new one.
    #[allow(dead_code)] // not every test binary uses it
    pub fn move_leader_quietly(&self, id: RangeId) {
        let from = self.shard_of(id);
        self.forget_ranks(id);
        let to = (from + 1) % self.shards.len();
        let entry = self.shards[from]
            .ranges
            .lock()
            .unwrap()
            .remove(&id)
            .unwrap();
        self.shards[to].ranges.lock().unwrap().insert(id, entry);
        let to_addr = self.shards[to].addr.clone();
        self.shards[from].moved.lock().unwrap().insert(id, to_addr);
    }

    /// Moves range `id` (its leader) to shard `to`.
    pub fn move_range(&self, id: RangeId, to: usize) {
        let from = self.shard_of(id);
        self.forget_ranks(id);
        let (mut desc, store) = self.shards[from]
            .ranges
            .lock()
            .unwrap()
            .remove(&id)
            .unwrap();
        place(&mut desc, self.shards[to].index);
        desc.epoch.conf_ver += 1;
        self.shards[to]
            .ranges
            .lock()
            .unwrap()
            .insert(id, (desc.clone(), store));
        let mut t = self.table.lock().unwrap();
        let i = t.ranges.iter().position(|r| r.id == id).unwrap();
        t.ranges[i] = desc;
        t.route_version += 1;
    }
}

/// A fake master serving `table` to `GetRouteTable`, on the current runtime.
pub async fn start_master(table: RouteTable) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let table = Arc::new(table);
    let handler = Arc::new(move |m: Message| {
        Handled::<Ready>::Now(Some(match m {
            Message::GetRouteTable(_) => Message::RouteTable((*table).clone()),
            other => Message::Error(RpcError::BadRequest {
                message: format!("fake master: {}", other.name()),
            }),
        }))
    });
    let acceptor = Acceptor {
        role: net::message::Role::Master {},
        cluster_id: ClusterId(0),
        node_id: NodeId(2),
    };
    tokio::spawn(net::tokio_transport::serve_handled(
        listener,
        acceptor,
        TransportConfig::default(),
        100,
        handler,
        std::future::pending(),
    ));
    addr
}

/// A route table of one range covering everything, led by `shard` of store 1 at `addrs`.
pub fn one_range_table(addrs: Vec<String>, shard: u32) -> RouteTable {
    let mut d = RangeDescriptor {
        id: RangeId(1),
        start: Bytes::new(),
        end: Bytes::new(),
        epoch: Epoch {
            conf_ver: 1,
            version: 1,
        },
        replicas: vec![],
        leader: None,
    };
    place(&mut d, shard);
    RouteTable {
        route_version: 1,
        unchanged: false,
        ranges: vec![d],
        stores: vec![StoreInfo {
            store_id: StoreId(1),
            addr: "127.0.0.1:0".into(),
            shard_addrs: addrs,
            labels: vec![],
        }],
    }
}

/// A proxy in front of a fake cluster, on its own runtime.
pub struct Env {
    pub rt: Runtime,
    pub cluster: FakeCluster,
    pub shared: Arc<Shared>,
    pub addr: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
}

impl Env {
    pub fn start(ranges: u16) -> Env {
        Self::start_with(ranges, |_| {})
    }

    pub fn start_with(ranges: u16, tweak: impl FnOnce(&mut ProxyConfig)) -> Env {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let cluster = rt.block_on(FakeCluster::start(2, ranges));
        let listener = rt.block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let mut cfg = ProxyConfig {
            listen: addr.clone(),
            ..ProxyConfig::default()
        };
        cfg.router.masters = vec![cluster.master_addr.clone()];
        cfg.router.backoff = Duration::from_millis(1);
        tweak(&mut cfg);
        let shared = Shared::new(cfg);
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let s = shared.clone();
        let server = rt.spawn(async move {
            proxy::serve(listener, s, async {
                let _ = rx.await;
            })
            .await;
        });
        wait_loaded(&shared);
        Env {
            rt,
            cluster,
            shared,
            addr,
            stop: Some(tx),
            server: Some(server),
        }
    }

    pub fn client(&self) -> Client {
        Client::connect(&self.addr)
    }

    /// Starts another proxy over the same cluster (stopped with the runtime); its address
    /// and shared state.
    #[allow(dead_code)] // not every test binary uses it
    pub fn another_proxy(&self) -> (String, Arc<Shared>) {
        let (addr, shared) = self.start_another_proxy();
        wait_loaded(&shared);
        (addr, shared)
    }

    /// [`Env::another_proxy`] without waiting for it to end its startup loading state.
    #[allow(dead_code)] // not every test binary uses it
    pub fn start_another_proxy(&self) -> (String, Arc<Shared>) {
        let listener = self.rt.block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let mut cfg = ProxyConfig {
            listen: addr.clone(),
            ..ProxyConfig::default()
        };
        cfg.router.masters = vec![self.cluster.master_addr.clone()];
        cfg.router.backoff = Duration::from_millis(1);
        let shared = Shared::new(cfg);
        let s = shared.clone();
        self.rt
            .spawn(async move { proxy::serve(listener, s, std::future::pending()).await });
        (addr, shared)
    }

    /// Starts another proxy over the same cluster with `tweak` applied to its config; its
    /// address, shared state and the sender that stops it (graceful shutdown).
    #[allow(dead_code)] // not every test binary uses it
    pub fn stoppable_proxy(
        &self,
        tweak: impl FnOnce(&mut ProxyConfig),
    ) -> (String, Arc<Shared>, tokio::sync::oneshot::Sender<()>) {
        let listener = self.rt.block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let mut cfg = ProxyConfig {
            listen: addr.clone(),
            ..ProxyConfig::default()
        };
        cfg.router.masters = vec![self.cluster.master_addr.clone()];
        cfg.router.backoff = Duration::from_millis(1);
        tweak(&mut cfg);
        let shared = Shared::new(cfg);
        let s = shared.clone();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        self.rt.spawn(async move {
            proxy::serve(listener, s, async {
                let _ = rx.await;
            })
            .await;
        });
        wait_loaded(&shared);
        (addr, shared, tx)
    }

    /// Stops the proxy and waits for it (graceful shutdown).
    pub fn shutdown(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.server.take() {
            self.rt.block_on(h).unwrap();
        }
    }
}

/// Waits until a started proxy ends its startup loading state (every range served once:
/// at once over fake shards, after the elections over real ones; at most `LOADING_MAX`).
pub fn wait_loaded(shared: &Shared) {
    let deadline = Instant::now() + proxy::shared::LOADING_MAX + Duration::from_secs(2);
    while shared.loading() {
        assert!(Instant::now() < deadline, "the proxy never ended loading");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// A blocking raw RESP client.
pub struct Client {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

/// Encodes a command as a multibulk request.
pub fn multibulk(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

impl Client {
    pub fn connect(addr: &str) -> Client {
        let stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream.set_nodelay(true).unwrap();
        Client {
            stream,
            buf: Vec::new(),
        }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    /// Sends a command (split on spaces) and returns its raw reply as text.
    pub fn cmd(&mut self, line: &str) -> String {
        let args: Vec<&[u8]> = line.split(' ').map(str::as_bytes).collect();
        self.cmd_args(&args)
    }

    pub fn cmd_args(&mut self, args: &[&[u8]]) -> String {
        self.send(&multibulk(args));
        String::from_utf8_lossy(&self.read_reply().unwrap()).into_owned()
    }

    /// The next whole reply, raw; `None` if the connection closed first.
    pub fn read_reply(&mut self) -> Option<Vec<u8>> {
        loop {
            if let Some(n) = reply_len(&self.buf) {
                return Some(self.buf.drain(..n).collect());
            }
            let mut chunk = [0u8; 65536];
            match self.stream.read(&mut chunk) {
                Ok(0) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return None,
                Err(e) => panic!("read failed: {e}"),
            }
        }
    }

    /// Whether the server closed the connection (after any pending replies).
    pub fn is_closed(&mut self) -> bool {
        let mut chunk = [0u8; 65536];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
                Err(_) => return false,
            }
        }
    }
}

fn line_end(buf: &[u8]) -> Option<usize> {
    buf.windows(2).position(|w| w == b"\r\n")
}

/// The length of the first whole RESP2/RESP3 reply in `buf`.
pub fn reply_len(buf: &[u8]) -> Option<usize> {
    let first = *buf.first()?;
    let le = line_end(buf)?;
    let head = std::str::from_utf8(&buf[1..le]).ok()?;
    let after = le + 2;
    match first {
        b'+' | b'-' | b':' | b'_' | b',' | b'#' | b'(' => Some(after),
        b'$' | b'=' | b'!' => {
            let n: i64 = head.parse().ok()?;
            if n < 0 {
                return Some(after);
            }
            let total = after + n as usize + 2;
            (buf.len() >= total).then_some(total)
        }
        b'*' | b'~' | b'%' | b'>' | b'|' => {
            let n: i64 = head.parse().ok()?;
            let items = if first == b'%' || first == b'|' {
                n * 2
            } else {
                n
            };
            let mut pos = after;
            for _ in 0..items.max(0) {
                pos += reply_len(&buf[pos..])?;
            }
            Some(pos)
        }
        _ => panic!("not a RESP reply: {:?}", String::from_utf8_lossy(buf)),
    }
}

/// A script line's arguments, split at spaces; `""` stands for an empty argument.
pub fn script_args(line: &str) -> Vec<Vec<u8>> {
    line.split(' ')
        .map(|a| {
            if a == "\"\"" {
                Vec::new()
            } else {
                a.as_bytes().to_vec()
            }
        })
        .collect()
}
