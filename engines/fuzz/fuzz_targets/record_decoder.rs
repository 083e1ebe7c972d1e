//! The shard log's record and segment-header decoders on arbitrary bytes (every kind, the
//! entry fragment of format version 3 included): errors, never panics; whatever decodes
//! re-encodes to the same bytes.
#![no_main]

use engines::vlog::record::{
    RECORD_HEADER_LEN, SegmentHeader, decode_fragment, decode_record, padded,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = SegmentHeader::decode(data);
    let _ = decode_fragment(data, 1 << 20);
    if let Ok((h, rec)) = decode_record(data, 1 << 20) {
        let mut out = vec![0; padded(h.record_len())];
        let crc = rec.encode(h.seq, h.mark_delta, &mut out);
        assert_eq!(crc, h.crc);
        assert_eq!(out[..h.record_len()], data[..h.record_len()]);
        assert!(h.record_len() >= RECORD_HEADER_LEN);
    }
});
