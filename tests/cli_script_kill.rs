//! `-BUSY`, `SCRIPT KILL` and `FUNCTION KILL` through `tierkv dev` (`docs/scripting.md`, "Long
//! scripts"): a read-only script running longer than `busy-reply-threshold` makes its range
//! answer `-BUSY` and is stopped by `SCRIPT KILL` with Redis 7's reply; a script that may
//! write is `UNKILLABLE` and runs to its instruction budget; a read-only function is stopped
//! by `FUNCTION KILL`, not `SCRIPT KILL`. Replies were captured from redis-server 7.0.15 with
//! `busy-reply-threshold 100`.
#![allow(clippy::unwrap_used)] // a test fails by panicking

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const SPIN: &str = "local i = 0 while true do i = i + 1 end";
const NOTBUSY: &str = "NOTBUSY No scripts in execution right now.";
const UNKILLABLE: &str = "UNKILLABLE Sorry the script already executed write commands against \
                          the dataset. You can either wait the script termination or kill the \
                          server in a hard way using the SHUTDOWN NOSAVE command.";
const BUSY_SCRIPT: &str =
    "BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE.";
const BUSY_FUNCTION: &str =
    "BUSY Redis is busy running a script. You can only call FUNCTION KILL or SHUTDOWN NOSAVE.";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start(dir: &Path, port: u16) -> Child {
    Command::new(env!("CARGO_BIN_EXE_tierkv"))
        .args(["dev", "--shards", "1", "--probes", "0", "--port"])
        .arg(port.to_string())
        .arg("--data-dir")
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

fn ok() -> V {
    V::Status("OK".into())
}

fn error(text: &str) -> V {
    V::Error(text.into())
}

fn bulk(text: &str) -> V {
    V::Bulk(Some(text.into()))
}

struct Conn(BufReader<TcpStream>);

impl Conn {
    fn connect(port: u16) -> Option<Conn> {
        let s = TcpStream::connect(("127.0.0.1", port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
        Some(Conn(BufReader::new(s)))
    }

    fn cmd(&mut self, args: &[&str]) -> V {
        let mut out = format!("*{}\r\n", args.len());
        for a in args {
            out.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        self.0.get_mut().write_all(out.as_bytes()).unwrap();
        self.read()
    }

    fn read(&mut self) -> V {
        let mut line = String::new();
        self.0.read_line(&mut line).unwrap();
        let (tag, rest) = line.trim_end().split_at(1);
        match tag {
            "+" => V::Status(rest.into()),
            "-" => V::Error(rest.into()),
            ":" => V::Int(rest.parse().unwrap()),
            "$" => {
                let n: i64 = rest.parse().unwrap();
                if n < 0 {
                    return V::Bulk(None);
                }
                let mut body = vec![0u8; usize::try_from(n).unwrap() + 2];
                self.0.read_exact(&mut body).unwrap();
                body.truncate(body.len() - 2);
                V::Bulk(Some(String::from_utf8(body).unwrap()))
            }
            "*" => {
                let n: i64 = rest.parse().unwrap();
                V::Array((0..n.max(0)).map(|_| self.read()).collect())
            }
            other => panic!("unexpected reply type {other:?}"),
        }
    }
}

fn wait_ready(port: u16) -> Conn {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(mut c) = Conn::connect(port) {
            if c.cmd(&["SET", "ready", "1"]) == ok() {
                return c;
            }
        }
        assert!(Instant::now() < deadline, "tierkv dev did not become ready");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Sends `args` on a connection of its own and returns its reply when it comes.
fn in_background(port: u16, args: &[&str]) -> JoinHandle<V> {
    let args: Vec<String> = args.iter().map(|a| (*a).to_string()).collect();
    let mut c = Conn::connect(port).unwrap();
    std::thread::spawn(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        c.cmd(&args)
    })
}

/// Asks `cmd` until the reply is not `-NOTBUSY` (the script has not reached the threshold
/// yet), for at most 10 s.
fn once_busy(c: &mut Conn, args: &[&str]) -> V {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = c.cmd(args);
        if r != error(NOTBUSY) || Instant::now() > deadline {
            return r;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Reads `key` until it is not `-BUSY`, for at most 10 s.
fn get_when_free(c: &mut Conn, key: &str) -> V {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = c.cmd(&["GET", key]);
        let busy = matches!(&r, V::Error(e) if e.starts_with("BUSY"));
        if !busy || Instant::now() > deadline {
            return r;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

struct Dev {
    child: Child,
    _dir: tempfile::TempDir,
    port: u16,
}

impl Drop for Dev {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn dev() -> (Dev, Conn) {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let child = start(dir.path(), port);
    let mut c = wait_ready(port);
    assert_eq!(c.cmd(&["CONFIG", "SET", "lua-time-limit", "100"]), ok());
    assert_eq!(
        c.cmd(&["CONFIG", "GET", "busy-reply-threshold"]),
        V::Array(vec![bulk("busy-reply-threshold"), bulk("100")])
    );
    (
        Dev {
            child,
            _dir: dir,
            port,
        },
        c,
    )
}

#[test]
fn a_read_only_script_makes_its_range_busy_until_script_kill_stops_it() {
    let (dev, mut c) = dev();
    assert_eq!(c.cmd(&["SCRIPT", "KILL"]), error(NOTBUSY));
    assert_eq!(c.cmd(&["SET", "{k}x", "v"]), ok());
    let sha = match c.cmd(&["SCRIPT", "LOAD", SPIN]) {
        V::Bulk(Some(sha)) => sha,
        other => panic!("{other:?}"),
    };
    let script = in_background(dev.port, &["EVAL_RO", SPIN, "1", "{k}a"]);
    // Past the threshold (`FUNCTION KILL` tells without stopping an `EVAL`, and without
    // waiting for the shard), another client of the range is refused.
    assert_eq!(once_busy(&mut c, &["FUNCTION", "KILL"]), error(BUSY_SCRIPT));
    assert_eq!(c.cmd(&["GET", "{k}x"]), error(BUSY_SCRIPT));
    assert_eq!(
        c.cmd(&["EVAL_RO", "return 1", "1", "{k}y"]),
        error(BUSY_SCRIPT)
    );
    // Commands without keys are refused too, as Redis refuses them; `CONFIG GET` as well.
    assert_eq!(c.cmd(&["PING"]), error(BUSY_SCRIPT));
    assert_eq!(
        c.cmd(&["CONFIG", "GET", "lua-time-limit"]),
        error(BUSY_SCRIPT)
    );
    assert_eq!(c.cmd(&["SCRIPT", "KILL"]), ok());
    assert_eq!(
        script.join().unwrap(),
        error(&format!(
            "ERR Script killed by user with SCRIPT KILL... script: {sha}, on @user_script:1."
        ))
    );
    assert_eq!(get_when_free(&mut c, "{k}x"), bulk("v"));
    assert_eq!(c.cmd(&["PING"]), V::Status("PONG".into()));
    assert_eq!(c.cmd(&["SCRIPT", "KILL"]), error(NOTBUSY));
}

#[test]
fn a_script_that_may_write_is_unkillable_and_ends_at_its_budget() {
    let (dev, mut c) = dev();
    let body = format!("redis.call('set', KEYS[1], 'written') {SPIN}");
    let script = in_background(dev.port, &["EVAL", &body, "1", "{w}a"]);
    assert_eq!(once_busy(&mut c, &["SCRIPT", "KILL"]), error(UNKILLABLE));
    assert_eq!(c.cmd(&["FUNCTION", "KILL"]), error(UNKILLABLE));
    let reply = script.join().unwrap();
    assert_eq!(
        reply,
        error("ERR Script killed: exceeded the instruction budget (500000000)")
    );
    // Its write stays, as a killed script's writes stay in Redis.
    assert_eq!(get_when_free(&mut c, "{w}a"), bulk("written"));
}

#[test]
fn function_kill_stops_a_read_only_function_and_script_kill_does_not() {
    let (dev, mut c) = dev();
    let lib = "#!lua name=spinlib\nredis.register_function{function_name='spin', \
               callback=function(k, a) local i = 0 while true do i = i + 1 end end, \
               flags={'no-writes'}}";
    assert_eq!(c.cmd(&["FUNCTION", "LOAD", lib]), bulk("spinlib"));
    let call = in_background(dev.port, &["FCALL_RO", "spin", "1", "{f}a"]);
    assert_eq!(once_busy(&mut c, &["SCRIPT", "KILL"]), error(BUSY_FUNCTION));
    assert_eq!(c.cmd(&["FUNCTION", "KILL"]), ok());
    assert_eq!(
        call.join().unwrap(),
        error("ERR Script killed by user with SCRIPT KILL... script: spin, on @user_function:2.")
    );
    assert_eq!(c.cmd(&["FUNCTION", "KILL"]), error(NOTBUSY));
}
