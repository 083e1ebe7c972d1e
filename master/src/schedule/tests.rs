//! Table-driven scheduling cases: a cluster written compactly, the operators expected.
//!
//! A range is written `"s1* s2 s3"`: its replicas' stores in order (replica ids are
//! `range * 10 + position`, so the first replica of range 2 is `p21`), `*` marks the leader,
//! `~` a learner; `s1.1` is a replica on shard 1 of store 1 (`s1` is shard 0). Ranges get
//! consecutive key intervals. Each store has two shards.

use std::collections::BTreeMap;

use bytes::Bytes;
use net::message::{RangeDescriptor, RangeStats, Replica, ReplicaRole, StoreInfo};
use net::{ClusterId, Epoch, RangeId, ReplicaId, ShardId, StoreId};

use super::*;
use crate::detector::Health;
use crate::state::{ClusterConfig, ClusterState, Command, StoreMeta, StoreState};

#[derive(Clone, Copy)]
pub(super) struct Case {
    pub(super) name: &'static str,
    pub(super) rf: u32,
    /// `(store, zone, state)`; zone "" means no label.
    pub(super) stores: &'static [(u64, &'static str, StoreState)],
    pub(super) ranges: &'static [&'static str],
    /// `(range, size MiB)`.
    pub(super) sizes: &'static [(u64, u64)],
    /// `(range, reads/s, writes/s)` its leader reported.
    pub(super) load: &'static [(u64, u64, u64)],
    /// `(range, keys)` its leader reported.
    pub(super) keys: &'static [(u64, u64)],
    /// `load-balance-cooldown-ms`.
    pub(super) cooldown_ms: u64,
    /// Stores whose last heartbeat is older than the down timeout.
    pub(super) silent: &'static [u64],
    /// Stores the failure detector declared dead / suspect.
    pub(super) dead: &'static [u64],
    pub(super) suspect: &'static [u64],
    /// Ranges with an operator in flight.
    pub(super) busy: &'static [u64],
    /// Ranges with an operator in flight and the steps it has left (busy as well).
    pub(super) in_flight: &'static [(u64, &'static [Step])],
    pub(super) max_ops_per_store: usize,
    /// `merge-size-bytes` in MiB (0: merges off).
    pub(super) merge_size_mib: u64,
    /// `shard_balance_runs` (1 in the cases: every run's checkers are fresh, so a streak
    /// only builds in `shard_tests`' own runs).
    pub(super) shard_balance_runs: u32,
    pub(super) expect: &'static [&'static str],
}

pub(super) const UP: StoreState = StoreState::Up;
const OFF: StoreState = StoreState::Offline;

pub(super) const BASE: Case = Case {
    name: "",
    rf: 3,
    stores: &[],
    ranges: &[],
    sizes: &[],
    load: &[],
    keys: &[],
    cooldown_ms: 120_000,
    silent: &[],
    dead: &[],
    suspect: &[],
    busy: &[],
    in_flight: &[],
    max_ops_per_store: 4,
    merge_size_mib: 0,
    shard_balance_runs: 1,
    expect: &[],
};

fn key(i: usize) -> Bytes {
    if i == 0 {
        Bytes::new()
    } else {
        Bytes::from(format!("k{i:03}"))
    }
}

