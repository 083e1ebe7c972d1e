//! `uring`: the default backend — io_uring with `O_DIRECT` on a preallocated file or a raw
//! block device, through glommio 0.9's `DmaFile`.
//!
//! This is the only module that names glommio types, so the runtime can be swapped (compio
//! is the maintained alternative) without touching the rest of the crate. Completions are
//! reaped by the io_uring of the glommio executor the device was opened on: a `UringDevice`
//! must be used only on that executor (it is not `Send`).
//!
//! Workarounds for what `NOTES.md` measured on this machine, all applied here:
//! 1. glommio probes polled-I/O support with a read at offset 0 of the first `DmaFile` opened
//!    on a device in each executor; on a sparse or fallocated file the read never reaches the
//!    disk, the probe wrongly succeeds, and later reads fail with EOPNOTSUPP. [`UringDevice`]'s
//!    constructors first open a small seed file written with `std::fs` + `sync_all` in the same
//!    directory, in every executor, so the probe reads real blocks.
//! 2. On a raw block device glommio does not add `O_DIRECT` by itself: we pass it explicitly.
//! 3. Registered buffers count against `RLIMIT_MEMLOCK` (8 MiB by default):
//!    [`raise_memlock`] raises it (as root) before executors start.
//!
//! Files are created at their full size with `fallocate` and never grown on the write path.
//! Polled I/O and SQPOLL are not used (not supported here / costs a core).

use std::cell::Cell;
use std::fmt;
use std::io::{self, Seek, SeekFrom};
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use glommio::io::{DmaBuffer, DmaFile, OpenOptions, ReadResult};
use glommio::sync::Semaphore;

use crate::buf::IoBuf;
use crate::device::{BlockDevice, check_io};
use crate::error::{Error, Result};

/// Name of the seed file written next to device files (workaround 1 above).
pub const SEED_FILE_NAME: &str = ".tierkv-nvme-seed";

/// Options for opening a [`UringDevice`].
#[derive(Debug, Clone, Copy)]
pub struct UringOptions {
    /// Most I/Os in flight on this device. Default 128; valid 1..=4096.
    pub queue_depth: usize,
    /// Smallest alignment to enforce, bytes (power of two). Default 4096: the physical block
    /// size of the disks we run on, even where the logical block size is 512.
    pub min_alignment: usize,
    /// Open with `O_DSYNC`: a write completes only once it is durable (the kernel writes it
    /// with FUA, or follows it with a cache flush), so [`flush`](BlockDevice::flush) has
    /// nothing left to do and returns at once. A log pays one io_uring operation per group
    /// commit instead of a write and then an `fdatasync` that io_uring hands to a worker
    /// thread (measured through `tierkv dev`: 20 % less CPU per `SET` at pipeline 1;
    /// docs/benchmarks.md). A write that fails poisons the device, as a failed flush does.
    /// Default false.
    pub write_through: bool,
}

impl Default for UringOptions {
    fn default() -> Self {
        Self {
            queue_depth: 128,
            min_alignment: 4096,
            write_through: false,
        }
    }
}

/// A write buffer: a glommio DMA buffer (from the executor's registered I/O memory when it
/// has room).
pub struct UringBuf(DmaBuffer);

impl fmt::Debug for UringBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UringBuf")
            .field("len", &self.0.len())
            .finish()
    }
}

impl IoBuf for UringBuf {
    fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
    fn as_bytes_mut(&mut self) -> &mut [u8] {
        self.0.as_bytes_mut()
    }
}

/// The bytes of a completed read, in glommio's buffer (no copy).
pub struct UringReadBuf(ReadResult);

impl fmt::Debug for UringReadBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UringReadBuf")
            .field("len", &self.0.len())
            .finish()
    }
}

impl std::ops::Deref for UringReadBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

/// An io_uring block device on one glommio executor.
pub struct UringDevice {
    file: DmaFile,
    path: PathBuf,
    capacity: u64,
    alignment: usize,
    queue_depth: usize,
    slots: Semaphore,
    poisoned: Cell<bool>,
    raw_device: bool,
    write_through: bool,
}

