//! Sorted-set commands of several keys and ZSCAN, run alone at their place in the pipeline.
//!
//! Keys in one range (by the cached route table): one operation carrying all of them,
//! applied atomically by the range. Keys across ranges (or a stale table that the range
//! refuses with `RangeNotFound` or `CROSSSLOT`): the proxy reads every source (`Combine` of one source, which
//! reads sorted sets and sets alike), computes the result with the shards' own algebra, and
//! writes the destination with one `Replace`. That path is not atomic: a source written
//! between the reads and the write is seen or not, and `ZMPOP` pops from the first non-empty
//! key in order, one key at a time.

use bytes::Bytes;
use futures_util::future::BoxFuture;
use net::RpcError;
use net::message::kv::{KvOp, OpResult, ZSetOp};
use net::message::zset::algebra::{Source, compute, inter};
use net::message::zset::combine;

use super::reply::scored;
use crate::cmd::action::{AsyncCommand, keyed};
use crate::cmd::scan::Matcher;
use crate::cmd::util::{exec_error, unexpected};
use crate::db::DbRouter;
use crate::glob::Pattern;
use crate::resp::Reply;
use crate::route::ExecError;

/// A multi-round sorted-set command.
#[derive(Debug, Clone)]
pub enum ZAsync {
    /// An operation naming several keys (`ZUNION`…, `ZINTERCARD`, `ZRANGESTORE`, `ZMPOP`).
    Multi {
        /// The operation.
        op: ZSetOp,
        /// WITHSCORES (non-STORE forms).
        withscores: bool,
    },
    /// `ZSCAN key cursor [MATCH p]`: the whole sorted set, cursor 0.
    Scan {
        /// The key.
        key: Bytes,
        /// MATCH pattern.
        pattern: Option<Bytes>,
    },
}

impl AsyncCommand for ZAsync {
    fn run<'a>(self: Box<Self>, router: &'a DbRouter<'_>) -> BoxFuture<'a, Reply> {
        Box::pin(run(router, *self))
    }
}

/// Runs a multi-round sorted-set command.
async fn run(router: &DbRouter<'_>, cmd: ZAsync) -> Reply {
    match cmd {
        ZAsync::Multi { op, withscores } => {
            if one_range(router, &op).await {
                match exec(router, op.clone()).await {
                    Err(ExecError::Rpc(e)) if spans_ranges(&e) => {}
                    res => return finish(&op, withscores, res),
                }
            }
            match across(router, &op).await {
                Ok(r) => finish(&op, withscores, Ok(r)),
                Err(e) => exec_error(&e),
            }
        }
        ZAsync::Scan { key, pattern } => zscan(router, key, pattern).await,
    }
}

async fn exec(router: &DbRouter<'_>, op: ZSetOp) -> Result<OpResult, ExecError> {
    let key = op.key().clone();
    let mut res = router.exec(vec![keyed(&key, KvOp::ZSet { op })]).await;
    res.pop()
        .unwrap_or_else(|| Err(ExecError::Unavailable("no result".into())))
}

/// Whether the range refused the one-operation form because its keys are not all there
/// (a stale table: `RangeNotFound`, or `CROSSSLOT` for a later key).
fn spans_ranges(e: &RpcError) -> bool {
    match e {
        RpcError::RangeNotFound { .. } => true,
        RpcError::BadRequest { message } => message.starts_with("CROSSSLOT"),
        _ => false,
    }
}

/// Whether every key of `op` is in one range of the cached table.
async fn one_range(router: &DbRouter<'_>, op: &ZSetOp) -> bool {
    let mut id = None;
    for k in std::iter::once(op.key()).chain(op.other_keys()) {
        match router
            .range_of(&crate::keyspace::meta_key(crate::keyspace::Db::ZERO, k))
            .await
        {
            Ok(r) if *id.get_or_insert(r.id) == r.id => {}
            _ => return false,
        }
    }
    true
}

/// The reply of `op` from its result (the same shape on both paths).
fn finish(op: &ZSetOp, withscores: bool, res: Result<OpResult, ExecError>) -> Reply {
    let r = match res {
        Ok(r) => r,
        Err(e) => return exec_error(&e),
    };
    match (op, r) {
        (ZSetOp::Pop { .. }, OpResult::Scored { items }) => {
            let mut it = items.into_iter();
            match it.next() {
                None => Reply::NilArray,
                Some((key, _)) => {
                    // Nested pairs in RESP2 as well.
                    let pairs = it
                        .map(|(m, s)| Reply::Array(vec![Reply::Bulk(m), Reply::Double(s)]))
                        .collect();
                    Reply::Array(vec![Reply::Bulk(key), Reply::Array(pairs)])
                }
            }
        }
        (_, OpResult::Scored { items }) => scored(items, withscores),
        (_, OpResult::Int { value }) => Reply::Int(value),
        (_, other) => unexpected(&other),
    }
}

