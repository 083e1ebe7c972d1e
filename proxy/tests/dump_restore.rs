//! `DUMP` / `RESTORE` against a real `redis-server`: payloads Redis writes (every encoding it
//! uses for small and large values: listpack, intset, quicklist with compressed nodes, LZF
//! and integer strings) restore in tierkv to the same value, and payloads tierkv writes
//! restore in Redis to the same value. Error replies are compared byte for byte.
#![allow(clippy::unwrap_used)]

mod common;

use common::{Client, Env, multibulk};

fn raw(c: &mut Client, args: &[&[u8]]) -> Vec<u8> {
    c.send(&multibulk(args));
    c.read_reply().unwrap()
}

/// The bytes of a bulk reply.
fn bulk(reply: &[u8]) -> Vec<u8> {
    assert_eq!(reply[0], b'$', "{:?}", String::from_utf8_lossy(reply));
    let start = reply.iter().position(|&b| b == b'\n').unwrap() + 1;
    reply[start..reply.len() - 2].to_vec()
}

/// The items of a RESP2 reply of bulk strings (none of the test's values holds a CRLF).
fn items(reply: &str) -> Vec<String> {
    reply
        .split("\r\n")
        .filter(|l| !l.is_empty() && !l.starts_with('*') && !l.starts_with('$'))
        .map(str::to_string)
        .collect()
}

/// A canonical reading of a key's value (sorted where the type has no order).
fn value(c: &mut Client, key: &str) -> String {
    let t = c.cmd(&format!("TYPE {key}"));
    let read = |c: &mut Client, cmd: &str| items(&c.cmd(&format!("{cmd} {key}")));
    let v = match t.trim() {
        "+string" => read(c, "GET"),
        "+list" => items(&c.cmd(&format!("LRANGE {key} 0 -1"))),
        "+set" => {
            let mut m = read(c, "SMEMBERS");
            m.sort();
            m
        }
        "+zset" => items(&c.cmd(&format!("ZRANGE {key} 0 -1 WITHSCORES"))),
        "+hash" => {
            let flat = read(c, "HGETALL");
            let mut pairs: Vec<String> = flat.chunks(2).map(|p| p.join("=")).collect();
            pairs.sort();
            pairs
        }
        other => panic!("{key}: type {other}"),
    };
    format!("{}:{}", t.trim(), v.join("|"))
}

/// Builds, in Redis, one key per encoding Redis 7.0 writes.
fn populate(r: &mut Client) -> Vec<&'static str> {
    let long = "a".repeat(300);
    let big_el = "x".repeat(5000);
    let mut cmds = vec![
        "SET s_small hello".to_string(),
        "SET s_int 12345".into(),
        "SET s_neg -9223372036854775808".into(),
        format!("SET s_lzf {long}"),
        "RPUSH l_small a 1 -7 300 70000 5000000000".into(),
        format!("RPUSH l_bigel {big_el} b"),
        "SADD set_int 1 2 3 -40000 5000000000".into(),
        "SADD set_str a b c".into(),
        "ZADD z_small 1 a 2.5 b -inf c".into(),
        "HSET h_small f1 v1 f2 2 f3 -300".into(),
        "CONFIG SET list-compress-depth 1".into(),
    ];
    let many: Vec<String> = (0..700).map(|i| format!("element-{i}-{long}")).collect();
    cmds.push(format!("RPUSH l_many {}", many.join(" ")));
    cmds.push(format!(
        "SADD set_big {}",
        (0..300)
            .map(|i| format!("m{i}"))
            .collect::<Vec<_>>()
            .join(" ")
    ));
    cmds.push(format!(
        "ZADD z_big {}",
        (0..300)
            .map(|i| format!("{}.25 m{i}", i))
            .collect::<Vec<_>>()
            .join(" ")
    ));
    cmds.push(format!(
        "HSET h_big {}",
        (0..300)
            .map(|i| format!("f{i} v{i}"))
            .collect::<Vec<_>>()
            .join(" ")
    ));
    for c in &cmds {
        let reply = r.cmd(c);
        assert!(!reply.starts_with('-'), "{c}: {reply}");
    }
    vec![
        "s_small", "s_int", "s_neg", "s_lzf", "l_small", "l_bigel", "set_int", "set_str",
        "z_small", "h_small", "l_many", "set_big", "z_big", "h_big",
    ]
}

