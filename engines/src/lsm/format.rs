//! Byte layout of run frames: the frame header, data blocks, index chunks and the footer
//! (`docs/format/key-index.md` §2). Pure encoders and decoders: no I/O, and the decoders never
//! panic on any input (they are fuzzed: `engines/fuzz/fuzz_targets/lsm_decoders.rs`).

use super::{IndexEntry, IndexValue, RunId};
use crate::pointer::{LogPointer, SegmentId};

/// Length of a frame header.
pub const FRAME_HEADER_LEN: usize = 24;
/// Longest key the index stores.
pub const MAX_KEY_LEN: usize = 64 * 1024;
/// Format version of frames.
pub const FRAME_VERSION: u8 = 1;
/// Bytes of an entry besides its key: key length, tag, and the value fields.
pub const ENTRY_FIXED_MAX: usize = 4 + 1 + VALUE_LEN;
const VALUE_LEN: usize = 1 + 8 + 4 + 8 + 4 + 4;
/// Bytes of one block location (`part`, `offset`, `len`).
pub const LOC_LEN: usize = 16;

/// What a decoder found wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DecodeError(pub &'static str);

type Res<T> = std::result::Result<T, DecodeError>;

/// The kind of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum FrameKind {
    /// Sorted entries.
    Data = 1,
    /// Part of the block index.
    Index = 2,
    /// Part of the bloom filter.
    Bloom = 3,
    /// The run's footer.
    Footer = 4,
}

/// Where a frame is inside a run: segment `part` of the run, byte `offset` in it, `len` bytes
/// (the padded frame length).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BlockLoc {
    /// Index of the segment in the run's segment list.
    pub part: u32,
    /// Byte offset inside that segment (a multiple of the block size).
    pub offset: u64,
    /// Frame length in bytes (a multiple of the block size).
    pub len: u32,
}

/// Returns `v` rounded up to a multiple of `align`.
pub fn round_up(v: usize, align: usize) -> usize {
    v.div_ceil(align) * align
}

/// Returns the padded length of a frame with `payload_len` payload bytes.
pub fn frame_len(payload_len: usize, block: usize) -> usize {
    round_up(FRAME_HEADER_LEN + payload_len, block)
}

/// Encodes a frame into `out` (exactly [`frame_len`] bytes, zero padding included).
pub fn encode_frame(kind: FrameKind, run: RunId, payload: &[u8], out: &mut [u8]) {
    let end = FRAME_HEADER_LEN + payload.len();
    assert!(out.len() >= end, "frame buffer too short");
    out.fill(0);
    out[4] = kind as u8;
    out[5] = FRAME_VERSION;
    out[8..12].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    out[16..24].copy_from_slice(&run.0.to_le_bytes());
    out[FRAME_HEADER_LEN..end].copy_from_slice(payload);
    let crc = crc32c::crc32c(&out[4..end]);
    out[0..4].copy_from_slice(&crc.to_le_bytes());
}

/// Decodes a frame of `kind` belonging to `run` and returns its payload.
pub fn decode_frame(bytes: &[u8], kind: FrameKind, run: RunId) -> Res<&[u8]> {
    let mut r = Reader::new(bytes);
    let crc = r.u32()?;
    let k = r.u8()?;
    let ver = r.u8()?;
    let rsvd = r.u16()?;
    let len = r.u32()? as usize;
    let rsvd2 = r.u32()?;
    let id = r.u64()?;
    let end = FRAME_HEADER_LEN
        .checked_add(len)
        .filter(|&e| e <= bytes.len())
        .ok_or(DecodeError("frame payload runs past the frame"))?;
    if crc32c::crc32c(bytes.get(4..end).ok_or(DecodeError("short frame"))?) != crc {
        return Err(DecodeError("frame checksum mismatch"));
    }
    if ver != FRAME_VERSION || rsvd != 0 || rsvd2 != 0 {
        return Err(DecodeError("unknown frame version or reserved bytes set"));
    }
    if k != kind as u8 {
        return Err(DecodeError("unexpected frame kind"));
    }
    if id != run.0 {
        return Err(DecodeError("frame of another run"));
    }
    bytes
        .get(FRAME_HEADER_LEN..end)
        .ok_or(DecodeError("short frame"))
}

/// Returns the encoded length of one entry.
pub fn entry_len(key: &[u8], entry: &IndexEntry) -> usize {
    4 + 1
        + key.len()
        + match entry {
            IndexEntry::Value(_) => VALUE_LEN,
            IndexEntry::Tombstone => 0,
        }
}

