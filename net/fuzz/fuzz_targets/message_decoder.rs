//! Decodes arbitrary payloads as every message kind; any message that decodes must re-encode
//! to exactly the same bytes (the encoding is canonical).
#![no_main]

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use net::message::Message;

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let kind = u16::from_le_bytes([data[0], data[1]]);
    let payload = Bytes::copy_from_slice(&data[2..]);
    if let Ok(msg) = Message::decode(kind, payload.clone()) {
        let mut again = BytesMut::new();
        msg.encode_payload(&mut again);
        assert_eq!(&again[..], &payload[..], "re-encoding {msg:?} changed the bytes");
    }
});
