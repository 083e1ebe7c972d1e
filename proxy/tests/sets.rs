//! Set commands (and HRANDFIELD) through the proxy on the fake cluster: one-key commands,
//! the multi-key ones with their keys in one range (one atomic operation) and across
//! ranges (read, compute, write), RESP3 set replies, WRONGTYPE, and SSCAN cursors.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;

use common::{Client, Env};

/// A parsed reply: enough of RESP2/RESP3 for these tests.
#[derive(Debug, Clone, PartialEq)]
enum R {
    Simple(String),
    Err(String),
    Int(i64),
    Bulk(Vec<u8>),
    Nil,
    /// An array (`*`), with its type marker kept apart from a set (`~`).
    Array(Vec<R>),
    Set(Vec<R>),
}

fn items(n: usize, mut rest: &[u8]) -> (Vec<R>, &[u8]) {
    let mut v = Vec::new();
    for _ in 0..n {
        let (r, more) = parse(rest);
        v.push(r);
        rest = more;
    }
    (v, rest)
}

fn parse(buf: &[u8]) -> (R, &[u8]) {
    let nl = buf.iter().position(|&b| b == b'\n').unwrap();
    let line = std::str::from_utf8(&buf[1..nl - 1]).unwrap();
    let rest = &buf[nl + 1..];
    match buf[0] {
        b'+' => (R::Simple(line.into()), rest),
        b'-' => (R::Err(line.into()), rest),
        b':' => (R::Int(line.parse().unwrap()), rest),
        b'_' => (R::Nil, rest),
        b'$' if line == "-1" => (R::Nil, rest),
        b'$' => {
            let n: usize = line.parse().unwrap();
            (R::Bulk(rest[..n].to_vec()), &rest[n + 2..])
        }
        b'*' if line == "-1" => (R::Nil, rest),
        b'*' => {
            let (v, rest) = items(line.parse().unwrap(), rest);
            (R::Array(v), rest)
        }
        b'~' => {
            let (v, rest) = items(line.parse().unwrap(), rest);
            (R::Set(v), rest)
        }
        b'%' => {
            let (v, rest) = items(2 * line.parse::<usize>().unwrap(), rest);
            (R::Array(v), rest)
        }
        other => panic!("unknown reply type {other}"),
    }
}

fn run(c: &mut Client, line: &str) -> R {
    let args: Vec<&[u8]> = line.split(' ').map(str::as_bytes).collect();
    c.send(&common::multibulk(&args));
    let raw = c.read_reply().unwrap();
    parse(&raw).0
}

/// The members of an array or set reply, sorted.
fn members(r: &R) -> Vec<String> {
    let items = match r {
        R::Array(v) | R::Set(v) => v,
        other => panic!("not a collection: {other:?}"),
    };
    let mut out: Vec<String> = items
        .iter()
        .map(|i| match i {
            R::Bulk(b) => String::from_utf8(b.clone()).unwrap(),
            other => panic!("not a bulk: {other:?}"),
        })
        .collect();
    out.sort();
    out
}

fn sorted(items: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = items.iter().map(|s| s.to_string()).collect();
    v.sort();
    v
}

const WRONGTYPE: &str = "WRONGTYPE Operation against a key holding the wrong kind of value";

/// Keys named `{prefix}{n}` whose slots fall in distinct ranges of a 4-range cluster (the
/// ranges split the 16384 slots evenly) — or, with `same`, in the same range but different
/// slots.
fn keys(prefix: &str, n: usize, same: bool) -> Vec<String> {
    let range = |k: &str| proxy::keyspace::slot(k.as_bytes()) / 4096;
    let mut out: Vec<String> = Vec::new();
    for i in 0.. {
        let k = format!("{prefix}{i}");
        let ok = match out.first() {
            None => true,
            Some(first) if same => {
                range(&k) == range(first)
                    && out.iter().all(|o| {
                        proxy::keyspace::slot(o.as_bytes()) != proxy::keyspace::slot(k.as_bytes())
                    })
            }
            Some(_) => out.iter().all(|o| range(o) != range(&k)),
        };
        if ok {
            out.push(k);
        }
        if out.len() == n {
            break;
        }
    }
    out
}

