//! Range bounds as Redis parses them (`zslParseRange`, `zslParseLexRange`, rank integers),
//! at apply time so the errors come before WRONGTYPE, as in `zrangeGenericCommand`.

use bytes::Bytes;
use net::RpcError;
use net::message::zset::by;

use super::bad;
use crate::range::apply::parse_i64;

/// A parsed range.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Spec {
    /// Ranks `start..=stop` (negative: from the end), not yet clamped.
    Rank(i64, i64),
    /// Scores: `(min, exclusive)`, `(max, exclusive)`.
    Score(ScoreBound, ScoreBound),
    /// Members.
    Lex(LexBound, LexBound),
}

/// One end of a score range.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct ScoreBound {
    pub(crate) value: f64,
    pub(crate) exclusive: bool,
}

/// One end of a member range.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum LexBound {
    /// `-`.
    Min,
    /// `+`.
    Max,
    /// `[m` or `(m`.
    Member { member: Bytes, exclusive: bool },
}

/// Parses `min`/`max` as `by` gives them (for a reversed range the caller passes them in
/// `min, max` order already).
pub(crate) fn parse(by_: u8, min: &[u8], max: &[u8]) -> Result<Spec, RpcError> {
    match by_ {
        by::RANK => {
            let int = |s: &[u8]| parse_i64(s).ok_or(RpcError::NotAnInteger {});
            Ok(Spec::Rank(int(min)?, int(max)?))
        }
        by::SCORE => match (score_bound(min), score_bound(max)) {
            (Some(a), Some(b)) => Ok(Spec::Score(a, b)),
            _ => Err(bad("min or max is not a float")),
        },
        by::LEX => match (lex_bound(min), lex_bound(max)) {
            (Some(a), Some(b)) => Ok(Spec::Lex(a, b)),
            _ => Err(bad("min or max not valid string range item")),
        },
        _ => Err(bad("unknown range kind")),
    }
}

fn score_bound(s: &[u8]) -> Option<ScoreBound> {
    let (exclusive, text) = match s.split_first() {
        Some((b'(', rest)) => (true, rest),
        _ => (false, s),
    };
    Some(ScoreBound {
        value: strtod(text)?,
        exclusive,
    })
}

/// `strtod` that must consume the whole text: leading spaces allowed, empty is 0, NaN refused.
/// (Hex floats, which `strtod` also reads, are refused.)
pub(crate) fn strtod(text: &[u8]) -> Option<f64> {
    if text.is_empty() {
        return Some(0.0);
    }
    let t = std::str::from_utf8(text).ok()?;
    let t = t.trim_start_matches([' ', '\t', '\n', '\r', '\x0b', '\x0c']);
    let v: f64 = t.parse().ok()?;
    (!v.is_nan()).then_some(v)
}

fn lex_bound(s: &[u8]) -> Option<LexBound> {
    match s.split_first()? {
        (b'+', []) => Some(LexBound::Max),
        (b'-', []) => Some(LexBound::Min),
        (b'(', rest) => Some(LexBound::Member {
            member: Bytes::copy_from_slice(rest),
            exclusive: true,
        }),
        (b'[', rest) => Some(LexBound::Member {
            member: Bytes::copy_from_slice(rest),
            exclusive: false,
        }),
        _ => None,
    }
}

impl LexBound {
    /// Whether `m` is at or above this lower bound.
    pub(crate) fn below(&self, m: &[u8]) -> bool {
        match self {
            Self::Min => true,
            Self::Max => false,
            Self::Member { member, exclusive } => {
                if *exclusive {
                    m > &member[..]
                } else {
                    m >= &member[..]
                }
            }
        }
    }

    /// Whether `m` is at or below this upper bound.
    pub(crate) fn above(&self, m: &[u8]) -> bool {
        match self {
            Self::Min => false,
            Self::Max => true,
            Self::Member { member, exclusive } => {
                if *exclusive {
                    m < &member[..]
                } else {
                    m <= &member[..]
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn score_bounds_parse_like_zsl_parse_range() {
        let b = |s: &[u8]| score_bound(s).map(|b| (b.value, b.exclusive));
        assert_eq!(b(b"(1.5"), Some((1.5, true)));
        assert_eq!(b(b"-inf"), Some((f64::NEG_INFINITY, false)));
        assert_eq!(b(b"+inf"), Some((f64::INFINITY, false)));
        assert_eq!(b(b"("), Some((0.0, true)));
        assert_eq!(b(b""), Some((0.0, false)));
        assert_eq!(b(b" 2"), Some((2.0, false)));
        assert_eq!(b(b"nan"), None);
        assert_eq!(b(b"1x"), None);
        assert_eq!(b(b"[1"), None);
    }

    #[test]
    fn lex_bounds_need_a_bracket_or_a_lone_sign() {
        assert_eq!(lex_bound(b"+"), Some(LexBound::Max));
        assert_eq!(lex_bound(b"-"), Some(LexBound::Min));
        assert_eq!(lex_bound(b"+a"), None);
        assert_eq!(lex_bound(b"a"), None);
        assert_eq!(lex_bound(b""), None);
        assert!(lex_bound(b"(a").is_some_and(|l| l.below(b"b") && !l.below(b"a")));
    }
}
