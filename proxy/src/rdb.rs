//! The `DUMP` / `RESTORE` payload: one value in Redis's RDB object encoding, then the RDB
//! version (2 bytes LE) and a CRC-64 (Jones, reflected; 8 bytes LE) of everything before it —
//! so payloads move between tierkv and Redis in both directions.
//!
//! [`encode`] writes the plain encodings every Redis since 2.x loads (string, list, set,
//! sorted set with binary scores, hash). [`decode`] reads those and the compact encodings Redis
//! 7.0 writes (listpack, ziplist, intset, quicklist 1 and 2, LZF-compressed and
//! integer-encoded strings). It is a decoder of untrusted bytes: every length is checked
//! against the bytes left before anything is allocated, and any inconsistency is
//! [`Error::BadFormat`], never a panic (`proxy/fuzz/fuzz_targets/rdb_payload.rs`).

use bytes::Bytes;

/// The RDB version Redis 7.0 writes; payloads of later versions are refused, as Redis does.
pub const RDB_VERSION: u16 = 10;

/// A decoded value.
#[derive(Debug, Clone, PartialEq)]
pub enum Object {
    /// A string.
    String(Bytes),
    /// A list, head first.
    List(Vec<Bytes>),
    /// A set's members.
    Set(Vec<Bytes>),
    /// A sorted set's members and scores.
    ZSet(Vec<(Bytes, f64)>),
    /// A hash's fields and values.
    Hash(Vec<(Bytes, Bytes)>),
}

/// Why a payload was refused (the texts are Redis's `RESTORE` errors).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// Too short, a later RDB version, or a checksum mismatch.
    #[error("DUMP payload version or checksum are wrong")]
    Checksum,
    /// The object inside does not decode (or is a type tierkv does not store).
    #[error("Bad data format")]
    BadFormat,
}

type Result<T> = std::result::Result<T, Error>;

const TYPE_STRING: u8 = 0;
const TYPE_LIST: u8 = 1;
const TYPE_SET: u8 = 2;
const TYPE_ZSET: u8 = 3;
const TYPE_HASH: u8 = 4;
const TYPE_ZSET_2: u8 = 5;
const TYPE_LIST_ZIPLIST: u8 = 10;
const TYPE_SET_INTSET: u8 = 11;
const TYPE_ZSET_ZIPLIST: u8 = 12;
const TYPE_HASH_ZIPLIST: u8 = 13;
const TYPE_LIST_QUICKLIST: u8 = 14;
const TYPE_HASH_LISTPACK: u8 = 16;
const TYPE_ZSET_LISTPACK: u8 = 17;
const TYPE_LIST_QUICKLIST_2: u8 = 18;

