//! End-to-end behaviour of the proxy over real sockets, in front of fake DS shards that run
//! ds-node's range state machine (see `common`).
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::io::Write;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{Client, Env, multibulk};

#[test]
fn proxy_keyspace_matches_ds_node() {
    for key in [&b"foo"[..], b"", b"{user}:1", b"\r\n\x00bin", &[0xff; 300]] {
        for db in proxy::keyspace::Db::all() {
            assert_eq!(
                proxy::keyspace::meta_key(db, key),
                ds_node::keyspace::meta_key(db, key)
            );
        }
        assert_eq!(proxy::keyspace::slot(key), ds_node::keyspace::slot(key));
    }
}

#[test]
fn inline_and_multibulk_commands_get_redis_replies() {
    let env = Env::start(1);
    let mut c = env.client();
    c.send(b"PING\r\n");
    assert_eq!(c.read_reply().unwrap(), b"+PONG\r\n");
    c.send(b"set k \"hello world\"\n");
    assert_eq!(c.read_reply().unwrap(), b"+OK\r\n");
    assert_eq!(c.cmd("GET k"), "$11\r\nhello world\r\n");
    assert_eq!(c.cmd("GET missing"), "$-1\r\n");
    // A binary key with CRLF inside.
    let key = b"a\r\nb\x00c";
    assert_eq!(c.cmd_args(&[b"SET", key, b"v\r\n"]), "+OK\r\n");
    assert_eq!(c.cmd_args(&[b"GET", key]), "$3\r\nv\r\n\r\n");
    assert_eq!(c.cmd("ECHO hi"), "$2\r\nhi\r\n");
    assert_eq!(c.cmd("SELECT 0"), "+OK\r\n");
    assert_eq!(c.cmd("SELECT 16"), "-ERR DB index is out of range\r\n");
    assert_eq!(c.cmd("SELECT 1"), "+OK\r\n");
    assert_eq!(c.cmd("GET k"), "$-1\r\n");
}

#[test]
fn pipelined_replies_come_back_in_order() {
    let env = Env::start(8);
    let mut c = env.client();
    let mut req = Vec::new();
    let mut want = Vec::new();
    for i in 0..300 {
        let k = format!("key:{}", i / 4);
        match i % 4 {
            0 => {
                req.extend(multibulk(&[b"SET", k.as_bytes(), i.to_string().as_bytes()]));
                want.push("+OK\r\n".to_string());
            }
            1 => {
                req.extend(multibulk(&[b"GET", k.as_bytes()]));
                let v = (i - 1).to_string();
                want.push(format!("${}\r\n{v}\r\n", v.len()));
            }
            2 => {
                req.extend(multibulk(&[b"PING", format!("p{i}").as_bytes()]));
                let v = format!("p{i}");
                want.push(format!("${}\r\n{v}\r\n", v.len()));
            }
            _ => {
                req.extend(multibulk(&[b"INCR", format!("ctr:{i}").as_bytes()]));
                want.push(":1\r\n".to_string());
            }
        }
    }
    c.send(&req);
    for (i, w) in want.iter().enumerate() {
        let got = String::from_utf8(c.read_reply().unwrap()).unwrap();
        assert_eq!(&got, w, "reply {i}");
    }
    // The pipeline went to the shards in few batches, not one request per command.
    assert!(env.shared.metrics.calls("get") >= 75);
}

#[test]
fn hello_3_answers_a_resp3_map_and_switches_protocol() {
    let env = Env::start(2);
    let mut c = env.client();
    assert_eq!(c.cmd("HSET h f v"), ":1\r\n");
    assert_eq!(c.cmd("HGETALL h"), "*2\r\n$1\r\nf\r\n$1\r\nv\r\n");
    let hello = c.cmd("HELLO 3");
    assert!(
        hello.starts_with(
            "%7\r\n$6\r\nserver\r\n$5\r\nredis\r\n$7\r\nversion\r\n$6\r\n7.0.15\r\n$5\r\nproto\r\n:3\r\n$2\r\nid\r\n:"
        ),
        "{hello}"
    );
    assert!(hello.ends_with(
        "$4\r\nmode\r\n$10\r\nstandalone\r\n$4\r\nrole\r\n$6\r\nmaster\r\n$7\r\nmodules\r\n*0\r\n"
    ));
    assert_eq!(c.cmd("HGETALL h"), "%1\r\n$1\r\nf\r\n$1\r\nv\r\n");
    assert_eq!(c.cmd("GET nothing"), "_\r\n");
    assert_eq!(
        c.cmd("HELLO 4"),
        "-NOPROTO unsupported protocol version\r\n"
    );
    assert!(c.cmd("HELLO 2 SETNAME me").starts_with("*14\r\n"));
    assert_eq!(c.cmd("CLIENT GETNAME"), "$2\r\nme\r\n");
    assert_eq!(c.cmd("GET nothing"), "$-1\r\n");
    // HELLO mid-pipeline switches exactly the replies after it.
    let mut req = multibulk(&[b"GET", b"x"]);
    req.extend(multibulk(&[b"HELLO", b"3"]));
    req.extend(multibulk(&[b"GET", b"x"]));
    c.send(&req);
    assert_eq!(c.read_reply().unwrap(), b"$-1\r\n");
    assert!(c.read_reply().unwrap().starts_with(b"%7\r\n"));
    assert_eq!(c.read_reply().unwrap(), b"_\r\n");
}

