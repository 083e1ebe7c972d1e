//! `OBJECT` and `MEMORY USAGE`, and the encoding thresholds of `CONFIG SET`, through the proxy
//! in front of fake DS shards running ds-node's state machine.
#![allow(clippy::unwrap_used)]

mod common;

use common::Env;

#[test]
fn object_encoding_names_what_redis_would_use_for_the_same_contents() {
    let env = Env::start(2);
    let mut c = env.client();
    c.cmd("SET i 12345");
    c.cmd(&format!("SET e {}", "x".repeat(44)));
    c.cmd(&format!("SET r {}", "x".repeat(45)));
    c.cmd("HSET h f v");
    assert_eq!(c.cmd("OBJECT ENCODING i"), "$3\r\nint\r\n");
    assert_eq!(c.cmd("OBJECT ENCODING e"), "$6\r\nembstr\r\n");
    assert_eq!(c.cmd("OBJECT ENCODING r"), "$3\r\nraw\r\n");
    assert_eq!(c.cmd("OBJECT ENCODING h"), "$8\r\nlistpack\r\n");
    assert_eq!(c.cmd("OBJECT ENCODING nokey"), "$-1\r\n");
    // A longer field than hash-max-ziplist-value (an alias of hash-max-listpack-value).
    assert_eq!(c.cmd("CONFIG SET hash-max-ziplist-value 4"), "+OK\r\n");
    c.cmd("HSET h longfield v");
    assert_eq!(c.cmd("OBJECT ENCODING h"), "$9\r\nhashtable\r\n");
    assert_eq!(
        c.cmd("CONFIG GET hash-max-listpack-value"),
        "*2\r\n$23\r\nhash-max-listpack-value\r\n$1\r\n4\r\n"
    );
    assert_eq!(c.cmd("OBJECT REFCOUNT i"), ":1\r\n");
    assert!(
        c.cmd("OBJECT FOO i")
            .starts_with("-ERR unknown subcommand 'FOO'")
    );
    assert!(
        c.cmd("OBJECT ENCODING")
            .starts_with("-ERR wrong number of arguments for 'object|encoding'")
    );
}

#[test]
fn encoding_thresholds_refuse_bad_values_as_redis_does() {
    let env = Env::start(1);
    let mut c = env.client();
    assert_eq!(
        c.cmd("CONFIG SET set-max-intset-entries abc"),
        "-ERR CONFIG SET failed (possibly related to argument 'set-max-intset-entries') - argument couldn't be parsed into an integer\r\n"
    );
    assert_eq!(
        c.cmd("CONFIG SET zset-max-ziplist-value -1"),
        "-ERR CONFIG SET failed (possibly related to argument 'zset-max-listpack-value') - argument must be a memory value\r\n"
    );
    assert_eq!(c.cmd("CONFIG SET list-max-ziplist-size -5"), "+OK\r\n");
    assert_eq!(
        c.cmd("CONFIG GET list-max-ziplist-size"),
        "*2\r\n$21\r\nlist-max-ziplist-size\r\n$2\r\n-5\r\n"
    );
}

#[test]
fn memory_usage_grows_with_the_contents_and_is_nil_for_a_missing_key() {
    let env = Env::start(1);
    let mut c = env.client();
    c.cmd("HSET small f v");
    for i in 0..200 {
        c.cmd(&format!("HSET big field{i} value{i}"));
    }
    let usage = |c: &mut common::Client, cmd: &str| -> i64 {
        let r = c.cmd(cmd);
        r.trim_start_matches(':').trim_end().parse().unwrap()
    };
    let small = usage(&mut c, "MEMORY USAGE small");
    let big = usage(&mut c, "MEMORY USAGE big");
    let big_all = usage(&mut c, "MEMORY USAGE big SAMPLES 0");
    assert!(big > 50 * small, "{big} vs {small}");
    // Every field has the same shape, so a 5-element sample extrapolates within 10%.
    assert!((big - big_all).abs() * 10 < big_all, "{big} vs {big_all}");
    assert_eq!(c.cmd("MEMORY USAGE nokey"), "$-1\r\n");
    assert_eq!(
        c.cmd("MEMORY USAGE big SAMPLES -1"),
        "-ERR syntax error\r\n"
    );
}

#[test]
fn config_set_save_accepts_only_the_empty_schedule() {
    let env = Env::start(1);
    let mut c = env.client();
    assert_eq!(c.cmd_args(&[b"CONFIG", b"SET", b"save", b""]), "+OK\r\n");
    let r = c.cmd_args(&[b"CONFIG", b"SET", b"save", b"900 1"]);
    assert!(
        r.starts_with("-ERR CONFIG SET failed (possibly related to argument 'save') - tierkv takes no RDB snapshots"),
        "{r}"
    );
    assert_eq!(c.cmd("CONFIG GET save"), "*2\r\n$4\r\nsave\r\n$0\r\n\r\n");
}
