//! `SORT` and `SORT_RO` (`sort.c`): `SORT key [BY pattern] [LIMIT offset count] [GET pattern
//! ...] [ASC|DESC] [ALPHA] [STORE destination]`.
//!
//! Run from the proxy in rounds: the source collection is read in one atomic `Multi` (its type
//! and its elements), the `BY` weights and `GET` values are read in batches (patterns name
//! other keys, anywhere in the cluster), the result is sorted here, and `STORE` replaces the
//! destination in one atomic `Multi` (delete, then push). As `BITOP`, the whole is not one
//! atomic step: a write to a key a pattern names, made while SORT runs, may or may not be
//! seen. The order, the `LIMIT` window, the special cases (`BY` without `*` does not sort; a
//! set sorted into `STORE` without sorting is sorted `ALPHA` so the result is deterministic)
//! and the error texts follow `sortCommandGeneric`.

use std::cmp::Ordering;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use net::RpcError;
use net::message::kv::{KeyType, KvOp, KvResponse, OpResult};
use net::message::list::ListOp;
use net::message::set::SetOp;
use net::message::zset::{ZSetOp, by};

use super::action::{Action, AsyncCommand, keyed};
use super::spec::{Spec, spec};
use super::util::{exec_error, int, is, syntax, unexpected};
use crate::db::DbRouter;
use crate::resp::Reply;
use crate::route::ExecError;

const WDM: &[&str] = &["write", "denyoom", "movablekeys"];
const RM: &[&str] = &["readonly", "movablekeys"];

/// The commands of this module, sorted by name.
pub static SPECS: &[Spec] = &[
    spec!("sort", -2, WDM, 1, 1, 1),
    spec!("sort_ro", -2, RM, 1, 1, 1),
];

/// `SORT` / `SORT_RO` called by a script: the source read in one atomic step of the
/// script's range, then sorted. A set not sorted by a pattern is sorted `ALPHA`, as Redis
/// does for scripts so that every replica computes the same reply. `BY` and `GET` patterns
/// that name other keys, and `STORE`, need more rounds than a script's call has: refused.
pub fn in_script(name: &str, args: &[Bytes]) -> Action {
    let mut c = match parse(args, name == "sort_ro") {
        Ok(c) => c,
        Err(r) => return Action::Reply(r),
    };
    let names_keys =
        c.by.as_ref().is_some_and(|p| p.contains(&b'*')) || c.gets.iter().any(|g| &g[..] != b"#");
    if names_keys || c.store.is_some() {
        return Action::Reply(Reply::err(
            "SORT with BY or GET patterns that name keys, or with STORE, cannot run inside a \
             script on tierkv (it needs several rounds)",
        ));
    }
    let key = c.key.clone();
    Action::Data {
        ops: source_ops(&key)
            .into_iter()
            .map(|op| keyed(&key, op))
            .collect(),
        finish: Box::new(move |results| {
            let results = results.into_iter().map(|r| r.map_err(|e| exec_error(&e)));
            let (kind, elements) = match parse_source(results) {
                Ok(src) => src,
                Err(r) => return r,
            };
            if c.dont_sort && matches!(kind, KeyType::Set {}) {
                c.dont_sort = false;
                c.alpha = true;
                c.by = None;
            }
            match order_local(&c, kind, elements) {
                Ok(out) => {
                    let columns = c.gets.len().max(1);
                    let mut replies = Vec::with_capacity(out.len() * columns);
                    for e in out {
                        replies.extend(std::iter::repeat_n(Reply::Bulk(e), columns));
                    }
                    Reply::Array(replies)
                }
                Err(r) => r,
            }
        }),
    }
}

/// The elements in output order without `BY` lookups: kept in their own order (`BY` a
/// constant) or sorted by themselves; `LIMIT` applied.
fn order_local(c: &SortCmd, kind: KeyType, mut elements: Vec<Bytes>) -> Result<Vec<Bytes>, Reply> {
    if c.dont_sort {
        // Lists and sorted sets keep their own order (reversed by DESC); a set keeps its
        // member order and DESC has nothing to reverse.
        if c.desc && !matches!(kind, KeyType::Set {}) {
            elements.reverse();
        }
        let w = window(elements.len(), c.limit);
        return Ok(elements.drain(w).collect());
    }
    let items = keys(c, elements, None)?;
    Ok(sorted_window(c, items, false))
}

