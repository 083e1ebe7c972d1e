//! The proxy server: accepts Redis clients (at most `max_clients`), and runs one task per
//! connection: read → parse → dispatch → execute → write, replies strictly in order.
//!
//! A connection's pipeline becomes batches: every data command parsed from what has arrived
//! (up to `max_pipeline` commands) is translated to operations, and the whole batch runs
//! through [`Router::exec`] — one `call_batch` per destination shard — before the replies are
//! encoded in order, each in the protocol the connection had when the command was read (so a
//! `HELLO 3` in the middle of a pipeline switches exactly the replies after it). Commands
//! that change connection state (AUTH, HELLO, CLIENT SETNAME) take effect for the commands
//! parsed after them; multi-round commands (SCAN, KEYS, DBSIZE, HSCAN) first complete the
//! batch before them, so they see its writes.
//!
//! Output is bounded: a batch whose replies exceed `max_output_bytes` disconnects the client
//! (unless it is a single reply), and a write that makes no progress for `output_stall`
//! (a client that pipelines without reading) disconnects it too. Input is bounded: the
//! receive buffer grows with the bytes that arrived (never with a length a header announces)
//! up to `client-query-buffer-limit`, and is given back once idle. Memory per connection is
//! therefore bounded by the query-buffer limit plus one batch.
//!
//! Silent clients are closed: a partial request that receives no byte for
//! `partial_request_timeout`, a connection that has not authenticated `auth_timeout` after it
//! was accepted (when a password is set), and with Redis's `timeout` any client idle that
//! long. One timer per connection checks these, at most every 10 s and never on the hot path.
// perf-critical: the per-connection loop.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use net::message::kv::{KvOp, OpResult};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::cmd::{self, Action, Finish, Session};
use crate::metrics::{Sample, error_class};
use crate::resp::{ParseError, Protocol, Reply, RequestParser};
use crate::route::ExecError;
pub use crate::shared::{ProxyConfig, Shared, now_ms, now_us};

/// A connection's receive buffer when it is not holding a large request.
const INBUF_BYTES: usize = 16 * 1024;
/// An idle receive buffer larger than this is given back (a large request has completed).
const INBUF_KEEP_BYTES: usize = 64 * 1024;
/// Most input a batch takes from the socket at once when a read filled the buffer
/// ([`gather`]).
const GATHER_BYTES: usize = 256 * 1024;
/// A client idle this long gives its receive buffer back (Redis: 2 s, in `clientsCron`).
const QBUF_IDLE: Duration = Duration::from_secs(2);
/// A connection re-reads the timeout settings at least this often.
const TIMER_CHECK_MAX: Duration = Duration::from_secs(10);

/// Serves Redis clients on `listener` until `shutdown` completes; then stops accepting, lets
/// each connection finish the batch it is running (within `shutdown_grace`) and returns.
pub async fn serve(listener: TcpListener, shared: Arc<Shared>, shutdown: impl Future<Output = ()>) {
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    let watcher = {
        let shared = shared.clone();
        let stop = stop_rx.clone();
        tokio::spawn(async move { shared.router.watch_routes(stop).await })
    };
    let loader = tokio::spawn(finish_loading(shared.clone(), stop_rx.clone()));
    let tracking = tokio::spawn(crate::tracking::run(shared.clone(), stop_rx.clone()));
    let expired = tokio::spawn(crate::expired::run(shared.clone(), stop_rx.clone()));
    let mesh = tokio::spawn(crate::mesh::service::run(shared.clone(), stop_rx.clone()));
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => break,
            () = shared.shutdown_requested() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        while tasks.try_join_next().is_some() {}
        shared.metrics.connections.fetch_add(1, Ordering::Relaxed);
        if shared.clients.fetch_add(1, Ordering::AcqRel) >= shared.cfg.max_clients {
            shared.clients.fetch_sub(1, Ordering::AcqRel);
            shared.metrics.rejected.fetch_add(1, Ordering::Relaxed);
            tasks.spawn(async move {
                let mut stream = stream;
                let _ = stream
                    .write_all(b"-ERR max number of clients reached\r\n")
                    .await;
            });
            continue;
        }
        let shared = shared.clone();
        let stop = stop_rx.clone();
        tasks.spawn(async move {
            let _ = stream.set_nodelay(true);
            connection(stream, peer.to_string(), &shared, stop).await;
            shared.clients.fetch_sub(1, Ordering::AcqRel);
        });
    }
    let _ = stop_tx.send(true);
    let _ = watcher.await;
    let _ = loader.await;
    let _ = tracking.await;
    let _ = expired.await;
    let _ = mesh.await;
    let grace = shared.cfg.shutdown_grace;
    if tokio::time::timeout(grace, async { while tasks.join_next().await.is_some() {} })
        .await
        .is_err()
    {
        tasks.abort_all();
    }
}

