//! Counters and hdrhistogram latencies of one shard.

use hdrhistogram::Histogram;

use super::validate::Refusal;

/// A shard's counters and histograms (microseconds; batch sizes in records).
#[derive(Debug, Clone)]
pub struct ShardMetrics {
    /// Proposals accepted (`ds_raft_proposals_total`).
    pub proposals_total: u64,
    /// Entries applied (`ds_raft_applied_total`).
    pub applied_total: u64,
    /// Reads answered from the lease (`ds_read_lease_total`).
    pub lease_reads_total: u64,
    /// Heartbeat rounds started to renew a leader's read lease before it ran out
    /// (`ds_lease_renewals_total`).
    pub lease_renewals_total: u64,
    /// Reads that went through ReadIndex (`ds_read_index_total`).
    pub read_index_total: u64,
    /// Requests refused with `ServerBusy`.
    pub busy_total: u64,
    /// Writes refused with `ServerBusy` behind a write fence (`server::fence`;
    /// `ds_write_fenced_total`).
    pub write_fenced_total: u64,
    /// Requests refused with `NotLeader`.
    pub not_leader_total: u64,
    /// Requests refused for a key, element or value over `net::limits`
    /// (`ds_request_over_limit_total`).
    pub over_limit_total: u64,
    /// Ranges stopped because applying an entry broke an engine invariant
    /// (`ds_ranges_stopped_total`).
    pub ranges_stopped_total: u64,
    /// Raft messages received that could not be decoded or had no range here.
    pub bad_raft_messages_total: u64,
    /// Raft messages refused before raft-rs saw them, by [`Refusal`] slot
    /// (`ds_raft_messages_refused_total{reason}`).
    pub raft_refused_total: [u64; Refusal::ALL.len()],
    /// Leader changes seen.
    pub leader_changes_total: u64,
    /// Group commits (`ds_log_flushes_total`).
    pub flushes_total: u64,
    /// Times the shard log became too full for writes that add data: each such episode
    /// ends when the collector or a checkpoint makes room (`ds_log_full_stalls_total`;
    /// `server::log_room`).
    pub log_full_stalls_total: u64,
    /// Ready-loop turns written into the segments the log normally leaves to the key index,
    /// because they fit nowhere else (`ds_log_urgent_turns_total`; `server::log_room`).
    pub log_urgent_turns_total: u64,
    /// Value writes (checkpoint value records, demotions) refused because the shard log had
    /// no room for them beside the Raft entries (`ds_log_room_refusals_total`).
    pub log_room_refusals_total: u64,
    /// Expired keys deleted by TTL sweeps (`ds_ttl_deleted_total`).
    pub expired_deleted_total: u64,
    /// Elements of deleted, expired or overwritten collections reclaimed by sweeps
    /// (`ds_garbage_deleted_total`).
    pub garbage_deleted_total: u64,
    /// Raft entries fetched back from the shard log for raft-rs (`ds_raft_log_fetches_total`).
    pub log_fetches_total: u64,
    /// Checkpoints written (`ds_checkpoints_total`).
    pub checkpoints_total: u64,
    /// Bytes of checkpoints written (`ds_checkpoint_bytes_total`).
    pub checkpoint_bytes_total: u64,
    /// Checkpoints that failed (`ds_checkpoint_errors_total`).
    pub checkpoint_errors_total: u64,
    /// Shard-log segments freed after compaction (`ds_log_segments_freed_total`).
    pub segments_freed_total: u64,
    /// Snapshots sent to replicas (`ds_snapshots_sent_total`).
    pub snapshots_sent_total: u64,
    /// Snapshot transfers that failed (`ds_snapshot_send_failures_total`).
    pub snapshot_send_failures_total: u64,
    /// Snapshots received completely (`ds_snapshots_received_total`).
    pub snapshots_received_total: u64,
    /// Snapshots installed (`ds_snapshots_applied_total`).
    pub snapshots_applied_total: u64,
    /// Snapshot chunks refused (bounds, order, bad bytes) (`ds_snapshot_chunks_refused_total`).
    pub snapshot_chunks_refused_total: u64,
    /// Replicas created on this shard for a leader's message (`ds_replicas_created_total`).
    pub replicas_created_total: u64,
    /// Replicas removed from this shard (`ds_replicas_destroyed_total`).
    pub replicas_destroyed_total: u64,
    /// Ranges created on this shard by a split (`ds_splits_total`).
    pub splits_total: u64,
    /// Right ranges merged into their left neighbour on this shard (`ds_merges_total`).
    pub merges_total: u64,
    /// Merge steps refused (`ds_merges_refused_total`: not adjacent, not co-located, stale).
    pub merges_refused_total: u64,
    /// Splits this shard's leaders reported from a heartbeat because the master's route table
    /// lacked them (their first report was lost with the replica that applied them as
    /// leader) (`ds_splits_reported_late_total`; `server::split::unreported`).
    pub splits_reported_late_total: u64,
    /// Redis keys per database in the shard's replicas, leaders and followers alike
    /// (gauge `ds_redis_keys{db}`; `range::db_keys`).
    pub redis_keys: [u64; net::keyspace::DATABASES as usize],
    /// Those of them with an expiry (gauge `ds_redis_expires{db}`).
    pub redis_expires: [u64; net::keyspace::DATABASES as usize],
    /// Load counted by `crate::load`, added at each heartbeat: read and write requests
    /// (`ds_load_reads_total`, `ds_load_writes_total`) and their bytes
    /// (`ds_load_read_bytes_total`, `ds_load_write_bytes_total`).
    pub load: crate::load::Counts,
    /// Checkpoint latency (scan + write + fsync), µs.
    pub checkpoint_us: Histogram<u64>,
    /// Index mode: how long each synchronous slice of a checkpoint's capture held the shard
    /// (the instant, then each step of `CAPTURE_STEP` keys), µs.
    pub index_capture_step_us: Histogram<u64>,
    /// Propose → apply latency, µs.
    pub propose_apply_us: Histogram<u64>,
    /// ReadIndex read latency, µs.
    pub read_index_us: Histogram<u64>,
    /// Group-commit latency (append + flush), µs.
    pub flush_us: Histogram<u64>,
    /// Records per group commit.
    pub flush_batch_records: Histogram<u64>,
    /// Cold values: reads, demotions, hot and cold bytes.
    pub cold: ColdMetrics,
    /// The memory policy (`server::policy`).
    pub policy: super::policy_state::PolicyMetrics,
    /// The log garbage collector and log space.
    pub gc: super::gc_metrics::GcMetrics,
    /// The Masstree arena's pages and compaction.
    pub arena: super::arena_metrics::ArenaMetrics,
    /// Write backpressure (`server::throttle`).
    pub throttle: super::throttle_state::ThrottleMetrics,
    /// Scripts run at apply time and on the read path.
    pub scripts: crate::range::script::ScriptMetrics,
    /// The key index's figures (index mode; `None` in files mode).
    pub lsm: Option<engines::lsm::LsmMetrics>,
    /// Keys changed since the last index checkpoint (`ds_index_changed_keys`).
    pub index_changed_keys: u64,
    /// Rank indexes of large sorted sets (`range::zrank`), summed over the ranges.
    pub zrank: crate::range::zrank::RankFigures,
}

