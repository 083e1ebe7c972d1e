//! Record and segment-header codec (format: `docs/format/shard-log.md` §2–3).
//!
//! Encoders write into a caller's slice (the device buffer of a commit, no staging copy);
//! decoders take bytes from the device and return an error, never panic.

use super::types::{LogIndex, RangeId, Seq, Term};

/// Length of a record header in bytes.
pub const RECORD_HEADER_LEN: usize = 24;
/// Records start at multiples of this many bytes.
pub const RECORD_ALIGN: usize = 8;
/// Length of the segment header record (at offset 0 of each segment; the rest of the first
/// block is zero).
pub const SEGMENT_HEADER_LEN: usize = 64;
/// Magic bytes of a segment header.
pub const SEGMENT_MAGIC: [u8; 8] = *b"TKVSLOG1";
/// Format version written by this build (`docs/format/shard-log.md` §10).
pub const FORMAT_VERSION: u32 = 3;
/// Oldest format version this build reads. Version 1 differs only in what the `mark delta`
/// field promises, and its writers kept the version-2 promise too (one batch in flight);
/// version 2 lacks only the entry fragment record (kind 7).
pub const OLDEST_READABLE_VERSION: u32 = 1;

/// Length of the fixed part of a Raft entry body (range, term, index, type, reserved).
pub const ENTRY_FIXED_LEN: usize = 32;
/// Length of the fixed part of an entry fragment body (range, term, index, type, fragment
/// number and count, total payload length).
pub const FRAGMENT_FIXED_LEN: usize = 48;

const _: () = assert!(RECORD_HEADER_LEN % RECORD_ALIGN == 0);
const _: () = assert!(SEGMENT_HEADER_LEN <= 512);

/// The type of a record (the `kind` byte).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum RecordKind {
    /// A Raft entry.
    Entry = 1,
    /// A Raft hard state.
    HardState = 2,
    /// A Raft conf state.
    ConfState = 3,
    /// A value moved by garbage collection.
    Relocated = 4,
    /// A checkpoint marker.
    Checkpoint = 5,
    /// A Raft log truncation.
    Truncate = 6,
    /// One part of a Raft entry too long for one record (format §3).
    Fragment = 7,
}

impl RecordKind {
    fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            1 => Self::Entry,
            2 => Self::HardState,
            3 => Self::ConfState,
            4 => Self::Relocated,
            5 => Self::Checkpoint,
            6 => Self::Truncate,
            7 => Self::Fragment,
            _ => return None,
        })
    }
}

/// How a truncation record cuts a range's Raft log.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TruncateMode {
    /// Drop every entry below the index (log compaction after a snapshot or apply).
    Compact,
    /// Drop every entry at and above the index (conflicting uncommitted suffix).
    Suffix,
}

/// A Raft entry as the log stores it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntryRecord {
    /// The range (Raft group) the entry belongs to.
    pub range: RangeId,
    /// The entry's term.
    pub term: Term,
    /// The entry's index.
    pub index: LogIndex,
    /// The entry type, opaque to the log (raft-rs: 0 normal, 1 conf change, 2 conf change v2).
    pub entry_type: u8,
    /// The entry's data.
    pub payload: Vec<u8>,
}

/// The fixed fields of an entry fragment: which entry it is part of, and which part.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FragmentHead {
    /// The entry's range.
    pub range: RangeId,
    /// The entry's term.
    pub term: Term,
    /// The entry's index.
    pub index: LogIndex,
    /// The entry's type (opaque to the log).
    pub entry_type: u8,
    /// Position of this fragment in the entry, from 0.
    pub number: u32,
    /// Number of fragments of the entry (≥ 1).
    pub count: u32,
    /// Length of the entry's whole payload.
    pub total_len: u64,
}

impl FragmentHead {
    /// Returns true if `other` is a fragment of the same entry.
    pub fn same_entry(&self, other: &FragmentHead) -> bool {
        (
            self.range,
            self.term,
            self.index,
            self.entry_type,
            self.count,
            self.total_len,
        ) == (
            other.range,
            other.term,
            other.index,
            other.entry_type,
            other.count,
            other.total_len,
        )
    }

