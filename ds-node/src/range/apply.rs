//! Executes client operations against a [`KvStore`] — the range state machine's apply step.
//!
//! Deterministic: the result depends only on the store, the operation and the [`ApplyCtx`]
//! (the Raft index of the entry and the leader's clock reading carried in it), never on the
//! local clock, so every replica applying the same log reaches the same state. Reads run
//! through the same code with the leader's current time and change nothing.
//!
//! Redis data (DESIGN §2, [`crate::keyspace`]): a string is one metadata entry holding a type
//! byte and the value; a hash is a metadata entry (type, version, field count) plus one
//! sub-key per field under that version. Deleting or overwriting a hash drops only its
//! metadata entry — O(1) whatever its size; the fields of the old version are garbage, found
//! by version and reclaimed in the background (`range::sweep`). Expiry lives on the metadata
//! entry; an expired key reads as absent and is removed by the next write that meets it.
//!
//! Error strings follow Redis 7 (`t_string.c`, `t_hash.c`, `expire.c`).

use bytes::{BufMut, Bytes, BytesMut};
use net::RpcError;
use net::keyspace::Db;
use net::message::kv::{
    Cond, ExpireCond, Expiry, KeyType, KvOp, OpFamily, OpResult, TtlState, WriteOp,
};

pub use super::ctx::ApplyCtx;
use super::meta::{self, Meta};
use super::store::{Entry, KvStore};
use crate::keyspace;

/// Largest string value, as Redis's `proto-max-bulk-len` default: 512 MiB.
pub const MAX_STRING_BYTES: u64 = net::limits::DEFAULT_MAX_VALUE_BYTES as u64;

// Every key `net::limits` admits fits in the Masstree.
const _: () = assert!(net::limits::MAX_INTERNAL_KEY_BYTES <= engines::masstree::MAX_KEY_LEN);

/// A live (unexpired) Redis key.
#[derive(Debug, Clone)]
pub(super) struct Live {
    pub(super) meta: Meta,
    pub(super) expire_at_ms: u64,
}

pub use net::redis_num::{format_f64, parse_f64, parse_i64};

pub(super) fn new_version(ctx: &ApplyCtx<'_>) -> u64 {
    // Unique per creating entry (index) and increasing with time across range splits, whose
    // children restart their own Raft indexes.
    (ctx.now_ms << 20) | (ctx.index & 0xF_FFFF)
}

pub(super) fn ok_int(v: i64) -> Result<OpResult, RpcError> {
    Ok(OpResult::Int { value: v })
}

