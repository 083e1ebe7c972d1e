//! Lists through the proxy over a fake cluster: the blocking commands (served by a push from
//! another client or another proxy, timeouts in RESP2 and RESP3, arrival order, clean-up of a
//! client that goes away, MULTI) and the moving commands across ranges.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::{Client, Env};
use proxy::keyspace::slot;

/// Waits until `cond` holds (up to 5 s).
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

/// Two keys in different ranges of a two-range cluster (split at slot 8192).
fn keys_in_two_ranges() -> (String, String) {
    let low = (0..)
        .map(|i| format!("src{i}"))
        .find(|k| slot(k.as_bytes()) < 8192);
    let high = (0..)
        .map(|i| format!("dst{i}"))
        .find(|k| slot(k.as_bytes()) >= 8192);
    (low.unwrap(), high.unwrap())
}

fn queued(env: &Env, key: &str) -> usize {
    env.shared.router.blocking.queued(key.as_bytes())
}

#[test]
fn blpop_is_served_by_a_push_from_another_client() {
    let env = Env::start(1);
    let mut blocked = env.client();
    let mut pusher = env.client();
    blocked.send(&common::multibulk(&[b"BLPOP", b"k", b"0"]));
    eventually("the client blocks", || queued(&env, "k") == 1);
    assert_eq!(pusher.cmd("RPUSH k v"), ":1\r\n");
    // As in Redis, the push replies once the client it unblocked has been served.
    assert_eq!(pusher.cmd("LLEN k"), ":0\r\n");
    let reply = blocked.read_reply().unwrap();
    assert_eq!(reply, b"*2\r\n$1\r\nk\r\n$1\r\nv\r\n");
    assert_eq!(
        pusher.cmd("EXISTS k"),
        ":0\r\n",
        "the popped list is deleted"
    );
    assert_eq!(env.shared.router.blocking.blocked_clients(), 0);
}

#[test]
fn blpop_times_out_with_a_null_array_in_resp2_and_resp3() {
    let env = Env::start(1);
    let mut c = env.client();
    let start = Instant::now();
    assert_eq!(c.cmd("BLPOP none 0.1"), "*-1\r\n");
    assert!(start.elapsed() >= Duration::from_millis(100));
    // A timed-out BLMOVE answers a null array too, as Redis does.
    assert_eq!(c.cmd("BLMOVE none x LEFT RIGHT 0.05"), "*-1\r\n");
    assert_eq!(c.cmd("BLMPOP 0.05 1 none LEFT"), "*-1\r\n");
    c.cmd("HELLO 3");
    assert_eq!(c.cmd("BRPOP none 0.05"), "_\r\n");
    assert_eq!(c.cmd("BRPOPLPUSH none x 0.05"), "_\r\n");
    assert_eq!(
        c.cmd("BLPOP none -1"),
        "-ERR timeout is negative\r\n",
        "the error comes before anything blocks"
    );
    assert_eq!(
        c.cmd("BLPOP none x"),
        "-ERR timeout is not a float or out of range\r\n"
    );
}

#[test]
fn two_blocked_clients_are_served_in_arrival_order() {
    let env = Env::start(1);
    let mut first = env.client();
    let mut second = env.client();
    let mut pusher = env.client();
    first.send(&common::multibulk(&[b"BLPOP", b"k", b"0"]));
    eventually("the first blocks", || queued(&env, "k") == 1);
    second.send(&common::multibulk(&[b"BLPOP", b"k", b"0"]));
    eventually("the second blocks", || queued(&env, "k") == 2);
    assert_eq!(pusher.cmd("RPUSH k one"), ":1\r\n");
    assert_eq!(
        first.read_reply().unwrap(),
        b"*2\r\n$1\r\nk\r\n$3\r\none\r\n"
    );
    assert_eq!(pusher.cmd("RPUSH k two"), ":1\r\n");
    assert_eq!(
        second.read_reply().unwrap(),
        b"*2\r\n$1\r\nk\r\n$3\r\ntwo\r\n"
    );
    // One push of two elements serves both waiters.
    first.send(&common::multibulk(&[b"BRPOP", b"k", b"0"]));
    eventually("the first blocks again", || queued(&env, "k") == 1);
    second.send(&common::multibulk(&[b"BRPOP", b"k", b"0"]));
    eventually("the second blocks again", || queued(&env, "k") == 2);
    assert_eq!(pusher.cmd("RPUSH k a b"), ":2\r\n");
    assert_eq!(first.read_reply().unwrap(), b"*2\r\n$1\r\nk\r\n$1\r\nb\r\n");
    assert_eq!(
        second.read_reply().unwrap(),
        b"*2\r\n$1\r\nk\r\n$1\r\na\r\n"
    );
}

#[test]
fn a_disconnected_blocked_client_leaves_no_waiter() {
    let env = Env::start(1);
    let mut c = env.client();
    c.send(&common::multibulk(&[b"BLPOP", b"k1", b"k2", b"0"]));
    eventually("the client blocks", || queued(&env, "k2") == 1);
    assert_eq!(env.shared.router.blocking.blocked_clients(), 1);
    let mut info = env.client();
    assert!(info.cmd("INFO clients").contains("blocked_clients:1"));
    drop(c);
    eventually("the waiter is gone", || {
        queued(&env, "k1") + queued(&env, "k2") == 0
            && env.shared.router.blocking.blocked_clients() == 0
    });
    // Nothing pops the element for the client that left.
    assert_eq!(info.cmd("RPUSH k1 v"), ":1\r\n");
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(info.cmd("LLEN k1"), ":1\r\n");
}

