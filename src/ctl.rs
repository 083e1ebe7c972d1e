//! `tierkv ctl`: an operator's client of the master's admin HTTP API (`docs/guides/master.md`,
//! "tierkv ctl"). Reads print tables (or the master's JSON with `--json`); operations are
//! `POST`s whose refusal (409) or error (400) becomes a non-zero exit with the master's
//! reason.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use serde_json::Value;

/// Largest admin answer read (a cluster's `/ranges` with many ranges stays well below).
const MAX_RESPONSE_BYTES: u64 = 64 << 20;

#[derive(Debug, Args)]
pub struct CtlArgs {
    /// The master's admin address (`admin-listen`; `tierkv dev` prints it).
    #[arg(long, default_value = "127.0.0.1:7401", global = true)]
    master: String,
    /// Print the master's JSON instead of a table.
    #[arg(long, global = true)]
    json: bool,
    /// Time to wait for the master, ms.
    #[arg(long, default_value_t = 10_000, global = true)]
    timeout_ms: u64,
    /// The master's `admin-token`, when it has one.
    #[arg(
        long,
        env = "TIERKV_ADMIN_TOKEN",
        global = true,
        hide_env_values = true
    )]
    admin_token: Option<String>,
    #[command(subcommand)]
    command: CtlCommand,
}

#[derive(Debug, Subcommand)]
enum CtlCommand {
    /// Cluster id, counts, operators in flight and the latest scheduler decisions.
    Status,
    /// Stores: state, health, shards and load.
    Stores,
    /// Ranges: keys, epoch, replicas, leader and load.
    Ranges,
    /// Failure-detection probes and what they reach.
    Probes,
    /// Drain a store: it takes no new replicas and all of its replicas move away.
    Drain { store: u64 },
    /// Put a drained store back up.
    Undrain { store: u64 },
    /// Move a range's replica (the leader's, or the one on `--from`) to a store.
    MoveRange {
        range: u64,
        #[arg(long)]
        to: u64,
        #[arg(long)]
        from: Option<u64>,
        /// The target shard of `--to` (default: its emptiest); with `--to` the replica's own
        /// store, the replica moves between that store's shards.
        #[arg(long)]
        shard: Option<u32>,
    },
    /// Split a range where its leader chooses, or at the hash slot of a Redis key.
    Split {
        range: u64,
        /// Split at the start of this Redis key's hash slot.
        #[arg(long, conflicts_with = "slot")]
        key: Option<String>,
        /// Split at the start of this hash slot (0..16383).
        #[arg(long)]
        slot: Option<u16>,
    },
    /// Merge a range with its right neighbour (their replicas must sit pairwise on the same
    /// store and shard: co-locate them first with `move-range --shard`).
    Merge { range: u64 },
    /// Elastic scaling: status, expand, shrink, settings.
    Scale {
        #[command(subcommand)]
        action: ScaleAction,
    },
}

#[derive(Debug, Subcommand)]
enum ScaleAction {
    /// Thresholds, capacity, per-node load, the autoscaler's verdict and capacity requests.
    Status,
    /// Ask the provisioner for one more node (pre-allocated; refused past max-stores).
    Expand,
    /// Drain one node (the newest, or `--store`) and stop it once empty.
    Shrink {
        #[arg(long)]
        store: Option<u64>,
    },
    /// Change autoscaling settings, e.g. `enabled=true expand-ops-per-sec=20000`.
    Set {
        /// `key=value` pairs (keys as in `[scale]`, thresholds as `expand-…`/`shrink-…`).
        #[arg(required = true)]
        settings: Vec<String>,
    },
}

/// One HTTP/1.0 exchange with the admin port: (status, body).
fn http(cfg: &CtlArgs, method: &str, path: &str) -> anyhow::Result<(u16, String)> {
    let timeout = Duration::from_millis(cfg.timeout_ms.max(1));
    let addr = cfg
        .master
        .to_socket_addrs()
        .with_context(|| format!("resolve {}", cfg.master))?
        .next()
        .with_context(|| format!("{} has no address", cfg.master))?;
    let mut s = TcpStream::connect_timeout(&addr, timeout)
        .with_context(|| format!("connect to the master's admin port {}", cfg.master))?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    let auth = cfg
        .admin_token
        .as_deref()
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.0\r\nHost: {}\r\n{auth}Content-Length: 0\r\n\r\n",
        cfg.master
    )?;
    let mut raw = Vec::new();
    s.take(MAX_RESPONSE_BYTES)
        .read_to_end(&mut raw)
        .context("read the master's answer")?;
    let text = String::from_utf8(raw).context("the master's answer is not UTF-8")?;
    let (head, body) = text
        .split_once("\r\n\r\n")
        .context("the master's answer has no header end")?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .context("the master's answer has no status")?;
    Ok((status, body.to_string()))
}

