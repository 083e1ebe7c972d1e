//! Hash commands (`t_hash.c`). All fields of a hash live in the range of its metadata entry,
//! so every command is one operation on one range.

use bytes::Bytes;
use net::message::kv::{KvOp, OpResult};

use super::action::{Action, single};
use super::opts::{long_count, scan_opts, seed};
use super::scan::HScan;
use super::util::{arity, float, int, is, opt_bulk, syntax, unexpected};
use crate::resp::Reply;

/// Dispatches a hash command (arity already checked).
pub fn dispatch(name: &'static str, args: &[Bytes]) -> Action {
    match build(name, args) {
        Ok(a) => a,
        Err(r) => Action::Reply(r),
    }
}

fn pairs_of(args: &[Bytes]) -> Vec<(Bytes, Bytes)> {
    args.chunks_exact(2)
        .map(|p| (p[0].clone(), p[1].clone()))
        .collect()
}

fn build(name: &'static str, args: &[Bytes]) -> Result<Action, Reply> {
    let key = &args[1];
    let k = key.clone();
    Ok(match name {
        "hset" | "hmset" => {
            if args.len() % 2 != 0 {
                return Err(arity(name));
            }
            let op = KvOp::HSet {
                key: k,
                pairs: pairs_of(&args[2..]),
                only_new: false,
            };
            let hmset = name == "hmset";
            single(key, op, move |r| match r {
                OpResult::Int { .. } if hmset => Reply::OK,
                OpResult::Int { value } => Reply::Int(value),
                other => unexpected(&other),
            })
        }
        "hsetnx" => {
            let op = KvOp::HSet {
                key: k,
                pairs: pairs_of(&args[2..4]),
                only_new: true,
            };
            single(key, op, int_result)
        }
        "hget" => {
            let op = KvOp::HGet {
                key: k,
                field: args[2].clone(),
            };
            single(key, op, |r| match r {
                OpResult::Value { value } => opt_bulk(value),
                other => unexpected(&other),
            })
        }
        "hmget" => {
            let op = KvOp::HMGet {
                key: k,
                fields: args[2..].to_vec(),
            };
            single(key, op, |r| match r {
                OpResult::Values { values } => {
                    Reply::Array(values.into_iter().map(opt_bulk).collect())
                }
                other => unexpected(&other),
            })
        }
        "hdel" => {
            let op = KvOp::HDel {
                key: k,
                fields: args[2..].to_vec(),
            };
            single(key, op, int_result)
        }
        "hexists" => {
            let op = KvOp::HExists {
                key: k,
                field: args[2].clone(),
            };
            single(key, op, int_result)
        }
        "hlen" => single(key, KvOp::HLen { key: k }, int_result),
        "hstrlen" => {
            let op = KvOp::HStrLen {
                key: k,
                field: args[2].clone(),
            };
            single(key, op, int_result)
        }
        "hgetall" | "hkeys" | "hvals" => single(key, KvOp::HGetAll { key: k }, move |r| {
            let OpResult::Pairs { pairs } = r else {
                return unexpected(&r);
            };
            match name {
                "hgetall" => Reply::Map(
                    pairs
                        .into_iter()
                        .map(|(f, v)| (Reply::Bulk(f), Reply::Bulk(v)))
                        .collect(),
                ),
                "hkeys" => Reply::Array(pairs.into_iter().map(|(f, _)| Reply::Bulk(f)).collect()),
                _ => Reply::Array(pairs.into_iter().map(|(_, v)| Reply::Bulk(v)).collect()),
            }
        }),
        "hincrby" => {
            let delta = int(&args[3])?;
            let op = KvOp::HIncrBy {
                key: k,
                field: args[2].clone(),
                delta,
            };
            single(key, op, int_result)
        }
        "hincrbyfloat" => {
            let delta = float(&args[3])?;
            if delta.is_infinite() {
                return Err(Reply::err("value is NaN or Infinity"));
            }
            let op = KvOp::HIncrByFloat {
                key: k,
                field: args[2].clone(),
                delta,
            };
            single(key, op, |r| match r {
                OpResult::Value { value } => opt_bulk(value),
                other => unexpected(&other),
            })
        }
        "hscan" => {
            std::str::from_utf8(&args[2])
                .ok()
                .and_then(|s| s.parse::<u64>().ok())
                .ok_or_else(|| Reply::err("invalid cursor"))?;
            let mut novalues = false;
            let opts: Vec<Bytes> = args[3..]
                .iter()
                .filter(|a| {
                    let nv = is(a, "novalues");
                    novalues |= nv;
                    !nv
                })
                .cloned()
                .collect();
            let (pattern, _count, _) = scan_opts(&opts, false)?;
            Action::rounds(HScan {
                key: k,
                pattern,
                novalues,
            })
        }
        "hrandfield" => hrandfield(args)?,
        _ => return Err(Reply::err("internal error: not a hash command")),
    })
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

/// `HRANDFIELD key [count [WITHVALUES]]` (its sampling is shared with SRANDMEMBER:
/// [`long_count`], [`seed`]).
fn hrandfield(args: &[Bytes]) -> Result<Action, Reply> {
    let key = args[1].clone();
    let count = match args.get(2) {
        Some(arg) => Some(long_count(arg)?),
        None => None,
    };
    let with_values = match args.get(3) {
        None => false,
        Some(a) if args.len() == 4 && is(a, "withvalues") => true,
        Some(_) => return Err(syntax()),
    };
    if with_values && count.is_some_and(|c| !(-(i64::MAX / 2)..=i64::MAX / 2).contains(&c)) {
        return Err(Reply::err("value is out of range"));
    }
    let op = KvOp::HRandField {
        key: key.clone(),
        count,
        with_values,
        seed: seed(),
    };
    Ok(single(&key, op, move |r| {
        let OpResult::Pairs { pairs } = r else {
            return unexpected(&r);
        };
        match (count, with_values) {
            (None, _) => pairs
                .into_iter()
                .next()
                .map_or(Reply::Nil, |(f, _)| Reply::Bulk(f)),
            (Some(_), false) => {
                Reply::Array(pairs.into_iter().map(|(f, _)| Reply::Bulk(f)).collect())
            }
            (Some(_), true) => Reply::Pairs(
                pairs
                    .into_iter()
                    .map(|(f, v)| (Reply::Bulk(f), Reply::Bulk(v)))
                    .collect(),
            ),
        }
    }))
}
