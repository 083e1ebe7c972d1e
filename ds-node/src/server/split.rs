//! Range splits.
//!
//! The master asks a range's leader to split (`Operator::Split` with the new range's ids; the
//! leader picks the key when the master leaves it empty). The leader proposes a split entry
//! ([`SplitCmd`]) carrying the epoch it saw; every replica applies it in log order:
//!
//! 1. the left range (same id) ends at the split key and its epoch `version` grows; a split
//!    proposed against another epoch is ignored, so replicas agree;
//! 2. the right range is created on the same shard ([`create_right`]): its keys are already in
//!    the shard's engine, so its first checkpoint (Raft index 5, like a new range) is written
//!    from them, then its descriptor and hard state go into the next group commit, and its
//!    Raft group starts. The replica that led the left range reports the split to the master
//!    (`SplitReport`) as soon as it applies — proxies holding the old epoch get
//!    `EpochMismatch` until the master knows — and campaigns for the right range at once.
//!
//! Requests in flight for keys that moved are answered `RangeNotFound` at apply (the proxy
//! refreshes its routes and retries). Split keys fall between user keys ([`boundary`]), so all
//! internal keys of a Redis key (a hash's fields and its metadata) stay in one range.
//!
//! Crash safety: the split entry is in the left range's log before anything else happens. If
//! the node stops before the right range's descriptor is durable, recovery replays the split
//! entry in the left range's log and creates the right range again from the engine (the
//! left's replay has just rebuilt those keys as of the split). Ranges recover in id order, and
//! a right range always has a larger id than its left (ids grow), so a right range's own
//! checkpoint is loaded after the left's replay touched its keys.

use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use engines::vlog::{LogIndex, LogRecord, Term};
use net::message::{RangeDescriptor, Replica, SplitReport};
use net::{Message, RangeId, ReplicaId};
use raft::eraftpb::HardState;

use super::peer::conf_state_of;
use super::shard::{INIT_INDEX, Shard, ShardDevice};
use crate::range::checkpoint::CheckpointMeta;
use crate::range::codec::{SplitCmd, encode_meta};
use crate::range::engine::MasstreeStore;
use crate::range::storage::{RaftLogCache, SnapshotPoint};

/// Applies `cmd` to the left range's descriptor; returns the right range's descriptor, or
/// `None` (and leaves `left` alone) if the split is stale or malformed.
pub fn apply_to_desc(left: &mut RangeDescriptor, cmd: &SplitCmd) -> Option<RangeDescriptor> {
    let inside = cmd.split_key > left.start && (left.end.is_empty() || cmd.split_key < left.end);
    if cmd.epoch != left.epoch || !inside || cmd.new_replica_ids.len() != left.replicas.len() {
        return None;
    }
    left.epoch.version += 1;
    let right = RangeDescriptor {
        id: RangeId(cmd.new_range_id),
        start: cmd.split_key.clone(),
        end: left.end.clone(),
        epoch: left.epoch,
        replicas: left
            .replicas
            .iter()
            .zip(&cmd.new_replica_ids)
            .map(|(r, id)| Replica {
                replica_id: ReplicaId(*id),
                ..*r
            })
            .collect(),
        leader: None,
    };
    left.end = cmd.split_key.clone();
    Some(right)
}

/// The split point at or before internal key `k` that falls between user keys: for Redis
/// data the start of `k`'s user key (`'r' | slot | db | len | key`), otherwise `k` itself.
pub fn boundary(k: &[u8]) -> Bytes {
    if let Some((_, key, _)) = crate::keyspace::parse_user(k) {
        return Bytes::copy_from_slice(&k[..crate::keyspace::USER_PREFIX_BYTES + key.len()]);
    }
    Bytes::copy_from_slice(k)
}

