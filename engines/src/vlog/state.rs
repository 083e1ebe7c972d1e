//! The log's in-memory state: per-range Raft entry index, latest per-range metadata records,
//! per-segment liveness counts, and the bounded cache of recent entries. The same `apply`
//! runs after a commit and during recovery, so both build the same state (invariant 6).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::rc::Rc;

use super::record::{EntryRecord, HardState, LogRecord, TruncateMode};
use super::types::{LogIndex, RangeId, Seq, Term};
use crate::masstree::LogPointer;

/// Where one retained Raft entry lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct EntryLoc {
    pub term: Term,
    pub ptr: LogPointer,
}

/// The retained Raft log of one range, plus its latest metadata records.
#[derive(Debug, Default)]
pub(crate) struct RangeLog {
    /// Index of `entries[0]`; when empty, the index the next entry is expected at or above.
    pub first: u64,
    pub entries: VecDeque<EntryLoc>,
    pub hard_state: Option<(HardState, LogPointer)>,
    pub conf_state: Option<(Vec<u8>, LogPointer)>,
    /// The latest compaction record (index, where it is).
    pub compact: Option<(LogIndex, LogPointer)>,
    /// The latest suffix truncation not yet superseded by an entry append at or below it.
    pub suffix: Option<(LogIndex, LogPointer)>,
}

impl RangeLog {
    /// Returns the last index, or `first - 1` when empty.
    pub fn last(&self) -> u64 {
        (self.first + self.entries.len() as u64).saturating_sub(1)
    }

    pub fn get(&self, index: u64) -> Option<&EntryLoc> {
        let i = index.checked_sub(self.first)?;
        self.entries.get(usize::try_from(i).ok()?)
    }
}

/// Liveness counts of one segment of the chain.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SegmentUsage {
    /// The segment's position in the log.
    pub segment_seq: u64,
    /// Retained Raft entries in it.
    pub live_entries: u64,
    /// Latest hard state / conf state / compaction records of ranges in it.
    pub meta_records: u64,
    /// Records written to it.
    pub records: u64,
    /// Relocated-value records written to it.
    pub relocated: u64,
    /// Record bytes written to it.
    pub bytes: u64,
}

/// The last checkpoint record seen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckpointInfo {
    /// Its sequence number.
    pub seq: Seq,
    /// Where it is.
    pub pointer: LogPointer,
    /// The caller's data.
    pub data: Vec<u8>,
}

/// Bounded FIFO cache of recently appended entries.
#[derive(Debug, Default)]
pub(crate) struct EntryCache {
    map: HashMap<(RangeId, u64), (u64, Rc<EntryRecord>)>,
    fifo: VecDeque<((RangeId, u64), u64)>,
    bytes: usize,
    max_bytes: usize,
    stamp: u64,
}

impl EntryCache {
    pub fn new(max_bytes: usize) -> Self {
        Self {
            max_bytes,
            ..Self::default()
        }
    }

    pub fn get(&self, range: RangeId, index: u64) -> Option<Rc<EntryRecord>> {
        self.map.get(&(range, index)).map(|(_, e)| Rc::clone(e))
    }

    pub fn insert(&mut self, e: Rc<EntryRecord>) {
        let cost = e.payload.len() + 64;
        if self.max_bytes == 0 || cost > self.max_bytes {
            return;
        }
        let key = (e.range, e.index.0);
        self.remove(key.0, key.1);
        self.stamp += 1;
        self.map.insert(key, (self.stamp, e));
        self.fifo.push_back((key, self.stamp));
        self.bytes += cost;
        while self.bytes > self.max_bytes || self.fifo.len() > 2 * self.map.len() + 16 {
            let Some((k, s)) = self.fifo.pop_front() else {
                break;
            };
            if self.map.get(&k).is_some_and(|(st, _)| *st == s) {
                self.remove(k.0, k.1);
            }
        }
    }

