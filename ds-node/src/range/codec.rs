//! Byte layouts ds-node writes into the shard log: the data of a Raft entry carrying a client
//! operation, and the range metadata (descriptor + Raft conf state) kept in conf-state
//! records.
//!
//! ```text
//! proposal:   version u8 (=1) | now_ms u64 LE | KvOp (net wire encoding)
//! write:      version u8 (=4) | now_ms u64 LE | client u64 LE | seq u64 LE | KvOp
//!             (a proposal with a request id: applied once per id, `range::dedup`)
//! TTL sweep:  version u8 (=2) | now_ms u64 LE | count u32 LE | (len u32 LE | key)*
//! split:      version u8 (=3) | conf_ver u64 LE | version u64 LE | new range id u64 LE
//!             | count u32 LE | new replica id u64 LE * count | key len u32 LE | split key
//! freeze:     version u8 (=5) | conf_ver u64 LE | version u64 LE | left range id u64 LE
//!             (a merge's right range stops applying writes after this entry)
//! merge:      version u8 (=6) | conf_ver u64 LE | version u64 LE | freeze index u64 LE
//!             | RangeDescriptor of the right range (net wire encoding)
//! range meta: version u8 (=1) | RangeDescriptor (net wire encoding)
//! tombstone:  version u8 (=0xDE) | replica id u64 LE   (the replica here was destroyed)
//! ```
//! Decoders return `None` on bad bytes and never panic.

use bytes::{BufMut, Bytes, BytesMut};
use net::codec::{Wire, decode_exact};
use net::message::RangeDescriptor;
use net::message::kv::KvOp;

use super::dedup::WriteId;

const PROPOSAL_V1: u8 = 1;
const META_V1: u8 = 1;
const SWEEP_V1: u8 = 2;
const SPLIT_V1: u8 = 3;
const WRITE_V1: u8 = 4;
const FREEZE_V1: u8 = 5;
const MERGE_V1: u8 = 6;

/// The freeze of a merge's right range, proposed by its leader: once applied, the range
/// applies no more writes or sweeps (`server::merge`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FreezeCmd {
    /// The right range's epoch when proposed (a freeze against another epoch is ignored).
    pub epoch: net::Epoch,
    /// The left range it will be merged into.
    pub into: net::RangeId,
}

/// The commit of a merge, proposed by the left range's leader and applied by every replica
/// of the left range once its shard's right replica applied the freeze (`server::merge`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MergeCmd {
    /// The left range's epoch when proposed (a merge against another epoch is ignored).
    pub epoch: net::Epoch,
    /// The right range's log index of its freeze.
    pub freeze_index: u64,
    /// The right range's descriptor when frozen.
    pub right: RangeDescriptor,
}

/// Encodes a freeze.
pub fn encode_freeze(c: &FreezeCmd) -> Vec<u8> {
    let mut b = BytesMut::with_capacity(25);
    b.put_u8(FREEZE_V1);
    b.put_u64_le(c.epoch.conf_ver);
    b.put_u64_le(c.epoch.version);
    b.put_u64_le(c.into.0);
    b.to_vec()
}

/// Decodes [`encode_freeze`]'s bytes.
pub fn decode_freeze(data: &[u8]) -> Option<FreezeCmd> {
    let (&v, rest) = data.split_first()?;
    if v != FREEZE_V1 || rest.len() != 24 {
        return None;
    }
    let u = |at: usize| u64::from_le_bytes(rest[at..at + 8].try_into().unwrap_or([0; 8]));
    Some(FreezeCmd {
        epoch: net::Epoch {
            conf_ver: u(0),
            version: u(8),
        },
        into: net::RangeId(u(16)),
    })
}

/// Encodes a merge commit.
pub fn encode_merge(c: &MergeCmd) -> Vec<u8> {
    let mut b = BytesMut::with_capacity(128);
    b.put_u8(MERGE_V1);
    b.put_u64_le(c.epoch.conf_ver);
    b.put_u64_le(c.epoch.version);
    b.put_u64_le(c.freeze_index);
    c.right.encode(&mut b);
    b.to_vec()
}

