//! raft-rs's messages and conf changes, decoded from their protobuf bytes without
//! rust-protobuf.
//!
//! raft-rs 0.7 encodes its types with rust-protobuf 2, whose parser is flagged by
//! RUSTSEC-2024-0437: nested unknown groups recurse without a bound, so a crafted message
//! overflows the stack. raft-rs's `prost-codec` feature would not remove that dependency
//! (raft-proto depends on protobuf 2 either way) and needs `protoc` at build time. So bytes
//! from the network and from committed entries are decoded here, and rust-protobuf only ever
//! *encodes* (what this node itself sends; encoding reads no input):
//!
//! - the schema is fixed and shallow (`Message → Entry`, `Message → Snapshot →
//!   SnapshotMetadata → ConfState`, `ConfChangeV2 → ConfChangeSingle`): no recursion at all;
//! - groups (wire types 3 and 4) are refused, unknown fields of the other wire types skipped
//!   (as protobuf does); an enum value raft-rs does not know is refused;
//! - every length is checked against the bytes left before anything is allocated, so what
//!   one message can allocate is bounded by its own size (the frame limit bounds that);
//! - `bytes` fields are slices of the input buffer (no copy).
//!
//! The wire format is protobuf's, so peers running either decoder interoperate; the property
//! tests check that this decoder reads back whatever rust-protobuf writes, and agrees with
//! rust-protobuf's parser on random and mutated bytes wherever both accept them.

use bytes::Bytes;
use raft::eraftpb::{
    ConfChange, ConfChangeSingle, ConfChangeTransition, ConfChangeType, ConfChangeV2, ConfState,
    Entry, EntryType, Message, MessageType, Snapshot, SnapshotMetadata,
};

/// Why bytes are not a valid encoding of the expected message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PbError {
    /// The bytes end inside a field.
    #[error("truncated protobuf field")]
    Truncated,
    /// A varint longer than ten bytes (or overflowing 64 bits).
    #[error("malformed varint")]
    Varint,
    /// A field number of 0, or one that does not fit 29 bits.
    #[error("invalid field number")]
    FieldNumber,
    /// A group (wire types 3 and 4: deprecated, and the recursion RUSTSEC-2024-0437 is about)
    /// or an undefined wire type.
    #[error("unsupported wire type {0}")]
    WireType(u8),
    /// A known field sent with a wire type its declared type cannot have.
    #[error("field {field} has wire type {wire}")]
    FieldType {
        /// The field number.
        field: u32,
        /// The wire type it came with.
        wire: u8,
    },
    /// An enum value this version of raft-rs does not define.
    #[error("unknown enum value {0}")]
    Enum(u64),
}

/// Wire types.
const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const LEN: u8 = 2;
const FIXED32: u8 = 5;

/// A cursor over one message's bytes.
struct Reader<'a> {
    /// The whole input buffer (for zero-copy `bytes` fields).
    src: &'a Bytes,
    /// Where this message's bytes end in `src`.
    end: usize,
    /// Next byte to read.
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(src: &'a Bytes) -> Self {
        Reader {
            src,
            end: src.len(),
            pos: 0,
        }
    }

    fn varint(&mut self) -> Result<u64, PbError> {
        let mut v: u64 = 0;
        for i in 0..10 {
            let b = *self.src[..self.end]
                .get(self.pos)
                .ok_or(PbError::Truncated)?;
            self.pos += 1;
            let bits = u64::from(b & 0x7f);
            if i == 9 && bits > 1 {
                return Err(PbError::Varint);
            }
            v |= bits << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(PbError::Varint)
    }

    /// The next field's number and wire type; `None` at the end of the message.
    fn key(&mut self) -> Result<Option<(u32, u8)>, PbError> {
        if self.pos >= self.end {
            return Ok(None);
        }
        let k = self.varint()?;
        let field = u32::try_from(k >> 3).map_err(|_| PbError::FieldNumber)?;
        if field == 0 || field > (1 << 29) - 1 {
            return Err(PbError::FieldNumber);
        }
        let wire = (k & 7) as u8;
        match wire {
            VARINT | FIXED64 | LEN | FIXED32 => Ok(Some((field, wire))),
            w => Err(PbError::WireType(w)),
        }
    }

    /// A length-delimited field's extent in `src`, checked against the bytes left.
    fn extent(&mut self) -> Result<(usize, usize), PbError> {
        let len = self.varint()?;
        let left = (self.end - self.pos) as u64;
        if len > left {
            return Err(PbError::Truncated);
        }
        let start = self.pos;
        self.pos += len as usize;
        Ok((start, self.pos))
    }

    fn bytes(&mut self) -> Result<Bytes, PbError> {
        let (s, e) = self.extent()?;
        Ok(self.src.slice(s..e))
    }

    /// A reader over an embedded message's bytes.
    fn sub(&mut self) -> Result<Reader<'a>, PbError> {
        let (s, e) = self.extent()?;
        Ok(Reader {
            src: self.src,
            end: e,
            pos: s,
        })
    }

    fn skip(&mut self, wire: u8) -> Result<(), PbError> {
        let n = match wire {
            VARINT => return self.varint().map(drop),
            FIXED64 => 8,
            FIXED32 => 4,
            _ => return self.extent().map(drop),
        };
        if self.end - self.pos < n {
            return Err(PbError::Truncated);
        }
        self.pos += n;
        Ok(())
    }

    /// A `uint64`/`int64`/`bool`/enum field's varint, its wire type checked.
    fn scalar(&mut self, field: u32, wire: u8) -> Result<u64, PbError> {
        if wire != VARINT {
            return Err(PbError::FieldType { field, wire });
        }
        self.varint()
    }

    /// A `bytes` or embedded-message field: its wire type checked.
    fn expect_len(field: u32, wire: u8) -> Result<(), PbError> {
        if wire == LEN {
            Ok(())
        } else {
            Err(PbError::FieldType { field, wire })
        }
    }

    /// A `repeated uint64`, packed or not: appended to `out`.
    fn repeated_u64(&mut self, field: u32, wire: u8, out: &mut Vec<u64>) -> Result<(), PbError> {
        match wire {
            VARINT => out.push(self.varint()?),
            LEN => {
                let mut r = self.sub()?;
                while r.pos < r.end {
                    out.push(r.varint()?);
                }
            }
            _ => return Err(PbError::FieldType { field, wire }),
        }
        Ok(())
    }
}

