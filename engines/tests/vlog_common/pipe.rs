//! `PipeDevice`: an in-memory device whose flush takes a few executor turns, so the shard
//! log's next batch is written while it runs (the pipelined group commit of
//! docs/format/shard-log.md §4), and which models what such a flush makes durable:
//!
//! - a write changes the current bytes; each block written since it was last durable keeps
//!   its durable image (the bytes a crash may fall back to);
//! - a flush makes durable the bytes each dirty block held when the flush was *issued*; a
//!   block written again while the flush runs stays dirty (its durable image is the
//!   flush's snapshot);
//! - a crash turns each dirty block into its durable image, its current bytes, or a mix of
//!   512-byte sectors of both, as the caller chooses (so tests can enumerate every subset);
//! - a halt at the n-th write or flush (a flush halts after its turns, i.e. while the next
//!   batch was being written) fails that operation and every later one.
#![allow(dead_code)]

use std::cell::RefCell;
use std::collections::BTreeMap;

use nvme::{BlockDevice, Error, IoBuf, MemDevice, Result};

/// Where a [`PipeDevice`] stops (the simulated power cut) or fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PipeFault {
    /// The n-th write (0-based) fails and the device halts.
    HaltWrite(u64),
    /// The n-th flush runs its turns, then fails and the device halts.
    HaltFlush(u64),
    /// The n-th flush fails with an I/O error (the device keeps running, as a real one
    /// would report later errors of its own).
    FailFlush(u64),
}

/// What a crash does with one dirty block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockFate {
    /// The block falls back to its durable image.
    Lost,
    /// The block keeps its newest bytes.
    Kept,
    /// Sector `i` keeps its newest bytes if bit `i` of the mask is set.
    Torn(u64),
}

#[derive(Default)]
struct State {
    /// Dirty blocks: offset → durable image.
    durable: BTreeMap<u64, Vec<u8>>,
    fault: Option<PipeFault>,
    halted: bool,
    writes: u64,
    flushes: u64,
    /// Flushes running now.
    flushing: usize,
    /// Writes issued while a flush was running.
    overlapped_writes: u64,
    /// True if a write was issued while the last flush that finished or halted ran.
    last_flush_overlapped: bool,
}

/// See the module docs.
pub struct PipeDevice {
    inner: MemDevice,
    turns: usize,
    st: RefCell<State>,
}

impl PipeDevice {
    /// Wraps `inner` (its bytes count as durable); each flush takes `turns` executor turns.
    pub fn new(inner: MemDevice, turns: usize) -> Self {
        Self {
            inner,
            turns,
            st: RefCell::new(State::default()),
        }
    }

    /// Schedules the one fault of this device.
    pub fn schedule(&self, fault: PipeFault) {
        self.st.borrow_mut().fault = Some(fault);
    }

    /// Writes and flushes issued so far.
    pub fn counts(&self) -> (u64, u64) {
        let s = self.st.borrow();
        (s.writes, s.flushes)
    }

    /// Writes issued while a flush was running.
    pub fn overlapped_writes(&self) -> u64 {
        self.st.borrow().overlapped_writes
    }

    /// True if a write was issued while the last flush that finished or halted ran (two
    /// batches were in flight).
    pub fn last_flush_overlapped(&self) -> bool {
        self.st.borrow().last_flush_overlapped
    }

    /// Blocks written since they were last durable.
    pub fn dirty_blocks(&self) -> usize {
        self.st.borrow().durable.len()
    }

    /// True once the device halted.
    pub fn is_halted(&self) -> bool {
        self.st.borrow().halted
    }

    /// True if bytes `[offset, offset + len)` are durable: a crash cannot change them.
    pub fn is_durable(&self, offset: u64, len: u64) -> bool {
        let bs = self.inner.alignment() as u64;
        let s = self.st.borrow();
        self.inner.with_bytes_mut(|cur| {
            (offset - offset % bs..offset + len)
                .step_by(bs as usize)
                .all(|b| match s.durable.get(&b) {
                    None => true,
                    Some(img) => {
                        let lo = offset.max(b);
                        let hi = (offset + len).min(b + bs);
                        img[(lo - b) as usize..(hi - b) as usize] == cur[lo as usize..hi as usize]
                    }
                })
        })
    }