/// Decodes [`encode_merge`]'s bytes.
pub fn decode_merge(data: &[u8]) -> Option<MergeCmd> {
    let (&v, rest) = data.split_first()?;
    if v != MERGE_V1 || rest.len() < 24 {
        return None;
    }
    let u = |at: usize| u64::from_le_bytes(rest[at..at + 8].try_into().unwrap_or([0; 8]));
    let right = decode_exact::<RangeDescriptor>(Bytes::copy_from_slice(&rest[24..])).ok()?;
    Some(MergeCmd {
        epoch: net::Epoch {
            conf_ver: u(0),
            version: u(8),
        },
        freeze_index: u(16),
        right,
    })
}

/// A split of a range, proposed by its leader and applied by every replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitCmd {
    /// The range's epoch when proposed (a split proposed against another epoch is ignored).
    pub epoch: net::Epoch,
    /// The first key of the new right-hand range.
    pub split_key: Bytes,
    /// The new range's id.
    pub new_range_id: u64,
    /// The new range's replica ids, one per replica of the old range, in its order.
    pub new_replica_ids: Vec<u64>,
}

/// Encodes a split.
pub fn encode_split(c: &SplitCmd) -> Vec<u8> {
    let mut b = BytesMut::with_capacity(40 + 8 * c.new_replica_ids.len() + c.split_key.len());
    b.put_u8(SPLIT_V1);
    b.put_u64_le(c.epoch.conf_ver);
    b.put_u64_le(c.epoch.version);
    b.put_u64_le(c.new_range_id);
    b.put_u32_le(c.new_replica_ids.len() as u32);
    for id in &c.new_replica_ids {
        b.put_u64_le(*id);
    }
    b.put_u32_le(c.split_key.len() as u32);
    b.put_slice(&c.split_key);
    b.to_vec()
}

/// Decodes [`encode_split`]'s bytes.
pub fn decode_split(data: &[u8]) -> Option<SplitCmd> {
    let (&v, rest) = data.split_first()?;
    if v != SPLIT_V1 {
        return None;
    }
    let u64_at = |at: usize| -> Option<u64> {
        Some(u64::from_le_bytes(
            rest.get(at..at.checked_add(8)?)?.try_into().ok()?,
        ))
    };
    let conf_ver = u64_at(0)?;
    let version = u64_at(8)?;
    let new_range_id = u64_at(16)?;
    let n = u32::from_le_bytes(rest.get(24..28)?.try_into().ok()?) as usize;
    if n > 64 {
        return None;
    }
    let mut at = 28;
    let mut new_replica_ids = Vec::with_capacity(n);
    for _ in 0..n {
        new_replica_ids.push(u64_at(at)?);
        at += 8;
    }
    let klen = u32::from_le_bytes(rest.get(at..at + 4)?.try_into().ok()?) as usize;
    at += 4;
    let key = rest.get(at..at.checked_add(klen)?)?;
    (at + klen == rest.len()).then(|| SplitCmd {
        epoch: net::Epoch { conf_ver, version },
        split_key: Bytes::copy_from_slice(key),
        new_range_id,
        new_replica_ids,
    })
}

/// Encodes a TTL sweep: delete each internal key that is expired at `now_ms` when applied.
pub fn encode_sweep(now_ms: u64, keys: &[Bytes]) -> Vec<u8> {
    let mut b = BytesMut::with_capacity(16 + keys.iter().map(|k| k.len() + 4).sum::<usize>());
    b.put_u8(SWEEP_V1);
    b.put_u64_le(now_ms);
    b.put_u32_le(keys.len() as u32);
    for k in keys {
        b.put_u32_le(k.len() as u32);
        b.put_slice(k);
    }
    b.to_vec()
}

