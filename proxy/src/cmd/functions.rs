//! `FUNCTION` and `FCALL` / `FCALL_RO` (Redis 7 functions; `docs/scripting.md`).
//!
//! Libraries live in the cluster ([`crate::functions`]); `FCALL` finds its function's
//! library in this proxy's copy (re-read when older than a second) and sends the library's
//! code with the call to the range of its keys, where it runs like an `EVAL`.

use bytes::Bytes;
use net::message::kv::{Cond, Expiry, KvOp, OpResult};

use super::action::Action;
use super::scripting::Script;
use super::session::Session;
use super::tx_cmd::TxCmd;
pub use super::tx_cmd::{FunctionCmd, Policy};
use super::util::{arity, exec_error, help, is, syntax_error, unknown_sub};
use crate::db::DbRouter;
use crate::functions::{self, Loaded, RefreshError};
use crate::keyspace::Db;
use crate::resp::Reply;
use crate::shared::Shared;

const FUNCTION_HELP: &[&str] = &[
    "FUNCTION <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "LOAD [REPLACE] <FUNCTION CODE>",
    "    Create a new library with the given library name and code.",
    "DELETE <LIBRARY NAME>",
    "    Delete the given library.",
    "LIST [LIBRARYNAME PATTERN] [WITHCODE]",
    "    Return general information on all the libraries:",
    "    * Library name",
    "    * The engine used to run the Library",
    "    * Library description",
    "    * Functions list",
    "    * Library code (if WITHCODE is given)",
    "    It also possible to get only function that matches a pattern using LIBRARYNAME argument.",
    "STATS",
    "    Return information about the current function running:",
    "    * Function name",
    "    * Command used to run the function",
    "    * Duration in MS that the function is running",
    "    If no function is running, return nil",
    "    In addition, returns a list of available engines.",
    "KILL",
    "    Kill the current running function.",
    "FLUSH [ASYNC|SYNC]",
    "    Delete all the libraries.",
    "    When called without the optional mode argument, the behavior is determined by the",
    "    lazyfree-lazy-user-flush configuration directive. Valid modes are:",
    "    * ASYNC: Asynchronously flush the libraries.",
    "    * SYNC: Synchronously flush the libraries.",
    "DUMP",
    "    Return a serialized payload representing the current libraries, can be restored using FUNCTION RESTORE command",
    "RESTORE <PAYLOAD> [FLUSH|APPEND|REPLACE]",
    "    Restore the libraries represented by the given payload, it is possible to give a restore policy to",
    "    control how to handle existing libraries (default APPEND):",
    "    * FLUSH: delete all existing libraries.",
    "    * APPEND: appends the restored libraries to the existing libraries. On collision, abort.",
    "    * REPLACE: appends the restored libraries to the existing libraries, On collision, replace the old",
    "      libraries with the new libraries (notice that even on this option there is a chance of failure",
    "      in case of functions name collision with another library).",
    "HELP",
    "    Prints this help.",
];

/// Dispatches `FUNCTION`, `FCALL` and `FCALL_RO`.
pub fn dispatch(shared: &Shared, sess: &Session, name: &str, args: &[Bytes]) -> Action {
    match name {
        "fcall" | "fcall_ro" => {
            let read_only = name == "fcall_ro";
            match shared.functions.fresh(&args[1]) {
                Some((loaded, flags)) => {
                    let user = super::scripting::script_user(sess);
                    call(sess.db, &loaded, flags, &args[1..], read_only, user)
                }
                None => Action::Tx(TxCmd::Function(FunctionCmd::Call {
                    args: args[1..].to_vec(),
                    read_only,
                    user: super::scripting::script_user(sess),
                })),
            }
        }
        _ => function(shared, args),
    }
}

/// `FUNCTION` subcommands with Redis's arities (negative: at least).
const SUBCOMMANDS: &[(&str, i32)] = &[
    ("delete", 3),
    ("dump", 2),
    ("flush", -2),
    ("help", 2),
    ("kill", 2),
    ("list", -2),
    ("load", -3),
    ("restore", -3),
    ("stats", 2),
];

