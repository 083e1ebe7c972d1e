//! How a script's `redis.call` becomes operations on a range: the command table a script
//! sees ([`Commands`], implemented by the proxy's command layer) and what one call plans.
//!
//! The table is the proxy's own translation of Redis commands into `net` operations, so a
//! command means the same inside a script as outside it. ds-node applies the planned
//! operations to the range the script runs in and hands their results to the plan's
//! [`Finish`] to build the reply the script sees.

use bytes::Bytes;
use net::RpcError;
use net::keyspace::Db;
use net::message::kv::{KvOp, OpResult};

use crate::{Resp, Value};

/// Turns the results of a call's operations (in order) into its reply.
pub type Finish = Box<dyn FnOnce(Vec<Result<OpResult, RpcError>>) -> Value>;

/// Where and when a call runs, and for whom.
#[derive(Debug, Clone, Copy)]
pub struct CallEnv<'a> {
    /// The database the script runs in (`SELECT` of its client).
    pub db: Db,
    /// The clock of the entry the script is applied in (Unix ms): the same on every replica.
    pub now_ms: u64,
    /// The protocol the reply is shaped for (`redis.setresp`).
    pub resp: Resp,
    /// The ACL rules of the user running the script (`None`: allowed everything):
    /// `net::message::script::ScriptCall::user`.
    pub user: Option<&'a [u8]>,
}

/// What one `redis.call` does.
pub enum Plan {
    /// A reply with no operation (`PING`, `ECHO`, `TIME`; an error: unknown command, wrong
    /// number of arguments, a command scripts may not call).
    Reply(Value),
    /// Operations to apply in order, each already in its database; then `finish`.
    Ops {
        /// The operations.
        ops: Vec<KvOp>,
        /// Builds the reply from their results.
        finish: Finish,
    },
}

impl std::fmt::Debug for Plan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Plan::Reply(v) => write!(f, "Reply({v:?})"),
            Plan::Ops { ops, .. } => write!(f, "Ops({ops:?})"),
        }
    }
}

/// The command table scripts call into.
pub trait Commands: Send + Sync {
    /// Plans `argv` (`argv[0]`: the command name, any case; never empty).
    fn plan(&self, argv: &[Bytes], env: CallEnv<'_>) -> Plan;

    /// `redis.acl_check_cmd`: whether `user` (rules as in [`CallEnv::user`]) may run `argv`;
    /// `Err`: the error for a command that does not exist.
    fn acl_check(&self, argv: &[Bytes], user: Option<&[u8]>) -> Result<bool, String>;
}
