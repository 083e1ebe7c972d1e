//! BZPOPMIN, BZPOPMAX and BZMPOP: the sorted-set pops of [`crate::blocking`]. Each attempt
//! pops from the first non-empty key, one key at a time (each pop is one atomic operation in
//! its key's range); a blocked client skips keys of another type, as Redis does.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use net::RpcError;
use net::message::kv::{KvOp, OpResult, ZSetOp};

use crate::blocking::{Attempt, Blocked};
use crate::cmd::action::{Action, keyed};
use crate::cmd::util::{exec_error, unexpected};
use crate::db::DbRouter;
use crate::resp::Reply;
use crate::route::ExecError;

/// A pop from the first non-empty of `keys`.
#[derive(Debug)]
pub struct ZPop {
    /// The keys, in order.
    pub keys: Vec<Bytes>,
    /// ZPOPMAX rather than ZPOPMIN.
    pub max: bool,
    /// `None`: BZPOPMIN's `[key, member, score]`; `Some(n)`: BZMPOP's `[key, [[m, s]…]]`.
    pub count: Option<u64>,
}

/// The blocking command (`timeout`: `None` forever).
pub fn block(pop: ZPop, timeout: Option<std::time::Duration>) -> Action {
    Action::Block(Blocked {
        keys: pop.keys.clone(),
        timeout,
        timeout_reply: Reply::NilArray,
        empty_reply: Reply::NilArray,
        block: true,
        attempt: Arc::new(pop),
    })
}

impl ZPop {
    fn reply(&self, items: Vec<(Bytes, f64)>) -> Option<Reply> {
        let mut it = items.into_iter();
        let (key, _) = it.next()?;
        let key = Reply::Bulk(key);
        Some(match self.count {
            None => {
                let (m, s) = it.next()?;
                Reply::Array(vec![key, Reply::Bulk(m), Reply::Double(s)])
            }
            Some(_) => {
                let pairs = it
                    .map(|(m, s)| Reply::Array(vec![Reply::Bulk(m), Reply::Double(s)]))
                    .collect();
                Reply::Array(vec![key, Reply::Array(pairs)])
            }
        })
    }

    async fn try_key(&self, router: &DbRouter<'_>, key: &Bytes, retry: bool) -> Option<Reply> {
        let op = ZSetOp::Pop {
            key: key.clone(),
            keys: Vec::new(),
            max: self.max,
            count: self.count.unwrap_or(1),
            named: true,
        };
        match exec(router, key, op).await {
            Ok(OpResult::Scored { items }) => self.reply(items),
            Ok(other) => Some(unexpected(&other)),
            Err(e) if retry && is_wrongtype(&e) => None,
            Err(e) => Some(exec_error(&e)),
        }
    }

    async fn attempt(&self, router: &DbRouter<'_>, retry: bool) -> Option<Reply> {
        if retry && !self.maybe_non_empty(router).await {
            return None;
        }
        for k in &self.keys {
            if let Some(r) = self.try_key(router, k, retry).await {
                return Some(r);
            }
        }
        None
    }

    /// `ZCARD` of every key in one batch (reads: a poll that finds nothing writes nothing);
    /// an error counts as "maybe".
    async fn maybe_non_empty(&self, router: &DbRouter<'_>) -> bool {
        let ops = self.cards();
        router.exec(ops).await.into_iter().any(|r| match r {
            Ok(OpResult::Int { value }) => value > 0,
            _ => true,
        })
    }

    fn cards(&self) -> Vec<(Bytes, KvOp)> {
        self.keys
            .iter()
            .map(|k| {
                let op = ZSetOp::Card { key: k.clone() };
                keyed(k, KvOp::ZSet { op })
            })
            .collect()
    }

    /// The WRONGTYPE error if one of the keys holds another type (reads only).
    async fn type_error(&self, router: &DbRouter<'_>) -> Option<Reply> {
        router
            .exec(self.cards())
            .await
            .into_iter()
            .find_map(|r| r.err().filter(is_wrongtype).map(|e| exec_error(&e)))
    }
}

impl Attempt for ZPop {
    fn run<'a>(&'a self, router: &'a DbRouter<'a>, retry: bool) -> BoxFuture<'a, Option<Reply>> {
        Box::pin(self.attempt(router, retry))
    }

    fn check<'a>(&'a self, router: &'a DbRouter<'a>) -> BoxFuture<'a, Option<Reply>> {
        Box::pin(self.type_error(router))
    }
}

async fn exec(router: &DbRouter<'_>, key: &Bytes, op: ZSetOp) -> Result<OpResult, ExecError> {
    router
        .exec(vec![keyed(key, KvOp::ZSet { op })])
        .await
        .pop()
        .unwrap_or(Err(ExecError::Unavailable("no result".into())))
}

fn is_wrongtype(e: &ExecError) -> bool {
    matches!(e, ExecError::Rpc(RpcError::WrongType {}))
}
