//! Range checkpoints: the whole state of one range at one applied Raft index, in one
//! self-checking byte string. The same bytes are the range's durable checkpoint (the shard log
//! below it can then be compacted) and the Raft snapshot sent to a replica that is too far
//! behind (streamed in chunks, see `server::snapshot`).
//!
//! ```text
//! magic "TKVCKPT\0" | version u32 LE (1 or 2) | range id u64 LE | index u64 LE | term u64 LE
//! | desc len u32 LE | RangeDescriptor (net wire encoding)
//! | count u64 LE | count × (key len u32 LE | key | value len u32 LE | value | expire_at_ms u64 LE)
//! | version 2 only: cold count u64 LE | cold count × (key len u32 LE | key | segment u32 LE
//!   | offset u64 LE | len u32 LE | crc32c u32 LE | expire_at_ms u64 LE)
//! | crc32c u32 LE of every byte before it
//! ```
//!
//! Version 2 (`docs/format/checkpoint.md`) adds the *cold* entries: a key whose value lives
//! only in this node's shard log, named by its pointer. Each section is in key order and no
//! key is in both. A writer writes version 1 when it has no cold entry, so a checkpoint sent
//! as a snapshot (always without cold entries: pointers are local to a node) is read by
//! builds that know only version 1.
//!
//! The checksum is checked before anything is parsed, every length is checked against the
//! bytes left, and the whole input must be consumed: [`decode`] returns an error for every
//! malformed input and never panics (fuzzed: `ds-node/fuzz`, target `checkpoint_decoder`).

use bytes::{BufMut, Bytes, BytesMut};
use net::codec::{Wire, decode_exact};
use net::message::RangeDescriptor;

use engines::masstree::{LogPointer, SegmentId};

use super::store::Entry;

const MAGIC: &[u8; 8] = b"TKVCKPT\0";
/// The version without cold entries.
const VERSION_HOT: u32 = 1;
/// The version with a cold section.
const VERSION_COLD: u32 = 2;
/// Bytes of a cold entry besides its key: key len, pointer (20), expiry.
const COLD_FIXED: usize = 4 + 20 + 8;
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
    /// Every hot entry of the range, in key order.
    pub entries: Vec<(Bytes, Entry)>,
    /// Every cold entry of the range (version 2), in key order.
    pub cold: Vec<(Bytes, ColdEntry)>,
}

/// An entry whose value lives only in the shard log of the node that wrote the checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ColdEntry {
    /// The durable copy of the value.
    pub pointer: LogPointer,
    /// Expiry in Unix milliseconds; 0 = never.
    pub expire_at_ms: u64,
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

/// Encodes a checkpoint of `entries` (in key order) at `meta` (version 1).
pub fn encode<'a>(
    meta: &CheckpointMeta,
    entries: impl ExactSizeIterator<Item = (&'a [u8], &'a Entry)> + Clone,
) -> Vec<u8> {
    encode_with_cold(meta, entries, std::iter::empty())
}

/// Encodes a checkpoint of hot `entries` and `cold` entries (each in key order, disjoint) at
/// `meta`: version 2 if there is a cold entry, else version 1.
pub fn encode_with_cold<'a>(
    meta: &CheckpointMeta,
    entries: impl ExactSizeIterator<Item = (&'a [u8], &'a Entry)> + Clone,
    cold: impl ExactSizeIterator<Item = (&'a [u8], &'a ColdEntry)> + Clone,
) -> Vec<u8> {
    let body = entries
        .clone()
        .map(|(k, e)| hot_len(k.len(), e.value.len()))
        .chain(cold.clone().map(|(k, _)| cold_len(k.len())))
        .sum();
    let mut w = Writer::new(meta, entries.len() as u64, cold.len() as u64, body);
    for (k, e) in entries {
        w.hot(k, &e.value, e.expire_at_ms);
    }
    for (k, c) in cold {
        w.cold(k, c);
    }
    w.finish()
}

/// Bytes a hot entry of a `key`-byte key and a `value`-byte value takes in a checkpoint.
pub fn hot_len(key: usize, value: usize) -> usize {
    4 + key + 4 + value + 8
}

