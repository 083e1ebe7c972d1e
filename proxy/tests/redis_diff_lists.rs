//! Differential test of the list commands against a real `redis-server`: thousands of random
//! list commands over a few keys and elements (so they collide: pushes meet pops, moves meet
//! keys of another type, indexes fall in and out of range) are sent to Redis and to the proxy,
//! first in RESP2 then in RESP3, and every raw reply must be identical. Keys are in several
//! ranges (moves across ranges included) and in one (`{t}` hash tag). Skipped when
//! `redis-server` is not installed, except under `CI=true`, where that fails.
#![allow(clippy::unwrap_used)]

mod common;

use common::{Client, Env};

/// A small deterministic generator (xorshift).
struct Gen(u64);

impl Gen {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        usize::try_from(self.0 % n as u64).unwrap()
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }

    fn index(&mut self) -> String {
        let i = i64::try_from(self.below(11)).unwrap() - 5;
        i.to_string()
    }
}

const KEYS: &[&str] = &["a", "b", "c", "{t}a", "{t}b", "s"];
const ELEMS: &[&str] = &["x", "y", "z"];
const SIDES: &[&str] = &["LEFT", "RIGHT", "left", "UP"];

fn command(g: &mut Gen) -> String {
    let k = g.pick(KEYS);
    let e = g.pick(ELEMS);
    let k2 = g.pick(KEYS);
    match g.below(24) {
        0..=3 => {
            let cmd = g.pick(&["LPUSH", "RPUSH", "LPUSHX", "RPUSHX"]);
            let n = 1 + g.below(3);
            let elems: Vec<&str> = (0..n).map(|_| g.pick(ELEMS)).collect();
            format!("{cmd} {k} {}", elems.join(" "))
        }
        4 | 5 => {
            let cmd = g.pick(&["LPOP", "RPOP"]);
            match g.below(4) {
                0 => format!("{cmd} {k} {}", g.pick(&["0", "-1", "abc", "1 2"])),
                1 | 2 => format!("{cmd} {k} {}", 1 + g.below(3)),
                _ => format!("{cmd} {k}"),
            }
        }
        6 => format!("LLEN {k}"),
        7 | 8 => format!("LRANGE {k} {} {}", g.index(), g.index()),
        9 => format!("LINDEX {k} {}", g.index()),
        10 => format!("LSET {k} {} {e}", g.index()),
        11 => {
            let at = g.pick(&["BEFORE", "AFTER", "after", "NEAR"]);
            format!("LINSERT {k} {at} {} {e}", g.pick(ELEMS))
        }
        12 => format!("LREM {k} {} {e}", g.index()),
        13 => format!("LTRIM {k} {} {}", g.index(), g.index()),
        14 => {
            let mut line = format!("LPOS {k} {e}");
            for _ in 0..g.below(3) {
                let opt = g.pick(&["RANK", "COUNT", "MAXLEN", "BAD"]);
                line.push_str(&format!(" {opt} {}", g.index()));
            }
            line
        }
        15 | 16 => format!("LMOVE {k} {k2} {} {}", g.pick(SIDES), g.pick(SIDES)),
        17 => format!("RPOPLPUSH {k} {k2}"),
        18 => {
            let n = g.below(4);
            let keys: Vec<&str> = (0..n.max(1)).map(|_| g.pick(KEYS)).collect();
            let count = match g.below(3) {
                0 => String::new(),
                1 => format!(" COUNT {}", g.index()),
                _ => format!(" COUNT {}", 1 + g.below(3)),
            };
            format!("LMPOP {n} {} {}{count}", keys.join(" "), g.pick(SIDES))
        }
        19 => {
            let cmd = g.pick(&["BLPOP", "BRPOP"]);
            format!("{cmd} {k} {k2} {}", g.pick(&["0.01", "-1", "x"]))
        }
        20 => format!("BLMOVE {k} {k2} {} {} 0.01", g.pick(SIDES), g.pick(SIDES)),
        21 => format!("BLMPOP 0.01 2 {k} {k2} {} COUNT 2", g.pick(SIDES)),
        22 => format!("BRPOPLPUSH {k} {k2} 0.01"),
        _ => match g.below(4) {
            0 => format!("DEL {k}"),
            1 => "SET s str".into(),
            2 => format!("TYPE {k}"),
            _ => format!("EXISTS {k}"),
        },
    }
}

fn args(line: &str) -> Vec<&[u8]> {
    line.split(' ').map(str::as_bytes).collect()
}

#[test]
fn random_list_commands_reply_byte_identically_to_redis_server() {
    let Some(redis) = test_support::redis::start() else {
        return;
    };
    let env = Env::start(4);
    let mut r = Client::connect(redis.addr());
    let mut p = env.client();
    let mut g = Gen(0x9e37_79b9_7f4a_7c15);
    let (mut diffs, mut non_empty) = (Vec::new(), 0);
    for i in 0..4000 {
        if i == 2000 {
            for c in [&mut r, &mut p] {
                c.cmd("HELLO 3");
            }
        }
        let line = command(&mut g);
        let want = r.cmd_args(&args(&line));
        let got = p.cmd_args(&args(&line));
        // Replies carrying elements: a non-empty array or a bulk string.
        let elements =
            (want.starts_with('*') && !want.starts_with("*0") && !want.starts_with("*-"))
                || (want.starts_with('$') && !want.starts_with("$-"));
        non_empty += usize::from(elements);
        if want != got {
            diffs.push(format!(
                "#{i} {line:?}\n  redis: {want:?}\n  proxy: {got:?}"
            ));
        }
    }
    assert!(
        diffs.is_empty(),
        "{} differences:\n{}",
        diffs.len(),
        diffs
            .iter()
            .take(30)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    // The comparison means something: many replies carry elements.
    assert!(non_empty > 600, "only {non_empty} replies carry elements");
}
