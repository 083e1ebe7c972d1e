//! Reads of the shard log: by pointer (one aligned read, checksum checked), by (range,
//! index) through the entry cache, and the Raft queries on the in-memory index.

use std::future::poll_fn;
use std::rc::Rc;
use std::task::Poll;
use std::time::Instant;

use nvme::BlockDevice;

use super::log::Vlog;
use super::metrics::VlogMetrics;
use super::record::{
    ENTRY_FIXED_LEN, EntryRecord, HardState, LogRecord, RECORD_HEADER_LEN, decode_fragment,
    decode_record,
};
use super::state::{CheckpointInfo, Fragments};
use super::types::{LogIndex, RangeId, Seq, Term};
use super::{Error, Result};
use crate::pointer::{LogPointer, SegmentId};

/// Where a Raft entry's payload lies in the log ([`Vlog::entry_payload_at`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PayloadAt {
    /// The segment holding the entry's record.
    pub segment: SegmentId,
    /// Byte offset of the payload's first byte inside the segment.
    pub offset: u64,
    /// Length of the payload.
    pub len: u64,
}

/// Fragment reads of one fragmented entry issued at once (each at most `batch-bytes-max`).
const FRAGMENT_READS_IN_FLIGHT: usize = 4;

impl<D: BlockDevice> Vlog<D> {
    // ---------------------------------------------------------------- reads

    pub(super) async fn read_span(&self, ptr: &LogPointer) -> Result<(D::ReadBuf, usize)> {
        let bs = self.block as u64;
        let seg_off = self.segment_offset(ptr.segment.0)?;
        let offset = ptr.byte_offset();
        let start = offset - offset % bs;
        let end = (offset + u64::from(ptr.len)).div_ceil(bs) * bs;
        if ptr.len == 0 || end > self.seg_size || !ptr.is_well_formed() {
            return Err(Error::InvalidArgument("pointer outside its segment"));
        }
        let t = Instant::now();
        let buf = self
            .dev
            .read(seg_off + start, (end - start) as usize)
            .await
            .map_err(Error::from_nvme)?;
        let ns = u64::try_from(t.elapsed().as_nanos()).unwrap_or(u64::MAX);
        VlogMetrics::record(&mut self.metrics.borrow_mut().read_latency_ns, ns);
        Ok((buf, (offset - start) as usize))
    }

    pub(super) fn segment_offset(&self, id: u32) -> Result<u64> {
        Ok(self.data_offset + u64::from(id) * self.seg_size)
    }

    /// Reads the record a record pointer names (one aligned read; checksum checked).
    pub async fn read_record(&self, ptr: &LogPointer) -> Result<LogRecord> {
        let (buf, at) = self.read_span(ptr).await?;
        let corrupt = |detail| Error::Corruption {
            segment: ptr.segment.0,
            offset: ptr.offset,
            detail,
        };
        let bytes = buf
            .get(at..at + ptr.len as usize)
            .ok_or(corrupt("short read"))?;
        let max = self.seg_size as usize - self.block - RECORD_HEADER_LEN;
        let (h, rec) = decode_record(bytes, max).map_err(|e| corrupt(e.detail()))?;
        if h.crc != ptr.checksum || h.record_len() != ptr.len as usize {
            return Err(corrupt("record does not match its pointer"));
        }
        Ok(rec)
    }

