//! `mem`: an in-memory [`BlockDevice`] for tests.
//!
//! Every write is immediately "durable" (there is nothing to lose); wrap it in
//! [`crate::faulty::FaultyDevice`] to model crashes. Same alignment and range checks as the
//! real backends, so tests catch unaligned requests.

use std::cell::RefCell;
use std::fmt;

use crate::buf::{DmaBuf, IoBuf};
use crate::device::{BlockDevice, check_io};
use crate::error::{Error, Result};

/// An in-memory block device.
pub struct MemDevice {
    data: RefCell<Vec<u8>>,
    alignment: usize,
    queue_depth: usize,
}

impl fmt::Debug for MemDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemDevice")
            .field("capacity", &self.data.borrow().len())
            .field("alignment", &self.alignment)
            .finish()
    }
}

impl MemDevice {
    /// Creates a zeroed device of `capacity` bytes with the given alignment (block size).
    pub fn new(capacity: u64, alignment: usize) -> Result<Self> {
        let cap = usize::try_from(capacity)
            .map_err(|_| Error::InvalidArgument("capacity does not fit in memory"))?;
        Self::from_bytes(vec![0; cap], alignment)
    }

    /// Creates a device holding `data` (e.g. a crash image). The length must be a multiple of
    /// the alignment, which must be a power of two.
    pub fn from_bytes(data: Vec<u8>, alignment: usize) -> Result<Self> {
        if !alignment.is_power_of_two() || data.len() % alignment != 0 {
            return Err(Error::InvalidArgument(
                "alignment must be a power of two dividing the capacity",
            ));
        }
        Ok(Self {
            data: RefCell::new(data),
            alignment,
            queue_depth: 128,
        })
    }

    /// Returns a copy of the device's bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.data.borrow().clone()
    }

    /// Returns the device's bytes.
    pub fn into_bytes(self) -> Vec<u8> {
        self.data.into_inner()
    }

    /// Applies `f` to the device's bytes directly (for corrupting a device in tests).
    pub fn with_bytes_mut<T>(&self, f: impl FnOnce(&mut [u8]) -> T) -> T {
        f(&mut self.data.borrow_mut())
    }
}

impl BlockDevice for MemDevice {
    type Buf = DmaBuf;
    type ReadBuf = DmaBuf;

    fn alignment(&self) -> usize {
        self.alignment
    }

    fn capacity(&self) -> u64 {
        self.data.borrow().len() as u64
    }

    fn queue_depth(&self) -> usize {
        self.queue_depth
    }

    fn alloc_buf(&self, len: usize) -> Result<DmaBuf> {
        if len % self.alignment != 0 {
            return Err(Error::Unaligned {
                offset: 0,
                len,
                alignment: self.alignment,
            });
        }
        DmaBuf::new(len, self.alignment)
    }

    async fn read(&self, offset: u64, len: usize) -> Result<DmaBuf> {
        check_io(offset, len, self.alignment, self.capacity())?;
        let mut out = DmaBuf::new(len, self.alignment)?;
        let data = self.data.borrow();
        let src = range(&data, offset, len)?;
        out.as_bytes_mut().copy_from_slice(src);
        Ok(out)
    }

    async fn write(&self, offset: u64, buf: DmaBuf) -> (Result<()>, DmaBuf) {
        if let Err(e) = check_io(offset, buf.len(), self.alignment, self.capacity()) {
            return (Err(e), buf);
        }
        let mut data = self.data.borrow_mut();
        let res = range_mut(&mut data, offset, buf.len()).map(|dst| dst.copy_from_slice(&buf));
        (res, buf)
    }

    async fn flush(&self) -> Result<()> {
        Ok(())
    }
}

fn bounds(offset: u64, len: usize, cap: usize) -> Result<std::ops::Range<usize>> {
    let start = usize::try_from(offset).ok();
    let end = start.and_then(|s| s.checked_add(len));
    match (start, end) {
        (Some(s), Some(e)) if e <= cap => Ok(s..e),
        _ => Err(Error::OutOfRange {
            offset,
            len,
            capacity: cap as u64,
        }),
    }
}

fn range(data: &[u8], offset: u64, len: usize) -> Result<&[u8]> {
    let r = bounds(offset, len, data.len())?;
    Ok(&data[r])
}

fn range_mut(data: &mut [u8], offset: u64, len: usize) -> Result<&mut [u8]> {
    let r = bounds(offset, len, data.len())?;
    Ok(&mut data[r])
}
