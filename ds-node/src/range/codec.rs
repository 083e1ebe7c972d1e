//! Byte layouts ds-node writes into the shard log: the data of a Raft entry carrying a client
//! operation, and the range metadata (descriptor + Raft conf state) kept in conf-state
//! records.
//!
//! ```text
//! proposal:   version u8 (=1) | now_ms u64 LE | KvOp (net wire encoding)
//! range meta: version u8 (=1) | RangeDescriptor (net wire encoding)
//! ```
//! Decoders return `None` on bad bytes and never panic.

use bytes::{BufMut, Bytes, BytesMut};
use net::codec::{Wire, decode_exact};
use net::message::RangeDescriptor;
use net::message::kv::KvOp;

const PROPOSAL_V1: u8 = 1;
const META_V1: u8 = 1;

/// Encodes a client operation proposed at the leader's `now_ms`.
pub fn encode_proposal(now_ms: u64, op: &KvOp) -> Vec<u8> {
    let mut b = BytesMut::with_capacity(64);
    b.put_u8(PROPOSAL_V1);
    b.put_u64_le(now_ms);
    op.encode(&mut b);
    b.to_vec()
}

/// Decodes [`encode_proposal`]'s bytes into `(now_ms, op)`.
pub fn decode_proposal(data: &[u8]) -> Option<(u64, KvOp)> {
    let (&v, rest) = data.split_first()?;
    if v != PROPOSAL_V1 || rest.len() < 8 {
        return None;
    }
    let now_ms = u64::from_le_bytes(rest[..8].try_into().ok()?);
    let op = decode_exact::<KvOp>(Bytes::copy_from_slice(&rest[8..])).ok()?;
    Some((now_ms, op))
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
    }
}
