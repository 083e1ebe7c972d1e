//! The commands a connection runs alone at its place in the pipeline with its session and
//! the router ([`TxCmd`]): EXEC, WATCH, FLUSHALL / FLUSHDB, MSETNX and the FUNCTION commands.
//! `cmd::tx` parses them and keeps the transaction state; this module runs them, and the
//! multi-round commands too ([`alone`]).
//!
//! `MULTI` queues commands in the session (`+QUEUED`); an unknown command or a wrong arity
//! while queuing makes `EXEC` answer `EXECABORT`, as Redis does. `EXEC` translates the queued
//! commands and sends their operations as one [`KvOp::Multi`] — one Raft entry of one range,
//! atomic and isolated — and builds each command's reply from its operations' results, so a
//! runtime error (WRONGTYPE) is an element of the array and does not stop the others. When
//! the keys fall in more than one range `EXEC` answers `CROSSSLOT` and applies nothing (keys
//! sharing a `{hash tag}` share a slot, hence a range). Commands without keys (PING, ECHO) are
//! answered in place. Multi-round commands (SCAN, KEYS, DBSIZE) and FLUSHALL inside a
//! transaction run at their place, between atomic segments of the others (not isolated).
//!
//! `MSETNX` is a `Multi` of its sets that watches every key as absent: all or none, atomic,
//! when its keys are in one range (`CROSSSLOT` otherwise).
//!
//! `WATCH` reads a digest of each key's state; `EXEC` carries them, and the range applies the
//! transaction only if none changed (else `EXEC` answers a null array). FLUSHALL sends a
//! [`KvOp::RangeFlush`] to every range in key order, FLUSHDB a [`KvOp::DbFlush`] in the
//! connection's database.
//!
//! Databases: each queued command's operations are built in the database current when it is
//! translated at `EXEC`, so a `SELECT` inside `MULTI` applies to the commands after it (and
//! stays selected after `EXEC`, as in Redis; not when the transaction is aborted). The
//! `Multi` runs in the database of its watches, with every operation naming its own; watches
//! of several databases in one transaction are refused with an error (nothing applied).
//!
//! Above `cmd`: EXEC translates its queued commands with [`cmd::dispatch_queued`], and runs
//! the multi-round ones among them ([`cmd::Action::Async`]) where they stand. Nothing in `cmd`
//! imports this module.

use std::time::{Duration, Instant};

use bytes::Bytes;
use net::message::kv::{KvOp, KvResponse, OpResult, Watch};

use crate::cmd::util::{arity, exec_error, unexpected};
use crate::cmd::{self, Action, Finish, Session, TxCmd, keyed};
use crate::db::DbRouter;
use crate::keyspace::{Db, meta_key};
use crate::resp::Reply;
use crate::route::{ExecError, Router};
use crate::shared::Shared;

/// Runs a command that needs the session and the router (in the session's database).
pub async fn run(shared: &Shared, sess: &mut Session, cmd: TxCmd) -> Reply {
    let router = DbRouter::new(&shared.router, sess.db);
    match cmd {
        TxCmd::Exec => exec(shared, sess).await,
        TxCmd::Watch(keys) => watch(&router, sess, keys).await,
        TxCmd::Flush { all } => flush(&router, all).await,
        TxCmd::MsetNx(pairs) => msetnx(&router, pairs).await,
        TxCmd::Function(f) => cmd::functions::run(shared, &router, f).await,
    }
}

/// `MSETNX`: one `Multi` of the sets, watching every key as absent (digest 0), so the range
/// sets all of them or none, atomically. Keys in several ranges: `CROSSSLOT`.
async fn msetnx(router: &DbRouter<'_>, pairs: Vec<(Bytes, Bytes)>) -> Reply {
    let Some(first) = pairs.first().map(|(k, _)| meta_key(Db::ZERO, k)) else {
        return arity("msetnx");
    };
    let keys: Vec<Bytes> = pairs
        .iter()
        .map(|(k, _)| meta_key(router.db(), k))
        .collect();
    if let Err(r) = one_range(router.raw(), &keys).await {
        return r;
    }
    let watches = pairs
        .iter()
        .map(|(k, _)| Watch {
            key: k.clone(),
            digest: 0,
        })
        .collect();
    let ops = pairs
        .into_iter()
        .map(|(key, value)| KvOp::StrSet {
            key,
            value,
            expiry: net::message::kv::Expiry::Persist {},
            cond: net::message::kv::Cond::Always {},
            get_old: false,
        })
        .collect();
    match router
        .exec(vec![(first, KvOp::Multi { watches, ops })])
        .await
        .pop()
    {
        Some(Ok(OpResult::Multi { results })) => {
            match results.into_iter().find_map(|r| match r {
                KvResponse::Err { error } => Some(error),
                KvResponse::Ok { .. } => None,
            }) {
                Some(e) => cmd::util::rpc_error(&e),
                None => Reply::Int(1),
            }
        }
        Some(Ok(OpResult::Aborted {})) => Reply::Int(0),
        Some(Ok(other)) => unexpected(&other),
        Some(Err(e)) => cross_range_or(&e),
        None => Reply::err("internal error: no result"),
    }
}