/// Figures of cold values (`server::cold`, `server::demote`).
#[derive(Debug, Clone)]
pub struct ColdMetrics {
    /// Cold values read from the shard log (`ds_cold_reads_total`).
    pub reads_total: u64,
    /// Bytes of those values (`ds_cold_read_bytes_total`).
    pub read_bytes_total: u64,
    /// Cold reads that failed: device error or checksum (`ds_cold_read_errors_total`).
    pub read_errors_total: u64,
    /// Cold reads whose bytes did not match their checksum (`ds_cold_checksum_failures_total`).
    pub checksum_failures_total: u64,
    /// Cold entries the state machine reached without a load (a bug; `ds_cold_misses_total`).
    pub misses_total: u64,
    /// Entries made cold (`ds_demotions_total`).
    pub demotions_total: u64,
    /// Bytes written to the shard log as demoted values (`ds_demoted_bytes_written_total`).
    pub demoted_bytes_written_total: u64,
    /// Demotion steps that failed (`ds_demotion_errors_total`).
    pub demotion_errors_total: u64,
    /// Values recorded backed by their Raft entry when applied (demoting them writes
    /// nothing; `ds_backed_values_total`).
    pub backed_values_total: u64,
    /// Value bytes of those (`ds_backed_bytes_total`).
    pub backed_bytes_total: u64,
    /// Cold read latency (one device read, checksum included), µs (`ds_cold_read_seconds`).
    pub read_us: Histogram<u64>,
    /// Value bytes held in memory (gauge, `ds_value_bytes{tier="hot"}`).
    pub hot_value_bytes: u64,
    /// Value bytes held only on the device (gauge, `ds_value_bytes{tier="cold"}`).
    pub cold_value_bytes: u64,
    /// Entries held only on the device (gauge, `ds_cold_entries`).
    pub cold_entries: u64,
    /// Bytes the engine's tree holds: nodes, key suffixes, pointers, inline values (gauge,
    /// `ds_engine_memory_bytes`).
    pub engine_memory_bytes: u64,
    /// Live bytes per shard-log segment: (shard, segment, bytes) (gauge,
    /// `ds_log_segment_live_bytes{shard,segment}`).
    pub segment_live_bytes: Vec<(u32, u32, u64)>,
}

