//! The part of the Redis keyspace layout (DESIGN §2, `docs/format/redis-keys.md`) that every
//! process must agree on: the hash slot of a key, the database, and the internal key a Redis
//! key is routed by, its metadata entry `'r' | slot u16 BE | db u8 | len(key) u24 BE | key |
//! 'M'`. The proxy routes with it; `ds_node::keyspace` builds the rest of the layout
//! (element sub-keys) on top of it.
//!
//! The previous release wrote `'r' | slot u16 | len(key) u32 | key`: keys are at most 64 KiB,
//! so the high length byte was always 0 and each of its keys is the same key in database 0.
// perf-critical: every keyed command routes through here.

use bytes::{BufMut, Bytes, BytesMut};

use crate::codec::{DecodeError, Reader, Wire};

/// Number of Redis Cluster hash slots.
pub const SLOTS: u16 = 16384;
/// First byte of every internal key of Redis data.
pub const REDIS_PREFIX: u8 = b'r';

/// Number of Redis databases (`SELECT 0..15`, `CONFIG GET databases`).
pub const DATABASES: u8 = 16;

/// Bytes of `'r' | slot | db | len` before the user key.
pub const USER_PREFIX_BYTES: usize = 7;

/// A Redis database number, below [`DATABASES`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Db(u8);

impl Db {
    /// Database 0, where every key of the previous release lives.
    pub const ZERO: Db = Db(0);

    /// Database `n`, if it exists.
    pub fn new(n: u8) -> Option<Db> {
        (n < DATABASES).then_some(Db(n))
    }

    /// Database `n` of a Redis argument (`SELECT`, `MOVE`, `COPY … DB`), if it exists.
    pub fn from_i64(n: i64) -> Option<Db> {
        u8::try_from(n).ok().and_then(Db::new)
    }

    /// Its number.
    pub fn get(self) -> u8 {
        self.0
    }

    /// Every database, in order.
    pub fn all() -> impl Iterator<Item = Db> {
        (0..DATABASES).map(Db)
    }
}

impl std::fmt::Display for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl Wire for Db {
    fn encode(&self, buf: &mut BytesMut) {
        buf.put_u8(self.0);
    }
    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        let n = r.u8("database")?;
        Db::new(n).ok_or(DecodeError::UnknownTag {
            what: "database",
            tag: n.into(),
        })
    }
}

#[cfg(test)]
impl proptest::arbitrary::Arbitrary for Db {
    type Parameters = ();
    type Strategy = proptest::strategy::Map<std::ops::Range<u8>, fn(u8) -> Db>;
    fn arbitrary_with((): ()) -> Self::Strategy {
        use proptest::strategy::Strategy;
        (0..DATABASES).prop_map(Db)
    }
}

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

/// `'r' | slot(key) | db | len(key) | key` with room for `extra` more bytes: the prefix every
/// internal key of `key` in `db` starts with.
pub fn user_prefix(db: Db, key: &[u8], extra: usize) -> BytesMut {
    let mut k = BytesMut::with_capacity(USER_PREFIX_BYTES + key.len() + extra);
    k.put_u8(REDIS_PREFIX);
    k.put_u16(slot(key));
    k.put_u8(db.0);
    // Keys are bounded far below 16 MiB by the parser's bulk limit and net's key limit
    // (`limits::MAX_KEY_ELEMENT_BYTES`); a longer one could only come from a caller that
    // skipped the limit check, and is cut to a length that never matches (refused later).
    let len = u32::try_from(key.len())
        .unwrap_or(u32::MAX)
        .min(0x00FF_FFFF);
    k.put_slice(&len.to_be_bytes()[1..]);
    k.put_slice(key);
    k
}

/// The metadata entry of `key` in `db`: the internal key a Redis key is routed by.
pub fn meta_key(db: Db, key: &[u8]) -> Bytes {
    let mut k = user_prefix(db, key, 1);
    k.put_u8(b'M');
    k.freeze()
}

/// The user key and database of an internal key's prefix, and what follows the key.
pub fn parse_user(internal: &[u8]) -> Option<(Db, &[u8], &[u8])> {
    let [REDIS_PREFIX, _, _, db, a, b, c, rest @ ..] = internal else {
        return None;
    };
    let db = Db::new(*db)?;
    let len = u32::from_be_bytes([0, *a, *b, *c]) as usize;
    let key = rest.get(..len)?;
    Some((db, key, &rest[len..]))
}

