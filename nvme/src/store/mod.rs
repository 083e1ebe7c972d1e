//! The segment store: fixed-size segments on a [`BlockDevice`], described by a superblock and
//! a copy-on-write segment table (format and crash analysis: `docs/format/nvme.md`).
//!
//! Single-threaded: mutating calls take `&mut self`, so two table updates can never interleave.

pub mod format;

use std::fmt;

use crate::buf::IoBuf;
use crate::device::{BlockDevice, BlockDeviceExt};
use crate::error::{Error, Result};
use format::{
    DeviceUuid, Entry, MAX_BLOCK_SIZE, SUPERBLOCK_OFFSETS, SegmentState, Superblock, decode_table,
    encode_table,
};

/// Identifies a segment: its index on the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SegmentId(pub u32);

impl fmt::Display for SegmentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The caller's label for who owns a segment (e.g. "shard log of shard 3"); opaque here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OwnerTag(pub u64);

/// How many times a segment has been allocated; tells a reused segment from its last life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Generation(pub u32);

/// An allocated segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    /// Which segment.
    pub id: SegmentId,
    /// Who owns it.
    pub owner: OwnerTag,
    /// Its allocation count, including this allocation.
    pub generation: Generation,
    /// Byte offset of its first byte on the device.
    pub offset: u64,
    /// Its length in bytes (the store's segment size).
    pub len: u64,
}

/// Space accounting, in bytes (segments × segment size).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpaceUsage {
    /// Bytes in all segments.
    pub capacity_bytes: u64,
    /// Bytes in allocated segments.
    pub used_bytes: u64,
    /// Bytes in free segments.
    pub free_bytes: u64,
}

/// Options for [`SegmentStore::format`].
#[derive(Debug, Clone, Copy)]
pub struct FormatOptions {
    /// Segment size in bytes; a multiple of the device's block size. Default 64 MiB.
    pub segment_size: u64,
    /// The device's identity. Default: from the OS's random source (set it in tests).
    pub uuid: Option<DeviceUuid>,
}

impl Default for FormatOptions {
    fn default() -> Self {
        Self {
            segment_size: 64 << 20,
            uuid: None,
        }
    }
}

/// Segments on a block device.
pub struct SegmentStore<D: BlockDevice> {
    dev: D,
    sb: Superblock,
    entries: Vec<Entry>,
    allocated: u64,
    sequence: u64,
    /// The slot (0 or 1) holding the table with `sequence`.
    current_slot: usize,
    poisoned: bool,
    table_buf: Option<D::Buf>,
}

impl<D: BlockDevice> fmt::Debug for SegmentStore<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SegmentStore")
            .field("superblock", &self.sb)
            .field("allocated", &self.allocated)
            .field("sequence", &self.sequence)
            .field("poisoned", &self.poisoned)
            .finish()
    }
}

impl<D: BlockDevice> SegmentStore<D> {
    /// Formats `dev` as an empty segment store, destroying what it held, and opens it.
    ///
    /// Order (each step flushed): zero both superblock copies, write table slot 0 (sequence 1,
    /// all free) and a zeroed slot 1, then write both superblock copies.
    pub async fn format(dev: D, opts: FormatOptions) -> Result<Self> {
        let bs = dev.alignment();
        if bs > MAX_BLOCK_SIZE {
            return Err(Error::InvalidArgument(
                "device block size larger than 64 KiB",
            ));
        }
        let uuid = match opts.uuid {
            Some(u) => u,
            None => DeviceUuid::from_os_random()?,
        };
        let sb = Superblock::compute(uuid, dev.capacity(), bs, opts.segment_size)?;
        for off in SUPERBLOCK_OFFSETS {
            dev.write_copy(off, &[]).await?;
        }
        dev.flush().await?;
        let entries = vec![Entry::EMPTY; sb.segment_count as usize];
        let slot_len = usize::try_from(sb.table_slot_len)
            .map_err(|_| Error::InvalidArgument("table too large"))?;
        let mut buf = dev.alloc_buf(slot_len)?;
        encode_table(&sb, 1, &entries, buf.as_bytes_mut());
        let (res, mut buf) = dev.write(sb.slot_offset(0), buf).await;
        res?;
        buf.as_bytes_mut().fill(0);
        let (res, buf) = dev.write(sb.slot_offset(1), buf).await;
        res?;
        dev.flush().await?;
        let record = sb.encode();
        for off in SUPERBLOCK_OFFSETS {
            dev.write_copy(off, &record).await?;
        }
        dev.flush().await?;
        Ok(Self {
            dev,
            sb,
            entries,
            allocated: 0,
            sequence: 1,
            current_slot: 0,
            poisoned: false,
            table_buf: Some(buf),
        })
    }

