//! Transactions and flushes, as commands: MULTI / EXEC / DISCARD / WATCH / UNWATCH,
//! FLUSHALL / FLUSHDB, MSETNX.
//!
//! `MULTI` queues commands in the session (`+QUEUED`); an unknown command or a wrong arity
//! while queuing makes `EXEC` answer `EXECABORT`, as Redis does. This module changes the
//! session's transaction state ([`Tx`]) and turns the commands that need the router into a
//! [`TxCmd`]; [`crate::exec`] runs those (how EXEC, WATCH, MSETNX and the flushes work is
//! told there). EXEC translates its queued commands with the dispatcher, which stands above
//! this module: so the running is not here.

use bytes::Bytes;

use super::action::Action;
use super::session::{Session, Tx};
use super::util::{arity, is, syntax};
use crate::resp::Reply;

/// A command refused before it ran (arity, auth): flags the transaction, and for `EXEC`
/// discards it with Redis's `EXECABORT … because of: <error>` (in a transaction or not).
pub fn rejected(sess: &mut Session, name: &str, reply: Reply) -> Reply {
    if name != "exec" {
        sess.tx.flag();
        return reply;
    }
    sess.tx = Tx::default();
    let Reply::Error(text) = reply else {
        return reply;
    };
    let why = text.strip_prefix("ERR ").unwrap_or(&text);
    Reply::Error(format!("EXECABORT Transaction discarded because of: {why}"))
}

pub use super::tx_cmd::TxCmd;

/// Inside `MULTI`, queues every command but the transaction's own (`None`: not queued).
pub fn intercept(sess: &mut Session, name: &str, args: &[Bytes]) -> Option<Action> {
    if !sess.tx.active() || matches!(name, "exec" | "discard" | "multi" | "watch" | "quit") {
        return None;
    }
    sess.tx.queue(args.to_vec());
    Some(Action::Reply(Reply::Simple("QUEUED")))
}

/// Dispatches MULTI, EXEC, DISCARD, WATCH, UNWATCH, FLUSHALL, FLUSHDB.
pub fn dispatch(sess: &mut Session, name: &str, args: &[Bytes]) -> Action {
    let reply = match name {
        "multi" if sess.tx.active() => Reply::err("MULTI calls can not be nested"),
        "multi" => {
            sess.tx.begin();
            Reply::OK
        }
        "exec" if !sess.tx.active() => Reply::err("EXEC without MULTI"),
        "exec" if sess.tx.dirty() => {
            discard(sess);
            Reply::Error("EXECABORT Transaction discarded because of previous errors.".into())
        }
        "exec" => return Action::Tx(TxCmd::Exec),
        "discard" if !sess.tx.active() => Reply::err("DISCARD without MULTI"),
        "discard" => {
            discard(sess);
            Reply::OK
        }
        "watch" if sess.tx.active() => Reply::err("WATCH inside MULTI is not allowed"),
        "watch" => return Action::Tx(TxCmd::Watch(args[1..].to_vec())),
        "unwatch" => {
            sess.tx.unwatch();
            Reply::OK
        }
        "flushall" | "flushdb" => match args.get(1..) {
            Some([]) => {
                return Action::Tx(TxCmd::Flush {
                    all: name == "flushall",
                });
            }
            Some([mode]) if is(mode, "sync") || is(mode, "async") => {
                return Action::Tx(TxCmd::Flush {
                    all: name == "flushall",
                });
            }
            _ => syntax(),
        },
        "msetnx" if args.len() % 2 == 0 => arity("msetnx"),
        "msetnx" => {
            let pairs = args[1..]
                .chunks_exact(2)
                .map(|kv| (kv[0].clone(), kv[1].clone()))
                .collect();
            return Action::Tx(TxCmd::MsetNx(pairs));
        }
        _ => Reply::err("internal error: not a transaction command"),
    };
    Action::Reply(reply)
}

fn discard(sess: &mut Session) {
    sess.tx = Tx::default();
}
