//! `spdk` (feature `spdk`): SPDK's user-space NVMe driver as a [`BlockDevice`].
//!
//! **Never run.** SPDK cannot be installed on the machines this was written on (no package,
//! no VFIO/UIO in the kernel). The code follows the public API of SPDK v24.09 or later (`spdk/env.h`,
//! `spdk/nvme.h`) and was only type-checked against hand-written declarations
//! (`NVME_SPDK_STUB_BINDINGS=1 cargo check -p nvme --features spdk`). Treat it as reviewed
//! but untested until it has run on a machine with SPDK and an NVMe device bound to vfio-pci.
//!
//! Model: one [`SpdkController`] per process (attached by PCIe address), one [`SpdkDevice`]
//! (= one I/O queue pair) per shard. SPDK has no interrupts: a pending I/O's future calls
//! `spdk_nvme_qpair_process_completions` each time it is polled and re-schedules itself, so the
//! shard's executor busy-polls while it has I/O in flight (that is SPDK's design; dedicate the
//! core). Completion callbacks own the buffer and the completion slot until the device is done
//! with them, so dropping a future mid-I/O is safe (the buffer is freed at completion).
//!
//! This module is mostly `unsafe` FFI; every block says why it is sound.

use std::cell::{Cell, RefCell};
use std::ffi::{CString, c_void};
use std::fmt;
use std::future::poll_fn;
use std::io;
use std::ptr::NonNull;
use std::rc::Rc;
use std::task::{Poll, Waker};

use crate::buf::IoBuf;
use crate::device::{BlockDevice, check_io};
use crate::error::{Error, Result};

#[allow(
    non_camel_case_types,
    non_snake_case,
    non_upper_case_globals,
    dead_code,
    unsafe_code,
    unsafe_op_in_unsafe_fn,
    missing_docs,
    missing_debug_implementations,
    clippy::all,
    clippy::undocumented_unsafe_blocks,
    reason = "generated FFI declarations"
)]
mod ffi {
    include!(concat!(env!("OUT_DIR"), "/spdk_bindings.rs"));
}

/// An SPDK DMA buffer (pinned, physically contiguous memory from `spdk_dma_zmalloc`).
pub struct SpdkBuf {
    ptr: NonNull<u8>,
    len: usize,
}

impl SpdkBuf {
    fn new(len: usize, align: usize) -> Result<Self> {
        if len == 0 {
            return Err(Error::InvalidArgument("buffer length must be non-zero"));
        }
        #[expect(unsafe_code, reason = "FFI allocation")]
        // SAFETY: plain allocation call; a null phys_addr pointer is allowed by the API.
        let raw = unsafe { ffi::spdk_dma_zmalloc(len, align, std::ptr::null_mut()) };
        let ptr = NonNull::new(raw.cast::<u8>()).ok_or_else(|| {
            Error::io(
                "spdk_dma_zmalloc",
                io::Error::from(io::ErrorKind::OutOfMemory),
            )
        })?;
        Ok(Self { ptr, len })
    }

    fn as_mut_ptr(&self) -> *mut c_void {
        self.ptr.as_ptr().cast()
    }
}

impl IoBuf for SpdkBuf {
    fn as_bytes(&self) -> &[u8] {
        #[expect(unsafe_code, reason = "view of an owned DMA allocation")]
        // SAFETY: `ptr` points to `len` bytes zeroed at allocation and owned by `self`; the
        // device only touches them while a command owns the buffer (not while we lend it).
        unsafe {
            std::slice::from_raw_parts(self.ptr.as_ptr(), self.len)
        }
    }
    fn as_bytes_mut(&mut self) -> &mut [u8] {
        #[expect(unsafe_code, reason = "view of an owned DMA allocation")]
        // SAFETY: as in `as_bytes`; `&mut self` makes the view unique.
        unsafe {
            std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len)
        }
    }
}

impl std::ops::Deref for SpdkBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl Drop for SpdkBuf {
    fn drop(&mut self) {
        #[expect(unsafe_code, reason = "FFI free")]
        // SAFETY: allocated by `spdk_dma_zmalloc` and freed exactly once; no command holds it
        // (commands own their buffer through `Pending` until completion).
        unsafe {
            ffi::spdk_dma_free(self.as_mut_ptr());
        }
    }
}

impl fmt::Debug for SpdkBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SpdkBuf").field("len", &self.len).finish()
    }
}

