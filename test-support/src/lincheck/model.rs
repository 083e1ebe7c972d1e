//! Sequential specifications: what one operation does to a key's state and may return.

use std::collections::{HashMap, HashSet};
use std::fmt::Debug;
use std::hash::Hash;

use super::history::{Operation, Outcome};

/// A sequential object. `step` is total for an operation without an output (an unknown
/// outcome), which is what lets the search place an unknown write anywhere after its
/// invocation, or after everything (where nothing observes it: as if it never happened).
pub trait Model {
    /// The object's state.
    type State: Clone + Eq + Hash + Debug;
    /// An operation's input.
    type Input: Clone + Eq + Hash + Debug;
    /// An operation's output.
    type Output: Clone + Eq + Debug;

    /// The state before any operation.
    fn init(&self) -> Self::State;

    /// The state after `input` applied to `state`, if that application can return `output`
    /// (`None`: any output, the outcome is unknown); `None` if it cannot.
    fn step(
        &self,
        state: &Self::State,
        input: &Self::Input,
        output: Option<&Self::Output>,
    ) -> Option<Self::State>;

    /// Whether `input` leaves the state as it is (a read): a read with an unknown outcome
    /// constrains nothing and is left out.
    fn is_read(&self, input: &Self::Input) -> bool;

    /// Drops from `keep` (indices into `ops`) operations that cannot change the verdict
    /// (see [`Register`]); by default none.
    fn reduce(&self, ops: &[Operation<Self::Input, Self::Output>], keep: &mut Vec<usize>) {
        let _ = (ops, keep);
    }
}

/// A register operation: GET, or SET of a value.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RegisterOp {
    /// GET: the output is the value read (`None`: the key is absent).
    Read,
    /// SET: the output is `None` (nothing but "OK").
    Write(i64),
}

/// A register whose initial state is "absent". Outputs are `Option<i64>`: a read's value
/// (`None` for absent); a write's output is ignored.
///
/// [`Model::reduce`] drops an unknown write whose value no completed read returned, when no
/// other write wrote that value: such a write is indistinguishable from one that never
/// happened (no read observed the state it made), so the verdict is the same without it —
/// and dropping it keeps the search from trying every subset of the unknown writes.
#[derive(Debug, Clone, Copy, Default)]
pub struct Register;

impl Model for Register {
    type State = Option<i64>;
    type Input = RegisterOp;
    type Output = Option<i64>;

    fn init(&self) -> Option<i64> {
        None
    }

    fn step(
        &self,
        s: &Option<i64>,
        i: &RegisterOp,
        o: Option<&Option<i64>>,
    ) -> Option<Option<i64>> {
        match i {
            RegisterOp::Read => (o.is_none_or(|v| v == s)).then_some(*s),
            RegisterOp::Write(v) => Some(Some(*v)),
        }
    }

    fn is_read(&self, i: &RegisterOp) -> bool {
        *i == RegisterOp::Read
    }

    fn reduce(&self, ops: &[Operation<RegisterOp, Option<i64>>], keep: &mut Vec<usize>) {
        let mut writers: HashMap<i64, usize> = HashMap::new();
        let mut read: HashSet<i64> = HashSet::new();
        for op in ops {
            match (&op.input, &op.outcome) {
                (RegisterOp::Write(v), _) => *writers.entry(*v).or_default() += 1,
                (RegisterOp::Read, Outcome::Ok(Some(v))) => {
                    read.insert(*v);
                }
                _ => {}
            }
        }
        keep.retain(|&i| match (&ops[i].input, &ops[i].outcome) {
            (RegisterOp::Write(v), Outcome::Unknown) => {
                read.contains(v) || writers.get(v).is_some_and(|&n| n > 1)
            }
            _ => true,
        });
    }
}

/// A counter operation: GET, or INCRBY of a delta.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum CounterOp {
    /// GET: the output is the value (an absent key reads as 0).
    Read,
    /// INCRBY: the output is the value after the increment.
    Add(i64),
}

/// A counter starting at 0. Outputs are `i64`: the value read, or the value after an add.
#[derive(Debug, Clone, Copy, Default)]
pub struct Counter;

impl Model for Counter {
    type State = i64;
    type Input = CounterOp;
    type Output = i64;

    fn init(&self) -> i64 {
        0
    }

    fn step(&self, s: &i64, i: &CounterOp, o: Option<&i64>) -> Option<i64> {
        let next = match i {
            CounterOp::Read => *s,
            CounterOp::Add(d) => s.checked_add(*d)?,
        };
        (o.is_none_or(|v| *v == next)).then_some(next)
    }

    fn is_read(&self, i: &CounterOp) -> bool {
        *i == CounterOp::Read
    }
}
