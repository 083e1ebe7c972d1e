//! Raft truncation of a range and segment reclamation (the API the value GC plugs into).

use std::rc::Rc;

use nvme::BlockDevice;

use super::log::{AppendRecord, Appended, Vlog};
use super::record::{HardState, LogRecord, TruncateMode};
use super::state::SegmentUsage;
use super::types::{LogIndex, RangeId};
use super::{Error, Result};
use crate::pointer::SegmentId;

impl<D: BlockDevice> Vlog<D> {
    /// Segments the log may still allocate: free in the store beyond those it leaves to
    /// other owners ([`reserve_segments`](Self::reserve_segments)). Cheap (no lock).
    pub fn spare_segments(&self) -> u64 {
        self.store
            .free_segments()
            .saturating_sub(u64::from(self.reserve_segments()))
    }

    /// Bytes the log can still take without a segment beyond its spares: what is left of
    /// the head segment after the newest written batch, the preallocated spare segment, and
    /// [`spare_segments`](Self::spare_segments). Records queued but not yet written are not
    /// subtracted, nor record headers and block padding: callers that hold appends back
    /// when space runs short keep a margin. Cheap (no I/O).
    pub fn room_bytes(&self) -> u64 {
        let preallocated = u64::from(self.core.borrow().spare.is_some());
        self.head_room_bytes() + (preallocated + self.spare_segments()) * self.seg_size
    }

    /// What [`room_bytes`](Self::room_bytes) would be with the log allowed to allocate every
    /// free segment of the store ([`set_urgent`](Self::set_urgent)).
    pub fn urgent_room_bytes(&self) -> u64 {
        let preallocated = u64::from(self.core.borrow().spare.is_some());
        self.head_room_bytes() + (preallocated + self.store.free_segments()) * self.seg_size
    }

    /// Bytes left in the head segment after the newest written batch (0 before the first
    /// segment): what a batch can take without allocating.
    pub fn head_room_bytes(&self) -> u64 {
        let c = self.core.borrow();
        c.write_head()
            .map_or(0, |h| self.seg_size.saturating_sub(h.tail))
    }

    // ---------------------------------------------------------------- truncation

    /// Drops the entries of `range` below `index` (durably: a truncation record is appended).
    pub async fn compact(&self, range: RangeId, index: LogIndex) -> Result<Appended> {
        self.append_one(LogRecord::Truncate {
            range,
            mode: TruncateMode::Compact,
            index,
        })
        .await
    }

    /// Drops the entries of `range` at and above `index` (conflicting uncommitted suffix).
    /// Appending an entry at `index` does this implicitly.
    pub async fn truncate_suffix(&self, range: RangeId, index: LogIndex) -> Result<Appended> {
        self.append_one(LogRecord::Truncate {
            range,
            mode: TruncateMode::Suffix,
            index,
        })
        .await
    }

    // ---------------------------------------------------------------- reclamation

    /// Returns the chain's segments with their liveness counts, and whether each is the head.
    pub fn segment_usage(&self) -> Vec<(SegmentId, SegmentUsage, bool)> {
        let c = self.core.borrow();
        let head = c.head.as_ref().map(|h| h.seg.id.0);
        c.state
            .segments
            .iter()
            .map(|(id, u)| (SegmentId(*id), *u, Some(*id) == head))
            .collect()
    }

    /// Returns the segments no range's Raft log needs any more (no retained entry; not the
    /// head). Their latest metadata records are moved by [`release_segment`](Self::release_segment).
    /// The value GC relocates the live values of such a segment and then releases it.
    ///
    /// Segments are freed from the oldest end only (recovery relies on the chain of segments
    /// being contiguous), so this is the longest run of unneeded segments starting at the
    /// oldest, in log order.
    pub fn raft_unneeded_segments(&self) -> Vec<SegmentId> {
        let mut usage = self.segment_usage();
        usage.sort_by_key(|(_, u, _)| u.segment_seq);
        usage
            .into_iter()
            .take_while(|(_, u, head)| !head && u.live_entries == 0)
            .map(|(id, _, _)| id)
            .collect()
    }