/// The read-compute-write path for keys across ranges.
async fn across(router: &DbRouter<'_>, op: &ZSetOp) -> Result<OpResult, ExecError> {
    match op {
        ZSetOp::Combine {
            key,
            keys,
            kind,
            weights,
            aggregate,
            store,
        } => {
            let sources = read_sources(router, keys).await?;
            let items = compute(sources, *kind, weights, *aggregate).ok_or_else(|| {
                ExecError::Rpc(RpcError::BadRequest {
                    message: "unknown set operation".into(),
                })
            })?;
            if *store {
                replace(router, key, items).await
            } else {
                Ok(OpResult::Scored { items })
            }
        }
        ZSetOp::InterCard { keys, limit, .. } => {
            let sources = read_sources(router, keys).await?;
            let mut n = inter(sources, &[], combine::SUM).len() as u64;
            if *limit > 0 {
                n = n.min(*limit);
            }
            Ok(OpResult::Int {
                value: i64::try_from(n).unwrap_or(i64::MAX),
            })
        }
        ZSetOp::RangeStore {
            key,
            keys,
            by: kind,
            min,
            max,
            rev,
            offset,
            count,
        } => {
            let src = keys.first().cloned().unwrap_or_default();
            let read = ZSetOp::Range {
                key: src,
                by: *kind,
                min: min.clone(),
                max: max.clone(),
                rev: *rev,
                offset: *offset,
                count: *count,
            };
            match exec(router, read).await? {
                OpResult::Scored { items } => replace(router, key, items).await,
                other => Ok(other),
            }
        }
        ZSetOp::Pop {
            key,
            keys,
            max,
            count,
            ..
        } => {
            for k in std::iter::once(key).chain(keys) {
                let pop = ZSetOp::Pop {
                    key: k.clone(),
                    keys: Vec::new(),
                    max: *max,
                    count: *count,
                    named: true,
                };
                match exec(router, pop).await? {
                    OpResult::Scored { items } if items.is_empty() => continue,
                    other => return Ok(other),
                }
            }
            Ok(OpResult::Scored { items: Vec::new() })
        }
        other => exec(router, other.clone()).await,
    }
}

/// Every source as a member → score map (sets: score 1), in argument order.
async fn read_sources(router: &DbRouter<'_>, keys: &[Bytes]) -> Result<Vec<Source>, ExecError> {
    let ops = keys
        .iter()
        .map(|k| {
            let op = ZSetOp::Combine {
                key: k.clone(),
                keys: vec![k.clone()],
                kind: combine::UNION,
                weights: Vec::new(),
                aggregate: combine::SUM,
                store: false,
            };
            keyed(k, KvOp::ZSet { op })
        })
        .collect();
    let mut out = Vec::with_capacity(keys.len());
    for r in router.exec(ops).await {
        match r? {
            OpResult::Scored { items } => out.push(items.into_iter().collect()),
            other => {
                return Err(ExecError::Unavailable(format!(
                    "unexpected result {other:?}"
                )));
            }
        }
    }
    Ok(out)
}

/// Writes `items` as the whole of `key` (`Replace`): the number stored.
async fn replace(
    router: &DbRouter<'_>,
    key: &Bytes,
    items: Vec<(Bytes, f64)>,
) -> Result<OpResult, ExecError> {
    let (members, scores) = items.into_iter().unzip();
    let op = ZSetOp::Replace {
        key: key.clone(),
        scores,
        members,
    };
    exec(router, op).await
}

/// ZSCAN: the whole sorted set in pages, cursor 0 (as Redis answers for a small one).
async fn zscan(router: &DbRouter<'_>, key: Bytes, pattern: Option<Bytes>) -> Reply {
    let mut cursor = Bytes::new();
    let mut out = Vec::new();
    let mut matcher = pattern.as_deref().map(|p| Matcher::new(Pattern::new(p)));
    loop {
        let op = ZSetOp::Scan {
            key: key.clone(),
            cursor: cursor.clone(),
            count: 1024,
        };
        let (pairs, next) = match exec(router, op).await {
            Ok(OpResult::Scan { pairs, next }) => (pairs, next),
            Ok(other) => return unexpected(&other),
            Err(e) => return exec_error(&e),
        };
        for (m, s) in pairs {
            let keep = match matcher.as_mut() {
                Some(mt) => mt.matches(&m).await,
                None => true,
            };
            if keep {
                let score = s
                    .as_ref()
                    .try_into()
                    .map(f64::from_be_bytes)
                    .unwrap_or(f64::NAN);
                out.push(Reply::Bulk(m));
                out.push(Reply::Bulk(Bytes::from(d2string(score))));
            }
        }
        match next {
            Some(n) => cursor = n,
            None => break,
        }
    }
    Reply::Array(vec![
        Reply::Bulk(Bytes::from_static(b"0")),
        Reply::Array(out),
    ])
}

/// Redis's `d2string` (how a listpack keeps a score, and so what ZSCAN shows): an integer
/// when the score is one (within ±2^62), else `%.17g`.
pub fn d2string(d: f64) -> String {
    const LIMIT: f64 = (i64::MAX / 2) as f64;
    if d.is_finite() && d != 0.0 && (-LIMIT..=LIMIT).contains(&d) && d == d.trunc() {
        format!("{d:.0}")
    } else {
        crate::resp::reply::format_double(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zscan_scores_are_printed_as_a_listpack_keeps_them() {
        assert_eq!(d2string(1e17), "100000000000000000");
        assert_eq!(d2string(1.5), "1.5");
        assert_eq!(d2string(0.0), "0");
        assert_eq!(d2string(f64::NEG_INFINITY), "-inf");
        assert_eq!(d2string(1e300), "1.0000000000000001e+300");
    }
}
