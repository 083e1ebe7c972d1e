//! `MULTI`/`EXEC` and `WATCH` on one range ([`KvOp::Multi`], [`KvOp::KeyDigest`]).
//!
//! A `Multi` is one Raft entry: its operations apply in order with nothing of the range in
//! between, on every replica alike, so the transaction is atomic and isolated. Every key must
//! be in the range (the first operation's key outside it is a stale route, `RangeNotFound`;
//! a later one means the keys span ranges: a `CROSSSLOT` error, nothing applied). Each
//! operation's failure is its own element of the result and the next ones still run, as in
//! Redis's `EXEC`.
//!
//! `WATCH` reads a [`digest`] of the key's live state; `EXEC` carries it, and the `Multi`
//! applies only if every watched key's digest is unchanged ([`OpResult::Aborted`] otherwise).
//!
//! Databases: the watches and the operations not wrapped in a `KvOp::InDb` are in the
//! database the `Multi` runs in (its own `InDb`, else 0); each wrapped operation in its own
//! (`SELECT` inside `MULTI`).

use bytes::Bytes;
use net::RpcError;
use net::keyspace::Db;
use net::message::kv::{KvOp, KvResponse, OpResult, Watch};

use super::ctx::ApplyCtx;
use super::keys;
pub use super::keys::cross_range;
use super::meta;
use super::store::KvStore;
use crate::keyspace;

/// The function that applies one operation of a `Multi` (`apply::execute`; passed in so that
/// this module does not import its caller).
pub type Leaf<S> = fn(&mut S, &KvOp, &ApplyCtx<'_>, Db) -> Result<OpResult, RpcError>;

/// Applies a `Multi` in database `db`: checks its keys and watches, then runs each operation
/// with `leaf`.
pub fn execute<S: KvStore>(
    store: &mut S,
    watches: &[Watch],
    ops: &[KvOp],
    ctx: &ApplyCtx<'_>,
    db: Db,
    leaf: Leaf<S>,
) -> Result<OpResult, RpcError> {
    check_keys(watches, ops, ctx, db)?;
    for w in watches {
        if digest(store, db, &w.key, ctx.now_ms) != w.digest {
            return Ok(OpResult::Aborted {});
        }
    }
    let mut entry = SameEntry::default();
    let mut results = Vec::with_capacity(ops.len());
    for op in ops {
        entry.before(store, op, db, ctx);
        results.push(match leaf(store, op, ctx, db) {
            Ok(result) => KvResponse::Ok { result },
            Err(error) => KvResponse::Err { error },
        });
    }
    Ok(OpResult::Multi { results })
}

fn check_keys(watches: &[Watch], ops: &[KvOp], ctx: &ApplyCtx<'_>, db: Db) -> Result<(), RpcError> {
    let not_here = || RpcError::RangeNotFound {
        range_id: ctx.range.id,
    };
    for (i, op) in ops.iter().enumerate() {
        let (op_db, op) = op.in_db(db);
        if matches!(op, KvOp::Multi { .. } | KvOp::InDb { .. }) {
            return Err(RpcError::BadRequest {
                message: "transactions do not nest".into(),
            });
        }
        if keys::check(op, ctx.range, op_db).is_err() {
            return Err(if i == 0 { not_here() } else { cross_range() });
        }
    }
    for (i, w) in watches.iter().enumerate() {
        if !ctx.range.contains(&keyspace::meta_key(db, &w.key)) {
            return Err(if i == 0 && ops.is_empty() {
                not_here()
            } else {
                cross_range()
            });
        }
    }
    Ok(())
}

/// `KeyDigest`: the digest of `key` in database `db` (which must be in the range).
pub fn digest_op<S: KvStore>(
    store: &S,
    key: &[u8],
    ctx: &ApplyCtx<'_>,
    db: Db,
) -> Result<OpResult, RpcError> {
    if !ctx.range.contains(&keyspace::meta_key(db, key)) {
        return Err(RpcError::RangeNotFound {
            range_id: ctx.range.id,
        });
    }
    Ok(OpResult::Digest {
        digest: digest(store, db, key, ctx.now_ms),
    })
}

/// FNV-1a 64 of the live state of `key` at `now_ms`: its metadata entry and expiry, and for a
/// collection every element of its version; 0 when absent or expired (never 0 otherwise).
/// Deterministic on every replica and release (no seeded hasher).
pub fn digest<S: KvStore>(store: &S, db: Db, key: &[u8], now_ms: u64) -> u64 {
    let Some(meta) = store
        .get(&keyspace::meta_key(db, key))
        .filter(|e| !e.is_expired(now_ms))
    else {
        return 0;
    };
    let mut h = Fnv::new();
    h.bytes(&meta.value);
    h.u64(meta.expire_at_ms);
    let version = meta::decode(&meta.value).ok().and_then(|m| m.version());
    for tag in version.map_or(&[][..], |_| &keyspace::ELEMENT_TAGS[..]) {
        let prefix = keyspace::element_prefix(db, key, *tag, version.unwrap_or(0));
        let end = keyspace::prefix_end(&prefix);
        let mut start = prefix.clone();
        loop {
            let page = store.scan(&start, end.as_deref(), 256, false);
            let Some((last, _)) = page.last() else {
                break;
            };
            start = after(last);
            for (k, e) in &page {
                h.bytes(k);
                h.bytes(&e.value);
            }
        }
    }
    h.0.max(1)
}

fn after(key: &[u8]) -> Bytes {
    let mut k = Vec::with_capacity(key.len() + 1);
    k.extend_from_slice(key);
    k.push(0);
    Bytes::from(k)
}

struct Fnv(u64);

impl Fnv {
    fn new() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }
    fn byte(&mut self, b: u8) {
        self.0 ^= u64::from(b);
        self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
    }
    fn u64(&mut self, v: u64) {
        v.to_le_bytes().iter().for_each(|&b| self.byte(b));
    }
    fn bytes(&mut self, b: &[u8]) {
        self.u64(b.len() as u64);
        b.iter().for_each(|&x| self.byte(x));
    }
}

