//! Redis `HRANDFIELD`: random fields of a hash, chosen with the seed the proxy sent (a read
//! runs on the leader only) by [`super::sample`].

use net::RpcError;
use net::message::kv::OpResult;

use super::apply::Apply;
use super::sample::{Elements, Rng};
use super::set::repeats_in_range;
use super::store::KvStore;
use crate::keyspace;

impl<S: KvStore> Apply<'_, '_, S> {
    /// Fields (with their values when `with_values`, else empty values) of hash `key`:
    /// one when `count` is none, `count` distinct ones, or `-count` with repeats.
    pub(super) fn hrandfield(
        &self,
        key: &[u8],
        count: Option<i64>,
        with_values: bool,
        seed: u64,
    ) -> Result<OpResult, RpcError> {
        let Some((version, size, _)) = self.hash(key)? else {
            return Ok(OpResult::Pairs { pairs: Vec::new() });
        };
        let count = count.unwrap_or(1);
        let repeats = count < 0;
        let n = count.unsigned_abs();
        if repeats {
            repeats_in_range(n)?;
        }
        let prefix = keyspace::field_prefix_bytes(self.db, key, version);
        let mut pairs =
            Elements::new(&*self.store, prefix, size).choose(n, repeats, &mut Rng::new(seed));
        if !with_values {
            pairs.iter_mut().for_each(|(_, v)| *v = bytes::Bytes::new());
        }
        Ok(OpResult::Pairs { pairs })
    }
}