#[test]
fn a_blocking_command_inside_multi_answers_at_once() {
    let env = Env::start(1);
    let mut c = env.client();
    c.cmd("MULTI");
    assert_eq!(c.cmd("BLPOP none 0"), "+QUEUED\r\n");
    assert_eq!(c.cmd("BLMOVE none x LEFT LEFT 0"), "+QUEUED\r\n");
    assert_eq!(c.cmd("EXEC"), "*2\r\n*-1\r\n$-1\r\n");
    c.cmd("RPUSH l a");
    c.cmd("MULTI");
    c.cmd("BRPOP l 0");
    assert_eq!(c.cmd("EXEC"), "*1\r\n*2\r\n$1\r\nl\r\n$1\r\na\r\n");
}

#[test]
fn blmove_across_two_ranges_moves_the_element() {
    let env = Env::start(2);
    let (src, dst) = keys_in_two_ranges();
    let mut blocked = env.client();
    let mut pusher = env.client();
    blocked.send(&common::multibulk(&[
        b"BLMOVE",
        src.as_bytes(),
        dst.as_bytes(),
        b"LEFT",
        b"RIGHT",
        b"0",
    ]));
    eventually("the client blocks", || queued(&env, &src) == 1);
    assert_eq!(pusher.cmd(&format!("RPUSH {src} v w")), ":2\r\n");
    assert_eq!(blocked.read_reply().unwrap(), b"$1\r\nv\r\n");
    assert_eq!(
        pusher.cmd(&format!("LRANGE {dst} 0 -1")),
        "*1\r\n$1\r\nv\r\n"
    );
    assert_eq!(
        pusher.cmd(&format!("LRANGE {src} 0 -1")),
        "*1\r\n$1\r\nw\r\n"
    );
    // Non-blocking forms across ranges.
    assert_eq!(pusher.cmd(&format!("RPOPLPUSH {src} {dst}")), "$1\r\nw\r\n");
    assert_eq!(pusher.cmd(&format!("RPOPLPUSH {src} {dst}")), "$-1\r\n");
    assert_eq!(
        pusher.cmd(&format!("LRANGE {dst} 0 -1")),
        "*2\r\n$1\r\nw\r\n$1\r\nv\r\n"
    );
    assert_eq!(
        pusher.cmd(&format!("LMPOP 2 {src} {dst} RIGHT COUNT 5")),
        format!(
            "*2\r\n${}\r\n{dst}\r\n*2\r\n$1\r\nv\r\n$1\r\nw\r\n",
            dst.len()
        )
    );
}

#[test]
fn a_move_across_ranges_to_a_key_of_another_type_puts_the_element_back() {
    let env = Env::start(2);
    let (src, dst) = keys_in_two_ranges();
    let mut c = env.client();
    c.cmd(&format!("RPUSH {src} a b c"));
    c.cmd(&format!("SET {dst} str"));
    assert!(
        c.cmd(&format!("LMOVE {src} {dst} LEFT LEFT"))
            .starts_with("-WRONGTYPE")
    );
    assert_eq!(
        c.cmd(&format!("LRANGE {src} 0 -1")),
        "*3\r\n$1\r\na\r\n$1\r\nb\r\n$1\r\nc\r\n",
        "the element is back at the end it came from"
    );
    assert!(
        c.cmd(&format!("RPOPLPUSH {src} {dst}"))
            .starts_with("-WRONGTYPE")
    );
    assert_eq!(c.cmd(&format!("LINDEX {src} -1")), "$1\r\nc\r\n");
}

#[test]
fn blpop_on_one_proxy_is_served_by_a_push_through_another_proxy() {
    let env = Env::start(2);
    let (addr_b, _) = env.another_proxy();
    let mut blocked = env.client();
    let mut pusher = Client::connect(&addr_b);
    blocked.send(&common::multibulk(&[b"BLPOP", b"k", b"0"]));
    eventually("the client blocks", || queued(&env, "k") == 1);
    let pushed = Instant::now();
    assert_eq!(pusher.cmd("LPUSH k v"), ":1\r\n");
    assert_eq!(
        blocked.read_reply().unwrap(),
        b"*2\r\n$1\r\nk\r\n$1\r\nv\r\n"
    );
    // Served by a poll: within the documented bound (100 ms) plus scheduling slack.
    assert!(
        pushed.elapsed() < Duration::from_secs(1),
        "{:?}",
        pushed.elapsed()
    );
}

#[test]
fn a_chain_of_blocked_moves_completes_before_the_push_replies() {
    let env = Env::start(2);
    let mut first = env.client();
    let mut second = env.client();
    let mut c = env.client();
    first.send(&common::multibulk(&[
        b"BLMOVE", b"l1", b"l2", b"RIGHT", b"LEFT", b"0",
    ]));
    eventually("the first blocks", || queued(&env, "l1") == 1);
    second.send(&common::multibulk(&[
        b"BLMOVE", b"l2", b"l3", b"LEFT", b"RIGHT", b"0",
    ]));
    eventually("the second blocks", || queued(&env, "l2") == 1);
    assert_eq!(c.cmd("RPUSH l1 foo"), ":1\r\n");
    assert_eq!(c.cmd("LRANGE l1 0 -1"), "*0\r\n");
    assert_eq!(c.cmd("LRANGE l2 0 -1"), "*0\r\n");
    assert_eq!(c.cmd("LRANGE l3 0 -1"), "*1\r\n$3\r\nfoo\r\n");
    assert_eq!(first.read_reply().unwrap(), b"$3\r\nfoo\r\n");
    assert_eq!(second.read_reply().unwrap(), b"$3\r\nfoo\r\n");
}