impl Default for ColdMetrics {
    fn default() -> Self {
        Self {
            reads_total: 0,
            read_bytes_total: 0,
            read_errors_total: 0,
            checksum_failures_total: 0,
            misses_total: 0,
            demotions_total: 0,
            demoted_bytes_written_total: 0,
            demotion_errors_total: 0,
            backed_values_total: 0,
            backed_bytes_total: 0,
            read_us: hist(),
            hot_value_bytes: 0,
            cold_value_bytes: 0,
            cold_entries: 0,
            engine_memory_bytes: 0,
            segment_live_bytes: Vec::new(),
        }
    }
}

impl ColdMetrics {
    fn merge(&mut self, o: &ColdMetrics) {
        self.reads_total += o.reads_total;
        self.read_bytes_total += o.read_bytes_total;
        self.read_errors_total += o.read_errors_total;
        self.checksum_failures_total += o.checksum_failures_total;
        self.misses_total += o.misses_total;
        self.demotions_total += o.demotions_total;
        self.demoted_bytes_written_total += o.demoted_bytes_written_total;
        self.demotion_errors_total += o.demotion_errors_total;
        self.backed_values_total += o.backed_values_total;
        self.backed_bytes_total += o.backed_bytes_total;
        let _ = self.read_us.add(&o.read_us);
        self.hot_value_bytes += o.hot_value_bytes;
        self.cold_value_bytes += o.cold_value_bytes;
        self.cold_entries += o.cold_entries;
        self.engine_memory_bytes += o.engine_memory_bytes;
        self.segment_live_bytes
            .extend_from_slice(&o.segment_live_bytes);
    }
}

fn hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 2).expect("static histogram bounds are valid")
}

