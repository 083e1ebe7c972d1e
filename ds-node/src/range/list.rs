//! Lists (Redis `t_list.c`): a metadata entry (version, count, head index) and one engine
//! entry per element at `'L' | version | index` ([`crate::keyspace::list_element_key`]).

use net::RpcError;
use net::message::kv::{ListOp, OpResult};

use super::apply::{Apply, Live, ok_int};
use super::meta::Meta;
use super::store::KvStore;

impl<S: KvStore> Apply<'_, '_, S> {
    /// Executes a list operation.
    pub(super) fn list(&mut self, op: &ListOp) -> Result<OpResult, RpcError> {
        match op {
            ListOp::Len { key } => {
                let count = self.list_meta(key)?.map_or(0, |(_, count, _, _)| count);
                ok_int(i64::try_from(count).unwrap_or(i64::MAX))
            }
        }
    }

    /// `(version, count, head, expiry)` of list `key`; WRONGTYPE for another type.
    pub(super) fn list_meta(&self, key: &[u8]) -> Result<Option<(u64, u64, u64, u64)>, RpcError> {
        match self.live(key)? {
            None => Ok(None),
            Some(Live {
                meta:
                    Meta::List {
                        version,
                        count,
                        head,
                    },
                expire_at_ms,
            }) => Ok(Some((version, count, head, expire_at_ms))),
            Some(_) => Err(RpcError::WrongType {}),
        }
    }
}
