//! The two halves of a single-node crash test around [`super::child`]: the child serving a
//! node until killed ([`serve_child_node`]), and the parent's kill with a write batch in
//! flight ([`kill9_with_batch_in_flight`]), with the acknowledged state kept before
//! ([`must_write_acknowledged`]) and compared after a restart ([`count_differing`]).
// Test threads drive the node from outside its shards: blocking calls are fine here.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use ds_node::DsConfig;
use net::message::kv::{KvOp, KvResponse, OpResult};

use super::child::{ChildProcess, child_ready_and_park};
use super::single::{Retry, child_node_place, run_ops, run_ops_retrying, set};

/// In a child started by [`super::single::spawn_child_node`]: runs the node `cfg` makes for
/// the child's data directory, on the child's port and admin address, tells the parent it
/// serves, and parks until killed.
pub fn serve_child_node(cfg: impl FnOnce(&std::path::Path) -> DsConfig) -> ! {
    let (dir, port, admin) = child_node_place();
    let c = DsConfig {
        base_port: port,
        admin_addr: Some(admin),
        ..cfg(&dir)
    };
    let _node = ds_node::run(c).unwrap();
    child_ready_and_park()
}

/// How many SETs the batch in flight at the kill holds.
const LATE_SETS: usize = 200;

/// Kills `child` (SIGKILL) 30 ms into a batch of SETs of `late-0`, `late-1`, … to values of
/// `value_len` bytes sent to `addr` (waiting out the refusals `retry` names): a batch whose
/// outcome is unknown, so no model holds it.
pub fn kill9_with_batch_in_flight(child: ChildProcess, addr: &str, value_len: usize, retry: Retry) {
    let a = addr.to_string();
    let last = std::thread::spawn(move || {
        let ops = (0..LATE_SETS)
            .map(|i| set(&format!("late-{i}"), vec![b'x'; value_len]))
            .collect();
        std::panic::catch_unwind(|| run_ops_retrying(&a, ops, retry)).is_ok()
    });
    std::thread::sleep(Duration::from_millis(30));
    child.kill9();
    let _ = last.join();
}

/// Runs `ops` (SETs and APPENDs) against `addr`, waiting out the refusals `retry` names;
/// each must succeed, and is applied to `model`, the acknowledged state (key → value).
pub fn must_write_acknowledged(
    addr: &str,
    ops: Vec<KvOp>,
    retry: Retry,
    model: &mut BTreeMap<Bytes, Vec<u8>>,
) {
    let responses = run_ops_retrying(addr, ops.clone(), retry);
    for (op, r) in ops.iter().zip(&responses) {
        assert!(matches!(r, KvResponse::Ok { .. }), "{op:?}: {r:?}");
        match op {
            KvOp::StrSet { key, value, .. } => {
                model.insert(key.clone(), value.to_vec());
            }
            KvOp::StrAppend { key, value } => {
                model
                    .entry(key.clone())
                    .or_default()
                    .extend_from_slice(value);
            }
            other => panic!("not a SET or APPEND: {other:?}"),
        }
    }
}

/// How many of `model`'s keys read back from `addr` other than as the model says (`None`:
/// absent); each one is printed.
pub fn count_differing<'a>(
    addr: &str,
    model: impl IntoIterator<Item = (&'a [u8], Option<&'a [u8]>)>,
) -> usize {
    let (keys, wants): (Vec<&[u8]>, Vec<Option<&[u8]>>) = model.into_iter().unzip();
    let ops = keys
        .iter()
        .map(|k| KvOp::StrGet {
            key: Bytes::copy_from_slice(k),
        })
        .collect();
    let mut differing = 0;
    for ((k, want), got) in keys.iter().zip(wants).zip(run_ops(addr, ops)) {
        let want = KvResponse::Ok {
            result: OpResult::Value {
                value: want.map(Bytes::copy_from_slice),
            },
        };
        if got != want {
            differing += 1;
            eprintln!("{:?}: {got:?}, want {want:?}", Bytes::copy_from_slice(k));
        }
    }
    differing
}
