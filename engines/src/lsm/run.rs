//! A sorted run: in memory (block index + bloom filter), how it is written (bounded buffer,
//! segments allocated as it grows) and how its frames are read back and checked
//! (`docs/format/key-index.md` §2–3).

use nvme::{BlockDevice, OwnerTag, SegmentId};

use super::bloom::{Bloom, key_hash};
use super::format::{
    self, BlockLoc, FRAME_HEADER_LEN, Footer, FrameKind, MAX_KEY_LEN, decode_frame,
    decode_index_chunk, encode_frame, encode_index_chunk, entry_len, frame_len, index_entry_len,
    put_entry, visit_block,
};
use super::manifest::RunDesc;
use super::{Error, IndexEntry, LsmConfig, Result, RunId};
use crate::segments::SharedStore;

/// Largest index or bloom chunk payload (format doc §2.2).
pub const CHUNK_BYTES_MAX: usize = 256 << 10;

/// One segment of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct RunSeg {
    pub id: u32,
    pub generation: u32,
    /// Device offset of the segment's first byte.
    pub offset: u64,
}

/// The decoded entries of one data block.
pub(super) type Block = Vec<(Box<[u8]>, IndexEntry)>;

/// A live run: what the manifest says of it, plus its block index and bloom filter.
#[derive(Debug)]
pub(super) struct Run {
    pub desc: RunDesc,
    pub segs: Vec<RunSeg>,
    /// Last key and location of every data block, in key order.
    pub index: Vec<(Box<[u8]>, BlockLoc)>,
    pub bloom: Bloom,
}

/// Builds a `Corruption` error for a frame of `run`.
fn corrupt(
    what: &'static str,
    seg: Option<&RunSeg>,
    loc: &BlockLoc,
    detail: &'static str,
) -> Error {
    Error::Corruption {
        what,
        segment: seg.map_or(u32::MAX, |s| s.id),
        offset: loc.offset,
        detail,
    }
}

impl Run {
    /// Returns the run's id.
    pub fn id(&self) -> RunId {
        self.desc.id
    }

    /// Returns the bytes this run holds in memory (block index and bloom filter).
    pub fn memory_bytes(&self) -> usize {
        let idx: usize = self
            .index
            .iter()
            .map(|(k, _)| k.len() + std::mem::size_of::<(Box<[u8]>, BlockLoc)>())
            .sum();
        idx + self.bloom.bytes().len() + self.segs.len() * std::mem::size_of::<RunSeg>()
    }

    /// Reads the frame at `loc` and returns it with its payload checked (no copy).
    pub async fn read_frame<D: BlockDevice>(
        dev: &D,
        segs: &[RunSeg],
        seg_len: u64,
        run: RunId,
        loc: &BlockLoc,
        kind: FrameKind,
        what: &'static str,
    ) -> Result<Frame<D::ReadBuf>> {
        let seg = segs.get(loc.part as usize);
        let s = seg.ok_or_else(|| corrupt(what, None, loc, "segment index out of range"))?;
        let a = dev.alignment() as u64;
        let end = loc.offset.checked_add(u64::from(loc.len));
        if loc.offset % a != 0 || u64::from(loc.len) % a != 0 || end.is_none_or(|e| e > seg_len) {
            return Err(corrupt(
                what,
                seg,
                loc,
                "frame location outside its segment",
            ));
        }
        let bytes = dev
            .read(s.offset + loc.offset, loc.len as usize)
            .await
            .map_err(Error::from_nvme)?;
        let len = decode_frame(&bytes, kind, run)
            .map_err(|e| corrupt(what, seg, loc, e.0))?
            .len();
        Ok(Frame { bytes, len })
    }

