//! Connection and server commands, answered by the proxy itself: PING, ECHO, QUIT, SELECT,
//! AUTH, HELLO, CLIENT, COMMAND, CONFIG, INFO, TIME.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use bytes::Bytes;

use super::action::Action;
use super::session::{ReplyMode, Session};
use super::spec::Spec;
use super::table::{all_specs, lookup};
use super::util::{arity, int, is, syntax, unknown_sub};
use crate::clients::Filter;
use crate::resp::{Protocol, Reply};
use crate::shared::Shared;

/// The Redis version the proxy reports (clients gate features on it).
pub const REDIS_VERSION: &str = "7.0.15";

/// Dispatches a connection or server command (arity and auth already checked).
pub fn dispatch(shared: &Shared, sess: &mut Session, name: &'static str, args: &[Bytes]) -> Action {
    let reply = match name {
        "ping" => match args.len() {
            1 => Reply::Simple("PONG"),
            2 => Reply::Bulk(args[1].clone()),
            _ => arity("ping"),
        },
        "echo" => Reply::Bulk(args[1].clone()),
        "quit" => return Action::Close(Reply::OK),
        "shutdown" => return shutdown(shared, sess, args),
        "auth" => auth(shared, sess, args),
        "hello" => hello(shared, sess, args),
        "client" => client(shared, sess, args),
        "command" => command(args),
        "config" => return config(shared, args),
        "info" => return info_action(shared, args),
        "slowlog" => crate::slowlog::command(&shared.slowlog, args),
        "latency" => {
            let slower_than = shared.slowlog.slower_than_us();
            crate::latency::command(&shared.latency, &shared.metrics, slower_than, args)
        }
        // Every acknowledged write is already durable in the Raft logs of a quorum of
        // replicas: a save has nothing left to write, so it succeeds at once.
        "save" => {
            shared.mark_saved();
            Reply::OK
        }
        "bgsave" => bgsave(shared, args),
        // The proxy is the whole cluster as one standalone server (clients need no cluster
        // mode): every `CLUSTER` subcommand answers as a standalone redis-server's does.
        "cluster" | "readonly" | "readwrite" | "asking" => {
            Reply::err("This instance has cluster support disabled")
        }
        // Clients see one writable endpoint: a master without Redis replicas (ranges are
        // replicated by Raft inside the cluster).
        "role" => Reply::Array(vec![
            Reply::bulk(b"master"),
            Reply::Int(0),
            Reply::Array(Vec::new()),
        ]),
        "wait" => wait(shared, args),
        "lastsave" => Reply::Int(shared.last_save() as i64),
        "time" => {
            let us = crate::shared::now_us();
            Reply::Array(vec![
                Reply::Bulk(Bytes::from((us / 1_000_000).to_string())),
                Reply::Bulk(Bytes::from((us % 1_000_000).to_string())),
            ])
        }
        _ => Reply::err("internal error: not a server command"),
    };
    Action::Reply(reply)
}

/// `WAIT numreplicas timeout`: every write acknowledged to this connection is already on a
/// majority of its range's replicas (Raft commits before the reply), so the answer comes at
/// once: the replicas besides the leader that hold it for certain, the fewest over the
/// ranges (`⌊voters / 2⌋`; 0 with one replica per range, as in `tierkv dev`).
fn wait(shared: &Shared, args: &[Bytes]) -> Reply {
    let (Some(_), Some(timeout)) = (
        super::util::parse_i64(&args[1]),
        super::util::parse_i64(&args[2]),
    ) else {
        return Reply::err("value is not an integer or out of range");
    };
    if timeout < 0 {
        return Reply::err("timeout is negative");
    }
    let certain = shared
        .router
        .ranges()
        .iter()
        .map(|d| {
            let voters = d
                .replicas
                .iter()
                .filter(|r| matches!(r.role, net::message::ReplicaRole::Voter {}))
                .count();
            voters / 2
        })
        .min()
        .unwrap_or(0);
    Reply::Int(certain as i64)
}

/// `BGSAVE [SCHEDULE]`: as `SAVE`, with Redis's reply for a background save started (it is
/// complete already: `rdb_bgsave_in_progress` stays 0 and `LASTSAVE` moves).
fn bgsave(shared: &Shared, args: &[Bytes]) -> Reply {
    match args.get(1) {
        None => {}
        Some(a) if is(a, "schedule") && args.len() == 2 => {}
        Some(_) => return syntax(),
    }
    shared.mark_saved();
    Reply::Simple("Background saving started")
}

/// `SHUTDOWN [NOSAVE|SAVE] [NOW] [FORCE] [ABORT]`: stops the proxy and the process it runs in
/// (all of `tierkv dev`, cleanly), closing the connection without a reply as Redis does.
/// Every acknowledged write is already durable in the Raft logs, so `SAVE` and `NOSAVE` stop
/// alike and lose nothing; a shutdown is immediate, so `ABORT` finds none in progress.
fn shutdown(shared: &Shared, sess: &Session, args: &[Bytes]) -> Action {
    let (mut save, mut nosave, mut abort, mut other) = (false, false, false, false);
    for a in &args[1..] {
        match a.to_ascii_lowercase().as_slice() {
            b"save" => save = true,
            b"nosave" => nosave = true,
            b"abort" => abort = true,
            b"now" | b"force" => other = true,
            _ => return Action::Reply(syntax()),
        }
    }
    if (abort && (save || nosave || other)) || (save && nosave) {
        return Action::Reply(syntax());
    }
    if abort {
        return Action::Reply(Reply::err("No shutdown in progress."));
    }
    tracing::warn!(peer = %sess.peer, "SHUTDOWN requested by a client; stopping");
    shared.request_shutdown();
    Action::Close(Reply::Seq(Vec::new()))
}

/// Authenticates the connection as `user` if `pass` is one of its passwords (or it has
/// `nopass`); a failure goes to `ACL LOG`.
fn check_password(shared: &Shared, sess: &mut Session, user: &[u8], pass: &[u8]) -> bool {
    match shared.acl.authenticate(user, pass) {
        Some(u) => {
            sess.authenticated = true;
            sess.user = Some(u);
            if let Some(me) = shared.client_table.get(sess.id) {
                me.names().user = Bytes::copy_from_slice(user);
            }
            true
        }
        None => {
            shared.acl.log(crate::acl::log::Entry {
                reason: crate::acl::log::Reason::Auth,
                context: crate::acl::log::Context::Toplevel,
                object: Bytes::from_static(b"AUTH"),
                username: Bytes::copy_from_slice(user),
                client_info: client_info_line(shared, sess),
            });
            false
        }
    }
}

/// The connection's `CLIENT INFO` line (for `ACL LOG`).
pub fn client_info_line(shared: &Shared, sess: &Session) -> String {
    shared
        .client_table
        .get(sess.id)
        .map(|me| me.line(None))
        .unwrap_or_default()
}

fn wrongpass() -> Reply {
    Reply::Error("WRONGPASS invalid username-password pair or user is disabled.".into())
}

