//! Hand-written histories with a known verdict, and a property: any history a sequential
//! execution produces, with random overlaps, unknown and failed operations, is accepted.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use proptest::prelude::*;

use super::*;

type RegOp = Operation<RegisterOp, Option<i64>>;
type CntOp = Operation<CounterOp, i64>;

fn op<I, R>(
    client: u32,
    invoke: u64,
    complete: u64,
    input: I,
    outcome: Outcome<R>,
) -> Operation<I, R> {
    Operation {
        client,
        invoke_ns: invoke,
        complete_ns: complete,
        input,
        outcome,
    }
}

fn w(c: u32, a: u64, b: u64, v: i64) -> RegOp {
    op(c, a, b, RegisterOp::Write(v), Outcome::Ok(None))
}

fn r(c: u32, a: u64, b: u64, v: Option<i64>) -> RegOp {
    op(c, a, b, RegisterOp::Read, Outcome::Ok(v))
}

fn add(c: u32, a: u64, b: u64, d: i64, out: Outcome<i64>) -> CntOp {
    op(c, a, b, CounterOp::Add(d), out)
}

fn get(c: u32, a: u64, b: u64, v: i64) -> CntOp {
    op(c, a, b, CounterOp::Read, Outcome::Ok(v))
}

fn reg(h: &[RegOp]) -> Verdict {
    check(&Register, h, &Limits::default())
}

fn cnt(h: &[CntOp]) -> Verdict {
    check(&Counter, h, &Limits::default())
}

#[test]
fn a_sequential_register_history_is_linearizable() {
    let h = [
        r(0, 0, 1, None),
        w(0, 2, 3, 1),
        r(1, 4, 5, Some(1)),
        w(1, 6, 7, 2),
        r(0, 8, 9, Some(2)),
    ];
    assert_eq!(reg(&h), Verdict::Linearizable);
}

#[test]
fn a_stale_read_after_a_newer_write_completed_is_a_violation() {
    let h = [w(0, 0, 10, 1), w(1, 20, 30, 2), r(2, 40, 50, Some(1))];
    let v = reg(&h);
    let v = v.violation().unwrap();
    assert_eq!(v.op, 2, "{v}");
    assert_eq!(v.states, vec!["Some(2)".to_string()], "{v}");
    assert!(v.around.contains(&1), "{v}");
    assert!(v.text.contains(">> op      2"), "{v}");
}

#[test]
fn a_lost_acknowledged_write_is_a_violation() {
    let h = [w(0, 0, 10, 1), r(1, 20, 30, None)];
    assert_eq!(reg(&h).violation().unwrap().op, 1);
}

#[test]
fn reads_overlapping_a_write_may_see_either_value() {
    // The write runs 0..100; reads inside it see the old, then the new value.
    let h = [
        w(0, 0, 100, 1),
        r(1, 10, 20, None),
        r(2, 15, 60, Some(1)),
        r(1, 30, 40, None),
        r(1, 50, 70, Some(1)),
        r(3, 80, 90, Some(1)),
    ];
    assert_eq!(reg(&h), Verdict::Linearizable);
}

#[test]
fn a_new_then_old_read_inside_one_write_is_a_violation() {
    let h = [w(0, 0, 100, 1), r(1, 10, 20, Some(1)), r(2, 30, 40, None)];
    assert_eq!(reg(&h).violation().unwrap().op, 2);
}

#[test]
fn concurrent_writes_may_take_effect_in_either_order() {
    let h = [
        w(0, 0, 50, 1),
        w(1, 10, 60, 2),
        r(2, 70, 80, Some(1)),
        r(3, 85, 90, Some(1)),
    ];
    assert_eq!(reg(&h), Verdict::Linearizable);
    let h = [
        w(0, 0, 50, 1),
        w(1, 10, 60, 2),
        r(2, 70, 80, Some(1)),
        r(3, 85, 90, Some(2)),
    ];
    assert_eq!(reg(&h).violation().unwrap().op, 3);
}

#[test]
fn an_unknown_write_may_take_effect_late_or_never() {
    let unknown = |v| op(0, 0, 5, RegisterOp::Write(v), Outcome::Unknown);
    // Seen long after the client gave up.
    let h = [unknown(1), r(1, 100, 110, None), r(1, 200, 210, Some(1))];
    assert_eq!(reg(&h), Verdict::Linearizable);
    // Never seen.
    let h = [
        unknown(1),
        r(1, 100, 110, None),
        w(1, 120, 130, 2),
        r(1, 200, 210, Some(2)),
    ];
    assert_eq!(reg(&h), Verdict::Linearizable);
    // But not before it was invoked.
    let h = [
        r(1, 0, 1, Some(1)),
        op(0, 10, 20, RegisterOp::Write(1), Outcome::Unknown),
    ];
    assert_eq!(reg(&h).violation().unwrap().op, 0);
}

#[test]
fn a_failed_write_must_not_be_seen() {
    let h = [
        op(0, 0, 10, RegisterOp::Write(1), Outcome::Failed),
        r(1, 20, 30, Some(1)),
    ];
    assert_eq!(reg(&h).violation().unwrap().op, 1);
    let h = [
        op(0, 0, 10, RegisterOp::Write(1), Outcome::Failed),
        r(1, 20, 30, None),
    ];
    assert_eq!(reg(&h), Verdict::Linearizable);
}