#[test]
fn payloads_move_between_redis_and_tierkv_both_ways() {
    let Some(redis) = test_support::redis::start() else {
        return;
    };
    let env = Env::start(4);
    let mut r = Client::connect(redis.addr());
    let mut p = env.client();
    for key in populate(&mut r) {
        let from_redis = bulk(&raw(&mut r, &[b"DUMP", key.as_bytes()]));
        let ok = raw(&mut p, &[b"RESTORE", key.as_bytes(), b"0", &from_redis]);
        assert_eq!(ok, b"+OK\r\n", "{key}: {}", String::from_utf8_lossy(&ok));
        assert_eq!(
            value(&mut p, key),
            value(&mut r, key),
            "{key} restored in tierkv"
        );

        let from_tierkv = bulk(&raw(&mut p, &[b"DUMP", key.as_bytes()]));
        let copy = format!("{key}_back");
        let ok = raw(&mut r, &[b"RESTORE", copy.as_bytes(), b"0", &from_tierkv]);
        assert_eq!(ok, b"+OK\r\n", "{key}: {}", String::from_utf8_lossy(&ok));
        assert_eq!(
            value(&mut r, &copy),
            value(&mut r, key),
            "{key} restored in Redis"
        );
    }
}

#[test]
fn restore_errors_and_options_match_redis() {
    let Some(redis) = test_support::redis::start() else {
        return;
    };
    let env = Env::start(4);
    let mut r = Client::connect(redis.addr());
    let mut p = env.client();
    r.cmd("SET src value");
    let payload = bulk(&raw(&mut r, &[b"DUMP", b"src"]));
    let mut corrupt = payload.clone();
    let n = corrupt.len();
    corrupt[n - 1] ^= 1;
    let mut later = payload.clone();
    later[n - 10] = 99; // RDB version 99
    let cases: Vec<Vec<&[u8]>> = vec![
        vec![b"RESTORE", b"k1", b"0", &payload],
        vec![b"RESTORE", b"k1", b"0", &payload],
        vec![b"RESTORE", b"k1", b"0", &payload, b"REPLACE"],
        vec![b"RESTORE", b"k1", b"-5", &payload],
        vec![b"RESTORE", b"k2", b"-5", &payload],
        vec![b"RESTORE", b"k2", b"x", &payload],
        vec![b"RESTORE", b"k2", b"0", &corrupt],
        vec![b"RESTORE", b"k1", b"0", &corrupt],
        vec![b"RESTORE", b"k2", b"0", &later],
        vec![b"RESTORE", b"k2", b"0", b"short"],
        vec![b"RESTORE", b"k2", b"0", &payload, b"FOO"],
        vec![b"RESTORE", b"k2", b"0", &payload, b"IDLETIME", b"-1"],
        vec![b"RESTORE", b"k2", b"0", &payload, b"FREQ", b"256"],
        vec![
            b"RESTORE",
            b"k2",
            b"0",
            &payload,
            b"FREQ",
            b"3",
            b"IDLETIME",
            b"1",
        ],
        vec![b"RESTORE", b"k3", b"100000", &payload],
        vec![b"RESTORE", b"k4", b"1", &payload, b"ABSTTL"],
        vec![b"EXISTS", b"k4"],
        vec![b"RESTORE", b"k1", b"1", &payload, b"ABSTTL", b"REPLACE"],
        vec![b"EXISTS", b"k1"],
        vec![b"DUMP", b"nokey"],
    ];
    for args in &cases {
        let want = raw(&mut r, args);
        let got = raw(&mut p, args);
        assert_eq!(
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(&want),
            "{:?}",
            String::from_utf8_lossy(args[0])
        );
    }
    let ttl = p.cmd("PTTL k3");
    assert!(ttl.starts_with(':') && !ttl.starts_with(":-"), "{ttl}");
}
