//! Round trip over loopback TCP through the `net` transports against a bare TCP echo written
//! with the same runtime, at 1 and 64 requests in flight. Server and client each run on their
//! own thread and runtime. Rounds alternate protocol / echo; the median ratio is printed.
//!
//! `cargo bench -p net --bench transport -- [rounds] [batches per round] [only, e.g. tokio64]`
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use net::RequestId;
use net::ids::{ClusterId, NodeId};
use net::message::Message;
use net::message::handshake::{Acceptor, Hello, Role};
use net::message::kv::{KvOp, KvRequest, KvResponse, OpResult};
use net::transport::{Handled, TransportConfig};

/// The (unused) future type of a handler that always answers at once.
type Ready = std::future::Ready<Option<Message>>;

fn request() -> Message {
    Message::KvRequest(KvRequest {
        ctx: Default::default(),
        op: KvOp::StrGet {
            key: Bytes::from_static(b"user:0000001234"),
        },
    })
}

fn reply() -> Message {
    Message::KvResponse(KvResponse::Ok {
        result: OpResult::Value {
            value: Some(Bytes::from_static(&[7u8; 100])),
        },
    })
}

fn frame_len(m: &Message) -> usize {
    let mut b = BytesMut::new();
    m.encode_frame(RequestId(1), &mut b);
    b.len()
}

fn acceptor() -> Acceptor {
    Acceptor {
        role: Role::DsNode {},
        cluster_id: ClusterId(1),
        node_id: NodeId(1),
    }
}

fn hello() -> Hello {
    Hello::new(Role::Proxy {}, ClusterId(1), NodeId(2))
}

/// Echo client work shared by both runtimes: the request frame goes out `depth` times and the
/// same number of reply-sized frames come back (the echo server answers each request with a
/// reply of the protocol's reply size, so both sides move the same bytes).
fn echo_payloads(depth: usize) -> (Vec<u8>, usize) {
    let mut out = BytesMut::new();
    for _ in 0..depth {
        request().encode_frame(RequestId(1), &mut out);
    }
    (out.to_vec(), frame_len(&reply()) * depth)
}

mod tokio_side {
    use super::*;
    use futures_util::future::join_all;
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    pub fn start_servers() -> (String, String) {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            rt().block_on(async move {
                let proto = TcpListener::bind("127.0.0.1:0").await.unwrap();
                let echo = TcpListener::bind("127.0.0.1:0").await.unwrap();
                tx.send((
                    proto.local_addr().unwrap().to_string(),
                    echo.local_addr().unwrap().to_string(),
                ))
                .unwrap();
                let handler = Arc::new(|_m: Message| Handled::<Ready>::Now(Some(reply())));
                tokio::spawn(net::tokio_transport::serve_handled(
                    proto,
                    acceptor(),
                    TransportConfig::default(),
                    16,
                    handler,
                    std::future::pending(),
                ));
                let (req_len, rep_len) = (frame_len(&request()), frame_len(&reply()));
                loop {
                    let (mut s, _) = echo.accept().await.unwrap();
                    s.set_nodelay(true).unwrap();
                    tokio::spawn(async move {
                        let mut buf = vec![0u8; 64 * 1024];
                        let answer = vec![7u8; rep_len];
                        let mut pending = 0usize;
                        loop {
                            let n = match s.read(&mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => n,
                            };
                            pending += n;
                            let mut out = Vec::new();
                            while pending >= req_len {
                                pending -= req_len;
                                out.extend_from_slice(&answer);
                            }
                            if s.write_all(&out).await.is_err() {
                                return;
                            }
                        }
                    });
                }
            });
        });
        rx.recv().unwrap()
    }

    pub fn run_proto(addr: &str, depth: usize, batches: usize) -> Duration {
        rt().block_on(async {
            let c =
                net::tokio_transport::Client::connect(addr, hello(), TransportConfig::default())
                    .await
                    .unwrap();
            let start = Instant::now();
            for _ in 0..batches {
                let calls = (0..depth).map(|_| c.call(request()));
                for r in join_all(calls).await {
                    r.unwrap();
                }
            }
            start.elapsed()
        })
    }

    pub fn run_proto_batch(addr: &str, depth: usize, batches: usize) -> Duration {
        rt().block_on(async {
            let c =
                net::tokio_transport::Client::connect(addr, hello(), TransportConfig::default())
                    .await
                    .unwrap();
            let start = Instant::now();
            for _ in 0..batches {
                for r in c.call_batch(vec![request(); depth]).await.unwrap() {
                    r.unwrap();
                }
            }
            start.elapsed()
        })
    }

    pub fn run_echo(addr: &str, depth: usize, batches: usize) -> Duration {
        rt().block_on(async {
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.set_nodelay(true).unwrap();
            let (out, want) = echo_payloads(depth);
            let mut buf = vec![0u8; want];
            let start = Instant::now();
            for _ in 0..batches {
                s.write_all(&out).await.unwrap();
                s.read_exact(&mut buf).await.unwrap();
            }
            start.elapsed()
        })
    }
}

mod glommio_side {
    use super::*;
    use futures_lite::{AsyncReadExt, AsyncWriteExt};
    use futures_util::future::join_all;
    use glommio::net::{TcpListener, TcpStream};
    use glommio::{LocalExecutorBuilder, Placement};
    use std::rc::Rc;

