//! The storage interface the state machine applies to: the engine boundary of `engines`
//! (`engines::engine`), under the names ds-node uses — [`KvStore`] is [`engines::engine::Engine`]
//! and [`ModelStore`] is the `BTreeMap` reference engine [`engines::engine::ModelEngine`].
//! Writes return their [`SizeDelta`]; the state machine sums them through
//! [`Counted`](super::db_keys::Counted).

pub use engines::engine::{Engine as KvStore, Entry, ModelEngine as ModelStore, SizeDelta};