/// Probes the ranges every [`LOADING_PROBE`] until each serves a leader read, then ends the
/// proxy's startup loading state (`-LOADING`, `INFO` `loading:1`); after
/// [`crate::shared::LOADING_MAX`] it ends it anyway.
async fn finish_loading(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let started = Instant::now();
    while shared.loading() {
        let served = shared.router.every_range_serves().await;
        let waited = started.elapsed();
        if served || waited >= crate::shared::LOADING_MAX {
            shared.loaded();
            if served {
                tracing::info!("every range serves: loaded in {} ms", waited.as_millis());
            } else {
                tracing::warn!(
                    "some ranges still do not serve after {} s: loading ends; their commands wait and fail as in any outage",
                    waited.as_secs()
                );
            }
            return;
        }
        tokio::select! {
            () = tokio::time::sleep(LOADING_PROBE) => {}
            _ = stop.changed() => return,
        }
    }
}

/// How often a loading proxy probes its ranges.
const LOADING_PROBE: Duration = Duration::from_millis(50);

/// Splits a batch's operations into consecutive waves in which no key is both read and
/// written. A shard may complete the operations of one `call_batch` out of order (a lease
/// read finishes before an earlier write commits), so a pipeline's `SET k` and later `GET k`
/// must not share a wave; waves run one after the other.
///
/// Writes of one key may share a wave when each names that key as the key its range
/// deduplicates it under (`KvOp::dedup_key`): the shard proposes them in the order they
/// arrive, with increasing sequence numbers, and its write fences (`ds_node::server::fence`)
/// refuse a later one while an earlier one was refused for a retry or waits for memory, so
/// they apply in pipeline order — 16 pipelined `INCR k` are one Raft round, not 16.
fn waves(ops: Vec<(Bytes, KvOp)>) -> Vec<Vec<(Bytes, KvOp)>> {
    if ops.is_empty() {
        return Vec::new();
    }
    // Reads alone never conflict: one wave, no key hashed (a pipeline of GETs).
    if ops.len() == 1 || !ops.iter().any(|(_, op)| op.is_write()) {
        return vec![ops];
    }
    let mut waves = Vec::new();
    let mut cur: Vec<(Bytes, KvOp)> = Vec::new();
    let mut touched: HashMap<Bytes, Touched> = HashMap::new();
    for (key, op) in ops {
        let now = Touched::of(&op);
        let conflict = touched.get(&key).is_some_and(|was| !was.may_share(&now));
        if conflict {
            waves.push(std::mem::take(&mut cur));
            touched.clear();
        }
        touched.entry(key.clone()).or_insert(now);
        cur.push((key, op));
    }
    if !cur.is_empty() {
        waves.push(cur);
    }
    waves
}

/// How a wave touched a key so far.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Touched {
    /// Reads only.
    Read,
    /// Writes only, each deduplicated under this user key (fenced in order by the shard).
    FencedWrites(Bytes),
    /// A write the shard does not fence.
    Write,
}

impl Touched {
    fn of(op: &KvOp) -> Touched {
        match (op.is_write(), op.dedup_key()) {
            (false, _) => Touched::Read,
            (true, Some(k)) => Touched::FencedWrites(k.clone()),
            (true, None) => Touched::Write,
        }
    }

    /// Whether an operation touching the key as `next` may join a wave that touched it as
    /// `self`.
    fn may_share(&self, next: &Touched) -> bool {
        match (self, next) {
            (Touched::Read, Touched::Read) => true,
            (Touched::FencedWrites(a), Touched::FencedWrites(b)) => a == b,
            _ => false,
        }
    }
}

/// The Prometheus text of every proxy metric.
pub fn prometheus_text(shared: &Shared) -> String {
    let mut out = String::new();
    shared.metrics.write_prometheus(&mut out);
    let r = &shared.router.stats;
    let gauges: [(&str, &str, u64); 13] = [
        ("proxy_loading", "gauge", u64::from(shared.loading())),
        (
            "proxy_connected_clients",
            "gauge",
            shared.clients.load(Ordering::Relaxed) as u64,
        ),
        (
            "proxy_connections_total",
            "counter",
            shared.metrics.connections.load(Ordering::Relaxed),
        ),
        (
            "proxy_rejected_connections_total",
            "counter",
            shared.metrics.rejected.load(Ordering::Relaxed),
        ),
        (
            "proxy_route_retries_total",
            "counter",
            r.retries.load(Ordering::Relaxed),
        ),
        (
            "proxy_route_refreshes_total",
            "counter",
            r.refreshes.load(Ordering::Relaxed),
        ),
        (
            "proxy_route_pushes_total",
            "counter",
            r.pushes.load(Ordering::Relaxed),
        ),
        (
            "proxy_route_failures_total",
            "counter",
            r.failures.load(Ordering::Relaxed),
        ),
        (
            "proxy_write_packs_total",
            "counter",
            r.packs.load(Ordering::Relaxed),
        ),
        (
            "proxy_write_packed_ops_total",
            "counter",
            r.packed_ops.load(Ordering::Relaxed),
        ),
        (
            "proxy_write_packs_refused_total",
            "counter",
            r.packs_refused.load(Ordering::Relaxed),
        ),
        (
            "proxy_slowlog_entries_total",
            "counter",
            shared.slowlog.logged_total(),
        ),
        (
            "proxy_route_table_version",
            "gauge",
            shared.router.version(),
        ),
    ];
    for (name, kind, v) in gauges {
        out.push_str(&format!("# TYPE {name} {kind}\n{name} {v}\n"));
    }
    crate::mesh::write_prometheus(&shared.mesh, &mut out);
    crate::tracking::write_prometheus(&shared.tracker, &mut out);
    out
}

