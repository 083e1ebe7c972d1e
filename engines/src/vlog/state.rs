//! The log's in-memory state: per-range Raft entry index, latest per-range metadata records,
//! per-segment liveness counts, and the bounded cache of recent entries. The same `apply`
//! runs after a commit and during recovery, so both build the same state (invariant 6).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::rc::Rc;

use super::record::{
    ENTRY_FIXED_LEN, EntryRecord, FragmentHead, HardState, LogRecord, RECORD_HEADER_LEN,
    TruncateMode,
};
use super::types::{LogIndex, RangeId, Seq, Term};
use crate::pointer::LogPointer;

/// An Fx-style hasher for the log's internal integer keys (ticket ids, (range, index)):
/// SipHash showed up at 15–20 % of the append path. The keys are not attacker-chosen.
#[derive(Default, Clone, Copy, Debug)]
pub(crate) struct FastHasher(u64);

impl Hasher for FastHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.write_u64(u64::from(*b));
        }
    }

    fn write_u64(&mut self, i: u64) {
        self.0 = (self.0.rotate_left(5) ^ i).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
}

/// A `HashMap` with [`FastHasher`].
pub(crate) type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FastHasher>>;

/// Where one retained Raft entry lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct EntryLoc {
    pub term: Term,
    pub ptr: LogPointer,
}

/// Where the fragments of one fragmented entry live (format §3, kind 7).
#[derive(Debug)]
pub(crate) struct Fragments {
    /// Length of the entry's whole payload.
    pub total: u64,
    /// The fragments' record pointers, in fragment order.
    pub parts: Box<[LogPointer]>,
}

/// The durable fragments of the entry being assembled (they are contiguous in the log): the
/// entry joins the index once its last fragment is durable.
#[derive(Debug)]
pub(crate) struct Assembly {
    pub head: FragmentHead,
    /// Seq of the first fragment.
    pub first_seq: Seq,
    /// Record pointers and encoded lengths of the fragments so far.
    pub parts: Vec<(LogPointer, usize)>,
    /// Payload bytes so far.
    pub bytes: u64,
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
    /// The retained entries written as fragments, by index (their `EntryLoc` points at the
    /// first fragment).
    pub fragmented: BTreeMap<u64, Rc<Fragments>>,
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

    /// Returns the payload length of retained entry `index`.
    pub fn payload_len(&self, index: u64) -> Option<u64> {
        let l = self.get(index)?;
        Some(match self.fragmented.get(&index) {
            Some(f) => f.total,
            None => {
                u64::from(l.ptr.len).saturating_sub((RECORD_HEADER_LEN + ENTRY_FIXED_LEN) as u64)
            }
        })
    }

