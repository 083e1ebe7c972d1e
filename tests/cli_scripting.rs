//! Scripts and functions through `tierkv dev`, crashed with `kill -9` under load: every
//! acknowledged script's writes survive, each script's writes are all there or none of them
//! (a counter and a list it appends the counter to always agree), replaying the log runs the
//! scripts again to the same state (a `math.random` value a script wrote reads back the same),
//! and a function library loaded before the crash is there after it.
#![allow(clippy::unwrap_used)] // a test fails by panicking

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const STEP: &str = "local n = redis.call('incr', KEYS[1]) \
                    redis.call('rpush', KEYS[2], n) \
                    local r = math.random(1000000000) \
                    redis.call('set', KEYS[3], r) \
                    return {n, r}";

const LIBRARY: &str = "#!lua name=counters\n\
                       redis.register_function('bump', function(keys, args) \
                       return redis.call('incrby', keys[1], args[1]) end)";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start(dir: &Path, port: u16) -> Child {
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
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// A RESP value, parsed.
#[derive(Debug, Clone, PartialEq)]
enum V {
    Status(String),
    Error(String),
    Int(i64),
    Bulk(Option<String>),
    Array(Vec<V>),
}

struct Conn(BufReader<TcpStream>);

impl Conn {
    fn connect(port: u16) -> Option<Conn> {
        let s = TcpStream::connect(("127.0.0.1", port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
        Some(Conn(BufReader::new(s)))
    }

    fn cmd(&mut self, args: &[&str]) -> std::io::Result<V> {
        let mut out = format!("*{}\r\n", args.len());
        for a in args {
            out.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        self.0.get_mut().write_all(out.as_bytes())?;
        self.read()
    }

    fn read(&mut self) -> std::io::Result<V> {
        let mut line = String::new();
        self.0.read_line(&mut line)?;
        if line.is_empty() {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let (tag, rest) = line.trim_end().split_at(1);
        Ok(match tag {
            "+" => V::Status(rest.into()),
            "-" => V::Error(rest.into()),
            ":" => V::Int(rest.parse().unwrap()),
            "$" => {
                let n: i64 = rest.parse().unwrap();
                if n < 0 {
                    V::Bulk(None)
                } else {
                    let mut body = vec![0u8; usize::try_from(n).unwrap() + 2];
                    self.0.read_exact(&mut body)?;
                    body.truncate(body.len() - 2);
                    V::Bulk(Some(String::from_utf8(body).unwrap()))
                }
            }
            "*" => {
                let n: i64 = rest.parse().unwrap();
                let mut items = Vec::new();
                for _ in 0..n.max(0) {
                    items.push(self.read()?);
                }
                V::Array(items)
            }
            other => panic!("unexpected reply type {other:?}"),
        })
    }
}

fn wait_ready(port: u16) -> Conn {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(mut c) = Conn::connect(port) {
            if c.cmd(&["SET", "ready", "1"])
                .is_ok_and(|r| r == V::Status("OK".into()))
            {
                return c;
            }
        }
        assert!(Instant::now() < deadline, "tierkv dev did not become ready");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn scripts_survive_kill_9_whole_and_replay_to_the_same_state() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut child = start(dir.path(), port);
    let mut c = wait_ready(port);
    assert_eq!(
        c.cmd(&["FUNCTION", "LOAD", LIBRARY]).unwrap(),
        V::Bulk(Some("counters".into()))
    );
    assert_eq!(
        c.cmd(&["FCALL", "bump", "1", "{f}n", "5"]).unwrap(),
        V::Int(5)
    );
    // Two writers; each remembers the last (counter, random) its scripts acknowledged.
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..2)
        .map(|w| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut c = Conn::connect(port).unwrap();
                let keys = [
                    format!("{{w{w}}}c"),
                    format!("{{w{w}}}l"),
                    format!("{{w{w}}}r"),
                ];
                let mut last = None;
                while !stop.load(Ordering::Relaxed) {
                    let args = ["EVAL", STEP, "3", &keys[0], &keys[1], &keys[2]];
                    match c.cmd(&args) {
                        Ok(V::Array(v)) => match v.as_slice() {
                            [V::Int(n), V::Int(r)] => last = Some((*n, *r)),
                            other => panic!("unexpected script reply {other:?}"),
                        },
                        _ => break,
                    }
                }
                last
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    stop.store(true, Ordering::Relaxed);
    let acked: Vec<Option<(i64, i64)>> = writers.into_iter().map(|t| t.join().unwrap()).collect();

    let mut child = start(dir.path(), port);
    let mut c = wait_ready(port);
    for (w, last) in acked.iter().enumerate() {
        let (n, r) = last.expect("the load made progress before the kill");
        let count = match c.cmd(&["GET", &format!("{{w{w}}}c")]).unwrap() {
            V::Bulk(Some(s)) => s.parse::<i64>().unwrap(),
            other => panic!("{other:?}"),
        };
        assert!(
            count >= n,
            "acknowledged script {n} of writer {w} lost (counter {count})"
        );
        // Every script's writes are whole: the list holds 1..=counter, in order.
        let list = c
            .cmd(&["LRANGE", &format!("{{w{w}}}l"), "0", "-1"])
            .unwrap();
        let want: Vec<V> = (1..=count).map(|i| V::Bulk(Some(i.to_string()))).collect();
        assert_eq!(list, V::Array(want), "writer {w}");
        if count == n {
            // The last script applied is the last acknowledged one: replay drew the same
            // random number.
            assert_eq!(
                c.cmd(&["GET", &format!("{{w{w}}}r")]).unwrap(),
                V::Bulk(Some(r.to_string())),
                "writer {w}"
            );
        }
    }
    assert_eq!(
        c.cmd(&["FCALL", "bump", "1", "{f}n", "1"]).unwrap(),
        V::Int(6)
    );
    child.kill().unwrap();
    child.wait().unwrap();
}
