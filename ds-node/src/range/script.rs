//! `EVAL` inside the range ([`KvOp::Eval`]): the script runs at apply time, on every replica
//! alike, and its `redis.call`s are applied to the range as they come (`docs/scripting.md`).
//!
//! Every replica runs the same script on the same state with the same clock (the entry's)
//! and the same `math.random` seed (the entry's index), under an instruction budget rather
//! than a time limit, so every replica reaches the same state and reply. The command table
//! a script calls into is the proxy's ([`script::commands::Commands`]), installed once per
//! process by whoever links both ([`install`]); a node without it answers every script with
//! the same error on every replica.
//!
//! A call may touch the script's declared `KEYS` and any key of its anchor's hash slot (Redis
//! Cluster's rule), in the script's database and in the range: before the entry applies,
//! every replica loads the cold entries of exactly those (`server::cold`), so replicas with
//! different hot sets still see the same data. Anything else is refused with Redis Cluster's
//! errors.

use std::cell::RefCell;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use bytes::Bytes;
use hdrhistogram::Histogram;
use net::RpcError;
use net::keyspace::Db;
use net::message::kv::{KvOp, OpResult};
use script::commands::{CallEnv, Commands, Plan};
use script::{Host, Limits, Resp, Run, Value, Vm, running};

use super::ctx::ApplyCtx;
use super::multi::{Leaf, SameEntry};
use super::store::KvStore;
use crate::keyspace;

static COMMANDS: OnceLock<Arc<dyn Commands>> = OnceLock::new();

thread_local! {
    /// The shard's VM (a shard is one thread): built on first use, reused by every script
    /// of every range of the shard (nothing of a run survives into the next).
    static VM: RefCell<Option<Vm>> = const { RefCell::new(None) };
    /// The shard's script figures (read by the shard when it publishes its metrics).
    static METRICS: RefCell<ScriptMetrics> = RefCell::new(ScriptMetrics::default());
}

/// Scripts run by one shard (`ds_scripts_*` on `/metrics`).
#[derive(Debug, Clone)]
pub struct ScriptMetrics {
    /// Scripts run, writes and reads (`ds_scripts_total`).
    pub runs_total: u64,
    /// Scripts whose reply was an error (`ds_script_errors_total`).
    pub errors_total: u64,
    /// How long each run took, µs (`ds_script_seconds`).
    pub run_us: Histogram<u64>,
}

impl Default for ScriptMetrics {
    fn default() -> Self {
        Self {
            runs_total: 0,
            errors_total: 0,
            run_us: Histogram::new_with_bounds(1, 60_000_000, 2)
                .expect("static histogram bounds are valid"),
        }
    }
}

impl ScriptMetrics {
    /// Adds another shard's figures into these.
    pub fn merge(&mut self, o: &ScriptMetrics) {
        self.runs_total += o.runs_total;
        self.errors_total += o.errors_total;
        let _ = self.run_us.add(&o.run_us);
    }
}

/// This shard's script figures so far.
pub fn metrics() -> ScriptMetrics {
    METRICS.with(|m| m.borrow().clone())
}

fn count(value: &Value, started: Instant) {
    let us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
    METRICS.with(|m| {
        let mut m = m.borrow_mut();
        m.runs_total += 1;
        m.errors_total += u64::from(matches!(value, Value::Error(_)));
        m.run_us.saturating_record(us.max(1));
    });
}

/// Installs the command table scripts call into (once per process; later calls are
/// ignored). The `tierkv` binary installs the proxy's at start.
pub fn install(commands: Arc<dyn Commands>) {
    let _ = COMMANDS.set(commands);
}

/// A script run by [`KvOp::Eval`].
#[derive(Debug, Clone, Copy)]
pub struct Script<'a> {
    /// The key that routed it: the script may touch any key of its hash slot.
    pub anchor: &'a [u8],
    /// The Lua source.
    pub body: &'a [u8],
    /// `KEYS`: the only keys the script may touch.
    pub keys: &'a [Bytes],
    /// `ARGV`.
    pub args: &'a [Bytes],
    /// Whether writes are refused (`EVAL_RO`, `no-writes`).
    pub read_only: bool,
    /// `FCALL`: `body` is a library's code and this the function to call.
    pub function: Option<&'a [u8]>,
    /// The ACL rules of the user running it (`None`: allowed everything): its calls are
    /// checked against them, and `redis.acl_check_cmd` answers with them.
    pub user: Option<&'a [u8]>,
}