/// The payload `DUMP` answers for `obj`.
pub fn encode(obj: &Object) -> Vec<u8> {
    let mut out = Vec::new();
    match obj {
        Object::String(s) => {
            out.push(TYPE_STRING);
            put_string(&mut out, s);
        }
        Object::List(items) | Object::Set(items) => {
            out.push(if matches!(obj, Object::List(_)) {
                TYPE_LIST
            } else {
                TYPE_SET
            });
            put_len(&mut out, items.len() as u64);
            items.iter().for_each(|i| put_string(&mut out, i));
        }
        Object::ZSet(items) => {
            out.push(TYPE_ZSET_2);
            put_len(&mut out, items.len() as u64);
            for (m, s) in items {
                put_string(&mut out, m);
                out.extend_from_slice(&s.to_le_bytes());
            }
        }
        Object::Hash(pairs) => {
            out.push(TYPE_HASH);
            put_len(&mut out, pairs.len() as u64);
            for (f, v) in pairs {
                put_string(&mut out, f);
                put_string(&mut out, v);
            }
        }
    }
    out.extend_from_slice(&RDB_VERSION.to_le_bytes());
    let crc = crc64(0, &out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

fn put_len(out: &mut Vec<u8>, n: u64) {
    if n < 1 << 6 {
        out.push(n as u8);
    } else if n < 1 << 14 {
        out.push(0x40 | (n >> 8) as u8);
        out.push(n as u8);
    } else if n <= u64::from(u32::MAX) {
        out.push(0x80);
        out.extend_from_slice(&(n as u32).to_be_bytes());
    } else {
        out.push(0x81);
        out.extend_from_slice(&n.to_be_bytes());
    }
}

fn put_string(out: &mut Vec<u8>, s: &[u8]) {
    put_len(out, s.len() as u64);
    out.extend_from_slice(s);
}

/// The RDB opcode of a function library (Redis 7.0's `RDB_OPCODE_FUNCTION2`: its code as a
/// string).
const OPCODE_FUNCTION2: u8 = 245;

/// The payload `FUNCTION DUMP` answers for libraries of code `codes`.
pub fn encode_functions<'a>(codes: impl IntoIterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut out = Vec::new();
    for code in codes {
        out.push(OPCODE_FUNCTION2);
        put_string(&mut out, code);
    }
    out.extend_from_slice(&RDB_VERSION.to_le_bytes());
    let crc = crc64(0, &out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// Why a `FUNCTION RESTORE` payload was refused (the texts are Redis's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FunctionsError {
    /// Too short, a later RDB version, or a checksum mismatch.
    #[error("DUMP payload version or checksum are wrong")]
    Checksum,
    /// An opcode that is not a function library.
    #[error("given type is not a function")]
    NotAFunction,
    /// A library whose code does not decode.
    #[error("failed loading the given functions payload")]
    BadLibrary,
}

/// The library codes of a `FUNCTION DUMP` payload, in order.
pub fn decode_functions(payload: &[u8]) -> std::result::Result<Vec<Bytes>, FunctionsError> {
    let body = verify(payload).map_err(|_| FunctionsError::Checksum)?;
    let mut r = Reader { b: body, pos: 0 };
    let mut codes = Vec::new();
    while r.left() > 0 {
        if r.u8().map_err(|_| FunctionsError::BadLibrary)? != OPCODE_FUNCTION2 {
            return Err(FunctionsError::NotAFunction);
        }
        codes.push(r.string().map_err(|_| FunctionsError::BadLibrary)?);
    }
    Ok(codes)
}

/// Checks the version and checksum (`verifyDumpPayload`) and decodes the object.
pub fn decode(payload: &[u8]) -> Result<Object> {
    let body = verify(payload)?;
    let mut r = Reader { b: body, pos: 0 };
    let kind = r.u8()?;
    let obj = r.object(kind)?;
    let empty = match &obj {
        Object::String(_) => false,
        Object::List(v) | Object::Set(v) => v.is_empty(),
        Object::ZSet(v) => v.is_empty(),
        Object::Hash(v) => v.is_empty(),
    };
    if empty {
        return Err(Error::BadFormat);
    }
    Ok(obj)
}

/// The object bytes of a payload whose footer is valid.
fn verify(payload: &[u8]) -> Result<&[u8]> {
    let n = payload.len();
    if n < 10 {
        return Err(Error::Checksum);
    }
    let version = u16::from_le_bytes([payload[n - 10], payload[n - 9]]);
    if version > RDB_VERSION {
        return Err(Error::Checksum);
    }
    let mut crc = [0u8; 8];
    crc.copy_from_slice(&payload[n - 8..]);
    if crc64(0, &payload[..n - 8]) != u64::from_le_bytes(crc) {
        return Err(Error::Checksum);
    }
    Ok(&payload[..n - 10])
}

/// A length: a count, or the kind of a specially encoded string.
enum Len {
    Plain(u64),
    Encoded(u8),
}

struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn u8(&mut self) -> Result<u8> {
        let v = *self.b.get(self.pos).ok_or(Error::BadFormat)?;
        self.pos += 1;
        Ok(v)
    }

    fn take(&mut self, n: u64) -> Result<&'a [u8]> {
        let n = usize::try_from(n).map_err(|_| Error::BadFormat)?;
        let end = self.pos.checked_add(n).ok_or(Error::BadFormat)?;
        let s = self.b.get(self.pos..end).ok_or(Error::BadFormat)?;
        self.pos = end;
        Ok(s)
    }

    fn left(&self) -> usize {
        self.b.len() - self.pos
    }

    fn len(&mut self) -> Result<Len> {
        let first = self.u8()?;
        Ok(match first >> 6 {
            0 => Len::Plain(u64::from(first & 0x3f)),
            1 => Len::Plain(u64::from(first & 0x3f) << 8 | u64::from(self.u8()?)),
            2 => match first {
                0x80 => Len::Plain(u64::from(u32::from_be_bytes(fixed(self.take(4)?)))),
                0x81 => Len::Plain(u64::from_be_bytes(fixed(self.take(8)?))),
                _ => return Err(Error::BadFormat),
            },
            _ => Len::Encoded(first & 0x3f),
        })
    }

    /// A count of items, each at least `min_bytes` long: bounded by the bytes left, so a
    /// hostile count allocates nothing.
    fn count(&mut self, min_bytes: usize) -> Result<usize> {
        match self.len()? {
            Len::Plain(n) => {
                let n = usize::try_from(n).map_err(|_| Error::BadFormat)?;
                if n.saturating_mul(min_bytes) > self.left() {
                    return Err(Error::BadFormat);
                }
                Ok(n)
            }
            Len::Encoded(_) => Err(Error::BadFormat),
        }
    }

    fn string(&mut self) -> Result<Bytes> {
        match self.len()? {
            Len::Plain(n) => Ok(Bytes::copy_from_slice(self.take(n)?)),
            Len::Encoded(0) => Ok(int_text(i64::from(self.u8()? as i8))),
            Len::Encoded(1) => Ok(int_text(i64::from(i16::from_le_bytes(fixed(
                self.take(2)?,
            ))))),
            Len::Encoded(2) => Ok(int_text(i64::from(i32::from_le_bytes(fixed(
                self.take(4)?,
            ))))),
            Len::Encoded(3) => {
                let (Len::Plain(clen), Len::Plain(ulen)) = (self.len()?, self.len()?) else {
                    return Err(Error::BadFormat);
                };
                let packed = self.take(clen)?;
                lzf_decompress(packed, ulen).map(Bytes::from)
            }
            Len::Encoded(_) => Err(Error::BadFormat),
        }
    }

    /// A score of the old sorted-set encoding: a length byte (253 NaN, 254 +inf, 255 -inf)
    /// and its decimal text.
    fn text_double(&mut self) -> Result<f64> {
        match self.u8()? {
            253 => Ok(f64::NAN),
            254 => Ok(f64::INFINITY),
            255 => Ok(f64::NEG_INFINITY),
            n => parse_f64(self.take(u64::from(n))?),
        }
    }

    fn object(&mut self, kind: u8) -> Result<Object> {
        Ok(match kind {
            TYPE_STRING => Object::String(self.string()?),
            TYPE_LIST | TYPE_SET => {
                let n = self.count(1)?;
                let items = (0..n).map(|_| self.string()).collect::<Result<Vec<_>>>()?;
                if kind == TYPE_LIST {
                    Object::List(items)
                } else {
                    Object::Set(items)
                }
            }
            TYPE_ZSET | TYPE_ZSET_2 => {
                let n = self.count(2)?;
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    let m = self.string()?;
                    let s = if kind == TYPE_ZSET {
                        self.text_double()?
                    } else {
                        f64::from_le_bytes(fixed(self.take(8)?))
                    };
                    items.push((m, score(s)?));
                }
                Object::ZSet(items)
            }
            TYPE_HASH => {
                let n = self.count(2)?;
                let pairs = (0..n)
                    .map(|_| Ok((self.string()?, self.string()?)))
                    .collect::<Result<Vec<_>>>()?;
                Object::Hash(pairs)
            }
            TYPE_LIST_ZIPLIST => Object::List(ziplist(&self.string()?)?),
            TYPE_SET_INTSET => Object::Set(intset(&self.string()?)?),
            TYPE_ZSET_ZIPLIST => Object::ZSet(scored(ziplist(&self.string()?)?)?),
            TYPE_HASH_ZIPLIST => Object::Hash(paired(ziplist(&self.string()?)?)?),
            TYPE_HASH_LISTPACK => Object::Hash(paired(listpack(&self.string()?)?)?),
            TYPE_ZSET_LISTPACK => Object::ZSet(scored(listpack(&self.string()?)?)?),
            TYPE_LIST_QUICKLIST => {
                let n = self.count(1)?;
                let mut items = Vec::new();
                for _ in 0..n {
                    items.extend(ziplist(&self.string()?)?);
                }
                Object::List(items)
            }
            TYPE_LIST_QUICKLIST_2 => {
                let n = self.count(2)?;
                let mut items = Vec::new();
                for _ in 0..n {
                    let container = match self.len()? {
                        Len::Plain(c) => c,
                        Len::Encoded(_) => return Err(Error::BadFormat),
                    };
                    let node = self.string()?;
                    match container {
                        1 => items.push(node),
                        2 => items.extend(listpack(&node)?),
                        _ => return Err(Error::BadFormat),
                    }
                }
                Object::List(items)
            }
            _ => return Err(Error::BadFormat),
        })
    }
}

