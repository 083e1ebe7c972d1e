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

use crate::auth::ClusterSecret;
use crate::conn::{
    AcceptorHandshake, ConnError, ConnReader, ConnectorHandshake, HANDSHAKE_MAX_FRAME_BYTES,
};
use crate::frame::DEFAULT_MAX_FRAME_BYTES;
use crate::ids::RequestId;
use crate::message::Message;
use crate::message::handshake::{Acceptor, Hello, HelloAck};
use crate::tls::{MaybeTls, TlsConfig};

/// Bounds and timeouts of a transport endpoint.
#[derive(Debug, Clone)]
pub struct TransportConfig {
    /// Largest frame payload accepted. Default [`DEFAULT_MAX_FRAME_BYTES`] (520 MiB: a
    /// `proto-max-bulk-len` value and its request).
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
    /// The cluster secret both ends of a connection must prove. Default: the insecure
    /// well-known secret ([`ClusterSecret::insecure`]), which only talks to endpoints that
    /// have no secret either; services set the real one from their config.
    pub secret: ClusterSecret,
    /// Server side: time from accept to a completed handshake. Default 5 s.
    pub handshake_timeout: Duration,
    /// Server side: a connection on which nothing arrived for this long (between one and two
    /// times it) while no request was in flight is closed. `Duration::ZERO` disables it.
    /// Default 10 min.
    pub idle_timeout: Duration,
    /// Server side: connections open at once from one IP address; more are refused, so that
    /// one peer cannot take every connection slot. Default 256.
    pub max_connections_per_peer: usize,
    /// Mutual TLS ([`crate::tls`]): when set, every connection is TLS 1.3 with certificates of
    /// the cluster CA on both ends, and the secret handshake runs inside it; the TLS handshake
    /// counts against the connect and handshake timeouts. Default none: plain TCP.
    pub tls: Option<TlsConfig>,
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
            secret: ClusterSecret::insecure(),
            handshake_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(600),
            max_connections_per_peer: 256,
            tls: None,
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
    /// Not sent: the request's frame is larger than the peer accepts (the configured
    /// `max_frame_bytes`). The connection and its other requests are unaffected.
    #[error("request of {len} bytes not sent: over the {max} byte frame limit")]
    TooLarge {
        /// The request's payload length.
        len: usize,
        /// The frame limit.
        max: usize,
    },
}

impl CallError {
    /// Whether the request may have reached the peer (its outcome is unknown): not for a
    /// failed connect or a request too large to send.
    pub fn maybe_sent(&self) -> bool {
        !matches!(self, Self::Connect(_) | Self::TooLarge { .. })
    }
}

fn too_large(e: crate::frame::FrameError) -> CallError {
    match e {
        crate::frame::FrameError::Oversized { len, max } => CallError::TooLarge { len, max },
        other => CallError::Closed(other.to_string()),
    }
}

type Reply = oneshot::Sender<Result<Message, CallError>>;
type BatchReply = oneshot::Sender<Vec<Result<Message, CallError>>>;

/// A request handed to a client connection's driver.
#[derive(Debug)]
pub struct Call {
    kind: CallKind,
}

#[derive(Debug)]
enum CallKind {
    /// One request, one reply.
    One(Message, Reply),
    /// Many requests sent together; one answer when every reply is in.
    Batch(Vec<Message>, BatchReply),
    /// A one-way message (request id 0).
    OneWay(Message),
}

/// Where the reply to a request id goes.
#[derive(Debug)]
enum Waiter {
    One(Reply),
    /// Position `pos` of the batch in slot `slot` of the batch table.
    Batch {
        slot: usize,
        pos: usize,
    },
}

/// A batch whose replies are still arriving.
#[derive(Debug)]
struct PendingBatch {
    results: Vec<Option<Result<Message, CallError>>>,
    missing: usize,
    reply: BatchReply,
}

/// Pending replies by request id. Ids are a counter, so a multiplicative hash spreads them;
/// SipHash would cost more than the rest of the lookup.
type PendingMap = HashMap<u64, Waiter, BuildHasherDefault<IdHasher>>;

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

/// The caller's side of a client connection: cheap to clone, usable from many tasks.
#[derive(Debug, Clone)]
pub struct ClientHandle {
    tx: mpsc::Sender<Call>,
}

