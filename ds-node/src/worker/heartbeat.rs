//! Talking to the master: bootstrap of the first range, heartbeats and the operators the
//! master returns. Every heartbeat interval each shard sends:
//! - shard 0 only: a store heartbeat (addresses, memory; protocol 2, as before);
//! - every shard, when its master connection speaks protocol 3: a shard heartbeat with the
//!   load of the window since its previous one (reads/writes and their bytes per second from
//!   `crate::load`, keys and bytes of its ranges, memory, disk);
//! - every shard, when its master connection speaks protocol 6: a memory report (budget,
//!   accounted memory, hot and cold value bytes, keys); the answer carries the cluster's
//!   `maxmemory` override, which sets the shard's budget (`server::policy::set_node_maxmemory`;
//!   without one the node's own setting applies), so a node that restarts or joins later
//!   gets it within one heartbeat;
//! - a range heartbeat for every range it leads, with that range's load (size, keys and the
//!   same rates; the master splits ranges above its thresholds: see `server::split`);
//! - a split report for a range it leads whose split the master's route table lacks (the
//!   replica that applied it as leader stopped before its report landed:
//!   `server::split::unreported`).
//!
//! Operators: transfer leader, add learner / promote / remove (proposed as Raft conf changes;
//! the new learner's store creates the replica when the leader's first message arrives and
//! catches it up by snapshot, see `server::snapshot`). A learner is promoted only once caught
//! up. Each shard also refreshes the store addresses from the master's route table, so it can
//! reach replicas on stores that joined after it started.

use std::rc::Rc;
use std::time::{Duration, Instant};

use net::Message;
use net::message::handshake::{LOAD_AND_PROBES_VERSION, MEMORY_VERSION};
use net::message::{
    Bootstrap, GetRouteTable, RangeHeartbeat, RangeStats, ShardHeartbeat, ShardLoad, ShardStats,
    StoreHeartbeat, StoreInfo, StoreStats,
};
use net::message::{Operator, ReplicaRole};
use net::{RangeId, ReplicaId, ShardId};

use raft::eraftpb::{ConfChange, ConfChangeType};

use crate::load::{Rates, Window};
use crate::server::peer::Peer;
use crate::server::{Shard, ShardDevice};

fn master<D: ShardDevice>(shard: &Shard<D>) -> anyhow::Result<String> {
    shard
        .cfg()
        .master_addr
        .clone()
        .ok_or_else(|| anyhow::anyhow!("no master configured"))
}

/// Asks the master for the cluster's first ranges (it creates them on the first call: one
/// per shard of this store) and creates those placed on this shard that it does not have. A
/// shard that crashed after the master recorded the bootstrap but before its range was
/// durable creates it here on restart: a first range still at epoch `(1, 1)` has never
/// changed, so it can hold no data this shard lost.
pub async fn bootstrap<D: ShardDevice>(shard: &Rc<Shard<D>>) -> anyhow::Result<()> {
    let m = master(shard)?;
    let r = shard
        .pool()
        .call(
            &m,
            Message::Bootstrap(Bootstrap {
                store_id: shard.store_id(),
                shard_id: ShardId(shard.index()),
            }),
        )
        .await
        .map_err(|e| anyhow::anyhow!("bootstrap: {e}"))?;
    let Message::BootstrapResp(b) = r else {
        anyhow::bail!("bootstrap: unexpected answer {}", r.name());
    };
    for range in b.ranges {
        let here = range
            .replicas
            .iter()
            .any(|r| r.store_id == shard.store_id() && r.shard_id.0 == shard.index());
        let known = shard.state().peers().contains_key(&range.id);
        if here && !known {
            tracing::info!(range = %range.id, created = b.created, "creating a first range");
            shard.create_range(range).await?;
        }
    }
    Ok(())
}