    /// Opens a formatted device: validates the superblock copies, loads the newer valid table
    /// slot, then flushes once so the state it reports is durable.
    pub async fn open(dev: D) -> Result<Self> {
        let sb = read_superblock(&dev).await?;
        let mut best: Option<(u64, usize, Vec<Entry>)> = None;
        let mut first_err = None;
        let slot_len = usize::try_from(sb.table_slot_len)
            .map_err(|_| Error::InvalidArgument("table too large"))?;
        for slot in 0..2 {
            let off = sb.slot_offset(slot);
            let bytes = dev.read(off, slot_len).await?;
            match decode_table(&sb, &bytes, off) {
                Ok((seq, entries)) => {
                    if best.as_ref().is_none_or(|(s, _, _)| seq > *s) {
                        best = Some((seq, slot, entries));
                    }
                }
                Err(e) => first_err = first_err.or(Some(e)),
            }
        }
        let Some((sequence, current_slot, entries)) = best else {
            return Err(first_err.unwrap_or(Error::Corruption {
                what: "segment table",
                offset: sb.table_offset,
                detail: "no valid slot",
            }));
        };
        dev.flush().await?;
        let allocated = entries
            .iter()
            .filter(|e| e.state == SegmentState::Allocated)
            .count() as u64;
        Ok(Self {
            dev,
            sb,
            entries,
            allocated,
            sequence,
            current_slot,
            poisoned: false,
            table_buf: None,
        })
    }

    /// Allocates the lowest-numbered free segment to `owner`; durable when it returns.
    /// `NoSpace` if every segment is allocated.
    pub async fn allocate(&mut self, owner: OwnerTag) -> Result<Segment> {
        self.check_poisoned()?;
        let idx = self
            .entries
            .iter()
            .position(|e| e.state == SegmentState::Free && e.generation < u32::MAX)
            .ok_or(Error::NoSpace {
                segments: self.sb.segment_count,
            })?;
        let mut new = self.entries.clone();
        let e = &mut new[idx];
        *e = Entry {
            owner: owner.0,
            generation: e.generation + 1,
            state: SegmentState::Allocated,
        };
        self.commit(new).await?;
        self.allocated += 1;
        Ok(self.segment_at(idx))
    }

    /// Frees an allocated segment; durable when it returns. The caller must no longer need its
    /// bytes. `NotAllocated` if it is not allocated.
    pub async fn free(&mut self, id: SegmentId) -> Result<()> {
        self.check_poisoned()?;
        let idx = id.0 as usize;
        match self.entries.get(idx) {
            Some(e) if e.state == SegmentState::Allocated => {}
            _ => return Err(Error::NotAllocated(id.0)),
        }
        let mut new = self.entries.clone();
        new[idx].state = SegmentState::Free;
        new[idx].owner = 0;
        self.commit(new).await?;
        self.allocated -= 1;
        Ok(())
    }

    /// Returns the allocated segment `id`, if it is allocated.
    pub fn segment(&self, id: SegmentId) -> Option<Segment> {
        let idx = id.0 as usize;
        match self.entries.get(idx) {
            Some(e) if e.state == SegmentState::Allocated => Some(self.segment_at(idx)),
            _ => None,
        }
    }

