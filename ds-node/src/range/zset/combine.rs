//! `ZUNION`/`ZINTER`/`ZDIFF` (and `STORE`), `ZINTERCARD` on sources of one range: sources
//! are sorted sets or sets (score 1); the algebra is `net::message::zset::algebra`.

use bytes::Bytes;
use net::RpcError;
use net::message::kv::{OpResult, ZSetOp};
use net::message::zset::algebra::{Source, compute, inter};
use net::message::zset::combine;

use super::bad;
use crate::keyspace::{self, SET_MEMBER, element_prefix};
use crate::range::apply::{Apply, Live, ok_int};
use crate::range::meta::Meta;
use crate::range::store::KvStore;

impl<S: KvStore> Apply<'_, '_, S> {
    /// Executes `Combine` and `InterCard`.
    pub(in crate::range) fn zset_combine(&mut self, op: &ZSetOp) -> Result<OpResult, RpcError> {
        match op {
            ZSetOp::Combine {
                key,
                keys,
                kind,
                weights,
                aggregate,
                store,
            } => {
                let sources = self.sources(keys)?;
                let items = compute(sources, *kind, weights, *aggregate)
                    .ok_or_else(|| bad("unknown set operation"))?;
                if *store {
                    let stored: Vec<(f64, Bytes)> =
                        items.into_iter().map(|(m, s)| (s, m)).collect();
                    ok_int(self.zreplace(key, &stored))
                } else {
                    Ok(OpResult::Scored { items })
                }
            }
            ZSetOp::InterCard { keys, limit, .. } => {
                let sources = self.sources(keys)?;
                let mut n = inter(sources, &[], combine::SUM).len() as u64;
                if *limit > 0 {
                    n = n.min(*limit);
                }
                ok_int(i64::try_from(n).unwrap_or(i64::MAX))
            }
            _ => Err(bad("not a combining operation")),
        }
    }

    /// Every source, in argument order (absent: empty); WRONGTYPE for another type.
    fn sources(&self, keys: &[Bytes]) -> Result<Vec<Source>, RpcError> {
        keys.iter().map(|k| self.source(k)).collect()
    }

    fn source(&self, key: &[u8]) -> Result<Source, RpcError> {
        match self.live(key)? {
            None => Ok(Source::new()),
            Some(Live {
                meta: Meta::ZSet { version, .. },
                ..
            }) => {
                let (lo, hi) = self.index_bounds(key, version);
                Ok(self
                    .walk(lo, hi, false, 0, usize::MAX)
                    .into_iter()
                    .map(|(s, m)| (m, s))
                    .collect())
            }
            Some(Live {
                meta: Meta::Set { version, .. },
                ..
            }) => {
                let prefix = element_prefix(self.db, key, SET_MEMBER, version);
                let end = keyspace::prefix_end(&prefix);
                Ok(self
                    .store
                    .scan(&prefix, end.as_deref(), usize::MAX, false)
                    .into_iter()
                    .filter_map(|(k, _)| {
                        Some((Bytes::copy_from_slice(k.get(prefix.len()..)?), 1.0))
                    })
                    .collect())
            }
            Some(_) => Err(RpcError::WrongType {}),
        }
    }
}