    /// Loads a run the manifest names: its footer, index chunks and bloom chunks.
    pub async fn load<D: BlockDevice>(
        dev: &D,
        desc: RunDesc,
        segs: Vec<RunSeg>,
        seg_len: u64,
    ) -> Result<Run> {
        let id = desc.id;
        let rd = |loc, kind, what| Self::read_frame(dev, &segs, seg_len, id, loc, kind, what);
        let p = rd(&desc.footer, FrameKind::Footer, "run footer").await?;
        let bad = |d| corrupt("run footer", segs.first(), &desc.footer, d);
        let f = Footer::decode(p.payload()).map_err(|e| bad(e.0))?;
        if f.entries != desc.entries || f.tombstones != desc.tombstones {
            return Err(bad("footer counts differ from the manifest"));
        }
        let mut index = Vec::new();
        for loc in &f.index_chunks {
            let p = rd(loc, FrameKind::Index, "run index").await?;
            let chunk = decode_index_chunk(p.payload())
                .map_err(|e| corrupt("run index", None, loc, e.0))?;
            if let (Some((prev, _)), Some((first, _))) = (index.last(), chunk.first())
                && prev >= first
            {
                return Err(corrupt("run index", None, loc, "index keys out of order"));
            }
            index.extend(chunk);
        }
        if index.len() as u64 != f.data_blocks {
            return Err(bad("index does not name every data block"));
        }
        let mut bits = Vec::with_capacity((f.bloom_bits / 8) as usize);
        for loc in &f.bloom_chunks {
            let p = rd(loc, FrameKind::Bloom, "run bloom filter").await?;
            if bits.len() + p.payload().len() > (f.bloom_bits / 8) as usize {
                return Err(bad("bloom chunks longer than the filter"));
            }
            bits.extend_from_slice(p.payload());
        }
        let bloom = Bloom::from_parts(bits, f.bloom_bits, f.bloom_k).map_err(|e| bad(e.0))?;
        Ok(Run {
            desc,
            segs,
            index,
            bloom,
        })
    }

    /// Returns the index of the block that would hold `key`, if any block can.
    pub fn block_for(&self, key: &[u8]) -> Option<usize> {
        let i = self.index.partition_point(|(last, _)| &**last < key);
        (i < self.index.len()).then_some(i)
    }

    /// Reads data block `i`, checks it, and hands each entry to `f` (no copies). The block
    /// must hold exactly the keys the index says: its last key is the index's, its first is
    /// above the previous block's last.
    async fn visit<D: BlockDevice>(
        &self,
        dev: &D,
        seg_len: u64,
        i: usize,
        f: impl FnMut(&[u8], IndexEntry),
    ) -> Result<()> {
        let (last, loc) = self
            .index
            .get(i)
            .ok_or(Error::InvalidArgument("block index out of range"))?;
        let id = self.id();
        let frame = Self::read_frame(
            dev,
            &self.segs,
            seg_len,
            id,
            loc,
            FrameKind::Data,
            "data block",
        )
        .await?;
        let seg = self.segs.get(loc.part as usize);
        let bad = |d| corrupt("data block", seg, loc, d);
        let (first, got_last) = visit_block(frame.payload(), f).map_err(|e| bad(e.0))?;
        let prev_last = i
            .checked_sub(1)
            .and_then(|j| self.index.get(j))
            .map(|(k, _)| &**k);
        if got_last != &**last || prev_last.is_some_and(|p| p >= first) {
            return Err(bad("keys differ from the block index"));
        }
        Ok(())
    }

    /// Reads and decodes data block `i` (see [`Self::visit`] for the checks).
    pub async fn read_block<D: BlockDevice>(
        &self,
        dev: &D,
        seg_len: u64,
        i: usize,
    ) -> Result<Block> {
        let mut block = Vec::new();
        self.visit(dev, seg_len, i, |k, e| block.push((k.into(), e)))
            .await?;
        Ok(block)
    }

    /// Looks `key` up: bloom filter, block index, one block read (checked as a whole, the key
    /// found in place without copying the block).
    pub async fn get<D: BlockDevice>(
        &self,
        dev: &D,
        seg_len: u64,
        key: &[u8],
        hash: u64,
    ) -> Result<Probe> {
        if !self.bloom.may_contain(hash) {
            return Ok(Probe::BloomNegative);
        }
        let Some(i) = self.block_for(key) else {
            return Ok(Probe::Absent);
        };
        let mut found = None;
        self.visit(dev, seg_len, i, |k, e| {
            if k == key {
                found = Some(e);
            }
        })
        .await?;
        Ok(found.map_or(Probe::AbsentAfterRead, Probe::Found))
    }
}

/// A frame read from the device: its bytes and the length of its checked payload.
pub(super) struct Frame<B> {
    bytes: B,
    len: usize,
}

impl<B: std::ops::Deref<Target = [u8]>> Frame<B> {
    /// Returns the payload.
    pub fn payload(&self) -> &[u8] {
        self.bytes
            .get(FRAME_HEADER_LEN..FRAME_HEADER_LEN + self.len)
            .unwrap_or_default()
    }
}

/// What a probe of one run found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Probe {
    /// The bloom filter said absent (no I/O).
    BloomNegative,
    /// No block can hold the key (no I/O).
    Absent,
    /// A block was read and the key was not in it.
    AbsentAfterRead,
    /// The run's entry for the key.
    Found(IndexEntry),
}