fn function(shared: &Shared, args: &[Bytes]) -> Action {
    let sub = &args[1];
    let Some(&(name, arity_n)) = SUBCOMMANDS.iter().find(|(s, _)| is(sub, s)) else {
        return Action::Reply(unknown_sub("function", sub));
    };
    let n = i32::try_from(args.len()).unwrap_or(i32::MAX);
    if (arity_n > 0 && n != arity_n) || (arity_n < 0 && n < -arity_n) {
        return Action::Reply(arity(&format!("function|{name}")));
    }
    let tx = |f: FunctionCmd| Action::Tx(TxCmd::Function(f));
    match name {
        "load" => {
            let options = &args[2..args.len() - 1];
            if let Some(bad) = options.iter().find(|o| !is(o, "replace")) {
                return Action::Reply(Reply::err(format_args!(
                    "Unknown option given: {}",
                    String::from_utf8_lossy(bad)
                )));
            }
            tx(FunctionCmd::Load {
                code: args[args.len() - 1].clone(),
                replace: !options.is_empty(),
            })
        }
        "delete" => tx(FunctionCmd::Delete(args[2].clone())),
        "flush" => match &args[2..] {
            [] => tx(FunctionCmd::Flush),
            [mode] if is(mode, "sync") || is(mode, "async") => tx(FunctionCmd::Flush),
            [_] => Action::Reply(Reply::err("FUNCTION FLUSH only supports SYNC|ASYNC option")),
            _ => Action::Reply(syntax_error("function", sub)),
        },
        "list" => list_args(&args[2..]).map_or_else(Action::Reply, tx),
        "stats" => tx(FunctionCmd::Stats),
        "dump" => tx(FunctionCmd::Dump),
        "restore" => {
            let policy = match &args[3..] {
                [] => Policy::Append,
                [p] if is(p, "append") => Policy::Append,
                [p] if is(p, "replace") => Policy::Replace,
                [p] if is(p, "flush") => Policy::Flush,
                [_] => {
                    return Action::Reply(Reply::err(
                        "Wrong restore policy given, value should be either FLUSH, APPEND or REPLACE.",
                    ));
                }
                _ => return Action::Reply(syntax_error("function", sub)),
            };
            tx(FunctionCmd::Restore {
                payload: args[2].clone(),
                policy,
            })
        }
        "kill" => Action::Reply(super::scripting::kill(
            shared,
            script::running::Kind::Function,
        )),
        _ => Action::Reply(help(FUNCTION_HELP)),
    }
}

fn list_args(args: &[Bytes]) -> Result<FunctionCmd, Reply> {
    let mut pattern = None;
    let mut with_code = false;
    let mut i = 0;
    while i < args.len() {
        if is(&args[i], "withcode") && !with_code {
            with_code = true;
        } else if is(&args[i], "libraryname") && pattern.is_none() {
            let Some(p) = args.get(i + 1) else {
                return Err(Reply::err("library name argument was not given"));
            };
            pattern = Some(p.clone());
            i += 1;
        } else {
            return Err(Reply::err(format_args!(
                "Unknown argument {}",
                String::from_utf8_lossy(&args[i])
            )));
        }
        i += 1;
    }
    Ok(FunctionCmd::List { pattern, with_code })
}

/// `FCALL function numkeys key... arg...` of a library this proxy knows.
fn call(
    db: Db,
    loaded: &Loaded,
    flags: script::Flags,
    rest: &[Bytes],
    ro_command: bool,
    user: Option<Bytes>,
) -> Action {
    let reply = |r: Reply| Action::Reply(r);
    let numkeys = match super::util::parse_i64(&rest[1]) {
        None => return reply(Reply::err("Bad number of keys provided")),
        Some(n) if n < 0 => return reply(Reply::err("Number of keys can't be negative")),
        Some(n) => n,
    };
    let args = &rest[2..];
    let Some(numkeys) = usize::try_from(numkeys).ok().filter(|&n| n <= args.len()) else {
        return reply(Reply::err(
            "Number of keys can't be greater than number of args",
        ));
    };
    if ro_command && !flags.no_writes {
        return reply(Reply::err(
            "Can not execute a script with write flag using *_ro command.",
        ));
    }
    let (keys, argv) = args.split_at(numkeys);
    // The name as registered (callers may write it in any case).
    let name = loaded
        .library
        .functions
        .iter()
        .find(|f| f.name.as_bytes().eq_ignore_ascii_case(&rest[0]))
        .map_or_else(|| rest[0].clone(), |f| Bytes::from(f.name.clone()));
    let script = Script {
        code: loaded.code.clone(),
        function: Some(name),
        keys,
        argv,
        read_only: ro_command || flags.no_writes,
        user,
    };
    super::scripting::run(db, script)
}