fn ended() -> CallError {
    CallError::Closed("connection task ended".into())
}

impl ClientHandle {
    /// Sends a request and waits for its reply (no timeout: the transports add it).
    pub async fn call(&self, msg: Message) -> Result<Message, CallError> {
        let (reply, rx) = oneshot::channel();
        self.enqueue(CallKind::One(msg, reply)).await?;
        rx.await.map_err(|_| ended())?
    }

    /// Sends several requests in one write and waits until every reply is in; replies come
    /// back in request order. This is how a pipeline of commands travels: one queue entry,
    /// one wake-up and one timer for all of them.
    pub async fn call_batch(
        &self,
        msgs: Vec<Message>,
    ) -> Result<Vec<Result<Message, CallError>>, CallError> {
        if msgs.is_empty() {
            return Ok(Vec::new());
        }
        let (reply, rx) = oneshot::channel();
        self.enqueue(CallKind::Batch(msgs, reply)).await?;
        rx.await.map_err(|_| ended())
    }

    /// Sends a one-way message (request id 0, no reply), waiting only for queue space.
    pub async fn send(&self, msg: Message) -> Result<(), CallError> {
        self.enqueue(CallKind::OneWay(msg)).await
    }

    /// Queues a call: without waiting when there is room (the common case), else waits.
    async fn enqueue(&self, kind: CallKind) -> Result<(), CallError> {
        let mut tx = self.tx.clone();
        match tx.try_send(Call { kind }) {
            Ok(()) => Ok(()),
            Err(e) if e.is_full() => tx.send(e.into_inner()).await.map_err(|_| ended()),
            Err(_) => Err(ended()),
        }
    }

    /// Whether the connection task has ended.
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}

/// How a runtime bounds a future in time: `None` when `d` passed first.
pub trait Timer {
    /// Runs `fut` for at most `d`.
    fn timeout<F: Future>(
        d: std::time::Duration,
        fut: F,
    ) -> impl Future<Output = Option<F::Output>>;
    /// Completes after `d`.
    fn sleep(d: std::time::Duration) -> impl Future<Output = ()>;
}

/// A connection to one peer on runtime `T`; clones share it. Each transport names it
/// (`tokio_transport::Client`, `glommio_transport::Client`) and adds `connect`.
pub struct Client<T> {
    pub(crate) handle: ClientHandle,
    pub(crate) ack: HelloAck,
    pub(crate) cfg: TransportConfig,
    pub(crate) timer: std::marker::PhantomData<fn() -> T>,
}

impl<T> Clone for Client<T> {
    fn clone(&self) -> Self {
        Client {
            handle: self.handle.clone(),
            ack: self.ack,
            cfg: self.cfg.clone(),
            timer: std::marker::PhantomData,
        }
    }
}

impl<T> std::fmt::Debug for Client<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("peer", &self.ack)
            .finish_non_exhaustive()
    }
}

impl<T: Timer> Client<T> {
    /// Sends a request and waits for the reply, within the request timeout.
    pub async fn call(&self, msg: Message) -> Result<Message, CallError> {
        T::timeout(self.cfg.request_timeout, self.handle.call(msg))
            .await
            .ok_or(CallError::Timeout)?
    }

    /// Sends several requests in one write; replies in request order, all within the request
    /// timeout.
    pub async fn call_batch(
        &self,
        msgs: Vec<Message>,
    ) -> Result<Vec<Result<Message, CallError>>, CallError> {
        self.call_batch_within(msgs, self.cfg.request_timeout).await
    }

    /// [`Self::call_batch`] waiting up to `timeout` instead of the request timeout (requests
    /// known to run long on the peer, such as scripts).
    pub async fn call_batch_within(
        &self,
        msgs: Vec<Message>,
        timeout: Duration,
    ) -> Result<Vec<Result<Message, CallError>>, CallError> {
        T::timeout(timeout, self.handle.call_batch(msgs))
            .await
            .ok_or(CallError::Timeout)?
    }

    /// Sends a one-way message.
    pub async fn send(&self, msg: Message) -> Result<(), CallError> {
        T::timeout(self.cfg.request_timeout, self.handle.send(msg))
            .await
            .ok_or(CallError::Timeout)?
    }