/// The keys the operations of one entry (a `Multi`, a script) have touched so far.
#[derive(Debug, Default)]
pub(super) struct SameEntry {
    touched: Vec<(Db, Bytes)>,
}

impl SameEntry {
    /// Call before applying each operation of the entry, in order: drops the garbage a
    /// collection dropped earlier in the entry would share with `op`'s new one
    /// ([`drop_stale_elements`]), and the rank index of such a collection (`range::zrank`)
    /// with them.
    pub(super) fn before<S: KvStore>(
        &mut self,
        store: &mut S,
        op: &KvOp,
        db: Db,
        ctx: &ApplyCtx<'_>,
    ) {
        for (key_db, key) in creates_collection(op, db) {
            if self.touched.iter().any(|(d, k)| *d == key_db && k == key) {
                drop_stale_elements(store, key_db, key, ctx.now_ms);
                if let Some(z) = ctx.zranks {
                    z.borrow_mut().drop_key(key_db, key);
                }
            }
        }
        for (d, k) in op.keys_in_db(db) {
            if !self.touched.iter().any(|(td, tk)| *td == d && tk == k) {
                self.touched.push((d, k.clone()));
            }
        }
    }
}

/// The keys of an operation (in database `db` unless it names its own) that may create a
/// collection.
fn creates_collection(op: &KvOp, db: Db) -> Vec<(Db, &Bytes)> {
    let (db, op) = op.in_db(db);
    match op {
        KvOp::HSet { key, .. } | KvOp::HIncrBy { key, .. } | KvOp::HIncrByFloat { key, .. } => {
            vec![(db, key)]
        }
        KvOp::KeyRename { dst, .. } | KvOp::KeyCopy { dst, .. } => vec![(db, dst)],
        KvOp::KeyCopyDb { dst, dst_db, .. } => vec![(*dst_db, dst)],
        KvOp::List { .. } | KvOp::Set { .. } | KvOp::ZSet { .. } if op.is_write() => {
            op.keys_in_db(db)
        }
        _ => Vec::new(),
    }
}

/// A collection created in a `Multi` gets its version from the entry's index and clock, the
/// same for every operation of the entry: when an earlier operation of this `Multi` dropped
/// collection `key` (elements left as garbage) and this one creates it again, the garbage
/// would share the new version. With no live key at `key`, every element of `key` is garbage:
/// delete them first.
fn drop_stale_elements<S: KvStore>(store: &mut S, db: Db, key: &[u8], now_ms: u64) {
    let live = store
        .get(&keyspace::meta_key(db, key))
        .is_some_and(|e| !e.is_expired(now_ms));
    if live {
        return;
    }
    for tag in keyspace::ELEMENT_TAGS {
        let all_versions = keyspace::tag_prefix(db, key, tag);
        let end = keyspace::prefix_end(&all_versions);
        loop {
            let page = store.scan(&all_versions, end.as_deref(), 256, false);
            if page.is_empty() {
                break;
            }
            for (k, _) in page {
                store.delete(&k);
            }
        }
    }
}