/// Runs a function command that needs the cluster.
pub async fn run(shared: &Shared, router: &DbRouter<'_>, cmd: FunctionCmd) -> Reply {
    let registry = &shared.functions;
    match cmd {
        FunctionCmd::Call {
            args,
            read_only,
            user,
        } => {
            if let Err(e) = functions::refresh(router.raw(), registry).await {
                // The copy this proxy has still serves when the cluster cannot be read.
                if registry.any(&args[0]).is_none() {
                    return refresh_error(e);
                }
            }
            let Some((loaded, flags)) = registry.any(&args[0]) else {
                return Reply::err("Function not found");
            };
            match call(router.db(), &loaded, flags, &args, read_only, user) {
                Action::Data { ops, finish } => finish(router.exec(ops).await),
                Action::Reply(r) => r,
                _ => Reply::err("internal error: FCALL planned no operation"),
            }
        }
        FunctionCmd::Load { code, replace } => load(shared, router, code, replace).await,
        FunctionCmd::Delete(name) => delete(shared, router, name).await,
        FunctionCmd::Flush => flush(shared, router).await,
        FunctionCmd::List { pattern, with_code } => {
            if let Err(e) = functions::refresh(router.raw(), registry).await {
                return refresh_error(e);
            }
            list(&registry.all(), pattern.as_deref(), with_code)
        }
        FunctionCmd::Stats => {
            if let Err(e) = functions::refresh(router.raw(), registry).await {
                return refresh_error(e);
            }
            stats(&registry.all())
        }
        FunctionCmd::Dump => {
            if let Err(e) = functions::refresh(router.raw(), registry).await {
                return refresh_error(e);
            }
            let all = registry.all();
            Reply::Bulk(Bytes::from(crate::rdb::encode_functions(
                all.iter().map(|l| &l.code[..]),
            )))
        }
        FunctionCmd::Restore { payload, policy } => restore(shared, router, &payload, policy).await,
    }
}

fn refresh_error(e: RefreshError) -> Reply {
    match e {
        RefreshError::Read(e) => exec_error(&e),
        RefreshError::Load(reply) => reply,
    }
}

async fn load(shared: &Shared, router: &DbRouter<'_>, code: Bytes, replace: bool) -> Reply {
    let loaded = match functions::parse(&code) {
        Ok(l) => l,
        Err(reply) => return reply,
    };
    if let Err(e) = functions::refresh(router.raw(), &shared.functions).await {
        return refresh_error(e);
    }
    let name = loaded.library.name.clone();
    // A function name belongs to one library (the one being replaced may keep it).
    for other in shared.functions.all() {
        if other.library.name == name {
            if !replace {
                return Reply::err(format_args!("Library '{name}' already exists"));
            }
            continue;
        }
        for f in &loaded.library.functions {
            if other.library.functions.iter().any(|g| g.name == f.name) {
                return Reply::err(format_args!("Function {} already exists", f.name));
            }
        }
    }
    let key = functions::library_key(&name);
    let put = KvOp::Put {
        key: key.clone(),
        value: code,
        expiry: Expiry::Persist {},
        cond: if replace {
            Cond::Always {}
        } else {
            Cond::IfAbsent {}
        },
        return_old: false,
    };
    match router.raw().exec(vec![(key, put)]).await.pop() {
        Some(Ok(OpResult::Written { written: false })) => {
            Reply::err(format_args!("Library '{name}' already exists"))
        }
        Some(Ok(_)) => {
            shared.functions.put(loaded);
            Reply::Bulk(Bytes::from(name))
        }
        Some(Err(e)) => exec_error(&e),
        None => Reply::err("internal error: no result"),
    }
}

