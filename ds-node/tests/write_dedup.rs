//! Writes carrying a request id (`KvWrite`) apply once per id (issue 21 item 5: the same
//! request sent twice applied an `INCRBY` twice). Sent straight to a DS shard's port: the
//! second copy of an `INCRBY` gets the first one's answer and changes nothing — also after a
//! restart, when the first copy's record comes back from the shard log.
#![allow(clippy::unwrap_used)]
// Test threads drive the node from outside its shards: blocking calls are fine here.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

#[path = "common/mode.rs"]
mod mode;

use std::time::Duration;

use bytes::Bytes;
use ds_node::{DsConfig, run};
use net::glommio_transport::Client;
use net::message::RouteCtx;
use net::message::handshake::{Hello, Role};
use net::message::kv::{KvOp, KvRequest, KvResponse, KvWrite, OpResult};
use net::transport::TransportConfig;
use net::{ClusterId, Epoch, Message, NodeId, RangeId, RpcError};

fn cfg(dir: &std::path::Path) -> DsConfig {
    DsConfig {
        checkpoint_mode: mode::test_checkpoint_mode(),
        data_dir: dir.to_path_buf(),
        shards: 1,
        pin: false,
        base_port: 0,
        log_file_bytes: 64 << 20,
        segment_bytes: 4 << 20,
        zero_log_file: false,
        tick_ms: 10,
        io_memory_bytes: 1 << 20,
        ..DsConfig::default()
    }
}

fn request(op: KvOp) -> KvRequest {
    KvRequest {
        ctx: RouteCtx {
            range_id: RangeId(1),
            epoch: Epoch {
                conf_ver: 1,
                version: 1,
            },
        },
        op,
    }
}

fn incr(seq: u64) -> Message {
    Message::KvWrite(KvWrite {
        client: 0xc1,
        seq,
        request: request(KvOp::StrIncrBy {
            key: Bytes::from_static(b"counter"),
            delta: 5,
        }),
    })
}

fn get() -> Message {
    Message::KvRequest(request(KvOp::StrGet {
        key: Bytes::from_static(b"counter"),
    }))
}

/// Sends `m`, retrying while the range has no leader yet.
async fn call(c: &Client, m: Message) -> KvResponse {
    for _ in 0..500 {
        match c.call(m.clone()).await.unwrap() {
            Message::KvResponse(KvResponse::Err {
                error: RpcError::NotLeader { .. },
            }) => glommio::timer::sleep(Duration::from_millis(10)).await,
            Message::KvResponse(r) => return r,
            other => panic!("unexpected {other:?}"),
        }
    }
    panic!("no leader");
}

fn int(r: KvResponse) -> i64 {
    match r {
        KvResponse::Ok {
            result: OpResult::Int { value },
        } => value,
        other => panic!("unexpected {other:?}"),
    }
}

fn value(r: KvResponse) -> Option<Bytes> {
    match r {
        KvResponse::Ok {
            result: OpResult::Value { value },
        } => value,
        other => panic!("unexpected {other:?}"),
    }
}

fn with_client<T: Send + 'static>(
    addr: String,
    f: impl FnOnce(Client) -> std::pin::Pin<Box<dyn std::future::Future<Output = T>>> + Send + 'static,
) -> T {
    glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .io_memory(512 << 10)
        .spawn(move || async move {
            let hello = Hello::new(Role::Client {}, ClusterId(0), NodeId(0));
            let c = Client::connect(&addr, hello, TransportConfig::default())
                .await
                .unwrap();
            f(c).await
        })
        .unwrap()
        .join()
        .unwrap()
}

#[test]
fn the_same_incrby_request_sent_twice_applies_once_and_across_a_restart() {
    let dir = std::env::temp_dir().join(format!("ds-dedup-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let node = run(cfg(&dir)).unwrap();
    let started = std::time::Instant::now();
    with_client(node.shard_addrs[0].clone(), |c| {
        Box::pin(async move {
            assert_eq!(int(call(&c, incr(1)).await), 5);
            assert_eq!(
                int(call(&c, incr(1)).await),
                5,
                "the copy gets the first answer"
            );
            assert_eq!(value(call(&c, get()).await), Some(Bytes::from_static(b"5")));
            assert_eq!(int(call(&c, incr(2)).await), 10, "a new id applies");
        })
    });
    node.shutdown().unwrap();
    let node = run(cfg(&dir)).unwrap();
    // The id is remembered for 10 s of entry time: on a machine so loaded that the restart
    // took longer, the copy would rightly apply again.
    let in_window = started.elapsed() < Duration::from_millis(ds_node::range::dedup::WINDOW_MS / 2);
    with_client(node.shard_addrs[0].clone(), move |c| {
        Box::pin(async move {
            let again = int(call(&c, incr(2)).await);
            if !in_window {
                eprintln!("restart took over half the dedup window: not checking the copy");
                return;
            }
            assert_eq!(again, 10, "remembered across the restart");
            assert_eq!(
                value(call(&c, get()).await),
                Some(Bytes::from_static(b"10"))
            );
        })
    });
    node.shutdown().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

/// Records written by the burst test: about 120,000 entries with their keys, which the
/// sweep's walk (256 entries per 100 ms tick) takes ~47 s to cover.
const BURST: u64 = 60_000;

/// A burst of writes with request ids leaves one dedup record per write; they must be gone
/// about one window after the burst, however large the range: the leader deletes them from
/// its record queue, not only when its walk of the range reaches them (which in this range
/// would take minutes to delete them all: memory and the key index held every record
/// written meanwhile).
#[test]
fn dedup_records_of_a_burst_are_deleted_one_window_later_in_a_large_range() {
    let dir = std::env::temp_dir().join(format!("ds-dedup-burst-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let node = run(DsConfig {
        tick_ms: 100,
        ..cfg(&dir)
    })
    .unwrap();
    with_client(node.shard_addrs[0].clone(), |c| {
        Box::pin(async move {
            let mut tasks = Vec::new();
            for w in 0..16 {
                let c = c.clone();
                tasks.push(glommio::spawn_local(async move {
                    for seq in (w..BURST).step_by(16) {
                        let r = call(&c, set_with_id(seq)).await;
                        assert!(matches!(r, KvResponse::Ok { .. }), "{r:?}");
                    }
                }));
            }
            for t in tasks {
                t.await;
            }
        })
    });
    let until = std::time::Instant::now()
        + Duration::from_millis(ds_node::range::dedup::WINDOW_MS)
        + Duration::from_secs(5);
    let mut deleted = 0;
    while deleted < BURST && std::time::Instant::now() < until {
        std::thread::sleep(Duration::from_millis(200));
        deleted = node.metrics().expired_deleted_total;
    }
    assert!(
        deleted >= BURST,
        "{deleted} of {BURST} records deleted 15 s after the burst"
    );
    node.shutdown().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

fn set_with_id(seq: u64) -> Message {
    Message::KvWrite(KvWrite {
        client: 0xb0,
        seq,
        request: request(KvOp::StrSet {
            key: Bytes::from(format!("burst:{seq:08}")),
            value: Bytes::from_static(b"v"),
            expiry: net::message::kv::Expiry::Persist {},
            cond: net::message::kv::Cond::Always {},
            get_old: false,
        }),
    })
}
