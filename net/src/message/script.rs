//! Scripts (`EVAL`): the reply value a script returns and its wire form
//! (`docs/format/wire.md` §4.2, "Scripts").
//!
//! A script runs inside one range's state machine ([`crate::message::kv::KvOp::Eval`]); its
//! reply travels back to the proxy as a [`Value`], Redis's reply vocabulary. Values nest
//! (arrays of arrays): the decoder refuses nesting deeper than [`MAX_DEPTH`], so a forged
//! payload cannot exhaust the stack.

use bytes::{BufMut, Bytes, BytesMut};

use crate::codec::{DecodeError, Reader, Wire, put_bytes, put_count};

/// The deepest nesting of arrays, maps and sets a [`Value`] may have on the wire.
pub const MAX_DEPTH: usize = 64;

/// A Redis reply, in RESP3's vocabulary (a RESP2 script never produces the RESP3-only kinds).
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// The null reply (Lua `false`).
    Nil,
    /// An integer.
    Int(i64),
    /// A bulk string.
    Bulk(Bytes),
    /// A status reply (`+OK`; Lua `{ok = "OK"}`).
    Status(String),
    /// An error reply, its text with its prefix (`ERR …`; Lua `{err = "…"}`).
    Error(String),
    /// An array.
    Array(Vec<Value>),
    /// A RESP3 map (Lua `{map = {...}}`).
    Map(Vec<(Value, Value)>),
    /// A RESP3 set (Lua `{set = {...}}`).
    Set(Vec<Value>),
    /// A RESP3 double (Lua `{double = n}`).
    Double(f64),
    /// A RESP3 boolean.
    Bool(bool),
    /// A RESP3 big number, in decimal (Lua `{big_number = "…"}`).
    BigNumber(String),
    /// A RESP3 verbatim string: its three-letter format and text (Lua
    /// `{verbatim_string = {format = "txt", string = "…"}}`).
    Verbatim(String, Bytes),
}

impl Value {
    /// How deeply arrays, maps and sets nest in it (a scalar: 0).
    pub fn depth(&self) -> usize {
        let mut deepest = 0;
        let mut stack: Vec<(&Value, usize)> = vec![(self, 0)];
        while let Some((v, d)) = stack.pop() {
            deepest = deepest.max(d);
            match v {
                Value::Array(items) | Value::Set(items) => {
                    stack.extend(items.iter().map(|i| (i, d + 1)));
                }
                Value::Map(pairs) => {
                    for (k, v) in pairs {
                        stack.push((k, d + 1));
                        stack.push((v, d + 1));
                    }
                }
                _ => {}
            }
        }
        deepest
    }
}

const NIL: u8 = 0;
const INT: u8 = 1;
const BULK: u8 = 2;
const STATUS: u8 = 3;
const ERROR: u8 = 4;
const ARRAY: u8 = 5;
const MAP: u8 = 6;
const SET: u8 = 7;
const DOUBLE: u8 = 8;
const BOOL: u8 = 9;
const BIG_NUMBER: u8 = 10;
const VERBATIM: u8 = 11;

impl Wire for Value {
    fn encode(&self, buf: &mut BytesMut) {
        match self {
            Value::Nil => buf.put_u8(NIL),
            Value::Int(i) => {
                buf.put_u8(INT);
                buf.put_i64_le(*i);
            }
            Value::Bulk(b) => {
                buf.put_u8(BULK);
                put_bytes(buf, b);
            }
            Value::Status(s) => {
                buf.put_u8(STATUS);
                put_bytes(buf, s.as_bytes());
            }
            Value::Error(s) => {
                buf.put_u8(ERROR);
                put_bytes(buf, s.as_bytes());
            }
            Value::Array(items) | Value::Set(items) => {
                buf.put_u8(if matches!(self, Value::Array(_)) {
                    ARRAY
                } else {
                    SET
                });
                put_count(buf, items.len());
                items.iter().for_each(|i| i.encode(buf));
            }
            Value::Map(pairs) => {
                buf.put_u8(MAP);
                put_count(buf, pairs.len());
                for (k, v) in pairs {
                    k.encode(buf);
                    v.encode(buf);
                }
            }
            Value::Double(d) => {
                buf.put_u8(DOUBLE);
                buf.put_u64_le(d.to_bits());
            }
            Value::Bool(b) => {
                buf.put_u8(BOOL);
                buf.put_u8(u8::from(*b));
            }
            Value::BigNumber(s) => {
                buf.put_u8(BIG_NUMBER);
                put_bytes(buf, s.as_bytes());
            }
            Value::Verbatim(format, text) => {
                buf.put_u8(VERBATIM);
                put_bytes(buf, format.as_bytes());
                put_bytes(buf, text);
            }
        }
    }

    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        decode_at(r, 0)
    }
}

