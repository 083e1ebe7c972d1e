//! [`RaftLogCache`]: raft-rs `Storage` for one range, answered from memory.
//!
//! The durable copy of every entry and hard state is in the shard log (`engines::vlog`); the
//! shard's ready loop mirrors the same entries here, so raft-rs never waits on I/O. Entries
//! below the cache were compacted out of memory but stay in the shard log (it is not compacted
//! in this wave): their terms come from the log's in-memory index, and their bytes are fetched
//! asynchronously — `entries` answers `LogTemporarilyUnavailable` and queues a
//! [`FetchRequest`]; the ready loop reads them from the log, parks them in `fetched` and calls
//! `RawNode::on_entries_fetched`, after which raft-rs asks again and gets them.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use raft::eraftpb::{ConfState, Entry, HardState, Snapshot};
use raft::{GetEntriesContext, RaftState, Storage, StorageError};

/// Terms of entries below the cache (the shard log's index answers synchronously).
pub type TermLookup = Rc<dyn Fn(u64) -> Option<u64>>;

/// Entries raft-rs asked for that must be read from the shard log: `[low, high)`.
#[derive(Debug)]
pub struct FetchRequest {
    /// First index.
    pub low: u64,
    /// End (exclusive).
    pub high: u64,
    /// raft-rs's context, handed back with `on_entries_fetched`.
    pub context: GetEntriesContext,
}

/// Most entries fetched from the shard log per request.
pub const FETCH_MAX: u64 = 256;

/// The in-memory Raft log of one range.
#[derive(Default)]
pub struct RaftLogCache {
    hard: HardState,
    conf: ConfState,
    /// Index and term of the entry just before `entries[0]` (the compaction point).
    offset_index: u64,
    offset_term: u64,
    entries: Vec<Entry>,
    /// First index the shard log retains (0: nothing below the cache).
    log_first: u64,
    /// Terms below the cache.
    terms: Option<TermLookup>,
    /// Entries read back from the shard log, waiting for raft-rs to ask again.
    pub fetched: RefCell<BTreeMap<u64, Entry>>,
    /// Fetches raft-rs is waiting for.
    pub fetches: RefCell<Vec<FetchRequest>>,
}

impl std::fmt::Debug for RaftLogCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RaftLogCache")
            .field("offset_index", &self.offset_index)
            .field("entries", &self.entries.len())
            .field("log_first", &self.log_first)
            .finish_non_exhaustive()
    }
}

impl RaftLogCache {
    /// A cache that starts after `(index, term)` with the given state.
    pub fn new(hard: HardState, conf: ConfState, index: u64, term: u64) -> Self {
        Self {
            hard,
            conf,
            offset_index: index,
            offset_term: term,
            entries: Vec::new(),
            ..Self::default()
        }
    }

    /// Lets the cache answer for entries below it from the shard log, which retains
    /// `log_first..`.
    pub fn with_log(mut self, log_first: u64, terms: TermLookup) -> Self {
        self.log_first = log_first;
        self.terms = Some(terms);
        self
    }

    /// Sets the hard state (after it is durable).
    pub fn set_hard_state(&mut self, hs: HardState) {
        self.hard = hs;
    }

    /// Sets the conf state.
    pub fn set_conf_state(&mut self, cs: ConfState) {
        self.conf = cs;
    }

    /// Appends entries (after they are durable), dropping any conflicting suffix.
    pub fn append(&mut self, ents: &[Entry]) {
        let Some(first) = ents.first() else { return };
        let first_idx = first.index;
        assert!(
            first_idx > self.offset_index,
            "append at {first_idx} below the compaction point {}",
            self.offset_index
        );
        let keep = (first_idx - self.offset_index - 1) as usize;
        assert!(
            keep <= self.entries.len(),
            "gap in the raft log at {first_idx}"
        );
        self.entries.truncate(keep);
        self.entries.extend_from_slice(ents);
    }

