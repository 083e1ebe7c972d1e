//! A per-key linearizability checker for histories recorded by a Jepsen-style test driver.
//!
//! - [`history`]: an [`Operation`] (client, invocation and completion times, input, and an
//!   [`Outcome`]: ok with its output, failed for sure, or unknown — an unknown write may or may
//!   not have taken effect, at any time after its invocation).
//! - [`model`]: the sequential specifications, [`Register`] (GET/SET) and [`Counter`]
//!   (INCRBY/GET), behind the [`Model`] trait.
//! - [`search`]: [`check`], a Wing–Gong search with Lowe's memoisation of (linearized set,
//!   state), bounded by [`Limits`] (time and cache bytes) so that a pathological history ends
//!   as [`Verdict::Undecided`] instead of hanging.
//! - [`report`]: the [`Verdict`] and, for a violation, the first operation no linearization
//!   of the history can complete, with the operations around it.
//!
//! The checker works on one key's history; a caller splits a multi-key history by key
//! (linearizability is local: a history is linearizable iff each key's sub-history is).
//! Imports point one way: `search` and `report` use `history` and `model`; `model` uses
//! `history`.

pub mod history;
pub mod model;
pub mod report;
pub mod search;

pub use history::{Operation, Outcome};
pub use model::{Counter, CounterOp, Model, Register, RegisterOp};
pub use report::{Verdict, Violation};
pub use search::{Limits, check};

#[cfg(test)]
mod tests;
