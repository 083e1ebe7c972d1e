//! Bitmap operations on strings (`docs/format/wire.md` §4.2, Redis `bitops.c`): SETBIT,
//! GETBIT, BITCOUNT, BITPOS and BITFIELD, executed by the range state machine on the string's
//! value. Bit 0 is the most significant bit of the first byte, as in Redis.

use bytes::Bytes;

use crate::codec::{wire_enum, wire_struct};
use crate::limits::{LimitError, user_key};

/// A `[start, end]` interval of BITCOUNT or BITPOS (negative: from the end), in bytes or, with
/// `bits`, in bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct BitRange {
    /// First byte (bit) of the interval.
    pub start: i64,
    /// Last byte (bit), inclusive; `None` (BITPOS only): to the end of the string.
    pub end: Option<i64>,
    /// Whether `start` and `end` count bits rather than bytes.
    pub bits: bool,
}
wire_struct!(BitRange { start, end, bits });

/// What BITFIELD's SET and INCRBY do when the result does not fit the field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum Overflow {
    /// Wrap around (modulo 2^bits).
    Wrap {},
    /// Saturate at the field's minimum or maximum.
    Sat {},
    /// Do nothing and answer nil.
    Fail {},
}
wire_enum!(Overflow: u8, "bitfield overflow" { 0 => Wrap {}, 1 => Sat {}, 2 => Fail {} });

/// One BITFIELD sub-operation on a `bits`-wide field (signed: 1..=64, unsigned: 1..=63) at
/// bit `offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[allow(missing_docs)] // described in docs/format/wire.md §4.2
pub enum FieldOp {
    Get {
        signed: bool,
        bits: u8,
        offset: u64,
    },
    Set {
        signed: bool,
        bits: u8,
        offset: u64,
        value: i64,
        overflow: Overflow,
    },
    IncrBy {
        signed: bool,
        bits: u8,
        offset: u64,
        incr: i64,
        overflow: Overflow,
    },
}
wire_enum!(FieldOp: u8, "bitfield op" {
    0 => Get { signed, bits, offset },
    1 => Set { signed, bits, offset, value, overflow },
    2 => IncrBy { signed, bits, offset, incr, overflow },
});

impl FieldOp {
    /// The field's `(signed, bits, offset)`.
    pub fn field(&self) -> (bool, u8, u64) {
        match *self {
            FieldOp::Get {
                signed,
                bits,
                offset,
            }
            | FieldOp::Set {
                signed,
                bits,
                offset,
                ..
            }
            | FieldOp::IncrBy {
                signed,
                bits,
                offset,
                ..
            } => (signed, bits, offset),
        }
    }

    /// Whether the width is one Redis accepts (`i1`..`i64`, `u1`..`u63`).
    pub fn width_ok(&self) -> bool {
        let (signed, bits, _) = self.field();
        bits >= 1 && bits <= if signed { 64 } else { 63 }
    }
}

/// A bitmap operation on one string.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[allow(missing_docs)] // described in docs/format/wire.md §4.2
pub enum BitOp {
    /// Redis `SETBIT`: the old bit.
    SetBit {
        #[cfg_attr(test, proptest(strategy = "crate::arb::bytes()"))]
        key: Bytes,
        offset: u64,
        value: bool,
    },
    /// Redis `GETBIT`.
    GetBit {
        #[cfg_attr(test, proptest(strategy = "crate::arb::bytes()"))]
        key: Bytes,
        offset: u64,
    },
    /// Redis `BITCOUNT` (`range` none: the whole string).
    Count {
        #[cfg_attr(test, proptest(strategy = "crate::arb::bytes()"))]
        key: Bytes,
        range: Option<BitRange>,
    },
    /// Redis `BITPOS` (`range` none: the whole string).
    Pos {
        #[cfg_attr(test, proptest(strategy = "crate::arb::bytes()"))]
        key: Bytes,
        bit: bool,
        range: Option<BitRange>,
    },
    /// Redis `BITFIELD` (a write when one of `ops` is SET or INCRBY).
    Field {
        #[cfg_attr(test, proptest(strategy = "crate::arb::bytes()"))]
        key: Bytes,
        #[cfg_attr(test, proptest(strategy = "crate::arb::small_vec()"))]
        ops: Vec<FieldOp>,
    },
}

wire_enum!(BitOp: u8, "bit op" {
    0 => SetBit { key: key, offset, value },
    1 => GetBit { key: key, offset },
    2 => Count { key: key, range },
    3 => Pos { key: key, bit, range },
    4 => Field { key: key, ops },
});

impl BitOp {
    /// The string's user key.
    pub fn key(&self) -> &Bytes {
        match self {
            BitOp::SetBit { key, .. }
            | BitOp::GetBit { key, .. }
            | BitOp::Count { key, .. }
            | BitOp::Pos { key, .. }
            | BitOp::Field { key, .. } => key,
        }
    }

    /// Whether it changes the string.
    pub fn is_write(&self) -> bool {
        match self {
            BitOp::SetBit { .. } => true,
            BitOp::Field { ops, .. } => ops.iter().any(|o| !matches!(o, FieldOp::Get { .. })),
            _ => false,
        }
    }

    /// Checks the key, and that a write cannot grow the string past `max_value_bytes`.
    pub fn check_limits(&self, max_value_bytes: usize) -> Result<(), LimitError> {
        user_key(self.key(), 0)?;
        let Some(last_bit) = self.highest_written_bit() else {
            return Ok(());
        };
        let len = usize::try_from(last_bit / 8 + 1).unwrap_or(usize::MAX);
        crate::limits::check_value(len, max_value_bytes)
    }

    /// The highest bit a write reaches (`None`: a read).
    pub fn highest_written_bit(&self) -> Option<u64> {
        match self {
            BitOp::SetBit { offset, .. } => Some(*offset),
            BitOp::Field { ops, .. } => ops
                .iter()
                .filter(|o| !matches!(o, FieldOp::Get { .. }))
                .map(|o| {
                    let (_, bits, offset) = o.field();
                    offset.saturating_add(u64::from(bits)).saturating_sub(1)
                })
                .max(),
            _ => None,
        }
    }
}
