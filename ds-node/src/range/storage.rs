//! [`RaftLogCache`]: raft-rs `Storage` for one range, answered from memory.
//!
//! The durable copy of every entry and hard state is in the shard log (`engines::vlog`); the
//! shard's ready loop appends there first (one group commit for all ranges) and then mirrors
//! the same entries here, so raft-rs never waits on I/O. Entries below `first` were compacted
//! out of the cache (they stay in the shard log, which recovery replays); raft-rs asks for them
//! only to catch up a far-behind follower, which needs a snapshot (not built yet: such a
//! request gets `SnapshotTemporarilyUnavailable`).

use raft::eraftpb::{ConfState, Entry, HardState, Snapshot};
use raft::{GetEntriesContext, RaftState, Storage, StorageError};

/// The in-memory Raft log of one range.
#[derive(Debug, Default)]
pub struct RaftLogCache {
    hard: HardState,
    conf: ConfState,
    /// Index and term of the entry just before `entries[0]` (the compaction point).
    offset_index: u64,
    offset_term: u64,
    entries: Vec<Entry>,
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
        }
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
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        if low <= self.offset_index {
            return Err(raft::Error::Store(StorageError::Compacted));
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
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if idx > self.last() {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        Ok(self.entries[(idx - self.offset_index - 1) as usize].term)
    }

    fn first_index(&self) -> raft::Result<u64> {
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
