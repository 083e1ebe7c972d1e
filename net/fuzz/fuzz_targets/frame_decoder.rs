//! Feeds arbitrary bytes, in arbitrary read sizes, to a connection's reader: every frame and
//! message decoder runs on them. It may return errors; it must never panic, hang or buffer
//! more than one frame's limit.
#![no_main]

use libfuzzer_sys::fuzz_target;
use net::conn::ConnReader;

const MAX_FRAME: usize = 4096;

fuzz_target!(|data: &[u8]| {
    let Some((&step, mut rest)) = data.split_first() else {
        return;
    };
    let step = usize::from(step.max(1));
    let mut reader = ConnReader::new(MAX_FRAME);
    while !rest.is_empty() {
        let Ok(space) = reader.read_space() else { return };
        let n = space.len().min(rest.len()).min(step);
        space[..n].copy_from_slice(&rest[..n]);
        if reader.filled(n).is_err() {
            return;
        }
        rest = &rest[n..];
        assert!(reader.buffered() <= MAX_FRAME + 20 + 16 * 1024);
        loop {
            match reader.next_message() {
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
});
