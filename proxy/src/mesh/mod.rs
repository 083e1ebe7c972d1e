//! The proxy mesh (`docs/guides/proxy.md`, "Proxy mesh"; `docs/format/wire.md` §4.6): the
//! proxies of one cluster find each other through the master's directory and keep one
//! connection to each other, Redis-Cluster-bus style, so that
//! - `PUBLISH`/`SPUBLISH` reach subscribers on every proxy and count them all,
//! - `PUBSUB CHANNELS/NUMSUB/NUMPAT/SHARD*` answer for the whole cluster,
//! - a write that may feed a blocked pop wakes the waiters of every proxy at once (the
//!   100 ms poll of blocked commands stays as the fallback for a lost signal).
//!
//! Modules: [`link`] (one peer's queue and sender task), [`peer`] (the internal listener's
//! handler: what a peer's message does here), [`service`] (the directory loop: register and
//! renew with the master, follow the peers it lists, serve the listener; above
//! [`crate::shared`], which holds the [`Mesh`]). This module holds the links and counters.
//!
//! A peer that is slow or dead never holds a client: messages go through a bounded queue
//! per peer (full: dropped and counted), and a publisher waits for answers at most
//! [`MeshConfig::peer_deadline`], counting a missing answer as 0.

mod link;
pub mod peer;
pub mod service;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use net::ProxyId;
use net::message::handshake::{MESH_PAUSE_VERSION, MESH_TRACKING_VERSION, MESH_VERSION};
use net::message::{
    Hello, MESH_ITEMS_MAX, Message, PauseOrder, PeerInvalidate, PeerKeysReady, PeerPause,
    ProxyPeers, ReadyKey,
};
use net::transport::TransportConfig;
use tokio::sync::oneshot;

use crate::keyspace::Db;
use link::{Job, Link};

/// Mesh settings (`mesh-listen`, `mesh-advertise` in `proxy.toml`).
#[derive(Debug, Clone)]
pub struct MeshConfig {
    /// Address of the internal mesh listener (`host:port`, port 0 for any). `None` (the
    /// default in the library; `tierkv proxy` derives one from `listen`): no mesh, the proxy
    /// works alone as before.
    pub listen: Option<String>,
    /// The address other proxies are told to reach the listener on. Default: the address
    /// the listener bound.
    pub advertise: Option<String>,
    /// Time-to-live asked of the master's directory; renewed every third of it. Default 6 s
    /// (the master clamps it to 1..=60 s).
    pub ttl: Duration,
    /// How long `PUBLISH` and `PUBSUB` wait for the peers' answers; a peer that did not
    /// answer counts 0. Default 200 ms.
    pub peer_deadline: Duration,
    /// Messages queued per peer at most; more are dropped and counted. Default 4,096.
    pub queue_depth: usize,
}

impl Default for MeshConfig {
    fn default() -> Self {
        Self {
            listen: None,
            advertise: None,
            ttl: Duration::from_secs(6),
            peer_deadline: Duration::from_millis(200),
            queue_depth: 4096,
        }
    }
}

/// Counters of the mesh (`INFO stats`, `tierkv_mesh_*`).
#[derive(Debug, Default)]
pub struct MeshStats {
    /// Messages queued to peers (publishes, queries, key-ready signals), one per peer.
    pub forwarded: AtomicU64,
    /// Messages received from peers.
    pub received: AtomicU64,
    /// Messages lost on the way to a peer (connection failed or peer unreachable).
    pub send_failures: AtomicU64,
    /// Messages dropped because a peer's queue was full.
    pub dropped_full: AtomicU64,
    /// Answers a publisher or `PUBSUB` stopped waiting for at the deadline.
    pub timeouts: AtomicU64,
    /// Failed connects to peers.
    pub connect_failures: AtomicU64,
    /// Key-ready signals sent (keys, one per peer).
    pub keys_signalled: AtomicU64,
    /// Waiters woken by peers' key-ready signals.
    pub woken_by_peers: AtomicU64,
    /// Registrations with the master that failed.
    pub register_failures: AtomicU64,
}

