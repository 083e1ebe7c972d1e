//! [`KeyIndex`]: its state, point lookups, manifest edits and freeing of retired runs
//! (`docs/format/key-index.md` §4–5). Opening it is `open`.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;

use nvme::{BlockDevice, BlockDeviceExt, Segment, SegmentId};

use super::bloom::key_hash;
use super::manifest::{Manifest, encode_record};
use super::metrics::LsmMetrics;
use super::run::{Probe, Run};
use super::{Error, IndexEntry, IndexValue, LogIndex, LsmConfig, RangeId, Result, RunId};
use crate::segments::SharedStore;

/// A live run, as reported to callers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunInfo {
    /// The run's id.
    pub id: RunId,
    /// Entries (tombstones included).
    pub entries: u64,
    /// Tombstones.
    pub tombstones: u64,
    /// Bytes of data blocks.
    pub data_bytes: u64,
    /// Segments it occupies.
    pub segments: usize,
}

/// Where the manifest log writes next.
#[derive(Debug, Clone, Copy)]
pub(super) struct ManifestHead {
    pub seg: Segment,
    pub pos: u64,
    /// Manifest writes (records) in `seg`.
    pub records: u64,
}

/// Mutable state of the index.
#[derive(Debug, Default)]
pub(super) struct State {
    /// The current durable manifest.
    pub manifest: Manifest,
    /// Live runs, newest first (the manifest's runs, loaded).
    pub runs: Vec<Rc<Run>>,
    /// Taken out while a manifest write is in flight.
    pub head: Option<ManifestHead>,
    /// Older manifest segments, freed once the current one holds two records (until then
    /// they hold the previous record, the fallback if the newest is damaged).
    pub old_manifest_segs: Vec<SegmentId>,
    /// Sequence number of the next manifest write.
    pub next_seq: u64,
    /// Runs no manifest names any more, freed once no reader holds them.
    pub retired: Vec<Rc<Run>>,
    /// Segments of abandoned runs, to free.
    pub orphans: Vec<SegmentId>,
    pub next_run_id: u64,
    pub poisoned: bool,
    pub checkpointing: bool,
    pub compacting: bool,
}

/// The per-shard key index (see the module docs of `engines::lsm`).
pub struct KeyIndex<D: BlockDevice> {
    pub(super) store: SharedStore<D>,
    pub(super) cfg: LsmConfig,
    pub(super) seg_len: u64,
    pub(super) state: RefCell<State>,
    /// True while a manifest write is in flight (edits are serialized).
    pub(super) editing: Cell<bool>,
    pub(super) edit_waiters: RefCell<Vec<std::task::Waker>>,
    pub(super) metrics: RefCell<LsmMetrics>,
}

impl<D: BlockDevice> std::fmt::Debug for KeyIndex<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.state.borrow();
        f.debug_struct("KeyIndex")
            .field("manifest_seq", &s.manifest.seq)
            .field("runs", &s.runs.len())
            .field("poisoned", &s.poisoned)
            .finish()
    }
}

impl<D: BlockDevice> KeyIndex<D> {
    pub(super) async fn free_segment(&self, id: SegmentId) -> Result<()> {
        if let Err(e) = self.store.free(id).await {
            self.state.borrow_mut().poisoned = true;
            return Err(Error::from_nvme(e));
        }
        self.metrics.borrow_mut().segments_freed_total += 1;
        Ok(())
    }

    /// Returns the device the index reads and writes.
    pub fn device(&self) -> &Rc<D> {
        self.store.device()
    }

    /// Returns the segment store handle.
    pub fn store(&self) -> &SharedStore<D> {
        &self.store
    }

    pub(super) fn check_poisoned(&self) -> Result<()> {
        if self.state.borrow().poisoned {
            Err(Error::DeviceFailed)
        } else {
            Ok(())
        }
    }

    /// Looks `key` up in the runs, newest first: the bloom filter first (an absent key usually
    /// costs no I/O), then the block index, then one block read with its checksum verified.
    /// Returns the value, or `None` if the key is absent or its newest entry is a tombstone.
    pub async fn get(&self, key: &[u8]) -> Result<Option<IndexValue>> {
        Ok(self.get_entry(key).await?.and_then(|e| e.value()))
    }

