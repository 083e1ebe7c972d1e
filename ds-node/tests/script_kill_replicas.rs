//! Long scripts on a range with three replicas in one process (`docs/scripting.md`, "Long
//! scripts"): a script that may write is never killed (`SCRIPT KILL` finds it unkillable on
//! every replica) and every replica applies it whole, so a new leader reads what it wrote; a
//! read-only script on the leader is killed with Redis's error and changes nothing.
#![allow(clippy::unwrap_used)]
// Test threads drive the node from outside its shards: blocking calls are fine here.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::on_executor;
use common::trio::{free_port, must_call, node_cfg};
use ds_node::{NodeHandle, run};
use net::message::kv::{Cond, Expiry, KvOp, KvResponse, OpResult};
use net::message::script::Value;
use script::commands::{CallEnv, Commands, Plan};
use script::running::{self, KillOutcome, Kind};

/// `SET k v` and `GET k`: enough of a command table for these scripts.
struct SetGet;

impl Commands for SetGet {
    fn plan(&self, argv: &[Bytes], _: CallEnv<'_>) -> Plan {
        let name = argv[0].to_ascii_lowercase();
        match (name.as_slice(), argv) {
            (b"set", [_, key, value]) => Plan::Ops {
                ops: vec![KvOp::StrSet {
                    key: key.clone(),
                    value: value.clone(),
                    expiry: Expiry::Persist {},
                    cond: Cond::Always {},
                    get_old: false,
                }],
                finish: Box::new(|r| match r.as_slice() {
                    [Ok(_)] => Value::Status("OK".into()),
                    _ => Value::Error("ERR set failed".into()),
                }),
            },
            (b"get", [_, key]) => Plan::Ops {
                ops: vec![KvOp::StrGet { key: key.clone() }],
                finish: Box::new(|r| match r.into_iter().next() {
                    Some(Ok(OpResult::Value { value: Some(v) })) => Value::Bulk(v),
                    Some(Ok(OpResult::Value { value: None })) => Value::Nil,
                    _ => Value::Error("ERR get failed".into()),
                }),
            },
            _ => Plan::Reply(Value::Error("ERR unknown command".into())),
        }
    }

    fn acl_check(&self, _: &[Bytes], _: Option<&[u8]>) -> Result<bool, String> {
        Ok(true)
    }
}

fn eval(body: &str, keys: &[&str], read_only: bool) -> KvOp {
    let keys: Vec<Bytes> = keys.iter().map(|k| Bytes::from(k.to_string())).collect();
    KvOp::Eval {
        anchor: keys[0].clone(),
        body: Bytes::from(body.to_string()),
        keys,
        args: Vec::new(),
        read_only,
        call: net::message::script::ScriptCall::SCRIPT,
    }
}

fn script_value(r: KvResponse) -> Value {
    match r {
        KvResponse::Ok {
            result: OpResult::Script { value },
        } => value,
        other => panic!("{other:?}"),
    }
}

/// Calls `SCRIPT KILL` (on the process-wide registry, as the proxy does) until a script is
/// running, for at most 10 s.
fn kill_once_running() -> KillOutcome {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let outcome = running::kill(Kind::Script, Duration::ZERO);
        if outcome != KillOutcome::NotBusy || Instant::now() > deadline {
            return outcome;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

const WRITE_THEN_LOOP: &str = "redis.call('set', KEYS[1], 'first') \
                               local i = 0 while i < 20000000 do i = i + 1 end \
                               redis.call('set', KEYS[2], 'second') return i";
const SPIN: &str = "local i = 0 while true do i = i + 1 end";

#[test]
fn a_write_script_is_unkillable_and_every_replica_applies_it_whole() {
    ds_node::range::script::install(Arc::new(SetGet));
    let root = std::env::temp_dir().join(format!("ds-script-kill-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let addrs: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    let mut nodes: Vec<Option<NodeHandle>> = (1..=3)
        .map(|i| Some(run(node_cfg(&root, i, &ports)).unwrap()))
        .collect();
    // A write script: SCRIPT KILL, while it runs, finds it unkillable.
    let a = addrs.clone();
    let writer = std::thread::spawn(move || {
        on_executor(move || {
            Box::pin(async move {
                let op = eval(WRITE_THEN_LOOP, &["{s}a", "{s}b"], false);
                let (r, leader) = must_call(&a, op).await;
                (script_value(r), leader)
            })
        })
    });
    assert_eq!(kill_once_running(), KillOutcome::Unkillable);
    let (reply, leader) = writer.join().unwrap();
    assert_eq!(reply, Value::Int(20_000_000));
    // The followers may still be running it (the registry is this process's: all three
    // replicas register there).
    let deadline = Instant::now() + Duration::from_secs(10);
    while running::any() {
        assert!(
            Instant::now() < deadline,
            "a replica never finished the write script"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    // A read-only script on the leader is killed with Redis's error.
    let a = addrs.clone();
    let reader = std::thread::spawn(move || {
        on_executor(move || {
            Box::pin(
                async move { script_value(must_call(&a, eval(SPIN, &["{s}a"], true)).await.0) },
            )
        })
    });
    assert_eq!(kill_once_running(), KillOutcome::Killed);
    let killed = reader.join().unwrap();
    assert!(
        matches!(&killed, Value::Error(e) if e.starts_with("ERR Script killed by user with SCRIPT KILL... script: ")),
        "{killed:?}"
    );
    // Stop the leader: the new leader applied the write script whole.
    let li = addrs.iter().position(|a| *a == leader).unwrap();
    nodes[li].take().unwrap().shutdown().unwrap();
    let a = addrs.clone();
    let read = on_executor(move || {
        Box::pin(async move {
            let get = "return {redis.call('get', KEYS[1]), redis.call('get', KEYS[2])}";
            script_value(must_call(&a, eval(get, &["{s}a", "{s}b"], true)).await.0)
        })
    });
    assert_eq!(
        read,
        Value::Array(vec![
            Value::Bulk(Bytes::from_static(b"first")),
            Value::Bulk(Bytes::from_static(b"second")),
        ])
    );
    for n in nodes.into_iter().flatten() {
        n.shutdown().unwrap();
    }
    let _ = std::fs::remove_dir_all(&root);
}
