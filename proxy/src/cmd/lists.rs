//! Commands on lists (`t_list.c`). Every element of a key lives in the range of its
//! metadata entry, so a one-key command is one operation on one range.
//!
//! The commands on two or more keys (LMOVE, RPOPLPUSH, LMPOP and the blocking ones) run as
//! [`Action::Block`] ([`crate::blocking`]): when their keys are in one range they are one
//! operation (atomic); across ranges LMOVE pops from the source then pushes to the
//! destination, pushing the element back where it came from if the push fails, and LMPOP
//! tries its keys in order, one operation each (`docs/guides/proxy.md`, "Lists").

use std::sync::Arc;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use net::RpcError;
use net::message::kv::{KvOp, ListOp, OpResult};

use super::action::{Action, keyed, single};
use super::spec::{R, RS, Spec, W, WD, WF, WS, spec};
use super::util::{exec_error, int, is, opt_bulk, syntax, unexpected};
use crate::blocking::{Attempt, Blocked, parse_timeout};
use crate::db::DbRouter;
use crate::keyspace::meta_key;
use crate::resp::Reply;
use crate::route::ExecError;

// Flag sets of the blocking and movable-key commands, as Redis 7.0 reports them.
const WDB: &[&str] = &["write", "denyoom", "noscript", "blocking"];
const WNB: &[&str] = &["write", "noscript", "blocking"];
const WBM: &[&str] = &["write", "blocking", "movablekeys"];
const WM: &[&str] = &["write", "movablekeys"];

/// The commands of this module, sorted by name (arity, flags and key positions as Redis 7.0
/// reports them).
pub static SPECS: &[Spec] = &[
    spec!("blmove", 6, WDB, 1, 2, 1),
    spec!("blmpop", -5, WBM, 0, 0, 0),
    spec!("blpop", -3, WNB, 1, -2, 1),
    spec!("brpop", -3, WNB, 1, -2, 1),
    spec!("brpoplpush", 4, WDB, 1, 2, 1),
    spec!("lindex", 3, RS, 1, 1, 1),
    spec!("linsert", 5, WD, 1, 1, 1),
    spec!("llen", 2, R, 1, 1, 1),
    spec!("lmove", 5, WD, 1, 2, 1),
    spec!("lmpop", -4, WM, 0, 0, 0),
    spec!("lpop", -2, WF, 1, 1, 1),
    spec!("lpos", -3, RS, 1, 1, 1),
    spec!("lpush", -3, W, 1, 1, 1),
    spec!("lpushx", -3, W, 1, 1, 1),
    spec!("lrange", 4, RS, 1, 1, 1),
    spec!("lrem", 4, WS, 1, 1, 1),
    spec!("lset", 4, WD, 1, 1, 1),
    spec!("ltrim", 4, WS, 1, 1, 1),
    spec!("rpop", -2, WF, 1, 1, 1),
    spec!("rpoplpush", 3, WD, 1, 2, 1),
    spec!("rpush", -3, W, 1, 1, 1),
    spec!("rpushx", -3, W, 1, 1, 1),
];

/// Dispatches a command of [`SPECS`] (arity already checked).
pub fn dispatch(name: &'static str, args: &[Bytes]) -> Action {
    match build(name, args) {
        Ok(a) => a,
        Err(r) => Action::Reply(r),
    }
}

fn list(op: ListOp) -> KvOp {
    KvOp::List { op }
}