/// Where to split `desc`: the middle of its bytes, moved to a user-key boundary; `None` if
/// no such key lies strictly inside the range.
///
/// When the range's first and last keys have the same boundary — one user key holds the
/// whole range, a big list or set — every key between them has it too, the middle's
/// included: that boundary is the answer without walking the range. The master asks a hot
/// range to split every few seconds, and such a range can never split; walking it each time
/// cost a pipelined LPUSH of one list ~7 % of the shard's time (docs/benchmarks.md, "Write
/// path CPU per operation").
pub fn pick_key(engine: &MasstreeStore, desc: &RangeDescriptor) -> Option<Bytes> {
    let (first, last) = engine.edge_keys(&desc.start, &desc.end)?;
    let key = match boundary(&first) {
        b if b == boundary(&last) => b,
        _ => boundary(&engine.middle_key(&desc.start, &desc.end)?),
    };
    (key > desc.start && (desc.end.is_empty() || key < desc.end)).then_some(key)
}

/// Creates the right range of a split on this shard (see the module documentation);
/// `leader`: this replica led the left range (it campaigns and reports to the master).
pub async fn create_right<D: ShardDevice>(
    shard: &Rc<Shard<D>>,
    right: RangeDescriptor,
    left: Option<RangeDescriptor>,
) -> anyhow::Result<()> {
    let id = right.id;
    let Some(me) = right
        .replicas
        .iter()
        .find(|r| r.store_id == shard.store_id && r.shard_id.0 == shard.index)
        .map(|r| r.replica_id.0)
    else {
        anyhow::bail!("split range {id} has no replica on this shard");
    };
    let (bytes, size, keys) = {
        let st = shard.state.borrow();
        if st.peers.get(&id).is_some_and(|p| p.is_initialized())
            || st.tombstones.contains(&(id, net::ReplicaId(me)))
        {
            // Already here through a snapshot of the new range, or removed since.
            return Ok(());
        }
        let meta = CheckpointMeta {
            index: INIT_INDEX,
            term: INIT_INDEX,
            desc: right.clone(),
        };
        let keys = crate::range::db_keys::recount(&st.engine, &right.start, &right.end);
        if shard.lsm.is_some() {
            // Index mode: the keys stay in the tree and the key index; only the descriptor.
            let (b, k) = st.engine.size_of(&right.start, &right.end);
            let base = crate::range::checkpoint::encode(&meta, std::iter::empty());
            ((base, Default::default()), (b as i64, k as i64), keys)
        } else {
            let e = super::checkpoint::encode_stored(&st.engine, &meta);
            ((e.bytes, e.segments), e.size, keys)
        }
    };
    let (bytes, segments) = bytes;
    crate::failpoint!("ds_node::shard::split::before_checkpoint");
    let kind = if shard.lsm.is_some() {
        super::checkpoint::FileKind::Base
    } else {
        super::checkpoint::FileKind::Full
    };
    super::checkpoint::write_kind(shard, id, INIT_INDEX, Rc::new(bytes), kind).await?;
    shard
        .state
        .borrow_mut()
        .checkpoint_segments
        .insert(id, segments);
    let hs = HardState {
        term: INIT_INDEX,
        commit: INIT_INDEX,
        ..HardState::default()
    };
    let conf = conf_state_of(&right);
    let mut cache = RaftLogCache::new(hs, conf.clone(), INIT_INDEX, INIT_INDEX);
    cache.set_snapshot(SnapshotPoint {
        index: INIT_INDEX,
        term: INIT_INDEX,
        conf,
    });
    let mut peer = shard.new_peer(right.clone(), cache, INIT_INDEX, None)?;
    peer.set_size(size.0, size.1);
    peer.set_db_keys(keys);
    let lead = left.is_some() || right.replicas.len() == 1;
    if lead {
        let _ = peer.raft_mut().campaign();
    }
    {
        let mut st = shard.state.borrow_mut();
        let lr = id;
        st.meta_records.push(LogRecord::ConfState {
            range: lr,
            data: encode_meta(&right),
        });
        st.meta_records.push(LogRecord::HardState {
            range: lr,
            state: engines::vlog::HardState {
                term: Term(INIT_INDEX),
                vote: 0,
                commit: LogIndex(INIT_INDEX),
            },
        });
        // Replaces a replica created empty for a message of the new range's leader.
        st.peers.insert(id, peer);
    }
    shard.metrics.borrow_mut().splits_total += 1;
    tracing::info!(range = %id, start = ?right.start, "range created by a split");
    shard.wake.notify();
    if left.is_none() && right.replicas.len() == 1 && shard.cfg.master_addr.is_some() {
        // Re-created during recovery: the master may never have heard of it.
        let left_desc = shard
            .state
            .borrow()
            .peers
            .values()
            .find(|p| p.is_initialized() && p.desc().end == right.start)
            .map(|p| p.desc().clone());
        if let Some(l) = left_desc {
            report_later(shard, l, right);
        }
    }
    Ok(())
}

