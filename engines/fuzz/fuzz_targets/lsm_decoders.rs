//! The key index's decoders on arbitrary bytes (docs/format/key-index.md §2, §4): frames of
//! every kind, data blocks, index chunks, footers and manifest records. Errors, never panics;
//! whatever decodes re-encodes to the same bytes (the encodings are canonical).
#![no_main]

use engines::lsm::RunId;
use engines::lsm::format::{
    FrameKind, Footer, decode_block, decode_frame, decode_index_chunk, encode_index_chunk,
    put_entry,
};
use engines::lsm::manifest::{Manifest, decode_record};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for kind in [FrameKind::Data, FrameKind::Index, FrameKind::Bloom, FrameKind::Footer] {
        let _ = decode_frame(data, kind, RunId(1));
    }
    if let Ok(entries) = decode_block(data) {
        let mut out = (entries.len() as u32).to_le_bytes().to_vec();
        for (k, e) in &entries {
            put_entry(&mut out, k, e);
        }
        assert_eq!(out, data);
    }
    if let Ok(chunk) = decode_index_chunk(data) {
        assert_eq!(encode_index_chunk(&chunk), data);
    }
    if let Ok(f) = Footer::decode(data) {
        assert_eq!(f.encode(), data);
    }
    if let Ok(m) = Manifest::decode_payload(data, 1) {
        assert_eq!(m.encode_payload(), data);
    }
    let _ = decode_record(data, 0, 0);
});
