//! `faulty`: a [`BlockDevice`] wrapper that simulates crashes and I/O faults.
//!
//! It tracks which bytes are durable (flushed) apart from those merely written: before the
//! first write to a block since the last flush it saves that block's durable bytes (an undo
//! image). [`FaultyDevice::crash`] then decides, block by block, what a power cut leaves: the
//! old bytes, the new bytes, or a torn mix of 512-byte sectors (no atomic block writes are
//! assumed). It can also fail the n-th read, write or flush with `EIO`, or *halt* at the n-th
//! operation (the simulated moment of the crash: that operation and all later ones fail).
//! A failed flush poisons the device: every later call returns `DeviceFailed` until the device
//! is reopened (`crash` or `into_inner`).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::buf::IoBuf;
use crate::device::{BlockDevice, check_io};
use crate::error::{Error, Result};

/// Which kind of operation a [`Fault`] counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum OpKind {
    /// `read` calls.
    Read,
    /// `write` calls.
    Write,
    /// `flush` calls.
    Flush,
    /// Every call (reads, writes and flushes together).
    Any,
}

/// What happens at a scheduled fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FaultAction {
    /// The operation fails with `EIO` and does nothing. A failed flush poisons the device.
    Eio,
    /// The simulated crash happens here: this operation and every later one fail with
    /// `DeviceFailed` without touching the device. Call [`FaultyDevice::crash`] next.
    Halt,
}

/// One scheduled fault: `action` at the `nth` (0-based) operation of `kind`, counted from the
/// creation of the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fault {
    /// Which operations are counted.
    pub kind: OpKind,
    /// The 0-based index of the operation that faults.
    pub nth: u64,
    /// What happens.
    pub action: FaultAction,
}

/// What a crash does with blocks written since the last flush.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CrashMode {
    /// Every unflushed write is lost.
    DropUnflushed,
    /// Every unflushed write survives (as if the cache happened to reach the media).
    KeepUnflushed,
    /// Each unflushed block independently keeps its old bytes, its new bytes, or a torn mix of
    /// 512-byte sectors, chosen by a PRNG seeded with `seed`.
    Random {
        /// Seed of the choices.
        seed: u64,
    },
}

/// Counts of operations issued so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OpCounts {
    /// Reads issued.
    pub reads: u64,
    /// Writes issued.
    pub writes: u64,
    /// Flushes issued.
    pub flushes: u64,
}

impl OpCounts {
    /// Returns all operations issued.
    pub fn total(&self) -> u64 {
        self.reads + self.writes + self.flushes
    }
}

#[derive(Default)]
struct State {
    /// Durable bytes of each block (by offset) written since the last flush.
    undo: BTreeMap<u64, Vec<u8>>,
    faults: Vec<Fault>,
    counts: OpCounts,
    poisoned: bool,
    halted: bool,
}

/// A fault-injecting, crash-simulating wrapper around any [`BlockDevice`].
pub struct FaultyDevice<D> {
    inner: D,
    state: RefCell<State>,
    /// The power switch: set, every call fails as after a `Halt` fault. Shared (`Send`) so
    /// code that is not on the device's thread — a failpoint callback — can cut the power at
    /// an exact point of the program.
    power_off: Arc<AtomicBool>,
}

impl<D> fmt::Debug for FaultyDevice<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.state.borrow();
        f.debug_struct("FaultyDevice")
            .field("unflushed_blocks", &s.undo.len())
            .field("counts", &s.counts)
            .field("poisoned", &s.poisoned)
            .field("halted", &s.halted)
            .finish()
    }
}

impl<D: BlockDevice> FaultyDevice<D> {
    /// Wraps `inner`, treating its current contents as durable.
    pub fn new(inner: D) -> Self {
        Self {
            inner,
            state: RefCell::new(State::default()),
            power_off: Arc::default(),
        }
    }

