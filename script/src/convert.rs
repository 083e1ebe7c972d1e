//! Redis replies ↔ Lua values, by Redis 7's rules (`script_lua.c`).

use bytes::Bytes;
use mlua::{Lua, Table, Value as Lv};

use crate::numfmt::fmt_g;
use crate::{Resp, Value};

/// How deep a returned table may nest before its element becomes an error (Redis stops at
/// its Lua stack limit).
const MAX_REPLY_DEPTH: usize = 1000;

/// A command reply as the script sees it (`redisProtocolToLuaType`).
pub(crate) fn reply_to_lua(lua: &Lua, v: &Value, resp: Resp) -> mlua::Result<Lv> {
    Ok(match v {
        Value::Nil if resp == Resp::Three => Lv::Nil,
        Value::Nil => Lv::Boolean(false),
        Value::Int(i) => Lv::Number(*i as f64),
        Value::Bulk(b) => Lv::String(lua.create_string(b)?),
        Value::Status(s) => single(lua, "ok", Lv::String(lua.create_string(s)?))?,
        Value::Error(e) => error_table(lua, &format!("-{e}"))?,
        Value::Array(items) => {
            let t = lua.create_table_with_capacity(items.len(), 0)?;
            for (i, item) in items.iter().enumerate() {
                t.raw_set(i + 1, reply_to_lua(lua, item, resp)?)?;
            }
            Lv::Table(t)
        }
        Value::Map(pairs) => {
            let m = lua.create_table()?;
            for (k, v) in pairs {
                m.raw_set(reply_to_lua(lua, k, resp)?, reply_to_lua(lua, v, resp)?)?;
            }
            single(lua, "map", Lv::Table(m))?
        }
        Value::Set(items) => {
            let s = lua.create_table()?;
            for item in items {
                s.raw_set(reply_to_lua(lua, item, resp)?, true)?;
            }
            single(lua, "set", Lv::Table(s))?
        }
        Value::Double(d) => single(lua, "double", Lv::Number(*d))?,
        Value::Bool(b) => Lv::Boolean(*b),
        Value::BigNumber(n) => single(lua, "big_number", Lv::String(lua.create_string(n)?))?,
        Value::Verbatim(format, text) => {
            let inner = lua.create_table()?;
            inner.raw_set("string", lua.create_string(text)?)?;
            inner.raw_set("format", lua.create_string(format)?)?;
            single(lua, "verbatim_string", Lv::Table(inner))?
        }
    })
}

fn single(lua: &Lua, key: &str, v: Lv) -> mlua::Result<Lv> {
    let t = lua.create_table_with_capacity(0, 1)?;
    t.raw_set(key, v)?;
    Ok(Lv::Table(t))
}

/// `luaPushErrorBuff`: `-CODE msg` keeps its code, a bare `msg` gets `ERR`; trailing CR/LF go.
pub(crate) fn error_text(raw: &str) -> String {
    let (code, msg) = match raw.strip_prefix('-') {
        Some(rest) => match rest.split_once(' ') {
            Some((code, msg)) => (code, msg),
            None => ("ERR", rest),
        },
        None => ("ERR", raw),
    };
    format!("{code} {}", msg.trim_matches(['\r', '\n']))
}

/// `{err = ...}` as `luaPushErrorBuff` builds it from `raw`.
pub(crate) fn error_table(lua: &Lua, raw: &str) -> mlua::Result<Lv> {
    single(lua, "err", Lv::String(lua.create_string(error_text(raw))?))
}

/// A script's return value as a reply (`luaReplyToRedisReply`); `resp` is the protocol the
/// script chose with `redis.setresp` (it decides how booleans come back).
pub(crate) fn lua_to_reply(v: &Lv, resp: Resp) -> Value {
    to_reply(v, resp, 0)
}