    /// The peer's handshake answer.
    pub fn peer(&self) -> &HelloAck {
        &self.ack
    }

    /// Whether the connection has closed.
    pub fn is_closed(&self) -> bool {
        self.handle.is_closed()
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

/// Connector side of the handshake (`Hello`, `Challenge`, `Auth`, `AuthAck`): proves the
/// cluster secret and checks the acceptor's proof and cluster id. The caller bounds it in
/// time (the connect timeout).
pub async fn client_handshake<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    hello: Hello,
    cfg: &TransportConfig,
) -> Result<(HelloAck, ConnReader), ConnError> {
    let mut out = BytesMut::new();
    let mut hs = ConnectorHandshake::start(hello, cfg.secret.clone(), &mut out);
    write_out(stream, &mut out).await?;
    let mut reader = ConnReader::new(HANDSHAKE_MAX_FRAME_BYTES);
    let (_, challenge) = read_message(stream, &mut reader).await?;
    hs.on_challenge(challenge, &mut out)?;
    write_out(stream, &mut out).await?;
    let (_, ack) = read_message(stream, &mut reader).await?;
    let ack = hs.on_auth_ack(ack)?;
    reader.set_max_frame_bytes(cfg.max_frame_bytes);
    Ok((ack, reader))
}

/// Opens a connection over a fresh `stream`: the TLS handshake when `cfg.tls` is set, then
/// the connector's side of the secret handshake ([`client_handshake`]). The caller bounds it
/// in time (the connect timeout).
pub async fn client_open<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    hello: Hello,
    cfg: &TransportConfig,
) -> Result<(MaybeTls<S>, HelloAck, ConnReader), ConnError> {
    let mut stream = match &cfg.tls {
        None => MaybeTls::Plain(stream),
        Some(tls) => tls
            .connect(stream)
            .await
            .map_err(|e| ConnError::Tls(e.to_string()))?,
    };
    let (ack, reader) = client_handshake(&mut stream, hello, cfg)
        .await
        .map_err(|e| match e {
            // A TLS acceptor answers a plain `Hello` with an alert record, which reads as
            // an oversized frame: say what is likely wrong.
            ConnError::Frame(f) if cfg.tls.is_none() => ConnError::Handshake(format!(
                "{f} (does the peer require TLS? set tls-ca, tls-cert and tls-key)"
            )),
            other => other,
        })?;
    Ok((stream, ack, reader))
}

/// The acceptor's side of [`client_open`]: the TLS handshake when `cfg.tls` is set, then
/// [`server_handshake`]. The caller bounds it in time.
async fn server_open<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    acceptor: Acceptor,
    cfg: &TransportConfig,
) -> Result<(MaybeTls<S>, ConnReader), ConnError> {
    let mut stream = match &cfg.tls {
        None => MaybeTls::Plain(stream),
        Some(tls) => tls
            .accept(stream)
            .await
            .map_err(|e| ConnError::Tls(e.to_string()))?,
    };
    let (_, reader) = server_handshake(&mut stream, acceptor, cfg).await?;
    Ok((stream, reader))
}

/// Acceptor side of the handshake: on success the connector proved the cluster secret and
/// the reader is switched to the full frame limit. A refusal is sent before the error returns.
pub async fn server_handshake<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    acceptor: Acceptor,
    cfg: &TransportConfig,
) -> Result<(HelloAck, ConnReader), ConnError> {
    let mut reader = ConnReader::new(HANDSHAKE_MAX_FRAME_BYTES);
    let mut out = BytesMut::new();
    let (_, hello) = read_message(stream, &mut reader).await?;
    let hs = AcceptorHandshake::on_hello(&acceptor, cfg.secret.clone(), hello, &mut out);
    write_out(stream, &mut out).await?;
    let hs = hs?;
    let (_, auth) = read_message(stream, &mut reader).await?;
    let peer = hs.on_auth(auth, &mut out);
    write_out(stream, &mut out).await?;
    let peer = peer?;
    reader.set_max_frame_bytes(cfg.max_frame_bytes);
    Ok((peer, reader))
}

