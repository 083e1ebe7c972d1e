//! The payload encoding of `docs/format/wire.md` §3: fixed little-endian layouts written by
//! hand, and a bounds-checked reader that never panics and never allocates more than the bytes
//! it has been given.
// perf-critical: every request and response passes through here.

use bytes::{BufMut, Bytes, BytesMut};

/// Why a payload did not decode. Every variant closes the connection that sent it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The payload ended before the field did.
    #[error("payload truncated: needed {needed} more bytes for {what}")]
    Truncated {
        /// What was being decoded.
        what: &'static str,
        /// How many bytes were missing.
        needed: usize,
    },
    /// An enum tag (or error code) that this version does not define.
    #[error("unknown {what} tag {tag}")]
    UnknownTag {
        /// Which enum.
        what: &'static str,
        /// The tag seen.
        tag: u16,
    },
    /// A bool that was neither 0 nor 1.
    #[error("invalid bool byte {0}")]
    InvalidBool(u8),
    /// A string field that is not UTF-8.
    #[error("string field is not UTF-8")]
    InvalidUtf8,
    /// A vector count that cannot fit in the rest of the payload.
    #[error("{what}: count {count} exceeds the {remaining} bytes left")]
    CountTooLarge {
        /// Which vector.
        what: &'static str,
        /// The count claimed.
        count: u32,
        /// Bytes left in the payload.
        remaining: usize,
    },
    /// A key longer than [`MAX_KEY_BYTES`].
    #[error("key of {len} bytes exceeds the {max} byte limit")]
    KeyTooLarge {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Bytes left over after the message ended.
    #[error("{0} trailing bytes after the message")]
    TrailingBytes(usize),
    /// A field holds a value the protocol does not allow.
    #[error("invalid value for {0}")]
    InvalidValue(&'static str),
}

/// The largest key the protocol carries: 64 KiB.
pub const MAX_KEY_BYTES: usize = 64 * 1024;

/// A value with a fixed wire layout.
pub trait Wire: Sized {
    /// Appends the encoding of `self` to `buf`.
    fn encode(&self, buf: &mut BytesMut);
    /// Decodes one value from the front of `r`.
    fn decode(r: &mut Reader) -> Result<Self, DecodeError>;
}

/// Decodes `T` from the whole of `payload`: trailing bytes are an error.
pub fn decode_exact<T: Wire>(payload: Bytes) -> Result<T, DecodeError> {
    let mut r = Reader::new(payload);
    let v = T::decode(&mut r)?;
    r.finish()?;
    Ok(v)
}

/// Encodes `v` into a fresh buffer.
pub fn encode_to_bytes<T: Wire>(v: &T) -> Bytes {
    let mut buf = BytesMut::new();
    v.encode(&mut buf);
    buf.freeze()
}

/// A bounds-checked cursor over a payload. Byte fields are returned as zero-copy slices of it.
#[derive(Debug)]
pub struct Reader {
    buf: Bytes,
}

impl Reader {
    /// Starts reading `buf`.
    pub fn new(buf: Bytes) -> Self {
        Self { buf }
    }

    /// The next `n` bytes without consuming them (`None`: fewer are left).
    pub fn peek(&self, n: usize) -> Option<&[u8]> {
        self.buf.get(..n)
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.buf.len()
    }

    /// Fails unless every byte was consumed.
    pub fn finish(&self) -> Result<(), DecodeError> {
        match self.buf.len() {
            0 => Ok(()),
            n => Err(DecodeError::TrailingBytes(n)),
        }
    }

    fn take<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], DecodeError> {
        let Some(head) = self.buf.get(..N) else {
            return Err(DecodeError::Truncated {
                what,
                needed: N - self.buf.len(),
            });
        };
        let mut out = [0u8; N];
        out.copy_from_slice(head);
        bytes::Buf::advance(&mut self.buf, N);
        Ok(out)
    }

    /// Reads `N` raw bytes (a fixed-size field such as a nonce).
    pub fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], DecodeError> {
        self.take(what)
    }
    /// Reads a `u8`.
    pub fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        Ok(self.take::<1>(what)?[0])
    }
    /// Reads a little-endian `u16`.
    pub fn u16(&mut self, what: &'static str) -> Result<u16, DecodeError> {
        Ok(u16::from_le_bytes(self.take(what)?))
    }
    /// Reads a little-endian `u32`.
    pub fn u32(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.take(what)?))
    }
    /// Reads a little-endian `u64`.
    pub fn u64(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.take(what)?))
    }
    /// Reads a little-endian `i64`.
    pub fn i64(&mut self, what: &'static str) -> Result<i64, DecodeError> {
        Ok(i64::from_le_bytes(self.take(what)?))
    }
    /// Reads an `f64` stored as its IEEE-754 bits.
    pub fn f64(&mut self, what: &'static str) -> Result<f64, DecodeError> {
        Ok(f64::from_bits(self.u64(what)?))
    }
    /// Reads a bool (0 or 1).
    pub fn bool(&mut self, what: &'static str) -> Result<bool, DecodeError> {
        match self.u8(what)? {
            0 => Ok(false),
            1 => Ok(true),
            b => Err(DecodeError::InvalidBool(b)),
        }
    }
    /// Reads a length-prefixed byte string as a zero-copy slice of the payload.
    pub fn bytes(&mut self, what: &'static str) -> Result<Bytes, DecodeError> {
        let len = self.u32(what)? as usize;
        if len > self.buf.len() {
            return Err(DecodeError::Truncated {
                what,
                needed: len - self.buf.len(),
            });
        }
        Ok(self.buf.split_to(len))
    }
    /// Reads a length-prefixed key, refusing keys over [`MAX_KEY_BYTES`].
    pub fn key(&mut self) -> Result<Bytes, DecodeError> {
        let k = self.bytes("key")?;
        if k.len() > MAX_KEY_BYTES {
            return Err(DecodeError::KeyTooLarge {
                len: k.len(),
                max: MAX_KEY_BYTES,
            });
        }
        Ok(k)
    }
    /// Reads a length-prefixed UTF-8 string.
    pub fn string(&mut self, what: &'static str) -> Result<String, DecodeError> {
        let b = self.bytes(what)?;
        String::from_utf8(b.to_vec()).map_err(|_| DecodeError::InvalidUtf8)
    }
    /// Reads a vector count and checks that `count` elements of at least `min_elem_bytes`
    /// each can fit in what is left, so a forged count cannot make us allocate.
    pub fn count(
        &mut self,
        what: &'static str,
        min_elem_bytes: usize,
    ) -> Result<usize, DecodeError> {
        let count = self.u32(what)?;
        let need = (count as usize).saturating_mul(min_elem_bytes.max(1));
        if need > self.buf.len() {
            return Err(DecodeError::CountTooLarge {
                what,
                count,
                remaining: self.buf.len(),
            });
        }
        Ok(count as usize)
    }
}

