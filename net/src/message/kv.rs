//! Client operations on a range (`docs/format/wire.md` §4.2): plain KV operations and the
//! type-aware Redis operations that the range's state machine executes at apply time.

use bytes::Bytes;

use crate::codec::{DecodeError, MAX_KEY_BYTES, Reader, Wire, wire_enum, wire_struct};
use crate::error::RpcError;
use crate::keyspace::Db;
use crate::limits::{LimitError, check_len, check_value, raw_key, user_key};
pub use crate::message::bits::BitOp;
pub use crate::message::hll::HllOp;
pub use crate::message::list::ListOp;
pub use crate::message::script::Value as ScriptValue;
pub use crate::message::set::{SetAlgebra, SetOp};
pub use crate::message::zset::ZSetOp;
use crate::route::RouteCtx;

/// What a write does to the key's expiry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum Expiry {
    /// Keep the current expiry (Redis `KEEPTTL`; for a new key: none).
    Keep {},
    /// Remove any expiry (plain `SET`, `PERSIST`).
    Persist {},
    /// Expire at this Unix time in milliseconds.
    At {
        /// Unix milliseconds.
        at_ms: u64,
    },
}
impl Default for Expiry {
    fn default() -> Self {
        Self::Keep {}
    }
}

wire_enum!(Expiry: u8, "expiry" { 0 => Keep {}, 1 => Persist {}, 2 => At { at_ms } });

/// The condition a write depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum Cond {
    /// Write unconditionally.
    Always {},
    /// Only if the key does not exist (`NX`).
    IfAbsent {},
    /// Only if the key exists (`XX`).
    IfPresent {},
}
impl Default for Cond {
    fn default() -> Self {
        Self::Always {}
    }
}

wire_enum!(Cond: u8, "write condition" { 0 => Always {}, 1 => IfAbsent {}, 2 => IfPresent {} });

/// The condition of an `EXPIRE` family command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum ExpireCond {
    /// Always set.
    Always {},
    /// Only if the key has no expiry (`NX`).
    IfNone {},
    /// Only if the key has an expiry (`XX`).
    IfSome {},
    /// Only if the new expiry is later (`GT`).
    IfGreater {},
    /// Only if the new expiry is earlier (`LT`; a key without expiry counts as infinite).
    IfLess {},
    /// Only if the key has an expiry and the new one is earlier (`LT XX`).
    IfSomeLess {},
}
impl Default for KeyType {
    fn default() -> Self {
        Self::None {}
    }
}
impl Default for ExpireCond {
    fn default() -> Self {
        Self::Always {}
    }
}

wire_enum!(ExpireCond: u8, "expire condition" {
    0 => Always {}, 1 => IfNone {}, 2 => IfSome {}, 3 => IfGreater {}, 4 => IfLess {},
    5 => IfSomeLess {},
});

/// The Redis type of a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum KeyType {
    /// The key does not exist.
    None {},
    /// A string.
    String {},
    /// A hash.
    Hash {},
    /// A list.
    List {},
    /// A set.
    Set {},
    /// A sorted set.
    ZSet {},
}
wire_enum!(KeyType: u8, "key type" {
    0 => None {}, 1 => String {}, 2 => Hash {}, 3 => List {}, 4 => Set {}, 5 => ZSet {},
});

/// One write of a [`KvOp::BatchWrite`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum WriteOp {
    /// Put a value.
    Put {
        /// The key.
        #[cfg_attr(test, proptest(strategy = "crate::arb::bytes()"))]
        key: Bytes,
        /// The value.
        #[cfg_attr(test, proptest(strategy = "crate::arb::bytes()"))]
        value: Bytes,
        /// Its expiry.
        expiry: Expiry,
    },
    /// Delete a key.
    Delete {
        /// The key.
        #[cfg_attr(test, proptest(strategy = "crate::arb::bytes()"))]
        key: Bytes,
    },
}
wire_enum!(WriteOp: u8, "write op" {
    0 => Put { key: key, value, expiry },
    1 => Delete { key: key },
});

