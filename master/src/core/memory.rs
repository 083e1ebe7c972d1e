//! The cluster-wide `maxmemory` (`docs/format/wire.md` §4.5 "Memory"): the override the
//! master logs and hands to every shard, and the shards' memory reports it sums for proxies.

use net::message::{ClusterMemory, MemorySetting, SetMaxMemory, ShardMemory};
use net::{RpcError, ShardId, StoreId};

use super::{Core, bad};
use crate::detector::Health;
use crate::state::{Command, StoreState};

impl Core {
    /// Logs `maxmemory` for every DS node (the reply waits for the fsync), then answers with
    /// the cluster's figures.
    pub fn set_max_memory(&mut self, req: SetMaxMemory) -> Result<ClusterMemory, RpcError> {
        if self.state().max_memory() != Some(req.maxmemory_bytes) {
            self.propose(&Command::SetMaxMemory {
                bytes: req.maxmemory_bytes,
            })?;
        }
        Ok(self.cluster_memory())
    }

    /// Records a shard's memory report and answers the `maxmemory` its node applies.
    pub fn shard_memory(&mut self, m: ShardMemory) -> Result<MemorySetting, RpcError> {
        let Some(store) = self.state().store(m.store_id) else {
            return Err(bad(format!(
                "memory report from unregistered store {}",
                m.store_id
            )));
        };
        let shards = store.info.shard_addrs.len() as u32;
        if m.shard_id.0 >= shards {
            return Err(bad(format!(
                "store {} has no shard {}",
                m.store_id, m.shard_id
            )));
        }
        // A store re-registered with fewer shards forgets the others' reports.
        self.shard_memory
            .retain(|(s, sh), _| *s != m.store_id || sh.0 < shards);
        self.shard_memory.insert((m.store_id, m.shard_id), m);
        Ok(MemorySetting {
            maxmemory: self.state().max_memory(),
        })
    }

    /// The latest memory report of each shard of `store`.
    pub fn store_memory(&self, store: StoreId) -> impl Iterator<Item = &ShardMemory> {
        self.shard_memory
            .range((store, ShardId(0))..=(store, ShardId(u32::MAX)))
            .map(|(_, m)| m)
    }

    /// The `maxmemory` a store applies: the override, else its own setting as its shards'
    /// budgets add up (a DS node registers without one: its registered capacity is the
    /// cluster default, not what it applies).
    pub fn effective_max_memory(&self, store: StoreId) -> u64 {
        let own = || self.store_memory(store).map(|m| m.budget_bytes).sum();
        self.state().max_memory().unwrap_or_else(own)
    }

    /// The override and the sums of the latest reports of every store that is neither a
    /// tombstone nor declared dead by the failure detector (a dead node's last report would
    /// otherwise count for ever; it counts again from its first report once it is back).
    pub fn cluster_memory(&self) -> ClusterMemory {
        let live: Vec<StoreId> = self
            .state()
            .stores()
            .filter(|s| s.state != StoreState::Tombstone)
            .map(|s| s.info.store_id)
            .filter(|&id| self.detector.health(id) != Some(Health::Dead))
            .collect();
        let mut c = ClusterMemory {
            maxmemory_override: self.state().max_memory(),
            node_maxmemory: live
                .iter()
                .map(|&s| self.effective_max_memory(s))
                .max()
                .unwrap_or(0),
            stores: live.len() as u32,
            ..ClusterMemory::default()
        };
        for m in live.iter().flat_map(|&s| self.store_memory(s)) {
            c.maxmemory_total += m.budget_bytes;
            c.used_bytes += m.used_bytes;
            c.hot_value_bytes += m.hot_value_bytes;
            c.cold_value_bytes += m.cold_value_bytes;
            c.keys += m.keys;
            c.shards += 1;
        }
        c
    }
}

#[cfg(test)]
mod tests {
    use net::message::{ShardHeartbeat, StoreInfo, StoreRegister};

    use super::*;
    use crate::core::MasterConfig;

    fn register(c: &mut Core, port: u16, now: u64) -> StoreId {
        let store = StoreInfo {
            store_id: StoreId(0),
            addr: format!("127.0.0.1:{port}"),
            shard_addrs: vec![format!("127.0.0.1:{port}")],
            labels: vec![],
        };
        let r = StoreRegister {
            store,
            mem_capacity: 0,
            disk_capacity: 0,
        };
        c.register_store(r, now).unwrap().store_id
    }

    fn report(c: &mut Core, store: StoreId, used: u64) {
        c.shard_memory(ShardMemory {
            store_id: store,
            shard_id: ShardId(0),
            budget_bytes: 1000,
            used_bytes: used,
            hot_value_bytes: 0,
            cold_value_bytes: 0,
            keys: 1,
        })
        .unwrap();
    }

    fn heartbeat(c: &mut Core, store: StoreId, now: u64) {
        let hb = ShardHeartbeat {
            store_id: store,
            shard_id: ShardId(0),
            load: Default::default(),
        };
        c.shard_heartbeat(hb, now).unwrap();
    }

    #[test]
    fn a_dead_stores_last_report_stops_counting_and_counts_again_once_it_is_back() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Core::open(MasterConfig::new(dir.path()), 1).unwrap().0;
        let down_after = c.cfg.schedule.store_down_after_ms;
        let (a, b) = (register(&mut c, 1, 0), register(&mut c, 2, 0));
        report(&mut c, a, 10);
        report(&mut c, b, 20);
        assert_eq!(c.cluster_memory().used_bytes, 30);
        // Only `a` keeps sending heartbeats: `b` is declared dead.
        let later = down_after + 1;
        heartbeat(&mut c, a, later);
        c.detect(later);
        let m = c.cluster_memory();
        assert_eq!((m.used_bytes, m.stores, m.shards), (10, 1, 1));
        heartbeat(&mut c, b, later + 1);
        c.detect(later + 1);
        report(&mut c, b, 25);
        assert_eq!(c.cluster_memory().used_bytes, 35);
    }
}
