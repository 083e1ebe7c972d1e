//! Property: whatever byte the last log file is cut at (a crash mid-append), reopening
//! recovers exactly the commands whose records are complete — every acknowledged command
//! before the cut, nothing after it — and the log accepts new commands afterwards. Snapshots
//! taken along the way do not change that. Also: two state machines fed the same commands
//! produce byte-identical snapshots (determinism, needed for Raft replication later).
#![allow(clippy::unwrap_used)]

use std::fs;

use ::master::log::DurableState;
use ::master::state::{ClusterConfig, ClusterState, Command};
use bytes::BytesMut;
use net::{ClusterId, Timestamp};
use proptest::prelude::*;

fn commands(n: usize, seed: u64) -> Vec<Command> {
    let mut out = vec![Command::Init {
        cluster_id: ClusterId(seed | 1),
        config: ClusterConfig::default(),
    }];
    for i in 1..n as u64 {
        out.push(if (i + seed) % 3 == 0 {
            Command::SetTsoLimit {
                limit: Timestamp(i << 18),
            }
        } else {
            Command::ReserveIds { end: i * 100 }
        });
    }
    out
}

fn last_log(dir: &std::path::Path) -> std::path::PathBuf {
    let mut logs: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_str().unwrap().starts_with("log-"))
        .collect();
    logs.sort();
    logs.pop().unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn a_log_cut_at_any_byte_recovers_exactly_the_complete_records(
        n in 2usize..40,
        snapshot_at in proptest::option::of(1usize..40),
        cut in any::<prop::sample::Index>(),
        seed in any::<u64>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let cmds = commands(n, seed);
        // Apply all, remembering the state and the last file's size after each command.
        let (mut d, _) = DurableState::open(dir.path()).unwrap();
        let mut after = Vec::new(); // (file, size, state) after command i
        for (i, c) in cmds.iter().enumerate() {
            d.propose(c).unwrap();
            if snapshot_at == Some(i) {
                d.snapshot().unwrap();
            }
            let f = last_log(dir.path());
            let size = fs::metadata(&f).unwrap().len();
            after.push((f, size, d.state().clone()));
        }
        drop(d);
        let last = last_log(dir.path());
        let full = fs::read(&last).unwrap();
        let cut_at = cut.index(full.len() + 1);
        fs::write(&last, &full[..cut_at]).unwrap();
        // The expected state: the last command whose record ends at or before the cut (in
        // the last file), or the snapshot's state if the cut falls before any such record.
        let mut expected = ClusterState::default();
        let snap_state = snapshot_at.filter(|s| *s < n).map(|s| after[s].2.clone());
        if let Some(s) = &snap_state {
            expected = s.clone();
        }
        for (f, size, state) in &after {
            if f == &last && *size <= cut_at as u64 && state.applied_index() >= expected.applied_index() {
                expected = state.clone();
            }
            if f != &last {
                expected = if state.applied_index() >= expected.applied_index() { state.clone() } else { expected };
            }
        }
        let (mut d, _) = DurableState::open(dir.path()).unwrap();
        prop_assert_eq!(d.state(), &expected);
        // The log goes on from there.
        let next = if expected.cluster_id() == ClusterId(0) {
            cmds[0].clone() // the cut fell inside the very first record
        } else {
            Command::ReserveIds { end: 1_000_000 }
        };
        d.propose(&next).unwrap();
        let want = d.state().clone();
        drop(d);
        let (d, _) = DurableState::open(dir.path()).unwrap();
        prop_assert_eq!(d.state(), &want);
        prop_assert_eq!(d.state().applied_index(), expected.applied_index() + 1);
    }
}

#[test]
fn the_same_commands_give_byte_identical_snapshots() {
    let cmds = commands(50, 7);
    let mut a = ClusterState::default();
    let mut b = ClusterState::default();
    for (i, c) in cmds.iter().enumerate() {
        a.apply(i as u64 + 1, c).unwrap();
        b.apply(i as u64 + 1, c).unwrap();
    }
    let (mut ea, mut eb) = (BytesMut::new(), BytesMut::new());
    a.encode_snapshot(&mut ea);
    b.encode_snapshot(&mut eb);
    assert_eq!(ea, eb);
}
