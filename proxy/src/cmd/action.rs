//! What a translated command asks of the connection ([`Action`]), the multi-round commands
//! behind [`Action::Async`] ([`AsyncCommand`]), and the helpers that build the operations of
//! a key ([`keyed`], [`single`]).
//!
//! A leaf of `cmd`: it imports `util` and `tx_cmd` only, so every command family can build
//! an `Action` without importing the dispatcher above them.

use std::fmt;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use net::message::kv::{KvOp, OpResult};

use super::tx_cmd::TxCmd;
use super::util;
use crate::blocking::Blocked;
use crate::db::DbRouter;
use crate::keyspace::{Db, meta_key};
use crate::resp::Reply;
use crate::route::ExecError;

/// Turns the results of a command's operations (in order) into its reply.
pub type Finish = Box<dyn FnOnce(Vec<Result<OpResult, ExecError>>) -> Reply + Send>;

/// What the connection does with a command.
pub enum Action {
    /// Reply at once.
    Reply(Reply),
    /// Run these operations (each with the internal key it routes by), then finish.
    Data {
        /// The operations.
        ops: Vec<(Bytes, KvOp)>,
        /// Builds the reply from their results.
        finish: Finish,
    },
    /// A multi-round command (SCAN, KEYS, DBSIZE, HSCAN, BITOP, SORT, the commands on sets
    /// or sorted sets of several ranges), run alone at its place in the pipeline.
    Async(Box<dyn AsyncCommand>),
    /// A blocking command (BLPOP...) or a command that may take several rounds across ranges
    /// (LMOVE, LMPOP): [`crate::blocking`]. Where blocking is not allowed (in `EXEC`) it
    /// runs its non-blocking form.
    Block(Blocked),
    /// Reply, then close the connection (QUIT).
    Close(Reply),
    /// A command run alone at its place in the pipeline with the session (EXEC, WATCH,
    /// FLUSHALL: [`crate::exec`]).
    Tx(TxCmd),
}

impl Action {
    /// A multi-round command.
    pub fn rounds(cmd: impl AsyncCommand + 'static) -> Self {
        Self::Async(Box::new(cmd))
    }
}

impl fmt::Debug for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Reply(r) => write!(f, "Reply({r:?})"),
            Self::Data { ops, .. } => write!(f, "Data({ops:?})"),
            Self::Async(a) => write!(f, "Async({a:?})"),
            Self::Block(b) => write!(f, "Block({b:?})"),
            Self::Close(r) => write!(f, "Close({r:?})"),
            Self::Tx(t) => write!(f, "Tx({t:?})"),
        }
    }
}

/// A command that needs several rounds of operations, run in the connection's database.
/// Each family implements it for its own commands (`scan::Keyspace`, `bitmaps::BitOp`,
/// `sets::cross::Cross`, `zsets::ZAsync`, `sort::SortCmd`), so this module names none of
/// them. Rare commands only: the boxing is never on the path of a GET or a SET.
pub trait AsyncCommand: fmt::Debug + Send {
    /// Runs the command to its reply.
    fn run<'a>(self: Box<Self>, router: &'a DbRouter<'_>) -> BoxFuture<'a, Reply>;
}

/// An operation on one Redis key, routed by its metadata entry in database 0 (moved to the
/// connection's database by `cmd::dispatch` or [`crate::db::DbRouter`]).
pub fn keyed(key: &Bytes, op: KvOp) -> (Bytes, KvOp) {
    (meta_key(Db::ZERO, key), op)
}

/// A one-operation command.
pub fn single(
    key: &Bytes,
    op: KvOp,
    finish: impl FnOnce(OpResult) -> Reply + Send + 'static,
) -> Action {
    Action::Data {
        ops: vec![keyed(key, op)],
        finish: Box::new(move |res| match util::one(res) {
            Ok(r) => finish(r),
            Err(reply) => reply,
        }),
    }
}
