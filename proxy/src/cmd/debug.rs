//! `DEBUG`: the subcommands that are harmless on a shared cluster — `SLEEP` (this connection
//! waits; Redis's whole server would), `OBJECT` (encoding and serialized length as Redis
//! reports them; tierkv keeps no LRU clock, so `lru` and `lru_seconds_idle` are 0), `LOG`
//! (a line in the proxy's log), `CHANGE-REPL-ID` (there is no Redis replication: nothing to
//! change) and `HELP`. Every other subcommand (crashes, reloads, internal encodings) is
//! refused with an error naming it.

use std::time::Duration;

use bytes::Bytes;
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use net::message::kv::{KvOp, KvResponse, OpResult};

use super::action::{Action, AsyncCommand, single};
use super::util::{help, unexpected};
use crate::db::DbRouter;
use crate::resp::Reply;
use crate::shared::Shared;

const HELP: &[&str] = &[
    "DEBUG <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "CHANGE-REPL-ID",
    "    Accepted; tierkv replicates with Raft, so there is no replication ID to change.",
    "LOG <message>",
    "    Write <message> to the proxy's log.",
    "OBJECT <key>",
    "    Show low level info about the <key> and associated value.",
    "SLEEP <seconds>",
    "    Stop this connection for <seconds> (a decimal number).",
    "HELP",
    "    Prints this help.",
];

/// Longest `DEBUG SLEEP` (a client cannot park a connection for longer).
const SLEEP_MAX: Duration = Duration::from_secs(3600);

/// `DEBUG subcommand [args]`.
pub fn debug(shared: &Shared, args: &[Bytes]) -> Action {
    let sub = String::from_utf8_lossy(&args[1]).to_ascii_lowercase();
    match (sub.as_str(), args.len()) {
        ("help", 2) => Action::Reply(help(HELP)),
        ("sleep", 3) => Action::rounds(Sleep(seconds(&args[2]))),
        ("object", 3) => object(shared, &args[2]),
        ("log", 3) => {
            tracing::warn!("DEBUG LOG: {}", String::from_utf8_lossy(&args[2]));
            Action::Reply(Reply::OK)
        }
        ("change-repl-id", 2) => Action::Reply(Reply::OK),
        _ => Action::Reply(Reply::err(format_args!(
            "unknown subcommand or wrong number of arguments for '{}'. Try DEBUG HELP.",
            String::from_utf8_lossy(&args[1])
        ))),
    }
}

/// Redis's `strtod` of `DEBUG SLEEP`'s argument: what is not a number is 0.
fn seconds(arg: &[u8]) -> Duration {
    let s = std::str::from_utf8(arg).unwrap_or("");
    let secs = s.trim().parse::<f64>().unwrap_or(0.0);
    if secs.is_finite() && secs > 0.0 {
        Duration::from_secs_f64(secs.min(SLEEP_MAX.as_secs_f64()))
    } else {
        Duration::ZERO
    }
}

#[derive(Debug)]
struct Sleep(Duration);

impl AsyncCommand for Sleep {
    fn run<'a>(self: Box<Self>, _router: &'a DbRouter<'_>) -> BoxFuture<'a, Reply> {
        async move {
            tokio::time::sleep(self.0).await;
            Reply::OK
        }
        .boxed()
    }
}

/// `DEBUG OBJECT key`: Redis's line, from the key's object info and its `DUMP` payload
/// (`serializedlength` is the payload without its type byte, RDB version and checksum).
fn object(shared: &Shared, key: &Bytes) -> Action {
    let rule = super::object::EncodingRule::now(shared);
    let mut ops = vec![KvOp::KeyObject {
        key: key.clone(),
        sample: rule.sample(),
    }];
    ops.extend(super::dump::read::value_ops(key));
    let multi = KvOp::Multi {
        watches: Vec::new(),
        ops,
    };
    single(key, multi, move |r| match r {
        OpResult::Multi { mut results } if !results.is_empty() => {
            let info = match results.remove(0) {
                KvResponse::Ok {
                    result: OpResult::Object { object },
                } => object,
                KvResponse::Ok { result } => return unexpected(&result),
                KvResponse::Err { error } => return super::util::rpc_error(&error),
            };
            let Some(encoding) = rule.name(&info) else {
                return Reply::err("no such key");
            };
            let len = match super::dump::read::value_of(results) {
                Ok(Some(obj)) => crate::rdb::encode(&obj).len().saturating_sub(11),
                Ok(None) => return Reply::err("no such key"),
                Err(r) => return r,
            };
            Reply::Status(format!(
                "Value at:0x0 refcount:1 encoding:{encoding} serializedlength:{len} lru:0 lru_seconds_idle:0"
            ))
        }
        other => unexpected(&other),
    })
}