/// Decodes a Raft message (`eraftpb.Message`) from `buf`.
pub fn decode_message(buf: &Bytes) -> Result<Message, PbError> {
    let mut m = Message::default();
    let mut r = Reader::new(buf);
    while let Some((f, w)) = r.key()? {
        match f {
            1 => m.msg_type = message_type(r.scalar(f, w)?)?,
            2 => m.to = r.scalar(f, w)?,
            3 => m.from = r.scalar(f, w)?,
            4 => m.term = r.scalar(f, w)?,
            5 => m.log_term = r.scalar(f, w)?,
            6 => m.index = r.scalar(f, w)?,
            7 => {
                Reader::expect_len(f, w)?;
                let mut e = Entry::default();
                entry(&mut r.sub()?, &mut e)?;
                m.entries.push(e);
            }
            8 => m.commit = r.scalar(f, w)?,
            9 => {
                Reader::expect_len(f, w)?;
                snapshot(&mut r.sub()?, m.mut_snapshot())?;
            }
            10 => m.reject = boolean(r.scalar(f, w)?),
            11 => m.reject_hint = r.scalar(f, w)?,
            12 => {
                Reader::expect_len(f, w)?;
                m.context = r.bytes()?;
            }
            13 => m.request_snapshot = r.scalar(f, w)?,
            14 => m.deprecated_priority = r.scalar(f, w)?,
            15 => m.commit_term = r.scalar(f, w)?,
            16 => m.priority = r.scalar(f, w)? as i64,
            _ => r.skip(w)?,
        }
    }
    Ok(m)
}

/// Decodes a conf change entry's data: a `ConfChange` (v1) as raft-rs turns it into a
/// `ConfChangeV2`, or a `ConfChangeV2`.
pub fn decode_conf_change(t: EntryType, buf: &Bytes) -> Result<Option<ConfChangeV2>, PbError> {
    use raft_proto::ConfChangeI as _;
    match t {
        EntryType::EntryNormal => Ok(None),
        EntryType::EntryConfChange => Ok(Some(decode_conf_change_v1(buf)?.into_v2())),
        EntryType::EntryConfChangeV2 => decode_conf_change_v2(buf).map(Some),
    }
}

/// Decodes an `eraftpb.ConfChange`.
pub fn decode_conf_change_v1(buf: &Bytes) -> Result<ConfChange, PbError> {
    let mut cc = ConfChange::default();
    let mut r = Reader::new(buf);
    while let Some((f, w)) = r.key()? {
        match f {
            1 => cc.id = r.scalar(f, w)?,
            2 => cc.change_type = change_type(r.scalar(f, w)?)?,
            3 => cc.node_id = r.scalar(f, w)?,
            4 => {
                Reader::expect_len(f, w)?;
                cc.context = r.bytes()?;
            }
            _ => r.skip(w)?,
        }
    }
    Ok(cc)
}

/// Decodes an `eraftpb.ConfChangeV2`.
pub fn decode_conf_change_v2(buf: &Bytes) -> Result<ConfChangeV2, PbError> {
    let mut cc = ConfChangeV2::default();
    let mut r = Reader::new(buf);
    while let Some((f, w)) = r.key()? {
        match f {
            1 => cc.transition = transition(r.scalar(f, w)?)?,
            2 => {
                Reader::expect_len(f, w)?;
                let mut s = ConfChangeSingle::default();
                let mut sub = r.sub()?;
                while let Some((f, w)) = sub.key()? {
                    match f {
                        1 => s.change_type = change_type(sub.scalar(f, w)?)?,
                        2 => s.node_id = sub.scalar(f, w)?,
                        _ => sub.skip(w)?,
                    }
                }
                cc.changes.push(s);
            }
            3 => {
                Reader::expect_len(f, w)?;
                cc.context = r.bytes()?;
            }
            _ => r.skip(w)?,
        }
    }
    Ok(cc)
}

