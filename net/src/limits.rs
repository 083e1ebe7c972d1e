//! Size limits of keys, elements and values, checked the same way by the proxy (before it
//! sends), the DS request handler (before it proposes) and the range state machine (before it
//! applies), so that no committed entry can fail in the engine (`docs/guides/proxy.md`,
//! "Limits").
//!
//! The engine stores one entry per Redis key (its metadata) and one per element (a hash
//! field today; list, set and sorted-set elements later). Its keys are at most
//! [`MAX_INTERNAL_KEY_BYTES`] (the Masstree's limit); the layout adds at most
//! [`KEY_LAYOUT_OVERHEAD_BYTES`] to a user key and an element (`'r' | slot | len | key |
//! tag | version | element`), so a user key plus one element may take
//! [`MAX_KEY_ELEMENT_BYTES`]. A write that would exceed a limit is refused with
//! [`LimitError`]; a read of a key or element that cannot exist simply finds nothing.
// perf-critical: every keyed command is checked here.

use bytes::Bytes;

use crate::codec::MAX_KEY_BYTES;
use crate::error::RpcError;
use crate::message::kv::{KvOp, WriteOp};

/// The longest key the engine stores (equal to the wire's key limit and to
/// `engines::masstree::MAX_KEY_LEN`; ds-node asserts the equality at compile time).
pub const MAX_INTERNAL_KEY_BYTES: usize = MAX_KEY_BYTES;

/// Bytes the internal layout adds around a user key and one element (prefix, slot, length,
/// tag, version, and room for a sorted-set score).
pub const KEY_LAYOUT_OVERHEAD_BYTES: usize = 64;

/// The longest user key plus one element (a key alone included): 65,472 bytes.
pub const MAX_KEY_ELEMENT_BYTES: usize = MAX_INTERNAL_KEY_BYTES - KEY_LAYOUT_OVERHEAD_BYTES;

/// The default largest value: Redis's `proto-max-bulk-len` default, 512 MiB.
pub const DEFAULT_MAX_VALUE_BYTES: usize = 512 * 1024 * 1024;

