//! Raft messages from the network, checked before raft-rs sees them.
//!
//! raft-rs trusts its peers: several of its paths `panic!` (the process aborts) on a message
//! no correct peer sends — a heartbeat whose `commit` is past our last index (`commit_to`),
//! an append whose entries are not contiguous after `index` (`maybe_append` slices out of
//! bounds), an empty `MsgPropose` (`stepped empty MsgProp`), a `MsgReadIndex` without an entry
//! (leader, `entries[0]`), a snapshot with an impossible configuration (`restore`), terms or
//! indexes near `u64::MAX` (`+ 1` overflows). Others let a stray peer do what only a leader
//! or this node itself may do: inject entries (`MsgPropose`), answer our reads
//! (`MsgReadIndexResp`), start an election (`MsgTimeoutNow`).
//!
//! [`check`] refuses every such message and names why ([`Refusal`], a closed set: the metric
//! label). What it cannot tell apart is a correct message from a member and a forged one that
//! looks correct: that needs the authenticated handshake.
//!
//! Audited against raft-rs 0.7.0: `Raft::step`, `step_leader`, `step_follower`,
//! `step_candidate`, `handle_append_entries`, `handle_heartbeat`, `handle_snapshot`,
//! `restore`, `handle_append_response`, `maybe_commit_by_vote`, `RaftLog::maybe_append`,
//! `commit_to`, `Progress::maybe_decr_to`.

use raft::eraftpb::{ConfState, Message, MessageType};
use raft::{Raft, Storage};

/// How far above our term a message's term may be. Terms grow by one per election (pre-vote
/// keeps a partitioned node from inflating its own), so a correct peer is never this far
/// ahead; the bound also keeps `term + 1` far from overflowing.
pub const MAX_TERM_STEP: u64 = 1 << 24;

/// Largest index or term a message may carry (`index + entries + 1` stays far from overflow).
pub const MAX_INDEX: u64 = 1 << 62;

/// Why a Raft message was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// A type raft-rs produces only locally, or that this cluster never sends (`MsgPropose`,
    /// `MsgReadIndex`, `MsgReadIndexResp`: proposals and reads are only made on the leader).
    Type,
    /// Not addressed to this replica, or sent by it (or by id 0).
    Address,
    /// The sender is not in the range's configuration.
    NotMember,
    /// Term 0 (raft-rs takes it for a local message), or implausibly far ahead of ours.
    Term,
    /// A heartbeat committing past our log, or an index past what the message can justify.
    Index,
    /// An append whose entries do not follow its `index` one by one, or carry a later term
    /// than the message.
    Entries,
    /// A snapshot whose metadata or configuration raft-rs cannot restore.
    Snapshot,
    /// `MsgTimeoutNow` from a replica that is not our leader.
    NotLeader,
    /// A message for a range this shard does not have, and the master's route table does not
    /// place a replica of it (with that id) here: no replica is created for it.
    UnknownRange,
    /// A replica would be created, but this shard already waits on too many new replicas'
    /// first snapshots, or created too many in the last second.
    CreationLimit,
    /// A vote request within an election timeout of this shard's start: before the restart
    /// its replica may have acknowledged a leader whose read lease still runs
    /// (`server::lease`).
    VoteAfterStart,
}

impl Refusal {
    /// Every refusal, in the order of [`Refusal::index`].
    pub const ALL: [Refusal; 11] = [
        Refusal::Type,
        Refusal::Address,
        Refusal::NotMember,
        Refusal::Term,
        Refusal::Index,
        Refusal::Entries,
        Refusal::Snapshot,
        Refusal::NotLeader,
        Refusal::UnknownRange,
        Refusal::CreationLimit,
        Refusal::VoteAfterStart,
    ];

    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Refusal::Type => "type",
            Refusal::Address => "address",
            Refusal::NotMember => "not_member",
            Refusal::Term => "term",
            Refusal::Index => "index",
            Refusal::Entries => "entries",
            Refusal::Snapshot => "snapshot",
            Refusal::NotLeader => "not_leader",
            Refusal::UnknownRange => "unknown_range",
            Refusal::CreationLimit => "creation_limit",
            Refusal::VoteAfterStart => "vote_after_start",
        }
    }

    /// Position in [`Refusal::ALL`] (a counter slot).
    pub fn index(self) -> usize {
        self as usize
    }
}

