//! `tierkv dev` as a new user runs it, as a child process: Redis commands work; SIGINT and
//! `SHUTDOWN` stop it within seconds; restarted on the same data dir every key is there; and `kill -9` in the
//! middle of a write load loses no acknowledged write.
#![allow(clippy::unwrap_used)] // a test fails by panicking

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start(dir: &Path, port: u16) -> Child {
    start_with(dir, port, &[])
}

fn start_with(dir: &Path, port: u16, extra: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_tierkv"))
        .args([
            "dev",
            "--shards",
            "1",
            "--port",
            &port.to_string(),
            "--data-dir",
        ])
        .arg(dir)
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// A minimal RESP client: one command, one reply line (bulk replies return their payload).
struct Conn(BufReader<TcpStream>);

impl Conn {
    fn connect(port: u16) -> Option<Conn> {
        let s = TcpStream::connect(("127.0.0.1", port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
        Some(Conn(BufReader::new(s)))
    }

    fn cmd(&mut self, args: &[&str]) -> std::io::Result<String> {
        let mut out = format!("*{}\r\n", args.len());
        for a in args {
            out.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        self.0.get_mut().write_all(out.as_bytes())?;
        let mut line = String::new();
        self.0.read_line(&mut line)?;
        if line.is_empty() {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        if let Some(n) = line.strip_prefix('$') {
            let n: i64 = n.trim().parse().unwrap();
            if n < 0 {
                return Ok("(nil)".into());
            }
            let mut body = String::new();
            self.0.read_line(&mut body)?;
            return Ok(body.trim_end().to_string());
        }
        Ok(line.trim_end().to_string())
    }
}

/// Waits until the cluster accepts writes (the first range is bootstrapped and led).
fn wait_ready(port: u16) -> Conn {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(mut c) = Conn::connect(port) {
            if c.cmd(&["SET", "ready", "1"]).is_ok_and(|r| r == "+OK") {
                return c;
            }
        }
        assert!(Instant::now() < deadline, "tierkv dev did not become ready");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn interrupt_and_wait(child: Child) {
    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    wait_exit(child, "SIGINT");
}

/// Waits for `child` to exit with status 0 within 15 s of `cause`.
fn wait_exit(mut child: Child, cause: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "tierkv dev exited with {status}");
            return;
        }
        assert!(
            Instant::now() < deadline,
            "tierkv dev did not stop within 15 s of {cause}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn dev_requirepass_flag_requires_auth_and_a_pathological_keys_returns_promptly() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let child = start_with(dir.path(), port, &["--requirepass", "pw"]);
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut c = loop {
        if let Some(mut c) = Conn::connect(port) {
            assert_eq!(
                c.cmd(&["GET", "k"]).unwrap(),
                "-NOAUTH Authentication required."
            );
            assert_eq!(c.cmd(&["AUTH", "pw"]).unwrap(), "+OK");
            if c.cmd(&["SET", "ready", "1"]).is_ok_and(|r| r == "+OK") {
                break c;
            }
        }
        assert!(Instant::now() < deadline, "tierkv dev did not become ready");
        std::thread::sleep(Duration::from_millis(100));
    };
    // Issue 21: 20 × `a*` then `b` against a key of 200 a's ran for minutes.
    let key = "a".repeat(200);
    assert_eq!(c.cmd(&["SET", &key, "v"]).unwrap(), "+OK");
    let pattern = format!("{}b", "a*".repeat(20));
    let started = Instant::now();
    assert_eq!(c.cmd(&["KEYS", &pattern]).unwrap(), "*0");
    assert!(started.elapsed() < Duration::from_secs(5));
    // CONFIG SET requirepass: new connections use the new password.
    assert_eq!(
        c.cmd(&["CONFIG", "SET", "requirepass", "new"]).unwrap(),
        "+OK"
    );
    let mut fresh = Conn::connect(port).unwrap();
    assert!(
        fresh
            .cmd(&["AUTH", "pw"])
            .unwrap()
            .starts_with("-WRONGPASS")
    );
    assert_eq!(fresh.cmd(&["AUTH", "new"]).unwrap(), "+OK");
    assert_eq!(fresh.cmd(&["GET", &key]).unwrap(), "v");
    interrupt_and_wait(child);
}

#[test]
fn dev_cluster_serves_redis_stops_on_sigint_and_keeps_keys_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let child = start(dir.path(), port);
    let mut c = wait_ready(port);
    assert_eq!(c.cmd(&["SET", "greeting", "hello"]).unwrap(), "+OK");
    assert_eq!(c.cmd(&["GET", "greeting"]).unwrap(), "hello");
    assert_eq!(c.cmd(&["HSET", "h", "f", "v"]).unwrap(), ":1");
    assert_eq!(c.cmd(&["INCR", "n"]).unwrap(), ":1");
    interrupt_and_wait(child);

    let child = start(dir.path(), port);
    let mut c = wait_ready(port);
    assert_eq!(c.cmd(&["GET", "greeting"]).unwrap(), "hello");
    assert_eq!(c.cmd(&["HGET", "h", "f"]).unwrap(), "v");
    assert_eq!(c.cmd(&["INCR", "n"]).unwrap(), ":2");
    shutdown_and_wait(child, &mut c);

    let child = start(dir.path(), port);
    let mut c = wait_ready(port);
    assert_eq!(
        c.cmd(&["INCR", "n"]).unwrap(),
        ":3",
        "SHUTDOWN lost nothing"
    );
    interrupt_and_wait(child);
}

/// `SHUTDOWN` as Redis has it: refused inside MULTI and with conflicting options; otherwise
/// the connection closes without a reply and the whole process exits with status 0.
fn shutdown_and_wait(child: Child, c: &mut Conn) {
    assert_eq!(
        c.cmd(&["SHUTDOWN", "SAVE", "NOSAVE"]).unwrap(),
        "-ERR syntax error"
    );
    assert_eq!(
        c.cmd(&["SHUTDOWN", "ABORT"]).unwrap(),
        "-ERR No shutdown in progress."
    );
    assert_eq!(c.cmd(&["MULTI"]).unwrap(), "+OK");
    assert_eq!(
        c.cmd(&["SHUTDOWN"]).unwrap(),
        "-ERR Command not allowed inside a transaction"
    );
    assert!(c.cmd(&["EXEC"]).unwrap().starts_with("-EXECABORT"));
    let eof = c.cmd(&["SHUTDOWN", "NOSAVE"]);
    assert!(eof.is_err(), "no reply to SHUTDOWN: {eof:?}");
    wait_exit(child, "SHUTDOWN");
}

#[test]
fn kill_9_during_a_write_load_loses_no_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut child = start(dir.path(), port);
    wait_ready(port);
    // Two writers; each records the last value the server acknowledged for its key.
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..2)
        .map(|w| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut c = Conn::connect(port).unwrap();
                let mut acked = Vec::new();
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let key = format!("w{w}:{i}");
                    match c.cmd(&["SET", &key, &i.to_string()]) {
                        Ok(r) if r == "+OK" => acked.push(i),
                        _ => break,
                    }
                    i += 1;
                }
                acked
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    stop.store(true, Ordering::Relaxed);
    let acked: Vec<Vec<u64>> = writers.into_iter().map(|t| t.join().unwrap()).collect();
    assert!(
        acked.iter().all(|a| !a.is_empty()),
        "the load made progress before the kill"
    );

    let child = start(dir.path(), port);
    let mut c = wait_ready(port);
    for (w, keys) in acked.iter().enumerate() {
        for &i in keys {
            let got = c.cmd(&["GET", &format!("w{w}:{i}")]).unwrap();
            assert_eq!(got, i.to_string(), "acknowledged write w{w}:{i} lost");
        }
    }
    interrupt_and_wait(child);
}