#[test]
fn counter_increments_return_the_running_total() {
    let h = [
        add(0, 0, 10, 1, Outcome::Ok(1)),
        add(1, 5, 30, 2, Outcome::Ok(4)),
        add(2, 6, 20, 1, Outcome::Ok(2)),
        get(3, 40, 50, 4),
    ];
    assert_eq!(cnt(&h), Verdict::Linearizable);
}

#[test]
fn a_duplicated_increment_is_a_violation() {
    // One INCRBY applied twice (a resent write without deduplication): 1, then 3.
    let h = [
        add(0, 0, 10, 1, Outcome::Ok(1)),
        add(1, 20, 30, 1, Outcome::Ok(2)),
        get(2, 40, 50, 3),
    ];
    assert_eq!(cnt(&h).violation().unwrap().op, 2);
}

#[test]
fn a_counter_cannot_go_back() {
    let h = [
        add(0, 0, 10, 1, Outcome::Ok(1)),
        add(1, 20, 30, 1, Outcome::Unknown),
        get(2, 40, 50, 2),
        get(2, 60, 70, 1),
    ];
    assert_eq!(cnt(&h).violation().unwrap().op, 3);
}

#[test]
fn many_identical_unknown_increments_are_checked_quickly() {
    // 200 unknown +1s, 100 of which took effect: without the invocation-order rule for
    // interchangeable unknown operations this is C(200, 100) configurations.
    let mut h: Vec<CntOp> = (0..200)
        .map(|i| add(i, i as u64, i as u64 + 1, 1, Outcome::Unknown))
        .collect();
    h.push(get(999, 1000, 1001, 100));
    h.push(get(999, 1002, 1003, 150));
    let limits = Limits {
        time: Duration::from_secs(5),
        ..Limits::default()
    };
    assert_eq!(check(&Counter, &h, &limits), Verdict::Linearizable);
    h.push(get(999, 1004, 1005, 201));
    assert_eq!(check(&Counter, &h, &limits).violation().unwrap().op, 202);
}

#[test]
fn a_search_past_its_time_limit_is_undecided() {
    let h: Vec<RegOp> = (0..20_000u64)
        .map(|i| w(0, 2 * i, 2 * i + 1, i as i64))
        .collect();
    let limits = Limits {
        time: Duration::ZERO,
        ..Limits::default()
    };
    assert!(matches!(
        check(&Register, &h, &limits),
        Verdict::Undecided(_)
    ));
}

#[test]
fn a_search_past_its_cache_bound_is_undecided() {
    let h: Vec<RegOp> = (0..20_000u64)
        .map(|i| w(0, 2 * i, 2 * i + 1, i as i64))
        .collect();
    let limits = Limits {
        cache_bytes: 1024,
        ..Limits::default()
    };
    assert!(matches!(
        check(&Register, &h, &limits),
        Verdict::Undecided(_)
    ));
}

/// One generated step: a read or a write/add, how it ended, and its overlap.
#[derive(Debug, Clone)]
struct Gen {
    write: bool,
    /// 0..=7: ok; 8: unknown and applied; 9: unknown and not applied; 10: failed.
    fate: u8,
    before: u64,
    after: u64,
}

fn gen_ops() -> impl Strategy<Value = Vec<Gen>> {
    prop::collection::vec(
        (any::<bool>(), 0u8..=10, 0u64..60, 0u64..60).prop_map(|(write, fate, before, after)| {
            Gen {
                write,
                fate,
                before,
                after,
            }
        }),
        1..80,
    )
}

/// Runs `steps` one after another, the i-th taking effect at time 10·i (+1000), each
/// invoked `before` earlier and completed `after` later; returns the recorded history.
fn run_sequentially<M: Model>(
    model: &M,
    steps: &[Gen],
    input: impl Fn(usize, bool) -> M::Input,
    output: impl Fn(&M::State, &M::State, &M::Input) -> M::Output,
) -> Vec<Operation<M::Input, M::Output>> {
    let mut state = model.init();
    let mut h = Vec::new();
    for (i, g) in steps.iter().enumerate() {
        let at = 1000 + 10 * i as u64;
        let inp = input(i, g.write);
        let applies = g.fate <= 8;
        let before = state.clone();
        if applies {
            state = model.step(&state, &inp, None).unwrap();
        }
        let outcome = match g.fate {
            0..=7 => Outcome::Ok(output(&before, &state, &inp)),
            8 | 9 => Outcome::Unknown,
            _ => Outcome::Failed,
        };
        h.push(op(i as u32, at - g.before, at + g.after, inp, outcome));
    }
    h
}

proptest! {
    #[test]
    fn histories_of_a_sequential_register_with_overlaps_are_accepted(steps in gen_ops()) {
        let h = run_sequentially(
            &Register,
            &steps,
            |i, write| if write { RegisterOp::Write(i as i64) } else { RegisterOp::Read },
            |_, after, _| *after,
        );
        prop_assert_eq!(reg(&h), Verdict::Linearizable);
    }

    #[test]
    fn histories_of_a_sequential_counter_with_overlaps_are_accepted(steps in gen_ops()) {
        let h = run_sequentially(
            &Counter,
            &steps,
            |i, write| if write { CounterOp::Add(1 + (i % 3) as i64) } else { CounterOp::Read },
            |_, after, _| *after,
        );
        prop_assert_eq!(cnt(&h), Verdict::Linearizable);
    }
}
