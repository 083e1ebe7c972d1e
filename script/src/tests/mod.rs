//! Behaviour tests of the VM with a fake host; expected replies were captured from
//! redis-server 7.0.15.

mod api;
mod functions;
mod kill;
mod libs;
mod props;
mod sandbox;

use std::collections::HashMap;

use bytes::Bytes;

use crate::{Host, Limits, Resp, Run, Value, Vm};

/// Records every command and answers from a table (by lower-case command name); unknown
/// commands get Redis's "unknown command" error.
#[derive(Default)]
pub(crate) struct FakeHost {
    pub(crate) calls: Vec<(Vec<Bytes>, Resp)>,
    pub(crate) replies: HashMap<String, Value>,
    /// Commands `redis.acl_check_cmd` reports the user may not run.
    pub(crate) denied: Vec<String>,
}

impl FakeHost {
    pub(crate) fn with(replies: &[(&str, Value)]) -> Self {
        Self {
            calls: Vec::new(),
            denied: Vec::new(),
            replies: replies
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        }
    }

    pub(crate) fn argv(&self, i: usize) -> Vec<String> {
        self.calls[i]
            .0
            .iter()
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .collect()
    }
}

impl Host for FakeHost {
    fn call(&mut self, argv: &[Bytes], resp: Resp) -> Value {
        self.calls.push((argv.to_vec(), resp));
        let name = String::from_utf8_lossy(&argv[0]).to_lowercase();
        self.replies
            .get(&name)
            .cloned()
            .unwrap_or_else(|| Value::Error("ERR Unknown Redis command called from script".into()))
    }

    /// A command with a canned reply exists; the user may run it unless it is `denied`.
    fn acl_check(&mut self, argv: &[Bytes]) -> Result<bool, String> {
        let name = String::from_utf8_lossy(&argv[0]).to_lowercase();
        if !self.replies.contains_key(&name) {
            return Err("ERR Invalid command passed to redis.acl_check_cmd()".into());
        }
        Ok(!self.denied.contains(&name))
    }
}

pub(crate) fn vm() -> Vm {
    Vm::new(Limits {
        max_instructions: 5_000_000,
        max_memory: 32 << 20,
        max_cached: 16,
    })
    .unwrap()
}

pub(crate) fn bulk(s: &str) -> Value {
    Value::Bulk(Bytes::copy_from_slice(s.as_bytes()))
}

pub(crate) fn err(s: &str) -> Value {
    Value::Error(s.to_string())
}

/// Runs `body` with no keys or arguments on a fresh VM and an empty host.
pub(crate) fn eval(body: &str) -> Value {
    eval_on(&mut vm(), body, &mut FakeHost::default())
}

pub(crate) fn eval_on(vm: &mut Vm, body: &str, host: &mut FakeHost) -> Value {
    vm.eval(
        body.as_bytes(),
        Run {
            keys: &[],
            argv: &[],
            seed: 0,
            kill: None,
        },
        host,
    )
}

pub(crate) fn eval_args(
    vm: &mut Vm,
    body: &str,
    keys: &[&str],
    argv: &[&str],
    host: &mut FakeHost,
) -> Value {
    let keys: Vec<Bytes> = keys
        .iter()
        .map(|k| Bytes::copy_from_slice(k.as_bytes()))
        .collect();
    let argv: Vec<Bytes> = argv
        .iter()
        .map(|k| Bytes::copy_from_slice(k.as_bytes()))
        .collect();
    vm.eval(
        body.as_bytes(),
        Run {
            keys: &keys,
            argv: &argv,
            seed: 0,
            kill: None,
        },
        host,
    )
}
