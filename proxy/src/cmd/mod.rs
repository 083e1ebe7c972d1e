//! Redis commands: the command table (arity, flags, key positions — also what `COMMAND`
//! answers) and the translation of each command into `net` operations plus a function that
//! turns their results into the Redis reply.
//!
//! A command becomes an [`Action`]: an immediate reply (connection and server commands), a
//! set of operations run in the connection's pipeline batch ([`Action::Data`]), or a
//! multi-round command run alone at its place in the pipeline ([`Action::Async`]: SCAN, KEYS,
//! DBSIZE, HSCAN).
// perf-critical: every command is dispatched here.

pub mod dbs;
pub mod hashes;
pub mod keys;
pub mod object;
pub mod server;
pub mod strings;
pub mod tx;
pub mod tx_cmd;
pub mod util;

use bytes::Bytes;
use net::message::kv::{KeyType, KvOp, OpResult, SetOp};

use crate::keyspace::{Db, meta_key};
use crate::resp::{Protocol, Reply};
use crate::route::ExecError;
use crate::shared::Shared;

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
    /// A multi-round command.
    Async(AsyncCmd),
    /// Reply, then close the connection (QUIT).
    Close(Reply),
    /// A command run alone at its place in the pipeline with the session (EXEC, WATCH,
    /// FLUSHALL: [`tx`]).
    Tx(tx::TxCmd),
}

impl std::fmt::Debug for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Reply(r) => write!(f, "Reply({r:?})"),
            Self::Data { ops, .. } => write!(f, "Data({ops:?})"),
            Self::Async(a) => write!(f, "Async({a:?})"),
            Self::Close(r) => write!(f, "Close({r:?})"),
            Self::Tx(t) => write!(f, "Tx({t:?})"),
        }
    }
}

/// Commands that need several rounds of operations.
#[derive(Debug, Clone)]
pub enum AsyncCmd {
    /// `SCAN cursor [MATCH p] [COUNT n] [TYPE t]`; the cursor is the next hash slot.
    Scan {
        /// The slot to start from.
        slot: u16,
        /// MATCH pattern.
        pattern: Option<Bytes>,
        /// COUNT hint.
        count: usize,
        /// TYPE filter (`Some(None)`: a type this proxy never stores, nothing matches).
        type_filter: Option<Option<KeyType>>,
    },
    /// `KEYS pattern`.
    Keys {
        /// The pattern.
        pattern: Bytes,
    },
    /// `DBSIZE`.
    DbSize,
    /// `BITOP op dest src…`.
    BitOp {
        /// The operation.
        op: bitmaps::Logic,
        /// The destination key.
        dest: Bytes,
        /// The source keys.
        sources: Vec<Bytes>,
    },
    /// A blocking command (BLPOP...) or a command that may take several rounds across ranges
    /// (LMOVE, LMPOP): [`crate::blocking`]. Where blocking is not allowed (in `EXEC`) it
    /// runs its non-blocking form.
    Block(crate::blocking::Blocked),
    /// `HSCAN key cursor [MATCH p] [COUNT n] [NOVALUES]`: the whole hash, cursor 0.
    HScan {
        /// The key.
        key: Bytes,
        /// MATCH pattern.
        pattern: Option<Bytes>,
        /// Whether to leave the values out.
        novalues: bool,
    },
    /// A set command on keys of several hash slots (`sets::cross`).
    Sets(SetOp),
    /// Sorted-set commands of several keys, and ZSCAN ([`zsets::ZAsync`]).
    ZSet(zsets::ZAsync),
    /// `SORT` / `SORT_RO` ([`sort`]).
    Sort(sort::SortCmd),
}

/// One entry of the command table.
#[derive(Debug, Clone, Copy)]
pub struct Spec {
    /// Lower-case name.
    pub name: &'static str,
    /// Redis arity: `n` exactly `n` arguments (name included), `-n` at least `n`.
    pub arity: i32,
    /// Flags as `COMMAND` reports them.
    pub flags: &'static [&'static str],
    /// First key position (0: none).
    pub first: i32,
    /// Last key position (-1: the last argument).
    pub last: i32,
    /// Step between keys.
    pub step: i32,
}

