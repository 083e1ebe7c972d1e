//! Argument parsing of the sorted-set commands, in the order `t_zset.c` checks (and with its
//! error texts). Range bounds are not parsed here: the shard parses them at apply time, so
//! their errors come after these and before WRONGTYPE, as in Redis.

use bytes::Bytes;
use net::message::zset::{add_flags, by, combine};

use crate::cmd::util::{int, is, syntax};
use crate::resp::Reply;

/// A score as `getDoubleFromObject` reads it (`strtod` over the whole argument: no leading
/// space, no NaN, no overflow to ±inf or underflow to 0), else `msg`.
pub fn score_or(s: &[u8], msg: &str) -> Result<f64, Reply> {
    let bad = || Reply::err(msg);
    let text = std::str::from_utf8(s).map_err(|_| bad())?;
    if text.is_empty() || text.starts_with(|c: char| c.is_ascii_whitespace()) {
        return Err(bad());
    }
    let v: f64 = text.parse().map_err(|_| bad())?;
    let lower = text.to_ascii_lowercase();
    let literal_inf = lower.trim_start_matches(['+', '-']).starts_with("inf");
    let mantissa = lower.split('e').next().unwrap_or("");
    let nonzero_digits = mantissa.bytes().any(|b| (b'1'..=b'9').contains(&b));
    if v.is_nan() || (v.is_infinite() && !literal_inf) || (v == 0.0 && nonzero_digits) {
        return Err(bad());
    }
    Ok(v)
}

/// A score argument: `ERR value is not a valid float`.
pub fn score(s: &[u8]) -> Result<f64, Reply> {
    score_or(s, "value is not a valid float")
}

/// `ZADD key [NX|XX] [GT|LT] [CH] [INCR] score member ...`: flags, scores, members.
pub fn zadd(args: &[Bytes]) -> Result<(u8, Vec<f64>, Vec<Bytes>), Reply> {
    let mut flags = 0u8;
    let mut i = 2;
    while let Some(a) = args.get(i) {
        let f = [
            ("nx", add_flags::NX),
            ("xx", add_flags::XX),
            ("gt", add_flags::GT),
            ("lt", add_flags::LT),
            ("ch", add_flags::CH),
            ("incr", add_flags::INCR),
        ]
        .iter()
        .find(|(kw, _)| is(a, kw))
        .map(|(_, f)| *f);
        let Some(f) = f else { break };
        flags |= f;
        i += 1;
    }
    let rest = &args[i..];
    if rest.is_empty() || rest.len() % 2 != 0 {
        return Err(syntax());
    }
    let has = |f: u8| flags & f != 0;
    if has(add_flags::NX) && has(add_flags::XX) {
        return Err(Reply::err(
            "XX and NX options at the same time are not compatible",
        ));
    }
    let (gt, lt, nx) = (has(add_flags::GT), has(add_flags::LT), has(add_flags::NX));
    if [gt, lt, nx].iter().filter(|f| **f).count() > 1 {
        return Err(Reply::err(
            "GT, LT, and/or NX options at the same time are not compatible",
        ));
    }
    if has(add_flags::INCR) && rest.len() > 2 {
        return Err(Reply::err(
            "INCR option supports a single increment-element pair",
        ));
    }
    let scores = rest
        .chunks_exact(2)
        .map(|p| score(&p[0]))
        .collect::<Result<Vec<_>, _>>()?;
    let members = rest.chunks_exact(2).map(|p| p[1].clone()).collect();
    Ok((flags, scores, members))
}

/// A parsed `ZRANGE`-family command.
#[derive(Debug, Clone)]
pub struct RangeArgs {
    /// [`by`].
    pub by: u8,
    /// Lower bound as given (after REV swapping for score and member ranges).
    pub min: Bytes,
    /// Upper bound as given.
    pub max: Bytes,
    /// Reversed.
    pub rev: bool,
    /// LIMIT offset.
    pub offset: i64,
    /// LIMIT count (-1: none).
    pub count: i64,
    /// WITHSCORES.
    pub withscores: bool,
}

/// `zrangeGenericCommand`'s step 1: `args[start]` is the source key, then min, max, options.
/// `by_`/`rev`: fixed by the command name (`None`: chosen by options, ZRANGE/ZRANGESTORE).
pub fn range(
    args: &[Bytes],
    start: usize,
    store: bool,
    by_: Option<u8>,
    rev: Option<bool>,
) -> Result<RangeArgs, Reply> {
    let (mut kind, mut dir) = (by_, rev);
    let (mut withscores, mut offset, mut count) = (false, 0i64, -1i64);
    let mut j = start + 3;
    while j < args.len() {
        let left = args.len() - j - 1;
        let a = &args[j];
        if !store && is(a, "withscores") {
            withscores = true;
        } else if is(a, "limit") && left >= 2 {
            offset = int(&args[j + 1])?;
            count = int(&args[j + 2])?;
            j += 2;
        } else if dir.is_none() && is(a, "rev") {
            dir = Some(true);
        } else if kind.is_none() && is(a, "bylex") {
            kind = Some(by::LEX);
        } else if kind.is_none() && is(a, "byscore") {
            kind = Some(by::SCORE);
        } else {
            return Err(syntax());
        }
        j += 1;
    }
    let kind = kind.unwrap_or(by::RANK);
    let rev = dir.unwrap_or(false);
    if count != -1 && kind == by::RANK {
        return Err(Reply::err(
            "syntax error, LIMIT is only supported in combination with either BYSCORE or BYLEX",
        ));
    }
    if withscores && kind == by::LEX {
        return Err(Reply::err(
            "syntax error, WITHSCORES not supported in combination with BYLEX",
        ));
    }
    let (mut min, mut max) = (args[start + 1].clone(), args[start + 2].clone());
    if rev && kind != by::RANK {
        std::mem::swap(&mut min, &mut max);
    }
    Ok(RangeArgs {
        by: kind,
        min,
        max,
        rev,
        offset,
        count,
        withscores,
    })
}