/// Initialises SPDK's environment (DPDK EAL: hugepages, PCI access). Call once per process
/// before [`SpdkController::attach`].
pub fn init_env(app_name: &str) -> Result<()> {
    let name = CString::new(app_name).map_err(|_| Error::InvalidArgument("name contains NUL"))?;
    let mut opts = ffi::spdk_env_opts::default();
    #[expect(unsafe_code, reason = "FFI call")]
    // SAFETY: `opts` is a valid, writable struct; `name` outlives `spdk_env_init`, which copies
    // what it needs.
    let rc = unsafe {
        // SPDK ≥ 24.09 reads `opts_size` (set before and by `spdk_env_opts_init`).
        opts.opts_size = std::mem::size_of::<ffi::spdk_env_opts>();
        ffi::spdk_env_opts_init(&mut opts);
        opts.name = name.as_ptr();
        ffi::spdk_env_init(&opts)
    };
    if rc != 0 {
        return Err(Error::io(
            "spdk_env_init",
            io::Error::from_raw_os_error(-rc),
        ));
    }
    Ok(())
}

/// An attached NVMe controller.
pub struct SpdkController {
    ctrlr: NonNull<ffi::spdk_nvme_ctrlr>,
}

impl fmt::Debug for SpdkController {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SpdkController").finish_non_exhaustive()
    }
}

extern "C" fn probe_cb(
    _ctx: *mut c_void,
    _trid: *const ffi::spdk_nvme_transport_id,
    _opts: *mut ffi::spdk_nvme_ctrlr_opts,
) -> bool {
    true
}

extern "C" fn attach_cb(
    ctx: *mut c_void,
    _trid: *const ffi::spdk_nvme_transport_id,
    ctrlr: *mut ffi::spdk_nvme_ctrlr,
    _opts: *const ffi::spdk_nvme_ctrlr_opts,
) {
    #[expect(unsafe_code, reason = "callback context from spdk_nvme_probe")]
    // SAFETY: `ctx` is the `&mut Option<..>` passed to `spdk_nvme_probe` in `attach`, alive
    // for the whole synchronous probe call.
    let slot = unsafe { &mut *ctx.cast::<Option<NonNull<ffi::spdk_nvme_ctrlr>>>() };
    if slot.is_none() {
        *slot = NonNull::new(ctrlr);
    }
}

impl SpdkController {
    /// Attaches the controller at `transport_id` (e.g. `"trtype:PCIe traddr:0000:01:00.0"`).
    pub fn attach(transport_id: &str) -> Result<Rc<Self>> {
        let s = CString::new(transport_id).map_err(|_| Error::InvalidArgument("NUL in trid"))?;
        let mut trid = ffi::spdk_nvme_transport_id::default();
        let mut found: Option<NonNull<ffi::spdk_nvme_ctrlr>> = None;
        #[expect(unsafe_code, reason = "FFI calls")]
        // SAFETY: `trid` and `s` are valid for the calls; `found` outlives the synchronous
        // probe, and `attach_cb` casts the context back to exactly this type.
        let rc = unsafe {
            let rc = ffi::spdk_nvme_transport_id_parse(&mut trid, s.as_ptr());
            if rc != 0 {
                rc
            } else {
                ffi::spdk_nvme_probe(
                    &trid,
                    (&raw mut found).cast(),
                    Some(probe_cb),
                    Some(attach_cb),
                    None,
                )
            }
        };
        if rc != 0 {
            return Err(Error::io(
                "spdk_nvme_probe",
                io::Error::from_raw_os_error(-rc),
            ));
        }
        let ctrlr = found.ok_or(Error::InvalidArgument("no NVMe controller at that address"))?;
        Ok(Rc::new(Self { ctrlr }))
    }
}

impl Drop for SpdkController {
    fn drop(&mut self) {
        #[expect(unsafe_code, reason = "FFI detach")]
        // SAFETY: attached in `attach`; every `SpdkDevice` holds an `Rc` to us, so no queue
        // pair is left when this runs.
        unsafe {
            ffi::spdk_nvme_detach(self.ctrlr.as_ptr());
        }
    }
}

/// Completion slot of one command, shared by the future and the completion callback.
struct Pending {
    status: Cell<Option<u16>>,
    waker: Cell<Option<Waker>>,
    buf: RefCell<Option<SpdkBuf>>,
}

extern "C" fn on_complete(arg: *mut c_void, cpl: *const ffi::spdk_nvme_cpl) {
    #[expect(unsafe_code, reason = "FFI completion callback")]
    // SAFETY: `arg` came from `Rc::into_raw` in `submit` and SPDK calls this exactly once per
    // command, so the reference is reclaimed once; `cpl` is valid during the callback.
    let (p, raw) = unsafe {
        (
            Rc::from_raw(arg.cast_const().cast::<Pending>()),
            (*cpl).__bindgen_anon_1.status_raw,
        )
    };
    // Bit 0 is the phase tag; bits 1..=8 the status code, 9..=11 the status code type.
    p.status.set(Some((raw >> 1) & 0x7ff));
    if let Some(w) = p.waker.take() {
        w.wake();
    }
}