/// Appends one entry's encoding to `out`.
pub fn put_entry(out: &mut Vec<u8>, key: &[u8], entry: &IndexEntry) {
    out.extend_from_slice(&(key.len() as u32).to_le_bytes());
    match entry {
        IndexEntry::Tombstone => out.push(0),
        IndexEntry::Value(v) => {
            out.push(1);
            out.push(v.value_type);
            out.extend_from_slice(&v.expire_at_ms.to_le_bytes());
            out.extend_from_slice(&v.pointer.segment.0.to_le_bytes());
            out.extend_from_slice(&v.pointer.offset.to_le_bytes());
            out.extend_from_slice(&v.pointer.len.to_le_bytes());
            out.extend_from_slice(&v.pointer.checksum.to_le_bytes());
        }
    }
    out.extend_from_slice(key);
}

/// Decodes a data block's payload into its entries (keys strictly increasing).
pub fn decode_block(payload: &[u8]) -> Res<Vec<(Box<[u8]>, IndexEntry)>> {
    let mut out = Vec::new();
    visit_block(payload, |k, e| out.push((k.into(), e)))?;
    Ok(out)
}

/// Checks a data block's payload and hands each entry to `f` in key order without copying
/// (the point-get path). Returns the block's first and last keys. The whole payload is checked
/// (count, order, exact length) whatever `f` does.
pub fn visit_block<'a>(
    payload: &'a [u8],
    mut f: impl FnMut(&'a [u8], IndexEntry),
) -> Res<(&'a [u8], &'a [u8])> {
    let mut r = Reader::new(payload);
    let count = r.u32()? as usize;
    // Each entry takes at least 6 bytes: refuse counts the payload cannot hold.
    if count == 0 || count > payload.len() / 6 {
        return Err(DecodeError("bad entry count"));
    }
    let mut first: &[u8] = &[];
    let mut last: &[u8] = &[];
    for i in 0..count {
        let (key, entry) = read_entry(&mut r)?;
        if i == 0 {
            first = key;
        } else if last >= key {
            return Err(DecodeError("keys out of order"));
        }
        last = key;
        f(key, entry);
    }
    r.finish()?;
    Ok((first, last))
}

fn read_key<'a>(r: &mut Reader<'a>, len: usize) -> Res<&'a [u8]> {
    if len == 0 || len > MAX_KEY_LEN {
        return Err(DecodeError("bad key length"));
    }
    r.bytes(len)
}

fn read_entry<'a>(r: &mut Reader<'a>) -> Res<(&'a [u8], IndexEntry)> {
    let klen = r.u32()? as usize;
    let entry = match r.u8()? {
        0 => IndexEntry::Tombstone,
        1 => IndexEntry::Value(IndexValue {
            value_type: r.u8()?,
            expire_at_ms: r.u64()?,
            pointer: LogPointer {
                segment: SegmentId(r.u32()?),
                offset: r.u64()?,
                len: r.u32()?,
                checksum: r.u32()?,
            },
        }),
        _ => return Err(DecodeError("bad entry tag")),
    };
    Ok((read_key(r, klen)?, entry))
}

fn put_loc(out: &mut Vec<u8>, l: &BlockLoc) {
    out.extend_from_slice(&l.part.to_le_bytes());
    out.extend_from_slice(&l.offset.to_le_bytes());
    out.extend_from_slice(&l.len.to_le_bytes());
}

fn read_loc(r: &mut Reader<'_>) -> Res<BlockLoc> {
    let l = BlockLoc {
        part: r.u32()?,
        offset: r.u64()?,
        len: r.u32()?,
    };
    if l.len < FRAME_HEADER_LEN as u32 {
        return Err(DecodeError("frame location too short"));
    }
    Ok(l)
}

/// Returns the encoded length of one block-index entry.
pub fn index_entry_len(last_key: &[u8]) -> usize {
    4 + last_key.len() + LOC_LEN
}

/// Encodes an index chunk payload.
pub fn encode_index_chunk(entries: &[(Box<[u8]>, BlockLoc)]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&(entries.len() as u32).to_le_bytes());
    for (k, l) in entries {
        out.extend_from_slice(&(k.len() as u32).to_le_bytes());
        out.extend_from_slice(k);
        put_loc(&mut out, l);
    }
    out
}