fn build(name: &'static str, args: &[Bytes]) -> Result<Action, Reply> {
    let key = &args[1];
    Ok(match name {
        "llen" => single(key, list(ListOp::Len { key: key.clone() }), int_reply),
        "lpush" | "rpush" | "lpushx" | "rpushx" => {
            let op = ListOp::Push {
                key: key.clone(),
                elements: args[2..].to_vec(),
                left: name.starts_with('l'),
                only_existing: name.ends_with('x'),
            };
            single(key, list(op), int_reply)
        }
        "lpop" | "rpop" => pop(name, args)?,
        "lrange" => {
            let (start, stop) = (int(&args[2])?, int(&args[3])?);
            let op = ListOp::Range {
                key: key.clone(),
                start,
                stop,
            };
            single(key, list(op), array_reply)
        }
        "lindex" => {
            let index = int(&args[2])?;
            single(
                key,
                list(ListOp::Index {
                    key: key.clone(),
                    index,
                }),
                |r| match r {
                    OpResult::Value { value } => opt_bulk(value),
                    other => unexpected(&other),
                },
            )
        }
        "lset" => {
            let index = int(&args[2])?;
            let op = ListOp::Set {
                key: key.clone(),
                index,
                element: args[3].clone(),
            };
            single(key, list(op), |r| match r {
                OpResult::Unit {} => Reply::OK,
                other => unexpected(&other),
            })
        }
        "linsert" => {
            let before = if is(&args[2], "before") {
                true
            } else if is(&args[2], "after") {
                false
            } else {
                return Err(syntax());
            };
            let op = ListOp::Insert {
                key: key.clone(),
                before,
                pivot: args[3].clone(),
                element: args[4].clone(),
            };
            single(key, list(op), int_reply)
        }
        "lrem" => {
            let count = int(&args[2])?;
            let op = ListOp::Rem {
                key: key.clone(),
                count,
                element: args[3].clone(),
            };
            single(key, list(op), int_reply)
        }
        "ltrim" => {
            let (start, stop) = (int(&args[2])?, int(&args[3])?);
            let op = ListOp::Trim {
                key: key.clone(),
                start,
                stop,
            };
            single(key, list(op), |r| match r {
                OpResult::Unit {} => Reply::OK,
                other => unexpected(&other),
            })
        }
        "lpos" => lpos(args)?,
        "lmove" | "blmove" => {
            let from_left = side(&args[3])?;
            let to_left = side(&args[4])?;
            let timeout = match name {
                "blmove" => Some(parse_timeout(&args[5])?),
                _ => None,
            };
            moving(&args[1], &args[2], from_left, to_left, timeout)
        }
        "rpoplpush" => moving(&args[1], &args[2], false, true, None),
        "brpoplpush" => {
            let timeout = parse_timeout(&args[3])?;
            moving(&args[1], &args[2], false, true, Some(timeout))
        }
        "blpop" | "brpop" => {
            let timeout = parse_timeout(&args[args.len() - 1])?;
            let keys = args[1..args.len() - 1].to_vec();
            let attempt = MPop {
                keys: keys.clone(),
                left: name == "blpop",
                count: None,
            };
            block(keys, Some(timeout), Reply::NilArray, attempt)
        }
        "lmpop" => {
            let attempt = mpop_args(args, 1)?;
            block(attempt.keys.clone(), None, Reply::NilArray, attempt)
        }
        "blmpop" => {
            let attempt = mpop_args(args, 2)?;
            let timeout = parse_timeout(&args[1])?;
            block(
                attempt.keys.clone(),
                Some(timeout),
                Reply::NilArray,
                attempt,
            )
        }
        _ => return Err(Reply::err("internal error: not a command of this module")),
    })
}

fn int_reply(r: OpResult) -> Reply {
    match r {
        OpResult::Int { value } => Reply::Int(value),
        other => unexpected(&other),
    }
}

fn array_reply(r: OpResult) -> Reply {
    match r {
        OpResult::Bulks { values } => Reply::Array(values.into_iter().map(Reply::Bulk).collect()),
        other => unexpected(&other),
    }
}

/// `LEFT` / `RIGHT`: whether left.
fn side(arg: &[u8]) -> Result<bool, Reply> {
    if is(arg, "left") {
        Ok(true)
    } else if is(arg, "right") {
        Ok(false)
    } else {
        Err(syntax())
    }
}

/// Redis's `getRangeLongFromObjectOrReply(min, LONG_MAX, msg)`: `msg` also when the
/// argument is not an integer.
fn at_least(arg: &[u8], min: i64, msg: &str) -> Result<i64, Reply> {
    let v = super::util::parse_i64(arg).ok_or_else(|| Reply::err(msg))?;
    if v < min {
        return Err(Reply::err(msg));
    }
    Ok(v)
}

