//! Offline inspection of a stopped node's data directory: recovers every shard exactly as a
//! start would (checkpoints + shard log), without listening or talking to anyone, and returns
//! the engine's contents. Used to check that replicas hold byte-identical data.

use bytes::Bytes;

use crate::config::DsConfig;
use crate::range::store::{Entry, KvStore};
use crate::server::Shard;

/// Every entry of every shard of the (stopped) node configured by `cfg`, in key order.
pub fn dump(cfg: &DsConfig) -> anyhow::Result<Vec<(Bytes, Entry)>> {
    let store_id = std::fs::read_to_string(cfg.data_dir.join("store-id"))
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(cfg.store_id);
    let mut all = Vec::new();
    for index in 0..cfg.shards {
        let cfg = cfg.clone();
        let got = crate::core::block_on(move || {
            Box::pin(async move {
                let shard = Shard::open(cfg, index as u32, store_id, net::ClusterId(0))
                    .await
                    .map_err(|e| format!("open shard {index}: {e:#}"))?;
                let st = shard.state.borrow();
                Ok::<_, String>(st.engine.scan(&[], None, usize::MAX, false))
            })
        })?
        .map_err(|e| anyhow::anyhow!("{e}"))?;
        all.extend(got);
    }
    all.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(all)
}
