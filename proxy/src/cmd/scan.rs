//! The multi-round commands on the keyspace and on one hash: SCAN (cursor = next hash slot),
//! KEYS (a full scan), RANDOMKEY (a scan from a random slot to its first key) and DBSIZE (the ranges' key counts, `crate::key_counts`) — [`Keyspace`] — and HSCAN (the whole hash in one reply,
//! cursor 0, as Redis does for small hashes) — [`HScan`]; and the [`Matcher`] that MATCH
//! patterns of every scan use (ZSCAN's too).
//!
//! Each runs in the connection's database ([`DbRouter`]); a range's `KeyScan` returns only
//! that database's keys.
//!
//! A SCAN step walks ranges in key order from the first key of its start slot with `KeyScan`
//! operations, and always stops at a slot boundary: once COUNT keys are gathered it finishes
//! the current slot and answers with the next slot as the cursor. Slots outlive splits and
//! moves of ranges, so a scan stays correct across them and any proxy can continue it.
//!
//! Below the command families that build these (`keys`, `hashes`, `zsets`): it imports the
//! leaves `action` and `util` only.

use bytes::Bytes;
use futures_util::future::BoxFuture;
use net::message::kv::{KeyType, KvOp, OpResult};

use super::action::{AsyncCommand, keyed};
use super::util::{exec_error, unexpected};
use crate::db::DbRouter;
use crate::glob::Pattern;
use crate::keyspace::{SLOTS, db_start, slot, slot_of_internal, slot_start};
use crate::resp::Reply;
use crate::route::ExecError;

/// Keys asked of a shard per `KeyScan` step.
const STEP: u32 = 256;

/// Matcher steps (about one byte compared each) between two yields to the runtime: a MATCH
/// over many keys, or one long pattern against long keys (O(|pattern| · |key|)), never holds
/// the proxy's worker thread for more than about a millisecond at a time.
const MATCH_SLICE: u64 = 256 * 1024;

/// The commands that walk the connection's database.
#[derive(Debug, Clone)]
pub enum Keyspace {
    /// `SCAN cursor [MATCH p] [COUNT n] [TYPE t]`; the cursor is the next hash slot.
    Scan {
        /// The slot to start from.
        slot: u16,
        /// MATCH pattern.
        pattern: Option<Bytes>,
        /// COUNT hint.
        count: usize,
        /// TYPE filter (`Some(None)`: a type this proxy never stores, nothing matches).
        type_filter: Option<Option<KeyType>>,
    },
    /// `KEYS pattern`.
    Keys {
        /// The pattern.
        pattern: Bytes,
    },
    /// `DBSIZE`: one `DbStats` read per range, O(ranges).
    DbSize,
    /// `RANDOMKEY`: a key of the first non-empty hash slot from a random one on (wrapping
    /// around), chosen at random among that slot's keys; nil when the database is empty.
    /// Not uniform over keys (a key after empty slots is likelier), as Redis's is not (it
    /// picks a random bucket, then a random entry of its chain).
    RandomKey,
}

impl AsyncCommand for Keyspace {
    fn run<'a>(self: Box<Self>, router: &'a DbRouter<'_>) -> BoxFuture<'a, Reply> {
        Box::pin(run_keyspace(router, *self))
    }
}

async fn run_keyspace(router: &DbRouter<'_>, cmd: Keyspace) -> Reply {
    match cmd {
        Keyspace::Scan {
            slot,
            pattern,
            count,
            type_filter,
        } => match scan(router, slot, count, type_filter).await {
            Ok((keys, next)) => {
                let keys = filter(keys, pattern.as_deref()).await;
                Reply::Array(vec![
                    Reply::Bulk(Bytes::from(next.to_string())),
                    Reply::Array(keys.into_iter().map(Reply::Bulk).collect()),
                ])
            }
            Err(e) => exec_error(&e),
        },
        Keyspace::Keys { pattern } => match scan(router, 0, usize::MAX, None).await {
            Ok((keys, _)) => {
                let pat = (&pattern[..] != b"*").then_some(&pattern[..]);
                let keys = filter(keys, pat).await;
                Reply::Array(keys.into_iter().map(Reply::Bulk).collect())
            }
            Err(e) => exec_error(&e),
        },
        Keyspace::RandomKey => match random_key(router).await {
            Ok(Some(k)) => Reply::Bulk(k),
            Ok(None) => Reply::Nil,
            Err(e) => exec_error(&e),
        },
        Keyspace::DbSize => match crate::key_counts::totals(router.raw()).await {
            Ok(t) => Reply::Int(
                i64::try_from(crate::key_counts::keys_of(&t, router.db())).unwrap_or(i64::MAX),
            ),
            Err(e) => exec_error(&e),
        },
    }
}

