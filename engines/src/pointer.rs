//! [`LogPointer`]: where the bytes of a value live in the shard log, and [`SegmentId`], the
//! segment they are in.
//!
//! A pointer names the *value's bytes* inside a log record (not the record): a cold read is
//! one aligned read of just those blocks, checked against the crc32c (DESIGN §4). Every layer
//! that stores or follows a pointer uses these types: the engines (`engine`), the Masstree
//! entries (`masstree`), the shard log (`vlog`) and the key index (`lsm`).
//!
//! Imports: none (a leaf module).

/// Identifies a segment of the shard log.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SegmentId(pub u32);

/// Where a value's bytes live in the shard log: segment, byte offset inside it, length, and the
/// checksum (crc32c) of the bytes, checked when they are read back.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct LogPointer {
    /// The log segment holding the value.
    pub segment: SegmentId,
    /// Byte offset of the value inside the segment.
    pub offset: u64,
    /// Length of the value in bytes.
    pub len: u32,
    /// crc32c of the value's bytes.
    pub checksum: u32,
}
