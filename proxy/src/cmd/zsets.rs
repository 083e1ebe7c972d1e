//! Commands on sorted sets (`t_zset.c`). Every element of a key lives in the range of its
//! metadata entry, so a one-key command is one operation on one range. The commands of
//! several keys (`ZUNION`…, `ZRANGESTORE`, `ZMPOP`) are one operation when their keys share a
//! range (atomic) and a read-compute-write across ranges otherwise ([`multi`]).

mod blocking;
mod multi;
pub mod parse;
mod reply;

use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use net::message::kv::{KvOp, OpResult, ZSetOp};
use net::message::zset::{add_flags, by, combine};

use super::action::{Action, single};
use super::opts::scan_opts;
use super::spec::{R, RS, Spec, W, WD, WF, WS, spec};
use super::util::{int, is, syntax, unexpected};
use crate::resp::Reply;
use reply::scored;

pub use multi::ZAsync;

const RM: &[&str] = &["readonly", "movablekeys"];
const WNBF: &[&str] = &["write", "noscript", "blocking", "fast"];
const WBM: &[&str] = &["write", "blocking", "movablekeys"];
const WDM: &[&str] = &["write", "denyoom", "movablekeys"];
const WM: &[&str] = &["write", "movablekeys"];

/// The commands of this module, sorted by name (arity, flags and key positions as Redis 7.0
/// reports them).
pub static SPECS: &[Spec] = &[
    spec!("bzmpop", -5, WBM, 0, 0, 0),
    spec!("bzpopmax", -3, WNBF, 1, -2, 1),
    spec!("bzpopmin", -3, WNBF, 1, -2, 1),
    spec!("zadd", -4, W, 1, 1, 1),
    spec!("zcard", 2, R, 1, 1, 1),
    spec!("zcount", 4, R, 1, 1, 1),
    spec!("zdiff", -3, RM, 0, 0, 0),
    spec!("zdiffstore", -4, WDM, 1, 1, 1),
    spec!("zincrby", 4, W, 1, 1, 1),
    spec!("zinter", -3, RM, 0, 0, 0),
    spec!("zintercard", -3, RM, 0, 0, 0),
    spec!("zinterstore", -4, WDM, 1, 1, 1),
    spec!("zlexcount", 4, R, 1, 1, 1),
    spec!("zmpop", -4, WM, 0, 0, 0),
    spec!("zmscore", -3, R, 1, 1, 1),
    spec!("zpopmax", -2, WF, 1, 1, 1),
    spec!("zpopmin", -2, WF, 1, 1, 1),
    spec!("zrandmember", -2, RS, 1, 1, 1),
    spec!("zrange", -4, RS, 1, 1, 1),
    spec!("zrangebylex", -4, RS, 1, 1, 1),
    spec!("zrangebyscore", -4, RS, 1, 1, 1),
    spec!("zrangestore", -5, WD, 1, 2, 1),
    spec!("zrank", 3, R, 1, 1, 1),
    spec!("zrem", -3, WF, 1, 1, 1),
    spec!("zremrangebylex", 4, WS, 1, 1, 1),
    spec!("zremrangebyrank", 4, WS, 1, 1, 1),
    spec!("zremrangebyscore", 4, WS, 1, 1, 1),
    spec!("zrevrange", -4, RS, 1, 1, 1),
    spec!("zrevrangebylex", -4, RS, 1, 1, 1),
    spec!("zrevrangebyscore", -4, RS, 1, 1, 1),
    spec!("zrevrank", 3, R, 1, 1, 1),
    spec!("zscan", -3, RS, 1, 1, 1),
    spec!("zscore", 3, R, 1, 1, 1),
    spec!("zunion", -3, RM, 0, 0, 0),
    spec!("zunionstore", -4, WDM, 1, 1, 1),
];

/// Dispatches a command of [`SPECS`] (arity already checked).
pub fn dispatch(name: &'static str, args: &[Bytes]) -> Action {
    match build(name, args) {
        Ok(a) => a,
        Err(r) => Action::Reply(r),
    }
}

fn zop(op: ZSetOp) -> KvOp {
    KvOp::ZSet { op }
}

