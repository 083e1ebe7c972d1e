//! A shared handle to a block device, so the segment store and the log's own reads and
//! writes use one device on one shard.

use std::rc::Rc;

use nvme::{BlockDevice, Result};

/// A [`BlockDevice`] behind an `Rc`: every call goes to the shared device.
#[derive(Debug)]
pub struct SharedDevice<D>(pub Rc<D>);

impl<D: BlockDevice> BlockDevice for SharedDevice<D> {
    type Buf = D::Buf;
    type ReadBuf = D::ReadBuf;

    fn alignment(&self) -> usize {
        self.0.alignment()
    }

    fn capacity(&self) -> u64 {
        self.0.capacity()
    }

    fn queue_depth(&self) -> usize {
        self.0.queue_depth()
    }

    fn alloc_buf(&self, len: usize) -> Result<D::Buf> {
        self.0.alloc_buf(len)
    }

    async fn read(&self, offset: u64, len: usize) -> Result<D::ReadBuf> {
        self.0.read(offset, len).await
    }

    async fn write(&self, offset: u64, buf: D::Buf) -> (Result<()>, D::Buf) {
        self.0.write(offset, buf).await
    }

    async fn flush(&self) -> Result<()> {
        self.0.flush().await
    }
}
