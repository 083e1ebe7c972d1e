//! `lsm`: the per-shard durable key index (DESIGN §4) — a WiscKey-style LSM on `nvme` segments
//! that maps every internal key to an [`IndexValue`] (a [`LogPointer`] into the shard log, an
//! expiry and a type byte) or a tombstone. It never holds values. Format, invariants and crash
//! analysis: `docs/format/key-index.md`.
//!
//! The memtable is the caller's (the shard's Masstree of dirty entries): a **checkpoint**
//! ([`KeyIndex::checkpoint`]) takes a sorted stream of entries and each range's applied index
//! and writes one sorted run plus a manifest record; **compaction** ([`KeyIndex::compact`])
//! merges runs; **lookups** ([`KeyIndex::get`], [`KeyIndex::range`]) read the runs newest first.
//!
//! Plugging it into a shard (what ds-node does once the index replaces range checkpoints):
//!
//! ```text
//! let store = SharedStore::open(device).await?;            // one per device
//! let (log, _) = Vlog::open_on(store.clone(), LOG_OWNER, log_cfg).await?;
//! let (index, _) = KeyIndex::open(store, LsmConfig::new(RUNS_OWNER, MANIFEST_OWNER)).await?;
//! // recovery: for each range, index.range(start, end) → Masstree (keys + pointers), then the
//! // log tail after index.applied(range)
//! // checkpoint: let mut w = index.checkpoint(dirty_count)?; w.push(key, entry).await? for
//! // each dirty entry in key order; w.finish(&applied).await?; then, if
//! // index.compaction_needed(), index.compact().await? (both off the request path)
//! ```
//!
//! Modules (imports point down this list only):
//! - `checkpoint`, `compact`, `iter`: the operations, each an `impl KeyIndex` block.
//! - `open`: [`KeyIndex::open`] — recovery: the newest manifest, its runs, freeing leaks.
//! - `index`: [`KeyIndex`] itself — state, point gets, manifest edits, freeing runs.
//! - `run`: a run in memory (block index, bloom filter), its writer and its block reads.
//! - [`manifest`]: the manifest record codec and the manifest log scan.
//! - [`bloom`], [`format`]: the bloom filter and the frame/block/footer codecs (pure).
//! - [`metrics`]: counters and hdrhistograms.
//!
//! Threading: one index per shard, used from that shard's executor only (`RefCell`, no locks).
//! Every I/O goes through the [`SharedStore`]'s device, so tests run it on the `mem`/`faulty`
//! devices. Long operations (checkpoint, compaction, open) yield to the executor between
//! writes and reads.

pub mod bloom;
mod checkpoint;
mod compact;
pub mod format;
mod index;
mod iter;
pub mod manifest;
pub mod metrics;
mod open;
mod run;

use std::fmt;

pub use crate::pointer::LogPointer;
pub use crate::segments::SharedStore;
pub use crate::vlog::{LogIndex, RangeId};
pub use checkpoint::{CheckpointReport, CheckpointWriter, RangeApplied};
pub use compact::{CompactionPolicy, CompactionReport, merged_segments, pick_compaction};
pub use index::{KeyIndex, RunInfo};
pub use iter::RangeIter;
pub use metrics::LsmMetrics;
use nvme::OwnerTag;
pub use open::OpenReport;

/// Identifies a run of the index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct RunId(pub u64);

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "run{}", self.0)
    }
}

/// What the index stores for a live key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexValue {
    /// Where the value's bytes are in the shard log.
    pub pointer: LogPointer,
    /// Expiry in milliseconds since the Unix epoch; 0 = none.
    pub expire_at_ms: u64,
    /// The caller's type byte (Redis type of the entry).
    pub value_type: u8,
}

/// One entry handed to a checkpoint, or found in a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IndexEntry {
    /// The key maps to this value.
    Value(IndexValue),
    /// The key was deleted: it shadows older runs' entries.
    Tombstone,
}

