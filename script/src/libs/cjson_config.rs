//! lua-cjson 2.1's configuration functions (`cjson.encode_max_depth`, `encode_sparse_array`,
//! `encode_number_precision`, `encode_invalid_numbers`, `decode_max_depth`,
//! `decode_invalid_numbers`, `encode_keep_buffer`), with Redis's copy's argument checks,
//! return values and error texts (`deps/lua/src/lua_cjson.c`).
//!
//! The configuration lives in the VM's app data. Unlike Redis, which keeps it in the Lua state
//! until the VM is reset, it goes back to lua-cjson's defaults before every run
//! ([`reset`], from `Vm::prepare`): a script that writes runs on every replica, each from
//! its own VM history, so a setting left by an earlier script would make replicas encode
//! differently. A script that sets and uses a setting sees the same as in Redis.

use mlua::{Lua, MultiValue, Table, Value as Lv};

use super::{LibResult, check_number, lib_fn};

/// What `cjson.encode_invalid_numbers` is set to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum InvalidNumbers {
    /// NaN and ±Inf are an error (`"off"`, `false`).
    Refuse,
    /// ±Inf as `%.14g` prints them (`inf`), NaN as `nan` (`"on"`, `true`).
    Print,
    /// Both as `null` (`"null"`).
    Null,
}

/// lua-cjson's configuration, defaults as Redis ships it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Config {
    /// Encode an excessively sparse array as an object instead of failing.
    pub sparse_convert: bool,
    /// Sparse when the largest index exceeds `items × ratio` (0: never).
    pub sparse_ratio: i64,
    /// Never sparse while the largest index is at most this.
    pub sparse_safe: i64,
    /// Deepest nesting `encode` accepts.
    pub encode_max_depth: i64,
    /// Deepest nesting `decode` accepts.
    pub decode_max_depth: i64,
    /// Significant digits of encoded numbers (1..=14).
    pub precision: i64,
    /// `encode_keep_buffer`: reuse of the encoding buffer (no effect on any output).
    pub keep_buffer: bool,
    /// NaN and Inf when encoding.
    pub encode_invalid: InvalidNumbers,
    /// Whether `decode` reads `inf`, `nan`, hex and leading zeros as numbers.
    pub decode_invalid: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            sparse_convert: false,
            sparse_ratio: 2,
            sparse_safe: 10,
            encode_max_depth: 1000,
            decode_max_depth: 1000,
            precision: 14,
            keep_buffer: true,
            encode_invalid: InvalidNumbers::Refuse,
            decode_invalid: true,
        }
    }
}

/// The VM's configuration now.
pub(crate) fn get(lua: &Lua) -> Config {
    lua.app_data_ref::<Config>().map(|c| *c).unwrap_or_default()
}

/// Back to the defaults (before every run; no allocation once set).
pub(crate) fn reset(lua: &Lua) {
    match lua.app_data_mut::<Config>() {
        Some(mut c) => *c = Config::default(),
        None => {
            lua.set_app_data(Config::default());
        }
    }
}

fn update(lua: &Lua, f: impl FnOnce(&mut Config)) {
    let mut c = get(lua);
    f(&mut c);
    match lua.app_data_mut::<Config>() {
        Some(mut slot) => *slot = c,
        None => {
            lua.set_app_data(c);
        }
    }
}

