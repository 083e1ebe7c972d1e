//! A whole master process from a config file: it listens on the configured ports (0 here),
//! serves RPCs and the admin page, and on shutdown stops accepting, finishes and returns.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use ::master::config::ServerConfig;
use ::master::run::run;
use ::master::service::SystemClock;
use net::ClusterId;
use net::NodeId;
use net::auth::ClusterSecret;
use net::message::handshake::{Hello, Role};
use net::message::{Message, TsoRequest};
use net::tokio_transport::Client;
use net::transport::TransportConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn master_runs_from_a_config_file_and_shuts_down_gracefully() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "data-dir = {:?}\nlisten = \"127.0.0.1:0\"\nadmin-listen = \"127.0.0.1:0\"\n",
        dir.path().display().to_string()
    );
    let path = dir.path().join("master.toml");
    std::fs::write(&path, text).unwrap();
    let cfg = ServerConfig::load(&path).unwrap();
    let (addr_tx, addr_rx) = tokio::sync::oneshot::channel();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(run(
        cfg,
        Arc::new(SystemClock),
        async move {
            let _ = stopped.await;
        },
        move |rpc, admin| {
            let _ = addr_tx.send((rpc, admin.unwrap()));
        },
    ));
    let (rpc, admin) = addr_rx.await.unwrap();

    // No secret was configured: the master created one in its data dir, and a peer without
    // it is refused.
    let hello = Hello::new(Role::Proxy {}, ClusterId(0), NodeId(0));
    let refused = Client::connect(&rpc.to_string(), hello, TransportConfig::default()).await;
    assert!(refused.is_err(), "a peer without the secret was accepted");
    let secret = ClusterSecret::load(&dir.path().join("cluster-secret")).unwrap();
    let cfg = TransportConfig {
        secret,
        ..Default::default()
    };
    let c = Client::connect(&rpc.to_string(), hello, cfg).await.unwrap();
    let reply = c.call(TsoRequest { count: 3 }.into()).await.unwrap();
    assert!(matches!(reply, Message::TsoBatch(_)), "{reply:?}");

    let mut s = tokio::net::TcpStream::connect(admin).await.unwrap();
    s.write_all(b"GET /health HTTP/1.1\r\n\r\n").await.unwrap();
    let mut page = String::new();
    s.read_to_string(&mut page).await.unwrap();
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");

    let _ = stop.send(());
    task.await.unwrap().unwrap();
    assert!(
        c.call(TsoRequest { count: 1 }.into()).await.is_err(),
        "connections closed"
    );
}
