// perf-critical: every write of a shard with a `maxmemory` passes [`must_wait`].
//! Write backpressure: a shard's memory stays bounded when writes outrun demotion.
//!
//! The *line* is `write-throttle-percent` % of the shard's share of `maxmemory`. What is
//! compared with it is the accounted memory (`MasstreeStore::accounted`) plus the bytes of
//! proposals that may add data and have not applied yet ([`ThrottleState::unapplied_bytes`]):
//! a burst of proposals is counted before it lands, so it cannot run past the line.
//!
//! A new write that could add data (not [`disk_limit::only_frees`]) arriving at a leader
//! whose shard is above the line waits ([`wait`]): cooperatively, woken after each demotion
//! step (`server::policy`, which demotes in larger steps while writes wait) or every
//! `policy-tick-ms`, for at most `write-throttle-max-wait-ms`; then it goes through the
//! request checks again and is proposed, or is refused with Redis's own error
//! ([`OOM_MESSAGE`], sent as `RpcError::Redis`, so every proxy answers it unchanged).
//!
//! Never throttled: reads, deletes and expiry changes, FLUSHDB/FLUSHALL, the leader's expiry
//! sweeps, and everything a follower applies (only new proposals wait; committed entries
//! always apply). A shard whose log is full (`maxdisksize`) refuses with the disk error at
//! once instead of waiting for memory. At most `max-inflight-proposals` writes wait per
//! shard; more are refused at once.
//!
//! Bound: after an apply, accounted memory ≤ line + the last proposal admitted under it (its
//! entries' overhead included) + one new arena page of each Masstree node kind (the arena
//! grows a page of 1024 nodes at a time: 720,896 bytes for both, what an empty tree
//! reserves). Followers are not throttled: their own policy bounds them, with the same
//! steps, and they apply every committed entry whatever their memory.

use std::time::{Duration, Instant};

use net::RpcError;
use net::message::kv::KvOp;

use super::disk_limit;
use super::shard::{Shard, ShardDevice};

/// Redis 7's reply to a write refused under `maxmemory` with `noeviction` (checked against
/// redis-server 7.0.15 with `CONFIG SET maxmemory 1`).
pub const OOM_MESSAGE: &str = "OOM command not allowed when used memory > 'maxmemory'.";

/// The line for a budget (0: none) and a percentage of it.
pub fn line_bytes(budget: u64, percent: u32) -> u64 {
    budget.saturating_mul(u64::from(percent)) / 100
}

/// The shard's line, bytes (0: no `maxmemory`).
pub fn line<D: ShardDevice>(shard: &Shard<D>) -> u64 {
    line_bytes(shard.policy.budget.get(), shard.cfg.write_throttle_percent)
}

/// Whether the shard, holding `accounted` bytes now, is above its line once its proposals
/// apply.
pub fn above<D: ShardDevice>(shard: &Shard<D>, accounted: u64) -> bool {
    let line = line(shard);
    let projected = accounted.saturating_add(shard.policy.throttle.unapplied_bytes());
    line > 0 && projected > line
}

/// Whether the shard is above its line (borrows the shard state).
pub fn over_line<D: ShardDevice>(shard: &Shard<D>) -> bool {
    let accounted = shard.state.borrow().engine.accounted().total();
    above(shard, accounted)
}

/// Whether `op` may add data (such a proposal is charged and may be throttled).
pub fn may_grow(op: &KvOp) -> bool {
    op.is_write() && !disk_limit::only_frees(op)
}

/// Whether write `op` must wait for memory before it is proposed, the shard holding
/// `accounted` bytes (a full disk refuses at once instead, `server::disk_limit`).
pub fn must_wait<D: ShardDevice>(shard: &Shard<D>, accounted: u64, op: &KvOp) -> bool {
    may_grow(op) && !shard.disk_full.get() && above(shard, accounted)
}

/// The error of a write refused for memory.
pub fn oom() -> RpcError {
    RpcError::Redis {
        message: OOM_MESSAGE.into(),
    }
}

/// Waits until the shard is under its line (`Ok`: propose now) or until
/// `write-throttle-max-wait-ms` passed (`Err`: the OOM error), counting both.
pub async fn wait<D: ShardDevice>(shard: &Shard<D>) -> Result<(), RpcError> {
    let t = &shard.policy.throttle;
    let started = shard.now();
    shard.metrics.borrow_mut().throttle.throttled_total += 1;
    let admitted = if t.waiting() >= shard.cfg.max_inflight_proposals {
        false
    } else {
        // Counted while it waits: the policy takes larger steps meanwhile.
        let _waiting = t.start_waiting();
        wait_under_line(shard, started).await
    };
    let mut m = shard.metrics.borrow_mut();
    super::metrics::ShardMetrics::record(
        &mut m.throttle.wait_us,
        shard.now().saturating_duration_since(started).as_micros() as u64,
    );
    if admitted {
        Ok(())
    } else {
        m.throttle.oom_refused_total += 1;
        Err(oom())
    }
}

/// Whether the shard came under its line within the wait allowed after `started`.
async fn wait_under_line<D: ShardDevice>(shard: &Shard<D>, started: Instant) -> bool {
    let t = &shard.policy.throttle;
    let max = Duration::from_millis(shard.cfg.write_throttle_max_wait_ms);
    let slice = Duration::from_millis(shard.cfg.policy_tick_ms);
    loop {
        if !over_line(shard) {
            return true;
        }
        let left = max.saturating_sub(shard.now().saturating_duration_since(started));
        if left.is_zero() || shard.stop.get() {
            return false;
        }
        let generation = t.generation();
        futures_lite::future::or(t.changed(generation), crate::core::sleep(left.min(slice))).await;
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use net::message::kv::{Cond, Expiry};

    use super::*;

    #[test]
    fn the_line_is_a_percentage_of_the_budget_and_none_without_one() {
        assert_eq!(line_bytes(1000, 110), 1100);
        assert_eq!(line_bytes(0, 110), 0);
        assert_eq!(line_bytes(u64::MAX, 1000), u64::MAX / 100);
    }

    #[test]
    fn sets_may_grow_memory_and_deletes_reads_and_flushes_do_not() {
        let key = Bytes::from_static(b"k");
        let set = KvOp::StrSet {
            key: key.clone(),
            value: Bytes::from_static(b"v"),
            expiry: Expiry::Persist {},
            cond: Cond::Always {},
            get_old: false,
        };
        assert!(may_grow(&set));
        assert!(!may_grow(&KvOp::KeyDel { key: key.clone() }));
        assert!(!may_grow(&KvOp::StrGet { key }));
        assert!(!may_grow(&KvOp::DbFlush {}));
    }

    #[test]
    fn the_refusal_is_redis_oom_error_text() {
        assert_eq!(
            oom(),
            RpcError::Redis {
                message: "OOM command not allowed when used memory > 'maxmemory'.".into()
            }
        );
    }
}
