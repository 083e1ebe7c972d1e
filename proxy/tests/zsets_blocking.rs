//! BZPOPMIN, BZPOPMAX and BZMPOP through the proxy over a fake cluster: served by a ZADD from
//! another client, immediate when a key has members, timeouts, and a key of another type.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::Env;

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

#[test]
fn bzpopmin_is_served_by_a_zadd_from_another_client() {
    let env = Env::start(2);
    let mut blocked = env.client();
    let mut writer = env.client();
    blocked.send(&common::multibulk(&[b"BZPOPMIN", b"z1", b"z2", b"0"]));
    eventually("the client blocks", || {
        env.shared.router.blocking.queued(b"z2") == 1
    });
    assert_eq!(writer.cmd("ZADD z2 2 b 1 a"), ":2\r\n");
    let reply = blocked.read_reply().unwrap();
    assert_eq!(reply, b"*3\r\n$2\r\nz2\r\n$1\r\na\r\n$1\r\n1\r\n");
    assert_eq!(writer.cmd("ZCARD z2"), ":1\r\n");
}

#[test]
fn bzpop_and_bzmpop_answer_at_once_when_a_key_has_members() {
    let env = Env::start(1);
    let mut c = env.client();
    c.cmd("ZADD z 1 a 2 b 3 c");
    assert_eq!(
        c.cmd("BZPOPMAX nokey z 0"),
        "*3\r\n$1\r\nz\r\n$1\r\nc\r\n$1\r\n3\r\n"
    );
    assert_eq!(
        c.cmd("BZMPOP 0 2 nokey z MIN COUNT 5"),
        "*2\r\n$1\r\nz\r\n*2\r\n*2\r\n$1\r\na\r\n$1\r\n1\r\n*2\r\n$1\r\nb\r\n$1\r\n2\r\n"
    );
    assert_eq!(c.cmd("EXISTS z"), ":0\r\n");
    c.cmd("HELLO 3");
    c.cmd("ZADD z 1.5 x");
    assert_eq!(
        c.cmd("BZPOPMIN z 0"),
        "*3\r\n$1\r\nz\r\n$1\r\nx\r\n,1.5\r\n"
    );
}

#[test]
fn bzpopmin_times_out_with_a_null_array_and_refuses_another_type() {
    let env = Env::start(1);
    let mut c = env.client();
    let start = Instant::now();
    assert_eq!(c.cmd("BZPOPMIN none 0.1"), "*-1\r\n");
    assert!(start.elapsed() >= Duration::from_millis(100));
    assert_eq!(c.cmd("BZMPOP 0.05 1 none MAX"), "*-1\r\n");
    c.cmd("SET s x");
    assert!(c.cmd("BZPOPMIN s 0").starts_with("-WRONGTYPE"));
    assert_eq!(c.cmd("BZPOPMIN none -1"), "-ERR timeout is negative\r\n");
}