fn auth(shared: &Shared, sess: &mut Session, args: &[Bytes]) -> Reply {
    let (user, pass): (&[u8], &[u8]) = match args.len() {
        2 => {
            if shared.acl.get(b"default").is_some_and(|u| u.nopass()) {
                return Reply::err(
                    "AUTH <password> called without any password configured for the default \
                     user. Are you sure your configuration is correct?",
                );
            }
            (b"default", &args[1])
        }
        3 => (&args[1], &args[2]),
        _ => return syntax(),
    };
    if check_password(shared, sess, user, pass) {
        Reply::OK
    } else {
        wrongpass()
    }
}

fn hello(shared: &Shared, sess: &mut Session, args: &[Bytes]) -> Reply {
    let mut proto = sess.protocol;
    if let Some(v) = args.get(1) {
        match int(v) {
            Ok(2) => proto = Protocol::Resp2,
            Ok(3) => proto = Protocol::Resp3,
            Ok(_) => return Reply::Error("NOPROTO unsupported protocol version".into()),
            Err(_) => return Reply::err("Protocol version is not an integer or out of range"),
        }
    }
    let mut setname = None;
    let mut i = 2;
    while i < args.len() {
        let more = args.len() - i - 1;
        if is(&args[i], "auth") && more >= 2 {
            if !check_password(shared, sess, &args[i + 1], &args[i + 2]) {
                return wrongpass();
            }
            i += 3;
        } else if is(&args[i], "setname") && more >= 1 {
            if !valid_name(&args[i + 1]) {
                return bad_name();
            }
            setname = Some(args[i + 1].clone());
            i += 2;
        } else {
            return Reply::err(format_args!(
                "Syntax error in HELLO option '{}'",
                String::from_utf8_lossy(&args[i])
            ));
        }
    }
    if !sess.authenticated {
        return Reply::Error(
            "NOAUTH HELLO must be called with the client already authenticated, otherwise the \
             HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and \
             select the RESP protocol version at the same time"
                .into(),
        );
    }
    if let Some(n) = setname {
        sess.name = (!n.is_empty()).then_some(n);
    }
    sess.protocol = proto;
    // A RESP3 connection receives pushes (tracking invalidations redirected to it) through
    // its mailbox.
    if proto == Protocol::Resp3 && sess.pubsub.is_none() {
        sess.pubsub = Some(shared.pubsub.subscriber(sess.id));
    }
    let s = |t: &'static str| Reply::Bulk(Bytes::from_static(t.as_bytes()));
    Reply::Map(vec![
        (s("server"), s("redis")),
        (s("version"), s(REDIS_VERSION)),
        (
            s("proto"),
            Reply::Int(if proto == Protocol::Resp3 { 3 } else { 2 }),
        ),
        (
            s("id"),
            Reply::Int(i64::try_from(sess.id).unwrap_or(i64::MAX)),
        ),
        (s("mode"), s("standalone")),
        (s("role"), s("master")),
        (s("modules"), Reply::Array(Vec::new())),
    ])
}

fn valid_name(n: &[u8]) -> bool {
    n.iter().all(|&c| (b'!'..=b'~').contains(&c))
}

fn bad_name() -> Reply {
    Reply::err("Client names cannot contain spaces, newlines or special characters.")
}

/// The `CLIENT LIST` / `CLIENT INFO` line of the calling connection: its table entry, with
/// what this batch changed (name, library) and `cmd` the command running.
fn client_line(shared: &Shared, sess: &Session, args: &[Bytes]) -> String {
    let cmd = super::util::full_name("client", args);
    match shared.client_table.get(sess.id) {
        Some(me) => {
            me.running(request_len(args));
            {
                let mut n = me.names();
                n.name.clone_from(&sess.name);
                n.lib_name.clone_from(&sess.lib_name);
                n.lib_ver.clone_from(&sess.lib_ver);
            }
            format!("{}\n", me.line(Some(&cmd)))
        }
        None => String::new(),
    }
}

/// The bytes of `args` as a multibulk request.
fn request_len(args: &[Bytes]) -> usize {
    let digits = |n: usize| n.to_string().len();
    let items: usize = args
        .iter()
        .map(|a| 1 + digits(a.len()) + 2 + a.len() + 2)
        .sum();
    1 + digits(args.len()) + 2 + items
}

/// `CLIENT LIST [TYPE normal|master|replica|pubsub] [ID id…]`.
fn client_list(shared: &Shared, sess: &Session, all: &[Bytes]) -> Reply {
    let args = &all[2..];
    let mut filter = Filter::default();
    let mut i = 0;
    while i < args.len() {
        if is(&args[i], "type") && i + 1 < args.len() {
            match client_type(&args[i + 1]) {
                Ok(f) => {
                    filter.pubsub = f.pubsub;
                    filter.ids = f.ids.or(filter.ids);
                }
                Err(r) => return r,
            }
            i += 2;
        } else if is(&args[i], "id") && i + 1 < args.len() {
            let mut ids = Vec::new();
            for a in &args[i + 1..] {
                match super::util::int(a) {
                    Ok(id) if id > 0 => ids.push(id.unsigned_abs()),
                    Ok(_) => {}
                    Err(_) => return Reply::err("Invalid client ID"),
                }
            }
            filter.ids = Some(ids);
            i = args.len();
        } else {
            return Reply::err("syntax error");
        }
    }
    let mut out = String::new();
    for c in shared.client_table.matching(&filter) {
        if c.id == sess.id {
            out.push_str(&client_line(shared, sess, all));
        } else {
            out.push_str(&c.line(None));
            out.push('\n');
        }
    }
    Reply::Verbatim(Bytes::from(out))
}

/// A `TYPE` argument: `pubsub`, `normal`, or a replica/master type (no such client connects
/// to a proxy: it matches no one).
fn client_type(t: &[u8]) -> Result<Filter, Reply> {
    let t = String::from_utf8_lossy(t).to_ascii_lowercase();
    match t.as_str() {
        "normal" => Ok(Filter {
            pubsub: Some(false),
            ..Filter::default()
        }),
        "pubsub" => Ok(Filter {
            pubsub: Some(true),
            ..Filter::default()
        }),
        "master" | "replica" | "slave" => Ok(Filter {
            ids: Some(Vec::new()),
            ..Filter::default()
        }),
        _ => Err(Reply::err(format_args!("Unknown client type '{t}'"))),
    }
}

/// `CLIENT KILL ip:port` (OK or "No such client") or `CLIENT KILL <filter> <value> …` with
/// ID, TYPE, USER, ADDR, LADDR and SKIPME (the number killed).
fn client_kill(shared: &Shared, sess: &Session, args: &[Bytes]) -> Reply {
    if let [addr] = args {
        let filter = Filter {
            addr: Some(String::from_utf8_lossy(addr).into_owned()),
            ..Filter::default()
        };
        return if shared.client_table.kill(&filter) > 0 {
            Reply::OK
        } else {
            Reply::err("No such client")
        };
    }
    if args.len() % 2 != 0 {
        return Reply::err("syntax error");
    }
    let mut filter = Filter {
        skip: Some(sess.id),
        ..Filter::default()
    };
    for pair in args.chunks(2) {
        let value = String::from_utf8_lossy(&pair[1]).into_owned();
        match String::from_utf8_lossy(&pair[0])
            .to_ascii_lowercase()
            .as_str()
        {
            "id" => match super::util::int(&pair[1]) {
                Ok(id) if id > 0 => filter.ids = Some(vec![id.unsigned_abs()]),
                _ => return Reply::err("client-id should be greater than 0"),
            },
            "type" => match client_type(&pair[1]) {
                Ok(f) => {
                    filter.pubsub = f.pubsub;
                    filter.ids = f.ids.or(filter.ids);
                }
                Err(r) => return r,
            },
            "addr" => filter.addr = Some(value),
            "laddr" => filter.laddr = Some(value),
            "user" if value == "default" => filter.user = Some(value),
            "user" => return Reply::err(format_args!("No such user '{value}'")),
            "skipme" if value.eq_ignore_ascii_case("yes") => filter.skip = Some(sess.id),
            "skipme" if value.eq_ignore_ascii_case("no") => filter.skip = None,
            _ => return Reply::err("syntax error"),
        }
    }
    let n = shared.client_table.kill(&filter);
    Reply::Int(i64::try_from(n).unwrap_or(i64::MAX))
}

