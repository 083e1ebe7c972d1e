//! The Rust side of `redis.*` (the Lua side is in `prelude.lua`) and `math.random`.

use std::cell::Cell;
use std::rc::Rc;

use mlua::{Lua, MultiValue, Table, Value as Lv};

use crate::convert::{error_table, error_text, lua_to_arg, reply_to_lua};
use crate::errors::{message_error, reply_error};
use crate::host_slot::HostSlot;
use crate::rand48::{self, Rand48};
use crate::{Host, Resp, sha1};

/// What the functions of one VM share about the run under way.
#[derive(Debug)]
pub(crate) struct RunState {
    pub(crate) resp: Cell<Resp>,
    pub(crate) rand: Cell<Rand48>,
    /// Instructions counted by the hook in this run.
    pub(crate) instructions: Cell<u64>,
    /// The run went over its instruction budget.
    pub(crate) killed: Cell<bool>,
    /// The run was stopped by `SCRIPT KILL` / `FUNCTION KILL`.
    pub(crate) killed_by_user: Cell<bool>,
    /// `redis.log` lines a script asked for (they are counted, not written).
    pub(crate) logged: Cell<u64>,
    /// The host `redis.call` runs commands with during a run.
    pub(crate) host: HostSlot,
}

impl RunState {
    pub(crate) fn new() -> Self {
        Self {
            resp: Cell::new(Resp::Two),
            rand: Cell::new(Rand48::new(0)),
            instructions: Cell::new(0),
            killed: Cell::new(false),
            killed_by_user: Cell::new(false),
            logged: Cell::new(0),
            host: HostSlot::default(),
        }
    }
}

type Out = mlua::Result<MultiValue>;

fn none() -> Out {
    Ok(MultiValue::new())
}

/// Raises `{err = "ERR <msg>"}` as `luaPushError` + `luaError` do.
fn fail<T>(msg: &str) -> mlua::Result<T> {
    Err(reply_error(error_text(msg)))
}

/// `redis.call` (`raise`: an error reply is raised) and `redis.pcall` (it is returned).
pub(crate) fn host_call(
    lua: &Lua,
    host: &mut dyn Host,
    state: &RunState,
    raise: bool,
    args: MultiValue,
) -> mlua::Result<Lv> {
    let argv = if args.is_empty() {
        Err("Please specify at least one argument for this redis lib call")
    } else {
        args.iter()
            .map(lua_to_arg)
            .collect::<Option<Vec<_>>>()
            .ok_or("Lua redis lib command arguments must be strings or integers")
    };
    let argv = match argv {
        Ok(argv) => argv,
        Err(msg) if raise => return fail(msg),
        Err(msg) => return error_table(lua, msg),
    };
    let resp = state.resp.get();
    match host.call(&argv, resp) {
        crate::Value::Error(e) if raise => Err(reply_error(error_text(&format!("-{e}")))),
        reply => reply_to_lua(lua, &reply, resp),
    }
}

/// `redis.acl_check_cmd(cmd, args...)`: `true` or `false`; an unknown command raises.
pub(crate) fn acl_check(host: &mut dyn Host, args: MultiValue) -> mlua::Result<Lv> {
    if args.is_empty() {
        return fail("Please specify at least one argument for this redis lib call");
    }
    let Some(argv) = args.iter().map(lua_to_arg).collect::<Option<Vec<_>>>() else {
        return fail("Lua redis lib command arguments must be strings or integers");
    };
    match host.acl_check(&argv) {
        Ok(allowed) => Ok(Lv::Boolean(allowed)),
        Err(e) => Err(reply_error(error_text(&format!("-{e}")))),
    }
}

