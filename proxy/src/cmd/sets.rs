//! Commands on sets (`t_set.c`). Every member of a key lives in the range of its metadata
//! entry, so a one-key command is one operation on one range. A command on several keys
//! (SMOVE, SINTER, SUNION, SDIFF, SINTERCARD and the STORE forms) is one atomic operation
//! when its keys share a range, and otherwise reads each set and writes the result
//! ([`cross`]; `docs/guides/proxy.md`, "Sets").

pub mod cross;
mod reply;

use bytes::Bytes;
use net::message::kv::{KvOp, OpResult, SetAlgebra, SetOp};

use super::action::{Action, single};
use super::opts::{long_count, scan_opts, seed};
use super::spec::{R, RS, Spec, W, WD, WF, spec};
use super::util::{glob_match, is, syntax, unexpected};
use crate::resp::Reply;
use reply::{array_reply, finish_of, first_int, int_reply, one_or_nil, set_reply};

/// `SINTERCARD`'s flags (its keys follow `numkeys`).
const RM: &[&str] = &["readonly", "movablekeys"];

/// The commands of this module, sorted by name (arity, flags and key positions as Redis 7.0
/// reports them).
pub static SPECS: &[Spec] = &[
    spec!("sadd", -3, W, 1, 1, 1),
    spec!("scard", 2, R, 1, 1, 1),
    spec!("sdiff", -2, RS, 1, -1, 1),
    spec!("sdiffstore", -3, WD, 1, -1, 1),
    spec!("sinter", -2, RS, 1, -1, 1),
    spec!("sintercard", -3, RM, 0, 0, 0),
    spec!("sinterstore", -3, WD, 1, -1, 1),
    spec!("sismember", 3, R, 1, 1, 1),
    spec!("smembers", 2, RS, 1, 1, 1),
    spec!("smismember", -3, R, 1, 1, 1),
    spec!("smove", 4, WF, 1, 2, 1),
    spec!("spop", -2, WF, 1, 1, 1),
    spec!("srandmember", -2, RS, 1, 1, 1),
    spec!("srem", -3, WF, 1, 1, 1),
    spec!("sscan", -3, RS, 1, 1, 1),
    spec!("sunion", -2, RS, 1, -1, 1),
    spec!("sunionstore", -3, WD, 1, -1, 1),
];

/// Dispatches a command of [`SPECS`] (arity already checked).
pub fn dispatch(name: &'static str, args: &[Bytes]) -> Action {
    match build(name, args) {
        Ok(a) => a,
        Err(r) => Action::Reply(r),
    }
}

fn set_op(key: &Bytes, op: SetOp, finish: fn(OpResult) -> Reply) -> Action {
    single(key, KvOp::Set { op }, finish)
}

fn build(name: &'static str, args: &[Bytes]) -> Result<Action, Reply> {
    let key = &args[1];
    let k = key.clone();
    let rest = || args[2..].to_vec();
    Ok(match name {
        "sadd" => set_op(
            key,
            SetOp::Add {
                key: k,
                members: rest(),
            },
            int_reply,
        ),
        "srem" => set_op(
            key,
            SetOp::Rem {
                key: k,
                members: rest(),
            },
            int_reply,
        ),
        "scard" => set_op(key, SetOp::Card { key: k }, int_reply),
        "smembers" => set_op(key, SetOp::Members { key: k }, set_reply),
        "sismember" => set_op(
            key,
            SetOp::IsMember {
                key: k,
                members: rest(),
            },
            first_int,
        ),
        "smismember" => {
            let op = SetOp::IsMember {
                key: k,
                members: rest(),
            };
            set_op(key, op, |r| match r {
                OpResult::Ints { values } => {
                    Reply::Array(values.into_iter().map(Reply::Int).collect())
                }
                other => unexpected(&other),
            })
        }
        "spop" => spop(k, args)?,
        "srandmember" => srandmember(k, args)?,
        "sscan" => sscan(k, args)?,
        "smove" => multi_key(SetOp::Move {
            key: k,
            dst: args[2].clone(),
            member: args[3].clone(),
        }),
        "sinter" | "sunion" | "sdiff" => multi_key(SetOp::Combine {
            algebra: algebra(name),
            key: k,
            keys: rest(),
        }),
        "sinterstore" | "sunionstore" | "sdiffstore" => multi_key(SetOp::Store {
            algebra: algebra(name),
            key: k,
            keys: rest(),
        }),
        "sintercard" => sintercard(args)?,
        _ => return Err(Reply::err("internal error: not a command of this module")),
    })
}

