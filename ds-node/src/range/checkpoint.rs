//! Range checkpoints: the whole state of one range at one applied Raft index, in one
//! self-checking byte string. The same bytes are the range's durable checkpoint (the shard log
//! below it can then be compacted) and the Raft snapshot sent to a replica that is too far
//! behind (streamed in chunks, see `server::snapshot`).
//!
//! ```text
//! magic "TKVCKPT\0" | version u32 LE (=1) | range id u64 LE | index u64 LE | term u64 LE
//! | desc len u32 LE | RangeDescriptor (net wire encoding)
//! | count u64 LE | count × (key len u32 LE | key | value len u32 LE | value | expire_at_ms u64 LE)
//! | crc32c u32 LE of every byte before it
//! ```
//!
//! The checksum is checked before anything is parsed, every length is checked against the
//! bytes left, and the whole input must be consumed: [`decode`] returns an error for every
//! malformed input and never panics (fuzzed: `ds-node/fuzz`, target `checkpoint_decoder`).

use bytes::{BufMut, Bytes, BytesMut};
use net::codec::{Wire, decode_exact};
use net::message::RangeDescriptor;

use super::store::Entry;

const MAGIC: &[u8; 8] = b"TKVCKPT\0";
const VERSION: u32 = 1;
/// Bytes before the descriptor: magic, version, range, index, term, descriptor length.
const HEAD: usize = 8 + 4 + 8 + 8 + 8 + 4;
/// Longest key a checkpoint may hold (the wire limit of keys).
pub const MAX_KEY: usize = 64 << 10;

/// The identity of a checkpoint: which range, at which Raft index and term, with which
/// descriptor (whose replicas are the Raft configuration at that index).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointMeta {
    /// Applied index the state corresponds to.
    pub index: u64,
    /// Term of the entry at `index`.
    pub term: u64,
    /// The range at `index`.
    pub desc: RangeDescriptor,
}

/// A decoded checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// Identity.
    pub meta: CheckpointMeta,
    /// Every entry of the range, in key order.
    pub entries: Vec<(Bytes, Entry)>,
}

/// Why bytes are not a checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    /// Shorter than the fixed header and checksum.
    #[error("checkpoint truncated")]
    Truncated,
    /// Wrong magic bytes.
    #[error("not a checkpoint (bad magic)")]
    BadMagic,
    /// A version this build does not read.
    #[error("checkpoint version {0} is not supported")]
    Version(u32),
    /// Checksum mismatch.
    #[error("checkpoint checksum mismatch")]
    Checksum,
    /// The structure inside a good checksum is wrong (a writer bug).
    #[error("malformed checkpoint: {0}")]
    Malformed(&'static str),
}

/// Encodes a checkpoint of `entries` (in key order) at `meta`.
pub fn encode<'a>(
    meta: &CheckpointMeta,
    entries: impl ExactSizeIterator<Item = (&'a [u8], &'a Entry)>,
) -> Vec<u8> {
    let mut b = BytesMut::with_capacity(256);
    b.put_slice(MAGIC);
    b.put_u32_le(VERSION);
    b.put_u64_le(meta.desc.id.0);
    b.put_u64_le(meta.index);
    b.put_u64_le(meta.term);
    let mut d = BytesMut::new();
    meta.desc.encode(&mut d);
    b.put_u32_le(d.len() as u32);
    b.put_slice(&d);
    b.put_u64_le(entries.len() as u64);
    for (k, e) in entries {
        b.reserve(16 + k.len() + e.value.len());
        b.put_u32_le(k.len() as u32);
        b.put_slice(k);
        b.put_u32_le(e.value.len() as u32);
        b.put_slice(&e.value);
        b.put_u64_le(e.expire_at_ms);
    }
    let crc = crc32c::crc32c(&b);
    b.put_u32_le(crc);
    b.to_vec()
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], CheckpointError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&e| e <= self.b.len())
            .ok_or(CheckpointError::Malformed("length past the end"))?;
        let s = &self.b[self.at..end];
        self.at = end;
        Ok(s)
    }
    fn u32(&mut self) -> Result<u32, CheckpointError> {
        let s = self.take(4)?;
        Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    }
    fn u64(&mut self) -> Result<u64, CheckpointError> {
        let s = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(s);
        Ok(u64::from_le_bytes(a))
    }
}

/// Checks the envelope (magic, version, checksum) and returns the bytes the checksum covers.
fn verified(data: &[u8]) -> Result<&[u8], CheckpointError> {
    if data.len() < HEAD + 8 + 4 {
        return Err(CheckpointError::Truncated);
    }
    if &data[..8] != MAGIC {
        return Err(CheckpointError::BadMagic);
    }
    let v = u32::from_le_bytes([data[8], data[9], data[10], data[11]]);
    if v != VERSION {
        return Err(CheckpointError::Version(v));
    }
    let (body, crc) = data.split_at(data.len() - 4);
    if crc32c::crc32c(body) != u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]) {
        return Err(CheckpointError::Checksum);
    }
    Ok(body)
}

fn read_meta(r: &mut Reader<'_>) -> Result<CheckpointMeta, CheckpointError> {
    r.take(12)?;
    let range = r.u64()?;
    let index = r.u64()?;
    let term = r.u64()?;
    let dlen = r.u32()? as usize;
    let desc = decode_exact::<RangeDescriptor>(Bytes::copy_from_slice(r.take(dlen)?))
        .map_err(|_| CheckpointError::Malformed("range descriptor"))?;
    if desc.id.0 != range {
        return Err(CheckpointError::Malformed("descriptor of another range"));
    }
    Ok(CheckpointMeta { index, term, desc })
}