    /// Frees segment `id`: re-appends the latest hard state, conf state and truncation
    /// records of ranges that lie in it, then gives it back to the store (durable when it
    /// returns). Refused (`SegmentInUse`) if a range still retains an entry in it, it is the
    /// head, or it is not the oldest segment of the log. The caller must no longer need the values in it.
    pub async fn release_segment(&self, id: SegmentId) -> Result<()> {
        let _g = self.lock().await;
        self.check_poisoned()?;
        self.release_locked(id.0).await
    }

    pub(super) async fn release_locked(&self, id: u32) -> Result<()> {
        // Flush a batch written ahead first: the checks below need the head to be durable
        // (a segment is never freed while a later one may hold only unflushed records).
        self.pump(&|| true, true).await;
        self.check_poisoned()?;
        let metas = {
            let c = self.core.borrow();
            let head = c.head.as_ref().map(|h| h.seg.id.0);
            match c.state.segments.get(&id) {
                None => return Err(Error::InvalidArgument("segment is not in the log")),
                Some(u)
                    if u.live_entries > 0
                        || Some(id) == head
                        || c.state
                            .segments
                            .values()
                            .any(|o| o.segment_seq < u.segment_seq) =>
                {
                    return Err(Error::SegmentInUse(id));
                }
                Some(_) => c.state.metas_in(id),
            }
        };
        if !metas.is_empty() {
            let n = metas.len();
            // Ahead of what is queued: a newer hard state (say) still queued must land after
            // the copy of the older one, or the copy would override it.
            let t = self.submit_ahead(metas.into_iter().map(AppendRecord::from).collect())?;
            self.pump(&|| self.is_done(t), true).await;
            self.take_result(t).unwrap_or(Err(Error::DeviceFailed))?;
            let c = self.core.borrow();
            let left = c.state.segments.get(&id).map_or(0, |u| u.meta_records);
            debug_assert_eq!(left, 0, "{n} meta records moved");
        }
        let res = self.store.free(nvme::SegmentId(id)).await;
        if let Err(e) = res {
            self.poison("freeing a segment failed");
            return Err(Error::from_nvme(e));
        }
        self.core.borrow_mut().state.segments.remove(&id);
        self.metrics.borrow_mut().segments_freed_total += 1;
        Ok(())
    }

    /// Frees every segment Raft no longer needs (automatic reclamation, for logs whose values
    /// nobody points at). Returns how many were freed.
    pub async fn reclaim(&self) -> Result<usize> {
        let _g = self.lock().await;
        self.check_poisoned()?;
        self.reclaim_unneeded().await
    }

    pub(super) async fn reclaim_unneeded(&self) -> Result<usize> {
        self.reclaim_unpinned(&|_| false).await
    }

    /// Frees every segment Raft no longer needs, from the oldest on, stopping at the first one
    /// `pinned` keeps (the engine pins the segments that live value pointers point into:
    /// segments are freed from the oldest end only, so a pinned segment keeps every newer
    /// one too). Returns how many were freed.
    pub async fn reclaim_except(&self, pinned: &dyn Fn(SegmentId) -> bool) -> Result<usize> {
        let _g = self.lock().await;
        self.check_poisoned()?;
        self.reclaim_unpinned(pinned).await
    }

    async fn reclaim_unpinned(&self, pinned: &dyn Fn(SegmentId) -> bool) -> Result<usize> {
        let ids = self.raft_unneeded_segments();
        let mut n = 0;
        for id in ids.into_iter().take_while(|id| !pinned(*id)) {
            self.release_locked(id.0).await?;
            n += 1;
        }
        Ok(n)
    }

    /// Closes the log and returns the device. Call it when no append is in flight (pending
    /// records are dropped unacknowledged).
    pub fn into_device(self) -> Result<D> {
        let Self { dev, store, .. } = self;
        drop(store);
        Rc::try_unwrap(dev).map_err(|_| Error::InvalidArgument("device handle still shared"))
    }

    /// Returns the device (for tests and tools: reading raw bytes, checking fault counts).
    pub fn device(&self) -> &D {
        &self.dev
    }

    /// Appends a checkpoint marker with the caller's data.
    pub async fn checkpoint(&self, data: Vec<u8>) -> Result<Appended> {
        self.append_one(LogRecord::Checkpoint { data }).await
    }

    /// Appends the hard state of `range`.
    pub async fn set_hard_state(&self, range: RangeId, state: HardState) -> Result<Appended> {
        self.append_one(LogRecord::HardState { range, state }).await
    }
}