#[test]
fn client_handshakes_of_common_libraries_succeed() {
    let env = Env::start(1);
    let mut c = env.client();
    assert!(c.cmd("HELLO 3").starts_with("%7"));
    assert_eq!(c.cmd("CLIENT SETINFO LIB-NAME redis-py"), "+OK\r\n");
    assert_eq!(c.cmd("CLIENT SETINFO LIB-VER 8.0.0"), "+OK\r\n");
    assert!(
        c.cmd("CLIENT MAINT_NOTIFICATIONS on")
            .starts_with("-ERR unknown subcommand")
    );
    assert!(c.cmd("CLIENT ID").starts_with(':'));
    let docs = c.cmd("COMMAND DOCS");
    assert!(
        docs.starts_with('%') && docs.contains("$3\r\nget\r\n"),
        "{docs:.200}"
    );
    assert!(
        c.cmd("CONFIG GET save")
            .starts_with("%1\r\n$4\r\nsave\r\n$0\r\n")
    );
    let mut c2 = env.client();
    assert_eq!(
        c2.cmd("CONFIG GET appendonly"),
        "*2\r\n$10\r\nappendonly\r\n$2\r\nno\r\n"
    );
    assert!(c2.cmd("COMMAND COUNT").starts_with(':'));
    assert!(c2.cmd("INFO server").contains("redis_version:7.0.15"));
}

#[test]
fn noauth_until_the_client_authenticates() {
    let env = Env::start_with(1, |c| c.requirepass = Some("sekret".into()));
    let mut c = env.client();
    assert_eq!(c.cmd("GET k"), "-NOAUTH Authentication required.\r\n");
    // Arity is checked before authentication, as Redis does.
    assert_eq!(
        c.cmd("GET"),
        "-ERR wrong number of arguments for 'get' command\r\n"
    );
    assert_eq!(
        c.cmd("AUTH wrong"),
        "-WRONGPASS invalid username-password pair or user is disabled.\r\n"
    );
    assert!(c.cmd("HELLO 3").starts_with("-NOAUTH HELLO must be called"));
    assert_eq!(c.cmd("AUTH sekret"), "+OK\r\n");
    assert_eq!(c.cmd("SET k v"), "+OK\r\n");
    let mut c2 = env.client();
    assert!(c2.cmd("HELLO 3 AUTH default sekret").starts_with("%7"));
    assert_eq!(c2.cmd("GET k"), "$1\r\nv\r\n");
    // Without a password configured, AUTH is an error.
    let env2 = Env::start(1);
    let mut c3 = env2.client();
    assert!(
        c3.cmd("AUTH x")
            .starts_with("-ERR AUTH <password> called without any password")
    );
}

#[test]
fn unauthenticated_clients_get_the_strict_limits() {
    let env = Env::start_with(1, |c| c.requirepass = Some("pw".into()));
    let mut c = env.client();
    c.send(b"*1\r\n$20000\r\n");
    assert_eq!(
        c.read_reply().unwrap(),
        b"-ERR Protocol error: unauthenticated bulk length\r\n"
    );
    assert!(c.is_closed());
    let mut c = env.client();
    c.send(b"*11\r\n");
    assert_eq!(
        c.read_reply().unwrap(),
        b"-ERR Protocol error: unauthenticated multibulk length\r\n"
    );
    assert!(c.is_closed());
    // Once authenticated the normal limits apply.
    let mut c = env.client();
    assert_eq!(c.cmd("AUTH pw"), "+OK\r\n");
    let big = vec![b'x'; 20000];
    assert_eq!(c.cmd_args(&[b"SET", b"big", &big]), "+OK\r\n");
}