fn get(cfg: &CtlArgs, path: &str) -> anyhow::Result<Value> {
    let (status, body) = http(cfg, "GET", path)?;
    if status != 200 {
        bail!("GET {path}: HTTP {status}: {}", body.trim());
    }
    serde_json::from_str(&body).with_context(|| format!("GET {path}: not JSON"))
}

fn post(cfg: &CtlArgs, path: &str) -> anyhow::Result<Value> {
    let (status, body) = http(cfg, "POST", path)?;
    let v: Value = serde_json::from_str(&body)
        .with_context(|| format!("POST {path}: HTTP {status}: {}", body.trim()))?;
    if status != 200 {
        let why = v["error"].as_str().unwrap_or("refused");
        bail!("{why}");
    }
    Ok(v)
}

/// Runs `tierkv ctl`.
pub fn run(args: CtlArgs) -> anyhow::Result<()> {
    let out = match &args.command {
        CtlCommand::Status => show(&args, "/status", status_table)?,
        CtlCommand::Stores => show(&args, "/stores", stores_table)?,
        CtlCommand::Ranges => show(&args, "/ranges", ranges_table)?,
        CtlCommand::Probes => show(&args, "/probes", probes_table)?,
        CtlCommand::Drain { store } => done(&args, &format!("/drain?store={store}"))?,
        CtlCommand::Undrain { store } => done(&args, &format!("/undrain?store={store}"))?,
        CtlCommand::MoveRange {
            range,
            to,
            from,
            shard,
        } => {
            let from = from.map_or(String::new(), |f| format!("&from={f}"));
            let shard = shard.map_or(String::new(), |s| format!("&shard={s}"));
            done(
                &args,
                &format!("/move-range?range={range}&to={to}{from}{shard}"),
            )?
        }
        CtlCommand::Split { range, key, slot } => {
            let slot = key
                .as_ref()
                .map(|k| net::keyspace::slot(k.as_bytes()))
                .or(*slot);
            let at = slot.map_or(String::new(), |s| format!("&slot={s}"));
            done(&args, &format!("/split?range={range}{at}"))?
        }
        CtlCommand::Merge { range } => done(&args, &format!("/merge-range?range={range}"))?,
        CtlCommand::Scale { action } => match action {
            ScaleAction::Status => show(&args, "/scale", scale_table)?,
            ScaleAction::Expand => done(&args, "/scale/expand")?,
            ScaleAction::Shrink { store } => {
                let s = store.map_or(String::new(), |s| format!("?store={s}"));
                done(&args, &format!("/scale/shrink{s}"))?
            }
            ScaleAction::Set { settings } => {
                for kv in settings {
                    let ok = kv.split_once('=').is_some_and(|(k, v)| {
                        !k.is_empty()
                            && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                            && v.bytes().all(|b| b.is_ascii_alphanumeric())
                    });
                    if !ok {
                        bail!("{kv:?} is not key=value (e.g. expand-ops-per-sec=20000)");
                    }
                }
                done(&args, &format!("/scale/settings?{}", settings.join("&")))?
            }
        },
    };
    print!("{out}");
    Ok(())
}

fn show(args: &CtlArgs, path: &str, table: fn(&Value) -> String) -> anyhow::Result<String> {
    let v = get(args, path)?;
    Ok(if args.json {
        format!("{}\n", serde_json::to_string_pretty(&v)?)
    } else {
        table(&v)
    })
}

fn done(args: &CtlArgs, path: &str) -> anyhow::Result<String> {
    let v = post(args, path)?;
    Ok(if args.json {
        format!("{v}\n")
    } else {
        format!("{}\n", v["ok"].as_str().unwrap_or("ok"))
    })
}

/// A value as table text: strings bare, null as `-`.
fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Left-aligned columns, two spaces apart.
fn table(head: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut width: Vec<usize> = head.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (w, c) in width.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let mut s = String::new();
        for (i, (c, w)) in cells.iter().zip(&width).enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$}  "));
            }
        }
        s.trim_end().to_string() + "\n"
    };
    let mut out = line(head.iter().map(|h| h.to_string()).collect());
    for r in rows {
        out.push_str(&line(r));
    }
    out
}

fn items(v: &Value) -> &[Value] {
    v.as_array().map_or(&[], Vec::as_slice)
}

fn status_table(v: &Value) -> String {
    let mut out = String::new();
    for k in [
        "cluster_id",
        "bootstrapped",
        "replication_factor",
        "stores",
        "ranges",
        "route_version",
        "applied_index",
    ] {
        out.push_str(&format!("{k:<20} {}\n", cell(&v[k])));
    }
    out.push_str("\noperators in flight:\n");
    let ops = items(&v["operators"])
        .iter()
        .map(|o| {
            vec![
                cell(&o["range"]),
                format!("{}/{}", cell(&o["step"]), cell(&o["of"])),
                cell(&o["current"]),
                cell(&o["reason"]),
            ]
        })
        .collect();
    out.push_str(&table(&["RANGE", "STEP", "CURRENT", "REASON"], ops));
    out.push_str("\nlatest decisions:\n");
    let mut ds: Vec<Vec<String>> = items(&v["decisions"])
        .iter()
        .map(|d| {
            vec![
                cell(&d["at_ms"]),
                cell(&d["checker"]),
                cell(&d["operator"]),
                cell(&d["reason"]),
            ]
        })
        .collect();
    let skip = ds.len().saturating_sub(10);
    ds.drain(..skip);
    out.push_str(&table(&["AT_MS", "BY", "OPERATOR", "REASON"], ds));
    out
}