fn client(shared: &Shared, sess: &mut Session, args: &[Bytes]) -> Reply {
    let sub = args[1].to_ascii_lowercase();
    let sub = String::from_utf8_lossy(&sub).into_owned();
    let want = |n: usize| args.len() == n;
    let wrong = || arity(&format!("client|{sub}"));
    match sub.as_str() {
        "id" if want(2) => Reply::Int(i64::try_from(sess.id).unwrap_or(i64::MAX)),
        "getname" if want(2) => sess.name.clone().map_or(Reply::Nil, Reply::Bulk),
        "setname" if want(3) => {
            if !valid_name(&args[2]) {
                return bad_name();
            }
            sess.name = (!args[2].is_empty()).then(|| args[2].clone());
            Reply::OK
        }
        "setinfo" if want(4) => {
            if !valid_name(&args[3]) {
                return Reply::err(format_args!(
                    "{} cannot contain spaces, newlines or special characters.",
                    String::from_utf8_lossy(&args[2])
                ));
            }
            if is(&args[2], "lib-name") {
                sess.lib_name = Some(args[3].clone());
            } else if is(&args[2], "lib-ver") {
                sess.lib_ver = Some(args[3].clone());
            } else {
                return Reply::err(format_args!(
                    "Unrecognized option '{}'",
                    String::from_utf8_lossy(&args[2])
                ));
            }
            Reply::OK
        }
        "info" if want(2) => Reply::Verbatim(Bytes::from(client_line(shared, sess, args))),
        "list" => client_list(shared, sess, args),
        "kill" if args.len() >= 3 => client_kill(shared, sess, &args[2..]),
        "no-evict" | "no-touch" if want(3) => Reply::OK,
        "tracking" if args.len() >= 3 => super::tracking::tracking(shared, sess, &args[2..]),
        "caching" if want(3) => super::tracking::caching(sess, &args[2]),
        "getredir" if want(2) => super::tracking::getredir(sess),
        "trackinginfo" if want(2) => super::tracking::trackinginfo(shared, sess),
        "reply" if want(3) => {
            let mode = String::from_utf8_lossy(&args[2]).to_ascii_lowercase();
            sess.reply_mode = match mode.as_str() {
                "on" => ReplyMode::On,
                "off" => ReplyMode::Off,
                "skip" => ReplyMode::SkipNext,
                _ => return Reply::err("syntax error"),
            };
            Reply::OK
        }
        "unblock" if want(3) || want(4) => client_unblock(shared, &args[2..]),
        "pause" if want(3) || want(4) => client_pause(shared, &args[2..]),
        "unpause" if want(2) => {
            shared.pause.unpause();
            shared
                .mesh
                .pause_peers(net::message::PauseOrder::Unpause {});
            Reply::OK
        }
        "id" | "getname" | "setname" | "setinfo" | "info" | "no-evict" | "no-touch" | "unblock"
        | "reply" | "kill" | "pause" | "unpause" | "tracking" | "caching" | "getredir"
        | "trackinginfo" => wrong(),
        _ => unknown_sub("client", &args[1]),
    }
}

/// `CLIENT PAUSE timeout-ms [WRITE|ALL]` (`ALL` when not given): the clients of this proxy,
/// and through the mesh those of every other proxy, wait before the commands the pause
/// covers ([`crate::cmd::pause`]) until it ends.
fn client_pause(shared: &Shared, args: &[Bytes]) -> Reply {
    let mode = match args.get(1) {
        None => crate::pause::Mode::All,
        Some(m) if is(m, "write") => crate::pause::Mode::Write,
        Some(m) if is(m, "all") => crate::pause::Mode::All,
        Some(_) => return Reply::err("CLIENT PAUSE mode must be WRITE or ALL"),
    };
    let ms = match super::util::parse_i64(&args[0]) {
        None => return Reply::err("timeout is not an integer or out of range"),
        Some(ms) if ms < 0 => return Reply::err("timeout is negative"),
        Some(ms) => ms.unsigned_abs(),
    };
    let until = tokio::time::Instant::now()
        .checked_add(std::time::Duration::from_millis(ms))
        .ok_or(());
    match until {
        Ok(until) => {
            shared.pause.pause(mode, until);
            // The other proxies of the cluster hold their clients too.
            shared.mesh.pause_peers(match mode {
                crate::pause::Mode::Write => net::message::PauseOrder::Write { for_ms: ms },
                crate::pause::Mode::All => net::message::PauseOrder::All { for_ms: ms },
            });
            Reply::OK
        }
        Err(()) => Reply::err("timeout is out of range"),
    }
}

/// `CLIENT UNBLOCK id [TIMEOUT|ERROR]`: 1 when the client was blocked (its command ends now),
/// else 0.
fn client_unblock(shared: &Shared, args: &[Bytes]) -> Reply {
    let id = match super::util::int(&args[0]) {
        Ok(id) => id,
        Err(r) => return r,
    };
    let mode = match args.get(1) {
        None => crate::unblock::Mode::Timeout,
        Some(m) if is(m, "timeout") => crate::unblock::Mode::Timeout,
        Some(m) if is(m, "error") => crate::unblock::Mode::Error,
        Some(_) => return Reply::err("CLIENT UNBLOCK reason should be TIMEOUT or ERROR"),
    };
    let done = u64::try_from(id).is_ok_and(|id| shared.blocked.unblock(id, mode));
    Reply::Int(i64::from(done))
}

fn command_info(s: &Spec) -> Reply {
    Reply::Array(vec![
        Reply::bulk(s.name.as_bytes()),
        Reply::Int(i64::from(s.arity)),
        Reply::Set(s.flags.iter().map(|f| Reply::Simple(f)).collect()),
        Reply::Int(i64::from(s.first)),
        Reply::Int(i64::from(s.last)),
        Reply::Int(i64::from(s.step)),
        Reply::Set(Vec::new()),
        Reply::Set(Vec::new()),
        Reply::Array(Vec::new()),
        Reply::Array(Vec::new()),
    ])
}