/// Serves `GET /metrics` (Prometheus text format) on `listener` until `shutdown` completes.
/// Any other path gets 404. Requests are read up to 8 KiB and 5 s; one response per connection.
pub async fn serve_metrics(
    listener: TcpListener,
    shared: Arc<Shared>,
    shutdown: impl Future<Output = ()>,
) {
    let mut shutdown = std::pin::pin!(shutdown);
    let mut tasks = JoinSet::new();
    loop {
        let (mut stream, _) = tokio::select! {
            _ = &mut shutdown => break,
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(_) => continue,
            },
        };
        while tasks.try_join_next().is_some() {}
        let shared = shared.clone();
        tasks.spawn(async move {
            let mut req = Vec::with_capacity(1024);
            let read = async {
                let mut chunk = [0u8; 1024];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") && req.len() < 8192 {
                    match stream.read(&mut chunk).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => req.extend_from_slice(&chunk[..n]),
                    }
                }
            };
            if tokio::time::timeout(Duration::from_secs(5), read)
                .await
                .is_err()
            {
                return;
            }
            let (status, body) = if req.starts_with(b"GET /metrics ") {
                ("200 OK", prometheus_text(&shared))
            } else {
                ("404 Not Found", String::from("not found\n"))
            };
            let resp = format!(
                "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(resp.as_bytes()).await;
            let _ = stream.shutdown().await;
        });
    }
    tasks.abort_all();
}

/// Why a connection ends.
#[derive(Debug, PartialEq, Eq)]
enum End {
    /// Keep going.
    No,
    /// Close after writing what is pending.
    AfterWrite,
    /// Close now, dropping pending output.
    Now,
}

/// A blocking command waiting its turn ([`crate::blocking`]), run by `connection` while it
/// watches the socket.
struct Parked {
    name: Option<&'static str>,
    /// Its parse and dispatch ([`crate::timing`]); its attempts are added when it ends.
    took: Duration,
    /// `CLIENT REPLY OFF|SKIP`.
    silent: bool,
    blocked: crate::blocking::Blocked,
    effects: Effects,
    /// Its arguments while `SLOWLOG` is on.
    args: Option<Vec<Bytes>>,
}

/// What a command publishes once its reply is known: keyspace notifications
/// ([`crate::notify`]) and client-side caching invalidations ([`crate::tracking`]).
#[derive(Debug, Default)]
struct Effects {
    notice: Option<Box<crate::notify::Notice>>,
    track: Option<Box<crate::tracking::Track>>,
}

/// One command waiting in a batch for its reply.
struct Item {
    name: Option<&'static str>,
    proto: Protocol,
    /// `CLIENT REPLY OFF|SKIP`: the reply is not sent (pushes — subscription confirmations —
    /// still are, in RESP2 too, as Redis marks them `CLIENT_PUSHING`).
    silent: bool,
    /// Its execution time so far ([`crate::timing`]): all of it for a ready reply; a data
    /// command's round trip is added once its batch has run.
    took: Duration,
    what: ItemKind,
    /// Keyspace notifications and invalidations to publish once the reply is known.
    effects: Effects,
    /// The command's arguments while `SLOWLOG` is on (`crate::slowlog`), to log it if slow.
    args: Option<Vec<Bytes>>,
}

enum ItemKind {
    Ready(Reply),
    Data {
        first: usize,
        len: usize,
        finish: Finish,
    },
}

struct Conn<'a> {
    shared: &'a Shared,
    sess: Session,
    wr: OwnedWriteHalf,
    out: BytesMut,
    ops: Vec<(Bytes, KvOp)>,
    items: Vec<Item>,
    samples: Vec<Sample>,
    /// The last clock read on the command path: each command is timed from it
    /// ([`crate::timing`]; one read per command, one per wave, one per batch).
    clock: crate::timing::Stopwatch,
    /// The waves of the batch being answered, to time each command by its own.
    waves: crate::timing::Waves,
    /// A blocking command to run before the rest of the input ([`crate::blocking`]).
    blocked: Option<Parked>,
    /// The last command run (`CLIENT LIST` `cmd=`).
    last_cmd: Option<&'static str>,
    /// The arguments of the command being dispatched, while `SLOWLOG` is on: taken by the
    /// item of its reply.
    slow_args: Option<Vec<Bytes>>,
}

