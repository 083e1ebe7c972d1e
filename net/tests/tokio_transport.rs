//! The tokio transport over loopback TCP: pipelining with out-of-order replies, bad peers
//! disconnected without harming others, timeouts, handshake refusal, backpressure.
#![allow(clippy::unwrap_used)] // a test fails by panicking

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use futures_util::stream::{FuturesUnordered, StreamExt};
use net::message::handshake::{Hello, Role};
use net::message::{Message, Ping};
use net::tokio_transport::{Client, Compat, serve};
use net::transport::{CallError, TransportConfig, client_handshake};
use net::{ClusterId, NodeId};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Starts a server whose handler answers `get(i)` after `delay_us(i)` and records the order in
/// which it finished requests. Returns its address and that record.
async fn start_server(cfg: TransportConfig) -> (String, Arc<Mutex<Vec<u32>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let finished = Arc::new(Mutex::new(Vec::new()));
    let record = finished.clone();
    let handler = Arc::new(move |msg: Message| {
        let record = record.clone();
        async move {
            if let Some(p) = pong(&msg) {
                return Some(p);
            }
            let i = key_of(&msg)?;
            if i == u32::MAX {
                std::future::pending::<()>().await; // never answers
            }
            tokio::time::sleep(Duration::from_micros(delay_us(i))).await;
            record.lock().unwrap().push(i);
            Some(answer(i))
        }
    });
    tokio::spawn(serve(
        listener,
        acceptor(),
        cfg,
        64,
        handler,
        std::future::pending(),
    ));
    (addr, finished)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_pipelined_requests_on_one_connection_get_their_own_replies() {
    let (addr, finished) = start_server(TransportConfig::default()).await;
    let client = Client::connect(&addr, hello(), TransportConfig::default())
        .await
        .unwrap();
    let n = 5000u32;
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
    let order = finished.lock().unwrap().clone();
    assert_eq!(order.len(), n as usize);
    assert!(
        order.windows(2).any(|w| w[0] > w[1]),
        "the handler's delays should have reordered the replies"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_peer_is_disconnected_while_others_keep_working() {
    let (addr, _) = start_server(TransportConfig::default()).await;
    let good = Client::connect(&addr, hello(), TransportConfig::default())
        .await
        .unwrap();
    assert_eq!(good.call(get(1)).await.unwrap(), answer(1));

    // A Redis client on the wrong port, an HTTP request, random bytes, an oversized length.
    let garbage: [&[u8]; 4] = [
        b"*1\r\n$4\r\nPING\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        &[0x5a; 300],
        &[0xff, 0xff, 0xff, 0x7f, 1, 0, 0, 0],
    ];
    for bytes in garbage {
        let mut raw = TcpStream::connect(&addr).await.unwrap();
        raw.write_all(bytes).await.unwrap();
        let mut buf = [0u8; 64];
        let n = tokio::time::timeout(Duration::from_secs(5), raw.read(&mut buf))
            .await
            .expect("server must close a garbage connection, not wait")
            .unwrap_or(0);
        assert_eq!(n, 0, "garbage {bytes:?} got an answer instead of a close");
        assert_eq!(good.call(get(2)).await.unwrap(), answer(2));
    }

    // A peer that handshakes correctly and then sends a frame with a bad checksum.
    let mut raw = Compat(TcpStream::connect(&addr).await.unwrap());
    client_handshake(&mut raw, hello(), &TransportConfig::default())
        .await
        .unwrap();
    let mut raw = raw.0;
    let mut out = bytes::BytesMut::new();
    get(3).encode_frame(net::RequestId(1), &mut out);
    let last = out.len() - 1;
    out[last] ^= 0xff;
    raw.write_all(&out).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), raw.read(&mut buf))
        .await
        .expect("server must close after a bad frame")
        .unwrap_or(0);
    assert_eq!(n, 0, "a bad frame got an answer");
    assert_eq!(good.call(get(4)).await.unwrap(), answer(4));
}

#[tokio::test]
async fn a_request_without_reply_times_out_and_the_connection_stays_usable() {
    let (addr, _) = start_server(TransportConfig::default()).await;
    let cfg = TransportConfig {
        request_timeout: Duration::from_millis(100),
        ..Default::default()
    };
    let client = Client::connect(&addr, hello(), cfg).await.unwrap();
    assert_eq!(
        client.call(get(u32::MAX)).await.unwrap_err(),
        CallError::Timeout
    );
    assert_eq!(client.call(get(5)).await.unwrap(), answer(5));
}

#[tokio::test]
async fn handshake_from_another_cluster_is_refused() {
    let (addr, _) = start_server(TransportConfig::default()).await;
    let stranger = Hello::new(Role::DsNode {}, ClusterId(7), NodeId(9));
    let err = Client::connect(&addr, stranger, TransportConfig::default())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, CallError::Connect(m) if m.contains("cluster")),
        "{err}"
    );
}