    /// Like [`Self::get`], but tells a tombstone (`Some(Tombstone)`) from an absent key.
    pub async fn get_entry(&self, key: &[u8]) -> Result<Option<IndexEntry>> {
        let runs = self.live_runs();
        self.metrics.borrow_mut().lookups_total += 1;
        let hash = key_hash(key);
        for run in runs {
            let probe = run.get(&**self.device(), self.seg_len, key, hash).await;
            let probe = self.count_read(probe)?;
            let mut m = self.metrics.borrow_mut();
            match probe {
                Probe::BloomNegative => m.bloom_negatives_total += 1,
                Probe::Absent => {}
                Probe::AbsentAfterRead => m.block_reads_total += 1,
                Probe::Found(e) => {
                    m.block_reads_total += 1;
                    return Ok(Some(e));
                }
            }
        }
        Ok(None)
    }

    /// Counts a checksum failure if `r` is a corruption error.
    pub(super) fn count_read<T>(&self, r: Result<T>) -> Result<T> {
        if let Err(Error::Corruption { .. }) = &r {
            self.metrics.borrow_mut().checksum_failures_total += 1;
        }
        r
    }

    /// Returns the live runs, newest first (the handles keep them readable until dropped).
    pub(super) fn live_runs(&self) -> Vec<Rc<Run>> {
        self.state.borrow().runs.clone()
    }

    /// Returns the applied index recorded for `range` by the current manifest.
    pub fn applied(&self, range: RangeId) -> Option<LogIndex> {
        self.state.borrow().manifest.ranges.get(&range).copied()
    }

    /// Returns the metadata blob recorded for `range` by the current manifest.
    pub fn range_meta(&self, range: RangeId) -> Option<Vec<u8>> {
        self.state.borrow().manifest.range_meta.get(&range).cloned()
    }

    /// Returns every range's applied index recorded by the current manifest.
    pub fn applied_all(&self) -> BTreeMap<RangeId, LogIndex> {
        self.state.borrow().manifest.ranges.clone()
    }

    /// Returns the sequence number of the current manifest (0 before the first checkpoint).
    pub fn manifest_seq(&self) -> u64 {
        self.state.borrow().manifest.seq
    }

    /// Returns the live runs, newest first.
    pub fn runs(&self) -> Vec<RunInfo> {
        self.state
            .borrow()
            .runs
            .iter()
            .map(|r| RunInfo {
                id: r.id(),
                entries: r.desc.entries,
                tombstones: r.desc.tombstones,
                data_bytes: r.desc.data_bytes,
                segments: r.segs.len(),
            })
            .collect()
    }

    /// Returns the bytes the index holds in memory: block indexes and bloom filters of the
    /// live and retired runs (what the tiering policy counts against `maxmemory`).
    pub fn memory_bytes(&self) -> usize {
        let s = self.state.borrow();
        s.runs
            .iter()
            .chain(&s.retired)
            .map(|r| r.memory_bytes())
            .sum()
    }

    /// Returns a copy of the metrics.
    pub fn metrics(&self) -> LsmMetrics {
        self.metrics.borrow().clone()
    }

    pub(super) fn update_gauges(&self) {
        let s = self.state.borrow();
        let mut m = self.metrics.borrow_mut();
        m.runs = s.runs.len() as u64;
        m.entries = s.runs.iter().map(|r| r.desc.entries).sum();
    }

    /// Records that `ranges` left this shard: the next manifest no longer names them.
    pub async fn forget_ranges(&self, ranges: &[RangeId]) -> Result<()> {
        self.edit(|m, _| {
            for r in ranges {
                m.ranges.remove(r);
                m.range_meta.remove(r);
            }
        })
        .await
    }

    /// Hands out the next run id.
    pub(super) fn next_run_id(&self) -> RunId {
        let mut s = self.state.borrow_mut();
        let id = s.next_run_id;
        s.next_run_id += 1;
        RunId(id)
    }

    /// Applies `f` to a copy of the manifest and the run list, writes the result as the next
    /// manifest record (durable when it returns), then installs it. Edits are serialized; a
    /// failed write poisons the index. Runs `f` removes are retired.
    pub(super) async fn edit(
        &self,
        f: impl FnOnce(&mut Manifest, &mut Vec<Rc<Run>>),
    ) -> Result<()> {
        let mut g = EditGuard::acquire(self).await;
        if self.check_poisoned().is_err() {
            g.done = true;
            return Err(Error::DeviceFailed);
        }
        let (mut m, mut runs, head) = {
            let mut s = self.state.borrow_mut();
            let head = s.head.take();
            (s.manifest.clone(), s.runs.clone(), head)
        };
        f(&mut m, &mut runs);
        m.seq = {
            let mut s = self.state.borrow_mut();
            s.next_seq += 1;
            s.next_seq - 1
        };
        m.next_run_id = self.state.borrow().next_run_id;
        m.runs = runs.iter().map(|r| r.desc.clone()).collect();
        let res = self.write_manifest(&m, head).await;
        g.done = true;
        let mut s = self.state.borrow_mut();
        match res {
            Ok((head, rotated_from)) => {
                s.head = Some(head);
                s.old_manifest_segs.extend(rotated_from);
                let keep: BTreeSet<RunId> = runs.iter().map(|r| r.id()).collect();
                let gone: Vec<Rc<Run>> = s
                    .runs
                    .iter()
                    .filter(|r| !keep.contains(&r.id()))
                    .cloned()
                    .collect();
                s.retired.extend(gone);
                s.manifest = m;
                s.runs = runs;
                drop(s);
                self.update_gauges();
                Ok(())
            }
            Err(e) => {
                s.poisoned = true;
                Err(e)
            }
        }
    }