/// `HSCAN key cursor [MATCH p] [COUNT n] [NOVALUES]`: the whole hash, cursor 0.
#[derive(Debug, Clone)]
pub struct HScan {
    /// The key.
    pub key: Bytes,
    /// MATCH pattern.
    pub pattern: Option<Bytes>,
    /// Whether to leave the values out.
    pub novalues: bool,
}

impl AsyncCommand for HScan {
    fn run<'a>(self: Box<Self>, router: &'a DbRouter<'_>) -> BoxFuture<'a, Reply> {
        let HScan {
            key,
            pattern,
            novalues,
        } = *self;
        Box::pin(hscan(router, key, pattern, novalues))
    }
}

async fn filter(keys: Vec<Bytes>, pattern: Option<&[u8]>) -> Vec<Bytes> {
    let Some(p) = pattern else {
        return keys;
    };
    let mut m = Matcher::new(Pattern::new(p));
    let mut out = Vec::new();
    for k in keys {
        if m.matches(&k).await {
            out.push(k);
        }
    }
    out
}

/// Matches many subjects against one pattern, yielding to the runtime every
/// [`MATCH_SLICE`] steps (each subject costs at least one).
#[derive(Debug)]
pub struct Matcher<'p> {
    pattern: Pattern<'p>,
    /// Steps left before the next yield.
    budget: u64,
    /// Yields so far.
    pub yields: u64,
}

impl<'p> Matcher<'p> {
    /// A matcher for `pattern`.
    pub fn new(pattern: Pattern<'p>) -> Self {
        Self {
            pattern,
            budget: MATCH_SLICE,
            yields: 0,
        }
    }

    /// Whether `s` matches.
    pub async fn matches(&mut self, s: &[u8]) -> bool {
        let mut m = self.pattern.matching(s);
        loop {
            let before = m.steps();
            let done = m.run(self.budget);
            let used = (m.steps() - before).max(1);
            self.budget = self.budget.saturating_sub(used);
            if self.budget == 0 {
                self.yields += 1;
                tokio::task::yield_now().await;
                self.budget = MATCH_SLICE;
            }
            if let Some(r) = done {
                return r;
            }
        }
    }
}

/// A key of the connection's database, at random ([`Keyspace::RandomKey`]): the keys of the
/// first non-empty slot from a random slot on, else from slot 0 (the scan wrapped around).
async fn random_key(router: &DbRouter<'_>) -> Result<Option<Bytes>, ExecError> {
    let r = random_u64();
    let from = u16::try_from(r % u64::from(SLOTS)).unwrap_or(0);
    let (mut keys, _) = scan(router, from, 1, None).await?;
    if keys.is_empty() && from > 0 {
        keys = scan(router, 0, 1, None).await?.0;
    }
    if keys.is_empty() {
        return Ok(None);
    }
    let i = usize::try_from((r >> 16) % keys.len() as u64).unwrap_or(0);
    Ok(Some(keys.swap_remove(i)))
}

/// A random number for `RANDOMKEY` (not for anything secret): the std hasher's random keys
/// over the clock and a counter.
fn random_u64() -> u64 {
    use std::hash::BuildHasher;
    use std::sync::atomic::{AtomicU64, Ordering};
    static CALLS: AtomicU64 = AtomicU64::new(0);
    let n = CALLS.fetch_add(1, Ordering::Relaxed);
    std::collections::hash_map::RandomState::new().hash_one((std::time::Instant::now(), n))
}

