//! Talking to the master: bootstrap of the first range, store heartbeats (shard 0) and range
//! heartbeats for every range this shard leads. Operators returned by the master are logged
//! and not executed yet (see `docs/guides/ds-node.md`).

use std::rc::Rc;
use std::time::Duration;

use net::Message;
use net::message::{
    Bootstrap, RangeHeartbeat, RangeStats, ShardStats, StoreHeartbeat, StoreInfo, StoreStats,
};
use net::{ReplicaId, ShardId, StoreId};

use crate::server::Shard;

fn master(shard: &Shard) -> anyhow::Result<String> {
    shard
        .cfg
        .master_addr
        .clone()
        .ok_or_else(|| anyhow::anyhow!("no master configured"))
}

/// Asks the master to bootstrap the cluster's first range on this shard, and creates it.
pub async fn bootstrap(shard: &Rc<Shard>) -> anyhow::Result<()> {
    let m = master(shard)?;
    let r = shard
        .pool
        .call(
            &m,
            Message::Bootstrap(Bootstrap {
                store_id: StoreId(shard.store_id),
                shard_id: ShardId(shard.index),
            }),
        )
        .await
        .map_err(|e| anyhow::anyhow!("bootstrap: {e}"))?;
    match r {
        Message::BootstrapResp(b) => {
            let here = b
                .range
                .replicas
                .iter()
                .any(|r| r.store_id.0 == shard.store_id && r.shard_id.0 == shard.index);
            if here {
                shard.create_range(b.range).await?;
            }
            Ok(())
        }
        other => Err(anyhow::anyhow!(
            "bootstrap: unexpected answer {}",
            other.name()
        )),
    }
}

/// Sends heartbeats until the shard stops.
pub async fn run(shard: Rc<Shard>) {
    let Ok(m) = master(&shard) else { return };
    let every = Duration::from_millis(shard.cfg.heartbeat_ms);
    while !shard.stop.get() {
        crate::core::sleep(every).await;
        if shard.index == 0 {
            let hb = store_heartbeat(&shard);
            if let Err(e) = shard.pool.call(&m, Message::StoreHeartbeat(hb)).await {
                tracing::info!("store heartbeat failed: {e}");
            }
        }
        let leaders: Vec<RangeHeartbeat> = {
            let st = shard.state.borrow();
            st.peers
                .values()
                .filter(|p| p.is_leader())
                .map(|p| {
                    let mut desc = p.desc.clone();
                    desc.leader = Some(ReplicaId(p.replica_id));
                    RangeHeartbeat {
                        range: desc,
                        leader: ReplicaId(p.replica_id),
                        stats: RangeStats::default(),
                        pending: Vec::new(),
                        down: Vec::new(),
                    }
                })
                .collect()
        };
        for hb in leaders {
            let id = hb.range.id;
            match shard.pool.call(&m, Message::RangeHeartbeat(hb)).await {
                Ok(Message::RangeHeartbeatResp(r)) => {
                    if let Some(op) = r.operator {
                        tracing::warn!(range = %id, ?op, "master operator not executed (not built yet)");
                    }
                }
                Ok(_) => {}
                Err(e) => tracing::info!(range = %id, "range heartbeat failed: {e}"),
            }
        }
    }
}

fn store_heartbeat(shard: &Shard) -> StoreHeartbeat {
    let st = shard.state.borrow();
    let shard_addrs = shard
        .addrs
        .borrow()
        .get(&shard.store_id)
        .cloned()
        .unwrap_or_default();
    StoreHeartbeat {
        store: StoreInfo {
            store_id: StoreId(shard.store_id),
            addr: shard_addrs.first().cloned().unwrap_or_default(),
            shard_addrs,
            labels: Vec::new(),
        },
        stats: StoreStats {
            mem_used: st.engine.memory_bytes() as u64,
            shards: vec![ShardStats {
                shard_id: ShardId(shard.index),
                ranges: st.peers.len() as u32,
                leaders: st.peers.values().filter(|p| p.is_leader()).count() as u32,
                ..ShardStats::default()
            }],
            ..StoreStats::default()
        },
    }
}
