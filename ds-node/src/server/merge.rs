//! Range merges: a range (the *left*) grows over its right neighbour, whose replicas sit
//! pairwise on the same (store, shard) as the left's. The shard's ranges share one engine, so
//! no key moves: only descriptors change, once every left replica's shard holds the right
//! range's data up to the same log position.
//!
//! The master asks the left range's leader (`Operator::Merge` with the right's descriptor);
//! the operator is repeated every heartbeat until the merge shows, and each delivery takes the
//! next step ([`step`]):
//!
//! 1. checks ([`check`]): adjacent, same replica count, pairwise co-located, the master's
//!    right descriptor is the one here, no conf change pending in either group, files mode;
//! 2. the right range's replica on this shard takes its group's leadership (a transfer);
//! 3. it proposes a **freeze** ([`FreezeCmd`]) naming the left range. Every right replica
//!    applying it at index F records `frozen_at(F)` in its shard's [`Frozen`] table and from
//!    then applies no write or sweep (answered `ServerBusy`, retried by the proxy) and serves
//!    nothing; its data is final at F on every replica;
//! 4. once every right replica holds F and knows it committed (the right leader's progress,
//!    so each applies it on its own even after the leader is gone), the left leader proposes
//!    a **commit-merge** ([`MergeCmd`]) carrying the right's descriptor and F. A left replica applies it only when its own shard's right replica has
//!    applied the freeze F: otherwise it *defers* the entry and every later one
//!    (`Peer::defer`) and tries again after each turn of the shard (the right replica catches
//!    up through its own Raft group). Applying ([`apply_to_desc`]): `left.end = right.end`,
//!    `version = max(left, right) + 1`; the right replica is then finished after the turn
//!    ([`finish`]): a checkpoint of the left range (now covering the right's keys) is written,
//!    then the right replica is destroyed **keeping its keys** (tombstone, Raft log and
//!    checkpoint files removed). The replica that led the left range reports the merge to the
//!    master (`MergeReport`).
//!
//! There is no rollback: a frozen right range waits for the left's commit (the master repeats
//! its operator), and while frozen it refuses writes.
//!
//! Crash safety (a kill -9 at any point leaves two ranges or one, never a lost or doubled
//! key):
//! - before the freeze is durable: two ranges, nothing changed;
//! - frozen, no commit: the freeze entry is in the right's log (a frozen range is never
//!   checkpointed, so recovery always replays it) and the right comes back frozen;
//! - commit-merge in the left's log but the left's post-merge checkpoint not durable: recovery
//!   replays the left range up to the entry before the commit and leaves the commit to the
//!   live loop, which applies it as above (the right replica was recovered with its data);
//! - post-merge checkpoint durable, tombstone not: when recovery reaches the right range, a
//!   range recovered before it already covers its span (the left, from its checkpoint), so
//!   the right is buried without loading its checkpoint (which would bring back its frozen
//!   values over the left's newer ones). When the right's id is the smaller one it is loaded
//!   first and the left's checkpoint then replaces the span's keys (`checkpoint::load` clears
//!   its span); the right, frozen and covered, is then destroyed keeping keys.
//!
//! Ranges still recover in id order: a split's right range must load after its left (whose
//! older checkpoint may cover it, `server::split`).
//!
//! Index mode (`checkpoint_mode = index`) refuses merges: its per-range bases in the key
//! index's manifest are not handled here yet.

use std::rc::Rc;
use std::time::Duration;

use net::message::{MergeReport, RangeDescriptor};
use net::{Message, RangeId};

use super::shard::{Shard, ShardDevice};
use crate::range::codec::{FreezeCmd, MergeCmd, encode_freeze, encode_merge};

/// Right ranges of merges frozen on this shard: range → (freeze index, left range). An entry
/// means the replica here applied its freeze (so its data is final at that index).
pub use super::shard::Frozen;

/// Why a merge was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The left range does not end where the right starts.
    #[error("range {left} does not end where range {right} starts")]
    NotAdjacent {
        /// The left range.
        left: RangeId,
        /// The right range.
        right: RangeId,
    },
    /// Some replica of one range has no partner of the other on the same (store, shard).
    #[error(
        "the replicas of ranges {left} and {right} are not pairwise on the same (store, shard)"
    )]
    NotColocated {
        /// The left range.
        left: RangeId,
        /// The right range.
        right: RangeId,
    },
    /// The master's right descriptor is not the one on this shard.
    #[error("range {0}: the master's descriptor is not this shard's (epoch or span moved)")]
    Stale(RangeId),
    /// A membership change is pending in one of the groups.
    #[error("range {0} has a membership change pending")]
    ConfChangePending(RangeId),
    /// Index mode does not merge yet.
    #[error("merges need checkpoint_mode = files")]
    IndexMode,
}

