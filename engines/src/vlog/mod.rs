//! `vlog`: the shard log — one append-only log per shard holding every Raft entry of every
//! range on the shard, and therefore every value (DESIGN §3–4). Format, recovery procedure,
//! invariants and crash analysis: `docs/format/shard-log.md`.
//!
//! Modules:
//! - [`record`]: the record and segment-header codec.
//! - `log`: [`Vlog`] — group-commit appends (queue, commit lock, batch encoding, the
//!   two-deep write/flush pipeline, fail-stop).
//! - `read`: reads by pointer and by (range, index) through the entry cache; Raft queries.
//! - [`gc`]: the value garbage collector's policy (victims, relocation tags).
//! - `reclaim`: Raft truncation and segment reclamation (the value GC's entry point).
//! - `recover`: [`Vlog::open`] — scan, torn-tail cut, mid-log corruption detection.
//! - `state`: the per-range entry index and per-segment liveness counts.
//! - [`metrics`]: counters and hdrhistograms.
//! - [`device`]: [`SharedDevice`], so the log and its segment store share one device.
//!
//! Threading: one log per shard, used from that shard's executor only (`Rc`/`RefCell`, no
//! locks, no atomics). All I/O goes through an `nvme::BlockDevice`, so the log runs on the
//! `mem`/`faulty` devices in tests and on `uring` in production.
//!
//! [`LogPointer`] is the Masstree module's (segment, offset, length, crc32c).

pub mod device;
pub mod gc;
mod log;
pub mod metrics;
mod read;
mod reclaim;
pub mod record;
mod recover;
mod state;
mod types;

pub use crate::pointer::{LogPointer, SegmentId};
pub use device::SharedDevice;
pub use log::{AppendRecord, AppendTicket, Appended, ValueSpan, Vlog};
pub use metrics::VlogMetrics;
pub use read::PayloadAt;
pub use record::{
    EntryRecord, FragmentHead, FragmentRecord, HardState, LogRecord, RecordKind, TruncateMode,
};
pub use recover::RecoveryReport;
pub use state::{CheckpointInfo, SegmentUsage};
pub use types::{LogIndex, RangeId, Seq, Term};

/// Result alias of the shard log.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the shard log.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The device failed this operation (the log is poisoned if it was a write or flush).
    #[error("shard log I/O failed: {0}")]
    Io(#[source] nvme::Error),
    /// A write or flush failed earlier: the log acknowledges nothing until it is reopened.
    #[error("shard log failed earlier and is poisoned until reopened")]
    DeviceFailed,
    /// The segment store has no free segment.
    #[error("no free segment for the shard log")]
    NoSpace,
    /// Bytes on the device are wrong (checksum, structure, or a bad record in the middle of
    /// the log).
    #[error("shard log corruption in segment {segment} at offset {offset}: {detail}")]
    Corruption {
        /// Segment id.
        segment: u32,
        /// Byte offset inside the segment.
        offset: u64,
        /// What check failed.
        detail: &'static str,
    },
    /// The segment still holds something a range needs, is the head, or is not the oldest.
    #[error("segment {0} is still needed by the shard log")]
    SegmentInUse(u32),
    /// A caller mistake.
    #[error("invalid argument: {0}")]
    InvalidArgument(&'static str),
}

impl Error {
    /// Converts an `nvme` error.
    pub fn from_nvme(e: nvme::Error) -> Self {
        match e {
            nvme::Error::DeviceFailed => Self::DeviceFailed,
            nvme::Error::NoSpace { .. } => Self::NoSpace,
            e => Self::Io(e),
        }
    }

    /// Returns true for an error that leaves the device's state unknown.
    pub fn is_device_failure(&self) -> bool {
        matches!(self, Self::Io(_) | Self::DeviceFailed)
    }
}

/// Settings of a shard log.
#[derive(Debug, Clone, Copy)]
pub struct VlogConfig {
    /// Most record bytes in one commit batch (one write per segment touched + one flush);
    /// also the largest record (longer Raft entries are written as fragments). Default 1 MiB; valid 64 B ..= segment size − 1 block.
    pub batch_bytes_max: usize,
    /// Encoded bytes of records queued for commit above which a new append first helps
    /// commit the queue (backpressure). Default 64 MiB.
    pub pending_bytes_max: usize,
    /// Bytes of recent Raft entries kept in memory. Default 16 MiB; 0 disables the cache.
    pub cache_bytes_max: usize,
    /// Size of the reads recovery issues while scanning. Default 1 MiB.
    pub recovery_read_bytes: usize,
    /// Free a segment as soon as Raft no longer needs it (for logs whose values nobody
    /// points at). Default false: the value GC releases segments.
    pub auto_reclaim: bool,
    /// Keep one allocated spare segment so a commit rarely waits for a store update.
    /// Default true.
    pub preallocate: bool,
    /// Free segments of the store the log never allocates (left to the key index sharing
    /// it, which must be able to checkpoint the deletes that let the log free space).
    /// Default 0.
    pub reserve_segments: u32,
    /// Longest Raft entry payload accepted. An entry whose record would exceed
    /// `batch-bytes-max` is written as several fragment records, each at most
    /// `batch-bytes-max` (`docs/format/shard-log.md` §3); a longer entry is refused with
    /// `InvalidArgument` before anything is queued. Default 513 MiB (Redis's 512 MiB
    /// `proto-max-bulk-len` and the command around it).
    pub entry_bytes_max: usize,
    /// Most commit batches in flight (written, flush not yet returned): 1 commits strictly
    /// one batch after another; 2 writes the next batch while the previous one's flush runs
    /// (`docs/format/shard-log.md` §4). Default 2; valid 1 ..= [`MAX_PIPELINE_DEPTH`].
    pub pipeline_depth: usize,
}

/// The most batches any writer of this format keeps in flight; recovery's evidence window
/// and torn-tail cut are sized for it (`docs/format/shard-log.md` §5).
pub const MAX_PIPELINE_DEPTH: usize = 2;

impl Default for VlogConfig {
    fn default() -> Self {
        Self {
            batch_bytes_max: 1 << 20,
            pending_bytes_max: 64 << 20,
            cache_bytes_max: 16 << 20,
            recovery_read_bytes: 1 << 20,
            auto_reclaim: false,
            preallocate: true,
            reserve_segments: 0,
            pipeline_depth: MAX_PIPELINE_DEPTH,
            entry_bytes_max: 513 << 20,
        }
    }
}
