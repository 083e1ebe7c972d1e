//! `SLOWLOG` through the proxy's connection loop (`proxy::slowlog`): what a connection logs
//! once `slowlog-log-slower-than` lets it (arguments, client address and name, newest first),
//! that `EXEC` itself is not logged, and that a negative threshold turns logging off. What is
//! timed (`proxy::timing`): a command's own execution, not its wait behind the slow command
//! before it in a pipeline, nor the time a blocking command was blocked — checked side by
//! side with `redis-server` where one is installed.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::{Client, Env};

/// One slow command (`DEBUG SLEEP 0.2`) with fast ones before and behind it, sent as one
/// pipeline.
const PIPELINE: &[&str] = &[
    "SET a 1",
    "DEBUG SLEEP 0.2",
    "SET b 2",
    "GET a",
    "PING",
    "INCR n",
    "MGET a b",
    "LPUSH l x",
    "RPOP l",
    "ECHO hi",
    "EXISTS a",
    "DEL b",
];

/// Sends `lines` in one write and reads their replies.
fn pipeline(c: &mut Client, lines: &[&str]) {
    let mut bytes = Vec::new();
    for line in lines {
        let args: Vec<&[u8]> = line.split(' ').map(str::as_bytes).collect();
        bytes.extend(common::multibulk(&args));
    }
    c.send(&bytes);
    for line in lines {
        let reply = c.read_reply().unwrap();
        assert!(!reply.starts_with(b"-"), "{line}: {reply:?}");
    }
}

/// Logged commands, newest first: each one's arguments joined by spaces, and its µs.
type Entries = Vec<(String, u64)>;

/// What `SLOWLOG GET -1` answers.
fn logged(c: &mut Client) -> Entries {
    let raw = c.cmd("SLOWLOG GET -1");
    // Entry: *6, :id, :time, :usec, *n args ($len, arg)..., $peer, $name.
    let lines: Vec<&str> = raw.split("\r\n").collect();
    let mut out = Vec::new();
    let mut i = 1;
    while i + 4 < lines.len() && lines[i] == "*6" {
        let usec = lines[i + 3][1..].parse().unwrap();
        let n: usize = lines[i + 4][1..].parse().unwrap();
        let args: Vec<&str> = (0..n).map(|j| lines[i + 6 + 2 * j]).collect();
        out.push((args.join(" "), usec));
        i += 5 + 2 * n + 4;
    }
    out
}

fn names(entries: &[(String, u64)]) -> Vec<String> {
    entries.iter().map(|(a, _)| a.clone()).collect()
}