/// Whether `left` and `right` can merge by descriptor: adjacent, and their replicas pairwise
/// on the same (store, shard) (same number of replicas, same roles not required).
pub fn check(left: &RangeDescriptor, right: &RangeDescriptor) -> Result<(), Refusal> {
    let (l, r) = (left.id, right.id);
    if left.end.is_empty() || left.end != right.start || l == r {
        return Err(Refusal::NotAdjacent { left: l, right: r });
    }
    let mut a: Vec<_> = left
        .replicas
        .iter()
        .map(|x| (x.store_id, x.shard_id))
        .collect();
    let mut b: Vec<_> = right
        .replicas
        .iter()
        .map(|x| (x.store_id, x.shard_id))
        .collect();
    a.sort();
    b.sort();
    if a != b || a.windows(2).any(|w| w[0] == w[1]) {
        return Err(Refusal::NotColocated { left: l, right: r });
    }
    Ok(())
}

/// Applies a commit-merge to the left range's descriptor; `false` (and `left` unchanged) if it
/// is stale (another epoch) or does not fit.
pub fn apply_to_desc(left: &mut RangeDescriptor, cmd: &MergeCmd) -> bool {
    if cmd.epoch != left.epoch || check(left, &cmd.right).is_err() {
        return false;
    }
    left.end = cmd.right.end.clone();
    left.epoch.version = left.epoch.version.max(cmd.right.epoch.version) + 1;
    true
}

/// Takes the next step of merging `right` into `left` (this shard leads `left`; the
/// master's operator, repeated until done). Refusals are logged and counted.
pub fn step<D: ShardDevice>(shard: &Shard<D>, left: RangeId, right: RangeDescriptor) {
    if let Err(r) = try_step(shard, left, &right) {
        shard.metrics.borrow_mut().merges_refused_total += 1;
        tracing::info!(%left, right = %right.id, "merge refused: {r}");
    }
}

fn try_step<D: ShardDevice>(
    shard: &Shard<D>,
    left: RangeId,
    want: &RangeDescriptor,
) -> Result<(), Refusal> {
    if shard.lsm.is_some() {
        return Err(Refusal::IndexMode);
    }
    let mut st = shard.state.borrow_mut();
    let frozen = st.frozen.get(&want.id).copied();
    let Some(r) = st.peers.get(&want.id).filter(|p| p.is_initialized()) else {
        return Err(Refusal::Stale(want.id));
    };
    // Once frozen, the right's descriptor no longer moves: what the master saw must be it.
    if r.desc().epoch != want.epoch || r.desc().start != want.start || r.desc().end != want.end {
        return Err(Refusal::Stale(want.id));
    }
    let right = r.desc().clone();
    let Some(l) = st.peers.get(&left).filter(|p| p.is_leader()) else {
        return Ok(());
    };
    check(l.desc(), &right)?;
    if l.raft().raft.has_pending_conf() {
        return Err(Refusal::ConfChangePending(left));
    }
    let lepoch = l.desc().epoch;
    let now = shard.now();
    match frozen {
        Some((index, into)) if into == left => {
            let Some(r) = st.peers.get_mut(&want.id) else {
                return Ok(());
            };
            if !r.is_leader() {
                let me = r.replica_id();
                r.raft_mut().transfer_leader(me.0);
                return Ok(());
            }
            if !all_know_committed(r, index) {
                // Each right replica must be able to apply the freeze without this one.
                return Ok(());
            }
            let cmd = MergeCmd {
                epoch: lepoch,
                freeze_index: index,
                right,
            };
            let Some(l) = st.peers.get_mut(&left) else {
                return Ok(());
            };
            if l.merge_recently(Duration::from_secs(2), now) {
                return Ok(());
            }
            crate::failpoint!("ds_node::shard::merge::before_commit", |_| Ok(()));
            if l.raft_mut().propose(Vec::new(), encode_merge(&cmd)).is_ok() {
                l.note_merge_proposed(now);
                tracing::info!(%left, right = %cmd.right.id, freeze = index, "merge commit proposed");
            }
        }
        Some(_) => return Err(Refusal::Stale(want.id)),
        None => {
            let Some(r) = st.peers.get_mut(&want.id) else {
                return Ok(());
            };
            if r.raft().raft.has_pending_conf() {
                return Err(Refusal::ConfChangePending(want.id));
            }
            if !r.is_leader() {
                // The freeze is proposed by the right's leader: make it the replica here.
                let me = r.replica_id();
                r.raft_mut().transfer_leader(me.0);
                tracing::info!(range = %want.id, "merge: taking the right range's leadership");
            } else if !r.merge_recently(Duration::from_secs(2), now) {
                let cmd = FreezeCmd {
                    epoch: right.epoch,
                    into: left,
                };
                if r.raft_mut()
                    .propose(Vec::new(), encode_freeze(&cmd))
                    .is_ok()
                {
                    r.note_merge_proposed(now);
                    tracing::info!(range = %want.id, %left, "merge freeze proposed");
                }
            }
        }
    }
    drop(st);
    shard.wake.notify();
    Ok(())
}

