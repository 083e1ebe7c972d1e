//! Range heartbeats and split reports checked against the master's state before anything is
//! persisted.
//!
//! A range descriptor changes in exactly two ways, each a step the master ordered:
//! - a membership change (`Operator::AddLearner` / `PromoteLearner` / `RemoveReplica`): one
//!   Raft conf change, one replica added, promoted or removed, `conf_ver + 1`; the key
//!   interval and `version` stay. It reaches the master in the leader's range heartbeat.
//!   The master issues each step only after a heartbeat showed the previous one, so a
//!   heartbeat shows every conf change since the last one it accepted as a distinct replica
//!   change: `conf_ver` grows by exactly the number of replicas changed.
//! - a split (`Operator::Split`): `version + 1`, the interval cut in two. It reaches the
//!   master only in a `SplitReport` (the range's leader retries it until it lands); a range
//!   heartbeat never changes `version` or the interval.
//!
//! Anything else — an unknown range, a leader the master does not place on a replica, an
//! interval or version moved by a heartbeat, a conf_ver jump no replica change explains, a
//! replica id the master never allocated, a replica on a store that is not up, a range with
//! no voter — is refused with an error, counted by [`Refusal`], and never reaches the log.
//! What these checks cannot tell apart is a correct report and a forged one that mimics it:
//! that needs the authenticated handshake.

use std::collections::BTreeMap;

use net::RpcError;
use net::message::{RangeDescriptor, RangeHeartbeat, ReplicaRole};

use crate::state::{ClusterState, StoreState};

/// Why a range heartbeat or split report was refused (a closed set: the metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Refusal {
    /// The range does not exist.
    UnknownRange,
    /// Its epoch is older than the master's.
    StaleEpoch,
    /// The reporting leader is not a replica of the range where the master places it.
    Leader,
    /// A heartbeat moved the key interval or `version` (only a split report may).
    Interval,
    /// `conf_ver` moved by more or less than the replicas that changed.
    ConfVer,
    /// A replica id the master never allocated, on a store that is not up, or a range left
    /// without a voter or with its leader not a voter.
    Membership,
    /// A split report that is not one split of the range as the master knows it.
    Split,
}

impl Refusal {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Refusal::UnknownRange => "unknown_range",
            Refusal::StaleEpoch => "stale_epoch",
            Refusal::Leader => "leader",
            Refusal::Interval => "interval",
            Refusal::ConfVer => "conf_ver",
            Refusal::Membership => "membership",
            Refusal::Split => "split",
        }
    }
}

/// Refused reports by reason.
pub type RefusalCounts = BTreeMap<Refusal, u64>;

/// A refusal and the error the reporter sees.
#[derive(Debug)]
pub struct Refused {
    /// Why.
    pub reason: Refusal,
    /// The answer.
    pub error: RpcError,
}

fn refuse(reason: Refusal, message: String) -> Refused {
    Refused {
        reason,
        error: RpcError::BadRequest { message },
    }
}

/// Checks a range heartbeat against the master's descriptor `current` of its range. `Ok`
/// when the heartbeat's descriptor is the master's epoch (its content is then ignored but
/// for the leader) or a membership change the rules above allow.
pub fn check_heartbeat(
    state: &ClusterState,
    next_id: u64,
    current: &RangeDescriptor,
    hb: &RangeHeartbeat,
) -> Result<(), Refused> {
    let new = &hb.range;
    let id = new.id;
    if crate::state::is_stale(new.epoch, current.epoch) {
        return Err(Refused {
            reason: Refusal::StaleEpoch,
            error: RpcError::EpochMismatch {
                ranges: vec![current.clone()],
            },
        });
    }
    // The reporting store holds the leader replica: same id, store and shard as the master
    // places it (a replica the master has not seen added cannot lead yet).
    let placed = current.replicas.iter().find(|r| r.replica_id == hb.leader);
    let reported = new.replicas.iter().find(|r| r.replica_id == hb.leader);
    match (placed, reported) {
        (Some(p), Some(r)) if p.store_id == r.store_id && p.shard_id == r.shard_id => {}
        _ => {
            return Err(refuse(
                Refusal::Leader,
                format!(
                    "range {id}: leader {} is not a replica the master places there",
                    hb.leader
                ),
            ));
        }
    }
    if new.epoch == current.epoch {
        return Ok(());
    }
    if new.epoch.version != current.epoch.version
        || new.start != current.start
        || new.end != current.end
    {
        return Err(refuse(
            Refusal::Interval,
            format!(
                "range {id}: a heartbeat cannot move the key interval or version (splits are reported)"
            ),
        ));
    }
    check_membership(state, next_id, current, new, Some(hb.leader.0))
}

