//! Compaction: the policy that picks runs (size-tiered with a bound on the number of runs,
//! `docs/format/key-index.md` §7) and the merge that replaces them by one run.

use std::collections::BTreeSet;
use std::rc::Rc;
use std::time::Instant;

use nvme::BlockDevice;

use super::index::KeyIndex;
use super::iter::RangeIter;
use super::metrics::LsmMetrics;
use super::run::{Run, RunWriter};
use super::{Error, IndexEntry, Result, RunId};

/// When to compact (format doc §7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompactionPolicy {
    /// Runs merged by a tiered compaction. Default 4; valid 2 ..= `max_runs`.
    pub fan_in: usize,
    /// A window of `fan_in` runs is merged when its largest run is at most this many times
    /// its smallest (by data bytes). Default 4; valid ≥ 1.
    pub size_ratio: u64,
    /// Above this many runs, every run is merged into one. Default 8; valid ≥ `fan_in`.
    pub max_runs: usize,
}

impl Default for CompactionPolicy {
    fn default() -> Self {
        Self {
            fan_in: 4,
            size_ratio: 4,
            max_runs: 8,
        }
    }
}

impl CompactionPolicy {
    pub(super) fn check(&self) -> Result<()> {
        if self.fan_in < 2 || self.max_runs < self.fan_in || self.size_ratio == 0 {
            return Err(Error::InvalidArgument(
                "compaction: fan-in ≥ 2, max-runs ≥ fan-in, size-ratio ≥ 1",
            ));
        }
        Ok(())
    }
}

/// Picks the runs to merge given their data sizes, newest first; returns the window as
/// `start..end` indexes into `sizes`, or `None` if nothing needs merging.
pub fn pick_compaction(p: &CompactionPolicy, sizes: &[u64]) -> Option<std::ops::Range<usize>> {
    if sizes.len() > p.max_runs {
        return Some(0..sizes.len());
    }
    (0..=sizes.len().checked_sub(p.fan_in)?).find_map(|start| {
        let w = &sizes[start..start + p.fan_in];
        let max = w.iter().copied().max().unwrap_or(0);
        let min = w.iter().copied().min().unwrap_or(0).max(1);
        (max <= min.saturating_mul(p.size_ratio)).then_some(start..start + p.fan_in)
    })
}

/// Segments a merge of runs holding `data_bytes` of data blocks in `held` segments may
/// write: the data plus a quarter for block indexes, bloom filters and frames, rounded up,
/// never more than the inputs hold (a merge never writes more entries than it reads, and
/// the same entries take no more frames). Counting bytes matters on small stores: every run
/// takes at least one whole segment however few keys it holds, so three tiny runs merge
/// into one segment, not three.
pub fn merged_segments(data_bytes: u64, held: u64, segment_bytes: u64) -> u64 {
    let need = (data_bytes + data_bytes / 4).div_ceil(segment_bytes.max(1));
    need.min(held)
}

/// Shrinks `window` (positions into the runs, newest first; each run's segments and data
/// bytes) from its oldest end until the merged run fits in `room` free segments
/// ([`merged_segments`]); `None` when not even two runs fit.
pub fn window_that_fits(
    window: std::ops::Range<usize>,
    runs: &[(u64, u64)],
    segment_bytes: u64,
    room: u64,
) -> Option<std::ops::Range<usize>> {
    let mut end = window.end.min(runs.len());
    while end >= window.start + 2 {
        let held: u64 = runs[window.start..end].iter().map(|r| r.0).sum();
        let bytes: u64 = runs[window.start..end].iter().map(|r| r.1).sum();
        if merged_segments(bytes, held, segment_bytes) <= room {
            return Some(window.start..end);
        }
        end -= 1;
    }
    None
}

/// What a compaction did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompactionReport {
    /// The merged runs, newest first.
    pub inputs: Vec<RunId>,
    /// The new run (`None` if nothing survived the merge).
    pub output: Option<RunId>,
    /// Entries read from the inputs.
    pub entries_in: u64,
    /// Entries written.
    pub entries_out: u64,
    /// Bytes of run frames written.
    pub written_bytes: u64,
}

