//! [`RaftLogCache`]: raft-rs `Storage` for one range, answered from memory.
//!
//! The durable copy of every entry and hard state is in the shard log (`engines::vlog`); the
//! shard's ready loop mirrors the same entries here, so raft-rs never waits on I/O. Three
//! points divide a range's log:
//! - the *truncation point* `(trunc_index, trunc_term)`: everything at or below it is covered
//!   by the range's checkpoint and may be gone from the shard log (raft-rs sees `Compacted`
//!   and sends a snapshot instead);
//! - the *cache point* `(offset_index, offset_term)` ≥ the truncation point: entries in
//!   `(trunc, offset]` were dropped from memory but are still in the shard log: their terms
//!   come from the log's in-memory index, and their bytes are fetched asynchronously —
//!   `entries` answers `LogTemporarilyUnavailable` and queues a [`FetchRequest`]; the ready
//!   loop reads them from the log, parks them in `fetched` and calls
//!   `RawNode::on_entries_fetched`, after which raft-rs asks again and gets them;
//! - entries above the cache point are in memory.
//!
//! `snapshot()` answers from the latest durable checkpoint (only its identity: the bytes are
//! streamed from the checkpoint file by the sender, see `server::snapshot`).

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

/// The latest durable checkpoint of a range: what a snapshot sent now would contain.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SnapshotPoint {
    /// Applied index of the checkpoint.
    pub index: u64,
    /// Term of that entry.
    pub term: u64,
    /// The Raft configuration at that index.
    pub conf: ConfState,
}

/// The in-memory Raft log of one range.
#[derive(Default)]
pub struct RaftLogCache {
    hard: HardState,
    conf: ConfState,
    /// Everything at or below this index is covered by the checkpoint (maybe gone from the
    /// shard log).
    trunc_index: u64,
    trunc_term: u64,
    /// Index and term of the entry just before `entries[0]` (≥ the truncation point).
    offset_index: u64,
    offset_term: u64,
    entries: Vec<Entry>,
    /// Terms of entries in `(trunc, offset)`, from the shard log's index.
    terms: Option<TermLookup>,
    /// The latest durable checkpoint.
    snapshot: Option<SnapshotPoint>,
    /// Set when raft-rs wanted a snapshot newer than the latest checkpoint.
    pub want_checkpoint: std::cell::Cell<bool>,
    /// Entries read back from the shard log, waiting for raft-rs to ask again.
    pub fetched: RefCell<BTreeMap<u64, Entry>>,
    /// Fetches raft-rs is waiting for.
    pub fetches: RefCell<Vec<FetchRequest>>,
}

impl std::fmt::Debug for RaftLogCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RaftLogCache")
            .field("trunc_index", &self.trunc_index)
            .field("offset_index", &self.offset_index)
            .field("entries", &self.entries.len())
            .finish_non_exhaustive()
    }
}

impl RaftLogCache {
    /// A cache whose log starts after the truncation point `(index, term)`.
    pub fn new(hard: HardState, conf: ConfState, index: u64, term: u64) -> Self {
        Self {
            hard,
            conf,
            trunc_index: index,
            trunc_term: term,
            offset_index: index,
            offset_term: term,
            ..Self::default()
        }
    }

    /// Lets the cache answer terms of entries between the truncation and cache points from
    /// the shard log.
    pub fn with_log(mut self, terms: TermLookup) -> Self {
        self.terms = Some(terms);
        self
    }

    /// Starts the cached entries after `(index, term)` instead of the truncation point (the
    /// entries between stay in the shard log, answered through [`Self::with_log`]). Only on
    /// an empty cache, at or above the truncation point.
    pub fn resume_after(&mut self, index: u64, term: u64) {
        if self.entries.is_empty() && index >= self.trunc_index {
            self.offset_index = index;
            self.offset_term = term;
        }
    }

    /// Records the latest durable checkpoint.
    pub fn set_snapshot(&mut self, p: SnapshotPoint) {
        if self.snapshot.as_ref().is_none_or(|s| s.index <= p.index) {
            self.snapshot = Some(p);
            self.want_checkpoint.set(false);
        }
    }

    /// The latest durable checkpoint.
    pub fn snapshot_point(&self) -> Option<&SnapshotPoint> {
        self.snapshot.as_ref()
    }

    /// Sets the hard state (after it is durable).
    pub fn set_hard_state(&mut self, hs: HardState) {
        self.hard = hs;
    }

    /// The hard state.
    pub fn hard_state(&self) -> &HardState {
        &self.hard
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
            first_idx > self.trunc_index,
            "append at {first_idx} below the truncation point {}",
            self.trunc_index
        );
        if first_idx <= self.offset_index {
            // Overwrites entries below the cache point: the cache restarts there.
            self.entries.clear();
            self.offset_index = first_idx - 1;
            self.offset_term = self.term(first_idx - 1).unwrap_or(0);
        }
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

    /// Moves the truncation point to `(index, term)` after the shard log dropped the entries
    /// at and below `index` (a checkpoint at or above `index` is durable).
    pub fn truncate_to(&mut self, index: u64, term: u64) {
        if index <= self.trunc_index {
            return;
        }
        if index >= self.offset_index {
            let n = ((index - self.offset_index) as usize).min(self.entries.len());
            self.entries.drain(..n);
            self.offset_index = index;
            self.offset_term = term;
        }
        self.trunc_index = index;
        self.trunc_term = term;
        self.fetched.borrow_mut().retain(|&k, _| k > index);
    }

