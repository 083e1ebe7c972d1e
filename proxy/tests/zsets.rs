//! Sorted sets through the proxy on the fake cluster (ds-node's real apply step): replies in
//! RESP2 and RESP3, scores (inf, -inf, -0, %.17g), WRONGTYPE, and the multi-key commands with
//! their keys in one range (one operation) and across ranges (read, compute, write).
#![allow(clippy::unwrap_used)]

mod common;

use common::{Client, Env};

fn resp3(c: &mut Client) {
    assert!(c.cmd("HELLO 3").starts_with('%'));
}

#[test]
fn zadd_zscore_and_zrange_answer_as_redis_in_resp2() {
    let env = Env::start(4);
    let mut c = env.client();
    assert_eq!(c.cmd("ZADD z 1 a 2.5 b 0.1 c"), ":3\r\n");
    assert_eq!(c.cmd("ZSCORE z c"), "$19\r\n0.10000000000000001\r\n");
    assert_eq!(c.cmd("ZSCORE z nope"), "$-1\r\n");
    assert_eq!(
        c.cmd("ZRANGE z 0 -1 WITHSCORES"),
        "*6\r\n$1\r\nc\r\n$19\r\n0.10000000000000001\r\n$1\r\na\r\n$1\r\n1\r\n$1\r\nb\r\n$3\r\n2.5\r\n"
    );
    assert_eq!(c.cmd("ZRANK z b"), ":2\r\n");
    assert_eq!(c.cmd("ZREVRANK z b"), ":0\r\n");
    assert_eq!(c.cmd("ZCARD z"), ":3\r\n");
    assert_eq!(c.cmd("ZINCRBY z 1 a"), "$1\r\n2\r\n");
    assert_eq!(c.cmd("ZADD z XX CH GT 0 a 5 b"), ":1\r\n");
    assert_eq!(c.cmd("ZADD z INCR NX 1 a"), "$-1\r\n");
}

#[test]
fn withscores_and_scores_are_pairs_and_doubles_in_resp3() {
    let env = Env::start(4);
    let mut c = env.client();
    resp3(&mut c);
    assert_eq!(c.cmd("ZADD z 1 a 2 b"), ":2\r\n");
    assert_eq!(c.cmd("ZSCORE z a"), ",1\r\n");
    assert_eq!(
        c.cmd("ZRANGE z 0 -1 WITHSCORES"),
        "*2\r\n*2\r\n$1\r\na\r\n,1\r\n*2\r\n$1\r\nb\r\n,2\r\n"
    );
    assert_eq!(c.cmd("ZMSCORE z a x"), "*2\r\n,1\r\n_\r\n");
    assert_eq!(c.cmd("ZPOPMIN z"), "*2\r\n$1\r\na\r\n,1\r\n");
    assert_eq!(c.cmd("ZPOPMAX z 1"), "*1\r\n*2\r\n$1\r\nb\r\n,2\r\n");
    assert_eq!(c.cmd("EXISTS z"), ":0\r\n");
}

#[test]
fn infinities_negative_zero_and_nan_follow_redis() {
    let env = Env::start(4);
    let mut c = env.client();
    assert_eq!(c.cmd("ZADD z inf a -inf b -0 c"), ":3\r\n");
    assert_eq!(c.cmd("ZSCORE z a"), "$3\r\ninf\r\n");
    assert_eq!(c.cmd("ZSCORE z b"), "$4\r\n-inf\r\n");
    assert_eq!(c.cmd("ZSCORE z c"), "$1\r\n0\r\n", "-0 is stored as 0");
    assert_eq!(
        c.cmd("ZINCRBY n -0 m"),
        "$2\r\n-0\r\n",
        "the reply is the sum"
    );
    assert_eq!(
        c.cmd("ZINCRBY z -inf a"),
        "-ERR resulting score is not a number (NaN)\r\n"
    );
    assert_eq!(c.cmd("ZADD z nan x"), "-ERR value is not a valid float\r\n");
    assert_eq!(
        c.cmd("ZRANGEBYSCORE z x 1"),
        "-ERR min or max is not a float\r\n"
    );
    assert_eq!(c.cmd("ZCOUNT z (-inf +inf"), ":2\r\n");
    assert_eq!(c.cmd("ZCOUNT z -0 0"), ":1\r\n");
}

