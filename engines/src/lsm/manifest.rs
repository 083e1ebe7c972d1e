//! The manifest: what the index is made of (live runs, each range's applied index), its record
//! codec, and the manifest log that finds the newest valid record at open without a file
//! system (`docs/format/key-index.md` §4).

use std::collections::BTreeMap;

use nvme::{BlockDevice, Segment};

use super::format::{BlockLoc, DecodeError, LOC_LEN, Reader, round_up};
use super::{Error, Result, RunId};
use crate::vlog::{LogIndex, RangeId};

/// Length of a manifest record header.
pub const MANIFEST_HEADER_LEN: usize = 32;
/// Largest manifest record payload.
pub const MANIFEST_RECORD_MAX: usize = 1 << 20;
/// Format version of a manifest payload without range metadata (written when there is none,
/// so such records stay byte-identical to version 1).
pub const MANIFEST_VERSION: u32 = 1;
/// Format version of a manifest payload with a range-metadata section.
pub const MANIFEST_VERSION_META: u32 = 2;
/// Largest metadata blob of one range.
pub const RANGE_META_MAX: usize = 64 << 10;
const MAGIC: &[u8; 4] = b"TKMF";

/// A run as the manifest names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunDesc {
    /// The run's id.
    pub id: RunId,
    /// Entries (tombstones included).
    pub entries: u64,
    /// Tombstones.
    pub tombstones: u64,
    /// Bytes of data-block frames.
    pub data_bytes: u64,
    /// Where the footer frame is.
    pub footer: BlockLoc,
    /// The run's segments in part order: (segment id, store generation).
    pub segments: Vec<(u32, u32)>,
}

/// One complete manifest: the live runs (newest first) and each range's applied index.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Manifest {
    /// Sequence number of the record (0: nothing written yet).
    pub seq: u64,
    /// Run ids below this have been handed out.
    pub next_run_id: u64,
    /// Live runs, newest first.
    pub runs: Vec<RunDesc>,
    /// Each range's applied index.
    pub ranges: BTreeMap<RangeId, LogIndex>,
    /// The caller's metadata of a range at its applied index (opaque; ds-node keeps the
    /// range's descriptor and Raft term there). Only ranges of `ranges` have one.
    pub range_meta: BTreeMap<RangeId, Vec<u8>>,
}

impl Manifest {
    /// Encodes the payload (everything but `seq`, which is in the record header).
    pub fn encode_payload(&self) -> Vec<u8> {
        let mut o = Vec::new();
        let version = if self.range_meta.is_empty() {
            MANIFEST_VERSION
        } else {
            MANIFEST_VERSION_META
        };
        o.extend_from_slice(&version.to_le_bytes());
        o.extend_from_slice(&self.next_run_id.to_le_bytes());
        o.extend_from_slice(&(self.runs.len() as u32).to_le_bytes());
        for r in &self.runs {
            for v in [r.id.0, r.entries, r.tombstones, r.data_bytes] {
                o.extend_from_slice(&v.to_le_bytes());
            }
            o.extend_from_slice(&r.footer.part.to_le_bytes());
            o.extend_from_slice(&r.footer.offset.to_le_bytes());
            o.extend_from_slice(&r.footer.len.to_le_bytes());
            o.extend_from_slice(&(r.segments.len() as u32).to_le_bytes());
            for (id, g) in &r.segments {
                o.extend_from_slice(&id.to_le_bytes());
                o.extend_from_slice(&g.to_le_bytes());
            }
        }
        o.extend_from_slice(&(self.ranges.len() as u32).to_le_bytes());
        for (r, i) in &self.ranges {
            o.extend_from_slice(&r.0.to_le_bytes());
            o.extend_from_slice(&i.0.to_le_bytes());
        }
        if version == MANIFEST_VERSION_META {
            o.extend_from_slice(&(self.range_meta.len() as u32).to_le_bytes());
            for (r, m) in &self.range_meta {
                o.extend_from_slice(&r.0.to_le_bytes());
                o.extend_from_slice(&(m.len() as u32).to_le_bytes());
                o.extend_from_slice(m);
            }
        }
        o
    }

