//! Balance by load between the shards of one store, and hot-range relief within a store.
//! Clusters are written as in `tests.rs` (`s1.1` is shard 1 of store 1); `load` is
//! `(range, reads/s, writes/s)`.

use super::tests::{BASE, Case, UP, run_with};
use super::*;
use net::{ReplicaId, ShardId, StoreId};

fn must_schedule_in_turn(checkers: &[Box<dyn Checker>], runs: &[(u64, Case)]) {
    for (i, (at_s, case)) in runs.iter().enumerate() {
        let got = run_with(case, checkers, 1_000_000 + at_s * 1000);
        assert_eq!(got, case.expect, "run {i} ({}s): {}", at_s, case.name);
    }
}

fn only_shard_balance() -> Vec<Box<dyn Checker>> {
    vec![Box::new(ShardBalance::default())]
}

/// One store, replication factor 1: shard 0 leads r1 (3,000 ops/s) and r2 (2,000), shard 1
/// leads r3 (idle).
const HOT_SHARD: Case = Case {
    name: "shard 0 serves 5,000 ops/s, shard 1 nothing: r1 moves to shard 1 with its leadership",
    rf: 1,
    stores: &[(1, "", UP)],
    ranges: &["s1*", "s1*", "s1.1*"],
    load: &[(1, 3000, 0), (2, 2000, 0)],
    expect: &["r1: add-learner s1/1, promote, transfer-leader added, remove p11"],
    ..BASE
};

#[test]
fn the_hottest_range_of_a_hot_shard_moves_to_the_coldest_shard_of_its_store() {
    // One move only: after it shard 1 serves 3,000 and shard 0 2,000, within the ratio.
    must_schedule_in_turn(&default_checkers(), &[(0, HOT_SHARD)]);
}

#[test]
fn a_range_moved_between_shards_does_not_move_back() {
    let moved = Case {
        name: "after the move: shard 1 3,000, shard 0 2,000: nothing moves",
        ranges: &["s1.1*", "s1*", "s1.1*"],
        cooldown_ms: 0,
        expect: &[],
        ..HOT_SHARD
    };
    let before = Case {
        cooldown_ms: 0,
        ..HOT_SHARD
    };
    must_schedule_in_turn(&default_checkers(), &[(0, before), (1, moved), (2, moved)]);
}

#[test]
fn a_shard_hot_for_one_run_only_moves_nothing() {
    // The first second of a load: r1 and r2 have reported, r3 (shard 1) not yet. The same
    // checker sees shard 0 hot in two runs, then balanced: no move. Hot for three runs in a
    // row: r1 moves.
    let checkers = only_shard_balance();
    let early = Case {
        name: "shard 0 hot, run 1 or 2 of 3",
        shard_balance_runs: 3,
        expect: &[],
        ..HOT_SHARD
    };
    let settled = Case {
        name: "r3 reported: the shards are even",
        load: &[(1, 3000, 0), (2, 2000, 0), (3, 4000, 0)],
        ..early
    };
    let third = Case {
        name: "shard 0 hot for a third run in a row",
        shard_balance_runs: 3,
        ..HOT_SHARD
    };
    must_schedule_in_turn(
        &checkers,
        &[(0, early), (1, early), (2, settled), (3, early), (4, early)],
    );
    must_schedule_in_turn(&checkers, &[(5, third)]);
}

#[test]
fn shards_within_the_ratio_or_under_the_floor_move_nothing() {
    let within = Case {
        name: "shard 0 2,000 ops/s, shard 1 1,600",
        load: &[(1, 1000, 0), (2, 1000, 0), (3, 1600, 0)],
        expect: &[],
        ..HOT_SHARD
    };
    let idle = Case {
        name: "shard 0 900 ops/s, shard 1 nothing: under load-balance-min-ops",
        load: &[(1, 500, 0), (2, 400, 0)],
        expect: &[],
        ..HOT_SHARD
    };
    must_schedule_in_turn(&default_checkers(), &[(0, within), (0, idle)]);
}

