//! Arbitrary bytes as a range checkpoint (a file on disk, or a snapshot from a peer): the
//! decoder never panics, and whatever decodes re-encodes to the same bytes.
#![no_main]

use ds_node::range::checkpoint::{decode, decode_meta, encode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let meta = decode_meta(data);
    if let Ok(c) = decode(data) {
        assert_eq!(meta.as_ref(), Ok(&c.meta));
        let again = encode(&c.meta, c.entries.iter().map(|(k, e)| (&k[..], e)));
        assert_eq!(again, data);
    }
});
