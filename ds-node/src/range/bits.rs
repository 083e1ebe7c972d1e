//! Bitmaps on strings (Redis `bitops.c`): SETBIT, GETBIT, BITCOUNT, BITPOS, BITFIELD. Bit 0
//! is the most significant bit of the first byte; a string grows with zero bytes to reach a
//! written bit; a missing key reads as an endless run of zeros.

use bytes::{Bytes, BytesMut};
use net::RpcError;
use net::message::bits::{BitOp, BitRange, FieldOp, Overflow};
use net::message::kv::OpResult;

use super::apply::{Apply, MAX_STRING_BYTES, len_i64, ok_int};
use super::meta::Meta;
use super::store::KvStore;

impl<S: KvStore> Apply<'_, '_, S> {
    /// Executes a bitmap operation.
    pub(super) fn bits(&mut self, op: &BitOp) -> Result<OpResult, RpcError> {
        match op {
            BitOp::SetBit { key, offset, value } => self.setbit(key, *offset, *value),
            BitOp::GetBit { key, offset } => {
                let s = self.string(key)?.unwrap_or_default();
                ok_int(i64::from(get_bit(&s, *offset)))
            }
            BitOp::Count { key, range } => {
                let s = self.string(key)?.unwrap_or_default();
                ok_int(count(&s, range.as_ref()))
            }
            BitOp::Pos { key, bit, range } => match self.string(key)? {
                None => ok_int(if *bit { -1 } else { 0 }),
                Some(s) => ok_int(pos(&s, *bit, range.as_ref())),
            },
            BitOp::Field { key, ops } => self.bitfield(key, ops, op.highest_written_bit()),
        }
    }

    fn setbit(&mut self, key: &[u8], offset: u64, value: bool) -> Result<OpResult, RpcError> {
        let (old, expire) = self.string_with_expiry(key)?;
        let (existed, old_len) = (old.is_some(), old.as_ref().map_or(0, Bytes::len));
        let mut s = grown(old.unwrap_or_default(), offset)?;
        let before = get_bit(&s, offset);
        set_bit(&mut s, offset, value);
        if !existed || s.len() != old_len || before != value {
            self.write_meta(key, &Meta::Str(s.freeze()), expire);
        }
        ok_int(i64::from(before))
    }

    fn bitfield(
        &mut self,
        key: &[u8],
        ops: &[FieldOp],
        highest: Option<u64>,
    ) -> Result<OpResult, RpcError> {
        if let Some(bad) = ops.iter().find(|o| !o.width_ok()) {
            return Err(RpcError::BadRequest {
                message: format!("Invalid bitfield type {:?}", bad.field()),
            });
        }
        let (old, expire) = self.string_with_expiry(key)?;
        let Some(highest) = highest else {
            let s = old.unwrap_or_default();
            let values = ops.iter().map(|o| Some(read_field(&s, o))).collect();
            return Ok(OpResult::OptInts { values });
        };
        let existed = old.is_some();
        let old = old.unwrap_or_default();
        let mut s = grown(old.clone(), highest)?;
        let values = ops.iter().map(|o| apply_field(&mut s, o)).collect();
        let s = s.freeze();
        if !existed || s != old {
            self.write_meta(key, &Meta::Str(s), expire);
        }
        Ok(OpResult::OptInts { values })
    }
}

/// `s` as a buffer long enough to hold bit `bit` (zero-padded).
fn grown(s: Bytes, bit: u64) -> Result<BytesMut, RpcError> {
    let need = bit / 8 + 1;
    if need > MAX_STRING_BYTES {
        return Err(RpcError::BadRequest {
            message: "bit offset is not an integer or out of range".into(),
        });
    }
    let mut b = BytesMut::from(&s[..]);
    let need = usize::try_from(need).unwrap_or(usize::MAX);
    if b.len() < need {
        b.resize(need, 0);
    }
    Ok(b)
}

fn get_bit(s: &[u8], offset: u64) -> bool {
    let byte = usize::try_from(offset / 8).unwrap_or(usize::MAX);
    s.get(byte)
        .is_some_and(|b| (b >> (7 - (offset % 8))) & 1 == 1)
}

/// Sets a bit inside `s` (the caller grew it).
fn set_bit(s: &mut [u8], offset: u64, value: bool) {
    let Some(b) = usize::try_from(offset / 8).ok().and_then(|i| s.get_mut(i)) else {
        return;
    };
    let mask = 1u8 << (7 - (offset % 8));
    if value {
        *b |= mask;
    } else {
        *b &= !mask;
    }
}