fn build(name: &'static str, args: &[Bytes]) -> Result<Action, Reply> {
    let key = &args[1];
    let k = key.clone();
    Ok(match name {
        "zcard" => single(key, zop(ZSetOp::Card { key: k }), int_reply),
        "zadd" => {
            let (flags, scores, members) = parse::zadd(args)?;
            let op = ZSetOp::Add {
                key: k,
                flags,
                scores,
                members,
            };
            single(key, zop(op), add_reply)
        }
        "zincrby" => {
            let op = ZSetOp::Add {
                key: k,
                flags: add_flags::INCR,
                scores: vec![parse::score(&args[2])?],
                members: vec![args[3].clone()],
            };
            single(key, zop(op), add_reply)
        }
        "zrem" => {
            let op = ZSetOp::Rem {
                key: k,
                members: args[2..].to_vec(),
            };
            single(key, zop(op), int_reply)
        }
        "zscore" | "zmscore" => {
            let many = name == "zmscore";
            let op = ZSetOp::Scores {
                key: k,
                members: args[2..].to_vec(),
            };
            single(key, zop(op), move |r| match r {
                OpResult::Floats { values } if many => {
                    Reply::Array(values.into_iter().map(opt_double).collect())
                }
                OpResult::Floats { mut values } => opt_double(values.pop().flatten()),
                other => unexpected(&other),
            })
        }
        "zrank" | "zrevrank" => {
            let op = ZSetOp::Rank {
                key: k,
                member: args[2].clone(),
                rev: name == "zrevrank",
            };
            single(key, zop(op), |r| match r {
                OpResult::Ints { values } => values.first().map_or(Reply::Nil, |v| Reply::Int(*v)),
                other => unexpected(&other),
            })
        }
        "zrange" | "zrangebyscore" | "zrevrangebyscore" | "zrangebylex" | "zrevrangebylex"
        | "zrevrange" => range_cmd(name, args)?,
        "zrangestore" => {
            let r = parse::range(args, 2, true, None, None)?;
            let op = ZSetOp::RangeStore {
                key: k,
                keys: vec![args[2].clone()],
                by: r.by,
                min: r.min,
                max: r.max,
                rev: r.rev,
                offset: r.offset,
                count: r.count,
            };
            Action::rounds(ZAsync::Multi {
                op,
                withscores: false,
            })
        }
        "zcount" | "zlexcount" => {
            let op = ZSetOp::Count {
                key: k,
                by: if name == "zcount" { by::SCORE } else { by::LEX },
                min: args[2].clone(),
                max: args[3].clone(),
            };
            single(key, zop(op), int_reply)
        }
        "zremrangebyrank" | "zremrangebyscore" | "zremrangebylex" => {
            let kind = match name {
                "zremrangebyrank" => by::RANK,
                "zremrangebyscore" => by::SCORE,
                _ => by::LEX,
            };
            let op = ZSetOp::RemRange {
                key: k,
                by: kind,
                min: args[2].clone(),
                max: args[3].clone(),
            };
            single(key, zop(op), int_reply)
        }
        "zpopmin" | "zpopmax" => pop_cmd(name, args)?,
        "bzpopmin" | "bzpopmax" => {
            let timeout = crate::blocking::parse_timeout(&args[args.len() - 1])?;
            let pop = blocking::ZPop {
                keys: args[1..args.len() - 1].to_vec(),
                max: name == "bzpopmax",
                count: None,
            };
            blocking::block(pop, timeout)
        }
        "bzmpop" => {
            let timeout = crate::blocking::parse_timeout(&args[1])?;
            // ZMPOP's arguments are BZMPOP's without the timeout.
            let rest: Vec<Bytes> = std::iter::once(args[0].clone())
                .chain(args[2..].iter().cloned())
                .collect();
            let (keys, max, count) = parse::zmpop(&rest)?;
            let pop = blocking::ZPop {
                keys,
                max,
                count: Some(count),
            };
            blocking::block(pop, timeout)
        }
        "zmpop" => {
            let (keys, max, count) = parse::zmpop(args)?;
            let op = ZSetOp::Pop {
                key: keys[0].clone(),
                keys: keys[1..].to_vec(),
                max,
                count,
                named: true,
            };
            Action::rounds(ZAsync::Multi {
                op,
                withscores: true,
            })
        }
        "zunion" | "zinter" | "zdiff" | "zunionstore" | "zinterstore" | "zdiffstore"
        | "zintercard" => combine_cmd(name, args)?,
        "zrandmember" => randmember_cmd(args)?,
        "zscan" => {
            std::str::from_utf8(&args[2])
                .ok()
                .and_then(|s| s.parse::<u64>().ok())
                .ok_or_else(|| Reply::err("invalid cursor"))?;
            let (pattern, _count, _) = scan_opts(&args[3..], false)?;
            Action::rounds(ZAsync::Scan { key: k, pattern })
        }
        _ => return Err(Reply::err("internal error: not a command of this module")),
    })
}

