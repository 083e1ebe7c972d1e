//! The node's admin endpoint, served by one plain thread (off the shards' data path):
//! `GET /metrics` in the Prometheus text format from the figures the shards publish, and
//! `POST /demote?shard=N&fraction=F` (both optional), which makes that share of the shards'
//! hot value bytes cold (`server::demote`) and answers once they are done.
#![allow(
    clippy::disallowed_types,
    reason = "the admin thread is not a shard; each shard locks its publication slot once per 200 ms"
)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hdrhistogram::Histogram;

use crate::server::ShardMetrics;
use crate::server::demote::{Request as DemoteRequest, Requests};

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

/// The key index's figures (index mode only): `ds_lsm_*` and the changed-key gauge.
fn render_lsm(s: &mut String, l: &engines::lsm::LsmMetrics, changed: u64) {
    for (name, v) in [
        ("ds_lsm_runs", l.runs),
        ("ds_lsm_entries", l.entries),
        ("ds_index_changed_keys", changed),
    ] {
        s.push_str(&format!("# TYPE {name} gauge\n{name} {v}\n"));
    }
    for (name, v) in [
        ("ds_lsm_written_bytes_total", l.written_bytes_total),
        ("ds_lsm_checkpoints_total", l.checkpoints_total),
        ("ds_lsm_compactions_total", l.compactions_total),
        (
            "ds_lsm_compactions_deferred_total",
            l.compactions_deferred_total,
        ),
        ("ds_lsm_lookups_total", l.lookups_total),
        ("ds_lsm_bloom_negatives_total", l.bloom_negatives_total),
        ("ds_lsm_block_reads_total", l.block_reads_total),
        ("ds_lsm_checksum_failures_total", l.checksum_failures_total),
        ("ds_lsm_segments_freed_total", l.segments_freed_total),
    ] {
        s.push_str(&format!("# TYPE {name} counter\n{name} {v}\n"));
    }
    summary(
        s,
        "ds_lsm_checkpoint_seconds",
        &l.checkpoint_duration_ns,
        1e-9,
    );
    summary(
        s,
        "ds_lsm_compaction_seconds",
        &l.compaction_duration_ns,
        1e-9,
    );
}

/// Renders the metrics in the Prometheus text format.
pub fn render(m: &ShardMetrics) -> String {
    let mut s = String::new();
    for (name, v) in [
        ("ds_raft_proposals_total", m.proposals_total),
        ("ds_raft_applied_total", m.applied_total),
        ("ds_read_lease_total", m.lease_reads_total),
        ("ds_lease_renewals_total", m.lease_renewals_total),
        ("ds_read_index_total", m.read_index_total),
        ("ds_request_busy_total", m.busy_total),
        ("ds_write_fenced_total", m.write_fenced_total),
        ("ds_request_not_leader_total", m.not_leader_total),
        ("ds_request_over_limit_total", m.over_limit_total),
        ("ds_ranges_stopped_total", m.ranges_stopped_total),
        ("ds_raft_bad_messages_total", m.bad_raft_messages_total),
        ("ds_raft_leader_changes_total", m.leader_changes_total),
        ("ds_log_flushes_total", m.flushes_total),
        ("ds_log_full_stalls_total", m.log_full_stalls_total),
        ("ds_log_urgent_turns_total", m.log_urgent_turns_total),
        ("ds_log_room_refusals_total", m.log_room_refusals_total),
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
        ("ds_merges_total", m.merges_total),
        ("ds_merges_refused_total", m.merges_refused_total),
        (
            "ds_splits_reported_late_total",
            m.splits_reported_late_total,
        ),
        ("ds_load_reads_total", m.load.reads),
        ("ds_load_writes_total", m.load.writes),
        ("ds_load_read_bytes_total", m.load.read_bytes),
        ("ds_load_write_bytes_total", m.load.write_bytes),
    ] {
        s.push_str(&format!("# TYPE {name} counter\n{name} {v}\n"));
    }
    for (name, v) in [
        ("ds_redis_keys", &m.redis_keys),
        ("ds_redis_expires", &m.redis_expires),
    ] {
        s.push_str(&format!("# TYPE {name} gauge\n"));
        for (db, n) in v.iter().enumerate() {
            s.push_str(&format!("{name}{{db=\"{db}\"}} {n}\n"));
        }
    }
    s.push_str("# TYPE ds_raft_messages_refused_total counter\n");
    for r in crate::server::validate::Refusal::ALL {
        s.push_str(&format!(
            "ds_raft_messages_refused_total{{reason=\"{}\"}} {}\n",
            r.label(),
            m.raft_refused_total[r.index()]
        ));
    }
    net::transport::HandshakeFailure::write_prometheus("ds", &mut s);
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
        "ds_index_capture_step_seconds",
        &m.index_capture_step_us,
        1e-6,
    );
    summary(
        &mut s,
        "ds_log_flush_batch_records",
        &m.flush_batch_records,
        1.0,
    );
    render_cold(&mut s, &m.cold);
    render_policy(&mut s, &m.policy);
    m.gc.render(&mut s);
    m.arena.render(&mut s);
    for (name, v) in [
        ("ds_scripts_total", m.scripts.runs_total),
        ("ds_script_errors_total", m.scripts.errors_total),
    ] {
        s.push_str(&format!("# TYPE {name} counter\n{name} {v}\n"));
    }
    summary(&mut s, "ds_script_seconds", &m.scripts.run_us, 1e-6);
    m.zrank.render(&mut s);
    summary(&mut s, "ds_gc_pass_seconds", &m.gc.pass_us, 1e-6);
    if let Some(l) = &m.lsm {
        render_lsm(&mut s, l, m.index_changed_keys);
    }
    m.throttle.render(&mut s);
    summary(
        &mut s,
        "ds_write_throttle_seconds",
        &m.throttle.wait_us,
        1e-6,
    );
    s
}