    /// Schedules a fault.
    pub fn schedule(&self, fault: Fault) {
        self.state.borrow_mut().faults.push(fault);
    }

    /// Returns the operations issued so far (including refused and failed ones).
    pub fn counts(&self) -> OpCounts {
        self.state.borrow().counts
    }

    /// Returns true once a flush failed (until reopen).
    pub fn is_poisoned(&self) -> bool {
        self.state.borrow().poisoned
    }

    /// Returns true once a `Halt` fault fired or the power was switched off.
    pub fn is_halted(&self) -> bool {
        self.state.borrow().halted || self.power_off.load(Ordering::SeqCst)
    }

    /// Returns the power switch: storing `true` halts the device at once (every later call
    /// fails with `DeviceFailed`; call [`crash_in_place`](Self::crash_in_place) next). A
    /// `Halt` fault sets it too, so other simulated hardware sharing the switch (a crashable
    /// file system) stops at the same instant.
    pub fn power_switch(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.power_off)
    }

    /// Returns the number of blocks written since the last flush.
    pub fn unflushed_blocks(&self) -> usize {
        self.state.borrow().undo.len()
    }

    /// Returns the wrapped device.
    pub fn inner(&self) -> &D {
        &self.inner
    }

    /// Reopens without a crash (a clean shutdown): everything written stays.
    pub fn into_inner(self) -> D {
        self.inner
    }

    /// Simulates a power cut: decides what happened to each block written since the last
    /// flush (see [`CrashMode`]), makes that the inner device's durable content, and returns the
    /// inner device for reopening.
    pub async fn crash(self, mode: CrashMode) -> Result<D> {
        self.crash_in_place(mode).await?;
        Ok(self.inner)
    }

    /// [`crash`](Self::crash) for a device still shared with the code that used it: this
    /// device stays halted for good (the crashed program can do nothing more to it) and
    /// [`inner`](Self::inner) holds what survived, to copy into a new device for reopening.
    pub async fn crash_in_place(&self, mode: CrashMode) -> Result<()> {
        self.state.borrow_mut().halted = true;
        let undo = std::mem::take(&mut self.state.borrow_mut().undo);
        let mut rng = SplitMix(match mode {
            CrashMode::Random { seed } => seed,
            _ => 0,
        });
        let sector = 512.min(self.inner.alignment());
        let mut touched = false;
        for (offset, old) in undo {
            let choice = match mode {
                CrashMode::DropUnflushed => 0,
                CrashMode::KeepUnflushed => 1,
                CrashMode::Random { .. } => rng.next() % 3,
            };
            let image = match choice {
                0 => old,
                1 => continue,
                _ => {
                    let new = self.inner.read(offset, old.len()).await?;
                    let mut mixed = old;
                    for (i, chunk) in mixed.chunks_mut(sector).enumerate() {
                        if rng.next() % 2 == 1 {
                            let start = i * sector;
                            let src = new.get(start..start + chunk.len()).ok_or(
                                Error::InvalidArgument("inner device returned a short read"),
                            )?;
                            chunk.copy_from_slice(src);
                        }
                    }
                    mixed
                }
            };
            let mut buf = self.inner.alloc_buf(image.len())?;
            buf.as_bytes_mut().copy_from_slice(&image);
            self.inner.write(offset, buf).await.0?;
            touched = true;
        }
        if touched {
            self.inner.flush().await?;
        }
        Ok(())
    }

    /// Counts an operation of `kind` and returns the fault it triggers, if any.
    fn gate(&self, kind: OpKind) -> Result<Option<FaultAction>> {
        let mut s = self.state.borrow_mut();
        if s.halted || s.poisoned || self.power_off.load(Ordering::SeqCst) {
            return Err(Error::DeviceFailed);
        }
        let (nth_kind, nth_any) = {
            let c = &mut s.counts;
            let any = c.total();
            let n = match kind {
                OpKind::Read => &mut c.reads,
                OpKind::Write => &mut c.writes,
                OpKind::Flush | OpKind::Any => &mut c.flushes,
            };
            let nth = *n;
            *n += 1;
            (nth, any)
        };
        let hit = s.faults.iter().find(|f| {
            (f.kind == kind && f.nth == nth_kind) || (f.kind == OpKind::Any && f.nth == nth_any)
        });
        match hit.map(|f| f.action) {
            Some(FaultAction::Halt) => {
                s.halted = true;
                self.power_off.store(true, Ordering::SeqCst);
                Err(Error::DeviceFailed)
            }
            other => Ok(other),
        }
    }

    /// Saves the durable bytes of every block in `[offset, offset+len)` not yet saved.
    async fn save_undo(&self, offset: u64, len: usize) -> Result<()> {
        let a = self.inner.alignment();
        let missing = {
            let s = self.state.borrow();
            (0..len / a).any(|i| !s.undo.contains_key(&(offset + (i * a) as u64)))
        };
        if !missing {
            return Ok(());
        }
        let old = self.inner.read(offset, len).await?;
        let mut s = self.state.borrow_mut();
        for (i, block) in old.chunks(a).enumerate() {
            s.undo
                .entry(offset + (i * a) as u64)
                .or_insert_with(|| block.to_vec());
        }
        Ok(())
    }
}