fn pop(name: &str, args: &[Bytes]) -> Result<Action, Reply> {
    if args.len() > 3 {
        return Err(super::util::arity(name));
    }
    let key = &args[1];
    let count = match args.get(2) {
        Some(c) => Some(at_least(c, 0, "value is out of range, must be positive")?.unsigned_abs()),
        None => None,
    };
    let op = ListOp::Pop {
        key: key.clone(),
        left: name == "lpop",
        count,
    };
    Ok(single(key, list(op), move |r| match (r, count) {
        (OpResult::Value { value }, None) => opt_bulk(value),
        (OpResult::Value { value: None }, Some(_)) => Reply::NilArray,
        (r @ OpResult::Bulks { .. }, Some(_)) => array_reply(r),
        (other, _) => unexpected(&other),
    }))
}

fn lpos(args: &[Bytes]) -> Result<Action, Reply> {
    let (mut rank, mut count, mut maxlen) = (1i64, None, 0u64);
    let mut i = 3;
    while i < args.len() {
        let more = i + 1 < args.len();
        let opt = &args[i];
        if is(opt, "rank") && more {
            rank = int(&args[i + 1])?;
            if rank == 0 {
                return Err(Reply::err(
                    "RANK can't be zero: use 1 to start from the first match, 2 from the \
                     second ... or use negative to start from the end of the list",
                ));
            }
        } else if is(opt, "count") && more {
            count = Some(at_least(&args[i + 1], 0, "COUNT can't be negative")?.unsigned_abs());
        } else if is(opt, "maxlen") && more {
            maxlen = at_least(&args[i + 1], 0, "MAXLEN can't be negative")?.unsigned_abs();
        } else {
            return Err(syntax());
        }
        i += 2;
    }
    let key = &args[1];
    let op = ListOp::Pos {
        key: key.clone(),
        element: args[2].clone(),
        rank,
        count,
        maxlen,
    };
    Ok(single(key, list(op), move |r| match r {
        OpResult::Ints { values } if count.is_some() => {
            Reply::Array(values.into_iter().map(Reply::Int).collect())
        }
        OpResult::Ints { values } => values.first().map_or(Reply::Nil, |v| Reply::Int(*v)),
        other => unexpected(&other),
    }))
}

/// `[B]LMPOP [timeout] numkeys key... LEFT|RIGHT [COUNT n]`, `numkeys` at `at`.
fn mpop_args(args: &[Bytes], at: usize) -> Result<MPop, Reply> {
    let numkeys = at_least(&args[at], 1, "numkeys should be greater than 0")?.unsigned_abs();
    let where_at = usize::try_from(numkeys)
        .ok()
        .and_then(|n| n.checked_add(at + 1))
        .filter(|&w| w < args.len())
        .ok_or_else(syntax)?;
    let left = side(&args[where_at])?;
    let mut count = None;
    let mut i = where_at + 1;
    while i < args.len() {
        if count.is_none() && is(&args[i], "count") && i + 1 < args.len() {
            count = Some(at_least(&args[i + 1], 1, "count should be greater than 0")?);
            i += 2;
        } else {
            return Err(syntax());
        }
    }
    let attempt = MPop {
        keys: args[at + 1..where_at].to_vec(),
        left,
        count: Some(count.unwrap_or(1).unsigned_abs()),
    };
    Ok(attempt)
}

/// A blocking command (`timeout` some) or a non-blocking one run by the same code. A
/// blocked list command that times out answers a null array, whatever its shape (Redis's
/// `replyToBlockedClientTimedOut`); `empty_reply` is its answer where it may not block.
fn block(
    keys: Vec<Bytes>,
    timeout: Option<Option<std::time::Duration>>,
    empty_reply: Reply,
    attempt: impl Attempt + 'static,
) -> Action {
    Action::Block(Blocked {
        keys,
        timeout: timeout.flatten(),
        timeout_reply: Reply::NilArray,
        empty_reply,
        block: timeout.is_some(),
        attempt: Arc::new(attempt),
    })
}

/// LMOVE / RPOPLPUSH (`timeout` none) and BLMOVE / BRPOPLPUSH.
fn moving(
    src: &Bytes,
    dst: &Bytes,
    from_left: bool,
    to_left: bool,
    timeout: Option<Option<std::time::Duration>>,
) -> Action {
    let m = Move {
        src: src.clone(),
        dst: dst.clone(),
        from_left,
        to_left,
    };
    if timeout.is_none() && src == dst {
        // One key: one operation in the pipeline.
        return single(src, list(m.op()), |r| match r {
            OpResult::Value { value } => opt_bulk(value),
            other => unexpected(&other),
        });
    }
    block(vec![src.clone()], timeout, Reply::Nil, m)
}