/// Keys from slot `from` on, stopping at the first slot boundary after `count` keys; returns
/// them and the next slot (0: the scan is complete).
async fn scan(
    router: &DbRouter<'_>,
    from: u16,
    count: usize,
    type_filter: Option<Option<KeyType>>,
) -> Result<(Vec<Bytes>, u64), ExecError> {
    let type_filter = match type_filter {
        Some(None) => return Ok((Vec::new(), 0)), // a type this store never holds
        Some(Some(t)) => Some(t),
        None => None,
    };
    let mut keys = Vec::new();
    // `pos` routes (a key of the range to scan next); `cursor` is what KeyScan starts after
    // (the range clamps it to its own start). Both are internal keys, routed as they are;
    // the operation runs in the connection's database (the range skips the others).
    let db = router.db();
    let router = router.raw();
    let mut pos = db_start(from, db);
    let mut cursor = pos.clone();
    let end = slot_start(SLOTS);
    // Once enough keys are in, the slot to finish; keys past it are dropped.
    let mut stop_after: Option<u16> = None;
    loop {
        if pos >= end {
            return Ok((keys, 0));
        }
        let op = KvOp::KeyScan {
            cursor: cursor.clone(),
            count: u32::try_from(count.saturating_add(16))
                .unwrap_or(STEP)
                .min(STEP),
            type_filter,
        }
        .into_db(db);
        let mut res = router.exec(vec![(pos.clone(), op)]).await;
        let result = res
            .pop()
            .unwrap_or(Err(ExecError::Unavailable("no result".into())))?;
        let OpResult::KeyScan { keys: page, next } = result else {
            return Err(ExecError::Unavailable(format!("{:?}", unexpected(&result))));
        };
        for k in page {
            let s = slot(&k);
            if let Some(stop) = stop_after {
                if s > stop {
                    return Ok((keys, next_cursor(stop)));
                }
            }
            keys.push(k);
            if stop_after.is_none() && keys.len() >= count {
                stop_after = Some(s);
            }
        }
        let past =
            |k: &[u8]| stop_after.is_some_and(|stop| slot_of_internal(k).is_none_or(|s| s > stop));
        match next {
            Some(n) => {
                if past(&n) {
                    return Ok((keys, next_cursor(stop_after.unwrap_or(0))));
                }
                pos = n.clone();
                cursor = n;
            }
            None => {
                // This range is exhausted: continue at the next one. The range is looked up
                // after the step so a refresh the step caused is seen.
                let range = router.range_of(&pos).await?;
                if range.end.is_empty() || range.end >= end {
                    return Ok((keys, 0));
                }
                if past(&range.end) {
                    return Ok((keys, next_cursor(stop_after.unwrap_or(0))));
                }
                pos = range.end.clone();
                cursor = before(&range.end);
            }
        }
    }
}

fn next_cursor(stop: u16) -> u64 {
    let n = u64::from(stop) + 1;
    if n >= u64::from(SLOTS) { 0 } else { n }
}

/// A key that sorts before `k` but after every key before `k`'s predecessor that matters:
/// `k` without its last byte (a prefix sorts first). Used only as a KeyScan cursor, which the
/// range then clamps to its own start.
fn before(k: &Bytes) -> Bytes {
    k.slice(..k.len().saturating_sub(1))
}

async fn hscan(router: &DbRouter<'_>, key: Bytes, pattern: Option<Bytes>, novalues: bool) -> Reply {
    let mut cursor = Bytes::new();
    let mut out = Vec::new();
    let mut matcher = pattern.as_deref().map(|p| Matcher::new(Pattern::new(p)));
    loop {
        let op = KvOp::HScan {
            key: key.clone(),
            cursor: cursor.clone(),
            count: 1024,
        };
        let mut res = router.exec(vec![keyed(&key, op)]).await;
        let pairs = match res.pop() {
            Some(Ok(OpResult::Scan { pairs, next })) => {
                let done = next.is_none();
                if let Some(n) = next {
                    cursor = n;
                }
                (pairs, done)
            }
            Some(Ok(other)) => return unexpected(&other),
            Some(Err(e)) => return exec_error(&e),
            None => return Reply::err("internal error: no result"),
        };
        for (f, v) in pairs.0 {
            let keep = match matcher.as_mut() {
                Some(m) => m.matches(&f).await,
                None => true,
            };
            if keep {
                out.push(Reply::Bulk(f));
                if !novalues {
                    out.push(Reply::Bulk(v));
                }
            }
        }
        if pairs.1 {
            break;
        }
    }
    Reply::Array(vec![Reply::bulk(b"0"), Reply::Array(out)])
}