/// Writes one run: frames go into a bounded buffer that is written when full; segments are
/// allocated as the run grows. Nothing is durable until [`RunWriter::finish`] flushed.
pub(super) struct RunWriter<D: BlockDevice> {
    store: SharedStore<D>,
    owner: OwnerTag,
    /// Free segments left to the store's other owners (`LsmConfig::reserve_segments`).
    reserve: u32,
    id: RunId,
    block: usize,
    seg_len: u64,
    target: usize,
    buf_cap: usize,
    segs: Vec<RunSeg>,
    /// Offset inside the newest segment where `buf` will be written.
    seg_pos: u64,
    buf: Vec<u8>,
    /// The data block being filled: its payload (count first) and entry count.
    blk: Vec<u8>,
    blk_count: u32,
    last_key: Vec<u8>,
    index: Vec<(Box<[u8]>, BlockLoc)>,
    bloom: Bloom,
    footer: Footer,
    /// Bytes written to the device so far.
    pub written_bytes: u64,
}

impl<D: BlockDevice> std::fmt::Debug for RunWriter<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunWriter")
            .field("id", &self.id)
            .field("segments", &self.segs.len())
            .field("entries", &self.footer.entries)
            .finish()
    }
}

impl<D: BlockDevice> RunWriter<D> {
    /// Starts run `id`, sizing its bloom filter for `expected` entries.
    pub fn new(store: SharedStore<D>, cfg: &LsmConfig, id: RunId, expected: u64) -> Self {
        let block = store.device().alignment();
        let seg_len = store.segment_size();
        Self {
            store,
            owner: cfg.run_owner,
            reserve: cfg.reserve_segments,
            id,
            block,
            seg_len,
            target: cfg.block_bytes_target,
            buf_cap: cfg.write_buf_bytes,
            segs: Vec::new(),
            seg_pos: 0,
            buf: Vec::new(),
            blk: Vec::new(),
            blk_count: 0,
            last_key: Vec::new(),
            index: Vec::new(),
            bloom: Bloom::new(expected, cfg.bloom_bits_per_key),
            footer: Footer::default(),
            written_bytes: 0,
        }
    }

    /// Returns the segments allocated so far (for freeing them if the run is abandoned).
    pub fn segments(&self) -> Vec<SegmentId> {
        self.segs.iter().map(|s| SegmentId(s.id)).collect()
    }

    /// Returns the entries pushed so far.
    pub fn entries(&self) -> u64 {
        self.footer.entries
    }

    /// Adds the next entry; keys must be strictly increasing and 1..=64 KiB long.
    pub async fn push(&mut self, key: &[u8], entry: &IndexEntry) -> Result<()> {
        if key.is_empty() || key.len() > MAX_KEY_LEN {
            return Err(Error::InvalidArgument("key length must be 1 ..= 64 KiB"));
        }
        if self.footer.entries > 0 && key <= &self.last_key[..] {
            return Err(Error::InvalidArgument(
                "checkpoint keys must be strictly increasing",
            ));
        }
        let len = entry_len(key, entry);
        if self.blk_count > 0 && FRAME_HEADER_LEN + self.blk.len() + len > self.target {
            self.seal_block().await?;
        }
        if self.blk_count == 0 {
            self.blk.clear();
            self.blk.extend_from_slice(&0u32.to_le_bytes());
        }
        put_entry(&mut self.blk, key, entry);
        self.blk_count += 1;
        self.last_key.clear();
        self.last_key.extend_from_slice(key);
        self.bloom.insert(key_hash(key));
        self.footer.entries += 1;
        if matches!(entry, IndexEntry::Tombstone) {
            self.footer.tombstones += 1;
        }
        Ok(())
    }

    async fn seal_block(&mut self) -> Result<()> {
        let mut blk = std::mem::take(&mut self.blk);
        blk[0..4].copy_from_slice(&self.blk_count.to_le_bytes());
        let loc = self.put_frame(FrameKind::Data, &blk).await?;
        self.index.push((self.last_key.clone().into(), loc));
        self.footer.data_blocks += 1;
        self.footer.data_bytes += u64::from(loc.len);
        self.blk_count = 0;
        blk.clear();
        self.blk = blk;
        Ok(())
    }

