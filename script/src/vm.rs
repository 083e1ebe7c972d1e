//! The VM: one Lua state with the sandbox, a bounded cache of compiled scripts, and runs.

use std::rc::Rc;

use bytes::Bytes;
use mlua::chunk::ChunkMode;
use mlua::state::{GcIncParams, GcMode};
use mlua::{
    Function, HookTriggers, Lua, LuaOptions, MultiValue, StdLib, Table, Value as Lv, VmState,
};

use crate::api::{self, RunState};
use crate::body_cache::BodyCache;
use crate::convert::lua_to_reply;
use crate::errors::{ScriptError, script_error};
use crate::library::{self, Library};
use crate::rand48::Rand48;
use crate::running::KillSwitch;
use crate::{Host, Limits, Resp, Run, Value, VmError, libs, sha1, shebang};

/// Chunk name of the sandbox's own Lua code; error positions skip its frames.
const PRELUDE_NAME: &str = "=tierkv";
/// How often the instruction hook fires (fewer fires, cheaper; the budget is rounded up to it).
const HOOK_STEP: u64 = 1000;
/// Runs between two incremental GC steps (Redis's `LUA_GC_CYCLE_PERIOD`).
const GC_PERIOD: u64 = 50;

/// Bytes of source the script cache and the library cache each keep at most.
const CACHED_SOURCE_BYTES: usize = 32 << 20;

#[derive(Clone)]
struct CachedLibrary {
    library: Library,
    /// Function name → its callback.
    callbacks: Table,
}

#[derive(Clone)]
struct Cached {
    sha: Rc<str>,
    func: Function,
}

/// The Lua state and what the VM keeps between runs.
pub(crate) struct Engine {
    lua: Lua,
    run: Function,
    cleanup: Function,
    /// `prelude.lua`'s `load_library` and `call_function` (function libraries).
    load_library: Function,
    call_function: Function,
    /// Loaded function libraries, by their code (bounded like `cache`).
    libraries: BodyCache<CachedLibrary>,
    state: Rc<RunState>,
    /// Compiled scripts, by their body.
    cache: BodyCache<Cached>,
    limits: Limits,
    runs: u64,
}

fn lua_err(e: mlua::Error) -> VmError {
    VmError::Lua(e.to_string())
}

impl Engine {
    pub(crate) fn new(limits: Limits) -> Result<Self, VmError> {
        let libs = StdLib::TABLE | StdLib::STRING | StdLib::MATH;
        let lua = Lua::new_with(libs, LuaOptions::default()).map_err(lua_err)?;
        let state = Rc::new(RunState::new());
        let raw = lua.create_table().map_err(lua_err)?;
        let (run, cleanup, _redis, load_library, call_function) =
            Self::install(&lua, &raw, &state, limits.max_memory).map_err(lua_err)?;
        lua.set_memory_limit(limits.max_memory).map_err(lua_err)?;
        Ok(Self {
            lua,
            run,
            cleanup,
            load_library,
            call_function,
            libraries: BodyCache::new(limits.max_cached, CACHED_SOURCE_BYTES),
            state,
            cache: BodyCache::new(limits.max_cached, CACHED_SOURCE_BYTES),
            limits,
            runs: 0,
        })
    }

    fn install(
        lua: &Lua,
        raw: &Table,
        state: &Rc<RunState>,
        max_memory: usize,
    ) -> mlua::Result<(Function, Function, Table, Function, Function)> {
        raw.set("G", lua.globals())?;
        let tostring: Function = lua.globals().get("tostring")?;
        let killed = Rc::clone(state);
        raw.set(
            "handler",
            lua.create_function(move |lua, e: Lv| {
                if killed.killed_by_user.get() {
                    // The run is over: the prelude's last instructions must not raise again.
                    lua.remove_global_hook();
                }
                error_handler(lua, &tostring, e)
            })?,
        )?;
        // redis.call / redis.pcall run commands with the host lent for the run (`with_host`);
        // between runs they answer as Redis's do outside a script.
        for (name, raise) in [("call", true), ("pcall", false)] {
            let state = Rc::clone(state);
            raw.set(
                name,
                lua.create_function(move |lua, args: MultiValue| -> mlua::Result<Lv> {
                    let slot = &state.host;
                    match slot.with(|host| api::host_call(lua, host, &state, raise, args)) {
                        Some(out) => out,
                        None => Err(crate::errors::reply_error(
                            "ERR redis.call/pcall can only be called inside a script invocation"
                                .into(),
                        )),
                    }
                })?,
            )?;
        }
        let s = Rc::clone(state);
        raw.set(
            "acl_check_cmd",
            lua.create_function(move |_, args: MultiValue| -> mlua::Result<Lv> {
                match s.host.with(|host| api::acl_check(host, args)) {
                    Some(out) => out,
                    None => Err(crate::errors::reply_error(
                        "ERR redis.acl_check_cmd can only be called inside a script invocation"
                            .into(),
                    )),
                }
            })?,
        )?;
        api::register(lua, raw, state, max_memory)?;
        libs::register(lua, raw)?;
        lua.load(include_str!("prelude.lua"))
            .set_name(PRELUDE_NAME)
            .set_mode(ChunkMode::Text)
            .call::<(Function, Function, Table, Function, Function)>(raw.clone())
    }