// Flag sets as Redis 7.0 reports them (tests/redis_crate.rs compares with redis-server).
const W: &[&str] = &["write", "denyoom", "fast"];
const WD: &[&str] = &["write", "denyoom"];
const WF: &[&str] = &["write", "fast"];
const R: &[&str] = &["readonly", "fast"];
const RS: &[&str] = &["readonly"];
const WS: &[&str] = &["write"];
const C: &[&str] = &["fast", "loading", "stale"];
const CL: &[&str] = &["loading", "stale"];
const F: &[&str] = &["fast"];
const NONE: &[&str] = &[];
const TXF: &[&str] = &["noscript", "loading", "stale", "fast", "allow_busy"];
const TXS: &[&str] = &["noscript", "loading", "stale", "skip_slowlog"];
const CN: &[&str] = &[
    "noscript",
    "loading",
    "stale",
    "fast",
    "no_auth",
    "allow_busy",
];

macro_rules! spec {
    ($name:literal, $arity:expr, $flags:expr, $first:expr, $last:expr, $step:expr) => {
        Spec {
            name: $name,
            arity: $arity,
            flags: $flags,
            first: $first,
            last: $last,
            step: $step,
        }
    };
}

// The collection commands keep their own tables, next to their code.
pub mod bitmaps;
pub mod dump;
pub mod functions;
pub mod hll;
pub mod lcs;
pub mod lists;
pub mod pubsub;
pub mod script_table;
pub mod scripting;
pub mod sets;
pub mod sort;
pub mod zsets;

/// Every command table: the core one here and one per collection type, each sorted by name.
pub static TABLES: &[&[Spec]] = &[
    TABLE,
    lists::SPECS,
    sets::SPECS,
    zsets::SPECS,
    bitmaps::SPECS,
    lcs::SPECS,
    dump::SPECS,
    hll::SPECS,
    sort::SPECS,
    pubsub::SPECS,
    scripting::SPECS,
    functions::SPECS,
];

/// Every supported command, in table order.
pub fn all_specs() -> impl Iterator<Item = &'static Spec> {
    TABLES.iter().flat_map(|t| t.iter())
}

/// The core commands (strings, keys, hashes, server, transactions), sorted by name.
pub static TABLE: &[Spec] = &[
    spec!("append", 3, W, 1, 1, 1),
    spec!("auth", -2, CN, 0, 0, 0),
    spec!("client", -2, NONE, 0, 0, 0),
    spec!("command", -1, CL, 0, 0, 0),
    spec!("config", -2, NONE, 0, 0, 0),
    spec!("copy", -3, WD, 1, 2, 1),
    spec!("dbsize", 1, R, 0, 0, 0),
    spec!("decr", 2, W, 1, 1, 1),
    spec!("decrby", 3, W, 1, 1, 1),
    spec!("del", -2, WS, 1, -1, 1),
    spec!("discard", 1, TXF, 0, 0, 0),
    spec!("echo", 2, C, 0, 0, 0),
    spec!("exec", 1, TXS, 0, 0, 0),
    spec!("exists", -2, R, 1, -1, 1),
    spec!("expire", -3, WF, 1, 1, 1),
    spec!("expireat", -3, WF, 1, 1, 1),
    spec!("expiretime", 2, R, 1, 1, 1),
    spec!("flushall", -1, WS, 0, 0, 0),
    spec!("flushdb", -1, WS, 0, 0, 0),
    spec!("function", -2, NONE, 0, 0, 0),
    spec!("get", 2, R, 1, 1, 1),
    spec!("getdel", 2, WF, 1, 1, 1),
    spec!("getex", -2, WF, 1, 1, 1),
    spec!("getrange", 4, RS, 1, 1, 1),
    spec!("getset", 3, W, 1, 1, 1),
    spec!("hdel", -3, WF, 1, 1, 1),
    spec!("hello", -1, CN, 0, 0, 0),
    spec!("hexists", 3, R, 1, 1, 1),
    spec!("hget", 3, R, 1, 1, 1),
    spec!("hgetall", 2, RS, 1, 1, 1),
    spec!("hincrby", 4, W, 1, 1, 1),
    spec!("hincrbyfloat", 4, W, 1, 1, 1),
    spec!("hkeys", 2, RS, 1, 1, 1),
    spec!("hlen", 2, R, 1, 1, 1),
    spec!("hmget", -3, R, 1, 1, 1),
    spec!("hmset", -4, W, 1, 1, 1),
    spec!("hrandfield", -2, RS, 1, 1, 1),
    spec!("hscan", -3, RS, 1, 1, 1),
    spec!("hset", -4, W, 1, 1, 1),
    spec!("hsetnx", 4, W, 1, 1, 1),
    spec!("hstrlen", 3, R, 1, 1, 1),
    spec!("hvals", 2, RS, 1, 1, 1),
    spec!("incr", 2, W, 1, 1, 1),
    spec!("incrby", 3, W, 1, 1, 1),
    spec!("incrbyfloat", 3, W, 1, 1, 1),
    spec!("info", -1, CL, 0, 0, 0),
    spec!("keys", 2, RS, 0, 0, 0),
    spec!("memory", -2, NONE, 0, 0, 0),
    spec!("mget", -2, R, 1, -1, 1),
    spec!("move", 3, WF, 1, 1, 1),
    spec!("mset", -3, WD, 1, -1, 2),
    spec!("msetnx", -3, WD, 1, -1, 2),
    spec!("multi", 1, TXF, 0, 0, 0),
    spec!("object", -2, NONE, 0, 0, 0),
    spec!("persist", 2, WF, 1, 1, 1),
    spec!("pexpire", -3, WF, 1, 1, 1),
    spec!("pexpireat", -3, WF, 1, 1, 1),
    spec!("pexpiretime", 2, R, 1, 1, 1),
    spec!("ping", -1, F, 0, 0, 0),
    spec!("psetex", 4, WD, 1, 1, 1),
    spec!("pttl", 2, R, 1, 1, 1),
    spec!("quit", -1, CN, 0, 0, 0),
    spec!("rename", 3, WS, 1, 2, 1),
    spec!("renamenx", 3, WF, 1, 2, 1),
    spec!("reset", 1, CN, 0, 0, 0),
    spec!("scan", -2, RS, 0, 0, 0),
    spec!("select", 2, C, 0, 0, 0),
    spec!("set", -3, WD, 1, 1, 1),
    spec!("setex", 4, WD, 1, 1, 1),
    spec!("setnx", 3, W, 1, 1, 1),
    spec!("setrange", 4, WD, 1, 1, 1),
    spec!("strlen", 2, R, 1, 1, 1),
    spec!("swapdb", 3, WF, 0, 0, 0),
    spec!("time", 1, C, 0, 0, 0),
    spec!("ttl", 2, R, 1, 1, 1),
    spec!("type", 2, R, 1, 1, 1),
    spec!("unlink", -2, WF, 1, -1, 1),
    spec!("unwatch", 1, TXF, 0, 0, 0),
    spec!("watch", -2, TXF, 1, -1, 1),
];