/// The inclusive interval of `units` units that `[start, end]` names, Redis's way (negative
/// from the end, clamped); `None` when empty.
fn interval(units: i64, start: i64, end: i64) -> Option<(i64, i64)> {
    let fix = |i: i64| if i < 0 { (units + i).max(0) } else { i };
    let (start, end) = (fix(start), fix(end).min(units - 1));
    (start <= end).then_some((start, end))
}

/// The bits `[first, last]` of `s` that a range names (`None`: the whole string).
fn bit_interval(
    len: usize,
    range: Option<&BitRange>,
    end_default_last: bool,
) -> Option<(u64, u64)> {
    let bytes = len_i64(len);
    let Some(r) = range else {
        return interval(bytes, 0, bytes - 1).map(|(s, e)| (s as u64 * 8, e as u64 * 8 + 7));
    };
    let units = if r.bits {
        bytes.saturating_mul(8)
    } else {
        bytes
    };
    let end = r
        .end
        .unwrap_or(if end_default_last { units - 1 } else { -1 });
    let (s, e) = interval(units, r.start, end)?;
    let (s, e) = (s as u64, e as u64);
    Some(if r.bits { (s, e) } else { (s * 8, e * 8 + 7) })
}

/// BITCOUNT.
fn count(s: &[u8], range: Option<&BitRange>) -> i64 {
    if let Some(r) = range {
        if r.start < 0 && r.end.is_some_and(|e| e < 0 && r.start > e) {
            return 0;
        }
    }
    let Some((first, last)) = bit_interval(s.len(), range, true) else {
        return 0;
    };
    let (fb, lb) = ((first / 8) as usize, (last / 8) as usize);
    let mut n: i64 = s[fb..=lb].iter().map(|b| i64::from(b.count_ones())).sum();
    // Bits of the edge bytes outside the interval: the high `first % 8` bits of the first
    // byte, the low `7 - last % 8` bits of the last.
    let before = !(0xFFu8 >> (first % 8));
    let after = ((1u16 << (7 - last % 8)) - 1) as u8;
    n -= i64::from((s[fb] & before).count_ones());
    n -= i64::from((s[lb] & after).count_ones());
    n
}

/// BITPOS.
fn pos(s: &[u8], bit: bool, range: Option<&BitRange>) -> i64 {
    let Some((first, last)) = bit_interval(s.len(), range, true) else {
        return -1;
    };
    if let Some(p) = (first..=last).find(|&i| get_bit(s, i) == bit) {
        return i64::try_from(p).unwrap_or(i64::MAX);
    }
    let end_given = range.is_some_and(|r| r.end.is_some());
    if !bit && !end_given {
        // No end given: the string continues with zeros.
        return i64::try_from((last / 8 + 1) * 8).unwrap_or(i64::MAX);
    }
    -1
}

fn get_field(s: &[u8], signed: bool, bits: u8, offset: u64) -> i64 {
    let mut v: u64 = 0;
    for i in 0..u64::from(bits) {
        v = (v << 1) | u64::from(get_bit(s, offset.saturating_add(i)));
    }
    if signed && bits < 64 && (v >> (bits - 1)) & 1 == 1 {
        v |= u64::MAX << bits;
    }
    v as i64
}

fn set_field(s: &mut [u8], bits: u8, offset: u64, value: i64) {
    let v = value as u64;
    for i in 0..u64::from(bits) {
        let b = (v >> (u64::from(bits) - 1 - i)) & 1 == 1;
        set_bit(s, offset.saturating_add(i), b);
    }
}

fn read_field(s: &[u8], op: &FieldOp) -> i64 {
    let (signed, bits, offset) = op.field();
    get_field(s, signed, bits, offset)
}

/// The field's `[min, max]`.
fn bounds(signed: bool, bits: u8) -> (i128, i128) {
    if signed {
        let half = 1i128 << (bits - 1);
        (-half, half - 1)
    } else {
        (0, (1i128 << bits) - 1)
    }
}

/// `v` made to fit the field under `overflow` (`None`: FAIL refused it).
fn fit(v: i128, signed: bool, bits: u8, overflow: Overflow) -> Option<i64> {
    let (min, max) = bounds(signed, bits);
    if (min..=max).contains(&v) {
        return i64::try_from(v).ok();
    }
    match overflow {
        Overflow::Fail {} => None,
        Overflow::Sat {} => i64::try_from(v.clamp(min, max)).ok(),
        Overflow::Wrap {} => {
            let m = v.rem_euclid(1i128 << bits);
            let m = if signed && m > max {
                m - (1i128 << bits)
            } else {
                m
            };
            i64::try_from(m).ok()
        }
    }
}

