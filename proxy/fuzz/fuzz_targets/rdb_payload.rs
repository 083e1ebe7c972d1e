//! `RESTORE` and `FUNCTION RESTORE` payloads (`proxy::rdb::decode`, `decode_functions`): any
//! bytes, with the footer made valid half of the time so the decoders themselves are reached;
//! never a panic, and what decodes re-encodes to a payload that decodes to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use proxy::rdb::{RDB_VERSION, crc64, decode, decode_functions, encode, encode_functions};

fuzz_target!(|data: &[u8]| {
    let mut payload = data.to_vec();
    if data.first().is_some_and(|b| b & 1 == 1) {
        payload.extend_from_slice(&RDB_VERSION.to_le_bytes());
        let crc = crc64(0, &payload);
        payload.extend_from_slice(&crc.to_le_bytes());
    }
    if let Ok(obj) = decode(&payload) {
        assert_eq!(decode(&encode(&obj)).ok(), Some(obj));
    }
    if let Ok(codes) = decode_functions(&payload) {
        let again = encode_functions(codes.iter().map(|c| &c[..]));
        assert_eq!(decode_functions(&again).ok(), Some(codes));
    }
});
