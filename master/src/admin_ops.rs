//! The admin endpoint's scaling page and its operations (what `tierkv ctl` calls):
//! `GET /scale`; `POST /drain`, `/undrain`, `/move-range`, `/split`, `/merge-range`, `/scale/expand`,
//! `/scale/shrink`, `/scale/settings`, with their arguments in the query string. Answers are
//! JSON; a refused operation is `409` with `{"error": …}`, a malformed one `400`.

use std::fmt::Write as _;

use net::{RangeId, RpcError, StoreId};

use crate::autoscale::{ScaleConfig, Verdict};
use crate::capacity::ProvisionKind;
use crate::core::Core;
use crate::json::json_str;
use crate::service::Master;

/// Query arguments, `k=v&k=v` (no percent-decoding: every value is a number, a word or
/// `true`/`false`).
#[derive(Debug, Default)]
pub struct Query(Vec<(String, String)>);

impl Query {
    /// Parses a query string; at most 32 pairs.
    pub fn parse(q: &str) -> Self {
        Self(
            q.split('&')
                .filter(|kv| !kv.is_empty())
                .take(32)
                .map(|kv| {
                    let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                    (k.to_string(), v.to_string())
                })
                .collect(),
        )
    }

    fn get(&self, k: &str) -> Option<&str> {
        self.0.iter().find(|(x, _)| x == k).map(|(_, v)| v.as_str())
    }

    fn num<T: std::str::FromStr>(&self, k: &str) -> Result<Option<T>, String> {
        self.get(k)
            .map(|v| v.parse().map_err(|_| format!("{k}={v} is not a number")))
            .transpose()
    }

    fn need<T: std::str::FromStr>(&self, k: &str) -> Result<T, String> {
        self.num(k)?.ok_or_else(|| format!("missing {k}="))
    }
}

fn err_json(msg: &str) -> String {
    let mut out = String::from("{\"error\":");
    json_str(&mut out, msg);
    out.push('}');
    out
}

fn ok_json(msg: &str) -> String {
    let mut out = String::from("{\"ok\":");
    json_str(&mut out, msg);
    out.push('}');
    out
}

/// `GET /scale`: settings, capacity, per-node load, the autoscaler's last verdict and the
/// capacity requests.
pub fn scale_json(core: &Core) -> String {
    let cfg = &core.config().scale;
    let cap = core.state().capacity();
    let mut out = String::new();
    let _ = write!(
        out,
        "{{\"enabled\":{},\"provisioner\":\"{:?}\",\"min_stores\":{},\"max_stores\":{},\"sustain_ms\":{},\"shrink_sustain_ms\":{},\"cooldown_ms\":{},\"expand_above\":{},\"shrink_below\":{},\"capacity\":{{\"up\":{},\"coming\":{},\"leaving\":{}}},\"load\":",
        cfg.enabled,
        cfg.provisioner,
        cfg.min_stores,
        cfg.max_stores,
        cfg.sustain_ms,
        cfg.shrink_sustain_ms,
        cfg.cooldown_ms,
        thresholds_json(&cfg.expand_above),
        thresholds_json(&cfg.shrink_below),
        cap.up,
        cap.coming,
        cap.leaving
    );
    match core.node_load() {
        Some(l) => {
            let _ = write!(
                out,
                "{{\"nodes\":{},\"ops_per_sec\":{},\"mem_percent\":{},\"disk_percent\":{},\"net_bytes_per_sec\":{}}}",
                l.nodes, l.ops_per_sec, l.mem_percent, l.disk_percent, l.net_bytes_per_sec
            );
        }
        None => out.push_str("null"),
    }
    out.push_str(",\"verdict\":");
    match core.autoscaler().last() {
        Some(Verdict::Hold(r)) => verdict(&mut out, "hold", r),
        Some(Verdict::Expand(r)) => verdict(&mut out, "expand", r),
        Some(Verdict::Shrink(r)) => verdict(&mut out, "shrink", r),
        None => out.push_str("null"),
    }
    out.push_str(",\"requests\":[");
    for (i, p) in core.state().provisioning().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let stores: Vec<String> = p.stores.iter().map(|s| s.to_string()).collect();
        let _ = write!(
            out,
            "{{\"id\":{},\"kind\":\"{}\",\"nodes\":{},\"stores\":[{}],\"state\":\"{}\",\"requested_ms\":{},\"deadline_ms\":{},\"reason\":",
            p.id,
            p.kind.label(),
            p.nodes,
            stores.join(","),
            p.state.label(),
            p.requested_ms,
            p.deadline_ms
        );
        json_str(&mut out, &p.reason);
        out.push('}');
    }
    out.push_str("]}");
    out
}

fn verdict(out: &mut String, kind: &str, reason: &str) {
    let _ = write!(out, "{{\"kind\":\"{kind}\",\"reason\":");
    json_str(out, reason);
    out.push('}');
}

fn thresholds_json(t: &crate::autoscale::Thresholds) -> String {
    format!(
        "{{\"ops_per_sec\":{},\"mem_percent\":{},\"disk_percent\":{},\"net_bytes_per_sec\":{}}}",
        t.ops_per_sec, t.mem_percent, t.disk_percent, t.net_bytes_per_sec
    )
}

