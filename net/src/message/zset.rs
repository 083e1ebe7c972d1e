//! Sorted-set operations (`docs/format/wire.md` §4.2, Redis `t_zset.c`). The range state machine
//! executes them at apply time on the sorted set's metadata entry, its members and its score index.
//!
//! Range bounds travel as the client wrote them (`min`/`max` bytes: `(1.5`, `-inf`, `[a`, `+`,
//! `-3`) and are parsed at apply time, so the errors (and their order relative to WRONGTYPE)
//! are Redis's whatever proxy sent them.

use bytes::Bytes;

use crate::codec::wire_enum;
use crate::limits::{LimitError, user_key};

pub mod algebra;

/// `ZADD` flag bits ([`ZSetOp::Add`]).
pub mod add_flags {
    /// `NX`: only add new members.
    pub const NX: u8 = 1;
    /// `XX`: only update existing members.
    pub const XX: u8 = 2;
    /// `GT`: only update when the new score is greater.
    pub const GT: u8 = 4;
    /// `LT`: only update when the new score is less.
    pub const LT: u8 = 8;
    /// `CH`: count changed members, not only added ones.
    pub const CH: u8 = 16;
    /// `INCR`: increment (one member), answer the new score.
    pub const INCR: u8 = 32;
}

/// How a range is given ([`ZSetOp::Range`] and friends).
pub mod by {
    /// By rank: `min`/`max` are integers (negative: from the end).
    pub const RANK: u8 = 0;
    /// By score: `min`/`max` are scores, `(` for exclusive.
    pub const SCORE: u8 = 1;
    /// By member: `[a`, `(a`, `-`, `+` (all scores equal).
    pub const LEX: u8 = 2;
}

/// Set operations of [`ZSetOp::Combine`].
pub mod combine {
    /// `ZUNION`.
    pub const UNION: u8 = 0;
    /// `ZINTER`.
    pub const INTER: u8 = 1;
    /// `ZDIFF`.
    pub const DIFF: u8 = 2;
    /// `AGGREGATE SUM`.
    pub const SUM: u8 = 0;
    /// `AGGREGATE MIN`.
    pub const MIN: u8 = 1;
    /// `AGGREGATE MAX`.
    pub const MAX: u8 = 2;
}