fn command(args: &[Bytes]) -> Reply {
    let Some(sub) = args.get(1) else {
        return Reply::Array(all_specs().map(command_info).collect());
    };
    if is(sub, "count") {
        if args.len() != 2 {
            return arity("command|count");
        }
        Reply::Int(i64::try_from(all_specs().count()).unwrap_or(0))
    } else if is(sub, "docs") {
        super::docs::docs(&args[2..])
    } else if is(sub, "info") {
        Reply::Array(
            args[2..]
                .iter()
                .map(|n| lookup(n).map_or(Reply::Nil, command_info))
                .collect(),
        )
    } else if is(sub, "getkeys") {
        if args.len() < 4 {
            return arity("command|getkeys");
        }
        match getkeys(&args[2..]) {
            Ok(keys) => Reply::Array(keys.into_iter().map(Reply::Bulk).collect()),
            Err(e) => Reply::err(e),
        }
    } else if is(sub, "list") {
        Reply::Array(
            all_specs()
                .map(|s| Reply::bulk(s.name.as_bytes()))
                .collect(),
        )
    } else {
        unknown_sub("command", sub)
    }
}

/// `COMMAND GETKEYS`: the key arguments of a command line, from its key positions, or for the
/// commands with movable keys from their own syntax (`sortGetKeys`, the `numkeys` forms).
fn getkeys(cmd: &[Bytes]) -> Result<Vec<Bytes>, &'static str> {
    let positions = key_positions(cmd)?;
    if positions.is_empty() {
        return Err("Invalid arguments specified for command");
    }
    Ok(positions.into_iter().map(|i| cmd[i].clone()).collect())
}

/// The positions of a command line's keys (`COMMAND GETKEYS`, ACL key checks).
pub fn key_positions(cmd: &[Bytes]) -> Result<Vec<usize>, &'static str> {
    let spec = lookup(&cmd[0]).ok_or("Invalid command specified")?;
    let n = i32::try_from(cmd.len()).unwrap_or(i32::MAX);
    if (spec.arity > 0 && n != spec.arity) || (spec.arity < 0 && n < -spec.arity) {
        return Err("Invalid number of arguments specified for command");
    }
    let positions = match spec.name {
        "sort" | "sort_ro" => sort_keys(cmd),
        // numkeys first
        "zunion" | "zinter" | "zdiff" | "sintercard" | "zintercard" | "lmpop" | "zmpop" => {
            numkeys(cmd, 1, &[])?
        }
        // destination, then numkeys
        "zunionstore" | "zinterstore" | "zdiffstore" => numkeys(cmd, 2, &[1])?,
        // timeout, then numkeys
        "blmpop" | "bzmpop" => numkeys(cmd, 2, &[])?,
        // script or function, then numkeys (none is an empty answer, as Redis's
        // `evalGetKeys`)
        "eval" | "eval_ro" | "evalsha" | "evalsha_ro" | "fcall" | "fcall_ro" => {
            if cmd.get(2).is_some_and(|c| &c[..] == b"0") {
                return Ok(Vec::new());
            }
            numkeys(cmd, 2, &[])?
        }
        _ if spec.first == 0 => return Err("The command has no key arguments"),
        _ => stepped(spec, cmd.len())?,
    };
    Ok(positions)
}

/// Positions `first..=last` by `step` (a negative `last` counts from the end).
fn stepped(spec: &Spec, argc: usize) -> Result<Vec<usize>, &'static str> {
    let argc = i64::try_from(argc).unwrap_or(i64::MAX);
    let (first, step) = (i64::from(spec.first), i64::from(spec.step).max(1));
    let last = if spec.last < 0 {
        argc + i64::from(spec.last)
    } else {
        i64::from(spec.last)
    };
    if last >= argc {
        return Err("Invalid arguments specified for command");
    }
    let mut out = Vec::new();
    let mut i = first;
    while i <= last {
        out.push(usize::try_from(i).unwrap_or(0));
        i += step;
    }
    Ok(out)
}

/// `extra` positions, then the `numkeys` keys after the count at `at`.
fn numkeys(cmd: &[Bytes], at: usize, extra: &[usize]) -> Result<Vec<usize>, &'static str> {
    let bad = "Invalid arguments specified for command";
    let count = cmd
        .get(at)
        .and_then(|c| std::str::from_utf8(c).ok()?.parse::<usize>().ok())
        .ok_or(bad)?;
    if count == 0 || at + count >= cmd.len() {
        return Err(bad);
    }
    Ok(extra.iter().copied().chain(at + 1..=at + count).collect())
}

/// `sortGetKeys`: the sorted key, and the last `STORE` destination (skipping the arguments
/// of LIMIT, GET and BY).
fn sort_keys(cmd: &[Bytes]) -> Vec<usize> {
    let mut out = vec![1];
    let mut store = None;
    let mut i = 2;
    while i < cmd.len() {
        let a = &cmd[i];
        if is(a, "limit") {
            i += 2;
        } else if is(a, "get") || is(a, "by") {
            i += 1;
        } else if is(a, "store") && i + 1 < cmd.len() {
            store = Some(i + 1);
        }
        i += 1;
    }
    out.extend(store);
    out
}

/// `INFO stats` lines of client-side caching (Redis's, then tierkv's counters).
fn tracking_stats(shared: &Shared) -> String {
    let t = &shared.tracker;
    let f = t.figures();
    let s = &t.stats;
    format!(
        "tracking_total_keys:{}\r\ntracking_total_items:{}\r\ntracking_total_prefixes:{}\r\n\
         tierkv_tracking_invalidations:{}\r\ntierkv_tracking_evicted_keys:{}\r\n\
         tierkv_tracking_invalidations_from_peers:{}\r\ntierkv_tracking_expiries_scheduled:{}\r\n\
         tierkv_tracking_expiries_dropped:{}\r\n",
        f.keys,
        f.items,
        f.prefixes,
        s.invalidations.load(Ordering::Relaxed),
        s.evicted_keys.load(Ordering::Relaxed),
        s.from_peers.load(Ordering::Relaxed),
        t.scheduled(),
        s.expiries_dropped.load(Ordering::Relaxed),
    )
}

/// The parameters `CONFIG GET` knows, with their values.
fn config_params(shared: &Shared) -> Vec<(&'static str, String)> {
    let c = &shared.cfg;
    let mut params = vec![
        ("appendonly", "no".into()),
        ("bind", c.listen.clone()),
        ("databases", net::keyspace::DATABASES.to_string()),
        ("maxclients", c.max_clients.to_string()),
        ("maxmemory", "0".into()),
        (
            "port",
            c.listen.rsplit(':').next().unwrap_or("").to_string(),
        ),
        ("proto-max-bulk-len", c.limits.max_bulk_bytes.to_string()),
        (
            "requirepass",
            shared
                .settings
                .requirepass()
                .map(|p| String::from_utf8_lossy(&p).into_owned())
                .unwrap_or_default(),
        ),
        ("save", String::new()),
        (
            "timeout",
            shared.settings.idle_timeout().as_secs().to_string(),
        ),
        (
            "client-query-buffer-limit",
            shared.settings.query_buffer_limit().to_string(),
        ),
        (
            "client-output-buffer-limit",
            format!("normal {} 0 0", c.max_output_bytes),
        ),
        ("cluster-enabled", "no".into()),
        (
            "notify-keyspace-events",
            crate::notify::format(shared.settings.notify_flags()),
        ),
        (
            "busy-reply-threshold",
            shared
                .settings
                .busy_reply_threshold()
                .as_millis()
                .to_string(),
        ),
        (
            "slowlog-log-slower-than",
            shared.slowlog.slower_than_us().to_string(),
        ),
        ("slowlog-max-len", shared.slowlog.max_len().to_string()),
        (
            "tracking-table-max-keys",
            shared.tracker.max_keys().to_string(),
        ),
        (
            "latency-monitor-threshold",
            shared.latency.threshold_ms().to_string(),
        ),
        (
            "tierkv-pack-writes",
            if shared.router.packs_writes() {
                "yes"
            } else {
                "no"
            }
            .into(),
        ),
        (
            "lua-time-limit",
            shared
                .settings
                .busy_reply_threshold()
                .as_millis()
                .to_string(),
        ),
    ];
    for (i, p) in crate::encodings::PARAMS.iter().enumerate() {
        let v = shared.settings.encodings.value_at(i).to_string();
        params.extend(p.alias.map(|a| (a, v.clone())));
        params.push((p.name, v));
    }
    params
}