fn fixed<const N: usize>(s: &[u8]) -> [u8; N] {
    let mut a = [0u8; N];
    a.copy_from_slice(s);
    a
}

fn int_text(v: i64) -> Bytes {
    Bytes::from(v.to_string())
}

/// A sorted set's score: NaN is corrupt data, as in Redis.
fn score(s: f64) -> Result<f64> {
    if s.is_nan() {
        Err(Error::BadFormat)
    } else {
        Ok(s)
    }
}

fn parse_f64(text: &[u8]) -> Result<f64> {
    let t = std::str::from_utf8(text).map_err(|_| Error::BadFormat)?;
    t.parse::<f64>().map_err(|_| Error::BadFormat)
}

fn paired(items: Vec<Bytes>) -> Result<Vec<(Bytes, Bytes)>> {
    if items.len() % 2 != 0 {
        return Err(Error::BadFormat);
    }
    let mut it = items.into_iter();
    let mut out = Vec::new();
    while let (Some(a), Some(b)) = (it.next(), it.next()) {
        out.push((a, b));
    }
    Ok(out)
}

fn scored(items: Vec<Bytes>) -> Result<Vec<(Bytes, f64)>> {
    paired(items)?
        .into_iter()
        .map(|(m, s)| Ok((m, score(parse_f64(&s)?)?)))
        .collect()
}

