//! Byte layout of the superblock and the segment table (`docs/format/nvme.md`).
//!
//! Pure encoders and decoders: no I/O, and decoders never panic on any input (they are fuzzed).

use crate::error::{Error, Result};

/// The format version this build reads and writes.
pub const FORMAT_VERSION: u32 = 1;
/// Byte offsets of the two superblock copies.
pub const SUPERBLOCK_OFFSETS: [u64; 2] = [0, 64 * 1024];
/// Length of the superblock record (the rest of its block is zero).
pub const SUPERBLOCK_LEN: usize = 128;
/// Byte offset of segment-table slot 0.
pub const TABLE_OFFSET: u64 = 128 * 1024;
/// Largest block size the format supports (the second superblock copy must start a block).
pub const MAX_BLOCK_SIZE: usize = 64 * 1024;
/// Smallest block size the format supports.
pub const MIN_BLOCK_SIZE: usize = 512;
/// Length of a table slot's header.
pub const TABLE_HEADER_LEN: usize = 64;
/// Length of one table entry.
pub const ENTRY_LEN: usize = 16;
/// Most segments a device may have (each table update rewrites 16 bytes per segment: 64 MiB at
/// this bound). 2^22 segments of 64 MiB cover 256 TiB.
pub const MAX_SEGMENTS: u64 = 1 << 22;

const SB_MAGIC: &[u8; 8] = b"TKVNVMSB";
const TABLE_MAGIC: &[u8; 8] = b"TKVNVMST";
const SB_CRC_AT: usize = 124;
const TABLE_CRC_AT: usize = 56;
const DATA_ALIGN_MAX: u64 = 1024 * 1024;

const _: () = assert!(SUPERBLOCK_OFFSETS[1] as usize == MAX_BLOCK_SIZE);
const _: () = assert!(TABLE_OFFSET as usize == 2 * MAX_BLOCK_SIZE);
const _: () = assert!(SUPERBLOCK_LEN <= MIN_BLOCK_SIZE);

/// A device's 16-byte identity, chosen at format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DeviceUuid(pub [u8; 16]);

impl DeviceUuid {
    /// Returns 16 random bytes from the operating system (`/dev/urandom`).
    pub fn from_os_random() -> Result<Self> {
        use std::io::Read;
        let mut b = [0; 16];
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut b))
            .map_err(|e| Error::io("read /dev/urandom", e))?;
        Ok(Self(b))
    }
}

/// The decoded superblock: the device's geometry, fixed at format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Superblock {
    /// The device's identity.
    pub uuid: DeviceUuid,
    /// Block size at format (the device alignment), bytes.
    pub block_size: u32,
    /// Segment size, bytes.
    pub segment_size: u64,
    /// Device capacity at format, bytes.
    pub device_capacity: u64,
    /// Number of segments.
    pub segment_count: u64,
    /// Offset of table slot 0 (slot 1 follows it).
    pub table_offset: u64,
    /// Length of one table slot, bytes.
    pub table_slot_len: u64,
    /// Offset of segment 0.
    pub data_offset: u64,
}

fn round_up(v: u64, a: u64) -> Option<u64> {
    v.checked_add(a - 1).map(|x| x / a * a)
}