    /// Returns the length on the device of a fragment record carrying `part_len` bytes.
    pub fn encoded_len(part_len: usize) -> usize {
        padded(RECORD_HEADER_LEN + FRAGMENT_FIXED_LEN + part_len)
    }

    /// Encodes a fragment record carrying `part` into `out[..encoded_len(part.len())]` and
    /// returns its crc32c. Panics as [`LogRecord::encode`] does.
    pub fn encode_record(&self, part: &[u8], seq: Seq, mark_delta: u32, out: &mut [u8]) -> u32 {
        let body_len = FRAGMENT_FIXED_LEN + part.len();
        encode_framed(
            RecordKind::Fragment,
            body_len,
            seq,
            mark_delta,
            out,
            |body| {
                body[0..8].copy_from_slice(&self.range.0.to_le_bytes());
                body[8..16].copy_from_slice(&self.term.0.to_le_bytes());
                body[16..24].copy_from_slice(&self.index.0.to_le_bytes());
                body[24] = self.entry_type;
                body[25..28].fill(0);
                body[28..32].copy_from_slice(&self.number.to_le_bytes());
                body[32..36].copy_from_slice(&self.count.to_le_bytes());
                body[36..40].fill(0);
                body[40..48].copy_from_slice(&self.total_len.to_le_bytes());
                body[FRAGMENT_FIXED_LEN..].copy_from_slice(part);
            },
        )
    }
}

/// One fragment of a Raft entry as decoded from the device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FragmentRecord {
    /// Which entry and which part.
    pub head: FragmentHead,
    /// This fragment's share of the payload.
    pub part: Vec<u8>,
}

/// A Raft hard state (term, vote, commit) of one range.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct HardState {
    /// Current term.
    pub term: Term,
    /// Vote in the current term (a node id, 0 for none).
    pub vote: u64,
    /// Highest committed index.
    pub commit: LogIndex,
}

/// One typed record of the shard log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LogRecord {
    /// A Raft entry.
    Entry(EntryRecord),
    /// The hard state of a range.
    HardState {
        /// The range.
        range: RangeId,
        /// Its hard state.
        state: HardState,
    },
    /// The conf state of a range, encoded by the caller.
    ConfState {
        /// The range.
        range: RangeId,
        /// The encoded conf state.
        data: Vec<u8>,
    },
    /// A value relocated by garbage collection.
    Relocated {
        /// The range the value belongs to.
        range: RangeId,
        /// The caller's tag (e.g. the value's previous position).
        tag: u64,
        /// The value.
        value: Vec<u8>,
    },
    /// A checkpoint marker with the caller's data.
    Checkpoint {
        /// The caller's data (e.g. what the key index covers).
        data: Vec<u8>,
    },
    /// A Raft truncation of one range.
    Truncate {
        /// The range.
        range: RangeId,
        /// Compact below, or cut the suffix from, `index`.
        mode: TruncateMode,
        /// The index.
        index: LogIndex,
    },
    /// A fragment of a Raft entry longer than one record. Written by the log itself when an
    /// entry is appended; appending one directly is refused.
    Fragment(FragmentRecord),
}

/// Why bytes do not decode as a record or header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// Fewer bytes than the header or body needs.
    Short,
    /// Checksum mismatch.
    Checksum,
    /// A field has a value the format does not allow.
    Invalid(&'static str),
}

impl DecodeError {
    /// Returns a short description.
    pub fn detail(self) -> &'static str {
        match self {
            Self::Short => "truncated",
            Self::Checksum => "checksum mismatch",
            Self::Invalid(d) => d,
        }
    }
}