async fn connection(
    stream: TcpStream,
    peer: String,
    shared: &Shared,
    mut stop: watch::Receiver<bool>,
) {
    let laddr = stream
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let (mut rd, wr) = stream.into_split();
    let id = shared.next_client_id();
    let registered_peer = peer.clone();
    let mut conn = Conn {
        shared,
        sess: Session {
            id,
            name: None,
            lib_name: None,
            lib_ver: None,
            protocol: Protocol::Resp2,
            authenticated: shared.acl.default_is_open(),
            user: shared.acl.session_user(b"default"),
            peer,
            since: Instant::now(),
            tx: Default::default(),
            db: crate::keyspace::Db::ZERO,
            pubsub: None,
            reply_mode: cmd::ReplyMode::On,
            tracking: Default::default(),
        },
        wr,
        // Allocated by the first reply: a connection that never gets one costs nothing here.
        out: BytesMut::new(),
        ops: Vec::new(),
        items: Vec::new(),
        samples: Vec::new(),
        clock: crate::timing::Stopwatch::new(),
        waves: crate::timing::Waves::default(),
        blocked: None,
        last_cmd: None,
        slow_args: None,
    };
    // Declared after `conn`, so dropped before it: the connection leaves `CLIENT LIST` (and
    // `CLIENT KILL`'s reach) before its socket closes, never after a client saw it closed.
    let registration = shared.client_table.register(id, registered_peer, laddr);
    let me = std::sync::Arc::clone(&registration.info);
    let mut parser = RequestParser::new(shared.cfg.limits);
    let mut inbuf = BytesMut::with_capacity(INBUF_BYTES);
    // When the last bytes arrived (the start of idleness).
    let mut last_read = conn.clock.mark();
    let mut timer = std::pin::pin!(tokio::time::sleep(conn.check_interval().min(QBUF_IDLE)));
    conn.publish(&me, &inbuf);
    loop {
        // Killed by `CLIENT KILL` (its own, too: `SKIPME no`): closed before anything more
        // is read, whatever `select!` below would pick first.
        if me.is_killed() {
            return;
        }
        // A buffer released while idle (capacity 0) is grown by the read itself.
        if inbuf.capacity() > 0 && inbuf.capacity() - inbuf.len() < 4096 {
            inbuf.reserve(INBUF_BYTES);
        }
        let room = inbuf.capacity() - inbuf.len();
        let n = tokio::select! {
            r = rd.read_buf(&mut inbuf) => match r {
                Ok(n) => n,
                Err(_) => return,
            },
            _ = stop.changed() => return,
            () = me.kill.notified() => return,
            m = next_message(&mut conn.sess.pubsub) => {
                if conn.deliver(m).await.is_err() {
                    return;
                }
                continue;
            }
            () = timer.as_mut() => {
                let now = Instant::now();
                // As Redis's clientsCron: the receive buffer of a client idle this long is
                // given back entirely.
                let release_at = last_read + QBUF_IDLE;
                if inbuf.is_empty() && inbuf.capacity() > 0 && release_at <= now {
                    inbuf = BytesMut::new();
                    me.publish_qbuf(0, 0);
                }
                let partial = parser.has_partial(&inbuf);
                match conn.deadline(partial, last_read) {
                    Some((at, why)) if at <= now => {
                        tracing::info!(peer = %conn.sess.peer, "{why}; closing");
                        return;
                    }
                    next => {
                        let mut check = now + conn.check_interval();
                        if inbuf.capacity() > 0 {
                            check = check.min(release_at.max(now + Duration::from_millis(10)));
                        }
                        let at = next.map_or(check, |(at, _)| at.min(check));
                        timer.as_mut().reset(at.into());
                        continue;
                    }
                }
            }
        };
        if n == 0 {
            return;
        }
        if n == room {
            gather(&rd, &mut inbuf);
        }
        // The last batch held a large request: give its buffer back now that more input
        // came (kept until then, so that `CLIENT LIST` shows what the batch held).
        if inbuf.len() == n && inbuf.capacity() > INBUF_KEEP_BYTES && n < INBUF_BYTES {
            let mut fresh = BytesMut::with_capacity(INBUF_BYTES);
            fresh.extend_from_slice(&inbuf);
            inbuf = fresh;
        }
        parser.set_query_buffer_limit(shared.settings.query_buffer_limit());
        let mut end = conn.process(&mut parser, &mut inbuf).await;
        while end == End::No {
            let Some(parked) = conn.blocked.take() else {
                break;
            };
            let b = &parked.blocked;
            conn.publish(&me, &inbuf);
            if conn.write_out().await.is_err() {
                return;
            }
            let mut guard = shared.blocked.register(conn.sess.id);
            let router = crate::db::DbRouter::new(&shared.router, conn.sess.db);
            let mut exec = crate::blocking::Executed::default();
            let reply = tokio::select! {
                r = crate::blocking::run(&router, b, &mut exec) => r,
                m = &mut guard.unblocked => match m {
                    Ok(crate::unblock::Mode::Error) => {
                        Reply::Error("UNBLOCKED client unblocked via CLIENT UNBLOCK".into())
                    }
                    _ => b.timeout_reply.clone(),
                },
                () = closed(&mut rd, &mut inbuf) => return,
                _ = stop.changed() => return,
            };
            drop(guard);
            // Timed as Redis times it: its attempts, not the time it was blocked; one that
            // timed out is not logged (Redis 7.0 logs a blocked command when it is served or
            // `CLIENT UNBLOCK`ed, `updateStatsOnUnblock`).
            conn.items.push(Item {
                name: parked.name,
                proto: conn.sess.protocol,
                silent: parked.silent,
                took: parked.took + exec.time(),
                what: ItemKind::Ready(reply),
                effects: parked.effects,
                args: parked.args.filter(|_| !exec.timed_out()),
            });
            end = conn.process(&mut parser, &mut inbuf).await;
        }
        last_read = conn.clock.mark();
        if end == End::Now {
            return;
        }
        // Parsed bytes were split off the front: take that room back (no allocation), so
        // the buffer is whole again for the next input and for `CLIENT LIST`. Also when the
        // requests filled the buffer to the last byte (its view then has no capacity left):
        // a large request's buffer stays visible until the next input shrinks it, as Redis
        // shows its query buffer's peak (`unit/querybuf` saw qbuf-free 0 right after a
        // 400 KB SET, depending on how the request arrived).
        if inbuf.is_empty() {
            inbuf.reserve(INBUF_BYTES);
        }
        // Published before the replies go out: a client that saw its `CLIENT SETNAME` or
        // `SUBSCRIBE` answered finds it in every other client's `CLIENT LIST`.
        conn.publish(&me, &inbuf);
        if conn.write_out().await.is_err() || end == End::AfterWrite {
            let _ = conn.wr.shutdown().await;
            return;
        }
        me.publish_obl(0);
    }
}