/// This proxy's side of the mesh: its links to the peers and its counters.
#[derive(Debug)]
pub struct Mesh {
    /// Settings.
    pub cfg: MeshConfig,
    id: ProxyId,
    links: Mutex<HashMap<ProxyId, Link>>,
    /// `links.len()`, read without the lock on every write batch ([`Self::has_peers`]).
    linked: AtomicUsize,
    /// Counters.
    pub stats: Arc<MeshStats>,
}

/// Answers to come from the peers a message was sent to.
#[derive(Debug)]
pub struct Pending {
    answers: Vec<oneshot::Receiver<Message>>,
    deadline: tokio::time::Instant,
    stats: Arc<MeshStats>,
}

impl Pending {
    /// The answers that came within the deadline (a failed or late peer gives none).
    pub async fn answers(self) -> Vec<Message> {
        let deadline = self.deadline;
        let waits = self
            .answers
            .into_iter()
            .map(|rx| tokio::time::timeout_at(deadline, rx));
        let mut out = Vec::new();
        for r in futures_util::future::join_all(waits).await {
            match r {
                Ok(Ok(m)) => out.push(m),
                Ok(Err(_)) => {} // failed on the link, counted there
                Err(_) => {
                    self.stats.timeouts.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        out
    }
}

impl Mesh {
    /// A mesh with no peers yet; `id` names this proxy in the directory (0 is replaced).
    pub fn new(cfg: MeshConfig, id: u64) -> Self {
        Self {
            cfg,
            id: ProxyId(id.max(1)),
            links: Mutex::default(),
            linked: AtomicUsize::new(0),
            stats: Arc::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<ProxyId, Link>> {
        self.links.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// This proxy's id in the directory.
    pub fn id(&self) -> ProxyId {
        self.id
    }

    /// Whether any peer is known (when not, nothing is sent and nothing awaited).
    pub fn has_peers(&self) -> bool {
        self.linked.load(Ordering::Relaxed) > 0
    }

    /// Peers known, and those whose connection is open.
    pub fn peers(&self) -> (usize, usize) {
        let links = self.lock();
        (links.len(), links.values().filter(|l| l.is_up()).count())
    }

    /// Queues `msg` to every peer, in order after what this proxy queued before; the
    /// answers, awaited up to [`MeshConfig::peer_deadline`].
    pub fn send_all(&self, msg: &Message) -> Pending {
        self.send_all_from(msg, MESH_VERSION)
    }

    /// [`Self::send_all`] of a message peers understand from protocol `min_version` on (a peer
    /// whose connection negotiated less does not get it).
    pub fn send_all_from(&self, msg: &Message, min_version: u16) -> Pending {
        let links = self.lock();
        let mut answers = Vec::with_capacity(links.len());
        for l in links.values() {
            let (reply, rx) = oneshot::channel();
            let job = Job {
                msg: msg.clone(),
                reply,
                min_version,
            };
            if l.offer(job) {
                self.stats.forwarded.fetch_add(1, Ordering::Relaxed);
                answers.push(rx);
            } else {
                self.stats.dropped_full.fetch_add(1, Ordering::Relaxed);
            }
        }
        Pending {
            answers,
            deadline: tokio::time::Instant::now() + self.cfg.peer_deadline,
            stats: self.stats.clone(),
        }
    }

    /// Tells every peer that `keys` may have been fed (their blocked pops wake); no wait.
    pub fn keys_ready(&self, keys: &[(Db, Bytes)]) {
        for chunk in keys.chunks(MESH_ITEMS_MAX) {
            let keys = chunk
                .iter()
                .map(|(db, key)| ReadyKey {
                    db: u32::from(db.get()),
                    key: key.clone(),
                })
                .collect();
            let msg = Message::PeerKeysReady(PeerKeysReady { keys });
            let sent = self.send_all(&msg).answers.len();
            self.stats
                .keys_signalled
                .fetch_add((sent * chunk.len()) as u64, Ordering::Relaxed);
        }
    }

    /// Tells every peer of a `CLIENT PAUSE` / `UNPAUSE` run here (for their own clients);
    /// no wait.
    pub fn pause_peers(&self, order: PauseOrder) {
        let msg = Message::PeerPause(PeerPause { order });
        let _ = self.send_all_from(&msg, MESH_PAUSE_VERSION);
    }

    /// Tells every peer that `keys` changed (`at_ms` 0) or expire at `at_ms`, or with
    /// `flush` that every key did, for their tracking clients; `tracking`: this proxy has
    /// tracking clients itself. No wait.
    pub fn invalidate_peers(&self, keys: &[Bytes], flush: bool, at_ms: u64, tracking: bool) {
        if !self.has_peers() {
            return;
        }
        let mut chunks: Vec<&[Bytes]> = keys.chunks(MESH_ITEMS_MAX).collect();
        if chunks.is_empty() {
            chunks.push(&[]);
        }
        for chunk in chunks {
            let msg = Message::PeerInvalidate(PeerInvalidate {
                keys: chunk.to_vec(),
                flush,
                at_ms,
                tracking,
            });
            let _ = self.send_all_from(&msg, MESH_TRACKING_VERSION);
        }
    }

    /// Follows the directory's list: links to new peers, none to peers gone (or moved).
    fn follow(&self, peers: &ProxyPeers, hello: Hello, transport: &TransportConfig) {
        let mut links = self.lock();
        links.retain(|id, l| {
            peers
                .peers
                .iter()
                .any(|p| p.proxy_id == *id && p.peer_addr == l.addr)
        });
        for p in &peers.peers {
            if p.proxy_id == self.id || links.contains_key(&p.proxy_id) {
                continue;
            }
            tracing::info!(peer = %p.peer_addr, id = %p.proxy_id, "mesh peer joined");
            let link = Link::start(
                p.peer_addr.clone(),
                hello,
                transport.clone(),
                self.cfg.queue_depth,
                self.stats.clone(),
            );
            links.insert(p.proxy_id, link);
        }
        self.linked.store(links.len(), Ordering::Relaxed);
    }

    /// Drops every link (shutdown).
    fn clear(&self) {
        let mut links = self.lock();
        links.clear();
        self.linked.store(0, Ordering::Relaxed);
    }
}

/// The mesh's figures in the Prometheus text format: `proxy_mesh_peers`,
/// `proxy_mesh_links_up` (gauges) and `proxy_mesh_<counter>_total`.
pub fn write_prometheus(mesh: &Mesh, out: &mut String) {
    use std::fmt::Write;
    let (peers, up) = mesh.peers();
    let s = &mesh.stats;
    for (name, v) in [("peers", peers), ("links_up", up)] {
        let _ = writeln!(out, "# TYPE proxy_mesh_{name} gauge\nproxy_mesh_{name} {v}");
    }
    let counters = [
        ("forwarded", &s.forwarded),
        ("received", &s.received),
        ("send_failures", &s.send_failures),
        ("dropped_full", &s.dropped_full),
        ("timeouts", &s.timeouts),
        ("connect_failures", &s.connect_failures),
        ("keys_signalled", &s.keys_signalled),
        ("woken_by_peers", &s.woken_by_peers),
        ("register_failures", &s.register_failures),
    ];
    for (name, c) in counters {
        let v = c.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "# TYPE proxy_mesh_{name}_total counter\nproxy_mesh_{name}_total {v}"
        );
    }
}

impl crate::waiters::KeysReadyFanout for Mesh {
    fn has_peers(&self) -> bool {
        Mesh::has_peers(self)
    }

    fn keys_ready(&self, keys: &[(Db, Bytes)]) {
        Mesh::keys_ready(self, keys)
    }
}