/// An operation on a sorted set (or, for the STORE forms, several of one range).
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[allow(missing_docs)] // the fields are described in docs/format/wire.md §4.2
pub enum ZSetOp {
    /// Redis `ZCARD`.
    Card {
        #[cfg_attr(test, proptest(strategy = "crate::arb::bytes()"))]
        key: Bytes,
    },
    /// `ZADD` / `ZINCRBY`: `scores[i]` for `members[i]`, [`add_flags`].
    Add {
        #[cfg_attr(test, proptest(strategy = "crate::arb::bytes()"))]
        key: Bytes,
        flags: u8,
        #[cfg_attr(
            test,
            proptest(strategy = "proptest::collection::vec(-1e9f64..1e9, 0..4)")
        )]
        scores: Vec<f64>,
        #[cfg_attr(test, proptest(strategy = "crate::arb::bytes_vec()"))]
        members: Vec<Bytes>,
    },
    /// `ZREM`.
    Rem {
        #[cfg_attr(test, proptest(strategy = "crate::arb::bytes()"))]
        key: Bytes,
        #[cfg_attr(test, proptest(strategy = "crate::arb::bytes_vec()"))]
        members: Vec<Bytes>,
    },
    /// `ZSCORE` / `ZMSCORE`.
    Scores {
        #[cfg_attr(test, proptest(strategy = "crate::arb::bytes()"))]
        key: Bytes,
        #[cfg_attr(test, proptest(strategy = "crate::arb::bytes_vec()"))]
        members: Vec<Bytes>,
    },
    /// `ZRANK` / `ZREVRANK`.
    Rank {
        #[cfg_attr(test, proptest(strategy = "crate::arb::bytes()"))]
        key: Bytes,
        #[cfg_attr(test, proptest(strategy = "crate::arb::bytes()"))]
        member: Bytes,
        rev: bool,
    },
    /// `ZRANGE` and its older forms: members `min..max` [`by`], reversed, then `LIMIT offset
    /// count` (count < 0: all).
    Range {
        #[cfg_attr(test, proptest(strategy = "crate::arb::bytes()"))]
        key: Bytes,
        by: u8,
        #[cfg_attr(test, proptest(strategy = "crate::arb::bytes()"))]
        min: Bytes,
        #[cfg_attr(test, proptest(strategy = "crate::arb::bytes()"))]
        max: Bytes,
        rev: bool,
        offset: i64,
        count: i64,
    },
    /// `ZRANGESTORE dst src ...`: `key` is the destination.
    RangeStore {
        #[cfg_attr(test, proptest(strategy = "crate::arb::bytes()"))]
        key: Bytes,
        #[cfg_attr(test, proptest(strategy = "crate::arb::bytes_vec()"))]
        keys: Vec<Bytes>,
        by: u8,
        #[cfg_attr(test, proptest(strategy = "crate::arb::bytes()"))]
        min: Bytes,
        #[cfg_attr(test, proptest(strategy = "crate::arb::bytes()"))]
        max: Bytes,
        rev: bool,
        offset: i64,
        count: i64,
    },
    /// `ZCOUNT` (by score) / `ZLEXCOUNT` (by member).
    Count {
        #[cfg_attr(test, proptest(strategy = "crate::arb::bytes()"))]
        key: Bytes,
        by: u8,
        #[cfg_attr(test, proptest(strategy = "crate::arb::bytes()"))]
        min: Bytes,
        #[cfg_attr(test, proptest(strategy = "crate::arb::bytes()"))]
        max: Bytes,
    },
    /// `ZREMRANGEBYRANK` / `BYSCORE` / `BYLEX`.
    RemRange {
        #[cfg_attr(test, proptest(strategy = "crate::arb::bytes()"))]
        key: Bytes,
        by: u8,
        #[cfg_attr(test, proptest(strategy = "crate::arb::bytes()"))]
        min: Bytes,
        #[cfg_attr(test, proptest(strategy = "crate::arb::bytes()"))]
        max: Bytes,
    },
    /// `ZPOPMIN` / `ZPOPMAX` (`keys` empty, `named` false) and `ZMPOP` (the first non-empty of
    /// `key` then `keys`; `named`: the result starts with `(that key, 0)`).
    Pop {
        #[cfg_attr(test, proptest(strategy = "crate::arb::bytes()"))]
        key: Bytes,
        #[cfg_attr(test, proptest(strategy = "crate::arb::bytes_vec()"))]
        keys: Vec<Bytes>,
        max: bool,
        count: u64,
        named: bool,
    },
    /// `ZUNION`/`ZINTER`/`ZDIFF` (`store` false: `key` is the first source and answers
    /// `Scored`) and their `STORE` forms (`key` is the destination; answers `Int`). Sources are
    /// `keys` (sorted sets, or sets with score 1), [`combine`].
    Combine {
        #[cfg_attr(test, proptest(strategy = "crate::arb::bytes()"))]
        key: Bytes,
        #[cfg_attr(test, proptest(strategy = "crate::arb::bytes_vec()"))]
        keys: Vec<Bytes>,
        kind: u8,
        #[cfg_attr(
            test,
            proptest(strategy = "proptest::collection::vec(-1e9f64..1e9, 0..4)")
        )]
        weights: Vec<f64>,
        aggregate: u8,
        store: bool,
    },
    /// `ZINTERCARD` (`limit` 0: none); `key` is the first of `keys`.
    InterCard {
        #[cfg_attr(test, proptest(strategy = "crate::arb::bytes()"))]
        key: Bytes,
        #[cfg_attr(test, proptest(strategy = "crate::arb::bytes_vec()"))]
        keys: Vec<Bytes>,
        limit: u64,
    },
    /// `ZRANDMEMBER key [count]` (`single`: no count given), drawn with `seed`.
    RandMember {
        #[cfg_attr(test, proptest(strategy = "crate::arb::bytes()"))]
        key: Bytes,
        count: i64,
        single: bool,
        seed: u64,
    },
    /// `ZSCAN`: up to `count` members after `cursor` (empty: from the start); `Scan` pairs of
    /// member and the score's 8 bytes (`f64::to_be_bytes`).
    Scan {
        #[cfg_attr(test, proptest(strategy = "crate::arb::bytes()"))]
        key: Bytes,
        #[cfg_attr(test, proptest(strategy = "crate::arb::bytes()"))]
        cursor: Bytes,
        count: u32,
    },
    /// Replaces `key` with exactly these members (none: deletes it); a cross-range `STORE`.
    Replace {
        #[cfg_attr(test, proptest(strategy = "crate::arb::bytes()"))]
        key: Bytes,
        #[cfg_attr(
            test,
            proptest(strategy = "proptest::collection::vec(-1e9f64..1e9, 0..4)")
        )]
        scores: Vec<f64>,
        #[cfg_attr(test, proptest(strategy = "crate::arb::bytes_vec()"))]
        members: Vec<Bytes>,
    },
}