    /// Decodes a payload written by [`Self::encode_payload`]; `seq` comes from the header.
    pub fn decode_payload(p: &[u8], seq: u64) -> Result<Self, DecodeError> {
        let mut r = Reader::new(p);
        let version = r.u32()?;
        if version != MANIFEST_VERSION && version != MANIFEST_VERSION_META {
            return Err(DecodeError("unknown manifest version"));
        }
        let next_run_id = r.u64()?;
        let n = r.u32()? as usize;
        if n > r.remaining() / (32 + LOC_LEN + 4) {
            return Err(DecodeError("bad run count"));
        }
        let mut runs = Vec::with_capacity(n);
        for _ in 0..n {
            let run = RunDesc {
                id: RunId(r.u64()?),
                entries: r.u64()?,
                tombstones: r.u64()?,
                data_bytes: r.u64()?,
                footer: BlockLoc {
                    part: r.u32()?,
                    offset: r.u64()?,
                    len: r.u32()?,
                },
                segments: {
                    let k = r.u32()? as usize;
                    if k == 0 || k > r.remaining() / 8 {
                        return Err(DecodeError("bad segment count"));
                    }
                    (0..k)
                        .map(|_| Ok((r.u32()?, r.u32()?)))
                        .collect::<Result<_, DecodeError>>()?
                },
            };
            if run.id.0 >= next_run_id || run.footer.part as usize >= run.segments.len() {
                return Err(DecodeError("run id or footer out of range"));
            }
            if run.tombstones > run.entries || run.entries == 0 {
                return Err(DecodeError("bad run counts"));
            }
            runs.push(run);
        }
        let k = r.u32()? as usize;
        if k > r.remaining() / 16 {
            return Err(DecodeError("bad range count"));
        }
        let mut ranges = BTreeMap::new();
        let mut prev = None;
        for _ in 0..k {
            let range = RangeId(r.u64()?);
            if prev.is_some_and(|p| p >= range) {
                return Err(DecodeError("ranges out of order"));
            }
            prev = Some(range);
            ranges.insert(range, LogIndex(r.u64()?));
        }
        let range_meta = if version == MANIFEST_VERSION_META {
            decode_range_meta(&mut r, &ranges)?
        } else {
            BTreeMap::new()
        };
        r.finish()?;
        Ok(Self {
            seq,
            next_run_id,
            runs,
            ranges,
            range_meta,
        })
    }
}

/// Decodes the range-metadata section of a version-2 payload: strictly increasing range ids,
/// each a range of the `ranges` section, each blob at most [`RANGE_META_MAX`] bytes.
fn decode_range_meta(
    r: &mut Reader<'_>,
    ranges: &BTreeMap<RangeId, LogIndex>,
) -> Result<BTreeMap<RangeId, Vec<u8>>, DecodeError> {
    let k = r.u32()? as usize;
    if k > r.remaining() / 12 || k > ranges.len() {
        return Err(DecodeError("bad range metadata count"));
    }
    let mut out = BTreeMap::new();
    let mut prev = None;
    for _ in 0..k {
        let range = RangeId(r.u64()?);
        if prev.is_some_and(|p| p >= range) || !ranges.contains_key(&range) {
            return Err(DecodeError("range metadata out of order or of no range"));
        }
        prev = Some(range);
        let len = r.u32()? as usize;
        if len > RANGE_META_MAX {
            return Err(DecodeError("range metadata too long"));
        }
        out.insert(range, r.bytes(len)?.to_vec());
    }
    Ok(out)
}

/// Encodes one copy of a manifest record written into segment `seg_id` of generation `gen`,
/// padded to `block`. `InvalidArgument` if the payload exceeds [`MANIFEST_RECORD_MAX`].
pub fn encode_record(m: &Manifest, seg_id: u32, generation: u32, block: usize) -> Result<Vec<u8>> {
    let payload = m.encode_payload();
    if payload.len() > MANIFEST_RECORD_MAX {
        return Err(Error::InvalidArgument("manifest larger than 1 MiB"));
    }
    let end = MANIFEST_HEADER_LEN + payload.len();
    let mut o = vec![0u8; round_up(end, block)];
    o[0..4].copy_from_slice(MAGIC);
    o[8..16].copy_from_slice(&m.seq.to_le_bytes());
    o[16..20].copy_from_slice(&seg_id.to_le_bytes());
    o[20..24].copy_from_slice(&generation.to_le_bytes());
    o[24..28].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    o[MANIFEST_HEADER_LEN..end].copy_from_slice(&payload);
    let crc = crc32c::crc32c(&o[8..end]);
    o[4..8].copy_from_slice(&crc.to_le_bytes());
    Ok(o)
}

