//! Builders the engine's unit tests share.

use bytes::Bytes;

use crate::engine::Entry;
use crate::pointer::{LogPointer, SegmentId};

/// A pointer to `v` at `offset` of segment `seg` (its checksum is `v`'s).
pub(super) fn ptr(seg: u32, offset: u64, v: &[u8]) -> LogPointer {
    LogPointer {
        segment: SegmentId(seg),
        offset,
        len: v.len() as u32,
        checksum: crc32c::crc32c(v),
    }
}

/// A hot entry holding `v`, without expiry.
pub(super) fn hot(v: &'static [u8]) -> Entry {
    Entry {
        value: Bytes::from_static(v),
        expire_at_ms: 0,
    }
}