/// Checks `m`, received from the network, against the group `raft` (which has no
/// configuration yet when `initialized` is false: a replica created for a leader's message,
/// whose sender the caller checked against the master's descriptor).
pub fn check<S: Storage>(raft: &Raft<S>, initialized: bool, m: &Message) -> Result<(), Refusal> {
    use MessageType::*;
    let t = m.get_msg_type();
    let allowed = match t {
        MsgAppend | MsgHeartbeat | MsgSnapshot => true,
        MsgAppendResponse
        | MsgHeartbeatResponse
        | MsgRequestVote
        | MsgRequestVoteResponse
        | MsgRequestPreVote
        | MsgRequestPreVoteResponse
        | MsgTimeoutNow
        | MsgTransferLeader => initialized,
        MsgHup | MsgBeat | MsgPropose | MsgUnreachable | MsgSnapStatus | MsgCheckQuorum
        | MsgReadIndex | MsgReadIndexResp => false,
    };
    if !allowed {
        return Err(Refusal::Type);
    }
    if m.to != raft.id || m.from == raft.id || m.from == 0 {
        return Err(Refusal::Address);
    }
    if initialized && raft.prs().get(m.from).is_none() {
        return Err(Refusal::NotMember);
    }
    if m.term == 0 || m.term > raft.term.saturating_add(MAX_TERM_STEP) || m.term > MAX_INDEX {
        return Err(Refusal::Term);
    }
    if m.index > MAX_INDEX || m.log_term > m.term || m.commit > MAX_INDEX {
        return Err(Refusal::Index);
    }
    let last = raft.raft_log.last_index();
    match t {
        // raft-rs `handle_heartbeat` → `commit_to(m.commit)` panics past the last index; a
        // leader sends `min(matched, committed)`, never more than the follower has.
        MsgHeartbeat if m.commit > last => Err(Refusal::Index),
        MsgAppend => check_append(m),
        MsgSnapshot => check_snapshot(m),
        // The leader's own log bounds every index a follower can acknowledge; a rejection
        // names the probe (`index`, ours) and a hint at or below it.
        MsgAppendResponse if m.index > last || (m.reject && m.reject_hint > m.index) => {
            Err(Refusal::Index)
        }
        // This cluster never asks for a snapshot by message (`request_snapshot`).
        MsgAppendResponse if m.request_snapshot != 0 => Err(Refusal::Index),
        MsgTimeoutNow if m.from != raft.leader_id => Err(Refusal::NotLeader),
        _ => Ok(()),
    }
}

/// An append's entries follow its `index` one by one, with terms that never go down, start
/// at or above `log_term` and stay at or below the message's term (raft-rs `maybe_append`
/// slices its entries by index arithmetic). Its `commit` may be past its last entry: a
/// leader sends its commit index with size-limited appends and raft-rs takes
/// `min(commit, last new index)`.
fn check_append(m: &Message) -> Result<(), Refusal> {
    let mut term = m.log_term;
    for (i, e) in m.entries.iter().enumerate() {
        let want = m.index.checked_add(i as u64 + 1).ok_or(Refusal::Entries)?;
        if e.index != want || e.term < term || e.term > m.term {
            return Err(Refusal::Entries);
        }
        term = e.term;
    }
    if m.index + m.entries.len() as u64 > MAX_INDEX {
        return Err(Refusal::Entries);
    }
    Ok(())
}

/// A snapshot's metadata is no newer than its message and its configuration is one raft-rs
/// restores (one set of voters, learners apart from them, no joint state: this cluster
/// changes membership one replica at a time) and names the receiver.
fn check_snapshot(m: &Message) -> Result<(), Refusal> {
    let meta = m.get_snapshot().get_metadata();
    if meta.term > m.term || meta.index > MAX_INDEX || meta.index == 0 {
        return Err(Refusal::Snapshot);
    }
    if conf_ok(meta.get_conf_state(), m.to) {
        Ok(())
    } else {
        Err(Refusal::Snapshot)
    }
}

fn conf_ok(cs: &ConfState, me: u64) -> bool {
    let joint = !cs.voters_outgoing.is_empty() || !cs.learners_next.is_empty() || cs.auto_leave;
    let mut ids: Vec<u64> = cs.voters.iter().chain(&cs.learners).copied().collect();
    let n = ids.len();
    ids.sort_unstable();
    ids.dedup();
    !joint
        && !cs.voters.is_empty()
        && ids.len() == n
        && !ids.contains(&0)
        && ids.binary_search(&me).is_ok()
}