/// Adds the configuration functions to the `cjson` table.
pub(crate) fn register(lua: &Lua, t: &Table) -> mlua::Result<()> {
    t.set("encode_sparse_array", lib_fn(lua, encode_sparse_array)?)?;
    t.set(
        "encode_max_depth",
        lib_fn(lua, |l, a| depth(l, a, Side::Encode))?,
    )?;
    t.set(
        "decode_max_depth",
        lib_fn(lua, |l, a| depth(l, a, Side::Decode))?,
    )?;
    t.set("encode_number_precision", lib_fn(lua, precision)?)?;
    let keep = lib_fn(lua, |l, a| {
        on_off(
            l,
            &a,
            "encode_keep_buffer",
            |c| c.keep_buffer,
            |c, on| c.keep_buffer = on,
        )
    })?;
    t.set("encode_keep_buffer", keep)?;
    t.set("encode_invalid_numbers", lib_fn(lua, encode_invalid)?)?;
    let decode_invalid = lib_fn(lua, |l, a| {
        on_off(
            l,
            &a,
            "decode_invalid_numbers",
            |c| c.decode_invalid,
            |c, on| {
                c.decode_invalid = on;
            },
        )
    })?;
    t.set("decode_invalid_numbers", decode_invalid)?;
    Ok(())
}

/// `json_arg_init`: at most `n` arguments.
fn at_most(args: &MultiValue, n: usize, fname: &str) -> Result<(), String> {
    if args.len() > n {
        return Err(format!(
            "bad argument #{} to '{fname}' (found too many arguments)",
            n + 1
        ));
    }
    Ok(())
}

fn is_nil(args: &MultiValue, i: usize) -> bool {
    matches!(args.get(i), None | Some(Lv::Nil))
}

/// `json_integer_option`: argument `i` (if not nil) as an integer in `min..=max`, else the
/// current value. The range error names argument #1 whatever `i` is, as lua-cjson's does.
fn integer(
    args: &MultiValue,
    i: usize,
    fname: &str,
    (min, max): (i64, i64),
    current: i64,
) -> Result<i64, String> {
    if is_nil(args, i) {
        return Ok(current);
    }
    // `luaL_checkinteger`: a number (or numeric string), truncated to an integer.
    let v = check_number(args, i, fname)?.trunc();
    let v = if v.is_finite() { v as i64 } else { i64::MIN };
    if v < min || v > max {
        return Err(format!(
            "bad argument #1 to '{fname}' (expected integer between {min} and {max})"
        ));
    }
    Ok(v)
}

/// `json_enum_option` over `options` (`None`: "off"/"on"), booleans allowed: the index of
/// the setting chosen by argument `i` (if not nil), else `current`.
fn choice(
    args: &MultiValue,
    i: usize,
    fname: &str,
    options: &[&str],
    current: usize,
) -> Result<usize, String> {
    match args.get(i) {
        None | Some(Lv::Nil) => Ok(current),
        Some(Lv::Boolean(b)) => Ok(usize::from(*b)),
        Some(Lv::String(s)) => {
            let s = s.as_bytes();
            options
                .iter()
                .position(|o| o.as_bytes() == &s[..])
                .ok_or_else(|| {
                    format!(
                        "bad argument #{} to '{fname}' (invalid option '{}')",
                        i + 1,
                        String::from_utf8_lossy(&s)
                    )
                })
        }
        Some(Lv::Integer(n)) => Err(invalid_option(i, fname, &n.to_string())),
        Some(Lv::Number(n)) => Err(invalid_option(i, fname, &crate::numfmt::fmt_g(*n, 14))),
        Some(other) => Err(format!(
            "bad argument #{} to '{fname}' (string expected, got {})",
            i + 1,
            other.type_name()
        )),
    }
}

fn invalid_option(i: usize, fname: &str, text: &str) -> String {
    format!(
        "bad argument #{} to '{fname}' (invalid option '{text}')",
        i + 1
    )
}

/// What `json_enum_option` returns: a boolean for settings 0 and 1, else the option's name.
fn shown(lua: &Lua, options: &[&str], setting: usize) -> mlua::Result<Lv> {
    match setting {
        0 | 1 => Ok(Lv::Boolean(setting == 1)),
        n => Ok(Lv::String(lua.create_string(options[n])?)),
    }
}

const OFF_ON: &[&str] = &["off", "on"];
const INT_MAX: i64 = i32::MAX as i64;