#[test]
fn bad_input_gets_protocol_errors_and_other_clients_are_unaffected() {
    let env = Env::start(1);
    let mut other = env.client();
    assert_eq!(other.cmd("SET a 1"), "+OK\r\n");
    let cases: &[(&[u8], &[u8])] = &[
        (
            b"*2147483648\r\n",
            b"-ERR Protocol error: invalid multibulk length\r\n",
        ),
        (
            b"*1\r\n$-5\r\n",
            b"-ERR Protocol error: invalid bulk length\r\n",
        ),
        (
            b"*1\r\n$abc\r\n",
            b"-ERR Protocol error: invalid bulk length\r\n",
        ),
        (
            b"*1\r\n$600000000\r\n",
            b"-ERR Protocol error: invalid bulk length\r\n",
        ),
        (
            b"*1\r\n+OK\r\n",
            b"-ERR Protocol error: expected '$', got '+'\r\n",
        ),
        (
            b"*1\r\n$3\r\nGETxx",
            b"-ERR Protocol error: bulk string not terminated by CRLF\r\n",
        ),
        (
            b"SET \"unbalanced\r\n",
            b"-ERR Protocol error: unbalanced quotes in request\r\n",
        ),
    ];
    for (input, want) in cases {
        let mut c = env.client();
        c.send(input);
        assert_eq!(
            String::from_utf8_lossy(&c.read_reply().unwrap()),
            String::from_utf8_lossy(want)
        );
        assert!(c.is_closed(), "{input:?} closes the connection");
    }
    // A million-argument header allocates nothing up front and waits for the arguments.
    let mut huge = env.client();
    huge.send(b"*1000000\r\n$3\r\nSET\r\n");
    // Inline request above 64 KiB.
    let mut c = env.client();
    c.send(&vec![b'a'; 70 * 1024]);
    assert_eq!(
        c.read_reply().unwrap(),
        b"-ERR Protocol error: too big inline request\r\n"
    );
    assert!(c.is_closed());
    // A client that sends half a frame and stalls harms no one.
    let mut half = env.client();
    half.send(b"*2\r\n$3\r\nGET\r\n$1");
    assert_eq!(other.cmd("GET a"), "$1\r\n1\r\n");
    half.send(b"\r\na\r\n");
    assert_eq!(half.read_reply().unwrap(), b"$1\r\n1\r\n");
    drop(huge);
}

#[test]
fn http_post_closes_the_connection() {
    let env = Env::start(1);
    let mut c = env.client();
    c.send(b"POST / HTTP/1.1\r\nHost: localhost\r\n\r\n");
    assert!(c.is_closed());
    let mut c = env.client();
    c.send(b"PING\r\nHost: evil\r\n");
    assert_eq!(c.read_reply().unwrap(), b"+PONG\r\n");
    assert!(c.is_closed());
}

#[test]
fn quit_replies_ok_and_closes() {
    let env = Env::start(1);
    let mut c = env.client();
    let mut req = multibulk(&[b"SET", b"q", b"1"]);
    req.extend(multibulk(&[b"QUIT"]));
    req.extend(multibulk(&[b"GET", b"q"]));
    c.send(&req);
    assert_eq!(c.read_reply().unwrap(), b"+OK\r\n");
    assert_eq!(c.read_reply().unwrap(), b"+OK\r\n");
    assert!(c.is_closed());
}

#[test]
fn a_client_whose_output_exceeds_the_limit_is_disconnected() {
    let env = Env::start_with(1, |c| c.max_output_bytes = 1024 * 1024);
    let mut c = env.client();
    let v = vec![b'v'; 100_000];
    assert_eq!(c.cmd_args(&[b"SET", b"big", &v]), "+OK\r\n");
    let mut req = Vec::new();
    for _ in 0..300 {
        req.extend(multibulk(&[b"GET", b"big"]));
    }
    c.send(&req);
    // Read nothing until the proxy has dropped the connection: a client that drains its
    // socket as fast as the proxy writes never accumulates output (30 MB of replies, far more
    // than the kernel buffers hold, so not reading must end in the disconnect).
    use std::sync::atomic::Ordering;
    use std::time::{Duration, Instant};
    let deadline = Instant::now() + Duration::from_secs(10);
    while env.shared.clients.load(Ordering::Acquire) > 0 {
        assert!(Instant::now() < deadline, "the proxy kept the client");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(c.is_closed());
    let mut other = env.client();
    assert_eq!(other.cmd("PING"), "+PONG\r\n");
}

#[test]
fn a_client_that_pipelines_without_reading_is_disconnected() {
    let env = Env::start_with(1, |c| c.output_stall = Duration::from_millis(300));
    let mut c = env.client();
    let v = vec![b'v'; 100_000];
    assert_eq!(c.cmd_args(&[b"SET", b"big", &v]), "+OK\r\n");
    let mut req = Vec::new();
    for _ in 0..400 {
        req.extend(multibulk(&[b"GET", b"big"]));
    }
    // Write without reading: the proxy's writes stall, then it hangs up.
    let mut w = c.stream.try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        let _ = w.write_all(&req);
    });
    std::thread::sleep(Duration::from_secs(2));
    assert!(c.is_closed());
    writer.join().unwrap();
    assert_eq!(env.client().cmd("PING"), "+PONG\r\n");
}

