//! Internal keys of Redis data (DESIGN §2).
//!
//! ```text
//! prefix P:        'r' | slot u16 BE | db u8 | len(key) u24 BE | key
//! metadata entry:  P | 'M'
//! hash field:      P | 'F' | version u64 BE | field
//! list element:    P | 'L' | version u64 BE | index u64 BE
//! set member:      P | 'S' | version u64 BE | member
//! zset member:     P | 'Z' | version u64 BE | member
//!                  (value: the score, 8 bytes, `score_bytes`)
//! zset by score:   P | 'z' | version u64 BE
//!                  | score_bytes(score) | member   (value: empty)
//! dedup record:    P | 'D' | client u64 BE | seq u64 BE
//! ```
//!
//! `db` is the Redis database (`net::keyspace::Db`); the previous release's prefix was
//! `'r' | slot | len u32 | key`, whose high length byte is always 0, so its keys are the same
//! keys in database 0 (`docs/format/redis-keys.md`).
//! `slot` is the Redis Cluster hash slot (CRC16/XMODEM of the key, or of its `{hash tag}`,
//! mod 16384), so ranges of Redis data cover slot intervals and keys spread evenly. The
//! length prefix makes the key's bytes self-delimiting: every internal key of one user key
//! shares the prefix `'r' | slot | db | len | key`, no other user key's entries fall between
//! them, and a range split point can always be placed between two user keys. Fields of a
//! hash sort before its metadata entry (`'F'` < `'M'`). A dedup record
//! (`range::dedup`) remembers a write to the key by its request id; it is no field and no
//! metadata, so nothing that lists keys or fields sees it.
// perf-critical: every Redis command encodes its keys here.

use bytes::{BufMut, Bytes, BytesMut};

pub use net::keyspace::{
    DATABASES, Db, REDIS_PREFIX, SLOTS, USER_PREFIX_BYTES, crc16_xmodem, db_start, meta_key,
    parse_user, slot, slot_start,
};

const META: u8 = b'M';
/// The tag of a hash field.
pub const FIELD: u8 = b'F';
const DEDUP: u8 = b'D';

/// The tag of a list element.
pub const LIST_ELEMENT: u8 = b'L';
/// The tag of a set member.
pub const SET_MEMBER: u8 = b'S';
/// The tag of a sorted-set member (value: its score).
pub const ZSET_MEMBER: u8 = b'Z';
/// The tag of a sorted set's score index entry.
pub const ZSET_SCORE: u8 = b'z';
/// Every element tag: the sub-keys of a collection of any type.
pub const ELEMENT_TAGS: [u8; 5] = [FIELD, LIST_ELEMENT, SET_MEMBER, ZSET_MEMBER, ZSET_SCORE];

fn user_prefix(db: Db, key: &[u8], extra: usize) -> BytesMut {
    net::keyspace::user_prefix(db, key, extra)
}

/// The dedup record of write `(client, seq)` to `key` (`range::dedup`).
pub fn dedup_key(db: Db, key: &[u8], client: u64, seq: u64) -> Bytes {
    let mut k = user_prefix(db, key, 1 + 16);
    k.put_u8(DEDUP);
    k.put_u64(client);
    k.put_u64(seq);
    k.freeze()
}

/// Whether internal key `k` is a dedup record ([`dedup_key`]'s layout: the user prefix of a
/// key, `'D'`, then 16 bytes). Only the layout is checked; a raw key of the same shape
/// answers `true` too, which only decides which tree of the engine holds it.
pub fn is_dedup_key(k: &[u8]) -> bool {
    let p = net::keyspace::USER_PREFIX_BYTES;
    if k.len() < p + 1 + 16 || k[0] != net::keyspace::REDIS_PREFIX {
        return false;
    }
    let len = u32::from_be_bytes([0, k[4], k[5], k[6]]) as usize;
    k.len() == p + len + 1 + 16 && k[p + len] == DEDUP
}

/// The sub-key of `field` in version `version` of hash `key`.
pub fn field_key(db: Db, key: &[u8], version: u64, field: &[u8]) -> Bytes {
    let mut k = field_prefix(db, key, version, field.len());
    k.put_slice(field);
    k.freeze()
}

/// The prefix shared by every field of version `version` of hash `key`.
pub fn field_prefix_bytes(db: Db, key: &[u8], version: u64) -> Bytes {
    field_prefix(db, key, version, 0).freeze()
}

fn field_prefix(db: Db, key: &[u8], version: u64, extra: usize) -> BytesMut {
    let mut k = user_prefix(db, key, 1 + 8 + extra);
    k.put_u8(FIELD);
    k.put_u64(version);
    k
}

/// The sub-key of element `element` of version `version` of collection `key` under `tag`
/// (one of [`ELEMENT_TAGS`]).
pub fn element_key(db: Db, key: &[u8], tag: u8, version: u64, element: &[u8]) -> Bytes {
    let mut k = user_prefix(db, key, 1 + 8 + element.len());
    k.put_u8(tag);
    k.put_u64(version);
    k.put_slice(element);
    k.freeze()
}

