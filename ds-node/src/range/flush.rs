//! `FLUSHALL`/`FLUSHDB` on one range ([`KvOp::RangeFlush`](net::message::kv::KvOp)): every
//! entry of the range — raw keys, Redis metadata entries, hash fields (live or garbage) — is
//! deleted when the entry applies, on every replica alike.
//!
//! Synchronous: the apply step walks the range in pages and deletes each entry, O(entries of
//! the range) for the shard's apply loop (the client waits for it too). The O(1) form (a flush
//! marker in the range's durable state, older entries read as absent and reclaimed by the
//! background sweep) needs a per-entry write position the store does not keep yet.

use net::message::RangeDescriptor;
use net::message::kv::OpResult;

use super::store::KvStore;

/// Entries fetched per page of the walk.
const PAGE: usize = 1024;

/// Deletes every entry in `range`; the result counts them.
pub fn flush_range<S: KvStore>(store: &mut S, range: &RangeDescriptor) -> OpResult {
    let end = (!range.end.is_empty()).then_some(&range.end[..]);
    let mut deleted: i64 = 0;
    loop {
        // Each page starts at the range's start again: the previous page is gone.
        let page = store.scan_keys(&range.start, end, PAGE);
        if page.is_empty() {
            break;
        }
        for k in &page {
            if store.delete(k) {
                deleted = deleted.saturating_add(1);
            }
        }
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
    fn a_flush_deletes_every_entry_of_its_range_and_nothing_outside() {
        let mut s = ModelStore::default();
        for i in 0..3000u32 {
            let k = format!("k{i:05}");
            let e = Entry {
                value: Bytes::from_static(b"v"),
                expire_at_ms: u64::from(i % 2),
            };
            s.put(Bytes::from(k), e);
        }
        s.put(
            Bytes::from_static(b"a"),
            Entry {
                value: Bytes::new(),
                expire_at_ms: 0,
            },
        );
        s.put(
            Bytes::from_static(b"z"),
            Entry {
                value: Bytes::new(),
                expire_at_ms: 0,
            },
        );
        let r = flush_range(&mut s, &range(b"k", b"l"));
        assert_eq!(r, OpResult::Int { value: 3000 });
        assert_eq!(s.len(), 2);
        assert_eq!(
            flush_range(&mut s, &range(b"", b"")),
            OpResult::Int { value: 2 }
        );
        assert!(s.is_empty());
    }
}
