//! Helpers shared by the shard-log tests: formatted devices, record builders, a join.
#![allow(dead_code)]

pub mod pipe;

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;

use engines::vlog::{
    AppendRecord, EntryRecord, LogIndex, LogRecord, RangeId, Term, ValueSpan, Vlog, VlogConfig,
};
use nvme::store::format::DeviceUuid;
use nvme::{BlockDevice, FormatOptions, MemDevice, OwnerTag, SegmentStore};

/// Block size of the test devices.
pub const BS: usize = 4096;
/// Segment size of the test devices (small, so logs span many segments).
pub const SEG: u64 = 64 * 1024;
/// The owner tag of the log under test.
pub const OWNER: OwnerTag = OwnerTag(0x5348_4152_4430);

/// Returns a formatted in-memory device with `segments` segments of `SEG` bytes.
pub fn must_format(segments: u64) -> MemDevice {
    must_format_with(segments, SEG, BS)
}

/// Returns a formatted in-memory device.
pub fn must_format_with(segments: u64, seg: u64, bs: usize) -> MemDevice {
    let meta = 1 << 20;
    let dev = MemDevice::new(meta + segments * seg, bs).unwrap();
    let store = futures_lite::future::block_on(SegmentStore::format(
        dev,
        FormatOptions {
            segment_size: seg,
            uuid: Some(DeviceUuid([0x77; 16])),
        },
    ))
    .unwrap();
    store.into_device()
}

/// The configuration the tests use: small batches so batches are cut and segments fill.
pub fn cfg() -> VlogConfig {
    VlogConfig {
        batch_bytes_max: 8 * 1024,
        pending_bytes_max: 1 << 20,
        cache_bytes_max: 64 * 1024,
        recovery_read_bytes: 16 * 1024,
        auto_reclaim: false,
        preallocate: true,
        reserve_segments: 0,
        pipeline_depth: 2,
        entry_bytes_max: 1 << 20,
    }
}

/// Opens the log and panics on failure.
pub async fn must_open<D: BlockDevice>(dev: D, cfg: VlogConfig) -> Vlog<D> {
    Vlog::open(dev, OWNER, cfg).await.unwrap().0
}

/// Returns a deterministic payload for (range, index, term).
pub fn payload(range: u64, index: u64, term: u64, len: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(len);
    let mut x = range
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(index.wrapping_mul(31))
        .wrapping_add(term);
    for _ in 0..len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.push(x as u8);
    }
    v
}

/// Returns an entry record with a value span covering the payload after an 8-byte "key".
pub fn entry(range: u64, index: u64, term: u64, len: usize) -> AppendRecord {
    let p = payload(range, index, term, len);
    let value = (len >= 8).then(|| ValueSpan {
        offset: 8,
        len: (len - 8) as u32,
    });
    AppendRecord {
        record: LogRecord::Entry(EntryRecord {
            range: RangeId(range),
            term: Term(term),
            index: LogIndex(index),
            entry_type: 0,
            payload: p,
        }),
        value,
    }
}

/// Polls futures concurrently on this task and returns their outputs in order.
pub async fn join_all<F: Future>(futs: Vec<F>) -> Vec<F::Output> {
    let mut futs: Vec<Pin<Box<F>>> = futs.into_iter().map(Box::pin).collect();
    let mut out: Vec<Option<F::Output>> = futs.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (f, o) in futs.iter_mut().zip(out.iter_mut()) {
            if o.is_none() {
                match f.as_mut().poll(cx) {
                    Poll::Ready(v) => *o = Some(v),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    out.into_iter().map(|o| o.unwrap()).collect()
}
