//! `SegmentStore::open` on an arbitrary device image (in memory): errors, never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nvme::{MemDevice, SegmentStore};

fuzz_target!(|data: &[u8]| {
    // Place the input over the metadata area of a 1 MiB device (superblocks and tables).
    let mut image = vec![0u8; 1 << 20];
    for (i, chunk) in data.chunks(4096).enumerate().take(64) {
        let at = i * 4096;
        image[at..at + chunk.len()].copy_from_slice(chunk);
    }
    if let Ok(dev) = MemDevice::from_bytes(image, 4096) {
        let _ = futures_lite::future::block_on(SegmentStore::open(dev));
    }
});
