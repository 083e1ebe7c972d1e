//! List operations (`docs/format/wire.md` §4.2, Redis `t_list.c`). The range state machine
//! executes them at apply time on the list's metadata entry and its elements.

use bytes::Bytes;

use crate::codec::wire_enum;
use crate::limits::{LimitError, check_value, user_key};

/// An operation on a list (or, for the moving commands, two lists of one range).
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[allow(missing_docs)] // the fields are described in docs/format/wire.md §4.2
pub enum ListOp {
    /// Redis `LLEN`.
    Len {
        #[cfg_attr(test, proptest(strategy = "crate::arb::bytes()"))]
        key: Bytes,
    },
    /// `LPUSH`/`RPUSH` (`left`), `LPUSHX`/`RPUSHX` (`only_existing`): the new length.
    Push {
        #[cfg_attr(test, proptest(strategy = "crate::arb::bytes()"))]
        key: Bytes,
        #[cfg_attr(test, proptest(strategy = "crate::arb::bytes_vec()"))]
        elements: Vec<Bytes>,
        left: bool,
        only_existing: bool,
    },
    /// `LPOP`/`RPOP` (`count` none: one element as `Value`; some: `Bulks`, or `Value(None)`
    /// when the key is absent).
    Pop {
        #[cfg_attr(test, proptest(strategy = "crate::arb::bytes()"))]
        key: Bytes,
        left: bool,
        count: Option<u64>,
    },
    /// `LRANGE`: `Bulks`.
    Range {
        #[cfg_attr(test, proptest(strategy = "crate::arb::bytes()"))]
        key: Bytes,
        start: i64,
        stop: i64,
    },
    /// `LINDEX`: `Value`.
    Index {
        #[cfg_attr(test, proptest(strategy = "crate::arb::bytes()"))]
        key: Bytes,
        index: i64,
    },
    /// `LSET`: `Unit`.
    Set {
        #[cfg_attr(test, proptest(strategy = "crate::arb::bytes()"))]
        key: Bytes,
        index: i64,
        #[cfg_attr(test, proptest(strategy = "crate::arb::bytes()"))]
        element: Bytes,
    },
    /// `LINSERT`: the new length, -1 without the pivot, 0 without the key.
    Insert {
        #[cfg_attr(test, proptest(strategy = "crate::arb::bytes()"))]
        key: Bytes,
        before: bool,
        #[cfg_attr(test, proptest(strategy = "crate::arb::bytes()"))]
        pivot: Bytes,
        #[cfg_attr(test, proptest(strategy = "crate::arb::bytes()"))]
        element: Bytes,
    },
    /// `LREM`: the number removed.
    Rem {
        #[cfg_attr(test, proptest(strategy = "crate::arb::bytes()"))]
        key: Bytes,
        count: i64,
        #[cfg_attr(test, proptest(strategy = "crate::arb::bytes()"))]
        element: Bytes,
    },
    /// `LTRIM`: `Unit`.
    Trim {
        #[cfg_attr(test, proptest(strategy = "crate::arb::bytes()"))]
        key: Bytes,
        start: i64,
        stop: i64,
    },
    /// `LPOS` (`count` none: the first match; `maxlen` 0: no limit): `Ints`.
    Pos {
        #[cfg_attr(test, proptest(strategy = "crate::arb::bytes()"))]
        key: Bytes,
        #[cfg_attr(test, proptest(strategy = "crate::arb::bytes()"))]
        element: Bytes,
        rank: i64,
        count: Option<u64>,
        maxlen: u64,
    },
    /// `LMOVE`/`RPOPLPUSH` within one range: the moved element (`Value`).
    Move {
        #[cfg_attr(test, proptest(strategy = "crate::arb::bytes()"))]
        src: Bytes,
        #[cfg_attr(test, proptest(strategy = "crate::arb::bytes()"))]
        dst: Bytes,
        from_left: bool,
        to_left: bool,
    },
    /// `LMPOP` (and `BLPOP`/`BRPOP`) over `key` then `others`, all in one range: pops up to
    /// `count` elements of the first non-empty list. `Bulks`: that key then its elements
    /// (empty: every list was empty).
    MPop {
        #[cfg_attr(test, proptest(strategy = "crate::arb::bytes()"))]
        key: Bytes,
        #[cfg_attr(test, proptest(strategy = "crate::arb::bytes_vec()"))]
        others: Vec<Bytes>,
        left: bool,
        count: u64,
    },
}

wire_enum!(ListOp: u8, "list op" {
    0 => Len { key: key },
    1 => Push { key: key, elements, left, only_existing },
    2 => Pop { key: key, left, count },
    3 => Range { key: key, start, stop },
    4 => Index { key: key, index },
    5 => Set { key: key, index, element },
    6 => Insert { key: key, before, pivot, element },
    7 => Rem { key: key, count, element },
    8 => Trim { key: key, start, stop },
    9 => Pos { key: key, element, rank, count, maxlen },
    10 => Move { src: key, dst: key, from_left, to_left },
    11 => MPop { key: key, others: keys, left, count },
});

impl ListOp {
    /// The user key the operation is routed by (for a move: the source).
    pub fn key(&self) -> &Bytes {
        match self {
            Self::Len { key }
            | Self::Push { key, .. }
            | Self::Pop { key, .. }
            | Self::Range { key, .. }
            | Self::Index { key, .. }
            | Self::Set { key, .. }
            | Self::Insert { key, .. }
            | Self::Rem { key, .. }
            | Self::Trim { key, .. }
            | Self::Pos { key, .. }
            | Self::MPop { key, .. } => key,
            Self::Move { src, .. } => src,
        }
    }

    /// The other user keys it touches (all in the range of [`Self::key`]).
    pub fn other_keys(&self) -> &[Bytes] {
        match self {
            Self::Move { dst, .. } => std::slice::from_ref(dst),
            Self::MPop { others, .. } => others,
            _ => &[],
        }
    }

    /// Whether it changes state.
    pub fn is_write(&self) -> bool {
        !matches!(
            self,
            Self::Len { .. } | Self::Range { .. } | Self::Index { .. } | Self::Pos { .. }
        )
    }

    /// Checks keys and elements against `net::limits`. A list element is a value (it is
    /// stored as an entry's value, not in its key).
    pub fn check_limits(&self, max_value_bytes: usize) -> Result<(), LimitError> {
        user_key(self.key(), 0)?;
        self.other_keys().iter().try_for_each(|k| user_key(k, 0))?;
        let value = |v: &Bytes| check_value(v.len(), max_value_bytes);
        match self {
            Self::Push { elements, .. } => elements.iter().try_for_each(value),
            Self::Set { element, .. } | Self::Insert { element, .. } => value(element),
            _ => Ok(()),
        }
    }
}