/// The table entry of a command name (any case).
pub fn lookup(name: &[u8]) -> Option<&'static Spec> {
    if name.len() > 16 {
        return None;
    }
    let mut buf = [0u8; 16];
    let lower = &mut buf[..name.len()];
    lower.copy_from_slice(name);
    lower.make_ascii_lowercase();
    TABLES.iter().find_map(|t| {
        t.binary_search_by(|s| s.name.as_bytes().cmp(lower))
            .ok()
            .map(|i| &t[i])
    })
}

/// `ERR unknown command '…', with args beginning with: '…' `, as Redis 7 words it.
pub fn unknown_command(args: &[Bytes]) -> Reply {
    let mut rest = String::new();
    for a in args.iter().skip(1) {
        if rest.len() >= 128 {
            break;
        }
        let room = 128 - rest.len();
        let s = String::from_utf8_lossy(a);
        let cut: String = s.chars().take(room).collect();
        rest.push_str(&format!("'{cut}' "));
    }
    let name = String::from_utf8_lossy(&args[0]);
    let name: String = name.chars().take(128).collect();
    Reply::err(format_args!(
        "unknown command '{name}', with args beginning with: {rest}"
    ))
}

/// Per-connection state the commands read and change.
#[derive(Debug)]
pub struct Session {
    /// `CLIENT ID`.
    pub id: u64,
    /// `CLIENT SETNAME`.
    pub name: Option<Bytes>,
    /// `CLIENT SETINFO LIB-NAME` / `LIB-VER`.
    pub lib_name: Option<Bytes>,
    /// `CLIENT SETINFO LIB-VER`.
    pub lib_ver: Option<Bytes>,
    /// RESP2 or RESP3 (`HELLO`).
    pub protocol: Protocol,
    /// Authenticated (always, when no password is set).
    pub authenticated: bool,
    /// The peer address.
    pub peer: String,
    /// When the connection was accepted.
    pub since: std::time::Instant,
    /// MULTI / WATCH state.
    pub tx: tx::Tx,
    /// The database (`SELECT`): every command's operations are moved to it ([`crate::db`]).
    pub db: Db,
    /// Pub/sub subscriptions and mailbox, from the first `(P|S)SUBSCRIBE` on.
    pub pubsub: Option<crate::pubsub::Subscriber>,
    /// `CLIENT REPLY`.
    pub reply_mode: ReplyMode,
}