fn config(shared: &Shared, args: &[Bytes]) -> Action {
    let sub = &args[1];
    Action::Reply(if is(sub, "get") {
        if args.len() < 3 {
            return Action::Reply(arity("config|get"));
        }
        return config_get(shared, &args[2..]);
    } else if is(sub, "set") {
        return config_set(shared, args);
    } else if is(sub, "resetstat") {
        shared.metrics.reset();
        Reply::OK
    } else if is(sub, "rewrite") {
        if args.len() != 2 {
            return Action::Reply(arity("config|rewrite"));
        }
        config_rewrite(shared)
    } else {
        unknown_sub("config", sub)
    })
}

/// `CONFIG REWRITE` ([`crate::config_rewrite`]).
fn config_rewrite(shared: &Shared) -> Reply {
    let Some(path) = &shared.cfg.config_file else {
        return Reply::err("The server is running without a config file");
    };
    let s = &shared.settings;
    let settings = [
        (
            "requirepass",
            s.requirepass()
                .filter(|p| !p.is_empty())
                .map(|p| crate::config_rewrite::toml_string(&p)),
        ),
        (
            "client-query-buffer-limit",
            Some(s.query_buffer_limit().to_string()),
        ),
        ("timeout", Some(s.idle_timeout().as_secs().to_string())),
    ];
    match crate::config_rewrite::rewrite(path, &settings) {
        Ok(()) => Reply::OK,
        Err(e) => {
            tracing::warn!(path = %path.display(), "CONFIG REWRITE failed: {e}");
            Reply::err(format_args!("Rewriting config file: {e}"))
        }
    }
}

/// `CONFIG GET pattern [pattern …]`. `maxmemory` is the cluster's (the master's answer,
/// cached for [`crate::memory::CACHE_TTL`]): asked for when it matches and the cache is old.
fn config_get(shared: &Shared, patterns: &[Bytes]) -> Action {
    let matches = |name: &str| {
        patterns
            .iter()
            .any(|p| crate::glob::Pattern::nocase(p).matches(name.as_bytes()))
    };
    let pairs: Vec<(&'static str, String)> = config_params(shared)
        .into_iter()
        .filter(|(name, _)| matches(name))
        .collect();
    if !pairs.iter().any(|(name, _)| *name == "maxmemory") {
        return Action::Reply(config_map(pairs));
    }
    match shared.router.memory.fresh() {
        Some(m) => Action::Reply(config_map(with_maxmemory(pairs, &m))),
        None => Action::rounds(ConfigGetMaxMemory { pairs }),
    }
}

fn config_map(pairs: Vec<(&'static str, String)>) -> Reply {
    Reply::Map(
        pairs
            .into_iter()
            .map(|(n, v)| (Reply::bulk(n.as_bytes()), Reply::Bulk(Bytes::from(v))))
            .collect(),
    )
}

fn with_maxmemory(
    mut pairs: Vec<(&'static str, String)>,
    m: &net::message::ClusterMemory,
) -> Vec<(&'static str, String)> {
    for (name, value) in &mut pairs {
        if *name == "maxmemory" {
            *value = m.node_maxmemory.to_string();
        }
    }
    pairs
}

/// `CONFIG GET` of `maxmemory` once the master answered.
#[derive(Debug)]
struct ConfigGetMaxMemory {
    pairs: Vec<(&'static str, String)>,
}

impl super::action::AsyncCommand for ConfigGetMaxMemory {
    fn run<'a>(
        self: Box<Self>,
        router: &'a crate::db::DbRouter<'_>,
    ) -> futures_util::future::BoxFuture<'a, Reply> {
        Box::pin(async move {
            // A master that does not answer does not fail `CONFIG GET *` (tools and client
            // libraries call it at connect): the last value it gave stands, `0` before any.
            let m = match crate::memory::get(router.raw()).await {
                Ok(m) => Some(m),
                Err(e) => {
                    tracing::warn!("CONFIG GET maxmemory: the master did not answer: {e}");
                    router.raw().memory.last()
                }
            };
            match m {
                Some(m) => config_map(with_maxmemory(self.pairs, &m)),
                None => config_map(self.pairs),
            }
        })
    }
}

/// `CONFIG SET maxmemory` once the master logged it durably.
#[derive(Debug)]
struct ConfigSetMaxMemory {
    bytes: u64,
}

impl super::action::AsyncCommand for ConfigSetMaxMemory {
    fn run<'a>(
        self: Box<Self>,
        router: &'a crate::db::DbRouter<'_>,
    ) -> futures_util::future::BoxFuture<'a, Reply> {
        Box::pin(async move {
            match crate::memory::set(router.raw(), self.bytes).await {
                Ok(_) => Reply::OK,
                Err(e) => Reply::err(format_args!(
                    "CONFIG SET failed (possibly related to argument 'maxmemory') - the master did not take it: {e}"
                )),
            }
        })
    }
}

/// A value `CONFIG SET` accepted for one of the parameters it can change.
enum SetValue {
    Requirepass(Bytes),
    QueryBufferLimit(usize),
    Timeout(u64),
    /// `notify-keyspace-events`, as [`crate::notify`] flags.
    NotifyFlags(u32),
    /// `busy-reply-threshold` (`lua-time-limit`) in milliseconds.
    BusyReplyThreshold(u64),
    /// `slowlog-log-slower-than` in microseconds (negative: off).
    SlowlogSlowerThan(i64),
    /// `slowlog-max-len`.
    SlowlogMaxLen(usize),
    /// `latency-monitor-threshold` in milliseconds (0: off).
    LatencyThreshold(u64),
    /// `tracking-table-max-keys` (0: no limit).
    TrackingMaxKeys(usize),
    /// An encoding threshold: its index in `encodings::PARAMS` and value.
    Encoding(usize, i64),
    /// `save ""`: no RDB snapshots, which is what tierkv always is (nothing to change).
    NoSave,
    /// `maxmemory` of every DS node, bytes (0: no limit): sent to the master.
    MaxMemory(u64),
    /// `tierkv-pack-writes`: whether a pipeline's writes to one range travel as one entry
    /// (`crate::pack`).
    PackWrites(bool),
}