fn algebra(name: &str) -> SetAlgebra {
    match name.trim_end_matches("store") {
        "sinter" => SetAlgebra::Inter {},
        "sunion" => SetAlgebra::Union {},
        _ => SetAlgebra::Diff {},
    }
}

/// A command on several sets: one operation when every key has the same hash slot (so
/// the same range), else an asynchronous command that checks the ranges ([`cross`]).
fn multi_key(op: SetOp) -> Action {
    let slot = crate::keyspace::slot(op.key());
    if op
        .other_keys()
        .iter()
        .all(|k| crate::keyspace::slot(k) == slot)
    {
        let key = op.key().clone();
        let finish = finish_of(&op);
        return single(&key, KvOp::Set { op }, finish);
    }
    Action::rounds(cross::Cross(op))
}

fn spop(key: Bytes, args: &[Bytes]) -> Result<Action, Reply> {
    if args.len() > 3 {
        return Err(syntax());
    }
    let Some(arg) = args.get(2) else {
        return Ok(set_op(
            &key.clone(),
            SetOp::Pop { key, count: None },
            one_or_nil,
        ));
    };
    let positive = || Reply::err("value is out of range, must be positive");
    let n = super::util::parse_i64(arg).ok_or_else(positive)?;
    let count = u64::try_from(n).map_err(|_| positive())?;
    let op = SetOp::Pop {
        key: key.clone(),
        count: Some(count),
    };
    Ok(set_op(&key, op, set_reply))
}

fn srandmember(key: Bytes, args: &[Bytes]) -> Result<Action, Reply> {
    if args.len() > 3 {
        return Err(syntax());
    }
    let (count, finish): (i64, fn(OpResult) -> Reply) = match args.get(2) {
        None => (1, one_or_nil),
        Some(arg) => (long_count(arg)?, array_reply),
    };
    let op = SetOp::RandMember {
        key: key.clone(),
        count,
        seed: seed(),
    };
    Ok(set_op(&key, op, finish))
}

/// `SINTERCARD numkeys key [key ...] [LIMIT limit]`.
fn sintercard(args: &[Bytes]) -> Result<Action, Reply> {
    let numkeys_err = || Reply::err("numkeys should be greater than 0");
    let numkeys = super::util::parse_i64(&args[1]).ok_or_else(numkeys_err)?;
    let numkeys = usize::try_from(numkeys)
        .ok()
        .filter(|&n| n > 0)
        .ok_or_else(numkeys_err)?;
    if numkeys > args.len() - 2 {
        return Err(Reply::err(
            "Number of keys can't be greater than number of args",
        ));
    }
    let keys = &args[2..2 + numkeys];
    let mut limit = 0u64;
    let mut opts = args[2 + numkeys..].iter();
    while let Some(opt) = opts.next() {
        match opts.next() {
            Some(v) if is(opt, "limit") => {
                let bad = || Reply::err("LIMIT can't be negative");
                let n = super::util::parse_i64(v).ok_or_else(bad)?;
                limit = u64::try_from(n).map_err(|_| bad())?;
            }
            _ => return Err(syntax()),
        }
    }
    Ok(multi_key(SetOp::InterCard {
        key: keys[0].clone(),
        keys: keys[1..].to_vec(),
        limit,
    }))
}

/// `SSCAN key cursor [MATCH pattern] [COUNT count]`: the cursor is the first 8 bytes of the
/// member to resume at (`docs/guides/proxy.md`, "Sets").
fn sscan(key: Bytes, args: &[Bytes]) -> Result<Action, Reply> {
    let cursor = std::str::from_utf8(&args[2])
        .ok()
        .filter(|s| s.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|s| s.parse::<u64>().ok())
        .ok_or_else(|| Reply::err("invalid cursor"))?;
    let (pattern, count, _) = scan_opts(&args[3..], false)?;
    let op = SetOp::Scan {
        key: key.clone(),
        cursor,
        count: u32::try_from(count).unwrap_or(u32::MAX),
    };
    Ok(single(&key, KvOp::Set { op }, move |r| {
        let OpResult::Scan { pairs, next } = r else {
            return unexpected(&r);
        };
        let next = next
            .and_then(|n| <[u8; 8]>::try_from(&n[..]).ok())
            .map_or(0, u64::from_be_bytes);
        let members = pairs
            .into_iter()
            .filter(|(m, _)| pattern.as_deref().is_none_or(|p| glob_match(p, m)))
            .map(|(m, _)| Reply::Bulk(m))
            .collect();
        Reply::Array(vec![
            Reply::Bulk(Bytes::from(next.to_string())),
            Reply::Array(members),
        ])
    }))
}