fn decode_at(r: &mut Reader, depth: usize) -> Result<Value, DecodeError> {
    let tag = r.u8("script value")?;
    let nested = |r: &mut Reader| -> Result<usize, DecodeError> {
        if depth >= MAX_DEPTH {
            return Err(DecodeError::InvalidValue("script value nested too deeply"));
        }
        r.count("script values", 1)
    };
    Ok(match tag {
        NIL => Value::Nil,
        INT => Value::Int(r.i64("int")?),
        BULK => Value::Bulk(r.bytes("bulk")?),
        STATUS => Value::Status(r.string("status")?),
        ERROR => Value::Error(r.string("error")?),
        ARRAY | SET => {
            let n = nested(r)?;
            let mut items = Vec::with_capacity(n);
            for _ in 0..n {
                items.push(decode_at(r, depth + 1)?);
            }
            if tag == ARRAY {
                Value::Array(items)
            } else {
                Value::Set(items)
            }
        }
        MAP => {
            let n = nested(r)?;
            let mut pairs = Vec::with_capacity(n);
            for _ in 0..n {
                pairs.push((decode_at(r, depth + 1)?, decode_at(r, depth + 1)?));
            }
            Value::Map(pairs)
        }
        DOUBLE => Value::Double(r.f64("double")?),
        BOOL => Value::Bool(r.bool("bool")?),
        BIG_NUMBER => Value::BigNumber(r.string("big number")?),
        VERBATIM => Value::Verbatim(r.string("verbatim format")?, r.bytes("verbatim")?),
        other => {
            return Err(DecodeError::UnknownTag {
                what: "script value",
                tag: other.into(),
            });
        }
    })
}