/// An operation on one range. Keys of the Redis operations are user keys; the shard derives
/// the internal keys (metadata entry and sub-keys) itself.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[allow(missing_docs)] // the fields are described in docs/format/wire.md §4.2
pub enum KvOp {
    /// Read a raw key.
    Get {
        #[cfg_attr(test, proptest(strategy = "crate::arb::bytes()"))]
        key: Bytes,
    },
    /// Read several raw keys of one range.
    BatchGet {
        #[cfg_attr(test, proptest(strategy = "crate::arb::bytes_vec()"))]
        keys: Vec<Bytes>,
    },
    /// Write a raw key, optionally conditionally, optionally returning the old value.
    Put {
        #[cfg_attr(test, proptest(strategy = "crate::arb::bytes()"))]
        key: Bytes,
        #[cfg_attr(test, proptest(strategy = "crate::arb::bytes()"))]
        value: Bytes,
        expiry: Expiry,
        cond: Cond,
        return_old: bool,
    },
    /// Delete a raw key.
    Delete {
        #[cfg_attr(test, proptest(strategy = "crate::arb::bytes()"))]
        key: Bytes,
    },
    /// Apply several writes atomically (all keys in the range).
    BatchWrite {
        #[cfg_attr(test, proptest(strategy = "crate::arb::small_vec()"))]
        ops: Vec<WriteOp>,
    },
    /// Scan `[start, end)` (end empty: to the range's end), at most `limit` entries.
    Scan {
        #[cfg_attr(test, proptest(strategy = "crate::arb::bytes()"))]
        start: Bytes,
        #[cfg_attr(test, proptest(strategy = "crate::arb::bytes()"))]
        end: Bytes,
        limit: u32,
        reverse: bool,
        keys_only: bool,
    },
    /// Replace the value if it equals `expected` (`None`: the key must be absent).
    CompareAndSet {
        #[cfg_attr(test, proptest(strategy = "crate::arb::bytes()"))]
        key: Bytes,
        #[cfg_attr(test, proptest(strategy = "crate::arb::opt_bytes()"))]
        expected: Option<Bytes>,
        #[cfg_attr(test, proptest(strategy = "crate::arb::opt_bytes()"))]
        new: Option<Bytes>,
        expiry: Expiry,
    },
    /// Add `delta` to a raw key holding a decimal integer (absent = 0).
    Increment {
        #[cfg_attr(test, proptest(strategy = "crate::arb::bytes()"))]
        key: Bytes,
        delta: i64,
    },
    /// Redis `GET`.
    StrGet {
        #[cfg_attr(test, proptest(strategy = "crate::arb::bytes()"))]
        key: Bytes,
    },
    /// Redis `SET` with its options.
    StrSet {
        #[cfg_attr(test, proptest(strategy = "crate::arb::bytes()"))]
        key: Bytes,
        #[cfg_attr(test, proptest(strategy = "crate::arb::bytes()"))]
        value: Bytes,
        expiry: Expiry,
        cond: Cond,
        get_old: bool,
    },
    /// Redis `GETDEL`.
    StrGetDel {
        #[cfg_attr(test, proptest(strategy = "crate::arb::bytes()"))]
        key: Bytes,
    },
    /// Redis `GETEX`.
    StrGetEx {
        #[cfg_attr(test, proptest(strategy = "crate::arb::bytes()"))]
        key: Bytes,
        expiry: Expiry,
    },
    /// Redis `INCRBY` (and `INCR`, `DECR`, `DECRBY`).
    StrIncrBy {
        #[cfg_attr(test, proptest(strategy = "crate::arb::bytes()"))]
        key: Bytes,
        delta: i64,
    },
    /// Redis `INCRBYFLOAT`.
    StrIncrByFloat {
        #[cfg_attr(test, proptest(strategy = "crate::arb::bytes()"))]
        key: Bytes,
        delta: f64,
    },
    /// Redis `APPEND`.
    StrAppend {
        #[cfg_attr(test, proptest(strategy = "crate::arb::bytes()"))]
        key: Bytes,
        #[cfg_attr(test, proptest(strategy = "crate::arb::bytes()"))]
        value: Bytes,
    },
    /// Redis `STRLEN`.
    StrLen {
        #[cfg_attr(test, proptest(strategy = "crate::arb::bytes()"))]
        key: Bytes,
    },
    /// Redis `GETRANGE`.
    StrGetRange {
        #[cfg_attr(test, proptest(strategy = "crate::arb::bytes()"))]
        key: Bytes,
        start: i64,
        end: i64,
    },
    /// Redis `SETRANGE`.
    StrSetRange {
        #[cfg_attr(test, proptest(strategy = "crate::arb::bytes()"))]
        key: Bytes,
        offset: u64,
        #[cfg_attr(test, proptest(strategy = "crate::arb::bytes()"))]
        value: Bytes,
    },
    /// Redis `DEL`/`UNLINK` of one key (any type; a hash is dropped in O(1) by version bump).
    KeyDel {
        #[cfg_attr(test, proptest(strategy = "crate::arb::bytes()"))]
        key: Bytes,
    },
    /// Redis `EXISTS` of one key.
    KeyExists {
        #[cfg_attr(test, proptest(strategy = "crate::arb::bytes()"))]
        key: Bytes,
    },
    /// Redis `PEXPIREAT` (the other `EXPIRE` forms are converted by the proxy).
    KeyExpire {
        #[cfg_attr(test, proptest(strategy = "crate::arb::bytes()"))]
        key: Bytes,
        at_ms: u64,
        cond: ExpireCond,
    },
    /// Redis `PERSIST`.
    KeyPersist {
        #[cfg_attr(test, proptest(strategy = "crate::arb::bytes()"))]
        key: Bytes,
    },
    /// Redis `PTTL`/`TTL`/`PEXPIRETIME`.
    KeyTtl {
        #[cfg_attr(test, proptest(strategy = "crate::arb::bytes()"))]
        key: Bytes,
    },
    /// Redis `TYPE`.
    KeyType {
        #[cfg_attr(test, proptest(strategy = "crate::arb::bytes()"))]
        key: Bytes,
    },
    /// Redis `OBJECT ENCODING` / `MEMORY USAGE`: what a key holds and how large it is,
    /// examining at most `sample` elements (0: all).
    KeyObject {
        #[cfg_attr(test, proptest(strategy = "crate::arb::bytes()"))]
        key: Bytes,
        sample: u32,
    },
    /// Redis `RENAME` (`nx`: `RENAMENX`) of `key` to `dst` (both in the range).
    KeyRename {
        #[cfg_attr(test, proptest(strategy = "crate::arb::bytes()"))]
        key: Bytes,
        #[cfg_attr(test, proptest(strategy = "crate::arb::bytes()"))]
        dst: Bytes,
        nx: bool,
    },
    /// Redis `COPY` of `key` to `dst` (both in the range).
    KeyCopy {
        #[cfg_attr(test, proptest(strategy = "crate::arb::bytes()"))]
        key: Bytes,
        #[cfg_attr(test, proptest(strategy = "crate::arb::bytes()"))]
        dst: Bytes,
        replace: bool,
    },
    /// One step of Redis `SCAN` within the range: user keys after `cursor`.
    KeyScan {
        #[cfg_attr(test, proptest(strategy = "crate::arb::bytes()"))]
        cursor: Bytes,
        count: u32,
        type_filter: Option<KeyType>,
    },
    /// Redis `HSET`/`HMSET` (`only_new`: `HSETNX`).
    HSet {
        #[cfg_attr(test, proptest(strategy = "crate::arb::bytes()"))]
        key: Bytes,
        #[cfg_attr(test, proptest(strategy = "crate::arb::pairs()"))]
        pairs: Vec<(Bytes, Bytes)>,
        only_new: bool,
    },
    /// Redis `HGET`.
    HGet {
        #[cfg_attr(test, proptest(strategy = "crate::arb::bytes()"))]
        key: Bytes,
        #[cfg_attr(test, proptest(strategy = "crate::arb::bytes()"))]
        field: Bytes,
    },
    /// Redis `HMGET`.
    HMGet {
        #[cfg_attr(test, proptest(strategy = "crate::arb::bytes()"))]
        key: Bytes,
        #[cfg_attr(test, proptest(strategy = "crate::arb::bytes_vec()"))]
        fields: Vec<Bytes>,
    },
    /// Redis `HDEL`.
    HDel {
        #[cfg_attr(test, proptest(strategy = "crate::arb::bytes()"))]
        key: Bytes,
        #[cfg_attr(test, proptest(strategy = "crate::arb::bytes_vec()"))]
        fields: Vec<Bytes>,
    },
    /// Redis `HEXISTS`.
    HExists {
        #[cfg_attr(test, proptest(strategy = "crate::arb::bytes()"))]
        key: Bytes,
        #[cfg_attr(test, proptest(strategy = "crate::arb::bytes()"))]
        field: Bytes,
    },
    /// Redis `HLEN`.
    HLen {
        #[cfg_attr(test, proptest(strategy = "crate::arb::bytes()"))]
        key: Bytes,
    },
    /// Redis `HGETALL` (also `HKEYS`, `HVALS`).
    HGetAll {
        #[cfg_attr(test, proptest(strategy = "crate::arb::bytes()"))]
        key: Bytes,
    },
    /// Redis `HINCRBY`.
    HIncrBy {
        #[cfg_attr(test, proptest(strategy = "crate::arb::bytes()"))]
        key: Bytes,
        #[cfg_attr(test, proptest(strategy = "crate::arb::bytes()"))]
        field: Bytes,
        delta: i64,
    },
    /// Redis `HINCRBYFLOAT`.
    HIncrByFloat {
        #[cfg_attr(test, proptest(strategy = "crate::arb::bytes()"))]
        key: Bytes,
        #[cfg_attr(test, proptest(strategy = "crate::arb::bytes()"))]
        field: Bytes,
        delta: f64,
    },
    /// Redis `HSTRLEN`.
    HStrLen {
        #[cfg_attr(test, proptest(strategy = "crate::arb::bytes()"))]
        key: Bytes,
        #[cfg_attr(test, proptest(strategy = "crate::arb::bytes()"))]
        field: Bytes,
    },
    /// One step of Redis `HSCAN`: fields after `cursor`.
    HScan {
        #[cfg_attr(test, proptest(strategy = "crate::arb::bytes()"))]
        key: Bytes,
        #[cfg_attr(test, proptest(strategy = "crate::arb::bytes()"))]
        cursor: Bytes,
        count: u32,
    },
    /// Redis `HRANDFIELD` (`count` none: one field), chosen with `seed`.
    HRandField {
        #[cfg_attr(test, proptest(strategy = "crate::arb::bytes()"))]
        key: Bytes,
        count: Option<i64>,
        with_values: bool,
        seed: u64,
    },
    /// Redis `FLUSHALL`/`FLUSHDB` on this range: delete every key of the range (raw keys and
    /// Redis keys) at apply time, in the one Raft entry.
    RangeFlush {},
    /// Redis `MULTI`/`EXEC`: apply `ops` in order in one Raft entry (every key in the range),
    /// unless a watched key's digest differs from the one its `WATCH` read. Operations do not
    /// nest: a `Multi` inside `ops` is refused when decoded.
    Multi {
        #[cfg_attr(test, proptest(strategy = "crate::message::kv::arb::watches()"))]
        watches: Vec<Watch>,
        #[cfg_attr(test, proptest(strategy = "crate::message::kv::arb::leaf_ops()"))]
        ops: Vec<KvOp>,
    },
    /// Redis `WATCH` of one key: a digest of its live state (type, value, fields, expiry).
    KeyDigest {
        #[cfg_attr(test, proptest(strategy = "crate::arb::bytes()"))]
        key: Bytes,
    },
    /// `op` in Redis database `db` (`SELECT`): every Redis key of `op` (and a `Multi`'s
    /// watches) is in that database. An operation not wrapped runs in database 0, so the
    /// requests of database 0 are byte-identical to the previous release's. Does not nest:
    /// an `InDb` inside `op` is refused when decoded.
    InDb {
        db: Db,
        #[cfg_attr(test, proptest(strategy = "crate::message::kv::arb::boxed_leaf_op()"))]
        op: Box<KvOp>,
    },
    /// Redis `FLUSHDB` on this range: delete every Redis key of the operation's database.
    DbFlush {},
    /// Redis `MOVE key db` (`remove`) and `COPY key dst DB db [REPLACE]`: write the key at
    /// `dst` in database `dst_db` unless a key is there (and not `replace`); `remove` deletes
    /// the source. Both keys must be in the range.
    KeyCopyDb {
        #[cfg_attr(test, proptest(strategy = "crate::arb::bytes()"))]
        key: Bytes,
        #[cfg_attr(test, proptest(strategy = "crate::arb::bytes()"))]
        dst: Bytes,
        dst_db: Db,
        replace: bool,
        remove: bool,
    },
    /// A list command ([`ListOp`]).
    List { op: ListOp },
    /// A set command ([`SetOp`]).
    Set { op: SetOp },
    /// A sorted-set command ([`ZSetOp`]).
    ZSet { op: ZSetOp },
    /// A bitmap command on a string ([`BitOp`]).
    Bits { op: BitOp },
    /// A HyperLogLog command ([`HllOp`]).
    Hll { op: HllOp },
    /// `EVAL`, `FCALL` and friends: a Lua script run by the range's state machine, atomically,
    /// with `keys` as `KEYS` and `args` as `ARGV` (`docs/scripting.md`). `anchor` is the key
    /// that routes it (the first of `keys`, or for a script without keys the first key it
    /// touches); the script may touch its `keys` and any key of the anchor's hash slot, all
    /// in the range. A read-only script (`EVAL_RO`, the `no-writes` flag) may not write and is
    /// served without a Raft round trip.
    Eval {
        #[cfg_attr(test, proptest(strategy = "crate::arb::bytes()"))]
        anchor: Bytes,
        #[cfg_attr(test, proptest(strategy = "crate::arb::bytes()"))]
        body: Bytes,
        #[cfg_attr(test, proptest(strategy = "crate::arb::bytes_vec()"))]
        keys: Vec<Bytes>,
        #[cfg_attr(test, proptest(strategy = "crate::arb::bytes_vec()"))]
        args: Vec<Bytes>,
        read_only: bool,
        /// `FCALL`: `body` is a function library's code and `call.function` the function to
        /// call; `call.user`: the ACL rules the script's calls are checked against.
        call: crate::message::script::ScriptCall,
    },
    /// Redis `DBSIZE` and `INFO keyspace` on this range: the number of keys and of keys
    /// with an expiry of every database in the range ([`OpResult::DbStats`]), kept by the
    /// range's state machine as it applies (O(databases), no scan). A read: answered from
    /// the leader's lease or through ReadIndex like any other. An `InDb` around it changes
    /// nothing (every database is answered).
    DbStats {},
    /// The keys this range deleted because they expired, after position `after` of its
    /// expiry log ([`OpResult::Expired`]; version 7): what a proxy publishes as `expired`
    /// keyspace events and client-side caching invalidations. With `after` 0 (a poller's
    /// first question), the keys deleted by sweeps proposed at or after `since_ms` (Unix
    /// ms): a poller starts from when it was wanted, not from the log's past. A read of the
    /// range's state on the leader, like `DbStats`.
    ExpiredSince {
        /// The position last seen (0: none).
        after: u64,
        /// With `after` 0: the oldest sweep time to report.
        since_ms: u64,
    },
}

