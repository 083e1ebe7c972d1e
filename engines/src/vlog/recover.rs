//! Opening a shard log: find the chain of segments, scan it, tell a torn tail from mid-log
//! corruption, cut the torn tail (`docs/format/shard-log.md` §5).

use std::rc::Rc;

use nvme::{BlockDevice, IoBuf, OwnerTag, Segment};

use super::log::{Core, Head, Vlog};
use super::record::{
    FragmentHead, LogRecord, RECORD_HEADER_LEN, SegmentHeader, check_crc, decode_header,
    decode_record, padded,
};
use super::state::{CheckpointInfo, EntryCache, State};
use super::types::Seq;
use super::{Error, MAX_PIPELINE_DEPTH, Result, VlogConfig};
use crate::pointer::{LogPointer, SegmentId};
use crate::segments::SharedStore;

/// What recovery found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Segments in the log's chain after recovery.
    pub segments: usize,
    /// Records scanned and applied.
    pub records: u64,
    /// Where the next record goes (segment, offset), if the log has a head segment.
    pub tail: Option<(SegmentId, u64)>,
    /// The sequence number of the next record.
    pub next_seq: Seq,
    /// True if bytes after the tail were not zero and were cut (a torn or unacknowledged
    /// batch).
    pub cut: bool,
    /// Bytes zeroed after the tail.
    pub cut_bytes: u64,
    /// Segments given back to the store (chain segments after the tail, extra spares).
    pub freed_segments: usize,
    /// The last checkpoint record.
    pub last_checkpoint: Option<CheckpointInfo>,
}

/// Bounds recovery works with, independent of how the log was configured when it was
/// written: records up to the segment size, and a torn batch reaching at most the largest
/// `batch-bytes-max` of any writer (recorded in the segment headers) past its start.
#[derive(Clone, Copy)]
struct Limits {
    max_body: usize,
    /// (most batches in flight + 1) × the largest batch: how far after a hole to look for
    /// evidence and to zero.
    window: u64,
    chunk: usize,
}

/// Reads a segment in large aligned chunks and serves byte ranges out of them.
struct SegReader<'a, D: BlockDevice> {
    dev: &'a D,
    seg: Segment,
    block: u64,
    chunk: u64,
    buf: Option<D::ReadBuf>,
    start: u64,
}

impl<'a, D: BlockDevice> SegReader<'a, D> {
    fn new(dev: &'a D, seg: Segment, block: usize, chunk: usize) -> Self {
        Self {
            dev,
            seg,
            block: block as u64,
            chunk: (chunk as u64).max(block as u64),
            buf: None,
            start: 0,
        }
    }

    /// Returns bytes `[off, off + len)` of the segment, `None` if they lie past its end.
    async fn get(&mut self, off: u64, len: usize) -> Result<Option<&[u8]>> {
        let end = off + len as u64;
        if end > self.seg.len {
            return Ok(None);
        }
        let covered = self
            .buf
            .as_ref()
            .is_some_and(|b| off >= self.start && end <= self.start + b.len() as u64);
        if !covered {
            let start = off - off % self.block;
            let want = end.max(start + self.chunk).div_ceil(self.block) * self.block;
            let stop = want.min(self.seg.len);
            let b = self
                .dev
                .read(self.seg.offset + start, (stop - start) as usize)
                .await
                .map_err(Error::from_nvme)?;
            self.buf = Some(b);
            self.start = start;
        }
        let b = self.buf.as_ref().ok_or(Error::InvalidArgument("reader"))?;
        let at = (off - self.start) as usize;
        Ok(b.get(at..at + len))
    }
}

impl<D: BlockDevice> Vlog<D> {
    /// Opens the shard log owned by `owner` on the segment store on `dev` (formatted with
    /// `nvme::SegmentStore::format`), running recovery: rebuilds the per-range entry index,
    /// cuts a torn tail, and reports where the log ends. A bad record followed by a record
    /// whose durable mark shows the bad one had been flushed (format §5) is `Corruption`,
    /// never skipped.
    pub async fn open(dev: D, owner: OwnerTag, cfg: VlogConfig) -> Result<(Self, RecoveryReport)> {
        let store = SharedStore::open(dev).await.map_err(Error::from_nvme)?;
        Self::open_on(store, owner, cfg).await
    }