    fn on_executor<T: Send + 'static>(
        f: impl FnOnce() -> std::pin::Pin<Box<dyn std::future::Future<Output = T>>> + Send + 'static,
    ) -> T {
        LocalExecutorBuilder::new(Placement::Unbound)
            .spawn(f)
            .unwrap()
            .join()
            .unwrap()
    }

    pub fn start_servers() -> (String, String) {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            LocalExecutorBuilder::new(Placement::Unbound)
                .spawn(move || async move {
                    let proto = TcpListener::bind("127.0.0.1:0").unwrap();
                    let echo = TcpListener::bind("127.0.0.1:0").unwrap();
                    tx.send((
                        proto.local_addr().unwrap().to_string(),
                        echo.local_addr().unwrap().to_string(),
                    ))
                    .unwrap();
                    let handler = Rc::new(|_m: Message| Handled::<Ready>::Now(Some(reply())));
                    glommio::spawn_local(net::glommio_transport::serve_handled(
                        proto,
                        acceptor(),
                        TransportConfig::default(),
                        16,
                        handler,
                    ))
                    .detach();
                    let (req_len, rep_len) = (frame_len(&request()), frame_len(&reply()));
                    loop {
                        let mut s = echo.accept().await.unwrap();
                        s.set_nodelay(true).unwrap();
                        glommio::spawn_local(async move {
                            let mut buf = vec![0u8; 64 * 1024];
                            let answer = vec![7u8; rep_len];
                            let mut pending = 0usize;
                            loop {
                                let n = match s.read(&mut buf).await {
                                    Ok(0) | Err(_) => return,
                                    Ok(n) => n,
                                };
                                pending += n;
                                let mut out = Vec::new();
                                while pending >= req_len {
                                    pending -= req_len;
                                    out.extend_from_slice(&answer);
                                }
                                if s.write_all(&out).await.is_err() {
                                    return;
                                }
                            }
                        })
                        .detach();
                    }
                })
                .unwrap()
                .join()
                .unwrap();
        });
        rx.recv().unwrap()
    }

    pub fn run_proto(addr: &str, depth: usize, batches: usize) -> Duration {
        let addr = addr.to_string();
        on_executor(move || {
            Box::pin(async move {
                let c = net::glommio_transport::Client::connect(
                    &addr,
                    hello(),
                    TransportConfig::default(),
                )
                .await
                .unwrap();
                let start = Instant::now();
                for _ in 0..batches {
                    let calls = (0..depth).map(|_| c.call(request()));
                    for r in join_all(calls).await {
                        r.unwrap();
                    }
                }
                start.elapsed()
            })
        })
    }

    pub fn run_proto_batch(addr: &str, depth: usize, batches: usize) -> Duration {
        let addr = addr.to_string();
        on_executor(move || {
            Box::pin(async move {
                let c = net::glommio_transport::Client::connect(
                    &addr,
                    hello(),
                    TransportConfig::default(),
                )
                .await
                .unwrap();
                let start = Instant::now();
                for _ in 0..batches {
                    for r in c.call_batch(vec![request(); depth]).await.unwrap() {
                        r.unwrap();
                    }
                }
                start.elapsed()
            })
        })
    }

    pub fn run_echo(addr: &str, depth: usize, batches: usize) -> Duration {
        let addr = addr.to_string();
        on_executor(move || {
            Box::pin(async move {
                let mut s = TcpStream::connect(&addr).await.unwrap();
                s.set_nodelay(true).unwrap();
                let (out, want) = echo_payloads(depth);
                let mut buf = vec![0u8; want];
                let start = Instant::now();
                for _ in 0..batches {
                    s.write_all(&out).await.unwrap();
                    s.read_exact(&mut buf).await.unwrap();
                }
                start.elapsed()
            })
        })
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let rounds: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(7);
    let batches: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(4000);
    // Optional third argument: run only e.g. "tokio64,glommio1".
    let filter = args.get(2).cloned().unwrap_or_default();
    let (tp, te) = tokio_side::start_servers();
    let (gp, ge) = glommio_side::start_servers();
    println!(
        "runtime  depth  proto_us_per_batch  echo_us_per_batch  ratio(proto/echo)  [median of {rounds} alternating rounds, {batches} batches each]"
    );
    for depth in [1usize, 64] {
        let b = if depth == 1 { batches } else { batches / 8 };
        type Run = fn(&str, usize, usize) -> Duration;
        let sides: [(&str, Run, Run, &str, &str); 4] = [
            (
                "tokio",
                tokio_side::run_proto,
                tokio_side::run_echo,
                &tp,
                &te,
            ),
            (
                "tokio-batch",
                tokio_side::run_proto_batch,
                tokio_side::run_echo,
                &tp,
                &te,
            ),
            (
                "glommio",
                glommio_side::run_proto,
                glommio_side::run_echo,
                &gp,
                &ge,
            ),
            (
                "glommio-batch",
                glommio_side::run_proto_batch,
                glommio_side::run_echo,
                &gp,
                &ge,
            ),
        ];
        for (name, proto, echo, pa, ea) in sides {
            if !filter.is_empty() && !filter.contains(&format!("{name}{depth}")) {
                continue;
            }
            proto(pa, depth, b / 10); // warm up both
            echo(ea, depth, b / 10);
            let (mut ps, mut es, mut ratios) = (vec![], vec![], vec![]);
            for _ in 0..rounds {
                let p = proto(pa, depth, b).as_secs_f64() * 1e6 / b as f64;
                let e = echo(ea, depth, b).as_secs_f64() * 1e6 / b as f64;
                ps.push(p);
                es.push(e);
                ratios.push(p / e);
            }
            println!(
                "{name:13} {depth:5}  {:18.1}  {:17.1}  {:17.3}",
                median(&mut ps),
                median(&mut es),
                median(&mut ratios)
            );
        }
    }
}
