//! The replies of set operations' results, shared by the one-range commands (`sets`) and
//! the commands across ranges ([`super::cross`]). A leaf: it imports no other command module
//! but `util`.

use net::message::kv::{OpResult, SetOp};

use crate::cmd::util::unexpected;
use crate::resp::Reply;

pub fn int_reply(r: OpResult) -> Reply {
    match r {
        OpResult::Int { value } => Reply::Int(value),
        OpResult::Bool { value } => Reply::Int(i64::from(value)),
        other => unexpected(&other),
    }
}

pub fn first_int(r: OpResult) -> Reply {
    match r {
        OpResult::Ints { values } => Reply::Int(values.first().copied().unwrap_or(0)),
        other => unexpected(&other),
    }
}

/// Members as a RESP3 set (an array in RESP2).
pub fn set_reply(r: OpResult) -> Reply {
    match r {
        OpResult::Bulks { values } => Reply::Set(values.into_iter().map(Reply::Bulk).collect()),
        other => unexpected(&other),
    }
}

pub fn array_reply(r: OpResult) -> Reply {
    match r {
        OpResult::Bulks { values } => Reply::Array(values.into_iter().map(Reply::Bulk).collect()),
        other => unexpected(&other),
    }
}

pub fn one_or_nil(r: OpResult) -> Reply {
    match r {
        OpResult::Bulks { mut values } => values.pop().map_or(Reply::Nil, Reply::Bulk),
        other => unexpected(&other),
    }
}

/// The reply of a multi-key operation's result.
pub fn finish_of(op: &SetOp) -> fn(OpResult) -> Reply {
    match op {
        SetOp::Combine { .. } => set_reply,
        _ => int_reply,
    }
}
