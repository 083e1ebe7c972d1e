//! The admin endpoint: a minimal HTTP/1.1 server (one request per connection) with
//! `/health`, `/status`, `/stores` (with each store's health, the probes' votes and its
//! shards' load), `/ranges`, `/probes`, `/scale` (JSON) and `/metrics` (Prometheus text);
//! `POST` serves the operations of [`crate::admin_ops`] (drain, move a range, split, scale)
//! that `tierkv ctl` calls. With an `admin-token`, every request but `GET /health` must
//! carry it as a bearer token (`401` otherwise); without one, bind it to a trusted interface.
//!
//! Hand-written to keep the master's dependencies small; it is for operators and scrapers,
//! not for the request path.

use std::fmt::Write as _;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use net::ShardId;
use net::message::{RangeStats, ReplicaRole, ShardLoad};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

use crate::core::{Core, ShardLoadSeen};
use crate::detector::{Health, Verdict, Vote};
use crate::service::Master;
use crate::state::StoreState;

use crate::json::json_str;

const MAX_REQUEST_BYTES: usize = 8 * 1024;

fn hex(b: &[u8]) -> String {
    b.iter()
        .fold(String::with_capacity(b.len() * 2), |mut s, x| {
            let _ = write!(s, "{x:02x}");
            s
        })
}

/// `/status`: cluster id, indexes, counts, operators in flight and recent decisions.
pub fn status_json(core: &Core) -> String {
    let s = core.state();
    let mut out = String::new();
    let _ = write!(
        out,
        "{{\"cluster_id\":{},\"bootstrapped\":{},\"applied_index\":{},\"route_version\":{},\"id_end\":{},\"tso_limit\":{},\"replication_factor\":{},\"stores\":{},\"ranges\":{},\"operators\":[",
        s.cluster_id(),
        s.is_bootstrapped(),
        s.applied_index(),
        s.route_version(),
        s.id_end(),
        s.tso_limit(),
        s.config().replication_factor,
        s.stores().count(),
        s.range_count()
    );
    for (i, (range, op)) in core.operators().iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let step = op
            .steps
            .get(op.current)
            .map_or_else(String::new, |s| format!("{s:?}"));
        let _ = write!(
            out,
            "{{\"range\":{range},\"step\":{},\"of\":{},\"current\":",
            op.current,
            op.steps.len()
        );
        json_str(&mut out, &step);
        out.push_str(",\"reason\":");
        json_str(&mut out, &op.reason);
        out.push('}');
    }
    out.push_str("],\"decisions\":[");
    for (i, d) in core.decisions().iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "{{\"at_ms\":{},\"checker\":", d.at_ms);
        json_str(&mut out, d.checker);
        out.push_str(",\"operator\":");
        json_str(&mut out, &d.operator);
        out.push_str(",\"reason\":");
        json_str(&mut out, &d.reason);
        out.push('}');
    }
    out.push_str("]}");
    out
}

