//! One single-replica DS node driven from outside its shards (shared by the single-node
//! tests: backed and cold values, the collector, `maxmemory`, write backpressure): its
//! config, a client that retries while no leader is elected, the admin endpoint and its
//! metrics, and the shard log's bytes to corrupt.
// Test threads drive the node from outside its shards: blocking calls are fine here.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use bytes::Bytes;
use ds_node::DsConfig;
use net::message::RouteCtx;
use net::message::handshake::{Hello, Role};
use net::message::kv::{Cond, Expiry, KvOp, KvRequest, KvResponse};
use net::transport::TransportConfig;
use net::{ClusterId, Epoch, Message, NodeId, RangeId, RpcError};

pub use super::mode::test_checkpoint_mode;

/// A single-shard node in `dir` with its own admin endpoint, fast ticks and checkpoint
/// checks, in the [`test_checkpoint_mode`]; tests override what they exercise
/// (`DsConfig { .., ..single_cfg(dir) }`).
pub fn single_cfg(dir: &std::path::Path) -> DsConfig {
    DsConfig {
        checkpoint_mode: test_checkpoint_mode(),
        data_dir: dir.to_path_buf(),
        shards: 1,
        pin: false,
        base_port: 0,
        log_file_bytes: 64 << 20,
        segment_bytes: 2 << 20,
        zero_log_file: false,
        tick_ms: 10,
        io_memory_bytes: 1 << 20,
        admin_addr: Some("127.0.0.1:0".into()),
        checkpoint_check_ms: 50,
        ..DsConfig::default()
    }
}

/// The route of the node's one range (a node without a master serves range 1, epoch 1/1).
pub fn ctx() -> RouteCtx {
    RouteCtx {
        range_id: RangeId(1),
        epoch: Epoch {
            conf_ver: 1,
            version: 1,
        },
    }
}

pub fn b(s: impl Into<String>) -> Bytes {
    Bytes::from(s.into())
}

/// `SET k v`.
pub fn set(k: &str, v: impl AsRef<[u8]>) -> KvOp {
    KvOp::StrSet {
        key: b(k),
        value: Bytes::copy_from_slice(v.as_ref()),
        expiry: Expiry::Persist {},
        cond: Cond::Always {},
        get_old: false,
    }
}

/// Which refusals [`call`] waits out (up to 20 s) instead of answering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// No leader elected yet.
    NoLeader,
    /// No leader yet, or memory over the write line (as a Redis client backs off on `-OOM`).
    NoLeaderOrOom,
}

/// One request of range 1, retried on the refusals `retry` names.
pub async fn call(c: &net::glommio_transport::Client, op: KvOp, retry: Retry) -> KvResponse {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = c
            .call(Message::KvRequest(KvRequest {
                ctx: ctx(),
                op: op.clone(),
            }))
            .await
            .unwrap();
        let Message::KvResponse(r) = r else {
            panic!("{r:?}")
        };
        let again = match &r {
            KvResponse::Err {
                error: RpcError::NotLeader { .. },
            } => true,
            KvResponse::Err {
                error: RpcError::Redis { message },
            } => retry == Retry::NoLeaderOrOom && message.starts_with("OOM "),
            _ => false,
        };
        if !again || Instant::now() >= deadline {
            return r;
        }
        glommio::timer::sleep(Duration::from_millis(20)).await;
    }
}

/// Runs `f` with a client of `addr` on its own executor thread.
pub fn with_client<T, F, Fut>(addr: &str, f: F) -> T
where
    T: Send + 'static,
    F: FnOnce(net::glommio_transport::Client) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = T>,
{
    let addr = addr.to_string();
    glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .io_memory(512 << 10)
        .spawn(move || async move {
            let hello = Hello::new(Role::Client {}, ClusterId(0), NodeId(0));
            let c =
                net::glommio_transport::Client::connect(&addr, hello, TransportConfig::default())
                    .await
                    .unwrap();
            f(c).await
        })
        .unwrap()
        .join()
        .unwrap()
}

/// Runs `ops` in order against the node at `addr` (waiting out leader election) and returns
/// each response.
pub fn run_ops(addr: &str, ops: Vec<KvOp>) -> Vec<KvResponse> {
    run_ops_retrying(addr, ops, Retry::NoLeader)
}

/// [`run_ops`], waiting out the refusals `retry` names.
pub fn run_ops_retrying(addr: &str, ops: Vec<KvOp>, retry: Retry) -> Vec<KvResponse> {
    with_client(addr, move |c| async move {
        let mut out = Vec::with_capacity(ops.len());
        for op in ops {
            out.push(call(&c, op, retry).await);
        }
        out
    })
}