impl Superblock {
    /// Computes the geometry of a device (see the format doc, §1). `InvalidArgument` if the
    /// sizes are not usable or not even one segment fits.
    pub fn compute(
        uuid: DeviceUuid,
        device_capacity: u64,
        block_size: usize,
        segment_size: u64,
    ) -> Result<Self> {
        if !block_size.is_power_of_two() || !(MIN_BLOCK_SIZE..=MAX_BLOCK_SIZE).contains(&block_size)
        {
            return Err(Error::InvalidArgument(
                "block size must be a power of two in 512..=65536",
            ));
        }
        let bs = block_size as u64;
        if segment_size == 0 || segment_size % bs != 0 {
            return Err(Error::InvalidArgument(
                "segment size must be a non-zero multiple of the block size",
            ));
        }
        let too_small = Error::InvalidArgument("device too small for one segment");
        let upper = device_capacity.saturating_sub(TABLE_OFFSET) / segment_size;
        if upper > MAX_SEGMENTS {
            return Err(Error::InvalidArgument(
                "more than 2^22 segments: use a larger segment size",
            ));
        }
        let slot = upper
            .checked_mul(ENTRY_LEN as u64)
            .and_then(|e| e.checked_add(TABLE_HEADER_LEN as u64))
            .and_then(|v| round_up(v, bs))
            .ok_or(Error::InvalidArgument("device too large"))?;
        let data_offset = slot
            .checked_mul(2)
            .and_then(|s| s.checked_add(TABLE_OFFSET))
            .and_then(|end| round_up(end, segment_size.min(DATA_ALIGN_MAX).max(bs)))
            .ok_or(Error::InvalidArgument("device too large"))?;
        let count = device_capacity.saturating_sub(data_offset) / segment_size;
        if count == 0 {
            return Err(too_small);
        }
        Ok(Self {
            uuid,
            block_size: block_size as u32,
            segment_size,
            device_capacity,
            segment_count: count,
            table_offset: TABLE_OFFSET,
            table_slot_len: slot,
            data_offset,
        })
    }

    /// Returns the byte offset of table slot `slot` (0 or 1).
    pub fn slot_offset(&self, slot: usize) -> u64 {
        self.table_offset + self.table_slot_len * slot as u64
    }

    /// Encodes the 128-byte record.
    pub fn encode(&self) -> [u8; SUPERBLOCK_LEN] {
        let mut b = [0u8; SUPERBLOCK_LEN];
        b[0..8].copy_from_slice(SB_MAGIC);
        put_u32(&mut b, 8, FORMAT_VERSION);
        put_u32(&mut b, 12, 0);
        b[16..32].copy_from_slice(&self.uuid.0);
        put_u32(&mut b, 32, self.block_size);
        put_u64(&mut b, 40, self.segment_size);
        put_u64(&mut b, 48, self.device_capacity);
        put_u64(&mut b, 56, self.segment_count);
        put_u64(&mut b, 64, self.table_offset);
        put_u64(&mut b, 72, self.table_slot_len);
        put_u64(&mut b, 80, self.data_offset);
        let crc = crc32c::crc32c(&b[..SB_CRC_AT]);
        put_u32(&mut b, SB_CRC_AT, crc);
        b
    }

    /// Decodes a superblock copy found at `offset`. Errors: `NotFormatted` (no magic),
    /// `UnsupportedVersion`, `Corruption`. Geometry is checked against [`Self::compute`].
    pub fn decode(bytes: &[u8], offset: u64) -> Result<Self> {
        let corrupt = |detail| Error::Corruption {
            what: "superblock",
            offset,
            detail,
        };
        let b = bytes.get(..SUPERBLOCK_LEN).ok_or(corrupt("short"))?;
        if b.get(0..8) != Some(&SB_MAGIC[..]) {
            return Err(Error::NotFormatted);
        }
        let version = get_u32(b, 8)?;
        if version != FORMAT_VERSION {
            return Err(Error::UnsupportedVersion {
                found: version,
                supported: FORMAT_VERSION,
            });
        }
        if crc32c::crc32c(b.get(..SB_CRC_AT).ok_or(corrupt("short"))?) != get_u32(b, SB_CRC_AT)? {
            return Err(corrupt("checksum mismatch"));
        }
        let zero = |r: std::ops::Range<usize>| b.get(r).is_some_and(|s| s.iter().all(|&x| x == 0));
        if get_u32(b, 12)? != 0 || !zero(36..40) || !zero(88..SB_CRC_AT) {
            return Err(corrupt("reserved bytes not zero"));
        }
        let mut uuid = [0; 16];
        uuid.copy_from_slice(b.get(16..32).ok_or(corrupt("short"))?);
        let sb = Self {
            uuid: DeviceUuid(uuid),
            block_size: get_u32(b, 32)?,
            segment_size: get_u64(b, 40)?,
            device_capacity: get_u64(b, 48)?,
            segment_count: get_u64(b, 56)?,
            table_offset: get_u64(b, 64)?,
            table_slot_len: get_u64(b, 72)?,
            data_offset: get_u64(b, 80)?,
        };
        let expect = Self::compute(
            sb.uuid,
            sb.device_capacity,
            sb.block_size as usize,
            sb.segment_size,
        )
        .map_err(|_| corrupt("impossible geometry"))?;
        if expect != sb {
            return Err(corrupt("inconsistent geometry"));
        }
        Ok(sb)
    }
}