#[test]
fn error_strings_match_redis() {
    let env = Env::start(2);
    let mut c = env.client();
    c.cmd("SET s abc");
    c.cmd("HSET h f v");
    c.cmd("SET n 9223372036854775807");
    let cases = [
        (
            "GET",
            "-ERR wrong number of arguments for 'get' command\r\n",
        ),
        (
            "NOSUCH a b",
            "-ERR unknown command 'NOSUCH', with args beginning with: 'a' 'b' \r\n",
        ),
        (
            "GET h",
            "-WRONGTYPE Operation against a key holding the wrong kind of value\r\n",
        ),
        (
            "HGET s f",
            "-WRONGTYPE Operation against a key holding the wrong kind of value\r\n",
        ),
        ("INCR s", "-ERR value is not an integer or out of range\r\n"),
        ("INCR n", "-ERR increment or decrement would overflow\r\n"),
        (
            "INCRBY n x",
            "-ERR value is not an integer or out of range\r\n",
        ),
        (
            "DECRBY n -9223372036854775808",
            "-ERR decrement would overflow\r\n",
        ),
        ("INCRBYFLOAT s 1", "-ERR value is not a valid float\r\n"),
        ("INCRBYFLOAT n2 abc", "-ERR value is not a valid float\r\n"),
        ("SET k v NX XX", "-ERR syntax error\r\n"),
        (
            "SET k v EX 0",
            "-ERR invalid expire time in 'set' command\r\n",
        ),
        ("SET k v EX 10 PX 10", "-ERR syntax error\r\n"),
        ("SET k v KEEPTTL EX 1", "-ERR syntax error\r\n"),
        ("SET k v EX", "-ERR syntax error\r\n"),
        (
            "SET k v EX abc",
            "-ERR value is not an integer or out of range\r\n",
        ),
        (
            "SETEX k -1 v",
            "-ERR invalid expire time in 'setex' command\r\n",
        ),
        ("SETRANGE k -1 v", "-ERR offset is out of range\r\n"),
        (
            "EXPIRE s 10 NX XX",
            "-ERR NX and XX, GT or LT options at the same time are not compatible\r\n",
        ),
        (
            "EXPIRE s 10 GT LT",
            "-ERR GT and LT options at the same time are not compatible\r\n",
        ),
        ("EXPIRE s 10 FOO", "-ERR Unsupported option FOO\r\n"),
        ("HINCRBY h f 1", "-ERR hash value is not an integer\r\n"),
        (
            "HSET h f",
            "-ERR wrong number of arguments for 'hset' command\r\n",
        ),
        (
            "MSET a",
            "-ERR wrong number of arguments for 'mset' command\r\n",
        ),
        (
            "MSET a 1 b",
            "-ERR wrong number of arguments for 'mset' command\r\n",
        ),
        ("SCAN abc", "-ERR invalid cursor\r\n"),
        ("SCAN 0 COUNT 0", "-ERR syntax error\r\n"),
        (
            "CLIENT SETNAME a\nb",
            "-ERR Client names cannot contain spaces, newlines or special characters.\r\n",
        ),
        (
            "CLIENT FOO",
            "-ERR unknown subcommand 'FOO'. Try CLIENT HELP.\r\n",
        ),
        (
            "SELECT x",
            "-ERR value is not an integer or out of range\r\n",
        ),
        (
            "PING a b",
            "-ERR wrong number of arguments for 'ping' command\r\n",
        ),
    ];
    for (cmd, want) in cases {
        assert_eq!(c.cmd(cmd), want, "{cmd}");
    }
}

#[test]
fn string_commands_follow_redis_semantics() {
    let env = Env::start(4);
    let mut c = env.client();
    let cases = [
        ("SET k v", "+OK\r\n"),
        ("SET k w NX", "$-1\r\n"),
        ("SET k w XX GET", "$1\r\nv\r\n"),
        ("GETSET k x", "$1\r\nw\r\n"),
        ("SETNX k y", ":0\r\n"),
        ("SETNX k2 y", ":1\r\n"),
        ("APPEND k2 zz", ":3\r\n"),
        ("STRLEN k2", ":3\r\n"),
        ("GETRANGE k2 1 -1", "$2\r\nzz\r\n"),
        ("GETRANGE nokey 0 -1", "$0\r\n\r\n"),
        ("SETRANGE pad 3 ab", ":5\r\n"),
        ("GET pad", "$5\r\n\0\0\0ab\r\n"),
        ("INCR c", ":1\r\n"),
        ("INCRBY c 10", ":11\r\n"),
        ("DECR c", ":10\r\n"),
        ("DECRBY c 20", ":-10\r\n"),
        ("INCRBYFLOAT f 10.5", "$4\r\n10.5\r\n"),
        ("INCRBYFLOAT f 0.1", "$4\r\n10.6\r\n"),
        ("GETDEL k", "$1\r\nx\r\n"),
        ("GET k", "$-1\r\n"),
        ("MSET a 1 b 2 c3 3", "+OK\r\n"),
        (
            "MGET a b nokey c3",
            "*4\r\n$1\r\n1\r\n$1\r\n2\r\n$-1\r\n$1\r\n3\r\n",
        ),
        ("SETEX e 100 v", "+OK\r\n"),
        ("TTL e", ":100\r\n"),
        ("PSETEX e 5000 v", "+OK\r\n"),
        ("TTL e", ":5\r\n"),
        ("SET e v KEEPTTL", "+OK\r\n"),
        ("TTL e", ":5\r\n"),
        ("GETEX e PERSIST", "$1\r\nv\r\n"),
        ("TTL e", ":-1\r\n"),
        ("GETEX e EX 50", "$1\r\nv\r\n"),
        ("TTL e", ":50\r\n"),
        ("SET e v", "+OK\r\n"),
        ("TTL e", ":-1\r\n"),
        ("SET e v EXAT 1", "+OK\r\n"),
        ("EXISTS e", ":0\r\n"),
    ];
    for (cmd, want) in cases {
        assert_eq!(c.cmd(cmd), want, "{cmd}");
    }
}