impl fmt::Debug for UringDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UringDevice")
            .field("path", &self.path)
            .field("capacity", &self.capacity)
            .field("alignment", &self.alignment)
            .field("queue_depth", &self.queue_depth)
            .field("raw_device", &self.raw_device)
            .field("write_through", &self.write_through)
            .field("poisoned", &self.poisoned.get())
            .finish()
    }
}

fn gio<T>(op: &'static str) -> impl FnOnce(glommio::GlommioError<T>) -> Error {
    move |e| Error::io(op, io::Error::from(e))
}

impl UringDevice {
    /// Creates (or replaces) the regular file `path` at its full `size` (a multiple of the
    /// alignment) with `fallocate`, and opens it. Must run inside a glommio executor.
    pub async fn create_file(path: &Path, size: u64, opts: UringOptions) -> Result<Self> {
        check_options(&opts)?;
        if size == 0 || size % opts.min_alignment as u64 != 0 {
            return Err(Error::InvalidArgument(
                "file size must be a non-zero multiple of the alignment",
            ));
        }
        seed_probe(path).await?;
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .dma_open(path)
            .await
            .map_err(gio("create device file"))?;
        f.pre_allocate(size, false)
            .await
            .map_err(gio("fallocate device file"))?;
        f.fdatasync().await.map_err(gio("sync device file"))?;
        f.close().await.map_err(gio("close device file"))?;
        sync_parent_dir(path)?;
        Self::open(path, opts).await
    }

    /// Like [`create_file`](Self::create_file), then writes zeros over the whole file and
    /// syncs it once. `fallocate` leaves *unwritten* extents: the first write to each one
    /// changes file-system metadata, so the flush after it commits the ext4 journal (measured
    /// here: ~0.6–1.2k instead of ~2.7k write+flush/s). Zeroing up front moves that cost to
    /// creation time (about size / 1.5 GiB/s on our disks). The zeros are written without
    /// `O_DSYNC` (one flush at the end), then the file is opened with `opts`.
    pub async fn create_file_zeroed(path: &Path, size: u64, opts: UringOptions) -> Result<Self> {
        let plain = UringOptions {
            write_through: false,
            ..opts
        };
        let dev = Self::create_file(path, size, plain).await?;
        let chunk = (1u64 << 20).min(size) as usize / dev.alignment * dev.alignment;
        let mut buf = Some(dev.alloc_buf(chunk)?);
        let mut off = 0;
        while off < size {
            let len = chunk.min((size - off) as usize);
            let b = match buf.take() {
                Some(b) if b.len() == len => b,
                _ => dev.alloc_buf(len)?,
            };
            let (res, b) = dev.write(off, b).await;
            res?;
            buf = Some(b);
            off += len as u64;
        }
        dev.flush().await?;
        if !opts.write_through {
            return Ok(dev);
        }
        dev.close().await?;
        Self::open(path, opts).await
    }