/// `CONFIG SET name value [name value …]`: every pair is checked before any is applied, as
/// Redis does. Settable: `requirepass`, `client-query-buffer-limit`, `timeout`,
/// `notify-keyspace-events`, `busy-reply-threshold`, `slowlog-log-slower-than`,
/// `slowlog-max-len`, `latency-monitor-threshold`, `tracking-table-max-keys`, `tierkv-pack-writes`, the encoding
/// thresholds, `save ""` and
/// `maxmemory` (the cluster's, set alone: it goes to the master, which may fail, and the
/// proxy's own parameters could not be taken back then).
fn config_set(shared: &Shared, args: &[Bytes]) -> Action {
    if args.len() < 4 {
        return Action::Reply(arity("config|set"));
    }
    if args.len() % 2 != 0 {
        return Action::Reply(syntax());
    }
    match config_set_values(args) {
        Err(reply) => Action::Reply(reply),
        Ok(values) => apply_config(shared, values),
    }
}

/// Applies checked `CONFIG SET` values; `maxmemory` (alone) goes to the master.
fn apply_config(shared: &Shared, values: Vec<(String, SetValue)>) -> Action {
    if let Some((_, SetValue::MaxMemory(bytes))) = values.first() {
        return Action::rounds(ConfigSetMaxMemory { bytes: *bytes });
    }
    apply_local(shared, values)
}

/// Checks every `name value` pair of `CONFIG SET` before any is applied, as Redis does: the
/// values, or the error reply.
fn config_set_values(args: &[Bytes]) -> Result<Vec<(String, SetValue)>, Reply> {
    let mut values: Vec<(String, SetValue)> = Vec::new();
    for pair in args[2..].chunks_exact(2) {
        let name = String::from_utf8_lossy(&pair[0]).to_ascii_lowercase();
        let name = match crate::encodings::Encodings::find(&name) {
            Some(i) => crate::encodings::PARAMS[i].name.to_string(),
            None if name == "lua-time-limit" => "busy-reply-threshold".to_string(),
            None => name,
        };
        let failed = |why: &str| {
            Reply::err(format_args!(
                "CONFIG SET failed (possibly related to argument '{name}') - {why}"
            ))
        };
        if values.iter().any(|(n, _)| *n == name) {
            return Err(failed("duplicate parameter"));
        }
        let value = match config_value(&name, &pair[1]) {
            Ok(Some(v)) => v,
            Ok(None) => {
                return Err(Reply::err(format_args!(
                    "Unknown option or number of arguments for CONFIG SET - '{}'",
                    String::from_utf8_lossy(&pair[0])
                )));
            }
            Err(why) => return Err(failed(&why)),
        };
        values.push((name, value));
    }
    let has_maxmemory = values
        .iter()
        .any(|(_, v)| matches!(v, SetValue::MaxMemory(_)));
    if has_maxmemory && values.len() > 1 {
        return Err(Reply::err(
            "CONFIG SET failed (possibly related to argument 'maxmemory') - maxmemory is the cluster's and is set alone",
        ));
    }
    Ok(values)
}

/// Applies the proxy's own `CONFIG SET` values.
fn apply_local(shared: &Shared, values: Vec<(String, SetValue)>) -> Action {
    for (_, v) in values {
        match v {
            SetValue::Requirepass(p) => {
                shared.acl.set_default_password(&p);
                shared.settings.set_requirepass(&p);
            }
            SetValue::QueryBufferLimit(n) => shared.settings.set_query_buffer_limit(n),
            SetValue::Timeout(secs) => shared.settings.set_idle_timeout_secs(secs),
            SetValue::NotifyFlags(f) => shared.settings.set_notify_flags(f),
            SetValue::TrackingMaxKeys(n) => shared.tracker.set_max_keys(n),
            SetValue::BusyReplyThreshold(ms) => shared.settings.set_busy_reply_threshold_ms(ms),
            SetValue::SlowlogSlowerThan(us) => shared.slowlog.set_slower_than_us(us),
            SetValue::SlowlogMaxLen(n) => shared.slowlog.set_max_len(n),
            SetValue::LatencyThreshold(ms) => shared.latency.set_threshold_ms(ms),
            SetValue::Encoding(i, v) => shared.settings.encodings.set_at(i, v),
            SetValue::PackWrites(on) => shared.router.set_pack_writes(on),
            SetValue::NoSave | SetValue::MaxMemory(_) => {}
        }
    }
    Action::Reply(Reply::OK)
}

/// Parses a value for encoding threshold `PARAMS[i]` with Redis's error reasons.
fn encoding_value(i: usize, v: &[u8]) -> Result<i64, String> {
    let p = &crate::encodings::PARAMS[i];
    if !p.memory {
        return parse_ranged(v, p.min, p.max);
    }
    let n = crate::settings::parse_memory(v)
        .and_then(|n| i64::try_from(n).ok())
        .ok_or("argument must be a memory value")?;
    if n < p.min || n > p.max {
        return Err(format!(
            "argument must be between {} and {} inclusive",
            p.min, p.max
        ));
    }
    Ok(n)
}

/// A boolean parameter's value, as Redis reads one.
fn parse_yes_no(v: &[u8]) -> Result<bool, String> {
    if v.eq_ignore_ascii_case(b"yes") {
        Ok(true)
    } else if v.eq_ignore_ascii_case(b"no") {
        Ok(false)
    } else {
        Err("argument must be 'yes' or 'no'".into())
    }
}

/// An integer parameter's value within `[min, max]`, with Redis's two error reasons.
fn parse_ranged(v: &[u8], min: i64, max: i64) -> Result<i64, String> {
    let n = super::util::parse_i64(v).ok_or("argument couldn't be parsed into an integer")?;
    if n < min || n > max {
        return Err(format!(
            "argument must be between {min} and {max} inclusive"
        ));
    }
    Ok(n)
}