/// The next pub/sub message of a subscribed connection (never, for any other); `None` when
/// its mailbox overflowed.
async fn next_message(
    sub: &mut Option<crate::pubsub::Subscriber>,
) -> Option<crate::pubsub::Message> {
    match sub {
        Some(s) => s.next().await,
        None => std::future::pending().await,
    }
}

/// After a read that filled the buffer: takes what the socket holds already, without
/// waiting, up to [`GATHER_BYTES`] in all. A pipeline of large requests then goes to the
/// shards as one batch instead of one buffer's worth (three 4 KiB `SET`s) per round trip.
/// An end of input or an error is left for the next read to see.
fn gather(rd: &tokio::net::tcp::OwnedReadHalf, inbuf: &mut BytesMut) {
    while inbuf.len() < GATHER_BYTES {
        if inbuf.capacity() - inbuf.len() < 4096 {
            inbuf.reserve(INBUF_BYTES);
        }
        match rd.try_read_buf(inbuf) {
            Ok(n) if n > 0 => {}
            _ => return,
        }
    }
}

/// Completes when the client closes its connection (what it sends meanwhile is kept in
/// `inbuf` for later).
async fn closed(rd: &mut tokio::net::tcp::OwnedReadHalf, inbuf: &mut BytesMut) {
    loop {
        if inbuf.capacity() - inbuf.len() < 4096 {
            inbuf.reserve(INBUF_BYTES);
        }
        match rd.read_buf(inbuf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

impl Conn<'_> {
    /// The earliest time this connection is to be closed at, and why: not authenticated in
    /// time, a partial request idle too long, or idle past `timeout`.
    fn deadline(&self, partial: bool, last_read: Instant) -> Option<(Instant, &'static str)> {
        let cfg = &self.shared.cfg;
        let candidates = [
            (
                !self.sess.authenticated,
                cfg.auth_timeout,
                self.sess.since,
                "not authenticated in time",
            ),
            (
                partial,
                cfg.partial_request_timeout,
                last_read,
                "partial request idle too long",
            ),
            (
                true,
                self.shared.settings.idle_timeout(),
                last_read,
                "idle client timeout",
            ),
        ];
        candidates
            .into_iter()
            .filter(|&(applies, after, _, _)| applies && !after.is_zero())
            .map(|(_, after, from, why)| (from + after, why))
            .min_by_key(|&(at, _)| at)
    }

    /// How often the connection's timer looks at its deadlines: the shortest timeout
    /// configured, at most [`TIMER_CHECK_MAX`].
    fn check_interval(&self) -> Duration {
        let cfg = &self.shared.cfg;
        [
            cfg.auth_timeout,
            cfg.partial_request_timeout,
            self.shared.settings.idle_timeout(),
        ]
        .into_iter()
        .filter(|d| !d.is_zero())
        .fold(TIMER_CHECK_MAX, Duration::min)
    }

    /// Runs every whole command in `inbuf`.
    async fn process(&mut self, parser: &mut RequestParser, inbuf: &mut BytesMut) -> End {
        self.clock.restart();
        loop {
            if self.items.len() >= self.shared.cfg.max_pipeline {
                let end = self.flush().await;
                if end != End::No {
                    return end;
                }
            }
            let args = match parser.next(inbuf, self.sess.authenticated) {
                Ok(Some(args)) => args,
                Ok(None) => break,
                Err(ParseError::QueryBufferLimit) => {
                    // As Redis: the replies before it go out, then the connection is closed
                    // without one for it.
                    tracing::warn!(peer = %self.sess.peer, "closing client that reached max query buffer length");
                    let end = self.flush().await;
                    return if end == End::Now {
                        end
                    } else {
                        End::AfterWrite
                    };
                }
                Err(e) => {
                    self.shared.metrics.record_error("ERR");
                    let took = Duration::ZERO;
                    self.push_ready(None, false, took, Reply::err(e), Effects::default());
                    let end = self.flush().await;
                    return if end == End::Now {
                        end
                    } else {
                        End::AfterWrite
                    };
                }
            };
            // Cross-protocol scripting (an HTTP request sent to Redis): close at once.
            if args[0].eq_ignore_ascii_case(b"post") || args[0].eq_ignore_ascii_case(b"host:") {
                tracing::warn!(peer = %self.sess.peer, "possible SECURITY ATTACK: HTTP request on the Redis port; closing");
                let end = self.flush().await;
                return if end == End::Now {
                    end
                } else {
                    End::AfterWrite
                };
            }
            // `CLIENT PAUSE`: earlier replies go out, then the command waits its turn.
            if self.shared.pause.current().is_some()
                && let Some(held) = cmd::pause::held_by(self.shared, &self.sess, &args)
            {
                let end = self.wait_for_unpause(held).await;
                if end != End::No {
                    return end;
                }
            }
            let flags = self.shared.settings.notify_flags();
            let effects = Effects {
                notice: crate::notify::capture(flags, self.sess.db, &args),
                track: crate::tracking::capture(self.shared, &self.sess, &args),
            };
            // Not a command queued in `MULTI` (nor `EXEC`): Redis logs what runs, not what
            // is queued.
            let log_it = self.shared.slowlog.enabled() && !self.sess.tx.active();
            let (name, action) = cmd::dispatch(self.shared, &mut self.sess, &args);
            // Its parse and dispatch: since the previous command's (or the input's) read.
            let took = self.clock.lap();
            let command = name;
            let name = name.map(|n| cmd::util::stat_name(n, &args));
            // Kept (not copied) until the reply, then dropped as it would have been.
            self.slow_args = log_it.then_some(args);
            let silent = self.sess.reply_mode.next_silent();
            self.last_cmd = name.or(self.last_cmd);
            if name.is_none() {
                self.shared.metrics.record_error("ERR");
            }
            // One atomic load when no script runs (`-BUSY`, `docs/scripting.md`).
            let busy = if script::running::any() {
                self.busy(&action)
            } else {
                None
            };
            match action {
                Action::Reply(r) => self.push_ready(name, silent, took, r, effects),
                Action::Data { .. } if busy.is_some() => {
                    // Refused: nothing ran, so no keyspace notification either.
                    let reply = busy.map_or(Reply::OK, cmd::scripting::busy_error);
                    self.push_ready(name, silent, took, reply, Effects::default());
                }
                Action::Data { ops, finish } => {
                    let first = self.ops.len();
                    let len = ops.len();
                    self.ops.extend(ops);
                    self.items.push(Item {
                        name,
                        proto: self.sess.protocol,
                        silent,
                        took,
                        what: ItemKind::Data { first, len, finish },
                        effects,
                        args: self.slow_args.take(),
                    });
                }
                Action::Block(b) if b.block => {
                    // Run by `connection` while it watches the socket (a client that goes
                    // away while blocked is dropped); the rest of the input waits.
                    let end = self.flush().await;
                    self.blocked = Some(Parked {
                        name,
                        took,
                        silent,
                        blocked: b,
                        effects,
                        args: self.slow_args.take(),
                    });
                    return end;
                }
                rounds @ (Action::Async(_) | Action::Block(_)) => {
                    let end = self.flush().await;
                    if end != End::No {
                        return end;
                    }
                    // Timed from the end of the batch before it (`flush` read the clock).
                    let reply = crate::exec::alone(self.shared, rounds, self.sess.db).await;
                    self.items.push(Item {
                        name,
                        proto: self.sess.protocol,
                        silent,
                        took: took + self.clock.lap(),
                        what: ItemKind::Ready(reply),
                        effects,
                        args: self.slow_args.take(),
                    });
                }
                Action::Tx(t) => {
                    let end = self.flush().await;
                    if end != End::No {
                        return end;
                    }
                    let reply = crate::exec::run(self.shared, &mut self.sess, t).await;
                    self.items.push(Item {
                        name,
                        proto: self.sess.protocol,
                        silent,
                        took: took + self.clock.lap(),
                        what: ItemKind::Ready(reply),
                        effects,
                        args: self.slow_args.take(),
                    });
                }
                Action::Close(r) => {
                    self.push_ready(name, silent, took, r, Effects::default());
                    let end = self.flush().await;
                    return if end == End::Now {
                        end
                    } else {
                        End::AfterWrite
                    };
                }
            }
            let in_multi = self.sess.tx.active();
            self.sess.tracking.after_command(command, in_multi);
        }
        self.flush().await
    }

    /// The kind of script that keeps a range of `action`'s keys busy (`-BUSY`): one running
    /// longer than `busy-reply-threshold` (`docs/scripting.md`, "Long scripts").
    fn busy(&self, action: &Action) -> Option<script::running::Kind> {
        let Action::Data { ops, .. } = action else {
            return None;
        };
        let threshold = self.shared.settings.busy_reply_threshold();
        ops.iter().find_map(|(key, _)| {
            let range = self.shared.router.cached_range_id(key)?;
            script::running::busy(range, threshold)
        })
    }

    /// Publishes this connection's state for `CLIENT LIST` (once per batch).
    fn publish(&self, me: &crate::clients::ClientInfo, inbuf: &BytesMut) {
        let sess = &self.sess;
        let subs = sess.pubsub.as_ref().map_or([0; 3], |s| {
            [
                crate::pubsub::Kind::Channel,
                crate::pubsub::Kind::Pattern,
                crate::pubsub::Kind::Shard,
            ]
            .map(|k| s.names_len(k))
        });
        me.publish(crate::clients::State {
            db: sess.db.get(),
            resp: if sess.protocol == Protocol::Resp3 {
                3
            } else {
                2
            },
            qbuf: inbuf.len(),
            qbuf_free: inbuf.capacity() - inbuf.len(),
            obl: self.out.len(),
            subs,
            multi: sess
                .tx
                .queued_len()
                .map_or(-1, |n| i64::try_from(n).unwrap_or(i64::MAX)),
        });
        let mut names = me.names();
        if names.name != sess.name {
            names.name.clone_from(&sess.name);
        }
        if names.lib_name != sess.lib_name || names.lib_ver != sess.lib_ver {
            names.lib_name.clone_from(&sess.lib_name);
            names.lib_ver.clone_from(&sess.lib_ver);
        }
        if let Some(c) = self.last_cmd
            && names.cmd != c
        {
            names.cmd.clear();
            names.cmd.push_str(c);
        }
    }

    /// Writes pub/sub message `first` and whatever else is queued (up to a batch's worth);
    /// an error closes the connection (a write failed or the mailbox overflowed).
    async fn deliver(&mut self, first: Option<crate::pubsub::Message>) -> std::io::Result<()> {
        let overflow = || std::io::Error::other("pub/sub mailbox overflowed");
        let mut next = first;
        for _ in 0..self.shared.cfg.max_pipeline {
            let Some(m) = next else {
                tracing::info!(peer = %self.sess.peer, "pub/sub client output buffer limit reached; closing");
                return Err(overflow());
            };
            let subscribed = self.sess.pubsub.as_ref().is_some_and(|s| s.active());
            if let Some(frame) = m.frame(self.sess.protocol, subscribed) {
                frame.encode(self.sess.protocol, &mut self.out);
            }
            let Some(sub) = self.sess.pubsub.as_mut() else {
                break;
            };
            if sub.overflowed() {
                next = None;
                continue;
            }
            match sub.try_next() {
                Some(m) => next = Some(m),
                None => break,
            }
        }
        self.write_out().await
    }

    fn push_ready(
        &mut self,
        name: Option<&'static str>,
        silent: bool,
        took: Duration,
        r: Reply,
        effects: Effects,
    ) {
        self.items.push(Item {
            name,
            proto: self.sess.protocol,
            silent,
            took,
            what: ItemKind::Ready(r),
            effects,
            args: self.slow_args.take(),
        });
    }

    /// Executes the batch's operations and encodes every reply in order.
    async fn flush(&mut self) -> End {
        if self.items.is_empty() {
            return End::No;
        }
        let ops = std::mem::take(&mut self.ops);
        let mut results: Vec<Option<Result<OpResult, ExecError>>> = Vec::with_capacity(ops.len());
        // Each wave starts where the last command's dispatch ended (or the wave before).
        self.waves.clear();
        let mut from = self.clock.mark();
        for wave in waves(ops) {
            let out = self.shared.router.exec(wave).await;
            results.extend(out.into_iter().map(Some));
            let to = Instant::now();
            self.waves.push(results.len(), from, to);
            from = to;
        }
        let items = std::mem::take(&mut self.items);
        for item in items {
            let mut took = item.took;
            let reply = match item.what {
                ItemKind::Ready(r) => r,
                ItemKind::Data { first, len, finish } => {
                    took += self.waves.round_trip(first, len);
                    let res = results[first..first + len]
                        .iter_mut()
                        .map(|r| {
                            r.take()
                                .unwrap_or(Err(ExecError::Unavailable("no result".into())))
                        })
                        .collect();
                    finish(res)
                }
            };
            if let Some(t) = &item.effects.track {
                crate::tracking::apply(self.shared, self.sess.id, t, &reply);
            }
            if let Some(n) = &item.effects.notice {
                let shared = self.shared;
                let fanout = |ch: &Bytes, payload: &Bytes| {
                    crate::cmd::pubsub_cluster::forward(shared, ch, payload);
                };
                crate::notify::emit(&shared.pubsub, fanout, n, &reply);
            }
            // A command queued in `MULTI` is counted when `EXEC` runs it (`exec::record_each`),
            // as Redis counts calls.
            let queued = matches!(reply, Reply::Simple("QUEUED"));
            if let Some(name) = item.name.filter(|_| !queued) {
                let error = match &reply {
                    Reply::Error(e) => Some(error_class(e)),
                    _ => None,
                };
                let usec = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
                self.samples.push(Sample { name, usec, error });
                self.shared
                    .latency
                    .command(usec, || cmd::table::is_fast(name));
                if let Some(args) = &item.args
                    && name != "exec"
                {
                    let client = crate::slowlog::Client {
                        peer: &self.sess.peer,
                        name: self.sess.name.as_deref().unwrap_or_default(),
                    };
                    self.shared.slowlog.record(usec, args, client);
                }
            }
            if item.silent && !reply.is_push() {
                continue;
            }
            let before = self.out.len();
            reply.encode(item.proto, &mut self.out);
            if self.out.len() >= 64 * 1024 && self.try_write().is_err() {
                self.record();
                return End::Now;
            }
            // What the socket did not take is the output buffer; one reply alone may exceed
            // the limit (as a big GET must work), an accumulation may not.
            if before > 0 && self.out.len() > self.shared.cfg.max_output_bytes {
                tracing::info!(peer = %self.sess.peer, "output buffer limit reached; closing");
                self.record();
                return End::Now;
            }
        }
        crate::tracking::broadcast(self.shared);
        self.record();
        // Building and encoding the replies is no later command's time.
        self.clock.restart();
        End::No
    }

    fn record(&mut self) {
        self.shared.metrics.record(&self.samples);
        self.samples.clear();
    }

    /// Runs and answers the batch so far, then waits while a pause holding `held` commands
    /// is on; the next command's time starts after.
    async fn wait_for_unpause(&mut self, held: crate::pause::Mode) -> End {
        let end = self.flush().await;
        if end != End::No {
            return end;
        }
        if self.write_out().await.is_err() {
            return End::Now;
        }
        self.shared.pause.wait_while(|mode| mode >= held).await;
        self.clock.restart();
        End::No
    }

    /// Writes what the socket takes without waiting.
    fn try_write(&mut self) -> std::io::Result<()> {
        while !self.out.is_empty() {
            match self.wr.try_write(&self.out) {
                Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    let _ = self.out.split_to(n);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Writes the pending output; a write with no progress for `output_stall` fails.
    async fn write_out(&mut self) -> std::io::Result<()> {
        while !self.out.is_empty() {
            let stall = self.shared.cfg.output_stall;
            match tokio::time::timeout(stall, self.wr.write(&self.out)).await {
                Ok(Ok(0)) => return Err(std::io::ErrorKind::WriteZero.into()),
                Ok(Ok(n)) => {
                    let _ = self.out.split_to(n);
                }
                Ok(Err(e)) => return Err(e),
                Err(_) => {
                    tracing::info!(peer = %self.sess.peer, "client does not read its replies; closing");
                    return Err(std::io::ErrorKind::TimedOut.into());
                }
            }
        }
        self.out.clear();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(key: &str, write: bool) -> (Bytes, KvOp) {
        let key = Bytes::copy_from_slice(key.as_bytes());
        let op = if write {
            KvOp::KeyDel { key: key.clone() }
        } else {
            KvOp::StrGet { key: key.clone() }
        };
        (key, op)
    }

    #[test]
    fn a_write_and_a_later_access_to_its_key_go_in_separate_waves() {
        let w = waves(vec![
            op("a", true),
            op("b", false),
            op("b", false),
            op("a", false),
        ]);
        assert_eq!(w.iter().map(Vec::len).collect::<Vec<_>>(), vec![3, 1]);
        let w = waves(vec![
            op("a", false),
            op("a", false),
            op("a", true),
            op("c", true),
        ]);
        assert_eq!(w.iter().map(Vec::len).collect::<Vec<_>>(), vec![2, 2]);
        assert!(waves(vec![]).is_empty());
        let reads = waves(vec![op("a", false), op("a", false), op("b", false)]);
        assert_eq!(reads.iter().map(Vec::len).collect::<Vec<_>>(), vec![3]);
        assert_eq!(waves(vec![op("a", true)]).len(), 1);
    }

    #[test]
    fn fenced_writes_of_one_key_share_a_wave_and_a_read_still_splits_it() {
        let w = waves(vec![
            op("a", true),
            op("a", true),
            op("a", true),
            op("b", false),
            op("a", false),
            op("a", true),
        ]);
        assert_eq!(w.iter().map(Vec::len).collect::<Vec<_>>(), vec![4, 1, 1]);
    }

    #[test]
    fn a_write_the_shard_does_not_fence_still_goes_alone() {
        // FLUSHDB: a write without a deduplication key.
        let flush = (Bytes::from_static(b"a"), KvOp::DbFlush {});
        let w = waves(vec![op("a", true), flush.clone(), flush, op("a", true)]);
        assert_eq!(w.iter().map(Vec::len).collect::<Vec<_>>(), vec![1, 1, 1, 1]);
    }

    #[test]
    fn writes_routed_together_under_different_dedup_keys_are_split() {
        let mut w1 = op("a", true);
        w1.1 = KvOp::KeyDel {
            key: Bytes::from_static(b"x"),
        };
        let w = waves(vec![op("a", true), w1]);
        assert_eq!(w.len(), 2);
    }

    #[test]
    fn reads_of_one_key_still_share_a_wave() {
        let reads = waves(vec![op("a", false), op("a", false), op("b", false)]);
        assert_eq!(reads.iter().map(Vec::len).collect::<Vec<_>>(), vec![3]);
        assert_eq!(waves(vec![op("a", true)]).len(), 1);
    }
}
