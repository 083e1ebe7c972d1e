//! `KeyObject` (Redis `OBJECT ENCODING`, `MEMORY USAGE`): the shape of a key — type, element
//! count, longest element, whether all elements are integers — and an estimate of the engine
//! bytes it takes, from at most `sample` elements. The proxy names Redis's encoding from this
//! under its own `*-max-*` thresholds (tierkv has one layout per type: DESIGN §2).

use bytes::Bytes;
use net::RpcError;
use net::message::kv::{ObjectInfo, OpResult};

use super::apply::{Apply, after, parse_i64};
use super::meta::Meta;
use super::store::KvStore;
use crate::keyspace;

/// Engine bytes an entry takes besides its key and value: the Masstree's own accounting is
/// ~60 B per entry at 16-byte keys and values (`docs/benchmarks.md`, "Bytes per entry").
pub const ENTRY_OVERHEAD_BYTES: u64 = 64;

/// Elements read per engine scan.
const PAGE: usize = 256;

impl<S: KvStore> Apply<'_, '_, S> {
    /// Executes `KeyObject`.
    pub(super) fn object(&self, key: &[u8], sample: u32) -> Result<OpResult, RpcError> {
        let Some(live) = self.live(key)? else {
            return Ok(OpResult::Object {
                object: ObjectInfo::default(),
            });
        };
        let meta_bytes = entry_bytes(keyspace::meta_key(self.db, key).len(), 0);
        let mut info = ObjectInfo {
            key_type: live.meta.key_type(),
            all_integers: true,
            ..ObjectInfo::default()
        };
        match &live.meta {
            Meta::Str(v) => {
                info.count = 1;
                info.sampled = 1;
                info.max_element_bytes = v.len() as u64;
                info.all_integers = v.len() <= 20 && parse_i64(v).is_some();
                info.bytes = meta_bytes + v.len() as u64 + 1;
                return Ok(OpResult::Object { object: info });
            }
            Meta::Hash { version, count } => {
                self.sample(key, keyspace::FIELD, *version, *count, sample, &mut info)
            }
            Meta::List { version, count, .. } => self.sample(
                key,
                keyspace::LIST_ELEMENT,
                *version,
                *count,
                sample,
                &mut info,
            ),
            Meta::Set { version, count } => self.sample(
                key,
                keyspace::SET_MEMBER,
                *version,
                *count,
                sample,
                &mut info,
            ),
            Meta::ZSet { version, count } => {
                self.sample(
                    key,
                    keyspace::ZSET_MEMBER,
                    *version,
                    *count,
                    sample,
                    &mut info,
                );
                // The score index holds one more entry per member: key bytes as large again.
                info.bytes = info.bytes.saturating_mul(2);
            }
        }
        info.bytes = info.bytes.saturating_add(meta_bytes);
        Ok(OpResult::Object { object: info })
    }

    /// Reads up to `sample` elements (0: all) under `tag` and fills the element figures of
    /// `info`, extrapolating the bytes to `count` elements.
    fn sample(
        &self,
        key: &[u8],
        tag: u8,
        version: u64,
        count: u64,
        sample: u32,
        info: &mut ObjectInfo,
    ) {
        info.count = count;
        let prefix = keyspace::element_prefix(self.db, key, tag, version);
        let end = keyspace::prefix_end(&prefix);
        let want = if sample == 0 {
            u64::MAX
        } else {
            u64::from(sample)
        };
        let mut start: Bytes = prefix.clone();
        let mut bytes = 0u64;
        while info.sampled < want {
            let page = self.store.scan(&start, end.as_deref(), PAGE, false);
            for (k, e) in &page {
                if info.sampled == want {
                    break;
                }
                let element = element_of(tag, &k[prefix.len()..], &e.value);
                info.sampled += 1;
                info.max_element_bytes = info.max_element_bytes.max(element.len() as u64);
                if tag == keyspace::FIELD {
                    info.max_element_bytes = info.max_element_bytes.max(e.value.len() as u64);
                }
                info.all_integers &= element.len() <= 20 && parse_i64(element).is_some();
                bytes += entry_bytes(k.len(), e.value.len());
            }
            match page.last() {
                Some((last, _)) if page.len() == PAGE => start = after(last),
                _ => break,
            }
        }
        info.bytes = match info.sampled {
            0 => 0,
            n => bytes.saturating_mul(count) / n,
        };
    }
}

/// The element an entry under `tag` holds: a list element is the value, every other one the
/// key's suffix (field, member).
fn element_of<'a>(tag: u8, suffix: &'a [u8], value: &'a [u8]) -> &'a [u8] {
    if tag == keyspace::LIST_ELEMENT {
        value
    } else {
        suffix
    }
}

fn entry_bytes(key: usize, value: usize) -> u64 {
    (key + value) as u64 + ENTRY_OVERHEAD_BYTES
}
