//! Key counts of the whole keyspace per database, for `DBSIZE` and `INFO keyspace`: one
//! `DbStats` read per range (each range's state machine keeps its counts as it applies, so a
//! read is O(databases)), all ranges at once, summed — O(ranges), never a scan of keys.
//!
//! Every range is asked, whatever the database: a database is a prefix *after* the hash slot
//! (DESIGN §2), so every range of Redis data may hold keys of every database. Each answer
//! carries the bounds of the range that gave it; the answers must tile the keyspace exactly
//! (one range starting at the empty key, each starting where the previous one ended, the last
//! unbounded), or the counts would miss or repeat a part that a split, merge or move changed
//! meanwhile. When they do not, the routes are refreshed and the whole round is asked again,
//! at most [`ROUNDS`] times.
//!
//! A leaf of the crate: imports `route` only.

use std::fmt::Write as _;

use bytes::Bytes;
use net::keyspace::{DATABASES, Db};
use net::message::kv::{DbStat, KvOp, OpResult};

use crate::route::{ExecError, Router};

/// Rounds of asking every range before giving up on a keyspace that keeps changing.
pub const ROUNDS: usize = 4;

/// The keys of one database over the whole keyspace.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DbTotal {
    /// Keys (`DBSIZE`).
    pub keys: u64,
    /// Keys with an expiry.
    pub expires: u64,
    /// Sum of their expiry times, Unix ms (from each range's mean: within 1 ms per range).
    pub expire_at_sum: u128,
}

impl DbTotal {
    /// Redis's `avg_ttl` at `now_ms`: the mean time to live of the keys with an expiry, in
    /// milliseconds (0 without any, or when their mean expiry has passed).
    pub fn avg_ttl_ms(&self, now_ms: u64) -> u64 {
        if self.expires == 0 {
            return 0;
        }
        let mean = self.expire_at_sum / u128::from(self.expires);
        u64::try_from(mean)
            .unwrap_or(u64::MAX)
            .saturating_sub(now_ms)
    }
}

/// The totals of every database, by database number.
pub type Totals = [DbTotal; DATABASES as usize];

/// One range's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeCounts {
    /// The range's start.
    pub start: Bytes,
    /// The range's end (empty: unbounded).
    pub end: Bytes,
    /// Its databases with keys.
    pub dbs: Vec<DbStat>,
}

/// The key counts of every database, summed over all ranges.
pub async fn totals(router: &Router) -> Result<Totals, ExecError> {
    for _ in 0..ROUNDS {
        let version = router.version();
        let mut starts: Vec<Bytes> = router.ranges().into_iter().map(|r| r.start).collect();
        if starts.is_empty() {
            // No table yet: the range of the first key brings one.
            starts.push(router.range_of(b"").await?.start);
        }
        let ops = starts.into_iter().map(|s| (s, KvOp::DbStats {})).collect();
        let mut answers = Vec::new();
        for r in router.exec(ops).await {
            match r? {
                OpResult::DbStats { start, end, dbs } => {
                    answers.push(RangeCounts { start, end, dbs })
                }
                other => {
                    return Err(ExecError::Unavailable(format!(
                        "unexpected answer to DbStats: {other:?}"
                    )));
                }
            }
        }
        if let Some(t) = sum_tiling(answers) {
            return Ok(t);
        }
        router.refresh(version).await?;
    }
    Err(ExecError::Unavailable(format!(
        "key counts: the ranges changed in each of {ROUNDS} rounds; retry"
    )))
}