fn eventually(what: &str, cond: impl Fn() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "timed out: {what}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Runs [`PIPELINE`] at threshold 100 ms, then at 0, on a connection; what was logged each
/// time, newest first.
fn pipeline_logs(c: &mut Client) -> (Entries, Entries) {
    assert_eq!(c.cmd("CONFIG SET slowlog-max-len 128"), "+OK\r\n");
    assert_eq!(
        c.cmd("CONFIG SET slowlog-log-slower-than 100000"),
        "+OK\r\n"
    );
    assert_eq!(c.cmd("SLOWLOG RESET"), "+OK\r\n");
    pipeline(c, PIPELINE);
    let slow_only = logged(c);
    assert_eq!(c.cmd("CONFIG SET slowlog-log-slower-than 0"), "+OK\r\n");
    assert_eq!(c.cmd("SLOWLOG RESET"), "+OK\r\n");
    pipeline(c, PIPELINE);
    let everything = logged(c);
    (slow_only, everything)
}

#[test]
fn a_pipeline_logs_only_its_slow_command_not_the_fast_ones_behind_it() {
    let env = Env::start(2);
    let mut c = env.client();
    let (slow_only, everything) = pipeline_logs(&mut c);
    assert_eq!(names(&slow_only), ["DEBUG SLEEP 0.2"], "{slow_only:?}");
    assert!(slow_only[0].1 >= 200_000, "{slow_only:?}");
    // At 0 every command is logged (and the SLOWLOG RESET before them), each with its own
    // time: only the sleep took 200 ms.
    let mut want: Vec<String> = PIPELINE.iter().rev().map(|l| l.to_string()).collect();
    want.push("SLOWLOG RESET".into());
    assert_eq!(names(&everything), want);
    for (args, usec) in &everything {
        assert_eq!(
            *usec >= 200_000,
            args.starts_with("DEBUG"),
            "{everything:?}"
        );
    }
    // The same time in INFO commandstats: a GET behind the sleep did not take 200 ms.
    let stats = c.cmd("INFO commandstats");
    let get = stats
        .lines()
        .find(|l| l.starts_with("cmdstat_get:"))
        .unwrap();
    let usec: u64 = get.split(['=', ',']).nth(3).unwrap().parse().unwrap();
    assert!(usec < 100_000, "{get}");
}

#[test]
fn a_pipeline_is_logged_as_redis_logs_it() {
    let Some(redis) = test_support::redis::start_with(&["--enable-debug-command", "yes"]) else {
        return;
    };
    let env = Env::start(2);
    let from_redis = pipeline_logs(&mut Client::connect(redis.addr()));
    let from_proxy = pipeline_logs(&mut env.client());
    assert_eq!(names(&from_proxy.0), names(&from_redis.0));
    assert_eq!(names(&from_proxy.1), names(&from_redis.1));
}

/// A `BLPOP` that blocks ~250 ms and is then served, at threshold 100 ms and then 0, and one
/// that times out at 0; what was logged after each, newest first.
fn blocked_pop_logs(
    waiter: &mut Client,
    pusher: &mut Client,
    blocked: impl Fn() -> bool,
) -> [Entries; 3] {
    let mut run = |threshold: &str| {
        // Blocked first: how the test sees that is not logged (the log is reset after).
        waiter.send(&common::multibulk(&[b"BLPOP", b"bl", b"0"]));
        eventually("the waiter blocks", &blocked);
        let set = format!("CONFIG SET slowlog-log-slower-than {threshold}");
        assert_eq!(pusher.cmd(&set), "+OK\r\n");
        assert_eq!(pusher.cmd("SLOWLOG RESET"), "+OK\r\n");
        // The wait the log must leave out.
        std::thread::sleep(Duration::from_millis(250));
        assert_eq!(pusher.cmd("LPUSH bl x"), ":1\r\n");
        assert_eq!(
            waiter.read_reply().unwrap(),
            b"*2\r\n$2\r\nbl\r\n$1\r\nx\r\n"
        );
        logged(pusher)
    };
    let slow_only = run("100000");
    let everything = run("0");
    assert_eq!(pusher.cmd("SLOWLOG RESET"), "+OK\r\n");
    assert_eq!(waiter.cmd("BLPOP empty 0.05"), "*-1\r\n");
    [slow_only, everything, logged(pusher)]
}

#[test]
fn a_blocked_pop_is_logged_without_its_time_blocked_and_not_when_it_times_out() {
    let env = Env::start(2);
    let (mut waiter, mut pusher) = (env.client(), env.client());
    let blocking = &env.shared.router.blocking;
    let [slow_only, everything, timed_out] =
        blocked_pop_logs(&mut waiter, &mut pusher, || blocking.blocked_clients() == 1);
    assert_eq!(slow_only, [], "blocked 250 ms, executed in far less");
    let served = ["BLPOP bl 0", "LPUSH bl x", "SLOWLOG RESET"];
    assert_eq!(sorted(&everything), served, "{everything:?}");
    assert!(
        everything.iter().all(|(_, usec)| *usec < 100_000),
        "{everything:?}"
    );
    // Redis 7.0 logs a blocked command when it is served, not when it times out.
    assert_eq!(names(&timed_out), ["SLOWLOG RESET"]);
}

#[test]
fn a_blocked_pop_is_logged_as_redis_logs_it() {
    let Some(redis) = test_support::redis::start() else {
        return;
    };
    let addr = redis.addr().to_string();
    let blocked = move || {
        Client::connect(&addr)
            .cmd("INFO clients")
            .contains("blocked_clients:1")
    };
    let from_redis = blocked_pop_logs(
        &mut Client::connect(redis.addr()),
        &mut Client::connect(redis.addr()),
        blocked,
    );
    let env = Env::start(2);
    let blocking = &env.shared.router.blocking;
    let from_proxy = blocked_pop_logs(&mut env.client(), &mut env.client(), || {
        blocking.blocked_clients() == 1
    });
    for (proxy, redis) in from_proxy.iter().zip(&from_redis) {
        assert_eq!(sorted(proxy), sorted(redis));
    }
}

/// The logged commands in a fixed order: the served `BLPOP` and the `LPUSH` that served it
/// end on two connections at once, and the proxy may log either first.
fn sorted(entries: &[(String, u64)]) -> Vec<String> {
    let mut n = names(entries);
    n.sort();
    n
}

#[test]
fn commands_over_the_threshold_are_logged_with_their_client_newest_first() {
    let env = Env::start(2);
    let mut c = env.client();
    assert_eq!(
        c.cmd("CONFIG GET slowlog-log-slower-than"),
        "*2\r\n$23\r\nslowlog-log-slower-than\r\n$5\r\n10000\r\n"
    );
    assert_eq!(c.cmd("SLOWLOG LEN"), ":0\r\n");
    assert_eq!(c.cmd("CLIENT SETNAME logged"), "+OK\r\n");
    assert_eq!(c.cmd("CONFIG SET slowlog-log-slower-than 0"), "+OK\r\n");
    assert_eq!(c.cmd("SET k v"), "+OK\r\n");
    assert_eq!(c.cmd("MULTI"), "+OK\r\n");
    assert_eq!(c.cmd("INCR n"), "+QUEUED\r\n");
    assert_eq!(c.cmd("EXEC"), "*1\r\n:1\r\n");
    // Newest first: the INCR that EXEC ran (as Redis logs it), the MULTI, the SET; not the
    // EXEC.
    let got = c.cmd("SLOWLOG GET 3");
    let entries: Vec<&str> = got.split("\r\n").collect();
    assert!(got.starts_with("*3\r\n*6\r\n"), "{got:?}");
    let incr_at = entries.iter().position(|l| *l == "INCR").unwrap();
    let multi_at = entries.iter().position(|l| *l == "MULTI").unwrap();
    let set_at = entries.iter().position(|l| *l == "SET").unwrap();
    assert!(incr_at < multi_at && multi_at < set_at, "{got:?}");
    assert!(!got.contains("EXEC"), "{got:?}");
    assert!(got.contains("$6\r\nlogged\r\n"), "{got:?}");
    assert!(got.contains("127.0.0.1:"), "{got:?}");
    assert_eq!(
        c.cmd("SLOWLOG GET -2"),
        "-ERR count should be greater than or equal to -1\r\n"
    );
    // Off: nothing more is logged (not even the CONFIG SET that turned it off).
    assert_eq!(c.cmd("CONFIG SET slowlog-log-slower-than -1"), "+OK\r\n");
    let len = c.cmd("SLOWLOG LEN");
    assert_eq!(c.cmd("GET k"), "$1\r\nv\r\n");
    assert_eq!(c.cmd("SLOWLOG LEN"), len);
    assert_eq!(c.cmd("SLOWLOG RESET"), "+OK\r\n");
    assert_eq!(c.cmd("SLOWLOG LEN"), ":0\r\n");
}

/// `MULTI`, two writes, `DEBUG SLEEP 0.1`, a read and `EXEC`, at threshold 50 ms and then 0:
/// what is logged, newest first.
fn transaction_logs(c: &mut Client) -> (Entries, Entries) {
    // One hash tag: a transaction's keys must share a range.
    let tx = [
        "MULTI",
        "SET {t}a 1",
        "INCR {t}n",
        "DEBUG SLEEP 0.1",
        "GET {t}a",
        "EXEC",
    ];
    let mut out = Vec::new();
    for threshold in ["50000", "0"] {
        assert_eq!(
            c.cmd(&format!("CONFIG SET slowlog-log-slower-than {threshold}")),
            "+OK\r\n"
        );
        assert_eq!(c.cmd("SLOWLOG RESET"), "+OK\r\n");
        for line in tx {
            let reply = c.cmd(line);
            assert!(!reply.starts_with('-'), "{line}: {reply:?}");
        }
        out.push(logged(c));
    }
    let everything = out.pop().unwrap();
    (out.pop().unwrap(), everything)
}

/// The commands `EXEC` runs are logged one by one with their own time, `EXEC` itself never
/// (Redis's `call()`; TCL `SLOWLOG - EXEC is not logged, just executed commands`), and counted
/// in `INFO commandstats`.
#[test]
fn a_transaction_logs_the_commands_it_ran_not_its_exec() {
    let env = Env::start(2);
    let mut c = env.client();
    let (slow_only, everything) = transaction_logs(&mut c);
    assert_eq!(names(&slow_only), ["DEBUG SLEEP 0.1"], "{slow_only:?}");
    assert!(slow_only[0].1 >= 100_000, "{slow_only:?}");
    assert_eq!(
        names(&everything),
        [
            "GET {t}a",
            "DEBUG SLEEP 0.1",
            "INCR {t}n",
            "SET {t}a 1",
            "MULTI",
            "SLOWLOG RESET"
        ],
        "{everything:?}"
    );
    let stats = c.cmd("INFO commandstats");
    let calls = |cmd: &str| -> String {
        let line = stats
            .lines()
            .find(|l| l.starts_with(&format!("cmdstat_{cmd}:")))
            .unwrap_or_else(|| panic!("no {cmd} in {stats}"));
        line.split(',').next().unwrap().to_string()
    };
    assert_eq!(calls("incr"), "cmdstat_incr:calls=2");
    assert_eq!(calls("exec"), "cmdstat_exec:calls=2");
}

#[test]
fn a_transaction_is_logged_as_redis_logs_it() {
    let Some(redis) = test_support::redis::start_with(&["--enable-debug-command", "yes"]) else {
        return;
    };
    let env = Env::start(2);
    let from_redis = transaction_logs(&mut Client::connect(redis.addr()));
    let from_proxy = transaction_logs(&mut env.client());
    assert_eq!(names(&from_proxy.0), names(&from_redis.0));
    assert_eq!(names(&from_proxy.1), names(&from_redis.1));
}

/// A pop that a transaction's push serves is served after the transaction, so it is logged
/// after the commands `EXEC` ran (TCL `SLOWLOG - Rewritten commands are logged as their
/// original command`: `MULTI; LPUSH l foo; SLOWLOG RESET; EXEC` leaves the served `BLPOP`
/// newest).
#[test]
fn a_pop_a_transaction_serves_is_logged_after_the_transaction() {
    let env = Env::start(2);
    let (mut waiter, mut c) = (env.client(), env.client());
    let blocking = &env.shared.router.blocking;
    assert_eq!(c.cmd("CONFIG SET slowlog-log-slower-than 0"), "+OK\r\n");
    for _ in 0..5 {
        waiter.send(&common::multibulk(&[b"BLPOP", b"l", b"0"]));
        eventually("the waiter blocks", || blocking.blocked_clients() == 1);
        assert_eq!(c.cmd("MULTI"), "+OK\r\n");
        assert_eq!(c.cmd("LPUSH l foo"), "+QUEUED\r\n");
        assert_eq!(c.cmd("SLOWLOG RESET"), "+QUEUED\r\n");
        assert_eq!(c.cmd("EXEC"), "*2\r\n:1\r\n+OK\r\n");
        assert_eq!(
            waiter.read_reply().unwrap(),
            b"*2\r\n$1\r\nl\r\n$3\r\nfoo\r\n"
        );
        let entries = logged(&mut c);
        assert_eq!(
            entries.first().map(|(n, _)| n.as_str()),
            Some("BLPOP l 0"),
            "{entries:?}"
        );
    }
}