/// Whether every replica of the group `p` leads holds entry `index` and knows it committed
/// (so each applies it on its own, even once this leader is gone).
fn all_know_committed(p: &super::peer::Peer, index: u64) -> bool {
    p.raft()
        .raft
        .prs()
        .iter()
        .all(|(_, pr)| pr.matched >= index && pr.committed_index >= index)
}

/// A left range `left` waits on a commit-merge whose freeze F its shard's right replica has
/// not applied: if that replica holds F but never learnt that F committed (it restarted
/// after acknowledging the commit and before persisting it, and its group's other replicas
/// are gone with the merge), it is told here. The commit-merge itself committing proves F
/// committed (its leader proposed it only after seeing F applied), and the replica's entries
/// up to F are the committed ones (it had acknowledged them, `all_know_committed`).
pub fn nudge_right(
    peers: &mut std::collections::BTreeMap<RangeId, super::peer::Peer>,
    left: RangeId,
) {
    let Some(cmd) = peers
        .get(&left)
        .and_then(|p| p.first_deferred())
        .and_then(|e| crate::range::codec::decode_merge(&e.data))
    else {
        return;
    };
    let Some(r) = peers.get_mut(&cmd.right.id) else {
        return;
    };
    let log = &mut r.raft_mut().raft.raft_log;
    let f = cmd.freeze_index;
    if log.committed < f && log.last_index() >= f && log.persisted >= f {
        tracing::info!(range = %cmd.right.id, freeze = f, "merge: the right replica learns its freeze committed");
        log.commit_to(f);
    }
}

/// After a turn that applied a commit-merge: makes the left range's checkpoint cover the
/// right's keys, then destroys the right replica keeping its keys (see the module
/// documentation for the order).
pub async fn finish<D: ShardDevice>(
    shard: &Rc<Shard<D>>,
    left: RangeId,
    right: RangeId,
) -> anyhow::Result<()> {
    crate::failpoint!("ds_node::shard::merge::before_checkpoint");
    super::checkpoint::checkpoint_range(shard, left).await?;
    crate::failpoint!("ds_node::shard::merge::before_destroy");
    {
        // The right's dedup records are the left's now: its sweep deletes them on time.
        let mut st = shard.state.borrow_mut();
        let records = st
            .peers
            .get_mut(&right)
            .map(|p| std::mem::take(&mut p.dedup_records));
        if let (Some(r), Some(l)) = (records, st.peers.get_mut(&left)) {
            l.dedup_records.absorb(r);
        }
    }
    shard.destroy_range_keeping_keys(right).await?;
    shard.state.borrow_mut().frozen.remove(&right);
    shard.metrics.borrow_mut().merges_total += 1;
    tracing::info!(%left, %right, "range merged");
    Ok(())
}

/// Reports a merge this shard's replica led to the master, on its own task, until recorded
/// (or the master knows a newer epoch).
pub fn report_later<D: ShardDevice>(
    shard: &Rc<Shard<D>>,
    left: RangeDescriptor,
    right: RangeDescriptor,
) {
    if shard.cfg.master_addr.is_some() {
        crate::core::spawn(report(Rc::clone(shard), left, right));
    }
}

