//! `EVAL`, `EVALSHA`, their `_RO` forms and `SCRIPT` (`docs/scripting.md`).
//!
//! A script runs inside the range of its keys, at apply time, atomically ([`KvOp::Eval`]);
//! the proxy checks its arguments, caches its body by SHA1 and routes it by its first key —
//! or, for a script without keys, by the first key it touches, found by running it here up to
//! that call ([`run`]).

use bytes::Bytes;
use net::message::kv::{KvOp, OpResult};
use script::Run;
use script::running::{self, KillOutcome, Kind};

use super::action::{Action, keyed};
use super::script_table::KeylessHost;
use super::session::Session;
use super::util::{arity, help, is, one, syntax_error, unexpected, unknown_sub};
use crate::keyspace::Db;
use crate::resp::Reply;
use crate::script_value::{to_reply, with_vm};
use crate::shared::Shared;

const SCRIPT_HELP: &[&str] = &[
    "SCRIPT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "DEBUG (YES|SYNC|NO)",
    "    Set the debug mode for subsequent scripts executed.",
    "EXISTS <sha1> [<sha1> ...]",
    "    Return information about the existence of the scripts in the script cache.",
    "FLUSH [ASYNC|SYNC]",
    "    Flush the Lua scripts cache. Very dangerous on replicas.",
    "    When called without the optional mode argument, the behavior is determined by the",
    "    lazyfree-lazy-user-flush configuration directive. Valid modes are:",
    "    * ASYNC: Asynchronously flush the scripts cache.",
    "    * SYNC: Synchronously flush the scripts cache.",
    "KILL",
    "    Kill the currently executing Lua script.",
    "LOAD <script>",
    "    Load a script into the scripts cache without executing it.",
    "HELP",
    "    Prints this help.",
];

/// Dispatches a scripting command.
pub fn dispatch(shared: &Shared, sess: &Session, name: &str, args: &[Bytes]) -> Action {
    let read_only = name.ends_with("_ro");
    match name {
        "eval" | "eval_ro" => {
            let body = args[1].clone();
            shared.scripts.insert(script::sha1_hex(&body), body.clone());
            eval(sess, body, &args[2..], read_only)
        }
        "evalsha" | "evalsha_ro" => match shared.scripts.get(&args[1]) {
            Some(body) => eval(sess, body, &args[2..], read_only),
            None => Action::Reply(Reply::Error(
                "NOSCRIPT No matching script. Please use EVAL.".into(),
            )),
        },
        _ => Action::Reply(script_command(shared, args)),
    }
}

/// `numkeys key... arg...` of `body`.
fn eval(sess: &Session, body: Bytes, rest: &[Bytes], ro_command: bool) -> Action {
    let reply = |r: Reply| Action::Reply(r);
    let numkeys = match super::util::parse_i64(&rest[0]) {
        None => return reply(Reply::err("value is not an integer or out of range")),
        Some(n) if n < 0 => return reply(Reply::err("Number of keys can't be negative")),
        Some(n) => n,
    };
    let args = &rest[1..];
    let Some(numkeys) = usize::try_from(numkeys).ok().filter(|&n| n <= args.len()) else {
        return reply(Reply::err(
            "Number of keys can't be greater than number of args",
        ));
    };
    let flags = match script::flags(&body) {
        Ok(flags) => flags,
        Err(text) => return reply(Reply::Error(text)),
    };
    if ro_command && flags.shebang && !flags.no_writes {
        return reply(Reply::err(
            "Can not execute a script with write flag using *_ro command.",
        ));
    }
    let (keys, argv) = args.split_at(numkeys);
    let script = Script {
        code: body,
        function: None,
        keys,
        argv,
        read_only: ro_command || flags.no_writes,
        user: script_user(sess),
    };
    run(sess.db, script)
}

/// A script to run: `EVAL`'s body, or `FCALL`'s library and function.
#[derive(Debug)]
pub struct Script<'a> {
    /// The body, or the library's code.
    pub code: Bytes,
    /// `FCALL`: the function to call.
    pub function: Option<Bytes>,
    /// `KEYS`.
    pub keys: &'a [Bytes],
    /// `ARGV`.
    pub argv: &'a [Bytes],
    /// Whether writes are refused.
    pub read_only: bool,
    /// The ACL rules of the client's user, when it is not allowed everything: the script's
    /// calls are checked against them.
    pub user: Option<Bytes>,
}

/// The ACL rules a script of `sess`'s user runs under (`None`: allowed everything).
pub fn script_user(sess: &Session) -> Option<Bytes> {
    let rules = sess.user.as_ref()?.rules();
    (!rules.unrestricted()).then(|| rules.rules_text())
}

/// Runs `script` where its keys live: routed by its first key, or — without keys — by the
/// first key it touches, found by running it here until that call (a script that touches no
/// key is answered from that run).
pub fn run(db: Db, script: Script<'_>) -> Action {
    let anchor = match script.keys.first() {
        Some(k) => k.clone(),
        None => match discover(db, &script) {
            Ok(anchor) => anchor,
            Err(reply) => return Action::Reply(reply),
        },
    };
    let op = KvOp::Eval {
        anchor: anchor.clone(),
        body: script.code,
        keys: script.keys.to_vec(),
        args: script.argv.to_vec(),
        read_only: script.read_only,
        call: net::message::script::ScriptCall {
            function: script.function,
            user: script.user,
        },
    };
    Action::Data {
        ops: vec![keyed(&anchor, op)],
        finish: Box::new(|results| match one(results) {
            Ok(OpResult::Script { value }) => to_reply(value),
            Ok(other) => unexpected(&other),
            Err(reply) => reply,
        }),
    }
}