#[test]
fn commands_on_another_type_are_wrongtype() {
    let env = Env::start(4);
    let mut c = env.client();
    c.cmd("SET s x");
    let wrong = "-WRONGTYPE Operation against a key holding the wrong kind of value\r\n";
    for cmd in [
        "ZADD s 1 a",
        "ZSCORE s a",
        "ZRANGE s 0 -1",
        "ZCARD s",
        "ZPOPMIN s",
        "ZRANK s a",
        "ZUNION 1 s",
        "ZRANDMEMBER s",
        "ZSCAN s 0",
    ] {
        assert_eq!(c.cmd(cmd), wrong, "{cmd}");
    }
}

#[test]
fn store_forms_in_one_range_and_across_ranges_give_the_same_result() {
    let env = Env::start(4);
    let mut c = env.client();
    // {t}: one range. a, b, d: with 4 ranges over the slots, several ranges.
    for (x, y, d) in [("{t}x", "{t}y", "{t}d"), ("a", "b", "d")] {
        c.cmd(&format!("ZADD {x} 1 m 2 n"));
        c.cmd(&format!("ZADD {y} 3 n 4 o"));
        assert_eq!(
            c.cmd(&format!("ZUNIONSTORE {d} 2 {x} {y} WEIGHTS 1 2")),
            ":3\r\n"
        );
        assert_eq!(
            c.cmd(&format!("ZRANGE {d} 0 -1 WITHSCORES")),
            "*6\r\n$1\r\nm\r\n$1\r\n1\r\n$1\r\nn\r\n$1\r\n8\r\n$1\r\no\r\n$1\r\n8\r\n"
        );
        assert_eq!(c.cmd(&format!("ZINTERSTORE {d} 2 {x} {y}")), ":1\r\n");
        assert_eq!(c.cmd(&format!("ZSCORE {d} n")), "$1\r\n5\r\n");
        assert_eq!(c.cmd(&format!("ZDIFFSTORE {d} 2 {y} {x}")), ":1\r\n");
        assert_eq!(c.cmd(&format!("ZINTERCARD 2 {x} {y}")), ":1\r\n");
        assert_eq!(
            c.cmd(&format!("ZUNION 2 {x} {y} AGGREGATE MAX")),
            "*3\r\n$1\r\nm\r\n$1\r\nn\r\n$1\r\no\r\n"
        );
        assert_eq!(c.cmd(&format!("ZRANGESTORE {d} {y} 0 0")), ":1\r\n");
        assert_eq!(c.cmd(&format!("ZRANGE {d} 0 -1")), "*1\r\n$1\r\nn\r\n");
        assert_eq!(c.cmd(&format!("ZINTERSTORE {d} 2 {x} nokey")), ":0\r\n");
        assert_eq!(c.cmd(&format!("EXISTS {d}")), ":0\r\n");
        assert_eq!(
            c.cmd(&format!("ZMPOP 2 nokey {y} MAX COUNT 5")),
            format!(
                "*2\r\n${}\r\n{y}\r\n*2\r\n*2\r\n$1\r\no\r\n$1\r\n4\r\n*2\r\n$1\r\nn\r\n$1\r\n3\r\n",
                y.len()
            )
        );
        assert_eq!(c.cmd(&format!("EXISTS {y}")), ":0\r\n");
    }
}

#[test]
fn a_store_across_ranges_reads_sets_as_score_one_and_refuses_other_types() {
    let env = Env::start(4);
    let mut c = env.client();
    c.cmd("ZADD a 2 m");
    c.cmd("SET b x");
    assert!(c.cmd("ZUNIONSTORE d 2 a b").starts_with("-WRONGTYPE"));
    assert_eq!(c.cmd("EXISTS d"), ":0\r\n");
}