/// [`run_ops`] with `lanes` requests in flight at once (op `i` in lane `i % lanes`, each
/// lane in order); the responses in the order of `ops`.
pub fn run_ops_in_flight(addr: &str, ops: Vec<KvOp>, lanes: usize) -> Vec<KvResponse> {
    let n = ops.len();
    with_client(addr, move |c| async move {
        let c = std::rc::Rc::new(c);
        let mut lane_ops: Vec<Vec<(usize, KvOp)>> = (0..lanes).map(|_| Vec::new()).collect();
        for (i, op) in ops.into_iter().enumerate() {
            lane_ops[i % lanes].push((i, op));
        }
        let tasks: Vec<_> = lane_ops
            .into_iter()
            .map(|lane| {
                let c = c.clone();
                glommio::spawn_local(async move {
                    let mut out = Vec::with_capacity(lane.len());
                    for (i, op) in lane {
                        out.push((i, call(&c, op, Retry::NoLeader).await));
                    }
                    out
                })
            })
            .collect();
        let mut all: Vec<Option<KvResponse>> = (0..n).map(|_| None).collect();
        for t in tasks {
            for (i, r) in t.await {
                all[i] = Some(r);
            }
        }
        all.into_iter().map(Option::unwrap).collect::<Vec<_>>()
    })
}

pub fn must_ok(r: &[KvResponse]) {
    for x in r {
        assert!(matches!(x, KvResponse::Ok { .. }), "{x:?}");
    }
}

/// A free address of 127.0.0.1 (free when asked).
pub fn free_addr() -> std::net::SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// One HTTP request to the admin endpoint; the status line and body.
pub fn http(admin: std::net::SocketAddr, method: &str, path: &str) -> (String, String) {
    let mut s = std::net::TcpStream::connect(admin).unwrap();
    write!(s, "{method} {path} HTTP/1.1\r\nhost: x\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    (head.lines().next().unwrap().to_string(), body.to_string())
}

/// The body of a request that must succeed (200).
pub fn http_ok(admin: std::net::SocketAddr, method: &str, path: &str) -> String {
    let (status, body) = http(admin, method, path);
    assert!(status.contains("200"), "{method} {path}: {status}: {body}");
    body
}

/// Demotes every value of shard 0 now (`POST /demote`); the endpoint's answer.
pub fn demote_all(admin: std::net::SocketAddr) -> String {
    http_ok(admin, "POST", "/demote?shard=0&fraction=1")
}

/// Metric `name` (its first sample) as published now; NaN when absent.
pub fn metric(admin: std::net::SocketAddr, name: &str) -> f64 {
    http_ok(admin, "GET", "/metrics")
        .lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(f64::NAN)
}

/// Metric `name` once `ok` holds for it, or its value after 10 s (the shard publishes every
/// 200 ms).
pub fn metric_until(admin: std::net::SocketAddr, name: &str, ok: impl Fn(f64) -> bool) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let v = metric(admin, name);
        if ok(v) || Instant::now() > deadline {
            return v;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Metric `name` once two readings 400 ms apart (two publications) agree.
pub fn metric_settled(admin: std::net::SocketAddr, name: &str) -> f64 {
    let mut last = metric_until(admin, name, |v| v.is_finite());
    for _ in 0..50 {
        std::thread::sleep(Duration::from_millis(400));
        let now = metric_until(admin, name, |v| v.is_finite());
        if now == last {
            return now;
        }
        last = now;
    }
    last
}

/// Flips one byte in every copy of `needle` in shard 0's log file (a Raft entry that carried
/// it, a demoted copy): O_DIRECT reads see buffered writes once synced. The copies found.
pub fn corrupt_in_log(dir: &std::path::Path, needle: &[u8]) -> usize {
    use std::os::unix::fs::FileExt;
    let path = dir.join("shard-0.log");
    let mut data = std::fs::read(&path).unwrap();
    let mut hits = 0;
    let mut i = 0;
    while let Some(at) = data[i..].windows(needle.len()).position(|w| w == needle) {
        let p = i + at + needle.len() / 2;
        data[p] ^= 0x55;
        hits += 1;
        i = p + 1;
    }
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.write_all_at(&data, 0).unwrap();
    f.sync_all().unwrap();
    hits
}

/// Metric `name` once it reaches `at_least`, or its value after 10 s.
pub fn metric_at_least(admin: std::net::SocketAddr, name: &str, at_least: u64) -> u64 {
    metric_until(admin, name, |v| v >= at_least as f64) as u64
}

/// Starts the ignored test `child_test` of this binary as a node to crash, in `dir` on
/// `port` with its admin endpoint on `admin`; returns once it serves (the child reads its
/// place with [`child_node_place`], then calls [`super::child::child_ready_and_park`]).
pub fn spawn_child_node(
    child_test: &str,
    dir: &std::path::Path,
    port: u16,
    admin: std::net::SocketAddr,
) -> super::child::ChildProcess {
    let env = [
        ("CHILD_NODE_DIR", dir.display().to_string()),
        ("CHILD_NODE_PORT", port.to_string()),
        ("CHILD_NODE_ADMIN", admin.to_string()),
    ];
    super::child::spawn_child(child_test, &env)
}

/// In a child started by [`spawn_child_node`]: its data directory, port and admin address.
pub fn child_node_place() -> (std::path::PathBuf, u16, String) {
    let var = |k: &str| std::env::var(k).unwrap();
    let port = var("CHILD_NODE_PORT").parse().unwrap();
    (var("CHILD_NODE_DIR").into(), port, var("CHILD_NODE_ADMIN"))
}
