//! Sets (Redis `t_set.c`): a metadata entry (version, count) and one engine entry per member
//! at `'S' | version | member` (value empty).

use net::RpcError;
use net::message::kv::{OpResult, SetOp};

use super::apply::{Apply, Live, ok_int};
use super::meta::Meta;
use super::store::KvStore;

impl<S: KvStore> Apply<'_, '_, S> {
    /// Executes a set operation.
    pub(super) fn set(&mut self, op: &SetOp) -> Result<OpResult, RpcError> {
        match op {
            SetOp::Card { key } => {
                let count = self.set_meta(key)?.map_or(0, |(_, count, _)| count);
                ok_int(i64::try_from(count).unwrap_or(i64::MAX))
            }
        }
    }

    /// `(version, count, expiry)` of set `key`; WRONGTYPE for another type.
    pub(super) fn set_meta(&self, key: &[u8]) -> Result<Option<(u64, u64, u64)>, RpcError> {
        match self.live(key)? {
            None => Ok(None),
            Some(Live {
                meta: Meta::Set { version, count },
                expire_at_ms,
            }) => Ok(Some((version, count, expire_at_ms))),
            Some(_) => Err(RpcError::WrongType {}),
        }
    }
}
