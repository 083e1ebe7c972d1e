//! The metadata entry of a Redis key (DESIGN §2): its type and, for a collection, the version
//! its elements are stored under and its element count.
//!
//! ```text
//! string:      1 | value
//! hash:        2 | version u64 BE | count u64 BE
//! list:        3 | version u64 BE | count u64 BE | head u64 BE
//! set:         4 | version u64 BE | count u64 BE
//! sorted set:  5 | version u64 BE | count u64 BE
//! ```
//!
//! A list's elements sit at indexes `head .. head + count` (`'L' | version | index u64 BE`);
//! a new list starts at [`LIST_START`] so that pushes at either end never run out of room.
//! The expiry is not here: it is the entry's own (`store::Entry::expire_at_ms`).

use bytes::{BufMut, Bytes, BytesMut};
use net::RpcError;
use net::message::kv::KeyType;

const TYPE_STRING: u8 = 1;
const TYPE_HASH: u8 = 2;
const TYPE_LIST: u8 = 3;
const TYPE_SET: u8 = 4;
const TYPE_ZSET: u8 = 5;

/// The index of the first element of a new list: pushes on the left count down from here,
/// pushes on the right count up.
pub const LIST_START: u64 = 1 << 63;

/// The decoded metadata entry of a Redis key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Meta {
    /// A string and its value.
    Str(Bytes),
    /// A hash.
    Hash {
        /// The version its fields are stored under.
        version: u64,
        /// Its number of fields.
        count: u64,
    },
    /// A list.
    List {
        /// The version its elements are stored under.
        version: u64,
        /// Its number of elements.
        count: u64,
        /// The index of its first element.
        head: u64,
    },
    /// A set.
    Set {
        /// The version its members are stored under.
        version: u64,
        /// Its number of members.
        count: u64,
    },
    /// A sorted set.
    ZSet {
        /// The version its members and score index are stored under.
        version: u64,
        /// Its number of members.
        count: u64,
    },
}

impl Meta {
    /// The Redis type.
    pub fn key_type(&self) -> KeyType {
        match self {
            Meta::Str(_) => KeyType::String {},
            Meta::Hash { .. } => KeyType::Hash {},
            Meta::List { .. } => KeyType::List {},
            Meta::Set { .. } => KeyType::Set {},
            Meta::ZSet { .. } => KeyType::ZSet {},
        }
    }

    /// The version of a collection's elements (`None`: a string).
    pub fn version(&self) -> Option<u64> {
        match self {
            Meta::Str(_) => None,
            Meta::Hash { version, .. }
            | Meta::List { version, .. }
            | Meta::Set { version, .. }
            | Meta::ZSet { version, .. } => Some(*version),
        }
    }
}

fn corrupt(what: &str) -> RpcError {
    RpcError::Internal {
        code: 1,
        message: format!("corrupt metadata entry: {what}"),
    }
}

fn u64_at(body: &[u8], at: usize) -> Result<u64, RpcError> {
    body.get(at..at + 8)
        .and_then(|b| b.try_into().ok())
        .map(u64::from_be_bytes)
        .ok_or_else(|| corrupt("short collection"))
}

/// Decodes a metadata entry; a corrupt one is an error, never a panic.
pub fn decode(value: &Bytes) -> Result<Meta, RpcError> {
    let body = value.get(1..).unwrap_or_default();
    let exact = |n: usize| {
        if body.len() == n {
            Ok(())
        } else {
            Err(corrupt("collection length"))
        }
    };
    match value.first() {
        Some(&TYPE_STRING) => Ok(Meta::Str(value.slice(1..))),
        Some(&TYPE_HASH) => exact(16).and(Ok(Meta::Hash {
            version: u64_at(body, 0)?,
            count: u64_at(body, 8)?,
        })),
        Some(&TYPE_LIST) => exact(24).and(Ok(Meta::List {
            version: u64_at(body, 0)?,
            count: u64_at(body, 8)?,
            head: u64_at(body, 16)?,
        })),
        Some(&TYPE_SET) => exact(16).and(Ok(Meta::Set {
            version: u64_at(body, 0)?,
            count: u64_at(body, 8)?,
        })),
        Some(&TYPE_ZSET) => exact(16).and(Ok(Meta::ZSet {
            version: u64_at(body, 0)?,
            count: u64_at(body, 8)?,
        })),
        _ => Err(corrupt("unknown type")),
    }
}

/// Encodes a metadata entry.
pub fn encode(meta: &Meta) -> Bytes {
    let collection = |ty: u8, fields: &[u64]| {
        let mut b = BytesMut::with_capacity(1 + 8 * fields.len());
        b.put_u8(ty);
        fields.iter().for_each(|f| b.put_u64(*f));
        b.freeze()
    };
    match meta {
        Meta::Str(v) => {
            let mut b = BytesMut::with_capacity(1 + v.len());
            b.put_u8(TYPE_STRING);
            b.put_slice(v);
            b.freeze()
        }
        Meta::Hash { version, count } => collection(TYPE_HASH, &[*version, *count]),
        Meta::List {
            version,
            count,
            head,
        } => collection(TYPE_LIST, &[*version, *count, *head]),
        Meta::Set { version, count } => collection(TYPE_SET, &[*version, *count]),
        Meta::ZSet { version, count } => collection(TYPE_ZSET, &[*version, *count]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_type_round_trips_and_truncations_are_errors() {
        let metas = [
            Meta::Str(Bytes::from_static(b"v")),
            Meta::Str(Bytes::new()),
            Meta::Hash {
                version: 7,
                count: 2,
            },
            Meta::List {
                version: 1,
                count: 3,
                head: LIST_START - 1,
            },
            Meta::Set {
                version: 2,
                count: 1,
            },
            Meta::ZSet {
                version: u64::MAX,
                count: 9,
            },
        ];
        for m in metas {
            let e = encode(&m);
            assert_eq!(decode(&e), Ok(m.clone()));
            if m.version().is_some() {
                for n in 0..e.len() {
                    assert!(decode(&e.slice(..n)).is_err(), "{m:?} cut at {n}");
                }
            }
        }
        assert!(decode(&Bytes::from_static(&[9, 0])).is_err());
        assert!(decode(&Bytes::new()).is_err());
    }
}