/// A key a [`KvOp::Multi`] depends on: the digest `WATCH` read ([`OpResult::Digest`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct Watch {
    /// The user key.
    #[cfg_attr(test, proptest(strategy = "crate::arb::bytes()"))]
    pub key: Bytes,
    /// Its digest when watched (0: absent).
    pub digest: u64,
}
wire_struct!(Watch { key: key, digest });

/// The tag of [`KvOp::Multi`] and of [`OpResult::Multi`].
const MULTI_TAG: u8 = 65;
/// The tag of [`KvOp::InDb`].
const IN_DB_TAG: u8 = 67;

/// Decodes the operation of a [`KvOp::InDb`], refusing a nested `InDb` before decoding it.
fn in_db_op(r: &mut Reader) -> Result<Box<KvOp>, DecodeError> {
    if r.peek(1) == Some(&[IN_DB_TAG]) {
        return Err(DecodeError::UnknownTag {
            what: "nested database",
            tag: IN_DB_TAG.into(),
        });
    }
    KvOp::decode(r).map(Box::new)
}

/// Decodes the operations of a [`KvOp::Multi`], refusing a nested `Multi` before decoding it
/// (nesting would let a forged frame recurse without bound).
fn sub_ops(r: &mut Reader) -> Result<Vec<KvOp>, DecodeError> {
    let n = r.count("multi ops", 1)?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        // `InDb | db | op`: the wrapped operation may not be a `Multi` either.
        if r.peek(1) == Some(&[MULTI_TAG])
            || (r.peek(1) == Some(&[IN_DB_TAG]) && r.peek(3).is_some_and(|p| p[2] == MULTI_TAG))
        {
            return Err(nested());
        }
        out.push(KvOp::decode(r)?);
    }
    Ok(out)
}

/// Decodes the results of a [`OpResult::Multi`], refusing a nested `Multi`.
fn sub_results(r: &mut Reader) -> Result<Vec<KvResponse>, DecodeError> {
    let n = r.count("multi results", 1)?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        if r.peek(2) == Some(&[0, MULTI_TAG]) {
            return Err(nested());
        }
        out.push(KvResponse::decode(r)?);
    }
    Ok(out)
}

fn nested() -> DecodeError {
    DecodeError::UnknownTag {
        what: "nested multi",
        tag: MULTI_TAG.into(),
    }
}