/// Sends heartbeats until the shard stops.
pub async fn run<D: ShardDevice>(shard: Rc<Shard<D>>) {
    let Ok(m) = master(&shard) else { return };
    let every = Duration::from_millis(shard.cfg().heartbeat_ms);
    let mut window_start = Instant::now();
    while !shard.is_stopping() {
        crate::core::sleep(every).await;
        let window_ms = u64::try_from(window_start.elapsed().as_millis()).unwrap_or(u64::MAX);
        window_start = Instant::now();
        let window = shard.take_load_window(window_ms);
        if shard.index() == 0 {
            let hb = store_heartbeat(&shard, &window);
            if let Err(e) = shard.pool().call(&m, Message::StoreHeartbeat(hb)).await {
                tracing::info!("store heartbeat failed: {e}");
            }
        }
        send_shard_heartbeat(&shard, &m, &window).await;
        exchange_memory(&shard, &m).await;
        match shard
            .pool()
            .call(
                &m,
                Message::GetRouteTable(GetRouteTable {
                    known_version: shard.route_version(),
                }),
            )
            .await
        {
            Ok(Message::RouteTable(t)) => {
                for range in shard.apply_route_table(t) {
                    tracing::info!(%range, "the master shows this replica removed; destroying it");
                    if let Err(e) = shard.destroy_range(range).await {
                        tracing::warn!(%range, "destroy a removed replica: {e:#}");
                    }
                }
                crate::server::split::report_unreported(&shard, &m).await;
            }
            Ok(_) => {}
            Err(e) => tracing::info!("route table refresh failed: {e}"),
        }
        let leaders: Vec<RangeHeartbeat> = {
            let st = shard.state();
            st.peers()
                .values()
                .filter(|p| p.is_initialized() && p.is_leader())
                .map(|p| {
                    let mut desc = p.desc().clone();
                    desc.leader = Some(p.replica_id());
                    let (pending, down) = lagging(p);
                    RangeHeartbeat {
                        range: desc,
                        leader: p.replica_id(),
                        stats: range_stats(p, window.ranges.get(&p.desc().id.0)),
                        pending,
                        down,
                    }
                })
                .collect()
        };
        for hb in leaders {
            let id = hb.range.id;
            match shard.pool().call(&m, Message::RangeHeartbeat(hb)).await {
                Ok(Message::RangeHeartbeatResp(r)) => {
                    if let Some(op) = r.operator {
                        execute_operator(&shard, id, op);
                    }
                }
                Ok(_) => {}
                Err(e) => tracing::info!(range = %id, "range heartbeat failed: {e}"),
            }
        }
    }
}

/// Entries a learner may lag behind the leader's last index and still count as caught up.
pub const CAUGHT_UP_SLACK: u64 = 64;

/// Replicas of a range its leader sees still catching up, and not heard from lately. A
/// replica that has acknowledged nothing yet (`matched` 0: a learner whose replica does not
/// exist until its first message and snapshot arrive) is catching up however short the log
/// is: promoted on the slack alone, it made a two-voter group of a leader and a replica that
/// did not exist, whose leader then stepped down (check-quorum) and could never be elected
/// again (a vote request cannot create a replica) — seen forming a three-node cluster.
fn lagging(p: &Peer) -> (Vec<ReplicaId>, Vec<ReplicaId>) {
    let last = p.last_index();
    let others = p
        .raft()
        .raft
        .prs()
        .iter()
        .filter(|(id, _)| **id != p.replica_id().0)
        .map(|(&id, pr)| (id, pr.matched, pr.recent_active));
    classify(last, others)
}

/// [`lagging`] over (replica, matched index, recently active) of the other replicas, the
/// leader's last index being `last`.
fn classify(
    last: u64,
    others: impl Iterator<Item = (u64, u64, bool)>,
) -> (Vec<ReplicaId>, Vec<ReplicaId>) {
    let (mut pending, mut down) = (Vec::new(), Vec::new());
    for (id, matched, recent_active) in others {
        if matched == 0 || matched + CAUGHT_UP_SLACK < last {
            pending.push(ReplicaId(id));
        }
        if !recent_active {
            down.push(ReplicaId(id));
        }
    }
    (pending, down)
}

/// A range's size and its load in the last window.
fn range_stats(p: &Peer, rates: Option<&Rates>) -> RangeStats {
    let r = rates.copied().unwrap_or_default();
    RangeStats {
        size_bytes: p.approx_size().0,
        keys: p.approx_size().1,
        read_qps: r.reads,
        write_qps: r.writes,
        read_bytes_per_sec: r.read_bytes,
        write_bytes_per_sec: r.write_bytes,
    }
}