/// liblzf's decompressor, checked: literal runs and back references must stay inside the
/// input and the `ulen` bytes of output, and exactly `ulen` bytes must come out.
fn lzf_decompress(input: &[u8], ulen: u64) -> Result<Vec<u8>> {
    // A back reference of at most 264 bytes costs at least 2 input bytes.
    if ulen > (input.len() as u64).saturating_mul(132) {
        return Err(Error::BadFormat);
    }
    let ulen = usize::try_from(ulen).map_err(|_| Error::BadFormat)?;
    let mut out = Vec::with_capacity(ulen);
    let mut ip = 0;
    while ip < input.len() {
        let ctrl = usize::from(input[ip]);
        ip += 1;
        if ctrl < 32 {
            let run = input.get(ip..ip + ctrl + 1).ok_or(Error::BadFormat)?;
            if out.len() + run.len() > ulen {
                return Err(Error::BadFormat);
            }
            out.extend_from_slice(run);
            ip += ctrl + 1;
        } else {
            let mut len = ctrl >> 5;
            if len == 7 {
                len += usize::from(*input.get(ip).ok_or(Error::BadFormat)?);
                ip += 1;
            }
            let low = usize::from(*input.get(ip).ok_or(Error::BadFormat)?);
            ip += 1;
            let back = ((ctrl & 0x1f) << 8) + low + 1;
            let from = out.len().checked_sub(back).ok_or(Error::BadFormat)?;
            len += 2;
            if out.len() + len > ulen {
                return Err(Error::BadFormat);
            }
            for i in 0..len {
                out.push(out[from + i]);
            }
        }
    }
    if out.len() != ulen {
        return Err(Error::BadFormat);
    }
    Ok(out)
}

