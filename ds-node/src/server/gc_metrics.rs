//! Figures of the log garbage collector (`server::gc`) and of log space, for `/metrics`.

use hdrhistogram::Histogram;

/// Counters of the collector and gauges of the shard log's space (summed over shards).
#[derive(Debug, Clone)]
pub struct GcMetrics {
    /// Passes run (`ds_gc_passes_total`).
    pub passes_total: u64,
    /// Passes that failed (`ds_gc_errors_total`).
    pub errors_total: u64,
    /// Segments a pass chose as victims (`ds_gc_victims_total`).
    pub victims_total: u64,
    /// Live value bytes moved out of victims (`ds_gc_moved_bytes_total`).
    pub moved_bytes_total: u64,
    /// Value bytes read from the device to move them (`ds_gc_read_bytes_total`).
    pub read_bytes_total: u64,
    /// Record bytes the collector appended (`ds_gc_written_bytes_total`).
    pub written_bytes_total: u64,
    /// Copies made dead by a write during the pass (`ds_gc_lost_races_total`).
    pub lost_races_total: u64,
    /// Backed hot values whose pointer a pass dropped instead of copying them
    /// (`ds_gc_unbacked_total`).
    pub unbacked_total: u64,
    /// Value bytes those pointers named (`ds_gc_unbacked_bytes_total`).
    pub unbacked_bytes_total: u64,
    /// Checkpoints the collector asked for to drop a victim's last reference
    /// (`ds_gc_checkpoints_total`).
    pub checkpoints_total: u64,
    /// Segments the collector freed (`ds_gc_segments_freed_total`).
    pub segments_freed_total: u64,
    /// Bytes of those segments (`ds_gc_freed_bytes_total`).
    pub freed_bytes_total: u64,
    /// Duration of a pass, µs (`ds_gc_pass_seconds`).
    pub pass_us: Histogram<u64>,
    /// Bytes the shard log's segments take (gauge, `ds_log_used_bytes`).
    pub log_used_bytes: u64,
    /// Bytes live pointers name (gauge, `ds_log_live_bytes`).
    pub log_live_bytes: u64,
    /// Bytes the shard log can still take without a segment beyond its spares (gauge,
    /// `ds_log_room_bytes`; `engines::vlog::Vlog::room_bytes`).
    pub log_room_bytes: u64,
    /// Shards whose ready loop is holding Raft entries back for want of log room (gauge,
    /// `ds_log_stalled_shards`; `server::log_room`).
    pub log_stalled_shards: u64,
    /// Bytes written to the device by the shard log (`ds_log_device_written_bytes_total`).
    pub device_written_bytes: u64,
    /// Record bytes appended by the write path: everything but demoted and relocated
    /// values (`ds_log_user_appended_bytes_total`).
    pub user_appended_bytes: u64,
    /// Writes refused because the shard log reached `maxdisksize`
    /// (`ds_disk_full_refusals_total`).
    pub disk_full_refusals_total: u64,
    /// Shards refusing writes for `maxdisksize` now (gauge, `ds_disk_full_shards`).
    pub disk_full_shards: u64,
}

impl Default for GcMetrics {
    fn default() -> Self {
        Self {
            passes_total: 0,
            errors_total: 0,
            victims_total: 0,
            moved_bytes_total: 0,
            read_bytes_total: 0,
            written_bytes_total: 0,
            lost_races_total: 0,
            unbacked_total: 0,
            unbacked_bytes_total: 0,
            checkpoints_total: 0,
            segments_freed_total: 0,
            freed_bytes_total: 0,
            pass_us: Histogram::new_with_bounds(1, 3_600_000_000, 2)
                .expect("valid histogram bounds"),
            log_used_bytes: 0,
            log_room_bytes: 0,
            log_stalled_shards: 0,
            log_live_bytes: 0,
            device_written_bytes: 0,
            user_appended_bytes: 0,
            disk_full_refusals_total: 0,
            disk_full_shards: 0,
        }
    }
}

impl GcMetrics {
    /// Adds another shard's figures.
    pub fn merge(&mut self, o: &GcMetrics) {
        self.passes_total += o.passes_total;
        self.errors_total += o.errors_total;
        self.victims_total += o.victims_total;
        self.moved_bytes_total += o.moved_bytes_total;
        self.read_bytes_total += o.read_bytes_total;
        self.written_bytes_total += o.written_bytes_total;
        self.lost_races_total += o.lost_races_total;
        self.unbacked_total += o.unbacked_total;
        self.unbacked_bytes_total += o.unbacked_bytes_total;
        self.checkpoints_total += o.checkpoints_total;
        self.segments_freed_total += o.segments_freed_total;
        self.freed_bytes_total += o.freed_bytes_total;
        let _ = self.pass_us.add(&o.pass_us);
        self.log_used_bytes += o.log_used_bytes;
        self.log_room_bytes += o.log_room_bytes;
        self.log_stalled_shards += o.log_stalled_shards;
        self.log_live_bytes += o.log_live_bytes;
        self.device_written_bytes += o.device_written_bytes;
        self.user_appended_bytes += o.user_appended_bytes;
        self.disk_full_refusals_total += o.disk_full_refusals_total;
        self.disk_full_shards += o.disk_full_shards;
    }

    /// Device bytes written per byte the write path appended (0 before any write).
    pub fn write_amplification(&self) -> f64 {
        if self.user_appended_bytes == 0 {
            0.0
        } else {
            self.device_written_bytes as f64 / self.user_appended_bytes as f64
        }
    }

    /// Appends the Prometheus text of these figures (the pass-duration summary is the
    /// caller's, with the other summaries).
    pub fn render(&self, s: &mut String) {
        for (name, v) in [
            ("ds_gc_passes_total", self.passes_total),
            ("ds_gc_errors_total", self.errors_total),
            ("ds_gc_victims_total", self.victims_total),
            ("ds_gc_moved_bytes_total", self.moved_bytes_total),
            ("ds_gc_read_bytes_total", self.read_bytes_total),
            ("ds_gc_written_bytes_total", self.written_bytes_total),
            ("ds_gc_lost_races_total", self.lost_races_total),
            ("ds_gc_unbacked_total", self.unbacked_total),
            ("ds_gc_unbacked_bytes_total", self.unbacked_bytes_total),
            ("ds_gc_checkpoints_total", self.checkpoints_total),
            ("ds_gc_segments_freed_total", self.segments_freed_total),
            ("ds_gc_freed_bytes_total", self.freed_bytes_total),
            (
                "ds_log_device_written_bytes_total",
                self.device_written_bytes,
            ),
            ("ds_log_user_appended_bytes_total", self.user_appended_bytes),
            ("ds_disk_full_refusals_total", self.disk_full_refusals_total),
        ] {
            s.push_str(&format!("# TYPE {name} counter\n{name} {v}\n"));
        }
        for (name, v) in [
            ("ds_log_used_bytes", self.log_used_bytes),
            ("ds_log_room_bytes", self.log_room_bytes),
            ("ds_log_stalled_shards", self.log_stalled_shards),
            ("ds_log_live_bytes", self.log_live_bytes),
            ("ds_disk_full_shards", self.disk_full_shards),
        ] {
            s.push_str(&format!("# TYPE {name} gauge\n{name} {v}\n"));
        }
        s.push_str(&format!(
            "# TYPE ds_log_write_amplification gauge\nds_log_write_amplification {:.3}\n",
            self.write_amplification()
        ));
    }
}
