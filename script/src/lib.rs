//! Scripting for tierkv: Lua 5.1 run the way Redis 7 runs it (`EVAL`, `FCALL`).
//!
//! This crate knows nothing of ranges, shards or the network. It owns a Lua VM with Redis's
//! sandbox and `redis.*` API, converts between Redis replies ([`Value`]) and Lua values by
//! Redis's rules, and runs a script's `redis.call`/`redis.pcall` through a [`Host`] that the
//! caller provides. ds-node runs scripts inside a range's state machine at apply time (every
//! replica runs the same script on the same state: see `docs/scripting.md`), so everything a
//! script can observe is deterministic: no wall clock, `math.random` seeded by the caller, and
//! an instruction budget instead of a time limit.

mod api;
mod body_cache;
pub mod commands;
mod convert;
mod errors;
mod host_slot;
mod library;
mod libs;
mod numfmt;
mod rand48;
pub mod running;
mod sha1;
mod shebang;
mod vm;

pub use library::{Function, Library};

pub use net::message::script::Value;

use bytes::Bytes;

/// The protocol `redis.call` converts replies with (`redis.setresp`); 2 unless the script
/// changes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Resp {
    /// RESP2: maps and sets arrive as flat arrays, doubles as strings, booleans as integers.
    #[default]
    Two,
    /// RESP3: maps, sets, doubles, booleans and big numbers keep their types.
    Three,
}

/// What a script's `redis.call` / `redis.pcall` run commands with.
pub trait Host {
    /// Runs one command (`argv[0]` is its name, in any case) and returns its reply, already
    /// in the shape protocol `resp` gives it (a RESP2 host turns maps into flat arrays).
    /// A Redis error is [`Value::Error`] (its text with its prefix: `ERR …`, `WRONGTYPE …`).
    fn call(&mut self, argv: &[Bytes], resp: Resp) -> Value;

    /// `redis.acl_check_cmd(argv...)`: whether the user running the script may run `argv`
    /// (its command, keys and channels); `Err`: the reply error (an unknown command).
    fn acl_check(&mut self, argv: &[Bytes]) -> Result<bool, String>;
}

/// The bounds of one VM.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Lua instructions one script may run before it is stopped with an error. Counted, not
    /// timed, so that every replica stops a script at the same point.
    pub max_instructions: u64,
    /// Bytes the VM may allocate (every script and cached function together).
    pub max_memory: usize,
    /// Compiled scripts kept in the VM's cache (least recently used are dropped).
    pub max_cached: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_instructions: 500_000_000,
            max_memory: 64 << 20,
            max_cached: 1024,
        }
    }
}

/// One run of a script.
#[derive(Debug, Clone, Copy)]
pub struct Run<'a> {
    /// `KEYS`.
    pub keys: &'a [Bytes],
    /// `ARGV`.
    pub argv: &'a [Bytes],
    /// The seed of `math.random` for this run (the same on every replica).
    pub seed: u64,
    /// Stops the run when set (`SCRIPT KILL`); only for a run that may stop at any instruction
    /// (it only reads and runs on one replica). `None`: the run cannot be killed.
    pub kill: Option<&'a running::KillSwitch>,
}

/// Flags a script declares in its shebang (`#!lua flags=no-writes,allow-oom`, Redis 7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Flags {
    /// Whether the script had a shebang line (without one, Redis's defaults for old scripts).
    pub shebang: bool,
    /// `no-writes`: the script only reads.
    pub no_writes: bool,
    /// `allow-oom`.
    pub allow_oom: bool,
    /// `allow-stale`.
    pub allow_stale: bool,
    /// `no-cluster`.
    pub no_cluster: bool,
    /// `allow-cross-slot-keys`.
    pub allow_cross_slot_keys: bool,
}

/// Why a VM could not be built.
#[derive(Debug, thiserror::Error)]
pub enum VmError {
    /// Lua refused to start (out of memory, a library failed to load).
    #[error("lua: {0}")]
    Lua(String),
}

/// The SHA1 of a script body, as 40 lower-case hex digits (`EVALSHA`, `SCRIPT LOAD`).
pub fn sha1_hex(body: &[u8]) -> String {
    sha1::sha1_hex(body)
}

/// Parses the shebang of `body`, if any. `Err` is the Redis error reply text
/// (`ERR Unexpected flag in script shebang: …`, `ERR Unexpected engine in script shebang: …`).
pub fn flags(body: &[u8]) -> Result<Flags, String> {
    shebang::parse(body).map(|(flags, _)| flags)
}

/// A Lua VM with Redis's sandbox and a bounded cache of compiled scripts.
///
/// A VM is reused across runs: compiled scripts stay in its cache (least recently used
/// dropped past [`Limits::max_cached`]); nothing a script does is visible to the next run.
pub struct Vm {
    limits: Limits,
    engine: vm::Engine,
}

impl std::fmt::Debug for Vm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vm")
            .field("limits", &self.limits)
            .field("cached", &self.engine.cached())
            .finish()
    }
}

impl Vm {
    /// A VM with these limits.
    pub fn new(limits: Limits) -> Result<Self, VmError> {
        Ok(Self {
            limits,
            engine: vm::Engine::new(limits)?,
        })
    }

    /// Compiles `body` (and caches it); `Err` is the Redis error reply for a script that does
    /// not compile (`ERR Error compiling script (new function): user_script:1: …`) or whose
    /// shebang is wrong.
    pub fn load(&mut self, body: &[u8]) -> Result<(), Value> {
        self.engine.function(body).map(|_| ())
    }

    /// Runs `body` with `run`'s `KEYS`, `ARGV` and seed, its commands through `host`, and
    /// returns its reply converted by Redis's Lua → reply rules (an error is
    /// [`Value::Error`], with Redis's text: `ERR user_script:1: … script: <sha>, on
    /// @user_script:1.`). A script over its instruction budget gets `ERR Script killed:
    /// exceeded the instruction budget (N)`; over the memory limit, `ERR Script killed:
    /// exceeded the memory limit (N bytes)`. The VM stays usable either way.
    pub fn eval(&mut self, body: &[u8], run: Run<'_>, host: &mut dyn Host) -> Value {
        self.engine.eval(body, run, host)
    }

    fn engine_mut(&mut self) -> &mut vm::Engine {
        &mut self.engine
    }

    /// Drops every cached script and loaded library (`SCRIPT FLUSH`).
    pub fn flush(&mut self) {
        self.engine.flush();
    }

    /// Whether `sha` (40 lower-case hex digits) is in the cache (`SCRIPT EXISTS`).
    pub fn is_cached(&self, sha: &str) -> bool {
        self.engine.is_cached(sha)
    }

    /// Scripts in the cache.
    pub fn cached(&self) -> usize {
        self.engine.cached()
    }

    /// `redis.log` calls made so far (they are counted, not written anywhere).
    pub fn logged(&self) -> u64 {
        self.engine.logged()
    }

    /// Bytes the Lua state has allocated.
    pub fn memory(&self) -> usize {
        self.engine.memory()
    }
}

#[cfg(test)]
mod tests;