/// Runs `script` in database `db` of the range of `ctx`, its calls applied with `leaf`.
pub fn execute<S: KvStore>(
    store: &mut S,
    script: Script<'_>,
    ctx: &ApplyCtx<'_>,
    db: Db,
    leaf: Leaf<S>,
) -> Result<OpResult, RpcError> {
    let Some(commands) = COMMANDS.get() else {
        return Ok(reply(Value::Error(
            "ERR scripting is not available: this node has no command table".into(),
        )));
    };
    let mut host = RangeHost {
        store,
        ctx,
        db,
        script,
        leaf,
        commands: commands.as_ref(),
        entry: SameEntry::default(),
    };
    // Registered for `-BUSY` and `SCRIPT KILL` (`script::running`). Only a read-only run may
    // be killed: it runs on the leader alone and cannot write, so stopping it anywhere changes
    // no replica's state; a run that may write is stopped by its instruction budget alone, at
    // the same instruction on every replica.
    let kind = match script.function {
        Some(_) => running::Kind::Function,
        None => running::Kind::Script,
    };
    // `FUNCTION STATS` shows a function's call; an `EVAL` run here is not described (its
    // name is the SHA1 of its body: too dear to compute for every run).
    let origin = script.function.map(|f| {
        running::Origin::of_call(
            Some(f),
            script.body,
            script.keys,
            script.args,
            script.read_only,
        )
    });
    let registered = running::start(ctx.range.id.0, script.read_only, kind, origin);
    let run = Run {
        keys: script.keys,
        argv: script.args,
        seed: ctx.index,
        kill: script.read_only.then(|| registered.kill_switch()),
    };
    let started = Instant::now();
    let value = VM.with(|cell| {
        // A script's calls never run a script (EVAL is refused inside one), so the VM is
        // never borrowed twice; if it were, the error below is the answer, not a panic.
        let Ok(mut slot) = cell.try_borrow_mut() else {
            return Value::Error("ERR This Redis command is not allowed from script".into());
        };
        if slot.is_none() {
            match Vm::new(Limits::default()) {
                Ok(vm) => *slot = Some(vm),
                Err(e) => return Value::Error(format!("ERR scripting unavailable: {e}")),
            }
        }
        match (slot.as_mut(), script.function) {
            (Some(vm), None) => vm.eval(script.body, run, &mut host),
            (Some(vm), Some(f)) => vm.fcall(script.body, f, run, &mut host),
            (None, _) => Value::Error("ERR scripting unavailable".into()),
        }
    });
    drop(registered);
    count(&value, started);
    Ok(reply(bounded(value)))
}

fn reply(value: Value) -> OpResult {
    OpResult::Script { value }
}

/// A reply nested deeper than the wire carries becomes an error (on every replica alike).
fn bounded(value: Value) -> Value {
    if value.depth() > net::message::script::MAX_DEPTH {
        Value::Error("ERR reached lua stack limit".into())
    } else {
        value
    }
}

/// What a script's calls run against.
struct RangeHost<'a, 'c, S> {
    store: &'a mut S,
    ctx: &'a ApplyCtx<'c>,
    db: Db,
    script: Script<'a>,
    leaf: Leaf<S>,
    commands: &'a dyn Commands,
    entry: SameEntry,
}

impl<S: KvStore> Host for RangeHost<'_, '_, S> {
    fn call(&mut self, argv: &[Bytes], resp: Resp) -> Value {
        if argv.is_empty() {
            return Value::Error(
                "ERR Please specify at least one argument for this redis lib call".into(),
            );
        }
        let env = CallEnv {
            db: self.db,
            now_ms: self.ctx.now_ms,
            resp,
            user: self.script.user,
        };
        let (ops, finish) = match self.commands.plan(argv, env) {
            Plan::Reply(v) => return v,
            Plan::Ops { ops, finish } => (ops, finish),
        };
        if let Some(refusal) = ops.iter().find_map(|op| self.refusal(op)) {
            return refusal;
        }
        let mut results = Vec::with_capacity(ops.len());
        for op in &ops {
            self.entry.before(self.store, op, self.db, self.ctx);
            results.push((self.leaf)(self.store, op, self.ctx, self.db));
        }
        finish(results)
    }

    fn acl_check(&mut self, argv: &[Bytes]) -> Result<bool, String> {
        self.commands.acl_check(argv, self.script.user)
    }
}

impl<S> RangeHost<'_, '_, S> {
    /// Why `op` may not run in this script (`None`: it may).
    fn refusal(&self, op: &KvOp) -> Option<Value> {
        let (_, inner) = op.in_db(self.db);
        if inner.redis_key().is_none() || matches!(inner, KvOp::Eval { .. } | KvOp::Multi { .. }) {
            return Some(Value::Error(
                "ERR This Redis command is not allowed from script".into(),
            ));
        }
        if self.script.read_only && op.is_write() {
            return Some(Value::Error(
                "ERR Write commands are not allowed from read-only scripts.".into(),
            ));
        }
        let slot = net::keyspace::slot(self.script.anchor);
        for (db, key) in op.keys_in_db(self.db) {
            let declared = self.script.keys.contains(key);
            if db != self.db || !(declared || net::keyspace::slot(key) == slot) {
                return Some(Value::Error(
                    "ERR Script attempted to access keys that do not hash to the same slot".into(),
                ));
            }
            if !self.ctx.range.contains(&keyspace::meta_key(db, key)) {
                return Some(Value::Error(
                    "ERR Script attempted to access a non local key in a cluster node".into(),
                ));
            }
        }
        None
    }
}
