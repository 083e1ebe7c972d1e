//! Differential test of the set commands against a real `redis-server`: thousands of random
//! commands over a few keys (some sharing a `{hash tag}`, some in different ranges) and a
//! small alphabet of members, in RESP2 and RESP3. Replies of unordered commands are compared
//! sorted; SPOP and SRANDMEMBER by their counts and membership (the popped members are then
//! put back on Redis's side so both hold the same sets). Skipped when `redis-server` is not
//! installed, except under `CI=true`, where that fails.
#![allow(clippy::unwrap_used)]

mod common;

use common::{Client, Env};

/// A parsed reply; arrays and sets keep their type marker.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum R {
    Simple(String),
    Err(String),
    Int(i64),
    Bulk(Vec<u8>),
    Nil,
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
        b'$' | b'*' if line == "-1" => (R::Nil, rest),
        b'$' => {
            let n: usize = line.parse().unwrap();
            (R::Bulk(rest[..n].to_vec()), &rest[n + 2..])
        }
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
    parse(&c.read_reply().unwrap()).0
}

/// The reply with its collections sorted (at any depth: SSCAN nests one).
fn sorted(r: R) -> R {
    match r {
        R::Array(v) => {
            let mut v: Vec<R> = v.into_iter().map(sorted).collect();
            v.sort();
            R::Array(v)
        }
        R::Set(v) => {
            let mut v: Vec<R> = v.into_iter().map(sorted).collect();
            v.sort();
            R::Set(v)
        }
        other => other,
    }
}

fn bulks(r: &R) -> Vec<String> {
    match r {
        R::Array(v) | R::Set(v) => v.iter().flat_map(bulks).collect(),
        R::Bulk(b) => vec![String::from_utf8(b.clone()).unwrap()],
        _ => Vec::new(),
    }
}

/// A small deterministic generator (xorshift).
struct Gen(u64);

impl Gen {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
    fn pick<'a>(&mut self, of: &[&'a str]) -> &'a str {
        of[self.below(of.len())]
    }
}

/// Keys: three sharing a hash tag (one range), three plain ones (different ranges of a
/// 4-range cluster, most likely), and a string.
const KEYS: &[&str] = &["{t}a", "{t}b", "{t}c", "ka", "kb", "kc", "str"];
const MEMBERS: &[&str] = &["1", "2", "3", "10", "-5", "x", "y", "zz", "a b"];