/// The same metadata entry in database `db` (a route key the proxy built for database 0);
/// any other key unchanged.
pub fn meta_in_db(route: &Bytes, db: Db) -> Bytes {
    match parse_user(route) {
        Some((_, _, b"M")) if db != Db::ZERO => {
            let mut k = BytesMut::from(&route[..]);
            k[3] = db.0;
            k.freeze()
        }
        _ => route.clone(),
    }
}

/// The first internal key of database `db` in slot `slot` (`'r' | slot | db`).
pub fn db_start(slot: u16, db: Db) -> Bytes {
    let mut k = BytesMut::with_capacity(4);
    k.put_u8(REDIS_PREFIX);
    k.put_u16(slot.min(SLOTS));
    k.put_u8(db.0);
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
        let k = meta_key(Db::ZERO, b"foo");
        assert_eq!(slot_of_internal(&k), Some(12182));
        assert!(slot_start(12182) < k && k < slot_start(12183));
        assert!(meta_key(Db(15), b"a") < slot_start(SLOTS));
    }

    /// The previous release's layout, written out byte by byte.
    fn old_meta_key(key: &[u8]) -> Vec<u8> {
        let mut k = vec![REDIS_PREFIX];
        k.extend_from_slice(&slot(key).to_be_bytes());
        k.extend_from_slice(&(key.len() as u32).to_be_bytes());
        k.extend_from_slice(key);
        k.push(b'M');
        k
    }

    #[test]
    fn old_layout_keys_decode_as_db_0() {
        for key in [
            &b""[..],
            b"foo",
            b"{user1000}.following",
            &[0xff; 300],
            &[7; 65_472],
        ] {
            let old = old_meta_key(key);
            assert_eq!(meta_key(Db::ZERO, key)[..], old[..]);
            assert_eq!(parse_user(&old), Some((Db::ZERO, key, &b"M"[..])));
        }
    }

    #[test]
    fn databases_beyond_15_do_not_exist() {
        assert_eq!(Db::new(15), Some(Db(15)));
        assert_eq!(Db::new(16), None);
        assert_eq!(Db::from_i64(-1), None);
        assert_eq!(Db::from_i64(256), None);
        let mut bad = meta_key(Db(3), b"k").to_vec();
        bad[3] = 16;
        assert_eq!(parse_user(&bad), None);
        assert!(crate::codec::decode_exact::<Db>(Bytes::from_static(&[16])).is_err());
        assert_eq!(
            crate::codec::decode_exact::<Db>(Bytes::from_static(&[15])),
            Ok(Db(15))
        );
    }

    #[test]
    fn a_route_moves_to_another_database_only_if_it_is_a_metadata_entry() {
        let m = meta_key(Db::ZERO, b"k");
        assert_eq!(meta_in_db(&m, Db(4)), meta_key(Db(4), b"k"));
        assert_eq!(meta_in_db(&m, Db::ZERO), m);
        let start = slot_start(7);
        assert_eq!(meta_in_db(&start, Db(4)), start);
        let boundary = m.slice(..m.len() - 1);
        assert_eq!(meta_in_db(&boundary, Db(4)), boundary);
    }

    proptest::proptest! {
        #[test]
        fn db_and_key_round_trip(db: Db, key in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64)) {
            let k = meta_key(db, &key);
            proptest::prop_assert_eq!(parse_user(&k), Some((db, &key[..], &b"M"[..])));
            proptest::prop_assert_eq!(slot_of_internal(&k), Some(slot(&key)));
        }

        #[test]
        fn keys_of_one_slot_and_database_are_contiguous(
            a in (proptest::prelude::any::<Db>(), proptest::collection::vec(0u8..4, 0..6)),
            b in (proptest::prelude::any::<Db>(), proptest::collection::vec(0u8..4, 0..6)),
            c in (proptest::prelude::any::<Db>(), proptest::collection::vec(0u8..4, 0..6)),
        ) {
            // One slot for all (a hash tag), so only the database and the key differ.
            let key = |k: &[u8]| [&b"{t}"[..], k].concat();
            let (ka, kb, kc) = (meta_key(a.0, &key(&a.1)), meta_key(b.0, &key(&b.1)), meta_key(c.0, &key(&c.1)));
            // Whatever lies between two keys of one database is in that database.
            if a.0 == c.0 && ka <= kb && kb <= kc {
                proptest::prop_assert_eq!(b.0, a.0);
            }
            // Databases sort in order within a slot, and inside [db_start, next db_start).
            let s = slot(b"{t}");
            proptest::prop_assert!(db_start(s, a.0) <= ka);
            if let Some(next) = Db::new(a.0.get() + 1) {
                proptest::prop_assert!(ka < db_start(s, next));
            }
            proptest::prop_assert!(ka < slot_start(s + 1));
        }
    }
}