fn range_cmd(name: &'static str, args: &[Bytes]) -> Result<Action, Reply> {
    let (kind, rev) = match name {
        "zrange" => (None, None),
        "zrangebyscore" => (Some(by::SCORE), Some(false)),
        "zrevrangebyscore" => (Some(by::SCORE), Some(true)),
        "zrangebylex" => (Some(by::LEX), Some(false)),
        "zrevrangebylex" => (Some(by::LEX), Some(true)),
        _ => (Some(by::RANK), Some(true)),
    };
    let r = parse::range(args, 1, false, kind, rev)?;
    let op = ZSetOp::Range {
        key: args[1].clone(),
        by: r.by,
        min: r.min,
        max: r.max,
        rev: r.rev,
        offset: r.offset,
        count: r.count,
    };
    let withscores = r.withscores;
    Ok(single(&args[1], zop(op), move |res| match res {
        OpResult::Scored { items } => scored(items, withscores),
        other => unexpected(&other),
    }))
}

fn pop_cmd(name: &'static str, args: &[Bytes]) -> Result<Action, Reply> {
    if args.len() > 3 {
        return Err(syntax());
    }
    let count = match args.get(2) {
        None => None,
        Some(c) => Some(
            super::util::parse_i64(c)
                .and_then(|v| u64::try_from(v).ok())
                .ok_or_else(|| Reply::err("value is out of range, must be positive"))?,
        ),
    };
    let op = ZSetOp::Pop {
        key: args[1].clone(),
        keys: Vec::new(),
        max: name == "zpopmax",
        count: count.unwrap_or(1),
        named: false,
    };
    Ok(single(&args[1], zop(op), move |res| match res {
        // RESP3 nests the pairs only when a count was given.
        OpResult::Scored { items } if count.is_some() => scored(items, true),
        OpResult::Scored { items } => Reply::Array(
            items
                .into_iter()
                .flat_map(|(m, s)| [Reply::Bulk(m), Reply::Double(s)])
                .collect(),
        ),
        other => unexpected(&other),
    }))
}

fn combine_cmd(name: &'static str, args: &[Bytes]) -> Result<Action, Reply> {
    let store = name.ends_with("store");
    let card = name == "zintercard";
    let kind = match name {
        "zunion" | "zunionstore" => combine::UNION,
        "zdiff" | "zdiffstore" => combine::DIFF,
        _ => combine::INTER,
    };
    let numkeys_at = if store { 2 } else { 1 };
    let c = parse::combine_args(name, args, numkeys_at, kind, store, card)?;
    let op = if card {
        ZSetOp::InterCard {
            key: c.keys[0].clone(),
            keys: c.keys,
            limit: c.limit,
        }
    } else {
        ZSetOp::Combine {
            key: if store {
                args[1].clone()
            } else {
                c.keys[0].clone()
            },
            keys: c.keys,
            kind,
            weights: c.weights,
            aggregate: c.aggregate,
            store,
        }
    };
    Ok(Action::rounds(ZAsync::Multi {
        op,
        withscores: c.withscores,
    }))
}

fn randmember_cmd(args: &[Bytes]) -> Result<Action, Reply> {
    let seed = next_seed();
    let Some(c) = args.get(2) else {
        let op = ZSetOp::RandMember {
            key: args[1].clone(),
            count: 1,
            single: true,
            seed,
        };
        return Ok(single(&args[1], zop(op), |r| match r {
            OpResult::Scored { items } => items
                .into_iter()
                .next()
                .map_or(Reply::Nil, |(m, _)| Reply::Bulk(m)),
            other => unexpected(&other),
        }));
    };
    let count = int(c)?;
    if count == i64::MIN {
        return Err(Reply::err(
            "value is out of range, value must between -9223372036854775807 and 9223372036854775807",
        ));
    }
    let withscores = match args.get(3) {
        None => false,
        Some(a) if args.len() == 4 && is(a, "withscores") => true,
        Some(_) => return Err(syntax()),
    };
    if withscores && !(-(i64::MAX / 2)..=i64::MAX / 2).contains(&count) {
        return Err(Reply::err("value is out of range"));
    }
    let op = ZSetOp::RandMember {
        key: args[1].clone(),
        count,
        single: false,
        seed,
    };
    Ok(single(&args[1], zop(op), move |r| match r {
        OpResult::Scored { items } => scored(items, withscores),
        other => unexpected(&other),
    }))
}

/// A seed for ZRANDMEMBER: the clock mixed with a counter (the shard draws from it).
fn next_seed() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    crate::shared::now_ms() ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

fn opt_double(v: Option<f64>) -> Reply {
    v.map_or(Reply::Nil, Reply::Double)
}

fn int_reply(r: OpResult) -> Reply {
    match r {
        OpResult::Int { value } => Reply::Int(value),
        other => unexpected(&other),
    }
}

fn add_reply(r: OpResult) -> Reply {
    match r {
        OpResult::Int { value } => Reply::Int(value),
        OpResult::Floats { mut values } => opt_double(values.pop().flatten()),
        other => unexpected(&other),
    }
}