    /// Opens the shard log owned by `owner` on a segment store shared with other owners (the
    /// shard's key index), running recovery as [`Vlog::open`] does.
    pub async fn open_on(
        store: SharedStore<D>,
        owner: OwnerTag,
        cfg: VlogConfig,
    ) -> Result<(Self, RecoveryReport)> {
        let dev = Rc::clone(store.device());
        let block = dev.alignment();
        let seg_size = store.segment_size();
        if cfg.batch_bytes_max < 64
            || cfg.batch_bytes_max as u64 + block as u64 > seg_size
            || u32::try_from(cfg.batch_bytes_max).is_err()
        {
            return Err(Error::InvalidArgument(
                "batch-bytes-max must be 64 B ..= segment size - 1 block",
            ));
        }
        if !(1..=MAX_PIPELINE_DEPTH).contains(&cfg.pipeline_depth) {
            return Err(Error::InvalidArgument("pipeline-depth must be 1 or 2"));
        }
        // 1. The chain: owned segments with a valid header of their current generation.
        let owned: Vec<Segment> = store.segments_of(owner).await.map_err(Error::from_nvme)?;
        let mut chain: Vec<(Segment, SegmentHeader)> = Vec::new();
        let mut spares = Vec::new();
        for s in owned {
            let b = dev.read(s.offset, block).await.map_err(Error::from_nvme)?;
            match SegmentHeader::decode(&b) {
                Ok(h) if h.owner == owner.0 && h.generation == s.generation.0 => chain.push((s, h)),
                _ => spares.push(s),
            }
        }
        chain.sort_by_key(|(_, h)| h.segment_seq);
        let batch_max = chain
            .iter()
            .map(|(_, h)| h.batch_max as u64)
            .chain([cfg.batch_bytes_max as u64])
            .max()
            .unwrap_or(cfg.batch_bytes_max as u64);
        let lim = Limits {
            max_body: seg_size as usize - block - RECORD_HEADER_LEN,
            window: (MAX_PIPELINE_DEPTH as u64 + 1) * batch_max,
            chunk: cfg.recovery_read_bytes,
        };
        let mut state = State {
            cache: EntryCache::new(cfg.cache_bytes_max),
            ..State::default()
        };
        let mut report = RecoveryReport {
            segments: 0,
            records: 0,
            tail: None,
            next_seq: Seq(1),
            cut: false,
            cut_bytes: 0,
            freed_segments: 0,
            last_checkpoint: None,
        };
        // 2. Scan.
        let mut head = None;
        if let Some((_, first)) = chain.first() {
            let mut expected = first.first_seq;
            let (ci, pos) = scan(
                &*dev,
                lim,
                block,
                &chain,
                &mut state,
                &mut expected,
                &mut report,
            )
            .await?;
            // 3. The hole at (ci, pos): torn tail, or corruption? (Also when it cuts a
            // fragmented entry short: the fragments before it are not evidence unless
            // written after the hole's record was durable.)
            if evidence(&*dev, lim, block, &chain, ci, pos, expected).await? {
                return Err(Error::Corruption {
                    segment: chain[ci].0.id.0,
                    offset: pos,
                    detail: "bad record followed by a record written after it was durable",
                });
            }
            // 4. Cut: zero what follows the tail, free later chain segments (newest first:
            // the chain stays contiguous if this is interrupted).
            let (seg, _) = chain[ci];
            let mut tail_block = cut(&*dev, lim, block, seg, pos, &mut report).await?;
            for (s, _) in chain[ci + 1..].iter().rev() {
                store.free(s.id).await.map_err(Error::from_nvme)?;
                report.freed_segments += 1;
            }
            // 4a. An entry whose last fragment is not durable was never acknowledged: the
            // tail moves back to its first fragment.
            let (mut ci, mut pos) = (ci, pos);
            if let Some(a) = state.abandon_assembly() {
                let first = a.parts.first().map(|(p, _)| *p);
                let first = first.ok_or(Error::InvalidArgument("empty assembly"))?;
                let fi = chain
                    .iter()
                    .position(|(s, _)| s.id.0 == first.segment.0)
                    .ok_or(Error::InvalidArgument("fragment outside the chain"))?;
                for (s, _) in chain[fi + 1..=ci].iter().rev() {
                    store.free(s.id).await.map_err(Error::from_nvme)?;
                    state.segments.remove(&s.id.0);
                    report.freed_segments += 1;
                }
                tail_block = drop_fragments(&*dev, block, chain[fi].0, &a, &mut report).await?;
                (ci, pos) = (fi, first.offset);
                expected = a.first_seq;
            }
            let (seg, hdr) = chain[ci];
            for (s, h) in &chain[..=ci] {
                state.segments.entry(s.id.0).or_default().segment_seq = h.segment_seq;
            }
            report.segments = ci + 1;
            report.tail = Some((SegmentId(seg.id.0), pos));
            report.next_seq = expected;
            head = Some(Head {
                seg,
                segment_seq: hdr.segment_seq,
                tail: pos,
                tail_block,
            });
        }
        // 5. Spares: keep one, give the others back.
        let mut spare = None;
        for s in spares {
            if spare.is_none() && cfg.preallocate {
                spare = Some(s);
            } else {
                store.free(s.id).await.map_err(Error::from_nvme)?;
                report.freed_segments += 1;
            }
        }
        // Every record accepted above becomes durable before any batch is written with a
        // durable mark above it (after a process crash, unflushed bytes are still readable).
        dev.flush().await.map_err(Error::from_nvme)?;
        report.last_checkpoint = state.last_checkpoint.clone();
        let core = Core {
            poisoned: false,
            poison_reason: None,
            next_seq: report.next_seq,
            head,
            ahead: None,
            spare,
            state,
            fragment_ack: None,
        };
        Ok((Vlog::from_parts(dev, owner, cfg, store, core), report))
    }
}