/// A decoded record header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordHeader {
    /// The stored crc32c.
    pub crc: u32,
    /// Body length in bytes.
    pub body_len: u32,
    /// Sequence number.
    pub seq: Seq,
    /// `seq` minus the record's durable mark (format §3).
    pub mark_delta: u32,
    /// The record's kind.
    pub kind: RecordKind,
}

impl RecordHeader {
    /// Returns the record's length (header + body), without padding.
    pub fn record_len(&self) -> usize {
        RECORD_HEADER_LEN + self.body_len as usize
    }

    /// Returns the record's durable mark: every record with a smaller `seq` had been flushed
    /// before this record's batch was written (saturating on a nonsense delta). In version 1
    /// logs this is the first seq of the record's batch, which kept the same promise.
    pub fn durable_mark(&self) -> Seq {
        Seq(self.seq.0.saturating_sub(u64::from(self.mark_delta)))
    }
}

/// Rounds `n` up to the record alignment.
pub fn padded(n: usize) -> usize {
    n.div_ceil(RECORD_ALIGN) * RECORD_ALIGN
}

impl LogRecord {
    /// Returns the record's kind.
    pub fn kind(&self) -> RecordKind {
        match self {
            Self::Entry(_) => RecordKind::Entry,
            Self::HardState { .. } => RecordKind::HardState,
            Self::ConfState { .. } => RecordKind::ConfState,
            Self::Relocated { .. } => RecordKind::Relocated,
            Self::Checkpoint { .. } => RecordKind::Checkpoint,
            Self::Truncate { .. } => RecordKind::Truncate,
            Self::Fragment(_) => RecordKind::Fragment,
        }
    }

    /// Returns the body length in bytes.
    pub fn body_len(&self) -> usize {
        match self {
            Self::Entry(e) => ENTRY_FIXED_LEN + e.payload.len(),
            Self::HardState { .. } => 32,
            Self::ConfState { data, .. } => 8 + data.len(),
            Self::Relocated { value, .. } => 16 + value.len(),
            Self::Checkpoint { data } => data.len(),
            Self::Truncate { .. } => 24,
            Self::Fragment(f) => FRAGMENT_FIXED_LEN + f.part.len(),
        }
    }

    /// Returns the record's length on the device (header + body + padding).
    pub fn encoded_len(&self) -> usize {
        padded(RECORD_HEADER_LEN + self.body_len())
    }

    /// Returns the offset of the record's variable-length data (payload, value) inside the
    /// record, if it has one.
    pub fn data_offset(&self) -> Option<usize> {
        match self {
            Self::Entry(_) => Some(RECORD_HEADER_LEN + ENTRY_FIXED_LEN),
            Self::ConfState { .. } => Some(RECORD_HEADER_LEN + 8),
            Self::Relocated { .. } => Some(RECORD_HEADER_LEN + 16),
            Self::Checkpoint { .. } => Some(RECORD_HEADER_LEN),
            Self::Fragment(_) => Some(RECORD_HEADER_LEN + FRAGMENT_FIXED_LEN),
            Self::HardState { .. } | Self::Truncate { .. } => None,
        }
    }

    /// Encodes the record into `out[..self.encoded_len()]` and returns its crc32c.
    ///
    /// Panics if `out` is shorter than `encoded_len()` or the body is longer than `u32::MAX`
    /// (both are the caller's bugs: the log sizes buffers and checks record lengths first).
    pub fn encode(&self, seq: Seq, mark_delta: u32, out: &mut [u8]) -> u32 {
        if let Self::Fragment(f) = self {
            return f.head.encode_record(&f.part, seq, mark_delta, out);
        }
        encode_framed(self.kind(), self.body_len(), seq, mark_delta, out, |body| {
            self.encode_body(body);
        })
    }