/// The state of one segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SegmentState {
    /// Not allocated.
    Free,
    /// Allocated to an owner.
    Allocated,
}

/// One segment-table entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    /// The owner's tag (0 when free).
    pub owner: u64,
    /// How many times the segment has been allocated.
    pub generation: u32,
    /// Free or allocated.
    pub state: SegmentState,
}

impl Entry {
    /// A never-allocated entry.
    pub const EMPTY: Entry = Entry {
        owner: 0,
        generation: 0,
        state: SegmentState::Free,
    };
}

/// Encodes a table slot into `out` (exactly `sb.table_slot_len` bytes).
pub fn encode_table(sb: &Superblock, sequence: u64, entries: &[Entry], out: &mut [u8]) {
    assert_eq!(
        out.len() as u64,
        sb.table_slot_len,
        "table slot buffer length"
    );
    assert_eq!(entries.len() as u64, sb.segment_count, "table entry count");
    out.fill(0);
    out[0..8].copy_from_slice(TABLE_MAGIC);
    put_u32(out, 8, FORMAT_VERSION);
    put_u64(out, 16, sequence);
    out[24..40].copy_from_slice(&sb.uuid.0);
    put_u64(out, 40, sb.segment_count);
    for (i, e) in entries.iter().enumerate() {
        let at = TABLE_HEADER_LEN + i * ENTRY_LEN;
        debug_assert!(e.state == SegmentState::Allocated || e.owner == 0);
        put_u64(out, at, e.owner);
        put_u32(out, at + 8, e.generation);
        out[at + 12] = match e.state {
            SegmentState::Free => 0,
            SegmentState::Allocated => 1,
        };
    }
    let end = TABLE_HEADER_LEN + entries.len() * ENTRY_LEN;
    let crc = table_crc(&out[..end]);
    put_u32(out, TABLE_CRC_AT, crc);
}

fn table_crc(b: &[u8]) -> u32 {
    let c = crc32c::crc32c(b.get(..TABLE_CRC_AT).unwrap_or_default());
    crc32c::crc32c_append(c, b.get(TABLE_CRC_AT + 4..).unwrap_or_default())
}

/// Decodes the table slot at `offset` for the device described by `sb`; returns its sequence
/// number and entries. Errors: `Corruption`.
pub fn decode_table(sb: &Superblock, bytes: &[u8], offset: u64) -> Result<(u64, Vec<Entry>)> {
    let corrupt = |detail| Error::Corruption {
        what: "segment table",
        offset,
        detail,
    };
    let count = usize::try_from(sb.segment_count).map_err(|_| corrupt("too many segments"))?;
    let end = count
        .checked_mul(ENTRY_LEN)
        .and_then(|n| n.checked_add(TABLE_HEADER_LEN))
        .ok_or(corrupt("too many segments"))?;
    let b = bytes.get(..end).ok_or(corrupt("short"))?;
    if b.get(0..8) != Some(&TABLE_MAGIC[..]) {
        return Err(corrupt("bad magic"));
    }
    if get_u32(b, 8)? != FORMAT_VERSION {
        return Err(corrupt("unknown version"));
    }
    if table_crc(b) != get_u32(b, TABLE_CRC_AT)? {
        return Err(corrupt("checksum mismatch"));
    }
    if b.get(24..40) != Some(&sb.uuid.0[..]) {
        return Err(corrupt("belongs to another device"));
    }
    if get_u64(b, 40)? != sb.segment_count {
        return Err(corrupt("segment count differs from the superblock"));
    }
    let zero = |r: std::ops::Range<usize>| b.get(r).is_some_and(|s| s.iter().all(|&x| x == 0));
    if !zero(12..16) || !zero(48..56) || !zero(60..64) {
        return Err(corrupt("reserved bytes not zero"));
    }
    let seq = get_u64(b, 16)?;
    let mut entries = Vec::with_capacity(count);
    for i in 0..count {
        let at = TABLE_HEADER_LEN + i * ENTRY_LEN;
        let owner = get_u64(b, at)?;
        let generation = get_u32(b, at + 8)?;
        let state = match b.get(at + 12) {
            Some(0) if owner == 0 => SegmentState::Free,
            Some(1) => SegmentState::Allocated,
            _ => return Err(corrupt("bad entry state")),
        };
        if !zero(at + 13..at + 16) {
            return Err(corrupt("reserved entry bytes not zero"));
        }
        entries.push(Entry {
            owner,
            generation,
            state,
        });
    }
    Ok((seq, entries))
}

