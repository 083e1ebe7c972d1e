//! Which keys an operation may touch: all of them in its range.

use bytes::Bytes;
use net::RpcError;
use net::keyspace::Db;
use net::message::RangeDescriptor;
use net::message::kv::{KvOp, WriteOp};

use crate::keyspace;

/// The error of an operation whose keys span ranges.
pub fn cross_range() -> RpcError {
    RpcError::BadRequest {
        message: "CROSSSLOT Keys in request don't hash to the same range (keep a \
                  transaction's keys in one range with a {hash tag})"
            .into(),
    }
}

/// Every key of `op` (its Redis keys in database `db`) must be in `range`: when its first
/// key is not, the route was stale (`RangeNotFound`: refresh and retry); when another is not,
/// its keys span ranges (a `CROSSSLOT` error; nothing applied). Range-wide operations are
/// checked by their own modules (flush, multi); scans are clamped to the range.
pub fn check(op: &KvOp, range: &RangeDescriptor, db: Db) -> Result<(), RpcError> {
    let not_here = || RpcError::RangeNotFound { range_id: range.id };
    let raw_ok = |k: &Bytes| range.contains(k);
    let in_db_ok = |db: Db, k: &Bytes| range.contains(&keyspace::meta_key(db, k));
    let redis_ok = |k: &Bytes| in_db_ok(db, k);
    let others_ok = match op {
        // The destination is in its own database (MOVE, COPY … DB).
        KvOp::KeyCopyDb { dst, dst_db, .. } => in_db_ok(*dst_db, dst),
        _ => op.other_redis_keys().iter().all(redis_ok),
    };
    if !others_ok {
        return Err(if op.redis_key().is_some_and(redis_ok) {
            cross_range()
        } else {
            not_here()
        });
    }
    let ok = match op {
        KvOp::Get { key }
        | KvOp::Put { key, .. }
        | KvOp::Delete { key }
        | KvOp::CompareAndSet { key, .. }
        | KvOp::Increment { key, .. } => raw_ok(key),
        KvOp::BatchGet { keys } => keys.iter().all(raw_ok),
        KvOp::BatchWrite { ops } => ops.iter().all(|w| match w {
            WriteOp::Put { key, .. } | WriteOp::Delete { key } => raw_ok(key),
        }),
        KvOp::Scan { .. } | KvOp::KeyScan { .. } => true,
        KvOp::RangeFlush {}
        | KvOp::DbFlush {}
        | KvOp::DbStats {}
        | KvOp::ExpiredSince { .. }
        | KvOp::Multi { .. }
        | KvOp::KeyDigest { .. }
        | KvOp::InDb { .. } => true,
        // Every Redis operation names its user key; one without is refused.
        _ => op.redis_key().is_some_and(redis_ok),
    };
    if ok { Ok(()) } else { Err(not_here()) }
}