fn entry(r: &mut Reader<'_>, e: &mut Entry) -> Result<(), PbError> {
    while let Some((f, w)) = r.key()? {
        match f {
            1 => e.entry_type = entry_type(r.scalar(f, w)?)?,
            2 => e.term = r.scalar(f, w)?,
            3 => e.index = r.scalar(f, w)?,
            4 => {
                Reader::expect_len(f, w)?;
                e.data = r.bytes()?;
            }
            5 => e.sync_log = boolean(r.scalar(f, w)?),
            6 => {
                Reader::expect_len(f, w)?;
                e.context = r.bytes()?;
            }
            _ => r.skip(w)?,
        }
    }
    Ok(())
}

/// A `Snapshot`, merged into `s` (protobuf merges a repeated singular message field).
fn snapshot(r: &mut Reader<'_>, s: &mut Snapshot) -> Result<(), PbError> {
    while let Some((f, w)) = r.key()? {
        match f {
            1 => {
                Reader::expect_len(f, w)?;
                s.data = r.bytes()?;
            }
            2 => {
                Reader::expect_len(f, w)?;
                metadata(&mut r.sub()?, s.mut_metadata())?;
            }
            _ => r.skip(w)?,
        }
    }
    Ok(())
}

fn metadata(r: &mut Reader<'_>, m: &mut SnapshotMetadata) -> Result<(), PbError> {
    while let Some((f, w)) = r.key()? {
        match f {
            1 => {
                Reader::expect_len(f, w)?;
                conf_state(&mut r.sub()?, m.mut_conf_state())?;
            }
            2 => m.index = r.scalar(f, w)?,
            3 => m.term = r.scalar(f, w)?,
            _ => r.skip(w)?,
        }
    }
    Ok(())
}

fn conf_state(r: &mut Reader<'_>, c: &mut ConfState) -> Result<(), PbError> {
    while let Some((f, w)) = r.key()? {
        match f {
            1 => r.repeated_u64(f, w, &mut c.voters)?,
            2 => r.repeated_u64(f, w, &mut c.learners)?,
            3 => r.repeated_u64(f, w, &mut c.voters_outgoing)?,
            4 => r.repeated_u64(f, w, &mut c.learners_next)?,
            5 => c.auto_leave = boolean(r.scalar(f, w)?),
            _ => r.skip(w)?,
        }
    }
    Ok(())
}

/// A `bool` as protobuf reads it: the varint's low 32 bits, non-zero.
fn boolean(v: u64) -> bool {
    v as u32 != 0
}

/// An enum's number as protobuf reads it (`int32`: the varint's low 32 bits); a negative one
/// is as unknown as a large one.
fn enum_number(v: u64) -> Result<usize, PbError> {
    usize::try_from(v as u32 as i32).map_err(|_| PbError::Enum(v))
}

fn message_type(v: u64) -> Result<MessageType, PbError> {
    use MessageType::*;
    const ALL: [MessageType; 19] = [
        MsgHup,
        MsgBeat,
        MsgPropose,
        MsgAppend,
        MsgAppendResponse,
        MsgRequestVote,
        MsgRequestVoteResponse,
        MsgSnapshot,
        MsgHeartbeat,
        MsgHeartbeatResponse,
        MsgUnreachable,
        MsgSnapStatus,
        MsgCheckQuorum,
        MsgTransferLeader,
        MsgTimeoutNow,
        MsgReadIndex,
        MsgReadIndexResp,
        MsgRequestPreVote,
        MsgRequestPreVoteResponse,
    ];
    ALL.get(enum_number(v)?).copied().ok_or(PbError::Enum(v))
}

fn entry_type(v: u64) -> Result<EntryType, PbError> {
    match enum_number(v)? {
        0 => Ok(EntryType::EntryNormal),
        1 => Ok(EntryType::EntryConfChange),
        2 => Ok(EntryType::EntryConfChangeV2),
        _ => Err(PbError::Enum(v)),
    }
}

fn change_type(v: u64) -> Result<ConfChangeType, PbError> {
    match enum_number(v)? {
        0 => Ok(ConfChangeType::AddNode),
        1 => Ok(ConfChangeType::RemoveNode),
        2 => Ok(ConfChangeType::AddLearnerNode),
        _ => Err(PbError::Enum(v)),
    }
}

fn transition(v: u64) -> Result<ConfChangeTransition, PbError> {
    match enum_number(v)? {
        0 => Ok(ConfChangeTransition::Auto),
        1 => Ok(ConfChangeTransition::Implicit),
        2 => Ok(ConfChangeTransition::Explicit),
        _ => Err(PbError::Enum(v)),
    }
}

#[cfg(test)]
mod tests;
