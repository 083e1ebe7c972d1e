//! ACL against a real `redis-server`: the same commands go to Redis and to the proxy (over
//! four ranges), and every reply must be identical — `ACL SETUSER` and its errors,
//! `GETUSER`, `LIST`, `DRYRUN`, `CAT`, `DELUSER`, `AUTH` as another user, `NOPERM` refusals
//! of commands, keys and subcommands (inside `MULTI` too), and a restricted user's scripts:
//! their calls checked and `redis.acl_check_cmd` answered on the DS node that runs them.
#![allow(clippy::unwrap_used)]

mod common;

use common::diff::Differ;
use common::{Client, Env};

const SETUP: &[&str] = &[
    "ACL SETUSER bob on >123 +@scripting +set ~x* &news.*",
    "ACL GETUSER bob",
    "ACL SETUSER c +@all -get %R~a* %W~b* &ch* on nopass +select|0",
    "ACL GETUSER c",
    // A user with several single-command rules is not described here: Redis lists them in
    // its dictionary's order, which differs from run to run (`proxy/src/acl/tests.rs` checks
    // such a description against one captured from redis-server).
    "ACL LIST",
    "ACL USERS",
    "ACL SETUSER e +config|get|x",
    "ACL SETUSER e +nosuch",
    "ACL SETUSER e ~a allkeys ~b",
    "ACL SETUSER e foo",
    "ACL SETUSER e <nopass",
    "ACL SETUSER e #abc",
    "ACL GETUSER e",
    "ACL DRYRUN bob get x",
    "ACL DRYRUN bob set y 1",
    "ACL DRYRUN bob set x 1",
    "ACL DRYRUN c get a1",
    "ACL DRYRUN c set a1 v",
    "ACL DRYRUN c set b1 v",
    "ACL SETUSER d2 -@all +select|0 +config|get",
    "ACL DRYRUN d2 config get maxmemory",
    "ACL DRYRUN d2 config set maxmemory 1",
    "ACL DRYRUN d2 select 0",
    "ACL DRYRUN d2 select 1",
    "ACL DRYRUN c set b1 v get",
    "ACL DRYRUN nosuch get x",
    "ACL DRYRUN bob nocmd",
    "ACL DRYRUN bob get",
    "ACL CAT nosuch",
    "ACL DELUSER default",
    "ACL DELUSER e nosuch",
    "ACL WHOAMI",
    "ACL GENPASS 0",
    "ACL nosuch",
    "AUTH bob 1234",
    "AUTH nosuch 123",
    "AUTH bob 123",
    "ACL WHOAMI",
    "GET x",
    "SET x1 v",
    "SET y1 v",
    "PUBLISH news.a m",
    "MULTI",
    "SET x2 v",
    "GET x2",
    "EXEC",
];

/// The bulk strings of a flat array reply, sorted (`ACL CAT`: Redis lists a category's
/// commands in its dictionary's order).
fn sorted(_: &str, reply: &str) -> String {
    let mut lines: Vec<&str> = reply.split("\r\n").skip(1).collect();
    lines.sort_unstable();
    lines.join("\n")
}

#[test]
fn acl_commands_and_refusals_reply_as_redis_server_does() {
    let Some(redis) = test_support::redis::start() else {
        return;
    };
    let env = Env::start(4);
    let mut d = Differ::new(Client::connect(redis.addr()), env.client());
    for line in SETUP {
        d.check(line);
    }
    for cat in ["ACL CAT", "ACL CAT hyperloglog", "ACL CAT scripting"] {
        d.check_as(cat, sorted);
    }
    d.assert_same();
}

#[test]
fn a_restricted_users_scripts_are_checked_where_they_run() {
    let Some(redis) = test_support::redis::start() else {
        return;
    };
    let env = Env::start(4);
    let mut d = Differ::new(Client::connect(redis.addr()), env.client());
    d.check("ACL SETUSER bob on >123 +@scripting +set ~x*");
    d.check("AUTH bob 123");
    let scripts: &[&[&[u8]]] = &[
        &[
            b"EVAL",
            b"return redis.acl_check_cmd('set','xx',1)",
            b"1",
            b"xx",
        ],
        &[
            b"EVAL",
            b"return redis.acl_check_cmd('hset','xx','f',1)",
            b"1",
            b"xx",
        ],
        &[b"EVAL", b"return redis.acl_check_cmd('set','yy',1)", b"0"],
        &[b"EVAL", b"return redis.acl_check_cmd('nosuch','yy')", b"0"],
        &[b"EVAL", b"return redis.call('set','xx','1')", b"1", b"xx"],
        &[
            b"EVAL",
            b"return redis.call('hset','xx','f','1')",
            b"1",
            b"xx",
        ],
        &[
            b"EVAL",
            b"return redis.pcall('hset','xx','f','1')",
            b"1",
            b"xx",
        ],
        &[
            b"EVAL",
            b"return redis.call('set','{xx}y','1')",
            b"1",
            b"xx",
        ],
    ];
    for args in scripts {
        let want = d.redis.cmd_args(args);
        let got = d.proxy.cmd_args(args);
        assert_eq!(got, want, "{:?}", String::from_utf8_lossy(args[1]));
    }
    // Back to `default`: the same scripts run unchecked.
    d.check("AUTH default anything");
    let args: &[&[u8]] = &[
        b"EVAL",
        b"return redis.call('hset','xx2','f','1')",
        b"1",
        b"xx2",
    ];
    assert_eq!(d.proxy.cmd_args(args), d.redis.cmd_args(args));
    d.assert_same();
}

#[test]
fn a_deleted_users_connections_are_closed_and_changes_apply_at_once() {
    let env = Env::start(1);
    let mut admin = env.client();
    let mut bob = env.client();
    assert_eq!(admin.cmd("ACL SETUSER bob on nopass +@all ~*"), "+OK\r\n");
    assert_eq!(bob.cmd("AUTH bob x"), "+OK\r\n");
    assert_eq!(bob.cmd("SET k v"), "+OK\r\n");
    assert_eq!(admin.cmd("ACL SETUSER bob -set"), "+OK\r\n");
    assert_eq!(
        bob.cmd("SET k v"),
        "-NOPERM this user has no permissions to run the 'set' command\r\n"
    );
    let log = admin.cmd("ACL LOG 1");
    assert!(
        log.contains("$7\r\ncommand\r\n") && log.contains("$3\r\nbob\r\n"),
        "{log}"
    );
    assert_eq!(admin.cmd("ACL DELUSER bob"), ":1\r\n");
    bob.send(b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n");
    assert!(
        bob.read_reply().is_none(),
        "the connection is closed, with no reply"
    );
}
