//! The proxy under Debian's `redis-tools`: `redis-cli` one-shot commands, `redis-cli --pipe`
//! loading 100,000 keys, and `redis-benchmark -t set,get,incr,hset` completing without errors.
//! Skipped, with a printed reason, when the tools are not installed.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::Env;

fn tool(name: &str) -> bool {
    let ok = Command::new(name)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("SKIPPED: {name} not available; install redis-tools");
    }
    ok
}

fn host_port(addr: &str) -> (String, String) {
    let (h, p) = addr.rsplit_once(':').unwrap();
    (h.to_string(), p.to_string())
}

fn cli(addr: &str, args: &[&str]) -> String {
    let (h, p) = host_port(addr);
    let out = Command::new("redis-cli")
        .args(["-h", &h, "-p", &p])
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "redis-cli {args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn redis_cli_one_shot_commands_work() {
    if !tool("redis-cli") {
        return;
    }
    let env = Env::start(4);
    assert_eq!(cli(&env.addr, &["PING"]), "PONG\n");
    assert_eq!(cli(&env.addr, &["SET", "k", "v"]), "OK\n");
    assert_eq!(cli(&env.addr, &["GET", "k"]), "v\n");
    assert_eq!(cli(&env.addr, &["HSET", "h", "a", "1", "b", "2"]), "2\n");
    assert_eq!(cli(&env.addr, &["HGETALL", "h"]), "a\n1\nb\n2\n");
    // RESP3: redis-cli prints a map one "field value" line per pair.
    assert_eq!(cli(&env.addr, &["-3", "HGETALL", "h"]), "a 1\nb 2\n");
    assert_eq!(
        cli(&env.addr, &["INCR", "k"]),
        "ERR value is not an integer or out of range\n\n"
    );
    assert_eq!(cli(&env.addr, &["DBSIZE"]), "2\n");
}

#[test]
fn redis_cli_pipe_loads_100k_keys() {
    if !tool("redis-cli") {
        return;
    }
    let env = Env::start(4);
    let (h, p) = host_port(&env.addr);
    let mut input = Vec::new();
    for i in 0..100_000 {
        input.extend(common::multibulk(&[
            b"SET",
            format!("key:{i}").as_bytes(),
            format!("value:{i}").as_bytes(),
        ]));
    }
    let mut child = Command::new("redis-cli")
        .args(["-h", &h, "-p", &p, "--pipe"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&input).unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("errors: 0, replies: 100000"), "{text}");
    assert_eq!(cli(&env.addr, &["GET", "key:99999"]), "value:99999\n");
    assert_eq!(cli(&env.addr, &["DBSIZE"]), "100000\n");
}

#[test]
fn redis_benchmark_completes_without_errors() {
    if !tool("redis-benchmark") {
        return;
    }
    let env = Env::start(4);
    let (h, p) = host_port(&env.addr);
    for pipeline in ["1", "16"] {
        let out = Command::new("redis-benchmark")
            .args([
                "-h",
                &h,
                "-p",
                &p,
                "-t",
                "set,get,incr,hset,ping",
                "-n",
                "20000",
            ])
            .args(["-c", "20", "-P", pipeline, "-q"])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let err = String::from_utf8_lossy(&out.stderr);
        eprintln!("redis-benchmark -P {pipeline}:\n{text}");
        assert!(out.status.success(), "{text}{err}");
        for t in ["SET", "GET", "INCR", "HSET", "PING_INLINE", "PING_MBULK"] {
            assert!(text.contains(&format!("{t}: ")), "{t} ran: {text}{err}");
        }
        assert!(!err.contains("ERR") && !text.contains("ERR"), "{text}{err}");
    }
    // INCR ran 2 × 20,000 times on one key.
    assert_eq!(cli(&env.addr, &["GET", "counter:__rand_int__"]), "40000\n");
}

/// `redis-benchmark` against `redis-server` and against the proxy (over fake shards that run
/// ds-node's state machine on a `ModelStore`), alternating rounds in one run. Prints a table;
/// run with `cargo test -p proxy --profile ci --test redis_tools -- --ignored --nocapture`.
#[test]
#[ignore = "a benchmark: prints figures for docs/benchmarks.md"]
fn benchmark_proxy_against_redis_server() {
    if !tool("redis-benchmark") || !tool("redis-server") {
        return;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut redis = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let env = Env::start(4);
    let redis_addr = format!("127.0.0.1:{port}");
    let rps = |addr: &str, test: &str, pipeline: &str| -> f64 {
        let (h, p) = host_port(addr);
        let out = Command::new("redis-benchmark")
            .args(["-h", &h, "-p", &p, "-t", test, "-n", "100000", "-c", "50"])
            .args(["-P", pipeline, "-q", "-r", "100000", "-d", "100"])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let line = text.rsplit('\r').next().unwrap_or("").to_string();
        line.split(": ")
            .nth(1)
            .and_then(|s| s.split(' ').next())
            .and_then(|s| s.parse().ok())
            .unwrap_or(0.0)
    };
    println!("| test | pipeline | round | redis-server ops/s | proxy ops/s | proxy ÷ redis |");
    println!("|---|---|---|---|---|---|");
    for round in 1..=2 {
        for pipeline in ["1", "16"] {
            for test in ["set", "get"] {
                let r = rps(&redis_addr, test, pipeline);
                let p = rps(&env.addr, test, pipeline);
                println!(
                    "| {test} | {pipeline} | {round} | {r:.0} | {p:.0} | {:.2} |",
                    p / r.max(1.0)
                );
            }
        }
    }
    let _ = redis.kill();
    let _ = redis.wait();
}
