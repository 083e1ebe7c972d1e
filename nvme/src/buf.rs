//! Aligned DMA buffers and a bounded pool of them.
//!
//! [`DmaBuf`] is the crate's own aligned heap buffer (used by the `mem` device and anywhere a
//! backend has no allocator of its own). It is the one place in this module that uses `unsafe`:
//! the raw pointer never leaves the type. [`BufPool`] keeps a fixed number of a device's buffers
//! so the hot path does not allocate.

use std::alloc::{self, Layout};
use std::cell::RefCell;
use std::collections::VecDeque;
use std::fmt;
use std::future::poll_fn;
use std::ptr::NonNull;
use std::rc::Rc;
use std::task::{Poll, Waker};

use crate::error::{Error, Result};

/// A buffer a device can write from: its bytes, readable and writable by the owner while no
/// I/O holds it.
pub trait IoBuf {
    /// Returns the buffer's bytes.
    fn as_bytes(&self) -> &[u8];
    /// Returns the buffer's bytes for filling.
    fn as_bytes_mut(&mut self) -> &mut [u8];
    /// Returns the buffer's length in bytes.
    fn len(&self) -> usize {
        self.as_bytes().len()
    }
    /// Returns true if the buffer has no bytes.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// An owned, zero-initialised heap buffer whose address is aligned to a power of two.
pub struct DmaBuf {
    ptr: NonNull<u8>,
    layout: Layout,
}

impl DmaBuf {
    /// Allocates `len` zeroed bytes aligned to `align`.
    ///
    /// `len` must be non-zero and `align` a power of two; otherwise `InvalidArgument`.
    pub fn new(len: usize, align: usize) -> Result<Self> {
        if len == 0 {
            return Err(Error::InvalidArgument("buffer length must be non-zero"));
        }
        let layout = Layout::from_size_align(len, align)
            .map_err(|_| Error::InvalidArgument("buffer alignment must be a power of two"))?;
        #[expect(unsafe_code, reason = "aligned allocation has no safe std API")]
        // SAFETY: `layout` has a non-zero size (checked above).
        let raw = unsafe { alloc::alloc_zeroed(layout) };
        let Some(ptr) = NonNull::new(raw) else {
            alloc::handle_alloc_error(layout)
        };
        Ok(Self { ptr, layout })
    }

    /// Returns the alignment of the buffer's address.
    pub fn alignment(&self) -> usize {
        self.layout.align()
    }
}

impl IoBuf for DmaBuf {
    fn as_bytes(&self) -> &[u8] {
        #[expect(unsafe_code, reason = "view of an owned allocation")]
        // SAFETY: `ptr` points to `layout.size()` initialised (zeroed at allocation) bytes owned
        // by `self`; the shared borrow of `self` prevents mutation for the slice's lifetime.
        unsafe {
            std::slice::from_raw_parts(self.ptr.as_ptr(), self.layout.size())
        }
    }

    fn as_bytes_mut(&mut self) -> &mut [u8] {
        #[expect(unsafe_code, reason = "view of an owned allocation")]
        // SAFETY: as in `as_bytes`; the exclusive borrow of `self` makes the slice unique.
        unsafe {
            std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.layout.size())
        }
    }
}

impl std::ops::Deref for DmaBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl AsRef<[u8]> for DmaBuf {
    fn as_ref(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl Drop for DmaBuf {
    fn drop(&mut self) {
        #[expect(unsafe_code, reason = "freeing the allocation made in `new`")]
        // SAFETY: `ptr` was returned by `alloc_zeroed` with exactly `layout` and is freed once.
        unsafe {
            alloc::dealloc(self.ptr.as_ptr(), self.layout);
        }
    }
}

impl fmt::Debug for DmaBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DmaBuf")
            .field("len", &self.layout.size())
            .field("align", &self.layout.align())
            .finish()
    }
}

struct PoolState<B> {
    free: Vec<B>,
    waiters: VecDeque<Waker>,
    lost: usize,
}

/// A bounded pool of equally sized device buffers, allocated up front.
///
/// [`acquire`](Self::acquire) waits while every buffer is out, so the number of buffers (and the
/// memory they pin) never grows. Single-threaded: clone the handle to share it between tasks of
/// one executor.
pub struct BufPool<B> {
    state: Rc<RefCell<PoolState<B>>>,
    buf_len: usize,
    count: usize,
}

impl<B> Clone for BufPool<B> {
    fn clone(&self) -> Self {
        Self {
            state: Rc::clone(&self.state),
            buf_len: self.buf_len,
            count: self.count,
        }
    }
}

impl<B> fmt::Debug for BufPool<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.state.borrow();
        f.debug_struct("BufPool")
            .field("buf_len", &self.buf_len)
            .field("count", &self.count)
            .field("free", &s.free.len())
            .field("lost", &s.lost)
            .finish()
    }
}

impl<B: IoBuf> BufPool<B> {
    /// Builds a pool of `count` buffers of `buf_len` bytes, each made by `alloc`.
    pub fn new(
        buf_len: usize,
        count: usize,
        mut alloc: impl FnMut(usize) -> Result<B>,
    ) -> Result<Self> {
        if count == 0 {
            return Err(Error::InvalidArgument(
                "buffer pool needs at least one buffer",
            ));
        }
        let mut free = Vec::with_capacity(count);
        for _ in 0..count {
            free.push(alloc(buf_len)?);
        }
        Ok(Self {
            state: Rc::new(RefCell::new(PoolState {
                free,
                waiters: VecDeque::new(),
                lost: 0,
            })),
            buf_len,
            count,
        })
    }

