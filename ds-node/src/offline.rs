//! Offline inspection of a stopped node's data directory: recovers every shard exactly as a
//! start would (checkpoints + shard log), without listening or talking to anyone, and returns
//! the engine's contents (cold values read from the shard log). Used to check that replicas
//! hold byte-identical data.

use bytes::Bytes;

use crate::config::DsConfig;
use crate::range::engine::Stored;
use crate::range::store::Entry;
use crate::server::{Shard, ShardDevice};

/// Every entry of every shard of the (stopped) node configured by `cfg`, in key order.
pub fn dump(cfg: &DsConfig) -> anyhow::Result<Vec<(Bytes, Entry)>> {
    let mut all = Vec::new();
    for index in 0..cfg.shards {
        all.extend(dump_shard(cfg, index)?);
    }
    all.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(all)
}

/// Every entry of shard `index` of the (stopped) node configured by `cfg`, in key order.
pub fn dump_shard(cfg: &DsConfig, index: usize) -> anyhow::Result<Vec<(Bytes, Entry)>> {
    let store_id = std::fs::read_to_string(cfg.data_dir.join("store-id"))
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(cfg.store_id);
    let cfg = cfg.clone();
    crate::core::block_on(move || {
        Box::pin(async move {
            let shard = Shard::open(cfg, index as u32, net::StoreId(store_id), net::ClusterId(0))
                .await
                .map_err(|e| format!("open shard {index}: {e:#}"))?;
            let stored = shard.state().engine().scan_stored(&[], &[]);
            entries_of(&shard, stored).await
        })
    })?
    .map_err(|e| anyhow::anyhow!("{e}"))
}

/// The entries with every cold value read from the shard log (checksums checked).
async fn entries_of<D: ShardDevice>(
    shard: &Shard<D>,
    stored: Vec<(Bytes, Stored)>,
) -> Result<Vec<(Bytes, Entry)>, String> {
    let pointers: Vec<_> = stored
        .iter()
        .filter_map(|(_, s)| match s {
            Stored::Cold { pointer, .. } => Some(*pointer),
            Stored::Hot(_) => None,
        })
        .collect();
    let mut values = crate::server::cold::read_values(shard, &pointers)
        .await
        .map_err(|e| e.to_string())?
        .into_iter();
    let mut out = Vec::with_capacity(stored.len());
    for (k, s) in stored {
        let e = match s {
            Stored::Hot(e) => e,
            Stored::Cold { expire_at_ms, .. } => Entry {
                value: values.next().ok_or("a cold value was not read")?.into(),
                expire_at_ms,
            },
        };
        out.push((k, e));
    }
    Ok(out)
}
