//! The glommio transport over loopback TCP, on one executor as a DS shard runs it:
//! pipelining with out-of-order replies, and a garbage peer disconnected without harming
//! other connections.
#![allow(clippy::unwrap_used)] // a test fails by panicking

mod common;

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use common::*;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use futures_util::stream::{FuturesUnordered, StreamExt};
use glommio::net::{TcpListener, TcpStream};
use glommio::{LocalExecutorBuilder, Placement};
use net::glommio_transport::{Client, serve};
use net::message::Message;
use net::transport::TransportConfig;

fn run<F, Fut>(f: F)
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + 'static,
{
    LocalExecutorBuilder::new(Placement::Unbound)
        .spawn(f)
        .expect("start glommio executor")
        .join()
        .expect("executor thread")
}

fn start_server() -> (String, Rc<RefCell<Vec<u32>>>) {
    start_server_with(TransportConfig::default())
}

fn start_server_with(cfg: TransportConfig) -> (String, Rc<RefCell<Vec<u32>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let finished = Rc::new(RefCell::new(Vec::new()));
    let record = finished.clone();
    let handler = Rc::new(move |msg: Message| {
        let record = record.clone();
        async move {
            if let Some(p) = pong(&msg) {
                return Some(p);
            }
            let i = key_of(&msg)?;
            glommio::timer::sleep(Duration::from_micros(delay_us(i))).await;
            record.borrow_mut().push(i);
            Some(answer(i))
        }
    });
    glommio::spawn_local(serve(listener, acceptor(), cfg, 64, handler)).detach();
    (addr, finished)
}

#[test]
fn thousands_of_pipelined_requests_on_one_connection_get_their_own_replies() {
    run(|| async {
        let (addr, finished) = start_server();
        let client = Client::connect(&addr, hello(), TransportConfig::default())
            .await
            .unwrap();
        let n = 3000u32;
        let mut calls: FuturesUnordered<_> = (0..n)
            .map(|i| {
                let c = client.clone();
                async move { (i, c.call(get(i)).await) }
            })
            .collect();
        let mut seen = 0;
        while let Some((i, reply)) = calls.next().await {
            assert_eq!(reply.unwrap(), answer(i), "reply for request {i}");
            seen += 1;
        }
        assert_eq!(seen, n);
        let order = finished.borrow().clone();
        assert!(
            order.windows(2).any(|w| w[0] > w[1]),
            "replies were reordered"
        );
    });
}

#[test]
fn garbage_peer_is_disconnected_while_others_keep_working() {
    run(|| async {
        let (addr, _) = start_server();
        let good = Client::connect(&addr, hello(), TransportConfig::default())
            .await
            .unwrap();
        assert_eq!(good.call(get(1)).await.unwrap(), answer(1));
        for bytes in [&b"*1\r\n$4\r\nPING\r\n"[..], &[0xa5; 100][..]] {
            let mut raw = TcpStream::connect(&addr).await.unwrap();
            raw.write_all(bytes).await.unwrap();
            raw.flush().await.unwrap();
            let mut buf = [0u8; 64];
            let n = raw.read(&mut buf).await.unwrap_or(0);
            assert_eq!(n, 0, "garbage got an answer instead of a close");
            assert_eq!(good.call(get(2)).await.unwrap(), answer(2));
        }
    });
}

/// Reads until the server closes the connection, failing after `within`.
async fn must_be_closed(raw: &mut TcpStream, within: Duration, what: &str) {
    let deadline = std::time::Instant::now() + within;
    let mut buf = [0u8; 256];
    raw.set_read_timeout(Some(within)).unwrap();
    loop {
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: the server did not close the connection"
        );
        match raw.read(&mut buf).await {
            Ok(0) => return,
            Ok(_) => {}
            // A reset is a close; a read timeout is not.
            Err(e) => {
                assert!(
                    std::time::Instant::now() < deadline,
                    "{what}: the server did not close the connection ({e})"
                );
                return;
            }
        }
    }
}

#[test]
fn peers_without_the_cluster_secret_are_refused() {
    run(|| async {
        let (addr, _) = start_server_with(secure_cfg());
        let good = Client::connect(&addr, hello(), secure_cfg()).await.unwrap();
        assert_eq!(good.call(get(1)).await.unwrap(), answer(1));
        for (what, cfg) in [
            ("wrong secret", wrong_secret_cfg()),
            ("no secret", TransportConfig::default()),
        ] {
            let err = Client::connect(&addr, hello(), cfg).await.unwrap_err();
            assert!(err.to_string().contains("secret"), "{what}: {err}");
        }
        let stranger = net::message::handshake::Hello::new(
            net::message::handshake::Role::DsNode {},
            net::ClusterId(7),
            net::NodeId(9),
        );
        let err = Client::connect(&addr, stranger, secure_cfg())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("cluster"), "{err}");
        assert_eq!(good.call(get(2)).await.unwrap(), answer(2));
    });
}

#[test]
fn an_announced_64_mib_frame_before_the_handshake_is_refused_and_silence_times_out() {
    run(|| async {
        let (addr, _) = start_server_with(secure_cfg());
        let mut announcer = TcpStream::connect(&addr).await.unwrap();
        announcer
            .write_all(&[0xff, 0xff, 0xff, 0x03])
            .await
            .unwrap();
        announcer.flush().await.unwrap();
        must_be_closed(&mut announcer, Duration::from_secs(2), "announced 64 MiB").await;
        let started = std::time::Instant::now();
        let mut silent = TcpStream::connect(&addr).await.unwrap();
        must_be_closed(&mut silent, Duration::from_secs(3), "silent peer").await;
        assert!(
            started.elapsed() >= Duration::from_millis(250),
            "{:?}",
            started.elapsed()
        );
    });
}

#[test]
fn idle_connections_beyond_the_per_peer_limit_are_refused_while_another_peer_connects() {
    run(|| async {
        let cfg = TransportConfig {
            handshake_timeout: Duration::from_secs(30),
            ..secure_cfg()
        };
        let (addr, _) = start_server_with(cfg);
        let mut idle = Vec::new();
        for _ in 0..3 {
            idle.push(TcpStream::connect(&addr).await.unwrap());
        }
        glommio::timer::sleep(Duration::from_millis(100)).await;
        let mut fourth = TcpStream::connect(&addr).await.unwrap();
        must_be_closed(&mut fourth, Duration::from_secs(2), "fourth connection").await;
        // Another address (127.0.0.2) still handshakes and is served: a tokio client on its
        // own thread, while this executor serves it.
        let done = std::sync::Arc::new(std::sync::Mutex::new(None));
        let result = done.clone();
        let other = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let r = rt.block_on(async move {
                let sock = tokio::net::TcpSocket::new_v4().unwrap();
                sock.bind("127.0.0.2:0".parse().unwrap()).unwrap();
                let stream = sock.connect(addr.parse().unwrap()).await.unwrap();
                let mut s = net::tokio_transport::Compat(stream);
                net::transport::client_handshake(&mut s, hello(), &secure_cfg())
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            });
            *result.lock().unwrap() = Some(r);
        });
        let mut waited = 0;
        while done.lock().unwrap().is_none() {
            glommio::timer::sleep(Duration::from_millis(10)).await;
            waited += 1;
            assert!(waited < 500, "the other peer's handshake did not finish");
        }
        other.join().unwrap();
        assert_eq!(done.lock().unwrap().clone(), Some(Ok(())));
        drop(idle);
    });
}
