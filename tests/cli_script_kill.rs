//! `-BUSY`, `SCRIPT KILL` and `FUNCTION KILL` through `tierkv dev` (`docs/scripting.md`, "Long
//! scripts"): a read-only script running longer than `busy-reply-threshold` makes its range
//! answer `-BUSY` and is stopped by `SCRIPT KILL` with Redis 7's reply; a script that may
//! write is `UNKILLABLE` and runs to its instruction budget; a read-only function is stopped
//! by `FUNCTION KILL`, not `SCRIPT KILL`; a script without keys (run by the proxy to find its
//! first key) keeps every command busy, those queued in `MULTI` included, until `SCRIPT KILL`
//! stops it.
//! Replies were captured from redis-server 7.0.15 with
//! `busy-reply-threshold 100`.
#![allow(clippy::unwrap_used)] // a test fails by panicking

use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use test_support::dev::Dev;
use test_support::resp::{Conn, Reply};

const SPIN: &str = "local i = 0 while true do i = i + 1 end";
const NOTBUSY: &str = "NOTBUSY No scripts in execution right now.";
const UNKILLABLE: &str = "UNKILLABLE Sorry the script already executed write commands against \
                          the dataset. You can either wait the script termination or kill the \
                          server in a hard way using the SHUTDOWN NOSAVE command.";
const BUSY_SCRIPT: &str =
    "BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE.";
const BUSY_FUNCTION: &str =
    "BUSY Redis is busy running a script. You can only call FUNCTION KILL or SHUTDOWN NOSAVE.";

fn ok() -> Reply {
    Reply::Status("OK".into())
}

fn error(text: &str) -> Reply {
    Reply::Error(text.into())
}

fn bulk(text: &str) -> Reply {
    Reply::Bulk(Some(text.into()))
}

/// Sends `args` and returns the reply (the test fails on an I/O error).
fn cmd(c: &mut Conn, args: &[&str]) -> Reply {
    c.call(args).unwrap()
}

/// Sends `args` on a connection of its own and returns its reply when it comes.
fn in_background(dev: &Dev, args: &[&str]) -> JoinHandle<Reply> {
    let args: Vec<String> = args.iter().map(|a| (*a).to_string()).collect();
    let mut c = dev.connect();
    std::thread::spawn(move || c.call(&args).unwrap())
}