#[cfg(test)]
mod tests {
    //! Each test builds a 3-voter group (ids 1, 2, 3; we are 2) on raft-rs's `MemStorage`,
    //! offers it one hostile message, and checks it is refused — and, for the messages that
    //! panicked raft-rs before, that stepping them unchecked really does panic, so the test
    //! would notice a raft-rs upgrade that moved the hazard.
    #![allow(clippy::unwrap_used)]

    use super::*;
    use raft::eraftpb::{ConfState, Entry, Message, MessageType, Snapshot};
    use raft::storage::MemStorage;
    use raft::{Config, Raft};

    fn group(id: u64) -> Raft<MemStorage> {
        let cs = ConfState::from((vec![1, 2, 3], vec![]));
        let store = MemStorage::new_with_conf_state(cs);
        store.wl().append(&[entry(1, 1), entry(2, 1)]).unwrap();
        let cfg = Config {
            id,
            ..Config::default()
        };
        let logger = slog::Logger::root(slog::Discard, slog::o!());
        let mut r = Raft::new(&cfg, store, &logger).unwrap();
        r.become_follower(1, 1);
        r
    }

    fn msg(t: MessageType, from: u64, to: u64, term: u64) -> Message {
        let mut m = Message::default();
        m.set_msg_type(t);
        m.from = from;
        m.to = to;
        m.term = term;
        m
    }

    fn entry(index: u64, term: u64) -> Entry {
        Entry {
            index,
            term,
            ..Entry::default()
        }
    }

    #[test]
    fn heartbeat_committing_past_the_log_is_refused() {
        let r = group(2);
        let mut m = msg(MessageType::MsgHeartbeat, 1, 2, 1);
        m.commit = 1_000_000_000_000;
        assert_eq!(check(&r, true, &m), Err(Refusal::Index));
        m.commit = r.raft_log.last_index();
        assert_eq!(check(&r, true, &m), Ok(()));
    }