#[test]
fn key_and_expiry_commands_follow_redis_semantics() {
    let env = Env::start(4);
    let mut c = env.client();
    c.cmd("MSET a 1 b 2 c 3");
    c.cmd("HSET h f v");
    let cases = [
        ("EXISTS a b c a nokey", ":4\r\n"),
        ("TYPE a", "+string\r\n"),
        ("TYPE h", "+hash\r\n"),
        ("TYPE nokey", "+none\r\n"),
        ("TTL a", ":-1\r\n"),
        ("TTL nokey", ":-2\r\n"),
        ("EXPIRE a 100", ":1\r\n"),
        ("EXPIRE a 200 NX", ":0\r\n"),
        ("EXPIRE a 50 GT", ":0\r\n"),
        ("EXPIRE a 50 LT", ":1\r\n"),
        ("TTL a", ":50\r\n"),
        ("PERSIST a", ":1\r\n"),
        ("PERSIST a", ":0\r\n"),
        ("EXPIRE a 10 XX", ":0\r\n"),
        ("PEXPIRE a 10000", ":1\r\n"),
        ("PTTL nokey", ":-2\r\n"),
        ("EXPIRETIME nokey", ":-2\r\n"),
        ("EXPIRETIME b", ":-1\r\n"),
        ("EXPIREAT b 4102444800", ":1\r\n"),
        ("EXPIRETIME b", ":4102444800\r\n"),
        ("PEXPIRETIME b", ":4102444800000\r\n"),
        ("EXPIRE c -1", ":1\r\n"),
        ("EXISTS c", ":0\r\n"),
        ("DEL a b c h nokey", ":3\r\n"),
        ("UNLINK a", ":0\r\n"),
    ];
    for (cmd, want) in cases {
        assert_eq!(c.cmd(cmd), want, "{cmd}");
    }
}

#[test]
fn hash_commands_follow_redis_semantics() {
    let env = Env::start(4);
    let mut c = env.client();
    let cases = [
        ("HSET h a 1 b 2", ":2\r\n"),
        ("HSET h a 3 c 4", ":1\r\n"),
        ("HSETNX h a 9", ":0\r\n"),
        ("HSETNX h d 5", ":1\r\n"),
        ("HMSET h e 6", "+OK\r\n"),
        ("HGET h a", "$1\r\n3\r\n"),
        ("HGET h zz", "$-1\r\n"),
        ("HMGET h a zz b", "*3\r\n$1\r\n3\r\n$-1\r\n$1\r\n2\r\n"),
        ("HLEN h", ":5\r\n"),
        ("HEXISTS h a", ":1\r\n"),
        ("HEXISTS h zz", ":0\r\n"),
        ("HSTRLEN h a", ":1\r\n"),
        ("HDEL h d e zz", ":2\r\n"),
        ("HKEYS h", "*3\r\n$1\r\na\r\n$1\r\nb\r\n$1\r\nc\r\n"),
        ("HVALS h", "*3\r\n$1\r\n3\r\n$1\r\n2\r\n$1\r\n4\r\n"),
        (
            "HGETALL h",
            "*6\r\n$1\r\na\r\n$1\r\n3\r\n$1\r\nb\r\n$1\r\n2\r\n$1\r\nc\r\n$1\r\n4\r\n",
        ),
        ("HINCRBY h a 10", ":13\r\n"),
        ("HINCRBYFLOAT h x 1.5", "$3\r\n1.5\r\n"),
        (
            "HSCAN h 0 MATCH [ab]",
            "*2\r\n$1\r\n0\r\n*4\r\n$1\r\na\r\n$2\r\n13\r\n$1\r\nb\r\n$1\r\n2\r\n",
        ),
        ("HGETALL nokey", "*0\r\n"),
        ("HLEN nokey", ":0\r\n"),
    ];
    for (cmd, want) in cases {
        assert_eq!(c.cmd(cmd), want, "{cmd}");
    }
}

#[test]
fn multi_key_commands_span_ranges_and_shards() {
    let env = Env::start(8);
    let mut c = env.client();
    // The proxy's startup probes reached every shard already: count from here.
    let before: Vec<u64> = env
        .cluster
        .shards
        .iter()
        .map(|s| s.requests.load(Ordering::Relaxed))
        .collect();
    let keys: Vec<String> = (0..64).map(|i| format!("mk:{i}")).collect();
    let mut mset: Vec<&[u8]> = vec![b"MSET"];
    for k in &keys {
        mset.push(k.as_bytes());
        mset.push(k.as_bytes());
    }
    assert_eq!(c.cmd_args(&mset), "+OK\r\n");
    let mut mget: Vec<&[u8]> = vec![b"MGET"];
    mget.extend(keys.iter().map(|k| k.as_bytes()));
    let mut want = format!("*{}\r\n", keys.len());
    for k in &keys {
        want.push_str(&format!("${}\r\n{k}\r\n", k.len()));
    }
    assert_eq!(c.cmd_args(&mget), want);
    for (s, before) in env.cluster.shards.iter().zip(before) {
        assert!(
            s.requests.load(Ordering::Relaxed) > before,
            "every shard served"
        );
    }
    let mut exists: Vec<&[u8]> = vec![b"EXISTS"];
    exists.extend(keys.iter().map(|k| k.as_bytes()));
    assert_eq!(c.cmd_args(&exists), ":64\r\n");
    let mut del: Vec<&[u8]> = vec![b"DEL"];
    del.extend(keys.iter().map(|k| k.as_bytes()));
    assert_eq!(c.cmd_args(&del), ":64\r\n");
    assert_eq!(c.cmd_args(&exists), ":0\r\n");
    // MGET answers nil for a key of another type.
    c.cmd("HSET hh f v");
    c.cmd("SET ss v");
    assert_eq!(c.cmd("MGET hh ss"), "*2\r\n$-1\r\n$1\r\nv\r\n");
}