impl Default for ShardMetrics {
    fn default() -> Self {
        Self {
            proposals_total: 0,
            applied_total: 0,
            lease_reads_total: 0,
            lease_renewals_total: 0,
            read_index_total: 0,
            busy_total: 0,
            write_fenced_total: 0,
            over_limit_total: 0,
            ranges_stopped_total: 0,
            not_leader_total: 0,
            bad_raft_messages_total: 0,
            raft_refused_total: [0; Refusal::ALL.len()],
            leader_changes_total: 0,
            flushes_total: 0,
            log_full_stalls_total: 0,
            log_urgent_turns_total: 0,
            log_room_refusals_total: 0,
            expired_deleted_total: 0,
            garbage_deleted_total: 0,
            log_fetches_total: 0,
            checkpoints_total: 0,
            checkpoint_bytes_total: 0,
            checkpoint_errors_total: 0,
            segments_freed_total: 0,
            snapshots_sent_total: 0,
            snapshot_send_failures_total: 0,
            snapshots_received_total: 0,
            snapshots_applied_total: 0,
            snapshot_chunks_refused_total: 0,
            replicas_created_total: 0,
            replicas_destroyed_total: 0,
            splits_total: 0,
            merges_total: 0,
            merges_refused_total: 0,
            splits_reported_late_total: 0,
            redis_keys: Default::default(),
            redis_expires: Default::default(),
            load: crate::load::Counts::default(),
            checkpoint_us: hist(),
            index_capture_step_us: hist(),
            propose_apply_us: hist(),
            read_index_us: hist(),
            flush_us: hist(),
            flush_batch_records: hist(),
            cold: ColdMetrics::default(),
            policy: super::policy_state::PolicyMetrics::default(),
            gc: super::gc_metrics::GcMetrics::default(),
            arena: super::arena_metrics::ArenaMetrics::default(),
            throttle: super::throttle_state::ThrottleMetrics::default(),
            scripts: crate::range::script::ScriptMetrics::default(),
            lsm: None,
            index_changed_keys: 0,
            zrank: Default::default(),
        }
    }
}

impl ShardMetrics {
    /// Records `v` (saturated into the histogram's range).
    pub fn record(h: &mut Histogram<u64>, v: u64) {
        h.saturating_record(v.max(1));
    }

    /// Adds another shard's figures into these.
    pub fn merge(&mut self, o: &ShardMetrics) {
        self.proposals_total += o.proposals_total;
        self.applied_total += o.applied_total;
        self.lease_reads_total += o.lease_reads_total;
        self.lease_renewals_total += o.lease_renewals_total;
        self.read_index_total += o.read_index_total;
        self.busy_total += o.busy_total;
        self.write_fenced_total += o.write_fenced_total;
        self.over_limit_total += o.over_limit_total;
        self.ranges_stopped_total += o.ranges_stopped_total;
        self.not_leader_total += o.not_leader_total;
        self.bad_raft_messages_total += o.bad_raft_messages_total;
        for (a, b) in self.raft_refused_total.iter_mut().zip(o.raft_refused_total) {
            *a += b;
        }
        self.leader_changes_total += o.leader_changes_total;
        self.flushes_total += o.flushes_total;
        self.log_full_stalls_total += o.log_full_stalls_total;
        self.log_urgent_turns_total += o.log_urgent_turns_total;
        self.log_room_refusals_total += o.log_room_refusals_total;
        self.expired_deleted_total += o.expired_deleted_total;
        self.garbage_deleted_total += o.garbage_deleted_total;
        self.log_fetches_total += o.log_fetches_total;
        self.checkpoints_total += o.checkpoints_total;
        self.checkpoint_bytes_total += o.checkpoint_bytes_total;
        self.checkpoint_errors_total += o.checkpoint_errors_total;
        self.segments_freed_total += o.segments_freed_total;
        self.snapshots_sent_total += o.snapshots_sent_total;
        self.snapshot_send_failures_total += o.snapshot_send_failures_total;
        self.snapshots_received_total += o.snapshots_received_total;
        self.snapshots_applied_total += o.snapshots_applied_total;
        self.snapshot_chunks_refused_total += o.snapshot_chunks_refused_total;
        self.replicas_created_total += o.replicas_created_total;
        self.replicas_destroyed_total += o.replicas_destroyed_total;
        self.splits_total += o.splits_total;
        self.merges_total += o.merges_total;
        self.merges_refused_total += o.merges_refused_total;
        self.splits_reported_late_total += o.splits_reported_late_total;
        for (a, b) in self.redis_keys.iter_mut().zip(o.redis_keys) {
            *a += b;
        }
        for (a, b) in self.redis_expires.iter_mut().zip(o.redis_expires) {
            *a += b;
        }
        self.load.add(&o.load);
        let _ = self.checkpoint_us.add(&o.checkpoint_us);
        let _ = self.index_capture_step_us.add(&o.index_capture_step_us);
        let _ = self.propose_apply_us.add(&o.propose_apply_us);
        let _ = self.read_index_us.add(&o.read_index_us);
        let _ = self.flush_us.add(&o.flush_us);
        let _ = self.flush_batch_records.add(&o.flush_batch_records);
        self.cold.merge(&o.cold);
        self.policy.merge(&o.policy);
        self.gc.merge(&o.gc);
        self.arena.merge(&o.arena);
        self.throttle.merge(&o.throttle);
        self.scripts.merge(&o.scripts);
        self.index_changed_keys += o.index_changed_keys;
        self.zrank.add(&o.zrank);
        if let Some(b) = &o.lsm {
            merge_lsm(self.lsm.get_or_insert_with(Default::default), b);
        }
    }

