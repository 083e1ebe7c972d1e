//! The node's admin endpoint: `GET /metrics` in the Prometheus text format, served by one
//! plain thread (off the shards' data path) from the figures the shards publish.
#![allow(
    clippy::disallowed_types,
    reason = "the admin thread is not a shard; each shard locks its publication slot once per 200 ms"
)]

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hdrhistogram::Histogram;

use crate::server::ShardMetrics;

/// Published figures of each shard.
pub type Published = Vec<Arc<Mutex<Option<ShardMetrics>>>>;

/// Merges the published figures of every shard.
pub fn merged(published: &Published) -> ShardMetrics {
    let mut all = ShardMetrics::default();
    for m in published {
        if let Ok(g) = m.lock() {
            if let Some(s) = g.as_ref() {
                all.merge(s);
            }
        }
    }
    all
}

fn summary(out: &mut String, name: &str, h: &Histogram<u64>, scale: f64) {
    for q in [0.5, 0.99, 0.999] {
        out.push_str(&format!(
            "{name}{{quantile=\"{q}\"}} {}\n",
            h.value_at_quantile(q) as f64 * scale
        ));
    }
    out.push_str(&format!("{name}_count {}\n", h.len()));
}

/// Renders the metrics in the Prometheus text format.
pub fn render(m: &ShardMetrics) -> String {
    let mut s = String::new();
    for (name, v) in [
        ("ds_raft_proposals_total", m.proposals_total),
        ("ds_raft_applied_total", m.applied_total),
        ("ds_read_lease_total", m.lease_reads_total),
        ("ds_read_index_total", m.read_index_total),
        ("ds_request_busy_total", m.busy_total),
        ("ds_request_not_leader_total", m.not_leader_total),
        ("ds_request_over_limit_total", m.over_limit_total),
        ("ds_ranges_stopped_total", m.ranges_stopped_total),
        ("ds_raft_bad_messages_total", m.bad_raft_messages_total),
        ("ds_raft_leader_changes_total", m.leader_changes_total),
        ("ds_log_flushes_total", m.flushes_total),
        ("ds_ttl_deleted_total", m.expired_deleted_total),
        ("ds_garbage_deleted_total", m.garbage_deleted_total),
        ("ds_raft_log_fetches_total", m.log_fetches_total),
        ("ds_checkpoints_total", m.checkpoints_total),
        ("ds_checkpoint_bytes_total", m.checkpoint_bytes_total),
        ("ds_checkpoint_errors_total", m.checkpoint_errors_total),
        ("ds_log_segments_freed_total", m.segments_freed_total),
        ("ds_snapshots_sent_total", m.snapshots_sent_total),
        (
            "ds_snapshot_send_failures_total",
            m.snapshot_send_failures_total,
        ),
        ("ds_snapshots_received_total", m.snapshots_received_total),
        ("ds_snapshots_applied_total", m.snapshots_applied_total),
        (
            "ds_snapshot_chunks_refused_total",
            m.snapshot_chunks_refused_total,
        ),
        ("ds_replicas_created_total", m.replicas_created_total),
        ("ds_replicas_destroyed_total", m.replicas_destroyed_total),
        ("ds_splits_total", m.splits_total),
        ("ds_load_reads_total", m.load.reads),
        ("ds_load_writes_total", m.load.writes),
        ("ds_load_read_bytes_total", m.load.read_bytes),
        ("ds_load_write_bytes_total", m.load.write_bytes),
    ] {
        s.push_str(&format!("# TYPE {name} counter\n{name} {v}\n"));
    }
    s.push_str("# TYPE ds_raft_messages_refused_total counter\n");
    for r in crate::server::validate::Refusal::ALL {
        s.push_str(&format!(
            "ds_raft_messages_refused_total{{reason=\"{}\"}} {}\n",
            r.label(),
            m.raft_refused_total[r.index()]
        ));
    }
    summary(
        &mut s,
        "ds_raft_propose_apply_seconds",
        &m.propose_apply_us,
        1e-6,
    );
    summary(&mut s, "ds_read_index_seconds", &m.read_index_us, 1e-6);
    summary(&mut s, "ds_log_flush_seconds", &m.flush_us, 1e-6);
    summary(&mut s, "ds_checkpoint_seconds", &m.checkpoint_us, 1e-6);
    summary(
        &mut s,
        "ds_log_flush_batch_records",
        &m.flush_batch_records,
        1.0,
    );
    s
}

/// Serves `GET /metrics` on `listener` until `stop` is set.
pub fn serve(listener: TcpListener, published: Published, stop: Arc<AtomicBool>) {
    let _ = listener.set_nonblocking(true);
    while !stop.load(Ordering::SeqCst) {
        let Ok((mut s, _)) = listener.accept() else {
            std::thread::park_timeout(Duration::from_millis(50));
            continue;
        };
        let _ = s.set_nonblocking(false);
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        let mut line = String::new();
        let Ok(reader) = s.try_clone() else { continue };
        if BufReader::new(reader).read_line(&mut line).is_err() {
            continue;
        }
        let (status, body) = if line.starts_with("GET /metrics") {
            ("200 OK", render(&merged(&published)))
        } else {
            ("404 Not Found", "not found\n".to_string())
        };
        let _ = write!(
            s,
            "HTTP/1.1 {status}\r\ncontent-type: text/plain; version=0.0.4\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
    }
}
