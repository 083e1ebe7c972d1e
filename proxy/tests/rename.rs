//! RENAME, RENAMENX and COPY through the proxy, in front of fake DS shards running ds-node's
//! state machine.
#![allow(clippy::unwrap_used)]

mod common;

use common::Env;

#[test]
fn rename_renamenx_and_copy_answer_as_redis() {
    let env = Env::start(1);
    let mut c = env.client();
    assert_eq!(c.cmd("RENAME nokey b"), "-ERR no such key\r\n");
    c.cmd("SET a 1");
    assert_eq!(c.cmd("RENAME a a"), "+OK\r\n");
    assert_eq!(c.cmd("RENAMENX a a"), ":0\r\n");
    assert_eq!(
        c.cmd("COPY a a"),
        "-ERR source and destination objects are the same\r\n"
    );
    assert_eq!(c.cmd("COPY a b DB 0"), ":1\r\n");
    assert_eq!(c.cmd("COPY a b"), ":0\r\n");
    assert_eq!(c.cmd("COPY a b DB 16"), "-ERR DB index is out of range\r\n");
    assert_eq!(c.cmd("COPY a b DB 1"), ":1\r\n");
    assert_eq!(
        c.cmd("COPY a b DB x"),
        "-ERR value is not an integer or out of range\r\n"
    );
    assert_eq!(c.cmd("COPY a b FOO"), "-ERR syntax error\r\n");
    assert_eq!(c.cmd("RENAMENX a b"), ":0\r\n");
    assert_eq!(c.cmd("HSET h f v"), ":1\r\n");
    assert_eq!(c.cmd("RENAME h a"), "+OK\r\n");
    assert_eq!(c.cmd("TYPE a"), "+hash\r\n");
    assert_eq!(c.cmd("HGET a f"), "$1\r\nv\r\n");
    assert_eq!(c.cmd("EXISTS h"), ":0\r\n");
}

#[test]
fn rename_across_ranges_is_refused_with_crossslot_and_hash_tags_keep_keys_together() {
    let env = Env::start(4);
    let mut c = env.client();
    c.cmd("SET {user1}a 1");
    assert_eq!(c.cmd("RENAME {user1}a {user1}b"), "+OK\r\n");
    // Find a key that lives in another range than "{user1}b".
    let mut refused = false;
    for i in 0..64 {
        let r = c.cmd(&format!("RENAME {{user1}}b other{i}"));
        if r == "+OK\r\n" {
            c.cmd(&format!("RENAME other{i} {{user1}}b"));
            continue;
        }
        assert!(r.contains("CROSSSLOT"), "{r}");
        refused = true;
        break;
    }
    assert!(refused, "4 ranges: some key falls in another range");
    assert_eq!(c.cmd("GET {user1}b"), "$1\r\n1\r\n", "nothing moved");
}
