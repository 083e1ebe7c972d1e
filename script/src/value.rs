//! A Redis reply as a script sees it and returns it.

use bytes::Bytes;

/// A Redis reply, in RESP3's vocabulary (a RESP2 host never produces the RESP3-only kinds).
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