/// Bytes a cold entry of a `key`-byte key takes in a checkpoint.
pub fn cold_len(key: usize) -> usize {
    COLD_FIXED + key
}

/// A checkpoint written entry by entry into one buffer of its final size: first every hot
/// entry, then every cold one, each in key order; the counts and the entries' bytes
/// ([`hot_len`], [`cold_len`]) are known before. Encoding straight from walks of the engine
/// this way (`server::checkpoint::encode_stored`) copies no key or value twice and never
/// grows the buffer.
#[derive(Debug)]
pub struct Writer {
    b: Vec<u8>,
    hot_left: u64,
    cold_left: u64,
    cold_started: bool,
}

impl Writer {
    /// Starts a checkpoint at `meta` of `hot` hot and `cold` cold entries whose bytes add up
    /// to `body`.
    pub fn new(meta: &CheckpointMeta, hot: u64, cold: u64, body: usize) -> Self {
        let mut d = BytesMut::new();
        meta.desc.encode(&mut d);
        let cold_count = if cold == 0 { 0 } else { 8 };
        let mut b = Vec::with_capacity(HEAD + d.len() + 8 + body + cold_count + 4);
        b.put_slice(MAGIC);
        b.put_u32_le(if cold == 0 { VERSION_HOT } else { VERSION_COLD });
        b.put_u64_le(meta.desc.id.0);
        b.put_u64_le(meta.index);
        b.put_u64_le(meta.term);
        b.put_u32_le(d.len() as u32);
        b.put_slice(&d);
        b.put_u64_le(hot);
        Self {
            b,
            hot_left: hot,
            cold_left: cold,
            cold_started: false,
        }
    }

    /// The next hot entry.
    pub fn hot(&mut self, key: &[u8], value: &[u8], expire_at_ms: u64) {
        debug_assert!(
            self.hot_left > 0 && !self.cold_started,
            "hot entry out of place"
        );
        self.hot_left -= 1;
        self.b.put_u32_le(key.len() as u32);
        self.b.put_slice(key);
        self.b.put_u32_le(value.len() as u32);
        self.b.put_slice(value);
        self.b.put_u64_le(expire_at_ms);
    }

    /// The next cold entry (after every hot one).
    pub fn cold(&mut self, key: &[u8], c: &ColdEntry) {
        debug_assert!(
            self.hot_left == 0 && self.cold_left > 0,
            "cold entry out of place"
        );
        if !self.cold_started {
            self.cold_started = true;
            self.b.put_u64_le(self.cold_left);
        }
        self.cold_left -= 1;
        self.b.put_u32_le(key.len() as u32);
        self.b.put_slice(key);
        self.b.put_u32_le(c.pointer.segment.0);
        self.b.put_u64_le(c.pointer.offset);
        self.b.put_u32_le(c.pointer.len);
        self.b.put_u32_le(c.pointer.checksum);
        self.b.put_u64_le(c.expire_at_ms);
    }

    /// The checkpoint's bytes, checksum appended.
    pub fn finish(mut self) -> Vec<u8> {
        debug_assert!(
            self.hot_left == 0 && self.cold_left == 0,
            "checkpoint entries missing"
        );
        let crc = crc32c::crc32c(&self.b);
        self.b.put_u32_le(crc);
        debug_assert_eq!(
            self.b.len(),
            self.b.capacity(),
            "checkpoint size mispredicted"
        );
        self.b
    }
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
fn verified(data: &[u8]) -> Result<(&[u8], u32), CheckpointError> {
    if data.len() < HEAD + 8 + 4 {
        return Err(CheckpointError::Truncated);
    }
    if &data[..8] != MAGIC {
        return Err(CheckpointError::BadMagic);
    }
    let v = u32::from_le_bytes([data[8], data[9], data[10], data[11]]);
    if v != VERSION_HOT && v != VERSION_COLD {
        return Err(CheckpointError::Version(v));
    }
    let (body, crc) = data.split_at(data.len() - 4);
    if crc32c::crc32c(body) != u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]) {
        return Err(CheckpointError::Checksum);
    }
    Ok((body, v))
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