#[test]
fn one_key_commands_answer_as_redis() {
    let env = Env::start(4);
    let mut c = env.client();
    assert_eq!(run(&mut c, "SADD s a b c a"), R::Int(3));
    assert_eq!(run(&mut c, "SADD s c d"), R::Int(1));
    assert_eq!(run(&mut c, "SCARD s"), R::Int(4));
    assert_eq!(run(&mut c, "SISMEMBER s a"), R::Int(1));
    assert_eq!(run(&mut c, "SISMEMBER s z"), R::Int(0));
    assert_eq!(
        run(&mut c, "SMISMEMBER s a z d"),
        R::Array(vec![R::Int(1), R::Int(0), R::Int(1)])
    );
    assert_eq!(
        members(&run(&mut c, "SMEMBERS s")),
        sorted(&["a", "b", "c", "d"])
    );
    assert_eq!(run(&mut c, "SREM s a z"), R::Int(1));
    assert_eq!(run(&mut c, "SREM s b c d"), R::Int(3));
    assert_eq!(
        run(&mut c, "EXISTS s"),
        R::Int(0),
        "an emptied set is deleted"
    );
    assert_eq!(run(&mut c, "SPOP s"), R::Nil);
    assert_eq!(run(&mut c, "SPOP s 3"), R::Array(vec![]));
    assert_eq!(run(&mut c, "SRANDMEMBER s"), R::Nil);
    assert_eq!(run(&mut c, "SRANDMEMBER s -3"), R::Array(vec![]));
    run(&mut c, "SADD s x y z");
    let popped = members(&run(&mut c, "SPOP s 2"));
    assert_eq!(popped.len(), 2);
    assert_eq!(run(&mut c, "SCARD s"), R::Int(1));
    let left = members(&run(&mut c, "SMEMBERS s"));
    let all: BTreeSet<String> = popped.iter().chain(&left).cloned().collect();
    assert_eq!(all.len(), 3);
    assert_eq!(
        members(&run(&mut c, "SRANDMEMBER s -4")),
        vec![left[0].clone(); 4]
    );
    assert_eq!(
        run(&mut c, "SPOP s -1"),
        R::Err("ERR value is out of range, must be positive".into())
    );
    assert_eq!(run(&mut c, "SPOP s 1 2"), R::Err("ERR syntax error".into()));
}