/// Runs one BITFIELD sub-operation on `s`: its reply (`None`: nil).
fn apply_field(s: &mut [u8], op: &FieldOp) -> Option<i64> {
    let (signed, bits, offset) = op.field();
    let old = get_field(s, signed, bits, offset);
    let (new, reply_new) = match *op {
        FieldOp::Get { .. } => return Some(old),
        FieldOp::Set {
            value, overflow, ..
        } => {
            // An unsigned field takes the value's two's-complement bits, as Redis does.
            let v = if signed {
                i128::from(value)
            } else {
                i128::from(value as u64)
            };
            (fit(v, signed, bits, overflow)?, false)
        }
        FieldOp::IncrBy { incr, overflow, .. } => (
            fit(i128::from(old) + i128::from(incr), signed, bits, overflow)?,
            true,
        ),
    };
    set_field(s, bits, offset, new);
    Some(if reply_new { new } else { old })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(start: i64, end: Option<i64>, bits: bool) -> BitRange {
        BitRange { start, end, bits }
    }

    #[test]
    fn bitcount_matches_redis_on_byte_and_bit_ranges() {
        let s = b"foobar";
        assert_eq!(count(s, None), 26);
        assert_eq!(count(s, Some(&r(0, Some(0), false))), 4);
        assert_eq!(count(s, Some(&r(1, Some(1), false))), 6);
        assert_eq!(count(s, Some(&r(1, Some(1), true))), 1);
        assert_eq!(count(s, Some(&r(5, Some(30), true))), 17);
        assert_eq!(count(s, Some(&r(-1, Some(-2), false))), 0);
        assert_eq!(count(b"", None), 0);
    }

    #[test]
    fn bitpos_matches_redis() {
        assert_eq!(pos(b"\xff\xf0\x00", false, None), 12);
        assert_eq!(pos(b"\x00\xff\xf0", true, Some(&r(0, None, false))), 8);
        assert_eq!(pos(b"\x00\xff\xf0", true, Some(&r(2, None, false))), 16);
        assert_eq!(pos(b"\x00\x00\x00", true, None), -1);
        assert_eq!(pos(b"\xff\xff\xff", false, None), 24);
        assert_eq!(
            pos(b"\xff\xff\xff", false, Some(&r(0, Some(-1), false))),
            -1
        );
        assert_eq!(pos(b"\x00\xff\xf0", true, Some(&r(7, Some(15), true))), 8);
        assert_eq!(pos(b"", false, None), -1);
    }

    #[test]
    fn bitfield_overflows_wrap_saturate_or_fail() {
        let incr = |incr, overflow| FieldOp::IncrBy {
            signed: false,
            bits: 2,
            offset: 100,
            incr,
            overflow,
        };
        let mut s = vec![0u8; 13];
        assert_eq!(apply_field(&mut s, &incr(1, Overflow::Wrap {})), Some(1));
        assert_eq!(apply_field(&mut s, &incr(3, Overflow::Wrap {})), Some(0));
        assert_eq!(apply_field(&mut s, &incr(5, Overflow::Sat {})), Some(3));
        assert_eq!(apply_field(&mut s, &incr(1, Overflow::Fail {})), None);
        let set = FieldOp::Set {
            signed: true,
            bits: 8,
            offset: 0,
            value: 200,
            overflow: Overflow::Wrap {},
        };
        assert_eq!(apply_field(&mut s, &set), Some(0));
        assert_eq!(
            read_field(
                &s,
                &FieldOp::Get {
                    signed: true,
                    bits: 8,
                    offset: 0
                }
            ),
            -56
        );
        assert_eq!(
            read_field(
                &s,
                &FieldOp::Get {
                    signed: false,
                    bits: 8,
                    offset: 0
                }
            ),
            200
        );
        let big = FieldOp::IncrBy {
            signed: true,
            bits: 64,
            offset: 0,
            incr: i64::MAX,
            overflow: Overflow::Sat {},
        };
        let mut z = vec![0xffu8; 8];
        assert_eq!(apply_field(&mut z, &big), Some(i64::MAX - 1));
        assert_eq!(apply_field(&mut z, &big), Some(i64::MAX));
    }
}