/// `master_scale_*` and `master_capacity_*` metrics.
pub fn scale_metrics(out: &mut String, core: &Core) {
    let cap = core.state().capacity();
    out.push_str("# TYPE master_capacity_stores gauge\n");
    for (state, n) in [
        ("up", cap.up),
        ("coming", cap.coming),
        ("leaving", cap.leaving),
    ] {
        let _ = writeln!(out, "master_capacity_stores{{state=\"{state}\"}} {n}");
    }
    if let Some(l) = core.node_load() {
        out.push_str("# TYPE master_scale_node_load gauge\n");
        let figures = [
            ("ops_per_sec", l.ops_per_sec),
            ("mem_percent", u64::from(l.mem_percent)),
            ("disk_percent", u64::from(l.disk_percent)),
            ("net_bytes_per_sec", l.net_bytes_per_sec),
        ];
        for (name, v) in figures {
            let _ = writeln!(out, "master_scale_node_load{{figure=\"{name}\"}} {v}");
        }
    }
    let st = core.scale_stats();
    out.push_str("# TYPE master_scale_decisions_total counter\n");
    for (kind, n) in &st.decisions {
        let _ = writeln!(out, "master_scale_decisions_total{{kind=\"{kind}\"}} {n}");
    }
    out.push_str("# TYPE master_capacity_requests_total counter\n");
    for ((kind, outcome), n) in &st.requests {
        let _ = writeln!(
            out,
            "master_capacity_requests_total{{kind=\"{kind}\",outcome=\"{outcome}\"}} {n}"
        );
    }
    out.push_str("# TYPE master_provisioner_calls_total counter\n");
    for (outcome, n) in &st.calls {
        let _ = writeln!(
            out,
            "master_provisioner_calls_total{{outcome=\"{outcome}\"}} {n}"
        );
    }
    let hists = [
        ("master_provisioner_call_seconds", &st.call_us, 1e-6),
        ("master_scale_expand_seconds", &st.expand_ms, 1e-3),
        ("master_scale_shrink_seconds", &st.shrink_ms, 1e-3),
    ];
    for (name, h, unit) in hists {
        let _ = writeln!(out, "# TYPE {name} summary");
        for q in [0.5, 0.99, 1.0] {
            let v = h.value_at_quantile(q) as f64 * unit;
            let _ = writeln!(out, "{name}{{quantile=\"{q}\"}} {v}");
        }
        let _ = writeln!(out, "{name}_count {}", h.len());
    }
}

fn refused(e: RpcError) -> (u16, String) {
    (409, err_json(&e.to_string()))
}

/// Applies `settings` arguments to a copy of the current scaling config.
fn apply_settings(mut c: ScaleConfig, q: &Query) -> Result<ScaleConfig, String> {
    if let Some(v) = q.get("enabled") {
        c.enabled = v
            .parse()
            .map_err(|_| format!("enabled={v} is not true or false"))?;
    }
    macro_rules! set {
        ($($key:literal => $field:expr),* $(,)?) => {
            $( if let Some(v) = q.num($key)? { $field = v; } )*
        };
    }
    set!(
        "min-stores" => c.min_stores,
        "max-stores" => c.max_stores,
        "sustain-ms" => c.sustain_ms,
        "shrink-sustain-ms" => c.shrink_sustain_ms,
        "cooldown-ms" => c.cooldown_ms,
        "provision-timeout-ms" => c.provision_timeout_ms,
        "drain-timeout-ms" => c.drain_timeout_ms,
        "expand-ops-per-sec" => c.expand_above.ops_per_sec,
        "expand-mem-percent" => c.expand_above.mem_percent,
        "expand-disk-percent" => c.expand_above.disk_percent,
        "expand-net-bytes-per-sec" => c.expand_above.net_bytes_per_sec,
        "shrink-ops-per-sec" => c.shrink_below.ops_per_sec,
        "shrink-mem-percent" => c.shrink_below.mem_percent,
        "shrink-disk-percent" => c.shrink_below.disk_percent,
        "shrink-net-bytes-per-sec" => c.shrink_below.net_bytes_per_sec,
    );
    Ok(c)
}

/// The response to `POST path?query`: (status, body).
pub fn respond_post(master: &Master, path: &str, q: &Query) -> (u16, String) {
    let now = master.now_ms();
    let r: Result<Result<String, RpcError>, String> = (|| {
        Ok(match path {
            "/drain" | "/undrain" => {
                let store = StoreId(q.need("store")?);
                let drain = path == "/drain";
                master.with_core(|c| {
                    c.drain_store(store, drain, now).map(|()| {
                        format!("store {store} {}", if drain { "draining" } else { "up" })
                    })
                })
            }
            "/move-range" => {
                let range = RangeId(q.need("range")?);
                let to = StoreId(q.need("to")?);
                let from = q.num::<u64>("from")?.map(StoreId);
                let shard = q.num::<u32>("shard")?.map(net::ShardId);
                master.with_core(|c| c.move_range(range, to, from, shard, now))
            }
            "/split" => {
                let range = RangeId(q.need("range")?);
                let slot = q.num::<u16>("slot")?;
                master.with_core(|c| c.split_range(range, slot, now))
            }
            "/merge-range" => {
                let range = RangeId(q.need("range")?);
                master.with_core(|c| c.merge_range(range, now))
            }
            "/scale/expand" | "/scale/shrink" => {
                let kind = if path == "/scale/expand" {
                    ProvisionKind::Expand
                } else {
                    ProvisionKind::Shrink
                };
                let store = q.num::<u64>("store")?.map(StoreId);
                master.with_core(|c| {
                    c.request_capacity(kind, store, "requested by an operator (ctl)".into(), now)
                        .map(|p| format!("{} request {} {}", kind.label(), p.id, p.state.label()))
                })
            }
            "/scale/settings" => {
                let current = master.with_core(|c| c.config().scale.clone());
                let next = apply_settings(current, q)?;
                master.with_core(|c| c.set_scale_config(next).map(|()| "settings changed".into()))
            }
            _ => return Err("not found".into()),
        })
    })();
    match r {
        Ok(Ok(msg)) => (200, ok_json(&msg)),
        Ok(Err(e)) => refused(e),
        Err(e) if e == "not found" => (404, err_json("not found")),
        Err(e) => (400, err_json(&e)),
    }
}