async fn write_out<S: AsyncWrite + Unpin>(
    stream: &mut S,
    out: &mut BytesMut,
) -> Result<(), ConnError> {
    if !out.is_empty() {
        stream.write_all(out).await?;
        stream.flush().await?;
        out.clear();
    }
    Ok(())
}

/// Creates the channel between callers and a client connection's driver.
pub fn client_channel(cfg: &TransportConfig) -> (ClientHandle, mpsc::Receiver<Call>) {
    let (tx, rx) = mpsc::channel(cfg.queue_depth);
    (ClientHandle { tx }, rx)
}

/// The client driver's bookkeeping: request ids, waiters, batches in flight.
#[derive(Debug)]
struct Pending {
    next_id: u64,
    waiters: PendingMap,
    batches: Vec<Option<PendingBatch>>,
    free_batch_slots: Vec<usize>,
}

impl Pending {
    fn new(capacity: usize) -> Self {
        Self {
            next_id: 1,
            waiters: PendingMap::with_capacity_and_hasher(capacity, Default::default()),
            batches: Vec::new(),
            free_batch_slots: Vec::new(),
        }
    }

    fn is_empty(&self) -> bool {
        self.waiters.is_empty()
    }

    /// Whether another call may be sent; when full, forget single calls whose caller gave up.
    fn has_room(&mut self, max: usize) -> bool {
        if self.waiters.len() >= max {
            self.waiters.retain(|_, w| match w {
                Waiter::One(reply) => !reply.is_canceled(),
                Waiter::Batch { .. } => true,
            });
        }
        self.waiters.len() < max
    }

    fn id(&mut self) -> RequestId {
        let id = self.next_id;
        // Id 0 is reserved for one-way messages; ids wrap after 2^64 requests.
        self.next_id = self.next_id.checked_add(1).unwrap_or(1);
        RequestId(id)
    }

    /// Encodes a call's frames into `out` and records who waits for the replies. A call
    /// whose caller gave up (timed out) is not sent; a request whose frame is over `max`
    /// bytes is not sent and fails alone with [`CallError::TooLarge`].
    fn start(&mut self, call: Call, out: &mut BytesMut, max: usize) {
        match call.kind {
            CallKind::OneWay(msg) => {
                if let Err(e) = msg.encode_frame_within(RequestId(0), max, out) {
                    tracing::warn!("one-way {} not sent: {e}", msg.name());
                }
            }
            CallKind::One(msg, reply) => {
                if reply.is_canceled() {
                    return;
                }
                let id = self.id();
                match msg.encode_frame_within(id, max, out) {
                    Ok(()) => {
                        self.waiters.insert(id.0, Waiter::One(reply));
                    }
                    Err(e) => {
                        let _ = reply.send(Err(too_large(e)));
                    }
                }
            }
            CallKind::Batch(msgs, reply) => {
                if reply.is_canceled() {
                    return;
                }
                let slot = self.free_batch_slots.pop().unwrap_or(self.batches.len());
                if slot == self.batches.len() {
                    self.batches.push(None);
                }
                self.batches[slot] = Some(PendingBatch {
                    results: (0..msgs.len()).map(|_| None).collect(),
                    missing: msgs.len(),
                    reply,
                });
                for (pos, msg) in msgs.iter().enumerate() {
                    let id = self.id();
                    self.waiters.insert(id.0, Waiter::Batch { slot, pos });
                    if let Err(e) = msg.encode_frame_within(id, max, out) {
                        self.finish(id.0, Err(too_large(e)));
                    }
                }
            }
        }
    }

    /// Delivers the reply (or failure) of request `id`.
    fn finish(&mut self, id: u64, result: Result<Message, CallError>) {
        match self.waiters.remove(&id) {
            Some(Waiter::One(reply)) => {
                let _ = reply.send(result);
            }
            Some(Waiter::Batch { slot, pos }) => {
                let Some(Some(batch)) = self.batches.get_mut(slot) else {
                    return;
                };
                batch.results[pos] = Some(result);
                batch.missing -= 1;
                if batch.missing == 0 {
                    let done = self.batches[slot].take().expect("checked above");
                    self.free_batch_slots.push(slot);
                    let results = done.results.into_iter().flatten().collect();
                    let _ = done.reply.send(results);
                }
            }
            // A reply to a call that timed out (receiver dropped) or an unknown id.
            None => tracing::debug!(request_id = id, "reply to no pending call dropped"),
        }
    }

