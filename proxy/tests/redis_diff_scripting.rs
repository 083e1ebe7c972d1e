//! Scripting (`EVAL`, `EVALSHA`, `SCRIPT`) against a real `redis-server`: the same commands go
//! to Redis and to the proxy (over four ranges; a script's keys share a `{hash tag}`), and
//! every reply must be identical — results of every type, RESP2 and RESP3, errors raised by
//! `redis.call` with the script's SHA in their text, `pcall`, read-only scripts, the script
//! cache, argument errors, and the recipes applications use (redis-py's lock release, a
//! compare-and-set, a rate limiter). Then Redis Cluster's rules, on their own: keys of the
//! script's slot but not in `KEYS`, another slot, keys of several ranges; and atomicity under
//! concurrent clients. Skipped, with a
//! printed reason, when `redis-server` is not installed (a failure under `CI=true`).
#![allow(clippy::unwrap_used)]

mod common;

use common::{Client, Env};

const LOCK_RELEASE: &str = "if redis.call('get', KEYS[1]) == ARGV[1] then \
     return redis.call('del', KEYS[1]) else return 0 end";
const RATE_LIMIT: &str = "local n = redis.call('incr', KEYS[1]) \
     if n == 1 then redis.call('expire', KEYS[1], ARGV[1]) end \
     if n > tonumber(ARGV[2]) then return 0 end return n";