    fn encode_body(&self, body: &mut [u8]) {
        match self {
            Self::Entry(e) => {
                body[0..8].copy_from_slice(&e.range.0.to_le_bytes());
                body[8..16].copy_from_slice(&e.term.0.to_le_bytes());
                body[16..24].copy_from_slice(&e.index.0.to_le_bytes());
                body[24] = e.entry_type;
                body[25..32].fill(0);
                body[32..].copy_from_slice(&e.payload);
            }
            Self::HardState { range, state } => {
                body[0..8].copy_from_slice(&range.0.to_le_bytes());
                body[8..16].copy_from_slice(&state.term.0.to_le_bytes());
                body[16..24].copy_from_slice(&state.vote.to_le_bytes());
                body[24..32].copy_from_slice(&state.commit.0.to_le_bytes());
            }
            Self::ConfState { range, data } => {
                body[0..8].copy_from_slice(&range.0.to_le_bytes());
                body[8..].copy_from_slice(data);
            }
            Self::Relocated { range, tag, value } => {
                body[0..8].copy_from_slice(&range.0.to_le_bytes());
                body[8..16].copy_from_slice(&tag.to_le_bytes());
                body[16..].copy_from_slice(value);
            }
            Self::Checkpoint { data } => body.copy_from_slice(data),
            Self::Truncate { range, mode, index } => {
                body[0..8].copy_from_slice(&range.0.to_le_bytes());
                body[8..16].copy_from_slice(&index.0.to_le_bytes());
                body[16] = match mode {
                    TruncateMode::Compact => 1,
                    TruncateMode::Suffix => 2,
                };
                body[17..24].fill(0);
            }
            // Encoded by `FragmentHead::encode_record` (see `encode`).
            Self::Fragment(_) => {}
        }
    }
}

/// Writes a record of `kind` with a `body_len`-byte body (filled by `fill`) into
/// `out[..padded(24 + body_len)]`, padding included, and returns its crc32c.
fn encode_framed(
    kind: RecordKind,
    body_len: usize,
    seq: Seq,
    mark_delta: u32,
    out: &mut [u8],
    fill: impl FnOnce(&mut [u8]),
) -> u32 {
    let total = padded(RECORD_HEADER_LEN + body_len);
    let body_len32 = u32::try_from(body_len).expect("record length checked by the log");
    let out = &mut out[..total];
    out[4..8].copy_from_slice(&body_len32.to_le_bytes());
    out[8..16].copy_from_slice(&seq.0.to_le_bytes());
    out[16..20].copy_from_slice(&mark_delta.to_le_bytes());
    out[20] = kind as u8;
    out[21..24].fill(0);
    fill(&mut out[RECORD_HEADER_LEN..RECORD_HEADER_LEN + body_len]);
    out[RECORD_HEADER_LEN + body_len..].fill(0);
    let crc = crc32c::crc32c(&out[4..RECORD_HEADER_LEN + body_len]);
    out[0..4].copy_from_slice(&crc.to_le_bytes());
    crc
}

fn u32_at(b: &[u8], at: usize) -> Result<u32, DecodeError> {
    let s = b.get(at..at + 4).ok_or(DecodeError::Short)?;
    let mut a = [0; 4];
    a.copy_from_slice(s);
    Ok(u32::from_le_bytes(a))
}

fn u64_at(b: &[u8], at: usize) -> Result<u64, DecodeError> {
    let s = b.get(at..at + 8).ok_or(DecodeError::Short)?;
    let mut a = [0; 8];
    a.copy_from_slice(s);
    Ok(u64::from_le_bytes(a))
}

/// Decodes a record header (no checksum check: see [`decode_record`]). `max_body` bounds the
/// body length.
pub fn decode_header(b: &[u8], max_body: usize) -> Result<RecordHeader, DecodeError> {
    let crc = u32_at(b, 0)?;
    let body_len = u32_at(b, 4)?;
    let seq = Seq(u64_at(b, 8)?);
    let mark_delta = u32_at(b, 16)?;
    let kind = b.get(20).copied().ok_or(DecodeError::Short)?;
    let kind = RecordKind::from_u8(kind).ok_or(DecodeError::Invalid("unknown record kind"))?;
    if b.get(21..24).ok_or(DecodeError::Short)? != [0, 0, 0] {
        return Err(DecodeError::Invalid("reserved header bytes not zero"));
    }
    if body_len as usize > max_body {
        return Err(DecodeError::Invalid("record longer than the maximum"));
    }
    if seq.0 == 0 || u64::from(mark_delta) >= seq.0 {
        return Err(DecodeError::Invalid("bad sequence number"));
    }
    Ok(RecordHeader {
        crc,
        body_len,
        seq,
        mark_delta,
        kind,
    })
}