/// The reply to a failed `Multi`: the range's `CROSSSLOT` text as is, others as usual.
fn cross_range_or(e: &ExecError) -> Reply {
    match e {
        ExecError::Rpc(net::RpcError::BadRequest { message })
            if message.starts_with("CROSSSLOT") =>
        {
            Reply::Error(message.clone())
        }
        other => exec_error(other),
    }
}

async fn watch(router: &DbRouter<'_>, sess: &mut Session, keys: Vec<Bytes>) -> Reply {
    let db = router.db();
    let keys: Vec<Bytes> = keys
        .into_iter()
        .filter(|k| !sess.tx.watches(db, k))
        .collect();
    let ops = keys
        .iter()
        .map(|k| keyed(k, KvOp::KeyDigest { key: k.clone() }))
        .collect();
    let results = router.exec(ops).await;
    let mut watched = Vec::with_capacity(keys.len());
    for (key, r) in keys.into_iter().zip(results) {
        match r {
            Ok(OpResult::Digest { digest }) => watched.push((db, Watch { key, digest })),
            Ok(other) => return unexpected(&other),
            Err(e) => return exec_error(&e),
        }
    }
    sess.tx.watch(watched);
    Reply::OK
}

/// Deletes every key (`all`) or every key of the connection's database: a `RangeFlush` (a
/// `DbFlush`) on each range, walking them in key order (a range that split meanwhile is
/// followed by its new end).
async fn flush(router: &DbRouter<'_>, all: bool) -> Reply {
    let op = if all {
        KvOp::RangeFlush {}
    } else {
        KvOp::DbFlush {}.into_db(router.db())
    };
    let router = router.raw();
    let mut pos = Bytes::new();
    loop {
        let mut res = router.exec(vec![(pos.clone(), op.clone())]).await;
        match res.pop() {
            Some(Ok(_)) => {}
            Some(Err(e)) => return exec_error(&e),
            None => return Reply::err("internal error: no result"),
        }
        match router.range_of(&pos).await {
            Ok(r) if r.end.is_empty() => return Reply::OK,
            Ok(r) => pos = r.end,
            Err(e) => return exec_error(&e),
        }
    }
}

/// A data command of an atomic segment: its place in the `EXEC` array, its operations (with
/// their routing keys) and how its reply is built.
type Queued = (usize, Vec<(Bytes, KvOp)>, Finish);

/// A queued command, translated at `EXEC`.
enum Part {
    /// Answered without data (PING, ECHO, a syntax error).
    Ready(Reply),
    /// Operations in the transaction.
    Data(Vec<(Bytes, KvOp)>, Finish),
    /// Run alone at its place (SCAN, KEYS, DBSIZE, FLUSHALL...), in the database current
    /// when it was translated.
    Alone(Action, Db),
}

async fn exec(shared: &Shared, sess: &mut Session) -> Reply {
    let db_before = sess.db;
    // The keys the transaction's writes fed: their blocked clients are served after it (and
    // after its commands are logged), as Redis serves them after `EXEC`.
    let mut fed = Vec::new();
    let reply = exec_queued(shared, sess, &mut fed).await;
    if !fed.is_empty() {
        shared.router.blocking.wake_fed(fed).await;
    }
    if matches!(reply, Reply::NilArray | Reply::Error(_)) {
        // Aborted (a watched key changed, keys in several ranges): nothing ran, so neither
        // did a queued SELECT.
        sess.db = db_before;
    }
    reply
}