#[test]
fn scan_keys_and_dbsize_see_every_key_across_ranges_once() {
    let env = Env::start(4);
    let mut c = env.client();
    let mut all = BTreeSet::new();
    let mut req = Vec::new();
    for i in 0..500 {
        let k = format!("key:{i}");
        if i % 5 == 0 {
            req.extend(multibulk(&[b"HSET", k.as_bytes(), b"f", b"v"]));
        } else {
            req.extend(multibulk(&[b"SET", k.as_bytes(), b"v"]));
        }
        all.insert(k);
    }
    c.send(&req);
    for _ in 0..500 {
        c.read_reply().unwrap();
    }
    // Split a range while the scan is under way: the cursor (a slot) stays valid.
    let mut seen = Vec::new();
    let mut cursor = "0".to_string();
    let mut steps = 0;
    loop {
        if steps == 3 {
            let r = env.cluster.ranges()[1].clone();
            let mid = proxy::keyspace::slot_start(
                proxy::keyspace::slot_of_internal(&r.start).unwrap() + 100,
            );
            env.cluster.split(r.id, mid, 0);
        }
        c.send(&multibulk(&[b"SCAN", cursor.as_bytes(), b"COUNT", b"20"]));
        let reply = c.read_reply().unwrap();
        let (next, keys) = parse_scan(&reply);
        seen.extend(keys);
        steps += 1;
        cursor = next;
        if cursor == "0" {
            break;
        }
    }
    let set: BTreeSet<String> = seen.iter().cloned().collect();
    assert_eq!(set, all);
    assert_eq!(seen.len(), all.len(), "no key twice");
    assert!(steps > 10, "COUNT bounds a step ({steps} steps)");
    assert_eq!(c.cmd("DBSIZE"), ":500\r\n");
    let keys = c.cmd("KEYS key:1?");
    assert!(keys.starts_with("*10\r\n"), "{keys}");
    let hashes = scan_all(&mut c, &[b"TYPE", b"hash"]);
    assert_eq!(hashes.len(), 100);
    let matched = scan_all(&mut c, &[b"MATCH", b"key:4*"]);
    assert_eq!(matched.len(), 111);
}

fn scan_all(c: &mut Client, opts: &[&[u8]]) -> Vec<String> {
    let mut out = Vec::new();
    let mut cursor = "0".to_string();
    loop {
        let mut args: Vec<&[u8]> = vec![b"SCAN", cursor.as_bytes()];
        args.extend_from_slice(opts);
        c.send(&multibulk(&args));
        let (next, keys) = parse_scan(&c.read_reply().unwrap());
        out.extend(keys);
        cursor = next;
        if cursor == "0" {
            return out;
        }
    }
}

/// `*2 $cursor *n $k…` → (cursor, keys).
fn parse_scan(reply: &[u8]) -> (String, Vec<String>) {
    let text = String::from_utf8_lossy(reply);
    let lines: Vec<&str> = text.split("\r\n").collect();
    let cursor = lines[2].to_string();
    let n: usize = lines[3][1..].parse().unwrap();
    let keys = (0..n).map(|i| lines[5 + 2 * i].to_string()).collect();
    (cursor, keys)
}

#[test]
fn stale_routes_and_leader_changes_cause_retries_not_errors() {
    let env = Env::start(2);
    let mut c = env.client();
    assert_eq!(c.cmd("SET warm 1"), "+OK\r\n");
    let retries0 = env.shared.router.stats.retries.load(Ordering::Relaxed);
    // NotLeader answers.
    env.cluster.shards[0]
        .fail_not_leader
        .store(3, Ordering::Relaxed);
    env.cluster.shards[1]
        .fail_not_leader
        .store(3, Ordering::Relaxed);
    let mut req = Vec::new();
    for i in 0..200 {
        req.extend(multibulk(&[b"SET", format!("k{i}").as_bytes(), b"v"]));
    }
    c.send(&req);
    for _ in 0..200 {
        assert_eq!(c.read_reply().unwrap(), b"+OK\r\n");
    }
    // A split (EpochMismatch / RangeNotFound) and a leader move during a pipelined load.
    let ranges = env.cluster.ranges();
    let r0 = ranges[0].clone();
    let at = proxy::keyspace::slot_start(4000);
    env.cluster.split(r0.id, at, 1);
    env.cluster.move_range(ranges[1].id, 0);
    let mut req = Vec::new();
    for i in 0..200 {
        req.extend(multibulk(&[b"GET", format!("k{i}").as_bytes()]));
    }
    c.send(&req);
    for _ in 0..200 {
        assert_eq!(c.read_reply().unwrap(), b"$1\r\nv\r\n");
    }
    let retries = env.shared.router.stats.retries.load(Ordering::Relaxed);
    assert!(retries > retries0, "retries were counted");
    assert!(env.shared.router.stats.refreshes.load(Ordering::Relaxed) >= 2);
    assert_eq!(c.cmd("DBSIZE"), ":201\r\n");
}