/// Appends a length-prefixed byte string.
pub fn put_bytes(buf: &mut BytesMut, b: &[u8]) {
    let len = u32::try_from(b.len()).expect("byte fields are bounded by the frame limit (< 4 GiB)");
    buf.put_u32_le(len);
    buf.put_slice(b);
}

/// Appends a bool.
pub fn put_bool(buf: &mut BytesMut, b: bool) {
    buf.put_u8(u8::from(b));
}

/// Appends a vector count.
pub fn put_count(buf: &mut BytesMut, n: usize) {
    let n = u32::try_from(n).expect("vector lengths are bounded by the frame limit (< 4 GiB)");
    buf.put_u32_le(n);
}

macro_rules! wire_int {
    ($t:ty, $put:ident, $get:ident) => {
        impl Wire for $t {
            fn encode(&self, buf: &mut BytesMut) {
                buf.$put(*self);
            }
            fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
                r.$get(stringify!($t))
            }
        }
    };
}
wire_int!(u16, put_u16_le, u16);
wire_int!(u32, put_u32_le, u32);
wire_int!(u64, put_u64_le, u64);
wire_int!(i64, put_i64_le, i64);

impl Wire for u8 {
    fn encode(&self, buf: &mut BytesMut) {
        buf.put_u8(*self);
    }
    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        r.u8("u8")
    }
}

impl Wire for bool {
    fn encode(&self, buf: &mut BytesMut) {
        put_bool(buf, *self);
    }
    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        r.bool("bool")
    }
}

impl Wire for f64 {
    fn encode(&self, buf: &mut BytesMut) {
        buf.put_u64_le(self.to_bits());
    }
    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        r.f64("f64")
    }
}

impl Wire for Bytes {
    fn encode(&self, buf: &mut BytesMut) {
        put_bytes(buf, self);
    }
    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        r.bytes("bytes")
    }
}

impl Wire for String {
    fn encode(&self, buf: &mut BytesMut) {
        put_bytes(buf, self.as_bytes());
    }
    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        r.string("string")
    }
}

impl<T: Wire> Wire for Option<T> {
    fn encode(&self, buf: &mut BytesMut) {
        match self {
            None => buf.put_u8(0),
            Some(v) => {
                buf.put_u8(1);
                v.encode(buf);
            }
        }
    }
    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        match r.u8("option")? {
            0 => Ok(None),
            1 => Ok(Some(T::decode(r)?)),
            tag => Err(DecodeError::UnknownTag {
                what: "option",
                tag: tag.into(),
            }),
        }
    }
}

impl<T: Wire> Wire for Box<T> {
    fn encode(&self, buf: &mut BytesMut) {
        T::encode(self, buf);
    }
    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        T::decode(r).map(Box::new)
    }
}

impl<T: Wire> Wire for Vec<T> {
    fn encode(&self, buf: &mut BytesMut) {
        put_count(buf, self.len());
        for v in self {
            v.encode(buf);
        }
    }
    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        // Every element encodes to at least one byte.
        let n = r.count("vec", 1)?;
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(T::decode(r)?);
        }
        Ok(out)
    }
}