/// Sends this shard's load, if the master speaks protocol 3 (a master of the previous
/// release would close the connection on the unknown message kind).
async fn send_shard_heartbeat<D: ShardDevice>(shard: &Shard<D>, master: &str, window: &Window) {
    let client = match shard.pool().get(master).await {
        Ok(c) => c,
        Err(e) => {
            tracing::info!("shard heartbeat: no master connection: {e}");
            return;
        }
    };
    if client.peer().version < LOAD_AND_PROBES_VERSION {
        return;
    }
    let hb = ShardHeartbeat {
        store_id: shard.store_id(),
        shard_id: ShardId(shard.index()),
        load: shard_load(shard, window),
    };
    if let Err(e) = client.call(Message::ShardHeartbeat(hb)).await {
        tracing::info!("shard heartbeat failed: {e}");
    }
}

/// Reports this shard's memory and applies the `maxmemory` the master answers, if the master
/// speaks protocol 6 (an older one keeps every node on its own setting).
async fn exchange_memory<D: ShardDevice>(shard: &Shard<D>, master: &str) {
    let client = match shard.pool().get(master).await {
        Ok(c) => c,
        Err(e) => {
            tracing::info!("memory report: no master connection: {e}");
            return;
        }
    };
    if client.peer().version < MEMORY_VERSION {
        return;
    }
    let keys = {
        let st = shard.state();
        st.peers()
            .values()
            .filter(|p| p.is_initialized())
            .map(|p| p.approx_size().1)
            .sum()
    };
    let report = crate::server::policy::memory_report(shard, keys);
    match client.call(Message::ShardMemory(report)).await {
        Ok(Message::MemorySetting(s)) => {
            crate::server::policy::set_node_maxmemory(shard, s.maxmemory);
        }
        Ok(other) => tracing::info!("memory report: unexpected answer {}", other.name()),
        Err(e) => tracing::info!("memory report failed: {e}"),
    }
}

/// This shard's load: the window's rates, its replicas' keys and bytes, its engine's memory
/// and its log's bytes on disk.
pub fn shard_load<D: ShardDevice>(shard: &Shard<D>, window: &Window) -> ShardLoad {
    let disk_used = shard
        .log()
        .segment_usage()
        .iter()
        .map(|(_, u, _)| u.bytes)
        .sum();
    let st = shard.state();
    let initialized = || st.peers().values().filter(|p| p.is_initialized());
    ShardLoad {
        ranges: st.peers().len() as u32,
        leaders: st.peers().values().filter(|p| p.is_leader()).count() as u32,
        read_ops_per_sec: window.shard.reads,
        write_ops_per_sec: window.shard.writes,
        read_bytes_per_sec: window.shard.read_bytes,
        write_bytes_per_sec: window.shard.write_bytes,
        keys: initialized().map(|p| p.approx_size().1).sum(),
        size_bytes: initialized().map(|p| p.approx_size().0).sum(),
        mem_used: st.engine().accounted().total(),
        disk_used,
    }
}

fn store_heartbeat<D: ShardDevice>(shard: &Shard<D>, window: &Window) -> StoreHeartbeat {
    let st = shard.state();
    let shard_addrs = shard.own_addrs();
    StoreHeartbeat {
        store: StoreInfo {
            store_id: shard.store_id(),
            addr: shard_addrs.first().cloned().unwrap_or_default(),
            shard_addrs,
            labels: Vec::new(),
        },
        stats: StoreStats {
            mem_used: st.engine().accounted().total(),
            mem_capacity: shard.cfg().maxmemory,
            ops_per_sec: window.shard.reads + window.shard.writes,
            shards: vec![ShardStats {
                shard_id: ShardId(shard.index()),
                ranges: st.peers().len() as u32,
                leaders: st.peers().values().filter(|p| p.is_leader()).count() as u32,
                ops_per_sec: window.shard.reads + window.shard.writes,
                ..ShardStats::default()
            }],
            ..StoreStats::default()
        },
    }
}

