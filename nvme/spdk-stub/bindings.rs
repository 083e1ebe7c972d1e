// Hand-written stand-ins for the bindgen output of `build.rs` (SPDK v24.x headers), limited to
// what `src/spdk.rs` uses. Only for type-checking on machines without SPDK:
// `NVME_SPDK_STUB_BINDINGS=1 cargo check -p nvme --features spdk`. Never linked.

use std::os::raw::{c_char, c_int, c_void};

#[repr(C)]
#[derive(Debug, Copy, Clone)]
pub struct spdk_env_opts {
    pub name: *const c_char,
    pub core_mask: *const c_char,
    pub shm_id: c_int,
    pub mem_size: c_int,
    pub opts_size: usize,
}
impl Default for spdk_env_opts {
    fn default() -> Self {
        Self {
            name: std::ptr::null(),
            core_mask: std::ptr::null(),
            shm_id: 0,
            mem_size: 0,
            opts_size: 0,
        }
    }
}

#[repr(C)]
#[derive(Debug, Copy, Clone)]
pub struct spdk_nvme_transport_id {
    pub trstring: [c_char; 33],
    pub traddr: [c_char; 257],
}
impl Default for spdk_nvme_transport_id {
    fn default() -> Self {
        Self {
            trstring: [0; 33],
            traddr: [0; 257],
        }
    }
}

#[repr(C)]
#[derive(Debug, Default, Copy, Clone)]
pub struct spdk_nvme_ctrlr_opts {
    pub num_io_queues: u32,
}

#[repr(C)]
pub struct spdk_nvme_ctrlr {
    _opaque: [u8; 0],
}
#[repr(C)]
pub struct spdk_nvme_ns {
    _opaque: [u8; 0],
}
#[repr(C)]
pub struct spdk_nvme_qpair {
    _opaque: [u8; 0],
}
#[repr(C)]
#[derive(Debug, Default, Copy, Clone)]
pub struct spdk_nvme_io_qpair_opts {
    pub io_queue_size: u32,
}

#[repr(C)]
#[derive(Copy, Clone)]
pub union spdk_nvme_cpl__bindgen_ty_1 {
    pub status_raw: u16,
}
#[repr(C)]
#[derive(Copy, Clone)]
pub struct spdk_nvme_cpl {
    pub cdw0: u32,
    pub cdw1: u32,
    pub sqhd: u16,
    pub sqid: u16,
    pub cid: u16,
    pub __bindgen_anon_1: spdk_nvme_cpl__bindgen_ty_1,
}

pub type spdk_nvme_cmd_cb =
    Option<unsafe extern "C" fn(ctx: *mut c_void, cpl: *const spdk_nvme_cpl)>;
pub type spdk_nvme_probe_cb = Option<
    unsafe extern "C" fn(
        cb_ctx: *mut c_void,
        trid: *const spdk_nvme_transport_id,
        opts: *mut spdk_nvme_ctrlr_opts,
    ) -> bool,
>;
pub type spdk_nvme_attach_cb = Option<
    unsafe extern "C" fn(
        cb_ctx: *mut c_void,
        trid: *const spdk_nvme_transport_id,
        ctrlr: *mut spdk_nvme_ctrlr,
        opts: *const spdk_nvme_ctrlr_opts,
    ),
>;
pub type spdk_nvme_remove_cb =
    Option<unsafe extern "C" fn(cb_ctx: *mut c_void, ctrlr: *mut spdk_nvme_ctrlr)>;

unsafe extern "C" {
    pub fn spdk_env_opts_init(opts: *mut spdk_env_opts);
    pub fn spdk_env_init(opts: *const spdk_env_opts) -> c_int;
    pub fn spdk_dma_zmalloc(size: usize, align: usize, phys_addr: *mut u64) -> *mut c_void;
    pub fn spdk_dma_free(buf: *mut c_void);
    pub fn spdk_nvme_transport_id_parse(
        trid: *mut spdk_nvme_transport_id,
        str_: *const c_char,
    ) -> c_int;
    pub fn spdk_nvme_probe(
        trid: *const spdk_nvme_transport_id,
        cb_ctx: *mut c_void,
        probe_cb: spdk_nvme_probe_cb,
        attach_cb: spdk_nvme_attach_cb,
        remove_cb: spdk_nvme_remove_cb,
    ) -> c_int;
    pub fn spdk_nvme_detach(ctrlr: *mut spdk_nvme_ctrlr) -> c_int;
    pub fn spdk_nvme_ctrlr_get_ns(ctrlr: *mut spdk_nvme_ctrlr, ns_id: u32) -> *mut spdk_nvme_ns;
    pub fn spdk_nvme_ctrlr_alloc_io_qpair(
        ctrlr: *mut spdk_nvme_ctrlr,
        opts: *const spdk_nvme_io_qpair_opts,
        opts_size: usize,
    ) -> *mut spdk_nvme_qpair;
    pub fn spdk_nvme_ctrlr_free_io_qpair(qpair: *mut spdk_nvme_qpair) -> c_int;
    pub fn spdk_nvme_ns_get_sector_size(ns: *mut spdk_nvme_ns) -> u32;
    pub fn spdk_nvme_ns_get_size(ns: *mut spdk_nvme_ns) -> u64;
    pub fn spdk_nvme_ns_is_active(ns: *mut spdk_nvme_ns) -> bool;
    pub fn spdk_nvme_ns_cmd_read(
        ns: *mut spdk_nvme_ns,
        qpair: *mut spdk_nvme_qpair,
        payload: *mut c_void,
        lba: u64,
        lba_count: u32,
        cb_fn: spdk_nvme_cmd_cb,
        cb_arg: *mut c_void,
        io_flags: u32,
    ) -> c_int;
    pub fn spdk_nvme_ns_cmd_write(
        ns: *mut spdk_nvme_ns,
        qpair: *mut spdk_nvme_qpair,
        payload: *mut c_void,
        lba: u64,
        lba_count: u32,
        cb_fn: spdk_nvme_cmd_cb,
        cb_arg: *mut c_void,
        io_flags: u32,
    ) -> c_int;
    pub fn spdk_nvme_ns_cmd_flush(
        ns: *mut spdk_nvme_ns,
        qpair: *mut spdk_nvme_qpair,
        cb_fn: spdk_nvme_cmd_cb,
        cb_arg: *mut c_void,
    ) -> c_int;
    pub fn spdk_nvme_qpair_process_completions(
        qpair: *mut spdk_nvme_qpair,
        max_completions: u32,
    ) -> i32;
}