    /// Opens an existing preallocated file or raw block device read-write with `O_DIRECT`.
    /// The capacity is the file's size (or the device's), rounded down to the alignment.
    /// Must run inside a glommio executor.
    pub async fn open(path: &Path, opts: UringOptions) -> Result<Self> {
        check_options(&opts)?;
        let meta = std::fs::metadata(path).map_err(|e| Error::io("stat device", e))?;
        let raw_device = meta.file_type().is_block_device();
        let size = if raw_device {
            std::fs::File::open(path)
                .and_then(|mut f| f.seek(SeekFrom::End(0)))
                .map_err(|e| Error::io("size block device", e))?
        } else if meta.is_file() {
            seed_probe(path).await?;
            meta.len()
        } else {
            return Err(Error::InvalidArgument(
                "device path is neither a regular file nor a block device",
            ));
        };
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_DIRECT | if opts.write_through { libc::O_DSYNC } else { 0 })
            .dma_open(path)
            .await
            .map_err(gio("open device"))?;
        let alignment = (file.alignment() as usize).max(opts.min_alignment);
        let capacity = size / alignment as u64 * alignment as u64;
        if capacity == 0 {
            return Err(Error::InvalidArgument("device is smaller than one block"));
        }
        Ok(Self {
            file,
            path: path.to_path_buf(),
            capacity,
            alignment,
            queue_depth: opts.queue_depth,
            slots: Semaphore::new(opts.queue_depth as u64),
            poisoned: Cell::new(false),
            raw_device,
            write_through: opts.write_through,
        })
    }

    /// Whether the open file has `O_DSYNC` set, as the kernel reports it (`fcntl(F_GETFL)`):
    /// true when opened with [`UringOptions::write_through`].
    pub fn is_write_through(&self) -> Result<bool> {
        use std::os::fd::AsRawFd;
        #[expect(unsafe_code, reason = "fcntl has no safe std wrapper")]
        // SAFETY: F_GETFL only reads the status flags of a descriptor this device owns and
        // keeps open for the duration of the call.
        let flags = unsafe { libc::fcntl(self.file.as_raw_fd(), libc::F_GETFL) };
        if flags < 0 {
            return Err(Error::io("fcntl", io::Error::last_os_error()));
        }
        Ok(flags & libc::O_DSYNC == libc::O_DSYNC)
    }

    /// Returns true if the device is a raw block device (not a file).
    pub fn is_raw_device(&self) -> bool {
        self.raw_device
    }

    /// Returns the path the device was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Closes the device.
    pub async fn close(self) -> Result<()> {
        self.file.close().await.map_err(gio("close device"))
    }

    fn check_poisoned(&self) -> Result<()> {
        if self.poisoned.get() {
            Err(Error::DeviceFailed)
        } else {
            Ok(())
        }
    }
}

fn check_options(opts: &UringOptions) -> Result<()> {
    if !(1..=4096).contains(&opts.queue_depth) {
        return Err(Error::InvalidArgument("queue depth must be in 1..=4096"));
    }
    if !opts.min_alignment.is_power_of_two() || opts.min_alignment < 512 {
        return Err(Error::InvalidArgument(
            "alignment must be a power of two >= 512",
        ));
    }
    Ok(())
}

impl BlockDevice for UringDevice {
    type Buf = UringBuf;
    type ReadBuf = UringReadBuf;

    fn alignment(&self) -> usize {
        self.alignment
    }

    fn capacity(&self) -> u64 {
        self.capacity
    }

    fn queue_depth(&self) -> usize {
        self.queue_depth
    }

    fn alloc_buf(&self, len: usize) -> Result<UringBuf> {
        if len == 0 || len % self.alignment != 0 {
            return Err(Error::Unaligned {
                offset: 0,
                len,
                alignment: self.alignment,
            });
        }
        let mut b = self.file.alloc_dma_buffer(len);
        b.as_bytes_mut().fill(0);
        Ok(UringBuf(b))
    }

    async fn read(&self, offset: u64, len: usize) -> Result<UringReadBuf> {
        self.check_poisoned()?;
        check_io(offset, len, self.alignment, self.capacity)?;
        let _permit = self
            .slots
            .acquire_permit(1)
            .await
            .map_err(gio("queue slot"))?;
        let r = self
            .file
            .read_at_aligned(offset, len)
            .await
            .map_err(gio("read"))?;
        if r.len() != len {
            return Err(Error::io(
                "read",
                io::Error::new(io::ErrorKind::UnexpectedEof, "short read"),
            ));
        }
        Ok(UringReadBuf(r))
    }