/// Each step: the arguments of one command.
fn steps() -> Vec<Vec<&'static str>> {
    vec![
        vec!["EVAL", "return 1", "0"],
        vec!["EVAL", "return 'hello'", "0"],
        vec!["EVAL", "return {1, 2, {3, 'x'}, false, 5}", "0"],
        vec!["EVAL", "return {ok = 'FINE'}", "0"],
        vec!["EVAL", "return {err = 'MYERR bad thing'}", "0"],
        vec!["EVAL", "return redis.status_reply('DONE')", "0"],
        vec!["EVAL", "return redis.error_reply('NOPE no')", "0"],
        vec!["EVAL", "return 3.99", "0"],
        vec!["EVAL", "return true", "0"],
        vec!["EVAL", "return false", "0"],
        vec!["EVAL", "return nil", "0"],
        vec!["EVAL", "return redis.sha1hex('')", "0"],
        vec![
            "EVAL",
            "return {KEYS[1], KEYS[2], ARGV[1], ARGV[2]}",
            "2",
            "{s}a",
            "{s}b",
            "x",
            "y",
        ],
        vec![
            "EVAL",
            "return redis.call('set', KEYS[1], ARGV[1])",
            "1",
            "{s}a",
            "v1",
        ],
        vec!["EVAL", "return redis.call('get', KEYS[1])", "1", "{s}a"],
        vec!["EVAL", "return redis.call('get', KEYS[1])", "1", "{s}none"],
        vec!["EVAL", "return redis.call('incr', KEYS[1])", "1", "{s}a"],
        vec!["EVAL", "return redis.pcall('incr', KEYS[1])", "1", "{s}a"],
        vec![
            "EVAL",
            "local r = redis.pcall('incr', KEYS[1]) return r['err']",
            "1",
            "{s}a",
        ],
        vec![
            "EVAL",
            "return redis.call('incrby', KEYS[1], 5)",
            "1",
            "{s}n",
        ],
        vec![
            "EVAL",
            "return redis.call('incrbyfloat', KEYS[1], '1.5')",
            "1",
            "{s}n",
        ],
        vec![
            "EVAL",
            "redis.call('hset', KEYS[1], 'f1', 'v1', 'f2', 'v2') return redis.call('hgetall', KEYS[1])",
            "1",
            "{s}h",
        ],
        vec!["EVAL", "return redis.call('type', KEYS[1])", "1", "{s}h"],
        vec![
            "EVAL",
            "return redis.call('hget', KEYS[1], 'nofield')",
            "1",
            "{s}h",
        ],
        vec![
            "EVAL",
            "redis.call('rpush', KEYS[1], 'a', 'b', 'c') return redis.call('lrange', KEYS[1], 0, -1)",
            "1",
            "{s}l",
        ],
        vec![
            "EVAL",
            "redis.call('zadd', KEYS[1], 1.5, 'm', 2, 'n') return redis.call('zrange', KEYS[1], 0, -1, 'withscores')",
            "1",
            "{s}z",
        ],
        vec![
            "EVAL",
            "return redis.call('zscore', KEYS[1], 'm')",
            "1",
            "{s}z",
        ],
        vec![
            "EVAL",
            "return redis.call('sadd', KEYS[1], 'x', 'y', 'x')",
            "1",
            "{s}set",
        ],
        vec![
            "EVAL",
            "return redis.call('smembers', KEYS[1])",
            "1",
            "{s}none",
        ],
        vec![
            "EVAL",
            "return redis.call('del', KEYS[1], KEYS[2])",
            "2",
            "{s}a",
            "{s}l",
        ],
        vec![
            "EVAL",
            "return redis.call('exists', KEYS[1], KEYS[2])",
            "2",
            "{s}a",
            "{s}h",
        ],
        vec!["EVAL", "return redis.call('nosuch')", "0"],
        vec!["EVAL", "return redis.call('get')", "0"],
        vec!["EVAL", "return redis.call('multi')", "0"],
        vec!["EVAL", "return redis.call('ping')", "0"],
        vec!["EVAL", "return redis.call('echo', 'hi')", "0"],
        vec!["EVAL", "return redis.call()", "0"],
        vec!["EVAL", "return redis.call({})", "0"],
        vec!["EVAL", "x = 1", "0"],
        vec!["EVAL", "return y", "0"],
        vec!["EVAL", "return (", "0"],
        vec!["EVAL", "return 1", "-1"],
        vec!["EVAL", "return 1", "2", "a"],
        vec!["EVAL", "return 1", "x"],
        vec![
            "EVAL_RO",
            "return redis.call('set', KEYS[1], 1)",
            "1",
            "{s}ro",
        ],
        vec!["EVAL_RO", "return redis.call('get', KEYS[1])", "1", "{s}n"],
        vec![
            "EVAL",
            "#!lua flags=no-writes\nreturn redis.call('set', KEYS[1], 1)",
            "1",
            "{s}ro",
        ],
        vec!["EVAL_RO", "#!lua\nreturn 1", "0"],
        vec!["EVAL", "#!lua flags=bogus\nreturn 1", "0"],
        vec!["EVAL", "#!python\nreturn 1", "0"],
        vec![
            "EVAL",
            "#!lua\nreturn redis.call('set', KEYS[1], 'sb')",
            "1",
            "{s}sb",
        ],
        vec!["SCRIPT", "LOAD", "return 'loaded'"],
        vec!["EVALSHA", "b534286061d4b9e4026607613b95c06c06015ae8", "0"],
        vec!["EVALSHA", "nosuchsha", "0"],
        vec!["SCRIPT", "LOAD", "return ("],
        vec![
            "SCRIPT",
            "EXISTS",
            "b534286061d4b9e4026607613b95c06c06015ae8",
            "ffff",
        ],
        vec!["SCRIPT", "FLUSH", "bad"],
        vec!["SCRIPT", "KILL"],
        vec!["SCRIPT", "NOSUCH"],
        vec!["SCRIPT", "LOAD"],
        vec!["SET", "{lock}k", "token1"],
        vec!["EVAL", LOCK_RELEASE, "1", "{lock}k", "other"],
        vec!["EVAL", LOCK_RELEASE, "1", "{lock}k", "token1"],
        vec!["GET", "{lock}k"],
        vec!["EVAL", RATE_LIMIT, "1", "{rl}ip", "100", "2"],
        vec!["EVAL", RATE_LIMIT, "1", "{rl}ip", "100", "2"],
        vec!["EVAL", RATE_LIMIT, "1", "{rl}ip", "100", "2"],
        vec!["TTL", "{rl}ip"],
        vec!["MULTI"],
        vec!["EVAL", "return redis.call('incr', KEYS[1])", "1", "{tx}c"],
        vec!["INCR", "{tx}c"],
        vec!["EXEC"],
        vec!["SCRIPT", "FLUSH"],
        vec!["EVALSHA", "b534286061d4b9e4026607613b95c06c06015ae8", "0"],
    ]
}

/// The same steps under RESP3 (what differs: maps, doubles, booleans).
fn resp3_steps() -> Vec<Vec<&'static str>> {
    vec![
        vec!["HELLO", "3"],
        vec!["HSET", "{r}h", "f", "v"],
        vec!["EVAL", "return redis.call('hgetall', KEYS[1])", "1", "{r}h"],
        vec![
            "EVAL",
            "redis.setresp(3) return redis.call('hgetall', KEYS[1])",
            "1",
            "{r}h",
        ],
        vec!["ZADD", "{r}z", "2.5", "m"],
        vec![
            "EVAL",
            "redis.setresp(3) return redis.call('zscore', KEYS[1], 'm')",
            "1",
            "{r}z",
        ],
        vec![
            "EVAL",
            "return redis.call('zscore', KEYS[1], 'm')",
            "1",
            "{r}z",
        ],
        vec!["EVAL", "return {double = 3.5}", "0"],
        vec!["EVAL", "return {map = {a = 1}}", "0"],
        vec!["EVAL", "return true", "0"],
        vec!["EVAL", "return false", "0"],
        vec!["EVAL", "return nil", "0"],
    ]
}