/// Decodes an index chunk payload (last keys strictly increasing inside the chunk).
pub fn decode_index_chunk(payload: &[u8]) -> Res<Vec<(Box<[u8]>, BlockLoc)>> {
    let mut r = Reader::new(payload);
    let count = r.u32()? as usize;
    if count == 0 || count > payload.len() / (4 + 1 + LOC_LEN) {
        return Err(DecodeError("bad index entry count"));
    }
    let mut out: Vec<(Box<[u8]>, BlockLoc)> = Vec::with_capacity(count);
    for _ in 0..count {
        let klen = r.u32()? as usize;
        let key = read_key(&mut r, klen)?;
        let loc = read_loc(&mut r)?;
        if out.last().is_some_and(|(k, _)| **k >= *key) {
            return Err(DecodeError("index keys out of order"));
        }
        out.push((key.into(), loc));
    }
    r.finish()?;
    Ok(out)
}

/// The footer of a run (`docs/format/key-index.md` §2.4).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Footer {
    /// Entries in the run, tombstones included.
    pub entries: u64,
    /// Tombstones in the run.
    pub tombstones: u64,
    /// Number of data blocks.
    pub data_blocks: u64,
    /// Bytes of data-block frames.
    pub data_bytes: u64,
    /// Bloom filter size in bits.
    pub bloom_bits: u64,
    /// Bloom filter probes.
    pub bloom_k: u32,
    /// Where the index chunks are.
    pub index_chunks: Vec<BlockLoc>,
    /// Where the bloom chunks are.
    pub bloom_chunks: Vec<BlockLoc>,
}

impl Footer {
    /// Encodes the footer payload.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for v in [
            self.entries,
            self.tombstones,
            self.data_blocks,
            self.data_bytes,
            self.bloom_bits,
        ] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(&self.bloom_k.to_le_bytes());
        for chunks in [&self.index_chunks, &self.bloom_chunks] {
            out.extend_from_slice(&(chunks.len() as u32).to_le_bytes());
            for l in chunks {
                put_loc(&mut out, l);
            }
        }
        out
    }

    /// Decodes a footer payload.
    pub fn decode(payload: &[u8]) -> Res<Self> {
        let mut r = Reader::new(payload);
        let mut f = Footer {
            entries: r.u64()?,
            tombstones: r.u64()?,
            data_blocks: r.u64()?,
            data_bytes: r.u64()?,
            bloom_bits: r.u64()?,
            bloom_k: r.u32()?,
            ..Footer::default()
        };
        for i in 0..2 {
            let n = r.u32()? as usize;
            if n > r.remaining() / LOC_LEN {
                return Err(DecodeError("bad chunk count"));
            }
            let v = (0..n).map(|_| read_loc(&mut r)).collect::<Res<Vec<_>>>()?;
            if i == 0 {
                f.index_chunks = v;
            } else {
                f.bloom_chunks = v;
            }
        }
        r.finish()?;
        if f.tombstones > f.entries || (f.entries == 0) != (f.data_blocks == 0) {
            return Err(DecodeError("inconsistent footer counts"));
        }
        if f.bloom_bits == 0 || f.bloom_bits % 64 != 0 || !(1..=16).contains(&f.bloom_k) {
            return Err(DecodeError("bad bloom parameters"));
        }
        Ok(f)
    }
}

