//! `FLUSHALL` on one range ([`KvOp::RangeFlush`](net::message::kv::KvOp)): every Redis entry
//! of the range (`'r' | …`: metadata entries, elements live or garbage, write ids) is deleted
//! when the entry applies, on every replica alike; raw keys and function libraries (`'f' | …`,
//! which Redis's `FLUSHALL` keeps too) stay. `FLUSHDB` (`KvOp::DbFlush`): every Redis entry
//! of one database (`'r' | slot | db | …`), the others' entries skipped by seeking
//! (`range::db_walk`).
//!
//! Synchronous: the apply step walks the range in pages and deletes each entry, O(entries of
//! the range) for the shard's apply loop (the client waits for it too). The O(1) form (a flush
//! marker in the range's durable state, older entries read as absent and reclaimed by the
//! background sweep) needs a per-entry write position the store does not keep yet.

use bytes::Bytes;
use net::keyspace::{Db, REDIS_PREFIX};
use net::message::RangeDescriptor;
use net::message::kv::OpResult;

use super::db_walk::{after, skip_to};
use super::store::KvStore;

/// Entries fetched per page of the walk.
const PAGE: usize = 1024;

/// Deletes every Redis entry in `range`; the result counts them.
pub fn flush_range<S: KvStore>(store: &mut S, range: &RangeDescriptor) -> OpResult {
    let redis_end = Bytes::from_static(&[REDIS_PREFIX + 1]);
    let end = if range.end.is_empty() || range.end > redis_end {
        redis_end
    } else {
        range.end.clone()
    };
    let start = range.start.clone().max(Bytes::from_static(&[REDIS_PREFIX]));
    let mut deleted: i64 = 0;
    if start >= end {
        return OpResult::Int { value: 0 };
    }
    loop {
        // Each page starts at the same place again: the previous page is gone.
        let page = store.scan_keys(&start, Some(&end), PAGE);
        if page.is_empty() {
            break;
        }
        for k in &page {
            if store.delete(k).is_some() {
                deleted = deleted.saturating_add(1);
            }
        }
    }
    OpResult::Int { value: deleted }
}

/// Deletes every Redis entry of database `db` in `range`; the result counts them.
pub fn flush_db<S: KvStore>(store: &mut S, range: &RangeDescriptor, db: Db) -> OpResult {
    let redis_end = Bytes::from_static(&[REDIS_PREFIX + 1]);
    let hi = if range.end.is_empty() || range.end > redis_end {
        redis_end
    } else {
        range.end.clone()
    };
    let mut lo = range.start.clone().max(Bytes::from_static(&[REDIS_PREFIX]));
    let mut deleted: i64 = 0;
    while lo < hi {
        let page = store.scan(&lo, Some(&hi), PAGE, false);
        let full = page.len() == PAGE;
        let mut next = None;
        for (k, _) in &page {
            if let Some(to) = skip_to(k, db) {
                next = Some(to);
                break;
            }
            if store.delete(k).is_some() {
                deleted = deleted.saturating_add(1);
            }
        }
        lo = match (next, page.last()) {
            (Some(to), _) => to,
            (None, Some((last, _))) if full => after(last),
            _ => break,
        };
    }
    OpResult::Int { value: deleted }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::range::store::{Entry, ModelStore};
    use bytes::Bytes;
    use net::{Epoch, RangeId};

    fn range(start: &'static [u8], end: &'static [u8]) -> RangeDescriptor {
        RangeDescriptor {
            id: RangeId(1),
            start: Bytes::from_static(start),
            end: Bytes::from_static(end),
            epoch: Epoch::default(),
            replicas: vec![],
            leader: None,
        }
    }

    #[test]
    fn a_db_flush_deletes_only_its_database_within_the_range() {
        use crate::keyspace::{field_key, meta_key};
        let db = |n| Db::new(n).expect("a database");
        let mut s = ModelStore::default();
        let e = || Entry {
            value: Bytes::from_static(b"v"),
            expire_at_ms: 0,
        };
        s.put(Bytes::from_static(b"raw"), e());
        for i in 0..2000u32 {
            let k = format!("key:{i}");
            for d in [0, 1, 2, 15] {
                s.put(meta_key(db(d), k.as_bytes()), e());
                s.put(field_key(db(d), k.as_bytes(), 1, b"f"), e());
            }
        }
        let everything = range(b"", b"");
        assert_eq!(
            flush_db(&mut s, &everything, db(1)),
            OpResult::Int { value: 4000 }
        );
        assert_eq!(s.len(), 1 + 3 * 4000);
        assert!(s.get(&meta_key(db(1), b"key:7")).is_none());
        assert!(s.get(&meta_key(db(0), b"key:7")).is_some());
        assert!(s.get(&meta_key(db(2), b"key:7")).is_some());
        // Only the part of database 15 inside the range.
        let half = range(b"r\x20\x00", b"");
        let OpResult::Int { value } = flush_db(&mut s, &half, db(15)) else {
            panic!("a count")
        };
        assert!(value > 0 && value < 4000, "{value}");
        assert!(s.get(&Bytes::from_static(b"raw")).is_some());
        assert_eq!(
            flush_db(&mut s, &everything, db(15)),
            OpResult::Int {
                value: 4000 - value
            }
        );
    }

    #[test]
    fn a_flush_deletes_every_redis_entry_of_its_range_and_keeps_raw_keys_and_libraries() {
        let mut s = ModelStore::default();
        let put = |s: &mut ModelStore, k: Vec<u8>, expire_at_ms: u64| {
            let e = Entry {
                value: Bytes::from_static(b"v"),
                expire_at_ms,
            };
            s.put(Bytes::from(k), e);
        };
        for i in 0..3000u32 {
            let mut k = vec![REDIS_PREFIX];
            k.extend_from_slice(format!("k{i:05}").as_bytes());
            put(&mut s, k, u64::from(i % 2));
        }
        // A raw key below, a function library and a raw key above the Redis prefix.
        for raw in [&b"a"[..], b"flib", b"z"] {
            put(&mut s, raw.to_vec(), 0);
        }
        let r = flush_range(&mut s, &range(b"r", b"rk01000"));
        assert_eq!(r, OpResult::Int { value: 1000 });
        assert_eq!(s.len(), 2003);
        assert_eq!(
            flush_range(&mut s, &range(b"", b"")),
            OpResult::Int { value: 2000 }
        );
        assert_eq!(s.len(), 3, "raw keys and libraries stay");
        assert_eq!(
            flush_range(&mut s, &range(b"s", b"")),
            OpResult::Int { value: 0 }
        );
    }
}
