//! Size limits of keys, elements and values, checked the same way by the proxy (before it
//! sends), the DS request handler (before it proposes) and the range state machine (before it
//! applies), so that no committed entry can fail in the engine (`docs/guides/proxy.md`,
//! "Limits"). This module knows sizes only; each operation checks its own keys and values
//! with these functions (`KvOp::check_limits`).
//!
//! The engine stores one entry per Redis key (its metadata) and one per element (a hash
//! field today; list, set and sorted-set elements later). Its keys are at most
//! [`MAX_INTERNAL_KEY_BYTES`] (the Masstree's limit); the layout adds at most
//! [`KEY_LAYOUT_OVERHEAD_BYTES`] to a user key and an element (`'r' | slot | len | key |
//! tag | version | element`), so a user key plus one element may take
//! [`MAX_KEY_ELEMENT_BYTES`]. A write that would exceed a limit is refused with
//! [`LimitError`]; a read of a key or element that cannot exist simply finds nothing.
// perf-critical: every keyed command is checked here.

use crate::codec::MAX_KEY_BYTES;

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

/// Checks a raw (non-Redis) key.
pub fn raw_key(key: &[u8]) -> Result<(), LimitError> {
    check_len(key.len(), MAX_INTERNAL_KEY_BYTES)
}

/// Checks a raw length against `max` (a cursor, a scan bound).
pub fn check_len(len: usize, max: usize) -> Result<(), LimitError> {
    if len > max {
        return Err(LimitError::RawKeyTooLarge { len, max });
    }
    Ok(())
}