/// Reports a split to the master on its own task (the left range's leader does it when the
/// split applies, before the right range's first checkpoint is written).
pub fn report_later<D: ShardDevice>(
    shard: &Rc<Shard<D>>,
    left: RangeDescriptor,
    right: RangeDescriptor,
) {
    if shard.cfg.master_addr.is_some() {
        crate::core::spawn(report(Rc::clone(shard), left, right));
    }
}

/// Tells the master about a split this shard's replica led, until it is recorded (or the
/// master answers that it knows a newer epoch): a range heartbeat never carries a split, so
/// this report is how the master learns of it. Every 0.5 s for the first 10 tries (a report
/// can wait on the one before it), then backing off to 5 s.
async fn report<D: ShardDevice>(
    shard: Rc<Shard<D>>,
    left: RangeDescriptor,
    right: RangeDescriptor,
) {
    let Some(m) = shard.cfg.master_addr.clone() else {
        return;
    };
    crate::failpoint!("ds_node::shard::split::report", |_| ());
    let mut wait = Duration::from_millis(500);
    let mut tries = 0u32;
    while !shard.stop.get() {
        let r = shard
            .pool
            .call(
                &m,
                Message::SplitReport(SplitReport {
                    left: left.clone(),
                    right: right.clone(),
                }),
            )
            .await;
        match r {
            Ok(Message::SplitReportResp(_)) => return,
            Ok(Message::Error(net::RpcError::EpochMismatch { .. })) => {
                tracing::info!(range = %left.id, "split report superseded: the master knows a newer epoch");
                return;
            }
            Ok(other) => tracing::info!(range = %left.id, "split report refused: {}", other.name()),
            Err(e) => tracing::info!(range = %left.id, "split report failed: {e}"),
        }
        crate::core::sleep(wait).await;
        tries += 1;
        if tries >= 10 {
            wait = (wait * 2).min(Duration::from_secs(5));
        }
    }
}

/// Longest chain of ranges [`unreported`] follows to the master's end of a range.
const MAX_UNREPORTED_CHAIN: usize = 64;

/// The first split of `left` that the master has not recorded, rebuilt from this shard's
/// ranges (`by_start`: the range of this shard starting at a key): `known` is the master's
/// descriptor of the same range, with an older `version`. This happens when the replica that
/// applied a split as leader stopped before its report landed (a crash, a restart): the
/// other replicas applied the split too but never report it, and the master would route to
/// the old epoch for ever.
///
/// The master knows every split of the range up to `known.version`, so the first one it
/// lacks made version `known.version + 1`. Its right range is the one with the smallest id
/// among those continuing `left` to `known.end` (ids grow: later splits of `left`, and splits
/// of that right range, all got larger ids), and it still lies on this shard with the
/// replicas it was created with, because the master moves and changes only ranges it knows.
/// Both halves are rebuilt as they were at the split: the left ending at the right's start,
/// the right ending at `known.end`, both at the split's epoch. `None` when this shard's ranges
/// do not tile `[left.end, known.end)` or the membership changed since (then the report is
/// left to the master's checks of a later heartbeat, never guessed).
pub fn unreported(
    known: &RangeDescriptor,
    left: &RangeDescriptor,
    by_start: impl Fn(&[u8]) -> Option<RangeDescriptor>,
) -> Option<(RangeDescriptor, RangeDescriptor)> {
    if known.id != left.id || known.start != left.start || left.epoch.version <= known.epoch.version
    {
        return None;
    }
    let mut first: Option<RangeDescriptor> = None;
    let mut at = left.end.clone();
    let mut steps = 0;
    while at != known.end {
        if at.is_empty() || steps == MAX_UNREPORTED_CHAIN {
            return None;
        }
        let next = by_start(&at)?;
        at = next.end.clone();
        steps += 1;
        if first.as_ref().is_none_or(|f| next.id < f.id) {
            first = Some(next);
        }
    }
    let first = first?;
    let epoch = net::Epoch {
        conf_ver: first.epoch.conf_ver,
        version: known.epoch.version + 1,
    };
    if first.epoch.version < epoch.version || left.epoch.conf_ver != epoch.conf_ver {
        return None;
    }
    let left_then = RangeDescriptor {
        id: left.id,
        start: left.start.clone(),
        end: first.start.clone(),
        epoch,
        replicas: left.replicas.clone(),
        leader: None,
    };
    let right_then = RangeDescriptor {
        id: first.id,
        start: first.start,
        end: known.end.clone(),
        epoch,
        replicas: first.replicas,
        leader: None,
    };
    Some((left_then, right_then))
}