    /// Removes and returns the fragments of the dropped entries `dropped` (cheap when the
    /// range has no fragmented entry).
    fn take_fragments(&mut self, dropped: &[(u64, EntryLoc)]) -> Vec<Rc<Fragments>> {
        if self.fragmented.is_empty() {
            return Vec::new();
        }
        dropped
            .iter()
            .filter_map(|(i, _)| self.fragmented.remove(i))
            .collect()
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

/// The cached window of one range: entries `first .. first + entries.len()`, contiguous.
#[derive(Debug, Default)]
struct RangeCache {
    first: u64,
    entries: VecDeque<Rc<EntryRecord>>,
}

/// Bounded cache of recently appended entries, per range: each range keeps a contiguous
/// window of its newest entries (so a follower a little behind reads them from memory);
/// a global FIFO of insertions evicts the oldest across ranges once `max_bytes` is reached.
/// (A global hash map of entries was tried first: its random accesses cost ~15 % of the
/// append path.)
#[derive(Debug, Default)]
pub(crate) struct EntryCache {
    ranges: FastMap<RangeId, RangeCache>,
    fifo: VecDeque<(RangeId, u64)>,
    bytes: usize,
    max_bytes: usize,
}

fn cost(e: &EntryRecord) -> usize {
    e.payload.len() + 64
}

impl EntryCache {
    pub fn new(max_bytes: usize) -> Self {
        Self {
            max_bytes,
            ..Self::default()
        }
    }

    pub fn get(&self, range: RangeId, index: u64) -> Option<Rc<EntryRecord>> {
        let r = self.ranges.get(&range)?;
        let i = usize::try_from(index.checked_sub(r.first)?).ok()?;
        r.entries.get(i).map(Rc::clone)
    }

    /// Caches `e`, the newest entry of its range (an append at `index` drops the range's
    /// cached entries at and above it, as the log does).
    pub fn insert(&mut self, e: Rc<EntryRecord>) {
        let c = cost(&e);
        if self.max_bytes == 0 || c > self.max_bytes {
            return;
        }
        let (range, index) = (e.range, e.index.0);
        let r = self.ranges.entry(range).or_default();
        let end = r.first + r.entries.len() as u64;
        let mut freed = 0;
        if r.entries.is_empty() || index < r.first || index > end {
            freed += r.entries.drain(..).map(|x| cost(&x)).sum::<usize>();
            r.first = index;
        } else {
            while r.first + r.entries.len() as u64 > index {
                if let Some(x) = r.entries.pop_back() {
                    freed += cost(&x);
                }
            }
        }
        r.entries.push_back(e);
        self.bytes = self.bytes - freed + c;
        self.fifo.push_back((range, index));
        // Every cached entry costs at least 64 bytes, so `bytes / 64` bounds the live FIFO
        // entries; the rest are stale (dropped by truncation) and go first.
        while self.bytes > self.max_bytes || self.fifo.len() > self.bytes / 64 + 1024 {
            let Some((rg, i)) = self.fifo.pop_front() else {
                break;
            };
            self.evict_front(rg, i);
        }
    }

    /// Drops the range's oldest cached entry if it is `index`.
    fn evict_front(&mut self, range: RangeId, index: u64) {
        if let Some(r) = self.ranges.get_mut(&range) {
            if r.first == index {
                if let Some(x) = r.entries.pop_front() {
                    self.bytes -= cost(&x);
                    r.first += 1;
                }
                if r.entries.is_empty() {
                    self.ranges.remove(&range);
                }
            }
        }
    }

    /// Forgets entry `index` of `range` (the log dropped it). Entries are dropped from either
    /// end of a range's window; anything else clears the range's window.
    pub fn remove(&mut self, range: RangeId, index: u64) {
        let Some(r) = self.ranges.get_mut(&range) else {
            return;
        };
        if r.entries.is_empty() {
            return;
        }
        let last = r.first + r.entries.len() as u64 - 1;
        let freed = if index == r.first {
            r.first += 1;
            r.entries.pop_front().map_or(0, |x| cost(&x))
        } else if index == last {
            r.entries.pop_back().map_or(0, |x| cost(&x))
        } else if index > r.first && index < last {
            r.entries.drain(..).map(|x| cost(&x)).sum()
        } else {
            0
        };
        self.bytes -= freed;
        if r.entries.is_empty() {
            self.ranges.remove(&range);
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
    /// The fragmented entry whose fragments are being applied, until its last one is.
    pub assembling: Option<Assembly>,
}

impl State {
    fn seg(&mut self, ptr: &LogPointer) -> &mut SegmentUsage {
        self.segments.entry(ptr.segment.0).or_default()
    }

    fn drop_entry(&mut self, range: RangeId, index: u64, loc: EntryLoc) {
        self.seg(&loc.ptr).live_entries -= 1;
        self.cache.remove(range, index);
    }

    /// Drops the liveness of a dropped fragmented entry's fragments after the first (the
    /// first is its `EntryLoc`, dropped by `drop_entry`).
    fn drop_fragments(&mut self, f: &Fragments) {
        for p in f.parts.iter().skip(1) {
            self.seg(p).live_entries -= 1;
        }
    }

    /// Counts a record of `encoded_len` bytes at `ptr` in its segment.
    pub fn count(&mut self, ptr: &LogPointer, encoded_len: usize) {
        let s = self.seg(ptr);
        s.records += 1;
        s.bytes += encoded_len as u64;
    }

    /// Returns true if `rec` may follow the records applied so far: while a fragmented
    /// entry is being assembled only its next fragment may; otherwise anything but a
    /// fragment other than the first of an entry. (Recovery checks this before applying.)
    pub fn admits(&self, rec: &LogRecord, part_len: usize) -> bool {
        let LogRecord::Fragment(f) = rec else {
            return self.assembling.is_none();
        };
        let (h, part) = (&f.head, part_len as u64);
        let (done, number) = match &self.assembling {
            Some(a) if a.head.same_entry(h) => (a.bytes, a.parts.len() as u64),
            Some(_) => return false,
            None => (0, 0),
        };
        let last = h.number.checked_add(1) == Some(h.count);
        u64::from(h.number) == number
            && done + part <= h.total_len
            && (!last || done + part == h.total_len)
    }

    /// Applies a durable fragment at `ptr` (its record pointer; the caller counted it with
    /// [`count`](Self::count)). The fragment is live from now on (its segment is not freed);
    /// once the entry's last fragment is applied the entry joins the index like any entry.
    /// Returns the entry's fragments then.
    pub fn apply_fragment(
        &mut self,
        h: &FragmentHead,
        part_len: usize,
        seq: Seq,
        ptr: LogPointer,
        encoded_len: usize,
    ) -> Option<Rc<Fragments>> {
        self.seg(&ptr).live_entries += 1;
        let a = self.assembling.get_or_insert_with(|| Assembly {
            head: *h,
            first_seq: seq,
            parts: Vec::new(),
            bytes: 0,
        });
        a.parts.push((ptr, encoded_len));
        a.bytes += part_len as u64;
        if h.number + 1 < h.count {
            return None;
        }
        let a = self.assembling.take()?;
        let f = Rc::new(Fragments {
            total: a.bytes,
            parts: a.parts.iter().map(|(p, _)| *p).collect(),
        });
        let first = *f.parts.first()?;
        self.index_entry(h.range, h.index.0, h.term, first, Some(Rc::clone(&f)));
        Some(f)
    }

    /// Forgets the fragments of an entry whose last fragment never became durable (a torn
    /// tail), undoing their counts, and returns them.
    pub fn abandon_assembly(&mut self) -> Option<Assembly> {
        let a = self.assembling.take()?;
        for (p, len) in &a.parts {
            let s = self.seg(p);
            s.records -= 1;
            s.bytes -= *len as u64;
            s.live_entries -= 1;
        }
        Some(a)
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
        self.count(&ptr, encoded_len);
        match rec {
            LogRecord::Entry(e) => self.index_entry(e.range, e.index.0, e.term, ptr, None),
            LogRecord::Fragment(f) => {
                self.apply_fragment(&f.head, f.part.len(), seq, ptr, encoded_len);
            }
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

    /// Puts an entry into its range's index (Raft's conflict rule drops what it replaces).
    /// A fragmented entry's fragments were made live as they were applied.
    fn index_entry(
        &mut self,
        range: RangeId,
        index: u64,
        term: Term,
        ptr: LogPointer,
        fragments: Option<Rc<Fragments>>,
    ) {
        let fragmented = fragments.is_some();
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
        let dropped_fragments = r.take_fragments(&dropped);
        if let Some(f) = fragments {
            r.fragmented.insert(index, f);
        }
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
        for f in dropped_fragments {
            self.drop_fragments(&f);
        }
        if !fragmented {
            self.seg(&ptr).live_entries += 1;
        }
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
        let dropped_fragments = self
            .ranges
            .get_mut(&range)
            .map(|r| r.take_fragments(&dropped))
            .unwrap_or_default();
        for (i, l) in dropped {
            self.drop_entry(range, i, l);
        }
        for f in dropped_fragments {
            self.drop_fragments(&f);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vlog::types::{LogIndex, Term};

    fn e(range: u64, index: u64, len: usize) -> Rc<EntryRecord> {
        Rc::new(EntryRecord {
            range: RangeId(range),
            term: Term(1),
            index: LogIndex(index),
            entry_type: 0,
            payload: vec![index as u8; len],
        })
    }

    /// The cache keeps a contiguous window per range, follows conflicts and truncations,
    /// and stays within its byte budget, evicting the oldest insertions first.
    #[test]
    fn entry_cache_windows_conflicts_and_budget() {
        let mut c = EntryCache::new(10 * 164);
        for i in 1..=5 {
            c.insert(e(1, i, 100));
            c.insert(e(2, i, 100));
        }
        assert!(c.bytes() <= 10 * 164);
        assert!(c.get(RangeId(1), 5).is_some() && c.get(RangeId(2), 5).is_some());
        // A conflicting append at 4 replaces 4 and 5.
        c.insert(e(1, 4, 10));
        assert_eq!(c.get(RangeId(1), 4).unwrap().payload.len(), 10);
        assert!(c.get(RangeId(1), 5).is_none());
        // Removing from either end; a jump clears the window.
        c.remove(RangeId(2), 5);
        assert!(c.get(RangeId(2), 5).is_none());
        c.insert(e(2, 100, 10));
        assert!(c.get(RangeId(2), 4).is_none());
        assert!(c.get(RangeId(2), 100).is_some());
        for i in 0..10_000 {
            c.insert(e(3 + i % 7, 1000 + i / 7, 100));
            assert!(c.bytes() <= 10 * 164);
        }
        assert!(c.fifo.len() <= c.bytes() / 64 + 1024);
        let _ = c.get(RangeId(3), 0);
    }
}