fn stores_table(v: &Value) -> String {
    let rows = items(v)
        .iter()
        .map(|s| {
            vec![
                cell(&s["id"]),
                cell(&s["addr"]),
                cell(&s["state"]),
                cell(&s["health"]),
                items(&s["shards"]).len().to_string(),
                cell(&s["ops_per_sec"]),
                cell(&s["mem_used"]),
                cell(&s["disk_used"]),
            ]
        })
        .collect();
    table(
        &[
            "ID", "ADDR", "STATE", "HEALTH", "SHARDS", "OPS/S", "MEM", "DISK",
        ],
        rows,
    )
}

fn ranges_table(v: &Value) -> String {
    let rows = items(v)
        .iter()
        .map(|r| {
            let leader = r["leader"].as_u64();
            let reps: Vec<String> = items(&r["replicas"])
                .iter()
                .map(|p| {
                    let lead = if p["id"].as_u64() == leader { "*" } else { "" };
                    let learner = if p["role"] == "learner" { "(l)" } else { "" };
                    format!(
                        "s{}/{}{lead}{learner}",
                        cell(&p["store"]),
                        cell(&p["shard"])
                    )
                })
                .collect();
            let qps = r["read_qps"].as_u64().unwrap_or(0) + r["write_qps"].as_u64().unwrap_or(0);
            vec![
                cell(&r["id"]),
                cell(&r["start"]),
                cell(&r["end"]),
                format!("{}.{}", cell(&r["conf_ver"]), cell(&r["version"])),
                reps.join(","),
                cell(&r["keys"]),
                qps.to_string(),
            ]
        })
        .collect();
    table(
        &[
            "ID",
            "START",
            "END",
            "EPOCH",
            "REPLICAS(*leader)",
            "KEYS",
            "OPS/S",
        ],
        rows,
    )
}

fn probes_table(v: &Value) -> String {
    let rows = items(v)
        .iter()
        .map(|p| {
            let stores = p["stores"].as_object().map_or(0, serde_json::Map::len);
            vec![
                cell(&p["probe"]),
                cell(&p["zone"]),
                cell(&p["reporting"]),
                cell(&p["reports"]),
                cell(&p["master_rtt_us"]),
                stores.to_string(),
            ]
        })
        .collect();
    table(
        &[
            "PROBE",
            "ZONE",
            "REPORTING",
            "REPORTS",
            "MASTER_RTT_US",
            "STORES",
        ],
        rows,
    )
}

fn scale_table(v: &Value) -> String {
    let mut out = String::new();
    let cap = &v["capacity"];
    out.push_str(&format!(
        "autoscaling  {} (provisioner {}), stores {}..={}\n",
        if v["enabled"] == true { "on" } else { "off" },
        cell(&v["provisioner"]),
        cell(&v["min_stores"]),
        cell(&v["max_stores"])
    ));
    out.push_str(&format!(
        "capacity     up {}, coming {}, leaving {}\n",
        cell(&cap["up"]),
        cell(&cap["coming"]),
        cell(&cap["leaving"])
    ));
    let t = |x: &Value| {
        format!(
            "ops/s {}, mem {}%, disk {}%, net {} B/s",
            cell(&x["ops_per_sec"]),
            cell(&x["mem_percent"]),
            cell(&x["disk_percent"]),
            cell(&x["net_bytes_per_sec"])
        )
    };
    out.push_str(&format!("expand above {}\n", t(&v["expand_above"])));
    out.push_str(&format!("shrink below {}\n", t(&v["shrink_below"])));
    if !v["load"].is_null() {
        out.push_str(&format!(
            "load/node    {} ({} nodes)\n",
            t(&v["load"]),
            cell(&v["load"]["nodes"])
        ));
    }
    if !v["verdict"].is_null() {
        out.push_str(&format!(
            "verdict      {}: {}\n",
            cell(&v["verdict"]["kind"]),
            cell(&v["verdict"]["reason"])
        ));
    }
    out.push_str("\ncapacity requests:\n");
    let rows = items(&v["requests"])
        .iter()
        .map(|p| {
            let stores: Vec<String> = items(&p["stores"]).iter().map(cell).collect();
            vec![
                cell(&p["id"]),
                cell(&p["kind"]),
                cell(&p["nodes"]),
                stores.join(","),
                cell(&p["state"]),
                cell(&p["reason"]),
            ]
        })
        .collect();
    out.push_str(&table(
        &["ID", "KIND", "NODES", "STORES", "STATE", "REASON"],
        rows,
    ));
    out
}
