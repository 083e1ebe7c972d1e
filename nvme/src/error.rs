//! The crate's error type.

use std::io;

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in a block device or the segment store.
///
/// "The caller asked for something impossible" (`Unaligned`, `OutOfRange`, `InvalidArgument`),
/// "the OS or the device said no" (`Io`, `DeviceFailed`) and "the bytes on the device are wrong"
/// (`Corruption` and the format checks) are kept apart.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Offset or length is not a multiple of the device's alignment.
    #[error("unaligned I/O: offset {offset}, length {len}, device alignment {alignment}")]
    Unaligned {
        /// Requested byte offset.
        offset: u64,
        /// Requested length in bytes.
        len: usize,
        /// The device's alignment in bytes.
        alignment: usize,
    },
    /// The request reaches past the end of the device.
    #[error("I/O out of range: offset {offset}, length {len}, device capacity {capacity}")]
    OutOfRange {
        /// Requested byte offset.
        offset: u64,
        /// Requested length in bytes.
        len: usize,
        /// The device's capacity in bytes.
        capacity: u64,
    },
    /// The operating system or the device reported an error.
    #[error("I/O error during {op}: {source}")]
    Io {
        /// What was being done (`"read"`, `"write"`, `"flush"`, `"open"` ...).
        op: &'static str,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A write or flush failed earlier: the device (or store) is poisoned until reopened.
    /// Never retry a flush: what reached the media is unknown.
    #[error("device failed earlier and is poisoned until reopened")]
    DeviceFailed,
    /// Bytes read from the device do not form a valid structure.
    #[error("corruption in {what} at offset {offset}: {detail}")]
    Corruption {
        /// Which structure (`"superblock"`, `"segment table"`).
        what: &'static str,
        /// Byte offset of the structure on the device.
        offset: u64,
        /// What check failed.
        detail: &'static str,
    },
    /// The device carries no segment store (no superblock magic in either copy).
    #[error("device is not formatted as a tierkv segment store")]
    NotFormatted,
    /// The device was formatted with a format version this build does not know.
    #[error("unsupported segment store format version {found} (this build supports {supported})")]
    UnsupportedVersion {
        /// Version found on the device.
        found: u32,
        /// Version this build reads and writes.
        supported: u32,
    },
    /// The device was formatted with another block size than the device now reports.
    #[error("device formatted with block size {formatted} but opened with block size {device}")]
    BlockSizeMismatch {
        /// Block size recorded in the superblock.
        formatted: u32,
        /// The device's alignment now.
        device: usize,
    },
    /// The device is smaller than when it was formatted.
    #[error("device truncated: formatted for {formatted} bytes, now {actual} bytes")]
    DeviceTruncated {
        /// Capacity recorded in the superblock.
        formatted: u64,
        /// The device's capacity now.
        actual: u64,
    },
    /// No free segment is left.
    #[error("no free segment ({segments} segments, all allocated)")]
    NoSpace {
        /// Number of segments on the device.
        segments: u64,
    },
    /// The segment id does not name an allocated segment.
    #[error("segment {0} is not allocated")]
    NotAllocated(u32),
    /// A caller mistake other than alignment or range.
    #[error("invalid argument: {0}")]
    InvalidArgument(&'static str),
}

impl Error {
    /// Wraps an OS error with the operation it came from.
    pub fn io(op: &'static str, source: io::Error) -> Self {
        Self::Io { op, source }
    }

    /// Returns true for an error that leaves the device's state unknown (I/O or poisoned).
    pub fn is_device_failure(&self) -> bool {
        matches!(self, Self::Io { .. } | Self::DeviceFailed)
    }
}
