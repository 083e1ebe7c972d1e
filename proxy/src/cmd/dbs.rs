//! Databases: SELECT, RESET, MOVE, SWAPDB (the database is part of every internal key,
//! DESIGN §2; the connection's database is applied by [`crate::db`]).
//!
//! `MOVE key db` is one [`KvOp::KeyCopyDb`] in the key's range: every database of a slot is
//! in the same range unless a split fell between two of them, and then the range answers
//! `CROSSSLOT` and nothing changes (no two-step move that a crash could leave half done).
//! `SWAPDB` would need an indirection from database numbers to the stored ones that every
//! range switches at the same instant; the layout has none, so it is refused with an error
//! that says why (except a database with itself, which Redis also answers `OK`).

use bytes::Bytes;
use net::message::kv::{KvOp, OpResult};

use super::action::{Action, single};
use super::opts::{database, db_out_of_range};
use super::session::{ReplyMode, Session, Tx};
use super::util::{int, unexpected};
use crate::keyspace::Db;
use crate::resp::{Protocol, Reply};
use crate::shared::Shared;

/// Dispatches SELECT, RESET, MOVE, SWAPDB.
pub fn dispatch(shared: &Shared, sess: &mut Session, name: &str, args: &[Bytes]) -> Action {
    let reply = match name {
        "select" => match database(&args[1]) {
            Ok(db) => {
                sess.db = db;
                Reply::OK
            }
            Err(e) => e,
        },
        "reset" => {
            reset(shared, sess);
            Reply::Simple("RESET")
        }
        "move" => return move_key(sess, args),
        "swapdb" => swapdb(args),
        _ => Reply::err("internal error: not a database command"),
    };
    Action::Reply(reply)
}

/// `RESET`: the connection back to its state at connect (Redis's `clearClientConnectionState`):
/// no transaction or watches, database 0, RESP2, no name, authenticated only if no password
/// is required.
fn reset(shared: &Shared, sess: &mut Session) {
    sess.tx = Tx::default();
    sess.db = Db::ZERO;
    sess.pubsub = None;
    sess.tracking.disable();
    sess.reply_mode = ReplyMode::On;
    sess.protocol = Protocol::Resp2;
    sess.name = None;
    sess.authenticated = shared.acl.default_is_open();
    sess.user = shared.acl.session_user(b"default");
}

/// `MOVE key db`: 1 when moved, 0 when the key is absent here or present there.
fn move_key(sess: &Session, args: &[Bytes]) -> Action {
    let target = match database(&args[2]) {
        Ok(db) => db,
        Err(e) => return Action::Reply(e),
    };
    if target == sess.db {
        return Action::Reply(Reply::err("source and destination objects are the same"));
    }
    let key = &args[1];
    let op = KvOp::KeyCopyDb {
        key: key.clone(),
        dst: key.clone(),
        dst_db: target,
        replace: false,
        remove: true,
    };
    single(key, op, |r| match r {
        OpResult::Bool { value } => Reply::Int(i64::from(value)),
        other => unexpected(&other),
    })
}

/// `SWAPDB a b`: arguments checked as Redis does, then refused (see the module docs).
fn swapdb(args: &[Bytes]) -> Reply {
    let index = |arg: &[u8], which: &str| {
        int(arg).map_err(|_| Reply::err(format_args!("invalid {which} DB index")))
    };
    let (a, b) = match (index(&args[1], "first"), index(&args[2], "second")) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => return e,
    };
    match (Db::from_i64(a), Db::from_i64(b)) {
        (Some(a), Some(b)) if a == b => Reply::OK,
        (Some(_), Some(_)) => Reply::err(
            "SWAPDB is not supported: tierkv stores the database inside every key's internal \
             encoding (spread over all ranges), so swapping two databases would rewrite all \
             their keys instead of swapping two pointers",
        ),
        _ => db_out_of_range(),
    }
}