/// Whether every key routes to one range (one key: trivially).
async fn one_range(router: &DbRouter<'_>, keys: &[Bytes]) -> Result<bool, ExecError> {
    let mut id = None;
    for k in keys {
        let r = router
            .range_of(&meta_key(crate::keyspace::Db::ZERO, k))
            .await?;
        if *id.get_or_insert(r.id) != r.id {
            return Ok(false);
        }
    }
    Ok(true)
}

async fn run_one(router: &DbRouter<'_>, key: &Bytes, op: ListOp) -> Result<OpResult, ExecError> {
    router
        .exec(vec![keyed(key, list(op))])
        .await
        .pop()
        .unwrap_or(Err(ExecError::Unavailable("no result".into())))
}

/// Whether one of `keys` may have something to pop: reads (`LLEN`) of every key in one batch,
/// so that polls and wake-ups of a blocked command that find nothing propose no write. An
/// error counts as "maybe" (the attempt then reports or skips it).
async fn maybe_non_empty(router: &DbRouter<'_>, keys: &[Bytes]) -> bool {
    let ops = keys
        .iter()
        .map(|k| keyed(k, list(ListOp::Len { key: k.clone() })))
        .collect();
    router.exec(ops).await.into_iter().any(|r| match r {
        Ok(OpResult::Int { value }) => value > 0,
        _ => true,
    })
}

/// The WRONGTYPE error if one of `keys` holds another type (reads only).
async fn type_error(router: &DbRouter<'_>, keys: &[Bytes]) -> Option<Reply> {
    let ops = keys
        .iter()
        .map(|k| keyed(k, list(ListOp::Len { key: k.clone() })))
        .collect();
    router
        .exec(ops)
        .await
        .into_iter()
        .find_map(|r| r.err().filter(is_wrongtype).map(|e| exec_error(&e)))
}

fn is_wrongtype(e: &ExecError) -> bool {
    matches!(e, ExecError::Rpc(RpcError::WrongType {}))
}

/// The non-blocking form of BLPOP, BRPOP, LMPOP, BLMPOP: pop from the first non-empty key.
#[derive(Debug)]
struct MPop {
    keys: Vec<Bytes>,
    left: bool,
    /// `None`: BLPOP's `[key, element]` reply; `Some(n)`: LMPOP's `[key, [elements]]`.
    count: Option<u64>,
}

impl MPop {
    fn op(&self, keys: &[Bytes]) -> ListOp {
        ListOp::MPop {
            key: keys[0].clone(),
            others: keys[1..].to_vec(),
            left: self.left,
            count: self.count.unwrap_or(1),
        }
    }

    fn reply(&self, mut values: Vec<Bytes>) -> Option<Reply> {
        if values.is_empty() {
            return None;
        }
        let key = Reply::Bulk(values.remove(0));
        let elems: Vec<Reply> = values.into_iter().map(Reply::Bulk).collect();
        Some(match self.count {
            None => Reply::Array(std::iter::once(key).chain(elems).collect()),
            Some(_) => Reply::Array(vec![key, Reply::Array(elems)]),
        })
    }

    async fn try_keys(&self, router: &DbRouter<'_>, keys: &[Bytes], retry: bool) -> Option<Reply> {
        match run_one(router, &keys[0], self.op(keys)).await {
            Ok(OpResult::Bulks { values }) => self.reply(values),
            Ok(other) => Some(unexpected(&other)),
            Err(e) if retry && is_wrongtype(&e) => None,
            Err(e) => Some(exec_error(&e)),
        }
    }

    async fn attempt(&self, router: &DbRouter<'_>, retry: bool) -> Option<Reply> {
        if self.keys.is_empty() || (retry && !maybe_non_empty(router, &self.keys).await) {
            return None;
        }
        match one_range(router, &self.keys).await {
            Ok(true) => {
                let r = self.try_keys(router, &self.keys, retry).await;
                // A blocked client skips keys of another type: try them one by one.
                if r.is_some() || !retry || self.keys.len() == 1 {
                    return r;
                }
            }
            Ok(false) => {}
            Err(e) => return Some(exec_error(&e)),
        }
        for k in &self.keys {
            if let Some(r) = self.try_keys(router, std::slice::from_ref(k), retry).await {
                return Some(r);
            }
        }
        None
    }
}