/// `/stores`: every store with its addresses, labels, state, capacity and last heartbeat.
pub fn stores_json(core: &Core) -> String {
    let mut out = String::from("[");
    for (i, st) in core.state().stores().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let state = match st.state {
            StoreState::Up => "up",
            StoreState::Offline => "offline",
            StoreState::Tombstone => "tombstone",
        };
        let _ = write!(out, "{{\"id\":{},\"addr\":", st.info.store_id);
        json_str(&mut out, &st.info.addr);
        out.push_str(",\"shards\":[");
        for (j, a) in st.info.shard_addrs.iter().enumerate() {
            if j > 0 {
                out.push(',');
            }
            json_str(&mut out, a);
        }
        out.push_str("],\"labels\":{");
        for (j, (k, v)) in st.info.labels.iter().enumerate() {
            if j > 0 {
                out.push(',');
            }
            json_str(&mut out, k);
            out.push(':');
            json_str(&mut out, v);
        }
        let id = st.info.store_id;
        let load = core.store_loads().get(&id);
        let shards: Vec<_> = core
            .shard_loads()
            .range((id, ShardId(0))..=(id, ShardId(u32::MAX)))
            .collect();
        // With shard heartbeats (protocol 3) the store's figures are the sum of its shards'.
        let sum = |f: fn(&ShardLoad) -> u64| shards.iter().map(|(_, l)| f(&l.load)).sum::<u64>();
        let (ops, mem, disk) = if shards.is_empty() {
            (
                load.map_or(0, |l| l.stats.ops_per_sec),
                load.map_or(0, |l| l.stats.mem_used),
                load.map_or(0, |l| l.stats.disk_used),
            )
        } else {
            (
                sum(|l| l.read_ops_per_sec + l.write_ops_per_sec),
                sum(|l| l.mem_used),
                sum(|l| l.disk_used),
            )
        };
        // Memory reports (protocol 6): the budgets the shards apply and their value bytes.
        let applied: u64 = core.store_memory(id).map(|m| m.budget_bytes).sum();
        let hot: u64 = core.store_memory(id).map(|m| m.hot_value_bytes).sum();
        let cold: u64 = core.store_memory(id).map(|m| m.cold_value_bytes).sum();
        let _ = write!(
            out,
            "}},\"maxmemory\":{},\"maxmemory_applied\":{applied},\"hot_value_bytes\":{hot},\"cold_value_bytes\":{cold}",
            core.effective_max_memory(id),
        );
        let _ = write!(
            out,
            ",\"state\":\"{state}\",\"mem_capacity\":{},\"disk_capacity\":{},\"last_heartbeat_ms\":{},\"ops_per_sec\":{ops},\"mem_used\":{mem},\"disk_used\":{disk},\"shard_loads\":[",
            st.mem_capacity,
            st.disk_capacity,
            load.map_or(0, |l| l.heartbeat_ms),
        );
        for (j, ((_, shard), l)) in shards.iter().enumerate() {
            if j > 0 {
                out.push(',');
            }
            shard_load_json(&mut out, *shard, l);
        }
        out.push(']');
        health_json(&mut out, core.detector().verdicts().get(&id));
        out.push('}');
    }
    out.push(']');
    out
}

fn shard_load_json(out: &mut String, shard: ShardId, l: &ShardLoadSeen) {
    let x = &l.load;
    let _ = write!(
        out,
        "{{\"shard\":{shard},\"heartbeat_ms\":{},\"ranges\":{},\"leaders\":{},\"read_ops_per_sec\":{},\"write_ops_per_sec\":{},\"read_bytes_per_sec\":{},\"write_bytes_per_sec\":{},\"keys\":{},\"size_bytes\":{},\"mem_used\":{},\"disk_used\":{}}}",
        l.heartbeat_ms,
        x.ranges,
        x.leaders,
        x.read_ops_per_sec,
        x.write_ops_per_sec,
        x.read_bytes_per_sec,
        x.write_bytes_per_sec,
        x.keys,
        x.size_bytes,
        x.mem_used,
        x.disk_used
    );
}

/// `,"health":…,"heartbeat_age_ms":…,"votes":{probe: vote}` of one store.
fn health_json(out: &mut String, v: Option<&Verdict>) {
    let Some(v) = v else {
        out.push_str(",\"health\":null,\"votes\":{}");
        return;
    };
    let _ = write!(
        out,
        ",\"health\":\"{}\",\"heartbeat_age_ms\":{},\"votes\":{{",
        v.health.label(),
        v.heartbeat_age_ms
            .map_or("null".to_string(), |a| a.to_string())
    );
    for (i, (probe, vote)) in v.votes.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        json_str(out, probe);
        out.push(':');
        json_str(out, &vote.to_string());
    }
    out.push('}');
}