/// One namespace through one I/O queue pair: a shard's view of an NVMe device.
pub struct SpdkDevice {
    ctrlr: Rc<SpdkController>,
    ns: NonNull<ffi::spdk_nvme_ns>,
    qpair: NonNull<ffi::spdk_nvme_qpair>,
    sector: u64,
    alignment: usize,
    capacity: u64,
    queue_depth: usize,
    in_flight: Cell<usize>,
    poisoned: Cell<bool>,
}

impl fmt::Debug for SpdkDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SpdkDevice")
            .field("sector", &self.sector)
            .field("capacity", &self.capacity)
            .field("queue_depth", &self.queue_depth)
            .finish_non_exhaustive()
    }
}

impl SpdkDevice {
    /// Opens namespace `nsid` with a new I/O queue pair (call once per shard, on its core).
    pub fn open(ctrlr: &Rc<SpdkController>, nsid: u32, queue_depth: usize) -> Result<Self> {
        #[expect(unsafe_code, reason = "FFI calls")]
        // SAFETY: `ctrlr` is attached and alive (we keep an `Rc`); null opts select defaults.
        let (ns, qpair) = unsafe {
            let ns = ffi::spdk_nvme_ctrlr_get_ns(ctrlr.ctrlr.as_ptr(), nsid);
            if ns.is_null() || !ffi::spdk_nvme_ns_is_active(ns) {
                (None, None)
            } else {
                let q =
                    ffi::spdk_nvme_ctrlr_alloc_io_qpair(ctrlr.ctrlr.as_ptr(), std::ptr::null(), 0);
                (NonNull::new(ns), NonNull::new(q))
            }
        };
        let ns = ns.ok_or(Error::InvalidArgument("no active namespace with that id"))?;
        let qpair = qpair.ok_or_else(|| {
            Error::io(
                "spdk_nvme_ctrlr_alloc_io_qpair",
                io::Error::other("no queue pair"),
            )
        })?;
        #[expect(unsafe_code, reason = "FFI getters")]
        // SAFETY: `ns` is an active namespace of a live controller.
        let (sector, size) = unsafe {
            (
                u64::from(ffi::spdk_nvme_ns_get_sector_size(ns.as_ptr())),
                ffi::spdk_nvme_ns_get_size(ns.as_ptr()),
            )
        };
        let alignment =
            usize::try_from(sector.max(4096)).map_err(|_| Error::InvalidArgument("sector size"))?;
        Ok(Self {
            ctrlr: Rc::clone(ctrlr),
            ns,
            qpair,
            sector,
            alignment,
            capacity: size / alignment as u64 * alignment as u64,
            queue_depth: queue_depth.max(1),
            in_flight: Cell::new(0),
            poisoned: Cell::new(false),
        })
    }

    fn poll_completions(&self) {
        #[expect(unsafe_code, reason = "FFI poll")]
        // SAFETY: the queue pair is ours and used from this thread only.
        unsafe {
            ffi::spdk_nvme_qpair_process_completions(self.qpair.as_ptr(), 0);
        }
    }

    /// Submits one command through `issue(cb, arg)` and waits for its completion. The command
    /// owns `buf` (if any) until it completes; it is handed back with the result.
    async fn submit(
        &self,
        buf: Option<SpdkBuf>,
        issue: impl FnOnce(ffi::spdk_nvme_cmd_cb, *mut c_void) -> i32,
    ) -> (Result<()>, Option<SpdkBuf>) {
        poll_fn(|cx| {
            if self.in_flight.get() < self.queue_depth {
                return Poll::Ready(());
            }
            self.poll_completions();
            cx.waker().wake_by_ref();
            Poll::Pending
        })
        .await;
        let p = Rc::new(Pending {
            status: Cell::new(None),
            waker: Cell::new(None),
            buf: RefCell::new(buf),
        });
        let arg = Rc::into_raw(Rc::clone(&p)).cast_mut().cast::<c_void>();
        let rc = issue(Some(on_complete), arg);
        if rc != 0 {
            #[expect(unsafe_code, reason = "reclaiming the callback's reference")]
            // SAFETY: the command was not queued, so the callback will never run and never
            // reclaim `arg`; we reclaim it once here.
            drop(unsafe { Rc::from_raw(arg.cast_const().cast::<Pending>()) });
            let b = p.buf.borrow_mut().take();
            return (
                Err(Error::io("nvme submit", io::Error::from_raw_os_error(-rc))),
                b,
            );
        }
        self.in_flight.set(self.in_flight.get() + 1);
        let status = poll_fn(|cx| {
            self.poll_completions();
            match p.status.get() {
                Some(s) => Poll::Ready(s),
                None => {
                    p.waker.set(Some(cx.waker().clone()));
                    // SPDK has no interrupts: poll again on the next executor turn.
                    cx.waker().wake_by_ref();
                    Poll::Pending
                }
            }
        })
        .await;
        self.in_flight.set(self.in_flight.get() - 1);
        let b = p.buf.borrow_mut().take();
        let res = if status == 0 {
            Ok(())
        } else {
            Err(Error::io(
                "nvme command",
                io::Error::other(format!("NVMe status {status:#x}")),
            ))
        };
        (res, b)
    }