/// [`unreported`] for every range this shard leads whose version the master's route table
/// (as last fetched) shows behind: the split reports to send, one per range.
pub fn unreported_splits<D: ShardDevice>(shard: &Shard<D>) -> Vec<SplitReport> {
    let known = shard.master_ranges.borrow();
    let st = shard.state.borrow();
    let by_start = |start: &[u8]| {
        st.peers
            .values()
            .find(|p| p.is_initialized() && p.desc().start == start)
            .map(|p| p.desc().clone())
    };
    st.peers
        .values()
        .filter(|p| p.is_initialized() && p.is_leader())
        .filter_map(|p| {
            let k = known.get(&p.desc().id)?;
            let (left, right) = unreported(k, p.desc(), by_start)?;
            Some(SplitReport { left, right })
        })
        .collect()
}

/// Sends the [`unreported_splits`] of this shard to the master `master`, once each (the next
/// heartbeat finds any still missing, and the split after it once this one is recorded).
pub async fn report_unreported<D: ShardDevice>(shard: &Shard<D>, master: &str) {
    for rep in unreported_splits(shard) {
        let (range, right) = (rep.left.id, rep.right.id);
        match shard.pool.call(master, Message::SplitReport(rep)).await {
            Ok(Message::SplitReportResp(_)) => {
                shard.metrics.borrow_mut().splits_reported_late_total += 1;
                tracing::warn!(%range, %right, "reported a split the master had missed");
            }
            Ok(other) => tracing::info!(%range, "late split report refused: {}", other.name()),
            Err(e) => tracing::info!(%range, "late split report failed: {e}"),
        }
    }
}