fn to_reply(v: &Lv, resp: Resp, depth: usize) -> Value {
    if depth > MAX_REPLY_DEPTH {
        return Value::Error("ERR reached lua stack limit".into());
    }
    match v {
        Lv::String(s) => Value::Bulk(Bytes::copy_from_slice(&s.as_bytes())),
        Lv::Boolean(b) => match (resp, b) {
            (Resp::Two, true) => Value::Int(1),
            (Resp::Two, false) => Value::Nil,
            (Resp::Three, b) => Value::Bool(*b),
        },
        Lv::Integer(i) => Value::Int(*i),
        Lv::Number(n) => Value::Int(*n as i64),
        Lv::Table(t) => table_to_reply(t, resp, depth),
        _ => Value::Nil,
    }
}

fn table_to_reply(t: &Table, resp: Resp, depth: usize) -> Value {
    let field = |k: &str| t.raw_get::<Lv>(k).unwrap_or(Lv::Nil);
    if let Lv::String(e) = field("err") {
        let text = String::from_utf8_lossy(&e.as_bytes()).into_owned();
        return Value::Error(text);
    }
    if let Lv::String(s) = field("ok") {
        return Value::Status(one_line(&s.as_bytes()));
    }
    if let Some(d) = number(&field("double")) {
        return Value::Double(d);
    }
    if let Lv::String(s) = field("big_number") {
        return Value::BigNumber(one_line(&s.as_bytes()));
    }
    if let Some(v) = verbatim(&field("verbatim_string")) {
        return v;
    }
    if let Lv::Table(m) = field("map") {
        let pairs = m
            .pairs::<Lv, Lv>()
            .filter_map(Result::ok)
            .map(|(k, v)| (to_reply(&k, resp, depth + 1), to_reply(&v, resp, depth + 1)))
            .collect();
        return Value::Map(pairs);
    }
    if let Lv::Table(s) = field("set") {
        let items = s
            .pairs::<Lv, Lv>()
            .filter_map(Result::ok)
            .map(|(k, _)| to_reply(&k, resp, depth + 1))
            .collect();
        return Value::Set(items);
    }
    let mut items = Vec::new();
    for i in 1.. {
        match t.raw_get::<Lv>(i) {
            Ok(Lv::Nil) | Err(_) => break,
            Ok(v) => items.push(to_reply(&v, resp, depth + 1)),
        }
    }
    Value::Array(items)
}

fn number(v: &Lv) -> Option<f64> {
    match v {
        Lv::Integer(i) => Some(*i as f64),
        Lv::Number(n) => Some(*n),
        _ => None,
    }
}

fn verbatim(v: &Lv) -> Option<Value> {
    let Lv::Table(t) = v else { return None };
    let Ok(Lv::String(format)) = t.raw_get::<Lv>("format") else {
        return None;
    };
    let Ok(Lv::String(text)) = t.raw_get::<Lv>("string") else {
        return None;
    };
    let format = String::from_utf8_lossy(&format.as_bytes()).into_owned();
    Some(Value::Verbatim(
        format,
        Bytes::copy_from_slice(&text.as_bytes()),
    ))
}

/// Status and big-number texts have CR and LF replaced by spaces, as Redis does.
fn one_line(b: &[u8]) -> String {
    String::from_utf8_lossy(b).replace(['\r', '\n'], " ")
}

/// A `redis.call` argument (`luaArgsToRedisArgv`): strings as they are, numbers as `%.17g`.
pub(crate) fn lua_to_arg(v: &Lv) -> Option<Bytes> {
    match v {
        Lv::String(s) => Some(Bytes::copy_from_slice(&s.as_bytes())),
        Lv::Integer(i) => Some(Bytes::from(fmt_g(*i as f64, 17))),
        Lv::Number(n) => Some(Bytes::from(fmt_g(*n, 17))),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::error_text;

    #[test]
    fn error_texts_keep_their_code_or_get_err() {
        assert_eq!(error_text("-WRONGTYPE bad"), "WRONGTYPE bad");
        assert_eq!(error_text("-x y"), "x y");
        assert_eq!(error_text("-x"), "ERR x");
        assert_eq!(error_text("plain text"), "ERR plain text");
        assert_eq!(error_text("-ERR trailing\r\n"), "ERR trailing");
    }
}
