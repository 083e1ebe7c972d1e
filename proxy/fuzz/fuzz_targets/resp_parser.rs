//! Feeds arbitrary bytes, in arbitrary read sizes, to the RESP request parser, as an
//! authenticated and as an unauthenticated client. It may return protocol errors; it must
//! never panic, and never keep more than the query buffer limit.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use proxy::resp::{Limits, RequestParser};

fuzz_target!(|data: &[u8]| {
    let Some((&flags, mut rest)) = data.split_first() else {
        return;
    };
    let authenticated = flags & 1 == 1;
    let step = usize::from(flags >> 1).max(1);
    let limits = Limits {
        max_bulk_bytes: 4096,
        max_query_buffer_bytes: 64 * 1024,
        unauth_query_buffer_bytes: 8 * 1024,
    };
    let mut parser = RequestParser::new(limits);
    let mut buf = BytesMut::new();
    while !rest.is_empty() {
        let n = step.min(rest.len());
        buf.extend_from_slice(&rest[..n]);
        rest = &rest[n..];
        loop {
            match parser.next(&mut buf, authenticated) {
                Ok(Some(args)) => assert!(!args.is_empty()),
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
});