/// Scans the chain from its first record, applying records, until it cannot go on.
/// Returns the chain index and offset of the hole (the tail if the log is sound).
async fn scan<D: BlockDevice>(
    dev: &D,
    lim: Limits,
    block: usize,
    chain: &[(Segment, SegmentHeader)],
    state: &mut State,
    expected: &mut Seq,
    report: &mut RecoveryReport,
) -> Result<(usize, u64)> {
    let max_body = lim.max_body;
    let mut prev_end = block as u64;
    // Fragments at the very start of the chain whose entry began in a freed segment (the
    // entry was dropped, or its segments could not have been freed): counted, not indexed.
    let mut orphan: Option<FragmentHead> = None;
    let mut started = false;
    for (i, (seg, hdr)) in chain.iter().enumerate() {
        if i > 0
            && (hdr.first_seq != *expected || hdr.segment_seq != chain[i - 1].1.segment_seq + 1)
        {
            return Ok((i - 1, prev_end));
        }
        let mut rd = SegReader::new(dev, *seg, block, lim.chunk);
        let mut pos = block as u64;
        loop {
            let Some(hb) = rd.get(pos, RECORD_HEADER_LEN).await? else {
                break;
            };
            let Ok(h) = decode_header(hb, max_body) else {
                break;
            };
            if h.seq != *expected {
                break;
            }
            let Some(rb) = rd.get(pos, h.record_len()).await? else {
                break;
            };
            let Ok((h, rec)) = decode_record(rb, max_body) else {
                break;
            };
            let ptr = LogPointer {
                segment: SegmentId(seg.id.0),
                offset: pos,
                len: h.record_len() as u32,
                checksum: h.crc,
            };
            let n = padded(h.record_len());
            let part_len = match &rec {
                LogRecord::Fragment(f) => f.part.len(),
                _ => 0,
            };
            if !started && continues_orphan(&mut orphan, &rec) {
                state.count(&ptr, n);
            } else if state.admits(&rec, part_len) {
                started = true;
                state.apply(&rec, h.seq, ptr, n);
            } else {
                break;
            }
            *expected = Seq(expected.0 + 1);
            report.records += 1;
            pos += n as u64;
        }
        prev_end = pos;
    }
    Ok((chain.len() - 1, prev_end))
}

/// Returns true if `rec` is a fragment continuing the entry of the orphan fragments before it
/// (or, for the chain's first record, any fragment but a first one); tracks it in `orphan`.
fn continues_orphan(orphan: &mut Option<FragmentHead>, rec: &LogRecord) -> bool {
    let LogRecord::Fragment(f) = rec else {
        return false;
    };
    let h = f.head;
    let ok = match orphan {
        None => h.number > 0,
        Some(o) => o.same_entry(&h) && o.number.checked_add(1) == Some(h.number),
    };
    if ok {
        *orphan = Some(h);
    }
    ok
}