async fn report<D: ShardDevice>(
    shard: Rc<Shard<D>>,
    left: RangeDescriptor,
    right: RangeDescriptor,
) {
    let Some(m) = shard.cfg.master_addr.clone() else {
        return;
    };
    let mut wait = Duration::from_millis(200);
    while !shard.stop.get() {
        let msg = Message::MergeReport(MergeReport {
            left: left.clone(),
            right: right.clone(),
        });
        match shard.pool.call(&m, msg).await {
            Ok(Message::MergeReportResp(_)) => return,
            Ok(Message::Error(net::RpcError::EpochMismatch { .. })) => return,
            Ok(other) => tracing::info!(range = %left.id, "merge report refused: {}", other.name()),
            Err(e) => tracing::info!(range = %left.id, "merge report failed: {e}"),
        }
        crate::core::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_secs(5));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use net::message::{Replica, ReplicaRole};
    use net::{Epoch, ReplicaId, ShardId, StoreId};

    fn desc(id: u64, start: &'static [u8], end: &'static [u8], version: u64) -> RangeDescriptor {
        RangeDescriptor {
            id: RangeId(id),
            start: Bytes::from_static(start),
            end: Bytes::from_static(end),
            epoch: Epoch {
                conf_ver: 2,
                version,
            },
            replicas: (1..=3)
                .map(|i| Replica {
                    replica_id: ReplicaId(id * 10 + i),
                    store_id: StoreId(i),
                    shard_id: ShardId(0),
                    role: ReplicaRole::Voter {},
                })
                .collect(),
            leader: None,
        }
    }

    fn cmd(left: &RangeDescriptor, right: &RangeDescriptor) -> MergeCmd {
        MergeCmd {
            epoch: left.epoch,
            freeze_index: 9,
            right: right.clone(),
        }
    }

    #[test]
    fn a_merge_covers_both_spans_and_moves_the_version_past_both() {
        let mut left = desc(1, b"", b"m", 3);
        let right = desc(2, b"m", b"", 7);
        let c = cmd(&left, &right);
        assert!(apply_to_desc(&mut left, &c));
        assert_eq!((&left.start[..], &left.end[..]), (&b""[..], &b""[..]));
        assert_eq!(left.epoch.version, 8);
        assert_eq!(left.epoch.conf_ver, 2);
        assert_eq!(left.id, RangeId(1));
        // Applied again (a stale commit, the epoch moved): nothing changes.
        let before = left.clone();
        assert!(!apply_to_desc(
            &mut left,
            &cmd(&desc(1, b"", b"m", 3), &right)
        ));
        assert_eq!(left, before);
    }

    #[test]
    fn ranges_that_are_not_neighbours_do_not_merge() {
        let left = desc(1, b"a", b"m", 3);
        let gap = desc(2, b"n", b"z", 3);
        assert!(matches!(
            check(&left, &gap),
            Err(Refusal::NotAdjacent { .. })
        ));
        // The last range has no right neighbour, and a range is not its own.
        let last = desc(1, b"m", b"", 3);
        assert!(check(&last, &desc(2, b"", b"a", 3)).is_err());
        assert!(check(&left, &left.clone()).is_err());
        let mut l = left.clone();
        assert!(!apply_to_desc(&mut l, &cmd(&left, &gap)));
        assert_eq!(l, left);
    }

    #[test]
    fn replicas_must_sit_pairwise_on_the_same_store_and_shard() {
        let left = desc(1, b"a", b"m", 3);
        let mut right = desc(2, b"m", b"z", 3);
        assert_eq!(check(&left, &right), Ok(()));
        // The order of the replica lists does not matter.
        right.replicas.reverse();
        assert_eq!(check(&left, &right), Ok(()));
        // Another shard of the same store is another place.
        right.replicas[0].shard_id = ShardId(1);
        assert!(matches!(
            check(&left, &right),
            Err(Refusal::NotColocated { .. })
        ));
        // One replica fewer.
        let mut fewer = desc(2, b"m", b"z", 3);
        fewer.replicas.pop();
        assert!(matches!(
            check(&left, &fewer),
            Err(Refusal::NotColocated { .. })
        ));
        let mut l = left.clone();
        assert!(!apply_to_desc(&mut l, &cmd(&left, &fewer)));
    }
}