/// Whether `data` claims to be a checkpoint with cold entries (version 2; not verified).
pub fn has_cold(data: &[u8]) -> bool {
    data.len() >= 12 && &data[..8] == MAGIC && data[8..12] == VERSION_COLD.to_le_bytes()
}

/// Decodes only the identity of a checkpoint (the checksum of the whole is still checked).
pub fn decode_meta(data: &[u8]) -> Result<CheckpointMeta, CheckpointError> {
    let (body, _) = verified(data)?;
    read_meta(&mut Reader { b: body, at: 0 })
}

/// Decodes a checkpoint.
pub fn decode(data: &[u8]) -> Result<Checkpoint, CheckpointError> {
    let (body, version) = verified(data)?;
    let mut r = Reader { b: body, at: 0 };
    let meta = read_meta(&mut r)?;
    let entries = read_hot(&mut r, &meta.desc)?;
    let cold = if version == VERSION_COLD {
        read_cold(&mut r, &meta.desc)?
    } else {
        Vec::new()
    };
    if r.at != body.len() {
        return Err(CheckpointError::Malformed("trailing bytes"));
    }
    if !disjoint(&entries, &cold) {
        return Err(CheckpointError::Malformed("a key both hot and cold"));
    }
    Ok(Checkpoint {
        meta,
        entries,
        cold,
    })
}

/// Reads a key of a section: bounded, after `prev`, inside the range.
fn read_key<'a>(
    r: &mut Reader<'a>,
    prev: Option<&[u8]>,
    desc: &RangeDescriptor,
) -> Result<&'a [u8], CheckpointError> {
    let klen = r.u32()? as usize;
    if klen > MAX_KEY {
        return Err(CheckpointError::Malformed("key too long"));
    }
    let key = r.take(klen)?;
    if prev.is_some_and(|p| p >= key) {
        return Err(CheckpointError::Malformed("keys out of order"));
    }
    if !desc.contains(key) {
        return Err(CheckpointError::Malformed("key outside the range"));
    }
    Ok(key)
}

/// Reads a count of entries of at least `min` bytes each: a forged count cannot make us
/// allocate.
fn read_count(r: &mut Reader<'_>, min: usize) -> Result<usize, CheckpointError> {
    let count = r.u64()?;
    if count > ((r.b.len() - r.at) / min) as u64 {
        return Err(CheckpointError::Malformed("entry count exceeds the bytes"));
    }
    Ok(count as usize)
}

