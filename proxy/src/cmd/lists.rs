//! Commands on lists (`t_list.c`). Every element of a key lives in the range of its
//! metadata entry, so a one-key command is one operation on one range.

use bytes::Bytes;
use net::message::kv::{KvOp, ListOp, OpResult};

use super::util::unexpected;
use super::{Action, R, Spec, single};
use crate::resp::Reply;

/// The commands of this module, sorted by name (arity, flags and key positions as Redis 7.0
/// reports them).
pub static SPECS: &[Spec] = &[spec!("llen", 2, R, 1, 1, 1)];

/// Dispatches a command of [`SPECS`] (arity already checked).
pub fn dispatch(name: &'static str, args: &[Bytes]) -> Action {
    match build(name, args) {
        Ok(a) => a,
        Err(r) => Action::Reply(r),
    }
}

fn build(name: &'static str, args: &[Bytes]) -> Result<Action, Reply> {
    let key = &args[1];
    Ok(match name {
        "llen" => {
            let op = KvOp::List {
                op: ListOp::Len { key: key.clone() },
            };
            single(key, op, |r| match r {
                OpResult::Int { value } => Reply::Int(value),
                other => unexpected(&other),
            })
        }
        _ => return Err(Reply::err("internal error: not a command of this module")),
    })
}