wire_enum!(KvOp: u8, "kv op" {
    0 => Get { key: key },
    1 => BatchGet { keys: keys },
    2 => Put { key: key, value, expiry, cond, return_old },
    3 => Delete { key: key },
    4 => BatchWrite { ops },
    5 => Scan { start: key, end: key, limit, reverse, keys_only },
    6 => CompareAndSet { key: key, expected, new, expiry },
    7 => Increment { key: key, delta },
    16 => StrGet { key: key },
    17 => StrSet { key: key, value, expiry, cond, get_old },
    18 => StrGetDel { key: key },
    19 => StrGetEx { key: key, expiry },
    20 => StrIncrBy { key: key, delta },
    21 => StrIncrByFloat { key: key, delta },
    22 => StrAppend { key: key, value },
    23 => StrLen { key: key },
    24 => StrGetRange { key: key, start, end },
    25 => StrSetRange { key: key, offset, value },
    32 => KeyDel { key: key },
    33 => KeyExists { key: key },
    34 => KeyExpire { key: key, at_ms, cond },
    35 => KeyPersist { key: key },
    36 => KeyTtl { key: key },
    37 => KeyType { key: key },
    38 => KeyScan { cursor: key, count, type_filter },
    39 => KeyObject { key: key, sample },
    40 => KeyRename { key: key, dst: key, nx },
    41 => KeyCopy { key: key, dst: key, replace },
    48 => HSet { key: key, pairs, only_new },
    49 => HGet { key: key, field },
    50 => HMGet { key: key, fields },
    51 => HDel { key: key, fields },
    52 => HExists { key: key, field },
    53 => HLen { key: key },
    54 => HGetAll { key: key },
    55 => HIncrBy { key: key, field, delta },
    56 => HIncrByFloat { key: key, field, delta },
    57 => HStrLen { key: key, field },
    58 => HScan { key: key, cursor, count },
    59 => HRandField { key: key, count, with_values, seed },
    64 => RangeFlush {},
    65 => Multi { watches, ops: sub_ops },
    66 => KeyDigest { key: key },
    67 => InDb { db, op: in_db_op },
    68 => DbFlush {},
    69 => KeyCopyDb { key: key, dst: key, dst_db, replace, remove },
    80 => List { op },
    81 => Set { op },
    82 => ZSet { op },
    83 => Bits { op },
    84 => Hll { op },
    85 => Eval { anchor: key, body, keys: keys, args, read_only, call },
    86 => DbStats {},
    87 => ExpiredSince { after, since_ms },
});

/// Which part of the data model an operation acts on: the apply code dispatches by it, and
/// the cold-entry planner asks it which entries an operation reads. Every [`KvOp`] variant
/// belongs to exactly one family ([`KvOp::family`] has no wildcard arm), so a new operation
/// must be placed before it compiles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpFamily {
    /// Raw keys without a Redis type (get, put, delete, batches, scans, CAS, increment).
    Raw,
    /// Redis strings (the value lives in the key's metadata entry).
    String,
    /// Whole Redis keys of any type (DEL, EXISTS, EXPIRE, TTL, TYPE, SCAN, RENAME, COPY, ...).
    Key,
    /// Redis hashes.
    Hash,
    /// Redis lists ([`KvOp::List`]).
    List,
    /// Redis sets ([`KvOp::Set`]).
    Set,
    /// Redis sorted sets ([`KvOp::ZSet`]).
    ZSet,
    /// Bitmap operations on strings ([`KvOp::Bits`]).
    Bits,
    /// HyperLogLog operations on strings ([`KvOp::Hll`]).
    Hll,
    /// Operations around others or over the whole range: flushes, `Multi`, `Eval`, `InDb`
    /// and the WATCH digest.
    Control,
}

impl KvOp {
    /// The family of this operation ([`OpFamily`]).
    pub fn family(&self) -> OpFamily {
        match self {
            KvOp::Get { .. }
            | KvOp::BatchGet { .. }
            | KvOp::Put { .. }
            | KvOp::Delete { .. }
            | KvOp::BatchWrite { .. }
            | KvOp::Scan { .. }
            | KvOp::CompareAndSet { .. }
            | KvOp::Increment { .. } => OpFamily::Raw,
            KvOp::StrGet { .. }
            | KvOp::StrSet { .. }
            | KvOp::StrGetDel { .. }
            | KvOp::StrGetEx { .. }
            | KvOp::StrIncrBy { .. }
            | KvOp::StrIncrByFloat { .. }
            | KvOp::StrAppend { .. }
            | KvOp::StrLen { .. }
            | KvOp::StrGetRange { .. }
            | KvOp::StrSetRange { .. } => OpFamily::String,
            KvOp::KeyDel { .. }
            | KvOp::KeyExists { .. }
            | KvOp::KeyExpire { .. }
            | KvOp::KeyPersist { .. }
            | KvOp::KeyTtl { .. }
            | KvOp::KeyType { .. }
            | KvOp::KeyScan { .. }
            | KvOp::KeyObject { .. }
            | KvOp::KeyRename { .. }
            | KvOp::KeyCopy { .. }
            | KvOp::KeyCopyDb { .. } => OpFamily::Key,
            KvOp::HSet { .. }
            | KvOp::HGet { .. }
            | KvOp::HMGet { .. }
            | KvOp::HDel { .. }
            | KvOp::HExists { .. }
            | KvOp::HLen { .. }
            | KvOp::HGetAll { .. }
            | KvOp::HIncrBy { .. }
            | KvOp::HIncrByFloat { .. }
            | KvOp::HStrLen { .. }
            | KvOp::HScan { .. }
            | KvOp::HRandField { .. } => OpFamily::Hash,
            KvOp::List { .. } => OpFamily::List,
            KvOp::Set { .. } => OpFamily::Set,
            KvOp::ZSet { .. } => OpFamily::ZSet,
            KvOp::Bits { .. } => OpFamily::Bits,
            KvOp::Hll { .. } => OpFamily::Hll,
            KvOp::RangeFlush {}
            | KvOp::DbFlush {}
            | KvOp::Multi { .. }
            | KvOp::Eval { .. }
            | KvOp::KeyDigest { .. }
            | KvOp::DbStats {}
            | KvOp::ExpiredSince { .. }
            | KvOp::InDb { .. } => OpFamily::Control,
        }
    }