/// Checks the crc of the record starting at `b[0]` (whose header is `h`).
pub fn check_crc(b: &[u8], h: &RecordHeader) -> Result<(), DecodeError> {
    let end = h.record_len();
    let covered = b.get(4..end).ok_or(DecodeError::Short)?;
    if crc32c::crc32c(covered) != h.crc {
        return Err(DecodeError::Checksum);
    }
    Ok(())
}

/// Decodes and checks the record at the start of `b`. Returns the header and the record.
pub fn decode_record(b: &[u8], max_body: usize) -> Result<(RecordHeader, LogRecord), DecodeError> {
    let h = decode_header(b, max_body)?;
    check_crc(b, &h)?;
    let body = b
        .get(RECORD_HEADER_LEN..h.record_len())
        .ok_or(DecodeError::Short)?;
    Ok((h, decode_body(h.kind, body)?))
}

/// Decodes a record body of `kind`.
pub fn decode_body(kind: RecordKind, body: &[u8]) -> Result<LogRecord, DecodeError> {
    let range = || u64_at(body, 0).map(RangeId);
    Ok(match kind {
        RecordKind::Entry => {
            let fixed = body.get(..ENTRY_FIXED_LEN).ok_or(DecodeError::Short)?;
            if fixed[25..32] != [0; 7] {
                return Err(DecodeError::Invalid("reserved entry bytes not zero"));
            }
            LogRecord::Entry(EntryRecord {
                range: range()?,
                term: Term(u64_at(body, 8)?),
                index: LogIndex(u64_at(body, 16)?),
                entry_type: fixed[24],
                payload: body[ENTRY_FIXED_LEN..].to_vec(),
            })
        }
        RecordKind::HardState => {
            if body.len() != 32 {
                return Err(DecodeError::Invalid("hard state body length"));
            }
            LogRecord::HardState {
                range: range()?,
                state: HardState {
                    term: Term(u64_at(body, 8)?),
                    vote: u64_at(body, 16)?,
                    commit: LogIndex(u64_at(body, 24)?),
                },
            }
        }
        RecordKind::ConfState => LogRecord::ConfState {
            range: range()?,
            data: body.get(8..).ok_or(DecodeError::Short)?.to_vec(),
        },
        RecordKind::Relocated => LogRecord::Relocated {
            range: range()?,
            tag: u64_at(body, 8)?,
            value: body.get(16..).ok_or(DecodeError::Short)?.to_vec(),
        },
        RecordKind::Checkpoint => LogRecord::Checkpoint {
            data: body.to_vec(),
        },
        RecordKind::Fragment => {
            let (head, part) = decode_fragment_body(body)?;
            LogRecord::Fragment(FragmentRecord {
                head,
                part: part.to_vec(),
            })
        }
        RecordKind::Truncate => {
            if body.len() != 24 || body[17..24] != [0; 7] {
                return Err(DecodeError::Invalid("truncate body"));
            }
            let mode = match body[16] {
                1 => TruncateMode::Compact,
                2 => TruncateMode::Suffix,
                _ => return Err(DecodeError::Invalid("truncate mode")),
            };
            LogRecord::Truncate {
                range: range()?,
                mode,
                index: LogIndex(u64_at(body, 8)?),
            }
        }
    })
}

