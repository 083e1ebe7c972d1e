//! The proxy through a real Redis client library — the `redis` crate, in RESP2 and in RESP3
//! (`?protocol=resp3`) — in front of a real in-process cluster: the real master, one real DS
//! node with two shards and the proxy, each on ports of its own.
//!
//! Every command the proxy supports is exercised from a script of `(command, reply)` pairs,
//! with its edge cases (negative and overflowing expiries, integer overflow, SETRANGE past
//! the end, wrong types, wrong arity). Replies are compared as the client library decodes
//! them, rendered as text (see [`show`]). The same script also runs against a real
//! `redis-server` when one is installed, which proves the expected replies are Redis's own.
//! Replies that vary (TTLs, ids, clocks, INFO) are checked by [`dynamic_checks`].
#![allow(clippy::unwrap_used)]

mod cluster;

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use cluster::RealCluster;
use redis::{Commands, Value};

/// One scripted command: its arguments (split on single spaces), the reply the client
/// library decodes in RESP2, and in RESP3 (`""`: the same as in RESP2).
struct Case {
    cmd: &'static str,
    resp2: &'static str,
    resp3: &'static str,
}

const fn c(cmd: &'static str, want: &'static str) -> Case {
    Case {
        cmd,
        resp2: want,
        resp3: "",
    }
}

const fn c3(cmd: &'static str, resp2: &'static str, resp3: &'static str) -> Case {
    Case { cmd, resp2, resp3 }
}

const WRONGTYPE: &str = "!WRONGTYPE Operation against a key holding the wrong kind of value";
const NOT_INT: &str = "!ERR value is not an integer or out of range";
const NOT_FLOAT: &str = "!ERR value is not a valid float";
const SYNTAX: &str = "!ERR syntax error";
const OVERFLOW: &str = "!ERR increment or decrement would overflow";