    /// Writes `m` (two copies) after `head`, rotating to a new manifest segment when it does
    /// not fit; flushes. Returns the new head and the segment rotated away from, if any.
    async fn write_manifest(
        &self,
        m: &Manifest,
        head: Option<ManifestHead>,
    ) -> Result<(ManifestHead, Option<SegmentId>)> {
        let dev = self.device();
        let block = dev.alignment();
        let probe = encode_record(m, 0, 0, block)?;
        let need = 2 * probe.len() as u64;
        let (seg, pos, records, old) = match head {
            Some(h) if h.pos + need <= h.seg.len => (h.seg, h.pos, h.records, None),
            other => {
                let s = self
                    .store
                    .allocate(self.cfg.manifest_owner)
                    .await
                    .map_err(Error::from_nvme)?;
                (s, 0, 0, other.map(|h| h.seg.id))
            }
        };
        if need > seg.len {
            return Err(Error::InvalidArgument("manifest larger than a segment"));
        }
        let one = encode_record(m, seg.id.0, seg.generation.0, block)?;
        let mut two = one.clone();
        two.extend_from_slice(&one);
        dev.write_copy(seg.offset + pos, &two)
            .await
            .map_err(Error::from_nvme)?;
        dev.flush().await.map_err(Error::from_nvme)?;
        self.metrics.borrow_mut().written_bytes_total += two.len() as u64;
        let head = ManifestHead {
            seg,
            pos: pos + need,
            records: records + 1,
        };
        Ok((head, old))
    }

    /// Frees what no durable manifest names any more: retired runs no lookup or iterator
    /// still holds, abandoned runs' segments, manifest segments rotated away from. Returns
    /// the number of segments freed. Called after every checkpoint and compaction.
    pub async fn reclaim(&self) -> Result<usize> {
        // After a failed write the durable manifest is unknown: free nothing until reopen.
        self.check_poisoned()?;
        let doomed: Vec<SegmentId> = {
            let mut s = self.state.borrow_mut();
            let (free, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut s.retired)
                .into_iter()
                .partition(|r| Rc::strong_count(r) == 1);
            s.retired = keep;
            let mut ids: Vec<SegmentId> = free
                .iter()
                .flat_map(|r| r.segs.iter().map(|g| SegmentId(g.id)))
                .collect();
            ids.append(&mut s.orphans);
            if s.head.is_some_and(|h| h.records >= 2) {
                ids.append(&mut s.old_manifest_segs);
            }
            ids
        };
        for id in &doomed {
            self.free_segment(*id).await?;
        }
        Ok(doomed.len())
    }

    /// Closes the index and hands back the store handle.
    pub fn into_store(self) -> SharedStore<D> {
        self.store
    }
}

/// Serializes manifest edits; poisons the index if an edit's future is dropped half-way (what
/// reached the device is unknown, and the runs it named may already be freed in memory).
struct EditGuard<'a, D: BlockDevice> {
    ix: &'a KeyIndex<D>,
    done: bool,
}

impl<'a, D: BlockDevice> EditGuard<'a, D> {
    async fn acquire(ix: &'a KeyIndex<D>) -> Self {
        std::future::poll_fn(|cx| {
            if ix.editing.get() {
                ix.edit_waiters.borrow_mut().push(cx.waker().clone());
                std::task::Poll::Pending
            } else {
                ix.editing.set(true);
                std::task::Poll::Ready(())
            }
        })
        .await;
        Self { ix, done: false }
    }
}

impl<D: BlockDevice> Drop for EditGuard<'_, D> {
    fn drop(&mut self) {
        if !self.done {
            self.ix.state.borrow_mut().poisoned = true;
        }
        self.ix.editing.set(false);
        for w in self.ix.edit_waiters.borrow_mut().drain(..) {
            w.wake();
        }
    }
}
