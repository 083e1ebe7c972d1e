//! `LCS key1 key2 [LEN] [IDX] [MINMATCHLEN n] [WITHMATCHLEN]` (`t_string.c`): the longest
//! common subsequence of two strings, read with one `GET` each (the keys may live in different
//! ranges: a read of two values is consistent per key, as `MGET` is) and computed here.
//!
//! The table is Redis's: `(len1 + 1) × (len2 + 1)` cells of `u32`, refused when it would exceed
//! `proto-max-bulk-len` bytes, so one command's transient memory is bounded as in Redis. The
//! walk back through the table and the ranges it emits (including which matches are merged)
//! follow `lcsCommand` step for step, so `IDX` replies are identical.

use bytes::Bytes;
use net::RpcError;
use net::message::kv::{KvOp, OpResult};

use super::action::{Action, keyed};
use super::spec::{RS, Spec, spec};
use super::util::{exec_error, int, is, syntax, unexpected};
use crate::resp::Reply;
use crate::route::ExecError;

/// The commands of this module, sorted by name.
pub static SPECS: &[Spec] = &[spec!("lcs", -3, RS, 1, 2, 1)];

/// What the reply reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Opts {
    len: bool,
    idx: bool,
    with_match_len: bool,
    min_match_len: u64,
}

/// Parses the options after the two keys. Errors are kept and reported after the type check,
/// as Redis checks the keys' types first.
fn parse(args: &[Bytes]) -> Result<Opts, Reply> {
    let mut o = Opts::default();
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        if is(a, "idx") {
            o.idx = true;
        } else if is(a, "len") {
            o.len = true;
        } else if is(a, "withmatchlen") {
            o.with_match_len = true;
        } else if is(a, "minmatchlen") && i + 1 < args.len() {
            o.min_match_len = u64::try_from(int(&args[i + 1])?).unwrap_or(0);
            i += 1;
        } else {
            return Err(syntax());
        }
        i += 1;
    }
    if o.idx && o.len {
        return Err(Reply::err(
            "If you want both the length and indexes, please just use IDX.",
        ));
    }
    Ok(o)
}

/// Dispatches `LCS` (arity already checked). `max_bulk`: `proto-max-bulk-len`, the bound on
/// the table's bytes.
pub fn dispatch(args: &[Bytes], max_bulk: u64) -> Action {
    let opts = parse(&args[3..]);
    let ops = args[1..3]
        .iter()
        .map(|k| keyed(k, KvOp::StrGet { key: k.clone() }))
        .collect();
    Action::Data {
        ops,
        finish: Box::new(move |res| finish(res, opts, max_bulk)),
    }
}

fn finish(
    res: Vec<Result<OpResult, ExecError>>,
    opts: Result<Opts, Reply>,
    max_bulk: u64,
) -> Reply {
    let mut values = Vec::with_capacity(2);
    for r in res {
        match r {
            Ok(OpResult::Value { value }) => values.push(value.unwrap_or_default()),
            Err(ExecError::Rpc(RpcError::WrongType {})) => {
                return Reply::err("The specified keys must contain string values");
            }
            Err(e) => return exec_error(&e),
            Ok(other) => return unexpected(&other),
        }
    }
    let opts = match opts {
        Ok(o) => o,
        Err(r) => return r,
    };
    let (a, b) = (&values[0], &values[1]);
    let cells = (a.len() as u64 + 1).saturating_mul(b.len() as u64 + 1);
    if a.len() >= u32::MAX as usize - 1 || b.len() >= u32::MAX as usize - 1 {
        return Reply::err("String too long for LCS");
    }
    if cells.saturating_mul(4) > max_bulk {
        return Reply::err(
            "Insufficient memory, transient memory for LCS exceeds proto-max-bulk-len",
        );
    }
    reply(&Table::build(a, b), a, b, opts)
}

/// The LCS lengths of every pair of prefixes: `cell(i, j)` is the LCS length of `a[..i]` and
/// `b[..j]`.
struct Table {
    cells: Vec<u32>,
    width: usize,
}

impl Table {
    fn build(a: &[u8], b: &[u8]) -> Self {
        let width = b.len() + 1;
        let mut cells = vec![0u32; (a.len() + 1) * width];
        for i in 1..=a.len() {
            for j in 1..=b.len() {
                cells[i * width + j] = if a[i - 1] == b[j - 1] {
                    cells[(i - 1) * width + j - 1] + 1
                } else {
                    cells[(i - 1) * width + j].max(cells[i * width + j - 1])
                };
            }
        }
        Self { cells, width }
    }

    fn at(&self, i: usize, j: usize) -> u32 {
        self.cells[i * self.width + j]
    }

    fn rows(&self) -> usize {
        self.cells.len() / self.width
    }
}

/// One matching stretch: inclusive byte ranges in `a` and `b`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Match {
    a: (usize, usize),
    b: (usize, usize),
}

impl Match {
    fn len(&self) -> usize {
        self.a.1 - self.a.0 + 1
    }
}