    pub(crate) fn flush(&mut self) {
        self.cache.clear();
        self.libraries.clear();
        let _ = self.lua.gc_collect();
    }

    pub(crate) fn is_cached(&self, sha: &str) -> bool {
        self.cache.values().any(|c| &*c.sha == sha)
    }

    pub(crate) fn cached(&self) -> usize {
        self.cache.len()
    }

    pub(crate) fn logged(&self) -> u64 {
        self.state.logged.get()
    }

    pub(crate) fn memory(&self) -> usize {
        self.lua.used_memory()
    }

    /// The SHA1 and compiled function of `body`, compiling and caching it if needed.
    pub(crate) fn function(&mut self, body: &[u8]) -> Result<(Rc<str>, Function), Value> {
        if let Some(c) = self.cache.get(body) {
            return Ok((Rc::clone(&c.sha), c.func.clone()));
        }
        let sha: Rc<str> = sha1::sha1_hex(body).into();
        let (_, start) = shebang::parse(body).map_err(Value::Error)?;
        let func = self.compile(&body[start..])?;
        let cached = Cached {
            sha: Rc::clone(&sha),
            func: func.clone(),
        };
        self.cache.insert(body, cached);
        Ok((sha, func))
    }

    fn compile(&self, code: &[u8]) -> Result<Function, Value> {
        let chunk = self
            .lua
            .load(code)
            .set_name("@user_script")
            .set_mode(ChunkMode::Text);
        match chunk.into_function() {
            Ok(f) => Ok(f),
            Err(mlua::Error::SyntaxError { message, .. }) => Err(Value::Error(format!(
                "ERR Error compiling script (new function): {message}"
            ))),
            Err(mlua::Error::MemoryError(_)) => Err(self.memory_error()),
            Err(e) => Err(Value::Error(format!(
                "ERR Error compiling script (new function): {e}"
            ))),
        }
    }

    fn memory_error(&self) -> Value {
        Value::Error(format!(
            "ERR Script killed: exceeded the memory limit ({} bytes)",
            self.limits.max_memory
        ))
    }

    fn budget_error(&self) -> Value {
        Value::Error(format!(
            "ERR Script killed: exceeded the instruction budget ({})",
            self.limits.max_instructions
        ))
    }

    pub(crate) fn eval(&mut self, body: &[u8], run: Run<'_>, host: &mut dyn Host) -> Value {
        let (sha, func) = match self.function(body) {
            Ok(f) => f,
            Err(e) => return e,
        };
        self.prepare(run.seed, run.kill);
        let outcome = self.call(&func, run, host);
        let reply = self.finish(&sha, outcome);
        self.after_run();
        reply
    }

    fn prepare(&mut self, seed: u64, kill: Option<&KillSwitch>) {
        let s = &self.state;
        s.resp.set(Resp::Two);
        s.rand.set(Rand48::new((seed ^ (seed >> 32)) as u32));
        s.instructions.set(0);
        s.killed.set(false);
        s.killed_by_user.set(false);
        crate::libs::cjson_config::reset(&self.lua);
        let step = HOOK_STEP.min(self.limits.max_instructions.max(1));
        // A global hook: coroutines a script creates inherit it (a per-thread hook of mlua
        // would not follow them, and a coroutine could loop past the budget).
        let _ = self.lua.set_global_hook(
            HookTriggers::new().every_nth_instruction(step as u32),
            budget_hook(
                Rc::clone(&self.state),
                step,
                self.limits.max_instructions,
                kill.cloned(),
            ),
        );
    }

    fn call(&self, func: &Function, run: Run<'_>, host: &mut dyn Host) -> mlua::Result<(bool, Lv)> {
        let keys = self.array(run.keys)?;
        let argv = self.array(run.argv)?;
        self.with_host(host, || {
            self.run.call::<(bool, Lv)>((func.clone(), keys, argv))
        })
    }

    /// Runs `f` with `redis.call`/`redis.pcall` bound to `host`.
    fn with_host<R>(
        &self,
        host: &mut dyn Host,
        f: impl FnOnce() -> mlua::Result<R>,
    ) -> mlua::Result<R> {
        self.state.host.lend(host, f)
    }

    /// `FUNCTION LOAD`: the library `code` defines (loaded once, cached by its SHA1).
    pub(crate) fn load_library(&mut self, code: &[u8]) -> Result<Library, Value> {
        self.library(code).map(|(library, _)| library)
    }

