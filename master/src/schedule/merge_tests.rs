//! Merges of small, cold neighbours (`MergeSmall`): when they merge, when they are
//! co-located first and how, and when they are left alone. Clusters are written as in
//! `tests.rs`; `sizes` are `(range, MiB)`, `load` `(range, reads/s, writes/s)`.

use super::tests::{BASE, Case, UP, run_with};
use super::*;

fn only_merges() -> Vec<Box<dyn Checker>> {
    vec![Box::new(MergeSmall::default())]
}

fn must_schedule(case: Case) {
    let got = run_with(&case, &only_merges(), 1_000_000);
    assert_eq!(got, case.expect, "{}", case.name);
}

const FOUR: &[(u64, &str, StoreState)] = &[(1, "", UP), (2, "", UP), (3, "", UP), (4, "", UP)];

/// Two 1 MiB idle neighbours on the same stores and shards, merges on at 16 MiB.
const SMALL_PAIR: Case = Case {
    name: "two small idle neighbours on the same places merge",
    stores: FOUR,
    ranges: &["s1* s2 s3", "s1* s2 s3"],
    sizes: &[(1, 1), (2, 1)],
    merge_size_mib: 16,
    expect: &["r1: merge r2"],
    ..BASE
};

#[test]
fn small_idle_colocated_neighbours_merge() {
    must_schedule(SMALL_PAIR);
    // The order of the replica lists and who leads do not matter.
    must_schedule(Case {
        ranges: &["s1* s2 s3", "s3 s1 s2*"],
        ..SMALL_PAIR
    });
}

#[test]
fn merges_are_off_by_default() {
    must_schedule(Case {
        name: "merge-size-bytes 0",
        merge_size_mib: 0,
        expect: &[],
        ..SMALL_PAIR
    });
}

#[test]
fn a_replica_on_another_store_moves_onto_the_left_ranges_store_first() {
    must_schedule(Case {
        name: "the right range's replica on s4 moves to s3",
        ranges: &["s1* s2 s3", "s1* s2 s4"],
        expect: &["r2: add-learner s3/0, promote, remove p23"],
        ..SMALL_PAIR
    });
    must_schedule(Case {
        name: "the moving replica leads: leadership goes to another voter first",
        ranges: &["s1* s2 s3", "s1 s2 s4*"],
        expect: &["r2: transfer-leader p21, add-learner s3/0, promote, remove p23"],
        ..SMALL_PAIR
    });
}

#[test]
fn a_replica_on_another_shard_of_the_store_moves_between_shards() {
    must_schedule(Case {
        name: "the right range's replica on s3 shard 1 moves to shard 0",
        ranges: &["s1* s2 s3", "s1* s2 s3.1"],
        expect: &["r2: add-learner s3/0, promote, remove p23"],
        ..SMALL_PAIR
    });
}

#[test]
fn a_co_location_move_is_not_repeated_within_the_cool_down() {
    let checkers = only_merges();
    let case = Case {
        name: "not co-located",
        ranges: &["s1* s2 s3", "s1* s2 s4"],
        expect: &["r2: add-learner s3/0, promote, remove p23"],
        ..SMALL_PAIR
    };
    assert_eq!(run_with(&case, &checkers, 1_000_000), case.expect);
    // The move's operator is gone (say it failed): the pair waits for the cool-down.
    assert!(run_with(&case, &checkers, 1_060_000).is_empty());
    assert_eq!(run_with(&case, &checkers, 1_130_000), case.expect);
}

#[test]
fn neighbours_that_are_too_big_or_too_busy_together_or_unreported_stay_apart() {
    must_schedule(Case {
        name: "each under 40 MiB, together 60 MiB: above half of split-size-bytes (96 MiB)",
        sizes: &[(1, 30), (2, 30)],
        merge_size_mib: 40,
        expect: &[],
        ..SMALL_PAIR
    });
    must_schedule(Case {
        name: "one serves 150 ops/s, above merge-qps (100)",
        load: &[(2, 100, 50)],
        expect: &[],
        ..SMALL_PAIR
    });
    must_schedule(Case {
        name: "the right range never reported its load",
        sizes: &[(1, 1)],
        expect: &[],
        ..SMALL_PAIR
    });
    must_schedule(Case {
        name: "the right range has an operator in flight",
        busy: &[2],
        expect: &[],
        ..SMALL_PAIR
    });
}

#[test]
fn three_small_ranges_merge_one_pair_per_run() {
    must_schedule(Case {
        name: "r1+r2 merge; r2 is then busy, so r2+r3 waits",
        ranges: &["s1* s2 s3", "s1* s2 s3", "s1* s2 s3"],
        sizes: &[(1, 1), (2, 1), (3, 1)],
        expect: &["r1: merge r2"],
        ..SMALL_PAIR
    });
}
