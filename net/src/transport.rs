//! Runtime-independent connection drivers over any `AsyncRead + AsyncWrite` byte stream.
//! The tokio and glommio transports only connect, spawn and time out; the protocol work —
//! handshake, pipelining, matching replies by request id, bounds — is here, once.
//!
//! One task owns each connection: it reads, runs (server) or matches (client) requests and
//! writes, with no lock and no task hop between the socket and a quick handler.
// perf-critical: the request path of every RPC.

use std::collections::HashMap;
use std::future::Future;
use std::hash::{BuildHasherDefault, Hasher};
use std::pin::pin;
use std::time::Duration;

use bytes::BytesMut;
use futures_channel::{mpsc, oneshot};
use futures_util::SinkExt;
use futures_util::future::{Either, FutureExt, select};
use futures_util::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use futures_util::stream::{FuturesUnordered, StreamExt};

use crate::conn::{ConnError, ConnReader, check_hello, check_hello_ack, encode_hello};
use crate::frame::DEFAULT_MAX_FRAME_BYTES;
use crate::ids::RequestId;
use crate::message::Message;
use crate::message::handshake::{Acceptor, Hello, HelloAck};

/// Bounds and timeouts of a transport endpoint.
#[derive(Debug, Clone)]
pub struct TransportConfig {
    /// Largest frame payload accepted. Default 64 MiB.
    pub max_frame_bytes: usize,
    /// Requests in flight per connection: a client stops sending, a server stops reading at
    /// this bound. Default 1,024.
    pub max_in_flight: usize,
    /// Calls queued for a client connection before callers wait. Default 1,024.
    pub queue_depth: usize,
    /// Bytes of replies gathered before the server writes them. Default 256 KiB.
    pub write_batch_bytes: usize,
    /// Connect and handshake timeout. Default 1 s.
    pub connect_timeout: Duration,
    /// Timeout of one request, queueing included. Default 5 s.
    pub request_timeout: Duration,
}

impl Default for TransportConfig {
    fn default() -> Self {
        Self {
            max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
            max_in_flight: 1024,
            queue_depth: 1024,
            write_batch_bytes: 256 * 1024,
            connect_timeout: Duration::from_secs(1),
            request_timeout: Duration::from_secs(5),
        }
    }
}

/// Why a call did not get a reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CallError {
    /// The connection is closed (or closed while the call was in flight: outcome unknown).
    #[error("connection closed: {0}")]
    Closed(String),
    /// No reply within the request timeout: outcome unknown.
    #[error("request timed out")]
    Timeout,
    /// Could not connect or handshake.
    #[error("connect failed: {0}")]
    Connect(String),
}

type Reply = oneshot::Sender<Result<Message, CallError>>;

/// Pending replies by request id. Ids are a counter, so a multiplicative hash spreads them;
/// SipHash would cost more than the rest of the lookup.
type PendingMap = HashMap<u64, Reply, BuildHasherDefault<IdHasher>>;

/// Fibonacci hashing of a `u64` request id.
#[derive(Debug, Default, Clone, Copy)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_u64(&mut self, id: u64) {
        self.0 = id.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// A request handed to a client connection's driver.
#[derive(Debug)]
pub struct Call {
    msg: Message,
    /// `None` for one-way messages.
    reply: Option<Reply>,
}

/// The caller's side of a client connection: cheap to clone, usable from many tasks.
#[derive(Debug, Clone)]
pub struct ClientHandle {
    tx: mpsc::Sender<Call>,
}

impl ClientHandle {
    /// Sends a request and waits for its reply (no timeout: the transports add it).
    pub async fn call(&self, msg: Message) -> Result<Message, CallError> {
        let (reply, rx) = oneshot::channel();
        let call = Call {
            msg,
            reply: Some(reply),
        };
        self.enqueue(call).await?;
        rx.await
            .map_err(|_| CallError::Closed("connection task ended".into()))?
    }

    /// Queues a call: without waiting when there is room (the common case), else waits.
    async fn enqueue(&self, call: Call) -> Result<(), CallError> {
        let mut tx = self.tx.clone();
        match tx.try_send(call) {
            Ok(()) => Ok(()),
            Err(e) if e.is_full() => tx
                .send(e.into_inner())
                .await
                .map_err(|_| CallError::Closed("connection task ended".into())),
            Err(_) => Err(CallError::Closed("connection task ended".into())),
        }
    }