/// Parses the value of a settable parameter: `Ok(None)` for a parameter `CONFIG SET` cannot
/// change, `Err` with Redis's reason for a bad value.
fn config_value(name: &str, v: &[u8]) -> Result<Option<SetValue>, String> {
    use crate::encodings::Encodings;
    use crate::settings::{QUERY_BUFFER_LIMIT_MIN, TIMEOUT_SECS_MAX, parse_memory};
    if let Some(i) = Encodings::find(name) {
        return encoding_value(i, v).map(|n| Some(SetValue::Encoding(i, n)));
    }
    Ok(Some(match name {
        // tierkv has no RDB snapshots (every write is durable in the Raft log): `save ""`
        // states that and is accepted; a schedule cannot be honoured and is refused.
        "save" if v.is_empty() => SetValue::NoSave,
        "save" => {
            return Err("tierkv takes no RDB snapshots (every write is durable in its log); only save \"\" is accepted".into());
        }
        // The `maxmemory` of every DS node (DESIGN §4), held by the master; a node's own
        // setting (`--maxmemory`) applies until one is set.
        "maxmemory" => SetValue::MaxMemory(
            parse_memory(v)
                .filter(|&n| i64::try_from(n).is_ok())
                .ok_or("argument must be a memory value")?,
        ),
        "requirepass" => SetValue::Requirepass(Bytes::copy_from_slice(v)),
        "notify-keyspace-events" => SetValue::NotifyFlags(
            crate::notify::parse(v)
                .ok_or("Invalid event class character. Use 'Ag$lshzxeKEtmdn'.")?,
        ),
        "client-query-buffer-limit" => {
            let n = parse_memory(v).ok_or("argument must be a memory value")?;
            let n = usize::try_from(n)
                .ok()
                .filter(|&n| n >= QUERY_BUFFER_LIMIT_MIN && i64::try_from(n).is_ok())
                .ok_or("argument must be between 1048576 and 9223372036854775807 inclusive")?;
            SetValue::QueryBufferLimit(n)
        }
        "timeout" => SetValue::Timeout(parse_ranged(v, 0, TIMEOUT_SECS_MAX as i64)? as u64),
        "busy-reply-threshold" => {
            SetValue::BusyReplyThreshold(parse_ranged(v, 0, i64::MAX)? as u64)
        }
        "slowlog-log-slower-than" => SetValue::SlowlogSlowerThan(parse_ranged(v, -1, i64::MAX)?),
        "slowlog-max-len" => SetValue::SlowlogMaxLen(parse_ranged(v, 0, i64::MAX)? as usize),
        "latency-monitor-threshold" => {
            SetValue::LatencyThreshold(parse_ranged(v, 0, i64::MAX)? as u64)
        }
        "tracking-table-max-keys" => {
            SetValue::TrackingMaxKeys(parse_ranged(v, 0, i64::MAX)? as usize)
        }
        "tierkv-pack-writes" => SetValue::PackWrites(parse_yes_no(v)?),
        _ => return Ok(None),
    }))
}

/// This process's CPU seconds `[user, system, children's user, children's system]`, from
/// `/proc/self/stat` (fields 14–17, in USER_HZ = 100 ticks per second on Linux); `None`
/// where there is no procfs.
fn cpu_times() -> Option<[f64; 4]> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) may hold spaces: count fields after its closing parenthesis.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    let tick = |i: usize| fields.get(i)?.parse::<f64>().ok().map(|t| t / 100.0);
    // `rest` starts at field 3, so field n is at index n - 3.
    Some([tick(11)?, tick(12)?, tick(13)?, tick(14)?])
}

/// `INFO`: the text at once, or, when the keyspace section is asked for, a round of
/// `DbStats` reads of every range first ([`InfoKeyspace`]).
fn info_action(shared: &Shared, args: &[Bytes]) -> Action {
    let (head, tail) = info(shared, args);
    let memory = head.contains(MEMORY_MARKER).then(|| shared.scripts.stats());
    match (tail, memory) {
        (None, None) => Action::Reply(Reply::Verbatim(Bytes::from(head))),
        (tail, memory) => Action::rounds(InfoKeyspace { head, tail, memory }),
    }
}

/// Stands for the memory section in an `INFO` text until the master answered.
const MEMORY_MARKER: &str = "\0tierkv-memory-section\0";

/// The `INFO` text around its keyspace section, which needs the ranges' key counts, and with
/// its memory section to fill in from the master when the cached answer was too old.
#[derive(Debug)]
struct InfoKeyspace {
    head: String,
    tail: Option<String>,
    /// The scripts' count and bytes, when [`MEMORY_MARKER`] is to be replaced.
    memory: Option<(usize, usize)>,
}

impl super::action::AsyncCommand for InfoKeyspace {
    fn run<'a>(
        self: Box<Self>,
        router: &'a crate::db::DbRouter<'_>,
    ) -> futures_util::future::BoxFuture<'a, Reply> {
        Box::pin(async move {
            let InfoKeyspace {
                mut head,
                tail,
                memory,
            } = *self;
            if let Some((scripts, script_bytes)) = memory {
                let m = crate::memory::get(router.raw()).await;
                let section = crate::memory::info_section(&m, scripts, script_bytes);
                head = head.replace(MEMORY_MARKER, &section);
            }
            let Some(tail) = tail else {
                trim_last_blank_line(&mut head);
                return Reply::Verbatim(Bytes::from(head));
            };
            match crate::key_counts::totals(router.raw()).await {
                Ok(t) => head.push_str(&crate::key_counts::keyspace_section(
                    &t,
                    crate::shared::now_ms(),
                )),
                // INFO still answers (clients poll it while a cluster starts): the section
                // says why it has no counts.
                Err(e) => {
                    let _ = write!(
                        head,
                        "# Keyspace\r\ntierkv_keyspace_error:{}\r\n\r\n",
                        e.to_string().replace(['\r', '\n'], " ")
                    );
                }
            }
            head.push_str(&tail);
            trim_last_blank_line(&mut head);
            Reply::Verbatim(Bytes::from(head))
        })
    }
}

/// The mesh's fields of `INFO stats` (`tierkv_mesh_*`), each line ended by CRLF.
fn mesh_stats(shared: &Shared) -> String {
    let m = &shared.mesh.stats;
    let (peers, up) = shared.mesh.peers();
    let c = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    format!(
        "tierkv_mesh_peers:{peers}\r\ntierkv_mesh_links_up:{up}\r\n\
         tierkv_mesh_forwarded:{}\r\ntierkv_mesh_received:{}\r\n\
         tierkv_mesh_send_failures:{}\r\ntierkv_mesh_dropped_full:{}\r\n\
         tierkv_mesh_timeouts:{}\r\ntierkv_mesh_connect_failures:{}\r\n\
         tierkv_mesh_keys_signalled:{}\r\ntierkv_mesh_woken_by_peers:{}\r\n\
         tierkv_mesh_register_failures:{}\r\n",
        c(&m.forwarded),
        c(&m.received),
        c(&m.send_failures),
        c(&m.dropped_full),
        c(&m.timeouts),
        c(&m.connect_failures),
        c(&m.keys_signalled),
        c(&m.woken_by_peers),
        c(&m.register_failures),
    )
}

