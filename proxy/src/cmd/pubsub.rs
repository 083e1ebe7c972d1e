//! Pub/sub commands: (P|S)SUBSCRIBE, (P|S)UNSUBSCRIBE, PUBLISH, SPUBLISH and PUBSUB, with
//! Redis 7's replies (one confirmation per channel, a push in RESP3) and its RESP2 rule that
//! a subscribed connection runs only pub/sub commands, PING, QUIT and RESET. The
//! subscriptions and delivery are [`crate::pubsub`].

use bytes::Bytes;

use super::action::Action;
use super::pubsub_cluster as cluster;
use super::session::Session;
use super::spec::{NONE, Spec, spec};
use crate::pubsub::Kind;
use crate::resp::{Protocol, Reply};
use crate::shared::Shared;

const SUB: &[&str] = &["pubsub", "noscript", "loading", "stale"];
const MONITOR: &[&str] = &["admin", "noscript", "loading", "stale"];
const PUBF: &[&str] = &["pubsub", "loading", "stale", "fast"];

/// The pub/sub commands, sorted by name.
pub static SPECS: &[Spec] = &[
    spec!("monitor", 1, MONITOR, 0, 0, 0),
    spec!("psubscribe", -2, SUB, 0, 0, 0),
    spec!("publish", 3, PUBF, 0, 0, 0),
    spec!("pubsub", -2, NONE, 0, 0, 0),
    spec!("punsubscribe", -1, SUB, 0, 0, 0),
    spec!("spublish", 3, PUBF, 1, 1, 1),
    spec!("ssubscribe", -2, SUB, 1, -1, 1),
    spec!("subscribe", -2, SUB, 0, 0, 0),
    spec!("sunsubscribe", -1, SUB, 1, -1, 1),
    spec!("unsubscribe", -1, SUB, 0, 0, 0),
];

/// Whether a RESP2 connection subscribed to something may run `name`.
pub fn allowed_while_subscribed(name: &str) -> bool {
    matches!(
        name,
        "ping"
            | "subscribe"
            | "ssubscribe"
            | "unsubscribe"
            | "sunsubscribe"
            | "psubscribe"
            | "punsubscribe"
            | "quit"
            | "reset"
    )
}

/// The error a subscribed RESP2 connection gets for any other command.
pub fn not_allowed(name: &str) -> Reply {
    Reply::err(format_args!(
        "Can't execute '{name}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET \
         are allowed in this context"
    ))
}

/// Whether the connection is in RESP2 pub/sub mode.
pub fn in_pubsub_mode(sess: &Session) -> bool {
    sess.protocol == Protocol::Resp2 && sess.pubsub.as_ref().is_some_and(|s| s.active())
}

/// `PING [msg]` in RESP2 pub/sub mode: `["pong", msg or ""]`.
pub fn ping(args: &[Bytes]) -> Reply {
    let msg = args.get(1).cloned().unwrap_or_default();
    Reply::Array(vec![
        Reply::Bulk(Bytes::from_static(b"pong")),
        Reply::Bulk(msg),
    ])
}

/// Runs pub/sub command `name` (`PUBLISH`, `SPUBLISH` and `PUBSUB` across the proxy mesh:
/// [`cluster`]).
pub fn dispatch(shared: &Shared, sess: &mut Session, name: &str, args: &[Bytes]) -> Action {
    match name {
        "publish" => cluster::publish(shared, &args[1], &args[2], false),
        "spublish" => cluster::publish(shared, &args[1], &args[2], true),
        "pubsub" => pubsub(shared, args),
        _ => Action::Reply(local(shared, sess, name, args)),
    }
}

fn local(shared: &Shared, sess: &mut Session, name: &str, args: &[Bytes]) -> Reply {
    match name {
        "subscribe" => subscribe(shared, sess, Kind::Channel, &args[1..]),
        "psubscribe" => subscribe(shared, sess, Kind::Pattern, &args[1..]),
        "ssubscribe" => subscribe(shared, sess, Kind::Shard, &args[1..]),
        "unsubscribe" => unsubscribe(sess, Kind::Channel, &args[1..]),
        "punsubscribe" => unsubscribe(sess, Kind::Pattern, &args[1..]),
        "sunsubscribe" => unsubscribe(sess, Kind::Shard, &args[1..]),
        "monitor" => {
            sess.pubsub
                .get_or_insert_with(|| shared.pubsub.subscriber(sess.id))
                .monitor();
            Reply::OK
        }
        _ => Reply::err(format_args!("unknown pub/sub command '{name}'")),
    }
}