/// Pattern lookups sent in one batch.
const BATCH: usize = 1024;

/// A parsed `SORT`.
#[derive(Debug, Clone, Default)]
pub struct SortCmd {
    key: Bytes,
    by: Option<Bytes>,
    dont_sort: bool,
    gets: Vec<Bytes>,
    desc: bool,
    alpha: bool,
    limit: Option<(i64, i64)>,
    store: Option<Bytes>,
}

impl SortCmd {
    /// The destination of `STORE`, if any (a key the command writes).
    pub fn store_key(&self) -> Option<&Bytes> {
        self.store.as_ref()
    }
}

/// Dispatches `SORT` / `SORT_RO` (arity already checked).
pub fn dispatch(name: &str, args: &[Bytes]) -> Action {
    match parse(args, name == "sort_ro") {
        Ok(cmd) => Action::rounds(cmd),
        Err(r) => Action::Reply(r),
    }
}

fn parse(args: &[Bytes], readonly: bool) -> Result<SortCmd, Reply> {
    let mut c = SortCmd {
        key: args[1].clone(),
        ..SortCmd::default()
    };
    let mut j = 2;
    while j < args.len() {
        let (a, left) = (&args[j], args.len() - j - 1);
        if is(a, "asc") {
            c.desc = false;
        } else if is(a, "desc") {
            c.desc = true;
        } else if is(a, "alpha") {
            c.alpha = true;
        } else if is(a, "limit") && left >= 2 {
            c.limit = Some((int(&args[j + 1])?, int(&args[j + 2])?));
            j += 2;
        } else if !readonly && is(a, "store") && left >= 1 {
            c.store = Some(args[j + 1].clone());
            j += 1;
        } else if is(a, "by") && left >= 1 {
            let p = &args[j + 1];
            c.dont_sort = !p.contains(&b'*');
            c.by = Some(p.clone());
            j += 1;
        } else if is(a, "get") && left >= 1 {
            c.gets.push(args[j + 1].clone());
            j += 1;
        } else {
            return Err(syntax());
        }
        j += 1;
    }
    Ok(c)
}

impl AsyncCommand for SortCmd {
    fn run<'a>(self: Box<Self>, router: &'a DbRouter<'_>) -> BoxFuture<'a, Reply> {
        Box::pin(run(router, *self))
    }
}

/// Runs a parsed `SORT`.
async fn run(router: &DbRouter<'_>, mut c: SortCmd) -> Reply {
    let (kind, elements) = match read_source(router, &c.key).await {
        Ok(src) => src,
        Err(r) => return r,
    };
    // A set has no order of its own: stored without sorting it would differ by replica and
    // run, so Redis sorts it ALPHA instead.
    if c.dont_sort && matches!(kind, KeyType::Set {}) && c.store.is_some() {
        c.dont_sort = false;
        c.alpha = true;
        c.by = None;
    }
    let ordered = match order(router, &c, kind, elements).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let output = match project(router, &c, ordered).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    match c.store.clone() {
        Some(dest) => store(router, dest, output).await,
        None => Reply::Array(
            output
                .into_iter()
                .map(|v| v.map_or(Reply::Nil, Reply::Bulk))
                .collect(),
        ),
    }
}

/// Reads the source's type and elements in one atomic step: list order, set member order,
/// sorted-set rank order. An absent key is an empty list.
async fn read_source(router: &DbRouter<'_>, key: &Bytes) -> Result<(KeyType, Vec<Bytes>), Reply> {
    let multi = KvOp::Multi {
        watches: Vec::new(),
        ops: source_ops(key),
    };
    let results = match one(router, key, multi).await? {
        OpResult::Multi { results } => results,
        other => return Err(unexpected(&other)),
    };
    parse_source(results.into_iter().map(|r| match r {
        KvResponse::Ok { result } => Ok(result),
        KvResponse::Err { error } => Err(exec_error(&ExecError::Rpc(error))),
    }))
}