/// A strategy for property tests.
#[cfg(test)]
pub(crate) fn arb_value() -> impl proptest::strategy::Strategy<Value = Value> {
    use proptest::prelude::*;
    let leaf = prop_oneof![
        Just(Value::Nil),
        any::<i64>().prop_map(Value::Int),
        crate::arb::bytes().prop_map(Value::Bulk),
        "[a-zA-Z ]{0,12}".prop_map(Value::Status),
        "[a-zA-Z ]{0,12}".prop_map(Value::Error),
        any::<f64>()
            .prop_filter("not NaN", |f| !f.is_nan())
            .prop_map(Value::Double),
        any::<bool>().prop_map(Value::Bool),
        "-?[0-9]{1,30}".prop_map(Value::BigNumber),
        ("[a-z]{3}", crate::arb::bytes()).prop_map(|(f, t)| Value::Verbatim(f, t)),
    ];
    leaf.prop_recursive(4, 32, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Set),
            prop::collection::vec((inner.clone(), inner), 0..4).prop_map(Value::Map),
        ]
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{decode_exact, encode_to_bytes};
    use proptest::prelude::*;

    /// Entries written before `ScriptCall` had rules carried `Option<Bytes>` here: they
    /// decode with no user; rules round-trip; an unknown marker is an error.
    #[test]
    fn script_calls_of_earlier_builds_decode_and_rules_round_trip() {
        let old: Option<Bytes> = Some(Bytes::from_static(b"f"));
        let back: ScriptCall = decode_exact(encode_to_bytes(&old)).unwrap();
        assert_eq!(back.function, old);
        assert_eq!(back.user, None);
        let back: ScriptCall = decode_exact(encode_to_bytes(&None::<Bytes>)).unwrap();
        assert_eq!(back, ScriptCall::SCRIPT);
        let call = ScriptCall {
            function: None,
            user: Some(Bytes::from_static(b"~x* -@all +get")),
        };
        assert_eq!(
            decode_exact::<ScriptCall>(encode_to_bytes(&call)).unwrap(),
            call
        );
        assert!(decode_exact::<ScriptCall>(Bytes::from_static(&[4])).is_err());
    }

    proptest! {
        #[test]
        fn a_value_round_trips(v in arb_value()) {
            let back: Value = decode_exact(encode_to_bytes(&v)).unwrap();
            prop_assert_eq!(back, v);
        }

        #[test]
        fn any_bytes_decode_to_a_value_or_an_error(b in prop::collection::vec(any::<u8>(), 0..64)) {
            let _ = decode_exact::<Value>(Bytes::from(b));
        }
    }

    #[test]
    fn nesting_deeper_than_the_limit_is_refused_without_recursing_further() {
        let mut buf = BytesMut::new();
        for _ in 0..=MAX_DEPTH {
            buf.put_u8(ARRAY);
            buf.put_u32_le(1);
        }
        buf.put_u8(NIL);
        let err = decode_exact::<Value>(buf.freeze()).unwrap_err();
        assert_eq!(
            err,
            DecodeError::InvalidValue("script value nested too deeply")
        );
        let mut ok = Value::Nil;
        for _ in 0..MAX_DEPTH {
            ok = Value::Array(vec![ok]);
        }
        assert_eq!(ok.depth(), MAX_DEPTH);
        assert_eq!(decode_exact::<Value>(encode_to_bytes(&ok)).unwrap(), ok);
    }
}

/// What a [`crate::message::kv::KvOp::Eval`] runs and for whom: the function an `FCALL`
/// calls (`None`: the body is a script) and the ACL rules of the user who sent it (`None`:
/// a user allowed every command, key and channel, whose calls are not checked).
///
/// Wire form (`docs/format/wire.md` §4.2): a marker byte, bit 0 = a function follows, bit 1
/// = rules follow; then the function, then the rules, each a byte string. Markers 0 and 1
/// are exactly the `Option<Bytes>` the field was before rules existed, so entries written
/// by earlier builds decode unchanged; a build that predates rules refuses markers 2 and 3
/// with an unknown-tag error rather than run a restricted user's script unchecked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct ScriptCall {
    /// `FCALL`: the function to call in the library that is the body.
    #[cfg_attr(test, proptest(strategy = "crate::arb::opt_bytes()"))]
    pub function: Option<Bytes>,
    /// The caller's ACL rules (`ACL SETUSER` modifiers for keys, channels and commands).
    #[cfg_attr(test, proptest(strategy = "crate::arb::opt_bytes()"))]
    pub user: Option<Bytes>,
}

impl ScriptCall {
    /// A script (`EVAL`) of an unrestricted user.
    pub const SCRIPT: ScriptCall = ScriptCall {
        function: None,
        user: None,
    };
}

impl Wire for ScriptCall {
    fn encode(&self, buf: &mut BytesMut) {
        let marker = u8::from(self.function.is_some()) | (u8::from(self.user.is_some()) << 1);
        buf.put_u8(marker);
        if let Some(f) = &self.function {
            f.encode(buf);
        }
        if let Some(u) = &self.user {
            u.encode(buf);
        }
    }

    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        let marker = r.u8("script call")?;
        if marker > 3 {
            return Err(DecodeError::UnknownTag {
                what: "script call",
                tag: marker.into(),
            });
        }
        let function = if marker & 1 != 0 {
            Some(Bytes::decode(r)?)
        } else {
            None
        };
        let user = if marker & 2 != 0 {
            Some(Bytes::decode(r)?)
        } else {
            None
        };
        Ok(ScriptCall { function, user })
    }
}
