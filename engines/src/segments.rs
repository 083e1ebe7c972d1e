//! [`SharedStore`]: one segment store per device, shared by the shard log and the key index of
//! a shard.
//!
//! The segment table lives in memory once: two `SegmentStore`s opened on one device would
//! overwrite each other's copy-on-write table. Allocations and frees await a table write, so
//! the store is taken out of its cell while one runs and a small local lock queues the others
//! (single-threaded: no atomics, no borrow held across an await). A table update whose future
//! is dropped half-way leaves the table's durable state unknown: the handle is then poisoned
//! (`DeviceFailed` until reopen), like the store itself after a failed write.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::future::poll_fn;
use std::rc::Rc;
use std::task::{Poll, Waker};

use nvme::store::format::Superblock;
use nvme::{BlockDevice, Error, OwnerTag, Result, Segment, SegmentId, SegmentStore, SpaceUsage};

use crate::vlog::SharedDevice;

struct Inner<D: BlockDevice> {
    dev: Rc<D>,
    sb: Superblock,
    store: RefCell<Option<SegmentStore<SharedDevice<D>>>>,
    busy: Cell<bool>,
    waiters: RefCell<Vec<Waker>>,
    poisoned: Cell<bool>,
    /// Free segments as of the end of the last operation (read without the lock).
    free: Cell<u64>,
}

/// A cloneable handle to the segment store of one device (see the module docs).
pub struct SharedStore<D: BlockDevice> {
    inner: Rc<Inner<D>>,
}

impl<D: BlockDevice> Clone for SharedStore<D> {
    fn clone(&self) -> Self {
        Self {
            inner: Rc::clone(&self.inner),
        }
    }
}

impl<D: BlockDevice> fmt::Debug for SharedStore<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedStore")
            .field("superblock", &self.inner.sb)
            .field("busy", &self.inner.busy.get())
            .field("poisoned", &self.inner.poisoned.get())
            .finish()
    }
}

/// Releases the lock on drop; poisons the handle if the store was not put back.
struct Guard<'a, D: BlockDevice> {
    inner: &'a Inner<D>,
}

impl<D: BlockDevice> Drop for Guard<'_, D> {
    fn drop(&mut self) {
        if self.inner.store.borrow().is_none() {
            self.inner.poisoned.set(true);
        }
        self.inner.busy.set(false);
        for w in self.inner.waiters.borrow_mut().drain(..) {
            w.wake();
        }
    }
}

impl<D: BlockDevice> SharedStore<D> {
    /// Opens the segment store on `dev` (formatted with `nvme::SegmentStore::format`).
    pub async fn open(dev: D) -> Result<Self> {
        let dev = Rc::new(dev);
        let store = SegmentStore::open(SharedDevice(Rc::clone(&dev))).await?;
        Ok(Self::from_store(dev, store))
    }

    /// Wraps an open store whose device handle shares `dev`.
    pub fn from_store(dev: Rc<D>, store: SegmentStore<SharedDevice<D>>) -> Self {
        let sb = *store.superblock();
        let free = free_of(&sb, &store);
        Self {
            inner: Rc::new(Inner {
                dev,
                sb,
                store: RefCell::new(Some(store)),
                busy: Cell::new(false),
                waiters: RefCell::new(Vec::new()),
                poisoned: Cell::new(false),
                free: Cell::new(free),
            }),
        }
    }

    /// Returns the device, for reading and writing segment contents.
    pub fn device(&self) -> &Rc<D> {
        &self.inner.dev
    }

    /// Returns the device geometry.
    pub fn superblock(&self) -> &Superblock {
        &self.inner.sb
    }

    /// Returns the segment size in bytes.
    pub fn segment_size(&self) -> u64 {
        self.inner.sb.segment_size
    }

    /// Returns the device offset of segment `id`'s first byte.
    pub fn segment_offset(&self, id: SegmentId) -> u64 {
        self.inner.sb.data_offset + u64::from(id.0) * self.inner.sb.segment_size
    }

