//! String commands (`t_string.c`): GET, SET and its options, SETNX, SETEX, PSETEX, GETSET,
//! GETDEL, GETEX, MGET, MSET, INCR/DECR/INCRBY/DECRBY/INCRBYFLOAT, APPEND, STRLEN, GETRANGE,
//! SETRANGE. Relative expiries become absolute Unix milliseconds from the proxy's clock.

use bytes::Bytes;
use net::RpcError;
use net::message::kv::{Cond, Expiry, KvOp, OpResult};

use super::action::{Action, keyed, single};
use super::util::{exec_error, float, int, is, opt_bulk, syntax, unexpected};
use crate::resp::Reply;
use crate::route::ExecError;

/// Largest string, as Redis's `proto-max-bulk-len` default.
const MAX_STRING: i64 = 512 * 1024 * 1024;

fn bulk_result(r: OpResult) -> Reply {
    match r {
        OpResult::Value { value } => opt_bulk(value),
        other => unexpected(&other),
    }
}

fn int_result(r: OpResult) -> Reply {
    match r {
        OpResult::Int { value } => Reply::Int(value),
        OpResult::Bool { value } | OpResult::Written { written: value } => {
            Reply::Int(i64::from(value))
        }
        other => unexpected(&other),
    }
}

/// The unit of an expiry option.
#[derive(Clone, Copy, PartialEq)]
enum Unit {
    Ex,
    Px,
    ExAt,
    PxAt,
}

/// An expiry argument as absolute Unix ms, or Redis's error (`invalid expire time in '…'`).
fn expire_at(unit: Unit, arg: &[u8], now_ms: u64, cmd: &str) -> Result<u64, Reply> {
    let v = int(arg)?;
    let invalid = || Reply::err(format_args!("invalid expire time in '{cmd}' command"));
    if v <= 0 {
        return Err(invalid());
    }
    let ms = match unit {
        Unit::Ex | Unit::ExAt => v.checked_mul(1000).ok_or_else(invalid)?,
        Unit::Px | Unit::PxAt => v,
    };
    let abs = match unit {
        Unit::Ex | Unit::Px => ms
            .checked_add(i64::try_from(now_ms).unwrap_or(i64::MAX))
            .ok_or_else(invalid)?,
        Unit::ExAt | Unit::PxAt => ms,
    };
    u64::try_from(abs).map_err(|_| invalid())
}

struct SetOpts {
    cond: Cond,
    get: bool,
    expiry: Expiry,
}

/// Parses SET's (or GETEX's, `getex`) options as `parseExtendedStringArgumentsOrReply`.
fn parse_opts(args: &[Bytes], getex: bool, now_ms: u64, cmd: &str) -> Result<SetOpts, Reply> {
    let (mut nx, mut xx, mut get, mut keepttl, mut persist) = (false, false, false, false, false);
    let mut exp: Option<(Unit, &Bytes)> = None;
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        let next = args.get(i + 1);
        if !getex && is(a, "nx") && !xx {
            nx = true;
        } else if !getex && is(a, "xx") && !nx {
            xx = true;
        } else if !getex && is(a, "get") {
            get = true;
        } else if !getex && is(a, "keepttl") && exp.is_none() {
            keepttl = true;
        } else if getex && is(a, "persist") && exp.is_none() {
            persist = true;
        } else if let Some(unit) = [("ex", Unit::Ex), ("px", Unit::Px), ("exat", Unit::ExAt)]
            .into_iter()
            .chain([("pxat", Unit::PxAt)])
            .find(|(kw, _)| is(a, kw))
            .map(|(_, u)| u)
        {
            match next {
                Some(v) if exp.is_none() && !keepttl && !persist => {
                    exp = Some((unit, v));
                    i += 1;
                }
                _ => return Err(syntax()),
            }
        } else {
            return Err(syntax());
        }
        i += 1;
    }
    let expiry = match exp {
        Some((unit, v)) => Expiry::At {
            at_ms: expire_at(unit, v, now_ms, cmd)?,
        },
        None if keepttl => Expiry::Keep {},
        None if persist => Expiry::Persist {},
        None if getex => Expiry::Keep {},
        None => Expiry::Persist {},
    };
    let cond = if nx {
        Cond::IfAbsent {}
    } else if xx {
        Cond::IfPresent {}
    } else {
        Cond::Always {}
    };
    Ok(SetOpts { cond, get, expiry })
}

/// Dispatches a string command (arity already checked).
pub fn dispatch(name: &'static str, args: &[Bytes], now_ms: u64) -> Action {
    match build(name, args, now_ms) {
        Ok(a) => a,
        Err(r) => Action::Reply(r),
    }
}

