//! `GET` of a JSON admin page (the master's `/stores`, `/ranges`, …) over HTTP/1.0.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// The body of `GET path` from `127.0.0.1:port`, parsed as JSON; `None` on any failure.
pub fn get_json(port: u16, path: &str) -> Option<serde_json::Value> {
    let body = get_text(port, path)?;
    serde_json::from_str(&body).ok()
}

/// The body of `GET path` from `127.0.0.1:port`; `None` on any failure (5 s timeout).
pub fn get_text(port: u16, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes())
        .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out.split_once("\r\n\r\n")?.1.to_string())
}
