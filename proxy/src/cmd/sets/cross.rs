//! Set commands whose keys have different hash slots. When the route table puts every key
//! in one range, the command is still one atomic operation; otherwise the proxy reads each
//! source (`SMEMBERS`, in parallel), computes the result and, for a STORE form, replaces the
//! destination with it (one write). SMOVE across ranges removes the member from the source,
//! then adds it to the destination: two writes, not atomic (`docs/guides/proxy.md`, "Sets").

use std::collections::BTreeSet;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use net::message::kv::{KeyType, KvOp, OpResult, SetAlgebra, SetOp};

use super::reply::{finish_of, int_reply};
use crate::cmd::action::{AsyncCommand, keyed};
use crate::cmd::util::{exec_error, rpc_error, unexpected};
use crate::db::DbRouter;
use crate::keyspace::meta_key;
use crate::resp::Reply;
use crate::route::ExecError;

/// A set command on keys of several hash slots (SINTER, SUNION, SDIFF, SINTERCARD, SMOVE and
/// the STORE forms).
#[derive(Debug, Clone)]
pub struct Cross(pub SetOp);

impl AsyncCommand for Cross {
    fn run<'a>(self: Box<Self>, router: &'a DbRouter<'_>) -> BoxFuture<'a, Reply> {
        Box::pin(run(router, self.0))
    }
}

/// Runs a multi-key set operation, atomically when its keys share a range.
async fn run(router: &DbRouter<'_>, op: SetOp) -> Reply {
    match one_range(router, &op).await {
        Ok(true) => {}
        Ok(false) => return across(router, op).await,
        Err(e) => return exec_error(&e),
    }
    let finish = finish_of(&op);
    let key = op.key().clone();
    let result = router
        .exec(vec![keyed(&key, KvOp::Set { op: op.clone() })])
        .await;
    match result.into_iter().next() {
        Some(Ok(r)) => finish(r),
        // The range split since the table was read: the keys may now span ranges (the range
        // answers CROSSSLOT, or RangeNotFound until the retries run out).
        Some(Err(e)) if stale_split(&e) => match one_range(router, &op).await {
            Ok(false) => across(router, op).await,
            _ => exec_error(&e),
        },
        Some(Err(e)) => exec_error(&e),
        None => Reply::err("internal error: no result"),
    }
}

fn stale_split(e: &ExecError) -> bool {
    match e {
        ExecError::Unavailable(_) => true,
        ExecError::Rpc(net::RpcError::BadRequest { message }) => message.starts_with("CROSSSLOT"),
        _ => false,
    }
}

/// Whether every key of `op` is in one range of the cached route table.
async fn one_range(router: &DbRouter<'_>, op: &SetOp) -> Result<bool, ExecError> {
    let first = router
        .range_of(&meta_key(crate::keyspace::Db::ZERO, op.key()))
        .await?
        .id;
    for k in op.other_keys() {
        if router
            .range_of(&meta_key(crate::keyspace::Db::ZERO, k))
            .await?
            .id
            != first
        {
            return Ok(false);
        }
    }
    Ok(true)
}

async fn across(router: &DbRouter<'_>, op: SetOp) -> Reply {
    match op {
        SetOp::Combine { algebra, key, keys } => {
            let sources: Vec<Bytes> = std::iter::once(key).chain(keys).collect();
            match combine(router, algebra, &sources).await {
                Ok(members) => Reply::Set(members.into_iter().map(Reply::Bulk).collect()),
                Err(r) => r,
            }
        }
        SetOp::InterCard { key, keys, limit } => {
            let sources: Vec<Bytes> = std::iter::once(key).chain(keys).collect();
            match combine(router, SetAlgebra::Inter {}, &sources).await {
                Ok(members) => {
                    let n = members.len() as u64;
                    let n = if limit == 0 { n } else { n.min(limit) };
                    Reply::Int(i64::try_from(n).unwrap_or(i64::MAX))
                }
                Err(r) => r,
            }
        }
        SetOp::Store { algebra, key, keys } => match combine(router, algebra, &keys).await {
            Ok(members) => {
                let op = SetOp::Replace { key, members };
                one(router, op).await.map_or_else(|r| r, int_reply)
            }
            Err(r) => r,
        },
        SetOp::Move { key, dst, member } => smove(router, key, dst, member).await,
        other => Reply::err(format_args!(
            "internal error: {other:?} is not a multi-key set operation"
        )),
    }
}

