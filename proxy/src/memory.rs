//! The cluster's `maxmemory` and memory figures, as `CONFIG SET/GET maxmemory` and
//! `INFO memory` show them (`docs/format/wire.md` §4.5 "Memory"). The master holds the
//! setting and the sums of the DS shards' latest reports (one per heartbeat interval); the
//! proxy keeps its last answer for [`CACHE_TTL`] so that `INFO` does not ask the master each
//! time.

use std::fmt::Write as _;

use net::Message;
use net::message::handshake::MEMORY_VERSION;
use net::message::{ClusterMemory, GetClusterMemory, SetMaxMemory};

use crate::route::Router;

pub use crate::memory_cache::{CACHE_TTL, MemoryCache};

fn answer(reply: Result<(Message, net::ClusterId), String>) -> Result<ClusterMemory, String> {
    match reply? {
        (Message::ClusterMemory(m), _) => Ok(m),
        (other, _) => Err(format!("the master answered {}", other.name())),
    }
}

/// The cluster's memory: the cached answer while fresh, else the master's.
pub async fn get(router: &Router) -> Result<ClusterMemory, String> {
    if let Some(m) = router.memory.fresh() {
        return Ok(m);
    }
    let msg = Message::GetClusterMemory(GetClusterMemory {});
    let m = answer(router.call_master(msg, MEMORY_VERSION).await)?;
    router.memory.store(m);
    Ok(m)
}

/// Sets every DS node's `maxmemory` (0: no limit); `Ok` once the master logged it durably.
pub async fn set(router: &Router, maxmemory_bytes: u64) -> Result<ClusterMemory, String> {
    let msg = Message::SetMaxMemory(SetMaxMemory { maxmemory_bytes });
    let m = answer(router.call_master(msg, MEMORY_VERSION).await)?;
    router.memory.store(m);
    Ok(m)
}

/// Redis's `bytesToHuman`: `917.21K`, `1.00M`, `0B`.
pub fn human(n: u64) -> String {
    if n < 1024 {
        return format!("{n}B");
    }
    let f = n as f64;
    for (p, unit) in [(1, 'K'), (2, 'M'), (3, 'G'), (4, 'T')] {
        if f < 1024f64.powi(p + 1) {
            return format!("{:.2}{unit}", f / 1024f64.powi(p));
        }
    }
    format!("{:.2}P", f / 1024f64.powi(5))
}

/// The `# Memory` section of `INFO` from the master's figures (or why there are none), with
/// the proxy's own script figures.
pub fn info_section(
    m: &Result<ClusterMemory, String>,
    scripts: usize,
    script_bytes: usize,
) -> String {
    let mut out = String::from("# Memory\r\n");
    match m {
        Ok(m) => {
            let _ = write!(
                out,
                "used_memory:{u}\r\nused_memory_human:{}\r\nmaxmemory:{x}\r\nmaxmemory_human:{}\r\n",
                human(m.used_bytes),
                human(m.node_maxmemory),
                u = m.used_bytes,
                x = m.node_maxmemory,
            );
        }
        Err(e) => {
            let _ = write!(
                out,
                "used_memory:0\r\nmaxmemory:0\r\ntierkv_memory_error:{}\r\n",
                e.replace(['\r', '\n'], " ")
            );
        }
    }
    let _ = write!(
        out,
        "maxmemory_policy:noeviction\r\nnumber_of_cached_scripts:{scripts}\r\n\
         used_memory_scripts_eval:{script_bytes}\r\n"
    );
    if let Ok(m) = m {
        let _ = write!(
            out,
            "tierkv_used_memory_scope:data_nodes\r\ntierkv_maxmemory_set:{}\r\n\
             tierkv_maxmemory_total:{}\r\ntierkv_hot_bytes:{}\r\ntierkv_cold_bytes:{}\r\n\
             tierkv_keys:{}\r\ntierkv_memory_stores:{}\r\ntierkv_memory_shards:{}\r\n",
            u8::from(m.maxmemory_override.is_some()),
            m.maxmemory_total,
            m.hot_value_bytes,
            m.cold_value_bytes,
            m.keys,
            m.stores,
            m.shards,
        );
    }
    out.push_str("\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_sizes_read_as_redis_writes_them() {
        assert_eq!(human(0), "0B");
        assert_eq!(human(200), "200B");
        assert_eq!(human(1500), "1.46K");
        assert_eq!(human(939_224), "917.21K");
        assert_eq!(human(1 << 20), "1.00M");
        assert_eq!(human(10 << 30), "10.00G");
    }

    #[test]
    fn the_memory_section_reports_the_data_nodes_figures() {
        let m = ClusterMemory {
            maxmemory_override: Some(1 << 20),
            node_maxmemory: 1 << 20,
            maxmemory_total: 2 << 20,
            used_bytes: 1500,
            hot_value_bytes: 700,
            cold_value_bytes: 9000,
            keys: 12,
            stores: 2,
            shards: 4,
        };
        let s = info_section(&Ok(m), 0, 0);
        for line in [
            "used_memory:1500\r\n",
            "used_memory_human:1.46K\r\n",
            "maxmemory:1048576\r\n",
            "maxmemory_human:1.00M\r\n",
            "maxmemory_policy:noeviction\r\n",
            "tierkv_hot_bytes:700\r\n",
            "tierkv_cold_bytes:9000\r\n",
            "tierkv_keys:12\r\n",
        ] {
            assert!(s.contains(line), "{line:?} in {s}");
        }
        let s = info_section(&Err("no master\r\n".into()), 0, 0);
        assert!(s.contains("tierkv_memory_error:no master  \r\n"), "{s}");
    }
}