    /// Fails every pending request.
    fn fail_all(&mut self, reason: &str) {
        let ids: Vec<u64> = self.waiters.keys().copied().collect();
        for id in ids {
            self.finish(id, Err(CallError::Closed(reason.to_string())));
        }
    }
}

/// Drives a client connection after its handshake until the stream fails or every handle is
/// dropped and every reply has arrived. Every pending call is failed when it ends.
pub async fn drive_client<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    mut reader: ConnReader,
    mut calls: mpsc::Receiver<Call>,
    cfg: TransportConfig,
) -> Result<(), ConnError> {
    let mut pending = Pending::new(cfg.max_in_flight);
    let result = client_loop(&mut stream, &mut reader, &mut calls, &mut pending, &cfg).await;
    let reason = match &result {
        Ok(()) => "connection closed".to_string(),
        Err(e) => e.to_string(),
    };
    pending.fail_all(&reason);
    calls.close();
    let mut sink = BytesMut::new();
    while let Ok(call) = calls.try_recv() {
        pending.start(call, &mut sink, cfg.max_frame_bytes);
    }
    pending.fail_all(&reason);
    result
}

async fn client_loop<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    reader: &mut ConnReader,
    calls: &mut mpsc::Receiver<Call>,
    pending: &mut Pending,
    cfg: &TransportConfig,
) -> Result<(), ConnError> {
    let mut out = BytesMut::with_capacity(64 * 1024);
    let mut callers_gone = false;
    loop {
        // Take every queued call that fits, then write them in one go.
        take_calls(calls, pending, &mut out, &mut callers_gone, cfg);
        if !out.is_empty() && !callers_gone {
            // Let the other tasks that are ready now (callers woken by the same poll of the
            // sockets) queue their calls too, so they share this write: one send and one
            // wake-up of the peer for all of them instead of one each.
            yield_once().await;
            take_calls(calls, pending, &mut out, &mut callers_gone, cfg);
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
        let event = if callers_gone || !pending.has_room(cfg.max_in_flight) {
            Either::Left(fill(stream, reader).await)
        } else {
            match select(pin!(fill(stream, reader)), calls.next()).await {
                Either::Left((read, _)) => Either::Left(read),
                Either::Right((call, _)) => Either::Right(call),
            }
        };
        match event {
            Either::Left(read) => read?,
            Either::Right(Some(call)) => pending.start(call, &mut out, cfg.max_frame_bytes),
            Either::Right(None) => callers_gone = true,
        }
        while let Some((id, msg)) = reader.next_message()? {
            pending.finish(id.0, Ok(msg));
        }
    }
}

/// Moves every queued call that fits into `out`.
fn take_calls(
    calls: &mut mpsc::Receiver<Call>,
    pending: &mut Pending,
    out: &mut BytesMut,
    callers_gone: &mut bool,
    cfg: &TransportConfig,
) {
    while !*callers_gone && pending.has_room(cfg.max_in_flight) {
        match calls.try_recv() {
            Ok(call) => pending.start(call, out, cfg.max_frame_bytes),
            Err(mpsc::TryRecvError::Closed) => *callers_gone = true,
            Err(mpsc::TryRecvError::Empty) => break,
        }
    }
}

/// Returns `Pending` once after waking itself: every runtime we use (tokio, glommio) runs a
/// task that woke itself during its poll after the tasks already queued.
async fn yield_once() {
    let mut yielded = false;
    std::future::poll_fn(|cx| {
        if yielded {
            std::task::Poll::Ready(())
        } else {
            yielded = true;
            cx.waker().wake_by_ref();
            std::task::Poll::Pending
        }
    })
    .await;
}

/// What a server handler does with a request: answer now (an in-memory read: no task, no
/// allocation), or later when its future completes.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // a return value moved once; boxing would allocate
pub enum Handled<F> {
    /// The reply (`None`: no reply, e.g. for a one-way message).
    Now(Option<Message>),
    /// A future that yields the reply.
    Later(F),
}

/// Serves one accepted connection: the TLS handshake if configured and the secret handshake
/// (both within the handshake timeout, with the small handshake frame limit), then up to `max_in_flight` requests at a time, replies
/// written in completion order. A handler that answers [`Handled::Now`] costs no task and no
/// allocation; [`Handled::Later`] futures run concurrently on this task. A request with id 0
/// is one-way: its reply is dropped. Returns when the peer closes, breaks the protocol or
/// stays idle past the idle timeout; the caller logs why.
pub async fn serve_connection<T, S, H, F>(
    stream: S,
    acceptor: Acceptor,
    cfg: &TransportConfig,
    handler: H,
) -> Result<(), ConnError>
where
    T: Timer,
    S: AsyncRead + AsyncWrite + Unpin,
    H: Fn(Message) -> Handled<F>,
    F: Future<Output = Option<Message>>,
{
    let (mut stream, mut reader) =
        T::timeout(cfg.handshake_timeout, server_open(stream, acceptor, cfg))
            .await
            .ok_or(ConnError::HandshakeTimeout)??;
    let mut out = BytesMut::with_capacity(64 * 1024);
    let mut idle = IdleWatch::<T>::new(cfg.idle_timeout);
    let mut idle_timer = pin!(T::sleep(idle.period()));

    let mut running = FuturesUnordered::new();
    loop {
        while running.len() < cfg.max_in_flight && out.len() < cfg.write_batch_bytes {
            let Some((id, msg)) = reader.next_message()? else {
                break;
            };
            match handler(msg) {
                Handled::Now(reply) => write_reply(id, reply, &mut out),
                Handled::Later(fut) => running.push(async move { (id, fut.await) }),
            }
        }
        // Collect every reply that is ready now.
        while out.len() < cfg.write_batch_bytes {
            match running.next().now_or_never() {
                Some(Some((id, reply))) => write_reply(id, reply, &mut out),
                _ => break,
            }
        }
        if !out.is_empty() {
            stream.write_all(&out).await?;
            stream.flush().await?;
            out.clear();
            continue; // more requests may be buffered already
        }
        if running.is_empty() {
            // Nothing in flight: the only wait where a connection can be idle.
            match select(pin!(fill(&mut stream, &mut reader)), idle_timer.as_mut()).await {
                Either::Left((read, _)) => {
                    read?;
                    idle.activity();
                }
                Either::Right(((), _)) => {
                    if !idle.rearm() {
                        return Err(ConnError::IdleTimeout);
                    }
                    idle_timer.set(T::sleep(idle.period()));
                }
            }
        } else if running.len() < cfg.max_in_flight {
            match select(pin!(fill(&mut stream, &mut reader)), running.next()).await {
                Either::Left((read, _)) => read?,
                Either::Right((Some((id, reply)), _)) => write_reply(id, reply, &mut out),
                Either::Right((None, _)) => {}
            }
        } else if let Some((id, reply)) = running.next().await {
            write_reply(id, reply, &mut out);
        }
    }
}

/// Connections open per peer IP address, against a limit: the transports' accept loops
/// count with it.
#[derive(Debug)]
pub struct PeerCounts {
    max: usize,
    open: HashMap<std::net::IpAddr, usize>,
}

impl PeerCounts {
    /// Counts against a limit of `max` (at least 1) per address.
    pub fn new(max: usize) -> Self {
        Self {
            max: max.max(1),
            open: HashMap::new(),
        }
    }

    /// Counts a new connection from `ip`; `false` (and nothing counted) at the limit.
    pub fn open(&mut self, ip: std::net::IpAddr) -> bool {
        let n = self.open.entry(ip).or_insert(0);
        if *n >= self.max {
            return false;
        }
        *n += 1;
        true
    }

    /// A connection from `ip` ended.
    pub fn close(&mut self, ip: std::net::IpAddr) {
        if let std::collections::hash_map::Entry::Occupied(mut e) = self.open.entry(ip) {
            *e.get_mut() -= 1;
            if *e.get() == 0 {
                e.remove();
            }
        }
    }

    /// Connections open from `ip`.
    pub fn count(&self, ip: std::net::IpAddr) -> usize {
        self.open.get(&ip).copied().unwrap_or(0)
    }
}

/// Idle detection without a clock read per request: a timer of one period runs; when it
/// fires, the connection is idle if nothing arrived since it was armed, else it is re-armed.
/// So an idle connection is closed between one and two periods after its last read.
struct IdleWatch<T> {
    period: Duration,
    reads: u64,
    reads_at_arm: u64,
    timer: std::marker::PhantomData<fn() -> T>,
}

impl<T: Timer> IdleWatch<T> {
    fn new(period: Duration) -> Self {
        Self {
            period,
            reads: 0,
            reads_at_arm: 0,
            timer: std::marker::PhantomData,
        }
    }

    /// The timer period; a disabled watch (period zero) sleeps for about a century.
    fn period(&self) -> Duration {
        if self.period.is_zero() {
            Duration::from_secs(100 * 365 * 24 * 3600)
        } else {
            self.period
        }
    }

    fn activity(&mut self) {
        self.reads = self.reads.wrapping_add(1);
    }

    /// Called when the timer fired: whether to keep the connection (and re-arm).
    fn rearm(&mut self) -> bool {
        let active = self.reads != self.reads_at_arm || self.period.is_zero();
        self.reads_at_arm = self.reads;
        active
    }
}

fn write_reply(id: RequestId, reply: Option<Message>, out: &mut BytesMut) {
    if let (RequestId(1..), Some(reply)) = (id, reply) {
        reply.encode_frame(id, out);
    }
}

/// Handshakes refused by this process's acceptors, by reason, since it started.
///
/// Process-wide relaxed atomics: written only when a handshake fails (never on the request
/// path), read by the metrics endpoints (`*_internal_handshake_failures_total{reason}`).
static HANDSHAKE_FAILURES: [std::sync::atomic::AtomicU64; HandshakeFailure::ALL.len()] =
    [const { std::sync::atomic::AtomicU64::new(0) }; HandshakeFailure::ALL.len()];

/// Why an accepted connection's handshake failed (a metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeFailure {
    /// The TLS handshake failed: no or a foreign certificate, or a plain-TCP peer.
    Tls,
    /// The peer did not prove the cluster secret, or is of another cluster.
    Auth,
    /// The handshake did not complete in time.
    Timeout,
}

