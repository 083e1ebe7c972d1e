//! The TCP transport for tokio services (proxy, master): connect with a timeout, a client with
//! many requests in flight, a pool of connections per address, and a server.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::ReadBuf;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

use crate::ids::ClusterId;
use crate::message::Message;
use crate::message::handshake::{Acceptor, Hello};
use crate::transport::{
    CallError, Handled, PeerCounts, TransportConfig, client_channel, client_open, drive_client,
    log_close, serve_connection,
};

/// One connection's place in the per-address count; gives it back when dropped.
struct PeerSlot {
    counts: Arc<Mutex<PeerCounts>>,
    ip: std::net::IpAddr,
}

impl PeerSlot {
    fn take(counts: &Arc<Mutex<PeerCounts>>, ip: std::net::IpAddr) -> Option<Self> {
        let mut c = counts.lock().unwrap_or_else(|p| p.into_inner());
        c.open(ip).then(|| Self {
            counts: counts.clone(),
            ip,
        })
    }
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        let mut c = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        c.close(self.ip);
    }
}

/// A tokio `TcpStream` seen through the `futures-io` traits the drivers are written against.
#[derive(Debug)]
pub struct Compat(pub TcpStream);

impl futures_util::io::AsyncRead for Compat {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let mut rb = ReadBuf::new(buf);
        match tokio::io::AsyncRead::poll_read(Pin::new(&mut self.0), cx, &mut rb) {
            Poll::Ready(Ok(())) => Poll::Ready(Ok(rb.filled().len())),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl futures_util::io::AsyncWrite for Compat {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        tokio::io::AsyncWrite::poll_write(Pin::new(&mut self.0), cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        tokio::io::AsyncWrite::poll_flush(Pin::new(&mut self.0), cx)
    }
    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        tokio::io::AsyncWrite::poll_shutdown(Pin::new(&mut self.0), cx)
    }
}

/// Timeouts on the tokio timer.
#[derive(Debug, Clone, Copy)]
pub struct TokioTimer;

impl crate::transport::Timer for TokioTimer {
    async fn timeout<F: Future>(d: std::time::Duration, fut: F) -> Option<F::Output> {
        tokio::time::timeout(d, fut).await.ok()
    }
    async fn sleep(d: std::time::Duration) {
        tokio::time::sleep(d).await;
    }
}

/// A connection to one peer; clones share it.
pub type Client = crate::transport::Client<TokioTimer>;

impl Client {
    /// Connects, handshakes and spawns the connection's task, all within the connect timeout.
    pub async fn connect(
        addr: &str,
        hello: Hello,
        cfg: TransportConfig,
    ) -> Result<Client, CallError> {
        let connect = async {
            let stream = TcpStream::connect(addr)
                .await
                .map_err(|e| CallError::Connect(format!("{addr}: {e}")))?;
            stream
                .set_nodelay(true)
                .map_err(|e| CallError::Connect(format!("{addr}: {e}")))?;
            client_open(Compat(stream), hello, &cfg)
                .await
                .map_err(|e| CallError::Connect(format!("{addr}: {e}")))
        };
        let (stream, ack, reader) = tokio::time::timeout(cfg.connect_timeout, connect)
            .await
            .map_err(|_| CallError::Connect(format!("{addr}: connect timed out")))??;
        let (handle, calls) = client_channel(&cfg);
        let peer = addr.to_string();
        let driver_cfg = cfg.clone();
        tokio::spawn(async move {
            if let Err(e) = drive_client(stream, reader, calls, driver_cfg).await {
                tracing::info!(peer, "connection closed: {e}");
            }
        });
        Ok(Client {
            handle,
            ack,
            cfg,
            timer: std::marker::PhantomData,
        })
    }
}

/// Connections to many peers, `per_addr` each, used round-robin and re-opened when closed.
///
/// A pool whose hello has no cluster id (0) learns it from the first acceptor that announces
/// one (the master) and sends it from then on: members of a cluster other than the master
/// refuse a connector with id 0.
#[derive(Debug)]
pub struct Pool {
    hello: Hello,
    /// The cluster id learned from an acceptor (0: none yet).
    learned: AtomicU64,
    cfg: TransportConfig,
    per_addr: usize,
    conns: Mutex<HashMap<String, (Vec<Client>, usize)>>,
}

impl Pool {
    /// A pool that opens up to `per_addr` connections to each address.
    pub fn new(hello: Hello, cfg: TransportConfig, per_addr: usize) -> Self {
        Self {
            hello,
            learned: AtomicU64::new(0),
            cfg,
            per_addr: per_addr.max(1),
            conns: Mutex::new(HashMap::new()),
        }
    }

