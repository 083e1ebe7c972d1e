//! Balance by load and hot-range relief, over one run or several runs of the same checkers
//! (their cool-down and split-attempt memory carries over). Clusters are written as in
//! `tests.rs`; `load` is `(range, reads/s, writes/s)`.

use super::tests::{BASE, Case, UP, run_with};
use super::*;

/// Runs `checkers` over each `(seconds, case)` in turn and checks each run's operators.
fn must_schedule_in_turn(checkers: &[Box<dyn Checker>], runs: &[(u64, Case)]) {
    for (i, (at_s, case)) in runs.iter().enumerate() {
        let got = run_with(case, checkers, 1_000_000 + at_s * 1000);
        assert_eq!(got, case.expect, "run {i} ({}s): {}", at_s, case.name);
    }
}

fn only_load_balance() -> Vec<Box<dyn Checker>> {
    vec![Box::new(LoadBalance::default())]
}

const THREE_ZONES: &[(u64, &str, StoreState)] = &[(1, "a", UP), (2, "b", UP), (3, "c", UP)];

/// s1 leads a 3,000 reads/s range and a 500 one; s2 and s3 serve nothing.
const ONE_HOT_STORE: Case = Case {
    name: "one hot store and two cold ones: the hottest range's leadership moves off it",
    stores: THREE_ZONES,
    ranges: &["s1* s2 s3", "s1* s2 s3"],
    load: &[(1, 3000, 0), (2, 500, 0)],
    expect: &["r1: transfer-leader p12"],
    ..BASE
};

/// `ONE_HOT_STORE` after its move.
const ONE_HOT_STORE_MOVED: Case = Case {
    name: "moving the hot range back (or on to s3) would make the target as hot as the source: nothing moves",
    ranges: &["s1 s2* s3", "s1* s2 s3"],
    expect: &[],
    ..ONE_HOT_STORE
};

#[test]
fn leadership_of_the_hottest_range_moves_off_a_hot_store() {
    must_schedule_in_turn(&default_checkers(), &[(0, ONE_HOT_STORE)]);
}

#[test]
fn a_balanced_cluster_moves_nothing() {
    let case = Case {
        name: "loads within the ratio",
        stores: THREE_ZONES,
        ranges: &["s1* s2 s3", "s1 s2* s3", "s1 s2 s3*"],
        load: &[(1, 2000, 100), (2, 2000, 100), (3, 1600, 100)],
        ..BASE
    };
    must_schedule_in_turn(&default_checkers(), &[(0, case)]);
}

#[test]
fn an_idle_cluster_under_the_floor_moves_nothing() {
    let case = Case {
        name: "s1 serves 900 ops/s, the others nothing: under load-balance-min-ops",
        stores: THREE_ZONES,
        ranges: &["s1* s2 s3", "s1 s2* s3", "s1 s2 s3*"],
        load: &[(1, 800, 100)],
        ..BASE
    };
    must_schedule_in_turn(&default_checkers(), &[(0, case)]);
}

#[test]
fn a_moved_range_never_moves_back_over_repeated_runs() {
    // Without a cool-down, hysteresis alone keeps the range where it went.
    let no_cooldown = |c: Case| Case {
        cooldown_ms: 0,
        ..c
    };
    must_schedule_in_turn(
        &default_checkers(),
        &[
            (0, no_cooldown(ONE_HOT_STORE)),
            (1, no_cooldown(ONE_HOT_STORE_MOVED)),
            (2, no_cooldown(ONE_HOT_STORE_MOVED)),
        ],
    );
}

#[test]
fn a_move_that_would_only_swap_the_hot_spot_is_refused() {
    let case = Case {
        name: "s1 3,000 ops/s, s2 1,000: moving r1 would leave s2 at 4,000",
        rf: 2,
        stores: &[(1, "a", UP), (2, "b", UP)],
        ranges: &["s1* s2", "s1 s2*"],
        load: &[(1, 3000, 0), (2, 1000, 0)],
        ..BASE
    };
    must_schedule_in_turn(&default_checkers(), &[(0, case), (1, case)]);
}

#[test]
fn a_moved_range_stays_put_for_the_cool_down_then_may_move_again() {
    // The same (stale) loads three times: r1 moved at 0 s is left alone at 1 s (r2 goes),
    // and may move again once the 120 s cool-down is over.
    must_schedule_in_turn(
        &only_load_balance(),
        &[
            (0, ONE_HOT_STORE),
            (
                1,
                Case {
                    expect: &["r2: transfer-leader p22"],
                    ..ONE_HOT_STORE
                },
            ),
            (200, ONE_HOT_STORE),
        ],
    );
}