/// SINTER/SUNION/SDIFF, their STORE forms, SINTERCARD and SMOVE over `k` (4 keys).
fn check_multi_key(c: &mut Client, k: &[String]) {
    let (a, b, d, e) = (&k[0], &k[1], &k[2], &k[3]);
    run(c, &format!("SADD {a} 1 2 3 4"));
    run(c, &format!("SADD {b} 3 4 5"));
    let q = |c: &mut Client, cmd: &str| members(&run(c, cmd));
    assert_eq!(q(c, &format!("SINTER {a} {b}")), sorted(&["3", "4"]));
    assert_eq!(
        q(c, &format!("SUNION {a} {b} {e}")),
        sorted(&["1", "2", "3", "4", "5"])
    );
    assert_eq!(q(c, &format!("SDIFF {a} {b}")), sorted(&["1", "2"]));
    assert_eq!(q(c, &format!("SINTER {a} {e}")), Vec::<String>::new());
    assert_eq!(run(c, &format!("SINTERCARD 2 {a} {b}")), R::Int(2));
    assert_eq!(run(c, &format!("SINTERCARD 2 {a} {b} LIMIT 1")), R::Int(1));
    assert_eq!(run(c, &format!("SINTERSTORE {d} {a} {b}")), R::Int(2));
    assert_eq!(q(c, &format!("SMEMBERS {d}")), sorted(&["3", "4"]));
    assert_eq!(run(c, &format!("SUNIONSTORE {d} {a} {b}")), R::Int(5));
    assert_eq!(run(c, &format!("SCARD {d}")), R::Int(5));
    assert_eq!(run(c, &format!("SDIFFSTORE {d} {a} {b}")), R::Int(2));
    assert_eq!(q(c, &format!("SMEMBERS {d}")), sorted(&["1", "2"]));
    // An empty result deletes the destination, whatever it held.
    run(c, &format!("EXPIRE {d} 1000"));
    assert_eq!(run(c, &format!("SINTERSTORE {d} {a} {e}")), R::Int(0));
    assert_eq!(run(c, &format!("EXISTS {d}")), R::Int(0));
    run(c, &format!("SET {d} str"));
    assert_eq!(run(c, &format!("SUNIONSTORE {d} {b}")), R::Int(3));
    assert_eq!(run(c, &format!("TTL {d}")), R::Int(-1));
    // SMOVE: into an existing set, into a new one, a missing member, a missing source.
    assert_eq!(run(c, &format!("SMOVE {a} {b} 1")), R::Int(1));
    assert_eq!(
        q(c, &format!("SMEMBERS {b}")),
        sorted(&["1", "3", "4", "5"])
    );
    assert_eq!(run(c, &format!("SMOVE {a} {e} 2")), R::Int(1));
    assert_eq!(q(c, &format!("SMEMBERS {e}")), sorted(&["2"]));
    assert_eq!(run(c, &format!("SMOVE {a} {e} 9")), R::Int(0));
    assert_eq!(run(c, &format!("SMOVE nosuch{a} {e} 2")), R::Int(0));
    assert_eq!(q(c, &format!("SMEMBERS {a}")), sorted(&["3", "4"]));
    // WRONGTYPE on any key, but an absent SMOVE source answers 0 first.
    run(c, &format!("SET {d} str"));
    for cmd in [
        format!("SINTER {a} {d}"),
        format!("SUNION {d} {a}"),
        format!("SDIFF {e} {d}"),
        format!("SINTERSTORE {e} {a} {d}"),
        format!("SINTERCARD 2 {a} {d}"),
        format!("SMOVE {a} {d} 3"),
        format!("SMOVE {d} {a} 3"),
    ] {
        assert_eq!(run(c, &cmd), R::Err(WRONGTYPE.into()), "{cmd}");
    }
    assert_eq!(run(c, &format!("SMOVE nosuch {d} 3")), R::Int(0));
    assert_eq!(
        q(c, &format!("SMEMBERS {e}")),
        sorted(&["2"]),
        "nothing stored"
    );
}

#[test]
fn multi_key_commands_with_keys_in_one_range() {
    let env = Env::start(4);
    let mut c = env.client();
    check_multi_key(&mut c, &keys("one", 4, true));
    let tagged: Vec<String> = (0..4).map(|i| format!("{{t}}k{i}")).collect();
    check_multi_key(&mut c, &tagged);
}

#[test]
fn multi_key_commands_with_keys_across_ranges() {
    let env = Env::start(4);
    let mut c = env.client();
    check_multi_key(&mut c, &keys("far", 4, false));
}

#[test]
fn resp3_replies_sets_where_redis_does() {
    let env = Env::start(2);
    let mut c = env.client();
    run(&mut c, "HELLO 3");
    run(&mut c, "SADD {s}a x y");
    run(&mut c, "SADD {s}b y");
    let far = keys("r3", 2, false);
    run(&mut c, &format!("SADD {} y", far[0]));
    for cmd in [
        "SMEMBERS {s}a".to_string(),
        "SMEMBERS nokey".into(),
        "SINTER {s}a {s}b".into(),
        "SUNION {s}a {s}b".into(),
        "SDIFF {s}a {s}b".into(),
        format!("SUNION {{s}}a {}", far[0]),
        "SPOP nokey 1".into(),
        "SPOP {s}a 0".into(),
    ] {
        assert!(matches!(run(&mut c, &cmd), R::Set(_)), "{cmd}");
    }
    assert!(matches!(run(&mut c, "SRANDMEMBER {s}a 2"), R::Array(_)));
    assert!(matches!(run(&mut c, "SMISMEMBER {s}a x"), R::Array(_)));
    assert!(matches!(run(&mut c, "SPOP {s}b 5"), R::Set(v) if v.len() == 1));
    run(&mut c, "HSET h f v g w");
    let R::Array(pairs) = run(&mut c, "HRANDFIELD h -3 WITHVALUES") else {
        panic!()
    };
    assert_eq!(pairs.len(), 3);
    for p in pairs {
        let R::Array(fv) = p else { panic!("{p:?}") };
        assert!(
            matches!(&fv[..], [R::Bulk(f), R::Bulk(v)] if (f, v) == (&b"f".to_vec(), &b"v".to_vec()) || (f, v) == (&b"g".to_vec(), &b"w".to_vec()))
        );
    }
    run(&mut c, "HELLO 2");
    let R::Array(flat) = run(&mut c, "HRANDFIELD h 2 WITHVALUES") else {
        panic!()
    };
    assert_eq!(flat.len(), 4);
    assert!(matches!(run(&mut c, "SMEMBERS {s}a"), R::Array(_)));
}