/// The reads of the source, to run in one atomic step: its type, then its elements as each
/// type lists them (the reads of the other types fail `WRONGTYPE`, and are not looked at).
fn source_ops(key: &Bytes) -> Vec<KvOp> {
    vec![
        KvOp::KeyType { key: key.clone() },
        KvOp::List {
            op: ListOp::Range {
                key: key.clone(),
                start: 0,
                stop: -1,
            },
        },
        KvOp::Set {
            op: SetOp::Members { key: key.clone() },
        },
        KvOp::ZSet {
            op: ZSetOp::Range {
                key: key.clone(),
                by: by::RANK,
                min: Bytes::from_static(b"0"),
                max: Bytes::from_static(b"-1"),
                rev: false,
                offset: 0,
                count: -1,
            },
        },
    ]
}

/// The source's type and elements from the results of [`source_ops`], in order.
fn parse_source(
    mut it: impl Iterator<Item = Result<OpResult, Reply>>,
) -> Result<(KeyType, Vec<Bytes>), Reply> {
    let kind = match it.next() {
        Some(Ok(OpResult::Type { key_type })) => key_type,
        Some(Err(e)) => return Err(e),
        _ => return Err(Reply::err("internal error: SORT read no type")),
    };
    let slot = match kind {
        KeyType::None {} => return Ok((kind, Vec::new())),
        KeyType::List {} => 0,
        KeyType::Set {} => 1,
        KeyType::ZSet {} => 2,
        _ => return Err(exec_error(&ExecError::Rpc(RpcError::WrongType {}))),
    };
    match it.nth(slot) {
        Some(Ok(OpResult::Bulks { values })) => Ok((kind, values)),
        Some(Ok(OpResult::Scored { items })) => {
            Ok((kind, items.into_iter().map(|(m, _)| m).collect()))
        }
        Some(Err(e)) => Err(e),
        Some(Ok(result)) => Err(unexpected(&result)),
        None => Err(Reply::err("internal error: SORT read no elements")),
    }
}

async fn one(router: &DbRouter<'_>, key: &Bytes, op: KvOp) -> Result<OpResult, Reply> {
    match router.exec(vec![keyed(key, op)]).await.pop() {
        Some(Ok(r)) => Ok(r),
        Some(Err(e)) => Err(exec_error(&e)),
        None => Err(Reply::err("internal error: no result")),
    }
}

/// The `LIMIT` window over `n` elements, as `sortCommandGeneric` computes it.
fn window(n: usize, limit: Option<(i64, i64)>) -> std::ops::Range<usize> {
    let n = i64::try_from(n).unwrap_or(i64::MAX);
    let (offset, count) = limit.unwrap_or((0, -1));
    let mut start = offset.max(0);
    let mut end = if count < 0 {
        n - 1
    } else {
        start.saturating_add(count) - 1
    };
    if start >= n {
        start = n - 1;
        end = n - 2;
    }
    end = end.min(n - 1);
    if end < start {
        return 0..0;
    }
    // Both are within 0..n here.
    usize::try_from(start).unwrap_or(0)..usize::try_from(end + 1).unwrap_or(0)
}

/// The elements in output order, `LIMIT` applied.
async fn order(
    router: &DbRouter<'_>,
    c: &SortCmd,
    kind: KeyType,
    elements: Vec<Bytes>,
) -> Result<Vec<Bytes>, Reply> {
    let pattern = match &c.by {
        Some(p) if !c.dont_sort => p,
        _ => return order_local(c, kind, elements),
    };
    let weights = lookup(router, pattern, &elements).await?;
    let items = keys(c, elements, Some(weights))?;
    Ok(sorted_window(c, items, true))
}