fn render_policy(s: &mut String, p: &crate::server::policy::PolicyMetrics) {
    for (name, v) in [
        ("ds_policy_demotions_total", p.demotions_total),
        ("ds_policy_demoted_bytes_total", p.demoted_bytes_total),
        ("ds_policy_steps_total", p.steps_total),
        ("ds_policy_second_chances_total", p.second_chances_total),
        ("ds_policy_stuck_total", p.stuck_total),
        ("ds_policy_errors_total", p.errors_total),
        ("ds_promotions_total", p.promotions_total),
        ("ds_cold_hits_total", p.transient_loads_total),
        ("ds_transient_drops_total", p.transient_drops_total),
    ] {
        s.push_str(&format!("# TYPE {name} counter\n{name} {v}\n"));
    }
    for (name, v) in [
        ("ds_maxmemory_bytes", p.budget_bytes),
        ("ds_memory_accounted_bytes", p.accounted_bytes),
        ("ds_policy_behind", p.behind),
    ] {
        s.push_str(&format!("# TYPE {name} gauge\n{name} {v}\n"));
    }
}

fn render_cold(s: &mut String, c: &crate::server::metrics::ColdMetrics) {
    for (name, v) in [
        ("ds_cold_reads_total", c.reads_total),
        ("ds_cold_read_bytes_total", c.read_bytes_total),
        ("ds_cold_read_errors_total", c.read_errors_total),
        ("ds_cold_checksum_failures_total", c.checksum_failures_total),
        ("ds_cold_misses_total", c.misses_total),
        ("ds_demotions_total", c.demotions_total),
        (
            "ds_demoted_bytes_written_total",
            c.demoted_bytes_written_total,
        ),
        ("ds_demotion_errors_total", c.demotion_errors_total),
        ("ds_backed_values_total", c.backed_values_total),
        ("ds_backed_bytes_total", c.backed_bytes_total),
    ] {
        s.push_str(&format!("# TYPE {name} counter\n{name} {v}\n"));
    }
    s.push_str("# TYPE ds_value_bytes gauge\n");
    s.push_str(&format!(
        "ds_value_bytes{{tier=\"hot\"}} {}\n",
        c.hot_value_bytes
    ));
    s.push_str(&format!(
        "ds_value_bytes{{tier=\"cold\"}} {}\n",
        c.cold_value_bytes
    ));
    s.push_str(&format!(
        "# TYPE ds_cold_entries gauge\nds_cold_entries {}\n",
        c.cold_entries
    ));
    s.push_str(&format!(
        "# TYPE ds_engine_memory_bytes gauge\nds_engine_memory_bytes {}\n",
        c.engine_memory_bytes
    ));
    s.push_str("# TYPE ds_log_segment_live_bytes gauge\n");
    for (shard, seg, bytes) in &c.segment_live_bytes {
        s.push_str(&format!(
            "ds_log_segment_live_bytes{{shard=\"{shard}\",segment=\"{seg}\"}} {bytes}\n"
        ));
    }
    summary(s, "ds_cold_read_seconds", &c.read_us, 1e-6);
}

/// How long `POST /demote` waits for the shards.
const DEMOTE_TIMEOUT: Duration = Duration::from_secs(600);

