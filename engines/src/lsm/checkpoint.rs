//! Checkpoints: the caller's sorted dirty entries become one run, then a manifest record names
//! it with each range's applied index (`docs/format/key-index.md` §5).

use std::rc::Rc;
use std::time::Instant;

use nvme::BlockDevice;

use super::index::KeyIndex;
use super::manifest::RANGE_META_MAX;
use super::metrics::LsmMetrics;
use super::run::RunWriter;
use super::{Error, IndexEntry, LogIndex, RangeId, Result, RunId};

/// One range's entry in a checkpoint's manifest: its applied index and, optionally, the
/// caller's metadata blob at that index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeApplied {
    /// The range.
    pub range: RangeId,
    /// Every entry of the range up to this index is in the index once the checkpoint is done.
    pub index: LogIndex,
    /// The caller's metadata of the range at `index` (`None`: keep the previous blob).
    pub meta: Option<Vec<u8>>,
}

/// What a completed checkpoint wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointReport {
    /// The new run, if the checkpoint had entries.
    pub run: Option<RunId>,
    /// Entries written.
    pub entries: u64,
    /// Bytes of run frames written (the manifest record is counted in the metrics only).
    pub written_bytes: u64,
    /// Sequence number of the manifest naming the run.
    pub manifest_seq: u64,
}

/// A checkpoint in progress: push the entries in strictly increasing key order, then
/// [`finish`](Self::finish). Each push buffers at most one data block and writes (yielding to
/// the executor) when the bounded write buffer is full, so the caller can drive it in pieces.
/// Dropping it abandons the run: its segments are freed by the next [`KeyIndex::reclaim`].
pub struct CheckpointWriter<'a, D: BlockDevice> {
    index: &'a KeyIndex<D>,
    run: Option<RunWriter<D>>,
    started: Instant,
}

impl<D: BlockDevice> std::fmt::Debug for CheckpointWriter<'_, D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckpointWriter")
            .field("run", &self.run)
            .finish()
    }
}

impl<D: BlockDevice> KeyIndex<D> {
    /// Starts a checkpoint of about `expected_entries` entries (sizes the bloom filter: a
    /// larger real count only raises its false-positive rate). One checkpoint at a time:
    /// `Busy` otherwise. A compaction may run at the same time.
    pub fn checkpoint(&self, expected_entries: u64) -> Result<CheckpointWriter<'_, D>> {
        self.check_poisoned()?;
        let id = {
            let mut s = self.state.borrow_mut();
            if s.checkpointing {
                return Err(Error::Busy("checkpoint"));
            }
            s.checkpointing = true;
            drop(s);
            self.next_run_id()
        };
        let run = RunWriter::new(self.store.clone(), &self.cfg, id, expected_entries);
        Ok(CheckpointWriter {
            index: self,
            run: Some(run),
            started: Instant::now(),
        })
    }
}

impl<D: BlockDevice> CheckpointWriter<'_, D> {
    /// Adds the next entry. Keys must be strictly increasing, 1 ..= 64 KiB long.
    pub async fn push(&mut self, key: &[u8], entry: IndexEntry) -> Result<()> {
        let run = self.run.as_mut().ok_or(Error::DeviceFailed)?;
        run.push(key, &entry).await
    }

    /// Returns the entries pushed so far.
    pub fn entries(&self) -> u64 {
        self.run.as_ref().map_or(0, RunWriter::entries)
    }

    /// Writes the rest of the run and flushes it, then writes the manifest naming it (newest
    /// run first) with `applied` merged into the ranges' applied indexes, and flushes. The
    /// checkpoint is complete (durable) when this returns `Ok`. On an error the run is
    /// abandoned (its segments are freed by a later reclaim unless the index is poisoned).
    pub async fn finish(self, applied: &[(RangeId, LogIndex)]) -> Result<CheckpointReport> {
        let ranges: Vec<RangeApplied> = applied
            .iter()
            .map(|&(range, index)| RangeApplied {
                range,
                index,
                meta: None,
            })
            .collect();
        self.finish_ranges(&ranges).await
    }

    /// Like [`Self::finish`], also recording each range's metadata blob (at most
    /// `RANGE_META_MAX` bytes; `None` keeps the range's previous blob) in the manifest.
    pub async fn finish_ranges(mut self, applied: &[RangeApplied]) -> Result<CheckpointReport> {
        if applied
            .iter()
            .any(|a| a.meta.as_ref().is_some_and(|m| m.len() > RANGE_META_MAX))
        {
            return Err(Error::InvalidArgument("range metadata larger than 64 KiB"));
        }
        let ix = self.index;
        let mut writer = self.run.take().ok_or(Error::DeviceFailed)?;
        let entries = writer.entries();
        let run = match writer.finish().await {
            Ok(r) => r.map(Rc::new),
            Err(e) => {
                let mut s = ix.state.borrow_mut();
                s.poisoned |= e.is_device_failure();
                s.orphans.extend(writer.segments());
                return Err(e);
            }
        };
        let written_bytes = writer.written_bytes;
        let new = run.clone();
        ix.edit(move |m, runs| {
            if let Some(r) = new {
                runs.insert(0, r);
            }
            for a in applied {
                m.ranges.insert(a.range, a.index);
                if let Some(meta) = &a.meta {
                    m.range_meta.insert(a.range, meta.clone());
                }
            }
        })
        .await?;
        {
            let mut m = ix.metrics.borrow_mut();
            m.checkpoints_total += 1;
            m.written_bytes_total += written_bytes;
            LsmMetrics::record(&mut m.checkpoint_duration_ns, self.started.elapsed());
        }
        ix.reclaim().await?;
        Ok(CheckpointReport {
            run: run.as_ref().map(|r| r.id()),
            entries,
            written_bytes,
            manifest_seq: ix.manifest_seq(),
        })
    }
}

impl<D: BlockDevice> Drop for CheckpointWriter<'_, D> {
    fn drop(&mut self) {
        let mut s = self.index.state.borrow_mut();
        if let Some(run) = self.run.take() {
            s.orphans.extend(run.segments());
        }
        s.checkpointing = false;
    }
}
