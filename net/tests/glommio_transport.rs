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
    glommio::spawn_local(serve(
        listener,
        acceptor(),
        TransportConfig::default(),
        64,
        handler,
    ))
    .detach();
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