#[test]
fn an_unreachable_cluster_is_a_redis_error_not_a_closed_connection() {
    let env = Env::start_with(1, |c| {
        c.router.masters = vec!["127.0.0.1:1".into()];
        c.router.retry_budget = Duration::from_millis(10);
        c.router.min_attempts = 2;
    });
    let mut c = env.client();
    let r = c.cmd("GET k");
    assert!(r.starts_with("-ERR cluster unavailable"), "{r}");
    assert_eq!(c.cmd("PING"), "+PONG\r\n");
}

#[test]
fn max_clients_are_refused_with_an_error() {
    let env = Env::start_with(1, |c| c.max_clients = 2);
    let mut a = env.client();
    let mut b = env.client();
    assert_eq!(a.cmd("PING"), "+PONG\r\n");
    assert_eq!(b.cmd("PING"), "+PONG\r\n");
    let mut c = env.client();
    assert_eq!(
        c.read_reply().unwrap(),
        b"-ERR max number of clients reached\r\n"
    );
    drop(a);
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(env.client().cmd("PING"), "+PONG\r\n");
}

#[test]
fn graceful_shutdown_closes_idle_clients() {
    let mut env = Env::start(1);
    let mut c = env.client();
    assert_eq!(c.cmd("PING"), "+PONG\r\n");
    env.shutdown();
    assert!(c.is_closed());
}

#[test]
fn info_reports_command_stats_and_latency() {
    let env = Env::start(1);
    let mut c = env.client();
    for _ in 0..10 {
        c.cmd("SET k v");
    }
    c.cmd("GET h x");
    let info = c.cmd("INFO all");
    assert!(info.contains("cmdstat_set:calls=10,"), "{info}");
    assert!(info.contains("latency_percentiles_usec_set:p50="), "{info}");
    assert!(info.contains("errorstat_ERR:count=1"), "{info}");
    assert!(info.contains("connected_clients:1"), "{info}");
    assert!(c.cmd("INFO").contains("# Keyspace"));
    c.cmd("HELLO 3");
    assert!(c.cmd("INFO server").starts_with("="));
    assert_eq!(c.cmd("CONFIG RESETSTAT"), "+OK\r\n");
    let t = c.cmd("TIME");
    assert!(t.starts_with("*2\r\n$10\r\n"), "{t}");
}

#[test]
fn save_succeeds_at_once_and_moves_lastsave_forward() {
    let env = Env::start(1);
    let mut c = env.client();
    let secs = |r: String| -> u64 { r.trim_start_matches(':').trim().parse().unwrap() };
    let before = secs(c.cmd("LASTSAVE"));
    std::thread::sleep(std::time::Duration::from_millis(1100));
    assert_eq!(c.cmd("SAVE"), "+OK\r\n");
    let after = secs(c.cmd("LASTSAVE"));
    assert!(after > before, "LASTSAVE {before} then {after}");
    assert_eq!(c.cmd("BGSAVE SCHEDULE"), "+Background saving started\r\n");
    assert_eq!(c.cmd("BGSAVE NOW"), "-ERR syntax error\r\n");
    let info = c.cmd("INFO persistence");
    let saved: u64 = info
        .split("rdb_last_save_time:")
        .nth(1)
        .and_then(|t| t.split("\r\n").next())
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("{info}"));
    assert!(saved >= after, "{info}");
    assert!(info.contains("rdb_last_bgsave_status:ok"), "{info}");
    c.cmd("MULTI");
    assert_eq!(
        c.cmd("SAVE"),
        "-ERR Command not allowed inside a transaction\r\n"
    );
    assert!(c.cmd("EXEC").starts_with("-EXECABORT"));
    assert_eq!(
        c.cmd("CLUSTER SLOTS"),
        "-ERR This instance has cluster support disabled\r\n"
    );
}

