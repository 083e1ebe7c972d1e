//! The proxy mesh: two proxies over one (fake) cluster, each with a mesh listener, find each
//! other through the master's directory. A message published on one reaches subscribers of
//! the other (RESP2 and RESP3, in order) and the count is cluster-wide; PUBSUB counts sum both
//! proxies; a BLPOP blocked on one is woken by a push through the other well before the
//! 100 ms poll would; a stopped peer neither fails nor holds PUBLISH; `CLIENT PAUSE WRITE`
//! on one holds the writes of the other's clients (not their reads) until `CLIENT UNPAUSE`;
//! a keyspace notification of a write through one reaches subscribers of the other; a write
//! and a flush through one invalidate what tracking clients of the other cache.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::{Client, Env, multibulk};
use proxy::server::{ProxyConfig, Shared};

fn mesh(cfg: &mut ProxyConfig) {
    cfg.mesh.listen = Some("127.0.0.1:0".into());
    cfg.mesh.ttl = Duration::from_millis(1500);
}

fn eventually(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Proxy A (`env`) and proxy B, linked both ways.
struct Two {
    env: Env,
    b_addr: String,
    b: Arc<Shared>,
    stop_b: Option<tokio::sync::oneshot::Sender<()>>,
}

fn two() -> Two {
    let env = Env::start_with(2, mesh);
    let (b_addr, b, stop_b) = env.stoppable_proxy(mesh);
    let a = env.shared.clone();
    eventually("both proxies link to each other", || {
        a.mesh.peers() == (1, 1) && b.mesh.peers() == (1, 1)
    });
    Two {
        env,
        b_addr,
        b,
        stop_b: Some(stop_b),
    }
}

fn read(c: &mut Client) -> String {
    String::from_utf8(c.read_reply().expect("a frame")).unwrap()
}

fn info_field(c: &mut Client, name: &str) -> u64 {
    let info = c.cmd("INFO stats");
    let line = info
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .unwrap_or_else(|| panic!("no {name} in {info}"));
    line.trim().parse().unwrap()
}

#[test]
fn a_subscriber_on_one_proxy_receives_what_is_published_on_another_in_resp2_and_resp3() {
    let t = two();
    let mut sub2 = Client::connect(&t.b_addr);
    let mut sub3 = Client::connect(&t.b_addr);
    let mut publisher = t.env.client();
    assert!(
        sub2.cmd("SUBSCRIBE news")
            .starts_with("*3\r\n$9\r\nsubscribe")
    );
    sub3.cmd("HELLO 3");
    assert!(
        sub3.cmd("SUBSCRIBE news")
            .starts_with(">3\r\n$9\r\nsubscribe")
    );
    assert!(
        sub3.cmd("PSUBSCRIBE n*")
            .starts_with(">3\r\n$10\r\npsubscribe")
    );
    // Two channel subscribers and one pattern subscriber, all on the other proxy.
    assert_eq!(publisher.cmd("PUBLISH news hi"), ":3\r\n");
    assert_eq!(
        read(&mut sub2),
        "*3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n$2\r\nhi\r\n"
    );
    assert_eq!(
        read(&mut sub3),
        ">3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n$2\r\nhi\r\n"
    );
    assert_eq!(
        read(&mut sub3),
        ">4\r\n$8\r\npmessage\r\n$2\r\nn*\r\n$4\r\nnews\r\n$2\r\nhi\r\n"
    );
    // Shard channels travel the same way.
    assert!(sub2.cmd("SSUBSCRIBE orders").contains("ssubscribe"));
    assert_eq!(publisher.cmd("SPUBLISH orders o1"), ":1\r\n");
    assert_eq!(
        read(&mut sub2),
        "*3\r\n$8\r\nsmessage\r\n$6\r\norders\r\n$2\r\no1\r\n"
    );
    // One publisher's messages, pipelined, arrive in order.
    let mut pipeline = Vec::new();
    for i in 0..200 {
        pipeline.extend(multibulk(&[
            b"PUBLISH",
            b"news",
            format!("m{i}").as_bytes(),
        ]));
    }
    publisher.send(&pipeline);
    for i in 0..200 {
        assert_eq!(read(&mut publisher), ":3\r\n");
        let m = read(&mut sub2);
        assert!(m.ends_with(&format!("\r\nm{i}\r\n")), "message {i}: {m}");
    }
    assert!(info_field(&mut Client::connect(&t.b_addr), "tierkv_mesh_received") >= 202);
    assert!(info_field(&mut t.env.client(), "tierkv_mesh_forwarded") >= 202);
    let text = proxy::server::prometheus_text(&t.env.shared);
    assert!(text.contains("proxy_mesh_links_up 1\n"), "{text}");
}

#[test]
fn keyspace_notifications_of_a_write_through_one_proxy_reach_subscribers_of_the_other() {
    let t = two();
    let mut writer = t.env.client();
    assert_eq!(
        writer.cmd("CONFIG SET notify-keyspace-events KEA"),
        "+OK\r\n"
    );
    let mut sub = Client::connect(&t.b_addr);
    assert!(
        sub.cmd("SUBSCRIBE __keyevent@0__:set")
            .contains("subscribe")
    );
    assert!(
        sub.cmd("PSUBSCRIBE __keyspace@0__:*")
            .contains("psubscribe")
    );
    assert_eq!(writer.cmd("SET k v"), "+OK\r\n");
    assert_eq!(
        read(&mut sub),
        "*4\r\n$8\r\npmessage\r\n$16\r\n__keyspace@0__:*\r\n$16\r\n__keyspace@0__:k\r\n$3\r\nset\r\n"
    );
    assert_eq!(
        read(&mut sub),
        "*3\r\n$7\r\nmessage\r\n$18\r\n__keyevent@0__:set\r\n$1\r\nk\r\n"
    );
}

#[test]
fn pubsub_counts_and_channels_answer_for_both_proxies() {
    let t = two();
    let mut on_a = t.env.client();
    let mut on_b = Client::connect(&t.b_addr);
    let mut on_b2 = Client::connect(&t.b_addr);
    on_a.cmd("SUBSCRIBE x");
    on_b.cmd("SUBSCRIBE x");
    on_b.cmd("SUBSCRIBE y");
    on_b2.cmd("PSUBSCRIBE p*");
    on_b2.cmd("SSUBSCRIBE s");
    let want = "*6\r\n$1\r\nx\r\n:2\r\n$1\r\ny\r\n:1\r\n$1\r\nz\r\n:0\r\n";
    for addr in [t.env.addr.as_str(), t.b_addr.as_str()] {
        let mut c = Client::connect(addr);
        assert_eq!(c.cmd("PUBSUB NUMSUB x y z"), want, "asked at {addr}");
        assert_eq!(c.cmd("PUBSUB NUMPAT"), ":1\r\n");
        assert_eq!(c.cmd("PUBSUB SHARDNUMSUB s"), "*2\r\n$1\r\ns\r\n:1\r\n");
        assert_eq!(c.cmd("PUBSUB SHARDCHANNELS"), "*1\r\n$1\r\ns\r\n");
        // The union: x (on both proxies) once, y.
        assert_eq!(c.cmd("PUBSUB CHANNELS"), "*2\r\n$1\r\nx\r\n$1\r\ny\r\n");
        assert_eq!(c.cmd("PUBSUB CHANNELS y*"), "*1\r\n$1\r\ny\r\n");
    }
}

#[test]
fn blpop_on_one_proxy_wakes_within_a_few_ms_of_a_push_through_another() {
    let t = two();
    let mut pusher = t.env.client();
    let mut took = Vec::new();
    for i in 0..8 {
        let key = format!("q{i}");
        let mut blocked = Client::connect(&t.b_addr);
        blocked.send(&multibulk(&[b"BLPOP", key.as_bytes(), b"0"]));
        eventually("the client blocks", || {
            t.b.router.blocking.queued(key.as_bytes()) == 1
        });
        // Long enough for the blocked command's poll to reach its 100 ms period, plus a
        // random part of it: without the mesh's signal the push is seen 0..100 ms later.
        let phase = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos()
            % 100;
        std::thread::sleep(Duration::from_millis(250 + u64::from(phase)));
        let pushed = Instant::now();
        assert_eq!(pusher.cmd(&format!("LPUSH {key} v")), ":1\r\n");
        let want = format!("*2\r\n${}\r\n{key}\r\n$1\r\nv\r\n", key.len());
        assert_eq!(read(&mut blocked), want);
        took.push(pushed.elapsed());
    }
    eprintln!("BLPOP woken after a push through the other proxy: {took:?}");
    // At least 7 of 8 under 30 ms (one scheduling hiccup of a loaded machine allowed): by the
    // 100 ms poll alone, each has a 30% chance, all but one about 1 in 800.
    let quick = took
        .iter()
        .filter(|d| **d < Duration::from_millis(30))
        .count();
    assert!(quick >= 7, "{took:?}");
    let b = t.b.clone();
    eventually("the other proxy received every key-ready signal", || {
        b.mesh.stats.received.load(Ordering::Relaxed) >= 8
    });
    assert!(b.mesh.stats.woken_by_peers.load(Ordering::Relaxed) >= 7);
}

#[test]
fn client_pause_write_on_one_proxy_holds_writes_on_the_other_until_unpause() {
    let t = two();
    let mut admin = t.env.client();
    assert_eq!(admin.cmd("CLIENT PAUSE 60000 WRITE"), "+OK\r\n");
    let b = t.b.clone();
    eventually("the other proxy is paused", || b.pause.current().is_some());
    let mut writer = Client::connect(&t.b_addr);
    // Reads on the other proxy still run.
    assert_eq!(writer.cmd("GET k"), "$-1\r\n");
    writer.send(&multibulk(&[b"SET", b"k", b"v"]));
    eventually("the write waits", || b.pause.waiting() == 1);
    let mut info = Client::connect(&t.b_addr);
    assert!(info.cmd("INFO clients").contains("blocked_clients:1\r\n"));
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(admin.cmd("GET k"), "$-1\r\n", "the held write did not run");
    assert_eq!(admin.cmd("CLIENT UNPAUSE"), "+OK\r\n");
    assert_eq!(read(&mut writer), "+OK\r\n");
    assert_eq!(admin.cmd("GET k"), "$1\r\nv\r\n");
    assert_eq!(b.pause.current(), None);
}

#[test]
fn a_stopped_peer_neither_fails_nor_holds_publish() {
    let mut t = two();
    let mut sub = t.env.client();
    sub.cmd("SUBSCRIBE news");
    let mut publisher = t.env.client();
    assert_eq!(publisher.cmd("PUBLISH news 1"), ":1\r\n");
    let _ = t.stop_b.take().unwrap().send(());
    eventually("the link to the stopped peer is down", || {
        t.env.shared.mesh.peers().1 == 0
    });
    // Until the directory forgets the peer, each publish still tries it: never an error,
    // never longer than the mesh's deadline (200 ms) plus slack.
    for i in 0..20 {
        let started = Instant::now();
        assert_eq!(publisher.cmd(&format!("PUBLISH news {i}")), ":1\r\n");
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
        read(&mut sub);
        std::thread::sleep(Duration::from_millis(20));
    }
    eventually("the directory forgets the stopped peer", || {
        t.env.shared.mesh.peers().0 == 0
    });
    let mut c = t.env.client();
    let lost = info_field(&mut c, "tierkv_mesh_send_failures")
        + info_field(&mut c, "tierkv_mesh_connect_failures");
    assert!(
        lost > 0,
        "the failures are counted: {}",
        c.cmd("INFO stats")
    );
    drop(t.b);
}

/// Waits until proxy A has heard that proxy B has tracking clients.
fn a_knows_b_tracks(t: &Two) {
    let a = t.env.shared.clone();
    eventually("A hears that B has tracking clients", || {
        a.tracker.peers_track(proxy::server::now_ms())
    });
}

#[test]
fn a_write_and_a_flush_through_one_proxy_invalidate_what_a_client_of_the_other_tracks() {
    let t = two();
    let mut writer = t.env.client();
    assert_eq!(writer.cmd("SET user:1 ada"), "+OK\r\n");
    let mut cache = Client::connect(&t.b_addr);
    cache.cmd("HELLO 3");
    assert_eq!(cache.cmd("CLIENT TRACKING on"), "+OK\r\n");
    assert_eq!(cache.cmd("GET user:1"), "$3\r\nada\r\n");
    a_knows_b_tracks(&t);
    // A key the client did not read is not its business.
    assert_eq!(writer.cmd("SET user:2 bob"), "+OK\r\n");
    assert_eq!(writer.cmd("SET user:1 grace"), "+OK\r\n");
    assert_eq!(
        read(&mut cache),
        ">2\r\n$10\r\ninvalidate\r\n*1\r\n$6\r\nuser:1\r\n"
    );
    // Invalidated once: the next change is not sent until the key is read again.
    assert_eq!(writer.cmd("SET user:1 x"), "+OK\r\n");
    assert_eq!(cache.cmd("PING"), "+PONG\r\n");
    assert_eq!(writer.cmd("FLUSHALL"), "+OK\r\n");
    assert_eq!(read(&mut cache), ">2\r\n$10\r\ninvalidate\r\n_\r\n");
    assert!(t.b.tracker.stats.from_peers.load(Ordering::Relaxed) >= 2);
    let text = proxy::server::prometheus_text(&t.b);
    assert!(text.contains("proxy_tracking_clients 1\n"), "{text}");
    assert!(
        text.contains("proxy_tracking_invalidations_total 2\n"),
        "{text}"
    );
}

#[test]
fn a_write_through_one_proxy_reaches_a_bcast_client_of_the_other_once() {
    let t = two();
    let mut cache = Client::connect(&t.b_addr);
    cache.cmd("HELLO 3");
    assert_eq!(cache.cmd("CLIENT TRACKING on BCAST PREFIX s:"), "+OK\r\n");
    a_knows_b_tracks(&t);
    let mut writer = t.env.client();
    assert_eq!(writer.cmd("SET s:1 v PX 300"), "+OK\r\n");
    assert_eq!(writer.cmd("SET other v"), "+OK\r\n");
    let push = ">2\r\n$10\r\ninvalidate\r\n*1\r\n$3\r\ns:1\r\n";
    assert_eq!(read(&mut cache), push);
    // Nothing else: not the key outside the prefix, not a second push for the same write.
    assert_eq!(cache.cmd("PING"), "+PONG\r\n");
}