#[test]
fn a_move_that_would_only_swap_the_hot_shard_is_refused() {
    let case = Case {
        name: "shard 0 serves one 3,000 ops/s range, shard 1 1,000: moving it leaves shard 1 at 4,000",
        ranges: &["s1*", "s1.1*"],
        load: &[(1, 3000, 0), (2, 1000, 0)],
        expect: &[],
        ..HOT_SHARD
    };
    must_schedule_in_turn(&default_checkers(), &[(0, case), (1, case)]);
}

#[test]
fn a_range_moved_between_shards_stays_put_for_the_cool_down() {
    // The same (stale) loads three times: r1 moved at 0 s is left alone at 1 s (r2 goes),
    // and may move again once the 120 s cool-down is over.
    must_schedule_in_turn(
        &only_shard_balance(),
        &[
            (0, HOT_SHARD),
            (
                1,
                Case {
                    expect: &["r2: add-learner s1/1, promote, transfer-leader added, remove p21"],
                    ..HOT_SHARD
                },
            ),
            (200, HOT_SHARD),
        ],
    );
}

#[test]
fn a_range_already_moving_counts_where_its_operator_puts_it() {
    // r1's move to shard 1 is in flight (nothing done yet): shard 0 will serve 2,000 and
    // shard 1 3,000, so r2 stays. Counted where r1 is now, r2 would follow it.
    const MOVE_R1: &[Step] = &[
        Step::AddLearner {
            store: StoreId(1),
            shard: ShardId(1),
        },
        Step::PromoteAdded,
        Step::TransferLeaderToAdded,
        Step::Remove {
            replica_id: ReplicaId(11),
        },
    ];
    let case = Case {
        name: "r1 is on its way to shard 1: nothing more moves",
        in_flight: &[(1, MOVE_R1)],
        expect: &[],
        ..HOT_SHARD
    };
    must_schedule_in_turn(&default_checkers(), &[(0, case)]);
}

#[test]
fn a_followers_writes_count_on_its_shard() {
    let case = Case {
        name: "s1 shard 0 holds followers of two write-heavy ranges led on s2: one moves to shard 1",
        rf: 2,
        stores: &[(1, "", UP), (2, "", UP)],
        ranges: &["s2* s1", "s2.1* s1"],
        load: &[(1, 0, 2000), (2, 0, 1500)],
        expect: &["r1: add-learner s1/1, promote, remove p12"],
        ..BASE
    };
    must_schedule_in_turn(&only_shard_balance(), &[(0, case)]);
}

#[test]
fn a_hot_single_key_range_is_relieved_to_the_coldest_shard_when_no_store_helps() {
    let case = Case {
        name: "one store: r1 (one key, above split-qps) leaves shard 0 for shard 1",
        keys: &[(1, 1)],
        load: &[(1, 31_000, 0), (2, 5000, 0)],
        expect: &["r1: add-learner s1/1, promote, transfer-leader added, remove p11"],
        ..HOT_SHARD
    };
    let checkers = default_checkers();
    must_schedule_in_turn(&checkers, &[(0, case)]);
    let split_only: Vec<Box<dyn Checker>> = vec![Box::new(SplitChecker::default())];
    let got = run_with(&case, &split_only, 1_000_000);
    assert_eq!(got, case.expect, "the relief is the split checker's");
}

#[test]
fn an_unfinished_move_between_shards_loses_a_replica_on_the_shared_store() {
    // r1 has four voters for a factor of 3, two of them on store 3 (a move from shard 0 to
    // shard 1 timed out after the promotion). Without the rule, zone b's crowd and s2's
    // replica count (r2 and r3, busy) would pick s2's replica.
    let case = Case {
        name: "the extra voter is one of the two on store 3",
        stores: &[(1, "a", UP), (2, "b", UP), (3, "b", UP)],
        ranges: &["s1* s2 s3 s3.1", "s2* s1", "s2* s1"],
        busy: &[2, 3],
        expect: &["r1: remove p14"],
        ..BASE
    };
    must_schedule_in_turn(&default_checkers(), &[(0, case)]);
}