fn eio() -> io::Error {
    io::Error::from_raw_os_error(libc::EIO)
}

impl<D: BlockDevice> BlockDevice for FaultyDevice<D> {
    type Buf = D::Buf;
    type ReadBuf = D::ReadBuf;

    fn alignment(&self) -> usize {
        self.inner.alignment()
    }

    fn capacity(&self) -> u64 {
        self.inner.capacity()
    }

    fn queue_depth(&self) -> usize {
        self.inner.queue_depth()
    }

    fn alloc_buf(&self, len: usize) -> Result<D::Buf> {
        self.inner.alloc_buf(len)
    }

    async fn read(&self, offset: u64, len: usize) -> Result<D::ReadBuf> {
        if let Some(FaultAction::Eio) = self.gate(OpKind::Read)? {
            return Err(Error::io("read", eio()));
        }
        self.inner.read(offset, len).await
    }

    async fn write(&self, offset: u64, buf: D::Buf) -> (Result<()>, D::Buf) {
        match self.gate(OpKind::Write) {
            Err(e) => return (Err(e), buf),
            Ok(Some(FaultAction::Eio)) => return (Err(Error::io("write", eio())), buf),
            Ok(_) => {}
        }
        if let Err(e) = check_io(offset, buf.len(), self.alignment(), self.capacity()) {
            return (Err(e), buf);
        }
        if let Err(e) = self.save_undo(offset, buf.len()).await {
            return (Err(e), buf);
        }
        self.inner.write(offset, buf).await
    }

    async fn flush(&self) -> Result<()> {
        if let Some(FaultAction::Eio) = self.gate(OpKind::Flush)? {
            self.state.borrow_mut().poisoned = true;
            return Err(Error::io("flush", eio()));
        }
        let res = self.inner.flush().await;
        let mut s = self.state.borrow_mut();
        match res {
            Ok(()) => s.undo.clear(),
            Err(_) => s.poisoned = true,
        }
        res
    }
}