    /// Drops cached entries up to and including `index` (they stay in the shard log).
    pub fn compact_to(&mut self, index: u64) {
        if index <= self.offset_index {
            return;
        }
        let n = ((index - self.offset_index) as usize).min(self.entries.len());
        if n == 0 {
            return;
        }
        let last = &self.entries[n - 1];
        self.offset_index = last.index;
        self.offset_term = last.term;
        self.entries.drain(..n);
    }

    /// Number of cached entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no entry is cached.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn last(&self) -> u64 {
        self.offset_index + self.entries.len() as u64
    }
}

impl Storage for RaftLogCache {
    fn initial_state(&self) -> raft::Result<RaftState> {
        Ok(RaftState::new(self.hard.clone(), self.conf.clone()))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        if low <= self.offset_index {
            if self.log_first == 0 || low < self.log_first {
                return Err(raft::Error::Store(StorageError::Compacted));
            }
            // Below the cache: from what was fetched, or fetch it.
            let fetched = self.fetched.borrow();
            let mut out = Vec::new();
            let mut i = low;
            while i < high && i <= self.offset_index {
                match fetched.get(&i) {
                    Some(e) => out.push(e.clone()),
                    None => break,
                }
                i += 1;
            }
            drop(fetched);
            if out.is_empty() {
                if !context.can_async() {
                    return Err(raft::Error::Store(StorageError::Unavailable));
                }
                let hi = high.min(self.offset_index + 1).min(low + FETCH_MAX);
                self.fetches.borrow_mut().push(FetchRequest {
                    low,
                    high: hi,
                    context,
                });
                return Err(raft::Error::Store(StorageError::LogTemporarilyUnavailable));
            }
            self.fetched.borrow_mut().retain(|&k, _| k >= i);
            raft::util::limit_size(&mut out, max_size.into());
            return Ok(out);
        }
        if high > self.last() + 1 {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        let lo = (low - self.offset_index - 1) as usize;
        let hi = (high - self.offset_index - 1) as usize;
        let mut out = self.entries[lo..hi].to_vec();
        raft::util::limit_size(&mut out, max_size.into());
        Ok(out)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        if idx == self.offset_index {
            return Ok(self.offset_term);
        }
        if idx < self.offset_index {
            if idx >= self.log_first && self.log_first != 0 {
                if let Some(t) = self.terms.as_ref().and_then(|f| f(idx)) {
                    return Ok(t);
                }
            }
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if idx > self.last() {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        Ok(self.entries[(idx - self.offset_index - 1) as usize].term)
    }

    fn first_index(&self) -> raft::Result<u64> {
        if self.log_first != 0 && self.log_first <= self.offset_index {
            return Ok(self.log_first);
        }
        Ok(self.offset_index + 1)
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.last())
    }

    fn snapshot(&self, _request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        Err(raft::Error::Store(
            StorageError::SnapshotTemporarilyUnavailable,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ent(index: u64, term: u64) -> Entry {
        Entry {
            index,
            term,
            ..Entry::default()
        }
    }

    #[test]
    fn append_truncates_conflicts_and_compaction_keeps_terms() {
        let mut c = RaftLogCache::default();
        c.append(&[ent(1, 1), ent(2, 1), ent(3, 1)]);
        c.append(&[ent(3, 2), ent(4, 2)]);
        assert_eq!(c.last_index().unwrap(), 4);
        assert_eq!(c.term(3).unwrap(), 2);
        c.compact_to(2);
        assert_eq!(c.first_index().unwrap(), 3);
        assert_eq!(c.term(2).unwrap(), 1);
        assert!(c.term(1).is_err());
        let e = c
            .entries(3, 5, None, GetEntriesContext::empty(false))
            .unwrap();
        assert_eq!(e.len(), 2);
        assert!(
            c.entries(2, 4, None, GetEntriesContext::empty(false))
                .is_err()
        );
    }
}
