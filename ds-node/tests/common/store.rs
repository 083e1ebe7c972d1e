//! A store that operations are applied to as a range applies committed entries, without a
//! node (shared by the model tests): the store, a range covering every key, the leader's
//! clock, the Raft index and, when asked for, rank indexes of large sorted sets.

use std::borrow::Borrow;
use std::cell::RefCell;

use bytes::Bytes;
use ds_node::range::apply::{ApplyCtx, execute};
use ds_node::range::store::{KvStore, ModelStore};
use ds_node::range::zrank::{RankConfig, ZRanks};
use net::message::RangeDescriptor;
use net::message::kv::{KvOp, OpResult};
use net::{Epoch, RangeId, RpcError};

/// Where a [`Db`]'s clock starts, Unix ms.
pub const START_MS: u64 = 1_000_000;

/// Range 1 covering every key, at the first epoch, with no replicas.
pub fn whole_range() -> RangeDescriptor {
    RangeDescriptor {
        id: RangeId(1),
        start: Bytes::new(),
        end: Bytes::new(),
        epoch: Epoch::default(),
        replicas: vec![],
        leader: None,
    }
}

/// The context of the entry at Raft index `index` proposed at `now_ms` in `range`, every
/// rank counted (no rank indexes).
pub fn apply_ctx(range: &RangeDescriptor, now_ms: u64, index: u64) -> ApplyCtx<'_> {
    ApplyCtx {
        now_ms,
        index,
        range,
        zranks: None,
    }
}

/// A store (the `BTreeMap` model unless told) in the [`whole_range`], applied to in Raft
/// index order. The clock stands still unless a test moves `now_ms` or sets `step_ms`.
pub struct Db<S: KvStore = ModelStore> {
    pub store: S,
    pub range: RangeDescriptor,
    /// The clock of the next operation, Unix ms.
    pub now_ms: u64,
    /// How far the clock moves before each operation, ms.
    pub step_ms: u64,
    /// The Raft index of the last operation applied.
    pub index: u64,
    pub zranks: Option<RefCell<ZRanks>>,
}

impl Db<ModelStore> {
    /// An empty model store at [`START_MS`].
    pub fn new() -> Self {
        Self::on(ModelStore::default())
    }
}

impl<S: KvStore> Db<S> {
    /// `store` at [`START_MS`], nothing applied yet.
    pub fn on(store: S) -> Self {
        Db {
            store,
            range: whole_range(),
            now_ms: START_MS,
            step_ms: 0,
            index: 0,
            zranks: None,
        }
    }

    /// The clock at `now_ms` instead.
    pub fn at(self, now_ms: u64) -> Self {
        Db { now_ms, ..self }
    }

    /// The clock moving `step_ms` before each operation.
    pub fn stepping(self, step_ms: u64) -> Self {
        Db { step_ms, ..self }
    }

    /// With rank indexes kept as `cfg` says (else every rank is counted).
    pub fn with_rank_indexes(self, cfg: RankConfig) -> Self {
        Db {
            zranks: Some(RefCell::new(ZRanks::new(cfg))),
            ..self
        }
    }

    /// Applies `op` as the next Raft entry; its result.
    pub fn run(&mut self, op: impl Borrow<KvOp>) -> Result<OpResult, RpcError> {
        self.index += 1;
        self.now_ms += self.step_ms;
        let ctx = ApplyCtx {
            zranks: self.zranks.as_ref(),
            ..apply_ctx(&self.range, self.now_ms, self.index)
        };
        execute(&mut self.store, op.borrow(), &ctx)
    }
}
