//! Set operations (`docs/format/wire.md` §4.2, Redis `t_set.c`). The range state machine
//! executes them at apply time on the set's metadata entry and its members.

use bytes::Bytes;

use crate::codec::wire_enum;
use crate::limits::{LimitError, user_key};

/// The algebra of `SINTER`, `SUNION` and `SDIFF` (and their STORE forms).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum SetAlgebra {
    /// Members in every set.
    Inter {},
    /// Members in any set.
    Union {},
    /// Members of the first set in none of the others.
    Diff {},
}

wire_enum!(SetAlgebra: u8, "set algebra" { 0 => Inter {}, 1 => Union {}, 2 => Diff {} });

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
    /// Redis `SADD`: the number of members added.
    Add {
        #[cfg_attr(test, proptest(strategy = "crate::arb::bytes()"))]
        key: Bytes,
        #[cfg_attr(test, proptest(strategy = "crate::arb::bytes_vec()"))]
        members: Vec<Bytes>,
    },
    /// Redis `SREM`: the number of members removed.
    Rem {
        #[cfg_attr(test, proptest(strategy = "crate::arb::bytes()"))]
        key: Bytes,
        #[cfg_attr(test, proptest(strategy = "crate::arb::bytes_vec()"))]
        members: Vec<Bytes>,
    },
    /// Redis `SMEMBERS`: every member, in byte order.
    Members {
        #[cfg_attr(test, proptest(strategy = "crate::arb::bytes()"))]
        key: Bytes,
    },
    /// Redis `SISMEMBER` / `SMISMEMBER`: 1 or 0 per member.
    IsMember {
        #[cfg_attr(test, proptest(strategy = "crate::arb::bytes()"))]
        key: Bytes,
        #[cfg_attr(test, proptest(strategy = "crate::arb::bytes_vec()"))]
        members: Vec<Bytes>,
    },
    /// Redis `SPOP` (`count` none: one member); the choice is seeded by the entry.
    Pop {
        #[cfg_attr(test, proptest(strategy = "crate::arb::bytes()"))]
        key: Bytes,
        count: Option<u64>,
    },
    /// Redis `SRANDMEMBER key count` (negative: with repeats), chosen with `seed`.
    RandMember {
        #[cfg_attr(test, proptest(strategy = "crate::arb::bytes()"))]
        key: Bytes,
        count: i64,
        seed: u64,
    },
    /// Redis `SMOVE key dst member`.
    Move {
        #[cfg_attr(test, proptest(strategy = "crate::arb::bytes()"))]
        key: Bytes,
        #[cfg_attr(test, proptest(strategy = "crate::arb::bytes()"))]
        dst: Bytes,
        #[cfg_attr(test, proptest(strategy = "crate::arb::bytes()"))]
        member: Bytes,
    },
    /// Redis `SINTER` / `SUNION` / `SDIFF` of `key` and `keys`.
    Combine {
        algebra: SetAlgebra,
        #[cfg_attr(test, proptest(strategy = "crate::arb::bytes()"))]
        key: Bytes,
        #[cfg_attr(test, proptest(strategy = "crate::arb::bytes_vec()"))]
        keys: Vec<Bytes>,
    },
    /// Redis `SINTERSTORE` / `SUNIONSTORE` / `SDIFFSTORE`: `key` is the destination, `keys`
    /// the sources; the size of the stored set.
    Store {
        algebra: SetAlgebra,
        #[cfg_attr(test, proptest(strategy = "crate::arb::bytes()"))]
        key: Bytes,
        #[cfg_attr(test, proptest(strategy = "crate::arb::bytes_vec()"))]
        keys: Vec<Bytes>,
    },
    /// Redis `SINTERCARD` of `key` and `keys` (`limit` 0: none).
    InterCard {
        #[cfg_attr(test, proptest(strategy = "crate::arb::bytes()"))]
        key: Bytes,
        #[cfg_attr(test, proptest(strategy = "crate::arb::bytes_vec()"))]
        keys: Vec<Bytes>,
        limit: u64,
    },
    /// Replace whatever `key` holds by a set of `members` (none: delete the key); the
    /// write half of a STORE form whose keys span ranges. The size of the stored set.
    Replace {
        #[cfg_attr(test, proptest(strategy = "crate::arb::bytes()"))]
        key: Bytes,
        #[cfg_attr(test, proptest(strategy = "crate::arb::bytes_vec()"))]
        members: Vec<Bytes>,
    },
    /// One step of Redis `SSCAN`: members from the 8-byte cursor on (`docs/guides/proxy.md`).
    Scan {
        #[cfg_attr(test, proptest(strategy = "crate::arb::bytes()"))]
        key: Bytes,
        cursor: u64,
        count: u32,
    },
}