    /// Sends a one-way message (request id 0, no reply), waiting only for queue space.
    pub async fn send(&self, msg: Message) -> Result<(), CallError> {
        self.enqueue(Call { msg, reply: None }).await
    }

    /// Whether the connection task has ended.
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}

/// Reads until one whole message is buffered.
async fn read_message<S: AsyncRead + Unpin>(
    stream: &mut S,
    reader: &mut ConnReader,
) -> Result<(RequestId, Message), ConnError> {
    loop {
        if let Some(m) = reader.next_message()? {
            return Ok(m);
        }
        fill(stream, reader).await?;
    }
}

/// One read into the reader's buffer.
async fn fill<S: AsyncRead + Unpin>(
    stream: &mut S,
    reader: &mut ConnReader,
) -> Result<(), ConnError> {
    let space = reader.read_space()?;
    let n = stream.read(space).await?;
    reader.filled(n)
}

/// Connector side of the handshake: sends `hello`, waits for the ack.
pub async fn client_handshake<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    hello: Hello,
    cfg: &TransportConfig,
) -> Result<(HelloAck, ConnReader), ConnError> {
    let mut out = BytesMut::new();
    encode_hello(hello, &mut out);
    stream.write_all(&out).await?;
    stream.flush().await?;
    let mut reader = ConnReader::new(cfg.max_frame_bytes);
    let (_, msg) = read_message(stream, &mut reader).await?;
    Ok((check_hello_ack(msg)?, reader))
}

/// Creates the channel between callers and a client connection's driver.
pub fn client_channel(cfg: &TransportConfig) -> (ClientHandle, mpsc::Receiver<Call>) {
    let (tx, rx) = mpsc::channel(cfg.queue_depth);
    (ClientHandle { tx }, rx)
}

/// Drives a client connection after its handshake until the stream fails or every handle is
/// dropped and every reply has arrived. Every pending call is failed when it ends.
pub async fn drive_client<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    mut reader: ConnReader,
    mut calls: mpsc::Receiver<Call>,
    cfg: TransportConfig,
) -> Result<(), ConnError> {
    let mut pending = PendingMap::with_capacity_and_hasher(cfg.max_in_flight, Default::default());
    let result = client_loop(&mut stream, &mut reader, &mut calls, &mut pending, &cfg).await;
    let reason = match &result {
        Ok(()) => "connection closed".to_string(),
        Err(e) => e.to_string(),
    };
    for (_, reply) in pending.drain() {
        let _ = reply.send(Err(CallError::Closed(reason.clone())));
    }
    calls.close();
    while let Ok(call) = calls.try_recv() {
        if let Some(reply) = call.reply {
            let _ = reply.send(Err(CallError::Closed(reason.clone())));
        }
    }
    result
}

async fn client_loop<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    reader: &mut ConnReader,
    calls: &mut mpsc::Receiver<Call>,
    pending: &mut PendingMap,
    cfg: &TransportConfig,
) -> Result<(), ConnError> {
    let mut next_id: u64 = 1;
    let mut out = BytesMut::with_capacity(64 * 1024);
    let mut callers_gone = false;
    loop {
        // Take every queued call that fits, then write them in one go.
        while !callers_gone && has_room(pending, cfg.max_in_flight) {
            match calls.try_recv() {
                Ok(call) => enqueue(call, &mut next_id, pending, &mut out),
                Err(mpsc::TryRecvError::Closed) => callers_gone = true,
                Err(mpsc::TryRecvError::Empty) => break,
            }
        }
        if !out.is_empty() {
            stream.write_all(&out).await?;
            stream.flush().await?;
            out.clear();
        }
        if callers_gone && pending.is_empty() {
            return Ok(());
        }
        // Wait for replies, and for new calls while there is room.
        let event = if callers_gone || !has_room(pending, cfg.max_in_flight) {
            Either::Left(fill(stream, reader).await)
        } else {
            match select(pin!(fill(stream, reader)), calls.next()).await {
                Either::Left((read, _)) => Either::Left(read),
                Either::Right((call, _)) => Either::Right(call),
            }
        };
        match event {
            Either::Left(read) => read?,
            Either::Right(Some(call)) => enqueue(call, &mut next_id, pending, &mut out),
            Either::Right(None) => callers_gone = true,
        }
        while let Some((id, msg)) = reader.next_message()? {
            // A reply to a call that timed out (receiver dropped) or unknown id: drop it.
            if let Some(reply) = pending.remove(&id.0) {
                let _ = reply.send(Ok(msg));
            } else {
                tracing::debug!(request_id = id.0, "reply to no pending call dropped");
            }
        }
    }
}