fn read_hot(
    r: &mut Reader<'_>,
    desc: &RangeDescriptor,
) -> Result<Vec<(Bytes, Entry)>, CheckpointError> {
    let count = read_count(r, 16)?;
    let mut entries: Vec<(Bytes, Entry)> = Vec::with_capacity(count);
    for _ in 0..count {
        let key = read_key(r, entries.last().map(|(k, _)| &k[..]), desc)?;
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
    Ok(entries)
}

fn read_cold(
    r: &mut Reader<'_>,
    desc: &RangeDescriptor,
) -> Result<Vec<(Bytes, ColdEntry)>, CheckpointError> {
    let count = read_count(r, COLD_FIXED)?;
    if count == 0 {
        return Err(CheckpointError::Malformed("version 2 without a cold entry"));
    }
    let mut cold: Vec<(Bytes, ColdEntry)> = Vec::with_capacity(count);
    for _ in 0..count {
        let key = read_key(r, cold.last().map(|(k, _)| &k[..]), desc)?;
        let pointer = LogPointer {
            segment: SegmentId(r.u32()?),
            offset: r.u64()?,
            len: r.u32()?,
            checksum: r.u32()?,
        };
        let expire_at_ms = r.u64()?;
        cold.push((
            Bytes::copy_from_slice(key),
            ColdEntry {
                pointer,
                expire_at_ms,
            },
        ));
    }
    Ok(cold)
}

/// Whether no key is in both sorted sections.
fn disjoint(hot: &[(Bytes, Entry)], cold: &[(Bytes, ColdEntry)]) -> bool {
    let (mut i, mut j) = (0, 0);
    while i < hot.len() && j < cold.len() {
        match hot[i].0.cmp(&cold[j].0) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => return false,
        }
    }
    true
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

    fn cold_sample() -> Vec<(Bytes, ColdEntry)> {
        let p = |seg: u32| LogPointer {
            segment: SegmentId(seg),
            offset: 4096 + u64::from(seg),
            len: 100,
            checksum: 0xdead_beef,
        };
        vec![
            (
                Bytes::from_static(b"banana"),
                ColdEntry {
                    pointer: p(3),
                    expire_at_ms: 0,
                },
            ),
            (
                Bytes::from_static(b"cherry"),
                ColdEntry {
                    pointer: p(4),
                    expire_at_ms: 7,
                },
            ),
        ]
    }

    fn enc_cold(meta: &CheckpointMeta, e: &[(Bytes, Entry)], c: &[(Bytes, ColdEntry)]) -> Vec<u8> {
        encode_with_cold(
            meta,
            e.iter().map(|(k, e)| (&k[..], e)),
            c.iter().map(|(k, c)| (&k[..], c)),
        )
    }

    #[test]
    fn cold_entries_round_trip_in_version_2_and_version_1_is_written_without_them() {
        let (meta, entries) = sample();
        let cold = cold_sample();
        let b = enc_cold(&meta, &entries, &cold);
        assert_eq!(u32::from_le_bytes([b[8], b[9], b[10], b[11]]), 2);
        let c = decode(&b).unwrap();
        assert_eq!((c.entries, c.cold), (entries.clone(), cold));
        let v1 = enc_cold(&meta, &entries, &[]);
        assert_eq!(u32::from_le_bytes([v1[8], v1[9], v1[10], v1[11]]), 1);
        assert!(decode(&v1).unwrap().cold.is_empty());
    }

    #[test]
    fn a_key_both_hot_and_cold_is_refused() {
        let (meta, entries) = sample();
        let mut cold = cold_sample();
        cold[0].0 = Bytes::from_static(b"apple");
        assert_eq!(
            decode(&enc_cold(&meta, &entries, &cold)),
            Err(CheckpointError::Malformed("a key both hot and cold"))
        );
        for i in 0..enc_cold(&meta, &entries, &cold_sample()).len() {
            let mut c = enc_cold(&meta, &entries, &cold_sample());
            c[i] ^= 0x40;
            assert!(decode(&c).is_err(), "flipped byte {i}");
        }
    }

    proptest! {
        #[test]
        fn hot_and_cold_sections_round_trip(
            keys in proptest::collection::btree_map(
                proptest::collection::vec(b'a'..b'y', 1..12),
                (any::<bool>(), proptest::collection::vec(any::<u8>(), 0..40), any::<u32>(), any::<u64>()),
                0..40,
            )
        ) {
            let (meta, _) = sample();
            let (mut hot, mut cold) = (Vec::new(), Vec::new());
            for (k, (is_cold, v, n, exp)) in keys {
                let k = Bytes::from(k);
                if is_cold {
                    let pointer = LogPointer { segment: SegmentId(n), offset: exp, len: n / 3, checksum: n ^ 5 };
                    cold.push((k, ColdEntry { pointer, expire_at_ms: exp }));
                } else {
                    hot.push((k, Entry { value: Bytes::from(v), expire_at_ms: exp }));
                }
            }
            let c = decode(&enc_cold(&meta, &hot, &cold)).unwrap();
            prop_assert_eq!(c.entries, hot);
            prop_assert_eq!(c.cold, cold);
        }

        #[test]
        fn random_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode(&data);
            let mut d = b"TKVCKPT\0\x01\0\0\0".to_vec();
            d.extend_from_slice(&data);
            let crc = crc32c::crc32c(&d);
            d.extend_from_slice(&crc.to_le_bytes());
            let _ = decode(&d);
            let mut d = b"TKVCKPT\0\x02\0\0\0".to_vec();
            d.extend_from_slice(&data);
            let crc = crc32c::crc32c(&d);
            d.extend_from_slice(&crc.to_le_bytes());
            let _ = decode(&d);
        }
    }
}