/// The prefix shared by every element of version `version` of `key` under `tag`.
pub fn element_prefix(db: Db, key: &[u8], tag: u8, version: u64) -> Bytes {
    element_key(db, key, tag, version, &[])
}

/// The prefix shared by every element of `key` under `tag`, whatever its version.
pub fn tag_prefix(db: Db, key: &[u8], tag: u8) -> Bytes {
    let mut k = user_prefix(db, key, 1);
    k.put_u8(tag);
    k.freeze()
}

/// The sub-key of list element `index` of version `version` of `key`.
pub fn list_element_key(db: Db, key: &[u8], version: u64, index: u64) -> Bytes {
    element_key(db, key, LIST_ELEMENT, version, &index.to_be_bytes())
}

/// A score as 8 bytes whose byte order is the numeric order of the scores (IEEE-754 bits with
/// the sign bit flipped for positives and every bit flipped for negatives; -0 sorts as +0's
/// neighbour below it). NaN is never stored.
pub fn score_bytes(score: f64) -> [u8; 8] {
    let bits = score.to_bits();
    let ordered = if bits >> 63 == 0 {
        bits | (1 << 63)
    } else {
        !bits
    };
    ordered.to_be_bytes()
}

/// The score of [`score_bytes`]'s bytes.
pub fn score_of(bytes: [u8; 8]) -> f64 {
    let ordered = u64::from_be_bytes(bytes);
    let bits = if ordered >> 63 == 1 {
        ordered & !(1 << 63)
    } else {
        !ordered
    };
    f64::from_bits(bits)
}

/// The smallest key greater than every key starting with `prefix` (for an exclusive scan
/// end); `None` if there is none (all bytes are 0xff).
pub fn prefix_end(prefix: &[u8]) -> Option<Bytes> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(Bytes::from(end));
        }
    }
    None
}

/// If `internal` is a metadata entry, its database and the user key it belongs to.
pub fn user_key_of_meta(internal: &[u8]) -> Option<(Db, &[u8])> {
    let (db, key, rest) = parse_user(internal)?;
    (rest == [META]).then_some((db, key))
}

/// If `internal` is an element of a collection (a tag of [`ELEMENT_TAGS`]), its database,
/// user key and version.
pub fn parse_element(internal: &[u8]) -> Option<(Db, &[u8], u64)> {
    let (db, key, tail) = parse_user(internal)?;
    let (&tag, tail) = tail.split_first()?;
    if !ELEMENT_TAGS.contains(&tag) {
        return None;
    }
    let version = u64::from_be_bytes(tail.get(..8)?.try_into().ok()?);
    Some((db, key, version))
}

