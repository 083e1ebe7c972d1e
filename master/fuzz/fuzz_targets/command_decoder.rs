//! Arbitrary bytes as one master log command: the decoder never panics, whatever decodes
//! re-encodes to the same bytes, and checking or applying it against a bootstrapped cluster
//! state never panics (a command that does not apply leaves the state unchanged).
#![no_main]

mod common;

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use master::state::Command;

fuzz_target!(|data: &[u8]| {
    let Ok(cmd) = net::codec::decode_exact::<Command>(Bytes::copy_from_slice(data)) else {
        return;
    };
    assert_eq!(&net::codec::encode_to_bytes(&cmd)[..], data);
    let mut s = common::state_after(common::history().len());
    let before = s.clone();
    let next = s.applied_index() + 1;
    let checked = s.check(&cmd);
    match s.apply(next, &cmd) {
        Ok(()) => assert!(checked.is_ok()),
        Err(e) => {
            assert_eq!(checked, Err(e));
            assert_eq!(s, before, "a refused command changed the state");
        }
    }
});