impl<A: Wire, B: Wire> Wire for (A, B) {
    fn encode(&self, buf: &mut BytesMut) {
        self.0.encode(buf);
        self.1.encode(buf);
    }
    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok((A::decode(r)?, B::decode(r)?))
    }
}

/// Implements [`Wire`] for a struct whose fields are encoded in declaration order.
///
/// A field may be marked `key` to be decoded with the key length limit, `keys` for a vector
/// of keys, or with the name of a function `fn(&mut Reader) -> Result<T, DecodeError>` in
/// scope where the macro is used (a decoder with its own checks).
macro_rules! wire_struct {
    ($name:ident { $($field:ident $(: $kind:ident)?),* $(,)? }) => {
        impl $crate::codec::Wire for $name {
            fn encode(&self, buf: &mut ::bytes::BytesMut) {
                $( $crate::codec::Wire::encode(&self.$field, buf); )*
            }
            fn decode(r: &mut $crate::codec::Reader) -> Result<Self, $crate::codec::DecodeError> {
                Ok(Self { $( $field: $crate::codec::wire_struct!(@decode r $($kind)?), )* })
            }
        }
    };
    (@decode $r:ident key) => { $r.key()? };
    (@decode $r:ident keys) => { $crate::codec::decode_keys($r)? };
    (@decode $r:ident $f:ident) => { $f($r)? };
    (@decode $r:ident) => { $crate::codec::Wire::decode($r)? };
}
pub(crate) use wire_struct;

/// Implements [`Wire`] for an enum with named-field (or empty-brace) variants: a tag of type
/// `$tag_ty`, then the variant's fields in order. Also gives the enum a `tag()` method.
macro_rules! wire_enum {
    ($name:ident : $tag_ty:ident, $what:literal {
        $($tag:literal => $variant:ident { $($field:ident $(: $kind:ident)?),* $(,)? }),* $(,)?
    }) => {
        impl $name {
            /// The stable wire tag of this variant.
            pub fn tag(&self) -> $tag_ty {
                match self { $( Self::$variant { .. } => $tag, )* }
            }
        }
        impl $crate::codec::Wire for $name {
            #[allow(unused_variables)]
            fn encode(&self, buf: &mut ::bytes::BytesMut) {
                match self {
                    $( Self::$variant { $($field),* } => {
                        $crate::codec::Wire::encode(&($tag as $tag_ty), buf);
                        $( $crate::codec::Wire::encode($field, buf); )*
                    } )*
                }
            }
            fn decode(r: &mut $crate::codec::Reader) -> Result<Self, $crate::codec::DecodeError> {
                let tag = <$tag_ty as $crate::codec::Wire>::decode(r)?;
                Ok(match tag {
                    $( $tag => Self::$variant {
                        $( $field: $crate::codec::wire_struct!(@decode r $($kind)?), )*
                    }, )*
                    other => return Err($crate::codec::DecodeError::UnknownTag {
                        what: $what,
                        tag: other.into(),
                    }),
                })
            }
        }
    };
}
pub(crate) use wire_enum;

/// Decodes a `Vec` of keys, each within the key limit.
pub fn decode_keys(r: &mut Reader) -> Result<Vec<Bytes>, DecodeError> {
    let n = r.count("keys", 4)?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(r.key()?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forged_vector_count_is_refused_before_allocating() {
        let mut buf = BytesMut::new();
        buf.put_u32_le(u32::MAX);
        let err = decode_exact::<Vec<u64>>(buf.freeze()).unwrap_err();
        assert!(matches!(err, DecodeError::CountTooLarge { .. }), "{err}");
    }

    #[test]
    fn byte_field_longer_than_payload_is_truncation() {
        let mut buf = BytesMut::new();
        buf.put_u32_le(10);
        buf.put_slice(b"abc");
        let err = decode_exact::<Bytes>(buf.freeze()).unwrap_err();
        assert_eq!(
            err,
            DecodeError::Truncated {
                what: "bytes",
                needed: 7
            }
        );
    }

    #[test]
    fn trailing_bytes_are_an_error() {
        let mut buf = BytesMut::new();
        buf.put_u64_le(7);
        buf.put_u8(0);
        assert_eq!(
            decode_exact::<u64>(buf.freeze()).unwrap_err(),
            DecodeError::TrailingBytes(1)
        );
    }

    #[test]
    fn bool_other_than_zero_or_one_is_refused() {
        assert_eq!(
            decode_exact::<bool>(Bytes::from_static(&[2])).unwrap_err(),
            DecodeError::InvalidBool(2)
        );
    }

    #[test]
    fn oversized_key_is_refused() {
        let mut buf = BytesMut::new();
        put_bytes(&mut buf, &vec![0u8; MAX_KEY_BYTES + 1]);
        let mut r = Reader::new(buf.freeze());
        assert!(matches!(r.key(), Err(DecodeError::KeyTooLarge { .. })));
    }
}
