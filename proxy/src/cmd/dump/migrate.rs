//! `MIGRATE host port key|"" destination-db timeout [COPY] [REPLACE] [AUTH password]
//! [AUTH2 username password] [KEYS key [key ...]]` (`cluster.c`): the keys' values are read
//! with `DUMP`'s read ([`super::dump`]), sent to the target — any Redis-protocol server:
//! redis-server, another tierkv — as `RESTORE key ttl payload [REPLACE]` in one pipeline,
//! and, unless `COPY`, the keys the target accepted are deleted here.
//!
//! Connections to targets are cached per `host:port` ([`Sockets`]) and closed after
//! [`crate::sockets::IDLE`] unused, as Redis's `migrate_cached_sockets`; a cached connection that fails
//! before anything was sent is replaced once. Errors are Redis's: `IOERR` for a connection
//! that fails or times out, `ERR Target instance replied with error: …` for a refusal,
//! `+NOKEY` when no key exists. The read and the delete are two steps (Redis's MIGRATE is
//! atomic because its server is single-threaded): a key written between them is not
//! deleted — the delete watches the digest read with the value — so the newer write stays
//! here and the target holds the value as read.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use net::message::kv::{KvOp, KvResponse, OpResult, TtlState, Watch};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use super::super::action::{Action, AsyncCommand, keyed};
use super::super::util::{exec_error, is, syntax};
use super::read;
use crate::db::DbRouter;
use crate::resp::Reply;
use crate::sockets::{Cached, Sockets};

/// A parsed `MIGRATE`.
#[derive(Debug)]
pub struct Migrate {
    target: String,
    keys: Vec<Bytes>,
    db: i64,
    timeout: Duration,
    copy: bool,
    replace: bool,
    /// `AUTH`/`AUTH2` arguments sent first (`[user,] password`).
    auth: Option<Vec<Bytes>>,
    sockets: Arc<Sockets>,
}

fn not_int() -> Reply {
    Reply::err("value is not an integer or out of range")
}

/// Parses `MIGRATE` (arity checked).
pub fn dispatch(sockets: &Arc<Sockets>, args: &[Bytes]) -> Action {
    parse(sockets, args).map_or_else(Action::Reply, Action::rounds)
}

fn parse(sockets: &Arc<Sockets>, args: &[Bytes]) -> Result<Migrate, Reply> {
    let (mut copy, mut replace, mut auth, mut keys) = (false, false, None, None);
    let mut j = 6;
    while j < args.len() {
        let more = args.len() - 1 - j;
        let a = &args[j];
        if is(a, "copy") {
            copy = true;
        } else if is(a, "replace") {
            replace = true;
        } else if is(a, "auth") && more >= 1 {
            auth = Some(vec![args[j + 1].clone()]);
            j += 1;
        } else if is(a, "auth2") && more >= 2 {
            auth = Some(vec![args[j + 1].clone(), args[j + 2].clone()]);
            j += 2;
        } else if is(a, "keys") {
            if !args[3].is_empty() {
                return Err(Reply::err(
                    "When using MIGRATE KEYS option, the key argument must be set to the empty string",
                ));
            }
            keys = Some(args[j + 1..].to_vec());
            break;
        } else {
            return Err(syntax());
        }
        j += 1;
    }
    let num = |b: &Bytes| net::redis_num::parse_i64(b).ok_or_else(not_int);
    let timeout = num(&args[5])?;
    let db = num(&args[4])?;
    let timeout = Duration::from_millis(if timeout <= 0 {
        1000
    } else {
        timeout.unsigned_abs()
    });
    let host = String::from_utf8_lossy(&args[1]);
    let port = String::from_utf8_lossy(&args[2]);
    Ok(Migrate {
        target: format!("{host}:{port}"),
        keys: keys.unwrap_or_else(|| vec![args[3].clone()]),
        db,
        timeout,
        copy,
        replace,
        auth,
        sockets: sockets.clone(),
    })
}