    /// The user key of a Redis operation (`None` for raw and range-wide operations).
    pub fn redis_key(&self) -> Option<&Bytes> {
        match self {
            KvOp::StrGet { key }
            | KvOp::StrSet { key, .. }
            | KvOp::StrGetDel { key }
            | KvOp::StrGetEx { key, .. }
            | KvOp::StrIncrBy { key, .. }
            | KvOp::StrIncrByFloat { key, .. }
            | KvOp::StrAppend { key, .. }
            | KvOp::StrLen { key }
            | KvOp::StrGetRange { key, .. }
            | KvOp::StrSetRange { key, .. }
            | KvOp::KeyDel { key }
            | KvOp::KeyExists { key }
            | KvOp::KeyExpire { key, .. }
            | KvOp::KeyPersist { key }
            | KvOp::KeyTtl { key }
            | KvOp::KeyType { key }
            | KvOp::KeyObject { key, .. }
            | KvOp::KeyRename { key, .. }
            | KvOp::KeyCopy { key, .. }
            | KvOp::KeyDigest { key }
            | KvOp::HSet { key, .. }
            | KvOp::HGet { key, .. }
            | KvOp::HMGet { key, .. }
            | KvOp::HDel { key, .. }
            | KvOp::HExists { key, .. }
            | KvOp::HLen { key }
            | KvOp::HGetAll { key }
            | KvOp::HIncrBy { key, .. }
            | KvOp::HIncrByFloat { key, .. }
            | KvOp::HStrLen { key, .. }
            | KvOp::HScan { key, .. }
            | KvOp::HRandField { key, .. } => Some(key),
            KvOp::KeyCopyDb { key, .. } => Some(key),
            KvOp::List { op } => Some(op.key()),
            KvOp::Set { op } => Some(op.key()),
            KvOp::ZSet { op } => Some(op.key()),
            KvOp::Bits { op } => Some(op.key()),
            KvOp::Hll { op } => Some(op.key()),
            KvOp::Eval { anchor, .. } => Some(anchor),
            KvOp::InDb { op, .. } => op.redis_key(),
            _ => None,
        }
    }

    /// The database `op` runs in (`outer`: the database of the operation around it, 0 at
    /// the top) and the operation itself, unwrapped from [`KvOp::InDb`].
    pub fn in_db(&self, outer: Db) -> (Db, &KvOp) {
        match self {
            KvOp::InDb { db, op } => (*db, op),
            other => (outer, other),
        }
    }

    /// `op` in database `db`: wrapped in [`KvOp::InDb`] unless `db` is 0 or it already
    /// names its database.
    pub fn into_db(self, db: Db) -> KvOp {
        if db == Db::ZERO || matches!(self, KvOp::InDb { .. }) {
            self
        } else {
            KvOp::InDb {
                db,
                op: Box::new(self),
            }
        }
    }

    /// Every Redis key of the operation with its database (`outer`: the database of the
    /// operation around it): the first key, then the others (a `KeyCopyDb` destination is
    /// in its own database).
    pub fn keys_in_db(&self, outer: Db) -> Vec<(Db, &Bytes)> {
        let (db, op) = self.in_db(outer);
        let mut out: Vec<(Db, &Bytes)> = op.redis_key().map(|k| (db, k)).into_iter().collect();
        match op {
            KvOp::KeyCopyDb { dst, dst_db, .. } => out.push((*dst_db, dst)),
            _ => out.extend(op.other_redis_keys().iter().map(|k| (db, k))),
        }
        out
    }

    /// The user keys of a Redis operation besides [`Self::redis_key`] (a move's destination,
    /// the sources of a STORE form); all must be in the range of the first.
    pub fn other_redis_keys(&self) -> &[Bytes] {
        match self {
            KvOp::List { op } => op.other_keys(),
            KvOp::Set { op } => op.other_keys(),
            KvOp::ZSet { op } => op.other_keys(),
            KvOp::Hll { op } => op.other_keys(),
            KvOp::Eval { keys, .. } => keys,
            KvOp::KeyRename { dst, .. } | KvOp::KeyCopy { dst, .. } => std::slice::from_ref(dst),
            KvOp::InDb { op, .. } => op.other_redis_keys(),
            _ => &[],
        }
    }

    /// The user key under which a range remembers this write's id when it comes in a
    /// [`KvWrite`], so that a second copy applies nothing (`None`: the range does not
    /// deduplicate it). Redis writes of one key, and a [`KvOp::Multi`] that writes (by its
    /// first written key; its keys share one range); not raw operations, reads or
    /// `RangeFlush`. A client may re-send only these when a copy's outcome is unknown.
    pub fn dedup_key(&self) -> Option<&Bytes> {
        match self {
            KvOp::StrSet { key, .. }
            | KvOp::StrGetDel { key }
            | KvOp::StrGetEx { key, .. }
            | KvOp::StrIncrBy { key, .. }
            | KvOp::StrIncrByFloat { key, .. }
            | KvOp::StrAppend { key, .. }
            | KvOp::StrSetRange { key, .. }
            | KvOp::KeyDel { key }
            | KvOp::KeyExpire { key, .. }
            | KvOp::KeyPersist { key }
            | KvOp::HSet { key, .. }
            | KvOp::HDel { key, .. }
            | KvOp::HIncrBy { key, .. }
            | KvOp::HIncrByFloat { key, .. }
            | KvOp::KeyRename { key, .. }
            | KvOp::KeyCopy { key, .. }
            | KvOp::KeyCopyDb { key, .. } => Some(key),
            KvOp::InDb { op, .. } => op.dedup_key(),
            KvOp::List { .. }
            | KvOp::Set { .. }
            | KvOp::ZSet { .. }
            | KvOp::Bits { .. }
            | KvOp::Hll { .. }
            | KvOp::Eval { .. }
                if self.is_write() =>
            {
                self.redis_key()
            }
            KvOp::Multi { ops, .. } => ops
                .iter()
                .filter(|o| o.is_write())
                .find_map(KvOp::redis_key),
            _ => None,
        }
    }

    /// The key a range records this write's id under, with its database (`outer`: the
    /// database of the operation around it, 0 at the top): [`Self::dedup_key`] in the
    /// database it is written in.
    pub fn dedup_target(&self, outer: Db) -> Option<(Db, &Bytes)> {
        match self {
            KvOp::InDb { db, op } => op.dedup_target(*db),
            KvOp::Multi { ops, .. } => ops.iter().filter(|o| o.is_write()).find_map(|o| {
                let (db, op) = o.in_db(outer);
                op.redis_key().map(|k| (db, k))
            }),
            _ => self.dedup_key().map(|k| (outer, k)),
        }
    }

    /// Whether the operation can only remove data or change expiry: a read, or a write
    /// that frees (DEL, HDEL, pops, removes, EXPIRE, PERSIST, flushes). A shard over its
    /// memory line or its disk limit still takes these; the proxy packs them only with their
    /// own kind (`proxy::pack`).
    pub fn only_frees(&self) -> bool {
        match self {
            KvOp::Delete { .. }
            | KvOp::KeyDel { .. }
            | KvOp::StrGetDel { .. }
            | KvOp::HDel { .. }
            | KvOp::KeyExpire { .. }
            | KvOp::KeyPersist { .. }
            | KvOp::RangeFlush {}
            | KvOp::DbFlush {} => true,
            KvOp::InDb { op, .. } => op.only_frees(),
            KvOp::Multi { ops, .. } => ops.iter().all(KvOp::only_frees),
            KvOp::List { op } => matches!(
                op,
                ListOp::Pop { .. } | ListOp::Rem { .. } | ListOp::MPop { .. }
            ),
            KvOp::Set { op } => matches!(op, SetOp::Rem { .. } | SetOp::Pop { .. }),
            KvOp::ZSet { op } => matches!(op, ZSetOp::Rem { .. } | ZSetOp::Pop { .. }),
            _ => !self.is_write(),
        }
    }