/// `POST /demote?shard=N&fraction=F` (both optional: every shard, everything): queues a
/// demotion on the shards and waits for their reports.
fn demote(target: &str, demotes: &[Requests]) -> (&'static str, String) {
    let mut shard: Option<usize> = None;
    let mut fraction = 1.0f64;
    let query = target.split_once('?').map_or("", |(_, q)| q);
    for kv in query.split('&').filter(|s| !s.is_empty()) {
        match kv.split_once('=') {
            Some(("shard", v)) => match v.parse() {
                Ok(n) if n < demotes.len() => shard = Some(n),
                _ => return ("400 Bad Request", format!("no shard {v}\n")),
            },
            Some(("fraction", v)) => match v.parse::<f64>() {
                Ok(f) if f > 0.0 && f <= 1.0 => fraction = f,
                _ => {
                    return (
                        "400 Bad Request",
                        format!("fraction must be in (0, 1]: {v}\n"),
                    );
                }
            },
            _ => return ("400 Bad Request", format!("unknown parameter {kv}\n")),
        }
    }
    let shards: Vec<usize> = shard.map_or_else(|| (0..demotes.len()).collect(), |s| vec![s]);
    let mut waits = Vec::new();
    for i in shards {
        let (reply, rx) = std::sync::mpsc::channel();
        if let Ok(mut q) = demotes[i].lock() {
            q.push_back(DemoteRequest { fraction, reply });
        }
        waits.push((i, rx));
    }
    let mut body = String::new();
    let mut status = "200 OK";
    for (i, rx) in waits {
        match rx.recv_timeout(DEMOTE_TIMEOUT) {
            Ok(Ok(r)) => body.push_str(&format!(
                "shard={i} entries={} bytes={} written_bytes={} steps={}\n",
                r.entries, r.bytes, r.written_bytes, r.steps
            )),
            Ok(Err(e)) => {
                status = "500 Internal Server Error";
                body.push_str(&format!("shard={i} error={e}\n"));
            }
            Err(_) => {
                status = "504 Gateway Timeout";
                body.push_str(&format!("shard={i} error=no answer\n"));
            }
        }
    }
    (status, body)
}

/// Longest request head read (request line and headers).
const MAX_HEAD_BYTES: usize = 8 * 1024;

/// The request line and headers of `s` (up to the blank line, at most [`MAX_HEAD_BYTES`]).
fn read_head(s: &std::net::TcpStream) -> Option<String> {
    let mut reader = BufReader::new(s.try_clone().ok()?).take(MAX_HEAD_BYTES as u64);
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return (!head.is_empty()).then_some(head);
        }
        let end = line == "\r\n" || line == "\n";
        head.push_str(&line);
        if end {
            return Some(head);
        }
    }
}

/// Serves `GET /metrics` and `POST /demote` on `listener` until `stop` is set; with `token`,
/// every request must carry it (`Authorization: Bearer`, `401` otherwise).
pub fn serve(
    listener: TcpListener,
    published: Published,
    demotes: Vec<Requests>,
    token: Option<String>,
    stop: Arc<AtomicBool>,
) {
    let _ = listener.set_nonblocking(true);
    while !stop.load(Ordering::SeqCst) {
        let Ok((mut s, _)) = listener.accept() else {
            std::thread::park_timeout(Duration::from_millis(50));
            continue;
        };
        let _ = s.set_nonblocking(false);
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        let Some(head) = read_head(&s) else { continue };
        let line = head.lines().next().unwrap_or_default();
        let allowed = token
            .as_deref()
            .is_none_or(|t| net::auth::bearer_matches(head.as_bytes(), t.as_bytes()));
        let (status, body) = if !allowed {
            ("401 Unauthorized", "admin token required\n".to_string())
        } else if line.starts_with("GET /metrics") {
            ("200 OK", render(&merged(&published)))
        } else if let Some(rest) = line.strip_prefix("POST /demote") {
            let target = rest.split_whitespace().next().unwrap_or("");
            demote(target, &demotes)
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

#[cfg(test)]
mod tests {
    use std::io::Read as _;

    use super::*;

    fn ask(addr: std::net::SocketAddr, headers: &str) -> String {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        write!(s, "GET /metrics HTTP/1.1\r\nHost: x\r\n{headers}\r\n").unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }

    #[test]
    fn with_an_admin_token_a_request_without_it_is_refused() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let token = Some("secret-token".to_string());
        let h = std::thread::spawn(move || serve(l, Vec::new(), Vec::new(), token, s));
        assert!(ask(addr, "").starts_with("HTTP/1.1 401"));
        assert!(ask(addr, "Authorization: Bearer nope\r\n").starts_with("HTTP/1.1 401"));
        let ok = ask(addr, "Authorization: Bearer secret-token\r\n");
        assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
        stop.store(true, Ordering::SeqCst);
        h.join().unwrap();
    }
}
