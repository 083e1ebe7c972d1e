//! Set operations (`docs/format/wire.md` §4.2, Redis `t_set.c`). The range state machine
//! executes them at apply time on the set's metadata entry and its members.

use bytes::Bytes;

use crate::codec::wire_enum;
use crate::limits::{LimitError, user_key};

/// An operation on a set (or, for SMOVE and the STORE forms, several sets of one range).
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[allow(missing_docs)] // the fields are described in docs/format/wire.md §4.2
pub enum SetOp {
    /// Redis `SCARD`.
    Card {
        #[cfg_attr(test, proptest(strategy = "crate::arb::bytes()"))]
        key: Bytes,
    },
}

wire_enum!(SetOp: u8, "set op" {
    0 => Card { key: key },
});

impl SetOp {
    /// The user key the operation is routed by (for a move: the source).
    pub fn key(&self) -> &Bytes {
        match self {
            Self::Card { key } => key,
        }
    }

    /// The other user keys it touches (all in the range of [`Self::key`]).
    pub fn other_keys(&self) -> &[Bytes] {
        match self {
            Self::Card { .. } => &[],
        }
    }

    /// Whether it changes state.
    pub fn is_write(&self) -> bool {
        match self {
            Self::Card { .. } => false,
        }
    }

    /// Checks keys and elements against `net::limits`.
    pub fn check_limits(&self, _max_value_bytes: usize) -> Result<(), LimitError> {
        user_key(self.key(), 0)?;
        self.other_keys().iter().try_for_each(|k| user_key(k, 0))
    }
}