    /// Returns the length of every buffer in the pool.
    pub fn buf_len(&self) -> usize {
        self.buf_len
    }

    /// Returns the number of buffers the pool was built with.
    pub fn capacity(&self) -> usize {
        self.count
    }

    /// Returns the number of buffers in the pool now.
    pub fn available(&self) -> usize {
        self.state.borrow().free.len()
    }

    /// Returns how many buffers were dropped while out of the pool (e.g. inside a cancelled
    /// write) and not given back with [`replenish`](Self::replenish).
    pub fn lost(&self) -> usize {
        self.state.borrow().lost
    }

    /// Takes a buffer if one is free, without waiting.
    pub fn try_acquire(&self) -> Option<PooledBuf<B>> {
        let buf = self.state.borrow_mut().free.pop()?;
        Some(PooledBuf {
            buf: Some(buf),
            pool: Rc::clone(&self.state),
        })
    }

    /// Takes a buffer, waiting until one is returned if all are out. The buffer's bytes are
    /// whatever its last user left.
    pub async fn acquire(&self) -> PooledBuf<B> {
        poll_fn(|cx| {
            if let Some(b) = self.try_acquire() {
                return Poll::Ready(b);
            }
            self.state
                .borrow_mut()
                .waiters
                .push_back(cx.waker().clone());
            Poll::Pending
        })
        .await
    }

    /// Gives the pool a new buffer in place of a lost one. Refused (`InvalidArgument`) if the
    /// length differs or nothing was lost.
    pub fn replenish(&self, buf: B) -> Result<()> {
        if buf.len() != self.buf_len {
            return Err(Error::InvalidArgument(
                "replenished buffer has the wrong length",
            ));
        }
        let mut s = self.state.borrow_mut();
        if s.lost == 0 {
            return Err(Error::InvalidArgument("buffer pool is already full"));
        }
        s.lost -= 1;
        s.free.push(buf);
        if let Some(w) = s.waiters.pop_front() {
            w.wake();
        }
        Ok(())
    }
}

/// A buffer on loan from a [`BufPool`]; it goes back to the pool when dropped.
///
/// To hand it to a device, [`take`](Self::take) the buffer out and [`put`](Self::put) back the
/// one the device returns (see [`crate::BlockDeviceExt::write_pooled`]).
pub struct PooledBuf<B> {
    buf: Option<B>,
    pool: Rc<RefCell<PoolState<B>>>,
}

impl<B> fmt::Debug for PooledBuf<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PooledBuf")
            .field("present", &self.buf.is_some())
            .finish()
    }
}

impl<B: IoBuf> PooledBuf<B> {
    /// Takes the buffer out (to move it into a device call). Returns `None` if already taken.
    pub fn take(&mut self) -> Option<B> {
        self.buf.take()
    }

    /// Puts a buffer back after [`take`](Self::take).
    pub fn put(&mut self, buf: B) {
        debug_assert!(
            self.buf.is_none(),
            "a pooled buffer holds one buffer at a time"
        );
        self.buf = Some(buf);
    }

    /// Returns the buffer's bytes (empty if taken).
    pub fn as_bytes(&self) -> &[u8] {
        self.buf.as_ref().map_or(&[], IoBuf::as_bytes)
    }

    /// Returns the buffer's bytes for filling (empty if taken).
    pub fn as_bytes_mut(&mut self) -> &mut [u8] {
        self.buf.as_mut().map_or(&mut [], IoBuf::as_bytes_mut)
    }
}

impl<B> Drop for PooledBuf<B> {
    fn drop(&mut self) {
        let mut s = self.pool.borrow_mut();
        match self.buf.take() {
            Some(b) => s.free.push(b),
            None => s.lost += 1,
        }
        if let Some(w) = s.waiters.pop_front() {
            w.wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dma_buf_is_aligned_and_zeroed() {
        for align in [512, 4096, 65536] {
            let b = DmaBuf::new(8192, align).unwrap();
            assert_eq!(b.as_bytes().as_ptr() as usize % align, 0);
            assert!(b.iter().all(|&x| x == 0));
        }
        assert!(DmaBuf::new(0, 4096).is_err());
        assert!(DmaBuf::new(4096, 3000).is_err());
    }

    #[test]
    fn pool_is_bounded_and_wakes_waiters() {
        let pool = BufPool::new(4096, 2, |n| DmaBuf::new(n, 4096)).unwrap();
        let a = pool.try_acquire().unwrap();
        let mut b = pool.try_acquire().unwrap();
        assert!(pool.try_acquire().is_none());
        let p2 = pool.clone();
        let waiter = std::pin::pin!(async move { p2.acquire().await });
        let mut waiter = waiter;
        let waker = Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        assert!(waiter.as_mut().poll(&mut cx).is_pending());
        drop(a);
        assert!(waiter.as_mut().poll(&mut cx).is_ready());
        // A taken-out buffer that is dropped is counted as lost and can be replaced.
        let inner = b.take().unwrap();
        drop(inner);
        drop(b);
        assert_eq!(pool.lost(), 1);
        pool.replenish(DmaBuf::new(4096, 4096).unwrap()).unwrap();
        assert_eq!(pool.lost(), 0);
    }
}
