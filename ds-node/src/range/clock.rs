//! The clock hand of the memory policy (`server::policy`): which hot entries to demote. It
//! lives with the engine it walks, [`engines::engine::masstree::clock`].

pub use engines::engine::masstree::clock::{Sweep, SweepLimits, sweep};
