//! Pub/sub against a real `redis-server`: the same conversation of a subscriber and a
//! publisher (RESP2 and RESP3, channels, patterns, shard channels, PUBSUB introspection, the
//! RESP2 pub/sub mode rule, CLIENT REPLY) gives byte-identical frames on both. Then what
//! Redis cannot be compared on: a subscriber that goes away leaves nothing behind, and one
//! that never reads is disconnected instead of growing the proxy's memory.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::{Client, Env, multibulk};

/// One step: `who` (0 subscriber, 1 publisher) sends `cmd`; then `frames[i]` frames are read
/// from client `i` (in any order when `unordered`: Redis lists "every channel" in its hash
/// table's order).
struct Step {
    who: usize,
    cmd: &'static str,
    frames: [usize; 2],
    unordered: bool,
}

const fn step(who: usize, cmd: &'static str, sub: usize, publ: usize) -> Step {
    Step {
        who,
        cmd,
        frames: [sub, publ],
        unordered: false,
    }
}

const fn any_order(who: usize, cmd: &'static str, sub: usize) -> Step {
    Step {
        who,
        cmd,
        frames: [sub, 0],
        unordered: true,
    }
}

/// Runs `steps` and returns every frame read, labelled by client.
fn converse(addr: &str, resp3: bool, steps: &[Step]) -> Vec<String> {
    let mut clients = [Client::connect(addr), Client::connect(addr)];
    if resp3 {
        // HELLO's reply names the server and its version: not compared.
        clients[0].cmd("HELLO 3");
    }
    let mut out = Vec::new();
    for s in steps {
        let args: Vec<&[u8]> = s.cmd.split(' ').map(str::as_bytes).collect();
        clients[s.who].send(&multibulk(&args));
        for (i, &n) in s.frames.iter().enumerate() {
            let from = out.len();
            for _ in 0..n {
                let f = clients[i].read_reply().expect("a frame");
                out.push(format!("{i} {:?}: {}", s.cmd, String::from_utf8_lossy(&f)));
            }
            if s.unordered {
                // Names in any order; the counts (the last line of each frame) in order.
                let frames: Vec<String> = out.drain(from..).collect();
                let mut names = Vec::new();
                let mut counts = Vec::new();
                for f in frames {
                    let cut = f.trim_end().rfind('\n').unwrap();
                    names.push(f[..cut].to_string());
                    counts.push(f[cut..].trim().to_string());
                }
                names.sort();
                out.extend(names);
                out.push(format!("counts {counts:?}"));
            }
        }
    }
    out
}

const CONVERSATION: &[Step] = &[
    step(0, "SUBSCRIBE chan1 chan2 chan1", 3, 0),
    step(1, "PUBLISH chan1 hello", 1, 1),
    step(1, "PUBLISH nobody hello", 0, 1),
    step(0, "PING", 1, 0),
    step(0, "PING foo", 1, 0),
    step(0, "GET x", 1, 0),
    step(0, "PSUBSCRIBE ch* foo.?", 2, 0),
    step(1, "PUBLISH chan2 both", 2, 1),
    step(1, "PUBSUB NUMSUB chan1 chan2 none", 0, 1),
    step(1, "PUBSUB NUMPAT", 0, 1),
    step(1, "PUBSUB CHANNELS chan1*", 0, 1),
    step(1, "PUBSUB NUMPAT extra", 0, 1),
    step(1, "PUBSUB NOPE", 0, 1),
    step(0, "UNSUBSCRIBE chan1 never", 2, 0),
    any_order(0, "PUNSUBSCRIBE", 2),
    step(0, "UNSUBSCRIBE", 1, 0),
    step(0, "UNSUBSCRIBE", 1, 0),
    step(0, "PUNSUBSCRIBE", 1, 0),
    step(0, "PING", 1, 0),
    step(0, "SSUBSCRIBE s1 s2", 2, 0),
    step(1, "SPUBLISH s1 sharded", 1, 1),
    step(1, "PUBLISH s1 not-sharded", 0, 1),
    step(1, "PUBSUB SHARDNUMSUB s1 s3", 0, 1),
    step(0, "SUNSUBSCRIBE s2", 1, 0),
    step(1, "PUBSUB SHARDCHANNELS", 0, 1),
    step(0, "CLIENT ID", 1, 0),
    step(0, "CONFIG GET maxmemory", 1, 0),
    step(0, "SUNSUBSCRIBE", 1, 0),
    step(0, "CLIENT REPLY OFF", 0, 0),
    step(0, "SET quiet v", 0, 0),
    step(0, "CLIENT REPLY ON", 1, 0),
    step(0, "CLIENT REPLY SKIP", 0, 0),
    step(0, "GET quiet", 0, 0),
    step(0, "GET quiet", 1, 0),
    step(0, "DEL quiet", 1, 0),
    step(0, "SUBSCRIBE r", 1, 0),
    step(0, "RESET", 1, 0),
    step(1, "PUBSUB NUMSUB r", 0, 1),
];