/// `items` sorted and cut to the `LIMIT` window.
fn sorted_window(c: &SortCmd, mut items: Vec<Item>, by_pattern: bool) -> Vec<Bytes> {
    items.sort_by(|a, b| {
        let o = compare(c.alpha, by_pattern, a, b);
        if c.desc { o.reverse() } else { o }
    });
    let w = window(items.len(), c.limit);
    items.drain(w).map(|i| i.element).collect()
}

/// An element and what it sorts by.
struct Item {
    element: Bytes,
    score: f64,
    by: Option<Bytes>,
}

/// Builds the sort keys: the element itself, or its `BY` value; a number unless `ALPHA`.
fn keys(
    c: &SortCmd,
    elements: Vec<Bytes>,
    weights: Option<Vec<Option<Bytes>>>,
) -> Result<Vec<Item>, Reply> {
    let mut weights = weights.map(Vec::into_iter);
    let mut out = Vec::with_capacity(elements.len());
    let mut bad = false;
    for element in elements {
        let by = weights.as_mut().and_then(Iterator::next).flatten();
        let score = if c.alpha {
            0.0
        } else {
            let text = if weights.is_some() {
                by.as_deref()
            } else {
                Some(&element[..])
            };
            match text.map(strtod) {
                Some(Some(v)) => v,
                Some(None) => {
                    bad = true;
                    0.0
                }
                None => 0.0,
            }
        };
        out.push(Item { element, score, by });
    }
    if bad {
        return Err(Reply::err(
            "One or more scores can't be converted into double",
        ));
    }
    Ok(out)
}

/// `sortCompare`: numbers with the element's bytes breaking ties (so the result is
/// deterministic); `ALPHA` by the `BY` value (a missing one first) or by the element.
fn compare(alpha: bool, by_pattern: bool, a: &Item, b: &Item) -> Ordering {
    if !alpha {
        return a
            .score
            .partial_cmp(&b.score)
            .unwrap_or(Ordering::Equal)
            .then_with(|| a.element.cmp(&b.element));
    }
    if !by_pattern {
        return a.element.cmp(&b.element);
    }
    match (&a.by, &b.by) {
        (Some(x), Some(y)) => x.cmp(y),
        (None, Some(_)) => Ordering::Less,
        (Some(_), None) => Ordering::Greater,
        (None, None) => Ordering::Equal,
    }
}

