//! Membership changes: conf-change entries decoded and applied to a range's descriptor, and
//! the replica destroyed when a change removed it from this shard.
//!
//! An operation module: imports the shard state and `checkpoint`, never the ready loop or
//! the request handler.

use engines::vlog::{LogIndex, LogRecord};
use net::message::{RangeDescriptor, Replica, ReplicaRole};
use net::{ReplicaId, StoreId};
use raft::eraftpb::{ConfChangeType, ConfChangeV2, EntryType};

use super::shard::{Shard, ShardDevice};

impl<D: ShardDevice> Shard<D> {
    /// Removes the replica of `range` from this shard after a conf change removed it:
    /// tombstone record first (so a restart does not bring it back), then its keys, its log
    /// entries and its checkpoint.
    pub async fn destroy_range(&self, range: net::RangeId) -> anyhow::Result<()> {
        self.destroy(range, true).await
    }

    /// Removes the replica of `range` that a merge folded into its left neighbour
    /// (`server::merge`): as [`Shard::destroy_range`], but its keys stay in the engine (they
    /// belong to the left range now).
    pub async fn destroy_range_keeping_keys(&self, range: net::RangeId) -> anyhow::Result<()> {
        self.destroy(range, false).await
    }

    async fn destroy(&self, range: net::RangeId, clear_keys: bool) -> anyhow::Result<()> {
        let Some(mut p) = self.state.borrow_mut().peers.remove(&range) else {
            return Ok(());
        };
        let err = || net::message::kv::KvResponse::Err {
            error: net::RpcError::RangeNotFound { range_id: range },
        };
        p.fail_waiting(err);
        {
            let mut st = self.state.borrow_mut();
            // The descriptor the removal produced waits for the next group commit: written
            // after the tombstone, it would bring the range back at restart, without the
            // checkpoint removed below. The tombstone supersedes it.
            st.meta_records.retain(|r| match r {
                LogRecord::ConfState { range: r, .. } | LogRecord::HardState { range: r, .. } => {
                    *r != range
                }
                _ => true,
            });
            // The addresses learnt for the range's other replicas are no longer needed.
            st.reply_to.retain(|(r, _), _| *r != range);
        }
        if clear_keys && p.is_initialized() {
            super::checkpoint::clear_range(
                &mut self.state.borrow_mut().engine,
                &p.desc().start,
                &p.desc().end,
            );
        }
        self.bury(range, p.replica_id()).await?;
        self.metrics.borrow_mut().replicas_destroyed_total += 1;
        tracing::info!(%range, replica = p.replica_id().0, "replica destroyed");
        Ok(())
    }

    /// Removes what the shard keeps of replica `replica` of `range` on disk (its peer is gone
    /// or was never loaded): tombstone record first (so a restart does not bring it back),
    /// then its log entries and its checkpoint files.
    pub(super) async fn bury(
        &self,
        range: net::RangeId,
        replica: net::ReplicaId,
    ) -> anyhow::Result<()> {
        self.state.borrow_mut().tombstones.insert((range, replica));
        let lr = range;
        self.log
            .append_one(LogRecord::ConfState {
                range: lr,
                data: crate::range::codec::encode_tombstone(replica.0),
            })
            .await
            .map_err(|e| anyhow::anyhow!("persist tombstone of range {range}: {e}"))?;
        if let Some((_, last)) = self.log.bounds(lr) {
            self.log
                .compact(lr, LogIndex(last.0 + 1))
                .await
                .map_err(|e| anyhow::anyhow!("compact destroyed range {range}: {e}"))?;
        }
        super::checkpoint::remove(self, range).await;
        self.state.borrow_mut().checkpoint_segments.remove(&range);
        Ok(())
    }
}

/// The raft-rs entry type of a log record's type byte.
pub fn entry_type_of(b: u8) -> EntryType {
    match b {
        1 => EntryType::EntryConfChange,
        2 => EntryType::EntryConfChangeV2,
        _ => EntryType::EntryNormal,
    }
}

/// Decodes a conf-change entry's data (`range::raft_pb`: never rust-protobuf's parser, the
/// entry came from the network). Conf changes are rare: the copy does not matter.
pub fn decode_conf_change(t: EntryType, data: &[u8]) -> Option<ConfChangeV2> {
    crate::range::raft_pb::decode_conf_change(t, &bytes::Bytes::copy_from_slice(data))
        .ok()
        .flatten()
}

/// Applies simple (non-joint) membership changes to a descriptor. The replica's store and
/// shard travel in the change's context as `store_id u64 LE | shard_id u32 LE`.
pub fn apply_conf_change_to_desc(desc: &mut RangeDescriptor, cc: &ConfChangeV2) {
    for ch in &cc.changes {
        let id = ch.node_id;
        let pos = desc.replicas.iter().position(|r| r.replica_id.0 == id);
        match ch.get_change_type() {
            ConfChangeType::RemoveNode => {
                if let Some(p) = pos {
                    desc.replicas.remove(p);
                }
            }
            t => {
                let role = if t == ConfChangeType::AddLearnerNode {
                    ReplicaRole::Learner {}
                } else {
                    ReplicaRole::Voter {}
                };
                match pos {
                    Some(p) => desc.replicas[p].role = role,
                    None => {
                        let c = &cc.context;
                        let store = c
                            .get(..8)
                            .and_then(|b| b.try_into().ok())
                            .map(u64::from_le_bytes);
                        let shard = c
                            .get(8..12)
                            .and_then(|b| b.try_into().ok())
                            .map(u32::from_le_bytes);
                        if let (Some(store), Some(shard)) = (store, shard) {
                            desc.replicas.push(Replica {
                                replica_id: ReplicaId(id),
                                store_id: StoreId(store),
                                shard_id: net::ShardId(shard),
                                role,
                            });
                        }
                    }
                }
            }
        }
    }
    desc.epoch.conf_ver += 1;
}
