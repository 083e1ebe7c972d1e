//! Counters and histograms of one shard log. Names follow `ds_vlog_<what>_<unit>` when
//! exported; here they are plain fields the shard's metrics exporter reads.

use hdrhistogram::Histogram;

/// Counters and latency/size histograms of a shard log.
#[derive(Debug, Clone)]
pub struct VlogMetrics {
    /// Records appended and acknowledged (`ds_vlog_appended_records_total`).
    pub appended_records_total: u64,
    /// Record bytes appended, headers and padding included (`ds_vlog_appended_bytes_total`).
    pub appended_bytes_total: u64,
    /// Bytes written to the device, block padding and rewritten tail blocks included.
    pub written_bytes_total: u64,
    /// Flushes issued by commits (`ds_vlog_flushes_total`).
    pub flushes_total: u64,
    /// Commit batches that failed (the log is poisoned after the first).
    pub failed_batches_total: u64,
    /// Reads served from the entry cache.
    pub cache_hits_total: u64,
    /// Entry reads that went to the device.
    pub cache_misses_total: u64,
    /// Acknowledged Raft entries written as several fragment records
    /// (`ds_vlog_fragmented_entries_total`).
    pub fragmented_entries_total: u64,
    /// Record bytes of durable entry fragments, headers and padding included
    /// (`ds_vlog_fragment_bytes_total`).
    pub fragment_bytes_total: u64,
    /// Segments taken from the store.
    pub segments_allocated_total: u64,
    /// Segments given back to the store.
    pub segments_freed_total: u64,
    /// Records per commit batch.
    pub batch_records: Histogram<u64>,
    /// Record bytes per commit batch.
    pub batch_bytes: Histogram<u64>,
    /// Append latency, nanoseconds: from the append handing its records in to the moment the
    /// batch completing it was durable and applied (one clock read per append and one per
    /// batch; the wake-up of the appender after that is not included).
    pub append_latency_ns: Histogram<u64>,
    /// Device read latency of pointer and entry reads, nanoseconds.
    pub read_latency_ns: Histogram<u64>,
}

fn hist(max: u64) -> Histogram<u64> {
    Histogram::new_with_bounds(1, max, 3).expect("constant histogram bounds are valid")
}

impl Default for VlogMetrics {
    fn default() -> Self {
        Self {
            appended_records_total: 0,
            appended_bytes_total: 0,
            written_bytes_total: 0,
            flushes_total: 0,
            failed_batches_total: 0,
            cache_hits_total: 0,
            cache_misses_total: 0,
            fragmented_entries_total: 0,
            fragment_bytes_total: 0,
            segments_allocated_total: 0,
            segments_freed_total: 0,
            batch_records: hist(1 << 24),
            batch_bytes: hist(1 << 36),
            append_latency_ns: hist(3_600_000_000_000),
            read_latency_ns: hist(3_600_000_000_000),
        }
    }
}

impl VlogMetrics {
    /// Records a value in a histogram, clamping it into the histogram's range.
    pub(crate) fn record(h: &mut Histogram<u64>, v: u64) {
        let v = v.clamp(1, h.high());
        h.saturating_record(v);
    }
}