/// Decodes [`encode_sweep`]'s bytes into `(now_ms, keys)`.
pub fn decode_sweep(data: &[u8]) -> Option<(u64, Vec<Bytes>)> {
    let (&v, rest) = data.split_first()?;
    if v != SWEEP_V1 {
        return None;
    }
    let now_ms = u64::from_le_bytes(rest.get(..8)?.try_into().ok()?);
    let n = u32::from_le_bytes(rest.get(8..12)?.try_into().ok()?) as usize;
    let mut at = 12;
    let mut keys = Vec::with_capacity(n.min(4096));
    for _ in 0..n {
        let len = u32::from_le_bytes(rest.get(at..at + 4)?.try_into().ok()?) as usize;
        at += 4;
        keys.push(Bytes::copy_from_slice(rest.get(at..at.checked_add(len)?)?));
        at += len;
    }
    (at == rest.len()).then_some((now_ms, keys))
}

/// Encodes a client operation proposed at the leader's `now_ms`.
pub fn encode_proposal(now_ms: u64, op: &KvOp) -> Vec<u8> {
    let mut b = BytesMut::with_capacity(64);
    b.put_u8(PROPOSAL_V1);
    b.put_u64_le(now_ms);
    op.encode(&mut b);
    b.to_vec()
}

/// Encodes a client write carrying its request id, proposed at the leader's `now_ms`.
pub fn encode_write(now_ms: u64, id: WriteId, op: &KvOp) -> Vec<u8> {
    let mut b = BytesMut::with_capacity(80);
    b.put_u8(WRITE_V1);
    b.put_u64_le(now_ms);
    b.put_u64_le(id.client);
    b.put_u64_le(id.seq);
    op.encode(&mut b);
    b.to_vec()
}

/// Decodes [`encode_proposal`]'s bytes into `(now_ms, op)` (and [`encode_write`]'s, without
/// the id).
pub fn decode_proposal(data: &[u8]) -> Option<(u64, KvOp)> {
    decode_write(data).map(|(now, _, op)| (now, op))
}

/// Decodes [`encode_proposal`]'s or [`encode_write`]'s bytes into `(now_ms, id, op)`.
pub fn decode_write(data: &[u8]) -> Option<(u64, Option<WriteId>, KvOp)> {
    decode_write_spans(data).map(|(now, id, op, _)| (now, id, op))
}

/// A value an entry's operation carries verbatim: where it starts in the entry's payload, and
/// its bytes.
pub type CarriedValue = (usize, Bytes);

/// Most value spans [`decode_write_spans`] names for one entry (the rest stay unbacked).
pub const VALUE_SPANS_MAX: usize = 1024;

/// [`decode_write`], plus the *value spans* of the operation: the values it carries
/// verbatim, each with where it starts in `data` (those of `Put`, `StrSet`, `CompareAndSet`, `BatchWrite` puts,
/// `HSet`, list pushes, inside `InDb` and `Multi`; at most [`VALUE_SPANS_MAX`]). They are the
/// slices that may back what the engine stores (`docs/format/shard-log.md` §3, "Backed
/// values"); the engine checks each against the bytes it stores.
pub fn decode_write_spans(data: &[u8]) -> Option<(u64, Option<WriteId>, KvOp, Vec<CarriedValue>)> {
    let (&v, rest) = data.split_first()?;
    let u64_at = |at: usize| -> Option<u64> {
        Some(u64::from_le_bytes(rest.get(at..at + 8)?.try_into().ok()?))
    };
    let now_ms = u64_at(0)?;
    let (id, op_at) = match v {
        PROPOSAL_V1 => (None, 8),
        WRITE_V1 => (
            Some(WriteId {
                client: u64_at(8)?,
                seq: u64_at(16)?,
            }),
            24,
        ),
        _ => return None,
    };
    // The decoded op's byte fields are slices of `buf` (the codec splits, never copies).
    let buf = Bytes::copy_from_slice(rest.get(op_at..)?);
    let op = decode_exact::<KvOp>(buf.clone()).ok()?;
    let mut values = Vec::new();
    carried_values(&op, &mut values, 0);
    let base = buf.as_ptr() as usize;
    let spans = values
        .into_iter()
        .filter_map(|b| {
            let start = (b.as_ptr() as usize).checked_sub(base)?;
            (!b.is_empty() && start + b.len() <= buf.len()).then(|| (1 + op_at + start, b.clone()))
        })
        .collect();
    Some((now_ms, id, op, spans))
}