/// A bounds-checked little-endian reader: every read returns an error past the end.
#[derive(Debug)]
pub struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    /// Starts reading `b` at its first byte.
    pub fn new(b: &'a [u8]) -> Self {
        Self { b, at: 0 }
    }

    /// Returns the next `n` bytes.
    pub fn bytes(&mut self, n: usize) -> Res<&'a [u8]> {
        let end = self
            .at
            .checked_add(n)
            .ok_or(DecodeError("length overflow"))?;
        let s = self.b.get(self.at..end).ok_or(DecodeError("truncated"))?;
        self.at = end;
        Ok(s)
    }

    fn array<const N: usize>(&mut self) -> Res<[u8; N]> {
        let s = self.bytes(N)?;
        s.try_into().map_err(|_| DecodeError("truncated"))
    }

    /// Reads a u8.
    pub fn u8(&mut self) -> Res<u8> {
        Ok(self.array::<1>()?[0])
    }

    /// Reads a little-endian u16.
    pub fn u16(&mut self) -> Res<u16> {
        self.array().map(u16::from_le_bytes)
    }

    /// Reads a little-endian u32.
    pub fn u32(&mut self) -> Res<u32> {
        self.array().map(u32::from_le_bytes)
    }

    /// Reads a little-endian u64.
    pub fn u64(&mut self) -> Res<u64> {
        self.array().map(u64::from_le_bytes)
    }

    /// Returns the number of bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.b.len() - self.at
    }

    /// Fails unless every byte was read.
    pub fn finish(&self) -> Res<()> {
        if self.remaining() == 0 {
            Ok(())
        } else {
            Err(DecodeError("trailing bytes"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn arb_entry() -> impl Strategy<Value = IndexEntry> {
        prop_oneof![
            Just(IndexEntry::Tombstone),
            (
                any::<u8>(),
                any::<u64>(),
                any::<u32>(),
                any::<u64>(),
                any::<u32>(),
                any::<u32>()
            )
                .prop_map(|(t, e, s, o, l, c)| IndexEntry::Value(IndexValue {
                    value_type: t,
                    expire_at_ms: e,
                    pointer: LogPointer {
                        segment: SegmentId(s),
                        offset: o,
                        len: l,
                        checksum: c,
                    },
                })),
        ]
    }

    fn arb_loc() -> impl Strategy<Value = BlockLoc> {
        (any::<u32>(), any::<u64>(), 24u32..).prop_map(|(part, offset, len)| BlockLoc {
            part,
            offset,
            len,
        })
    }

    proptest! {
        /// Blocks round-trip through a frame: entries, kinds, run id.
        #[test]
        fn block_round_trips(
            entries in prop::collection::btree_map(
                prop::collection::vec(any::<u8>(), 1..40), arb_entry(), 1..30),
            run in any::<u64>(),
        ) {
            let mut payload = (entries.len() as u32).to_le_bytes().to_vec();
            for (k, e) in &entries {
                let before = payload.len();
                put_entry(&mut payload, k, e);
                prop_assert_eq!(payload.len() - before, entry_len(k, e));
            }
            let mut frame = vec![0; frame_len(payload.len(), 512)];
            encode_frame(FrameKind::Data, RunId(run), &payload, &mut frame);
            let got = decode_block(decode_frame(&frame, FrameKind::Data, RunId(run)).unwrap()).unwrap();
            let want: Vec<(Box<[u8]>, IndexEntry)> =
                entries.into_iter().map(|(k, e)| (k.into(), e)).collect();
            prop_assert_eq!(got, want);
            prop_assert!(decode_frame(&frame, FrameKind::Index, RunId(run)).is_err());
            prop_assert!(decode_frame(&frame, FrameKind::Data, RunId(run ^ 1)).is_err());
        }

        /// Index chunks and footers round-trip.
        #[test]
        fn index_and_footer_round_trip(
            keys in prop::collection::btree_set(prop::collection::vec(any::<u8>(), 1..40), 1..30),
            locs in prop::collection::vec(arb_loc(), 30),
            counts in (0u64..1000, 1u64..100, 1u64..1000, 1u32..=16),
            chunks in (prop::collection::vec(arb_loc(), 0..5), prop::collection::vec(arb_loc(), 0..5)),
        ) {
            let entries: Vec<(Box<[u8]>, BlockLoc)> =
                keys.into_iter().zip(locs).map(|(k, l)| (k.into(), l)).collect();
            prop_assert_eq!(decode_index_chunk(&encode_index_chunk(&entries)).unwrap(), entries);
            let f = Footer {
                entries: counts.0 + 1,
                tombstones: counts.0,
                data_blocks: counts.1,
                data_bytes: counts.2,
                bloom_bits: 64 * counts.2,
                bloom_k: counts.3,
                index_chunks: chunks.0,
                bloom_chunks: chunks.1,
            };
            prop_assert_eq!(Footer::decode(&f.encode()).unwrap(), f);
        }

        /// Decoders return errors on arbitrary bytes; they never panic.
        #[test]
        fn decoders_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
            let _ = decode_frame(&bytes, FrameKind::Data, RunId(0));
            let _ = decode_block(&bytes);
            let _ = decode_index_chunk(&bytes);
            let _ = Footer::decode(&bytes);
        }
    }

    /// A flipped bit anywhere in a frame's header or payload fails its checksum.
    #[test]
    fn flipped_bit_in_a_frame_is_detected() {
        let mut payload = 1u32.to_le_bytes().to_vec();
        put_entry(&mut payload, b"key", &IndexEntry::Tombstone);
        let mut frame = vec![0; frame_len(payload.len(), 512)];
        encode_frame(FrameKind::Data, RunId(3), &payload, &mut frame);
        for i in 0..FRAME_HEADER_LEN + payload.len() {
            let mut f = frame.clone();
            f[i] ^= 0x10;
            assert!(
                decode_frame(&f, FrameKind::Data, RunId(3)).is_err(),
                "byte {i}"
            );
        }
    }
}
