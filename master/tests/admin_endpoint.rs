//! The admin endpoint answers `/health`, `/status`, `/stores`, `/ranges` and `/metrics` over
//! plain HTTP, shows the scheduler's decisions with their reasons, and 404s anything else;
//! with an admin token, refuses every request without it but `GET /health`.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use ::master::admin::serve_admin;
use ::master::core::MasterConfig;
use ::master::service::{Clock, Master, SystemClock};
use net::message::{Bootstrap, StoreInfo, StoreRegister};
use net::{ShardId, StoreId};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn get(addr: std::net::SocketAddr, path: &str) -> String {
    request(addr, "GET", path, "").await
}

async fn request(addr: std::net::SocketAddr, method: &str, path: &str, headers: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("{method} {path} HTTP/1.1\r\nHost: x\r\n{headers}\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_pages_show_state_decisions_and_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let (m, _) = Master::open(MasterConfig::new(dir.path()), Arc::new(SystemClock)).unwrap();
    m.with_core(|c| {
        let mut first = None;
        for n in 1..=2 {
            let r = c
                .register_store(
                    StoreRegister {
                        store: StoreInfo {
                            store_id: StoreId(0),
                            addr: format!("h{n}:1"),
                            shard_addrs: vec![format!("h{n}:2")],
                            labels: vec![("zone".into(), format!("z\"{n}"))],
                        },
                        mem_capacity: 0,
                        disk_capacity: 0,
                    },
                    SystemClock.now_ms(),
                )
                .unwrap();
            first.get_or_insert(r.store_id);
        }
        c.bootstrap(Bootstrap {
            store_id: first.unwrap(),
            shard_id: ShardId(0),
        })
        .unwrap();
    });
    assert_eq!(m.tick().await.len(), 1);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve_admin(m.clone(), listener, None, async move {
        let _ = stopped.await;
    }));

    assert!(get(addr, "/health").await.starts_with("HTTP/1.1 200"));
    let status = get(addr, "/status").await;
    assert!(status.contains("\"bootstrapped\":true"), "{status}");
    assert!(status.contains("add-learner"), "decision shown: {status}");
    assert!(
        status.contains("has 1 of 3 voters"),
        "reason shown: {status}"
    );
    let stores = get(addr, "/stores").await;
    assert!(
        stores.contains("\"zone\":\"z\\\"1\""),
        "escaped label: {stores}"
    );
    let ranges = get(addr, "/ranges").await;
    assert!(ranges.contains("\"start\":\"\",\"end\":\"\""), "{ranges}");
    assert!(
        get(addr, "/metrics")
            .await
            .contains("# TYPE master_rpc_total counter")
    );
    assert!(get(addr, "/nope").await.starts_with("HTTP/1.1 404"));

    let _ = stop.send(());
    server.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_an_admin_token_only_health_is_open() {
    let dir = tempfile::tempdir().unwrap();
    let (m, _) = Master::open(MasterConfig::new(dir.path()), Arc::new(SystemClock)).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let token = Some(Arc::from("t0ken-of-the-admin"));
    let server = tokio::spawn(serve_admin(m.clone(), listener, token, async move {
        let _ = stopped.await;
    }));
    assert!(get(addr, "/health").await.starts_with("HTTP/1.1 200"));
    let refused = get(addr, "/status").await;
    assert!(refused.starts_with("HTTP/1.1 401"), "{refused}");
    assert!(refused.contains("WWW-Authenticate: Bearer"), "{refused}");
    let post = request(addr, "POST", "/scale/expand", "").await;
    assert!(post.starts_with("HTTP/1.1 401"), "{post}");
    let wrong = request(addr, "GET", "/status", "Authorization: Bearer t0ken\r\n").await;
    assert!(wrong.starts_with("HTTP/1.1 401"), "{wrong}");
    let ok = request(
        addr,
        "GET",
        "/status",
        "authorization: bearer t0ken-of-the-admin\r\n",
    )
    .await;
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
    let _ = stop.send(());
    server.await.unwrap();
}