/// A key read for migration: its name, `DUMP` payload and remaining TTL in ms (0: none).
struct Dumped {
    key: Bytes,
    payload: Bytes,
    ttl_ms: u64,
    /// The key's WATCH digest when read: the delete applies only if it is unchanged.
    digest: u64,
}

impl AsyncCommand for Migrate {
    fn run<'a>(self: Box<Self>, router: &'a DbRouter<'_>) -> BoxFuture<'a, Reply> {
        async move { self.migrate(router).await.unwrap_or_else(|r| r) }.boxed()
    }
}

impl Migrate {
    async fn migrate(&self, router: &DbRouter<'_>) -> Result<Reply, Reply> {
        let dumped = self.read(router).await?;
        if dumped.is_empty() {
            return Ok(Reply::Simple("NOKEY"));
        }
        let replies = self.send(&dumped).await?;
        if !self.copy {
            let ops = dumped
                .iter()
                .zip(&replies)
                .filter(|(_, r)| r.is_ok())
                .map(|(d, _)| keyed(&d.key, delete_unchanged(d)))
                .collect();
            for r in router.exec(ops).await {
                r.map_err(|e| exec_error(&e))?;
            }
        }
        match replies.into_iter().find_map(Result::err) {
            None => Ok(Reply::OK),
            Some(e) => Err(target_error(&e)),
        }
    }

    /// Reads every key that exists: its value (as `DUMP` encodes it) and TTL, one atomic
    /// read per key.
    async fn read(&self, router: &DbRouter<'_>) -> Result<Vec<Dumped>, Reply> {
        let ops = self
            .keys
            .iter()
            .map(|key| {
                let mut ops = read::value_ops(key);
                ops.push(KvOp::KeyTtl { key: key.clone() });
                ops.push(KvOp::KeyDigest { key: key.clone() });
                keyed(
                    key,
                    KvOp::Multi {
                        watches: Vec::new(),
                        ops,
                    },
                )
            })
            .collect();
        let now = crate::shared::now_ms();
        let mut out = Vec::new();
        for (key, r) in self.keys.iter().zip(router.exec(ops).await) {
            let OpResult::Multi { mut results } = r.map_err(|e| exec_error(&e))? else {
                return Err(Reply::err(
                    "internal error: unexpected reply to MIGRATE's read",
                ));
            };
            let digest = match results.pop() {
                Some(KvResponse::Ok {
                    result: OpResult::Digest { digest },
                }) => digest,
                _ => return Err(Reply::err("internal error: no digest in MIGRATE's read")),
            };
            let ttl = match results.pop() {
                Some(KvResponse::Ok {
                    result:
                        OpResult::Ttl {
                            ttl: TtlState::ExpiresAt { at_ms },
                        },
                }) => at_ms.saturating_sub(now).max(1),
                _ => 0,
            };
            if let Some(obj) = read::value_of(results)? {
                out.push(Dumped {
                    key: key.clone(),
                    payload: Bytes::from(crate::rdb::encode(&obj)),
                    ttl_ms: ttl,
                    digest,
                });
            }
        }
        Ok(out)
    }

    /// Sends the keys to the target; each key's reply (`Err`: the target's error text).
    /// A cached connection that fails is replaced once.
    async fn send(&self, dumped: &[Dumped]) -> Result<Vec<Result<(), String>>, Reply> {
        let cached = self.sockets.take(&self.target);
        let retry = cached.is_some();
        let first = match cached {
            Some(c) => c,
            None => self.connect().await?,
        };
        match self.exchange(first, dumped).await {
            Ok(r) => Ok(r),
            Err(Failure::Io(_)) if retry => {
                match self.exchange(self.connect().await?, dumped).await {
                    Ok(r) => Ok(r),
                    Err(f) => Err(f.reply()),
                }
            }
            Err(f) => Err(f.reply()),
        }
    }