fn build(name: &'static str, args: &[Bytes], now_ms: u64) -> Result<Action, Reply> {
    let key = &args[1];
    Ok(match name {
        "get" => single(key, KvOp::StrGet { key: key.clone() }, bulk_result),
        "set" => {
            let o = parse_opts(&args[3..], false, now_ms, "set")?;
            let get = o.get;
            let op = KvOp::StrSet {
                key: key.clone(),
                value: args[2].clone(),
                expiry: o.expiry,
                cond: o.cond,
                get_old: get,
            };
            single(key, op, move |r| match r {
                OpResult::Value { value } => opt_bulk(value),
                OpResult::Written { written: true } => Reply::OK,
                OpResult::Written { written: false } => Reply::Nil,
                other => unexpected(&other),
            })
        }
        "setnx" => single(
            key,
            set_op(key, &args[2], Expiry::Persist {}, Cond::IfAbsent {}),
            int_result,
        ),
        "setex" | "psetex" => {
            let unit = if name == "setex" { Unit::Ex } else { Unit::Px };
            let at_ms = expire_at(unit, &args[2], now_ms, name)?;
            let op = set_op(key, &args[3], Expiry::At { at_ms }, Cond::Always {});
            single(key, op, |_| Reply::OK)
        }
        "getset" => {
            let op = KvOp::StrSet {
                key: key.clone(),
                value: args[2].clone(),
                expiry: Expiry::Persist {},
                cond: Cond::Always {},
                get_old: true,
            };
            single(key, op, bulk_result)
        }
        "getdel" => single(key, KvOp::StrGetDel { key: key.clone() }, bulk_result),
        "getex" => {
            let o = parse_opts(&args[2..], true, now_ms, "getex")?;
            let op = KvOp::StrGetEx {
                key: key.clone(),
                expiry: o.expiry,
            };
            single(key, op, bulk_result)
        }
        "mget" => {
            let ops = args[1..]
                .iter()
                .map(|k| keyed(k, KvOp::StrGet { key: k.clone() }))
                .collect();
            Action::Data {
                ops,
                finish: Box::new(mget_finish),
            }
        }
        "mset" => {
            if args.len() % 2 == 0 {
                return Err(super::util::arity("mset"));
            }
            let ops = args[1..]
                .chunks_exact(2)
                .map(|kv| {
                    let op = set_op(&kv[0], &kv[1], Expiry::Persist {}, Cond::Always {});
                    keyed(&kv[0], op)
                })
                .collect();
            Action::Data {
                ops,
                finish: Box::new(|res| {
                    res.iter()
                        .find_map(|r| r.as_ref().err())
                        .map_or(Reply::OK, exec_error)
                }),
            }
        }
        "incr" | "decr" => {
            let delta = if name == "incr" { 1 } else { -1 };
            single(
                key,
                KvOp::StrIncrBy {
                    key: key.clone(),
                    delta,
                },
                int_result,
            )
        }
        "incrby" => {
            let delta = int(&args[2])?;
            single(
                key,
                KvOp::StrIncrBy {
                    key: key.clone(),
                    delta,
                },
                int_result,
            )
        }
        "decrby" => {
            let delta = int(&args[2])?;
            let delta = delta
                .checked_neg()
                .ok_or_else(|| Reply::err("decrement would overflow"))?;
            single(
                key,
                KvOp::StrIncrBy {
                    key: key.clone(),
                    delta,
                },
                int_result,
            )
        }
        "incrbyfloat" => {
            let delta = float(&args[2])?;
            let op = KvOp::StrIncrByFloat {
                key: key.clone(),
                delta,
            };
            single(key, op, bulk_result)
        }
        "append" => {
            let op = KvOp::StrAppend {
                key: key.clone(),
                value: args[2].clone(),
            };
            single(key, op, int_result)
        }
        "strlen" => single(key, KvOp::StrLen { key: key.clone() }, int_result),
        "getrange" => {
            let (start, end) = (int(&args[2])?, int(&args[3])?);
            let op = KvOp::StrGetRange {
                key: key.clone(),
                start,
                end,
            };
            single(key, op, |r| match r {
                OpResult::Value { value } => Reply::Bulk(value.unwrap_or_default()),
                other => unexpected(&other),
            })
        }
        "setrange" => {
            let offset = int(&args[2])?;
            if offset < 0 {
                return Err(Reply::err("offset is out of range"));
            }
            let len = i64::try_from(args[3].len()).unwrap_or(i64::MAX);
            if !args[3].is_empty() && offset.saturating_add(len) > MAX_STRING {
                return Err(Reply::err(
                    "string exceeds maximum allowed size (proto-max-bulk-len)",
                ));
            }
            let op = KvOp::StrSetRange {
                key: key.clone(),
                offset: offset.unsigned_abs(),
                value: args[3].clone(),
            };
            single(key, op, int_result)
        }
        _ => return Err(Reply::err("internal error: not a string command")),
    })
}

fn set_op(key: &Bytes, value: &Bytes, expiry: Expiry, cond: Cond) -> KvOp {
    KvOp::StrSet {
        key: key.clone(),
        value: value.clone(),
        expiry,
        cond,
        get_old: false,
    }
}

/// MGET: a key of another type reads as nil; any other error fails the command.
fn mget_finish(res: Vec<Result<OpResult, ExecError>>) -> Reply {
    let mut out = Vec::with_capacity(res.len());
    for r in res {
        out.push(match r {
            Ok(OpResult::Value { value }) => opt_bulk(value),
            Ok(other) => return unexpected(&other),
            Err(ExecError::Rpc(RpcError::WrongType {})) => Reply::Nil,
            Err(e) => return exec_error(&e),
        });
    }
    Reply::Array(out)
}