/// Asks `cmd` until the reply is not `-NOTBUSY` (the script has not reached the threshold
/// yet), for at most 10 s.
fn once_busy(c: &mut Conn, args: &[&str]) -> Reply {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = cmd(c, args);
        if r != error(NOTBUSY) || Instant::now() > deadline {
            return r;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Reads `key` until it is not `-BUSY`, for at most 10 s.
fn get_when_free(c: &mut Conn, key: &str) -> Reply {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = cmd(c, &["GET", key]);
        let busy = matches!(&r, Reply::Error(e) if e.starts_with("BUSY"));
        if !busy || Instant::now() > deadline {
            return r;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A one-shard `tierkv dev` whose scripts are busy after 100 ms.
fn dev() -> (Dev, Conn) {
    let (dev, mut c) = Dev::start(
        env!("CARGO_BIN_EXE_tierkv"),
        "cli-script-kill",
        &["--shards", "1", "--probes", "0"],
    );
    assert_eq!(
        cmd(&mut c, &["CONFIG", "SET", "lua-time-limit", "100"]),
        ok()
    );
    assert_eq!(
        cmd(&mut c, &["CONFIG", "GET", "busy-reply-threshold"]),
        Reply::Array(Some(vec![bulk("busy-reply-threshold"), bulk("100")]))
    );
    (dev, c)
}

#[test]
fn a_read_only_script_makes_its_range_busy_until_script_kill_stops_it() {
    let (dev, mut c) = dev();
    assert_eq!(cmd(&mut c, &["SCRIPT", "KILL"]), error(NOTBUSY));
    assert_eq!(cmd(&mut c, &["SET", "{k}x", "v"]), ok());
    let sha = match cmd(&mut c, &["SCRIPT", "LOAD", SPIN]) {
        Reply::Bulk(Some(sha)) => String::from_utf8(sha).unwrap(),
        other => panic!("{other:?}"),
    };
    let script = in_background(&dev, &["EVAL_RO", SPIN, "1", "{k}a"]);
    // Past the threshold (`FUNCTION KILL` tells without stopping an `EVAL`, and without
    // waiting for the shard), another client of the range is refused.
    assert_eq!(once_busy(&mut c, &["FUNCTION", "KILL"]), error(BUSY_SCRIPT));
    assert_eq!(cmd(&mut c, &["GET", "{k}x"]), error(BUSY_SCRIPT));
    assert_eq!(
        cmd(&mut c, &["EVAL_RO", "return 1", "1", "{k}y"]),
        error(BUSY_SCRIPT)
    );
    // Commands without keys are refused too, as Redis refuses them; `CONFIG GET` as well.
    assert_eq!(cmd(&mut c, &["PING"]), error(BUSY_SCRIPT));
    assert_eq!(
        cmd(&mut c, &["CONFIG", "GET", "lua-time-limit"]),
        error(BUSY_SCRIPT)
    );
    assert_eq!(cmd(&mut c, &["SCRIPT", "KILL"]), ok());
    assert_eq!(
        script.join().unwrap(),
        error(&format!(
            "ERR Script killed by user with SCRIPT KILL... script: {sha}, on @user_script:1."
        ))
    );
    assert_eq!(get_when_free(&mut c, "{k}x"), bulk("v"));
    assert_eq!(cmd(&mut c, &["PING"]), Reply::Status("PONG".into()));
    assert_eq!(cmd(&mut c, &["SCRIPT", "KILL"]), error(NOTBUSY));
}

#[test]
fn a_script_that_may_write_is_unkillable_and_ends_at_its_budget() {
    let (dev, mut c) = dev();
    let body = format!("redis.call('set', KEYS[1], 'written') {SPIN}");
    let script = in_background(&dev, &["EVAL", &body, "1", "{w}a"]);
    assert_eq!(once_busy(&mut c, &["SCRIPT", "KILL"]), error(UNKILLABLE));
    assert_eq!(cmd(&mut c, &["FUNCTION", "KILL"]), error(UNKILLABLE));
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
    assert_eq!(cmd(&mut c, &["FUNCTION", "LOAD", lib]), bulk("spinlib"));
    let call = in_background(&dev, &["FCALL_RO", "spin", "1", "{f}a"]);
    assert_eq!(once_busy(&mut c, &["SCRIPT", "KILL"]), error(BUSY_FUNCTION));
    assert_eq!(cmd(&mut c, &["FUNCTION", "KILL"]), ok());
    assert_eq!(
        call.join().unwrap(),
        error("ERR Script killed by user with SCRIPT KILL... script: spin, on @user_function:2.")
    );
    assert_eq!(cmd(&mut c, &["FUNCTION", "KILL"]), error(NOTBUSY));
}

#[test]
fn a_script_without_keys_keeps_every_command_busy_until_script_kill_stops_it() {
    let (dev, mut c) = dev();
    assert_eq!(cmd(&mut c, &["SET", "xx", "1"]), ok());
    let sha = match cmd(&mut c, &["SCRIPT", "LOAD", SPIN]) {
        Reply::Bulk(Some(sha)) => String::from_utf8(sha).unwrap(),
        other => panic!("{other:?}"),
    };
    // A transaction begun before the script.
    let mut t = dev.connect();
    assert_eq!(cmd(&mut t, &["MULTI"]), ok());
    assert_eq!(cmd(&mut t, &["INCR", "xx"]), Reply::Status("QUEUED".into()));
    // Without keys, the proxy runs it to find its first key: it never finds one.
    let script = in_background(&dev, &["EVAL", SPIN, "0"]);
    assert_eq!(once_busy(&mut c, &["FUNCTION", "KILL"]), error(BUSY_SCRIPT));
    assert_eq!(cmd(&mut c, &["PING"]), error(BUSY_SCRIPT));
    assert_eq!(cmd(&mut c, &["GET", "xx"]), error(BUSY_SCRIPT));
    // Inside the transaction the refused command flags it, and EXEC discards it.
    assert_eq!(cmd(&mut t, &["INCR", "xx"]), error(BUSY_SCRIPT));
    assert_eq!(
        cmd(&mut t, &["EXEC"]),
        error(&format!(
            "EXECABORT Transaction discarded because of: {BUSY_SCRIPT}"
        ))
    );
    assert_eq!(cmd(&mut c, &["SCRIPT", "KILL"]), ok());
    assert_eq!(
        script.join().unwrap(),
        error(&format!(
            "ERR Script killed by user with SCRIPT KILL... script: {sha}, on @user_script:1."
        ))
    );
    // Nothing of the transaction ran, and it is over.
    assert_eq!(get_when_free(&mut c, "xx"), bulk("1"));
    assert_eq!(cmd(&mut t, &["PING", "asdf"]), bulk("asdf"));
    assert_eq!(cmd(&mut c, &["SCRIPT", "KILL"]), error(NOTBUSY));
}
