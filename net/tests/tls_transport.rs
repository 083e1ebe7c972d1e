//! Mutual TLS under the secret handshake, on both transports: requests travel over mTLS;
//! a peer without a certificate, with one of another CA, or speaking plain TCP is refused
//! (and counted) while the acceptor keeps serving its members; no mix of settings hangs.
#![allow(clippy::unwrap_used)] // a test fails by panicking

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::pki::Ca;
use common::*;
use futures_util::stream::{FuturesUnordered, StreamExt};
use net::message::Message;
use net::tls::SERVER_NAME;
use net::transport::{HandshakeFailure, TransportConfig, client_handshake};

fn tls_cfg(ca: &Ca, name: &str) -> TransportConfig {
    TransportConfig {
        tls: Some(ca.tls(name)),
        ..secure_cfg()
    }
}

/// Waits (briefly) until the process-wide TLS failure count reaches `at_least`.
fn must_count_tls_failures(at_least: u64) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while HandshakeFailure::Tls.count() < at_least {
        assert!(Instant::now() < deadline, "TLS failures were not counted");
        std::thread::sleep(Duration::from_millis(10));
    }
}

mod tokio_side {
    use super::*;
    use net::tokio_transport::{Client, Compat, serve};
    use tokio::net::{TcpListener, TcpStream};

    async fn start_server(cfg: TransportConfig) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let handler =
            Arc::new(|msg: Message| async move { pong(&msg).or_else(|| key_of(&msg).map(answer)) });
        let serving = serve(
            listener,
            acceptor(),
            cfg,
            64,
            handler,
            std::future::pending(),
        );
        tokio::spawn(serving);
        addr
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn pipelined_requests_travel_over_mutual_tls() {
        let ca = Ca::new("cluster CA");
        let addr = start_server(tls_cfg(&ca, "ds")).await;
        let client = Client::connect(&addr, hello(), tls_cfg(&ca, "proxy"))
            .await
            .unwrap();
        let mut calls: FuturesUnordered<_> = (0..2000u32)
            .map(|i| {
                let c = client.clone();
                async move { (i, c.call(get(i)).await) }
            })
            .collect();
        while let Some((i, reply)) = calls.next().await {
            assert_eq!(reply.unwrap(), answer(i), "reply for request {i}");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn peers_without_a_certificate_of_the_cluster_ca_are_refused_and_counted() {
        let ca = Ca::new("cluster CA");
        let addr = start_server(tls_cfg(&ca, "ds")).await;
        let good = Client::connect(&addr, hello(), tls_cfg(&ca, "proxy"))
            .await
            .unwrap();
        assert_eq!(good.call(get(1)).await.unwrap(), answer(1));
        let before = HandshakeFailure::Tls.count();

        // A certificate of another CA (which also does not trust this server's).
        let other = Ca::new("another CA");
        let err = Client::connect(&addr, hello(), tls_cfg(&other, "intruder"))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("tls"), "foreign CA: {err}");
        // Plain TCP against the TLS acceptor: refused, not hung.
        let started = Instant::now();
        let err = Client::connect(&addr, hello(), secure_cfg())
            .await
            .unwrap_err();
        assert!(
            started.elapsed() < Duration::from_millis(900),
            "plain peer: {err}"
        );
        assert!(err.to_string().contains("require TLS"), "plain peer: {err}");
        // TLS that trusts the server but presents no client certificate.
        let raw = TcpStream::connect(&addr).await.unwrap();
        let name = rustls_pki_types::ServerName::try_from(SERVER_NAME).unwrap();
        let refused = async {
            let mut tls = ca.no_client_cert().connect(name, Compat(raw)).await?;
            client_handshake(&mut tls, hello(), &secure_cfg())
                .await
                .map_err(std::io::Error::other)?;
            Ok::<_, std::io::Error>(())
        };
        let result = tokio::time::timeout(Duration::from_secs(5), refused).await;
        assert!(
            matches!(result, Ok(Err(_))),
            "no client certificate: {result:?}"
        );

        must_count_tls_failures(before + 3);
        assert_eq!(good.call(get(2)).await.unwrap(), answer(2));
        let again = Client::connect(&addr, hello(), tls_cfg(&ca, "proxy-2"))
            .await
            .unwrap();
        assert_eq!(again.call(get(3)).await.unwrap(), answer(3));
    }

    #[tokio::test]
    async fn a_tls_connector_against_a_plain_acceptor_fails_fast() {
        let ca = Ca::new("cluster CA");
        let addr = start_server(secure_cfg()).await;
        let started = Instant::now();
        let err = Client::connect(&addr, hello(), tls_cfg(&ca, "proxy"))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("tls"), "{err}");
        assert!(started.elapsed() < Duration::from_millis(900), "{err}");
    }

    #[tokio::test]
    async fn a_silent_peer_times_out_in_the_tls_handshake() {
        let ca = Ca::new("cluster CA");
        let addr = start_server(tls_cfg(&ca, "ds")).await;
        let before = HandshakeFailure::Timeout.count();
        let mut raw = TcpStream::connect(&addr).await.unwrap();
        let mut buf = [0u8; 16];
        let n = tokio::time::timeout(
            Duration::from_secs(5),
            tokio::io::AsyncReadExt::read(&mut raw, &mut buf),
        )
        .await
        .expect("the handshake timeout must close a silent peer")
        .unwrap_or(0);
        assert_eq!(n, 0);
        assert!(HandshakeFailure::Timeout.count() > before);
    }
}

mod glommio_side {
    use super::*;
    use glommio::net::TcpListener;
    use glommio::{LocalExecutorBuilder, Placement};
    use net::glommio_transport::{Client, serve};
    use std::rc::Rc;

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

    fn start_server(cfg: TransportConfig) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let handler =
            Rc::new(|msg: Message| async move { pong(&msg).or_else(|| key_of(&msg).map(answer)) });
        glommio::spawn_local(serve(listener, acceptor(), cfg, 64, handler)).detach();
        addr
    }

    #[test]
    fn shards_talk_over_mutual_tls_and_refuse_strangers() {
        let ca = Arc::new(Ca::new("cluster CA"));
        run(move || async move {
            let addr = start_server(tls_cfg(&ca, "ds-a"));
            let good = Client::connect(&addr, hello(), tls_cfg(&ca, "ds-b"))
                .await
                .unwrap();
            let replies = good.call_batch((0..500).map(get).collect()).await.unwrap();
            for (i, r) in (0..500).zip(replies) {
                assert_eq!(r.unwrap(), answer(i));
            }
            let before = HandshakeFailure::Tls.count();
            let other = Ca::new("another CA");
            for (what, cfg) in [
                ("foreign CA", tls_cfg(&other, "intruder")),
                ("plain TCP", secure_cfg()),
            ] {
                let err = Client::connect(&addr, hello(), cfg).await.unwrap_err();
                assert!(err.to_string().contains("connect failed"), "{what}: {err}");
            }
            glommio::timer::sleep(Duration::from_millis(50)).await;
            assert!(HandshakeFailure::Tls.count() >= before + 2);
            assert_eq!(good.call(get(7)).await.unwrap(), answer(7));
        });
    }
}