/// `/probes`: every probe the master remembers: zone, last report, whether it still votes,
/// its round-trip time to the master and what it last saw of each store.
pub fn probes_json(core: &Core, now_ms: u64) -> String {
    let d = core.detector();
    let expiry = d.config().probe_expiry_ms;
    let mut out = String::from("[");
    for (i, (name, p)) in d.probes().iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str("{\"probe\":");
        json_str(&mut out, name);
        out.push_str(",\"zone\":");
        json_str(&mut out, &p.zone);
        let _ = write!(
            out,
            ",\"last_report_ms\":{},\"reporting\":{},\"reports\":{},\"master_rtt_us\":{},\"stores\":{{",
            p.last_report_ms,
            now_ms.saturating_sub(p.last_report_ms) < expiry,
            p.reports_total,
            p.master_rtt_us
        );
        for (j, (store, r)) in p.reach.iter().enumerate() {
            if j > 0 {
                out.push(',');
            }
            let opt = |x: Option<u64>| x.map_or("null".to_string(), |v| v.to_string());
            let _ = write!(
                out,
                "\"{store}\":{{\"last_ok_ms\":{},\"unreachable_since_ms\":{},\"rtt_us\":{}}}",
                opt(r.last_ok_ms),
                opt(r.unreachable_since_ms),
                r.rtt_us
            );
        }
        out.push_str("}}");
    }
    out.push(']');
    out
}

/// `/ranges`: every range in key order (keys in hex) with epoch, replicas, leader and load.
pub fn ranges_json(core: &Core) -> String {
    let mut out = String::from("[");
    for (i, r) in core.state().ranges().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(
            out,
            "{{\"id\":{},\"start\":\"{}\",\"end\":\"{}\",\"conf_ver\":{},\"version\":{},\"leader\":{},\"replicas\":[",
            r.id,
            hex(&r.start),
            hex(&r.end),
            r.epoch.conf_ver,
            r.epoch.version,
            r.leader.map_or("null".to_string(), |l| l.to_string())
        );
        for (j, rep) in r.replicas.iter().enumerate() {
            if j > 0 {
                out.push(',');
            }
            let role = if rep.role == (ReplicaRole::Voter {}) {
                "voter"
            } else {
                "learner"
            };
            let _ = write!(
                out,
                "{{\"id\":{},\"store\":{},\"shard\":{},\"role\":\"{role}\"}}",
                rep.replica_id, rep.store_id, rep.shard_id
            );
        }
        let load = core.range_loads().get(&r.id);
        let _ = write!(
            out,
            "],\"size_bytes\":{},\"keys\":{},\"read_qps\":{},\"write_qps\":{},\"read_bytes_per_sec\":{},\"write_bytes_per_sec\":{},\"last_heartbeat_ms\":{}}}",
            load.map_or(0, |l| l.stats.size_bytes),
            load.map_or(0, |l| l.stats.keys),
            load.map_or(0, |l| l.stats.read_qps),
            load.map_or(0, |l| l.stats.write_qps),
            load.map_or(0, |l| l.stats.read_bytes_per_sec),
            load.map_or(0, |l| l.stats.write_bytes_per_sec),
            load.map_or(0, |l| l.heartbeat_ms),
        );
    }
    out.push(']');
    out
}

/// The RPC metrics, then `master_reports_refused_total{reason}` (range heartbeats and split
/// reports refused by `core::validate`), then the proxy directory
/// (`master_proxies_registered`, `master_proxies_expired_total`), then health, load, operators scheduled per checker
/// (`master_schedule_operators_total{checker}`) and scaling.
fn metrics_text(master: &Master) -> String {
    let mut out = master.metrics().render();
    out.push_str("# TYPE master_reports_refused_total counter\n");
    let counts = master.with_core(|c| c.refused_reports().clone());
    for (reason, n) in counts {
        out.push_str(&format!(
            "master_reports_refused_total{{reason=\"{}\"}} {n}\n",
            reason.label()
        ));
    }
    net::transport::HandshakeFailure::write_prometheus("master", &mut out);
    let (proxies, expired) = master.proxies();
    let _ = writeln!(out, "# TYPE master_proxies_registered gauge");
    let _ = writeln!(out, "master_proxies_registered {proxies}");
    let _ = writeln!(out, "# TYPE master_proxies_expired_total counter");
    let _ = writeln!(out, "master_proxies_expired_total {expired}");
    let now = master.now_ms();
    master.with_core(|c| {
        health_metrics(&mut out, c, now);
        load_metrics(&mut out, c);
        out.push_str("# TYPE master_schedule_operators_total counter\n");
        for (checker, n) in c.scheduled_total() {
            let _ = writeln!(
                out,
                "master_schedule_operators_total{{checker=\"{checker}\"}} {n}"
            );
        }
        out.push_str("# TYPE master_merges_total counter\n");
        let _ = writeln!(out, "master_merges_total {}", c.merges_total());
        crate::admin_ops::scale_metrics(&mut out, c);
    });
    out
}