    #[test]
    fn the_heartbeat_refused_would_have_aborted_raft_rs() {
        let mut r = group(2);
        let mut m = msg(MessageType::MsgHeartbeat, 1, 2, 1);
        m.commit = 1_000_000_000_000;
        let stepped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| r.step(m)));
        assert!(
            stepped.is_err(),
            "raft-rs no longer panics here: revisit validate.rs"
        );
    }

    #[test]
    fn heartbeat_for_an_empty_replica_may_commit_nothing() {
        // A replica created for a leader's message has no log: commit 0 only.
        let r = group(2);
        let mut m = msg(MessageType::MsgHeartbeat, 1, 2, 1);
        m.commit = 0;
        assert_eq!(check(&r, false, &m), Ok(()));
        m.commit = 3;
        assert_eq!(check(&r, false, &m), Err(Refusal::Index));
    }

    #[test]
    fn sender_outside_the_configuration_is_refused() {
        let r = group(2);
        let m = msg(MessageType::MsgHeartbeat, 9, 2, 1);
        assert_eq!(check(&r, true, &m), Err(Refusal::NotMember));
    }

    #[test]
    fn message_for_another_replica_or_from_ourselves_is_refused() {
        let r = group(2);
        assert_eq!(
            check(&r, true, &msg(MessageType::MsgHeartbeat, 1, 3, 1)),
            Err(Refusal::Address)
        );
        assert_eq!(
            check(&r, true, &msg(MessageType::MsgHeartbeat, 2, 2, 1)),
            Err(Refusal::Address)
        );
        assert_eq!(
            check(&r, true, &msg(MessageType::MsgHeartbeat, 0, 2, 1)),
            Err(Refusal::Address)
        );
    }

    #[test]
    fn huge_or_zero_term_is_refused() {
        let r = group(2);
        for term in [0, 1 + MAX_TERM_STEP + 1, u64::MAX] {
            let m = msg(MessageType::MsgRequestVote, 1, 2, term);
            assert_eq!(check(&r, true, &m), Err(Refusal::Term), "term {term}");
        }
        let m = msg(MessageType::MsgRequestVote, 1, 2, 2);
        assert_eq!(check(&r, true, &m), Ok(()));
    }

    #[test]
    fn local_and_leader_only_types_are_refused() {
        let r = group(2);
        for t in [
            MessageType::MsgHup,
            MessageType::MsgBeat,
            MessageType::MsgPropose,
            MessageType::MsgUnreachable,
            MessageType::MsgSnapStatus,
            MessageType::MsgCheckQuorum,
            MessageType::MsgReadIndex,
            MessageType::MsgReadIndexResp,
        ] {
            assert_eq!(
                check(&r, true, &msg(t, 1, 2, 1)),
                Err(Refusal::Type),
                "{t:?}"
            );
        }
    }

    #[test]
    fn empty_replica_accepts_only_a_leaders_messages() {
        let r = group(2);
        let m = msg(MessageType::MsgRequestVote, 1, 2, 1);
        assert_eq!(check(&r, false, &m), Err(Refusal::Type));
    }

    #[test]
    fn append_with_entries_not_following_its_index_is_refused() {
        let r = group(2);
        let mut m = msg(MessageType::MsgAppend, 1, 2, 1);
        m.index = 2;
        m.log_term = 1;
        m.commit = 1_000_000;
        m.entries = vec![entry(3, 1), entry(4, 1)].into();
        assert_eq!(
            check(&r, true, &m),
            Ok(()),
            "commit past the entries is clamped"
        );
        m.entries = vec![entry(3, 1), entry(9, 1)].into();
        assert_eq!(check(&r, true, &m), Err(Refusal::Entries));
        m.entries = vec![entry(1, 1)].into();
        assert_eq!(check(&r, true, &m), Err(Refusal::Entries));
        m.entries = vec![entry(3, 5)].into();
        assert_eq!(
            check(&r, true, &m),
            Err(Refusal::Entries),
            "entry term > msg term"
        );
        m.index = u64::MAX;
        m.entries = vec![entry(0, 1)].into();
        assert_eq!(check(&r, true, &m), Err(Refusal::Index));
    }

    #[test]
    fn the_gapped_append_refused_would_have_aborted_raft_rs() {
        let mut r = group(2);
        let mut m = msg(MessageType::MsgAppend, 1, 2, 1);
        m.index = 2;
        m.log_term = 1;
        m.entries = vec![entry(10, 1)].into();
        let stepped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| r.step(m)));
        assert!(
            stepped.is_err(),
            "raft-rs no longer panics here: revisit validate.rs"
        );
    }

    #[test]
    fn append_response_past_the_leaders_log_is_refused() {
        let r = group(2);
        let mut m = msg(MessageType::MsgAppendResponse, 1, 2, 1);
        m.index = 1 << 40;
        assert_eq!(check(&r, true, &m), Err(Refusal::Index));
        m.index = 2;
        m.reject = true;
        m.reject_hint = 3;
        assert_eq!(check(&r, true, &m), Err(Refusal::Index));
        m.reject_hint = 1;
        assert_eq!(check(&r, true, &m), Ok(()));
        m.request_snapshot = 2;
        assert_eq!(check(&r, true, &m), Err(Refusal::Index));
    }

    #[test]
    fn snapshot_with_an_impossible_configuration_is_refused() {
        let r = group(2);
        let mut m = msg(MessageType::MsgSnapshot, 1, 2, 1);
        let mut s = Snapshot::default();
        s.mut_metadata().index = 10;
        s.mut_metadata().term = 1;
        s.mut_metadata()
            .set_conf_state(ConfState::from((vec![1, 2], vec![2])));
        m.set_snapshot(s.clone());
        assert_eq!(
            check(&r, false, &m),
            Err(Refusal::Snapshot),
            "voter and learner"
        );
        s.mut_metadata()
            .set_conf_state(ConfState::from((vec![], vec![2])));
        m.set_snapshot(s.clone());
        assert_eq!(check(&r, false, &m), Err(Refusal::Snapshot), "no voter");
        s.mut_metadata()
            .set_conf_state(ConfState::from((vec![1, 3], vec![])));
        m.set_snapshot(s.clone());
        assert_eq!(check(&r, false, &m), Err(Refusal::Snapshot), "not us");
        s.mut_metadata().term = 9;
        s.mut_metadata()
            .set_conf_state(ConfState::from((vec![1, 2], vec![])));
        m.set_snapshot(s.clone());
        assert_eq!(check(&r, false, &m), Err(Refusal::Snapshot), "term");
        s.mut_metadata().term = 1;
        m.set_snapshot(s);
        assert_eq!(check(&r, false, &m), Ok(()));
    }

    #[test]
    fn timeout_now_only_from_our_leader() {
        let r = group(2);
        assert_eq!(
            check(&r, true, &msg(MessageType::MsgTimeoutNow, 3, 2, 1)),
            Err(Refusal::NotLeader)
        );
        assert_eq!(
            check(&r, true, &msg(MessageType::MsgTimeoutNow, 1, 2, 1)),
            Ok(())
        );
    }

    #[test]
    fn refusal_labels_follow_their_slots() {
        for (i, r) in Refusal::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
            assert!(!r.label().is_empty());
        }
    }
}
