//! [`LogPointer`]: where the bytes of a value live in the shard log, and [`SegmentId`], the
//! segment they are in.
//!
//! A pointer names the *value's bytes* inside a log record (not the record): a cold read is
//! one aligned read of just those blocks, checked against the crc32c (DESIGN §4). Every layer
//! that stores or follows a pointer uses these types: the engines (`engine`), the Masstree
//! entries (`masstree`), the shard log (`vlog`) and the key index (`lsm`).
//!
//! Imports: none (a leaf module).

/// Identifies a segment of the shard log.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SegmentId(pub u32);

/// Where a value's bytes live in the shard log: segment, byte offset inside it, length, and the
/// checksum (crc32c) of the bytes, checked when they are read back.
///
/// A value pointer may carry a *leading byte* (`docs/format/shard-log.md` §3 "Log
/// pointers"): bit 63 of `offset` set, the byte in bits 48..55, the byte offset in bits 0..47.
/// It then stands for `leading byte ++ the len bytes named` (a Redis string's type tag
/// followed by the user's bytes inside the Raft entry that carried them); `len` and
/// `checksum` are those of the named bytes. Build such pointers with
/// [`with_leading_byte`](Self::with_leading_byte) and read the parts with
/// [`byte_offset`](Self::byte_offset) and [`leading_byte`](Self::leading_byte).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct LogPointer {
    /// The log segment holding the value.
    pub segment: SegmentId,
    /// Byte offset of the value inside the segment.
    pub offset: u64,
    /// Length of the value in bytes.
    pub len: u32,
    /// crc32c of the value's bytes.
    pub checksum: u32,
}

/// Bit of [`LogPointer::offset`] saying that the pointer carries a leading byte.
const LEADING: u64 = 1 << 63;
/// Where the leading byte sits in [`LogPointer::offset`].
const LEADING_SHIFT: u32 = 48;
/// The bits of [`LogPointer::offset`] that hold the byte offset.
const OFFSET_MASK: u64 = (1 << LEADING_SHIFT) - 1;
/// Bits of [`LogPointer::offset`] that are always zero.
const RESERVED: u64 = !(LEADING | OFFSET_MASK | (0xFF << LEADING_SHIFT));

impl LogPointer {
    /// Returns this pointer standing for `byte ++ the bytes it names`. The byte offset must
    /// fit in 48 bits (segments are far smaller).
    pub fn with_leading_byte(mut self, byte: u8) -> Self {
        assert!(self.offset <= OFFSET_MASK, "segment offset beyond 48 bits");
        self.offset |= LEADING | (u64::from(byte) << LEADING_SHIFT);
        self
    }

    /// The byte the reader puts before the named bytes, if the pointer carries one.
    pub fn leading_byte(&self) -> Option<u8> {
        (self.offset & LEADING != 0).then_some((self.offset >> LEADING_SHIFT) as u8)
    }

    /// Returns this pointer with its leading byte (if any) replaced by `byte`.
    pub fn with_leading(self, byte: Option<u8>) -> Self {
        let plain = LogPointer {
            offset: self.byte_offset(),
            ..self
        };
        match byte {
            Some(b) => plain.with_leading_byte(b),
            None => plain,
        }
    }

    /// The byte offset of the named bytes inside the segment.
    pub fn byte_offset(&self) -> u64 {
        if self.offset & LEADING != 0 {
            self.offset & OFFSET_MASK
        } else {
            self.offset
        }
    }

    /// Whether the offset's reserved bits (56..62 when a leading byte is carried) are zero.
    pub fn is_well_formed(&self) -> bool {
        self.offset & LEADING == 0 || self.offset & RESERVED == 0
    }

    /// Length of the bytes the pointer stands for: `len`, plus one for a leading byte.
    pub fn stored_len(&self) -> usize {
        self.len as usize + usize::from(self.leading_byte().is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_leading_byte_round_trips_and_keeps_the_offset() {
        let p = LogPointer {
            segment: SegmentId(3),
            offset: 4096 + 56,
            len: 10,
            checksum: 7,
        };
        assert_eq!(
            (p.leading_byte(), p.byte_offset(), p.stored_len()),
            (None, 4152, 10)
        );
        let l = p.with_leading_byte(1);
        assert_eq!(
            (l.leading_byte(), l.byte_offset(), l.stored_len()),
            (Some(1), 4152, 11)
        );
        assert!(l.is_well_formed() && p.is_well_formed());
        assert_eq!(l.with_leading(None), p);
        assert_eq!(p.with_leading(Some(0xFF)).leading_byte(), Some(0xFF));
        let bad = LogPointer {
            offset: l.offset | 1 << 60,
            ..l
        };
        assert!(!bad.is_well_formed());
    }
}
