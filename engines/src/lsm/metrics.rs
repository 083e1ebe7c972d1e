//! Counters and histograms of one key index. Names follow `ds_lsm_<what>_<unit>` when
//! exported; here they are plain fields the shard's metrics exporter reads.

use hdrhistogram::Histogram;

/// Counters and duration histograms of a key index.
#[derive(Debug, Clone)]
pub struct LsmMetrics {
    /// Live runs now (`ds_lsm_runs`).
    pub runs: u64,
    /// Entries in live runs now, tombstones included (`ds_lsm_entries`).
    pub entries: u64,
    /// Bytes written to the device: run frames and manifest records
    /// (`ds_lsm_written_bytes_total`).
    pub written_bytes_total: u64,
    /// Checkpoints completed (`ds_lsm_checkpoints_total`).
    pub checkpoints_total: u64,
    /// Compactions completed (`ds_lsm_compactions_total`).
    pub compactions_total: u64,
    /// Compactions the policy wanted that did not fit in the free segments above the
    /// reserve (`ds_lsm_compactions_deferred_total`).
    pub compactions_deferred_total: u64,
    /// Point lookups (`ds_lsm_lookups_total`).
    pub lookups_total: u64,
    /// Run probes a bloom filter answered "absent" without I/O (`ds_lsm_bloom_negatives_total`).
    pub bloom_negatives_total: u64,
    /// Data blocks read from the device, by lookups and iterators (`ds_lsm_block_reads_total`).
    pub block_reads_total: u64,
    /// Frames or manifest copies whose checksum or structure was wrong
    /// (`ds_lsm_checksum_failures_total`).
    pub checksum_failures_total: u64,
    /// Segments freed (retired runs, orphans, old manifest segments).
    pub segments_freed_total: u64,
    /// Checkpoint duration (run write + manifest), nanoseconds.
    pub checkpoint_duration_ns: Histogram<u64>,
    /// Compaction duration (merge + manifest), nanoseconds.
    pub compaction_duration_ns: Histogram<u64>,
}

fn hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000_000, 3)
        .expect("constant histogram bounds are valid")
}

impl Default for LsmMetrics {
    fn default() -> Self {
        Self {
            runs: 0,
            entries: 0,
            written_bytes_total: 0,
            checkpoints_total: 0,
            compactions_total: 0,
            compactions_deferred_total: 0,
            lookups_total: 0,
            bloom_negatives_total: 0,
            block_reads_total: 0,
            checksum_failures_total: 0,
            segments_freed_total: 0,
            checkpoint_duration_ns: hist(),
            compaction_duration_ns: hist(),
        }
    }
}

impl LsmMetrics {
    /// Records a duration in a histogram, clamping it into the histogram's range.
    pub(crate) fn record(h: &mut Histogram<u64>, d: std::time::Duration) {
        let v = u64::try_from(d.as_nanos())
            .unwrap_or(u64::MAX)
            .clamp(1, h.high());
        h.saturating_record(v);
    }
}