/// A request over a size limit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LimitError {
    /// A user key, or a key and one of its elements together, are too long.
    #[error(
        "key too large: {len} bytes with its element (tierkv stores a key plus one field or member up to {max} bytes)"
    )]
    KeyTooLarge {
        /// Bytes of the key (plus element).
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A raw (non-Redis) key is too long.
    #[error("raw key too large: {len} bytes (limit {max})")]
    RawKeyTooLarge {
        /// Bytes of the key.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A value is longer than the configured maximum.
    #[error("string exceeds maximum allowed size (proto-max-bulk-len)")]
    ValueTooLarge {
        /// Bytes of the value.
        len: usize,
        /// The limit.
        max: usize,
    },
}

impl From<LimitError> for RpcError {
    fn from(e: LimitError) -> Self {
        let u32_of = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        match e {
            LimitError::KeyTooLarge { len, max } | LimitError::RawKeyTooLarge { len, max } => {
                RpcError::KeyTooLarge {
                    len: u32_of(len),
                    max: u32_of(max),
                }
            }
            LimitError::ValueTooLarge { len, max } => RpcError::ValueTooLarge {
                len: len as u64,
                max: max as u64,
            },
        }
    }
}

/// Checks every key, element and value of `op` against the limits (`max_value_bytes`: the
/// configured `proto-max-bulk-len`).
pub fn check_op(op: &KvOp, max_value_bytes: usize) -> Result<(), LimitError> {
    let value = |v: &Bytes| check_value(v.len(), max_value_bytes);
    match op {
        KvOp::Get { key }
        | KvOp::Delete { key }
        | KvOp::Increment { key, .. }
        | KvOp::Scan { start: key, .. } => raw_key(key),
        KvOp::BatchGet { keys } => keys.iter().try_for_each(raw_key),
        KvOp::Put { key, value: v, .. } => raw_key(key).and_then(|()| value(v)),
        KvOp::CompareAndSet { key, new, .. } => {
            raw_key(key)?;
            new.as_ref().map_or(Ok(()), value)
        }
        KvOp::BatchWrite { ops } => ops.iter().try_for_each(|w| match w {
            WriteOp::Put { key, value: v, .. } => raw_key(key).and_then(|()| value(v)),
            WriteOp::Delete { key } => raw_key(key),
        }),
        KvOp::StrSet { key, value: v, .. } | KvOp::StrAppend { key, value: v } => {
            user_key(key, 0)?;
            value(v)
        }
        KvOp::StrSetRange {
            key,
            offset,
            value: v,
        } => {
            user_key(key, 0)?;
            let end = usize::try_from(*offset)
                .ok()
                .and_then(|o| o.checked_add(v.len()))
                .unwrap_or(usize::MAX);
            if v.is_empty() {
                Ok(())
            } else {
                check_value(end, max_value_bytes)
            }
        }
        KvOp::KeyScan { cursor: key, .. } => check_len(key.len(), MAX_KEY_BYTES),
        KvOp::RangeFlush {} | KvOp::DbFlush {} => Ok(()),
        KvOp::KeyRename { key, dst, .. }
        | KvOp::KeyCopy { key, dst, .. }
        | KvOp::KeyCopyDb { key, dst, .. } => {
            user_key(key, 0)?;
            user_key(dst, 0)
        }
        KvOp::List { op } => op.check_limits(max_value_bytes),
        KvOp::Set { op } => op.check_limits(max_value_bytes),
        KvOp::ZSet { op } => op.check_limits(max_value_bytes),
        KvOp::Bits { op } => op.check_limits(max_value_bytes),
        KvOp::Hll { op } => op.check_limits(),
        KvOp::Eval {
            anchor,
            body,
            keys,
            args,
            ..
        } => {
            user_key(anchor, 0)?;
            keys.iter().try_for_each(|k| user_key(k, 0))?;
            value(body)?;
            args.iter().try_for_each(&value)
        }
        // Neither `InDb` nor `Multi` nests (refused when decoded): bounded recursion.
        KvOp::InDb { op, .. } => check_op(op, max_value_bytes),
        KvOp::Multi { watches, ops } => {
            watches.iter().try_for_each(|w| user_key(&w.key, 0))?;
            ops.iter().try_for_each(|op| check_op(op, max_value_bytes))
        }
        KvOp::HSet { key, pairs, .. } => pairs.iter().try_for_each(|(f, v)| {
            user_key(key, f.len())?;
            value(v)
        }),
        KvOp::HIncrBy { key, field, .. } | KvOp::HIncrByFloat { key, field, .. } => {
            user_key(key, field.len())
        }
        KvOp::HScan { key, cursor, .. } => {
            user_key(key, 0)?;
            check_len(cursor.len(), MAX_KEY_BYTES)
        }
        KvOp::StrGet { key }
        | KvOp::StrGetDel { key }
        | KvOp::StrGetEx { key, .. }
        | KvOp::StrIncrBy { key, .. }
        | KvOp::StrIncrByFloat { key, .. }
        | KvOp::StrLen { key }
        | KvOp::StrGetRange { key, .. }
        | KvOp::KeyDel { key }
        | KvOp::KeyExists { key }
        | KvOp::KeyExpire { key, .. }
        | KvOp::KeyPersist { key }
        | KvOp::KeyTtl { key }
        | KvOp::KeyType { key }
        | KvOp::KeyObject { key, .. }
        | KvOp::HGet { key, .. }
        | KvOp::HMGet { key, .. }
        | KvOp::HDel { key, .. }
        | KvOp::HExists { key, .. }
        | KvOp::HLen { key }
        | KvOp::HGetAll { key }
        | KvOp::HStrLen { key, .. }
        | KvOp::HRandField { key, .. }
        | KvOp::KeyDigest { key } => user_key(key, 0),
    }
}

/// Checks a value length against `max_value_bytes`.
pub fn check_value(len: usize, max_value_bytes: usize) -> Result<(), LimitError> {
    if len > max_value_bytes {
        return Err(LimitError::ValueTooLarge {
            len,
            max: max_value_bytes,
        });
    }
    Ok(())
}

/// Checks a user key and one element of `element_len` bytes stored with it.
pub fn user_key(key: &[u8], element_len: usize) -> Result<(), LimitError> {
    let len = key.len().saturating_add(element_len);
    if len > MAX_KEY_ELEMENT_BYTES {
        return Err(LimitError::KeyTooLarge {
            len,
            max: MAX_KEY_ELEMENT_BYTES,
        });
    }
    Ok(())
}

fn raw_key(key: &Bytes) -> Result<(), LimitError> {
    check_len(key.len(), MAX_INTERNAL_KEY_BYTES)
}

fn check_len(len: usize, max: usize) -> Result<(), LimitError> {
    if len > max {
        return Err(LimitError::RawKeyTooLarge { len, max });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::kv::{Cond, Expiry};

    fn set(key_len: usize, value_len: usize) -> KvOp {
        KvOp::StrSet {
            key: Bytes::from(vec![b'k'; key_len]),
            value: Bytes::from(vec![b'v'; value_len]),
            expiry: Expiry::Persist {},
            cond: Cond::Always {},
            get_old: false,
        }
    }

    #[test]
    fn keys_up_to_the_limit_pass_and_one_byte_more_is_refused() {
        assert!(check_op(&set(MAX_KEY_ELEMENT_BYTES, 1), 10).is_ok());
        assert_eq!(
            check_op(&set(MAX_KEY_ELEMENT_BYTES + 1, 1), 10),
            Err(LimitError::KeyTooLarge {
                len: MAX_KEY_ELEMENT_BYTES + 1,
                max: MAX_KEY_ELEMENT_BYTES
            })
        );
    }

    #[test]
    fn key_and_field_count_together() {
        let op = |f: usize| KvOp::HSet {
            key: Bytes::from(vec![b'k'; 40_000]),
            pairs: vec![(Bytes::from(vec![b'f'; f]), Bytes::new())],
            only_new: false,
        };
        assert!(check_op(&op(MAX_KEY_ELEMENT_BYTES - 40_000), 10).is_ok());
        assert!(check_op(&op(MAX_KEY_ELEMENT_BYTES - 40_000 + 1), 10).is_err());
    }

    #[test]
    fn values_over_the_configured_maximum_are_refused() {
        assert!(check_op(&set(1, 100), 100).is_ok());
        assert!(matches!(
            check_op(&set(1, 101), 100),
            Err(LimitError::ValueTooLarge { len: 101, max: 100 })
        ));
        let setrange = |offset: u64, len: usize| KvOp::StrSetRange {
            key: Bytes::from_static(b"k"),
            offset,
            value: Bytes::from(vec![0; len]),
        };
        assert!(check_op(&setrange(90, 10), 100).is_ok());
        assert!(check_op(&setrange(91, 10), 100).is_err());
        assert!(check_op(&setrange(u64::MAX, 1), 100).is_err());
        assert!(
            check_op(&setrange(u64::MAX, 0), 100).is_ok(),
            "Redis: no-op"
        );
    }

    #[test]
    fn limit_errors_keep_their_figures_on_the_wire() {
        let e: RpcError = LimitError::ValueTooLarge { len: 2, max: 1 }.into();
        assert_eq!(e, RpcError::ValueTooLarge { len: 2, max: 1 });
        let e: RpcError = LimitError::KeyTooLarge { len: 9, max: 8 }.into();
        assert_eq!(e, RpcError::KeyTooLarge { len: 9, max: 8 });
    }
}
