//! The binary's allocator: mimalloc, with its purge delay raised.
//!
//! mimalloc instead of glibc malloc: buffers are allocated on one thread and freed on another
//! (a proxy worker reads a reply a shard's connection task decoded), which contends on glibc's
//! arena locks; see docs/benchmarks.md (end to end, allocator).
//!
//! mimalloc gives freed memory back to the OS (`MADV_DONTNEED`) once it stayed free for its
//! purge delay, 1 s by default. Its arenas are transparent-huge-page backed, so memory that
//! is freed and used again a little later — raft entries, batches, replies, checkpoint
//! buffers — faults in and zeroes a whole 2 MiB page each time: under a pipelined write load
//! the shard thread spent 14–20 % of its time in the kernel's `clear_page_erms`
//! (docs/benchmarks.md, "Write path CPU per operation"). [`tune`] raises the delay to
//! [`PURGE_DELAY_MS`]: memory free for that long still goes back, so RSS still falls after
//! deletes, a few seconds later.

/// The allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// How long memory stays free before mimalloc gives it back to the OS.
pub const PURGE_DELAY_MS: i64 = 10_000;

/// The environment variable with which a user overrides [`PURGE_DELAY_MS`] (mimalloc's own).
const PURGE_DELAY_ENV: &str = "MIMALLOC_PURGE_DELAY";

/// mimalloc's `mi_option_purge_delay` (`mimalloc.h`, v3: the 16th `mi_option_t`).
const MI_OPTION_PURGE_DELAY: std::ffi::c_int = 15;

/// mimalloc v3's default purge delay: what option [`MI_OPTION_PURGE_DELAY`] reads when the
/// number is right and nobody set it.
const MI_DEFAULT_PURGE_DELAY_MS: std::ffi::c_long = 1_000;

#[expect(unsafe_code, reason = "mimalloc's option API is C")]
unsafe extern "C" {
    /// mimalloc's `long mi_option_get(mi_option_t option)`, linked in by `libmimalloc-sys`
    /// (whose Rust bindings declare it only with its `extended` feature).
    fn mi_option_get(option: std::ffi::c_int) -> std::ffi::c_long;
    /// mimalloc's `void mi_option_set(mi_option_t option, long value)`.
    fn mi_option_set(option: std::ffi::c_int, value: std::ffi::c_long);
}

/// Sets the purge delay to [`PURGE_DELAY_MS`] unless `MIMALLOC_PURGE_DELAY` is set. Call it
/// first thing in `main`, before any thread starts. Leaves mimalloc alone if the option
/// number does not read mimalloc v3's default (a different mimalloc was linked).
#[expect(unsafe_code, reason = "mimalloc's option API is C")]
pub fn tune() {
    if std::env::var_os(PURGE_DELAY_ENV).is_some() {
        return;
    }
    // SAFETY: both functions take an option number that mimalloc range-checks; called from
    // `main` before any other thread exists, so no allocation races the plain store of
    // `mi_option_set`.
    unsafe {
        if mi_option_get(MI_OPTION_PURGE_DELAY) == MI_DEFAULT_PURGE_DELAY_MS {
            mi_option_set(MI_OPTION_PURGE_DELAY, PURGE_DELAY_MS as std::ffi::c_long);
        }
    }
}
