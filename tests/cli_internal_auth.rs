//! The internal ports of `tierkv dev` (a DS shard, the master) refuse peers that do not hold
//! the cluster secret — a native client with no secret or another one, a raw socket that
//! announces a 64 MiB frame or says nothing — while the cluster keeps serving Redis clients;
//! a client given `<data-dir>/cluster-secret` is served (by a shard only with the cluster id
//! the master announces: cluster id 0 is refused there).
#![allow(clippy::unwrap_used)] // a test fails by panicking

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use net::auth::ClusterSecret;
use net::message::handshake::{Hello, Role};
use net::message::{Message, TsoRequest};
use net::tokio_transport::Client;
use net::transport::{CallError, TransportConfig};
use net::{ClusterId, NodeId};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts `tierkv dev` and returns it with its master and first shard addresses.
fn start(dir: &std::path::Path, port: u16) -> (Child, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tierkv"))
        .args([
            "dev",
            "--shards",
            "1",
            "--port",
            &port.to_string(),
            "--data-dir",
        ])
        .arg(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (mut master, mut shard) = (None, None);
    while master.is_none() || shard.is_none() {
        let line = lines.next().expect("tierkv dev exited early").unwrap();
        if let Some(a) = line.trim().strip_prefix("master:") {
            master = Some(a.trim().to_string());
        }
        if let Some(a) = line.trim().strip_prefix("shards:") {
            shard = a.split(',').next().map(|s| s.trim().to_string());
        }
    }
    // Keep draining stdout so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (child, master.unwrap(), shard.unwrap())
}

/// SET then GET through the proxy; the reply of the GET.
fn redis_set_get(port: u16, key: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let cmd = format!(
                "*3\r\n$3\r\nSET\r\n${}\r\n{key}\r\n$1\r\nv\r\n*2\r\n$3\r\nGET\r\n${}\r\n{key}\r\n",
                key.len(),
                key.len()
            );
            s.write_all(cmd.as_bytes()).unwrap();
            let mut r = BufReader::new(s);
            let mut set = String::new();
            let _ = r.read_line(&mut set);
            if set.trim_end() == "+OK" {
                let mut len = String::new();
                let mut val = String::new();
                r.read_line(&mut len).unwrap();
                r.read_line(&mut val).unwrap();
                return val.trim_end().to_string();
            }
        }
        assert!(Instant::now() < deadline, "tierkv dev did not serve SET");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Whether the server closes `raw` (read returns 0 or an error) within `within`.
fn closed_within(raw: &mut TcpStream, within: Duration) -> bool {
    raw.set_read_timeout(Some(within)).unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 256];
    loop {
        match raw.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return false;
            }
            Err(_) => return started.elapsed() < within,
        }
    }
}

async fn connect(addr: &str, secret: ClusterSecret) -> Result<Client, CallError> {
    connect_as(addr, secret, ClusterId(0)).await
}

async fn connect_as(
    addr: &str,
    secret: ClusterSecret,
    cluster: ClusterId,
) -> Result<Client, CallError> {
    let hello = Hello::new(Role::Client {}, cluster, NodeId(0));
    let cfg = TransportConfig {
        secret,
        ..Default::default()
    };
    Client::connect(addr, hello, cfg).await
}

#[test]
fn internal_ports_refuse_peers_without_the_cluster_secret_and_the_cluster_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let (mut child, master, shard) = start(dir.path(), port);
    assert_eq!(redis_set_get(port, "before"), "v");
    let secret = ClusterSecret::load(&dir.path().join("cluster-secret")).unwrap();
    let stranger = ClusterSecret::from_text(b"a secret of some other cluster").unwrap();

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        for addr in [&master, &shard] {
            for (what, s) in [
                ("no secret", ClusterSecret::insecure()),
                ("another secret", stranger.clone()),
            ] {
                let err = connect(addr, s).await.unwrap_err();
                assert!(err.to_string().contains("secret"), "{addr} {what}: {err}");
            }
        }
        // The right secret is served by the master.
        let c = connect(&master, secret.clone()).await.unwrap();
        let reply = c.call(TsoRequest { count: 1 }.into()).await.unwrap();
        assert!(matches!(reply, Message::TsoBatch(_)), "{reply:?}");
        let cluster = c.peer().cluster_id;
        assert_ne!(cluster, ClusterId(0), "the master announces its cluster");
        // A shard refuses a connector that proves the secret but has no cluster id (only
        // the master teaches it), and serves one with the cluster's id.
        let err = connect(&shard, secret.clone()).await.unwrap_err();
        assert!(err.to_string().contains("cluster"), "{err}");
        let d = connect_as(&shard, secret.clone(), cluster).await.unwrap();
        assert_eq!(d.peer().cluster_id, cluster, "the shard knows its cluster");
    });

    // Raw sockets: a 64 MiB announcement is refused at once; silence times out (5 s).
    for addr in [&master, &shard] {
        let mut raw = TcpStream::connect(addr).unwrap();
        raw.write_all(&[0xff, 0xff, 0xff, 0x03]).unwrap();
        assert!(
            closed_within(&mut raw, Duration::from_secs(3)),
            "{addr}: 64 MiB announcement not refused"
        );
        let mut silent = TcpStream::connect(addr).unwrap();
        assert!(
            closed_within(&mut silent, Duration::from_secs(10)),
            "{addr}: a silent peer was not timed out"
        );
    }

    assert_eq!(redis_set_get(port, "after"), "v");
    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "tierkv dev did not stop");
        std::thread::sleep(Duration::from_millis(20));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(dir.path().join("cluster-secret")).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    }
}
