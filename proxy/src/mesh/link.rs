//! One proxy's connection to one peer: a bounded queue of messages and the task that sends
//! them over a single connection, in order (so two messages of one publisher arrive in the
//! order published), batching what queued meanwhile into one write. Reconnects with backoff;
//! while the peer cannot be reached, whatever is queued fails at once (its callers count the
//! peer as 0), so a dead peer never holds a client.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use net::message::{Hello, Message};
use net::tokio_transport::Client;
use net::transport::TransportConfig;
use tokio::sync::{mpsc, oneshot};

use super::MeshStats;

/// Messages sent in one batch at most.
const BATCH_MAX: usize = 256;
/// First pause after a failed connect; doubles up to [`BACKOFF_MAX`].
const BACKOFF_MIN: Duration = Duration::from_millis(50);
/// How often an idle link checks that its connection is still open.
const IDLE_CHECK: Duration = Duration::from_millis(250);
/// Longest pause between two connects.
const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// A message for the peer and where its answer goes (dropped unanswered on failure).
#[derive(Debug)]
pub(crate) struct Job {
    pub(crate) msg: Message,
    pub(crate) reply: oneshot::Sender<Message>,
    /// The protocol version the connection must have negotiated for `msg` (dropped, and
    /// counted as a send failure, over an older one).
    pub(crate) min_version: u16,
}

/// The link to one peer; dropping it ends its task.
#[derive(Debug)]
pub(crate) struct Link {
    /// The peer's mesh address.
    pub(crate) addr: String,
    tx: mpsc::Sender<Job>,
    up: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Link {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Link {
    /// Starts the link's task (it connects at once).
    pub(crate) fn start(
        addr: String,
        hello: Hello,
        cfg: TransportConfig,
        depth: usize,
        stats: Arc<MeshStats>,
    ) -> Self {
        let (tx, rx) = mpsc::channel(depth.max(1));
        let up = Arc::new(AtomicBool::new(false));
        let sender = Sender {
            addr: addr.clone(),
            hello,
            cfg,
            up: up.clone(),
            stats,
        };
        let task = tokio::spawn(sender.run(rx));
        Self { addr, tx, up, task }
    }

    /// Queues `job` without waiting; false when the queue is full or the task ended.
    pub(crate) fn offer(&self, job: Job) -> bool {
        self.tx.try_send(job).is_ok()
    }

    /// Whether the connection to the peer is open.
    pub(crate) fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }
}

struct Sender {
    addr: String,
    hello: Hello,
    cfg: TransportConfig,
    up: Arc<AtomicBool>,
    stats: Arc<MeshStats>,
}

impl Sender {
    async fn run(self, mut rx: mpsc::Receiver<Job>) {
        let mut backoff = BACKOFF_MIN;
        let mut failing = false;
        loop {
            let client = match Client::connect(&self.addr, self.hello, self.cfg.clone()).await {
                Ok(c) => c,
                Err(e) => {
                    if !failing {
                        tracing::warn!(peer = %self.addr, "mesh peer unreachable: {e}");
                        failing = true;
                    }
                    self.stats.connect_failures.fetch_add(1, Ordering::Relaxed);
                    self.fail_queued(&mut rx);
                    tokio::time::sleep(backoff).await;
                    self.fail_queued(&mut rx);
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                    continue;
                }
            };
            if failing {
                tracing::info!(peer = %self.addr, "mesh peer reachable again");
            }
            failing = false;
            backoff = BACKOFF_MIN;
            self.up.store(true, Ordering::Relaxed);
            let open = self.send_until_closed(&client, &mut rx).await;
            self.up.store(false, Ordering::Relaxed);
            if !open {
                return;
            }
        }
    }

    /// Sends queued jobs over `client` until it fails (true: reconnect) or the link was
    /// dropped (false).
    async fn send_until_closed(&self, client: &Client, rx: &mut mpsc::Receiver<Job>) -> bool {
        loop {
            // Wake up now and then to notice a connection the peer closed while idle.
            let next = tokio::select! {
                j = rx.recv() => j,
                () = tokio::time::sleep(IDLE_CHECK) => {
                    if client.is_closed() {
                        return true;
                    }
                    continue;
                }
            };
            let Some(first) = next else {
                return false;
            };
            let version = client.peer().version;
            let (mut msgs, mut replies) = (Vec::new(), Vec::new());
            let mut job = Some(first);
            while let Some(j) = job.take() {
                if j.min_version > version {
                    self.stats.send_failures.fetch_add(1, Ordering::Relaxed);
                } else {
                    msgs.push(j.msg);
                    replies.push(j.reply);
                }
                if msgs.len() < BATCH_MAX {
                    job = rx.try_recv().ok();
                }
            }
            if msgs.is_empty() {
                continue;
            }
            let n = msgs.len() as u64;
            match client.call_batch(msgs).await {
                Ok(results) => {
                    for (reply, r) in replies.into_iter().zip(results) {
                        match r {
                            Ok(m) => {
                                let _ = reply.send(m);
                            }
                            Err(_) => {
                                self.stats.send_failures.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                }
                Err(e) => {
                    tracing::debug!(peer = %self.addr, "mesh send failed: {e}");
                    self.stats.send_failures.fetch_add(n, Ordering::Relaxed);
                    return true;
                }
            }
            if client.is_closed() {
                return true;
            }
        }
    }

    /// Fails every job queued now (their callers stop waiting at once).
    fn fail_queued(&self, rx: &mut mpsc::Receiver<Job>) {
        while let Ok(job) = rx.try_recv() {
            drop(job);
            self.stats.send_failures.fetch_add(1, Ordering::Relaxed);
        }
    }
}
