//! Arbitrary bytes as the body of a master snapshot: the decoder never panics, and whatever
//! decodes re-encodes to the same bytes.
#![no_main]

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use master::state::ClusterState;
use net::codec::Reader;

fuzz_target!(|data: &[u8]| {
    let mut r = Reader::new(Bytes::copy_from_slice(data));
    let Ok(state) = ClusterState::decode_snapshot(42, &mut r) else {
        return;
    };
    if r.finish().is_err() {
        return;
    }
    let mut again = BytesMut::new();
    state.encode_snapshot(&mut again);
    assert_eq!(&again[..], data);
});