    /// A one-line summary (p50/p99/p999 in µs).
    pub fn summary(&self) -> String {
        let q = |h: &Histogram<u64>| {
            format!(
                "{}/{}/{}",
                h.value_at_quantile(0.5),
                h.value_at_quantile(0.99),
                h.value_at_quantile(0.999)
            )
        };
        format!(
            "proposals={} applied={} lease_reads={} read_index={} busy={} not_leader={} \
             bad_raft={} refused_raft={} leader_changes={} flushes={} log_full_stalls={} ttl_deleted={} propose_apply_us={} flush_us={} \
             records_per_flush(mean)={:.1} checkpoints={} segments_freed={} snapshots_sent={} snapshot_send_failures={} \
             snapshots_received={} snapshots_applied={} snapshot_chunks_refused={} replicas_created={} splits={}",
            self.proposals_total,
            self.applied_total,
            self.lease_reads_total,
            self.read_index_total,
            self.busy_total,
            self.not_leader_total,
            self.bad_raft_messages_total,
            self.raft_refused_total.iter().sum::<u64>(),
            self.leader_changes_total,
            self.flushes_total,
            self.log_full_stalls_total,
            self.expired_deleted_total,
            q(&self.propose_apply_us),
            q(&self.flush_us),
            self.flush_batch_records.mean(),
            self.checkpoints_total,
            self.segments_freed_total,
            self.snapshots_sent_total,
            self.snapshot_send_failures_total,
            self.snapshots_received_total,
            self.snapshots_applied_total,
            self.snapshot_chunks_refused_total,
            self.replicas_created_total,
            self.splits_total
        )
    }
}

/// Adds one shard's key-index figures into another's.
fn merge_lsm(a: &mut engines::lsm::LsmMetrics, b: &engines::lsm::LsmMetrics) {
    a.runs += b.runs;
    a.entries += b.entries;
    a.written_bytes_total += b.written_bytes_total;
    a.checkpoints_total += b.checkpoints_total;
    a.compactions_total += b.compactions_total;
    a.compactions_deferred_total += b.compactions_deferred_total;
    a.lookups_total += b.lookups_total;
    a.bloom_negatives_total += b.bloom_negatives_total;
    a.block_reads_total += b.block_reads_total;
    a.checksum_failures_total += b.checksum_failures_total;
    a.segments_freed_total += b.segments_freed_total;
    let _ = a.checkpoint_duration_ns.add(&b.checkpoint_duration_ns);
    let _ = a.compaction_duration_ns.add(&b.compaction_duration_ns);
}