fn build(case: &Case) -> ClusterState {
    let mut s = ClusterState::default();
    let mut cmds = vec![Command::Init {
        cluster_id: ClusterId(1),
        config: ClusterConfig {
            replication_factor: case.rf,
            ..ClusterConfig::default()
        },
    }];
    for (id, zone, state) in case.stores {
        let labels = if zone.is_empty() {
            vec![]
        } else {
            vec![("zone".to_string(), zone.to_string())]
        };
        cmds.push(Command::PutStore {
            meta: StoreMeta {
                info: StoreInfo {
                    store_id: StoreId(*id),
                    addr: format!("h{id}:1"),
                    shard_addrs: vec![format!("h{id}:2"), format!("h{id}:3")],
                    labels,
                },
                mem_capacity: 1,
                disk_capacity: 1,
                state: *state,
                registered_ms: 0,
            },
        });
    }
    let n = case.ranges.len();
    let mut descs = Vec::new();
    for (i, spec) in case.ranges.iter().enumerate() {
        let rid = i as u64 + 1;
        let mut replicas = Vec::new();
        let mut leader = None;
        for (pos, tok) in spec.split_whitespace().enumerate() {
            let replica_id = ReplicaId(rid * 10 + pos as u64 + 1);
            let place = tok.trim_matches(['s', '*', '~']);
            let (store, shard) = place.split_once('.').unwrap_or((place, "0"));
            let (store, shard): (u64, u32) = (store.parse().unwrap(), shard.parse().unwrap());
            if tok.ends_with('*') {
                leader = Some(replica_id);
            }
            replicas.push(Replica {
                replica_id,
                store_id: StoreId(store),
                shard_id: ShardId(shard),
                role: if tok.ends_with('~') {
                    ReplicaRole::Learner {}
                } else {
                    ReplicaRole::Voter {}
                },
            });
        }
        descs.push(RangeDescriptor {
            id: RangeId(rid),
            start: key(i),
            end: if i + 1 == n { Bytes::new() } else { key(i + 1) },
            epoch: Epoch {
                conf_ver: 1,
                version: 1,
            },
            replicas,
            leader,
        });
    }
    // Bootstrap the first range over everything, then split off the rest.
    if let Some(first) = descs.first() {
        let mut whole = first.clone();
        whole.end = Bytes::new();
        cmds.push(Command::Bootstrap { range: whole });
    }
    let mut version = 1;
    for i in 1..descs.len() {
        version += 1;
        let mut left = descs[i - 1].clone();
        left.epoch.version = version;
        let mut right = descs[i].clone();
        right.end = Bytes::new();
        cmds.push(Command::Split { left, right });
    }
    if let Some(last) = descs.last() {
        if descs.len() > 1 {
            let mut fixed = last.clone();
            fixed.epoch.version = version + 1;
            cmds.push(Command::PutRange { range: fixed });
        }
    }
    for (i, c) in cmds.iter().enumerate() {
        s.apply(i as u64 + 1, c)
            .unwrap_or_else(|e| panic!("{}: {e}", case.name));
    }
    s
}

fn run(case: &Case) -> Vec<String> {
    run_with(case, &default_checkers(), 1_000_000)
}

/// Runs `checkers` (kept by the caller across runs) over `case` at `now`.
pub(super) fn run_with(case: &Case, checkers: &[Box<dyn Checker>], now: u64) -> Vec<String> {
    let state = build(case);
    let stores: BTreeMap<StoreId, StoreLoad> = case
        .silent
        .iter()
        .map(|s| {
            (
                StoreId(*s),
                StoreLoad {
                    heartbeat_ms: 0,
                    ..StoreLoad::default()
                },
            )
        })
        .collect();
    let mut ranges: BTreeMap<RangeId, RangeLoad> = BTreeMap::new();
    fn stats(ranges: &mut BTreeMap<RangeId, RangeLoad>, r: u64, now: u64) -> &mut RangeStats {
        &mut ranges
            .entry(RangeId(r))
            .or_insert_with(|| RangeLoad {
                heartbeat_ms: now,
                ..RangeLoad::default()
            })
            .stats
    }
    for (r, mib) in case.sizes {
        stats(&mut ranges, *r, now).size_bytes = mib << 20;
    }
    for (r, reads, writes) in case.load {
        let s = stats(&mut ranges, *r, now);
        s.read_qps = *reads;
        s.write_qps = *writes;
    }
    for (r, keys) in case.keys {
        stats(&mut ranges, *r, now).keys = *keys;
    }
    let in_flight: BTreeMap<RangeId, Vec<Step>> = case
        .in_flight
        .iter()
        .map(|(r, steps)| (RangeId(*r), steps.to_vec()))
        .collect();
    let busy: BTreeMap<RangeId, Vec<StoreId>> = case
        .busy
        .iter()
        .chain(case.in_flight.iter().map(|(r, _)| r))
        .map(|r| (RangeId(*r), vec![]))
        .collect();
    let config = ScheduleConfig {
        max_ops_per_store: case.max_ops_per_store,
        load_balance_cooldown_ms: case.cooldown_ms,
        merge_size_bytes: case.merge_size_mib << 20,
        shard_balance_runs: case.shard_balance_runs,
        ..ScheduleConfig::default()
    };
    let health: BTreeMap<StoreId, Health> = case
        .dead
        .iter()
        .map(|s| (StoreId(*s), Health::Dead))
        .chain(case.suspect.iter().map(|s| (StoreId(*s), Health::Suspect)))
        .collect();
    let input = ScheduleInput {
        state: &state,
        stores: &stores,
        ranges: &ranges,
        busy: &busy,
        in_flight: &in_flight,
        health: &health,
        config: &config,
        now_ms: now,
    };
    let out = schedule(input, checkers);
    for p in &out {
        assert!(!p.reason.is_empty());
    }
    out.iter().map(|p| p.to_string()).collect()
}

