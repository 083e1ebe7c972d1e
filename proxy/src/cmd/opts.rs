//! Arguments several command families parse alike: SCAN's options (`SCAN`, `HSCAN`, `SSCAN`,
//! `ZSCAN`), a database number (`SELECT`, `MOVE`, `COPY … DB`), a random count and seed
//! (`SRANDMEMBER`, `HRANDFIELD`), and the Redis type names (`TYPE`, `SCAN … TYPE`).
//!
//! A leaf of `cmd`: it imports `util` only.

use bytes::Bytes;
use net::message::kv::KeyType;

use super::util::{int, is, syntax};
use crate::keyspace::Db;
use crate::resp::Reply;

/// SCAN's `MATCH` pattern (`None`: every key), `COUNT` hint and `TYPE` filter (`Some(None)`:
/// a type this proxy never stores, nothing matches).
pub type ScanOpts = (Option<Bytes>, usize, Option<Option<KeyType>>);

/// The options of SCAN (`with_type`) or HSCAN: MATCH, COUNT, TYPE.
pub fn scan_opts(opts: &[Bytes], with_type: bool) -> Result<ScanOpts, Reply> {
    let (mut pattern, mut count, mut type_filter) = (None, 10usize, None);
    let mut i = 0;
    while i < opts.len() {
        let Some(v) = opts.get(i + 1) else {
            return Err(syntax());
        };
        if is(&opts[i], "match") {
            pattern = (&v[..] != b"*").then(|| v.clone());
        } else if is(&opts[i], "count") {
            let n = int(v)?;
            if n < 1 {
                return Err(syntax());
            }
            count = usize::try_from(n).unwrap_or(usize::MAX);
        } else if with_type && is(&opts[i], "type") {
            type_filter = Some(
                TYPE_NAMES
                    .iter()
                    .find(|(_, name)| is(v, name))
                    .map(|(t, _)| *t),
            );
        } else {
            return Err(syntax());
        }
        i += 2;
    }
    Ok((pattern, count, type_filter))
}

/// Every Redis type with its `TYPE` name.
const TYPE_NAMES: [(KeyType, &str); 6] = [
    (KeyType::None {}, "none"),
    (KeyType::String {}, "string"),
    (KeyType::Hash {}, "hash"),
    (KeyType::List {}, "list"),
    (KeyType::Set {}, "set"),
    (KeyType::ZSet {}, "zset"),
];

/// The name `TYPE` answers for a type.
pub fn type_name(t: KeyType) -> &'static str {
    TYPE_NAMES
        .iter()
        .find(|(k, _)| *k == t)
        .map_or("none", |(_, name)| name)
}

/// A database argument, with Redis's errors (`ERR value is not an integer or out of range`,
/// `ERR DB index is out of range`).
pub fn database(arg: &[u8]) -> Result<Db, Reply> {
    Db::from_i64(int(arg)?).ok_or_else(db_out_of_range)
}

/// `ERR DB index is out of range`.
pub fn db_out_of_range() -> Reply {
    Reply::err("DB index is out of range")
}

/// A random seed for a read (SRANDMEMBER, HRANDFIELD): reads run on the leader only.
pub fn seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(crate::shared::now_us());
    h.finish()
}

/// `ERR value is out of range, value must between -LONG_MAX and LONG_MAX` for `i64::MIN`.
pub fn long_count(arg: &[u8]) -> Result<i64, Reply> {
    let n = int(arg)?;
    if n == i64::MIN {
        return Err(Reply::err(format_args!(
            "value is out of range, value must between {} and {}",
            -i64::MAX,
            i64::MAX
        )));
    }
    Ok(n)
}
