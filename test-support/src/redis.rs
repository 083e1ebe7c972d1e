//! A `redis-server` child process for tests that compare with Redis or run against it.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `redis-server` (no persistence), killed on drop.
#[derive(Debug)]
pub struct RedisServer {
    child: Child,
    port: u16,
    addr: String,
}

impl RedisServer {
    /// Its address, `127.0.0.1:PORT`.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `redis-server --port PORT --bind 127.0.0.1 --save '' --appendonly no` on a free
/// port; `None`, with a `SKIPPED: …` line on stderr, when `redis-server` cannot be run (not
/// installed; under `CI=true` that panics instead, so CI cannot skip the comparison). A port
/// picked by binding port 0 can be taken again before redis binds it
/// (other tests do the same, in parallel), so a server that exits at start is retried on a new
/// port (5 attempts), and it is returned only once it answers while still running.
///
/// # Panics
/// When no attempt starts a server, or one neither answers nor exits within 10 s.
pub fn start() -> Option<RedisServer> {
    start_with(&[])
}

/// [`start`] with more `redis-server` arguments (`--enable-debug-command yes`).
///
/// # Panics
/// As [`start`].
pub fn start_with(extra: &[&str]) -> Option<RedisServer> {
    for _ in 0..5 {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let mut child = match child {
            Ok(c) => c,
            Err(e) if std::env::var("CI").is_ok_and(|v| v == "true") => {
                panic!("redis-server is required when CI=true: {e}");
            }
            Err(e) => {
                eprintln!(
                    "SKIPPED: redis-server not available ({e}); install redis-server \
                     (apt-get install redis-server)"
                );
                return None;
            }
        };
        let addr = format!("127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if child.try_wait().ok().flatten().is_some() {
                break; // exited: the port was taken; try another
            }
            if std::net::TcpStream::connect(&addr).is_ok() {
                std::thread::sleep(Duration::from_millis(50));
                if child.try_wait().ok().flatten().is_none() {
                    return Some(RedisServer { child, port, addr });
                }
                break;
            }
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    panic!("could not start redis-server on a free port in 5 attempts");
}