impl IndexEntry {
    /// Returns the value, or `None` for a tombstone.
    pub fn value(&self) -> Option<IndexValue> {
        match self {
            Self::Value(v) => Some(*v),
            Self::Tombstone => None,
        }
    }
}

/// Result alias of the key index.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the key index.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The device failed this operation (the index is poisoned if it was a write or flush).
    #[error("key index I/O failed: {0}")]
    Io(#[source] nvme::Error),
    /// A write or flush failed earlier: the index changes nothing until it is reopened.
    #[error("key index failed earlier and is poisoned until reopened")]
    DeviceFailed,
    /// The segment store has no free segment.
    #[error("no free segment for the key index")]
    NoSpace,
    /// Bytes on the device are wrong (checksum, structure, or a run the manifest names whose
    /// segments are gone).
    #[error("key index corruption in {what} (segment {segment}, offset {offset}): {detail}")]
    Corruption {
        /// Which structure.
        what: &'static str,
        /// Store segment id.
        segment: u32,
        /// Byte offset inside the segment.
        offset: u64,
        /// What check failed.
        detail: &'static str,
    },
    /// A checkpoint or compaction is already running.
    #[error("a {0} is already running")]
    Busy(&'static str),
    /// A caller mistake (keys out of order, key too long, bad configuration).
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

/// Settings of a key index.
#[derive(Debug, Clone, Copy)]
pub struct LsmConfig {
    /// Owner tag of run segments (distinct from the shard log's and `manifest_owner`).
    pub run_owner: OwnerTag,
    /// Owner tag of manifest segments.
    pub manifest_owner: OwnerTag,
    /// Data block size the writer aims for, header included. Default 4 KiB; valid: the
    /// device block size ..= `write_buf_bytes`, a multiple of the block size.
    pub block_bytes_target: usize,
    /// Bytes the run writer buffers before writing. Default 256 KiB; valid 128 KiB ..= the
    /// segment size, a multiple of the block size (a block with a 64 KiB key must fit).
    pub write_buf_bytes: usize,
    /// Bloom filter bits per key. Default 10 (about 0.8 % false positives); valid 1..=64.
    pub bloom_bits_per_key: u32,
    /// When to compact.
    pub compaction: CompactionPolicy,
    /// Free segments a run writer leaves to the store's other owners (the shard log's last
    /// room for Raft entries): a checkpoint or compaction that would take them fails with
    /// [`Error::NoSpace`] instead, and compaction starts only when its output fits above
    /// them (`docs/format/key-index.md` §7). Default 0.
    pub reserve_segments: u32,
}

impl LsmConfig {
    /// Returns the defaults with the given owner tags.
    pub fn new(run_owner: OwnerTag, manifest_owner: OwnerTag) -> Self {
        Self {
            run_owner,
            manifest_owner,
            block_bytes_target: 4096,
            write_buf_bytes: 256 << 10,
            bloom_bits_per_key: 10,
            compaction: CompactionPolicy::default(),
            reserve_segments: 0,
        }
    }

    fn check(&self, block: usize, seg_size: u64) -> Result<()> {
        let bad = |m| Err(Error::InvalidArgument(m));
        if self.run_owner == self.manifest_owner {
            return bad("run and manifest owners must differ");
        }
        if self.write_buf_bytes < 128 << 10
            || self.write_buf_bytes % block != 0
            || self.write_buf_bytes as u64 > seg_size
        {
            return bad("write-buf-bytes must be 128 KiB ..= segment size, block-aligned");
        }
        if self.block_bytes_target < block
            || self.block_bytes_target % block != 0
            || self.block_bytes_target > self.write_buf_bytes
        {
            return bad("block-bytes-target must be a multiple of the block size");
        }
        if !(1..=64).contains(&self.bloom_bits_per_key) {
            return bad("bloom-bits-per-key must be 1..=64");
        }
        self.compaction.check()
    }
}