#[test]
fn hrandfield_answers_as_redis() {
    let env = Env::start(2);
    let mut c = env.client();
    run(&mut c, "HSET h a 1 b 2 c 3");
    let R::Bulk(f) = run(&mut c, "HRANDFIELD h") else {
        panic!()
    };
    assert!([&b"a"[..], b"b", b"c"].contains(&&f[..]));
    assert_eq!(
        members(&run(&mut c, "HRANDFIELD h 10")),
        sorted(&["a", "b", "c"])
    );
    assert_eq!(members(&run(&mut c, "HRANDFIELD h 2")).len(), 2);
    assert_eq!(members(&run(&mut c, "HRANDFIELD h -7")).len(), 7);
    assert_eq!(
        members(&run(&mut c, "HRANDFIELD h 3 WITHVALUES")),
        sorted(&["1", "2", "3", "a", "b", "c"])
    );
    assert_eq!(run(&mut c, "HRANDFIELD nokey"), R::Nil);
    assert_eq!(run(&mut c, "HRANDFIELD nokey 2"), R::Array(vec![]));
    assert_eq!(
        run(&mut c, "HRANDFIELD h 1 foo"),
        R::Err("ERR syntax error".into())
    );
    run(&mut c, "SADD s x");
    assert_eq!(run(&mut c, "HRANDFIELD s"), R::Err(WRONGTYPE.into()));
}

#[test]
fn wrongtype_for_every_one_key_set_command() {
    let env = Env::start(2);
    let mut c = env.client();
    run(&mut c, "SET str v");
    for cmd in [
        "SADD str a",
        "SREM str a",
        "SCARD str",
        "SMEMBERS str",
        "SISMEMBER str a",
        "SMISMEMBER str a",
        "SPOP str",
        "SPOP str 2",
        "SRANDMEMBER str",
        "SRANDMEMBER str -2",
        "SSCAN str 0",
    ] {
        assert_eq!(run(&mut c, cmd), R::Err(WRONGTYPE.into()), "{cmd}");
    }
}

#[test]
fn sscan_visits_every_member_with_small_counts_and_match() {
    let env = Env::start(2);
    let mut c = env.client();
    let mut all = BTreeSet::new();
    for i in 0..300 {
        // Many members share their first 8 bytes ("member:0"), some are short.
        let m = if i % 3 == 0 {
            format!("{i}")
        } else {
            format!("member:{i:04}")
        };
        run(&mut c, &format!("SADD big {m}"));
        all.insert(m);
    }
    for (count, pattern) in [(1, None), (7, None), (50, Some("member:01*"))] {
        let mut cursor = "0".to_string();
        let mut seen = BTreeSet::new();
        let mut steps = 0;
        loop {
            let cmd = match pattern {
                Some(p) => format!("SSCAN big {cursor} COUNT {count} MATCH {p}"),
                None => format!("SSCAN big {cursor} COUNT {count}"),
            };
            let R::Array(parts) = run(&mut c, &cmd) else {
                panic!()
            };
            let R::Bulk(next) = &parts[0] else { panic!() };
            seen.extend(members(&parts[1]));
            cursor = String::from_utf8(next.clone()).unwrap();
            steps += 1;
            if cursor == "0" {
                break;
            }
        }
        let want: BTreeSet<String> = all
            .iter()
            .filter(|m| pattern.is_none() || m.starts_with("member:01"))
            .cloned()
            .collect();
        assert_eq!(seen, want, "count {count}");
        assert!(steps > 1, "a small COUNT takes several steps");
    }
    assert_eq!(
        run(&mut c, "SSCAN big x"),
        R::Err("ERR invalid cursor".into())
    );
    assert_eq!(
        run(&mut c, "SSCAN big 0 COUNT 0"),
        R::Err("ERR syntax error".into())
    );
}
