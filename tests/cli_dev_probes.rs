//! `tierkv dev --probes 3` runs three probes in the process: the master's `/probes` lists
//! them reporting, and `/stores` shows the node healthy with three "reached" votes.
#![allow(clippy::unwrap_used)] // a test fails by panicking

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn http_get(addr: &str, path: &str) -> Option<serde_json::Value> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.write_all(format!("GET {path} HTTP/1.0\r\n\r\n").as_bytes())
        .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    serde_json::from_str(out.split("\r\n\r\n").nth(1)?).ok()
}

#[test]
fn dev_runs_its_probes_and_the_master_counts_their_votes() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port().to_string();
    let mut child = Command::new(env!("CARGO_BIN_EXE_tierkv"))
        .args([
            "dev",
            "--shards",
            "1",
            "--probes",
            "3",
            "--port",
            &port,
            "--data-dir",
        ])
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let admin = loop {
        let line = lines.next().expect("tierkv dev exited early").unwrap();
        if let Some(rest) = line.trim().strip_prefix("admin:") {
            let url = rest.split_whitespace().next().unwrap();
            break url
                .trim_start_matches("http://")
                .trim_end_matches("/status")
                .to_string();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    let deadline = Instant::now() + Duration::from_secs(30);
    let healthy = loop {
        let probes = http_get(&admin, "/probes");
        let stores = http_get(&admin, "/stores");
        if let (Some(p), Some(s)) = (probes, stores) {
            let reporting = p
                .as_array()
                .unwrap()
                .iter()
                .filter(|x| x["reporting"] == true)
                .count();
            let votes = &s[0]["votes"];
            let reached = ["dev-probe-0", "dev-probe-1", "dev-probe-2"]
                .iter()
                .all(|n| votes[n] == "reached");
            if reporting == 3 && reached {
                break s[0]["health"].clone();
            }
        }
        assert!(Instant::now() < deadline, "probes never reported");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(healthy, "healthy");
    child.kill().unwrap();
    child.wait().unwrap();
}