    /// Reads the value a value pointer stands for (one aligned read; crc32c of the bytes
    /// read checked): the bytes it names, after its leading byte if it carries one
    /// ([`LogPointer::leading_byte`]).
    pub async fn read_value(&self, ptr: &LogPointer) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(ptr.stored_len());
        out.extend(ptr.leading_byte());
        if ptr.len == 0 && ptr.checksum == crc32c::crc32c(&[]) {
            return Ok(out);
        }
        let (buf, at) = self.read_span(ptr).await?;
        let corrupt = |detail| Error::Corruption {
            segment: ptr.segment.0,
            offset: ptr.offset,
            detail,
        };
        let bytes = buf
            .get(at..at + ptr.len as usize)
            .ok_or(corrupt("short read"))?;
        if crc32c::crc32c(bytes) != ptr.checksum {
            return Err(corrupt("value checksum mismatch"));
        }
        out.extend_from_slice(bytes);
        Ok(out)
    }

    /// Returns the Raft entry `index` of `range`, from the cache or the device; `None` if the
    /// range does not retain it. A fragmented entry is read whole (its fragments'
    /// reads issued `FRAGMENT_READS_IN_FLIGHT` at a time).
    pub async fn entry(&self, range: RangeId, index: LogIndex) -> Result<Option<Rc<EntryRecord>>> {
        let (loc, fragments) = {
            let c = self.core.borrow();
            if let Some(e) = c.state.cache.get(range, index.0) {
                self.metrics.borrow_mut().cache_hits_total += 1;
                return Ok(Some(e));
            }
            let Some(r) = c.state.ranges.get(&range) else {
                return Ok(None);
            };
            match r.get(index.0) {
                Some(l) => (*l, r.fragmented.get(&index.0).cloned()),
                None => return Ok(None),
            }
        };
        self.metrics.borrow_mut().cache_misses_total += 1;
        if let Some(f) = fragments {
            let e = self.read_fragmented(range, index, loc.term, &f).await?;
            return Ok(Some(Rc::new(e)));
        }
        let ptr = loc.ptr;
        match self.read_record(&ptr).await? {
            LogRecord::Entry(e) if e.range == range && e.index == index => Ok(Some(Rc::new(e))),
            _ => Err(Error::Corruption {
                segment: ptr.segment.0,
                offset: ptr.offset,
                detail: "indexed record is not the entry",
            }),
        }
    }

    /// Reads and joins the fragments of a fragmented entry, checking each against its
    /// pointer and its place in the entry. Memory: the entry, plus at most
    /// `FRAGMENT_READS_IN_FLIGHT` fragment reads.
    async fn read_fragmented(
        &self,
        range: RangeId,
        index: LogIndex,
        term: Term,
        f: &Fragments,
    ) -> Result<EntryRecord> {
        let total = usize::try_from(f.total).map_err(|_| Error::InvalidArgument("entry size"))?;
        let mut payload = Vec::with_capacity(total);
        let mut entry_type = 0;
        let max = self.seg_size as usize - self.block - RECORD_HEADER_LEN;
        for (g, group) in f.parts.chunks(FRAGMENT_READS_IN_FLIGHT).enumerate() {
            let reads = join_all(group.iter().map(|p| self.read_span(p)).collect()).await;
            for (j, (ptr, read)) in group.iter().zip(reads).enumerate() {
                let corrupt = |detail| Error::Corruption {
                    segment: ptr.segment.0,
                    offset: ptr.offset,
                    detail,
                };
                let (buf, at) = read?;
                let bytes = buf
                    .get(at..at + ptr.len as usize)
                    .ok_or(corrupt("short read"))?;
                let (h, head, part) =
                    decode_fragment(bytes, max).map_err(|e| corrupt(e.detail()))?;
                let number = (g * FRAGMENT_READS_IN_FLIGHT + j) as u64;
                let fits = h.crc == ptr.checksum
                    && h.record_len() == ptr.len as usize
                    && (head.range, head.index, head.term) == (range, index, term)
                    && u64::from(head.number) == number
                    && head.count as usize == f.parts.len()
                    && head.total_len == f.total
                    && payload.len() + part.len() <= total;
                if !fits {
                    return Err(corrupt("fragment does not match its entry"));
                }
                entry_type = head.entry_type;
                payload.extend_from_slice(part);
            }
        }
        if payload.len() != total {
            return Err(Error::InvalidArgument("fragments shorter than their entry"));
        }
        Ok(EntryRecord {
            range,
            term,
            index,
            entry_type,
            payload,
        })
    }

    /// Returns entries `[lo, hi)` of `range`, stopping before the entry whose payload would
    /// take the total above `max_bytes` (at least one entry is returned, as raft-rs expects;
    /// sizes come from the index, so nothing past the limit is read). Reads missing from the
    /// cache are issued concurrently, up to 64 entries at a time, a fragmented entry on its
    /// own. Errors with `InvalidArgument` if the range does not retain all of them.
    pub async fn entries(
        &self,
        range: RangeId,
        lo: LogIndex,
        hi: LogIndex,
        max_bytes: usize,
    ) -> Result<Vec<Rc<EntryRecord>>> {
        let plan = self.plan_entries(range, lo, hi, max_bytes)?;
        let mut out = Vec::with_capacity(plan.len());
        let mut rest = &plan[..];
        while let Some(&(first, fragmented)) = rest.first() {
            let n = if fragmented {
                1
            } else {
                rest.iter().take(64).take_while(|(_, f)| !f).count()
            };
            let futs: Vec<_> = (first..first + n as u64)
                .map(|i| self.entry(range, LogIndex(i)))
                .collect();
            for e in join_all(futs).await {
                out.push(e?.ok_or(Error::InvalidArgument("entry not retained"))?);
            }
            rest = &rest[n..];
        }
        Ok(out)
    }

    /// Returns the indices `entries` reads, each with whether it is fragmented.
    fn plan_entries(
        &self,
        range: RangeId,
        lo: LogIndex,
        hi: LogIndex,
        max_bytes: usize,
    ) -> Result<Vec<(u64, bool)>> {
        let c = self.core.borrow();
        let r = c.state.ranges.get(&range);
        let mut plan = Vec::new();
        let mut bytes = 0u64;
        for i in lo.0..hi.0 {
            let len = r.and_then(|r| r.payload_len(i));
            let len = len.ok_or(Error::InvalidArgument("entry not retained"))?;
            bytes = bytes.saturating_add(len);
            if bytes > max_bytes as u64 && !plan.is_empty() {
                break;
            }
            let fragmented = r.is_some_and(|r| r.fragmented.contains_key(&i));
            plan.push((i, fragmented));
        }
        Ok(plan)
    }

    // ---------------------------------------------------------------- Raft queries

    /// Returns the first and last retained index of `range` (`last < first` when empty), or
    /// `None` if the log knows nothing of the range.
    pub fn bounds(&self, range: RangeId) -> Option<(LogIndex, LogIndex)> {
        let c = self.core.borrow();
        let r = c.state.ranges.get(&range)?;
        let last = (r.first + r.entries.len() as u64).checked_sub(1);
        Some((LogIndex(r.first), LogIndex(last.unwrap_or(0))))
    }

    /// Returns the term of entry `index` of `range`, if retained.
    pub fn term(&self, range: RangeId, index: LogIndex) -> Option<Term> {
        let c = self.core.borrow();
        c.state.ranges.get(&range)?.get(index.0).map(|l| l.term)
    }

    /// Returns the record pointer of entry `index` of `range`, if retained. For an entry
    /// written as fragments this is its first fragment's record (kind 7, which names the
    /// entry); read the whole entry with [`entry`](Self::entry).
    pub fn entry_pointer(&self, range: RangeId, index: LogIndex) -> Option<LogPointer> {
        let c = self.core.borrow();
        c.state.ranges.get(&range)?.get(index.0).map(|l| l.ptr)
    }

    /// Returns where the payload of entry `index` of `range` lies, if the log retains it with
    /// term `term` as one whole kind-1 record (an entry written as fragments has none): the
    /// bytes a value pointer into the entry may name (`docs/format/shard-log.md` §3, "Backed
    /// values").
    pub fn entry_payload_at(
        &self,
        range: RangeId,
        index: LogIndex,
        term: Term,
    ) -> Option<PayloadAt> {
        let c = self.core.borrow();
        let r = c.state.ranges.get(&range)?;
        let loc = r.get(index.0)?;
        if loc.term != term || r.fragmented.contains_key(&index.0) {
            return None;
        }
        let head = (RECORD_HEADER_LEN + ENTRY_FIXED_LEN) as u64;
        let len = u64::from(loc.ptr.len).checked_sub(head)?;
        Some(PayloadAt {
            segment: loc.ptr.segment,
            offset: loc.ptr.byte_offset() + head,
            len,
        })
    }

    /// Returns the latest hard state of `range`.
    pub fn hard_state(&self, range: RangeId) -> Option<HardState> {
        let c = self.core.borrow();
        c.state.ranges.get(&range)?.hard_state.map(|(h, _)| h)
    }

    /// Returns the latest conf state of `range` (as the caller encoded it).
    pub fn conf_state(&self, range: RangeId) -> Option<Vec<u8>> {
        let c = self.core.borrow();
        c.state
            .ranges
            .get(&range)?
            .conf_state
            .as_ref()
            .map(|(d, _)| d.clone())
    }

    /// Returns every range the log holds something for.
    pub fn ranges(&self) -> Vec<RangeId> {
        self.core.borrow().state.ranges.keys().copied().collect()
    }

    /// Returns the last checkpoint record.
    pub fn last_checkpoint(&self) -> Option<CheckpointInfo> {
        self.core.borrow().state.last_checkpoint.clone()
    }

    /// Returns the sequence number the next record will get.
    pub fn next_seq(&self) -> Seq {
        self.core.borrow().next_seq
    }

    /// Returns true once a write or flush failed (until reopen).
    pub fn is_poisoned(&self) -> bool {
        self.core.borrow().poisoned
    }

    /// Returns the number of appends waiting for an answer (for tests and metrics).
    pub fn waiting_appends(&self) -> usize {
        self.ticket_count()
    }

    /// Returns a copy of the counters and histograms.
    pub fn metrics(&self) -> VlogMetrics {
        self.metrics.borrow().clone()
    }

    /// Returns the bytes held by the entry cache.
    pub fn cache_bytes(&self) -> usize {
        self.core.borrow().state.cache.bytes()
    }
}

/// Polls futures concurrently on the current task and returns their outputs in order.
async fn join_all<F: std::future::Future>(futs: Vec<F>) -> Vec<F::Output> {
    let mut futs: Vec<_> = futs.into_iter().map(Box::pin).collect();
    let mut out: Vec<Option<F::Output>> = futs.iter().map(|_| None).collect();
    poll_fn(|cx| {
        let mut pending = false;
        for (f, o) in futs.iter_mut().zip(out.iter_mut()) {
            if o.is_none() {
                match f.as_mut().poll(cx) {
                    Poll::Ready(v) => *o = Some(v),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    out.into_iter().flatten().collect()
}
