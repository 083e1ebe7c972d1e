//! `Vlog::open` (recovery) on a damaged log: a valid log of small and fragmented entries
//! (format version 3) across several segments, with the input's byte changes applied to its
//! segments. Recovery errors or recovers, never panics; every entry it indexes reads back
//! whole or fails with an error, and the log accepts appends afterwards unless it failed.
#![no_main]

use std::sync::OnceLock;

use engines::vlog::{
    AppendRecord, EntryRecord, LogIndex, LogRecord, RangeId, Term, Vlog, VlogConfig,
};
use futures_lite::future::block_on;
use libfuzzer_sys::fuzz_target;
use nvme::store::format::DeviceUuid;
use nvme::{FormatOptions, MemDevice, OwnerTag, SegmentStore};

const BS: usize = 512;
const SEG: u64 = 16 * 1024;
const META: u64 = 1 << 20;
const OWNER: OwnerTag = OwnerTag(7);

fn cfg() -> VlogConfig {
    VlogConfig {
        batch_bytes_max: 2048,
        recovery_read_bytes: 4096,
        entry_bytes_max: 1 << 20,
        ..VlogConfig::default()
    }
}

fn entry(range: u64, index: u64, len: usize) -> AppendRecord {
    LogRecord::Entry(EntryRecord {
        range: RangeId(range),
        term: Term(1),
        index: LogIndex(index),
        entry_type: 0,
        payload: (0..len).map(|i| (i as u8) ^ (index as u8)).collect(),
    })
    .into()
}

/// A log of 12 entries of two ranges, every third one fragmented, over a few segments.
fn template() -> &'static [u8] {
    static IMAGE: OnceLock<Vec<u8>> = OnceLock::new();
    IMAGE.get_or_init(|| {
        block_on(async {
            let dev = MemDevice::new(META + 8 * SEG, BS).expect("device");
            let opts = FormatOptions {
                segment_size: SEG,
                uuid: Some(DeviceUuid([7; 16])),
            };
            let store = SegmentStore::format(dev, opts).await.expect("format");
            let (log, _) = Vlog::open(store.into_device(), OWNER, cfg())
                .await
                .expect("open");
            for i in 1..=12u64 {
                let len = if i % 3 == 0 { 5000 } else { 100 };
                log.append(vec![entry(i % 2, i, len)])
                    .await
                    .expect("append");
            }
            log.into_device().expect("device").into_bytes()
        })
    })
}

fuzz_target!(|data: &[u8]| {
    let mut image = template().to_vec();
    let area = image.len() - META as usize;
    // Each 4 input bytes: a position in the segment area (3 bytes) and a byte to xor in.
    for m in data.chunks_exact(4) {
        let at = u32::from_le_bytes([m[0], m[1], m[2], 0]) as usize % area;
        image[META as usize + at] ^= m[3];
    }
    let Ok(dev) = MemDevice::from_bytes(image, BS) else {
        return;
    };
    block_on(async {
        let Ok((log, _)) = Vlog::open(dev, OWNER, cfg()).await else {
            return;
        };
        for r in log.ranges() {
            if let Some((lo, hi)) = log.bounds(r) {
                for i in lo.0..=hi.0 {
                    let _ = log.entry(r, LogIndex(i)).await;
                }
            }
        }
        let _ = log.append(vec![entry(0, 100, 3000)]).await;
    });
});
