//! Talking to the master: bootstrap of the first range, store heartbeats (shard 0) and range
//! heartbeats for every range this shard leads, and the operators the master returns:
//! transfer leader, add learner / promote / remove (proposed as Raft conf changes). Split is
//! not executed yet, and a learner added on another store cannot start there yet (that needs
//! snapshots): see `docs/guides/ds-node.md`.

use std::rc::Rc;
use std::time::Duration;

use net::Message;
use net::message::Operator;
use net::message::{
    Bootstrap, RangeHeartbeat, RangeStats, ShardStats, StoreHeartbeat, StoreInfo, StoreStats,
};
use net::{ReplicaId, ShardId, StoreId};

use raft::eraftpb::{ConfChange, ConfChangeType};

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
                        execute_operator(&shard, id.0, op);
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

/// Executes a master operator on a range this shard leads (best effort: the master re-sends
/// operators that did not take effect).
pub fn execute_operator(shard: &Shard, range: u64, op: Operator) {
    let mut st = shard.state.borrow_mut();
    let Some(p) = st.peers.get_mut(&range) else {
        return;
    };
    if !p.is_leader() {
        return;
    }
    let change = |t: ConfChangeType, id: u64, context: Vec<u8>| ConfChange {
        change_type: t,
        node_id: id,
        context: context.into(),
        ..ConfChange::default()
    };
    let cc = match op {
        Operator::TransferLeader { to_replica } => {
            tracing::info!(range, to = %to_replica, "transferring leadership");
            p.node.transfer_leader(to_replica.0);
            drop(st);
            shard.wake.notify();
            return;
        }
        Operator::AddLearner {
            store,
            shard: s,
            replica_id,
        } => {
            let mut ctx = store.0.to_le_bytes().to_vec();
            ctx.extend_from_slice(&s.0.to_le_bytes());
            change(ConfChangeType::AddLearnerNode, replica_id.0, ctx)
        }
        Operator::PromoteLearner { replica_id } => {
            change(ConfChangeType::AddNode, replica_id.0, Vec::new())
        }
        Operator::RemoveReplica { replica_id } => {
            change(ConfChangeType::RemoveNode, replica_id.0, Vec::new())
        }
        Operator::Split { .. } => {
            tracing::warn!(range, "split operator not executed (not built yet)");
            return;
        }
    };
    tracing::info!(range, ?cc, "proposing membership change");
    if let Err(e) = p.node.propose_conf_change(Vec::new(), cc) {
        tracing::info!(range, "membership change not proposed: {e}");
    }
    drop(st);
    shard.wake.notify();
}