/// `FUNCTION RESTORE`: every library of the payload is parsed and checked against the ones
/// there before anything is written; then they are written one by one (a crash in between
/// leaves some restored: each library is whole).
async fn restore(shared: &Shared, router: &DbRouter<'_>, payload: &[u8], policy: Policy) -> Reply {
    let codes = match crate::rdb::decode_functions(payload) {
        Ok(c) => c,
        Err(e) => return Reply::err(format_args!("{e}")),
    };
    let mut incoming = Vec::with_capacity(codes.len());
    for code in &codes {
        match functions::parse(code) {
            Ok(l) => incoming.push(l),
            Err(reply) => return reply,
        }
    }
    if let Err(e) = functions::refresh(router.raw(), &shared.functions).await {
        return refresh_error(e);
    }
    let existing = if policy == Policy::Flush {
        Vec::new()
    } else {
        shared.functions.all()
    };
    if let Err(reply) = check_join(&existing, &incoming, policy == Policy::Replace) {
        return reply;
    }
    if policy == Policy::Flush {
        let reply = flush(shared, router).await;
        if reply != Reply::OK {
            return reply;
        }
    }
    for loaded in incoming {
        let key = functions::library_key(&loaded.library.name);
        let put = KvOp::Put {
            key: key.clone(),
            value: loaded.code.clone(),
            expiry: Expiry::Persist {},
            cond: Cond::Always {},
            return_old: false,
        };
        match router.raw().exec(vec![(key, put)]).await.pop() {
            Some(Ok(_)) => shared.functions.put(loaded),
            Some(Err(e)) => return exec_error(&e),
            None => return Reply::err("internal error: no result"),
        }
    }
    Reply::OK
}

/// Redis's `libraryJoin`: a library name already there is an error unless `replace`; a
/// function name may belong to one library only.
fn check_join(existing: &[Loaded], incoming: &[Loaded], replace: bool) -> Result<(), Reply> {
    let kept: Vec<&Loaded> = existing
        .iter()
        .filter(|e| {
            let clash = incoming.iter().any(|i| i.library.name == e.library.name);
            !(clash && replace)
        })
        .collect();
    for i in incoming {
        if kept.iter().any(|e| e.library.name == i.library.name) {
            return Err(Reply::err(format_args!(
                "Library {} already exists",
                i.library.name
            )));
        }
    }
    let mut seen: Vec<&str> = kept
        .iter()
        .flat_map(|l| l.library.functions.iter().map(|f| f.name.as_str()))
        .collect();
    for i in incoming {
        for f in &i.library.functions {
            if seen.contains(&f.name.as_str()) {
                return Err(Reply::err(format_args!(
                    "Function {} already exists",
                    f.name
                )));
            }
            seen.push(&f.name);
        }
    }
    Ok(())
}

async fn delete(shared: &Shared, router: &DbRouter<'_>, name: Bytes) -> Reply {
    let Ok(name) = std::str::from_utf8(&name) else {
        return Reply::err("Library not found");
    };
    let key = functions::library_key(name);
    let get = KvOp::Get { key: key.clone() };
    match router.raw().exec(vec![(key.clone(), get)]).await.pop() {
        Some(Ok(OpResult::Value { value: Some(_) })) => {}
        Some(Ok(_)) => return Reply::err("Library not found"),
        Some(Err(e)) => return exec_error(&e),
        None => return Reply::err("internal error: no result"),
    }
    match router
        .raw()
        .exec(vec![(key.clone(), KvOp::Delete { key })])
        .await
        .pop()
    {
        Some(Ok(_)) => {
            shared.functions.remove(name);
            Reply::OK
        }
        Some(Err(e)) => exec_error(&e),
        None => Reply::err("internal error: no result"),
    }
}