/// If `internal` is a field sub-key, its field name (the caller knows key and version).
pub fn field_of(internal: &[u8], prefix: &[u8]) -> Option<Bytes> {
    internal.strip_prefix(prefix).map(Bytes::copy_from_slice)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dedup_records_are_told_from_every_other_internal_key() {
        let db = Db::new(3).expect("a database");
        for key in [
            &b""[..],
            b"k",
            b"user15906251315D0123456789abcdef",
            &[b'D'; 300],
        ] {
            assert!(is_dedup_key(&dedup_key(db, key, 7, u64::MAX)));
            assert!(!is_dedup_key(&meta_key(db, key)));
            for tag in ELEMENT_TAGS {
                // An element whose member ends like a record's tail is no record.
                let member = [b'D'; 17];
                assert!(!is_dedup_key(&element_key(db, key, tag, 1, &member)));
            }
            let r = dedup_key(db, key, 7, 8);
            assert!(!is_dedup_key(&r[..r.len() - 1]));
        }
        assert!(!is_dedup_key(b"raw key of any shape at all"));
        assert!(!is_dedup_key(&[REDIS_PREFIX, 0, 0, 0, 0xff, 0xff, 0xff]));
    }

    #[test]
    fn elements_parse_back_to_their_key_and_version_and_nothing_else_does() {
        let key = &b"{t}k"[..];
        let db = Db::new(9).expect("a database");
        for tag in ELEMENT_TAGS {
            let k = element_key(db, key, tag, 42, b"member");
            assert_eq!(parse_element(&k), Some((db, key, 42)));
            assert_eq!(parse_element(&k[..k.len() - 7]), None, "cut in the version");
        }
        assert_eq!(parse_element(&meta_key(db, key)), None);
        assert_eq!(parse_element(&dedup_key(db, key, 1, 2)), None);
        assert_eq!(parse_element(b"raw"), None);
        assert_eq!(
            parse_element(&[REDIS_PREFIX, 0, 0, 0xff, 0xff, 0xff, 0xff]),
            None
        );
    }

    #[test]
    fn score_bytes_sort_as_the_scores_do() {
        let scores = [
            f64::NEG_INFINITY,
            -1e300,
            -2.5,
            -1.0,
            -f64::MIN_POSITIVE,
            -0.0,
            0.0,
            f64::MIN_POSITIVE,
            1.0,
            2.5,
            1e300,
            f64::INFINITY,
        ];
        for w in scores.windows(2) {
            assert!(score_bytes(w[0]) < score_bytes(w[1]), "{} < {}", w[0], w[1]);
        }
        for s in scores {
            assert_eq!(score_of(score_bytes(s)).to_bits(), s.to_bits());
        }
    }

    #[test]
    fn slots_match_redis_cluster() {
        // Values from `CLUSTER KEYSLOT` in Redis 7.
        assert_eq!(slot(b"foo"), 12182);
        assert_eq!(slot(b"bar"), 5061);
        assert_eq!(slot(b"{user1000}.following"), slot(b"{user1000}.followers"));
        assert_eq!(slot(b"{}foo"), crc16_xmodem(b"{}foo") % SLOTS);
        assert_eq!(crc16_xmodem(b"123456789"), 0x31C3);
    }

    #[test]
    fn every_internal_key_of_a_user_key_is_contiguous() {
        // "ab" and "a" share a slot only by chance; force the slot with a hash tag.
        let (a, ab) = (&b"{t}a"[..], &b"{t}ab"[..]);
        let z = Db::ZERO;
        let mut keys = [
            meta_key(z, a),
            field_key(z, a, 1, b"zzz"),
            meta_key(z, ab),
            field_key(z, ab, 1, b""),
        ];
        keys.sort();
        let owner = |k: &Bytes| {
            if k.starts_with(&user_prefix(z, a, 0)) {
                "a"
            } else {
                "ab"
            }
        };
        let owners: Vec<_> = keys.iter().map(owner).collect();
        assert_eq!(owners, ["a", "a", "ab", "ab"]);
        assert!(field_key(z, a, 1, b"zzz") < meta_key(z, a));
    }

    #[test]
    fn metadata_keys_decode_back_to_user_keys() {
        let k = b"user:\x00\xff:1";
        let db = Db::new(15).expect("a database");
        assert_eq!(user_key_of_meta(&meta_key(db, k)), Some((db, &k[..])));
        assert_eq!(user_key_of_meta(&field_key(db, k, 3, b"f")), None);
        assert_eq!(user_key_of_meta(b"r\x00"), None);
    }

    /// The previous release's prefix, written out byte by byte.
    fn old_prefix(key: &[u8]) -> Vec<u8> {
        let mut k = vec![REDIS_PREFIX];
        k.extend_from_slice(&slot(key).to_be_bytes());
        k.extend_from_slice(&(key.len() as u32).to_be_bytes());
        k.extend_from_slice(key);
        k
    }

    #[test]
    fn every_old_layout_entry_is_the_same_entry_in_db_0() {
        let key = &b"user:1"[..];
        let old = |tail: &[u8]| [&old_prefix(key)[..], tail].concat();
        let z = Db::ZERO;
        assert_eq!(meta_key(z, key)[..], old(b"M")[..]);
        assert_eq!(
            field_key(z, key, 5, b"f")[..],
            old(&[&b"F"[..], &5u64.to_be_bytes(), b"f"].concat())[..]
        );
        assert_eq!(
            list_element_key(z, key, 5, 9)[..],
            old(&[&b"L"[..], &5u64.to_be_bytes(), &9u64.to_be_bytes()].concat())[..]
        );
        assert_eq!(
            dedup_key(z, key, 1, 2)[..],
            old(&[&b"D"[..], &1u64.to_be_bytes(), &2u64.to_be_bytes()].concat())[..]
        );
        let element = old(&[&b"S"[..], &5u64.to_be_bytes(), b"m"].concat());
        assert_eq!(parse_element(&element), Some((z, key, 5)));
        assert_eq!(user_key_of_meta(&old(b"M")), Some((z, key)));
    }

    proptest::proptest! {
        #[test]
        fn elements_round_trip_their_database_key_and_version(
            db in 0u8..DATABASES,
            key in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..40),
            tag in proptest::sample::select(&ELEMENT_TAGS[..]),
            version: u64,
            element in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..40),
        ) {
            let db = Db::new(db).expect("below DATABASES");
            let k = element_key(db, &key, tag, version, &element);
            proptest::prop_assert_eq!(parse_element(&k), Some((db, &key[..], version)));
            let m = meta_key(db, &key);
            proptest::prop_assert_eq!(user_key_of_meta(&m), Some((db, &key[..])));
            // Every entry of (slot, db) lies in [db_start, next db_start).
            let s = slot(&key);
            proptest::prop_assert!(db_start(s, db) <= k && db_start(s, db) <= m);
            let next = Db::new(db.get() + 1).map_or_else(|| slot_start(s + 1), |n| db_start(s, n));
            proptest::prop_assert!(k < next && m < next);
        }
    }

    #[test]
    fn prefix_end_is_the_next_prefix() {
        assert_eq!(prefix_end(b"ab"), Some(Bytes::from_static(b"ac")));
        assert_eq!(prefix_end(b"a\xff"), Some(Bytes::from_static(b"b")));
        assert_eq!(prefix_end(b"\xff\xff"), None);
    }
}