async fn exec_queued(shared: &Shared, sess: &mut Session, fed: &mut Vec<(Db, Bytes)>) -> Reply {
    let (queued, watched) = std::mem::take(&mut sess.tx).into_parts();
    let mut parts = Vec::with_capacity(queued.len());
    let flags = shared.settings.notify_flags();
    let mut notices = Vec::with_capacity(queued.len());
    let mut tracks = Vec::with_capacity(queued.len());
    let tracking = sess.tracking.remembers() || shared.tracker.active(crate::shared::now_ms());
    // Each command's stat name and its own time: its translation, then the round trip of
    // the atomic segment it ran in (or its own run, alone).
    let mut names = Vec::with_capacity(queued.len());
    let mut took = Vec::with_capacity(queued.len());
    for args in &queued {
        let started = Instant::now();
        notices.push(crate::notify::capture(flags, sess.db, args));
        tracks.push(if tracking {
            crate::tracking::capture_queued(shared, sess, args)
        } else {
            None
        });
        let (name, action) = cmd::dispatch_queued(shared, sess, args);
        names.push(name.map(|n| cmd::util::stat_name(n, args)));
        took.push(started.elapsed());
        parts.push(match action {
            Action::Reply(r) | Action::Close(r) => Part::Ready(r),
            Action::Data { ops, finish } => Part::Data(ops, finish),
            other => Part::Alone(other, sess.db),
        });
    }
    // One range for the whole transaction, checked before anything runs: a later segment
    // refused after an earlier one applied would be a partial EXEC.
    let keys: Vec<Bytes> = parts
        .iter()
        .filter_map(|p| match p {
            Part::Data(ops, _) => Some(ops.iter().map(|(k, _)| k.clone())),
            _ => None,
        })
        .flatten()
        .chain(watched.iter().map(|(db, w)| meta_key(*db, &w.key)))
        .collect();
    if let Err(r) = one_range(&shared.router, &keys).await {
        return r;
    }
    let mut replies: Vec<Option<Reply>> = Vec::with_capacity(parts.len());
    let mut segment: Vec<Queued> = Vec::new();
    let mut watches = Some(watched);
    for part in parts {
        let at = replies.len();
        replies.push(None);
        match part {
            Part::Ready(r) => replies[at] = Some(r),
            Part::Data(ops, finish) => segment.push((at, ops, finish)),
            Part::Alone(action, db) => {
                let w = watches.take().unwrap_or_default();
                let segment = std::mem::take(&mut segment);
                let times = (&mut took[..], &mut *fed);
                if let Err(r) = timed_atomic(&shared.router, w, segment, &mut replies, times).await
                {
                    return r;
                }
                let started = Instant::now();
                replies[at] = Some(alone(shared, action, db).await);
                took[at] += started.elapsed();
            }
        }
    }
    let w = watches.take().unwrap_or_default();
    let times = (&mut took[..], &mut *fed);
    if let Err(r) = timed_atomic(&shared.router, w, segment, &mut replies, times).await {
        return r;
    }
    let replies: Vec<Reply> = replies
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Reply::err("internal error: no reply")))
        .collect();
    record_each(shared, sess, &queued, &names, &took, &replies);
    for (track, reply) in tracks.iter().zip(&replies) {
        if let Some(t) = track {
            crate::tracking::apply(shared, sess.id, t, reply);
        }
    }
    for (notice, reply) in notices.iter().zip(&replies) {
        if let Some(n) = notice {
            let fanout = |ch: &Bytes, payload: &Bytes| {
                crate::cmd::pubsub_cluster::forward(shared, ch, payload);
            };
            crate::notify::emit(&shared.pubsub, fanout, n, reply);
        }
    }
    Reply::Array(replies)
}

/// [`atomic`], adding the segment's round trip to the time of each of its commands (`took`)
/// and the keys its writes fed to `fed`.
async fn timed_atomic(
    router: &Router,
    watches: Vec<(Db, Watch)>,
    segment: Vec<Queued>,
    replies: &mut [Option<Reply>],
    (took, fed): (&mut [Duration], &mut Vec<(Db, Bytes)>),
) -> Result<(), Reply> {
    let ats: Vec<usize> = segment.iter().map(|(at, _, _)| *at).collect();
    let started = Instant::now();
    let done = atomic(router, watches, segment, replies, fed).await;
    let round_trip = started.elapsed();
    for at in ats {
        took[at] += round_trip;
    }
    done
}