/// Decodes only the identity of a checkpoint (the checksum of the whole is still checked).
pub fn decode_meta(data: &[u8]) -> Result<CheckpointMeta, CheckpointError> {
    let body = verified(data)?;
    read_meta(&mut Reader { b: body, at: 0 })
}

/// Decodes a checkpoint.
pub fn decode(data: &[u8]) -> Result<Checkpoint, CheckpointError> {
    let body = verified(data)?;
    let mut r = Reader { b: body, at: 0 };
    let meta = read_meta(&mut r)?;
    let count = r.u64()?;
    // Each entry takes at least 16 bytes: a forged count cannot make us allocate.
    if count > ((body.len() - r.at) / 16) as u64 {
        return Err(CheckpointError::Malformed("entry count exceeds the bytes"));
    }
    let mut entries = Vec::with_capacity(count as usize);
    let mut prev: Option<&[u8]> = None;
    for _ in 0..count {
        let klen = r.u32()? as usize;
        if klen > MAX_KEY {
            return Err(CheckpointError::Malformed("key too long"));
        }
        let key = r.take(klen)?;
        if prev.is_some_and(|p| p >= key) {
            return Err(CheckpointError::Malformed("keys out of order"));
        }
        if !meta.desc.contains(key) {
            return Err(CheckpointError::Malformed("key outside the range"));
        }
        prev = Some(key);
        let vlen = r.u32()? as usize;
        let value = Bytes::copy_from_slice(r.take(vlen)?);
        let expire_at_ms = r.u64()?;
        entries.push((
            Bytes::copy_from_slice(key),
            Entry {
                value,
                expire_at_ms,
            },
        ));
    }
    if r.at != body.len() {
        return Err(CheckpointError::Malformed("trailing bytes"));
    }
    Ok(Checkpoint { meta, entries })
}

#[cfg(test)]
mod tests {
    use super::*;
    use net::message::{Replica, ReplicaRole};
    use net::{Epoch, RangeId, ReplicaId, ShardId, StoreId};
    use proptest::prelude::*;

    fn desc(start: &'static [u8], end: &'static [u8]) -> RangeDescriptor {
        RangeDescriptor {
            id: RangeId(7),
            start: Bytes::from_static(start),
            end: Bytes::from_static(end),
            epoch: Epoch {
                conf_ver: 3,
                version: 2,
            },
            replicas: vec![Replica {
                replica_id: ReplicaId(1),
                store_id: StoreId(1),
                shard_id: ShardId(0),
                role: ReplicaRole::Voter {},
            }],
            leader: None,
        }
    }

    fn sample() -> (CheckpointMeta, Vec<(Bytes, Entry)>) {
        let meta = CheckpointMeta {
            index: 42,
            term: 6,
            desc: desc(b"a", b"z"),
        };
        let entries = vec![
            (
                Bytes::from_static(b"apple"),
                Entry {
                    value: Bytes::from_static(b"1"),
                    expire_at_ms: 0,
                },
            ),
            (
                Bytes::from_static(b"pear\r\n"),
                Entry {
                    value: Bytes::from(vec![0u8; 1000]),
                    expire_at_ms: 99,
                },
            ),
        ];
        (meta, entries)
    }

    fn enc(meta: &CheckpointMeta, entries: &[(Bytes, Entry)]) -> Vec<u8> {
        encode(meta, entries.iter().map(|(k, e)| (&k[..], e)))
    }

    #[test]
    fn round_trips_and_meta_alone_decodes() {
        let (meta, entries) = sample();
        let b = enc(&meta, &entries);
        let c = decode(&b).unwrap();
        assert_eq!(c.meta, meta);
        assert_eq!(c.entries, entries);
        assert_eq!(decode_meta(&b).unwrap(), meta);
        let empty = enc(&meta, &[]);
        assert!(decode(&empty).unwrap().entries.is_empty());
    }

    #[test]
    fn every_truncation_and_every_flipped_byte_is_refused() {
        let (meta, entries) = sample();
        let b = enc(&meta, &entries);
        for n in 0..b.len() {
            assert!(decode(&b[..n]).is_err(), "truncated to {n}");
        }
        for i in 0..b.len() {
            let mut c = b.clone();
            c[i] ^= 0x40;
            assert!(decode(&c).is_err(), "flipped byte {i}");
        }
    }

    #[test]
    fn structure_errors_behind_a_good_checksum_are_refused() {
        let (meta, mut entries) = sample();
        entries.swap(0, 1);
        assert_eq!(
            decode(&enc(&meta, &entries)),
            Err(CheckpointError::Malformed("keys out of order"))
        );
        let (mut meta, entries) = sample();
        meta.desc = desc(b"b", b"z");
        assert_eq!(
            decode(&enc(&meta, &entries)),
            Err(CheckpointError::Malformed("key outside the range"))
        );
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode(&data);
            let mut d = b"TKVCKPT\0\x01\0\0\0".to_vec();
            d.extend_from_slice(&data);
            let crc = crc32c::crc32c(&d);
            d.extend_from_slice(&crc.to_le_bytes());
            let _ = decode(&d);
        }
    }
}