    pub fn remove(&mut self, range: RangeId, index: u64) {
        if let Some((_, e)) = self.map.remove(&(range, index)) {
            self.bytes -= e.payload.len() + 64;
        }
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

/// Everything recovery rebuilds and commits update.
#[derive(Debug, Default)]
pub(crate) struct State {
    pub ranges: BTreeMap<RangeId, RangeLog>,
    /// Chain segments by store segment id.
    pub segments: BTreeMap<u32, SegmentUsage>,
    pub last_checkpoint: Option<CheckpointInfo>,
    pub cache: EntryCache,
}

impl State {
    fn seg(&mut self, ptr: &LogPointer) -> &mut SegmentUsage {
        self.segments.entry(ptr.segment.0).or_default()
    }

    fn drop_entry(&mut self, range: RangeId, index: u64, loc: EntryLoc) {
        self.seg(&loc.ptr).live_entries -= 1;
        self.cache.remove(range, index);
    }

    fn replace_meta(&mut self, old: Option<LogPointer>, new: LogPointer) {
        if let Some(o) = old {
            self.seg(&o).meta_records -= 1;
        }
        self.seg(&new).meta_records += 1;
    }

    /// Applies one durable record at `ptr` (the record's pointer) with sequence `seq`.
    /// `cached` is the entry to put in the cache, if the caller has it in memory.
    pub fn apply(&mut self, rec: &LogRecord, seq: Seq, ptr: LogPointer, encoded_len: usize) {
        {
            let s = self.seg(&ptr);
            s.records += 1;
            s.bytes += encoded_len as u64;
        }
        match rec {
            LogRecord::Entry(e) => self.apply_entry(e.range, e.index.0, e.term, ptr),
            LogRecord::HardState { range, state } => {
                let r = self.ranges.entry(*range).or_default();
                let old = r.hard_state.replace((*state, ptr)).map(|(_, p)| p);
                self.replace_meta(old, ptr);
            }
            LogRecord::ConfState { range, data } => {
                let r = self.ranges.entry(*range).or_default();
                let old = r.conf_state.replace((data.clone(), ptr)).map(|(_, p)| p);
                self.replace_meta(old, ptr);
            }
            LogRecord::Relocated { .. } => self.seg(&ptr).relocated += 1,
            LogRecord::Checkpoint { data } => {
                let old = self
                    .last_checkpoint
                    .replace(CheckpointInfo {
                        seq,
                        pointer: ptr,
                        data: data.clone(),
                    })
                    .map(|c| c.pointer);
                self.replace_meta(old, ptr);
            }
            LogRecord::Truncate { range, mode, index } => {
                self.apply_truncate(*range, *mode, index.0, ptr);
            }
        }
    }

    fn apply_entry(&mut self, range: RangeId, index: u64, term: Term, ptr: LogPointer) {
        let r = self.ranges.entry(range).or_default();
        let mut dropped = Vec::new();
        if r.entries.is_empty() {
            r.first = index;
        } else if index < r.first {
            // Below the retained log: the range restarts here. (Raft never does this; the
            // rule makes replay from any segment on converge to the live state, see the
            // format doc, invariant 6.)
            let first = r.first;
            dropped.extend(
                r.entries
                    .drain(..)
                    .enumerate()
                    .map(|(i, l)| (first + i as u64, l)),
            );
            r.first = index;
        } else if index <= r.last() {
            // Raft §5.3: a conflicting entry replaces the suffix from its index on.
            while r.last() >= index {
                let Some(l) = r.entries.pop_back() else { break };
                dropped.push((r.first + r.entries.len() as u64, l));
            }
        } else if index > r.last() + 1 {
            // A gap: the range jumped (snapshot); the old entries are no longer its log.
            let first = r.first;
            dropped.extend(
                r.entries
                    .drain(..)
                    .enumerate()
                    .map(|(i, l)| (first + i as u64, l)),
            );
            r.first = index;
        }
        r.entries.push_back(EntryLoc { term, ptr });
        debug_assert_eq!(r.last(), index);
        // Once an entry is appended after a suffix truncation, the truncation record is no
        // longer needed to rebuild the range (the append itself dropped or follows everything
        // it dropped), and re-appending it later (relocation) would wrongly drop new entries.
        let superseded = r.suffix.take().map(|(_, p)| p);
        if let Some(p) = superseded {
            self.seg(&p).meta_records -= 1;
        }
        for (i, l) in dropped {
            self.drop_entry(range, i, l);
        }
        self.seg(&ptr).live_entries += 1;
    }

    fn apply_truncate(&mut self, range: RangeId, mode: TruncateMode, index: u64, ptr: LogPointer) {
        let r = self.ranges.entry(range).or_default();
        let mut dropped = Vec::new();
        match mode {
            TruncateMode::Compact => {
                while r.first < index {
                    match r.entries.pop_front() {
                        Some(l) => dropped.push((r.first, l)),
                        None => {
                            r.first = index;
                            break;
                        }
                    }
                    r.first += 1;
                }
                let old = r.compact.replace((LogIndex(index), ptr)).map(|(_, p)| p);
                self.replace_meta(old, ptr);
            }
            TruncateMode::Suffix => {
                while !r.entries.is_empty() && r.last() >= index {
                    let Some(l) = r.entries.pop_back() else { break };
                    dropped.push((r.first + r.entries.len() as u64, l));
                }
                let old = r.suffix.replace((LogIndex(index), ptr)).map(|(_, p)| p);
                self.replace_meta(old, ptr);
            }
        }
        for (i, l) in dropped {
            self.drop_entry(range, i, l);
        }
    }

    /// Returns the records that must be re-appended before segment `seg` can be freed: the
    /// latest hard state, conf state, compaction and suffix truncation of every range, and the
    /// last checkpoint, that lie in it.
    pub fn metas_in(&self, seg: u32) -> Vec<LogRecord> {
        let mut out = Vec::new();
        if let Some(c) = &self.last_checkpoint {
            if c.pointer.segment.0 == seg {
                out.push(LogRecord::Checkpoint {
                    data: c.data.clone(),
                });
            }
        }
        for (range, r) in &self.ranges {
            if let Some((s, p)) = &r.hard_state {
                if p.segment.0 == seg {
                    out.push(LogRecord::HardState {
                        range: *range,
                        state: *s,
                    });
                }
            }
            if let Some((d, p)) = &r.conf_state {
                if p.segment.0 == seg {
                    out.push(LogRecord::ConfState {
                        range: *range,
                        data: d.clone(),
                    });
                }
            }
            for (mode, m) in [
                (TruncateMode::Compact, &r.compact),
                (TruncateMode::Suffix, &r.suffix),
            ] {
                if let Some((i, p)) = m {
                    if p.segment.0 == seg {
                        out.push(LogRecord::Truncate {
                            range: *range,
                            mode,
                            index: *i,
                        });
                    }
                }
            }
        }
        out
    }
}