/// `CLIENT REPLY ON|OFF|SKIP`: whether the replies of the next commands are sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ReplyMode {
    /// Replies are sent.
    #[default]
    On,
    /// No reply is sent until `CLIENT REPLY ON`.
    Off,
    /// `CLIENT REPLY SKIP` itself ran (no reply); the next command's reply is dropped too.
    SkipNext,
    /// This command's reply is dropped, then replies are sent again.
    Skip,
}

impl ReplyMode {
    /// Called once after each command: whether its reply is dropped.
    pub fn next_silent(&mut self) -> bool {
        match *self {
            ReplyMode::On => false,
            ReplyMode::Off => true,
            ReplyMode::SkipNext => {
                *self = ReplyMode::Skip;
                true
            }
            ReplyMode::Skip => {
                *self = ReplyMode::On;
                true
            }
        }
    }
}

/// Dispatches one command. Arity is checked before authentication, as Redis does.
pub fn dispatch(
    shared: &Shared,
    sess: &mut Session,
    args: Vec<Bytes>,
) -> (Option<&'static str>, Action) {
    dispatch_fed(shared, sess, args, true)
}

/// Dispatches a command queued by `MULTI` at `EXEC` (already shown to `MONITOR` clients when
/// it was queued, in the order Redis shows it).
pub fn dispatch_queued(
    shared: &Shared,
    sess: &mut Session,
    args: Vec<Bytes>,
) -> (Option<&'static str>, Action) {
    dispatch_fed(shared, sess, args, false)
}

fn dispatch_fed(
    shared: &Shared,
    sess: &mut Session,
    args: Vec<Bytes>,
    feed: bool,
) -> (Option<&'static str>, Action) {
    let Some(spec) = lookup(&args[0]) else {
        sess.tx.flag();
        return (None, Action::Reply(unknown_command(&args)));
    };
    let n = i32::try_from(args.len()).unwrap_or(i32::MAX);
    if (spec.arity > 0 && n != spec.arity) || (spec.arity < 0 && n < -spec.arity) {
        let reply = tx::rejected(sess, spec.name, util::arity(spec.name));
        return (Some(spec.name), Action::Reply(reply));
    }
    if !sess.authenticated && !matches!(spec.name, "auth" | "hello" | "quit") {
        let noauth = Reply::Error("NOAUTH Authentication required.".into());
        return (
            Some(spec.name),
            Action::Reply(tx::rejected(sess, spec.name, noauth)),
        );
    }
    if pubsub::in_pubsub_mode(sess) {
        if !pubsub::allowed_while_subscribed(spec.name) {
            let full = util::full_name(spec.name, &args);
            let reply = tx::rejected(sess, spec.name, pubsub::not_allowed(&full));
            return (Some(spec.name), Action::Reply(reply));
        }
        if spec.name == "ping" {
            return (Some(spec.name), Action::Reply(pubsub::ping(&args)));
        }
    }
    if feed && shared.pubsub.monitoring() && !spec.flags.contains(&"admin") {
        let line = crate::monitor::line(sess.db, &sess.peer, &args);
        shared.pubsub.feed_monitors(&line);
    }
    if let Some(queued) = tx::intercept(sess, spec.name, &args) {
        return (Some(spec.name), queued);
    }
    let max_bulk = u64::try_from(shared.cfg.limits.max_bulk_bytes).unwrap_or(0);
    let now = crate::shared::now_ms();
    let action = match data_command(spec.name, &args, now, max_bulk) {
        Some(action) => action,
        None => match spec.name {
            "multi" | "exec" | "discard" | "watch" | "unwatch" | "flushall" | "flushdb"
            | "msetnx" => tx::dispatch(sess, spec.name, &args),
            "function" | "fcall" | "fcall_ro" => {
                functions::dispatch(shared, sess, spec.name, &args)
            }
            "move" | "swapdb" | "select" | "reset" => dbs::dispatch(shared, sess, spec.name, &args),
            "object" => object::object(shared, &args),
            "memory" => object::memory(&args),
            name if pubsub::SPECS.iter().any(|s| s.name == name) => {
                Action::Reply(pubsub::dispatch(shared, sess, name, &args))
            }
            name if scripting::SPECS.iter().any(|s| s.name == name) => {
                scripting::dispatch(shared, sess, name, &args)
            }
            _ => server::dispatch(shared, sess, spec.name, &args),
        },
    };
    // Operations of database 0 moved to the connection's (read after the command: SELECT
    // and RESET change it, and answer at once).
    let action = match action {
        Action::Data { ops, finish } => Action::Data {
            ops: crate::db::scope(ops, sess.db),
            finish,
        },
        other => other,
    };
    (Some(spec.name), within_limits(shared, action))
}

