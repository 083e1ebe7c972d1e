//! The conversions between the proxy's [`Reply`] and a script's [`Value`], and the proxy's
//! own Lua VM (scripts without keys, `SCRIPT LOAD`).

use std::cell::RefCell;

use bytes::Bytes;
use script::{Limits, Resp, Value, Vm};

use crate::resp::Reply;
use crate::resp::reply::{format_double, format_human_double};

/// `reply` as a script sees it under protocol `resp` (RESP2 flattens maps, turns doubles into
/// strings and booleans into integers, as a RESP2 client would see them).
pub fn to_value(reply: Reply, resp: Resp) -> Value {
    let three = resp == Resp::Three;
    let all = |items: Vec<Reply>| items.into_iter().map(|r| to_value(r, resp)).collect();
    let flat = |pairs: Vec<(Reply, Reply)>| {
        pairs
            .into_iter()
            .flat_map(|(k, v)| [to_value(k, resp), to_value(v, resp)])
            .collect()
    };
    match reply {
        Reply::Simple(s) => Value::Status(s.into()),
        Reply::Status(s) => Value::Status(s),
        Reply::Error(e) => Value::Error(e),
        Reply::Int(i) => Value::Int(i),
        Reply::Bulk(b) => Value::Bulk(b),
        Reply::Nil | Reply::NilArray => Value::Nil,
        Reply::Array(items) | Reply::Push(items) | Reply::Seq(items) => Value::Array(all(items)),
        Reply::Set(items) if three => Value::Set(all(items)),
        Reply::Set(items) => Value::Array(all(items)),
        Reply::Map(pairs) if three => Value::Map(
            pairs
                .into_iter()
                .map(|(k, v)| (to_value(k, resp), to_value(v, resp)))
                .collect(),
        ),
        Reply::Map(pairs) => Value::Array(flat(pairs)),
        Reply::Pairs(pairs) if three => Value::Array(
            pairs
                .into_iter()
                .map(|(k, v)| Value::Array(vec![to_value(k, resp), to_value(v, resp)]))
                .collect(),
        ),
        Reply::Pairs(pairs) => Value::Array(flat(pairs)),
        Reply::Double(d) if three => Value::Double(d),
        Reply::Double(d) => Value::Bulk(Bytes::from(format_double(d))),
        Reply::HumanDouble(d) if three => Value::Double(d),
        Reply::HumanDouble(d) => Value::Bulk(Bytes::from(format_human_double(d))),
        Reply::Bool(b) if three => Value::Bool(b),
        Reply::Bool(b) => Value::Int(i64::from(b)),
        Reply::BigNumber(n) if three => Value::BigNumber(n),
        Reply::BigNumber(n) => Value::Bulk(Bytes::from(n)),
        Reply::Verbatim(text) if three => Value::Verbatim("txt".into(), text),
        Reply::Verbatim(text) => Value::Bulk(text),
    }
}

/// A script's reply as the client gets it.
pub fn to_reply(value: Value) -> Reply {
    let all = |items: Vec<Value>| items.into_iter().map(to_reply).collect();
    match value {
        Value::Nil => Reply::Nil,
        Value::Int(i) => Reply::Int(i),
        Value::Bulk(b) => Reply::Bulk(b),
        Value::Status(s) => Reply::Status(s),
        Value::Error(e) => Reply::Error(e),
        Value::Array(items) => Reply::Array(all(items)),
        Value::Set(items) => Reply::Set(all(items)),
        Value::Map(pairs) => Reply::Map(
            pairs
                .into_iter()
                .map(|(k, v)| (to_reply(k), to_reply(v)))
                .collect(),
        ),
        Value::Double(d) => Reply::Double(d),
        Value::Bool(b) => Reply::Bool(b),
        Value::BigNumber(n) => Reply::BigNumber(n),
        Value::Verbatim(_, text) => Reply::Verbatim(text),
    }
}

/// Instructions a script run by the proxy itself (no keys, until its first key; `SCRIPT
/// LOAD` only compiles) may take: a range's budget, since the run leaves the async workers
/// (`cmd::scripting`, `discover`) and `SCRIPT KILL` stops it.
const PROXY_MAX_INSTRUCTIONS: u64 = 500_000_000;

thread_local! {
    static VM: RefCell<Option<Vm>> = const { RefCell::new(None) };
}

/// Runs `f` with this thread's VM (built on first use).
pub fn with_vm<R>(f: impl FnOnce(&mut Vm) -> R) -> Result<R, Reply> {
    VM.with(|cell| {
        let mut slot = cell
            .try_borrow_mut()
            .map_err(|_| Reply::err("This Redis command is not allowed from script"))?;
        if slot.is_none() {
            let limits = Limits {
                max_instructions: PROXY_MAX_INSTRUCTIONS,
                ..Limits::default()
            };
            *slot = Some(Vm::new(limits).map_err(|e| Reply::err(format_args!("{e}")))?);
        }
        match slot.as_mut() {
            Some(vm) => Ok(f(vm)),
            None => Err(Reply::err("scripting unavailable")),
        }
    })
}