#[test]
fn metrics_endpoint_serves_prometheus_text() {
    use std::io::Read;
    let env = Env::start(1);
    let listener = env
        .rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    env.rt.spawn(proxy::serve_metrics(
        listener,
        env.shared.clone(),
        std::future::pending(),
    ));
    let mut c = env.client();
    c.cmd("SET k v");
    c.cmd("GET k");
    let mut http = std::net::TcpStream::connect(addr).unwrap();
    http.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut body = String::new();
    http.read_to_string(&mut body).unwrap();
    assert!(body.starts_with("HTTP/1.1 200 OK\r\n"), "{body}");
    assert!(
        body.contains("proxy_commands_total{cmd=\"get\"} 1\n"),
        "{body}"
    );
    assert!(body.contains("proxy_command_duration_seconds{cmd=\"set\",quantile=\"0.99\"}"));
    assert!(body.contains("proxy_connected_clients 1\n"), "{body}");
    assert!(body.contains("proxy_route_refreshes_total"));
}

#[test]
fn splits_and_moves_during_a_pipelined_load_cause_no_errors() {
    let env = Env::start(2);
    let cluster = &env.cluster;
    let mut c = env.client();
    assert_eq!(c.cmd("PING"), "+PONG\r\n");
    let rounds = 60;
    let per_round = 500;
    std::thread::scope(|s| {
        s.spawn(|| {
            // Split the first range repeatedly at growing slots and move halves around.
            for i in 0..10u16 {
                std::thread::sleep(Duration::from_millis(15));
                let ranges = cluster.ranges();
                let first = ranges[0].clone();
                let at = proxy::keyspace::slot_start(500 + i * 700);
                if first.contains(&at) && at != first.start {
                    let new = cluster.split(first.id, at, usize::from(i % 2 == 0));
                    if i % 3 == 0 {
                        cluster.move_range(new, 0);
                    }
                }
            }
        });
        for _ in 0..rounds {
            let mut req = Vec::new();
            for i in 0..per_round {
                req.extend(multibulk(&[b"INCR", format!("ctr:{i}").as_bytes()]));
            }
            c.send(&req);
            for _ in 0..per_round {
                let r = c.read_reply().unwrap();
                assert!(r.starts_with(b":"), "{}", String::from_utf8_lossy(&r));
            }
        }
    });
    // Every counter was incremented exactly once per round.
    for i in (0..per_round).step_by(37) {
        assert_eq!(
            c.cmd(&format!("GET ctr:{i}")),
            format!("$2\r\n{rounds}\r\n")
        );
    }
    assert!(cluster.ranges().len() > 2);
    let retries = env.shared.router.stats.retries.load(Ordering::Relaxed);
    assert!(retries > 0, "the splits hit the load");
}

/// `CONFIG REWRITE` writes what `CONFIG SET` changed back into the proxy's file (other lines
/// kept); without a file it answers as Redis does.
#[test]
fn config_rewrite_persists_set_values_into_the_proxy_file_and_refuses_without_one() {
    let dir = std::env::temp_dir().join(format!("proxy-rewrite-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("proxy.toml");
    std::fs::write(&path, "# mine\nlisten = \"127.0.0.1:6379\"\ntimeout = 0\n").unwrap();
    let file = path.clone();
    let env = Env::start_with(1, move |c| c.config_file = Some(file));
    let mut c = env.client();
    assert_eq!(
        c.cmd("CONFIG SET timeout 30 requirepass s3cr\"t"),
        "+OK\r\n"
    );
    assert_eq!(c.cmd("AUTH s3cr\"t"), "+OK\r\n");
    assert_eq!(c.cmd("CONFIG REWRITE"), "+OK\r\n");
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(
        text,
        "# mine\nlisten = \"127.0.0.1:6379\"\ntimeout = 30\nrequirepass = \"s3cr\\\"t\"\nclient-query-buffer-limit = 1073741824\n"
    );
    c.send(&multibulk(&[b"CONFIG", b"SET", b"requirepass", b""]));
    assert_eq!(c.read_reply().unwrap(), b"+OK\r\n");
    assert_eq!(c.cmd("CONFIG REWRITE"), "+OK\r\n");
    assert!(
        !std::fs::read_to_string(&path)
            .unwrap()
            .contains("requirepass")
    );
    let plain = Env::start(1);
    assert_eq!(
        plain.client().cmd("CONFIG REWRITE"),
        "-ERR The server is running without a config file\r\n"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `COMMAND DOCS` is byte for byte redis-server's, in RESP2 and RESP3 (what `redis-cli`
/// shows as hints); unknown names are left out. (A container's subcommands come in the order
/// of a hash table seeded per process in Redis, so `CLIENT`'s are not compared here.)
#[test]
fn command_docs_are_redis_servers_own_in_resp2_and_resp3() {
    let Some(redis) = test_support::redis::start() else {
        return;
    };
    let env = Env::start(1);
    let names = [
        "get",
        "set",
        "zadd",
        "eval",
        "xadd-not-supported",
        "FCALL",
        "lpos",
    ];
    for resp3 in [false, true] {
        let mut ours = env.client();
        let mut theirs = Client::connect(redis.addr());
        if resp3 {
            ours.cmd("HELLO 3");
            theirs.cmd("HELLO 3");
        }
        for n in names {
            let cmd = format!("COMMAND DOCS {n}");
            assert_eq!(ours.cmd(&cmd), theirs.cmd(&cmd), "{cmd} (RESP3: {resp3})");
        }
    }
}