fn diff(redis: &mut Client, proxy: &mut Client, steps: &[Vec<&str>]) -> Vec<String> {
    let mut diffs = Vec::new();
    for step in steps {
        let args: Vec<&[u8]> = step.iter().map(|a| a.as_bytes()).collect();
        let want = redis.cmd_args(&args);
        let got = proxy.cmd_args(&args);
        // HELLO's reply names the server and its version: not compared.
        if step[0] != "HELLO" && want != got {
            diffs.push(format!("{step:?}\n  redis: {want:?}\n  proxy: {got:?}"));
        }
    }
    diffs
}

#[test]
fn scripts_reply_as_redis_server_does() {
    let Some(redis) = test_support::redis::start() else {
        return;
    };
    let env = Env::start(4);
    let mut r = Client::connect(redis.addr());
    let mut p = env.client();
    let mut diffs = diff(&mut r, &mut p, &steps());
    let mut r3 = Client::connect(redis.addr());
    let mut p3 = env.client();
    diffs.extend(diff(&mut r3, &mut p3, &resp3_steps()));
    assert!(
        diffs.is_empty(),
        "{} differences:\n{}",
        diffs.len(),
        diffs.join("\n")
    );
}

#[test]
fn a_script_may_touch_its_keys_and_keys_of_its_slot_only() {
    let env = Env::start(4);
    let mut c = env.client();
    // A key of the declared key's slot (same hash tag) need not be declared (BullMQ's way).
    let reply = c.cmd_args(&[
        b"EVAL",
        b"redis.call('set', '{q}:job:' .. ARGV[1], 'x') return redis.call('get', '{q}:job:7')",
        b"1",
        b"{q}:wait",
        b"7",
    ]);
    assert_eq!(reply, "$1\r\nx\r\n");
    // Another slot is refused, with Redis Cluster's error, and nothing of it is written.
    let reply = c.cmd_args(&[
        b"EVAL",
        b"return redis.call('set', 'elsewhere', 1)",
        b"1",
        b"{q}:wait",
    ]);
    assert!(
        reply.starts_with("-ERR Script attempted to access keys that do not hash to the same slot"),
        "{reply:?}"
    );
    assert_eq!(c.cmd("EXISTS elsewhere"), ":0\r\n");
    // Without keys, the first key touched routes the script.
    let reply = c.cmd_args(&[
        b"EVAL",
        b"redis.call('set', 'nokeys', 'v') return redis.call('get', 'nokeys')",
        b"0",
    ]);
    assert_eq!(reply, "$1\r\nv\r\n");
    assert_eq!(c.cmd("GET nokeys"), "$1\r\nv\r\n");
}

#[test]
fn a_script_whose_keys_span_ranges_is_refused_and_changes_nothing() {
    let env = Env::start(4);
    let mut c = env.client();
    // Keys without a common hash tag, until two of them land in different ranges.
    let table = env.cluster.ranges();
    assert!(table.len() >= 2);
    let mut keys = Vec::new();
    for i in 0..64 {
        keys.push(format!("k{i}"));
    }
    let script = "for i, k in ipairs(KEYS) do redis.call('set', k, 1) end return #KEYS";
    let mut args: Vec<&[u8]> = vec![b"EVAL", script.as_bytes()];
    let n = keys.len().to_string();
    args.push(n.as_bytes());
    args.extend(keys.iter().map(|k| k.as_bytes()));
    let reply = c.cmd_args(&args);
    assert!(reply.starts_with("-CROSSSLOT"), "{reply:?}");
    for k in &keys {
        assert_eq!(c.cmd(&format!("EXISTS {k}")), ":0\r\n", "{k}");
    }
}

#[test]
fn scripts_are_atomic_under_concurrent_clients() {
    // Each script reads a counter and writes it back plus one: without atomicity, concurrent
    // runs would lose increments.
    let env = Env::start(2);
    let script = "local v = tonumber(redis.call('get', KEYS[1]) or '0') \
                  redis.call('set', KEYS[1], v + 1) return v + 1";
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let mut c = env.client();
            std::thread::spawn(move || {
                for _ in 0..100 {
                    let r = c.cmd_args(&[b"EVAL", script.as_bytes(), b"1", b"counter"]);
                    assert!(r.starts_with(':'), "{r:?}");
                }
            })
        })
        .collect();
    threads.into_iter().for_each(|t| t.join().unwrap());
    let mut c = env.client();
    assert_eq!(c.cmd("GET counter"), "$3\r\n400\r\n");
}