/// Decodes the body of an entry fragment without copying its part.
pub fn decode_fragment_body(body: &[u8]) -> Result<(FragmentHead, &[u8]), DecodeError> {
    let fixed = body.get(..FRAGMENT_FIXED_LEN).ok_or(DecodeError::Short)?;
    if fixed[25..28] != [0; 3] || fixed[36..40] != [0; 4] {
        return Err(DecodeError::Invalid("reserved fragment bytes not zero"));
    }
    let head = FragmentHead {
        range: RangeId(u64_at(body, 0)?),
        term: Term(u64_at(body, 8)?),
        index: LogIndex(u64_at(body, 16)?),
        entry_type: fixed[24],
        number: u32_at(body, 28)?,
        count: u32_at(body, 32)?,
        total_len: u64_at(body, 40)?,
    };
    let part = &body[FRAGMENT_FIXED_LEN..];
    if head.number >= head.count || part.len() as u64 > head.total_len {
        return Err(DecodeError::Invalid("fragment numbering"));
    }
    Ok((head, part))
}

/// Decodes and checks the fragment record at the start of `b` without copying its part.
pub fn decode_fragment(
    b: &[u8],
    max_body: usize,
) -> Result<(RecordHeader, FragmentHead, &[u8]), DecodeError> {
    let h = decode_header(b, max_body)?;
    if h.kind != RecordKind::Fragment {
        return Err(DecodeError::Invalid("not an entry fragment"));
    }
    check_crc(b, &h)?;
    let body = b
        .get(RECORD_HEADER_LEN..h.record_len())
        .ok_or(DecodeError::Short)?;
    let (head, part) = decode_fragment_body(body)?;
    Ok((h, head, part))
}

/// The header at offset 0 of every log segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentHeader {
    /// The log's owner tag.
    pub owner: u64,
    /// The segment's store generation when written.
    pub generation: u32,
    /// The writer's `batch-bytes-max` (bounds how far a torn batch can reach).
    pub batch_max: u32,
    /// Position of the segment in the log.
    pub segment_seq: u64,
    /// Seq of the segment's first record.
    pub first_seq: Seq,
    /// The durable mark of the batch that wrote the header (every record with a smaller seq
    /// was flushed before that batch was written; version 1: the batch's first seq).
    pub durable_mark: Seq,
}