    async fn lock(&self) -> Result<Guard<'_, D>> {
        let inner = &*self.inner;
        poll_fn(|cx| {
            if inner.busy.get() {
                inner.waiters.borrow_mut().push(cx.waker().clone());
                Poll::Pending
            } else {
                inner.busy.set(true);
                Poll::Ready(())
            }
        })
        .await;
        let g = Guard { inner };
        if inner.poisoned.get() {
            return Err(Error::DeviceFailed);
        }
        Ok(g)
    }

    /// Allocates a segment to `owner`; durable when it returns.
    pub async fn allocate(&self, owner: OwnerTag) -> Result<Segment> {
        let _g = self.lock().await?;
        let mut store = self.take()?;
        let res = store.allocate(owner).await;
        self.put(store);
        res
    }

    /// Allocates a segment to `owner` only if more than `reserve` segments are free (the
    /// rest is kept for other owners: the key index must find a segment to checkpoint into
    /// when the shard log has filled the device); `NoSpace` otherwise. Durable when it returns.
    pub async fn allocate_leaving(&self, owner: OwnerTag, reserve: u32) -> Result<Segment> {
        let _g = self.lock().await?;
        let mut store = self.take()?;
        let allocated = store.segments().count() as u64;
        let free = self.inner.sb.segment_count.saturating_sub(allocated);
        let res = if free <= u64::from(reserve) {
            Err(nvme::Error::NoSpace {
                segments: self.inner.sb.segment_count,
            })
        } else {
            store.allocate(owner).await
        };
        self.put(store);
        res
    }

    /// Frees segment `id`; durable when it returns.
    pub async fn free(&self, id: SegmentId) -> Result<()> {
        let _g = self.lock().await?;
        let mut store = self.take()?;
        let res = store.free(id).await;
        self.put(store);
        res
    }

    /// Returns every allocated segment of `owner`, in id order.
    pub async fn segments_of(&self, owner: OwnerTag) -> Result<Vec<Segment>> {
        let _g = self.lock().await?;
        let b = self.inner.store.borrow();
        let s = b.as_ref().ok_or(Error::DeviceFailed)?;
        Ok(s.segments().filter(|s| s.owner == owner).collect())
    }

    /// Returns the allocated segment `id`, if it is allocated.
    pub async fn segment(&self, id: SegmentId) -> Result<Option<Segment>> {
        let _g = self.lock().await?;
        let b = self.inner.store.borrow();
        Ok(b.as_ref().ok_or(Error::DeviceFailed)?.segment(id))
    }

    /// Returns capacity, used and free bytes.
    pub async fn space(&self) -> Result<SpaceUsage> {
        let _g = self.lock().await?;
        let b = self.inner.store.borrow();
        Ok(b.as_ref().ok_or(Error::DeviceFailed)?.space())
    }

    /// Returns the device once this is the last handle to it (and to the store).
    pub fn into_device(self) -> Result<D> {
        let inner = Rc::try_unwrap(self.inner)
            .map_err(|_| Error::InvalidArgument("segment store handle still shared"))?;
        drop(inner.store.into_inner());
        Rc::try_unwrap(inner.dev).map_err(|_| Error::InvalidArgument("device handle still shared"))
    }

    fn take(&self) -> Result<SegmentStore<SharedDevice<D>>> {
        self.inner
            .store
            .borrow_mut()
            .take()
            .ok_or(Error::DeviceFailed)
    }

    fn put(&self, store: SegmentStore<SharedDevice<D>>) {
        self.inner.free.set(free_of(&self.inner.sb, &store));
        *self.inner.store.borrow_mut() = Some(store);
    }

    /// Segments free in the store as of the end of the last allocation or free (cheap: no
    /// lock; an operation in flight is not counted yet).
    pub fn free_segments(&self) -> u64 {
        self.inner.free.get()
    }
}

fn free_of<D: BlockDevice>(sb: &Superblock, store: &SegmentStore<SharedDevice<D>>) -> u64 {
    sb.segment_count
        .saturating_sub(store.segments().count() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_lite::future::block_on;
    use nvme::{FormatOptions, MemDevice};

    fn store() -> SharedStore<MemDevice> {
        block_on(async {
            let dev = MemDevice::new((1 << 20) + 16 * 65536, 4096).unwrap();
            let s = SegmentStore::format(
                dev,
                FormatOptions {
                    segment_size: 65536,
                    uuid: Some(nvme::store::format::DeviceUuid([1; 16])),
                },
            )
            .await
            .unwrap();
            SharedStore::open(s.into_device()).await.unwrap()
        })
    }

    /// Two handles see one table: what one allocates the other lists, and a reopen agrees.
    #[test]
    fn handles_share_one_table() {
        block_on(async {
            let a = store();
            let b = a.clone();
            let s1 = a.allocate(OwnerTag(1)).await.unwrap();
            let s2 = b.allocate(OwnerTag(2)).await.unwrap();
            assert_ne!(s1.id, s2.id);
            assert_eq!(b.segments_of(OwnerTag(1)).await.unwrap(), vec![s1]);
            b.free(s1.id).await.unwrap();
            drop(b);
            let dev = a.into_device().unwrap();
            let r = SharedStore::open(dev).await.unwrap();
            assert!(r.segments_of(OwnerTag(1)).await.unwrap().is_empty());
            assert_eq!(r.segments_of(OwnerTag(2)).await.unwrap(), vec![s2]);
        });
    }
}