/// The entries of a ziplist (`ziplist.c`), integers as decimal text.
fn ziplist(blob: &[u8]) -> Result<Vec<Bytes>> {
    let mut r = Reader { b: blob, pos: 0 };
    let total = u32::from_le_bytes(fixed(r.take(4)?)) as usize;
    if total != blob.len() {
        return Err(Error::BadFormat);
    }
    r.take(4)?; // offset of the tail
    r.take(2)?; // entry count (may saturate; the end marker is authoritative)
    let mut out = Vec::new();
    loop {
        let first = r.u8()?;
        if first == 0xff {
            break;
        }
        if first == 0xfe {
            r.take(4)?; // previous entry's length, 5-byte form
        }
        let enc = r.u8()?;
        out.push(match enc >> 6 {
            0 => Bytes::copy_from_slice(r.take(u64::from(enc & 0x3f))?),
            1 => {
                let n = u64::from(enc & 0x3f) << 8 | u64::from(r.u8()?);
                Bytes::copy_from_slice(r.take(n)?)
            }
            2 => {
                let n = u64::from(u32::from_be_bytes(fixed(r.take(4)?)));
                Bytes::copy_from_slice(r.take(n)?)
            }
            _ => int_text(match enc {
                0xc0 => i64::from(i16::from_le_bytes(fixed(r.take(2)?))),
                0xd0 => i64::from(i32::from_le_bytes(fixed(r.take(4)?))),
                0xe0 => i64::from_le_bytes(fixed(r.take(8)?)),
                0xf0 => sign_extend(u64::from(u32::from_le_bytes(pad3(r.take(3)?))), 24),
                0xfe => i64::from(r.u8()? as i8),
                0xf1..=0xfd => i64::from(enc & 0x0f) - 1,
                _ => return Err(Error::BadFormat),
            }),
        });
    }
    if r.left() != 0 {
        return Err(Error::BadFormat);
    }
    Ok(out)
}

fn pad3(s: &[u8]) -> [u8; 4] {
    [s[0], s[1], s[2], 0]
}

fn sign_extend(v: u64, bits: u32) -> i64 {
    let shift = 64 - bits;
    ((v << shift) as i64) >> shift
}

/// The entries of a listpack (`listpack.c`), integers as decimal text; each entry's
/// back-length is checked against the entry it follows.
fn listpack(blob: &[u8]) -> Result<Vec<Bytes>> {
    let mut r = Reader { b: blob, pos: 0 };
    let total = u32::from_le_bytes(fixed(r.take(4)?)) as usize;
    if total != blob.len() {
        return Err(Error::BadFormat);
    }
    r.take(2)?; // element count (may saturate; the end marker is authoritative)
    let mut out = Vec::new();
    loop {
        let start = r.pos;
        let enc = r.u8()?;
        if enc == 0xff {
            break;
        }
        let item = if enc & 0x80 == 0 {
            int_text(i64::from(enc & 0x7f))
        } else if enc & 0xc0 == 0x80 {
            Bytes::copy_from_slice(r.take(u64::from(enc & 0x3f))?)
        } else if enc & 0xe0 == 0xc0 {
            let v = u64::from(enc & 0x1f) << 8 | u64::from(r.u8()?);
            int_text(sign_extend(v, 13))
        } else if enc & 0xf0 == 0xe0 {
            let n = u64::from(enc & 0x0f) << 8 | u64::from(r.u8()?);
            Bytes::copy_from_slice(r.take(n)?)
        } else {
            match enc {
                0xf0 => {
                    let n = u64::from(u32::from_le_bytes(fixed(r.take(4)?)));
                    Bytes::copy_from_slice(r.take(n)?)
                }
                0xf1 => int_text(i64::from(i16::from_le_bytes(fixed(r.take(2)?)))),
                0xf2 => int_text(sign_extend(
                    u64::from(u32::from_le_bytes(pad3(r.take(3)?))),
                    24,
                )),
                0xf3 => int_text(i64::from(i32::from_le_bytes(fixed(r.take(4)?)))),
                0xf4 => int_text(i64::from_le_bytes(fixed(r.take(8)?))),
                _ => return Err(Error::BadFormat),
            }
        };
        let entry_len = (r.pos - start) as u64;
        check_backlen(&mut r, entry_len)?;
        out.push(item);
    }
    if r.left() != 0 {
        return Err(Error::BadFormat);
    }
    Ok(out)
}

/// Checks the back-length after an entry of `entry_len` bytes: `lpEncodeBacklen`'s 1 to 5
/// bytes, the most significant 7 bits first, every byte after the first with its high bit set.
fn check_backlen(r: &mut Reader<'_>, entry_len: u64) -> Result<()> {
    let size = match entry_len {
        0..=127 => 1,
        128..=16_382 => 2,
        16_383..=2_097_150 => 3,
        2_097_151..=268_435_454 => 4,
        _ => 5,
    };
    let mut want = [0u8; 5];
    for (i, b) in want[..size].iter_mut().enumerate() {
        let shift = 7 * (size - 1 - i);
        *b = ((entry_len >> shift) & 0x7f) as u8 | if i == 0 { 0 } else { 0x80 };
    }
    if r.take(size as u64)? != &want[..size] {
        return Err(Error::BadFormat);
    }
    Ok(())
}