/// Registers the functions `prelude.lua` takes from `raw`.
pub(crate) fn register(
    lua: &Lua,
    raw: &Table,
    state: &Rc<RunState>,
    max_memory: usize,
) -> mlua::Result<()> {
    raw.set(
        "rep",
        lua.create_function(move |lua, args: MultiValue| rep(lua, &args, max_memory))?,
    )?;
    raw.set("sha1hex", lua.create_function(sha1hex)?)?;
    raw.set("error_reply", lua.create_function(error_reply)?)?;
    raw.set("status_reply", lua.create_function(status_reply)?)?;
    let s = Rc::clone(state);
    raw.set(
        "log",
        lua.create_function(move |_, args: MultiValue| log(&s, args))?,
    )?;
    let s = Rc::clone(state);
    raw.set(
        "setresp",
        lua.create_function(move |_, args: MultiValue| setresp(&s, args))?,
    )?;
    raw.set(
        "set_repl",
        lua.create_function(|_, args: MultiValue| set_repl(args))?,
    )?;
    raw.set(
        "translate",
        lua.create_function(|lua, (e, as_table): (Lv, bool)| {
            crate::errors::translate(lua, e, as_table)
        })?,
    )?;
    let s = Rc::clone(state);
    raw.set(
        "random",
        lua.create_function(move |lua, args: MultiValue| random(lua, &s, args))?,
    )?;
    let s = Rc::clone(state);
    raw.set(
        "randomseed",
        lua.create_function(move |lua, args: MultiValue| randomseed(lua, &s, args))?,
    )?;
    raw.set("version", "7.0.15")?;
    raw.set("version_num", 0x0007_000f)?;
    Ok(())
}

fn sha1hex(lua: &Lua, args: MultiValue) -> mlua::Result<Lv> {
    if args.len() != 1 {
        return fail("wrong number of arguments");
    }
    let bytes = lua_to_arg_str(&args[0]).unwrap_or_default();
    Ok(Lv::String(lua.create_string(sha1::sha1_hex(&bytes))?))
}

/// `lua_tolstring`: strings, and numbers as Lua prints them (`%.14g`).
pub(crate) fn lua_to_arg_str(v: &Lv) -> Option<Vec<u8>> {
    match v {
        Lv::String(s) => Some(s.as_bytes().to_vec()),
        Lv::Integer(i) => Some(i.to_string().into_bytes()),
        Lv::Number(n) => Some(crate::numfmt::fmt_g(*n, 14).into_bytes()),
        _ => None,
    }
}

fn single_string_arg(args: &MultiValue) -> Option<mlua::LuaString> {
    match (args.len(), args.front()) {
        (1, Some(Lv::String(s))) => Some(s.clone()),
        _ => None,
    }
}

fn error_reply(lua: &Lua, args: MultiValue) -> mlua::Result<Lv> {
    let Some(s) = single_string_arg(&args) else {
        return error_table(lua, "wrong number or type of arguments");
    };
    let text = String::from_utf8_lossy(&s.as_bytes()).into_owned();
    let text = if text.starts_with('-') {
        text
    } else {
        format!("-{text}")
    };
    error_table(lua, &text)
}

fn status_reply(lua: &Lua, args: MultiValue) -> mlua::Result<Lv> {
    let Some(s) = single_string_arg(&args) else {
        return error_table(lua, "wrong number or type of arguments");
    };
    let t = lua.create_table()?;
    t.raw_set("ok", s)?;
    Ok(Lv::Table(t))
}

fn number_arg(v: Option<&Lv>) -> Option<f64> {
    match v {
        Some(Lv::Integer(i)) => Some(*i as f64),
        Some(Lv::Number(n)) => Some(*n),
        Some(Lv::String(s)) => std::str::from_utf8(&s.as_bytes()).ok()?.trim().parse().ok(),
        _ => None,
    }
}

fn log(state: &RunState, args: MultiValue) -> Out {
    if args.len() < 2 {
        return fail("redis.log() requires two arguments or more.");
    }
    let Some(level) = number_arg(args.front()) else {
        return fail("First argument must be a number (log level).");
    };
    if !(0.0..4.0).contains(&level.trunc()) {
        return fail("Invalid debug level.");
    }
    state.logged.set(state.logged.get() + 1);
    none()
}