/// `strtod` over the whole string as `sortCommandGeneric` uses it: leading white space
/// allowed, nothing after the number, no NaN, no overflow or underflow (`ERANGE`). An empty
/// string is 0.
fn strtod(s: &[u8]) -> Option<f64> {
    let start = s
        .iter()
        .position(|b| !matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r'))
        .unwrap_or(s.len());
    if s.is_empty() {
        return Some(0.0);
    }
    let text = std::str::from_utf8(&s[start..]).ok()?;
    let v: f64 = match text.parse() {
        Ok(v) => v,
        Err(_) => hex_float(text)?,
    };
    let lower = text.to_ascii_lowercase();
    let overflow = v.is_infinite() && !lower.contains("inf");
    let mantissa = lower.split('e').next().unwrap_or_default();
    let nonzero_digit = mantissa.bytes().any(|b| (b'1'..=b'9').contains(&b));
    let underflow = (v != 0.0 && v.abs() < f64::MIN_POSITIVE) || (v == 0.0 && nonzero_digit);
    (!v.is_nan() && !overflow && !underflow).then_some(v)
}

/// A C99 hexadecimal float (`0x1.8p3`), which `strtod` accepts: sign, `0x`, hex digits with
/// an optional point, an optional binary exponent.
fn hex_float(text: &str) -> Option<f64> {
    let (neg, t) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    let t = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X"))?;
    let (digits, exp) = match t.find(['p', 'P']) {
        Some(i) => (&t[..i], t[i + 1..].parse::<i32>().ok()?),
        None => (t, 0),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    let mut v = 0f64;
    for c in int.chars().chain(frac.chars()) {
        v = v * 16.0 + f64::from(c.to_digit(16)?);
    }
    let scale = exp.checked_sub(4 * i32::try_from(frac.len()).ok()?)?;
    let v = v * 2f64.powi(scale);
    Some(if neg { -v } else { v })
}

/// Where a pattern leads for one element: `#` is the element itself; otherwise the first `*`
/// is replaced by the element, and `->field` (after the `*`, not at the end) reads a hash
/// field instead of a string. A pattern without `*` leads nowhere.
#[derive(Debug, PartialEq, Eq)]
enum Target {
    Itself,
    Nothing,
    Key(Bytes),
    Field(Bytes, Bytes),
}

fn target(pattern: &[u8], element: &Bytes) -> Target {
    if pattern == b"#" {
        return Target::Itself;
    }
    let Some(star) = pattern.iter().position(|&b| b == b'*') else {
        return Target::Nothing;
    };
    let rest = &pattern[star + 1..];
    let arrow = rest
        .windows(2)
        .position(|w| w == b"->")
        .filter(|&i| i + 2 < rest.len());
    let (postfix, field) = match arrow {
        Some(i) => (&rest[..i], Some(&rest[i + 2..])),
        None => (rest, None),
    };
    let mut key = Vec::with_capacity(star + element.len() + postfix.len());
    key.extend_from_slice(&pattern[..star]);
    key.extend_from_slice(element);
    key.extend_from_slice(postfix);
    match field {
        Some(f) => Target::Field(Bytes::from(key), Bytes::copy_from_slice(f)),
        None => Target::Key(Bytes::from(key)),
    }
}

/// The value `pattern` leads to for each element (`None`: no such key, a key of another
/// type, no such field), read in batches.
async fn lookup(
    router: &DbRouter<'_>,
    pattern: &[u8],
    elements: &[Bytes],
) -> Result<Vec<Option<Bytes>>, Reply> {
    let mut out: Vec<Option<Bytes>> = Vec::with_capacity(elements.len());
    for chunk in elements.chunks(BATCH) {
        let mut ops = Vec::new();
        let mut slots = Vec::with_capacity(chunk.len());
        for e in chunk {
            match target(pattern, e) {
                Target::Itself => slots.push(Some(Some(e.clone()))),
                Target::Nothing => slots.push(Some(None)),
                Target::Key(k) => {
                    ops.push(keyed(&k, KvOp::StrGet { key: k.clone() }));
                    slots.push(None);
                }
                Target::Field(k, field) => {
                    ops.push(keyed(
                        &k,
                        KvOp::HGet {
                            key: k.clone(),
                            field,
                        },
                    ));
                    slots.push(None);
                }
            }
        }
        let mut results = router.exec(ops).await.into_iter();
        for slot in slots {
            out.push(match slot {
                Some(v) => v,
                None => match results.next() {
                    Some(Ok(OpResult::Value { value })) => value,
                    Some(Err(ExecError::Rpc(RpcError::WrongType {}))) => None,
                    Some(Err(e)) => return Err(exec_error(&e)),
                    Some(Ok(other)) => return Err(unexpected(&other)),
                    None => return Err(Reply::err("internal error: no result")),
                },
            });
        }
    }
    Ok(out)
}

/// The output: each element, or for each element the value of every `GET` pattern.
async fn project(
    router: &DbRouter<'_>,
    c: &SortCmd,
    ordered: Vec<Bytes>,
) -> Result<Vec<Option<Bytes>>, Reply> {
    if c.gets.is_empty() {
        return Ok(ordered.into_iter().map(Some).collect());
    }
    let mut columns = Vec::with_capacity(c.gets.len());
    for g in &c.gets {
        columns.push(lookup(router, g, &ordered).await?.into_iter());
    }
    let mut out = Vec::with_capacity(ordered.len() * columns.len());
    for _ in 0..ordered.len() {
        for col in &mut columns {
            out.push(col.next().flatten());
        }
    }
    Ok(out)
}

/// `STORE`: the destination becomes a list of the output (a missing `GET` value stored as an
/// empty string), or is deleted when the output is empty; replies its length.
async fn store(router: &DbRouter<'_>, dest: Bytes, output: Vec<Option<Bytes>>) -> Reply {
    let len = i64::try_from(output.len()).unwrap_or(i64::MAX);
    let mut ops = vec![KvOp::KeyDel { key: dest.clone() }];
    if !output.is_empty() {
        ops.push(KvOp::List {
            op: ListOp::Push {
                key: dest.clone(),
                elements: output.into_iter().map(Option::unwrap_or_default).collect(),
                left: false,
                only_existing: false,
            },
        });
    }
    let op = KvOp::Multi {
        watches: Vec::new(),
        ops,
    };
    match one(router, &dest, op).await {
        Ok(OpResult::Multi { results }) => match results.into_iter().find_map(|r| match r {
            KvResponse::Err { error } => Some(error),
            KvResponse::Ok { .. } => None,
        }) {
            Some(e) => exec_error(&ExecError::Rpc(e)),
            None => Reply::Int(len),
        },
        Ok(other) => unexpected(&other),
        Err(r) => r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    #[test]
    fn patterns_substitute_the_first_star_and_read_a_field_after_an_arrow() {
        let e = b("7");
        assert_eq!(target(b"#", &e), Target::Itself);
        assert_eq!(target(b"w_", &e), Target::Nothing);
        assert_eq!(target(b"w_*_x", &e), Target::Key(b("w_7_x")));
        assert_eq!(target(b"h_*->f", &e), Target::Field(b("h_7"), b("f")));
        // An arrow at the very end is part of the key name; an arrow before the star is too.
        assert_eq!(target(b"w_*->", &e), Target::Key(b("w_7->")));
        assert_eq!(target(b"a->*", &e), Target::Key(b("a->7")));
        assert_eq!(target(b"*:*", &e), Target::Key(b("7:*")));
    }

    #[test]
    fn the_limit_window_is_clamped_as_redis_clamps_it() {
        assert_eq!(window(5, None), 0..5);
        assert_eq!(window(5, Some((1, 2))), 1..3);
        assert_eq!(window(5, Some((-3, 2))), 0..2);
        assert_eq!(window(5, Some((3, 100))), 3..5);
        assert_eq!(window(5, Some((10, 2))), 0..0);
        assert_eq!(window(5, Some((0, 0))), 0..0);
        assert_eq!(window(0, None), 0..0);
        assert_eq!(window(5, Some((i64::MAX, i64::MAX))), 0..0);
    }

    #[test]
    fn weights_parse_as_strtod_over_the_whole_string() {
        assert_eq!(strtod(b""), Some(0.0));
        assert_eq!(strtod(b" 1.5"), Some(1.5));
        assert_eq!(strtod(b"0x10"), Some(16.0));
        assert_eq!(strtod(b"-0x1.8p1"), Some(-3.0));
        assert_eq!(strtod(b"-inf"), Some(f64::NEG_INFINITY));
        for bad in ["1 ", "abc", "nan", "1e400", "1e-400", "   ", "0x", "1e"] {
            assert_eq!(strtod(bad.as_bytes()), None, "{bad}");
        }
    }

    #[test]
    fn numeric_ties_break_by_the_elements_bytes_and_alpha_by_puts_missing_first() {
        let item = |e: &str, score: f64, by: Option<&str>| Item {
            element: b(e),
            score,
            by: by.map(b),
        };
        assert_eq!(
            compare(false, false, &item("b", 1.0, None), &item("a", 1.0, None)),
            Ordering::Greater
        );
        assert_eq!(
            compare(
                true,
                true,
                &item("a", 0.0, None),
                &item("b", 0.0, Some("x"))
            ),
            Ordering::Less
        );
        assert_eq!(
            compare(true, true, &item("b", 0.0, None), &item("a", 0.0, None)),
            Ordering::Equal
        );
        assert_eq!(
            compare(true, false, &item("b", 0.0, None), &item("a", 0.0, None)),
            Ordering::Greater
        );
    }
}