fn members(g: &mut Gen, min: usize) -> String {
    let n = min + g.below(4);
    (0..n)
        .map(|_| g.pick(MEMBERS).replace(' ', "_"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn keys(g: &mut Gen, min: usize) -> String {
    let n = min + g.below(3);
    (0..n).map(|_| g.pick(KEYS)).collect::<Vec<_>>().join(" ")
}

fn command(g: &mut Gen) -> String {
    let k = g.pick(KEYS);
    let m = g.pick(MEMBERS).replace(' ', "_");
    let counts = [
        "0",
        "1",
        "2",
        "5",
        "-1",
        "-3",
        "-20",
        "x",
        "9223372036854775807",
    ];
    let c = g.pick(&counts);
    match g.below(24) {
        0..=3 => format!("SADD {k} {}", members(g, 1)),
        4 => format!("SREM {k} {}", members(g, 1)),
        5 => format!("SCARD {k}"),
        6 => format!("SISMEMBER {k} {m}"),
        7 => format!("SMISMEMBER {k} {}", members(g, 1)),
        8 => format!("SMEMBERS {k}"),
        9 => format!("SPOP {k}"),
        10 => format!("SPOP {k} {c}"),
        11 => format!("SRANDMEMBER {k}"),
        12 => format!("SRANDMEMBER {k} {c}"),
        13 => format!("SMOVE {k} {} {m}", g.pick(KEYS)),
        14 => format!("SINTER {}", keys(g, 1)),
        15 => format!("SUNION {}", keys(g, 1)),
        16 => format!("SDIFF {}", keys(g, 1)),
        17 => format!("SINTERSTORE {k} {}", keys(g, 1)),
        18 => format!("SUNIONSTORE {k} {}", keys(g, 1)),
        19 => format!("SDIFFSTORE {k} {}", keys(g, 1)),
        20 => {
            let n = 1 + g.below(3);
            let ks: Vec<&str> = (0..n).map(|_| g.pick(KEYS)).collect();
            let limit = g.pick(&["", " LIMIT 0", " LIMIT 1", " LIMIT 2", " LIMIT -1"]);
            format!("SINTERCARD {n} {}{limit}", ks.join(" "))
        }
        21 => format!("SSCAN {k} 0 COUNT 100"),
        22 => g
            .pick(&[
                "SET str v",
                "DEL ka",
                "EXISTS {t}a kb",
                "TYPE kc",
                "DEL {t}b",
            ])
            .into(),
        _ => g
            .pick(&[
                "SPOP ka 1 2",
                "SRANDMEMBER ka 1 2",
                "SSCAN ka x",
                "SINTERCARD 0 ka",
            ])
            .into(),
    }
}

/// Checks a random reply by its rules, then makes Redis's sets equal to the proxy's.
fn random_reply(line: &str, want: &R, got: &R, redis: &mut Client) {
    let k = line.split(' ').nth(1).unwrap();
    let (w, g) = (bulks(want), bulks(got));
    match (want, got) {
        (R::Err(_), _) | (_, R::Err(_)) | (R::Nil, _) | (_, R::Nil) => {
            assert_eq!(want, got, "{line}");
            return;
        }
        (R::Bulk(_), R::Bulk(_)) | (R::Array(_), R::Array(_)) | (R::Set(_), R::Set(_)) => {}
        _ => panic!("{line}: redis {want:?}, proxy {got:?}"),
    }
    assert_eq!(w.len(), g.len(), "{line}: redis {want:?}, proxy {got:?}");
    if line.starts_with("SPOP") {
        // Redis's side popped `w`: give it back, and pop what the proxy popped.
        for m in &w {
            run(redis, &format!("SADD {k} {m}"));
        }
        for m in &g {
            assert_eq!(
                run(redis, &format!("SREM {k} {m}")),
                R::Int(1),
                "{line}: {m}"
            );
        }
    } else {
        for m in &g {
            assert_eq!(
                run(redis, &format!("SISMEMBER {k} {m}")),
                R::Int(1),
                "{line}: {m}"
            );
        }
    }
}

fn compare(redis: &mut Client, proxy: &mut Client, seed: u64, n: usize) -> Vec<String> {
    let mut g = Gen(seed);
    let mut diffs = Vec::new();
    for _ in 0..n {
        let line = command(&mut g);
        let want = run(redis, &line);
        let got = run(proxy, &line);
        if line.starts_with("SPOP") || line.starts_with("SRANDMEMBER") {
            random_reply(&line, &want, &got, redis);
            continue;
        }
        let unordered = ["SMEMBERS", "SINTER ", "SUNION", "SDIFF ", "SSCAN"];
        let (want, got) = if unordered.iter().any(|p| line.starts_with(p)) {
            (sorted(want), sorted(got))
        } else {
            (want, got)
        };
        if want != got {
            diffs.push(format!("{line:?}\n  redis: {want:?}\n  proxy: {got:?}"));
        }
    }
    // The states agree at the end.
    for k in KEYS {
        let line = format!("SMEMBERS {k}");
        let (want, got) = (sorted(run(redis, &line)), sorted(run(proxy, &line)));
        if want != got {
            diffs.push(format!("final {k}\n  redis: {want:?}\n  proxy: {got:?}"));
        }
    }
    diffs
}

#[test]
fn random_set_commands_reply_as_redis_server_in_resp2_and_resp3() {
    let Some(server) = test_support::redis::start() else {
        return;
    };
    let env = Env::start(4);
    let mut redis = Client::connect(server.addr());
    let mut proxy = env.client();
    let mut diffs = Vec::new();
    for (proto, seed) in [(2, 0x2545_f491_4f6c_dd1d_u64), (3, 0x9e37_79b9_7f4a_7c15)] {
        for c in [&mut redis, &mut proxy] {
            run(c, &format!("HELLO {proto}"));
            run(c, "FLUSHALL");
        }
        diffs.extend(compare(&mut redis, &mut proxy, seed, 3000));
    }
    assert!(
        diffs.is_empty(),
        "{} differences:\n{}",
        diffs.len(),
        diffs.join("\n")
    );
}