/// `master_store_health{store,state}` (1 for the current state), health transitions,
/// probes reporting, and each probe's votes.
fn health_metrics(out: &mut String, core: &Core, now_ms: u64) {
    let d = core.detector();
    out.push_str("# TYPE master_store_health gauge\n");
    for (store, v) in d.verdicts() {
        for h in Health::ALL {
            let _ = writeln!(
                out,
                "master_store_health{{store=\"{store}\",state=\"{}\"}} {}",
                h.label(),
                u8::from(v.health == h)
            );
        }
    }
    out.push_str("# TYPE master_store_health_transitions_total counter\n");
    for ((from, to), n) in d.transitions_total() {
        let _ = writeln!(
            out,
            "master_store_health_transitions_total{{from=\"{}\",to=\"{}\"}} {n}",
            from.label(),
            to.label()
        );
    }
    out.push_str("# TYPE master_probes_reporting gauge\n");
    let _ = writeln!(
        out,
        "master_probes_reporting {}",
        d.reporting(now_ms).count()
    );
    out.push_str("# TYPE master_probe_reports_total counter\n");
    out.push_str("# TYPE master_probe_reaches gauge\n");
    for (name, p) in d.probes() {
        let mut label = String::new();
        json_str(&mut label, name);
        let _ = writeln!(
            out,
            "master_probe_reports_total{{probe={label}}} {}",
            p.reports_total
        );
        for (store, v) in d.verdicts() {
            let reached = v
                .votes
                .iter()
                .any(|(n, vote)| n == name && *vote == Vote::Reached);
            let _ = writeln!(
                out,
                "master_probe_reaches{{probe={label},store=\"{store}\"}} {}",
                u8::from(reached)
            );
        }
    }
}

/// Per-shard load (`master_shard_*`) and per-range load of the range leaders
/// (`master_range_*`).
fn load_metrics(out: &mut String, core: &Core) {
    type Field = fn(&ShardLoad) -> u64;
    let fields: [(&str, Field); 8] = [
        ("read_ops_per_sec", |l| l.read_ops_per_sec),
        ("write_ops_per_sec", |l| l.write_ops_per_sec),
        ("read_bytes_per_sec", |l| l.read_bytes_per_sec),
        ("write_bytes_per_sec", |l| l.write_bytes_per_sec),
        ("keys", |l| l.keys),
        ("size_bytes", |l| l.size_bytes),
        ("mem_used_bytes", |l| l.mem_used),
        ("disk_used_bytes", |l| l.disk_used),
    ];
    for (name, f) in fields {
        let _ = writeln!(out, "# TYPE master_shard_{name} gauge");
        for ((store, shard), l) in core.shard_loads() {
            let _ = writeln!(
                out,
                "master_shard_{name}{{store=\"{store}\",shard=\"{shard}\"}} {}",
                f(&l.load)
            );
        }
    }
    type RangeField = fn(&RangeStats) -> u64;
    let fields: [(&str, RangeField); 6] = [
        ("read_ops_per_sec", |l| l.read_qps),
        ("write_ops_per_sec", |l| l.write_qps),
        ("read_bytes_per_sec", |l| l.read_bytes_per_sec),
        ("write_bytes_per_sec", |l| l.write_bytes_per_sec),
        ("keys", |l| l.keys),
        ("size_bytes", |l| l.size_bytes),
    ];
    for (name, f) in fields {
        let _ = writeln!(out, "# TYPE master_range_{name} gauge");
        for (range, l) in core.range_loads() {
            let _ = writeln!(
                out,
                "master_range_{name}{{range=\"{range}\"}} {}",
                f(&l.stats)
            );
        }
    }
}