/// Runs one set operation; its error as the reply.
async fn one(router: &DbRouter<'_>, op: SetOp) -> Result<OpResult, Reply> {
    let key = op.key().clone();
    match router.exec(vec![keyed(&key, KvOp::Set { op })]).await.pop() {
        Some(Ok(r)) => Ok(r),
        Some(Err(e)) => Err(exec_error(&e)),
        None => Err(Reply::err("internal error: no result")),
    }
}

/// Reads every source in parallel (WRONGTYPE if one is not a set) and computes `algebra`.
async fn combine(
    router: &DbRouter<'_>,
    algebra: SetAlgebra,
    sources: &[Bytes],
) -> Result<Vec<Bytes>, Reply> {
    let ops = sources
        .iter()
        .map(|k| {
            keyed(
                k,
                KvOp::Set {
                    op: SetOp::Members { key: k.clone() },
                },
            )
        })
        .collect();
    let mut sets = Vec::with_capacity(sources.len());
    for r in router.exec(ops).await {
        match r {
            Ok(OpResult::Bulks { values }) => sets.push(values.into_iter().collect()),
            Ok(other) => return Err(unexpected(&other)),
            Err(e) => return Err(exec_error(&e)),
        }
    }
    Ok(algebra_of(algebra, sets))
}

/// The result of `algebra` over `sets`, in byte order.
pub fn algebra_of(algebra: SetAlgebra, sets: Vec<BTreeSet<Bytes>>) -> Vec<Bytes> {
    let mut it = sets.into_iter();
    let Some(first) = it.next() else {
        return Vec::new();
    };
    let result = match algebra {
        SetAlgebra::Inter {} => it.fold(first, |acc, s| &acc & &s),
        SetAlgebra::Union {} => it.fold(first, |acc, s| &acc | &s),
        SetAlgebra::Diff {} => it.fold(first, |acc, s| &acc - &s),
    };
    result.into_iter().collect()
}

/// SMOVE across ranges: the types of both keys, then SREM from the source and, if the
/// member was there, SADD to the destination.
async fn smove(router: &DbRouter<'_>, src: Bytes, dst: Bytes, member: Bytes) -> Reply {
    let types = router
        .exec(vec![
            keyed(&src, KvOp::KeyType { key: src.clone() }),
            keyed(&dst, KvOp::KeyType { key: dst.clone() }),
        ])
        .await;
    let mut kinds = Vec::with_capacity(2);
    for r in types {
        match r {
            Ok(OpResult::Type { key_type }) => kinds.push(key_type),
            Ok(other) => return unexpected(&other),
            Err(e) => return exec_error(&e),
        }
    }
    let wrong = || rpc_error(&net::RpcError::WrongType {});
    match kinds[..] {
        [KeyType::None {}, _] => return Reply::Int(0),
        [KeyType::Set {}, KeyType::Set {} | KeyType::None {}] => {}
        _ => return wrong(),
    }
    let rem = SetOp::Rem {
        key: src,
        members: vec![member.clone()],
    };
    match one(router, rem).await {
        Ok(OpResult::Int { value: 0 }) => return Reply::Int(0),
        Ok(OpResult::Int { .. }) => {}
        Ok(other) => return unexpected(&other),
        Err(r) => return r,
    }
    let add = SetOp::Add {
        key: dst,
        members: vec![member],
    };
    match one(router, add).await {
        Ok(_) => Reply::Int(1),
        Err(r) => r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(items: &[&'static str]) -> BTreeSet<Bytes> {
        items
            .iter()
            .map(|s| Bytes::from_static(s.as_bytes()))
            .collect()
    }

    #[test]
    fn the_algebra_matches_redis_on_missing_and_repeated_sets() {
        let a = set(&["1", "2", "3"]);
        let b = set(&["2", "3", "4"]);
        let inter = algebra_of(SetAlgebra::Inter {}, vec![a.clone(), b.clone()]);
        assert_eq!(inter, [b"2", b"3"].map(|s| Bytes::from_static(s)));
        let union = algebra_of(SetAlgebra::Union {}, vec![a.clone(), set(&[]), b.clone()]);
        assert_eq!(union.len(), 4);
        let diff = algebra_of(SetAlgebra::Diff {}, vec![a.clone(), b]);
        assert_eq!(diff, [b"1"].map(|s| Bytes::from_static(s)));
        assert!(algebra_of(SetAlgebra::Diff {}, vec![a.clone(), a.clone()]).is_empty());
        assert!(algebra_of(SetAlgebra::Inter {}, vec![a, set(&[])]).is_empty());
    }
}