wire_enum!(SetOp: u8, "set op" {
    0 => Card { key: key },
    1 => Add { key: key, members },
    2 => Rem { key: key, members },
    3 => Members { key: key },
    4 => IsMember { key: key, members },
    5 => Pop { key: key, count },
    6 => RandMember { key: key, count, seed },
    7 => Move { key: key, dst: key, member },
    8 => Combine { algebra, key: key, keys: keys },
    9 => Store { algebra, key: key, keys: keys },
    10 => InterCard { key: key, keys: keys, limit },
    11 => Replace { key: key, members },
    12 => Scan { key: key, cursor, count },
});

impl SetOp {
    /// The user key the operation is routed by (for a move: the source; for a STORE form:
    /// the destination).
    pub fn key(&self) -> &Bytes {
        match self {
            Self::Card { key }
            | Self::Add { key, .. }
            | Self::Rem { key, .. }
            | Self::Members { key }
            | Self::IsMember { key, .. }
            | Self::Pop { key, .. }
            | Self::RandMember { key, .. }
            | Self::Move { key, .. }
            | Self::Combine { key, .. }
            | Self::Store { key, .. }
            | Self::InterCard { key, .. }
            | Self::Replace { key, .. }
            | Self::Scan { key, .. } => key,
        }
    }

    /// The other user keys it touches (all in the range of [`Self::key`]).
    pub fn other_keys(&self) -> &[Bytes] {
        match self {
            Self::Move { dst, .. } => std::slice::from_ref(dst),
            Self::Combine { keys, .. }
            | Self::Store { keys, .. }
            | Self::InterCard { keys, .. } => keys,
            _ => &[],
        }
    }

    /// Whether it changes state.
    pub fn is_write(&self) -> bool {
        matches!(
            self,
            Self::Add { .. }
                | Self::Rem { .. }
                | Self::Pop { .. }
                | Self::Move { .. }
                | Self::Store { .. }
                | Self::Replace { .. }
        )
    }

    /// The members it stores (with [`Self::key`], or with both keys of a move); members it
    /// only looks up are not checked: one too long cannot exist and is simply not found.
    fn stored_members(&self) -> &[Bytes] {
        match self {
            Self::Add { members, .. } | Self::Replace { members, .. } => members,
            Self::Move { member, .. } => std::slice::from_ref(member),
            _ => &[],
        }
    }

    /// Checks keys and stored members against `net::limits`.
    pub fn check_limits(&self, _max_value_bytes: usize) -> Result<(), LimitError> {
        let key = self.key();
        user_key(key, 0)?;
        self.other_keys().iter().try_for_each(|k| user_key(k, 0))?;
        let longest_key = self
            .other_keys()
            .iter()
            .chain([key])
            .max_by_key(|k| k.len())
            .unwrap_or(key);
        let longest = self.stored_members().iter().map(Bytes::len).max();
        longest.map_or(Ok(()), |m| user_key(longest_key, m))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::MAX_KEY_ELEMENT_BYTES;

    #[test]
    fn a_member_counts_with_the_longest_key_it_is_stored_under() {
        let op = |k: usize, d: usize, m: usize| SetOp::Move {
            key: Bytes::from(vec![b'k'; k]),
            dst: Bytes::from(vec![b'd'; d]),
            member: Bytes::from(vec![b'm'; m]),
        };
        assert!(
            op(10, 20, MAX_KEY_ELEMENT_BYTES - 20)
                .check_limits(0)
                .is_ok()
        );
        assert!(
            op(10, 20, MAX_KEY_ELEMENT_BYTES - 19)
                .check_limits(0)
                .is_err()
        );
        let add = SetOp::Add {
            key: Bytes::from(vec![b'k'; 10]),
            members: vec![
                Bytes::new(),
                Bytes::from(vec![b'm'; MAX_KEY_ELEMENT_BYTES - 9]),
            ],
        };
        assert!(add.check_limits(0).is_err());
    }
}