pub(super) fn len_i64(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

pub(super) fn value(v: Option<Bytes>) -> Result<OpResult, RpcError> {
    Ok(OpResult::Value { value: v })
}

/// The error of an operation dispatched to the wrong apply step (never in a sound build:
/// `execute` and `Apply::run` route every operation).
fn not_applied_here() -> RpcError {
    RpcError::BadRequest {
        message: "operation not applied here".into(),
    }
}

fn string_too_long() -> RpcError {
    RpcError::BadRequest {
        message: "string exceeds maximum allowed size (proto-max-bulk-len)".into(),
    }
}

/// Executes `op` in the range of `ctx` against `store` (its Redis keys in database 0 unless
/// it is a [`KvOp::InDb`]).
pub fn execute<S: KvStore>(
    store: &mut S,
    op: &KvOp,
    ctx: &ApplyCtx<'_>,
) -> Result<OpResult, RpcError> {
    execute_in(store, op, ctx, Db::ZERO)
}

/// Executes `op` with its Redis keys in database `db` (a [`KvOp::InDb`] names its own).
pub fn execute_in<S: KvStore>(
    store: &mut S,
    op: &KvOp,
    ctx: &ApplyCtx<'_>,
    db: Db,
) -> Result<OpResult, RpcError> {
    // Deterministic on every replica: an entry over a limit (proposed by an older build, or
    // forged) is an error reply, never an engine failure.
    op.check_limits(net::limits::DEFAULT_MAX_VALUE_BYTES)?;
    let (db, op) = op.in_db(db);
    super::keys::check(op, ctx.range, db)?;
    let mut a = Apply {
        store,
        ctx: *ctx,
        db,
    };
    match op {
        KvOp::RangeFlush {} => Ok(super::flush::flush_range(a.store, ctx.range)),
        KvOp::DbFlush {} => Ok(super::flush::flush_db(a.store, ctx.range, db)),
        KvOp::Multi { watches, ops } => {
            super::multi::execute(a.store, watches, ops, ctx, db, execute_in::<S>)
        }
        KvOp::KeyDigest { key } => super::multi::digest_op(a.store, key, ctx, db),
        // Answered by the shard from the counts apply keeps (`range::db_keys`), never
        // inside a transaction or a script.
        KvOp::DbStats {} | KvOp::ExpiredSince { .. } => Err(RpcError::BadRequest {
            message: "DBSTATS and EXPIREDSINCE are answered by the range itself, not inside MULTI or a script".into(),
        }),
        KvOp::Eval {
            anchor,
            body,
            keys,
            args,
            read_only,
            call,
        } => {
            let script = super::script::Script {
                anchor,
                body,
                keys,
                args,
                read_only: *read_only,
                function: call.function.as_deref(),
                user: call.user.as_deref(),
            };
            super::script::execute(a.store, script, ctx, db, execute_in::<S>)
        }
        _ => a.run(op),
    }
}

/// An operation being applied: the store, the context and the database of its keys. The
/// per-type modules (`list`, `set`, `zset`) add their methods to it.
pub(super) struct Apply<'s, 'c, S> {
    pub(super) store: &'s mut S,
    pub(super) ctx: ApplyCtx<'c>,
    /// The Redis database every internal key is built in.
    pub(super) db: Db,
}

impl<S: KvStore> Apply<'_, '_, S> {
    fn run(&mut self, op: &KvOp) -> Result<OpResult, RpcError> {
        match (op.family(), op) {
            (OpFamily::Raw, _) => self.run_raw(op),
            (OpFamily::String, _) => self.run_string(op),
            (OpFamily::Key, _) => self.run_key(op),
            (OpFamily::Hash, _) => self.run_hash(op),
            (_, KvOp::List { op }) => self.list(op),
            (_, KvOp::Bits { op }) => self.bits(op),
            (_, KvOp::Hll { op }) => self.hll(op),
            (_, KvOp::Set { op }) => self.set(op),
            (_, KvOp::ZSet { op }) => self.zset(op),
            // `OpFamily::Control`: dispatched by `execute` before `run` (an `InDb` here was
            // nested: the decoder refuses that).
            _ => Err(not_applied_here()),
        }
    }

    /// Raw keys (no Redis type): get, put, delete, their batches, scans, compare-and-set and
    /// increment.
    fn run_raw(&mut self, op: &KvOp) -> Result<OpResult, RpcError> {
        match op {
            KvOp::Get { key } => value(self.raw_get(key).map(|e| e.value)),
            KvOp::BatchGet { keys } => Ok(OpResult::Values {
                values: keys
                    .iter()
                    .map(|k| self.raw_get(k).map(|e| e.value))
                    .collect(),
            }),
            KvOp::Put {
                key,
                value: v,
                expiry,
                cond,
                return_old,
            } => self.raw_put(key, v, *expiry, *cond, *return_old),
            KvOp::Delete { key } => {
                let existed = self.raw_get(key).is_some();
                self.store.delete(key);
                Ok(OpResult::Bool { value: existed })
            }
            KvOp::BatchWrite { ops } => {
                for w in ops {
                    match w {
                        WriteOp::Put {
                            key,
                            value: v,
                            expiry,
                        } => {
                            let expire = self.expire_for(*expiry, self.raw_get(key).as_ref());
                            self.raw_store(key.clone(), v.clone(), expire);
                        }
                        WriteOp::Delete { key } => {
                            self.store.delete(key);
                        }
                    }
                }
                Ok(OpResult::Unit {})
            }
            KvOp::Scan {
                start,
                end,
                limit,
                reverse,
                keys_only,
            } => Ok(self.raw_scan(start, end, *limit, *reverse, *keys_only)),
            KvOp::CompareAndSet {
                key,
                expected,
                new,
                expiry,
            } => {
                let cur = self.raw_get(key);
                let current = cur.as_ref().map(|e| e.value.clone());
                if current != *expected {
                    return Ok(OpResult::Cas {
                        swapped: false,
                        current,
                    });
                }
                match new {
                    Some(v) => {
                        let expire = self.expire_for(*expiry, cur.as_ref());
                        self.raw_store(key.clone(), v.clone(), expire);
                    }
                    None => {
                        self.store.delete(key);
                    }
                }
                Ok(OpResult::Cas {
                    swapped: true,
                    current: new.clone(),
                })
            }
            KvOp::Increment { key, delta } => {
                let cur = self.raw_get(key);
                let old = match &cur {
                    None => 0,
                    Some(e) => parse_i64(&e.value).ok_or(RpcError::NotAnInteger {})?,
                };
                let new = old.checked_add(*delta).ok_or(RpcError::Overflow {})?;
                let expire = cur.map_or(0, |e| e.expire_at_ms);
                self.raw_store(key.clone(), Bytes::from(new.to_string()), expire);
                ok_int(new)
            }
            _ => Err(not_applied_here()),
        }
    }

    /// Redis strings (`t_string.c`).
    fn run_string(&mut self, op: &KvOp) -> Result<OpResult, RpcError> {
        match op {
            KvOp::StrGet { key } => value(self.string(key)?),
            KvOp::StrSet {
                key,
                value: v,
                expiry,
                cond,
                get_old,
            } => self.str_set(key, v, *expiry, *cond, *get_old),
            KvOp::StrGetDel { key } => {
                let v = self.string(key)?;
                if v.is_some() {
                    self.store.delete(&keyspace::meta_key(self.db, key));
                }
                value(v)
            }
            KvOp::StrGetEx { key, expiry } => {
                let Some(live) = self.live(key)? else {
                    return value(None);
                };
                let Meta::Str(v) = &live.meta else {
                    return Err(RpcError::WrongType {});
                };
                if !matches!(expiry, Expiry::Keep {}) {
                    let expire = self.expire_for_live(*expiry, &live);
                    self.write_meta(key, &live.meta, expire);
                }
                value(Some(v.clone()))
            }
            KvOp::StrIncrBy { key, delta } => {
                let (old, expire) =
                    self.string_number(key, parse_i64, RpcError::NotAnInteger {})?;
                let new = old
                    .unwrap_or(0)
                    .checked_add(*delta)
                    .ok_or(RpcError::Overflow {})?;
                self.write_meta(key, &Meta::Str(Bytes::from(new.to_string())), expire);
                ok_int(new)
            }
            KvOp::StrIncrByFloat { key, delta } => {
                let (old, expire) = self.string_number(key, parse_f64, RpcError::NotAFloat {})?;
                let new = old.unwrap_or(0.0) + delta;
                if !new.is_finite() {
                    return Err(RpcError::BadRequest {
                        message: "increment would produce NaN or Infinity".into(),
                    });
                }
                let text = format_f64(new);
                self.write_meta(key, &Meta::Str(text.clone()), expire);
                value(Some(text))
            }
            KvOp::StrAppend { key, value: v } => {
                let (old, expire) = self.string_with_expiry(key)?;
                let mut s = BytesMut::from(&old.unwrap_or_default()[..]);
                if (s.len() + v.len()) as u64 > MAX_STRING_BYTES {
                    return Err(string_too_long());
                }
                s.put_slice(v);
                let len = s.len();
                self.write_meta(key, &Meta::Str(s.freeze()), expire);
                ok_int(len_i64(len))
            }
            KvOp::StrLen { key } => ok_int(self.string(key)?.map_or(0, |v| len_i64(v.len()))),
            KvOp::StrGetRange { key, start, end } => {
                let v = self.string(key)?.unwrap_or_default();
                value(Some(get_range(&v, *start, *end)))
            }
            KvOp::StrSetRange {
                key,
                offset,
                value: v,
            } => self.str_set_range(key, *offset, v),
            _ => Err(not_applied_here()),
        }
    }

    /// Operations on any Redis key: delete, existence, expiry, type, scan, object, rename, copy.
    fn run_key(&mut self, op: &KvOp) -> Result<OpResult, RpcError> {
        match op {
            KvOp::KeyDel { key } => {
                let existed = self.live(key)?.is_some();
                self.store.delete(&keyspace::meta_key(self.db, key));
                Ok(OpResult::Bool { value: existed })
            }
            KvOp::KeyExists { key } => Ok(OpResult::Bool {
                value: self.live(key)?.is_some(),
            }),
            KvOp::KeyExpire { key, at_ms, cond } => self.expire(key, *at_ms, *cond),
            KvOp::KeyPersist { key } => {
                let Some(live) = self.live(key)? else {
                    return Ok(OpResult::Bool { value: false });
                };
                if live.expire_at_ms == 0 {
                    return Ok(OpResult::Bool { value: false });
                }
                self.write_meta(key, &live.meta, 0);
                Ok(OpResult::Bool { value: true })
            }
            KvOp::KeyTtl { key } => Ok(OpResult::Ttl {
                ttl: match self.live(key)? {
                    None => TtlState::NoKey {},
                    Some(l) if l.expire_at_ms == 0 => TtlState::Persistent {},
                    Some(l) => TtlState::ExpiresAt {
                        at_ms: l.expire_at_ms,
                    },
                },
            }),
            KvOp::KeyType { key } => Ok(OpResult::Type {
                key_type: self
                    .live(key)?
                    .map_or(KeyType::None {}, |l| l.meta.key_type()),
            }),
            KvOp::KeyScan {
                cursor,
                count,
                type_filter,
            } => self.key_scan(cursor, *count, *type_filter),
            KvOp::KeyObject { key, sample } => self.object(key, *sample),
            KvOp::KeyRename { key, dst, nx } => self.rename(key, dst, *nx),
            KvOp::KeyCopy { key, dst, replace } => self.copy(key, dst, *replace),
            KvOp::KeyCopyDb {
                key,
                dst,
                dst_db,
                replace,
                remove,
            } => self.copy_db(key, dst, *dst_db, *replace, *remove),
            _ => Err(not_applied_here()),
        }
    }

    /// Redis hashes (`t_hash.c`): a metadata entry plus one sub-key per field.
    fn run_hash(&mut self, op: &KvOp) -> Result<OpResult, RpcError> {
        match op {
            KvOp::HSet {
                key,
                pairs,
                only_new,
            } => self.hset(key, pairs, *only_new),
            KvOp::HGet { key, field } => {
                let Some((version, _, _)) = self.hash(key)? else {
                    return value(None);
                };
                value(self.field(key, version, field))
            }
            KvOp::HMGet { key, fields } => {
                let hash = self.hash(key)?;
                Ok(OpResult::Values {
                    values: fields
                        .iter()
                        .map(|f| hash.and_then(|(ver, _, _)| self.field(key, ver, f)))
                        .collect(),
                })
            }
            KvOp::HDel { key, fields } => self.hdel(key, fields),
            KvOp::HExists { key, field } => {
                let found = match self.hash(key)? {
                    Some((version, _, _)) => self.field(key, version, field).is_some(),
                    None => false,
                };
                Ok(OpResult::Bool { value: found })
            }
            KvOp::HLen { key } => {
                let count = self.hash(key)?.map_or(0, |(_, count, _)| count);
                ok_int(i64::try_from(count).unwrap_or(i64::MAX))
            }
            KvOp::HGetAll { key } => {
                let pairs = match self.hash(key)? {
                    Some((version, _, _)) => self.fields(key, version, &[], usize::MAX),
                    None => Vec::new(),
                };
                Ok(OpResult::Pairs { pairs })
            }
            KvOp::HIncrBy { key, field, delta } => self.hincr_by(key, field, *delta),
            KvOp::HIncrByFloat { key, field, delta } => self.hincr_by_float(key, field, *delta),
            KvOp::HStrLen { key, field } => {
                let len = match self.hash(key)? {
                    Some((version, _, _)) => self.field(key, version, field).map_or(0, |v| v.len()),
                    None => 0,
                };
                ok_int(len_i64(len))
            }
            KvOp::HScan { key, cursor, count } => {
                let Some((version, _, _)) = self.hash(key)? else {
                    return Ok(OpResult::Scan {
                        pairs: Vec::new(),
                        next: None,
                    });
                };
                let limit = (*count).max(1) as usize;
                let pairs = self.fields(key, version, cursor, limit);
                let next = (pairs.len() == limit)
                    .then(|| pairs.last().map(|(f, _)| f.clone()))
                    .flatten();
                Ok(OpResult::Scan { pairs, next })
            }
            KvOp::HRandField {
                key,
                count,
                with_values,
                seed,
            } => self.hrandfield(key, *count, *with_values, *seed),
            _ => Err(not_applied_here()),
        }
    }

    /// `SETRANGE`: overwrites `v` at `offset`, zero-padding a shorter string.
    fn str_set_range(&mut self, key: &[u8], offset: u64, v: &[u8]) -> Result<OpResult, RpcError> {
        let (old, expire) = self.string_with_expiry(key)?;
        let old = old.unwrap_or_default();
        if v.is_empty() {
            return ok_int(len_i64(old.len()));
        }
        let end = offset.saturating_add(v.len() as u64);
        if end > MAX_STRING_BYTES {
            return Err(string_too_long());
        }
        let end = usize::try_from(end).map_err(|_| string_too_long())?;
        let start = end - v.len();
        let mut s = BytesMut::from(&old[..]);
        if s.len() < end {
            s.resize(end, 0);
        }
        s[start..end].copy_from_slice(v);
        let len = s.len();
        self.write_meta(key, &Meta::Str(s.freeze()), expire);
        ok_int(len_i64(len))
    }

    /// `HINCRBY`.
    fn hincr_by(&mut self, key: &[u8], field: &Bytes, delta: i64) -> Result<OpResult, RpcError> {
        let not_int = || RpcError::BadRequest {
            message: "hash value is not an integer".into(),
        };
        let old = self.hash_number(key, field, parse_i64, not_int)?;
        let new = old
            .unwrap_or(0)
            .checked_add(delta)
            .ok_or(RpcError::Overflow {})?;
        self.hset_one(key, field, Bytes::from(new.to_string()))?;
        ok_int(new)
    }

    /// `HINCRBYFLOAT`.
    fn hincr_by_float(
        &mut self,
        key: &[u8],
        field: &Bytes,
        delta: f64,
    ) -> Result<OpResult, RpcError> {
        let not_float = || RpcError::BadRequest {
            message: "hash value is not a float".into(),
        };
        let old = self.hash_number(key, field, parse_f64, not_float)?;
        let new = old.unwrap_or(0.0) + delta;
        if !new.is_finite() {
            return Err(RpcError::BadRequest {
                message: "increment would produce NaN or Infinity".into(),
            });
        }
        let text = format_f64(new);
        self.hset_one(key, field, text.clone())?;
        value(Some(text))
    }

    // ---- raw keys -------------------------------------------------------------------

    pub(super) fn raw_get(&self, key: &[u8]) -> Option<Entry> {
        self.store
            .get(key)
            .filter(|e| !e.is_expired(self.ctx.now_ms))
    }

    /// Stores a raw value, or deletes it when its expiry is already past.
    fn raw_store(&mut self, key: Bytes, value: Bytes, expire_at_ms: u64) {
        if expire_at_ms != 0 && expire_at_ms <= self.ctx.now_ms {
            self.store.delete(&key);
        } else {
            self.store.put(
                key,
                Entry {
                    value,
                    expire_at_ms,
                },
            );
        }
    }

    fn expire_for(&self, expiry: Expiry, current: Option<&Entry>) -> u64 {
        match expiry {
            Expiry::Keep {} => current.map_or(0, |e| e.expire_at_ms),
            Expiry::Persist {} => 0,
            Expiry::At { at_ms } => at_ms.max(1),
        }
    }

    fn raw_put(
        &mut self,
        key: &Bytes,
        v: &Bytes,
        expiry: Expiry,
        cond: Cond,
        return_old: bool,
    ) -> Result<OpResult, RpcError> {
        let cur = self.raw_get(key);
        let blocked = match cond {
            Cond::Always {} => false,
            Cond::IfAbsent {} => cur.is_some(),
            Cond::IfPresent {} => cur.is_none(),
        };
        let old = cur.as_ref().map(|e| e.value.clone());
        if !blocked {
            let expire = self.expire_for(expiry, cur.as_ref());
            self.raw_store(key.clone(), v.clone(), expire);
        }
        if return_old {
            value(old)
        } else {
            Ok(OpResult::Written { written: !blocked })
        }
    }

    fn range_bounds(&self, start: &[u8], end: &[u8]) -> (Bytes, Option<Bytes>) {
        let range = self.ctx.range;
        let lo = if start > &range.start[..] {
            Bytes::copy_from_slice(start)
        } else {
            range.start.clone()
        };
        let hi = match (end.is_empty(), range.end.is_empty()) {
            (true, true) => None,
            (true, false) => Some(range.end.clone()),
            (false, true) => Some(Bytes::copy_from_slice(end)),
            (false, false) => Some(if end < &range.end[..] {
                Bytes::copy_from_slice(end)
            } else {
                range.end.clone()
            }),
        };
        (lo, hi)
    }

    fn raw_scan(
        &self,
        start: &[u8],
        end: &[u8],
        limit: u32,
        reverse: bool,
        keys_only: bool,
    ) -> OpResult {
        let (lo, hi) = self.range_bounds(start, end);
        let limit = limit.max(1) as usize;
        let mut pairs = Vec::new();
        let mut next = None;
        // Expired entries are skipped, so fetch in pages until `limit` live ones are found.
        let (mut lo, mut hi) = (lo, hi);
        loop {
            let page = self.store.scan(&lo, hi.as_deref(), limit, reverse);
            let full = page.len() == limit;
            let last = page.last().map(|(k, _)| k.clone());
            for (k, e) in page {
                if e.is_expired(self.ctx.now_ms) {
                    continue;
                }
                if pairs.len() == limit {
                    break;
                }
                let v = if keys_only { Bytes::new() } else { e.value };
                pairs.push((k, v));
            }
            let Some(last) = last.filter(|_| full) else {
                break;
            };
            if pairs.len() == limit {
                next = Some(last);
                break;
            }
            if reverse {
                hi = Some(last);
            } else {
                lo = after(&last);
            }
        }
        if let (Some(n), Some((k, _))) = (&mut next, pairs.last()) {
            *n = k.clone();
        }
        OpResult::Scan { pairs, next }
    }

    // ---- Redis keys -----------------------------------------------------------------

    /// The live metadata of `key`: expired keys read as absent.
    pub(super) fn live(&self, key: &[u8]) -> Result<Option<Live>, RpcError> {
        self.live_in(self.db, key)
    }

    /// The live metadata of `key` in database `db`.
    pub(super) fn live_in(&self, db: Db, key: &[u8]) -> Result<Option<Live>, RpcError> {
        let Some(e) = self.store.get(&keyspace::meta_key(db, key)) else {
            return Ok(None);
        };
        if e.is_expired(self.ctx.now_ms) {
            return Ok(None);
        }
        Ok(Some(Live {
            meta: meta::decode(&e.value)?,
            expire_at_ms: e.expire_at_ms,
        }))
    }

    pub(super) fn write_meta(&mut self, key: &[u8], meta: &Meta, expire_at_ms: u64) {
        self.write_meta_in(self.db, key, meta, expire_at_ms);
    }

    /// [`Self::write_meta`] in database `db`.
    pub(super) fn write_meta_in(&mut self, db: Db, key: &[u8], meta: &Meta, expire_at_ms: u64) {
        let mk = keyspace::meta_key(db, key);
        if expire_at_ms != 0 && expire_at_ms <= self.ctx.now_ms {
            self.store.delete(&mk);
        } else {
            self.store.put(
                mk,
                Entry {
                    value: meta::encode(meta),
                    expire_at_ms,
                },
            );
        }
    }

    pub(super) fn expire_for_live(&self, expiry: Expiry, live: &Live) -> u64 {
        match expiry {
            Expiry::Keep {} => live.expire_at_ms,
            Expiry::Persist {} => 0,
            Expiry::At { at_ms } => at_ms.max(1),
        }
    }

    /// The string value of `key`; WRONGTYPE for a hash.
    pub(super) fn string(&self, key: &[u8]) -> Result<Option<Bytes>, RpcError> {
        Ok(self.string_with_expiry(key)?.0)
    }

    pub(super) fn string_with_expiry(&self, key: &[u8]) -> Result<(Option<Bytes>, u64), RpcError> {
        match self.live(key)? {
            None => Ok((None, 0)),
            Some(Live {
                meta: Meta::Str(v),
                expire_at_ms,
            }) => Ok((Some(v), expire_at_ms)),
            Some(_) => Err(RpcError::WrongType {}),
        }
    }

    fn string_number<T>(
        &self,
        key: &[u8],
        parse: fn(&[u8]) -> Option<T>,
        bad: RpcError,
    ) -> Result<(Option<T>, u64), RpcError> {
        let (v, expire) = self.string_with_expiry(key)?;
        match v {
            None => Ok((None, expire)),
            Some(v) => Ok((Some(parse(&v).ok_or(bad)?), expire)),
        }
    }

    fn str_set(
        &mut self,
        key: &Bytes,
        v: &Bytes,
        expiry: Expiry,
        cond: Cond,
        get_old: bool,
    ) -> Result<OpResult, RpcError> {
        let live = self.live(key)?;
        let old = match (&live, get_old) {
            (
                Some(Live {
                    meta: Meta::Str(s), ..
                }),
                true,
            ) => Some(s.clone()),
            (Some(_), true) => return Err(RpcError::WrongType {}),
            _ => None,
        };
        let blocked = match cond {
            Cond::Always {} => false,
            Cond::IfAbsent {} => live.is_some(),
            Cond::IfPresent {} => live.is_none(),
        };
        if !blocked {
            let expire = match (expiry, &live) {
                (Expiry::Keep {}, Some(l)) => l.expire_at_ms,
                (Expiry::Keep {}, None) | (Expiry::Persist {}, _) => 0,
                (Expiry::At { at_ms }, _) => at_ms.max(1),
            };
            self.write_meta(key, &Meta::Str(v.clone()), expire);
        }
        if get_old {
            value(old)
        } else {
            Ok(OpResult::Written { written: !blocked })
        }
    }

    fn expire(&mut self, key: &[u8], at_ms: u64, cond: ExpireCond) -> Result<OpResult, RpcError> {
        let Some(live) = self.live(key)? else {
            return Ok(OpResult::Bool { value: false });
        };
        let cur = live.expire_at_ms;
        let allowed = match cond {
            ExpireCond::Always {} => true,
            ExpireCond::IfNone {} => cur == 0,
            ExpireCond::IfSome {} => cur != 0,
            // A key without expiry counts as an infinite TTL.
            ExpireCond::IfGreater {} => cur != 0 && at_ms > cur,
            ExpireCond::IfLess {} => cur == 0 || at_ms < cur,
            ExpireCond::IfSomeLess {} => cur != 0 && at_ms < cur,
        };
        if !allowed {
            return Ok(OpResult::Bool { value: false });
        }
        // A time in the past deletes the key (and still answers 1), as Redis does.
        self.write_meta(key, &live.meta, at_ms.max(1));
        Ok(OpResult::Bool { value: true })
    }

    /// One `SCAN` step in this operation's database: metadata entries after `cursor`,
    /// examining at most `count` entries (entries of other databases are skipped by seeking,
    /// `range::db_walk`); `next` is the last entry examined when the budget ran out. Values
    /// are read only to filter by type.
    pub(super) fn key_scan(
        &self,
        cursor: &[u8],
        count: u32,
        type_filter: Option<KeyType>,
    ) -> Result<OpResult, RpcError> {
        let range = self.ctx.range;
        let (lo, hi) = super::db_walk::scan_bounds(&range.start, &range.end, cursor);
        let page =
            super::db_walk::scan_db(&*self.store, self.db, lo, hi.as_deref(), count as usize);
        let mut keys = Vec::new();
        for k in page.keys {
            let Some((_, user)) = keyspace::user_key_of_meta(&k) else {
                continue;
            };
            let expiry = self.store.expiry(&k).unwrap_or(0);
            if expiry != 0 && expiry <= self.ctx.now_ms {
                continue;
            }
            if let Some(want) = type_filter {
                let Some(e) = self.store.get(&k) else {
                    continue;
                };
                if meta::decode(&e.value)?.key_type() != want {
                    continue;
                }
            }
            keys.push(Bytes::copy_from_slice(user));
        }
        Ok(OpResult::KeyScan {
            keys,
            next: page.next,
        })
    }

    // ---- hashes ---------------------------------------------------------------------

    /// `(version, count, expiry)` of hash `key`; WRONGTYPE for a string.
    pub(super) fn hash(&self, key: &[u8]) -> Result<Option<(u64, u64, u64)>, RpcError> {
        match self.live(key)? {
            None => Ok(None),
            Some(Live {
                meta: Meta::Hash { version, count },
                expire_at_ms,
            }) => Ok(Some((version, count, expire_at_ms))),
            Some(_) => Err(RpcError::WrongType {}),
        }
    }

    fn field(&self, key: &[u8], version: u64, field: &[u8]) -> Option<Bytes> {
        self.store
            .get(&keyspace::field_key(self.db, key, version, field))
            .map(|e| e.value)
    }

    /// Fields after `after_field` (all when empty), up to `limit`.
    pub(super) fn fields(
        &self,
        key: &[u8],
        version: u64,
        after_field: &[u8],
        limit: usize,
    ) -> Vec<(Bytes, Bytes)> {
        let prefix = keyspace::field_prefix_bytes(self.db, key, version);
        let start = if after_field.is_empty() {
            prefix.clone()
        } else {
            after(&keyspace::field_key(self.db, key, version, after_field))
        };
        let end = keyspace::prefix_end(&prefix);
        self.store
            .scan(&start, end.as_deref(), limit, false)
            .into_iter()
            .filter_map(|(k, e)| Some((keyspace::field_of(&k, &prefix)?, e.value)))
            .collect()
    }

    fn hset(
        &mut self,
        key: &[u8],
        pairs: &[(Bytes, Bytes)],
        only_new: bool,
    ) -> Result<OpResult, RpcError> {
        let (version, mut count, expire) = match self.hash(key)? {
            Some(h) => h,
            None => (new_version(&self.ctx), 0, 0),
        };
        let mut added = 0i64;
        for (f, v) in pairs {
            let fk = keyspace::field_key(self.db, key, version, f);
            let exists = self.store.get(&fk).is_some();
            if exists && only_new {
                continue;
            }
            if !exists {
                count += 1;
                added += 1;
            }
            self.store.put(
                fk,
                Entry {
                    value: v.clone(),
                    expire_at_ms: 0,
                },
            );
        }
        if count > 0 {
            self.write_meta(key, &Meta::Hash { version, count }, expire);
        }
        ok_int(added)
    }

    fn hset_one(&mut self, key: &[u8], field: &Bytes, v: Bytes) -> Result<(), RpcError> {
        self.hset(key, &[(field.clone(), v)], false).map(|_| ())
    }

    fn hash_number<T>(
        &self,
        key: &[u8],
        field: &[u8],
        parse: fn(&[u8]) -> Option<T>,
        bad: impl Fn() -> RpcError,
    ) -> Result<Option<T>, RpcError> {
        let Some((version, _, _)) = self.hash(key)? else {
            return Ok(None);
        };
        match self.field(key, version, field) {
            None => Ok(None),
            Some(v) => parse(&v).map(Some).ok_or_else(bad),
        }
    }

    fn hdel(&mut self, key: &[u8], fields: &[Bytes]) -> Result<OpResult, RpcError> {
        let Some((version, mut count, expire)) = self.hash(key)? else {
            return ok_int(0);
        };
        let mut removed = 0i64;
        for f in fields {
            if self
                .store
                .delete(&keyspace::field_key(self.db, key, version, f))
                .is_some()
            {
                removed += 1;
                count = count.saturating_sub(1);
            }
        }
        if count == 0 {
            self.store.delete(&keyspace::meta_key(self.db, key));
        } else if removed > 0 {
            self.write_meta(key, &Meta::Hash { version, count }, expire);
        }
        ok_int(removed)
    }
}

/// The smallest key strictly greater than `key`.
pub(super) fn after(key: &[u8]) -> Bytes {
    let mut k = Vec::with_capacity(key.len() + 1);
    k.extend_from_slice(key);
    k.push(0);
    Bytes::from(k)
}

/// Redis `GETRANGE` index arithmetic: negative indexes count from the end, both ends
/// inclusive and clamped.
fn get_range(v: &[u8], start: i64, end: i64) -> Bytes {
    let len = len_i64(v.len());
    if start < 0 && end < 0 && start > end {
        return Bytes::new();
    }
    let mut s = if start < 0 { len + start } else { start };
    let mut e = if end < 0 { len + end } else { end };
    s = s.max(0);
    e = e.max(0);
    if e >= len {
        e = len - 1;
    }
    if len == 0 || s > e {
        return Bytes::new();
    }
    // 0 <= s <= e < len, so both fit in usize.
    Bytes::copy_from_slice(&v[s as usize..=e as usize])
}