    /// The hello new connections send: with the learned cluster id if the pool's has none.
    pub fn hello(&self) -> Hello {
        let mut hello = self.hello;
        if hello.cluster_id == ClusterId(0) {
            hello.cluster_id = ClusterId(self.learned.load(Ordering::Acquire));
        }
        hello
    }

    /// Adopts `id` (announced by a peer that proved the cluster secret, e.g. the master) for
    /// connections opened from now on, if the pool has no cluster id yet.
    pub fn learn_cluster_id(&self, id: ClusterId) {
        let _ = self
            .learned
            .compare_exchange(0, id.0, Ordering::AcqRel, Ordering::Acquire);
    }

    /// A live connection to `addr`, connecting if needed.
    pub async fn get(&self, addr: &str) -> Result<Client, CallError> {
        if let Some(c) = self.pick(addr) {
            return Ok(c);
        }
        let client = Client::connect(addr, self.hello(), self.cfg.clone()).await?;
        self.learn_cluster_id(client.peer().cluster_id);
        let mut conns = self.conns.lock().unwrap_or_else(|p| p.into_inner());
        let (list, _) = conns.entry(addr.to_string()).or_default();
        list.retain(|c| !c.is_closed());
        if list.len() < self.per_addr {
            list.push(client.clone());
        }
        Ok(client)
    }

    fn pick(&self, addr: &str) -> Option<Client> {
        let mut conns = self.conns.lock().unwrap_or_else(|p| p.into_inner());
        let (list, next) = conns.get_mut(addr)?;
        list.retain(|c| !c.is_closed());
        if list.len() < self.per_addr {
            return None;
        }
        *next = (*next + 1) % list.len();
        list.get(*next).cloned()
    }

    /// Calls `addr` over a pooled connection.
    pub async fn call(&self, addr: &str, msg: Message) -> Result<Message, CallError> {
        self.get(addr).await?.call(msg).await
    }
}

/// Accepts connections on `listener` until `shutdown` completes, serving each with `handler`
/// (at most `max_connections` at once; more wait in the listen backlog; at most
/// `cfg.max_connections_per_peer` from one IP address, more are closed at once). On shutdown,
/// stops accepting and ends every connection task before returning.
pub async fn serve<H, F>(
    listener: TcpListener,
    acceptor: Acceptor,
    cfg: TransportConfig,
    max_connections: usize,
    handler: Arc<H>,
    shutdown: impl Future<Output = ()>,
) where
    H: Fn(Message) -> F + Send + Sync + 'static,
    F: Future<Output = Option<Message>> + Send + 'static,
{
    let handled = Arc::new(move |m| Handled::Later(handler(m)));
    serve_handled(listener, acceptor, cfg, max_connections, handled, shutdown).await;
}

/// [`serve`] with a handler that may answer at once ([`Handled::Now`]) without a future.
pub async fn serve_handled<H, F>(
    listener: TcpListener,
    acceptor: Acceptor,
    cfg: TransportConfig,
    max_connections: usize,
    handler: Arc<H>,
    shutdown: impl Future<Output = ()>,
) where
    H: Fn(Message) -> Handled<F> + Send + Sync + 'static,
    F: Future<Output = Option<Message>> + Send + 'static,
{
    let limit = Arc::new(tokio::sync::Semaphore::new(max_connections.max(1)));
    let per_peer = Arc::new(Mutex::new(PeerCounts::new(cfg.max_connections_per_peer)));
    let mut tasks = JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            _ = &mut shutdown => break,
            p = limit.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
        };
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!("accept failed: {e}");
                    continue;
                }
            },
        };
        while tasks.try_join_next().is_some() {}
        let Some(slot) = PeerSlot::take(&per_peer, peer.ip()) else {
            tracing::warn!(%peer, "connection refused: too many connections from this address");
            continue;
        };
        let handler = handler.clone();
        let cfg = cfg.clone();
        tasks.spawn(async move {
            let _permit = permit;
            let _slot = slot;
            let _ = stream.set_nodelay(true);
            let result =
                serve_connection::<TokioTimer, _, _, _>(Compat(stream), acceptor, &cfg, |m| {
                    handler(m)
                })
                .await;
            log_close(peer, result);
        });
    }
    tasks.shutdown().await;
}