    /// Connects to the target. As in Redis, whose non-blocking connect completes on a
    /// refusal and fails at the first write, a refused connection is a write error.
    async fn connect(&self) -> Result<Cached, Reply> {
        let io = || Reply::Error("IOERR error or timeout connecting to the client".into());
        let stream = tokio::time::timeout(self.timeout, TcpStream::connect(&self.target))
            .await
            .map_err(|_| io())?
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::ConnectionRefused => Failure::Io("writing").reply(),
                _ => io(),
            })?;
        let _ = stream.set_nodelay(true);
        Ok(Cached {
            conn: BufReader::new(stream),
            db: None,
            last_use: Instant::now(),
        })
    }

    /// One pipeline: `AUTH`, `SELECT` when the connection is in another database, then a
    /// `RESTORE` per key; the connection goes back to the cache when every reply came.
    async fn exchange(
        &self,
        mut s: Cached,
        dumped: &[Dumped],
    ) -> Result<Vec<Result<(), String>>, Failure> {
        let mut out = Vec::new();
        if let Some(auth) = &self.auth {
            let mut args = vec![Bytes::from_static(b"AUTH")];
            args.extend(auth.iter().cloned());
            encode(&mut out, &args);
        }
        let select = s.db != Some(self.db);
        if select {
            encode(
                &mut out,
                &[
                    Bytes::from_static(b"SELECT"),
                    Bytes::from(self.db.to_string()),
                ],
            );
        }
        for d in dumped {
            let mut args = vec![
                Bytes::from_static(b"RESTORE"),
                d.key.clone(),
                Bytes::from(d.ttl_ms.to_string()),
                d.payload.clone(),
            ];
            if self.replace {
                args.push(Bytes::from_static(b"REPLACE"));
            }
            encode(&mut out, &args);
        }
        tokio::time::timeout(self.timeout, s.conn.get_mut().write_all(&out))
            .await
            .map_err(|_| Failure::Io("writing"))?
            .map_err(|_| Failure::Io("writing"))?;
        let setup = usize::from(self.auth.is_some()) + usize::from(select);
        for _ in 0..setup {
            if let Err(e) = self.reply_line(&mut s).await? {
                return Err(Failure::Target(e));
            }
        }
        s.db = Some(self.db);
        let mut replies = Vec::with_capacity(dumped.len());
        for _ in dumped {
            replies.push(self.reply_line(&mut s).await?);
        }
        self.sockets.put(self.target.clone(), s);
        Ok(replies)
    }

    /// The next reply line: `Ok` for a status, `Err(text)` for an error.
    async fn reply_line(&self, s: &mut Cached) -> Result<Result<(), String>, Failure> {
        let mut line = Vec::new();
        let mut bounded = (&mut s.conn).take(64 * 1024);
        let n = tokio::time::timeout(self.timeout, bounded.read_until(b'\n', &mut line))
            .await
            .map_err(|_| Failure::Io("reading"))?
            .map_err(|_| Failure::Io("reading"))?;
        if n == 0 || !line.ends_with(b"\r\n") {
            return Err(Failure::Io("reading"));
        }
        let text = String::from_utf8_lossy(&line[1..line.len() - 2]).into_owned();
        Ok(match line[0] {
            b'-' => Err(text),
            _ => Ok(()),
        })
    }
}

/// Deletes a migrated key unless it changed since it was read (then it stays: the target
/// has the value as read, the source the newer one).
fn delete_unchanged(d: &Dumped) -> KvOp {
    KvOp::Multi {
        watches: vec![Watch {
            key: d.key.clone(),
            digest: d.digest,
        }],
        ops: vec![KvOp::KeyDel { key: d.key.clone() }],
    }
}

/// Why an exchange with the target failed.
enum Failure {
    /// The connection failed or timed out while `reading` or `writing`.
    Io(&'static str),
    /// `AUTH` or `SELECT` was refused.
    Target(String),
}

impl Failure {
    fn reply(self) -> Reply {
        match self {
            Failure::Io(what) => {
                Reply::Error(format!("IOERR error or timeout {what} to target instance"))
            }
            Failure::Target(e) => target_error(&e),
        }
    }
}

fn target_error(e: &str) -> Reply {
    Reply::err(format_args!("Target instance replied with error: {e}"))
}

/// A command as a RESP multibulk.
fn encode(out: &mut Vec<u8>, args: &[Bytes]) {
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
}