fn count(n: usize) -> Reply {
    Reply::Int(i64::try_from(n).unwrap_or(i64::MAX))
}

fn confirmation(word: &'static str, name: Reply, n: usize) -> Reply {
    Reply::Push(vec![
        Reply::Bulk(Bytes::from_static(word.as_bytes())),
        name,
        count(n),
    ])
}

fn subscribe(shared: &Shared, sess: &mut Session, kind: Kind, names: &[Bytes]) -> Reply {
    let sub = sess
        .pubsub
        .get_or_insert_with(|| shared.pubsub.subscriber(sess.id));
    let frames = names
        .iter()
        .map(|n| {
            let c = sub.subscribe(kind, n);
            confirmation(kind.subscribe_word(), Reply::Bulk(n.clone()), c)
        })
        .collect();
    Reply::Seq(frames)
}

fn unsubscribe(sess: &mut Session, kind: Kind, names: &[Bytes]) -> Reply {
    let word = kind.unsubscribe_word();
    let Some(sub) = sess.pubsub.as_mut() else {
        // Never subscribed: one confirmation per name, or one with no name.
        if names.is_empty() {
            return confirmation(word, Reply::Nil, 0);
        }
        let frames = names
            .iter()
            .map(|n| confirmation(word, Reply::Bulk(n.clone()), 0))
            .collect();
        return Reply::Seq(frames);
    };
    let names = if names.is_empty() {
        sub.names(kind)
    } else {
        names.to_vec()
    };
    if names.is_empty() {
        return confirmation(word, Reply::Nil, sub.count(kind));
    }
    let frames = names
        .into_iter()
        .map(|n| {
            let c = sub.unsubscribe(kind, &n);
            confirmation(word, Reply::Bulk(n), c)
        })
        .collect();
    Reply::Seq(frames)
}

const HELP: &[&str] = &[
    "PUBSUB <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "CHANNELS [<pattern>]",
    "    Return the currently active channels matching a <pattern> (default: '*').",
    "NUMPAT",
    "    Return number of subscriptions to patterns.",
    "NUMSUB [<channel> ...]",
    "    Return the number of subscribers for the specified channels, excluding",
    "    pattern subscriptions(default: no channels).",
    "SHARDCHANNELS [<pattern>]",
    "    Return the currently active shard level channels matching a <pattern> (default: '*').",
    "SHARDNUMSUB [<shardchannel> ...]",
    "    Return the number of subscribers for the specified shard level channel(s)",
    "HELP",
    "    Prints this help.",
];

/// `PUBSUB CHANNELS|NUMSUB|NUMPAT|SHARDCHANNELS|SHARDNUMSUB|HELP`, cluster-wide.
fn pubsub(shared: &Shared, args: &[Bytes]) -> Action {
    let sub = String::from_utf8_lossy(&args[1]).to_ascii_lowercase();
    let n = args.len();
    let kind = if sub.starts_with("shard") {
        Kind::Shard
    } else {
        Kind::Channel
    };
    match sub.as_str() {
        "channels" | "shardchannels" if n <= 3 => cluster::channels(shared, kind, args.get(2)),
        "numsub" | "shardnumsub" => cluster::numsub(shared, kind, &args[2..]),
        "numpat" if n == 2 => cluster::numpat(shared),
        _ => Action::Reply(pubsub_error(&sub, args)),
    }
}

/// `PUBSUB HELP` and the errors of `PUBSUB`.
fn pubsub_error(sub: &str, args: &[Bytes]) -> Reply {
    let n = args.len();
    match sub {
        "help" if n == 2 => Reply::Array(HELP.iter().map(|l| Reply::Simple(l)).collect()),
        "help" | "numpat" => super::util::arity(&format!("pubsub|{sub}")),
        "channels" | "shardchannels" => Reply::err(format_args!(
            "unknown subcommand or wrong number of arguments for '{}'. Try PUBSUB HELP.",
            String::from_utf8_lossy(&args[1])
        )),
        _ => Reply::err(format_args!(
            "unknown subcommand '{}'. Try PUBSUB HELP.",
            String::from_utf8_lossy(&args[1])
        )),
    }
}