/// Returns the record length (header + payload, unpadded) a header at the start of `bytes`
/// announces, if it has the magic and a plausible length.
pub fn record_len(bytes: &[u8]) -> Option<usize> {
    if bytes.get(0..4)? != MAGIC {
        return None;
    }
    let mut r = Reader::new(bytes.get(24..28)?);
    let len = r.u32().ok()? as usize;
    (len <= MANIFEST_RECORD_MAX).then_some(MANIFEST_HEADER_LEN + len)
}

/// Decodes one record copy read from segment `seg_id` of generation `gen`.
pub fn decode_record(bytes: &[u8], seg_id: u32, generation: u32) -> Result<Manifest, DecodeError> {
    let len = record_len(bytes).ok_or(DecodeError("no manifest record here"))?;
    let b = bytes
        .get(..len)
        .ok_or(DecodeError("truncated manifest record"))?;
    let mut r = Reader::new(b);
    r.bytes(4)?;
    let crc = r.u32()?;
    let seq = r.u64()?;
    let (sid, g, _plen, rsvd) = (r.u32()?, r.u32()?, r.u32()?, r.u32()?);
    if crc32c::crc32c(b.get(8..).unwrap_or_default()) != crc {
        return Err(DecodeError("manifest checksum mismatch"));
    }
    if rsvd != 0 || seq == 0 {
        return Err(DecodeError("bad manifest header"));
    }
    if sid != seg_id || g != generation {
        return Err(DecodeError(
            "manifest record of another segment or generation",
        ));
    }
    Manifest::decode_payload(b.get(MANIFEST_HEADER_LEN..).unwrap_or_default(), seq)
}

/// The newest valid record of one manifest segment and where its log ends.
#[derive(Debug)]
pub struct ScanResult {
    /// The newest valid manifest in the segment.
    pub newest: Option<Manifest>,
    /// Offset after the last valid record (where the next write would go).
    pub end: u64,
    /// Invalid positions skipped before a later valid record (damage, not a torn tail).
    pub skipped: u64,
    /// Valid record copies found.
    pub copies: u64,
}

/// Reads a manifest segment and returns its newest valid record (rules: format doc §4).
pub async fn scan_segment<D: BlockDevice>(dev: &D, seg: &Segment) -> Result<ScanResult> {
    let block = dev.alignment();
    let window = round_up(MANIFEST_HEADER_LEN + MANIFEST_RECORD_MAX, block) as u64;
    let mut res = ScanResult {
        newest: None,
        end: 0,
        skipped: 0,
        copies: 0,
    };
    let mut pos = 0u64;
    let mut miss_from: Option<u64> = None;
    while pos + block as u64 <= seg.len {
        if miss_from.is_some_and(|m| pos >= m + window) {
            break;
        }
        match read_record(dev, seg, pos).await? {
            Some((m, padded)) => {
                if miss_from.take().is_some() {
                    res.skipped += 1;
                }
                res.copies += 1;
                if res.newest.as_ref().is_none_or(|n| m.seq > n.seq) {
                    res.newest = Some(m);
                }
                pos += padded;
                res.end = pos;
            }
            None => {
                miss_from.get_or_insert(pos);
                pos += block as u64;
            }
        }
    }
    Ok(res)
}