impl SegmentHeader {
    /// Encodes the header into `out[..SEGMENT_HEADER_LEN]`.
    pub fn encode(&self, out: &mut [u8]) {
        let out = &mut out[..SEGMENT_HEADER_LEN];
        out.fill(0);
        out[0..8].copy_from_slice(&SEGMENT_MAGIC);
        out[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        out[16..24].copy_from_slice(&self.owner.to_le_bytes());
        out[24..28].copy_from_slice(&self.generation.to_le_bytes());
        out[28..32].copy_from_slice(&self.batch_max.to_le_bytes());
        out[32..40].copy_from_slice(&self.segment_seq.to_le_bytes());
        out[40..48].copy_from_slice(&self.first_seq.0.to_le_bytes());
        out[48..56].copy_from_slice(&self.durable_mark.0.to_le_bytes());
        let crc = crc32c::crc32c(&out[..56]);
        out[56..60].copy_from_slice(&crc.to_le_bytes());
    }

    /// Decodes and checks a segment header.
    pub fn decode(b: &[u8]) -> Result<Self, DecodeError> {
        let b = b.get(..SEGMENT_HEADER_LEN).ok_or(DecodeError::Short)?;
        if b[0..8] != SEGMENT_MAGIC {
            return Err(DecodeError::Invalid("no segment magic"));
        }
        if u32_at(b, 56)? != crc32c::crc32c(&b[..56]) {
            return Err(DecodeError::Checksum);
        }
        if !(OLDEST_READABLE_VERSION..=FORMAT_VERSION).contains(&u32_at(b, 8)?) {
            return Err(DecodeError::Invalid("unsupported segment format version"));
        }
        if u32_at(b, 12)? != 0 || u32_at(b, 60)? != 0 {
            return Err(DecodeError::Invalid(
                "reserved segment header bytes not zero",
            ));
        }
        let h = Self {
            owner: u64_at(b, 16)?,
            generation: u32_at(b, 24)?,
            batch_max: u32_at(b, 28)?,
            segment_seq: u64_at(b, 32)?,
            first_seq: Seq(u64_at(b, 40)?),
            durable_mark: Seq(u64_at(b, 48)?),
        };
        if h.first_seq.0 == 0 || h.durable_mark > h.first_seq {
            return Err(DecodeError::Invalid("bad segment sequence numbers"));
        }
        Ok(h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> Vec<LogRecord> {
        vec![
            LogRecord::Entry(EntryRecord {
                range: RangeId(7),
                term: Term(3),
                index: LogIndex(42),
                entry_type: 1,
                payload: b"hello".to_vec(),
            }),
            LogRecord::HardState {
                range: RangeId(1),
                state: HardState {
                    term: Term(9),
                    vote: 2,
                    commit: LogIndex(5),
                },
            },
            LogRecord::ConfState {
                range: RangeId(2),
                data: vec![1, 2, 3],
            },
            LogRecord::Relocated {
                range: RangeId(3),
                tag: 77,
                value: vec![9; 33],
            },
            LogRecord::Checkpoint { data: vec![] },
            LogRecord::Truncate {
                range: RangeId(4),
                mode: TruncateMode::Suffix,
                index: LogIndex(10),
            },
            LogRecord::Fragment(FragmentRecord {
                head: FragmentHead {
                    range: RangeId(5),
                    term: Term(2),
                    index: LogIndex(11),
                    entry_type: 0,
                    number: 1,
                    count: 3,
                    total_len: 40,
                },
                part: vec![4; 13],
            }),
        ]
    }

    /// Every kind round-trips, and the data offset points at the payload.
    #[test]
    fn records_round_trip() {
        for (i, r) in sample().into_iter().enumerate() {
            let mut buf = vec![0xAA; r.encoded_len() + 8];
            let crc = r.encode(Seq(100 + i as u64), i as u32, &mut buf);
            assert_eq!(r.encoded_len() % RECORD_ALIGN, 0);
            let (h, back) = decode_record(&buf, 1 << 20).unwrap();
            assert_eq!(back, r);
            assert_eq!(h.crc, crc);
            assert_eq!(h.seq, Seq(100 + i as u64));
            assert_eq!(h.durable_mark(), Seq(100));
            if let (Some(off), LogRecord::Entry(e)) = (r.data_offset(), &r) {
                assert_eq!(&buf[off..off + e.payload.len()], &e.payload[..]);
            }
        }
    }

    /// Any single flipped bit in a record is detected.
    #[test]
    fn flipped_bits_are_detected() {
        let r = &sample()[0];
        let mut buf = vec![0; r.encoded_len()];
        r.encode(Seq(5), 0, &mut buf);
        let len = RECORD_HEADER_LEN + r.body_len();
        for byte in 0..len {
            for bit in 0..8 {
                let mut b = buf.clone();
                b[byte] ^= 1 << bit;
                assert!(decode_record(&b, 1 << 20).is_err(), "byte {byte} bit {bit}");
            }
        }
    }

    /// A fragment decodes without copying its part; a number outside the count, a part
    /// longer than the entry or non-zero reserved bytes are refused.
    #[test]
    fn fragment_fields_are_checked_at_decode() {
        let LogRecord::Fragment(f) = sample()[6].clone() else {
            panic!("sample 6 is a fragment");
        };
        let encode = |head: FragmentHead, part: &[u8]| {
            let mut buf = vec![0; FragmentHead::encoded_len(part.len())];
            head.encode_record(part, Seq(9), 0, &mut buf);
            buf
        };
        let buf = encode(f.head, &f.part);
        let (_, head, part) = decode_fragment(&buf, 1 << 20).unwrap();
        assert_eq!((head, part), (f.head, &f.part[..]));
        let bad_number = FragmentHead {
            number: 3,
            ..f.head
        };
        let too_long = FragmentHead {
            total_len: 12,
            ..f.head
        };
        for h in [bad_number, too_long] {
            assert!(
                decode_record(&encode(h, &f.part), 1 << 20).is_err(),
                "{h:?}"
            );
        }
        let mut reserved = buf.clone();
        reserved[RECORD_HEADER_LEN + 37] = 1;
        let crc = crc32c::crc32c(&reserved[4..RECORD_HEADER_LEN + FRAGMENT_FIXED_LEN + 13]);
        reserved[0..4].copy_from_slice(&crc.to_le_bytes());
        assert!(decode_record(&reserved, 1 << 20).is_err());
        let entry = &sample()[0];
        let mut buf = vec![0; entry.encoded_len()];
        entry.encode(Seq(9), 0, &mut buf);
        assert!(decode_fragment(&buf, 1 << 20).is_err(), "not a fragment");
    }

    /// Segment headers round-trip and reject any flipped byte.
    #[test]
    fn segment_header_round_trip_and_corruption() {
        let h = SegmentHeader {
            owner: 0xABCD,
            generation: 3,
            batch_max: 8192,
            segment_seq: 9,
            first_seq: Seq(1000),
            durable_mark: Seq(990),
        };
        let mut b = [0u8; SEGMENT_HEADER_LEN];
        h.encode(&mut b);
        assert_eq!(SegmentHeader::decode(&b).unwrap(), h);
        for i in 0..SEGMENT_HEADER_LEN {
            let mut c = b;
            c[i] ^= 0x10;
            assert!(SegmentHeader::decode(&c).is_err(), "byte {i}");
        }
        assert!(SegmentHeader::decode(&[0; SEGMENT_HEADER_LEN]).is_err());
    }

    /// Headers of version 1 logs (same layout, the mark was the batch start) still decode;
    /// an unknown newer version does not.
    #[test]
    fn version_one_segment_headers_decode_and_newer_versions_are_refused() {
        let h = SegmentHeader {
            owner: 7,
            generation: 1,
            batch_max: 4096,
            segment_seq: 0,
            first_seq: Seq(1),
            durable_mark: Seq(1),
        };
        let with_version = |v: u32| {
            let mut b = [0u8; SEGMENT_HEADER_LEN];
            h.encode(&mut b);
            b[8..12].copy_from_slice(&v.to_le_bytes());
            let crc = crc32c::crc32c(&b[..56]);
            b[56..60].copy_from_slice(&crc.to_le_bytes());
            SegmentHeader::decode(&b)
        };
        assert_eq!(with_version(1), Ok(h));
        assert_eq!(with_version(FORMAT_VERSION), Ok(h));
        assert!(with_version(0).is_err());
        assert!(with_version(FORMAT_VERSION + 1).is_err());
    }

    proptest! {
        /// Decoders never panic on random bytes.
        #[test]
        fn decoders_never_panic_on_random_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode_record(&bytes, 1 << 16);
            let _ = SegmentHeader::decode(&bytes);
            for k in 1..=7u8 {
                if let Some(kind) = RecordKind::from_u8(k) {
                    let _ = decode_body(kind, &bytes);
                }
            }
        }

        /// Decoders never panic on mutated valid records, and a mutation that still decodes
        /// changed only the padding.
        #[test]
        fn decoders_never_panic_on_mutated_records(
            which in 0usize..7,
            muts in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6),
            cut in any::<usize>(),
        ) {
            let r = &sample()[which];
            let mut buf = vec![0; r.encoded_len()];
            r.encode(Seq(8), 1, &mut buf);
            let len = RECORD_HEADER_LEN + r.body_len();
            let orig = buf.clone();
            for (at, x) in muts {
                let i = at % buf.len();
                buf[i] ^= x;
            }
            let cut = cut % (buf.len() + 1);
            let changed = buf[..len] != orig[..len];
            let res = decode_record(&buf[..cut], 1 << 16);
            if changed {
                prop_assert!(res.is_err());
            }
        }
    }
}