impl<D: BlockDevice> KeyIndex<D> {
    /// Returns true if the policy would merge runs now.
    pub fn compaction_needed(&self) -> bool {
        let sizes: Vec<u64> = self.runs().iter().map(|r| r.data_bytes).collect();
        pick_compaction(&self.cfg.compaction, &sizes).is_some()
    }

    /// Merges the runs the policy picks, if any (see [`Self::compact_runs`]). When the
    /// store cannot take the merged run above `reserve-segments`, the window shrinks from its
    /// oldest end to what fits (at least two runs); if nothing fits, nothing is merged and the
    /// deferral is counted (`compactions_deferred_total`): a compaction started short of
    /// space would take the segments the shard log needs and then fail anyway.
    pub async fn compact(&self) -> Result<Option<CompactionReport>> {
        let runs = self.runs();
        let sizes: Vec<u64> = runs.iter().map(|r| r.data_bytes).collect();
        let Some(window) = pick_compaction(&self.cfg.compaction, &sizes) else {
            return Ok(None);
        };
        let held: Vec<(u64, u64)> = runs
            .iter()
            .map(|r| (r.segments as u64, r.data_bytes))
            .collect();
        let room = self
            .store
            .free_segments()
            .saturating_sub(u64::from(self.cfg.reserve_segments));
        match window_that_fits(window, &held, self.seg_len, room) {
            Some(w) => self.compact_runs(w).await.map(Some),
            None => {
                self.metrics.borrow_mut().compactions_deferred_total += 1;
                Ok(None)
            }
        }
    }

    /// Merges every live run into one (tombstones dropped). `None` with fewer than two runs
    /// and no tombstones to drop.
    pub async fn compact_all(&self) -> Result<Option<CompactionReport>> {
        let runs = self.runs();
        if runs.len() < 2 && runs.iter().all(|r| r.tombstones == 0) {
            return Ok(None);
        }
        self.compact_runs(0..runs.len()).await.map(Some)
    }

    /// Merges the live runs at positions `window` (newest first) into one run: newest version
    /// of each key wins; tombstones are dropped if the window reaches the oldest run. Writes
    /// and flushes the run, writes the manifest, then frees the inputs once no reader holds
    /// them. One compaction at a time (`Busy`); checkpoints may run meanwhile.
    pub async fn compact_runs(&self, window: std::ops::Range<usize>) -> Result<CompactionReport> {
        self.check_poisoned()?;
        let started = Instant::now();
        let (inputs, bottom) = {
            let mut s = self.state.borrow_mut();
            if s.compacting {
                return Err(Error::Busy("compaction"));
            }
            let inputs: Vec<Rc<Run>> = s
                .runs
                .get(window.clone())
                .ok_or(Error::InvalidArgument("compaction window out of range"))?
                .to_vec();
            if inputs.is_empty() {
                return Err(Error::InvalidArgument("empty compaction window"));
            }
            s.compacting = true;
            (inputs, window.end == s.runs.len())
        };
        let _flag = CompactingFlag(self);
        let expected: u64 = inputs.iter().map(|r| r.desc.entries).sum();
        let mut writer =
            RunWriter::new(self.store.clone(), &self.cfg, self.next_run_id(), expected);
        let merged = self.merge_into(&inputs, bottom, &mut writer).await;
        let run = match merged {
            Ok(()) => writer.finish().await,
            Err(e) => Err(e),
        };
        let run = match run {
            Ok(r) => r.map(Rc::new),
            Err(e) => {
                let mut s = self.state.borrow_mut();
                s.poisoned |= e.is_device_failure();
                s.orphans.extend(writer.segments());
                return Err(e);
            }
        };
        let ids: Vec<RunId> = inputs.iter().map(|r| r.id()).collect();
        let gone: BTreeSet<RunId> = ids.iter().copied().collect();
        let new = run.clone();
        self.edit(move |_, runs| {
            let at = runs.iter().position(|r| gone.contains(&r.id()));
            debug_assert!(at.is_some(), "compaction inputs vanished");
            let at = at.unwrap_or(runs.len());
            runs.retain(|r| !gone.contains(&r.id()));
            if let Some(r) = new {
                runs.insert(at.min(runs.len()), r);
            }
        })
        .await?;
        drop(inputs);
        let report = CompactionReport {
            inputs: ids,
            output: run.as_ref().map(|r| r.id()),
            entries_in: expected,
            entries_out: writer.entries(),
            written_bytes: writer.written_bytes,
        };
        drop(run);
        {
            let mut m = self.metrics.borrow_mut();
            m.compactions_total += 1;
            m.written_bytes_total += report.written_bytes;
            LsmMetrics::record(&mut m.compaction_duration_ns, started.elapsed());
        }
        self.reclaim().await?;
        Ok(report)
    }

