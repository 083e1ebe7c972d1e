//! Opening the key index: find the newest valid manifest, load the runs it names, free what
//! it does not name (`docs/format/key-index.md` §4–5, open).

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;

use nvme::{BlockDevice, Segment, SegmentId};

use super::index::{KeyIndex, ManifestHead, State};
use super::manifest::{Manifest, scan_segment};
use super::metrics::LsmMetrics;
use super::run::{Run, RunSeg};
use super::{Error, LsmConfig, Result};
use crate::segments::SharedStore;

/// What open found.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OpenReport {
    /// Sequence number of the manifest in use (0: no checkpoint ever completed).
    pub manifest_seq: u64,
    /// Live runs.
    pub runs: usize,
    /// Entries in live runs.
    pub entries: u64,
    /// Segments freed at open: runs no manifest names, older manifest segments.
    pub freed_segments: usize,
    /// Damaged manifest copies passed over while scanning (a flipped byte, not a torn tail).
    pub damaged_manifest_records: u64,
}

fn corrupt_manifest(seg: u32, detail: &'static str) -> Error {
    Error::Corruption {
        what: "manifest",
        segment: seg,
        offset: 0,
        detail,
    }
}

impl<D: BlockDevice> KeyIndex<D> {
    /// Opens the key index on `store` (shared with the shard log): finds the newest valid
    /// manifest, loads every run it names (footer, block index, bloom filter; each checksum
    /// verified), then frees the segments of runs no manifest names and older manifest
    /// segments. An index that never completed a checkpoint opens empty.
    pub async fn open(store: SharedStore<D>, cfg: LsmConfig) -> Result<(Self, OpenReport)> {
        let dev = Rc::clone(store.device());
        let seg_len = store.segment_size();
        cfg.check(dev.alignment(), seg_len)?;
        let msegs = store
            .segments_of(cfg.manifest_owner)
            .await
            .map_err(Error::from_nvme)?;
        let mut report = OpenReport::default();
        // Per segment: its newest valid record, where its log ends, how many records it has.
        let mut found: Vec<(Manifest, ManifestHead)> = Vec::new();
        for seg in &msegs {
            let r = scan_segment(&*dev, seg).await?;
            report.damaged_manifest_records += r.skipped;
            if let Some(m) = r.newest {
                let records = r.copies.div_ceil(2);
                found.push((
                    m,
                    ManifestHead {
                        seg: *seg,
                        pos: r.end,
                        records,
                    },
                ));
            }
        }
        found.sort_by_key(|(m, _)| std::cmp::Reverse(m.seq));
        let mut found = found.into_iter();
        let (manifest, head) = match found.next() {
            Some((m, h)) => (m, Some(h)),
            None => (Manifest::default(), None),
        };
        // While the current segment holds one record, the segment with the previous one stays.
        let fallback = found
            .next()
            .filter(|_| head.is_some_and(|h| h.records < 2))
            .map(|(_, h)| h.seg.id);
        // Records past the readable end of a damaged log may carry seqs above the current
        // one: new records start above any seq one segment can hold (format doc §4).
        let next_seq = match &head {
            Some(h) => manifest.seq + h.seg.len / (2 * dev.alignment() as u64) + 1,
            None => 1,
        };
        let runs = load_runs(&store, &cfg, &manifest, seg_len).await?;
        let index = Self {
            store,
            cfg,
            seg_len,
            state: RefCell::new(State {
                next_run_id: manifest.next_run_id.max(1),
                manifest,
                runs,
                head,
                old_manifest_segs: fallback.into_iter().collect(),
                next_seq,
                ..State::default()
            }),
            editing: Cell::new(false),
            edit_waiters: RefCell::new(Vec::new()),
            metrics: RefCell::new(LsmMetrics::default()),
        };
        report.freed_segments = index.free_unnamed(&msegs).await?;
        {
            let s = index.state.borrow();
            report.manifest_seq = s.manifest.seq;
            report.runs = s.runs.len();
            report.entries = s.runs.iter().map(|r| r.desc.entries).sum();
        }
        index.update_gauges();
        Ok((index, report))
    }

    /// Frees run segments the manifest does not name and manifest segments other than the
    /// current one and its fallback (format doc §5, open).
    async fn free_unnamed(&self, msegs: &[Segment]) -> Result<usize> {
        let (named, keep) = {
            let s = self.state.borrow();
            let named: BTreeSet<u32> = s
                .runs
                .iter()
                .flat_map(|r| r.segs.iter().map(|g| g.id))
                .collect();
            let keep: Vec<SegmentId> = s
                .head
                .map(|h| h.seg.id)
                .into_iter()
                .chain(s.old_manifest_segs.iter().copied())
                .collect();
            (named, keep)
        };
        let runs = self
            .store
            .segments_of(self.cfg.run_owner)
            .await
            .map_err(Error::from_nvme)?;
        let mut doomed: Vec<SegmentId> = runs
            .iter()
            .filter(|s| !named.contains(&s.id.0))
            .map(|s| s.id)
            .collect();
        doomed.extend(msegs.iter().map(|s| s.id).filter(|id| !keep.contains(id)));
        for id in &doomed {
            self.free_segment(*id).await?;
        }
        Ok(doomed.len())
    }
}

/// Loads every run `m` names, checking each segment is still allocated to the run owner with
/// the generation the manifest recorded.
async fn load_runs<D: BlockDevice>(
    store: &SharedStore<D>,
    cfg: &LsmConfig,
    m: &Manifest,
    seg_len: u64,
) -> Result<Vec<Rc<Run>>> {
    let owned: BTreeMap<u32, Segment> = store
        .segments_of(cfg.run_owner)
        .await
        .map_err(Error::from_nvme)?
        .into_iter()
        .map(|s| (s.id.0, s))
        .collect();
    let mut runs = Vec::with_capacity(m.runs.len());
    let mut seen = BTreeSet::new();
    for desc in &m.runs {
        let mut segs = Vec::with_capacity(desc.segments.len());
        for &(id, generation) in &desc.segments {
            match owned.get(&id) {
                Some(s) if s.generation.0 == generation && seen.insert(id) => segs.push(RunSeg {
                    id,
                    generation,
                    offset: s.offset,
                }),
                _ => {
                    return Err(corrupt_manifest(
                        id,
                        "a run segment is not allocated to the index with the named generation",
                    ));
                }
            }
        }
        let run = Run::load(&**store.device(), desc.clone(), segs, seg_len).await?;
        runs.push(Rc::new(run));
        futures_lite::future::yield_now().await;
    }
    Ok(runs)
}