/// The commands that are operations on keys alone — no session, no proxy state; what a
/// script's `redis.call` can run ([`crate::script_table`]). `None`: not one of them.
pub fn data_command(
    name: &'static str,
    args: &[Bytes],
    now_ms: u64,
    max_bulk: u64,
) -> Option<Action> {
    Some(match name {
        "get" | "set" | "setnx" | "setex" | "psetex" | "getset" | "getdel" | "getex" | "mget"
        | "mset" | "incr" | "decr" | "incrby" | "decrby" | "incrbyfloat" | "append" | "strlen"
        | "getrange" | "setrange" => strings::dispatch(name, args, now_ms),
        "del" | "unlink" | "exists" | "expire" | "pexpire" | "expireat" | "pexpireat" | "ttl"
        | "pttl" | "expiretime" | "pexpiretime" | "persist" | "type" | "scan" | "keys"
        | "dbsize" | "rename" | "renamenx" | "copy" => keys::dispatch(name, args, now_ms),
        "hset" | "hsetnx" | "hget" | "hmget" | "hmset" | "hdel" | "hexists" | "hlen"
        | "hgetall" | "hkeys" | "hvals" | "hincrby" | "hincrbyfloat" | "hstrlen" | "hscan"
        | "hrandfield" => hashes::dispatch(name, args),
        name if bitmaps::SPECS.iter().any(|s| s.name == name) => {
            bitmaps::dispatch(name, args, max_bulk)
        }
        "lcs" => lcs::dispatch(args, max_bulk),
        "sort" | "sort_ro" => sort::dispatch(name, args),
        "pfadd" | "pfcount" | "pfmerge" => hll::dispatch(name, args),
        "dump" | "restore" => dump::dispatch(name, args, now_ms),
        name if lists::SPECS.iter().any(|s| s.name == name) => lists::dispatch(name, args),
        name if sets::SPECS.iter().any(|s| s.name == name) => sets::dispatch(name, args),
        name if zsets::SPECS.iter().any(|s| s.name == name) => zsets::dispatch(name, args),
        _ => return None,
    })
}

/// Refuses a command whose keys, elements or values exceed `net::limits` before anything is
/// sent: the error stays with this command (the shards check again).
fn within_limits(shared: &Shared, action: Action) -> Action {
    let Action::Data { ops, .. } = &action else {
        return action;
    };
    let max_value = usize::try_from(shared.cfg.limits.max_bulk_bytes)
        .unwrap_or(net::limits::DEFAULT_MAX_VALUE_BYTES)
        .min(net::limits::DEFAULT_MAX_VALUE_BYTES);
    match ops
        .iter()
        .try_for_each(|(_, op)| net::limits::check_op(op, max_value))
    {
        Ok(()) => action,
        Err(e) => Action::Reply(util::rpc_error(&e.into())),
    }
}

/// An operation on one Redis key, routed by its metadata entry in database 0 (moved to the
/// connection's database by [`dispatch`] or [`crate::db::DbRouter`]).
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tables_are_sorted_disjoint_and_lookup_ignores_case() {
        for t in TABLES {
            assert!(t.windows(2).all(|w| w[0].name < w[1].name));
        }
        let mut names: Vec<_> = all_specs().map(|s| s.name).collect();
        names.sort_unstable();
        assert!(
            names.windows(2).all(|w| w[0] != w[1]),
            "a command in two tables"
        );
        for s in all_specs() {
            assert_eq!(lookup(s.name.as_bytes()).map(|l| l.name), Some(s.name));
        }
        assert_eq!(lookup(b"GeT").map(|s| s.name), Some("get"));
        assert!(lookup(b"nosuchcommand").is_none());
    }

    #[test]
    fn unknown_command_error_matches_redis() {
        let args = vec![Bytes::from_static(b"foo"), Bytes::from_static(b"a")];
        assert_eq!(
            unknown_command(&args),
            Reply::Error("ERR unknown command 'foo', with args beginning with: 'a' ".into())
        );
    }
}