    /// Streams the merge of `inputs` into `writer` (tombstones dropped at the bottom).
    async fn merge_into(
        &self,
        inputs: &[Rc<Run>],
        bottom: bool,
        writer: &mut RunWriter<D>,
    ) -> Result<()> {
        let mut it = RangeIter::new(self, inputs.to_vec(), &[], None, true);
        while let Some((key, entry)) = it.next_entry().await? {
            if bottom && entry == IndexEntry::Tombstone {
                continue;
            }
            writer.push(&key, &entry).await?;
        }
        Ok(())
    }
}

/// Clears the index's compaction flag when the compaction ends, however it ends.
struct CompactingFlag<'a, D: BlockDevice>(&'a KeyIndex<D>);

impl<D: BlockDevice> Drop for CompactingFlag<'_, D> {
    fn drop(&mut self) {
        self.0.state.borrow_mut().compacting = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The policy: nothing below `fan_in` runs; a similar-sized window merges; more than
    /// `max_runs` runs merge whole.
    #[test]
    fn policy_picks_similar_windows_and_bounds_the_run_count() {
        let p = CompactionPolicy::default();
        assert_eq!(pick_compaction(&p, &[10, 10, 10]), None);
        assert_eq!(pick_compaction(&p, &[10, 12, 30, 40]), Some(0..4));
        assert_eq!(pick_compaction(&p, &[1, 100, 100, 100, 100]), Some(1..5));
        assert_eq!(pick_compaction(&p, &[1, 100, 1000, 10000, 100000]), None);
        let many = [
            1,
            10,
            100,
            1000,
            10_000,
            100_000,
            1_000_000,
            10_000_000,
            100_000_000,
        ];
        assert_eq!(pick_compaction(&p, &many), Some(0..9));
    }

    /// Short of space, a compaction merges only the newest runs whose segments fit, and
    /// none when not even two fit.
    #[test]
    fn a_window_shrinks_to_the_newest_runs_that_fit_in_the_free_segments() {
        const SEG: u64 = 100;
        // Full runs: each needs what it holds.
        let runs = [(1, 80), (1, 80), (2, 160), (4, 320)];
        assert_eq!(window_that_fits(0..4, &runs, SEG, 8), Some(0..4));
        assert_eq!(window_that_fits(0..4, &runs, SEG, 7), Some(0..3));
        assert_eq!(window_that_fits(0..4, &runs, SEG, 2), Some(0..2));
        assert_eq!(window_that_fits(1..4, &runs, SEG, 2), None);
        assert_eq!(window_that_fits(0..4, &runs, SEG, 1), None);
    }

    /// Runs far smaller than a segment merge into the segments their bytes need.
    #[test]
    fn tiny_runs_merge_into_the_segments_their_bytes_need_not_one_each() {
        const SEG: u64 = 4 << 20;
        assert_eq!(merged_segments(300 << 10, 3, SEG), 1);
        assert_eq!(merged_segments(7 << 20, 2, SEG), 2, "7 MiB + a quarter");
        assert_eq!(
            merged_segments(4 << 20, 1, SEG),
            1,
            "never above what is held"
        );
        assert_eq!(merged_segments(0, 0, SEG), 0);
        let tiny = [(1, 10 << 10), (1, 10 << 10), (1, 10 << 10)];
        assert_eq!(window_that_fits(0..3, &tiny, SEG, 1), Some(0..3));
    }
}
