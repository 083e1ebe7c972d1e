//! Walking one Redis database of a range. The databases of a slot are contiguous, but a range
//! covering many slots interleaves them (`slot 0: db 0..15, slot 1: db 0..15, …`), so a walk
//! of database `db` (SCAN, FLUSHDB) seeks over every other database's entries instead of
//! reading them: at most two seeks per slot, plus the entries of `db` itself.

use bytes::{BufMut, Bytes, BytesMut};

use super::store::KvStore;
use crate::keyspace::{Db, REDIS_PREFIX, SLOTS, db_start};

/// The keys one `SCAN` step examined in its database, without their values.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct DbPage {
    /// Entries of the database, in key order (metadata and element entries alike).
    pub keys: Vec<Bytes>,
    /// The last entry examined when the budget ran out (the cursor to continue after);
    /// `None` when the walk reached the end of the range's Redis data.
    pub next: Option<Bytes>,
}

/// The part of range `[range_start, range_end)` (`range_end` empty: unbounded) that a `SCAN`
/// continuing after `cursor` (empty: from the start) walks: Redis data only.
pub fn scan_bounds(range_start: &[u8], range_end: &[u8], cursor: &[u8]) -> (Bytes, Option<Bytes>) {
    let redis_end: &[u8] = &[REDIS_PREFIX + 1];
    let from = if cursor.is_empty() {
        Bytes::from_static(&[REDIS_PREFIX])
    } else {
        after(cursor)
    };
    let lo = from
        .max(Bytes::copy_from_slice(range_start))
        .max(Bytes::from_static(&[REDIS_PREFIX]));
    let hi = if range_end.is_empty() || range_end > redis_end {
        redis_end
    } else {
        range_end
    };
    (lo, Some(Bytes::copy_from_slice(hi)))
}

/// One `SCAN` step over database `db` in `[lo, hi)`: examines at most `count` entries
/// (an entry of another database costs one and is followed by a seek past its database),
/// reading keys only — which values the step needs is the caller's business, and the cold
/// planner walks exactly these keys to know what to load.
pub fn scan_db<S: KvStore + ?Sized>(
    store: &S,
    db: Db,
    mut lo: Bytes,
    hi: Option<&[u8]>,
    count: usize,
) -> DbPage {
    let mut budget = count.max(1);
    let mut page = DbPage::default();
    loop {
        let keys = store.scan_keys(&lo, hi, budget);
        let full = keys.len() == budget;
        let mut seek = None;
        let mut last = None;
        for k in keys {
            budget -= 1;
            if let Some(to) = skip_to(&k, db) {
                seek = Some(to);
                last = Some(k);
                break;
            }
            page.keys.push(k.clone());
            last = Some(k);
        }
        let next = match seek {
            Some(to) if hi.is_none_or(|h| to[..] < *h) => to,
            Some(_) => return page,
            None if full => after(last.as_deref().unwrap_or_default()),
            None => return page,
        };
        if budget == 0 {
            page.next = last;
            return page;
        }
        lo = next;
    }
}

/// `None` if internal key `k` is an entry of database `db`; otherwise where the next entry
/// of `db` can be, at or after that key: a key greater than `k`, or the end of Redis data
/// (`'r' + 1`, where every walk stops).
pub fn skip_to(k: &[u8], db: Db) -> Option<Bytes> {
    let end = || Bytes::from_static(&[REDIS_PREFIX + 1]);
    match k {
        [] => Some(db_start(0, db)),
        [first, ..] if *first < REDIS_PREFIX => Some(db_start(0, db)),
        [first, ..] if *first > REDIS_PREFIX => Some(end()),
        [_] => Some(db_start(0, db)),
        // A prefix of a slot: that slot's start of `db` sorts after it (a raw key such as
        // `"raw"` reads as a slot past the last: the walk ends).
        [_, hi] => {
            let slot = u16::from_be_bytes([*hi, 0]);
            Some(if slot < SLOTS {
                db_start(slot, db)
            } else {
                end()
            })
        }
        [_, hi, lo] => {
            let slot = u16::from_be_bytes([*hi, *lo]);
            Some(if slot < SLOTS {
                db_start(slot, db)
            } else {
                end()
            })
        }
        [_, hi, lo, d, ..] => {
            let slot = u16::from_be_bytes([*hi, *lo]);
            if slot >= SLOTS {
                Some(end())
            } else if *d == db.get() {
                None
            } else if *d < db.get() {
                Some(db_start(slot, db))
            } else if slot + 1 < SLOTS {
                Some(db_start(slot + 1, db))
            } else {
                Some(end())
            }
        }
    }
}

/// The smallest key strictly greater than `key`.
pub fn after(key: &[u8]) -> Bytes {
    let mut k = BytesMut::with_capacity(key.len() + 1);
    k.put_slice(key);
    k.put_u8(0);
    k.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keyspace::{field_key, meta_key, slot};
    use proptest::strategy::Strategy;

    fn db(n: u8) -> Db {
        Db::new(n).expect("a database")
    }

    #[test]
    fn entries_of_the_database_are_kept_and_others_skipped_forward() {
        let k = b"{t}k";
        let s = slot(k);
        assert_eq!(skip_to(&meta_key(db(3), k), db(3)), None);
        assert_eq!(skip_to(&field_key(db(3), k, 1, b"f"), db(3)), None);
        assert_eq!(
            skip_to(&meta_key(db(1), k), db(3)),
            Some(db_start(s, db(3)))
        );
        assert_eq!(
            skip_to(&meta_key(db(7), k), db(3)),
            Some(db_start(s + 1, db(3)))
        );
        assert_eq!(skip_to(b"a raw key", db(3)), Some(db_start(0, db(3))));
        assert_eq!(skip_to(b"t", db(3)), Some(Bytes::from_static(b"s")));
        // Raw keys that start with 'r' (slots past the last): the end, never backwards.
        for raw in [&b"ra"[..], b"raw", b"raw key"] {
            assert_eq!(
                skip_to(raw, db(3)),
                Some(Bytes::from_static(b"s")),
                "{raw:?}"
            );
        }
        assert_eq!(skip_to(b"r\x00", db(3)), Some(db_start(0, db(3))));
    }

    proptest::proptest! {
        #[test]
        fn a_skip_always_moves_forward_and_never_past_an_entry_of_the_database(
            k in (proptest::prelude::any::<bool>(), proptest::collection::vec(proptest::prelude::any::<u8>(), 0..12))
                .prop_map(|(redis, mut k)| {
                    // Half of the keys start with 'r', where the cases are.
                    if redis { k.insert(0, REDIS_PREFIX); }
                    k
                }),
            d in 0u8..16,
            key in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..8),
        ) {
            let d = db(d);
            if let Some(to) = skip_to(&k, d) {
                proptest::prop_assert!(to[..] > k[..] || to[..] == [REDIS_PREFIX + 1]);
                // No entry of `d` lies strictly between `k` and the target.
                let m = meta_key(d, &key);
                proptest::prop_assert!(!(m[..] > k[..] && m < to));
            }
        }
    }
}