    /// Places a frame in the buffer (writing the buffer or moving to a new segment first if it
    /// does not fit) and returns where it will be.
    async fn put_frame(&mut self, kind: FrameKind, payload: &[u8]) -> Result<BlockLoc> {
        let flen = frame_len(payload.len(), self.block);
        debug_assert!(flen <= self.buf_cap, "frame larger than the write buffer");
        let end = self.seg_pos + (self.buf.len() + flen) as u64;
        if self.segs.is_empty() || end > self.seg_len {
            self.write_buf().await?;
            let s = self
                .store
                .allocate_leaving(self.owner, self.reserve)
                .await
                .map_err(Error::from_nvme)?;
            self.segs.push(RunSeg {
                id: s.id.0,
                generation: s.generation.0,
                offset: s.offset,
            });
            self.seg_pos = 0;
        } else if self.buf.len() + flen > self.buf_cap {
            self.write_buf().await?;
        }
        let loc = BlockLoc {
            part: (self.segs.len() - 1) as u32,
            offset: self.seg_pos + self.buf.len() as u64,
            len: flen as u32,
        };
        let start = self.buf.len();
        self.buf.resize(start + flen, 0);
        encode_frame(kind, self.id, payload, &mut self.buf[start..]);
        Ok(loc)
    }

    /// Writes the buffered frames at the current position, then yields to the executor.
    async fn write_buf(&mut self) -> Result<()> {
        let Some(seg) = self.segs.last().copied() else {
            return Ok(());
        };
        if self.buf.is_empty() {
            return Ok(());
        }
        let dev = self.store.device();
        let mut b = dev.alloc_buf(self.buf.len()).map_err(Error::from_nvme)?;
        nvme::IoBuf::as_bytes_mut(&mut b).copy_from_slice(&self.buf);
        let (res, _) = dev.write(seg.offset + self.seg_pos, b).await;
        res.map_err(Error::from_nvme)?;
        self.seg_pos += self.buf.len() as u64;
        self.written_bytes += self.buf.len() as u64;
        self.buf.clear();
        futures_lite::future::yield_now().await;
        Ok(())
    }

    /// Writes the last block, the index, the bloom filter and the footer, and flushes.
    /// Returns `None` (nothing written) for a run without entries. After an error,
    /// [`Self::segments`] still names every segment allocated.
    pub async fn finish(&mut self) -> Result<Option<Run>> {
        if self.footer.entries == 0 {
            return Ok(None);
        }
        if self.blk_count > 0 {
            self.seal_block().await?;
        }
        let chunk_max = CHUNK_BYTES_MAX.min(self.buf_cap) - FRAME_HEADER_LEN;
        let mut start = 0;
        while start < self.index.len() {
            let mut size = 4;
            let mut end = start;
            while end < self.index.len() && size + index_entry_len(&self.index[end].0) <= chunk_max
            {
                size += index_entry_len(&self.index[end].0);
                end += 1;
            }
            let payload = encode_index_chunk(&self.index[start..end]);
            let loc = self.put_frame(FrameKind::Index, &payload).await?;
            self.footer.index_chunks.push(loc);
            start = end;
        }
        let bloom = std::mem::replace(&mut self.bloom, Bloom::new(0, 1));
        for part in bloom.bytes().chunks(chunk_max) {
            let loc = self.put_frame(FrameKind::Bloom, part).await?;
            self.footer.bloom_chunks.push(loc);
        }
        self.footer.bloom_bits = bloom.bits();
        self.footer.bloom_k = bloom.k();
        let payload = self.footer.encode();
        if frame_len(payload.len(), self.block) > self.buf_cap {
            return Err(Error::InvalidArgument("run too large for its footer"));
        }
        let footer = self.put_frame(FrameKind::Footer, &payload).await?;
        self.write_buf().await?;
        self.store
            .device()
            .flush()
            .await
            .map_err(Error::from_nvme)?;
        let desc = RunDesc {
            id: self.id,
            entries: self.footer.entries,
            tombstones: self.footer.tombstones,
            data_bytes: self.footer.data_bytes,
            footer,
            segments: self.segs.iter().map(|s| (s.id, s.generation)).collect(),
        };
        Ok(Some(Run {
            desc,
            segs: self.segs.clone(),
            index: std::mem::take(&mut self.index),
            bloom,
        }))
    }
}

// The largest data block (one entry with a 64 KiB key) fits the smallest write buffer.
const _: () = assert!(FRAME_HEADER_LEN + 4 + format::ENTRY_FIXED_MAX + MAX_KEY_LEN <= 128 << 10);