wire_enum!(ZSetOp: u8, "zset op" {
    0 => Card { key: key },
    1 => Add { key: key, flags, scores, members },
    2 => Rem { key: key, members },
    3 => Scores { key: key, members },
    4 => Rank { key: key, member, rev },
    5 => Range { key: key, by, min, max, rev, offset, count },
    6 => RangeStore { key: key, keys: keys, by, min, max, rev, offset, count },
    7 => Count { key: key, by, min, max },
    8 => RemRange { key: key, by, min, max },
    9 => Pop { key: key, keys: keys, max, count, named },
    10 => Combine { key: key, keys: keys, kind, weights, aggregate, store },
    11 => InterCard { key: key, keys: keys, limit },
    12 => RandMember { key: key, count, single, seed },
    13 => Scan { key: key, cursor, count },
    14 => Replace { key: key, scores, members },
});

impl ZSetOp {
    /// The user key the operation is routed by (for a STORE form: the destination).
    pub fn key(&self) -> &Bytes {
        match self {
            Self::Card { key }
            | Self::Add { key, .. }
            | Self::Rem { key, .. }
            | Self::Scores { key, .. }
            | Self::Rank { key, .. }
            | Self::Range { key, .. }
            | Self::RangeStore { key, .. }
            | Self::Count { key, .. }
            | Self::RemRange { key, .. }
            | Self::Pop { key, .. }
            | Self::Combine { key, .. }
            | Self::InterCard { key, .. }
            | Self::RandMember { key, .. }
            | Self::Scan { key, .. }
            | Self::Replace { key, .. } => key,
        }
    }

    /// The other user keys it touches (all in the range of [`Self::key`]).
    pub fn other_keys(&self) -> &[Bytes] {
        match self {
            Self::RangeStore { keys, .. }
            | Self::Pop { keys, .. }
            | Self::Combine { keys, .. }
            | Self::InterCard { keys, .. } => keys,
            _ => &[],
        }
    }

    /// Whether it changes state.
    pub fn is_write(&self) -> bool {
        match self {
            Self::Card { .. }
            | Self::Scores { .. }
            | Self::Rank { .. }
            | Self::Range { .. }
            | Self::Count { .. }
            | Self::InterCard { .. }
            | Self::RandMember { .. }
            | Self::Scan { .. } => false,
            Self::Combine { store, .. } => *store,
            Self::Add { .. }
            | Self::Rem { .. }
            | Self::RangeStore { .. }
            | Self::RemRange { .. }
            | Self::Pop { .. }
            | Self::Replace { .. } => true,
        }
    }

    /// The members it names (each stored next to the key).
    fn members(&self) -> &[Bytes] {
        match self {
            Self::Add { members, .. }
            | Self::Rem { members, .. }
            | Self::Scores { members, .. }
            | Self::Replace { members, .. } => members,
            Self::Rank { member, .. } => std::slice::from_ref(member),
            _ => &[],
        }
    }

    /// Checks keys and elements against `net::limits`.
    pub fn check_limits(&self, _max_value_bytes: usize) -> Result<(), LimitError> {
        user_key(self.key(), 0)?;
        // The score index key holds the member plus 8 score bytes.
        self.members()
            .iter()
            .try_for_each(|m| user_key(self.key(), m.len() + 8))?;
        self.other_keys().iter().try_for_each(|k| user_key(k, 0))
    }
}