/// The response to `GET path`: (status, content type, body).
pub fn respond(master: &Master, path: &str) -> (u16, &'static str, String) {
    const JSON: &str = "application/json";
    match path {
        "/health" => (200, "text/plain", "ok\n".into()),
        "/status" => (200, JSON, master.with_core(|c| status_json(c))),
        "/stores" => (200, JSON, master.with_core(|c| stores_json(c))),
        "/ranges" => (200, JSON, master.with_core(|c| ranges_json(c))),
        "/probes" => {
            let now = master.now_ms();
            (200, JSON, master.with_core(|c| probes_json(c, now)))
        }
        "/metrics" => (200, "text/plain; version=0.0.4", metrics_text(master)),
        "/scale" => (
            200,
            JSON,
            master.with_core(|c| crate::admin_ops::scale_json(c)),
        ),
        _ => (404, "text/plain", "not found\n".into()),
    }
}

async fn serve_one(
    master: Arc<Master>,
    token: Option<Arc<str>>,
    mut stream: TcpStream,
) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut chunk).await?;
        if n == 0 || buf.len() + n > MAX_REQUEST_BYTES {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let line = buf.split(|b| *b == b'\r').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split(' ');
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let (path, query) = path.split_once('?').unwrap_or((path, ""));
    let m = master.clone();
    let p = path.to_string();
    let open = method == "GET" && path == "/health";
    let allowed = match &token {
        Some(t) => open || net::auth::bearer_matches(&buf, t.as_bytes()),
        None => true,
    };
    let (status, ctype, body) = match method {
        _ if !allowed => (401, "text/plain", "admin token required (Authorization: Bearer; tierkv ctl --admin-token or TIERKV_ADMIN_TOKEN)\n".into()),
        "GET" => tokio::task::spawn_blocking(move || respond(&m, &p))
            .await
            .map_err(std::io::Error::other)?,
        // Operations (`tierkv ctl`); they may write the log, so they run on a blocking thread.
        "POST" => {
            let q = crate::admin_ops::Query::parse(query);
            let (status, body) =
                tokio::task::spawn_blocking(move || crate::admin_ops::respond_post(&m, &p, &q))
                    .await
                    .map_err(std::io::Error::other)?;
            (status, "application/json", body)
        }
        _ => (405, "text/plain", "method not allowed\n".into()),
    };
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        401 => "Unauthorized",
        409 => "Conflict",
        _ => "Method Not Allowed",
    };
    let challenge = if status == 401 {
        "WWW-Authenticate: Bearer\r\n"
    } else {
        ""
    };
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\n{challenge}Connection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
}

/// Serves the admin endpoint on `listener` until `shutdown` completes; with `token`, every
/// request but `GET /health` must carry it (`Authorization: Bearer`).
pub async fn serve_admin(
    master: Arc<Master>,
    listener: TcpListener,
    token: Option<Arc<str>>,
    shutdown: impl Future<Output = ()>,
) {
    let mut tasks = JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!("admin accept failed: {e}");
                    continue;
                }
            },
        };
        while tasks.try_join_next().is_some() {}
        if tasks.len() >= 64 {
            continue; // dropping the stream closes it: the admin port is not for load
        }
        let m = master.clone();
        let t = token.clone();
        tasks.spawn(async move {
            let r = tokio::time::timeout(Duration::from_secs(5), serve_one(m, t, stream)).await;
            if let Ok(Err(e)) = r {
                tracing::debug!(%peer, "admin connection: {e}");
            }
        });
    }
    tasks.shutdown().await;
}
