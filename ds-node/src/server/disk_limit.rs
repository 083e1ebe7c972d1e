//! `maxdisksize`: the shard log's share of the node's disk limit.
//!
//! Each shard may use `maxdisksize / shards` bytes of shard-log segments. The collector task
//! (`server::gc::run`) checks every `gc-every-ms`: above the limit it runs a forced pass
//! (victims regardless of the space ratio), and if the log is still at or above the limit
//! after it, the shard is *full*: a write that could add data is refused with
//! [`RpcError::DiskFull`] (the proxy answers `-OOM command not allowed when used disk >
//! 'maxdisksize'.`), before anything is proposed. Reads, deletes (DEL, HDEL, pops, removes,
//! FLUSHDB…), EXPIRE/PERSIST and the leader's expiry sweeps keep working: they let the
//! collector free space, and the next check that finds the log below the limit lifts the
//! refusal. Nothing acknowledged is dropped: only new writes are refused.
//!
//! The limit is checked once per collector tick, so writes accepted during one tick can
//! take the log past it by what a tick writes; the log file itself (`log-file-bytes`) is the
//! hard bound: the ready loop holds Raft entries back rather than start a group commit the
//! log has no room for (`server::log_room`), and the shard counts as full meanwhile.
//!
//! **Low on segments** (index mode, whatever `maxdisksize`): when the log can allocate at
//! most [`LOW_SPACE_SEGMENTS`] more segments ([`engines::vlog::Vlog::spare_segments`], read
//! per write without a lock), the shard is treated as full at once: writes that add data are
//! refused and the collector runs forced passes, so a log filling up answers `-OOM` instead
//! of stopping the shard. Index mode needs it most: values stay in the log and the index
//! keeps segments of its own. (Files mode is left as it was: its range files live outside
//! the log; the same bound there is future work.)

use net::RpcError;
use net::message::kv::KvOp;

use super::shard::{Shard, ShardDevice};

/// The shard's limit in bytes (0: none).
pub fn limit_bytes<D: ShardDevice>(shard: &Shard<D>) -> u64 {
    shard.cfg.maxdisksize / shard.cfg.shards.max(1) as u64
}

/// Bytes the shard log's segments take.
pub fn used_bytes<D: ShardDevice>(shard: &Shard<D>) -> u64 {
    shard.log.segment_usage().len() as u64 * shard.cfg.segment_bytes
}

/// Spare log segments at or below which an index-mode shard refuses writes that add data.
pub const LOW_SPACE_SEGMENTS: u64 = 2;

/// Whether the log is at or above the limit, or (index mode) low on segments.
pub fn over_limit<D: ShardDevice>(shard: &Shard<D>) -> bool {
    let limit = limit_bytes(shard);
    (limit > 0 && used_bytes(shard) >= limit) || low_on_segments(shard) || shard.log_stalled.get()
}

/// Index mode: whether the log can allocate at most [`LOW_SPACE_SEGMENTS`] more segments.
pub fn low_on_segments<D: ShardDevice>(shard: &Shard<D>) -> bool {
    shard.cfg.checkpoint_mode == crate::config::CheckpointMode::Index
        && shard.log.spare_segments() <= LOW_SPACE_SEGMENTS
}

/// Records whether the shard is full (checked after a collection pass).
pub fn update<D: ShardDevice>(shard: &Shard<D>) {
    let full = over_limit(shard);
    let was = shard.disk_full.replace(full);
    if full != was {
        tracing::warn!(
            shard = shard.index,
            used = used_bytes(shard),
            limit = limit_bytes(shard),
            "{}",
            if full {
                "maxdisksize reached: refusing writes that add data"
            } else {
                "below maxdisksize again: accepting writes"
            }
        );
    }
}

/// Whether writes that add data are refused now: the last collector tick found the shard
/// full, the log is low on segments, or the ready loop is holding entries back.
fn refusing<D: ShardDevice>(shard: &Shard<D>) -> bool {
    shard.disk_full.get() || low_on_segments(shard) || shard.log_stalled.get()
}

/// The error for `op` if the shard is full and `op` could add data.
pub fn refusal<D: ShardDevice>(shard: &Shard<D>, op: &KvOp) -> Option<RpcError> {
    if !refusing(shard) || only_frees(op) {
        return None;
    }
    shard.metrics.borrow_mut().gc.disk_full_refusals_total += 1;
    Some(RpcError::DiskFull {})
}

/// Whether `op` can only remove data or change expiry (allowed on a full shard):
/// [`KvOp::only_frees`].
pub fn only_frees(op: &KvOp) -> bool {
    op.only_frees()
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use net::message::kv::{Cond, Expiry};

    use super::*;

    fn key() -> Bytes {
        Bytes::from_static(b"k")
    }

    #[test]
    fn deletes_and_reads_pass_a_full_shard_and_writes_that_add_data_do_not() {
        let set = KvOp::StrSet {
            key: key(),
            value: Bytes::from_static(b"v"),
            expiry: Expiry::Persist {},
            cond: Cond::Always {},
            get_old: false,
        };
        assert!(!only_frees(&set));
        assert!(only_frees(&KvOp::KeyDel { key: key() }));
        assert!(only_frees(&KvOp::StrGet { key: key() }));
        assert!(!only_frees(&KvOp::Multi {
            watches: Vec::new(),
            ops: vec![KvOp::KeyDel { key: key() }, set.clone()],
        }));
        assert!(only_frees(&KvOp::Multi {
            watches: Vec::new(),
            ops: vec![KvOp::KeyDel { key: key() }],
        }));
    }
}