#[test]
fn scheduling_cases() {
    let cases = [
        Case {
            name: "a lone store cannot reach the replication factor",
            stores: &[(1, "", UP)],
            ranges: &["s1*"],
            ..BASE
        },
        Case {
            name: "new stores get replicas until the factor is reached, one step per range",
            stores: &[(1, "", UP), (2, "", UP), (3, "", UP)],
            ranges: &["s1*", "s1*"],
            expect: &[
                "r1: add-learner s2/0, promote",
                "r2: add-learner s3/0, promote",
            ],
            ..BASE
        },
        Case {
            name: "the new replica goes to a zone the range does not use yet",
            stores: &[(1, "a", UP), (2, "a", UP), (3, "b", UP)],
            ranges: &["s1*"],
            expect: &["r1: add-learner s3/0, promote"],
            ..BASE
        },
        Case {
            name: "the least-loaded shard of the target store is chosen",
            rf: 2,
            stores: &[(1, "", UP), (2, "", UP)],
            ranges: &["s1* s2", "s1*"],
            // s1 leads both ranges and s2 none: leader balance moves one.
            expect: &["r2: add-learner s2/1, promote", "r1: transfer-leader p12"],
            ..BASE
        },
        Case {
            name: "an extra replica is removed, never the leader first",
            rf: 1,
            stores: &[(1, "", UP), (2, "", UP)],
            ranges: &["s1 s2*"],
            expect: &["r1: transfer-leader p11, remove p12"],
            ..BASE
        },
        Case {
            name: "the extra replica comes out of the most crowded zone",
            rf: 2,
            stores: &[(1, "a", UP), (2, "a", UP), (3, "b", UP)],
            ranges: &["s1* s2 s3"],
            expect: &["r1: remove p12"],
            ..BASE
        },
        Case {
            name: "a replica on an offline store is replaced, then removed",
            stores: &[(1, "", UP), (2, "", UP), (3, "", OFF), (4, "", UP)],
            ranges: &["s1* s2 s3"],
            expect: &["r1: add-learner s4/0, promote, remove p13"],
            ..BASE
        },
        Case {
            name: "a voter on a silent (down) store is replaced on a live store, then removed",
            stores: &[(1, "", UP), (2, "", UP), (3, "", UP), (4, "", UP)],
            ranges: &["s1* s2 s3"],
            silent: &[3],
            expect: &["r1: add-learner s4/0, promote, remove p13"],
            ..BASE
        },
        Case {
            name: "a voter on a store the detector declared dead is replaced, then removed",
            stores: &[(1, "", UP), (2, "", UP), (3, "", UP), (4, "", UP)],
            ranges: &["s1* s2 s3"],
            dead: &[3],
            expect: &["r1: add-learner s4/0, promote, remove p13"],
            ..BASE
        },
        Case {
            name: "the detector's verdict overrides the heartbeat rule: a silent store a probe reaches keeps its replicas",
            stores: &[(1, "", UP), (2, "", UP), (3, "", UP), (4, "", UP)],
            ranges: &["s1* s2 s3"],
            silent: &[3],
            suspect: &[3],
            ..BASE
        },
        Case {
            name: "a suspect store keeps its replicas but receives no new one",
            rf: 2,
            stores: &[(1, "", UP), (2, "", UP), (3, "", UP)],
            ranges: &["s1*"],
            suspect: &[2],
            expect: &["r1: add-learner s3/0, promote"],
            ..BASE
        },
        Case {
            name: "a silent store receives no replica",
            rf: 2,
            stores: &[(1, "", UP), (2, "", UP), (3, "", UP)],
            ranges: &["s1*"],
            silent: &[2],
            expect: &["r1: add-learner s3/0, promote"],
            ..BASE
        },
        Case {
            name: "a caught-up learner without an operator is promoted",
            rf: 2,
            stores: &[(1, "", UP), (2, "", UP)],
            ranges: &["s1* s2~"],
            expect: &["r1: promote p12"],
            ..BASE
        },
        Case {
            name: "a range serving more than split-qps reads + writes is split (load from the leader's heartbeat)",
            rf: 1,
            stores: &[(1, "", UP)],
            // On two shards: the shards are balanced (else the shard balancer moves r2).
            ranges: &["s1*", "s1.1*"],
            load: &[(1, 20_000, 10_001), (2, 20_000, 10_000)],
            expect: &["r1: split"],
            ..BASE
        },
        Case {
            name: "ranges above 96 MiB are split",
            rf: 1,
            stores: &[(1, "", UP)],
            ranges: &["s1*", "s1*"],
            sizes: &[(1, 96), (2, 97)],
            expect: &["r2: split"],
            ..BASE
        },
        Case {
            name: "ranges with an operator in flight are left alone",
            stores: &[(1, "", UP), (2, "", UP), (3, "", UP)],
            ranges: &["s1*", "s1*"],
            busy: &[1],
            expect: &["r2: add-learner s2/0, promote"],
            ..BASE
        },
        Case {
            name: "concurrent operators per store are limited",
            rf: 2,
            stores: &[(1, "", UP), (2, "", UP), (3, "", UP)],
            ranges: &["s1*", "s2*", "s3*"],
            max_ops_per_store: 1,
            // r3 would need s1 or s2, each already at its one operator.
            expect: &[
                "r1: add-learner s2/1, promote",
                "r2: add-learner s1/1, promote",
            ],
            ..BASE
        },
        Case {
            name: "replicas move from the fullest store to an empty one, then leaders even out",
            rf: 2,
            stores: &[(1, "", UP), (2, "", UP), (3, "", UP)],
            ranges: &["s1* s2", "s1* s2", "s1* s2", "s1* s2"],
            expect: &[
                "r1: transfer-leader p12, add-learner s3/0, promote, remove p11",
                "r2: add-learner s3/0, promote, remove p22",
                "r3: transfer-leader p32",
            ],
            ..BASE
        },
        Case {
            name: "a balanced cluster needs nothing",
            stores: &[(1, "a", UP), (2, "b", UP), (3, "c", UP)],
            ranges: &["s1* s2 s3", "s1 s2* s3", "s1 s2 s3*"],
            ..BASE
        },
    ];
    let mut failures = Vec::new();
    for case in &cases {
        let got = run(case);
        if got != case.expect {
            failures.push(format!(
                "{}:\n  expected {:?}\n  got      {:?}",
                case.name, case.expect, got
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