/// The script. Expected replies are rendered by [`show`]: `OK`, `+simple`, `"bulk"`, `nil`,
/// integers, `[array]`, `{map}`, `!ERROR text`; `~a..b` is an integer in `a..=b` (TTLs).
const SCRIPT: &[Case] = &[
    // Connection.
    c("PING", "+PONG"),
    c("PING hello", "\"hello\""),
    c(
        "PING a b",
        "!ERR wrong number of arguments for 'ping' command",
    ),
    c("ECHO abc", "\"abc\""),
    c("ECHO", "!ERR wrong number of arguments for 'echo' command"),
    c("SELECT 0", "OK"),
    c("SELECT x", NOT_INT),
    c(
        "SELECT",
        "!ERR wrong number of arguments for 'select' command",
    ),
    c(
        "NOSUCHCMD a b",
        "!ERR unknown command 'NOSUCHCMD', with args beginning with: 'a' 'b' ",
    ),
    // SET and its options.
    c("SET s v", "OK"),
    c("GET s", "\"v\""),
    c("GET nokey", "nil"),
    c("SET s w NX", "nil"),
    c("SET s w XX", "OK"),
    c("SET s x XX GET", "\"w\""),
    c("SET s2 x NX GET", "nil"),
    c("SET s2 y NX GET", "\"x\""),
    c("GET s2", "\"x\""),
    c("SET nokey y XX", "nil"),
    c("SET s v EX 100", "OK"),
    c("TTL s", "~99..100"),
    c("SET s v2 KEEPTTL", "OK"),
    c("TTL s", "~99..100"),
    c("SET s v", "OK"),
    c("TTL s", "-1"),
    c("SET s v PX 100000", "OK"),
    c("PTTL s", "~98000..100000"),
    c("SET s v EXAT 4102444800", "OK"),
    c("EXPIRETIME s", "4102444800"),
    c("SET s v PXAT 4102444800123", "OK"),
    c("PEXPIRETIME s", "4102444800123"),
    c("EXPIRETIME s", "4102444800"),
    c("SET s v", "OK"),
    c("SET s v NX XX", SYNTAX),
    c("SET s v EX 0", "!ERR invalid expire time in 'set' command"),
    c("SET s v EX -5", "!ERR invalid expire time in 'set' command"),
    c("SET s v PX -1", "!ERR invalid expire time in 'set' command"),
    c(
        "SET s v EXAT -1",
        "!ERR invalid expire time in 'set' command",
    ),
    c(
        "SET s v PXAT 0",
        "!ERR invalid expire time in 'set' command",
    ),
    c(
        "SET s v EX 9223372036854775807",
        "!ERR invalid expire time in 'set' command",
    ),
    c("SET s v EX abc", NOT_INT),
    c("SET s v EX", SYNTAX),
    c("SET s v EX 10 PX 10", SYNTAX),
    c("SET s v KEEPTTL EX 10", SYNTAX),
    c("SET s v FOO", SYNTAX),
    c("SET s", "!ERR wrong number of arguments for 'set' command"),
    c("GET s", "\"v\""),
    c("GET", "!ERR wrong number of arguments for 'get' command"),
    c(
        "GET a b",
        "!ERR wrong number of arguments for 'get' command",
    ),
    // SETNX, SETEX, PSETEX, GETSET, GETDEL, GETEX.
    c("SETNX s x", "0"),
    c("SETNX s3 x", "1"),
    c(
        "SETNX s3",
        "!ERR wrong number of arguments for 'setnx' command",
    ),
    c("SETEX s4 100 v", "OK"),
    c("TTL s4", "~99..100"),
    c(
        "SETEX s4 0 v",
        "!ERR invalid expire time in 'setex' command",
    ),
    c(
        "SETEX s4 -10 v",
        "!ERR invalid expire time in 'setex' command",
    ),
    c("SETEX s4 abc v", NOT_INT),
    c(
        "SETEX s4 100",
        "!ERR wrong number of arguments for 'setex' command",
    ),
    c("PSETEX s5 100000 v", "OK"),
    c("PTTL s5", "~98000..100000"),
    c(
        "PSETEX s5 -1 v",
        "!ERR invalid expire time in 'psetex' command",
    ),
    c("GETSET s new", "\"v\""),
    c("GETSET gs x", "nil"),
    c(
        "GETSET s",
        "!ERR wrong number of arguments for 'getset' command",
    ),
    c("GETDEL s", "\"new\""),
    c("GETDEL s", "nil"),
    c(
        "GETDEL",
        "!ERR wrong number of arguments for 'getdel' command",
    ),
    c("GETEX s4", "\"v\""),
    c("GETEX s4 PERSIST", "\"v\""),
    c("TTL s4", "-1"),
    c("GETEX s4 EX 100", "\"v\""),
    c("TTL s4", "~99..100"),
    c("GETEX s4 PX 50000", "\"v\""),
    c("PTTL s4", "~48000..50000"),
    c("GETEX s4 EXAT 4102444800", "\"v\""),
    c("EXPIRETIME s4", "4102444800"),
    c("GETEX s4 PXAT 4102444800000", "\"v\""),
    c("PEXPIRETIME s4", "4102444800000"),
    c(
        "GETEX s4 EX -1",
        "!ERR invalid expire time in 'getex' command",
    ),
    c(
        "GETEX s4 EX 0",
        "!ERR invalid expire time in 'getex' command",
    ),
    c("GETEX s4 FOO", SYNTAX),
    c("GETEX s4 EX 10 PX 10", SYNTAX),
    c("GETEX nokey", "nil"),
    c(
        "GETEX",
        "!ERR wrong number of arguments for 'getex' command",
    ),
    // MSET, MGET.
    c("MSET a 1 b 2 c 3", "OK"),
    c("MGET a b nokey c", "[\"1\", \"2\", nil, \"3\"]"),
    c(
        "MSET a",
        "!ERR wrong number of arguments for 'mset' command",
    ),
    c(
        "MSET a 1 b",
        "!ERR wrong number of arguments for 'mset' command",
    ),
    c("MGET", "!ERR wrong number of arguments for 'mget' command"),
    // Counters.
    c("INCR ctr", "1"),
    c("INCRBY ctr 41", "42"),
    c("DECR ctr", "41"),
    c("DECRBY ctr 10", "31"),
    c("INCRBY ctr -31", "0"),
    c("INCRBY ctr abc", NOT_INT),
    c("INCRBY ctr 9223372036854775808", NOT_INT),
    c("INCR s3", NOT_INT),
    c("SET lead0 01", "OK"),
    c("INCR lead0", NOT_INT),
    c("SET big 9223372036854775807", "OK"),
    c("INCR big", OVERFLOW),
    c("INCRBY big 1", OVERFLOW),
    c("GET big", "\"9223372036854775807\""),
    c("SET small -9223372036854775808", "OK"),
    c("DECR small", OVERFLOW),
    c("DECRBY small 1", OVERFLOW),
    c(
        "DECRBY ctr -9223372036854775808",
        "!ERR decrement would overflow",
    ),
    c("INCR", "!ERR wrong number of arguments for 'incr' command"),
    c("DECR", "!ERR wrong number of arguments for 'decr' command"),
    c(
        "INCRBY ctr",
        "!ERR wrong number of arguments for 'incrby' command",
    ),
    c(
        "DECRBY ctr",
        "!ERR wrong number of arguments for 'decrby' command",
    ),
    c("INCRBYFLOAT f 10.5", "\"10.5\""),
    c("INCRBYFLOAT f 0.1", "\"10.6\""),
    c("INCRBYFLOAT f -5", "\"5.6\""),
    c("INCRBYFLOAT f 4", "\"9.6\""),
    c("INCRBYFLOAT f 1.5e1", "\"24.6\""),
    c("INCRBYFLOAT f abc", NOT_FLOAT),
    c(
        "INCRBYFLOAT f inf",
        "!ERR increment would produce NaN or Infinity",
    ),
    c("INCRBYFLOAT s3 1", NOT_FLOAT),
    c(
        "INCRBYFLOAT f",
        "!ERR wrong number of arguments for 'incrbyfloat' command",
    ),
    c("INCR f", NOT_INT),
    // APPEND, STRLEN, GETRANGE, SETRANGE.
    c("APPEND ap hello", "5"),
    c("APPEND ap world", "10"),
    c(
        "APPEND ap",
        "!ERR wrong number of arguments for 'append' command",
    ),
    c("STRLEN ap", "10"),
    c("STRLEN nokey", "0"),
    c(
        "STRLEN",
        "!ERR wrong number of arguments for 'strlen' command",
    ),
    c("GETRANGE ap 0 4", "\"hello\""),
    c("GETRANGE ap -5 -1", "\"world\""),
    c("GETRANGE ap 5 1", "\"\""),
    c("GETRANGE ap 100 200", "\"\""),
    c("GETRANGE ap -100 100", "\"helloworld\""),
    c("GETRANGE nokey 0 -1", "\"\""),
    c("GETRANGE ap 0 abc", NOT_INT),
    c(
        "GETRANGE ap 0",
        "!ERR wrong number of arguments for 'getrange' command",
    ),
    c("SETRANGE ap 0 J", "10"),
    c("GET ap", "\"Jelloworld\""),
    c("SETRANGE ap 12 !", "13"),
    c("GET ap", "\"Jelloworld\\0\\0!\""),
    c("SETRANGE sr 5 x", "6"),
    c("GET sr", "\"\\0\\0\\0\\0\\0x\""),
    c("SETRANGE sr 100 ", "6"),
    c("SETRANGE sr -1 x", "!ERR offset is out of range"),
    c(
        "SETRANGE sr 536870912 x",
        "!ERR string exceeds maximum allowed size (proto-max-bulk-len)",
    ),
    c("SETRANGE nokey2 0 ", "0"),
    c("EXISTS nokey2", "0"),
    c(
        "SETRANGE sr 0",
        "!ERR wrong number of arguments for 'setrange' command",
    ),
    // DEL, UNLINK, EXISTS, TYPE.
    c("EXISTS a b nokey a", "3"),
    c("DEL a nokey", "1"),
    c("UNLINK b c", "2"),
    c("EXISTS a b c", "0"),
    c("DEL", "!ERR wrong number of arguments for 'del' command"),
    c(
        "UNLINK",
        "!ERR wrong number of arguments for 'unlink' command",
    ),
    c(
        "EXISTS",
        "!ERR wrong number of arguments for 'exists' command",
    ),
    c("TYPE ctr", "+string"),
    c("TYPE nokey", "+none"),
    c("TYPE", "!ERR wrong number of arguments for 'type' command"),
    // The EXPIRE family.
    c("EXPIRE ap 100", "1"),
    c("TTL ap", "~99..100"),
    c("EXPIRE ap 200 NX", "0"),
    c("EXPIRE ap 50 GT", "0"),
    c("EXPIRE ap 50 LT", "1"),
    c("TTL ap", "~49..50"),
    c("EXPIRE ap 300 XX", "1"),
    c("EXPIRE ap 200 xx gt", "0"),
    c(
        "EXPIRE ap 10 NX XX",
        "!ERR NX and XX, GT or LT options at the same time are not compatible",
    ),
    c(
        "EXPIRE ap 10 GT LT",
        "!ERR GT and LT options at the same time are not compatible",
    ),
    c("EXPIRE ap 10 BAD", "!ERR Unsupported option BAD"),
    c("EXPIRE ap abc", NOT_INT),
    c(
        "EXPIRE ap 9223372036854775807",
        "!ERR invalid expire time in 'expire' command",
    ),
    c(
        "EXPIRE ap",
        "!ERR wrong number of arguments for 'expire' command",
    ),
    c("PEXPIRE ap 100000", "1"),
    c("PTTL ap", "~98000..100000"),
    c("PERSIST ap", "1"),
    c("PERSIST ap", "0"),
    c("PERSIST nokey", "0"),
    c(
        "PERSIST",
        "!ERR wrong number of arguments for 'persist' command",
    ),
    c("TTL ap", "-1"),
    c("EXPIRE ap 100 XX", "0"),
    c("EXPIRE ap 100 GT", "0"),
    c("EXPIRE ap 100 LT", "1"),
    c("EXPIREAT ap 4102444800", "1"),
    c("EXPIRETIME ap", "4102444800"),
    c("PEXPIREAT ap 4102444800000", "1"),
    c("PEXPIRETIME ap", "4102444800000"),
    c("PEXPIREAT ap 4102444800000 NX", "0"),
    c(
        "EXPIREAT ap",
        "!ERR wrong number of arguments for 'expireat' command",
    ),
    c(
        "PEXPIRE ap",
        "!ERR wrong number of arguments for 'pexpire' command",
    ),
    c(
        "PEXPIREAT ap",
        "!ERR wrong number of arguments for 'pexpireat' command",
    ),
    c("EXPIRE nokey 10", "0"),
    c("TTL nokey", "-2"),
    c("PTTL nokey", "-2"),
    c("EXPIRETIME nokey", "-2"),
    c("PEXPIRETIME nokey", "-2"),
    c("EXPIRETIME ctr", "-1"),
    c("PEXPIRETIME ctr", "-1"),
    c("TTL", "!ERR wrong number of arguments for 'ttl' command"),
    c("PTTL", "!ERR wrong number of arguments for 'pttl' command"),
    c(
        "EXPIRETIME",
        "!ERR wrong number of arguments for 'expiretime' command",
    ),
    c(
        "PEXPIRETIME",
        "!ERR wrong number of arguments for 'pexpiretime' command",
    ),
    // A negative or past expiry deletes the key.
    c("EXPIRE ap -1", "1"),
    c("EXISTS ap", "0"),
    c("SET neg v", "OK"),
    c("PEXPIRE neg -100", "1"),
    c("GET neg", "nil"),
    c("SET neg v", "OK"),
    c("EXPIREAT neg 1", "1"),
    c("TTL neg", "-2"),
    c("SET neg v", "OK"),
    c("PEXPIREAT neg 0", "1"),
    c("EXISTS neg", "0"),
    // Hashes.
    c("HSET h a 1 b 2", "2"),
    c("HSET h c 3", "1"),
    c("HSET h a 10", "0"),
    c(
        "HSET h a",
        "!ERR wrong number of arguments for 'hset' command",
    ),
    c(
        "HSET h a 1 b",
        "!ERR wrong number of arguments for 'hset' command",
    ),
    c("HSETNX h a 5", "0"),
    c("HSETNX h d 4", "1"),
    c(
        "HSETNX h d",
        "!ERR wrong number of arguments for 'hsetnx' command",
    ),
    c("HMSET h e 5", "OK"),
    c(
        "HMSET h e",
        "!ERR wrong number of arguments for 'hmset' command",
    ),
    c(
        "HMSET h e 5 f",
        "!ERR wrong number of arguments for 'hmset' command",
    ),
    c("HGET h a", "\"10\""),
    c("HGET h zz", "nil"),
    c("HGET nokey a", "nil"),
    c(
        "HGET h",
        "!ERR wrong number of arguments for 'hget' command",
    ),
    c("HMGET h a zz b", "[\"10\", nil, \"2\"]"),
    c("HMGET nokey a", "[nil]"),
    c(
        "HMGET h",
        "!ERR wrong number of arguments for 'hmget' command",
    ),
    c("HLEN h", "5"),
    c("HLEN nokey", "0"),
    c("HLEN", "!ERR wrong number of arguments for 'hlen' command"),
    c("HEXISTS h a", "1"),
    c("HEXISTS h zz", "0"),
    c(
        "HEXISTS h",
        "!ERR wrong number of arguments for 'hexists' command",
    ),
    c("HSTRLEN h a", "2"),
    c("HSTRLEN h zz", "0"),
    c(
        "HSTRLEN h",
        "!ERR wrong number of arguments for 'hstrlen' command",
    ),
    c3(
        "HGETALL h",
        "[\"a\", \"10\", \"b\", \"2\", \"c\", \"3\", \"d\", \"4\", \"e\", \"5\"]",
        "{\"a\": \"10\", \"b\": \"2\", \"c\": \"3\", \"d\": \"4\", \"e\": \"5\"}",
    ),
    c("HKEYS h", "[\"a\", \"b\", \"c\", \"d\", \"e\"]"),
    c("HVALS h", "[\"10\", \"2\", \"3\", \"4\", \"5\"]"),
    c3("HGETALL nokey", "[]", "{}"),
    c("HKEYS nokey", "[]"),
    c("HVALS nokey", "[]"),
    c(
        "HGETALL",
        "!ERR wrong number of arguments for 'hgetall' command",
    ),
    c(
        "HKEYS",
        "!ERR wrong number of arguments for 'hkeys' command",
    ),
    c(
        "HVALS",
        "!ERR wrong number of arguments for 'hvals' command",
    ),
    c("HINCRBY h a 5", "15"),
    c("HINCRBY h a abc", NOT_INT),
    c("HINCRBY h g 7", "7"),
    c("HINCRBY h b 9223372036854775807", OVERFLOW),
    c("HSET h i x", "1"),
    c("HINCRBY h i 1", "!ERR hash value is not an integer"),
    c(
        "HINCRBY h a",
        "!ERR wrong number of arguments for 'hincrby' command",
    ),
    c("HINCRBYFLOAT h j 1.5", "\"1.5\""),
    c("HINCRBYFLOAT h j 1", "\"2.5\""),
    c("HINCRBYFLOAT h j abc", NOT_FLOAT),
    c("HINCRBYFLOAT h i 1", "!ERR hash value is not a float"),
    c(
        "HINCRBYFLOAT h j",
        "!ERR wrong number of arguments for 'hincrbyfloat' command",
    ),
    c("HDEL h d e zz", "2"),
    c("HDEL nokey a", "0"),
    c(
        "HDEL h",
        "!ERR wrong number of arguments for 'hdel' command",
    ),
    c(
        "HSCAN h 0",
        "[\"0\", [\"a\", \"15\", \"b\", \"2\", \"c\", \"3\", \"g\", \"7\", \"i\", \"x\", \"j\", \"2.5\"]]",
    ),
    c(
        "HSCAN h 0 MATCH [ab]",
        "[\"0\", [\"a\", \"15\", \"b\", \"2\"]]",
    ),
    c(
        "HSCAN h 0 COUNT 2 MATCH *",
        "[\"0\", [\"a\", \"15\", \"b\", \"2\", \"c\", \"3\", \"g\", \"7\", \"i\", \"x\", \"j\", \"2.5\"]]",
    ),
    c("HSCAN nokey 0", "[\"0\", []]"),
    c("HSCAN h abc", "!ERR invalid cursor"),
    c("HSCAN h 0 COUNT 0", SYNTAX),
    c("HSCAN h 0 FOO", SYNTAX),
    c(
        "HSCAN h",
        "!ERR wrong number of arguments for 'hscan' command",
    ),
    c("TYPE h", "+hash"),
    c("HDEL h a b c g i j", "6"),
    c("EXISTS h", "0"),
    // Which writes keep a key's TTL and which clear it.
    c("SET t 1 EX 100", "OK"),
    c("INCR t", "2"),
    c("INCRBYFLOAT t 0.5", "\"2.5\""),
    c("APPEND t 0", "4"),
    c("SETRANGE t 0 3", "4"),
    c("SET t 9 KEEPTTL GET", "\"3.50\""),
    c("TTL t", "~99..100"),
    c("GETSET t 1", "\"9\""),
    c("TTL t", "-1"),
    c("SET t 1 EX 100", "OK"),
    c("MSET t 2", "OK"),
    c("TTL t", "-1"),
    c("SET t 1 EX 100", "OK"),
    c("SET t 2", "OK"),
    c("TTL t", "-1"),
    c("HSET th a 1", "1"),
    c("EXPIRE th 100", "1"),
    c("HSET th b 2", "1"),
    c("HINCRBY th a 1", "2"),
    c("TTL th", "~99..100"),
    c("PERSIST th", "1"),
    c("TTL th", "-1"),
    c("EXPIRE th 100", "1"),
    c("HDEL th a b", "2"),
    c("TTL th", "-2"),
    c("GETDEL t", "\"2\""),
    c("TTL t", "-2"),
    // Expiry times at their limits, and rounding.
    c("PEXPIREAT s4 4102444800999", "1"),
    c("EXPIRETIME s4", "4102444801"),
    c("PEXPIREAT s4 4102444800499", "1"),
    c("EXPIRETIME s4", "4102444800"),
    c("PEXPIREAT s4 4102444800500", "1"),
    c("EXPIRETIME s4", "4102444801"),
    c(
        "PEXPIRE s4 9223372036854775807",
        "!ERR invalid expire time in 'pexpire' command",
    ),
    c(
        "EXPIREAT s4 9223372036854775807",
        "!ERR invalid expire time in 'expireat' command",
    ),
    c(
        "GETEX s4 PX 9223372036854775807",
        "!ERR invalid expire time in 'getex' command",
    ),
    c(
        "SETEX s4 9223372036854775807 v",
        "!ERR invalid expire time in 'setex' command",
    ),
    c(
        "SET s4 v PX 9223372036854775807",
        "!ERR invalid expire time in 'set' command",
    ),
    c("PEXPIRETIME s4", "4102444800500"),
    // Binary-safe and empty keys and values, case-insensitive names and options.
    c("SET bin a\r\nb", "OK"),
    c("GET bin", "\"a\\r\\nb\""),
    c("STRLEN bin", "4"),
    c("SET  empty-key", "OK"),
    c("GET ", "\"empty-key\""),
    c("SET ev ", "OK"),
    c("GET ev", "\"\""),
    c("EXISTS ev", "1"),
    c("set lc v ex 100 nx", "OK"),
    c("tTl lc", "~99..100"),
    c("HSET hb f \r\n", "1"),
    c("hget hb f", "\"\\r\\n\""),
    c("INCRBYFLOAT z 1.0", "\"1\""),
    c("INCRBYFLOAT z -1", "\"0\""),
    c("INCRBYFLOAT z 1e2", "\"100\""),
    c("INCRBY z 1.5", NOT_INT),
    c("HINCRBYFLOAT hz f 1e2", "\"100\""),
    c("HINCRBYFLOAT hz f -0.25", "\"99.75\""),
    c("GETRANGE bin 0 9223372036854775807", "\"a\\r\\nb\""),
    c("GETRANGE bin -9223372036854775808 1", "\"a\\r\""),
    c("SETRANGE sr 536870911 ", "6"),
    c("SETRANGE sr 536870912 ", "6"),
    // Wrong types: string commands on a hash, hash commands on a string.
    c("HSET wh f v", "1"),
    c("GET wh", WRONGTYPE),
    c("GETSET wh x", WRONGTYPE),
    c("GETDEL wh", WRONGTYPE),
    c("GETEX wh", WRONGTYPE),
    c("SET wh x GET", WRONGTYPE),
    c("SETNX wh x", "0"),
    c("INCR wh", WRONGTYPE),
    c("DECRBY wh 1", WRONGTYPE),
    c("INCRBYFLOAT wh 1", WRONGTYPE),
    c("APPEND wh x", WRONGTYPE),
    c("STRLEN wh", WRONGTYPE),
    c("GETRANGE wh 0 1", WRONGTYPE),
    c("SETRANGE wh 0 x", WRONGTYPE),
    c("MGET wh s3", "[nil, \"x\"]"),
    c("TYPE wh", "+hash"),
    c("HGET s3 f", WRONGTYPE),
    c("HSET s3 f v", WRONGTYPE),
    c("HSETNX s3 f v", WRONGTYPE),
    c("HMSET s3 f v", WRONGTYPE),
    c("HMGET s3 f", WRONGTYPE),
    c("HDEL s3 f", WRONGTYPE),
    c("HEXISTS s3 f", WRONGTYPE),
    c("HLEN s3", WRONGTYPE),
    c("HGETALL s3", WRONGTYPE),
    c("HKEYS s3", WRONGTYPE),
    c("HVALS s3", WRONGTYPE),
    c("HINCRBY s3 f 1", WRONGTYPE),
    c("HINCRBYFLOAT s3 f 1", WRONGTYPE),
    c("HSTRLEN s3 f", WRONGTYPE),
    c("HSCAN s3 0", WRONGTYPE),
    // SET replaces a hash; the key is a string afterwards.
    c("SET wh x", "OK"),
    c("TYPE wh", "+string"),
    c("GET wh", "\"x\""),
    // Client and server commands with fixed replies.
    c("CLIENT SETNAME myname", "OK"),
    c("CLIENT GETNAME", "\"myname\""),
    c(
        "CLIENT SETNAME a\nb",
        "!ERR Client names cannot contain spaces, newlines or special characters.",
    ),
    c(
        "CLIENT SETNAME",
        "!ERR wrong number of arguments for 'client|setname' command",
    ),
    c(
        "CLIENT NOSUCH",
        "!ERR unknown subcommand 'NOSUCH'. Try CLIENT HELP.",
    ),
    c(
        "CLIENT",
        "!ERR wrong number of arguments for 'client' command",
    ),
    c3(
        "CONFIG GET appendonly",
        "[\"appendonly\", \"no\"]",
        "{\"appendonly\": \"no\"}",
    ),
    c3("CONFIG GET nosuch", "[]", "{}"),
    c(
        "CONFIG",
        "!ERR wrong number of arguments for 'config' command",
    ),
    c(
        "CONFIG GET",
        "!ERR wrong number of arguments for 'config|get' command",
    ),
    c("CONFIG RESETSTAT", "OK"),
    c(
        "CLIENT GETNAME x",
        "!ERR wrong number of arguments for 'client|getname' command",
    ),
    c(
        "CLIENT ID x",
        "!ERR wrong number of arguments for 'client|id' command",
    ),
    c("CLIENT NO-EVICT on", "OK"),
    c(
        "COMMAND COUNT x",
        "!ERR wrong number of arguments for 'command|count' command",
    ),
    c(
        "ECHO a b",
        "!ERR wrong number of arguments for 'echo' command",
    ),
    c("HELLO 3 AUTH", "!ERR Syntax error in HELLO option 'AUTH'"),
    c(
        "HELLO 2 SETNAME",
        "!ERR Syntax error in HELLO option 'SETNAME'",
    ),
    c("SCAN 0 COUNT abc", NOT_INT),
    c("SCAN 0 FOO", SYNTAX),
    c3("INFO nosuchsection", "\"\"", "=txt:"),
    c(
        "DBSIZE x",
        "!ERR wrong number of arguments for 'dbsize' command",
    ),
    c(
        "TIME x",
        "!ERR wrong number of arguments for 'time' command",
    ),
    c("KEYS", "!ERR wrong number of arguments for 'keys' command"),
    c("SCAN", "!ERR wrong number of arguments for 'scan' command"),
    c("SCAN abc", "!ERR invalid cursor"),
    c("SCAN 0 COUNT 0", SYNTAX),
    c("SCAN 0 MATCH", SYNTAX),
    // GEO: a geo set is a sorted set of 52-bit geohash scores.
    c(
        "GEOADD geo 13.361389 38.115556 Palermo 15.087269 37.502669 Catania",
        "2",
    ),
    c("TYPE geo", "+zset"),
    c3(
        "ZSCORE geo Palermo",
        "\"3479099956230698\"",
        ",3479099956230698",
    ),
    c("GEOHASH geo Palermo nope", "[\"sqc8b49rny0\", nil]"),
    c3(
        "GEOPOS geo Palermo nope",
        "[[\"13.36138933897018433\", \"38.11555639549629859\"], nil]",
        "[[,13.361389338970184, ,38.1155563954963], nil]",
    ),
    c("GEODIST geo Palermo Catania km", "\"166.2742\""),
    c(
        "GEOSEARCH geo FROMLONLAT 15 37 BYRADIUS 200 km ASC",
        "[\"Catania\", \"Palermo\"]",
    ),
    c(
        "GEOSEARCHSTORE geo2 geo FROMMEMBER Palermo BYBOX 10 10 km",
        "1",
    ),
    c(
        "GEOADD geo 200 1 x",
        "!ERR invalid longitude,latitude pair 200.000000,1.000000",
    ),
];

