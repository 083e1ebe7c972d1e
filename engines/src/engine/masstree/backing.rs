//! [`Backing`]: the Raft entry being applied, whose value slices may back what the engine
//! stores while the entry is applied (`docs/format/shard-log.md` §3, "Backed values").
//!
//! The caller (ds-node's apply) names the values the entry's operation carries verbatim and
//! where they lie in the shard log; [`MasstreeEngine::put`](super::MasstreeEngine) asks
//! [`Backing::pointer_for`] whether the bytes it stores are one of them, alone or after a
//! one-byte type tag. Only equal bytes give a pointer, so a value the state machine derived
//! (INCR, APPEND, …) never gets one, whatever the caller named.

use bytes::Bytes;

use crate::pointer::{LogPointer, SegmentId};

/// One value of the entry: where its bytes lie in the segment, and the bytes.
#[derive(Debug, Clone)]
struct Slice {
    offset: u64,
    bytes: Bytes,
}

/// The values of the Raft entry being applied, with their place in the shard log.
#[derive(Debug, Clone)]
pub struct Backing {
    segment: SegmentId,
    slices: Vec<Slice>,
    /// Where the next search starts (the state machine usually stores values in order).
    next: usize,
}

impl Backing {
    /// The values `values` (start inside the payload, bytes) of an entry whose payload of
    /// `payload_len` bytes starts at byte `payload_offset` of `segment`. Values reaching past
    /// the payload, and empty ones, are left out.
    pub fn new(
        segment: SegmentId,
        payload_offset: u64,
        payload_len: u64,
        values: Vec<(usize, Bytes)>,
    ) -> Self {
        let slices = values
            .into_iter()
            .filter(|(start, b)| {
                !b.is_empty() && (*start as u64).saturating_add(b.len() as u64) <= payload_len
            })
            .map(|(start, bytes)| Slice {
                offset: payload_offset + start as u64,
                bytes,
            })
            .collect();
        Self {
            segment,
            slices,
            next: 0,
        }
    }

    /// Whether no value can back anything.
    pub fn is_empty(&self) -> bool {
        self.slices.is_empty()
    }

    /// A pointer standing for exactly `stored`, if `stored` is one of the values, or a byte
    /// followed by one (then a pointer with that leading byte).
    pub(super) fn pointer_for(&mut self, stored: &[u8]) -> Option<LogPointer> {
        let n = self.slices.len();
        for i in 0..n {
            let at = (self.next + i) % n;
            let s = &self.slices[at];
            let lead = match stored.len().checked_sub(s.bytes.len()) {
                Some(0) if stored == &s.bytes[..] => None,
                Some(1) if stored[1..] == s.bytes[..] => Some(stored[0]),
                _ => continue,
            };
            self.next = at + 1;
            let p = LogPointer {
                segment: self.segment,
                offset: s.offset,
                len: u32::try_from(s.bytes.len()).ok()?,
                checksum: crc32c::crc32c(&s.bytes),
            };
            return Some(p.with_leading(lead));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_equal_bytes_alone_or_after_one_byte_get_a_pointer() {
        let mut b = Backing::new(
            SegmentId(2),
            1000,
            100,
            vec![
                (10, Bytes::from_static(b"hello")),
                (20, Bytes::from_static(b"world")),
                (98, Bytes::from_static(b"past the end")),
                (5, Bytes::new()),
            ],
        );
        let p = b.pointer_for(b"\x01hello").expect("backed");
        assert_eq!((p.segment, p.byte_offset(), p.len), (SegmentId(2), 1010, 5));
        assert_eq!(
            (p.leading_byte(), p.checksum),
            (Some(1), crc32c::crc32c(b"hello"))
        );
        let w = b.pointer_for(b"world").expect("backed");
        assert_eq!((w.leading_byte(), w.offset), (None, 1020));
        assert_eq!(b.pointer_for(b"\x01\x02world"), None);
        assert_eq!(b.pointer_for(b"worle"), None);
        assert_eq!(b.pointer_for(b"past the end"), None);
        assert_eq!(b.pointer_for(b""), None);
        assert!(!b.is_empty());
        assert!(
            Backing::new(SegmentId(0), 0, 4, vec![(0, Bytes::from_static(b"12345"))]).is_empty()
        );
    }
}
