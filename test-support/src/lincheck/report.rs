//! The checker's verdict and how a violation is shown.

use std::fmt;

/// The verdict on one key's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Some order of the operations, each taking effect between its invocation and its
    /// completion (an unknown one: after its invocation, or never), obeys the model.
    Linearizable,
    /// No such order exists.
    Violation(Box<Violation>),
    /// The search hit a bound of [`super::Limits`] before deciding (why, in words).
    Undecided(String),
}

impl Verdict {
    /// Whether the history was found linearizable.
    pub fn is_linearizable(&self) -> bool {
        *self == Verdict::Linearizable
    }

    /// The violation, if one was found.
    pub fn violation(&self) -> Option<&Violation> {
        match self {
            Verdict::Violation(v) => Some(v),
            _ => None,
        }
    }
}

/// The first operation that no linearization of the history's prefix can complete: every
/// order of the operations before its completion leaves the object in one of `states`, from
/// which it cannot return what it returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// Its index in the checked history.
    pub op: usize,
    /// The states (up to 8, `Debug`-formatted) the deepest partial linearizations reached
    /// just before it had to take effect.
    pub states: Vec<String>,
    /// Indices of the operations around it (those overlapping it and the last few that
    /// completed before it started), by invocation time; `op` is among them.
    pub around: Vec<usize>,
    /// The same, one operation per line, the violating one marked `>>`.
    pub text: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "operation {} cannot take effect: the prefix before it leaves the object in {}",
            self.op,
            self.states.join(" or ")
        )?;
        f.write_str(&self.text)
    }
}