/// Zeroes the fragments of the incomplete entry `a` that lie in `seg` (the segment of its
/// first fragment; later segments were freed), last one first, each write flushed before the
/// next: a crash in between leaves a complete prefix of the fragments followed by zeros, which
/// is again an incomplete entry at a torn tail (a partial zeroing in any other order could
/// leave a later fragment, written after an earlier one was durable, looking like evidence).
/// Returns the bytes of the first fragment's block before it.
async fn drop_fragments<D: BlockDevice>(
    dev: &D,
    block: usize,
    seg: Segment,
    a: &super::state::Assembly,
    report: &mut RecoveryReport,
) -> Result<Vec<u8>> {
    let bs = block as u64;
    let mut prefix = Vec::new();
    for (p, len) in a
        .parts
        .iter()
        .rev()
        .filter(|(p, _)| p.segment.0 == seg.id.0)
    {
        let start = p.offset - p.offset % bs;
        let end = (p.offset + *len as u64).div_ceil(bs) * bs;
        let end = end.min(seg.len);
        let old = dev
            .read(seg.offset + start, block)
            .await
            .map_err(Error::from_nvme)?;
        let keep = (p.offset - start) as usize;
        prefix = old.get(..keep).unwrap_or_default().to_vec();
        let mut buf = dev
            .alloc_buf((end - start) as usize)
            .map_err(Error::from_nvme)?;
        let b = buf.as_bytes_mut();
        b.fill(0);
        b[..keep].copy_from_slice(&prefix);
        let (res, _) = dev.write(seg.offset + start, buf).await;
        res.map_err(Error::from_nvme)?;
        dev.flush().await.map_err(Error::from_nvme)?;
        report.cut = true;
        report.cut_bytes += *len as u64;
    }
    report.records -= a.parts.len() as u64;
    Ok(prefix)
}

/// Looks for proof that the record `expected` at the hole (`ci`, `pos`) was flushed: a whole
/// record with a higher seq whose durable mark is above `expected` (its batch was written
/// after `expected`'s flush returned), in the window after the hole or at the start of a
/// later chain segment, or a later chain segment whose header's durable mark is above it.
async fn evidence<D: BlockDevice>(
    dev: &D,
    lim: Limits,
    block: usize,
    chain: &[(Segment, SegmentHeader)],
    ci: usize,
    pos: u64,
    expected: Seq,
) -> Result<bool> {
    let (seg, _) = chain[ci];
    if marked_record_in(dev, lim, block, seg, pos + 8, expected).await? {
        return Ok(true);
    }
    for (seg, hdr) in &chain[ci + 1..] {
        if hdr.durable_mark > expected
            || marked_record_in(dev, lim, block, *seg, block as u64, expected).await?
        {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Returns true if a whole record with `seq > expected` and durable mark `> expected` starts
/// at an 8-byte position in `[from, from + window)` of `seg`.
async fn marked_record_in<D: BlockDevice>(
    dev: &D,
    lim: Limits,
    block: usize,
    seg: Segment,
    from: u64,
    expected: Seq,
) -> Result<bool> {
    let max_body = lim.max_body;
    let later = |h: &super::record::RecordHeader| h.seq > expected && h.durable_mark() > expected;
    let wend = seg.len.min(from + lim.window);
    let mut rd = SegReader::new(dev, seg, block, lim.chunk);
    let mut q = from;
    while q + RECORD_HEADER_LEN as u64 <= wend {
        let hit = match rd.get(q, RECORD_HEADER_LEN).await? {
            Some(hb) => decode_header(hb, max_body).ok().filter(later),
            None => None,
        };
        if let Some(h) = hit {
            if let Some(rb) = rd.get(q, h.record_len()).await? {
                if check_crc(rb, &h).is_ok() {
                    return Ok(true);
                }
            }
        }
        q += 8;
    }
    Ok(false)
}

/// Zeroes the bytes after the tail `pos` of `seg` up to the evidence window's end, if any is
/// not zero, and flushes. Returns the tail block's bytes before `pos`.
async fn cut<D: BlockDevice>(
    dev: &D,
    lim: Limits,
    block: usize,
    seg: Segment,
    pos: u64,
    report: &mut RecoveryReport,
) -> Result<Vec<u8>> {
    let bs = block as u64;
    let start = pos - pos % bs;
    let end = seg
        .len
        .min((pos + lim.window).div_ceil(bs) * bs)
        .max(start + bs)
        .min(seg.len);
    if end <= start {
        return Ok(Vec::new());
    }
    let old = dev
        .read(seg.offset + start, (end - start) as usize)
        .await
        .map_err(Error::from_nvme)?;
    let keep = (pos - start) as usize;
    let prefix = old.get(..keep).unwrap_or_default().to_vec();
    if old
        .get(keep..)
        .is_some_and(|rest| rest.iter().any(|&b| b != 0))
    {
        let mut buf = dev
            .alloc_buf((end - start) as usize)
            .map_err(Error::from_nvme)?;
        let b = buf.as_bytes_mut();
        b.fill(0);
        b[..keep].copy_from_slice(&prefix);
        let (res, _) = dev.write(seg.offset + start, buf).await;
        res.map_err(Error::from_nvme)?;
        dev.flush().await.map_err(Error::from_nvme)?;
        report.cut = true;
        report.cut_bytes = end - pos;
    }
    Ok(prefix)
}
