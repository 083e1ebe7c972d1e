//! How long a connect + handshake takes over loopback (tokio transport): the per-connection
//! cost of the authenticated handshake. Ignored (a measurement, not a check); run with
//! `cargo test -p net --profile ci --test handshake_cost -- --ignored --nocapture`.
#![allow(clippy::unwrap_used)] // a test fails by panicking

use std::sync::Arc;
use std::time::Instant;

use net::message::Message;
use net::message::handshake::{Acceptor, Hello, Role};
use net::tokio_transport::{Client, serve};
use net::transport::TransportConfig;
use net::{ClusterId, NodeId};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement; run by hand"]
async fn connect_and_handshake_cost() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let acceptor = Acceptor {
        role: Role::DsNode {},
        cluster_id: ClusterId(1),
        node_id: NodeId(1),
    };
    let handler = Arc::new(|_m: Message| async { None });
    tokio::spawn(serve(
        listener,
        acceptor,
        TransportConfig::default(),
        64,
        handler,
        std::future::pending(),
    ));
    let hello = Hello::new(Role::Proxy {}, ClusterId(1), NodeId(2));
    for round in 0..3 {
        let n = 2000;
        let started = Instant::now();
        for _ in 0..n {
            let c = Client::connect(&addr, hello, TransportConfig::default())
                .await
                .unwrap();
            drop(c);
        }
        let per = started.elapsed() / n;
        println!("round {round}: {n} connects, {per:?} per connect + handshake");
    }
}