/// The members of an intset (`intset.c`): encoding (2, 4 or 8), count, little-endian values.
fn intset(blob: &[u8]) -> Result<Vec<Bytes>> {
    let mut r = Reader { b: blob, pos: 0 };
    let width = u32::from_le_bytes(fixed(r.take(4)?));
    let n = u32::from_le_bytes(fixed(r.take(4)?));
    if !matches!(width, 2 | 4 | 8) || u64::from(n) * u64::from(width) != r.left() as u64 {
        return Err(Error::BadFormat);
    }
    (0..n)
        .map(|_| {
            Ok(int_text(match width {
                2 => i64::from(i16::from_le_bytes(fixed(r.take(2)?))),
                4 => i64::from(i32::from_le_bytes(fixed(r.take(4)?))),
                _ => i64::from_le_bytes(fixed(r.take(8)?)),
            }))
        })
        .collect()
}

/// CRC-64/Jones as Redis computes it (`crc64.c`: reflected polynomial 0xad93d23594c935a9,
/// initial value and final xor 0).
pub fn crc64(mut crc: u64, data: &[u8]) -> u64 {
    static TABLE: std::sync::OnceLock<[u64; 256]> = std::sync::OnceLock::new();
    let table = TABLE.get_or_init(|| {
        let mut t = [0u64; 256];
        for (i, slot) in t.iter_mut().enumerate() {
            let mut c = i as u64;
            for _ in 0..8 {
                c = if c & 1 == 1 {
                    (c >> 1) ^ 0x95ac_9329_ac4b_c9b5
                } else {
                    c >> 1
                };
            }
            *slot = c;
        }
        t
    });
    for &b in data {
        crc = table[((crc ^ u64::from(b)) & 0xff) as usize] ^ (crc >> 8);
    }
    crc
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Appends a valid version and checksum to `object` bytes.
    fn seal(mut object: Vec<u8>) -> Vec<u8> {
        object.extend_from_slice(&RDB_VERSION.to_le_bytes());
        let crc = crc64(0, &object);
        object.extend_from_slice(&crc.to_le_bytes());
        object
    }

    #[test]
    fn function_payloads_round_trip_and_refuse_other_types() {
        let codes: [&[u8]; 2] = [b"#!lua name=a\nreturn 1", b"#!lua name=b\nreturn 2"];
        let payload = encode_functions(codes);
        let back = decode_functions(&payload).unwrap();
        assert_eq!(
            back,
            codes
                .iter()
                .map(|c| Bytes::copy_from_slice(c))
                .collect::<Vec<_>>()
        );
        let not_functions = encode(&Object::String(Bytes::from_static(b"x")));
        assert_eq!(
            decode_functions(&not_functions),
            Err(FunctionsError::NotAFunction)
        );
        let mut bad = payload.clone();
        bad[3] ^= 1;
        assert_eq!(decode_functions(&bad), Err(FunctionsError::Checksum));
        assert_eq!(decode_functions(&encode_functions([])), Ok(vec![]));
    }

    #[test]
    fn crc64_is_redis_jones_variant() {
        // crc64.c's own test vector.
        assert_eq!(crc64(0, b"123456789"), 0xe9c6_d914_c4b8_d9ca);
    }

    #[test]
    fn a_bad_checksum_or_a_later_version_is_refused_before_decoding() {
        let good = encode(&Object::String(Bytes::from_static(b"v")));
        assert!(decode(&good).is_ok());
        let mut bad = good.clone();
        bad[1] ^= 1;
        assert_eq!(decode(&bad), Err(Error::Checksum));
        let mut later = good[..good.len() - 10].to_vec();
        later.extend_from_slice(&(RDB_VERSION + 1).to_le_bytes());
        let crc = crc64(0, &later);
        later.extend_from_slice(&crc.to_le_bytes());
        assert_eq!(decode(&later), Err(Error::Checksum));
        assert_eq!(decode(b"short"), Err(Error::Checksum));
    }

    #[test]
    fn compact_encodings_decode_to_their_values() {
        // A listpack of "a", 7, -2 (13-bit), "xyz": header, entries with back-lengths, end.
        let mut lp = vec![0, 0, 0, 0, 4, 0];
        lp.extend_from_slice(&[0x81, b'a', 2]);
        lp.extend_from_slice(&[7, 1]);
        lp.extend_from_slice(&[0xdf, 0xfe, 2]);
        lp.extend_from_slice(&[0x83, b'x', b'y', b'z', 4]);
        lp.push(0xff);
        let n = lp.len() as u32;
        lp[..4].copy_from_slice(&n.to_le_bytes());
        let mut obj = vec![TYPE_LIST_QUICKLIST_2, 1, 2, lp.len() as u8];
        obj.extend_from_slice(&lp);
        let want: Vec<Bytes> = ["a", "7", "-2", "xyz"]
            .iter()
            .map(|s| Bytes::from(*s))
            .collect();
        assert_eq!(decode(&seal(obj)), Ok(Object::List(want)));
        // An intset of two 16-bit members.
        let mut is = vec![TYPE_SET_INTSET, 12];
        is.extend_from_slice(&[2, 0, 0, 0, 2, 0, 0, 0, 0xff, 0xff, 5, 0]);
        let want = vec![Bytes::from("-1"), Bytes::from("5")];
        assert_eq!(decode(&seal(is)), Ok(Object::Set(want)));
        // An LZF string: literal "ab", then a back reference of 4 bytes at distance 2.
        let mut lzf = vec![TYPE_STRING, 0xc3, 5, 6];
        lzf.extend_from_slice(&[1, b'a', b'b', 0x40, 1]);
        assert_eq!(
            decode(&seal(lzf)),
            Ok(Object::String(Bytes::from("ababab")))
        );
    }

    #[test]
    fn hostile_lengths_allocate_nothing_and_are_refused() {
        // A list claiming 2^32 elements in a few bytes.
        let obj = vec![TYPE_LIST, 0x81, 0, 0, 0, 1, 0, 0, 0, 0, 1, b'a'];
        assert_eq!(decode(&seal(obj)), Err(Error::BadFormat));
        // An LZF string claiming 4 GiB from 3 bytes.
        let obj = vec![
            TYPE_STRING,
            0xc3,
            3,
            0x80,
            0xff,
            0xff,
            0xff,
            0xff,
            0,
            b'a',
            b'b',
        ];
        assert_eq!(decode(&seal(obj)), Err(Error::BadFormat));
        // A back reference before the start of the output.
        let obj = vec![TYPE_STRING, 0xc3, 2, 5, 0x40, 9];
        assert_eq!(decode(&seal(obj)), Err(Error::BadFormat));
        // Empty collections and NaN scores are corrupt, as in Redis.
        assert_eq!(decode(&seal(vec![TYPE_SET, 0])), Err(Error::BadFormat));
        let mut z = vec![TYPE_ZSET_2, 1, 1, b'm'];
        z.extend_from_slice(&f64::NAN.to_le_bytes());
        assert_eq!(decode(&seal(z)), Err(Error::BadFormat));
    }

    fn bytes() -> impl Strategy<Value = Bytes> {
        prop::collection::vec(any::<u8>(), 0..80).prop_map(Bytes::from)
    }

    fn object() -> impl Strategy<Value = Object> {
        use prop::collection::vec;
        prop_oneof![
            bytes().prop_map(Object::String),
            vec(bytes(), 1..20).prop_map(Object::List),
            vec(bytes(), 1..20).prop_map(Object::Set),
            vec((bytes(), -1e12f64..1e12), 1..20).prop_map(Object::ZSet),
            vec((bytes(), bytes()), 1..20).prop_map(Object::Hash),
        ]
    }

    proptest! {
        #[test]
        fn what_encode_writes_decode_reads_back(obj in object()) {
            prop_assert_eq!(decode(&encode(&obj)), Ok(obj));
        }

        #[test]
        fn arbitrary_object_bytes_with_a_valid_footer_never_panic(
            body in prop::collection::vec(any::<u8>(), 0..200),
        ) {
            let _ = decode(&seal(body));
        }
    }
}