    fn library(&mut self, code: &[u8]) -> Result<(Library, Table), Value> {
        if let Some(c) = self.libraries.get(code) {
            return Ok((c.library.clone(), c.callbacks.clone()));
        }
        let (name, start) = library::metadata(code).map_err(Value::Error)?;
        let chunk = self
            .lua
            .load(&code[start..])
            .set_name("@user_function")
            .set_mode(ChunkMode::Text);
        let func = match chunk.into_function() {
            Ok(f) => f,
            Err(mlua::Error::SyntaxError { message, .. }) => {
                return Err(Value::Error(format!(
                    "ERR Error compiling function: {message}"
                )));
            }
            Err(mlua::Error::MemoryError(_)) => return Err(self.memory_error()),
            Err(e) => return Err(Value::Error(format!("ERR Error compiling function: {e}"))),
        };
        self.prepare(0, None);
        let loaded = self.load_library.call::<(bool, Lv, Table)>(func);
        let killed = self.state.killed.get();
        self.after_run();
        if killed {
            // Redis's text for its load timeout; here the bound is the instruction budget.
            return Err(Value::Error(
                "ERR Error registering functions: ERR FUNCTION LOAD timeout".into(),
            ));
        }
        let (ok, err, registered) = match loaded {
            Ok(r) => r,
            Err(mlua::Error::MemoryError(_)) => return Err(self.memory_error()),
            Err(e) => {
                return Err(Value::Error(format!(
                    "ERR Error registering functions: {e}"
                )));
            }
        };
        if !ok {
            let msg = match &err {
                Lv::Table(t) => t.raw_get::<Option<mlua::LuaString>>("err").ok().flatten(),
                _ => None,
            }
            .map_or_else(|| "ERR unknown error".to_string(), |s| s.to_string_lossy());
            return Err(Value::Error(format!(
                "ERR Error registering functions: {msg}"
            )));
        }
        let (library, callbacks) = library::collect(&self.lua, name, &registered)
            .map_err(|e| Value::Error(format!("ERR Error registering functions: {e}")))?;
        if library.functions.is_empty() {
            return Err(Value::Error("ERR No functions registered".into()));
        }
        let cached = CachedLibrary {
            library: library.clone(),
            callbacks: callbacks.clone(),
        };
        self.libraries.insert(code, cached);
        Ok((library, callbacks))
    }

    /// `FCALL`: calls `function` of the library `code` with `run`'s keys and arguments.
    pub(crate) fn fcall(
        &mut self,
        code: &[u8],
        function: &[u8],
        run: Run<'_>,
        host: &mut dyn Host,
    ) -> Value {
        let callbacks = match self.library(code) {
            Ok((_, callbacks)) => callbacks,
            Err(e) => return e,
        };
        let Ok(Lv::Function(func)) = callbacks.raw_get::<Lv>(self.lua.create_string(function).ok())
        else {
            return Value::Error("ERR Function not found".into());
        };
        let name = String::from_utf8_lossy(function).into_owned();
        self.prepare(run.seed, run.kill);
        let outcome = (|| {
            let keys = self.array(run.keys)?;
            let argv = self.array(run.argv)?;
            self.with_host(host, || {
                self.call_function.call::<(bool, Lv)>((func, keys, argv))
            })
        })();
        let reply = self.finish(&name, outcome);
        self.after_run();
        reply
    }

    fn array(&self, items: &[Bytes]) -> mlua::Result<Table> {
        let t = self.lua.create_table_with_capacity(items.len(), 0)?;
        for (i, item) in items.iter().enumerate() {
            t.raw_set(i + 1, self.lua.create_string(item)?)?;
        }
        Ok(t)
    }

    fn finish(&self, sha: &str, outcome: mlua::Result<(bool, Lv)>) -> Value {
        if self.state.killed.get() {
            return self.budget_error();
        }
        if self.state.killed_by_user.get() {
            return match outcome {
                Ok((false, Lv::Table(e))) => error_reply(sha, &e),
                _ => Value::Error(KILLED_BY_USER.into()),
            };
        }
        match outcome {
            Ok((true, v)) => lua_to_reply(&v, self.state.resp.get()),
            Ok((false, Lv::Table(e))) => error_reply(sha, &e),
            Ok((false, Lv::String(s))) if s.as_bytes().as_ref() == b"not enough memory" => {
                self.memory_error()
            }
            Ok((false, other)) => {
                let msg = match &other {
                    Lv::String(s) => String::from_utf8_lossy(&s.as_bytes()).into_owned(),
                    _ => "execution failure".into(),
                };
                Value::Error(format!("ERR Error running script f_{sha}, {msg:.100}"))
            }
            Err(mlua::Error::MemoryError(_)) => self.memory_error(),
            Err(e) => Value::Error(format!("ERR Error running script f_{sha}, {e}")),
        }
    }