/// Walks back from the table's corner as `lcsCommand` does: the common subsequence (built
/// backwards) and the matching stretches, last first.
fn walk(t: &Table, a: &[u8], b: &[u8]) -> (Vec<u8>, Vec<Match>) {
    let (mut i, mut j) = (t.rows() - 1, t.width - 1);
    let mut idx = t.at(i, j) as usize;
    let mut out = vec![0u8; idx];
    let mut matches = Vec::new();
    let mut cur: Option<Match> = None;
    while i > 0 && j > 0 {
        let mut emit = false;
        if a[i - 1] == b[j - 1] {
            out[idx - 1] = a[i - 1];
            match &mut cur {
                None => {
                    cur = Some(Match {
                        a: (i - 1, i - 1),
                        b: (j - 1, j - 1),
                    })
                }
                Some(m) if m.a.0 == i && m.b.0 == j => {
                    m.a.0 -= 1;
                    m.b.0 -= 1;
                }
                Some(_) => emit = true,
            }
            if cur.is_some_and(|m| m.a.0 == 0 || m.b.0 == 0) {
                emit = true;
            }
            idx -= 1;
            i -= 1;
            j -= 1;
        } else {
            if t.at(i - 1, j) > t.at(i, j - 1) {
                i -= 1;
            } else {
                j -= 1;
            }
            emit = cur.is_some();
        }
        if emit && let Some(m) = cur.take() {
            matches.push(m);
        }
    }
    (out, matches)
}

fn reply(t: &Table, a: &[u8], b: &[u8], o: Opts) -> Reply {
    let len = i64::from(t.at(t.rows() - 1, t.width - 1));
    if o.len {
        return Reply::Int(len);
    }
    let (lcs, matches) = walk(t, a, b);
    if !o.idx {
        return Reply::Bulk(Bytes::from(lcs));
    }
    let pair =
        |(s, e): (usize, usize)| Reply::Array(vec![Reply::Int(s as i64), Reply::Int(e as i64)]);
    let list = matches
        .iter()
        .filter(|m| o.min_match_len == 0 || m.len() as u64 >= o.min_match_len)
        .map(|m| {
            let mut item = vec![pair(m.a), pair(m.b)];
            if o.with_match_len {
                item.push(Reply::Int(m.len() as i64));
            }
            Reply::Array(item)
        })
        .collect();
    Reply::Map(vec![
        (Reply::bulk(b"matches"), Reply::Array(list)),
        (Reply::bulk(b"len"), Reply::Int(len)),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn is_subsequence(sub: &[u8], of: &[u8]) -> bool {
        let mut it = of.iter();
        sub.iter().all(|c| it.any(|x| x == c))
    }

    /// The LCS length by the textbook recursion on short inputs.
    fn brute(a: &[u8], b: &[u8]) -> usize {
        match (a.split_last(), b.split_last()) {
            (Some((x, ra)), Some((y, rb))) if x == y => brute(ra, rb) + 1,
            (Some((_, ra)), Some((_, rb))) => brute(ra, b).max(brute(a, rb)),
            _ => 0,
        }
    }

    #[test]
    fn redis_documented_example_gives_its_matches() {
        let (a, b) = (b"ohmytext".as_slice(), b"mynewtext".as_slice());
        let t = Table::build(a, b);
        let (lcs, m) = walk(&t, a, b);
        assert_eq!(lcs, b"mytext");
        assert_eq!(
            m,
            vec![
                Match {
                    a: (4, 7),
                    b: (5, 8)
                },
                Match {
                    a: (2, 3),
                    b: (0, 1)
                }
            ]
        );
    }

    #[test]
    fn options_parse_as_redis_and_len_with_idx_is_refused() {
        let args = |s: &str| {
            s.split(' ')
                .map(|w| Bytes::copy_from_slice(w.as_bytes()))
                .collect::<Vec<_>>()
        };
        assert!(parse(&args("len idx")).is_err());
        assert!(parse(&args("minmatchlen")).is_err());
        let o = parse(&args("IDX minmatchlen -4 withmatchlen")).unwrap_or_default();
        assert!(o.idx && o.with_match_len && o.min_match_len == 0);
    }

    proptest! {
        #[test]
        fn the_walk_yields_a_common_subsequence_of_the_longest_length(
            a in prop::collection::vec(0u8..4, 0..12),
            b in prop::collection::vec(0u8..4, 0..12),
        ) {
            let t = Table::build(&a, &b);
            let (lcs, matches) = walk(&t, &a, &b);
            prop_assert_eq!(lcs.len(), brute(&a, &b));
            prop_assert!(is_subsequence(&lcs, &a) && is_subsequence(&lcs, &b));
            // The matches cover the subsequence exactly, each a stretch equal in both strings.
            prop_assert_eq!(matches.iter().map(Match::len).sum::<usize>(), lcs.len());
            for m in &matches {
                prop_assert_eq!(&a[m.a.0..=m.a.1], &b[m.b.0..=m.b.1]);
            }
        }
    }
}
