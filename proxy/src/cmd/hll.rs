//! HyperLogLog commands (`hyperloglog.c`): PFADD, PFCOUNT, PFMERGE, each one operation in the
//! state machine of the keys' range (`ds-node/src/range/hll.rs`), which keeps Redis's exact
//! string representation. PFCOUNT of one key caches its estimate in the string as Redis does,
//! so it goes through the log like a write. Keys of several ranges answer `CROSSSLOT` (as in
//! Redis Cluster; a `{hash tag}` keeps them together).

use bytes::Bytes;
use net::message::hll::HllOp;
use net::message::kv::{KvOp, OpResult};

use super::action::{Action, single};
use super::spec::{RS, Spec, W, WD, spec};
use super::util::unexpected;
use crate::resp::Reply;

/// The commands of this module, sorted by name.
pub static SPECS: &[Spec] = &[
    spec!("pfadd", -2, W, 1, 1, 1),
    spec!("pfcount", -2, RS, 1, -1, 1),
    spec!("pfmerge", -2, WD, 1, -1, 1),
];

/// Dispatches a command of [`SPECS`] (arity already checked).
pub fn dispatch(name: &str, args: &[Bytes]) -> Action {
    let key = args[1].clone();
    let rest = args[2..].to_vec();
    let op = match name {
        "pfadd" => HllOp::Add {
            key: key.clone(),
            elements: rest,
        },
        "pfcount" => HllOp::Count {
            key: key.clone(),
            others: rest,
        },
        _ => HllOp::Merge {
            key: key.clone(),
            sources: rest,
        },
    };
    single(&key, KvOp::Hll { op }, |r| match r {
        OpResult::Int { value } => Reply::Int(value),
        OpResult::Unit {} => Reply::OK,
        other => unexpected(&other),
    })
}