    /// Whether the operation changes state (goes through Raft) or only reads.
    pub fn is_write(&self) -> bool {
        match self {
            Self::Multi { ops, .. } => return ops.iter().any(Self::is_write),
            Self::List { op } => return op.is_write(),
            Self::Set { op } => return op.is_write(),
            Self::ZSet { op } => return op.is_write(),
            Self::Bits { op } => return op.is_write(),
            Self::Hll { op } => return op.is_write(),
            Self::Eval { read_only, .. } => return !read_only,
            Self::InDb { op, .. } => return op.is_write(),
            _ => {}
        }
        !matches!(
            self,
            Self::Get { .. }
                | Self::BatchGet { .. }
                | Self::Scan { .. }
                | Self::StrGet { .. }
                | Self::StrLen { .. }
                | Self::StrGetRange { .. }
                | Self::KeyExists { .. }
                | Self::KeyTtl { .. }
                | Self::KeyType { .. }
                | Self::KeyObject { .. }
                | Self::KeyScan { .. }
                | Self::HGet { .. }
                | Self::HMGet { .. }
                | Self::HExists { .. }
                | Self::HLen { .. }
                | Self::HGetAll { .. }
                | Self::HStrLen { .. }
                | Self::HScan { .. }
                | Self::HRandField { .. }
                | Self::KeyDigest { .. }
                | Self::DbStats {}
                | Self::ExpiredSince { .. }
        )
    }
}

/// A request to a range: where it was routed, and what to do.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct KvRequest {
    /// The range and epoch the sender routed with.
    pub ctx: RouteCtx,
    /// The operation.
    pub op: KvOp,
}
wire_struct!(KvRequest { ctx, op });

/// How long a range remembers a write id, in milliseconds of entry time (the proposing
/// leader's clock): a copy of a [`KvWrite`] proposed within this of the first applies nothing.
pub const DEDUP_WINDOW_MS: u64 = 10_000;

/// A write carrying its request id: the range applies it once per `(client, seq)` within
/// its deduplication window, so a replayed or retried copy changes nothing and gets the
/// first copy's answer (a `KvResponse`). A retry reuses both numbers.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct KvWrite {
    /// The client: a proxy instance picks a random one at start.
    pub client: u64,
    /// The client's request number.
    pub seq: u64,
    /// The request.
    pub request: KvRequest,
}
wire_struct!(KvWrite {
    client,
    seq,
    request
});

/// The time-to-live state of a key (`PTTL`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum TtlState {
    /// The key does not exist (`-2`).
    NoKey {},
    /// The key has no expiry (`-1`).
    Persistent {},
    /// The key expires at this Unix time in milliseconds.
    ExpiresAt {
        /// Unix milliseconds.
        at_ms: u64,
    },
}
wire_enum!(TtlState: u8, "ttl state" { 0 => NoKey {}, 1 => Persistent {}, 2 => ExpiresAt { at_ms } });

/// The result of a [`KvOp`].
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[allow(missing_docs)] // described in docs/format/wire.md §4.2
pub enum OpResult {
    /// Nothing to return.
    Unit {},
    /// A yes/no answer.
    Bool { value: bool },
    /// An integer.
    Int { value: i64 },
    /// A value, or none when the key is absent.
    Value {
        #[cfg_attr(test, proptest(strategy = "crate::arb::opt_bytes()"))]
        value: Option<Bytes>,
    },
    /// One value per requested key.
    Values {
        #[cfg_attr(test, proptest(strategy = "crate::arb::opt_bytes_vec()"))]
        values: Vec<Option<Bytes>>,
    },
    /// Key/value (or field/value) pairs.
    Pairs {
        #[cfg_attr(test, proptest(strategy = "crate::arb::pairs()"))]
        pairs: Vec<(Bytes, Bytes)>,
    },
    /// Pairs of a scan, and the key to resume after (none: the scan reached its end).
    Scan {
        #[cfg_attr(test, proptest(strategy = "crate::arb::pairs()"))]
        pairs: Vec<(Bytes, Bytes)>,
        #[cfg_attr(test, proptest(strategy = "crate::arb::opt_bytes()"))]
        next: Option<Bytes>,
    },
    /// Whether a conditional write happened.
    Written { written: bool },
    /// Whether a compare-and-set swapped, and the value now current.
    Cas {
        swapped: bool,
        #[cfg_attr(test, proptest(strategy = "crate::arb::opt_bytes()"))]
        current: Option<Bytes>,
    },
    /// The expiry state of a key.
    Ttl { ttl: TtlState },
    /// The type of a key.
    Type { key_type: KeyType },
    /// User keys of a `SCAN` step and the cursor to resume after (none: done).
    KeyScan {
        #[cfg_attr(test, proptest(strategy = "crate::arb::bytes_vec()"))]
        keys: Vec<Bytes>,
        #[cfg_attr(test, proptest(strategy = "crate::arb::opt_bytes()"))]
        next: Option<Bytes>,
    },
    /// The result of each operation of a [`KvOp::Multi`], in order (an error is one element).
    Multi {
        #[cfg_attr(test, proptest(strategy = "crate::message::kv::arb::leaf_responses()"))]
        results: Vec<KvResponse>,
    },
    /// A [`KvOp::Multi`] not applied because a watched key changed.
    Aborted {},
    /// The digest of a key ([`KvOp::KeyDigest`]; 0: absent).
    Digest { digest: u64 },
    /// Members with their scores (sorted sets), in reply order.
    Scored {
        #[cfg_attr(test, proptest(strategy = "crate::arb::scored()"))]
        items: Vec<(Bytes, f64)>,
    },
    /// Optional doubles (`ZSCORE`, `ZMSCORE`).
    Floats {
        #[cfg_attr(test, proptest(strategy = "crate::arb::floats()"))]
        values: Vec<Option<f64>>,
    },
    /// Integers (`SMISMEMBER`, `LPOS ... COUNT`).
    Ints {
        #[cfg_attr(test, proptest(strategy = "crate::arb::ints()"))]
        values: Vec<i64>,
    },
    /// Plain values, in reply order (`LRANGE`, `SMEMBERS`, pops).
    Bulks {
        #[cfg_attr(test, proptest(strategy = "crate::arb::bytes_vec()"))]
        values: Vec<Bytes>,
    },
    /// Optional integers (`BITFIELD`: nil where an overflow was refused).
    OptInts {
        #[cfg_attr(test, proptest(strategy = "crate::arb::opt_ints()"))]
        values: Vec<Option<i64>>,
    },
    /// The reply of a script ([`KvOp::Eval`]).
    Script {
        #[cfg_attr(test, proptest(strategy = "crate::message::script::arb_value()"))]
        value: ScriptValue,
    },
    /// What a key holds ([`KvOp::KeyObject`]): enough for the proxy to name Redis's encoding
    /// under its own thresholds and to estimate the key's memory.
    Object { object: ObjectInfo },
    /// The key counts of the range's databases ([`KvOp::DbStats`]): the range's bounds when
    /// it answered (`end` empty: unbounded), so that a caller summing over ranges sees a split
    /// or a merge that happened meanwhile, and one element per database holding at least one
    /// key in the range, by database.
    DbStats {
        #[cfg_attr(test, proptest(strategy = "crate::arb::bytes()"))]
        start: Bytes,
        #[cfg_attr(test, proptest(strategy = "crate::arb::bytes()"))]
        end: Bytes,
        #[cfg_attr(test, proptest(strategy = "crate::message::kv::arb::db_stats()"))]
        dbs: Vec<DbStat>,
    },
    /// The keys a range's expiry deleted ([`KvOp::ExpiredSince`]; version 7), oldest first,
    /// and the position of the last one (of the log's head when there is none): the next
    /// poll's `after`.
    Expired {
        next: u64,
        #[cfg_attr(test, proptest(strategy = "crate::arb::small_vec()"))]
        keys: Vec<ExpiredKey>,
    },
}