/// Records each command `EXEC` ran as Redis's `call()` does: in `INFO commandstats` and
/// errorstats, the latency histograms and monitor, and SLOWLOG (where `EXEC` itself is not
/// logged: `server::Conn::flush`). A command's time is its translation plus the round trip of
/// the atomic segment that carried it, or its own run when it ran alone.
fn record_each(
    shared: &Shared,
    sess: &Session,
    queued: &[Vec<Bytes>],
    names: &[Option<&'static str>],
    took: &[Duration],
    replies: &[Reply],
) {
    let client = crate::slowlog::Client {
        peer: &sess.peer,
        name: sess.name.as_deref().unwrap_or_default(),
    };
    let mut samples = Vec::with_capacity(queued.len());
    for (((args, name), took), reply) in queued.iter().zip(names).zip(took).zip(replies) {
        let Some(name) = *name else {
            continue;
        };
        let usec = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        let error = match reply {
            Reply::Error(e) => Some(crate::metrics::error_class(e)),
            _ => None,
        };
        samples.push(crate::metrics::Sample { name, usec, error });
        shared.latency.command(usec, || cmd::table::is_fast(name));
        if shared.slowlog.enabled() {
            shared.slowlog.record(usec, args, client);
        }
    }
    shared.metrics.record(&samples);
}

/// Runs a command alone at its place, in database `db`: a multi-round or blocking command (in
/// its non-blocking form), or one that needs the router (in `EXEC`: no WATCH or EXEC).
pub async fn alone(shared: &Shared, action: Action, db: Db) -> Reply {
    let router = DbRouter::new(&shared.router, db);
    match action {
        Action::Async(a) => a.run(&router).await,
        Action::Block(b) => crate::blocking::once(&router, &b).await,
        Action::Tx(TxCmd::Flush { all }) => flush(&router, all).await,
        Action::Tx(TxCmd::MsetNx(pairs)) => msetnx(&router, pairs).await,
        Action::Tx(TxCmd::Function(f)) => cmd::functions::run(shared, &router, f).await,
        Action::Tx(TxCmd::Watch(_)) => Reply::err("WATCH inside MULTI is not allowed"),
        Action::Tx(TxCmd::Exec) => Reply::err("EXEC without MULTI"),
        Action::Reply(r) | Action::Close(r) => r,
        Action::Data { .. } => Reply::err("internal error: data command run alone"),
    }
}

/// Runs one atomic segment of a transaction (and its watches) as a `Multi`, writing each
/// command's reply at its position and adding the keys its writes fed to `fed` (woken by the
/// caller); `Err` is the reply of the whole `EXEC` (aborted, keys in several ranges, the
/// range unavailable).
async fn atomic(
    router: &Router,
    watches: Vec<(Db, Watch)>,
    segment: Vec<Queued>,
    replies: &mut [Option<Reply>],
    fed: &mut Vec<(Db, Bytes)>,
) -> Result<(), Reply> {
    let mut route_keys: Vec<Bytes> = segment
        .iter()
        .flat_map(|(_, ops, _)| ops.iter().map(|(k, _)| k.clone()))
        .collect();
    route_keys.extend(watches.iter().map(|(db, w)| meta_key(*db, &w.key)));
    let Some(first) = route_keys.first().cloned() else {
        return Ok(());
    };
    let db = watches.first().map_or(Db::ZERO, |(db, _)| *db);
    if watches.iter().any(|(d, _)| *d != db) {
        return Err(Reply::err(
            "WATCH of keys in more than one database is not supported in one transaction \
             (tierkv checks a transaction's watches in one database)",
        ));
    }
    one_range(router, &route_keys).await?;
    let mut all_ops = Vec::new();
    let mut shapes = Vec::with_capacity(segment.len());
    for (at, ops, finish) in segment {
        shapes.push((at, ops.len(), finish));
        // Inside a `Multi` of database `db`, an operation of database 0 names it.
        all_ops.extend(ops.into_iter().map(|(_, op)| match op {
            KvOp::InDb { .. } => op,
            op if db == Db::ZERO => op,
            op => KvOp::InDb {
                db: Db::ZERO,
                op: Box::new(op),
            },
        }));
    }
    let n = all_ops.len();
    let op = KvOp::Multi {
        watches: watches.into_iter().map(|(_, w)| w).collect(),
        ops: all_ops,
    }
    .into_db(db);
    let sent = [(first, op)];
    let result = router.exec_unwoken(&sent).await.pop();
    if let Some(Ok(r)) = &result
        && router.blocking.anyone_waits()
    {
        fed.extend(crate::waiters::fed_by(std::iter::once((&sent[0].1, r))));
    }
    let mut results = match result {
        Some(Ok(OpResult::Multi { results })) if results.len() == n => results.into_iter(),
        Some(Ok(OpResult::Aborted {})) => return Err(Reply::NilArray),
        Some(Ok(other)) => return Err(unexpected(&other)),
        Some(Err(e)) => return Err(cross_range_or(&e)),
        None => return Err(Reply::err("internal error: no result")),
    };
    for (at, len, finish) in shapes {
        let res = results
            .by_ref()
            .take(len)
            .map(|r| match r {
                KvResponse::Ok { result } => Ok(result),
                KvResponse::Err { error } => Err(ExecError::Rpc(error)),
            })
            .collect();
        replies[at] = Some(finish(res));
    }
    Ok(())
}

/// `CROSSSLOT` unless every key routes to the same range of the cached table.
async fn one_range(router: &Router, keys: &[Bytes]) -> Result<(), Reply> {
    let mut id = None;
    for k in keys {
        let r = router.range_of(k).await.map_err(|e| exec_error(&e))?;
        if *id.get_or_insert(r.id) != r.id {
            return Err(Reply::Error(cross_range()));
        }
    }
    Ok(())
}

/// The text of the error for a transaction whose keys span ranges (as the ranges word it).
fn cross_range() -> String {
    "CROSSSLOT Keys in request don't hash to the same range (keep a transaction's keys in one \
     range with a {hash tag})"
        .into()
}
