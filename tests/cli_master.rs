//! `tierkv master` as a user runs it: it starts, answers on its admin port, stops within
//! seconds on SIGINT, and a restart on the same data dir keeps the cluster id.
#![allow(clippy::unwrap_used)] // a test fails by panicking

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn http_get(port: u16, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    std::io::Write::write_all(
        &mut s,
        format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes(),
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

fn start(dir: &std::path::Path, rpc: u16, admin: u16) -> Child {
    Command::new(env!("CARGO_BIN_EXE_tierkv"))
        .args(["master", "--data-dir"])
        .arg(dir)
        .args(["--listen", &format!("127.0.0.1:{rpc}")])
        .args(["--admin-listen", &format!("127.0.0.1:{admin}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn wait_status(admin: u16) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(body) = http_get(admin, "/status") {
            if body.contains("200") {
                return body;
            }
        }
        assert!(Instant::now() < deadline, "master did not come up");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn interrupt_and_wait(mut child: Child) {
    let pid = child.id().to_string();
    Command::new("kill").args(["-INT", &pid]).status().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "master exited with {status}");
            return;
        }
        assert!(
            Instant::now() < deadline,
            "master did not stop within 10 s of SIGINT"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn cluster_id(status: &str) -> u64 {
    let at = status
        .find("\"cluster_id\":")
        .expect("status names the cluster")
        + 13;
    let digits: String = status[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().unwrap()
}

#[test]
fn master_subcommand_serves_stops_on_sigint_and_keeps_its_cluster_id() {
    let dir = tempfile::tempdir().unwrap();
    let (rpc, admin) = (free_port(), free_port());
    let first = start(dir.path(), rpc, admin);
    let before = cluster_id(&wait_status(admin));
    interrupt_and_wait(first);
    let second = start(dir.path(), rpc, admin);
    let after = cluster_id(&wait_status(admin));
    interrupt_and_wait(second);
    assert_eq!(before, after, "a restart keeps the cluster");
}
