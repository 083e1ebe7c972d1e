//! Crash: a single-replica DS node runs as a child process (this test binary re-run as its
//! ignored `crash_child_process`), takes a concurrent write load, and is killed with SIGKILL
//! mid-load. After a restart on the same data directory every write that was acknowledged
//! before the kill must read back (the newest checkpoint is loaded and the shard log after it
//! replayed into the engine; raft re-commits the tail). Checkpoints and log compaction run during the load.
#![allow(clippy::unwrap_used)]
// Test threads drive the node from outside its shards: blocking calls are fine here.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod common;

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::crash::{count_differing, serve_child_node};
use common::on_executor;
use common::single::{ctx, free_addr, spawn_child_node};
use ds_node::DsConfig;
use net::message::handshake::{Hello, Role};
use net::message::kv::{Cond, Expiry, KvOp, KvRequest, KvResponse};
use net::transport::TransportConfig;
use net::{ClusterId, Message, NodeId, RpcError};

/// The child of [`kill9_during_writes_loses_no_acknowledged_write`]: a node that
/// checkpoints (and compacts its log) every 200 entries, until killed.
#[test]
#[ignore = "a helper run by its parent test"]
fn crash_child_process() {
    serve_child_node(|dir| DsConfig {
        data_dir: dir.to_path_buf(),
        shards: 1,
        pin: false,
        log_file_bytes: 64 << 20,
        segment_bytes: 4 << 20,
        zero_log_file: false,
        tick_ms: 10,
        io_memory_bytes: 1 << 20,
        // Checkpoints and log compaction run during the load, so the kill can land in the
        // middle of one.
        checkpoint_entries: 200,
        checkpoint_check_ms: 20,
        checkpoint_mode: common::single::test_checkpoint_mode(),
        ..DsConfig::default()
    })
}

async fn connect(addr: &str) -> net::glommio_transport::Client {
    let hello = Hello::new(Role::Client {}, ClusterId(0), NodeId(0));
    let cfg = TransportConfig {
        request_timeout: Duration::from_secs(2),
        ..TransportConfig::default()
    };
    net::glommio_transport::Client::connect(addr, hello, cfg)
        .await
        .unwrap()
}

#[test]
fn kill9_during_writes_loses_no_acknowledged_write() {
    let dir = test_support::tempdir::TempDir::new("ds-kill9");
    let (port, admin) = (free_addr().port(), free_addr());
    let addr = format!("127.0.0.1:{port}");
    let child = spawn_child_node("crash_child_process", dir.path(), port, admin);
    // 32 writers; the parent kills the child after a while.
    let (kill_tx, kill_rx) = std::sync::mpsc::channel::<()>();
    let killer = std::thread::spawn(move || {
        kill_rx.recv().unwrap();
        std::thread::sleep(Duration::from_millis(800));
        child.kill9();
    });
    let a = addr.clone();
    let acked: Vec<String> = on_executor(move || {
        Box::pin(async move {
            let c = connect(&a).await;
            let acked = Rc::new(RefCell::new(Vec::new()));
            let mut tasks = Vec::new();
            let start = Instant::now();
            for w in 0..32 {
                let (c, acked) = (c.clone(), acked.clone());
                tasks.push(glommio::spawn_local(async move {
                    for i in 0.. {
                        if start.elapsed() > Duration::from_secs(20) {
                            break;
                        }
                        let key = format!("w{w}-{i}");
                        let op = KvOp::StrSet {
                            key: Bytes::from(key.clone()),
                            value: Bytes::from(format!("value-{key}")),
                            expiry: Expiry::Persist {},
                            cond: Cond::Always {},
                            get_old: false,
                        };
                        match c
                            .call(Message::KvRequest(KvRequest { ctx: ctx(), op }))
                            .await
                        {
                            Ok(Message::KvResponse(KvResponse::Ok { .. })) => {
                                acked.borrow_mut().push(key)
                            }
                            Ok(Message::KvResponse(KvResponse::Err {
                                error: RpcError::NotLeader { .. },
                            })) => glommio::timer::sleep(Duration::from_millis(5)).await,
                            _ => break,
                        }
                    }
                }));
            }
            kill_tx.send(()).unwrap();
            for t in tasks {
                t.await;
            }
            acked.take()
        })
    });
    killer.join().unwrap();
    assert!(acked.len() > 50, "only {} writes acknowledged", acked.len());
    eprintln!("{} writes acknowledged before kill -9", acked.len());
    let child = spawn_child_node("crash_child_process", dir.path(), port, admin);
    let model: Vec<(String, String)> = acked
        .into_iter()
        .map(|key| {
            let value = format!("value-{key}");
            (key, value)
        })
        .collect();
    let missing = count_differing(
        &addr,
        model
            .iter()
            .map(|(k, v)| (k.as_bytes(), Some(v.as_bytes()))),
    );
    drop(child);
    let n = model.len();
    assert_eq!(missing, 0, "{missing} of {n} acknowledged writes lost");
}