/// Collects the values `op` carries verbatim (up to [`VALUE_SPANS_MAX`]).
fn carried_values<'a>(op: &'a KvOp, out: &mut Vec<&'a Bytes>, depth: u8) {
    use net::message::kv::WriteOp;
    use net::message::list::ListOp;
    let mut push = |v: &'a Bytes| {
        if out.len() < VALUE_SPANS_MAX {
            out.push(v);
        }
    };
    match op {
        KvOp::Put { value, .. } | KvOp::StrSet { value, .. } => push(value),
        KvOp::CompareAndSet { new: Some(v), .. } => push(v),
        KvOp::BatchWrite { ops } => ops.iter().for_each(|w| {
            if let WriteOp::Put { value, .. } = w {
                push(value);
            }
        }),
        KvOp::HSet { pairs, .. } => pairs.iter().for_each(|(_, v)| push(v)),
        KvOp::List {
            op: ListOp::Push { elements, .. },
        } => elements.iter().for_each(push),
        // The wire codec nests at most one level; the bound keeps this obviously finite.
        KvOp::InDb { op, .. } if depth < 4 => carried_values(op, out, depth + 1),
        KvOp::Multi { ops, .. } if depth < 4 => {
            ops.iter().for_each(|o| carried_values(o, out, depth + 1));
        }
        _ => {}
    }
}

const TOMBSTONE: u8 = 0xDE;

/// Encodes the meta record of a destroyed replica.
pub fn encode_tombstone(replica_id: u64) -> Vec<u8> {
    let mut b = vec![TOMBSTONE];
    b.extend_from_slice(&replica_id.to_le_bytes());
    b
}

/// Decodes [`encode_tombstone`]'s bytes into the replica id.
pub fn decode_tombstone(data: &[u8]) -> Option<u64> {
    match data {
        [TOMBSTONE, rest @ ..] => Some(u64::from_le_bytes(rest.try_into().ok()?)),
        _ => None,
    }
}

/// Encodes a range descriptor (its replicas are the Raft configuration).
pub fn encode_meta(desc: &RangeDescriptor) -> Vec<u8> {
    let mut b = BytesMut::with_capacity(128);
    b.put_u8(META_V1);
    desc.encode(&mut b);
    b.to_vec()
}

