//! Superblock and segment-table decoders on arbitrary bytes: errors, never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nvme::store::format::{DeviceUuid, Superblock, decode_table};

fuzz_target!(|data: &[u8]| {
    let _ = Superblock::decode(data, 0);
    if let Ok(sb) = Superblock::compute(DeviceUuid([0; 16]), 64 << 20, 4096, 1 << 20) {
        let _ = decode_table(&sb, data, 0);
    }
    // A table decoded against a superblock that itself came from the input.
    if let (Ok(sb), Some(rest)) = (Superblock::decode(data, 0), data.get(128..)) {
        let _ = decode_table(&sb, rest, 128);
    }
});