impl Attempt for MPop {
    fn run<'a>(&'a self, router: &'a DbRouter<'a>, retry: bool) -> BoxFuture<'a, Option<Reply>> {
        Box::pin(self.attempt(router, retry))
    }

    fn check<'a>(&'a self, router: &'a DbRouter<'a>) -> BoxFuture<'a, Option<Reply>> {
        Box::pin(type_error(router, &self.keys))
    }
}

/// The non-blocking form of LMOVE, RPOPLPUSH, BLMOVE, BRPOPLPUSH.
#[derive(Debug)]
struct Move {
    src: Bytes,
    dst: Bytes,
    from_left: bool,
    to_left: bool,
}

impl Move {
    fn op(&self) -> ListOp {
        ListOp::Move {
            src: self.src.clone(),
            dst: self.dst.clone(),
            from_left: self.from_left,
            to_left: self.to_left,
        }
    }

    async fn attempt(&self, router: &DbRouter<'_>, retry: bool) -> Option<Reply> {
        if retry && !maybe_non_empty(router, std::slice::from_ref(&self.src)).await {
            return None;
        }
        let keys = [self.src.clone(), self.dst.clone()];
        match one_range(router, &keys).await {
            Ok(true) => self.atomic(router, retry).await,
            Ok(false) => self.across(router, retry).await,
            Err(e) => Some(exec_error(&e)),
        }
    }

    /// Both keys in one range: one operation.
    async fn atomic(&self, router: &DbRouter<'_>, retry: bool) -> Option<Reply> {
        match run_one(router, &self.src, self.op()).await {
            Ok(OpResult::Value { value }) => value.map(Reply::Bulk),
            Ok(other) => Some(unexpected(&other)),
            Err(e) if retry && is_wrongtype(&e) => {
                // Waiting, a source of another type is skipped; a destination's is an error.
                let len = ListOp::Len {
                    key: self.src.clone(),
                };
                match run_one(router, &self.src, len).await {
                    Err(e2) if is_wrongtype(&e2) => None,
                    _ => Some(exec_error(&e)),
                }
            }
            Err(e) => Some(exec_error(&e)),
        }
    }

    /// Keys in two ranges: pop, then push; a failed push puts the element back.
    async fn across(&self, router: &DbRouter<'_>, retry: bool) -> Option<Reply> {
        let pop = ListOp::Pop {
            key: self.src.clone(),
            left: self.from_left,
            count: None,
        };
        let v = match run_one(router, &self.src, pop).await {
            Ok(OpResult::Value { value: Some(v) }) => v,
            Ok(OpResult::Value { value: None }) => return None,
            Ok(other) => return Some(unexpected(&other)),
            Err(e) if retry && is_wrongtype(&e) => return None,
            Err(e) => return Some(exec_error(&e)),
        };
        let push = |key: &Bytes, left| ListOp::Push {
            key: key.clone(),
            elements: vec![v.clone()],
            left,
            only_existing: false,
        };
        match run_one(router, &self.dst, push(&self.dst, self.to_left)).await {
            Ok(_) => Some(Reply::Bulk(v)),
            Err(e) => {
                if let Err(back) = run_one(router, &self.src, push(&self.src, self.from_left)).await
                {
                    tracing::warn!(
                        "LMOVE across ranges: push to the destination failed ({e}) and the \
                         element could not be put back in the source ({back}); it is lost"
                    );
                }
                Some(exec_error(&e))
            }
        }
    }
}

impl Attempt for Move {
    fn run<'a>(&'a self, router: &'a DbRouter<'a>, retry: bool) -> BoxFuture<'a, Option<Reply>> {
        Box::pin(self.attempt(router, retry))
    }

    fn check<'a>(&'a self, router: &'a DbRouter<'a>) -> BoxFuture<'a, Option<Reply>> {
        Box::pin(type_error(router, std::slice::from_ref(&self.src)))
    }
}