/// Executes a master operator on a range this shard leads (best effort: the master re-sends
/// operators that did not take effect).
pub fn execute_operator<D: ShardDevice>(shard: &Shard<D>, range: RangeId, op: Operator) {
    let mut st = shard.state_mut();
    if st.frozen().contains_key(&range) {
        // Frozen for a merge (`server::merge`): its descriptor must not move any more.
        tracing::info!(%range, "operator refused: the range is frozen for a merge");
        return;
    }
    let Some(p) = st.peer_mut(range) else {
        return;
    };
    if !p.is_initialized() || !p.is_leader() {
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
            if transfer_to(p, to_replica, shard.now()) {
                drop(st);
                shard.wake_ready_loop();
            }
            return;
        }
        // A step already done is not proposed again: a conf change that changes no replica
        // would move conf_ver without a membership change, which the master refuses.
        Operator::AddLearner { replica_id, .. }
            if p.desc().replicas.iter().any(|r| r.replica_id == replica_id) =>
        {
            return;
        }
        Operator::PromoteLearner { replica_id }
            if p.desc()
                .replicas
                .iter()
                .all(|r| r.replica_id != replica_id || r.role == ReplicaRole::Voter {}) =>
        {
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
            // Only a caught-up learner becomes a voter: a lagging voter would count in the
            // quorum and stall writes until it caught up (the master sends it again).
            if lagging(p).0.contains(&replica_id) {
                tracing::info!(%range, replica = %replica_id, "learner not caught up yet; promotion deferred");
                return;
            }
            change(ConfChangeType::AddNode, replica_id.0, Vec::new())
        }
        Operator::RemoveReplica { replica_id } if replica_id == p.replica_id() => {
            if hand_over(p, shard.now()) {
                drop(st);
                shard.wake_ready_loop();
            }
            return;
        }
        Operator::RemoveReplica { replica_id }
            if p.desc().replicas.iter().all(|r| r.replica_id != replica_id) =>
        {
            return;
        }
        Operator::RemoveReplica { replica_id } => {
            change(ConfChangeType::RemoveNode, replica_id.0, Vec::new())
        }
        Operator::Split {
            split_key,
            new_range_id,
            new_replica_ids,
        } => {
            drop(st);
            crate::server::split::propose(shard, range, split_key, new_range_id, new_replica_ids);
            return;
        }
        Operator::Merge { right } => {
            drop(st);
            crate::server::merge::step(shard, range, right);
            return;
        }
    };
    tracing::info!(%range, ?cc, "proposing membership change");
    if let Err(e) = p.raft_mut().propose_conf_change(Vec::new(), cc) {
        tracing::info!(%range, "membership change not proposed: {e}");
    }
    drop(st);
    shard.wake_ready_loop();
}

/// Starts a leader transfer of `p` to `to` at `now`; whether it started. raft-rs drops every
/// proposal while a transfer is pending (up to an election timeout): transfer only to a
/// voter that is reachable and caught up, and never restart a pending transfer (the master
/// repeats its operator every heartbeat).
fn transfer_to(p: &mut Peer, to: ReplicaId, now: Instant) -> bool {
    let range = p.range_id();
    let (pending, down) = lagging(p);
    let voter = p
        .desc()
        .replicas
        .iter()
        .any(|r| r.replica_id == to && r.role == ReplicaRole::Voter {});
    if !voter
        || pending.contains(&to)
        || down.contains(&to)
        || p.raft().raft.lead_transferee.is_some()
    {
        tracing::info!(%range, %to, "leader transfer deferred: target not a caught-up, reachable voter, or a transfer is pending");
        return false;
    }
    tracing::info!(%range, %to, "transferring leadership");
    p.transfer_leader(to, now);
    true
}

/// A leader asked to remove itself hands leadership to a caught-up voter at `now` instead
/// (the master sends the removal again to the new leader); whether a transfer started.
fn hand_over(p: &mut Peer, now: Instant) -> bool {
    let (pending, down) = lagging(p);
    let to = p
        .desc()
        .replicas
        .iter()
        .filter(|r| r.replica_id != p.replica_id() && r.role == ReplicaRole::Voter {})
        .map(|r| r.replica_id)
        .find(|id| !pending.contains(id) && !down.contains(id));
    let Some(to) = to else {
        return false;
    };
    let range = p.range_id();
    tracing::info!(%range, %to, "leader to be removed: transferring leadership first");
    p.transfer_leader(to, now);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replica_that_acknowledged_nothing_is_catching_up_even_on_a_short_log() {
        let (pending, down) = classify(3, [(6, 0, true), (7, 3, true)].into_iter());
        assert_eq!(
            pending,
            vec![ReplicaId(6)],
            "never promoted before it exists"
        );
        assert!(down.is_empty());
    }

    #[test]
    fn a_replica_within_the_slack_is_caught_up_and_one_not_heard_from_is_down() {
        let last = 1000;
        let (pending, down) = classify(
            last,
            [
                (5, last - CAUGHT_UP_SLACK, true),
                (6, last - CAUGHT_UP_SLACK - 1, true),
                (7, last, false),
            ]
            .into_iter(),
        );
        assert_eq!(pending, vec![ReplicaId(6)]);
        assert_eq!(down, vec![ReplicaId(7)]);
    }
}
