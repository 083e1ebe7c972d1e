//! Ordered iteration over a key range, merging the runs newest first: one cursor per run, each
//! holding one decoded data block (bounded memory whatever the range's size).

use std::rc::Rc;

use nvme::BlockDevice;

use super::index::KeyIndex;
use super::run::{Block, Run};
use super::{IndexEntry, IndexValue, Result};

/// A position in one run: the block being read and the entry inside it.
#[derive(Debug)]
struct Cursor {
    run: Rc<Run>,
    block: usize,
    entries: Block,
    pos: usize,
}

impl Cursor {
    fn head(&self) -> Option<&(Box<[u8]>, IndexEntry)> {
        self.entries.get(self.pos)
    }
}

/// Iterates `[start, end)` over every live run, newest version of each key first. Holds the
/// runs it reads (a compaction that retires them frees their segments only after the iterator
/// is dropped). Each [`next`](Self::next) reads at most one data block per run.
pub struct RangeIter<'a, D: BlockDevice> {
    index: &'a KeyIndex<D>,
    start: Vec<u8>,
    end: Option<Vec<u8>>,
    runs: Vec<Rc<Run>>,
    /// One per run (same order, newest first); `None` once a run is exhausted. Empty until
    /// the first call positions them.
    cursors: Vec<Option<Cursor>>,
    started: bool,
    keep_tombstones: bool,
}

impl<D: BlockDevice> std::fmt::Debug for RangeIter<'_, D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RangeIter")
            .field("runs", &self.runs.len())
            .field("started", &self.started)
            .finish()
    }
}

impl<D: BlockDevice> KeyIndex<D> {
    /// Returns an iterator over the live entries with keys in `[start, end)` (`end` `None`:
    /// to the end of the keyspace), in key order; tombstoned keys are skipped. The runs are
    /// those live now: a checkpoint or compaction finishing later does not change what the
    /// iterator returns.
    pub fn range(&self, start: &[u8], end: Option<&[u8]>) -> RangeIter<'_, D> {
        RangeIter::new(self, self.live_runs(), start, end, false)
    }
}

impl<'a, D: BlockDevice> RangeIter<'a, D> {
    pub(super) fn new(
        index: &'a KeyIndex<D>,
        runs: Vec<Rc<Run>>,
        start: &[u8],
        end: Option<&[u8]>,
        keep_tombstones: bool,
    ) -> Self {
        Self {
            index,
            start: start.to_vec(),
            end: end.map(<[u8]>::to_vec),
            runs,
            cursors: Vec::new(),
            started: false,
            keep_tombstones,
        }
    }

    async fn read(&self, run: &Rc<Run>, block: usize) -> Result<Block> {
        let ix = self.index;
        let r = run.read_block(&**ix.device(), ix.seg_len, block).await;
        let b = ix.count_read(r)?;
        ix.metrics.borrow_mut().block_reads_total += 1;
        Ok(b)
    }

    async fn position(&mut self) -> Result<()> {
        for run in self.runs.clone() {
            let cursor = match run.block_for(&self.start) {
                None => None,
                Some(block) => {
                    let entries = self.read(&run, block).await?;
                    let pos = entries.partition_point(|(k, _)| **k < *self.start);
                    Some(Cursor {
                        run,
                        block,
                        entries,
                        pos,
                    })
                }
            };
            self.cursors.push(cursor);
        }
        for i in 0..self.cursors.len() {
            self.settle(i).await?;
        }
        self.started = true;
        Ok(())
    }

    /// Moves cursor `i` to the next block while it is past the end of its block.
    async fn settle(&mut self, i: usize) -> Result<()> {
        loop {
            let Some(c) = self.cursors.get_mut(i).and_then(Option::as_mut) else {
                return Ok(());
            };
            if c.pos < c.entries.len() {
                return Ok(());
            }
            let next = c.block + 1;
            if next >= c.run.index.len() {
                self.cursors[i] = None;
                return Ok(());
            }
            let run = Rc::clone(&c.run);
            let entries = self.read(&run, next).await?;
            if let Some(Some(c)) = self.cursors.get_mut(i) {
                c.block = next;
                c.entries = entries;
                c.pos = 0;
            }
        }
    }

    /// Returns the next entry (tombstones included when the iterator keeps them).
    pub(super) async fn next_entry(&mut self) -> Result<Option<(Box<[u8]>, IndexEntry)>> {
        if !self.started {
            self.position().await?;
        }
        loop {
            // The smallest head key; the newest run holding it wins.
            let mut best: Option<(usize, &[u8])> = None;
            for (i, c) in self.cursors.iter().enumerate() {
                if let Some((k, _)) = c.as_ref().and_then(Cursor::head)
                    && best.is_none_or(|(_, b)| **k < *b)
                {
                    best = Some((i, k));
                }
            }
            let Some((win, key)) = best else {
                return Ok(None);
            };
            if self.end.as_deref().is_some_and(|e| key >= e) {
                return Ok(None);
            }
            let key: Box<[u8]> = key.into();
            let mut out = None;
            for i in 0..self.cursors.len() {
                let Some(c) = self.cursors[i].as_mut() else {
                    continue;
                };
                if c.head().is_some_and(|(k, _)| *k == key) {
                    if i == win {
                        out = c.head().map(|(_, e)| *e);
                    }
                    c.pos += 1;
                    self.settle(i).await?;
                }
            }
            match out {
                Some(IndexEntry::Tombstone) if !self.keep_tombstones => continue,
                Some(e) => return Ok(Some((key, e))),
                None => continue,
            }
        }
    }

    /// Returns the next live key and its value, or `None` at the end of the range. A
    /// checksum failure on a block is an error, never data.
    pub async fn next(&mut self) -> Result<Option<(Box<[u8]>, IndexValue)>> {
        loop {
            match self.next_entry().await? {
                None => return Ok(None),
                Some((k, IndexEntry::Value(v))) => return Ok(Some((k, v))),
                Some((_, IndexEntry::Tombstone)) => {}
            }
        }
    }
}
