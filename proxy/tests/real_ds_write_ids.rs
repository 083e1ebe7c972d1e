//! Write ids end to end: the proxy in front of a real DS node (`ds_node::run`, one replica of
//! range 1; only the master is faked), through a TCP relay that can reset the proxy's
//! connection just as the DS answers a write. The write was applied and its answer lost; the
//! proxy re-sends it with the same write id on a new connection, and the range applies it once.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use common::Env;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A relay to one address that can cut the connection carrying the next reply.
#[derive(Default)]
struct Cutter {
    /// Close the connection on which the next bytes from the DS arrive, without them.
    armed: AtomicBool,
    /// Connections cut so far.
    cuts: AtomicU32,
}

async fn relay(listener: TcpListener, target: String, cutter: Arc<Cutter>) {
    loop {
        let (inbound, _) = listener.accept().await.unwrap();
        let outbound = TcpStream::connect(&target).await.unwrap();
        tokio::spawn(pipe(inbound, outbound, cutter.clone()));
    }
}

async fn pipe(proxy_side: TcpStream, ds_side: TcpStream, cutter: Arc<Cutter>) {
    let (mut from_proxy, mut to_proxy) = proxy_side.into_split();
    let (mut from_ds, mut to_ds) = ds_side.into_split();
    let up = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut from_proxy, &mut to_ds).await;
    });
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = match from_ds.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if cutter.armed.swap(false, Ordering::AcqRel) {
            cutter.cuts.fetch_add(1, Ordering::Relaxed);
            break;
        }
        if to_proxy.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    // Dropping both halves of the proxy's side closes its connection.
    up.abort();
}

fn ds_config(dir: &std::path::Path) -> ds_node::DsConfig {
    common::real_ds::ds_config(dir, 1)
}

#[test]
fn an_incr_whose_connection_was_reset_after_it_applied_counts_once() {
    let dir = std::env::temp_dir().join(format!("proxy-real-ds-ids-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let node = ds_node::run(ds_config(&dir)).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let cutter = Arc::new(Cutter::default());
    let relay_addr = rt.block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(relay(listener, node.shard_addrs[0].clone(), cutter.clone()));
        addr
    });
    let master = rt.block_on(common::start_master(common::one_range_table(
        vec![relay_addr],
        0,
    )));
    let env = Env::start_with(1, |c| c.router.masters = vec![master.clone()]);
    let mut c = env.client();
    let deadline = Instant::now() + Duration::from_secs(10);
    while c.cmd("SET n 10") != "+OK\r\n" {
        assert!(Instant::now() < deadline, "no leader");
        std::thread::sleep(Duration::from_millis(50));
    }
    for want in [":11\r\n", ":12\r\n"] {
        cutter.armed.store(true, Ordering::Release);
        assert_eq!(c.cmd("INCR n"), want);
        assert!(!cutter.armed.load(Ordering::Acquire), "a reply was cut");
    }
    assert_eq!(cutter.cuts.load(Ordering::Relaxed), 2);
    assert_eq!(c.cmd("GET n"), "$2\r\n12\r\n", "each INCR counted once");
    // A MULTI/EXEC cut the same way applies once too.
    assert_eq!(c.cmd("MULTI"), "+OK\r\n");
    assert_eq!(c.cmd("INCRBY n 5"), "+QUEUED\r\n");
    cutter.armed.store(true, Ordering::Release);
    assert_eq!(c.cmd("EXEC"), "*1\r\n:17\r\n");
    assert_eq!(c.cmd("GET n"), "$2\r\n17\r\n");
    drop(c);
    drop(env);
    node.shutdown().unwrap();
    drop(rt);
    let _ = std::fs::remove_dir_all(&dir);
}
