//! The cluster-wide `maxmemory` (`docs/format/wire.md` §4.5 "Memory"): the override the
//! master logs and hands to every shard, and the shards' memory reports it sums for proxies.

use net::message::{ClusterMemory, MemorySetting, SetMaxMemory, ShardMemory};
use net::{RpcError, ShardId, StoreId};

use super::{Core, bad};
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

    /// The override and the sums of the latest reports of every store not a tombstone.
    pub fn cluster_memory(&self) -> ClusterMemory {
        let live: Vec<StoreId> = self
            .state()
            .stores()
            .filter(|s| s.state != StoreState::Tombstone)
            .map(|s| s.info.store_id)
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