fn encode_sparse_array(lua: &Lua, args: MultiValue) -> mlua::Result<LibResult> {
    const NAME: &str = "encode_sparse_array";
    let c = get(lua);
    let outcome = at_most(&args, 3, NAME).and_then(|()| {
        let convert = choice(&args, 0, NAME, OFF_ON, usize::from(c.sparse_convert))? == 1;
        let ratio = integer(&args, 1, NAME, (0, INT_MAX), c.sparse_ratio)?;
        let safe = integer(&args, 2, NAME, (0, INT_MAX), c.sparse_safe)?;
        Ok((convert, ratio, safe))
    });
    let (convert, ratio, safe) = match outcome {
        Ok(v) => v,
        Err(e) => return Ok(Err(e)),
    };
    update(lua, |c| {
        c.sparse_convert = convert;
        c.sparse_ratio = ratio;
        c.sparse_safe = safe;
    });
    Ok(Ok(vec![
        Lv::Boolean(convert),
        Lv::Integer(ratio),
        Lv::Integer(safe),
    ]))
}

#[derive(Clone, Copy)]
enum Side {
    Encode,
    Decode,
}

fn depth(lua: &Lua, args: MultiValue, side: Side) -> mlua::Result<LibResult> {
    let (name, current) = match side {
        Side::Encode => ("encode_max_depth", get(lua).encode_max_depth),
        Side::Decode => ("decode_max_depth", get(lua).decode_max_depth),
    };
    let v = match at_most(&args, 1, name)
        .and_then(|()| integer(&args, 0, name, (1, INT_MAX), current))
    {
        Ok(v) => v,
        Err(e) => return Ok(Err(e)),
    };
    update(lua, |c| match side {
        Side::Encode => c.encode_max_depth = v,
        Side::Decode => c.decode_max_depth = v,
    });
    Ok(Ok(vec![Lv::Integer(v)]))
}

fn precision(lua: &Lua, args: MultiValue) -> mlua::Result<LibResult> {
    const NAME: &str = "encode_number_precision";
    let current = get(lua).precision;
    let v = match at_most(&args, 1, NAME).and_then(|()| integer(&args, 0, NAME, (1, 14), current)) {
        Ok(v) => v,
        Err(e) => return Ok(Err(e)),
    };
    update(lua, |c| c.precision = v);
    Ok(Ok(vec![Lv::Integer(v)]))
}

/// An on/off setting (`encode_keep_buffer`, `decode_invalid_numbers`): `json_enum_option`
/// with lua-cjson's "off"/"on".
fn on_off(
    lua: &Lua,
    args: &MultiValue,
    name: &str,
    read: fn(&Config) -> bool,
    write: fn(&mut Config, bool),
) -> mlua::Result<LibResult> {
    let current = usize::from(read(&get(lua)));
    let v = match at_most(args, 1, name).and_then(|()| choice(args, 0, name, OFF_ON, current)) {
        Ok(v) => v,
        Err(e) => return Ok(Err(e)),
    };
    update(lua, |c| write(c, v == 1));
    Ok(Ok(vec![shown(lua, OFF_ON, v)?]))
}

fn encode_invalid(lua: &Lua, args: MultiValue) -> mlua::Result<LibResult> {
    const NAME: &str = "encode_invalid_numbers";
    const OPTIONS: &[&str] = &["off", "on", "null"];
    let current = match get(lua).encode_invalid {
        InvalidNumbers::Refuse => 0,
        InvalidNumbers::Print => 1,
        InvalidNumbers::Null => 2,
    };
    let v = match at_most(&args, 1, NAME).and_then(|()| choice(&args, 0, NAME, OPTIONS, current)) {
        Ok(v) => v,
        Err(e) => return Ok(Err(e)),
    };
    update(lua, |c| {
        c.encode_invalid = match v {
            0 => InvalidNumbers::Refuse,
            1 => InvalidNumbers::Print,
            _ => InvalidNumbers::Null,
        }
    });
    Ok(Ok(vec![shown(lua, OPTIONS, v)?]))
}
