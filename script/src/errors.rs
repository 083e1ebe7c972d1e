//! Errors raised by the Rust side of the sandbox, and how scripts see them.
//!
//! mlua raises a Rust function's error as a userdata, where Redis's C functions raise a
//! string or an `{err = ...}` table. The error handler and the sandbox's `pcall`/`xpcall`
//! turn these userdata back into what a Redis script would have caught.

use mlua::{Lua, Value as Lv};

/// An error a library or `redis.*` function raises.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ScriptError {
    /// Redis raises the table `{err = <text>}` (`redis.call` and its argument errors).
    #[error("{0}")]
    Reply(String),
    /// Redis raises this string (`luaL_error`: position of the caller, then the message).
    #[error("{0}")]
    Message(String),
}

/// Raises `{err = text}` (text already has its code: `ERR ...`).
pub(crate) fn reply_error(text: String) -> mlua::Error {
    mlua::Error::external(ScriptError::Reply(text))
}

/// Raises `msg` the way `luaL_error` does: prefixed with the calling line of the script.
pub(crate) fn message_error(lua: &Lua, msg: &str) -> mlua::Error {
    mlua::Error::external(ScriptError::Message(format!(
        "{}{msg}",
        caller_position(lua)
    )))
}

/// Raises `msg` as it is.
pub(crate) fn plain_error(msg: &str) -> mlua::Error {
    mlua::Error::external(ScriptError::Message(msg.to_string()))
}

/// `luaL_where(L, 1)`: `user_script:3: ` when the caller is Lua code, else nothing.
fn caller_position(lua: &Lua) -> String {
    lua.inspect_stack(1, |d| {
        let line = d.current_line()?;
        let src = d.source();
        let short = src.short_src.as_deref()?.to_string();
        Some(format!("{short}:{line}: "))
    })
    .flatten()
    .unwrap_or_default()
}

/// The [`ScriptError`] inside an mlua error, if it carries one.
pub(crate) fn script_error(e: &mlua::Error) -> Option<&ScriptError> {
    match e {
        mlua::Error::CallbackError { cause, .. } => script_error(cause),
        mlua::Error::WithContext { cause, .. } => script_error(cause),
        mlua::Error::ExternalError(inner) => inner.downcast_ref::<ScriptError>(),
        _ => None,
    }
}

/// What a script's `pcall` returns as the error (`as_table` false) or its `xpcall` handler
/// receives (`as_table` true) for an error value `e`.
pub(crate) fn translate(lua: &Lua, e: Lv, as_table: bool) -> mlua::Result<Lv> {
    let Lv::Error(err) = &e else { return Ok(e) };
    match script_error(err) {
        Some(ScriptError::Reply(text)) if as_table => {
            let t = lua.create_table()?;
            t.raw_set("err", text.as_str())?;
            Ok(Lv::Table(t))
        }
        Some(ScriptError::Reply(text) | ScriptError::Message(text)) => {
            Ok(Lv::String(lua.create_string(text)?))
        }
        None => Ok(Lv::String(lua.create_string(err.to_string())?)),
    }
}
