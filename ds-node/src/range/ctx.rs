//! What an operation is applied with: the entry's clock and index and the range.

use std::cell::RefCell;

use net::message::RangeDescriptor;

use super::zrank::ZRanks;

/// What an operation is applied with.
#[derive(Debug, Clone, Copy)]
pub struct ApplyCtx<'a> {
    /// The leader's clock when it proposed the entry (reads: its clock now), Unix ms.
    pub now_ms: u64,
    /// The Raft index of the entry (reads: the applied index).
    pub index: u64,
    /// The range the operation runs in; keys outside it are refused.
    pub range: &'a RangeDescriptor,
    /// The range's rank indexes of large sorted sets (`range::zrank`), kept up to date by the
    /// writes applied and built by the reads that need one. `None`: every rank is counted.
    pub zranks: Option<&'a RefCell<ZRanks>>,
}