/// A key deleted because it expired ([`OpResult::Expired`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct ExpiredKey {
    /// Its database.
    pub db: Db,
    /// The user key.
    #[cfg_attr(test, proptest(strategy = "crate::arb::bytes()"))]
    pub key: Bytes,
}
wire_struct!(ExpiredKey { db, key });

/// The keys of one database in one range ([`OpResult::DbStats`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct DbStat {
    /// The database.
    pub db: Db,
    /// Its keys in the range (`DBSIZE`; keys whose expiry passed count until they are
    /// deleted, as in Redis).
    pub keys: u64,
    /// Those of them with an expiry.
    pub expires: u64,
    /// The mean expiry time of those keys, Unix milliseconds (0 when `expires` is 0): with
    /// `expires`, what `INFO keyspace`'s `avg_ttl` is computed from over ranges.
    pub mean_expire_at_ms: u64,
}
wire_struct!(DbStat {
    db,
    keys,
    expires,
    mean_expire_at_ms
});

/// The shape of a key ([`OpResult::Object`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct ObjectInfo {
    /// Its type (`None`: absent).
    pub key_type: KeyType,
    /// Elements (a string: 1).
    pub count: u64,
    /// Elements examined (all of them when equal to `count`).
    pub sampled: u64,
    /// The longest element examined (a hash: field or value; a sorted set: member; a
    /// string: the value).
    pub max_element_bytes: u64,
    /// Whether every element examined is an integer as Redis's `string2ll` takes it.
    pub all_integers: bool,
    /// Engine bytes of the entries examined, metadata included (keys, values and a fixed
    /// per-entry overhead).
    pub bytes: u64,
}
wire_struct!(ObjectInfo {
    key_type,
    count,
    sampled,
    max_element_bytes,
    all_integers,
    bytes
});

wire_enum!(OpResult: u8, "op result" {
    0 => Unit {},
    1 => Bool { value },
    2 => Int { value },
    3 => Value { value },
    4 => Values { values },
    5 => Pairs { pairs },
    6 => Scan { pairs, next },
    7 => Written { written },
    8 => Cas { swapped, current },
    9 => Ttl { ttl },
    10 => Type { key_type },
    11 => KeyScan { keys, next },
    65 => Multi { results: sub_results },
    66 => Aborted {},
    67 => Digest { digest },
    12 => Scored { items },
    13 => Floats { values },
    14 => Ints { values },
    15 => Bulks { values },
    28 => Object { object },
    29 => OptInts { values },
    30 => Script { value },
    31 => DbStats { start: key, end: key, dbs },
    32 => Expired { next, keys },
});

/// The answer to a [`KvRequest`].
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum KvResponse {
    /// The operation ran.
    Ok {
        /// Its result.
        result: OpResult,
    },
    /// The operation was refused or failed.
    Err {
        /// Why.
        error: RpcError,
    },
}
wire_enum!(KvResponse: u8, "kv response" { 0 => Ok { result }, 1 => Err { error } });