/// Checks that `new` is `old` after `new.conf_ver - old.conf_ver` membership changes, each
/// changing one distinct replica: added replicas have ids this master allocated and live on
/// stores that are up; the result keeps a voter (and `leader`, if given, is one).
pub fn check_membership(
    state: &ClusterState,
    next_id: u64,
    old: &RangeDescriptor,
    new: &RangeDescriptor,
    leader: Option<u64>,
) -> Result<(), Refused> {
    let id = new.id;
    let bad = |reason, msg: &str| Err(refuse(reason, format!("range {id}: {msg}")));
    let mut changed: u64 = 0;
    for r in &new.replicas {
        match old.replicas.iter().find(|o| o.replica_id == r.replica_id) {
            Some(o) if o.store_id != r.store_id || o.shard_id != r.shard_id => {
                return bad(Refusal::Membership, "a replica moved to another store");
            }
            Some(o) => changed += u64::from(o.role != r.role),
            None => {
                changed += 1;
                if r.replica_id.0 == 0 || r.replica_id.0 >= next_id {
                    return bad(
                        Refusal::Membership,
                        "a replica id this master never allocated",
                    );
                }
                let up = state
                    .store(r.store_id)
                    .is_some_and(|s| s.state == StoreState::Up);
                if !up {
                    return bad(
                        Refusal::Membership,
                        "a replica added on a store that is not up",
                    );
                }
            }
        }
    }
    changed += old
        .replicas
        .iter()
        .filter(|o| !new.replicas.iter().any(|r| r.replica_id == o.replica_id))
        .count() as u64;
    let step = new.epoch.conf_ver.checked_sub(old.epoch.conf_ver);
    if step != Some(changed) {
        return bad(
            Refusal::ConfVer,
            "conf_ver moved by other than the number of replicas changed",
        );
    }
    let voter = |rid: u64| {
        new.replicas
            .iter()
            .any(|r| r.replica_id.0 == rid && r.role == ReplicaRole::Voter {})
    };
    let has_voter = new.replicas.iter().any(|r| r.role == ReplicaRole::Voter {});
    if !has_voter || leader.is_some_and(|l| !voter(l)) {
        return bad(
            Refusal::Membership,
            "no voter, or the leader is not a voter",
        );
    }
    Ok(())
}