/// A parsed `ZUNION`/`ZINTER`/`ZDIFF`(`STORE`)/`ZINTERCARD`.
#[derive(Debug, Clone)]
pub struct CombineArgs {
    /// The source keys.
    pub keys: Vec<Bytes>,
    /// Their weights (empty: all 1).
    pub weights: Vec<f64>,
    /// [`combine`] aggregate.
    pub aggregate: u8,
    /// WITHSCORES.
    pub withscores: bool,
    /// ZINTERCARD LIMIT (0: none).
    pub limit: u64,
}

/// `zunionInterDiffGenericCommand`'s parsing; `args[numkeys_at]` is numkeys.
pub fn combine_args(
    name: &str,
    args: &[Bytes],
    numkeys_at: usize,
    kind: u8,
    store: bool,
    card: bool,
) -> Result<CombineArgs, Reply> {
    let n = int(&args[numkeys_at])?;
    if n < 1 {
        return Err(Reply::err(format_args!(
            "at least 1 input key is needed for '{name}' command"
        )));
    }
    let first = numkeys_at + 1;
    let n = usize::try_from(n).unwrap_or(usize::MAX);
    if n > args.len() - first {
        return Err(syntax());
    }
    let mut out = CombineArgs {
        keys: args[first..first + n].to_vec(),
        weights: Vec::new(),
        aggregate: combine::SUM,
        withscores: false,
        limit: 0,
    };
    let mut j = first + n;
    let algebra = kind != combine::DIFF && !card;
    while j < args.len() {
        let left = args.len() - j;
        let a = &args[j];
        if algebra && left > n && is(a, "weights") {
            out.weights = args[j + 1..j + 1 + n]
                .iter()
                .map(|w| score_or(w, "weight value is not a float"))
                .collect::<Result<_, _>>()?;
            j += 1 + n;
        } else if algebra && left >= 2 && is(a, "aggregate") {
            let v = &args[j + 1];
            out.aggregate = if is(v, "sum") {
                combine::SUM
            } else if is(v, "min") {
                combine::MIN
            } else if is(v, "max") {
                combine::MAX
            } else {
                return Err(syntax());
            };
            j += 2;
        } else if !store && !card && is(a, "withscores") {
            out.withscores = true;
            j += 1;
        } else if card && left >= 2 && is(a, "limit") {
            let l = int(&args[j + 1]).map_err(|_| Reply::err("LIMIT can't be negative"))?;
            out.limit = u64::try_from(l).map_err(|_| Reply::err("LIMIT can't be negative"))?;
            j += 2;
        } else {
            return Err(syntax());
        }
    }
    Ok(out)
}

/// A `ZMPOP numkeys key ... MIN|MAX [COUNT n]`: keys, max, count.
pub fn zmpop(args: &[Bytes]) -> Result<(Vec<Bytes>, bool, u64), Reply> {
    // `getRangeLongFromObjectOrReply` with a message: the same text for a non-integer.
    let positive = |s: &[u8], msg: &str| -> Result<u64, Reply> {
        crate::cmd::util::parse_i64(s)
            .and_then(|v| u64::try_from(v).ok())
            .filter(|v| *v >= 1)
            .ok_or_else(|| Reply::err(msg))
    };
    let n = positive(&args[1], "numkeys should be greater than 0")?;
    let n = usize::try_from(n).unwrap_or(usize::MAX);
    let where_at = n.saturating_add(2);
    let Some(w) = args.get(where_at) else {
        return Err(syntax());
    };
    let max = if is(w, "max") {
        true
    } else if is(w, "min") {
        false
    } else {
        return Err(syntax());
    };
    let mut count = None;
    let mut j = where_at + 1;
    while j < args.len() {
        if count.is_none() && is(&args[j], "count") && j + 1 < args.len() {
            count = Some(positive(&args[j + 1], "count should be greater than 0")?);
            j += 2;
        } else {
            return Err(syntax());
        }
    }
    Ok((args[2..where_at].to_vec(), max, count.unwrap_or(1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_parse_like_get_double_from_object() {
        for (text, v) in [
            ("1.5", 1.5),
            ("+1", 1.0),
            ("inf", f64::INFINITY),
            ("+inf", f64::INFINITY),
            ("-inf", f64::NEG_INFINITY),
            ("-0", -0.0),
            ("1e-300", 1e-300),
        ] {
            assert_eq!(score(text.as_bytes()).ok(), Some(v), "{text}");
        }
        for bad in ["", " 1", "1 ", "nan", "1e400", "1e-400", "abc", "1.5x"] {
            assert!(score(bad.as_bytes()).is_err(), "{bad}");
        }
    }
}