impl KvOp {
    /// Checks every key, element and value of this operation against the size limits
    /// (`crate::limits`; `max_value_bytes`: the configured `proto-max-bulk-len`).
    pub fn check_limits(&self, max_value_bytes: usize) -> Result<(), LimitError> {
        let value = |v: &Bytes| check_value(v.len(), max_value_bytes);
        match self {
            KvOp::Get { key }
            | KvOp::Delete { key }
            | KvOp::Increment { key, .. }
            | KvOp::Scan { start: key, .. } => raw_key(key),
            KvOp::BatchGet { keys } => keys.iter().try_for_each(|k| raw_key(k)),
            KvOp::Put { key, value: v, .. } => raw_key(key).and_then(|()| value(v)),
            KvOp::CompareAndSet { key, new, .. } => {
                raw_key(key)?;
                new.as_ref().map_or(Ok(()), value)
            }
            KvOp::BatchWrite { ops } => ops.iter().try_for_each(|w| match w {
                WriteOp::Put { key, value: v, .. } => raw_key(key).and_then(|()| value(v)),
                WriteOp::Delete { key } => raw_key(key),
            }),
            KvOp::StrSet { key, value: v, .. } | KvOp::StrAppend { key, value: v } => {
                user_key(key, 0)?;
                value(v)
            }
            KvOp::StrSetRange {
                key,
                offset,
                value: v,
            } => {
                user_key(key, 0)?;
                let end = usize::try_from(*offset)
                    .ok()
                    .and_then(|o| o.checked_add(v.len()))
                    .unwrap_or(usize::MAX);
                if v.is_empty() {
                    Ok(())
                } else {
                    check_value(end, max_value_bytes)
                }
            }
            KvOp::KeyScan { cursor: key, .. } => check_len(key.len(), MAX_KEY_BYTES),
            KvOp::RangeFlush {}
            | KvOp::DbFlush {}
            | KvOp::DbStats {}
            | KvOp::ExpiredSince { .. } => Ok(()),
            KvOp::KeyRename { key, dst, .. }
            | KvOp::KeyCopy { key, dst, .. }
            | KvOp::KeyCopyDb { key, dst, .. } => {
                user_key(key, 0)?;
                user_key(dst, 0)
            }
            KvOp::List { op } => op.check_limits(max_value_bytes),
            KvOp::Set { op } => op.check_limits(max_value_bytes),
            KvOp::ZSet { op } => op.check_limits(max_value_bytes),
            KvOp::Bits { op } => op.check_limits(max_value_bytes),
            KvOp::Hll { op } => op.check_limits(),
            KvOp::Eval {
                anchor,
                body,
                keys,
                args,
                ..
            } => {
                user_key(anchor, 0)?;
                keys.iter().try_for_each(|k| user_key(k, 0))?;
                value(body)?;
                args.iter().try_for_each(&value)
            }
            // Neither `InDb` nor `Multi` nests (refused when decoded): bounded recursion.
            KvOp::InDb { op, .. } => op.check_limits(max_value_bytes),
            KvOp::Multi { watches, ops } => {
                watches.iter().try_for_each(|w| user_key(&w.key, 0))?;
                ops.iter()
                    .try_for_each(|op| op.check_limits(max_value_bytes))
            }
            KvOp::HSet { key, pairs, .. } => pairs.iter().try_for_each(|(f, v)| {
                user_key(key, f.len())?;
                value(v)
            }),
            KvOp::HIncrBy { key, field, .. } | KvOp::HIncrByFloat { key, field, .. } => {
                user_key(key, field.len())
            }
            KvOp::HScan { key, cursor, .. } => {
                user_key(key, 0)?;
                check_len(cursor.len(), MAX_KEY_BYTES)
            }
            KvOp::StrGet { key }
            | KvOp::StrGetDel { key }
            | KvOp::StrGetEx { key, .. }
            | KvOp::StrIncrBy { key, .. }
            | KvOp::StrIncrByFloat { key, .. }
            | KvOp::StrLen { key }
            | KvOp::StrGetRange { key, .. }
            | KvOp::KeyDel { key }
            | KvOp::KeyExists { key }
            | KvOp::KeyExpire { key, .. }
            | KvOp::KeyPersist { key }
            | KvOp::KeyTtl { key }
            | KvOp::KeyType { key }
            | KvOp::KeyObject { key, .. }
            | KvOp::HGet { key, .. }
            | KvOp::HMGet { key, .. }
            | KvOp::HDel { key, .. }
            | KvOp::HExists { key, .. }
            | KvOp::HLen { key }
            | KvOp::HGetAll { key }
            | KvOp::HStrLen { key, .. }
            | KvOp::HRandField { key, .. }
            | KvOp::KeyDigest { key } => user_key(key, 0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{decode_exact, encode_to_bytes};

    fn get(k: &'static [u8]) -> KvOp {
        KvOp::StrGet {
            key: Bytes::from_static(k),
        }
    }

    #[test]
    fn a_multi_round_trips_and_is_a_write_only_if_one_of_its_ops_is() {
        let reads = KvOp::Multi {
            watches: vec![Watch {
                key: Bytes::from_static(b"w"),
                digest: 7,
            }],
            ops: vec![get(b"a"), KvOp::KeyDigest { key: Bytes::new() }],
        };
        assert!(!reads.is_write());
        assert_eq!(decode_exact::<KvOp>(encode_to_bytes(&reads)), Ok(reads));
        let writes = KvOp::Multi {
            watches: vec![],
            ops: vec![get(b"a"), KvOp::RangeFlush {}],
        };
        assert!(writes.is_write());
    }

    #[test]
    fn a_nested_multi_is_refused_when_decoded() {
        let inner = KvOp::Multi {
            watches: vec![],
            ops: vec![get(b"a")],
        };
        let outer = KvOp::Multi {
            watches: vec![],
            ops: vec![inner],
        };
        assert!(decode_exact::<KvOp>(encode_to_bytes(&outer)).is_err());
        let nested = OpResult::Multi {
            results: vec![KvResponse::Ok {
                result: OpResult::Multi { results: vec![] },
            }],
        };
        assert!(decode_exact::<OpResult>(encode_to_bytes(&nested)).is_err());
        let flat = OpResult::Multi {
            results: vec![KvResponse::Ok {
                result: OpResult::Aborted {},
            }],
        };
        assert_eq!(decode_exact::<OpResult>(encode_to_bytes(&flat)), Ok(flat));
    }
}

/// Strategies for `KvOp`s inside `Multi`/`InDb` (bounded nesting).
#[cfg(test)]
mod arb {
    use proptest::prelude::*;

    use crate::arb::{bytes, opt_bytes};

    pub fn watches() -> impl Strategy<Value = Vec<super::Watch>> {
        prop::collection::vec(
            (bytes(), any::<u64>()).prop_map(|(key, digest)| super::Watch { key, digest }),
            0..3,
        )
    }
    /// The operation of an `InDb` (no `InDb` inside).
    pub fn boxed_leaf_op() -> impl Strategy<Value = Box<super::KvOp>> {
        use super::KvOp;
        prop_oneof![
            bytes().prop_map(|key| KvOp::StrGet { key }),
            Just(KvOp::DbFlush {}),
            leaf_ops().prop_map(|ops| KvOp::Multi {
                watches: vec![],
                ops
            }),
        ]
        .prop_map(Box::new)
    }
    /// Operations of a `Multi` (no nested `Multi`).
    pub fn leaf_ops() -> impl Strategy<Value = Vec<super::KvOp>> {
        use super::KvOp;
        let op = prop_oneof![
            bytes().prop_map(|key| KvOp::StrGet { key }),
            (bytes(), any::<i64>()).prop_map(|(key, delta)| KvOp::StrIncrBy { key, delta }),
            bytes().prop_map(|key| KvOp::KeyDigest { key }),
            Just(KvOp::RangeFlush {}),
            (any::<crate::keyspace::Db>(), bytes()).prop_map(|(db, key)| KvOp::InDb {
                db,
                op: Box::new(KvOp::KeyDel { key })
            }),
        ];
        prop::collection::vec(op, 0..4)
    }
    /// The databases of a `DbStats` result.
    pub fn db_stats() -> impl Strategy<Value = Vec<super::DbStat>> {
        prop::collection::vec(any::<super::DbStat>(), 0..17)
    }
    /// Results of a `Multi` (no nested `Multi`).
    pub fn leaf_responses() -> impl Strategy<Value = Vec<super::KvResponse>> {
        use super::{KvResponse, OpResult};
        let r = prop_oneof![
            any::<i64>().prop_map(|value| KvResponse::Ok {
                result: OpResult::Int { value }
            }),
            opt_bytes().prop_map(|value| KvResponse::Ok {
                result: OpResult::Value { value }
            }),
            any::<crate::error::RpcError>().prop_map(|error| KvResponse::Err { error }),
        ];
        prop::collection::vec(r, 0..4)
    }
}

#[cfg(test)]
mod limit_tests {
    use bytes::Bytes;

    use super::{Cond, Expiry, KvOp};
    use crate::limits::{LimitError, MAX_KEY_ELEMENT_BYTES};

    fn set(key_len: usize, value_len: usize) -> KvOp {
        KvOp::StrSet {
            key: Bytes::from(vec![b'k'; key_len]),
            value: Bytes::from(vec![b'v'; value_len]),
            expiry: Expiry::Persist {},
            cond: Cond::Always {},
            get_old: false,
        }
    }

    #[test]
    fn keys_up_to_the_limit_pass_and_one_byte_more_is_refused() {
        assert!(set(MAX_KEY_ELEMENT_BYTES, 1).check_limits(10).is_ok());
        assert_eq!(
            set(MAX_KEY_ELEMENT_BYTES + 1, 1).check_limits(10),
            Err(LimitError::KeyTooLarge {
                len: MAX_KEY_ELEMENT_BYTES + 1,
                max: MAX_KEY_ELEMENT_BYTES
            })
        );
    }

    #[test]
    fn key_and_field_count_together() {
        let op = |f: usize| KvOp::HSet {
            key: Bytes::from(vec![b'k'; 40_000]),
            pairs: vec![(Bytes::from(vec![b'f'; f]), Bytes::new())],
            only_new: false,
        };
        assert!(op(MAX_KEY_ELEMENT_BYTES - 40_000).check_limits(10).is_ok());
        assert!(
            op(MAX_KEY_ELEMENT_BYTES - 40_000 + 1)
                .check_limits(10)
                .is_err()
        );
    }

    #[test]
    fn values_over_the_configured_maximum_are_refused() {
        assert!(set(1, 100).check_limits(100).is_ok());
        assert!(matches!(
            set(1, 101).check_limits(100),
            Err(LimitError::ValueTooLarge { len: 101, max: 100 })
        ));
        let setrange = |offset: u64, len: usize| KvOp::StrSetRange {
            key: Bytes::from_static(b"k"),
            offset,
            value: Bytes::from(vec![0; len]),
        };
        assert!(setrange(90, 10).check_limits(100).is_ok());
        assert!(setrange(91, 10).check_limits(100).is_err());
        assert!(setrange(u64::MAX, 1).check_limits(100).is_err());
        assert!(
            setrange(u64::MAX, 0).check_limits(100).is_ok(),
            "Redis: no-op"
        );
    }
}
