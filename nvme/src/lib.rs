//! `nvme`: block devices and the segment store on top of them.
//!
//! Module map:
//! - [`device`]: the [`BlockDevice`] trait (aligned async reads and writes, `flush`, alignment,
//!   capacity, queue depth) and helpers.
//! - [`buf`]: aligned DMA buffers ([`DmaBuf`]) and a bounded buffer pool ([`BufPool`]).
//! - [`uring`]: the default backend, io_uring with `O_DIRECT` on a preallocated file or a raw
//!   block device, through glommio's DMA files. The only module that names glommio types.
//! - [`mem`]: an in-memory device for tests.
//! - [`faulty`]: a wrapper that injects I/O errors and simulates crashes (durable vs written
//!   bytes, torn blocks).
//! - `spdk` (feature `spdk`): SPDK's user-space NVMe driver. Never run: SPDK cannot be
//!   installed where this was written.
//! - [`store`]: the segment store (superblock + copy-on-write segment table), format in
//!   `docs/format/nvme.md`.
//! - [`error`]: the crate's [`Error`].
//!
//! Dependencies: no workspace crate. This crate must never depend on tokio, `net` or
//! `engines` (checked by `scripts/check-deps`).
//!
//! Threading: thread-per-core. A device handle and the futures it returns belong to the
//! executor (shard) that created them; nothing here is `Send` or locks. Completions are reaped
//! by that executor's own io_uring.
#![deny(unsafe_code)]
#![deny(missing_docs)]

pub mod buf;
pub mod device;
pub mod error;
pub mod faulty;
pub mod mem;
#[cfg(feature = "spdk")]
pub mod spdk;
pub mod store;
pub mod uring;

pub use buf::{BufPool, DmaBuf, IoBuf, PooledBuf};
pub use device::{BlockDevice, BlockDeviceExt};
pub use error::{Error, Result};
pub use faulty::{CrashMode, Fault, FaultAction, FaultyDevice, OpKind};
pub use mem::MemDevice;
pub use store::{
    FormatOptions, Generation, OwnerTag, Segment, SegmentId, SegmentStore, SpaceUsage,
};