/// Reads and decodes the record copy at `pos`, if a valid one is there.
async fn read_record<D: BlockDevice>(
    dev: &D,
    seg: &Segment,
    pos: u64,
) -> Result<Option<(Manifest, u64)>> {
    let block = dev.alignment();
    let head = dev
        .read(seg.offset + pos, block)
        .await
        .map_err(Error::from_nvme)?;
    let Some(len) = record_len(&head) else {
        return Ok(None);
    };
    let padded = round_up(len, block) as u64;
    if pos + padded > seg.len {
        return Ok(None);
    }
    let bytes = if padded as usize == block {
        head
    } else {
        dev.read(seg.offset + pos, padded as usize)
            .await
            .map_err(Error::from_nvme)?
    };
    Ok(decode_record(&bytes, seg.id.0, seg.generation.0)
        .ok()
        .map(|m| (m, padded)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn arb_manifest() -> impl Strategy<Value = Manifest> {
        let run = (
            any::<u32>().prop_map(u64::from),
            1u64..1000,
            0u64..1000,
            prop::collection::vec((any::<u32>(), any::<u32>()), 1..5),
            any::<u64>(),
        )
            .prop_map(|(id, entries, tomb, segments, off)| RunDesc {
                id: RunId(id),
                entries,
                tombstones: tomb.min(entries),
                data_bytes: entries * 40,
                footer: BlockLoc {
                    part: segments.len() as u32 - 1,
                    offset: off,
                    len: 4096,
                },
                segments,
            });
        (
            1u64..u64::MAX,
            prop::collection::vec(run, 0..6),
            prop::collection::btree_map(any::<u64>(), any::<u64>(), 0..20),
            prop::collection::vec(prop::collection::vec(any::<u8>(), 0..40), 0..20),
        )
            .prop_map(|(seq, runs, ranges, metas)| {
                // Metadata for some of the ranges (none: a version-1 payload).
                let range_meta = ranges
                    .keys()
                    .zip(metas)
                    .map(|(r, m)| (RangeId(*r), m))
                    .collect();
                Manifest {
                    seq,
                    next_run_id: 1 << 33,
                    runs,
                    ranges: ranges
                        .into_iter()
                        .map(|(r, i)| (RangeId(r), LogIndex(i)))
                        .collect(),
                    range_meta,
                }
            })
    }

    #[test]
    fn a_manifest_without_range_metadata_is_written_as_version_1() {
        let mut m = Manifest {
            seq: 3,
            next_run_id: 1,
            ..Manifest::default()
        };
        m.ranges.insert(RangeId(7), LogIndex(9));
        assert_eq!(m.encode_payload()[..4], MANIFEST_VERSION.to_le_bytes());
        m.range_meta.insert(RangeId(7), b"desc".to_vec());
        let p = m.encode_payload();
        assert_eq!(p[..4], MANIFEST_VERSION_META.to_le_bytes());
        assert_eq!(Manifest::decode_payload(&p, 3).unwrap(), m);
        // Metadata of a range the record does not name is refused.
        m.range_meta.insert(RangeId(8), b"x".to_vec());
        assert!(Manifest::decode_payload(&m.encode_payload(), 3).is_err());
    }

    proptest! {
        /// Records round-trip; another segment id or generation is refused.
        #[test]
        fn record_round_trips(m in arb_manifest(), seg in any::<u32>(), g in any::<u32>()) {
            let b = encode_record(&m, seg, g, 512).unwrap();
            prop_assert_eq!(b.len() % 512, 0);
            prop_assert_eq!(decode_record(&b, seg, g).unwrap(), m);
            prop_assert!(decode_record(&b, seg, g.wrapping_add(1)).is_err());
            prop_assert!(decode_record(&b, seg.wrapping_add(1), g).is_err());
        }

        /// Any flipped bit of the header or payload is detected.
        #[test]
        fn flipped_bits_are_detected(m in arb_manifest(), at in any::<prop::sample::Index>()) {
            let mut b = encode_record(&m, 1, 1, 512).unwrap();
            let len = record_len(&b).unwrap();
            let i = at.index(len);
            b[i] ^= 0x04;
            prop_assert!(decode_record(&b, 1, 1).is_err());
        }

        /// The decoder never panics on arbitrary bytes.
        #[test]
        fn decoder_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..800)) {
            let _ = decode_record(&bytes, 0, 0);
            let _ = Manifest::decode_payload(&bytes, 1);
        }
    }
}
