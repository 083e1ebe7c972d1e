//! The libraries Redis loads besides Lua's own: `bit`, `cjson`, `struct`, `cmsgpack`.
//! Each is a table of Rust functions; their errors read as Redis's (`luaL_error` texts).

mod bit;
mod cjson;
pub(crate) mod cjson_config;
mod cmsgpack;
mod structlib;

use mlua::{Lua, MultiValue, Table, Value as Lv};

/// An error message starting with this is raised without the caller's position (as Lua's
/// own errors from inside a C function are).
pub(crate) const UNPOSITIONED: char = '\u{1}';

/// A library function: its results, or the error message Lua raises.
pub(crate) type LibResult = Result<Vec<Lv>, String>;

/// Registers `raw.libs.<name>` for every library.
pub(crate) fn register(lua: &Lua, raw: &Table) -> mlua::Result<()> {
    let libs = lua.create_table()?;
    libs.set("bit", bit::table(lua)?)?;
    libs.set("cjson", cjson::table(lua)?)?;
    libs.set("struct", structlib::table(lua)?)?;
    libs.set("cmsgpack", cmsgpack::table(lua)?)?;
    raw.set("libs", libs)
}

/// Wraps `f` as a Lua function; its `Err` is raised as `luaL_error` would.
pub(crate) fn lib_fn(
    lua: &Lua,
    f: impl Fn(&Lua, MultiValue) -> mlua::Result<LibResult> + 'static,
) -> mlua::Result<mlua::Function> {
    lua.create_function(move |lua, args: MultiValue| match f(lua, args)? {
        Ok(values) => Ok(MultiValue::from_vec(values)),
        Err(msg) => match msg.strip_prefix(UNPOSITIONED) {
            Some(plain) => Err(crate::errors::plain_error(plain)),
            None => Err(crate::errors::message_error(lua, &msg)),
        },
    })
}

/// `luaL_checknumber`: numbers, and strings that read as numbers.
pub(crate) fn check_number(args: &MultiValue, i: usize, fname: &str) -> Result<f64, String> {
    let v = args.get(i);
    let n = match v {
        Some(Lv::Integer(n)) => Some(*n as f64),
        Some(Lv::Number(n)) => Some(*n),
        Some(Lv::String(s)) => std::str::from_utf8(&s.as_bytes())
            .ok()
            .and_then(parse_lua_number),
        _ => None,
    };
    n.ok_or_else(|| {
        let got = v.map_or("no value", Lv::type_name);
        format!(
            "bad argument #{} to '{fname}' (number expected, got {got})",
            i + 1
        )
    })
}

/// Lua's string → number (`lua_str2number`: decimal or `0x` hex, spaces around).
pub(crate) fn parse_lua_number(s: &str) -> Option<f64> {
    let t = s.trim();
    if let Some(hex) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        return u64::from_str_radix(hex, 16).ok().map(|n| n as f64);
    }
    t.parse().ok()
}
