//! What a benchmark does to its target, independent of the protocol that carries it.

use bytes::Bytes;

/// One benchmark operation, independent of the protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Read one key (RESP `GET`, native `StrGet`).
    Get(String),
    /// Write one key (RESP `SET`, native `StrSet`).
    Set(String, Bytes),
    /// Read `len` records starting with record `first` (RESP: `MGET` of records
    /// `first..first + len`; native: a `Scan` of `len` entries from the first record's key).
    Scan {
        /// The first record number.
        first: u64,
        /// How many records.
        len: u64,
    },
}
