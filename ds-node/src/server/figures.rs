//! The shard's figures gathered in one [`ShardMetrics`] for the admin thread: the counters
//! the operations keep, and the gauges read from the engine, the memory policy, the throttle
//! and the shard log when published. An operation (it reads `throttle`); nothing in `server`
//! imports it.

use super::metrics::ShardMetrics;
use super::shard::{Shard, ShardDevice};

/// The shard's figures now: its counters with the engine's hot/cold gauges, the memory
/// policy's, the throttle's and the shard log's (published for the admin thread).
pub fn collect<D: ShardDevice>(shard: &Shard<D>) -> ShardMetrics {
    let mut m = shard.metrics.borrow().clone();
    m.scripts = crate::range::script::metrics();
    {
        let st = shard.state.borrow();
        let c = st.engine.cold_stats();
        m.cold.hot_value_bytes = c.hot_value_bytes;
        m.cold.cold_value_bytes = c.cold_value_bytes;
        m.cold.cold_entries = c.cold_entries;
        m.cold.backed_values_total = c.backed_values_total;
        m.cold.backed_bytes_total = c.backed_bytes_total;
        m.cold.engine_memory_bytes = st.engine.memory_bytes() as u64;
        m.arena.set_from(&st.engine.arena_stats());
        m.policy.accounted_bytes = st.engine.accounted().total();
        m.policy.budget_bytes = shard.policy.budget.get();
        m.policy.behind = u64::from(shard.policy.behind.get());
        m.cold.segment_live_bytes = st
            .engine
            .live_bytes()
            .iter()
            .map(|(seg, b)| (shard.index, seg.0, *b))
            .collect();
        m.gc.log_live_bytes = st.engine.live_bytes_total();
        for p in st.peers.values().filter(|p| p.is_initialized()) {
            m.zrank.add(&p.zranks().borrow().figures());
            for (n, db) in (0..net::keyspace::DATABASES)
                .filter_map(net::keyspace::Db::new)
                .enumerate()
            {
                let c = p.db_keys().get(db);
                m.redis_keys[n] += c.keys;
                m.redis_expires[n] += c.expires;
            }
        }
        m.gc.disk_full_shards = u64::from(shard.disk_full.get());
    }
    m.lsm = shard.lsm.as_ref().map(|ix| ix.metrics());
    m.index_changed_keys = shard.state.borrow().engine.changed_keys() as u64;
    m.throttle.waiting = shard.policy.throttle.waiting() as u64;
    m.throttle.shards_over = u64::from(super::throttle::over_line(shard));
    m.throttle.peak_accounted_bytes = shard.policy.throttle.peak_accounted();
    {
        let lm = shard.log.metrics();
        m.gc.log_used_bytes = shard.log.segment_usage().len() as u64 * shard.cfg.segment_bytes;
        m.gc.log_room_bytes = shard.log.room_bytes();
        m.gc.log_stalled_shards = u64::from(shard.log_stalled.get());
        m.gc.device_written_bytes = lm.written_bytes_total;
        m.gc.user_appended_bytes = lm
            .appended_bytes_total
            .saturating_sub(m.cold.demoted_bytes_written_total + m.gc.written_bytes_total);
    }
    m
}