/// Renders a decoded reply (see [`SCRIPT`]).
fn show(v: &Value) -> String {
    let list = |items: &[Value]| items.iter().map(show).collect::<Vec<_>>().join(", ");
    match v {
        Value::Nil => "nil".into(),
        Value::Int(i) => i.to_string(),
        Value::BulkString(b) => format!("{:?}", String::from_utf8_lossy(b)),
        Value::Array(items) => format!("[{}]", list(items)),
        Value::SimpleString(s) => format!("+{s}"),
        Value::Okay => "OK".into(),
        Value::Map(kv) => format!(
            "{{{}}}",
            kv.iter()
                .map(|(k, v)| format!("{}: {}", show(k), show(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Value::Set(items) => format!("~[{}]", list(items)),
        Value::Double(d) => format!(",{d}"),
        Value::Boolean(b) => format!("#{b}"),
        Value::VerbatimString { format, text } => format!("={format}:{text}"),
        Value::ServerError(e) => format!("!{} {}", e.code(), e.details().unwrap_or("")),
        Value::Attribute { data, .. } => show(data),
        other => format!("{other:?}"),
    }
}

fn show_result(r: redis::RedisResult<Value>) -> String {
    match r {
        Ok(v) => show(&v),
        Err(e) => format!("!{} {}", e.code().unwrap_or("?"), e.detail().unwrap_or("")),
    }
}

fn matches(want: &str, got: &str) -> bool {
    if let Some(range) = want.strip_prefix('~') {
        let (lo, hi) = range.split_once("..").unwrap();
        let (lo, hi): (i64, i64) = (lo.parse().unwrap(), hi.parse().unwrap());
        return got.parse::<i64>().is_ok_and(|n| (lo..=hi).contains(&n));
    }
    want == got
}

fn connect(addr: &str, resp3: bool) -> redis::Connection {
    let url = if resp3 {
        format!("redis://{addr}/?protocol=resp3")
    } else {
        format!("redis://{addr}/")
    };
    let con = redis::Client::open(url).unwrap().get_connection().unwrap();
    con.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    con
}

fn run(con: &mut redis::Connection, line: &str) -> String {
    let mut cmd = redis::Cmd::new();
    for a in line.split(' ') {
        cmd.arg(a);
    }
    show_result(cmd.query::<Value>(con))
}

/// Deletes every key (the proxy has no FLUSHDB).
fn must_delete_everything(con: &mut redis::Connection) {
    let keys: Vec<Vec<u8>> = redis::cmd("KEYS").arg("*").query(con).unwrap();
    if !keys.is_empty() {
        let n: usize = redis::cmd("DEL").arg(&keys).query(con).unwrap();
        assert_eq!(n, keys.len());
    }
    assert_eq!(redis::cmd("DBSIZE").query::<i64>(con).unwrap(), 0);
}

/// Runs the script on a fresh connection; returns every difference.
fn run_script(addr: &str, resp3: bool) -> Vec<String> {
    let mut con = connect(addr, resp3);
    must_delete_everything(&mut con);
    let mut diffs = Vec::new();
    for case in SCRIPT {
        let want = if resp3 && !case.resp3.is_empty() {
            case.resp3
        } else {
            case.resp2
        };
        let got = run(&mut con, case.cmd);
        if !matches(want, &got) {
            let proto = if resp3 { "RESP3" } else { "RESP2" };
            diffs.push(format!(
                "{proto} {:?}\n  want {want}\n  got  {got}",
                case.cmd
            ));
        }
    }
    must_delete_everything(&mut con);
    diffs
}

/// What the target is, for the checks whose answers are the proxy's own.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Target {
    Proxy,
    RedisServer,
}

/// Replies that vary from run to run or server to server, checked by their shape.
fn dynamic_checks(addr: &str, resp3: bool, target: Target) {
    let mut con = connect(addr, resp3);
    must_delete_everything(&mut con);
    let proto = if resp3 { 3 } else { 2 };

    // HELLO: the handshake map (a flat array in RESP2), with this connection's id.
    let hello: Value = redis::cmd("HELLO").arg(proto).query(&mut con).unwrap();
    let fields: Vec<(String, Value)> = match hello {
        Value::Map(kv) => kv
            .into_iter()
            .map(|(k, v)| (redis::from_redis_value(k).unwrap(), v))
            .collect(),
        Value::Array(items) => items
            .chunks(2)
            .map(|p| (redis::from_redis_value(p[0].clone()).unwrap(), p[1].clone()))
            .collect(),
        other => panic!("HELLO answered {other:?}"),
    };
    let names: Vec<&str> = fields.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        names,
        [
            "server", "version", "proto", "id", "mode", "role", "modules"
        ]
    );
    let field = |name: &str| fields.iter().find(|(k, _)| k == name).unwrap().1.clone();
    assert_eq!(show(&field("server")), "\"redis\"");
    assert_eq!(show(&field("version")), "\"7.0.15\"");
    assert_eq!(field("proto"), Value::Int(proto));
    assert_eq!(show(&field("mode")), "\"standalone\"");
    assert_eq!(show(&field("role")), "\"master\"");
    assert_eq!(field("modules"), Value::Array(vec![]));
    let Value::Int(id) = field("id") else {
        panic!("HELLO id");
    };
    assert_eq!(
        redis::cmd("CLIENT")
            .arg("ID")
            .query::<i64>(&mut con)
            .unwrap(),
        id
    );
    assert_eq!(
        run(&mut con, "HELLO 4"),
        "!NOPROTO unsupported protocol version"
    );
    assert_eq!(
        run(&mut con, "HELLO abc"),
        "!ERR Protocol version is not an integer or out of range"
    );

    // TIME: seconds and microseconds, as bulk strings, close to this clock.
    let time: Vec<String> = redis::cmd("TIME").query(&mut con).unwrap();
    assert_eq!(time.len(), 2);
    let secs: u64 = time[0].parse().unwrap();
    let micros: u64 = time[1].parse().unwrap();
    assert!(micros < 1_000_000);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(secs.abs_diff(now) <= 5, "TIME {secs} vs {now}");

    // INFO: text (a verbatim string in RESP3) with Redis's fields.
    let info: Value = redis::cmd("INFO").query(&mut con).unwrap();
    let text = match &info {
        Value::BulkString(b) if !resp3 => String::from_utf8(b.clone()).unwrap(),
        Value::VerbatimString { text, .. } if resp3 => text.clone(),
        other => panic!("INFO answered {other:?}"),
    };
    assert!(text.contains("redis_version:7.0.15\r\n"), "{text}");
    assert!(text.contains("# Clients\r\nconnected_clients:"), "{text}");
    let server: String = redis::cmd("INFO").arg("server").query(&mut con).unwrap();
    assert!(server.starts_with("# Server\r\n"), "{server}");
    assert!(!server.contains("# Clients"), "{server}");

    // COMMAND COUNT: how many commands the server has (the proxy: its own table).
    let count: i64 = redis::cmd("COMMAND").arg("COUNT").query(&mut con).unwrap();
    match target {
        Target::Proxy => assert_eq!(count, proxy::cmd::all_specs().count() as i64),
        Target::RedisServer => assert!(count > 200, "{count}"),
    }

    // COMMAND INFO of every command the proxy has: name, arity, flags, first key, last key and
    // step are the proxy's table, and the same in Redis (ACL categories, tips, key specs and
    // subcommands follow, and differ).
    for spec in proxy::cmd::all_specs() {
        let info: Vec<Vec<Value>> = redis::cmd("COMMAND")
            .arg("INFO")
            .arg(spec.name)
            .query(&mut con)
            .unwrap();
        let got = &info[0];
        let flags = match &got[2] {
            Value::Set(f) | Value::Array(f) => f.iter().map(show).collect::<BTreeSet<_>>(),
            other => panic!("COMMAND INFO {}: flags {other:?}", spec.name),
        };
        let want_flags: BTreeSet<String> = spec.flags.iter().map(|f| format!("+{f}")).collect();
        let want = (
            format!("{:?}", spec.name),
            i64::from(spec.arity),
            want_flags,
            [spec.first, spec.last, spec.step].map(i64::from),
        );
        let int = |v: &Value| redis::from_redis_value::<i64>(v.clone()).unwrap();
        let got = (
            show(&got[0]),
            int(&got[1]),
            flags,
            [int(&got[3]), int(&got[4]), int(&got[5])],
        );
        assert_eq!(got, want, "COMMAND INFO {}", spec.name);
    }

    // CONFIG GET with a pattern: a map in RESP3; the typed API reads either as pairs.
    let cfg: HashMap<String, String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("maxmemory")
        .query(&mut con)
        .unwrap();
    assert_eq!(cfg.get("maxmemory").map(String::as_str), Some("0"));

    // The typed API of the client library over the same commands.
    let () = con.set("t:n", 41).unwrap();
    assert_eq!(con.incr::<_, _, i64>("t:n", 1).unwrap(), 42);
    let () = con.set_ex("t:ex", "v", 100).unwrap();
    assert!((99..=100).contains(&con.ttl::<_, i64>("t:ex").unwrap()));
    let () = con.mset(&[("t:a", "1"), ("t:b", "2")]).unwrap();
    let got: Vec<Option<String>> = con.mget(&["t:a", "t:none", "t:b"]).unwrap();
    assert_eq!(got, [Some("1".into()), None, Some("2".into())]);
    let () = con.hset_multiple("t:h", &[("x", "1"), ("y", "2")]).unwrap();
    let all: HashMap<String, i64> = con.hgetall("t:h").unwrap();
    assert_eq!(all, HashMap::from([("x".into(), 1), ("y".into(), 2)]));
    assert_eq!(con.hincr::<_, _, _, i64>("t:h", "x", 10).unwrap(), 11);
    assert_eq!(
        con.del::<_, i64>(&["t:n", "t:ex", "t:a", "t:b", "t:h"])
            .unwrap(),
        5
    );

    // SCAN with MATCH, COUNT and TYPE; KEYS; DBSIZE.
    let strings: BTreeSet<String> = (0..60).map(|i| format!("scan:s:{i}")).collect();
    let hashes: BTreeSet<String> = (0..12).map(|i| format!("scan:h:{i}")).collect();
    for k in &strings {
        let () = con.set(k, "v").unwrap();
    }
    for k in &hashes {
        let () = con.hset(k, "f", "v").unwrap();
    }
    let () = con.set("other", "v").unwrap();
    assert_eq!(redis::cmd("DBSIZE").query::<i64>(&mut con).unwrap(), 73);
    let scan = |con: &mut redis::Connection, extra: &[&str]| -> Vec<String> {
        let mut cursor = "0".to_string();
        let mut keys = Vec::new();
        let mut rounds = 0;
        loop {
            let (next, batch): (String, Vec<String>) = redis::cmd("SCAN")
                .arg(&cursor)
                .arg(extra)
                .query(con)
                .unwrap();
            keys.extend(batch);
            rounds += 1;
            assert!(rounds < 20_000, "SCAN never finished");
            if next == "0" {
                return keys;
            }
            cursor = next;
        }
    };
    let all = scan(&mut con, &["COUNT", "7"]);
    assert_eq!(all.len(), 73, "SCAN returned a key twice or missed one");
    let want: BTreeSet<String> = strings
        .iter()
        .chain(&hashes)
        .cloned()
        .chain(["other".to_string()])
        .collect();
    assert_eq!(all.into_iter().collect::<BTreeSet<_>>(), want);
    let matched: BTreeSet<String> = scan(&mut con, &["MATCH", "scan:s:1*", "COUNT", "5"])
        .into_iter()
        .collect();
    let want: BTreeSet<String> = strings
        .iter()
        .filter(|k| k.starts_with("scan:s:1"))
        .cloned()
        .collect();
    assert_eq!(matched, want);
    let typed: BTreeSet<String> = scan(&mut con, &["TYPE", "hash"]).into_iter().collect();
    assert_eq!(typed, hashes);
    let typed: BTreeSet<String> = scan(&mut con, &["MATCH", "scan:*", "TYPE", "string"])
        .into_iter()
        .collect();
    assert_eq!(typed, strings);
    assert!(scan(&mut con, &["TYPE", "list"]).is_empty());
    let mut keys: Vec<String> = con.keys("scan:h:*").unwrap();
    keys.sort();
    assert_eq!(keys, hashes.iter().cloned().collect::<Vec<_>>());
    let none: Vec<String> = con.keys("nomatch*").unwrap();
    assert!(none.is_empty());
    must_delete_everything(&mut con);
}

fn script_and_checks(addr: &str, target: Target) -> Vec<String> {
    let mut diffs = Vec::new();
    for resp3 in [false, true] {
        diffs.extend(run_script(addr, resp3));
        if diffs.is_empty() {
            dynamic_checks(addr, resp3, target);
        }
    }
    diffs
}

#[test]
fn every_command_answers_as_redis_does_through_the_redis_crate_in_resp2_and_resp3() {
    let cluster = RealCluster::start(
        "redis-crate",
        1,
        2,
        |m| m.cluster.replication_factor = 1,
        |_| {},
    );
    cluster.must_serve(Duration::from_secs(60));
    let diffs = script_and_checks(&cluster.addr, Target::Proxy);
    assert!(
        diffs.is_empty(),
        "{} differences from the expected replies:\n{}",
        diffs.len(),
        diffs.join("\n")
    );

    // Deliberate differences from Redis (documented in docs/guides/proxy.md).
    let mut con = connect(&cluster.addr, false);
    assert!(
        run(&mut con, "SWAPDB 0 1").starts_with("!ERR SWAPDB is not supported"),
        "SWAPDB is refused"
    );
    // maxmemory is the cluster's (the master holds it): set alone, never with the proxy's
    // own parameters (which could not be taken back if the master refused it).
    assert_eq!(
        run(&mut con, "CONFIG SET maxmemory 1 timeout 0"),
        "!ERR CONFIG SET failed (possibly related to argument 'maxmemory') - maxmemory is the \
         cluster's and is set alone"
    );
    assert_eq!(run(&mut con, "CONFIG SET maxmemory 0"), "OK");
    assert_eq!(
        run(&mut con, "CONFIG GET maxmemory"),
        "[\"maxmemory\", \"0\"]"
    );
    // HSCAN NOVALUES (Redis 7.4's) is accepted.
    let _ = run(&mut con, "HSET nv a 1 b 2");
    assert_eq!(
        run(&mut con, "HSCAN nv 0 NOVALUES"),
        "[\"0\", [\"a\", \"b\"]]"
    );
    let _ = run(&mut con, "DEL nv");
}

/// The expectations of [`SCRIPT`] and [`dynamic_checks`] are what a real Redis answers to
/// the same client library. Skipped (with a message) when `redis-server` is not installed.
#[test]
fn the_expected_replies_are_what_redis_server_answers() {
    let Some(redis) = test_support::redis::start() else {
        return;
    };
    let diffs = script_and_checks(redis.addr(), Target::RedisServer);
    assert!(
        diffs.is_empty(),
        "redis-server differs from the script in {} places:\n{}",
        diffs.len(),
        diffs.join("\n")
    );
}