/// Runs a script without keys here up to its first call on a key: `Ok` is that key, `Err` the
/// reply of a script that touched none.
///
/// It may run long (up to the instruction budget), so it is registered as a proxy's run
/// ([`running::PROXY_RUN`]): past `busy-reply-threshold` every command but the few Redis
/// allows answers `-BUSY`, and `SCRIPT KILL` (`FUNCTION KILL` for a function) stops it — it
/// has written nothing (it stops at its first key), so it is always killable, as Redis kills
/// a script until its first write. On the multi-threaded runtime the worker hands its other
/// tasks to another thread for the run (`block_in_place`), so other clients keep being
/// served and can send that `SCRIPT KILL`.
fn discover(db: Db, script: &Script<'_>) -> Result<Bytes, Reply> {
    let kind = match script.function {
        Some(_) => Kind::Function,
        None => Kind::Script,
    };
    let origin = running::Origin::of_call(
        script.function.as_deref(),
        &script.code,
        &[],
        script.argv,
        script.read_only,
    );
    let registered = running::start(running::PROXY_RUN, true, kind, Some(origin));
    let now_ms = crate::shared::now_ms();
    let mut host = KeylessHost {
        db,
        now_ms,
        first_key: None,
        user: script.user.clone(),
    };
    let run = Run {
        keys: &[],
        argv: script.argv,
        seed: now_ms,
        kill: Some(registered.kill_switch()),
    };
    let value = may_block(|| {
        with_vm(|vm| match &script.function {
            None => vm.eval(&script.code, run, &mut host),
            Some(f) => vm.fcall(&script.code, f, run, &mut host),
        })
    })?;
    drop(registered);
    match host.first_key {
        Some(key) => Ok(key),
        None => Err(to_reply(value)),
    }
}

/// Runs `f`, which may take long, off the async scheduler: through `block_in_place` on a
/// multi-threaded Tokio runtime; directly elsewhere (a current-thread runtime cannot hand its
/// tasks over, and outside a runtime nothing waits).
fn may_block<R>(f: impl FnOnce() -> R) -> R {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

/// `SCRIPT` subcommands with Redis's arities (negative: at least).
const SUBCOMMANDS: &[(&str, i32)] = &[
    ("exists", -3),
    ("flush", -2),
    ("help", 2),
    ("kill", 2),
    ("load", 3),
];

/// `SCRIPT LOAD|EXISTS|FLUSH|KILL|HELP`.
fn script_command(shared: &Shared, args: &[Bytes]) -> Reply {
    let sub = &args[1];
    let Some(&(name, arity_n)) = SUBCOMMANDS.iter().find(|(s, _)| is(sub, s)) else {
        return unknown_sub("script", sub);
    };
    let n = i32::try_from(args.len()).unwrap_or(i32::MAX);
    if (arity_n > 0 && n != arity_n) || (arity_n < 0 && n < -arity_n) {
        return arity(&format!("script|{name}"));
    }
    match name {
        "load" => load(shared, &args[2]),
        "exists" => Reply::Array(
            args[2..]
                .iter()
                .map(|sha| Reply::Int(i64::from(shared.scripts.contains(sha))))
                .collect(),
        ),
        "flush" => match &args[2..] {
            [mode] if !is(mode, "sync") && !is(mode, "async") => {
                Reply::err("SCRIPT FLUSH only support SYNC|ASYNC option")
            }
            [] | [_] => {
                shared.scripts.flush();
                Reply::OK
            }
            _ => syntax_error("script", sub),
        },
        "kill" => kill(shared, Kind::Script),
        _ => help(SCRIPT_HELP),
    }
}

/// `SCRIPT LOAD body`: compiled here (a script that does not compile is refused), cached.
fn load(shared: &Shared, body: &Bytes) -> Reply {
    if let Err(text) = script::flags(body) {
        return Reply::Error(text);
    }
    match with_vm(|vm| vm.load(body)) {
        Ok(Ok(())) => {
            let sha = script::sha1_hex(body);
            shared.scripts.insert(sha.clone(), body.clone());
            Reply::Bulk(Bytes::from(sha))
        }
        Ok(Err(error)) => to_reply(error),
        Err(reply) => reply,
    }
}

/// `-BUSY` for a range running a script (`kind`) longer than `busy-reply-threshold`, naming
/// the command that stops it, as Redis 7 does.
pub fn busy_error(kind: Kind) -> Reply {
    Reply::Error(match kind {
        Kind::Script => {
            "BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE."
        }
        Kind::Function => {
            "BUSY Redis is busy running a script. You can only call FUNCTION KILL or SHUTDOWN NOSAVE."
        }
    }
    .into())
}

/// `SCRIPT KILL` (`kind` [`Kind::Script`]) and `FUNCTION KILL`: stops the read-only scripts
/// of that kind running longer than `busy-reply-threshold` in this process
/// (`docs/scripting.md`, "Long scripts").
pub fn kill(shared: &Shared, kind: Kind) -> Reply {
    match running::kill(kind, shared.settings.busy_reply_threshold()) {
        KillOutcome::Killed => Reply::OK,
        KillOutcome::NotBusy => Reply::Error("NOTBUSY No scripts in execution right now.".into()),
        KillOutcome::Unkillable => Reply::Error(
            "UNKILLABLE Sorry the script already executed write commands against the dataset. \
             You can either wait the script termination or kill the server in a hard way using \
             the SHUTDOWN NOSAVE command."
                .into(),
        ),
        KillOutcome::OtherKind(other) => busy_error(other),
    }
}
