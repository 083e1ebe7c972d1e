//! Arbitrary bytes as the payload of a shard-log entry or range metadata record written by
//! ds-node (proposal, TTL sweep, split, descriptor, tombstone): no decoder panics, and a
//! decoded split re-encodes to the same bytes.
#![no_main]

use ds_node::range::codec::{
    decode_meta, decode_proposal, decode_split, decode_sweep, decode_tombstone, decode_write,
    encode_split,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = decode_proposal(data);
    let _ = decode_write(data);
    let _ = decode_sweep(data);
    let _ = decode_meta(data);
    let _ = decode_tombstone(data);
    if let Some(s) = decode_split(data) {
        assert_eq!(encode_split(&s), data);
    }
});