#[tokio::test]
async fn connect_to_a_closed_port_fails_fast() {
    let port = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let err = Client::connect(
        &format!("127.0.0.1:{port}"),
        hello(),
        TransportConfig::default(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, CallError::Connect(_)), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_in_flight_bounds_apply_backpressure_without_failing_requests() {
    let tight = TransportConfig {
        max_in_flight: 4,
        queue_depth: 8,
        ..Default::default()
    };
    let (addr, _) = start_server(tight.clone()).await;
    let client = Client::connect(&addr, hello(), tight).await.unwrap();
    let calls: FuturesUnordered<_> = (0..500u32)
        .map(|i| {
            let c = client.clone();
            async move { (i, c.call(get(i)).await) }
        })
        .collect();
    let results: Vec<_> = calls.collect().await;
    for (i, r) in results {
        assert_eq!(r.unwrap(), answer(i));
    }
}

#[tokio::test]
async fn in_flight_calls_fail_when_the_server_goes_away() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let handler = Arc::new(|_m: Message| async {
        std::future::pending::<()>().await;
        None
    });
    let server = tokio::spawn(serve(
        listener,
        acceptor(),
        TransportConfig::default(),
        4,
        handler,
        async {
            let _ = stop_rx.await;
        },
    ));
    let client = Client::connect(&addr, hello(), TransportConfig::default())
        .await
        .unwrap();
    let call = tokio::spawn({
        let c = client.clone();
        async move { c.call(Message::Ping(Ping { nonce: 1 })).await }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    stop_tx.send(()).unwrap();
    server.await.unwrap();
    let err = call.await.unwrap().unwrap_err();
    assert!(matches!(err, CallError::Closed(_)), "{err}");
    assert!(client.is_closed() || client.call(get(1)).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_gets_every_reply_in_request_order_despite_reordering() {
    let (addr, finished) = start_server(TransportConfig::default()).await;
    let client = Client::connect(&addr, hello(), TransportConfig::default())
        .await
        .unwrap();
    let batch: Vec<Message> = (0..200u32).map(get).collect();
    let replies = client.call_batch(batch).await.unwrap();
    assert_eq!(replies.len(), 200);
    for (i, r) in replies.into_iter().enumerate() {
        assert_eq!(r.unwrap(), answer(i as u32));
    }
    let order = finished.lock().unwrap().clone();
    assert!(
        order.windows(2).any(|w| w[0] > w[1]),
        "server finished out of order"
    );
    assert!(client.call_batch(vec![]).await.unwrap().is_empty());
}

/// A request whose payload is `len` bytes of value (plus a few bytes of framing).
fn put_of(len: usize) -> Message {
    Message::KvRequest(net::message::kv::KvRequest {
        ctx: Default::default(),
        op: net::message::kv::KvOp::Put {
            key: bytes::Bytes::from_static(b"k"),
            value: bytes::Bytes::from(vec![b'v'; len]),
            expiry: Default::default(),
            cond: Default::default(),
            return_old: false,
        },
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_over_the_frame_limit_fails_alone_and_the_connection_stays_up() {
    let (addr, _) = start_server(TransportConfig::default()).await;
    let cfg = TransportConfig {
        max_frame_bytes: 4096,
        ..TransportConfig::default()
    };
    let client = Client::connect(&addr, hello(), cfg).await.unwrap();
    let err = client.call(put_of(5000)).await.unwrap_err();
    assert!(
        matches!(err, CallError::TooLarge { len, max: 4096 } if len > 5000),
        "{err}"
    );
    assert!(!err.maybe_sent(), "an oversized request is never sent");
    assert_eq!(client.call(get(3)).await.unwrap(), answer(3));
    // In a batch, only the oversized request fails; the others are answered in order.
    let batch = vec![get(1), put_of(5000), get(2)];
    let replies = client.call_batch(batch).await.unwrap();
    assert_eq!(replies[0], Ok(answer(1)));
    assert!(matches!(replies[1], Err(CallError::TooLarge { .. })));
    assert_eq!(replies[2], Ok(answer(2)));
    assert!(!client.is_closed());
    // A batch made only of oversized requests completes too.
    let replies = client.call_batch(vec![put_of(9000)]).await.unwrap();
    assert!(matches!(replies[..], [Err(CallError::TooLarge { .. })]));
    assert_eq!(client.call(get(4)).await.unwrap(), answer(4));
}

#[tokio::test]
async fn handlers_that_answer_at_once_and_later_share_a_connection() {
    use net::transport::Handled;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    // Even keys are answered synchronously, odd keys after a delay.
    let handler = Arc::new(|msg: Message| {
        let i = key_of(&msg).unwrap();
        if i % 2 == 0 {
            Handled::Now(Some(answer(i)))
        } else {
            Handled::Later(async move {
                tokio::time::sleep(Duration::from_micros(delay_us(i))).await;
                Some(answer(i))
            })
        }
    });
    tokio::spawn(net::tokio_transport::serve_handled(
        listener,
        acceptor(),
        TransportConfig::default(),
        4,
        handler,
        std::future::pending(),
    ));
    let client = Client::connect(&addr, hello(), TransportConfig::default())
        .await
        .unwrap();
    let replies = client
        .call_batch((0..500u32).map(get).collect())
        .await
        .unwrap();
    for (i, r) in replies.into_iter().enumerate() {
        assert_eq!(r.unwrap(), answer(i as u32));
    }
}

/// Connects from `source_ip` (any 127.0.0.0/8 address is local on Linux).
async fn connect_from(source_ip: &str, addr: &str) -> TcpStream {
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind(format!("{source_ip}:0").parse().unwrap())
        .unwrap();
    sock.connect(addr.parse().unwrap()).await.unwrap()
}

/// Reads until the server closes the connection, failing after `within`.
async fn must_be_closed(raw: &mut TcpStream, within: Duration, what: &str) {
    let mut buf = [0u8; 256];
    loop {
        let n = tokio::time::timeout(within, raw.read(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("{what}: the server did not close the connection"))
            .unwrap_or(0);
        if n == 0 {
            return;
        }
    }
}

#[tokio::test]
async fn peers_without_the_cluster_secret_are_refused() {
    let (addr, _) = start_server(secure_cfg()).await;
    let good = Client::connect(&addr, hello(), secure_cfg()).await.unwrap();
    assert_eq!(good.call(get(1)).await.unwrap(), answer(1));
    for (what, cfg) in [
        ("wrong secret", wrong_secret_cfg()),
        ("no secret", TransportConfig::default()),
    ] {
        let err = Client::connect(&addr, hello(), cfg).await.unwrap_err();
        assert!(
            matches!(&err, CallError::Connect(m) if m.contains("secret")),
            "{what}: {err}"
        );
    }
    // A server without the secret is refused by a client that has it.
    let (open_addr, _) = start_server(TransportConfig::default()).await;
    let err = Client::connect(&open_addr, hello(), secure_cfg())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, CallError::Connect(m) if m.contains("secret")),
        "{err}"
    );
    assert_eq!(good.call(get(2)).await.unwrap(), answer(2));
}

#[tokio::test]
async fn a_zero_or_foreign_cluster_id_on_the_acceptor_is_refused_by_the_connector() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let mut unbootstrapped = acceptor();
    unbootstrapped.cluster_id = ClusterId(0);
    let handler = Arc::new(|m: Message| async move { pong(&m) });
    tokio::spawn(serve(
        listener,
        unbootstrapped,
        secure_cfg(),
        8,
        handler,
        std::future::pending(),
    ));
    let err = Client::connect(&addr, hello(), secure_cfg())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, CallError::Connect(m) if m.contains("cluster")),
        "{err}"
    );
}

#[tokio::test]
async fn an_announced_64_mib_frame_before_the_handshake_is_refused_and_silence_times_out() {
    let (addr, _) = start_server(secure_cfg()).await;
    let mut announcer = TcpStream::connect(&addr).await.unwrap();
    announcer
        .write_all(&[0xff, 0xff, 0xff, 0x03])
        .await
        .unwrap();
    must_be_closed(&mut announcer, Duration::from_secs(2), "announced 64 MiB").await;
    // Says nothing at all: closed after the handshake timeout (300 ms here).
    let started = std::time::Instant::now();
    let mut silent = TcpStream::connect(&addr).await.unwrap();
    must_be_closed(&mut silent, Duration::from_secs(3), "silent peer").await;
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_beyond_the_per_peer_limit_are_refused_while_another_peer_connects() {
    let cfg = TransportConfig {
        handshake_timeout: Duration::from_secs(30),
        ..secure_cfg()
    };
    let (addr, _) = start_server(cfg).await;
    // Three idle sockets from 127.0.0.1 (the limit), then a fourth: closed at once.
    let mut idle = Vec::new();
    for _ in 0..3 {
        idle.push(connect_from("127.0.0.1", &addr).await);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut fourth = connect_from("127.0.0.1", &addr).await;
    must_be_closed(&mut fourth, Duration::from_secs(2), "fourth connection").await;
    // Another address still handshakes and is served.
    let mut other = Compat(connect_from("127.0.0.2", &addr).await);
    client_handshake(&mut other, hello(), &secure_cfg())
        .await
        .unwrap();
    let mut out = bytes::BytesMut::new();
    Message::Ping(Ping { nonce: 9 }).encode_frame(net::RequestId(1), &mut out);
    other.0.write_all(&out).await.unwrap();
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(2), other.0.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert!(n > 0, "the other peer got no pong");
    drop(idle);
}