    /// Returns every allocated segment in id order.
    pub fn segments(&self) -> impl Iterator<Item = Segment> + '_ {
        self.entries
            .iter()
            .enumerate()
            .filter(|(_, e)| e.state == SegmentState::Allocated)
            .map(|(i, _)| self.segment_at(i))
    }

    /// Returns capacity, used and free bytes.
    pub fn space(&self) -> SpaceUsage {
        let seg = self.sb.segment_size;
        SpaceUsage {
            capacity_bytes: self.sb.segment_count * seg,
            used_bytes: self.allocated * seg,
            free_bytes: (self.sb.segment_count - self.allocated) * seg,
        }
    }

    /// Returns the device geometry.
    pub fn superblock(&self) -> &Superblock {
        &self.sb
    }

    /// Returns the segment-table sequence number (1 after format, +1 per update).
    pub fn sequence(&self) -> u64 {
        self.sequence
    }

    /// Returns the device, for reading and writing segment contents.
    pub fn device(&self) -> &D {
        &self.dev
    }

    /// Closes the store and returns the device.
    pub fn into_device(self) -> D {
        self.dev
    }

    fn segment_at(&self, idx: usize) -> Segment {
        let e = &self.entries[idx];
        Segment {
            id: SegmentId(idx as u32),
            owner: OwnerTag(e.owner),
            generation: Generation(e.generation),
            offset: self.sb.data_offset + idx as u64 * self.sb.segment_size,
            len: self.sb.segment_size,
        }
    }

    fn check_poisoned(&self) -> Result<()> {
        if self.poisoned {
            Err(Error::DeviceFailed)
        } else {
            Ok(())
        }
    }

    /// Writes `new` into the other slot with the next sequence number and flushes. Poisons the
    /// store on any failure: what reached the media is unknown.
    async fn commit(&mut self, new: Vec<Entry>) -> Result<()> {
        let res = self.write_table(&new).await;
        if res.is_err() {
            self.poisoned = true;
            return res;
        }
        self.entries = new;
        self.sequence += 1;
        self.current_slot = 1 - self.current_slot;
        Ok(())
    }

    async fn write_table(&mut self, new: &[Entry]) -> Result<()> {
        let mut buf = match self.table_buf.take() {
            Some(b) => b,
            None => self.dev.alloc_buf(self.sb.table_slot_len as usize)?,
        };
        encode_table(&self.sb, self.sequence + 1, new, buf.as_bytes_mut());
        let other = 1 - self.current_slot;
        let (res, buf) = self.dev.write(self.sb.slot_offset(other), buf).await;
        self.table_buf = Some(buf);
        res?;
        self.dev.flush().await
    }
}

/// Reads and checks both superblock copies (rules in the format doc, §2).
async fn read_superblock<D: BlockDevice>(dev: &D) -> Result<Superblock> {
    let bs = dev.alignment();
    if bs > MAX_BLOCK_SIZE {
        return Err(Error::InvalidArgument(
            "device block size larger than 64 KiB",
        ));
    }
    let mut copies = Vec::with_capacity(2);
    for off in SUPERBLOCK_OFFSETS {
        if off + bs as u64 > dev.capacity() {
            copies.push(Err(Error::NotFormatted));
            continue;
        }
        let bytes = dev.read(off, bs).await?;
        copies.push(Superblock::decode(&bytes, off));
    }
    let valid: Vec<Superblock> = copies
        .iter()
        .filter_map(|c| c.as_ref().ok().copied())
        .collect();
    let sb = match valid.as_slice() {
        [a, b] if a != b => {
            return Err(Error::Corruption {
                what: "superblock",
                offset: 0,
                detail: "the two copies differ",
            });
        }
        [a, ..] => *a,
        [] => {
            // Prefer the most specific complaint: version, then corruption, then no magic.
            let mut errs = copies.into_iter().filter_map(Result::err);
            let (e0, e1) = (errs.next(), errs.next());
            return Err(pick_error(e0, e1));
        }
    };
    if sb.block_size as usize != bs {
        return Err(Error::BlockSizeMismatch {
            formatted: sb.block_size,
            device: bs,
        });
    }
    if dev.capacity() < sb.device_capacity {
        return Err(Error::DeviceTruncated {
            formatted: sb.device_capacity,
            actual: dev.capacity(),
        });
    }
    Ok(sb)
}

fn pick_error(a: Option<Error>, b: Option<Error>) -> Error {
    let rank = |e: &Error| match e {
        Error::UnsupportedVersion { .. } => 0,
        Error::Corruption { .. } => 1,
        _ => 2,
    };
    match (a, b) {
        (Some(a), Some(b)) => {
            if rank(&b) < rank(&a) {
                b
            } else {
                a
            }
        }
        (Some(e), None) | (None, Some(e)) => e,
        (None, None) => Error::NotFormatted,
    }
}
