//! Function libraries (`FUNCTION LOAD`, `FCALL`): Redis 7's `#!lua name=<lib>` code that
//! registers functions with `redis.register_function`. The loading itself runs in the VM
//! (`prelude.lua`); this module reads the metadata line and what the code registered.

use mlua::{Lua, Table, Value as Lv};

use crate::{Flags, Host, Run, Value, Vm};

/// A library as `FUNCTION LOAD` found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Library {
    /// Its name (`#!lua name=<name>`).
    pub name: String,
    /// Its functions, in registration order.
    pub functions: Vec<Function>,
}

/// One function of a library.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Function {
    /// Its name.
    pub name: String,
    /// Its description, if registered with one.
    pub description: Option<String>,
    /// Its flags (`no-writes`, `allow-oom`, ...).
    pub flags: Flags,
}

impl Vm {
    /// Runs library `code` to learn its name and functions (`FUNCTION LOAD`); `Err` is the
    /// Redis error reply (`ERR Missing library metadata`, a compile error, ...). The loaded
    /// library stays in the VM's cache for [`Vm::fcall`].
    pub fn load_library(&mut self, code: &[u8]) -> Result<Library, Value> {
        self.engine_mut().load_library(code)
    }

    /// Calls `function` of library `code` with `run`'s keys and arguments (`FCALL`): the
    /// callback gets `KEYS` and `ARGV` as its two arguments, as in Redis.
    pub fn fcall(
        &mut self,
        code: &[u8],
        function: &[u8],
        run: Run<'_>,
        host: &mut dyn Host,
    ) -> Value {
        self.engine_mut().fcall(code, function, run, host)
    }
}

/// `functionExtractLibMetaData`: the library's name and where its code starts (the shebang
/// line's newline is kept, so line numbers are the user's). `Err` is the error reply.
pub(crate) fn metadata(code: &[u8]) -> Result<(String, usize), String> {
    if !code.starts_with(b"#!") {
        return Err("ERR Missing library metadata".into());
    }
    let Some(end) = code.iter().position(|&b| b == b'\n') else {
        return Err("ERR Invalid library metadata".into());
    };
    // Words as `sdssplitargs` splits them (`name="foo"` is `name=foo`).
    let Some(words) = net::redis_args::split_args(&code[..end]).filter(|w| !w.is_empty()) else {
        return Err("ERR Invalid library metadata".into());
    };
    let words: Vec<String> = words
        .iter()
        .map(|w| String::from_utf8_lossy(w).into_owned())
        .collect();
    let mut parts = words.iter().map(String::as_str);
    let Some(engine) = parts.next() else {
        return Err("ERR Invalid library metadata".into());
    };
    let mut name = None;
    for part in parts {
        match part.get(..5) {
            Some(p) if p.eq_ignore_ascii_case("name=") => {
                if name.is_some() {
                    return Err(
                        "ERR Invalid metadata value, name argument was given multiple times".into(),
                    );
                }
                name = Some(part[5..].to_string());
            }
            _ => return Err(format!("ERR Invalid metadata value given: {part}")),
        }
    }
    let Some(name) = name else {
        return Err("ERR Library name was not given".into());
    };
    if !valid_name(&name) {
        return Err("ERR Library names can only contain letters, numbers, or underscores(_) and must be at least one character long".into());
    }
    let engine = &engine[2..];
    if !engine.eq_ignore_ascii_case("lua") {
        return Err(format!("ERR Engine '{engine}' not found"));
    }
    Ok((name, end))
}

fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// The [`Library`] and the name → callback table from what `redis.register_function`
/// recorded (a list of `{name, description, callback, flags}`).
pub(crate) fn collect(
    lua: &Lua,
    name: String,
    registered: &Table,
) -> mlua::Result<(Library, Table)> {
    let callbacks = lua.create_table()?;
    let mut functions = Vec::new();
    for entry in registered.sequence_values::<Table>() {
        let entry = entry?;
        let fname: String = entry.raw_get("name")?;
        let description: Option<String> = entry.raw_get("description")?;
        let mut flags = Flags {
            shebang: true,
            ..Flags::default()
        };
        for flag in entry.raw_get::<Table>("flags")?.sequence_values::<String>() {
            match flag?.as_str() {
                "no-writes" => flags.no_writes = true,
                "allow-oom" => flags.allow_oom = true,
                "allow-stale" => flags.allow_stale = true,
                "no-cluster" => flags.no_cluster = true,
                "allow-cross-slot-keys" => flags.allow_cross_slot_keys = true,
                _ => {}
            }
        }
        callbacks.raw_set(fname.as_str(), entry.raw_get::<Lv>("callback")?)?;
        functions.push(Function {
            name: fname,
            description,
            flags,
        });
    }
    Ok((Library { name, functions }, callbacks))
}
