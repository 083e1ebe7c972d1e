//! HyperLogLog operations (`docs/format/wire.md` §4.2, Redis `hyperloglog.c`): PFADD, PFCOUNT
//! and PFMERGE, executed by the range state machine on strings in Redis's HLL representation
//! (so GET, DUMP and RESTORE of an HLL interoperate with Redis).

use bytes::Bytes;

use crate::codec::wire_enum;
use crate::limits::{LimitError, user_key};

/// An operation on HyperLogLog strings of one range.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[allow(missing_docs)] // described in docs/format/wire.md §4.2
pub enum HllOp {
    /// `PFADD key element...`: 1 when a register changed or the key was created, else 0.
    Add {
        #[cfg_attr(test, proptest(strategy = "crate::arb::bytes()"))]
        key: Bytes,
        #[cfg_attr(test, proptest(strategy = "crate::arb::bytes_vec()"))]
        elements: Vec<Bytes>,
    },
    /// `PFCOUNT key [key...]`: the estimated cardinality of their union (one key: its cached
    /// estimate, computed and cached when stale — a write).
    Count {
        #[cfg_attr(test, proptest(strategy = "crate::arb::bytes()"))]
        key: Bytes,
        #[cfg_attr(test, proptest(strategy = "crate::arb::bytes_vec()"))]
        others: Vec<Bytes>,
    },
    /// `PFMERGE key [source...]`: `key` becomes the union of itself and the sources.
    Merge {
        #[cfg_attr(test, proptest(strategy = "crate::arb::bytes()"))]
        key: Bytes,
        #[cfg_attr(test, proptest(strategy = "crate::arb::bytes_vec()"))]
        sources: Vec<Bytes>,
    },
}

wire_enum!(HllOp: u8, "hyperloglog op" {
    0 => Add { key: key, elements },
    1 => Count { key: key, others },
    2 => Merge { key: key, sources },
});

impl HllOp {
    /// The first user key.
    pub fn key(&self) -> &Bytes {
        match self {
            HllOp::Add { key, .. } | HllOp::Count { key, .. } | HllOp::Merge { key, .. } => key,
        }
    }

    /// The other user keys (all in the first key's range).
    pub fn other_keys(&self) -> &[Bytes] {
        match self {
            HllOp::Add { .. } => &[],
            HllOp::Count { others, .. } => others,
            HllOp::Merge { sources, .. } => sources,
        }
    }

    /// Whether it may write: PFADD and PFMERGE, and PFCOUNT of one key (it caches its
    /// estimate in the string, as Redis does); PFCOUNT of several keys only reads.
    pub fn is_write(&self) -> bool {
        !matches!(self, HllOp::Count { others, .. } if !others.is_empty())
    }

    /// Checks the keys (elements are hashed, never stored).
    pub fn check_limits(&self) -> Result<(), LimitError> {
        user_key(self.key(), 0)?;
        self.other_keys().iter().try_for_each(|k| user_key(k, 0))
    }
}