/// The RESP3 conversation: pushes, and any command allowed while subscribed.
const CONVERSATION3: &[Step] = &[
    step(0, "SUBSCRIBE chan1", 1, 0),
    step(0, "SET k v", 1, 0),
    step(0, "GET k", 1, 0),
    step(1, "PUBLISH chan1 hi", 1, 1),
    step(0, "PING", 1, 0),
    step(0, "PSUBSCRIBE c*", 1, 0),
    step(1, "PUBLISH chan1 two", 2, 1),
    step(0, "CLIENT REPLY OFF", 0, 0),
    step(0, "SUBSCRIBE more", 1, 0),
    step(1, "PUBLISH more m", 1, 1),
    any_order(0, "UNSUBSCRIBE", 2),
    step(0, "CLIENT REPLY ON", 1, 0),
    step(0, "DEL k", 1, 0),
];

#[test]
fn a_pubsub_conversation_matches_redis_byte_for_byte() {
    let Some(redis) = test_support::redis::start() else {
        return;
    };
    let env = Env::start(4);
    for (resp3, steps) in [(false, CONVERSATION), (true, CONVERSATION3)] {
        let want = converse(redis.addr(), resp3, steps);
        let got = converse(&env.addr, resp3, steps);
        for (g, w) in got.iter().zip(&want) {
            assert_eq!(g, w, "resp3={resp3}");
        }
        assert_eq!(got.len(), want.len());
    }
}

fn numsub(c: &mut Client, channel: &str) -> String {
    c.cmd(&format!("PUBSUB NUMSUB {channel}"))
}

#[test]
fn a_subscriber_that_disconnects_leaves_no_subscription() {
    let env = Env::start(2);
    let mut sub = env.client();
    let mut publ = env.client();
    sub.cmd("SUBSCRIBE gone");
    sub.cmd("PSUBSCRIBE gone*");
    assert_eq!(numsub(&mut publ, "gone"), "*2\r\n$4\r\ngone\r\n:1\r\n");
    drop(sub);
    let deadline = Instant::now() + Duration::from_secs(10);
    while numsub(&mut publ, "gone") != "*2\r\n$4\r\ngone\r\n:0\r\n" {
        assert!(
            Instant::now() < deadline,
            "the subscription outlived its client"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(publ.cmd("PUBSUB NUMPAT"), ":0\r\n");
    assert_eq!(publ.cmd("PUBLISH gone x"), ":0\r\n");
}

#[test]
fn a_subscriber_that_never_reads_is_disconnected_not_buffered() {
    let env = Env::start(2);
    let mut sub = env.client();
    sub.cmd("SUBSCRIBE flood");
    let mut publ = env.client();
    let payload = vec![b'x'; 1 << 20];
    let mut delivered = 0;
    // 96 MiB published; the subscriber reads nothing: socket buffers take a few MiB, the
    // mailbox 32 MiB, then the proxy drops the subscriber.
    for _ in 0..96 {
        let r = publ.cmd_args(&[b"PUBLISH", b"flood", &payload]);
        delivered += r.trim_start_matches(':').trim().parse::<u32>().unwrap();
    }
    assert!(
        delivered < 96,
        "every message was queued for a client that reads nothing"
    );
    let info = publ.cmd("INFO stats");
    assert!(
        info.contains("tierkv_pubsub_clients_overflowed:1"),
        "{info}"
    );
    assert!(sub.is_closed(), "the flooded subscriber is still connected");
}
