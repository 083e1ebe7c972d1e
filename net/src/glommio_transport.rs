//! The TCP transport for DS shards (glommio): the same drivers as the tokio transport, on the
//! shard's own executor. Everything here is `!Send` and lives on one shard.

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::pin::pin;
use std::rc::Rc;
use std::time::Duration;

use futures_util::future::{Either, select};
use glommio::net::{TcpListener, TcpStream};

use crate::message::Message;
use crate::message::handshake::{Acceptor, Hello};
use crate::transport::{
    CallError, Handled, PeerCounts, TransportConfig, client_channel, client_open, drive_client,
    log_close, serve_connection,
};

/// Runs `fut` with a time limit on the current glommio executor.
async fn with_timeout<T>(d: Duration, fut: impl Future<Output = T>) -> Option<T> {
    match select(pin!(fut), pin!(glommio::timer::sleep(d))).await {
        Either::Left((v, _)) => Some(v),
        Either::Right(_) => None,
    }
}

/// Timeouts on the glommio timer of the current executor.
#[derive(Debug, Clone, Copy)]
pub struct GlommioTimer;

impl crate::transport::Timer for GlommioTimer {
    async fn timeout<F: Future>(d: Duration, fut: F) -> Option<F::Output> {
        with_timeout(d, fut).await
    }
    async fn sleep(d: Duration) {
        glommio::timer::sleep(d).await;
    }
}

/// A connection to one peer; clones share it.
pub type Client = crate::transport::Client<GlommioTimer>;

impl Client {
    /// Connects, handshakes and spawns the connection's task on this executor.
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
            client_open(stream, hello, &cfg)
                .await
                .map_err(|e| CallError::Connect(format!("{addr}: {e}")))
        };
        let (stream, ack, reader) = with_timeout(cfg.connect_timeout, connect)
            .await
            .ok_or_else(|| CallError::Connect(format!("{addr}: connect timed out")))??;
        let (handle, calls) = client_channel(&cfg);
        let peer = addr.to_string();
        let driver_cfg = cfg.clone();
        glommio::spawn_local(async move {
            if let Err(e) = drive_client(stream, reader, calls, driver_cfg).await {
                tracing::info!(peer, "connection closed: {e}");
            }
        })
        .detach();
        Ok(Client {
            handle,
            ack,
            cfg,
            timer: std::marker::PhantomData,
        })
    }
}

/// One connection per peer address, re-opened when closed (a DS shard batches its Raft
/// traffic per destination, so one connection per peer is enough).
#[derive(Debug)]
pub struct Pool {
    hello: Hello,
    cfg: TransportConfig,
    conns: RefCell<HashMap<String, Client>>,
}

impl Pool {
    /// An empty pool.
    pub fn new(hello: Hello, cfg: TransportConfig) -> Rc<Self> {
        Rc::new(Self {
            hello,
            cfg,
            conns: RefCell::new(HashMap::new()),
        })
    }

    /// A live connection to `addr`, connecting if needed.
    pub async fn get(&self, addr: &str) -> Result<Client, CallError> {
        let existing = self.conns.borrow().get(addr).cloned();
        if let Some(c) = existing.filter(|c| !c.is_closed()) {
            return Ok(c);
        }
        let client = Client::connect(addr, self.hello, self.cfg.clone()).await?;
        self.conns
            .borrow_mut()
            .insert(addr.to_string(), client.clone());
        Ok(client)
    }

    /// Calls `addr` over the pooled connection.
    pub async fn call(&self, addr: &str, msg: Message) -> Result<Message, CallError> {
        self.get(addr).await?.call(msg).await
    }
}

/// Accepts connections on `listener` forever (until the listener fails), serving each on
/// this executor with `handler`; at most `max_connections` at once and
/// `cfg.max_connections_per_peer` from one IP address (more are closed at once).
pub async fn serve<H, F>(
    listener: TcpListener,
    acceptor: Acceptor,
    cfg: TransportConfig,
    max_connections: usize,
    handler: Rc<H>,
) -> std::io::Result<()>
where
    H: Fn(Message) -> F + 'static,
    F: Future<Output = Option<Message>> + 'static,
{
    let handled = Rc::new(move |m| Handled::Later(handler(m)));
    serve_handled(listener, acceptor, cfg, max_connections, handled).await
}

/// [`serve`] with a handler that may answer at once ([`Handled::Now`]) without a future: how
/// a shard serves an in-memory read.
pub async fn serve_handled<H, F>(
    listener: TcpListener,
    acceptor: Acceptor,
    cfg: TransportConfig,
    max_connections: usize,
    handler: Rc<H>,
) -> std::io::Result<()>
where
    H: Fn(Message) -> Handled<F> + 'static,
    F: Future<Output = Option<Message>> + 'static,
{
    let live = Rc::new(std::cell::Cell::new(0usize));
    let per_peer = Rc::new(RefCell::new(PeerCounts::new(cfg.max_connections_per_peer)));
    loop {
        let stream = listener
            .accept()
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        let peer = stream
            .peer_addr()
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        if live.get() >= max_connections.max(1) {
            tracing::warn!(%peer, "connection refused: {} connections open", live.get());
            drop(stream);
            continue;
        }
        if !per_peer.borrow_mut().open(peer.ip()) {
            tracing::warn!(%peer, "connection refused: too many connections from this address");
            drop(stream);
            continue;
        }
        let _ = stream.set_nodelay(true);
        live.set(live.get() + 1);
        let (handler, cfg, live, per_peer) =
            (handler.clone(), cfg.clone(), live.clone(), per_peer.clone());
        glommio::spawn_local(async move {
            let result =
                serve_connection::<GlommioTimer, _, _, _>(stream, acceptor, &cfg, |m| handler(m))
                    .await;
            live.set(live.get() - 1);
            per_peer.borrow_mut().close(peer.ip());
            log_close(peer, result);
        })
        .detach();
    }
}
