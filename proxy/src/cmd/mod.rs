//! Redis commands: the translation of each command into `net` operations plus a function
//! that turns their results into the Redis reply, and the command table (arity, flags, key
//! positions — also what `COMMAND` answers).
//!
//! A command becomes an [`Action`]: an immediate reply (connection and server commands), a
//! set of operations run in the connection's pipeline batch ([`Action::Data`]), a
//! multi-round command run alone at its place in the pipeline ([`Action::Async`]: SCAN,
//! KEYS, DBSIZE, HSCAN, BITOP, SORT...), a blocking command ([`Action::Block`]), or a command
//! run alone with the session ([`Action::Tx`]: EXEC, WATCH, FLUSHALL, run by
//! [`crate::exec`]).
//!
//! # Layers
//!
//! Imports point down only: a module imports modules of the layers below it, never one of
//! its own layer (but its own children) or above. From the top:
//!
//! 1. `mod.rs` (this file): [`dispatch`] — the command table lookup, arity, authentication,
//!    pub/sub mode, MULTI queuing, MONITOR, limits — handing each command down to its
//!    family. It re-exports what the rest of the crate uses.
//! 2. `server` (CLIENT, COMMAND, INFO, CONFIG...), and `functions` (FUNCTION, FCALL) above
//!    `scripting` (EVAL, SCRIPT) above `script_table` (what a script's `redis.call` runs).
//! 3. `data` (the data commands: what a pipeline batch and a script run) and `table` (every
//!    command's [`Spec`], [`lookup`]).
//! 4. The command families, one module (and its children) per kind of command: `strings`,
//!    `keys`, `hashes`, `lists`, `sets` (+ `sets/cross`), `zsets` (+ `zsets/…`), `geo` (+
//!    `geo/hash`, the geohash arithmetic), `bitmaps`,
//!    `hll`, `lcs`, `sort`, `dump`, `object`, `dbs`, `tx` (MULTI state), `pubsub`. A family
//!    imports no other family.
//! 5. `scan`: the multi-round SCAN, KEYS, DBSIZE, HSCAN, and the MATCH [`scan::Matcher`]
//!    (`keys`, `hashes` and `zsets` build or use them).
//! 6. Leaves, which import only one another (`action` → `tx_cmd`, `util`; `opts` →
//!    `util`): `action` ([`Action`], the [`AsyncCommand`] trait each family implements for
//!    its multi-round commands, [`keyed`], [`single`]), `session` ([`Session`], [`Tx`],
//!    [`ReplyMode`]), `spec` ([`Spec`], the flag sets, `spec!`), `opts` (arguments several
//!    families parse alike), `tx_cmd` ([`TxCmd`]) and `util` (reply and number helpers).
//!
//! Around `cmd`: the connection loop (`crate::server`) and [`crate::exec`] (EXEC and the
//! other commands run alone, which dispatch queued commands) stand above it; the rest of the
//! crate it uses (`db`, `route`, `resp`, `blocking`, `glob`, `keyspace`, `shared`...) stands
//! below and imports nothing of `cmd`.
//!
//! A GET or a SET costs one table lookup, one match in [`data_command`] and its family, and
//! the boxed `finish` of its `Action::Data` — no trait object: only multi-round commands are
//! boxed as [`AsyncCommand`]s.
// perf-critical: every command is dispatched here.

pub mod acl;
pub mod action;
pub mod bitmaps;
pub mod data;
pub mod dbs;
pub mod debug;
pub mod dump;
pub mod functions;
pub mod geo;
pub mod hashes;
pub mod hll;
pub mod keys;
pub mod lcs;
pub mod lists;
pub mod object;
pub mod opts;
pub mod pause;
pub mod pubsub;
pub mod pubsub_cluster;
pub mod scan;
pub mod script_table;
pub mod scripting;
pub mod server;
pub mod session;
pub mod sets;
pub mod sort;
pub mod spec;
pub mod strings;
pub mod table;
pub mod tracking;
pub mod tx;
pub mod tx_cmd;
pub mod util;
pub mod zsets;

use bytes::Bytes;

pub use action::{Action, AsyncCommand, Finish, keyed, single};
pub use data::data_command;
pub use session::{ReplyMode, Session, Tx};
pub use spec::Spec;
pub use table::{TABLE, TABLES, all_specs, lookup, unknown_command};
pub use tx_cmd::TxCmd;

use crate::resp::Reply;
use crate::shared::Shared;

/// Dispatches one command. Arity is checked before authentication, as Redis does.
pub fn dispatch(
    shared: &Shared,
    sess: &mut Session,
    args: &[Bytes],
) -> (Option<&'static str>, Action) {
    dispatch_fed(shared, sess, args, true)
}

/// Dispatches a command queued by `MULTI` at `EXEC` (already shown to `MONITOR` clients when
/// it was queued, in the order Redis shows it).
pub fn dispatch_queued(
    shared: &Shared,
    sess: &mut Session,
    args: &[Bytes],
) -> (Option<&'static str>, Action) {
    dispatch_fed(shared, sess, args, false)
}