/// The `INFO` text for the requested sections (default: server, clients, memory, stats,
/// replication, cpu, keyspace; `all`/`everything` add commandstats, latencystats and
/// errorstats): the whole text, or when the keyspace section is asked for, the text before
/// it and the text after it (the section itself is the ranges' key counts, `key_counts`).
pub fn info(shared: &Shared, args: &[Bytes]) -> (String, Option<String>) {
    let wanted: Vec<String> = args[1..]
        .iter()
        .map(|a| String::from_utf8_lossy(a).to_ascii_lowercase())
        .collect();
    let all = wanted.iter().any(|w| w == "all" || w == "everything");
    let default = wanted.is_empty() || wanted.iter().any(|w| w == "default");
    let show = |s: &str| {
        all || wanted.iter().any(|w| w == s)
            || (default
                && matches!(
                    s,
                    "server"
                        | "clients"
                        | "memory"
                        | "persistence"
                        | "stats"
                        | "replication"
                        | "cpu"
                        | "keyspace"
                ))
    };
    let mut out = String::new();
    let uptime = shared.started.elapsed().as_secs();
    if show("server") {
        let _ = write!(
            out,
            "# Server\r\nredis_version:{REDIS_VERSION}\r\nredis_mode:standalone\r\n\
             tierkv_component:proxy\r\nos:{}\r\narch_bits:64\r\nprocess_id:{}\r\n\
             tcp_port:{}\r\nuptime_in_seconds:{uptime}\r\nuptime_in_days:{}\r\n\
             cluster_enabled:0\r\n\r\n",
            std::env::consts::OS,
            std::process::id(),
            shared.cfg.listen.rsplit(':').next().unwrap_or(""),
            uptime / 86400,
        );
    }
    if show("clients") {
        let _ = write!(
            out,
            "# Clients\r\nconnected_clients:{}\r\nmaxclients:{}\r\nblocked_clients:{}\r\n\
             tracking_clients:{}\r\n\r\n",
            shared.clients.load(Ordering::Relaxed),
            shared.cfg.max_clients,
            shared.router.blocking.blocked_clients() + shared.pause.waiting(),
            shared.tracker.figures().clients,
        );
    }
    if show("memory") {
        // The data nodes' memory from the master (cached): now, or after a round trip.
        match shared.router.memory.fresh() {
            Some(m) => {
                let (scripts, script_bytes) = shared.scripts.stats();
                out.push_str(&crate::memory::info_section(&Ok(m), scripts, script_bytes));
            }
            None => out.push_str(MEMORY_MARKER),
        }
    }
    if show("persistence") {
        // Data is durable in the shards' Raft logs: there is no RDB or AOF to save or
        // rewrite. `loading` is the proxy's startup state (until every range serves).
        let _ = write!(
            out,
            "# Persistence\r\nloading:{}\r\nasync_loading:0\r\nrdb_changes_since_last_save:0\r\n\
             rdb_bgsave_in_progress:0\r\nrdb_last_save_time:{}\r\nrdb_last_bgsave_status:ok\r\n\
             aof_enabled:0\r\naof_rewrite_in_progress:0\r\ntierkv_persistence:raft_log\r\n\r\n",
            u8::from(shared.loading()),
            shared.last_save(),
        );
    }
    if show("stats") {
        let r = &shared.router.stats;
        let (geo_read, geo_matched) = super::geo::members_read_and_matched();
        let _ = write!(
            out,
            "# Stats\r\ntotal_connections_received:{}\r\ntotal_commands_processed:{}\r\n\
             rejected_connections:{}\r\nroute_retries:{}\r\nroute_refreshes:{}\r\n\
             route_pushes:{}\r\nroute_failures:{}\r\nroute_table_version:{}\r\n\
             tierkv_write_packs:{}\r\ntierkv_write_packed_ops:{}\r\ntierkv_write_packs_refused:{}\r\n\
             pubsub_channels:{}\r\n\
             pubsub_patterns:{}\r\npubsubshard_channels:{}\r\n\
             tierkv_pubsub_messages_delivered:{}\r\ntierkv_pubsub_clients_overflowed:{}\r\n\
             tierkv_keyspace_events_published:{}\r\nmigrate_cached_sockets:{}\r\n\
             tierkv_ranges:{}\r\ntierkv_geo_members_read:{}\r\n\
             tierkv_geo_members_matched:{}\r\n{}{}\r\n",
            shared.metrics.connections.load(Ordering::Relaxed),
            shared.metrics.commands.load(Ordering::Relaxed),
            shared.metrics.rejected.load(Ordering::Relaxed),
            r.retries.load(Ordering::Relaxed),
            r.refreshes.load(Ordering::Relaxed),
            r.pushes.load(Ordering::Relaxed),
            r.failures.load(Ordering::Relaxed),
            shared.router.version(),
            r.packs.load(Ordering::Relaxed),
            r.packed_ops.load(Ordering::Relaxed),
            r.packs_refused.load(Ordering::Relaxed),
            shared
                .pubsub
                .channels(crate::pubsub::Kind::Channel, None)
                .len(),
            shared.pubsub.numpat(),
            shared
                .pubsub
                .channels(crate::pubsub::Kind::Shard, None)
                .len(),
            shared.pubsub.stats.delivered.load(Ordering::Relaxed),
            shared.pubsub.stats.overflows.load(Ordering::Relaxed),
            shared.pubsub.stats.keyspace_events.load(Ordering::Relaxed),
            shared.migrate_sockets.count(),
            shared.router.ranges().len(),
            geo_read,
            geo_matched,
            tracking_stats(shared),
            mesh_stats(shared),
        );
    }
    if show("replication") {
        // Clients see one writable endpoint; data is replicated per range by Raft inside the
        // cluster, not by Redis replication, so there are no Redis replicas and no offset.
        out.push_str(
            "# Replication\r\nrole:master\r\nconnected_slaves:0\r\nmaster_repl_offset:0\r\n\
             tierkv_replication:raft\r\n\r\n",
        );
    }
    if show("cpu") {
        let t = cpu_times().unwrap_or_default();
        let _ = write!(
            out,
            "# CPU\r\nused_cpu_sys:{:.6}\r\nused_cpu_user:{:.6}\r\nused_cpu_sys_children:{:.6}\r\n\
             used_cpu_user_children:{:.6}\r\n\r\n",
            t[1], t[0], t[3], t[2]
        );
    }
    // The keyspace section goes between `out` and what follows: the caller fills it in.
    let mut head = None;
    if show("keyspace") {
        head = Some(std::mem::take(&mut out));
    }
    if show("commandstats") {
        out.push_str("# Commandstats\r\n");
        shared.metrics.write_commandstats(&mut out);
        out.push_str("\r\n");
    }
    if show("errorstats") {
        out.push_str("# Errorstats\r\n");
        shared.metrics.write_errorstats(&mut out);
        out.push_str("\r\n");
    }
    if show("latencystats") {
        out.push_str("# Latencystats\r\n");
        shared.metrics.write_latencystats(&mut out);
        out.push_str("\r\n");
    }
    trim_last_blank_line(&mut out);
    match head {
        None => (out, None),
        Some(head) => (head, Some(out)),
    }
}

/// Drops the blank line after the last section (Redis ends `INFO` with one `\r\n`).
fn trim_last_blank_line(out: &mut String) {
    if out.ends_with("\r\n\r\n") {
        out.truncate(out.len() - 2);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integer_parameters_are_refused_outside_their_range_with_redis_reasons() {
        let set = |name: &str, v: &str| config_value(name, v.as_bytes()).map(|v| v.is_some());
        assert_eq!(set("slowlog-log-slower-than", "-1"), Ok(true));
        assert_eq!(
            set("slowlog-log-slower-than", "-2"),
            Err("argument must be between -1 and 9223372036854775807 inclusive".into())
        );
        assert_eq!(
            set("timeout", "2147483648"),
            Err("argument must be between 0 and 2147483647 inclusive".into())
        );
        assert_eq!(
            set("slowlog-max-len", "x"),
            Err("argument couldn't be parsed into an integer".into())
        );
        assert_eq!(set("busy-reply-threshold", "0"), Ok(true));
        assert_eq!(set("no-such-parameter", "1"), Ok(false));
        assert_eq!(
            set("maxmemory", "bla"),
            Err("argument must be a memory value".into())
        );
        assert_eq!(set("maxmemory", "10mb"), Ok(true));
        assert!(matches!(
            config_value("maxmemory", b"1gb"),
            Ok(Some(SetValue::MaxMemory(1_073_741_824)))
        ));
    }
}