/// The sum of `answers` if they tile the keyspace exactly (the same range answering twice,
/// for two routes that now lead to it, counted once); `None` if a part is missing or
/// covered twice.
pub fn sum_tiling(mut answers: Vec<RangeCounts>) -> Option<Totals> {
    answers.sort_by(|a, b| a.start.cmp(&b.start));
    answers.dedup();
    let mut at = Bytes::new();
    let mut totals = Totals::default();
    for (i, a) in answers.iter().enumerate() {
        let last = i + 1 == answers.len();
        if a.start != at || (a.end.is_empty() != last) || (!last && a.end <= a.start) {
            return None;
        }
        for d in &a.dbs {
            let t = &mut totals[usize::from(d.db.get())];
            t.keys += d.keys;
            t.expires += d.expires;
            t.expire_at_sum += u128::from(d.mean_expire_at_ms) * u128::from(d.expires);
        }
        at = a.end.clone();
    }
    (!answers.is_empty()).then_some(totals)
}

/// The `# Keyspace` section of `INFO`, as Redis 7.0 writes it: one line per database with
/// keys, `db<N>:keys=<n>,expires=<n>,avg_ttl=<ms>`.
pub fn keyspace_section(totals: &Totals, now_ms: u64) -> String {
    let mut out = String::from("# Keyspace\r\n");
    for (n, t) in totals.iter().enumerate().filter(|(_, t)| t.keys > 0) {
        let _ = write!(
            out,
            "db{n}:keys={},expires={},avg_ttl={}\r\n",
            t.keys,
            t.expires,
            t.avg_ttl_ms(now_ms)
        );
    }
    out.push_str("\r\n");
    out
}

/// The keys of database `db` (`DBSIZE`).
pub fn keys_of(totals: &Totals, db: Db) -> u64 {
    totals[usize::from(db.get())].keys
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db(n: u8) -> Db {
        Db::new(n).unwrap_or_default()
    }

    fn counts(start: &'static [u8], end: &'static [u8], dbs: Vec<DbStat>) -> RangeCounts {
        RangeCounts {
            start: Bytes::from_static(start),
            end: Bytes::from_static(end),
            dbs,
        }
    }

    fn stat(n: u8, keys: u64, expires: u64, mean: u64) -> DbStat {
        DbStat {
            db: db(n),
            keys,
            expires,
            mean_expire_at_ms: mean,
        }
    }

    #[test]
    fn answers_that_tile_the_keyspace_are_summed_per_database() {
        let t = sum_tiling(vec![
            counts(b"r\x20", b"", vec![stat(0, 2, 1, 3_000), stat(5, 1, 0, 0)]),
            counts(b"", b"r\x20", vec![stat(0, 3, 1, 1_000)]),
            // The same range answering for two stale routes: counted once.
            counts(b"r\x20", b"", vec![stat(0, 2, 1, 3_000), stat(5, 1, 0, 0)]),
        ])
        .unwrap_or_default();
        assert_eq!(keys_of(&t, db(0)), 5);
        assert_eq!(keys_of(&t, db(5)), 1);
        assert_eq!(t[0].expires, 2);
        assert_eq!(t[0].avg_ttl_ms(1_500), 500);
        assert_eq!(t[0].avg_ttl_ms(9_000), 0);
        assert_eq!(
            keyspace_section(&t, 1_000),
            "# Keyspace\r\ndb0:keys=5,expires=2,avg_ttl=1000\r\ndb5:keys=1,expires=0,avg_ttl=0\r\n\r\n"
        );
    }

    #[test]
    fn a_gap_or_an_overlap_between_answers_is_refused() {
        let a = || counts(b"", b"r\x20", vec![stat(0, 1, 0, 0)]);
        // A split answered by its left half only: the right half is missing.
        assert_eq!(sum_tiling(vec![a(), counts(b"r\x30", b"", vec![])]), None);
        // The old range and its new right half both answered: an overlap.
        assert_eq!(
            sum_tiling(vec![
                counts(b"", b"", vec![]),
                counts(b"r\x20", b"", vec![])
            ]),
            None
        );
        assert_eq!(sum_tiling(vec![a()]), None, "the end is not covered");
        assert_eq!(sum_tiling(vec![]), None);
        assert!(sum_tiling(vec![a(), counts(b"r\x20", b"", vec![])]).is_some());
        assert_eq!(
            keyspace_section(&Totals::default(), 0),
            "# Keyspace\r\n\r\n"
        );
    }
}