/// Whether another call may be sent; when full, forget calls whose caller gave up.
fn has_room(pending: &mut PendingMap, max: usize) -> bool {
    if pending.len() >= max {
        pending.retain(|_, reply| !reply.is_canceled());
    }
    pending.len() < max
}

fn enqueue(call: Call, next_id: &mut u64, pending: &mut PendingMap, out: &mut BytesMut) {
    match call.reply {
        None => call.msg.encode_frame(RequestId(0), out),
        Some(reply) => {
            if reply.is_canceled() {
                return;
            }
            let id = *next_id;
            // Id 0 is reserved for one-way messages; ids wrap after 2^64 calls.
            *next_id = next_id.checked_add(1).unwrap_or(1);
            call.msg.encode_frame(RequestId(id), out);
            pending.insert(id, reply);
        }
    }
}

/// Serves one accepted connection: handshake, then up to `max_in_flight` requests at a time,
/// replies written in completion order. A request with id 0 is one-way: its handler's output
/// is dropped. Returns when the peer closes or breaks the protocol; the caller logs why.
pub async fn serve_connection<S, H, F>(
    mut stream: S,
    acceptor: Acceptor,
    cfg: &TransportConfig,
    handler: H,
) -> Result<(), ConnError>
where
    S: AsyncRead + AsyncWrite + Unpin,
    H: Fn(Message) -> F,
    F: Future<Output = Option<Message>>,
{
    let mut reader = ConnReader::new(cfg.max_frame_bytes);
    let (_, first) = read_message(&mut stream, &mut reader).await?;
    let mut out = BytesMut::with_capacity(64 * 1024);
    match check_hello(&acceptor, first)? {
        Ok(ack) => Message::HelloAck(ack).encode_frame(RequestId(0), &mut out),
        Err(refusal) => {
            Message::Error(refusal.clone()).encode_frame(RequestId(0), &mut out);
            stream.write_all(&out).await?;
            stream.flush().await?;
            return Err(ConnError::Refused(refusal));
        }
    }
    stream.write_all(&out).await?;
    stream.flush().await?;
    out.clear();

    let mut running = FuturesUnordered::new();
    loop {
        while running.len() < cfg.max_in_flight {
            let Some((id, msg)) = reader.next_message()? else {
                break;
            };
            let fut = handler(msg);
            running.push(async move { (id, fut.await) });
        }
        // Collect every reply that is ready now; quick handlers finish on their first poll.
        while let Some(Some((id, reply))) = running.next().now_or_never() {
            if let (RequestId(1..), Some(reply)) = (id, reply) {
                reply.encode_frame(id, &mut out);
            }
            if out.len() >= cfg.write_batch_bytes {
                break;
            }
        }
        if !out.is_empty() {
            stream.write_all(&out).await?;
            stream.flush().await?;
            out.clear();
        }
        if running.is_empty() {
            fill(&mut stream, &mut reader).await?;
        } else if running.len() < cfg.max_in_flight {
            match select(pin!(fill(&mut stream, &mut reader)), running.next()).await {
                Either::Left((read, _)) => read?,
                Either::Right((done, _)) => {
                    if let Some((id @ RequestId(1..), Some(reply))) = done {
                        reply.encode_frame(id, &mut out);
                    }
                }
            }
        } else if let Some((id @ RequestId(1..), Some(reply))) = running.next().await {
            reply.encode_frame(id, &mut out);
        }
    }
}

/// Logs why a served connection ended: a clean close quietly, a protocol error loudly.
pub fn log_close(peer: std::net::SocketAddr, result: Result<(), ConnError>) {
    match result {
        Ok(()) | Err(ConnError::Closed) => tracing::debug!(%peer, "connection closed"),
        Err(ConnError::Io(e)) => tracing::info!(%peer, "connection closed: i/o: {e}"),
        Err(e) => tracing::warn!(%peer, "connection closed: {e}"),
    }
}