fn put_u32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

fn put_u64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

fn get_u32(b: &[u8], at: usize) -> Result<u32> {
    b.get(at..at + 4)
        .and_then(|s| s.try_into().ok())
        .map(u32::from_le_bytes)
        .ok_or(Error::InvalidArgument("short buffer"))
}

fn get_u64(b: &[u8], at: usize) -> Result<u64> {
    b.get(at..at + 8)
        .and_then(|s| s.try_into().ok())
        .map(u64::from_le_bytes)
        .ok_or(Error::InvalidArgument("short buffer"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sb() -> Superblock {
        Superblock::compute(DeviceUuid([7; 16]), 64 << 20, 4096, 1 << 20).unwrap()
    }

    #[test]
    fn superblock_round_trips() {
        let s = sb();
        assert_eq!(Superblock::decode(&s.encode(), 0).unwrap(), s);
        assert_eq!(s.data_offset % (1 << 20), 0);
        assert!(s.data_offset + s.segment_count * s.segment_size <= s.device_capacity);
    }

    #[test]
    fn table_round_trips() {
        let s = sb();
        let mut entries = vec![Entry::EMPTY; s.segment_count as usize];
        entries[3] = Entry {
            owner: 42,
            generation: 5,
            state: SegmentState::Allocated,
        };
        let mut out = vec![0; s.table_slot_len as usize];
        encode_table(&s, 9, &entries, &mut out);
        assert_eq!(decode_table(&s, &out, 0).unwrap(), (9, entries));
    }

    /// Geometry limits: too many segments, too small a device, bad sizes.
    #[test]
    fn compute_refuses_unusable_geometry() {
        let u = DeviceUuid([1; 16]);
        assert!(Superblock::compute(u, 1 << 40, 4096, 4096).is_err());
        assert!(Superblock::compute(u, 1 << 40, 4096, 1 << 20).is_ok());
        assert!(Superblock::compute(u, 128 * 1024, 4096, 4096).is_err());
        assert!(Superblock::compute(u, 1 << 30, 4096, 6000).is_err());
        assert!(Superblock::compute(u, 1 << 30, 3000, 6000).is_err());
        assert!(Superblock::compute(u, 1 << 30, 1 << 17, 1 << 20).is_err());
    }

    /// Decoders return errors on arbitrary bytes; they never panic.
    #[test]
    fn decoders_never_panic_on_garbage() {
        let s = sb();
        let mut x: u64 = 1;
        for len in [0, 1, 63, 64, 127, 128, 200, 4096] {
            for _ in 0..200 {
                let bytes: Vec<u8> = (0..len)
                    .map(|_| {
                        x = x
                            .wrapping_mul(6364136223846793005)
                            .wrapping_add(1442695040888963407);
                        (x >> 56) as u8
                    })
                    .collect();
                let _ = Superblock::decode(&bytes, 0);
                let _ = decode_table(&s, &bytes, 0);
            }
        }
    }
}
