//! Parses arbitrary bytes as an internal Redis key (`net::keyspace::parse_user`, the
//! database/key decoder every range-wide walk and the split boundary use): it never panics,
//! and a key that parses re-encodes to its own prefix (the slot bytes aside: arbitrary bytes
//! need not hold the key's own slot).
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use net::keyspace::{Db, USER_PREFIX_BYTES, meta_in_db, parse_user, user_prefix};

fuzz_target!(|data: &[u8]| {
    if let Some((db, key, rest)) = parse_user(data) {
        let prefix = user_prefix(db, key, 0);
        assert_eq!(&data[3..USER_PREFIX_BYTES + key.len()], &prefix[3..]);
        assert_eq!(rest.len(), data.len() - prefix.len());
    }
    let route = Bytes::copy_from_slice(data);
    let moved = meta_in_db(&route, Db::new(data.len() as u8 % 16).unwrap_or(Db::ZERO));
    assert_eq!(moved.len(), route.len());
});