/// Decodes [`encode_meta`]'s bytes.
pub fn decode_meta(data: &[u8]) -> Option<RangeDescriptor> {
    let (&v, rest) = data.split_first()?;
    if v != META_V1 {
        return None;
    }
    decode_exact::<RangeDescriptor>(Bytes::copy_from_slice(rest)).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use net::RangeId;

    #[test]
    fn freeze_and_merge_round_trip_and_reject_truncations() {
        let epoch = net::Epoch {
            conf_ver: 3,
            version: 7,
        };
        let f = FreezeCmd {
            epoch,
            into: RangeId(4),
        };
        let e = encode_freeze(&f);
        assert_eq!(decode_freeze(&e), Some(f));
        let m = MergeCmd {
            epoch,
            freeze_index: 42,
            right: RangeDescriptor {
                id: RangeId(9),
                start: Bytes::from_static(b"m"),
                end: Bytes::from_static(b"z"),
                epoch,
                replicas: Vec::new(),
                leader: None,
            },
        };
        let em = encode_merge(&m);
        assert_eq!(decode_merge(&em), Some(m));
        for n in 0..e.len() {
            assert_eq!(decode_freeze(&e[..n]), None);
        }
        for n in 0..em.len() {
            assert_eq!(decode_merge(&em[..n]), None);
        }
        // Neither is mistaken for another entry, nor another entry for them.
        assert_eq!(decode_split(&e), None);
        assert_eq!(decode_write(&em), None);
        assert_eq!(decode_freeze(&em), None);
        assert_eq!(decode_merge(&encode_sweep(1, &[])), None);
    }

    #[test]
    fn proposal_and_meta_round_trip_and_reject_garbage() {
        let op = KvOp::Get {
            key: Bytes::from_static(b"k"),
        };
        let p = encode_proposal(42, &op);
        assert_eq!(decode_proposal(&p), Some((42, op)));
        assert_eq!(decode_proposal(&p[..5]), None);
        assert_eq!(decode_proposal(&[]), None);
        let d = RangeDescriptor {
            id: RangeId(7),
            start: Bytes::new(),
            end: Bytes::new(),
            epoch: net::Epoch::default(),
            replicas: vec![],
            leader: None,
        };
        assert_eq!(decode_meta(&encode_meta(&d)), Some(d));
        assert_eq!(decode_meta(&[2, 3]), None);
        let keys = vec![Bytes::from_static(b"a"), Bytes::from_static(b"bc")];
        let sw = encode_sweep(9, &keys);
        assert_eq!(decode_sweep(&sw), Some((9, keys)));
        assert_eq!(decode_sweep(&sw[..sw.len() - 1]), None);
        assert_eq!(decode_proposal(&sw), None);
        assert_eq!(decode_tombstone(&encode_tombstone(9)), Some(9));
        let split = SplitCmd {
            epoch: net::Epoch {
                conf_ver: 2,
                version: 3,
            },
            split_key: Bytes::from_static(b"m"),
            new_range_id: 9,
            new_replica_ids: vec![10, 11, 12],
        };
        let e = encode_split(&split);
        assert_eq!(decode_split(&e), Some(split));
        for n in 0..e.len() {
            assert_eq!(decode_split(&e[..n]), None);
        }
        assert_eq!(decode_proposal(&e), None);
        assert_eq!(decode_sweep(&e), None);
        assert_eq!(decode_tombstone(&encode_tombstone(9)[..8]), None);
        assert_eq!(decode_meta(&encode_tombstone(9)), None);
    }

    #[test]
    fn write_with_request_id_round_trips_and_truncations_are_refused() {
        let op = KvOp::StrIncrBy {
            key: Bytes::from_static(b"k"),
            delta: 3,
        };
        let id = WriteId { client: 5, seq: 9 };
        let w = encode_write(42, id, &op);
        assert_eq!(decode_write(&w), Some((42, Some(id), op.clone())));
        assert_eq!(decode_proposal(&w), Some((42, op.clone())));
        let p = encode_proposal(42, &op);
        assert_eq!(decode_write(&p), Some((42, None, op)));
        for n in 0..w.len() {
            assert_eq!(decode_write(&w[..n]), None, "{n} bytes");
        }
        assert_eq!(decode_sweep(&w), None);
        assert_eq!(decode_split(&w), None);
    }

    #[test]
    fn value_spans_name_the_carried_values_inside_the_entry() {
        let op = KvOp::InDb {
            db: net::keyspace::Db::new(3).expect("a database"),
            op: Box::new(KvOp::HSet {
                key: Bytes::from_static(b"h"),
                pairs: vec![
                    (Bytes::from_static(b"f1"), Bytes::from_static(b"value-one")),
                    (Bytes::from_static(b"f2"), Bytes::new()),
                    (Bytes::from_static(b"f3"), Bytes::from_static(b"3")),
                ],
                only_new: false,
            }),
        };
        let w = encode_write(42, WriteId { client: 1, seq: 2 }, &op);
        let (_, _, got, spans) = decode_write_spans(&w).expect("decodes");
        assert_eq!(got, op);
        let named: Vec<&[u8]> = spans
            .iter()
            .map(|(at, b)| {
                assert_eq!(&w[*at..*at + b.len()], &b[..]);
                &b[..]
            })
            .collect();
        // The empty value names nothing.
        assert_eq!(named, vec![&b"value-one"[..], &b"3"[..]]);
        let incr = encode_proposal(
            1,
            &KvOp::StrIncrBy {
                key: Bytes::from_static(b"k"),
                delta: 1,
            },
        );
        assert!(decode_write_spans(&incr).expect("decodes").3.is_empty());
    }
}