/// Checks a split report against the master's descriptor `old` of the left range: the left
/// keeps the id and start, its `version` grows by one (its membership may have changed as a
/// heartbeat would show), the right range takes the rest with the left's epoch, and the
/// same stores, shards and roles under ids this master allocated.
pub fn check_split(
    state: &ClusterState,
    next_id: u64,
    old: &RangeDescriptor,
    left: &RangeDescriptor,
    right: &RangeDescriptor,
) -> Result<(), Refused> {
    let bad = |msg: &str| {
        Err(refuse(
            Refusal::Split,
            format!("split of {}: {msg}", old.id),
        ))
    };
    if crate::state::is_stale(left.epoch, old.epoch) || left.epoch.version <= old.epoch.version {
        return Err(Refused {
            reason: Refusal::StaleEpoch,
            error: RpcError::EpochMismatch {
                ranges: vec![old.clone()],
            },
        });
    }
    if left.epoch.version != old.epoch.version + 1 {
        return bad("the left range's version must grow by one");
    }
    if right.epoch != left.epoch {
        return bad("both halves carry the epoch of the split");
    }
    if right.id.0 == 0 || right.id.0 >= next_id {
        return bad("a range id this master never allocated");
    }
    let mut old_conf = old.clone();
    old_conf.epoch.version = left.epoch.version;
    if left.epoch.conf_ver != old.epoch.conf_ver || left.replicas != old.replicas {
        check_membership(state, next_id, &old_conf, left, None)?;
    }
    let same_places = right.replicas.len() == left.replicas.len()
        && right.replicas.iter().zip(&left.replicas).all(|(r, l)| {
            r.store_id == l.store_id
                && r.shard_id == l.shard_id
                && r.role == l.role
                && r.replica_id.0 != 0
                && r.replica_id.0 < next_id
                && !left.replicas.iter().any(|x| x.replica_id == r.replica_id)
        });
    if !same_places {
        return bad("the right range's replicas must mirror the left's under new ids");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    //! Each rule on a cluster of three up stores and one range `[a, z)` with voters 11, 12
    //! (ids below 100 count as allocated).
    use super::*;
    use crate::state::{ClusterConfig, Command, StoreMeta};
    use bytes::Bytes;
    use net::message::{RangeStats, Replica, StoreInfo};
    use net::{ClusterId, Epoch, RangeId, ReplicaId, ShardId, StoreId};

    const NEXT_ID: u64 = 100;

    fn state() -> ClusterState {
        let mut s = ClusterState::default();
        let mut cmds = vec![Command::Init {
            cluster_id: ClusterId(1),
            config: ClusterConfig::default(),
        }];
        for id in 1..=3 {
            cmds.push(Command::PutStore {
                meta: StoreMeta {
                    info: StoreInfo {
                        store_id: StoreId(id),
                        addr: format!("h{id}:1"),
                        shard_addrs: vec![format!("h{id}:2"), format!("h{id}:3")],
                        labels: vec![],
                    },
                    mem_capacity: 1,
                    disk_capacity: 1,
                    state: if id == 3 {
                        StoreState::Offline
                    } else {
                        StoreState::Up
                    },
                    registered_ms: 0,
                },
            });
        }
        for (i, c) in cmds.iter().enumerate() {
            s.apply(i as u64 + 1, c).expect("valid setup");
        }
        s
    }

    fn rep(id: u64, store: u64, voter: bool) -> Replica {
        Replica {
            replica_id: ReplicaId(id),
            store_id: StoreId(store),
            shard_id: ShardId(0),
            role: if voter {
                ReplicaRole::Voter {}
            } else {
                ReplicaRole::Learner {}
            },
        }
    }

    fn range() -> RangeDescriptor {
        RangeDescriptor {
            id: RangeId(1),
            start: Bytes::from_static(b"a"),
            end: Bytes::from_static(b"z"),
            epoch: Epoch {
                conf_ver: 2,
                version: 3,
            },
            replicas: vec![rep(11, 1, true)],
            leader: Some(ReplicaId(11)),
        }
    }

    fn hb(range: RangeDescriptor) -> RangeHeartbeat {
        RangeHeartbeat {
            range,
            leader: ReplicaId(11),
            stats: RangeStats::default(),
            pending: vec![],
            down: vec![],
        }
    }

    fn reason(r: Result<(), Refused>) -> Option<Refusal> {
        r.err().map(|e| e.reason)
    }

    #[test]
    fn a_learner_added_with_one_conf_change_is_accepted() {
        let mut new = range();
        new.epoch.conf_ver += 1;
        new.replicas.push(rep(12, 2, false));
        assert_eq!(
            reason(check_heartbeat(&state(), NEXT_ID, &range(), &hb(new))),
            None
        );
    }

    #[test]
    fn a_learner_on_another_shard_of_the_leaders_store_is_accepted() {
        // The first step of a move between the shards of store 1, then its promotion.
        let mut new = range();
        new.epoch.conf_ver += 1;
        new.replicas.push(Replica {
            shard_id: ShardId(1),
            ..rep(12, 1, false)
        });
        assert_eq!(
            reason(check_heartbeat(
                &state(),
                NEXT_ID,
                &range(),
                &hb(new.clone())
            )),
            None
        );
        let mut promoted = new.clone();
        promoted.epoch.conf_ver += 1;
        promoted.replicas[1].role = ReplicaRole::Voter {};
        assert_eq!(
            reason(check_heartbeat(&state(), NEXT_ID, &new, &hb(promoted))),
            None
        );
    }

    #[test]
    fn a_conf_ver_jump_without_replica_changes_is_refused() {
        let mut new = range();
        new.epoch.conf_ver += 1000;
        let r = check_heartbeat(&state(), NEXT_ID, &range(), &hb(new));
        assert_eq!(reason(r), Some(Refusal::ConfVer));
    }

    #[test]
    fn a_heartbeat_moving_the_interval_or_version_is_refused() {
        let mut new = range();
        new.end = Bytes::from_static(b"m");
        new.epoch.version += 1;
        let r = check_heartbeat(&state(), NEXT_ID, &range(), &hb(new));
        assert_eq!(reason(r), Some(Refusal::Interval));
        let mut new = range();
        new.start = Bytes::from_static(b"0");
        new.epoch.conf_ver += 1;
        let r = check_heartbeat(&state(), NEXT_ID, &range(), &hb(new));
        assert_eq!(reason(r), Some(Refusal::Interval));
    }

    #[test]
    fn a_leader_the_master_does_not_place_there_is_refused() {
        let mut h = hb(range());
        h.leader = ReplicaId(77);
        h.range.replicas.push(rep(77, 2, true));
        assert_eq!(
            reason(check_heartbeat(&state(), NEXT_ID, &range(), &h)),
            Some(Refusal::Leader)
        );
        let mut h = hb(range());
        h.range.replicas[0].store_id = StoreId(2);
        assert_eq!(
            reason(check_heartbeat(&state(), NEXT_ID, &range(), &h)),
            Some(Refusal::Leader)
        );
    }

    #[test]
    fn replicas_with_unallocated_ids_or_on_stores_not_up_are_refused() {
        for added in [rep(500, 2, false), rep(13, 3, false), rep(13, 9, false)] {
            let mut new = range();
            new.epoch.conf_ver += 1;
            new.replicas.push(added);
            let r = check_heartbeat(&state(), NEXT_ID, &range(), &hb(new));
            assert_eq!(reason(r), Some(Refusal::Membership));
        }
    }

    #[test]
    fn a_stale_epoch_is_refused_with_the_masters_descriptor() {
        let mut new = range();
        new.epoch.conf_ver -= 1;
        let r = check_heartbeat(&state(), NEXT_ID, &range(), &hb(new)).unwrap_err();
        assert_eq!(r.reason, Refusal::StaleEpoch);
        assert!(matches!(r.error, RpcError::EpochMismatch { .. }));
    }

    #[test]
    fn one_split_of_the_known_range_is_accepted_and_others_refused() {
        let old = range();
        let mut left = old.clone();
        left.end = Bytes::from_static(b"m");
        left.epoch.version += 1;
        let mut right = left.clone();
        right.id = RangeId(50);
        right.start = Bytes::from_static(b"m");
        right.end = old.end.clone();
        right.replicas = vec![rep(51, 1, true)];
        let s = state();
        assert_eq!(reason(check_split(&s, NEXT_ID, &old, &left, &right)), None);
        let mut r2 = right.clone();
        r2.id = RangeId(500);
        assert_eq!(
            reason(check_split(&s, NEXT_ID, &old, &left, &r2)),
            Some(Refusal::Split)
        );
        let mut r2 = right.clone();
        r2.replicas = vec![rep(51, 2, true)];
        assert_eq!(
            reason(check_split(&s, NEXT_ID, &old, &left, &r2)),
            Some(Refusal::Split)
        );
        let mut l2 = left.clone();
        l2.epoch.version += 5;
        let mut r2 = right.clone();
        r2.epoch = l2.epoch;
        assert_eq!(
            reason(check_split(&s, NEXT_ID, &old, &l2, &r2)),
            Some(Refusal::Split)
        );
        let mut l2 = left.clone();
        l2.epoch.conf_ver += 3;
        let mut r2 = right;
        r2.epoch = l2.epoch;
        assert_eq!(
            reason(check_split(&s, NEXT_ID, &old, &l2, &r2)),
            Some(Refusal::ConfVer)
        );
    }
}
