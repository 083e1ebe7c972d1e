//! List operations (`docs/format/wire.md` §4.2, Redis `t_list.c`). The range state machine
//! executes them at apply time on the list's metadata entry and its elements.

use bytes::Bytes;

use crate::codec::wire_enum;
use crate::limits::{LimitError, user_key};

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
}

wire_enum!(ListOp: u8, "list op" {
    0 => Len { key: key },
});

impl ListOp {
    /// The user key the operation is routed by (for a move: the source).
    pub fn key(&self) -> &Bytes {
        match self {
            Self::Len { key } => key,
        }
    }

    /// The other user keys it touches (all in the range of [`Self::key`]).
    pub fn other_keys(&self) -> &[Bytes] {
        match self {
            Self::Len { .. } => &[],
        }
    }

    /// Whether it changes state.
    pub fn is_write(&self) -> bool {
        match self {
            Self::Len { .. } => false,
        }
    }

    /// Checks keys and elements against `net::limits`.
    pub fn check_limits(&self, _max_value_bytes: usize) -> Result<(), LimitError> {
        user_key(self.key(), 0)?;
        self.other_keys().iter().try_for_each(|k| user_key(k, 0))
    }
}
