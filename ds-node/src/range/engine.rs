//! The shard's engine, [`MasstreeStore`]: [`engines::engine::MasstreeEngine`] (the Masstree
//! hot tier with cold entries, live bytes per segment, demotion and GC walks) under the name
//! ds-node uses, with the types of its interface.

pub use engines::engine::masstree::{
    ALLOC_OVERHEAD, Accounted, Backing, Candidate, Captured, ColdStats, GcItem, GcWalk, Loaded,
    MasstreeEngine as MasstreeStore, Promotion, Stored, StoredRef, loaded_before,
};
