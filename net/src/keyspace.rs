//! The part of the Redis keyspace layout (DESIGN §2) that every process must agree on: the
//! hash slot of a key and the internal key a Redis key is routed by, its metadata entry
//! `'r' | slot u16 BE | len(key) u32 BE | key | 'M'`. The proxy routes with it; `ds_node::keyspace`
//! builds the rest of the layout (hash-field sub-keys) on top of it.
// perf-critical: every keyed command routes through here.

use bytes::{BufMut, Bytes, BytesMut};

/// Number of Redis Cluster hash slots.
pub const SLOTS: u16 = 16384;
/// First byte of every internal key of Redis data.
pub const REDIS_PREFIX: u8 = b'r';

/// The Redis Cluster hash slot of `key` (CRC16 of the first non-empty `{tag}`, else of the key).
pub fn slot(key: &[u8]) -> u16 {
    let tagged = key
        .iter()
        .position(|&b| b == b'{')
        .and_then(|open| {
            let rest = &key[open + 1..];
            let close = rest.iter().position(|&b| b == b'}')?;
            (close > 0).then(|| &rest[..close])
        })
        .unwrap_or(key);
    crc16_xmodem(tagged) % SLOTS
}

/// CRC16/XMODEM (polynomial 0x1021, initial 0), as Redis Cluster uses.
pub fn crc16_xmodem(data: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &b in data {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// The metadata entry of `key`: the internal key a Redis key is routed by.
pub fn meta_key(key: &[u8]) -> Bytes {
    let mut k = BytesMut::with_capacity(1 + 2 + 4 + key.len() + 1);
    k.put_u8(REDIS_PREFIX);
    k.put_u16(slot(key));
    // Keys are bounded far below 4 GiB by the parser's bulk limit and net's key limit.
    k.put_u32(u32::try_from(key.len()).unwrap_or(u32::MAX));
    k.put_slice(key);
    k.put_u8(b'M');
    k.freeze()
}

/// The first internal key of slot `slot` (`'r' | slot`); [`SLOTS`] gives the end of Redis data.
pub fn slot_start(slot: u16) -> Bytes {
    if slot >= SLOTS {
        return Bytes::from_static(&[REDIS_PREFIX + 1]);
    }
    let mut k = BytesMut::with_capacity(3);
    k.put_u8(REDIS_PREFIX);
    k.put_u16(slot);
    k.freeze()
}

/// The slot an internal Redis key belongs to (`None` if it is not Redis data).
pub fn slot_of_internal(internal: &[u8]) -> Option<u16> {
    match internal {
        [REDIS_PREFIX, hi, lo, ..] => Some(u16::from_be_bytes([*hi, *lo])),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_tags_and_known_slots_match_redis_cluster() {
        assert_eq!(slot(b"foo"), 12182);
        assert_eq!(slot(b"{user1000}.following"), slot(b"user1000"));
        assert_eq!(slot(b"foo{}{bar}"), slot(b"foo{}{bar}"));
        assert_eq!(slot(b"123456789"), crc16_xmodem(b"123456789") % SLOTS);
        assert_eq!(crc16_xmodem(b"123456789"), 0x31C3);
    }

    #[test]
    fn meta_keys_sort_by_slot() {
        let k = meta_key(b"foo");
        assert_eq!(slot_of_internal(&k), Some(12182));
        assert!(slot_start(12182) < k && k < slot_start(12183));
        assert!(meta_key(b"a") < slot_start(SLOTS));
    }
}
