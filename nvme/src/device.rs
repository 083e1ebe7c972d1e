//! The [`BlockDevice`] trait every backend implements.

use std::future::Future;
use std::ops::Deref;

use crate::buf::{BufPool, IoBuf, PooledBuf};
use crate::error::{Error, Result};

/// An aligned, asynchronous block device.
///
/// Futures are driven on the calling shard's executor and need not be `Send`. Offsets and
/// lengths must be multiples of [`alignment`](Self::alignment) and lie within
/// [`capacity`](Self::capacity); anything else is refused with `Unaligned` / `OutOfRange`
/// before any I/O is issued. Many calls may be in flight at once (up to
/// [`queue_depth`](Self::queue_depth) reach the device; more wait).
///
/// Durability: a completed `write` is *written*, not durable. [`flush`](Self::flush) is the
/// barrier: every write completed before `flush` was called is durable when it returns `Ok`.
/// If a flush fails the device is poisoned: every later call returns `DeviceFailed` until the
/// device is reopened. Never retry a flush.
///
/// Cancellation: dropping a `write` future may or may not have written its bytes (and loses the
/// buffer); dropping a `read` future loses nothing.
pub trait BlockDevice {
    /// The buffer type writes consume: aligned, filled by the caller, moved into the device
    /// without a copy and handed back when the write completes.
    type Buf: IoBuf;
    /// What a read returns: the bytes read, in a device-owned aligned buffer.
    type ReadBuf: Deref<Target = [u8]>;

    /// Returns the alignment (in bytes, a power of two) required of offsets, lengths and
    /// buffer addresses: the logical block size for `O_DIRECT`.
    fn alignment(&self) -> usize;
    /// Returns the usable size of the device in bytes (a multiple of the alignment).
    fn capacity(&self) -> u64;
    /// Returns how many I/Os the device keeps in flight at most.
    fn queue_depth(&self) -> usize;
    /// Allocates a zeroed buffer of `len` bytes suitable for [`write`](Self::write).
    /// `len` must be a non-zero multiple of the alignment.
    fn alloc_buf(&self, len: usize) -> Result<Self::Buf>;
    /// Reads `len` bytes at `offset`.
    fn read(&self, offset: u64, len: usize) -> impl Future<Output = Result<Self::ReadBuf>>;
    /// Writes all of `buf` at `offset` and hands `buf` back, whether the write succeeded or not.
    fn write(&self, offset: u64, buf: Self::Buf) -> impl Future<Output = (Result<()>, Self::Buf)>;
    /// Makes every completed write durable (a barrier). Poisons the device if it fails.
    fn flush(&self) -> impl Future<Output = Result<()>>;
}

/// A shared handle is a device too: `SegmentStore<Rc<D>>` keeps the table while the shard's
/// other tasks read and write segment contents through their own clones.
impl<D: BlockDevice> BlockDevice for std::rc::Rc<D> {
    type Buf = D::Buf;
    type ReadBuf = D::ReadBuf;

    fn alignment(&self) -> usize {
        (**self).alignment()
    }
    fn capacity(&self) -> u64 {
        (**self).capacity()
    }
    fn queue_depth(&self) -> usize {
        (**self).queue_depth()
    }
    fn alloc_buf(&self, len: usize) -> Result<Self::Buf> {
        (**self).alloc_buf(len)
    }
    fn read(&self, offset: u64, len: usize) -> impl Future<Output = Result<Self::ReadBuf>> {
        (**self).read(offset, len)
    }
    fn write(&self, offset: u64, buf: Self::Buf) -> impl Future<Output = (Result<()>, Self::Buf)> {
        (**self).write(offset, buf)
    }
    fn flush(&self) -> impl Future<Output = Result<()>> {
        (**self).flush()
    }
}

/// Conveniences on top of any [`BlockDevice`].
pub trait BlockDeviceExt: BlockDevice {
    /// Builds a pool of `count` buffers of `buf_len` bytes from this device's allocator.
    fn buf_pool(&self, buf_len: usize, count: usize) -> Result<BufPool<Self::Buf>> {
        BufPool::new(buf_len, count, |n| self.alloc_buf(n))
    }

    /// Writes a pooled buffer at `offset`; the buffer stays in `buf` afterwards.
    fn write_pooled(
        &self,
        offset: u64,
        buf: &mut PooledBuf<Self::Buf>,
    ) -> impl Future<Output = Result<()>> {
        async move {
            let Some(b) = buf.take() else {
                return Err(Error::InvalidArgument("pooled buffer was taken out"));
            };
            let (res, b) = self.write(offset, b).await;
            buf.put(b);
            res
        }
    }

    /// Copies `data` (any length, padded with zeros to the alignment) into a fresh buffer and
    /// writes it at `offset`. For cold paths (formatting, tests); the hot path fills buffers.
    fn write_copy(&self, offset: u64, data: &[u8]) -> impl Future<Output = Result<()>> {
        async move {
            let len = align_up(data.len().max(1) as u64, self.alignment() as u64);
            let len = usize::try_from(len).map_err(|_| Error::InvalidArgument("too long"))?;
            let mut b = self.alloc_buf(len)?;
            b.as_bytes_mut()
                .get_mut(..data.len())
                .ok_or(Error::InvalidArgument("buffer shorter than requested"))?
                .copy_from_slice(data);
            self.write(offset, b).await.0
        }
    }
}

impl<D: BlockDevice + ?Sized> BlockDeviceExt for D {}

/// Rounds `v` up to a multiple of `align` (a power of two).
pub fn align_up(v: u64, align: u64) -> u64 {
    debug_assert!(align.is_power_of_two());
    v.div_ceil(align) * align
}

/// Checks an I/O request against a device's alignment and capacity.
pub fn check_io(offset: u64, len: usize, alignment: usize, capacity: u64) -> Result<()> {
    let a = alignment as u64;
    if len == 0 || offset % a != 0 || len as u64 % a != 0 {
        return Err(Error::Unaligned {
            offset,
            len,
            alignment,
        });
    }
    match offset.checked_add(len as u64) {
        Some(end) if end <= capacity => Ok(()),
        _ => Err(Error::OutOfRange {
            offset,
            len,
            capacity,
        }),
    }
}