    async fn write(&self, offset: u64, buf: UringBuf) -> (Result<()>, UringBuf) {
        if let Err(e) = self
            .check_poisoned()
            .and_then(|()| check_io(offset, buf.len(), self.alignment, self.capacity))
        {
            return (Err(e), buf);
        }
        let len = buf.len();
        let _permit = match self.slots.acquire_permit(1).await {
            Ok(p) => p,
            Err(e) => return (Err(gio("queue slot")(e)), buf),
        };
        // glommio keeps the buffer alive while the kernel uses it; sharing it through an `Rc`
        // lets us take it back once the write completed and glommio dropped its reference.
        let shared = Rc::new(buf.0);
        let res = self.file.write_rc_at(Rc::clone(&shared), offset).await;
        let buf = match Rc::try_unwrap(shared) {
            Ok(b) => UringBuf(b),
            Err(still_shared) => {
                // Not expected with glommio 0.9: copy rather than lose the buffer.
                let mut b = self.file.alloc_dma_buffer(len);
                b.as_bytes_mut().copy_from_slice(still_shared.as_bytes());
                UringBuf(b)
            }
        };
        let res = match res {
            Ok(n) if n == len => Ok(()),
            _ if self.write_through => {
                // A write-through write that failed may have lost durability of earlier ones
                // too (the kernel reports a failed cache flush on the write that needed it).
                self.poisoned.set(true);
                match res {
                    Ok(_) => Err(Error::io(
                        "write",
                        io::Error::new(io::ErrorKind::WriteZero, "short write"),
                    )),
                    Err(e) => Err(gio("write")(e)),
                }
            }
            Ok(_) => Err(Error::io(
                "write",
                io::Error::new(io::ErrorKind::WriteZero, "short write"),
            )),
            Err(e) => Err(gio("write")(e)),
        };
        (res, buf)
    }

    async fn flush(&self) -> Result<()> {
        self.check_poisoned()?;
        if self.write_through {
            return Ok(()); // every completed write is durable already
        }
        let res = self.file.fdatasync().await.map_err(gio("flush"));
        if res.is_err() {
            // Never retry an fsync: the kernel may have dropped the dirty state already.
            self.poisoned.set(true);
        }
        res
    }
}

/// Works around glommio's polled-I/O probe (module docs, item 1): makes sure a 4 KiB seed file
/// with real blocks exists beside `device_path`, then opens and closes it with `DmaFile` so
/// this executor's probe for that disk reads real data. Cheap after the first call per
/// executor. Runs a few blocking `std::fs` calls the first time the seed file is created.
///
/// The shards of a node start at once, one executor each, on the same directory: the seed is
/// written under a name of this thread's own and renamed into place, so no executor ever
/// opens a seed another one is still writing (a truncated seed made one shard's probe read
/// nothing, and its shard log then failed every read with EOPNOTSUPP: seen once in CI).
pub async fn seed_probe(device_path: &Path) -> Result<()> {
    let dir = match device_path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let seed = dir.join(SEED_FILE_NAME);
    let ok = std::fs::metadata(&seed).is_ok_and(|m| m.len() == 4096);
    if !ok {
        write_seed(&seed)?;
    }
    let f = DmaFile::open(&seed).await.map_err(gio("open seed file"))?;
    f.close().await.map_err(gio("close seed file"))?;
    Ok(())
}

/// Writes a complete, synced 4 KiB seed at `seed` atomically (a private name, then rename).
fn write_seed(seed: &Path) -> Result<()> {
    use std::io::Write;
    let own = format!(
        "{SEED_FILE_NAME}.{}.{:?}.tmp",
        std::process::id(),
        std::thread::current().id()
    )
    .replace(['(', ')'], "");
    let tmp = seed.with_file_name(own);
    let mut f = std::fs::File::create(&tmp).map_err(|e| Error::io("create seed file", e))?;
    f.write_all(&[0xa5; 4096])
        .and_then(|()| f.sync_all())
        .map_err(|e| Error::io("write seed file", e))?;
    std::fs::rename(&tmp, seed).map_err(|e| Error::io("rename seed file", e))?;
    sync_parent_dir(seed)
}

fn sync_parent_dir(path: &Path) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io("sync directory", e))
}