    /// The power cut: each dirty block (in offset order) meets `fate(i)`. Returns a device
    /// with what is on the media (this one is left as it was, for more crashes).
    pub fn crash(&self, mut fate: impl FnMut(usize) -> BlockFate) -> MemDevice {
        let s = self.st.borrow();
        let sector = 512.min(self.inner.alignment());
        let out = MemDevice::from_bytes(self.inner.to_bytes(), self.inner.alignment())
            .expect("a copy of a valid device");
        out.with_bytes_mut(|cur| {
            for (i, (&off, img)) in s.durable.iter().enumerate() {
                let at = off as usize;
                let block = &mut cur[at..at + img.len()];
                match fate(i) {
                    BlockFate::Kept => {}
                    BlockFate::Lost => block.copy_from_slice(img),
                    BlockFate::Torn(mask) => {
                        for (k, (c, o)) in
                            block.chunks_mut(sector).zip(img.chunks(sector)).enumerate()
                        {
                            if mask & (1 << (k % 64)) == 0 {
                                c.copy_from_slice(o);
                            }
                        }
                    }
                }
            }
        });
        out
    }

    /// Bytes of the whole device now (newest bytes, dirty or not).
    pub fn snapshot(&self) -> Vec<u8> {
        self.inner.to_bytes()
    }
}

impl BlockDevice for PipeDevice {
    type Buf = <MemDevice as BlockDevice>::Buf;
    type ReadBuf = <MemDevice as BlockDevice>::ReadBuf;

    fn alignment(&self) -> usize {
        self.inner.alignment()
    }

    fn capacity(&self) -> u64 {
        self.inner.capacity()
    }

    fn queue_depth(&self) -> usize {
        self.inner.queue_depth()
    }

    fn alloc_buf(&self, len: usize) -> Result<Self::Buf> {
        self.inner.alloc_buf(len)
    }

    async fn read(&self, offset: u64, len: usize) -> Result<Self::ReadBuf> {
        if self.st.borrow().halted {
            return Err(Error::DeviceFailed);
        }
        self.inner.read(offset, len).await
    }

    async fn write(&self, offset: u64, buf: Self::Buf) -> (Result<()>, Self::Buf) {
        {
            let mut s = self.st.borrow_mut();
            if s.halted {
                return (Err(Error::DeviceFailed), buf);
            }
            let n = s.writes;
            s.writes += 1;
            if s.fault == Some(PipeFault::HaltWrite(n)) {
                s.halted = true;
                return (Err(Error::DeviceFailed), buf);
            }
            if s.flushing > 0 {
                s.overlapped_writes += 1;
            }
            let bs = self.inner.alignment();
            let len = buf.len();
            self.inner.with_bytes_mut(|cur| {
                for b in (offset as usize..offset as usize + len).step_by(bs) {
                    s.durable
                        .entry(b as u64)
                        .or_insert_with(|| cur[b..b + bs].to_vec());
                }
            });
        }
        self.inner.write(offset, buf).await
    }

    async fn flush(&self) -> Result<()> {
        let (n, snap, before) = {
            let mut s = self.st.borrow_mut();
            if s.halted {
                return Err(Error::DeviceFailed);
            }
            let n = s.flushes;
            s.flushes += 1;
            s.flushing += 1;
            let bs = self.inner.alignment();
            let snap: Vec<(u64, Vec<u8>)> = self.inner.with_bytes_mut(|cur| {
                s.durable
                    .keys()
                    .map(|&b| (b, cur[b as usize..b as usize + bs].to_vec()))
                    .collect()
            });
            (n, snap, s.overlapped_writes)
        };
        for _ in 0..self.turns {
            futures_lite::future::yield_now().await;
        }
        let mut s = self.st.borrow_mut();
        s.flushing -= 1;
        s.last_flush_overlapped = s.overlapped_writes > before;
        if s.halted {
            return Err(Error::DeviceFailed);
        }
        match s.fault {
            Some(PipeFault::HaltFlush(k)) if k == n => {
                s.halted = true;
                return Err(Error::DeviceFailed);
            }
            Some(PipeFault::FailFlush(k)) if k == n => {
                return Err(Error::io(
                    "flush",
                    std::io::Error::from_raw_os_error(5), // EIO
                ));
            }
            _ => {}
        }
        self.inner.with_bytes_mut(|cur| {
            for (b, img) in snap {
                let now = &cur[b as usize..b as usize + img.len()];
                if now == &img[..] {
                    s.durable.remove(&b);
                } else if let Some(d) = s.durable.get_mut(&b) {
                    *d = img;
                }
            }
        });
        Ok(())
    }
}