    fn after_run(&mut self) {
        self.lua.remove_global_hook();
        let gc_touched = match self.cleanup.call::<bool>(()) {
            Ok(touched) => touched,
            Err(_) => {
                // Only memory can fail here: collect and try once more.
                let _ = self.lua.gc_collect();
                self.cleanup.call::<bool>(()).unwrap_or(true)
            }
        };
        if gc_touched {
            // The script stopped or retuned the collector (`collectgarbage`): undo it.
            self.lua.gc_restart();
            self.lua.gc_set_mode(GcMode::Incremental(
                GcIncParams::default().pause(200).step_multiplier(200),
            ));
        }
        self.runs += 1;
        if self.lua.used_memory() > self.limits.max_memory / 2 {
            let _ = self.lua.gc_collect();
        } else if self.runs % GC_PERIOD == 0 {
            let _ = self.lua.gc_step();
        }
    }
}

/// Redis's error for a script stopped by `SCRIPT KILL` / `FUNCTION KILL` (its position follows).
const KILLED_BY_USER: &str = "ERR Script killed by user with SCRIPT KILL...";

/// Stops a script once it has run `max` instructions, or once `kill` is set. After that it
/// fires on every instruction, so that a script catching the error with `pcall` cannot go on.
fn budget_hook(
    state: Rc<RunState>,
    step: u64,
    max: u64,
    kill: Option<KillSwitch>,
) -> impl Fn(&Lua, &mlua::debug::Debug) -> mlua::Result<VmState> + 'static {
    move |lua, _| {
        if !state.killed.get() && !state.killed_by_user.get() {
            if kill.as_ref().is_some_and(KillSwitch::is_killed) {
                state.killed_by_user.set(true);
            } else {
                let n = state.instructions.get() + step;
                state.instructions.set(n);
                if n <= max {
                    return Ok(VmState::Continue);
                }
                state.killed.set(true);
            }
            let _ = lua.set_global_hook(
                HookTriggers::new().every_nth_instruction(1),
                budget_hook(Rc::clone(&state), 1, max, None),
            );
        }
        if state.killed_by_user.get() {
            return Err(crate::errors::reply_error(KILLED_BY_USER.into()));
        }
        Err(mlua::Error::RuntimeError(
            "Script killed: exceeded the instruction budget".into(),
        ))
    }
}

/// The reply of a failed run (`luaCallFunction`): the error's text, then where it happened.
fn error_reply(sha: &str, e: &Table) -> Value {
    let text = |k: &str| match e.raw_get::<Lv>(k) {
        Ok(Lv::String(s)) => Some(String::from_utf8_lossy(&s.as_bytes()).into_owned()),
        Ok(Lv::Integer(i)) => Some(i.to_string()),
        Ok(Lv::Number(n)) => Some(crate::numfmt::fmt_g(n, 14)),
        _ => None,
    };
    let msg = text("err").unwrap_or_else(|| "ERR unknown error".into());
    match (text("source"), text("line")) {
        (Some(source), Some(line)) => {
            Value::Error(format!("{msg} script: {sha}, on {source}:{line}."))
        }
        _ => Value::Error(msg),
    }
}

/// `__redis__err__handler`: turns any error into `{err=, source=, line=}`, with the position
/// of the innermost frame of the user's code.
fn error_handler(lua: &Lua, tostring: &Function, e: Lv) -> mlua::Result<Table> {
    let out = lua.create_table()?;
    match &e {
        Lv::Table(t) => out.raw_set("err", t.raw_get::<Lv>("err")?)?,
        Lv::Error(err) => {
            let text = match script_error(err) {
                Some(ScriptError::Reply(text)) => text.clone(),
                Some(ScriptError::Message(msg)) => format!("ERR {msg}"),
                None => format!("ERR {err}"),
            };
            out.raw_set("err", text)?;
        }
        _ => {
            let s: mlua::LuaString = tostring.call(e.clone())?;
            let mut text = b"ERR ".to_vec();
            text.extend_from_slice(&s.as_bytes());
            out.raw_set("err", lua.create_string(&text)?)?;
        }
    }
    for level in 1..200 {
        let Some(found) = lua.inspect_stack(level, |d| {
            let src = d.source();
            let source = src.source.as_deref().unwrap_or("").to_string();
            let user = src.what != "C" && source != PRELUDE_NAME && source != "=(tail call)";
            user.then(|| (source, d.current_line()))
        }) else {
            break;
        };
        if let Some((source, line)) = found {
            out.raw_set("source", source)?;
            if let Some(line) = line {
                out.raw_set("line", line)?;
            }
            break;
        }
    }
    Ok(out)
}
