//! `tierkv dev --tls-ca --tls-cert --tls-key`: every internal connection (proxy, DS node,
//! probes, master) is mutual TLS. SET/GET work through the proxy with no TLS handshake
//! failing among the members; a native client that holds the cluster secret but speaks plain
//! TCP, or presents a certificate of another CA, is refused and counted; one with a
//! certificate of the cluster CA is served.
#![allow(clippy::unwrap_used)] // a test fails by panicking

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use net::auth::ClusterSecret;
use net::message::handshake::{Hello, Role};
use net::message::{Message, TsoRequest};
use net::tls::{SERVER_NAME, TlsConfig};
use net::tokio_transport::Client;
use net::transport::{CallError, TransportConfig};
use net::{ClusterId, NodeId};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};

/// A fresh CA; returns its certificate PEM and a node certificate and key PEM signed by it.
fn make_pki(name: &str) -> (String, String, String) {
    let ca_key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    p.distinguished_name.push(DnType::CommonName, name);
    let ca = p.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(vec![SERVER_NAME.to_string()]).unwrap();
    p.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let cert = p.signed_by(&key, &ca, &ca_key).unwrap();
    (ca.pem(), cert.pem(), key.serialize_pem())
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The addresses `tierkv dev` prints.
struct Printed {
    master: String,
    shard: String,
    ds_admin: u16,
}

fn start(dir: &Path, tls: &Path, port: u16) -> (Child, Printed) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tierkv"))
        .args(["dev", "--shards", "1", "--port", &port.to_string()])
        .arg("--data-dir")
        .arg(dir)
        .arg("--tls-ca")
        .arg(tls.join("ca.pem"))
        .arg("--tls-cert")
        .arg(tls.join("node.pem"))
        .arg("--tls-key")
        .arg(tls.join("node.key"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (mut master, mut shard, mut ds_admin) = (None, None, None);
    while master.is_none() || shard.is_none() || ds_admin.is_none() {
        let line = lines.next().expect("tierkv dev exited early").unwrap();
        let line = line.trim();
        if let Some(a) = line.strip_prefix("master:") {
            master = Some(a.trim().to_string());
        }
        if let Some(a) = line.strip_prefix("shards:") {
            shard = a.split(',').next().map(|s| s.trim().to_string());
        }
        if let Some(a) = line.strip_prefix("DS node: http://") {
            let port = a.split('/').next().and_then(|hp| hp.rsplit(':').next());
            ds_admin = port.and_then(|p| p.parse().ok());
        }
    }
    std::thread::spawn(move || for _ in lines {});
    let printed = Printed {
        master: master.unwrap(),
        shard: shard.unwrap(),
        ds_admin: ds_admin.unwrap(),
    };
    (child, printed)
}

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
                let (mut len, mut val) = (String::new(), String::new());
                r.read_line(&mut len).unwrap();
                r.read_line(&mut val).unwrap();
                return val.trim_end().to_string();
            }
        }
        assert!(Instant::now() < deadline, "tierkv dev did not serve SET");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `ds_internal_handshake_failures_total{reason="tls"}` from the DS node's metrics.
fn tls_failures(admin_port: u16) -> u64 {
    let text = test_support::http::get_text(admin_port, "/metrics").expect("DS metrics");
    text.lines()
        .find_map(|l| l.strip_prefix("ds_internal_handshake_failures_total{reason=\"tls\"} "))
        .and_then(|n| n.trim().parse().ok())
        .expect("the TLS failure counter is exported")
}

async fn connect(
    addr: &str,
    secret: ClusterSecret,
    tls: Option<TlsConfig>,
) -> Result<Client, CallError> {
    let hello = Hello::new(Role::Client {}, ClusterId(0), NodeId(0));
    let cfg = TransportConfig {
        secret,
        tls,
        ..Default::default()
    };
    Client::connect(addr, hello, cfg).await
}

#[test]
fn a_dev_cluster_with_mutual_tls_serves_redis_and_refuses_peers_without_a_cluster_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let tls_dir = dir.path().join("tls");
    std::fs::create_dir_all(&tls_dir).unwrap();
    let (ca, cert, key) = make_pki("tierkv test cluster CA");
    std::fs::write(tls_dir.join("ca.pem"), &ca).unwrap();
    std::fs::write(tls_dir.join("node.pem"), &cert).unwrap();
    std::fs::write(tls_dir.join("node.key"), &key).unwrap();
    let port = free_port();
    let (mut child, at) = start(&dir.path().join("data"), &tls_dir, port);
    assert_eq!(redis_set_get(port, "over-tls"), "v");
    // Proxy, DS node and probe all connected over TLS: nothing failed yet.
    assert_eq!(
        tls_failures(at.ds_admin),
        0,
        "a member failed its TLS handshake"
    );

    let secret = ClusterSecret::load(&dir.path().join("data/cluster-secret")).unwrap();
    let ours = TlsConfig::from_pem(ca.as_bytes(), cert.as_bytes(), key.as_bytes()).unwrap();
    let (other_ca, other_cert, other_key) = make_pki("some other CA");
    let theirs = TlsConfig::from_pem(
        other_ca.as_bytes(),
        other_cert.as_bytes(),
        other_key.as_bytes(),
    )
    .unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        for addr in [&at.master, &at.shard] {
            let err = connect(addr, secret.clone(), None).await.unwrap_err();
            assert!(matches!(err, CallError::Connect(_)), "{addr} plain: {err}");
            let err = connect(addr, secret.clone(), Some(theirs.clone()))
                .await
                .unwrap_err();
            assert!(err.to_string().contains("tls"), "{addr} other CA: {err}");
        }
        let c = connect(&at.master, secret.clone(), Some(ours.clone()))
            .await
            .unwrap();
        let reply = c.call(TsoRequest { count: 1 }.into()).await.unwrap();
        assert!(matches!(reply, Message::TsoBatch(_)), "{reply:?}");
    });
    assert!(tls_failures(at.ds_admin) >= 4, "refusals were not counted");
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
}