    fn lba(&self, offset: u64, len: usize) -> (u64, u32) {
        // check_io has verified alignment to a multiple of the sector size.
        (offset / self.sector, (len as u64 / self.sector) as u32)
    }
}

impl Drop for SpdkDevice {
    fn drop(&mut self) {
        while self.in_flight.get() > 0 {
            self.poll_completions();
        }
        #[expect(unsafe_code, reason = "FFI free")]
        // SAFETY: no command is in flight on the queue pair (drained above); freed once.
        unsafe {
            ffi::spdk_nvme_ctrlr_free_io_qpair(self.qpair.as_ptr());
        }
        let _ = &self.ctrlr;
    }
}

impl BlockDevice for SpdkDevice {
    type Buf = SpdkBuf;
    type ReadBuf = SpdkBuf;

    fn alignment(&self) -> usize {
        self.alignment
    }
    fn capacity(&self) -> u64 {
        self.capacity
    }
    fn queue_depth(&self) -> usize {
        self.queue_depth
    }
    fn alloc_buf(&self, len: usize) -> Result<SpdkBuf> {
        if len % self.alignment != 0 {
            return Err(Error::Unaligned {
                offset: 0,
                len,
                alignment: self.alignment,
            });
        }
        SpdkBuf::new(len, self.alignment)
    }

    async fn read(&self, offset: u64, len: usize) -> Result<SpdkBuf> {
        if self.poisoned.get() {
            return Err(Error::DeviceFailed);
        }
        check_io(offset, len, self.alignment, self.capacity)?;
        let buf = SpdkBuf::new(len, self.alignment)?;
        let payload = buf.as_mut_ptr();
        let (lba, count) = self.lba(offset, len);
        let (res, buf) = self
            .submit(Some(buf), |cb, arg| {
                #[expect(unsafe_code, reason = "FFI submit")]
                // SAFETY: `payload` is a DMA buffer of `len` bytes owned by the command's
                // `Pending` until completion; ns/qpair are live and ours.
                unsafe {
                    ffi::spdk_nvme_ns_cmd_read(
                        self.ns.as_ptr(),
                        self.qpair.as_ptr(),
                        payload,
                        lba,
                        count,
                        cb,
                        arg,
                        0,
                    )
                }
            })
            .await;
        res?;
        buf.ok_or(Error::InvalidArgument("read buffer lost"))
    }

    async fn write(&self, offset: u64, buf: SpdkBuf) -> (Result<()>, SpdkBuf) {
        if self.poisoned.get() {
            return (Err(Error::DeviceFailed), buf);
        }
        if let Err(e) = check_io(offset, buf.len(), self.alignment, self.capacity) {
            return (Err(e), buf);
        }
        let payload = buf.as_mut_ptr();
        let len = buf.len();
        let (lba, count) = self.lba(offset, len);
        let (res, back) = self
            .submit(Some(buf), |cb, arg| {
                #[expect(unsafe_code, reason = "FFI submit")]
                // SAFETY: as in `read`; the device only reads the buffer.
                unsafe {
                    ffi::spdk_nvme_ns_cmd_write(
                        self.ns.as_ptr(),
                        self.qpair.as_ptr(),
                        payload,
                        lba,
                        count,
                        cb,
                        arg,
                        0,
                    )
                }
            })
            .await;
        // `submit` takes the buffer out of `Pending` after completion or a refused submit.
        (
            res,
            back.expect("submit hands back the buffer it was given"),
        )
    }

    async fn flush(&self) -> Result<()> {
        if self.poisoned.get() {
            return Err(Error::DeviceFailed);
        }
        let (res, _) = self
            .submit(None, |cb, arg| {
                #[expect(unsafe_code, reason = "FFI submit")]
                // SAFETY: ns/qpair are live and ours; a flush has no payload.
                unsafe {
                    ffi::spdk_nvme_ns_cmd_flush(self.ns.as_ptr(), self.qpair.as_ptr(), cb, arg)
                }
            })
            .await;
        if res.is_err() {
            self.poisoned.set(true);
        }
        res
    }
}