/// SplitMix64: a tiny deterministic PRNG so crash choices replay from a seed.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::BlockDeviceExt;
    use crate::mem::MemDevice;
    use futures_lite::future::block_on;

    fn dev() -> FaultyDevice<MemDevice> {
        FaultyDevice::new(MemDevice::new(64 * 1024, 4096).unwrap())
    }

    /// Unflushed writes vanish on `DropUnflushed`; flushed ones stay.
    #[test]
    fn crash_drops_unflushed_and_keeps_flushed() {
        block_on(async {
            let d = dev();
            d.write_copy(0, &[1; 4096]).await.unwrap();
            d.flush().await.unwrap();
            d.write_copy(0, &[2; 4096]).await.unwrap();
            d.write_copy(4096, &[3; 4096]).await.unwrap();
            assert_eq!(d.unflushed_blocks(), 2);
            let m = d.crash(CrashMode::DropUnflushed).await.unwrap();
            let b = m.to_bytes();
            assert!(b[..4096].iter().all(|&x| x == 1));
            assert!(b[4096..8192].iter().all(|&x| x == 0));
        });
    }

    /// The power switch halts the device at once, from any thread; an in-place crash then
    /// leaves the durable image in the inner device and the device halted for good.
    #[test]
    fn power_switch_halts_and_an_in_place_crash_keeps_the_durable_image() {
        block_on(async {
            let d = dev();
            d.write_copy(0, &[1; 4096]).await.unwrap();
            d.flush().await.unwrap();
            d.write_copy(0, &[2; 4096]).await.unwrap();
            let switch = d.power_switch();
            std::thread::spawn(move || switch.store(true, Ordering::SeqCst))
                .join()
                .unwrap();
            assert!(d.is_halted());
            assert!(matches!(d.flush().await, Err(Error::DeviceFailed)));
            d.crash_in_place(CrashMode::DropUnflushed).await.unwrap();
            assert!(d.inner().to_bytes()[..4096].iter().all(|&x| x == 1));
            assert!(matches!(d.read(0, 4096).await, Err(Error::DeviceFailed)));
        });
    }

    /// A torn block is a mix of 512-byte sectors of the old and new bytes, nothing else.
    #[test]
    fn random_crash_tears_at_sector_granularity() {
        block_on(async {
            let mut seen_torn = false;
            for seed in 0..64 {
                let d = dev();
                d.write_copy(0, &[7; 4096]).await.unwrap();
                let m = d.crash(CrashMode::Random { seed }).await.unwrap();
                let b = m.to_bytes();
                let sectors: Vec<u8> = b[..4096].chunks(512).map(|c| c[0]).collect();
                for (c, s) in b[..4096].chunks(512).zip(&sectors) {
                    assert!(c.iter().all(|x| x == s));
                    assert!(*s == 0 || *s == 7);
                }
                seen_torn |= sectors.contains(&0) && sectors.contains(&7);
            }
            assert!(seen_torn);
        });
    }

    /// A failed flush poisons the device: every later call fails until reopen.
    #[test]
    fn failed_flush_poisons_until_reopen() {
        block_on(async {
            let d = dev();
            d.schedule(Fault {
                kind: OpKind::Flush,
                nth: 1,
                action: FaultAction::Eio,
            });
            d.flush().await.unwrap();
            assert!(matches!(d.flush().await, Err(Error::Io { .. })));
            assert!(d.is_poisoned());
            assert!(matches!(d.read(0, 4096).await, Err(Error::DeviceFailed)));
            assert!(matches!(d.flush().await, Err(Error::DeviceFailed)));
            let d = FaultyDevice::new(d.crash(CrashMode::DropUnflushed).await.unwrap());
            d.read(0, 4096).await.unwrap();
        });
    }

    /// Scheduled read and write errors fire once, at the scheduled operation.
    #[test]
    fn scheduled_eio_on_read_and_write() {
        block_on(async {
            let d = dev();
            d.schedule(Fault {
                kind: OpKind::Read,
                nth: 0,
                action: FaultAction::Eio,
            });
            d.schedule(Fault {
                kind: OpKind::Write,
                nth: 1,
                action: FaultAction::Eio,
            });
            assert!(d.read(0, 4096).await.is_err());
            d.read(0, 4096).await.unwrap();
            d.write_copy(0, &[1]).await.unwrap();
            assert!(matches!(
                d.write_copy(0, &[1]).await,
                Err(Error::Io { op: "write", .. })
            ));
            d.write_copy(0, &[1]).await.unwrap();
        });
    }
}
