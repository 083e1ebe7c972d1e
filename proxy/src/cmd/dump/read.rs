//! `DUMP`'s read of a key: its type and whole value in one atomic `Multi` (one operation
//! per type; all but the key's own answer `WRONGTYPE` or empty), shared by `DUMP` and
//! `MIGRATE`.

use bytes::Bytes;
use net::message::kv::{KvOp, KvResponse, OpResult};
use net::message::list::ListOp;
use net::message::set::SetOp;
use net::message::zset::{ZSetOp, by};

use super::super::util::exec_error;
use crate::rdb::Object;
use crate::resp::Reply;
use crate::route::ExecError;

/// The operations reading `key`'s type and value; [`value_of`] reads their results.
pub fn value_ops(key: &Bytes) -> Vec<KvOp> {
    let k = || key.clone();
    vec![
        KvOp::KeyType { key: k() },
        KvOp::StrGet { key: k() },
        KvOp::List {
            op: ListOp::Range {
                key: k(),
                start: 0,
                stop: -1,
            },
        },
        KvOp::Set {
            op: SetOp::Members { key: k() },
        },
        KvOp::ZSet {
            op: ZSetOp::Range {
                key: k(),
                by: by::RANK,
                min: Bytes::from_static(b"0"),
                max: Bytes::from_static(b"-1"),
                rev: false,
                offset: 0,
                count: -1,
            },
        },
        KvOp::HGetAll { key: k() },
    ]
}

/// The key's value out of the `DUMP` read: the first operation of its type that answered.
pub fn value_of(results: Vec<KvResponse>) -> Result<Option<Object>, Reply> {
    let mut it = results.into_iter();
    if let Some(KvResponse::Err { error }) = it.next() {
        return Err(exec_error(&ExecError::Rpc(error)));
    }
    for (i, r) in it.enumerate() {
        let KvResponse::Ok { result } = r else {
            continue;
        };
        return Ok(Some(match (i, result) {
            (0, OpResult::Value { value: None }) => continue,
            (0, OpResult::Value { value: Some(v) }) => Object::String(v),
            (1, OpResult::Bulks { values }) if !values.is_empty() => Object::List(values),
            (2, OpResult::Bulks { values }) if !values.is_empty() => Object::Set(values),
            (3, OpResult::Scored { items }) if !items.is_empty() => Object::ZSet(items),
            (4, OpResult::Pairs { pairs }) if !pairs.is_empty() => Object::Hash(pairs),
            _ => continue,
        }));
    }
    Ok(None)
}