    /// Replaces the whole log by a snapshot at `p` (a follower installing a snapshot).
    pub fn apply_snapshot(&mut self, p: SnapshotPoint) {
        self.entries.clear();
        self.trunc_index = p.index;
        self.trunc_term = p.term;
        self.offset_index = p.index;
        self.offset_term = p.term;
        self.conf = p.conf.clone();
        if self.hard.commit < p.index {
            self.hard.commit = p.index;
        }
        self.hard.term = self.hard.term.max(p.term);
        self.fetched.borrow_mut().clear();
        self.set_snapshot(p);
    }

    /// The truncation point's index.
    pub fn truncated_index(&self) -> u64 {
        self.trunc_index
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
        if low <= self.trunc_index {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if low <= self.offset_index {
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
        if idx == self.trunc_index {
            return Ok(self.trunc_term);
        }
        if idx == self.offset_index {
            return Ok(self.offset_term);
        }
        if idx < self.trunc_index {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if idx < self.offset_index {
            return match self.terms.as_ref().and_then(|f| f(idx)) {
                Some(t) => Ok(t),
                None => Err(raft::Error::Store(StorageError::Unavailable)),
            };
        }
        if idx > self.last() {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        Ok(self.entries[(idx - self.offset_index - 1) as usize].term)
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.trunc_index + 1)
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.last())
    }

    fn snapshot(&self, request_index: u64, to: u64) -> raft::Result<Snapshot> {
        // The receiver must be in the snapshot's configuration (raft-rs refuses it
        // otherwise): a replica added after the last checkpoint needs a newer one.
        let has = |c: &ConfState| c.voters.contains(&to) || c.learners.contains(&to);
        match &self.snapshot {
            Some(p) if p.index >= request_index && p.index > 0 && has(&p.conf) => {
                let mut s = Snapshot::default();
                let m = s.mut_metadata();
                m.index = p.index;
                m.term = p.term;
                m.set_conf_state(p.conf.clone());
                Ok(s)
            }
            _ => {
                self.want_checkpoint.set(true);
                Err(raft::Error::Store(
                    StorageError::SnapshotTemporarilyUnavailable,
                ))
            }
        }
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
        assert_eq!(c.first_index().unwrap(), 1);
        assert_eq!(c.term(2).unwrap(), 1);
        c.truncate_to(2, 1);
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

    /// A cache resumed after an entry above the truncation point holds only the entries
    /// after it; the ones between are asked of the shard log, and a gap is still refused.
    #[test]
    fn a_resumed_cache_starts_after_the_given_entry_and_asks_the_log_below_it() {
        let mut c = RaftLogCache::new(HardState::default(), ConfState::default(), 10, 1)
            .with_log(std::rc::Rc::new(|i| (i > 10 && i < 20).then_some(2)));
        c.resume_after(20, 3);
        c.append(&[ent(21, 3), ent(22, 3)]);
        assert_eq!(c.first_index().unwrap(), 11);
        assert_eq!(c.last_index().unwrap(), 22);
        assert_eq!(c.term(20).unwrap(), 3);
        assert_eq!(c.term(15).unwrap(), 2, "answered by the shard log");
        assert_eq!(c.term(21).unwrap(), 3);
        let e = c
            .entries(21, 23, None, GetEntriesContext::empty(false))
            .unwrap();
        assert_eq!(e.len(), 2);
        c.resume_after(30, 3);
        assert_eq!(c.last_index().unwrap(), 22, "only an empty cache resumes");
    }
}

#[cfg(test)]
mod snapshot_tests {
    use super::*;

    fn ent(index: u64, term: u64) -> Entry {
        Entry {
            index,
            term,
            ..Entry::default()
        }
    }

    #[test]
    fn snapshot_comes_from_the_latest_checkpoint_and_installing_one_resets_the_log() {
        let mut c = RaftLogCache::new(HardState::default(), ConfState::default(), 5, 5);
        c.append(&[ent(6, 5), ent(7, 6)]);
        assert!(c.snapshot(0, 2).is_err(), "no checkpoint yet");
        assert!(c.want_checkpoint.get());
        c.set_snapshot(SnapshotPoint {
            index: 7,
            term: 6,
            conf: ConfState::default(),
        });
        assert!(!c.want_checkpoint.get());
        assert!(
            c.snapshot(7, 2).is_err(),
            "replica 2 is not in the snapshot's configuration"
        );
        assert!(c.want_checkpoint.get());
        let mut conf = ConfState::default();
        conf.learners.push(2);
        c.set_snapshot(SnapshotPoint {
            index: 7,
            term: 6,
            conf,
        });
        assert_eq!(c.snapshot(7, 2).unwrap().get_metadata().index, 7);
        assert!(c.snapshot(8, 2).is_err(), "older than requested");
        c.apply_snapshot(SnapshotPoint {
            index: 20,
            term: 9,
            conf: ConfState::default(),
        });
        assert_eq!(c.first_index().unwrap(), 21);
        assert_eq!(c.last_index().unwrap(), 20);
        assert_eq!(c.term(20).unwrap(), 9);
        assert_eq!(c.hard_state().commit, 20);
        c.append(&[ent(21, 9)]);
        assert_eq!(c.last_index().unwrap(), 21);
    }
}