fn dispatch_fed(
    shared: &Shared,
    sess: &mut Session,
    args: &[Bytes],
    feed: bool,
) -> (Option<&'static str>, Action) {
    let Some(spec) = lookup(&args[0]) else {
        sess.tx.flag();
        return (None, Action::Reply(unknown_command(args)));
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
    if !spec.flags.contains(&"no_auth")
        && let Err(refusal) = acl::permitted(shared, sess, spec.name, args)
    {
        let action = match refusal {
            Some(reply) => Action::Reply(tx::rejected(sess, spec.name, reply)),
            // The user was deleted: its connections close, as Redis's do.
            None => Action::Close(Reply::Seq(Vec::new())),
        };
        return (Some(spec.name), action);
    }
    if pubsub::in_pubsub_mode(sess) {
        if !pubsub::allowed_while_subscribed(spec.name) {
            let full = util::full_name(spec.name, args);
            let reply = tx::rejected(sess, spec.name, pubsub::not_allowed(&full));
            return (Some(spec.name), Action::Reply(reply));
        }
        if spec.name == "ping" {
            return (Some(spec.name), Action::Reply(pubsub::ping(args)));
        }
    }
    if feed && shared.pubsub.monitoring() && !spec.flags.contains(&"admin") {
        let line = crate::monitor::line(sess.db, &sess.peer, args);
        shared.pubsub.feed_monitors(&line);
    }
    if sess.tx.active() && spec.flags.contains(&"no_multi") {
        let reply = Reply::err("Command not allowed inside a transaction");
        return (
            Some(spec.name),
            Action::Reply(tx::rejected(sess, spec.name, reply)),
        );
    }
    // As redis-server while it loads: only commands flagged `loading` run (`INFO`, `AUTH`,
    // `CLIENT`, ...); refused inside `MULTI`, the error aborts the transaction.
    if shared.loading() && !spec.flags.contains(&"loading") {
        let reply = Reply::Error(crate::shared::LOADING_ERROR.into());
        return (
            Some(spec.name),
            Action::Reply(tx::rejected(sess, spec.name, reply)),
        );
    }
    let max_bulk = u64::try_from(shared.cfg.limits.max_bulk_bytes).unwrap_or(0);
    let now = crate::shared::now_ms();
    // Inside `MULTI`, a command refused for a busy script flags the transaction, and `EXEC`
    // is discarded with `EXECABORT` (Redis's rejection of a command while busy).
    if sess.tx.active()
        && let Some(kind) = busy_in_tx(shared, sess, spec, args, now, max_bulk)
    {
        let reply = tx::rejected(sess, spec.name, scripting::busy_error(kind));
        return (Some(spec.name), Action::Reply(reply));
    }
    if let Some(queued) = tx::intercept(sess, spec.name, args) {
        return (Some(spec.name), queued);
    }
    let translated = data_command(spec.name, args, now, max_bulk);
    if translated.is_none()
        && let Some(kind) = busy_now(shared, spec, args)
    {
        return (Some(spec.name), Action::Reply(scripting::busy_error(kind)));
    }
    let action = match translated {
        Some(action) => action,
        None => match spec.name {
            "multi" | "exec" | "discard" | "watch" | "unwatch" | "flushall" | "flushdb"
            | "msetnx" => tx::dispatch(sess, spec.name, args),
            "function" | "fcall" | "fcall_ro" => functions::dispatch(shared, sess, spec.name, args),
            "move" | "swapdb" | "select" | "reset" => dbs::dispatch(shared, sess, spec.name, args),
            "object" => object::object(shared, args),
            "debug" => debug::debug(shared, args),
            "acl" => Action::Reply(acl::acl(shared, sess, args)),
            "migrate" => dump::migrate::dispatch(&shared.migrate_sockets, args),
            "memory" => object::memory(args),
            name if pubsub::SPECS.iter().any(|s| s.name == name) => {
                pubsub::dispatch(shared, sess, name, args)
            }
            name if table::SCRIPTING.iter().any(|s| s.name == name) => {
                scripting::dispatch(shared, sess, name, args)
            }
            _ => server::dispatch(shared, sess, spec.name, args),
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

/// While a script in this process has run longer than `busy-reply-threshold`, the kind of
/// that script, for a command that is not a data command (those are refused only for the
/// script's range, `server`) and that Redis does not allow while busy (`allow_busy`,
/// `SCRIPT KILL`, `FUNCTION KILL`, `SHUTDOWN`): `docs/scripting.md`, "Long scripts".
fn busy_now(shared: &Shared, spec: &Spec, args: &[Bytes]) -> Option<script::running::Kind> {
    if !script::running::any() || spec.flags.contains(&"allow_busy") {
        return None;
    }
    let kill = |sub: &str| {
        args.get(1)
            .is_some_and(|a| a.eq_ignore_ascii_case(sub.as_bytes()))
    };
    let allowed = match spec.name {
        "script" => kill("kill"),
        "function" => kill("kill") || kill("stats"),
        "shutdown" => true,
        _ => false,
    };
    if allowed {
        return None;
    }
    script::running::busy_anywhere(shared.settings.busy_reply_threshold())
}

/// [`busy_now`] inside a transaction, where a data command is not sent and refused by the
/// connection (`server`) but queued: the kind of script keeping one of its keys' ranges busy
/// (or any range, for a command without keys).
fn busy_in_tx(
    shared: &Shared,
    sess: &Session,
    spec: &Spec,
    args: &[Bytes],
    now: u64,
    max_bulk: u64,
) -> Option<script::running::Kind> {
    if !script::running::any() {
        return None;
    }
    match data_command(spec.name, args, now, max_bulk) {
        Some(Action::Data { ops, .. }) => {
            let threshold = shared.settings.busy_reply_threshold();
            crate::db::scope(ops, sess.db).iter().find_map(|(key, _)| {
                let range = shared.router.cached_range_id(key)?;
                script::running::busy(range, threshold)
            })
        }
        Some(_) => None,
        None => busy_now(shared, spec, args),
    }
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
        .try_for_each(|(_, op)| op.check_limits(max_value))
    {
        Ok(()) => action,
        Err(e) => Action::Reply(util::rpc_error(&e.into())),
    }
}