/// What [`raise_memlock`] found and did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemlockOutcome {
    /// The soft limit before, bytes (`u64::MAX` = unlimited).
    pub before: u64,
    /// The soft limit after, bytes.
    pub after: u64,
}

/// Raises `RLIMIT_MEMLOCK` to at least `bytes` (needs root or `CAP_SYS_RESOURCE` beyond the
/// hard limit) so glommio can register `executors × io_memory` bytes with io_uring. Call it
/// before starting executors; log the outcome. With too low a limit glommio silently falls
/// back to unregistered buffers.
pub fn raise_memlock(bytes: u64) -> io::Result<MemlockOutcome> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    #[expect(unsafe_code, reason = "getrlimit has no safe std wrapper")]
    // SAFETY: `lim` is a valid, writable `rlimit` for the duration of the call.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut lim) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    let before = lim.rlim_cur;
    if before == libc::RLIM_INFINITY || before >= bytes {
        return Ok(MemlockOutcome {
            before,
            after: before,
        });
    }
    let new = libc::rlimit {
        rlim_cur: bytes,
        rlim_max: lim.rlim_max.max(bytes),
    };
    #[expect(unsafe_code, reason = "setrlimit has no safe std wrapper")]
    // SAFETY: `new` is a valid `rlimit` that outlives the call.
    let rc = unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &new) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(MemlockOutcome {
        before,
        after: bytes,
    })
}

/// Settings for [`run_local`].
#[derive(Debug, Clone, Copy)]
pub struct ExecutorConfig {
    /// Registered I/O memory of the executor, bytes. Default 16 MiB.
    pub io_memory: usize,
    /// io_uring ring depth. Default 256.
    pub ring_depth: usize,
    /// How long the executor polls for completions before sleeping when idle. Default zero
    /// (sleep at once): spinning lowers QD1 latency but takes a core.
    pub spin_before_park: std::time::Duration,
}

impl Default for ExecutorConfig {
    fn default() -> Self {
        Self {
            io_memory: 16 << 20,
            ring_depth: 256,
            spin_before_park: std::time::Duration::ZERO,
        }
    }
}

/// Returns the soft `RLIMIT_MEMLOCK` in bytes (`u64::MAX` if unlimited).
pub fn memlock_limit() -> io::Result<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    #[expect(unsafe_code, reason = "getrlimit has no safe std wrapper")]
    // SAFETY: `lim` is a valid, writable `rlimit` for the duration of the call.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut lim) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(if lim.rlim_cur == libc::RLIM_INFINITY {
        u64::MAX
    } else {
        lim.rlim_cur
    })
}

/// Returns the registered I/O memory to ask glommio for: `wanted`, after trying to raise
/// `RLIMIT_MEMLOCK` to twice that, capped at a quarter of the limit if it could not be raised
/// (several executors may share it), and never below glommio's minimum of 512 KiB.
pub fn fit_io_memory(wanted: usize) -> usize {
    let _ = raise_memlock(wanted as u64 * 2);
    match memlock_limit() {
        Ok(limit) if limit < wanted as u64 * 2 => usize::try_from(limit / 4)
            .unwrap_or(wanted)
            .clamp(512 << 10, wanted.max(512 << 10)),
        _ => wanted,
    }
}

/// Runs `fut` to completion on a new glommio executor on this thread (for tests, benches and
/// tools; ds-node builds its own pinned executors). Sizes `io_memory` with
/// [`fit_io_memory`], so it is registered with io_uring rather than silently falling back to
/// unregistered buffers.
pub fn run_local<T>(cfg: ExecutorConfig, fut: impl std::future::Future<Output = T>) -> Result<T> {
    let ex = glommio::LocalExecutorBuilder::default()
        .io_memory(fit_io_memory(cfg.io_memory))
        .ring_depth(cfg.ring_depth)
        .spin_before_park(cfg.spin_before_park)
        .make()
        .map_err(gio("start executor"))?;
    Ok(ex.run(fut))
}