async fn flush(shared: &Shared, router: &DbRouter<'_>) -> Reply {
    let codes = match functions::read_all(router.raw()).await {
        Ok(c) => c,
        Err(e) => return exec_error(&e),
    };
    for code in &codes {
        // Each stored library names itself in its shebang; one that no longer parses is
        // found by its key instead.
        let Ok(loaded) = functions::parse(code) else {
            continue;
        };
        let key = functions::library_key(&loaded.library.name);
        if let Some(Err(e)) = router
            .raw()
            .exec(vec![(key.clone(), KvOp::Delete { key })])
            .await
            .pop()
        {
            return exec_error(&e);
        }
    }
    shared.functions.set_all(Vec::new());
    Reply::OK
}

fn list(libraries: &[Loaded], pattern: Option<&[u8]>, with_code: bool) -> Reply {
    let status = |s: &str| Reply::Status(s.into());
    Reply::Array(
        libraries
            .iter()
            .filter(|l| {
                pattern
                    .is_none_or(|p| crate::glob::Pattern::new(p).matches(l.library.name.as_bytes()))
            })
            .map(|l| {
                let functions = l
                    .library
                    .functions
                    .iter()
                    .map(|f| {
                        Reply::Map(vec![
                            (
                                Reply::bulk(b"name"),
                                Reply::Bulk(Bytes::from(f.name.clone())),
                            ),
                            (
                                Reply::bulk(b"description"),
                                f.description
                                    .clone()
                                    .map_or(Reply::Nil, |d| Reply::Bulk(Bytes::from(d))),
                            ),
                            (
                                Reply::bulk(b"flags"),
                                Reply::Set(flag_names(f.flags).map(status).collect()),
                            ),
                        ])
                    })
                    .collect();
                let mut fields = vec![
                    (
                        Reply::bulk(b"library_name"),
                        Reply::Bulk(Bytes::from(l.library.name.clone())),
                    ),
                    (Reply::bulk(b"engine"), Reply::bulk(b"LUA")),
                    (Reply::bulk(b"functions"), Reply::Array(functions)),
                ];
                if with_code {
                    fields.push((Reply::bulk(b"library_code"), Reply::Bulk(l.code.clone())));
                }
                Reply::Map(fields)
            })
            .collect(),
    )
}

/// The names of `flags`, in Redis's order.
fn flag_names(flags: script::Flags) -> impl Iterator<Item = &'static str> {
    [
        (flags.no_writes, "no-writes"),
        (flags.allow_oom, "allow-oom"),
        (flags.allow_stale, "allow-stale"),
        (flags.no_cluster, "no-cluster"),
        (flags.allow_cross_slot_keys, "allow-cross-slot-keys"),
    ]
    .into_iter()
    .filter_map(|(set, name)| set.then_some(name))
}

/// The script running longest in this process whose command is known (`script::running`),
/// as Redis describes its running script; nil when none.
fn running_script() -> Reply {
    let Some((origin, took)) = script::running::longest_known() else {
        return Reply::Nil;
    };
    let ms = i64::try_from(took.as_millis()).unwrap_or(i64::MAX);
    Reply::Map(vec![
        (Reply::bulk(b"name"), Reply::Bulk(origin.name)),
        (
            Reply::bulk(b"command"),
            Reply::Array(origin.command.into_iter().map(Reply::Bulk).collect()),
        ),
        (Reply::bulk(b"duration_ms"), Reply::Int(ms)),
    ])
}

fn stats(libraries: &[Loaded]) -> Reply {
    let functions: usize = libraries.iter().map(|l| l.library.functions.len()).sum();
    let count = |n: usize| Reply::Int(i64::try_from(n).unwrap_or(i64::MAX));
    Reply::Map(vec![
        (Reply::bulk(b"running_script"), running_script()),
        (
            Reply::bulk(b"engines"),
            Reply::Map(vec![(
                Reply::bulk(b"LUA"),
                Reply::Map(vec![
                    (Reply::bulk(b"libraries_count"), count(libraries.len())),
                    (Reply::bulk(b"functions_count"), count(functions)),
                ]),
            )]),
        ),
    ])
}
