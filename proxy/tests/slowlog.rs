//! `SLOWLOG` through the proxy's connection loop (`proxy::slowlog`): what a connection logs
//! once `slowlog-log-slower-than` lets it (arguments, client address and name, newest first),
//! that `EXEC` itself is not logged, and that a negative threshold turns logging off.
#![allow(clippy::unwrap_used)]

mod common;

use common::Env;

#[test]
fn commands_over_the_threshold_are_logged_with_their_client_newest_first() {
    let env = Env::start(2);
    let mut c = env.client();
    assert_eq!(
        c.cmd("CONFIG GET slowlog-log-slower-than"),
        "*2\r\n$23\r\nslowlog-log-slower-than\r\n$5\r\n10000\r\n"
    );
    assert_eq!(c.cmd("SLOWLOG LEN"), ":0\r\n");
    assert_eq!(c.cmd("CLIENT SETNAME logged"), "+OK\r\n");
    assert_eq!(c.cmd("CONFIG SET slowlog-log-slower-than 0"), "+OK\r\n");
    assert_eq!(c.cmd("SET k v"), "+OK\r\n");
    assert_eq!(c.cmd("MULTI"), "+OK\r\n");
    assert_eq!(c.cmd("INCR n"), "+QUEUED\r\n");
    assert_eq!(c.cmd("EXEC"), "*1\r\n:1\r\n");
    // Newest first: the MULTI, the SET, the CONFIG SET; neither the queued INCR nor the EXEC.
    let got = c.cmd("SLOWLOG GET 3");
    let entries: Vec<&str> = got.split("\r\n").collect();
    assert!(got.starts_with("*3\r\n*6\r\n"), "{got:?}");
    let multi_at = entries.iter().position(|l| *l == "MULTI").unwrap();
    let set_at = entries.iter().position(|l| *l == "SET").unwrap();
    assert!(multi_at < set_at, "{got:?}");
    assert!(!got.contains("EXEC") && !got.contains("INCR"), "{got:?}");
    assert!(got.contains("$6\r\nlogged\r\n"), "{got:?}");
    assert!(got.contains("127.0.0.1:"), "{got:?}");
    assert_eq!(
        c.cmd("SLOWLOG GET -2"),
        "-ERR count should be greater than or equal to -1\r\n"
    );
    // Off: nothing more is logged (not even the CONFIG SET that turned it off).
    assert_eq!(c.cmd("CONFIG SET slowlog-log-slower-than -1"), "+OK\r\n");
    let len = c.cmd("SLOWLOG LEN");
    assert_eq!(c.cmd("GET k"), "$1\r\nv\r\n");
    assert_eq!(c.cmd("SLOWLOG LEN"), len);
    assert_eq!(c.cmd("SLOWLOG RESET"), "+OK\r\n");
    assert_eq!(c.cmd("SLOWLOG LEN"), ":0\r\n");
}