fn setresp(state: &RunState, args: MultiValue) -> Out {
    if args.len() != 1 {
        return fail("redis.setresp() requires one argument.");
    }
    match number_arg(args.front()).map(|n| n as i64) {
        Some(2) => state.resp.set(Resp::Two),
        Some(3) => state.resp.set(Resp::Three),
        _ => return fail("RESP version must be 2 or 3."),
    }
    none()
}

fn set_repl(args: MultiValue) -> Out {
    if args.len() != 1 {
        return fail("redis.set_repl() requires two arguments.");
    }
    let flags = number_arg(args.front()).unwrap_or(0.0) as i64;
    if flags & !3 != 0 {
        return fail(
            "Invalid replication flags. Use REPL_AOF, REPL_REPLICA, REPL_ALL or REPL_NONE.",
        );
    }
    none()
}

/// `luaL_checkint` and its error text.
pub(crate) fn check_int(args: &MultiValue, i: usize, fname: &str) -> Result<i64, String> {
    let v = args.get(i);
    number_arg(v).map(|n| n as i64).ok_or_else(|| {
        let got = v.map_or("no value", Lv::type_name);
        format!(
            "bad argument #{} to '{fname}' (number expected, got {got})",
            i + 1
        )
    })
}

fn result(lua: &Lua, r: Result<Lv, String>) -> mlua::Result<Lv> {
    r.map_err(|e| message_error(lua, &e))
}

fn random(lua: &Lua, state: &RunState, args: MultiValue) -> mlua::Result<Lv> {
    let mut g = state.rand.get();
    let r = (g.next() % rand48::MAX) as f64 / rand48::MAX as f64;
    state.rand.set(g);
    let value = match args.len() {
        0 => Ok(r),
        1 => check_int(&args, 0, "random").and_then(|u| {
            if u < 1 {
                Err("bad argument #1 to 'random' (interval is empty)".into())
            } else {
                Ok((r * u as f64).floor() + 1.0)
            }
        }),
        2 => check_int(&args, 0, "random").and_then(|l| {
            let u = check_int(&args, 1, "random")?;
            if l > u {
                Err("bad argument #2 to 'random' (interval is empty)".into())
            } else {
                Ok((r * (u - l + 1) as f64).floor() + l as f64)
            }
        }),
        _ => Err("wrong number of arguments".into()),
    };
    result(lua, value.map(Lv::Number))
}

fn randomseed(lua: &Lua, state: &RunState, args: MultiValue) -> mlua::Result<Lv> {
    result(
        lua,
        check_int(&args, 0, "randomseed").map(|seed| {
            state.rand.set(Rand48::new(seed as i32 as u32));
            Lv::Nil
        }),
    )
}

/// `string.rep(s, n)` without its one unbounded loop: Lua 5.1 appends an empty `s` `n` times
/// inside C, where the instruction budget cannot stop it. A result larger than the memory
/// limit fails at once instead of after filling memory.
fn rep(lua: &Lua, args: &MultiValue, max_memory: usize) -> mlua::Result<Lv> {
    let s = lua_to_arg_str(args.front().unwrap_or(&Lv::Nil)).ok_or_else(|| {
        let got = args.front().map_or("no value", Lv::type_name);
        message_error(
            lua,
            &format!("bad argument #1 to 'rep' (string expected, got {got})"),
        )
    })?;
    let n = check_int(args, 1, "rep").map_err(|e| message_error(lua, &e))?;
    if s.is_empty() || n <= 0 {
        return Ok(Lv::String(lua.create_string("")?));
    }
    let n = usize::try_from(n).unwrap_or(usize::MAX);
    match s.len().checked_mul(n) {
        Some(total) if total <= max_memory => Ok(Lv::String(lua.create_string(s.repeat(n))?)),
        _ => Err(message_error(lua, "not enough memory")),
    }
}
