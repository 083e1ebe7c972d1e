//! Sorted sets (Redis `t_zset.c`): a metadata entry (version, count), one engine entry per
//! member at `'Z' | version | member` (value: the score) and one per member in score order
//! at `'z' | version | score_bytes(score) | member` (value empty), [`crate::keyspace`].

use net::RpcError;
use net::message::kv::{OpResult, ZSetOp};

use super::apply::{Apply, Live, ok_int};
use super::meta::Meta;
use super::store::KvStore;

impl<S: KvStore> Apply<'_, '_, S> {
    /// Executes a sorted-set operation.
    pub(super) fn zset(&mut self, op: &ZSetOp) -> Result<OpResult, RpcError> {
        match op {
            ZSetOp::Card { key } => {
                let count = self.zset_meta(key)?.map_or(0, |(_, count, _)| count);
                ok_int(i64::try_from(count).unwrap_or(i64::MAX))
            }
        }
    }

    /// `(version, count, expiry)` of sorted set `key`; WRONGTYPE for another type.
    pub(super) fn zset_meta(&self, key: &[u8]) -> Result<Option<(u64, u64, u64)>, RpcError> {
        match self.live(key)? {
            None => Ok(None),
            Some(Live {
                meta: Meta::ZSet { version, count },
                expire_at_ms,
            }) => Ok(Some((version, count, expire_at_ms))),
            Some(_) => Err(RpcError::WrongType {}),
        }
    }
}