impl HandshakeFailure {
    /// Every reason, in label order.
    pub const ALL: [Self; 3] = [Self::Tls, Self::Auth, Self::Timeout];

    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Self::Tls => "tls",
            Self::Auth => "auth",
            Self::Timeout => "timeout",
        }
    }

    fn of(e: &ConnError) -> Option<Self> {
        match e {
            ConnError::Tls(_) => Some(Self::Tls),
            ConnError::Refused(_) => Some(Self::Auth),
            ConnError::HandshakeTimeout => Some(Self::Timeout),
            _ => None,
        }
    }

    /// Handshakes refused for this reason by this process's acceptors so far.
    pub fn count(self) -> u64 {
        HANDSHAKE_FAILURES[self as usize].load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Appends `<prefix>_internal_handshake_failures_total{reason}` in the Prometheus text
    /// format (process-wide counts: `tierkv dev`'s endpoints all show the same).
    pub fn write_prometheus(prefix: &str, out: &mut String) {
        let name = format!("{prefix}_internal_handshake_failures_total");
        out.push_str(&format!("# TYPE {name} counter\n"));
        for why in Self::ALL {
            out.push_str(&format!(
                "{name}{{reason=\"{}\"}} {}\n",
                why.label(),
                why.count()
            ));
        }
    }
}

/// Logs why a served connection ended: a clean close quietly, a protocol error loudly; counts
/// failed handshakes ([`HandshakeFailure`]).
pub fn log_close(peer: std::net::SocketAddr, result: Result<(), ConnError>) {
    if let Some(why) = result.as_ref().err().and_then(HandshakeFailure::of) {
        HANDSHAKE_FAILURES[why as usize].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    match result {
        Ok(()) | Err(ConnError::Closed) => tracing::debug!(%peer, "connection closed"),
        Err(ConnError::IdleTimeout) => tracing::debug!(%peer, "idle connection closed"),
        Err(ConnError::Io(e)) => tracing::info!(%peer, "connection closed: i/o: {e}"),
        Err(e) => tracing::warn!(%peer, "connection closed: {e}"),
    }
}