#[test]
fn lex_ranges_seek_within_equal_scores() {
    let env = Env::start(4);
    let mut c = env.client();
    c.cmd("ZADD l 0 a 0 b 0 c 0 d");
    assert_eq!(c.cmd("ZRANGEBYLEX l [b (d"), "*2\r\n$1\r\nb\r\n$1\r\nc\r\n");
    assert_eq!(
        c.cmd("ZREVRANGEBYLEX l + (b LIMIT 1 5"),
        "*1\r\n$1\r\nc\r\n"
    );
    assert_eq!(c.cmd("ZLEXCOUNT l - +"), ":4\r\n");
    assert_eq!(
        c.cmd("ZRANGEBYLEX l b c"),
        "-ERR min or max not valid string range item\r\n"
    );
    assert_eq!(c.cmd("ZREMRANGEBYLEX l - [b"), ":2\r\n");
    assert_eq!(c.cmd("ZCARD l"), ":2\r\n");
}

#[test]
fn option_errors_match_redis_texts() {
    let env = Env::start(1);
    let mut c = env.client();
    for (cmd, want) in [
        (
            "ZADD z NX XX 1 a",
            "-ERR XX and NX options at the same time are not compatible\r\n",
        ),
        (
            "ZADD z GT LT 1 a",
            "-ERR GT, LT, and/or NX options at the same time are not compatible\r\n",
        ),
        (
            "ZADD z INCR 1 a 2 b",
            "-ERR INCR option supports a single increment-element pair\r\n",
        ),
        ("ZADD z 1 a b", "-ERR syntax error\r\n"),
        (
            "ZRANGE z 0 1 LIMIT 0 1",
            "-ERR syntax error, LIMIT is only supported in combination with either BYSCORE or BYLEX\r\n",
        ),
        (
            "ZRANGE z a b BYLEX WITHSCORES",
            "-ERR syntax error, WITHSCORES not supported in combination with BYLEX\r\n",
        ),
        (
            "ZUNION 0 z",
            "-ERR at least 1 input key is needed for 'zunion' command\r\n",
        ),
        (
            "ZUNION 1 z WEIGHTS x",
            "-ERR weight value is not a float\r\n",
        ),
        ("ZMPOP 0 z MIN", "-ERR numkeys should be greater than 0\r\n"),
        (
            "ZMPOP 1 z MIN COUNT 0",
            "-ERR count should be greater than 0\r\n",
        ),
        (
            "ZPOPMIN z -1",
            "-ERR value is out of range, must be positive\r\n",
        ),
        (
            "ZPOPMIN z x",
            "-ERR value is out of range, must be positive\r\n",
        ),
        ("ZMPOP x z MIN", "-ERR numkeys should be greater than 0\r\n"),
        (
            "ZMPOP 1 z MIN COUNT x",
            "-ERR count should be greater than 0\r\n",
        ),
        (
            "ZRANDMEMBER z -9223372036854775808",
            "-ERR value is out of range, value must between -9223372036854775807 and 9223372036854775807\r\n",
        ),
        (
            "ZINTERCARD 1 z LIMIT -1",
            "-ERR LIMIT can't be negative\r\n",
        ),
        (
            "ZRANGE z x 1",
            "-ERR value is not an integer or out of range\r\n",
        ),
    ] {
        assert_eq!(c.cmd(cmd), want, "{cmd}");
    }
}

#[test]
fn zscan_and_zrandmember_cover_the_members() {
    let env = Env::start(4);
    let mut c = env.client();
    c.cmd("ZADD z 1 a 1e17 b 1.5 c");
    assert_eq!(
        c.cmd("ZSCAN z 0 MATCH [ab]"),
        "*2\r\n$1\r\n0\r\n*4\r\n$1\r\na\r\n$1\r\n1\r\n$1\r\nb\r\n$18\r\n100000000000000000\r\n"
    );
    assert_eq!(c.cmd("ZRANDMEMBER z 0"), "*0\r\n");
    assert_eq!(c.cmd("ZRANDMEMBER nokey"), "$-1\r\n");
    let r = c.cmd("ZRANDMEMBER z 10");
    assert!(r.starts_with("*3\r\n"), "{r}");
    for m in ["a", "b", "c"] {
        assert!(r.contains(&format!("$1\r\n{m}\r\n")), "{r}");
    }
    assert!(c.cmd("ZRANDMEMBER z -7").starts_with("*7\r\n"));
}