/// Proposes a split of `range` (its leader, executing the master's operator).
pub fn propose<D: ShardDevice>(
    shard: &Shard<D>,
    range: net::RangeId,
    split_key: Bytes,
    new_range_id: net::RangeId,
    new_replica_ids: Vec<ReplicaId>,
) {
    let mut st = shard.state.borrow_mut();
    let super::shard::ShardState { peers, engine, .. } = &mut *st;
    let Some(p) = peers.get_mut(&range) else {
        return;
    };
    if !p.is_initialized() || !p.is_leader() {
        return;
    }
    if p.split_recently(Duration::from_secs(5), shard.now()) {
        return;
    }
    let key = if split_key.is_empty() {
        match pick_key(engine, p.desc()) {
            Some(k) => k,
            None => {
                tracing::info!(%range, "no split key inside the range; split skipped");
                return;
            }
        }
    } else {
        split_key
    };
    let cmd = SplitCmd {
        epoch: p.desc().epoch,
        split_key: key,
        new_range_id: new_range_id.0,
        new_replica_ids: new_replica_ids.iter().map(|r| r.0).collect(),
    };
    let mut probe = p.desc().clone();
    if apply_to_desc(&mut probe, &cmd).is_none() {
        tracing::info!(%range, "split operator does not fit the range; skipped");
        return;
    }
    let data = crate::range::codec::encode_split(&cmd);
    if p.raft_mut().propose(Vec::new(), data).is_ok() {
        p.note_split_proposed(shard.now());
        tracing::info!(%range, key = ?cmd.split_key, new_range = %new_range_id, "split proposed");
        drop(st);
        shard.wake.notify();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use net::message::ReplicaRole;
    use net::{Epoch, RangeId, ShardId, StoreId};

    fn desc() -> RangeDescriptor {
        RangeDescriptor {
            id: RangeId(1),
            start: Bytes::new(),
            end: Bytes::from_static(b"z"),
            epoch: Epoch {
                conf_ver: 3,
                version: 1,
            },
            replicas: (1..=3)
                .map(|i| Replica {
                    replica_id: ReplicaId(i),
                    store_id: StoreId(i),
                    shard_id: ShardId(0),
                    role: ReplicaRole::Voter {},
                })
                .collect(),
            leader: None,
        }
    }

    #[test]
    fn a_split_shrinks_the_left_and_creates_the_right_with_new_replica_ids() {
        let mut left = desc();
        let cmd = SplitCmd {
            epoch: left.epoch,
            split_key: Bytes::from_static(b"m"),
            new_range_id: 9,
            new_replica_ids: vec![10, 11, 12],
        };
        let right = apply_to_desc(&mut left, &cmd).unwrap();
        assert_eq!((&left.start[..], &left.end[..]), (&b""[..], &b"m"[..]));
        assert_eq!((&right.start[..], &right.end[..]), (&b"m"[..], &b"z"[..]));
        assert_eq!(left.epoch.version, 2);
        assert_eq!(right.epoch, left.epoch);
        assert_eq!(right.replicas[1].replica_id, ReplicaId(11));
        assert_eq!(right.replicas[1].store_id, StoreId(2));
        // The same command again is stale (epoch moved), and so is a key outside.
        assert!(apply_to_desc(&mut left, &cmd).is_none());
        let mut d = desc();
        let outside = SplitCmd {
            split_key: Bytes::from_static(b"zz"),
            epoch: d.epoch,
            ..cmd.clone()
        };
        assert!(apply_to_desc(&mut d, &outside).is_none());
        assert_eq!(d, desc());
    }

    #[test]
    fn split_points_fall_between_user_keys() {
        let z = crate::keyspace::Db::ZERO;
        let field = crate::keyspace::field_key(z, b"myhash", 7, b"f1");
        let meta = crate::keyspace::meta_key(z, b"myhash");
        assert_eq!(boundary(&field), boundary(&meta));
        assert!(boundary(&field) <= field && boundary(&meta) <= meta);
        assert!(meta.starts_with(&boundary(&meta)));
        assert_eq!(&boundary(b"raw")[..], b"raw");
    }

    /// `pick_key` as it was before its shortcut: the boundary of the middle key, always.
    fn pick_key_by_walking(engine: &MasstreeStore, d: &RangeDescriptor) -> Option<Bytes> {
        let key = boundary(&engine.middle_key(&d.start, &d.end)?);
        (key > d.start && (d.end.is_empty() || key < d.end)).then_some(key)
    }

    #[test]
    fn a_range_held_by_one_user_key_picks_the_key_the_middle_walk_picks() {
        use crate::keyspace::{Db, field_key, meta_key};
        use crate::range::store::{Entry, KvStore};
        let z = Db::ZERO;
        let mut engine = MasstreeStore::new();
        let put = |e: &mut MasstreeStore, k: Bytes| {
            e.put(
                k,
                Entry {
                    value: Bytes::from_static(b"\x01v"),
                    expire_at_ms: 0,
                },
            );
        };
        put(&mut engine, meta_key(z, b"big"));
        for i in 0..1_000u32 {
            put(&mut engine, field_key(z, b"big", 1, &i.to_be_bytes()));
        }
        let big = boundary(&meta_key(z, b"big"));
        let mut d = desc();
        d.end = Bytes::new();
        // The range starts before the one key: its boundary, as the walk finds.
        let picked = pick_key(&engine, &d);
        assert_eq!(picked, Some(big.clone()));
        assert_eq!(picked, pick_key_by_walking(&engine, &d));
        // The range starts at the key: nothing strictly inside.
        d.start = big.clone();
        assert_eq!(pick_key(&engine, &d), None);
        assert_eq!(pick_key_by_walking(&engine, &d), None);
        // Another user key after it: the middle walk decides again.
        put(&mut engine, meta_key(z, b"other"));
        for i in 0..1_000u32 {
            put(&mut engine, field_key(z, b"other", 1, &i.to_be_bytes()));
        }
        let picked = pick_key(&engine, &d);
        assert!(picked.is_some());
        assert_eq!(picked, pick_key_by_walking(&engine, &d));
        // An empty range has no split key.
        d.start = Bytes::from_static(b"s");
        assert_eq!(pick_key(&engine, &d), None);
    }

    /// Splits `d` at `key` with new range id `id` (replica ids `id+1..`), as applied.
    fn split_at(d: &mut RangeDescriptor, key: &'static [u8], id: u64) -> RangeDescriptor {
        let cmd = SplitCmd {
            epoch: d.epoch,
            split_key: Bytes::from_static(key),
            new_range_id: id,
            new_replica_ids: vec![id + 1, id + 2, id + 3],
        };
        apply_to_desc(d, &cmd).unwrap()
    }

    fn finder(shard: &[RangeDescriptor]) -> impl Fn(&[u8]) -> Option<RangeDescriptor> + '_ {
        |start| shard.iter().find(|d| d.start == start).cloned()
    }

    #[test]
    fn a_split_the_master_missed_is_rebuilt_as_it_was_applied() {
        let known = desc();
        let mut left = desc();
        let right = split_at(&mut left, b"m", 9);
        let shard = [left.clone(), right.clone()];
        let (l, r) = unreported(&known, &left, finder(&shard)).unwrap();
        assert_eq!((l, r), (left.clone(), right));
        // Nothing to report once the master knows the split.
        assert!(unreported(&left, &left, finder(&shard)).is_none());
    }

    #[test]
    fn after_more_splits_on_both_sides_the_first_missed_split_is_rebuilt() {
        let known = desc();
        let mut left = desc();
        let mut r1 = split_at(&mut left, b"m", 9);
        let (l1, r1_then) = (left.clone(), r1.clone());
        let r2 = split_at(&mut left, b"f", 20);
        let r3 = split_at(&mut r1, b"t", 30);
        let shard = [left.clone(), r2.clone(), r1.clone(), r3.clone()];
        let (l, r) = unreported(&known, &left, finder(&shard)).unwrap();
        assert_eq!((l, r), (l1.clone(), r1_then.clone()));
        // Once the master has it, the next one: the left's second split.
        let (l, r) = unreported(&l1, &left, finder(&shard)).unwrap();
        assert_eq!((l, r), (left.clone(), r2));
        // And the right range's own split, from its leader's view.
        let (l, r) = unreported(&r1_then, &r1, finder(&shard)).unwrap();
        assert_eq!((l, r), (r1, r3));
    }

    #[test]
    fn a_gap_or_a_membership_change_since_the_split_reports_nothing() {
        let known = desc();
        let mut left = desc();
        let right = split_at(&mut left, b"m", 9);
        // The right range is not on this shard.
        assert!(unreported(&known, &left, finder(std::slice::from_ref(&left))).is_none());
        // The left range changed its membership after the split.
        let mut moved = left.clone();
        moved.epoch.conf_ver += 1;
        let shard = [moved.clone(), right];
        assert!(unreported(&known, &moved, finder(&shard)).is_none());
        // Another range's descriptor.
        let mut other = known.clone();
        other.id = RangeId(2);
        assert!(unreported(&other, &left, finder(&shard)).is_none());
    }
}
