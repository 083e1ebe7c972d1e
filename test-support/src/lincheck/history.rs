//! One operation of a recorded history.

/// How an operation ended, as its client saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome<R> {
    /// Completed with this output.
    Ok(R),
    /// Certainly did not take effect (the server said so); left out of the check.
    Failed,
    /// The client gave up (timeout, connection lost, an "outcome unknown" error): it may or
    /// may not take effect, at any moment after its invocation.
    Unknown,
}

/// One operation of one key's history. Times are in one clock (nanoseconds since the
/// driver's start); `complete_ns` is when the client saw the outcome (for an unknown
/// outcome it is ignored: the operation may take effect later).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation<I, R> {
    /// The client (process) that issued it, for reports.
    pub client: u32,
    /// When it was invoked.
    pub invoke_ns: u64,
    /// When its outcome was seen (`>= invoke_ns`).
    pub complete_ns: u64,
    /// What it asked for.
    pub input: I,
    /// How it ended.
    pub outcome: Outcome<R>,
}

impl<I, R> Operation<I, R> {
    /// Whether the operation is certain to have taken effect before `complete_ns`.
    pub fn is_ok(&self) -> bool {
        matches!(self.outcome, Outcome::Ok(_))
    }

    /// The output, if it completed.
    pub fn output(&self) -> Option<&R> {
        match &self.outcome {
            Outcome::Ok(r) => Some(r),
            _ => None,
        }
    }
}