/// s1: r1 (4,500 with r2), s2 and s3 2,000 each from ranges s1 does not hold, s4 empty.
const ZONED: Case = Case {
    name: "",
    stores: &[(1, "a", UP), (2, "b", UP), (3, "c", UP), (4, "a", UP)],
    ranges: &["s1* s2 s3", "s1* s2 s3", "s2* s3", "s3* s2"],
    load: &[(1, 3000, 0), (2, 1500, 0), (3, 2000, 0), (4, 2000, 0)],
    ..BASE
};

#[test]
fn a_replica_moves_to_the_coldest_store_when_no_leader_transfer_helps() {
    let case = Case {
        name: "r1's voters are too hot for its leadership; s4 (same zone as s1) takes replica and leader",
        expect: &["r1: add-learner s4/0, promote, transfer-leader added, remove p11"],
        ..ZONED
    };
    must_schedule_in_turn(&only_load_balance(), &[(0, case)]);
}

#[test]
fn load_balance_never_reduces_a_ranges_zone_spread() {
    let case = Case {
        name: "s4 is in zone b: r1 (zones a, b, c) cannot go there; smaller moves are taken",
        stores: &[(1, "a", UP), (2, "b", UP), (3, "c", UP), (4, "b", UP)],
        expect: &[
            "r2: transfer-leader p22",
            "r3: add-learner s4/0, promote, transfer-leader added, remove p31",
        ],
        ..ZONED
    };
    must_schedule_in_turn(&only_load_balance(), &[(0, case)]);
}

/// r1 is above split-qps; s1 also leads r2.
const HOT_KEY: Case = Case {
    name: "",
    stores: THREE_ZONES,
    ranges: &["s1* s2 s3", "s1* s2 s3", "s2* s1 s3", "s3* s1 s2"],
    load: &[(1, 31_000, 0), (2, 5000, 0), (3, 2000, 0)],
    ..BASE
};

#[test]
fn a_hot_single_key_range_is_relieved_not_split() {
    let case = Case {
        name: "r1 holds one key: its leadership moves to the coldest voter store",
        keys: &[(1, 1)],
        expect: &["r1: transfer-leader p13"],
        ..HOT_KEY
    };
    let checkers = default_checkers();
    must_schedule_in_turn(&checkers, &[(0, case)]);
    let relief = run_with(&case, &checkers, 1_000_000 + 1000);
    assert!(
        !relief.iter().any(|p| p == "r1: split"),
        "a single-key range was split: {relief:?}"
    );
}

#[test]
fn a_range_whose_splits_leave_its_epoch_unchanged_is_relieved_after_the_attempts() {
    // r2 has an operator in flight, so only r1 can move; rf 1 on two stores.
    let base = Case {
        name: "r1 is split-attempts-max (3) times split in vain, then moved",
        rf: 1,
        stores: &[(1, "", UP), (2, "", UP)],
        ranges: &["s1*", "s1*", "s2*"],
        load: &[(1, 31_000, 0), (2, 2000, 0)],
        busy: &[2],
        expect: &["r1: split"],
        ..BASE
    };
    let relief = Case {
        expect: &["r1: add-learner s2/1, promote, transfer-leader added, remove p11"],
        ..base
    };
    let after = Case {
        expect: &[],
        ..base
    };
    must_schedule_in_turn(
        &default_checkers(),
        &[
            (0, base),
            (60, base),
            (120, base),
            (180, relief),
            (181, after),
        ],
    );
}

#[test]
fn count_balancing_leaves_a_range_moved_by_load_alone_for_the_cool_down() {
    // s1 leads r1 (hot) and r2, s2 leads r3, s3 nothing.
    let before = Case {
        name: "r1's leadership moves by load; leader balance then evens counts with r3",
        stores: THREE_ZONES,
        ranges: &["s1* s2 s3", "s1* s2 s3", "s2* s1 s3"],
        load: &[(1, 3000, 0), (2, 500, 0)],
        expect: &["r1: transfer-leader p12", "r3: transfer-leader p33"],
        ..BASE
    };
    // r1 moved, r3 not yet: s2 leads two ranges, s3 none; r1 would be leader balance's pick.
    let after = Case {
        name: "leader balance moves r3, not the cooling r1",
        ranges: &["s1 s2* s3", "s1* s2 s3", "s2* s1 s3"],
        expect: &["r3: transfer-leader p33"],
        ..before
    };
    must_schedule_in_turn(&default_checkers(), &[(0, before), (1, after)]);
}
