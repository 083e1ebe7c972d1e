//! Bitmap commands against a real `redis-server`: edge cases and thousands of random
//! SETBIT/GETBIT/BITCOUNT/BITPOS/BITFIELD/BITOP commands sent to both; every reply must be
//! byte-identical. Fails under `CI=true` when redis-server is missing (test-support).
#![allow(clippy::unwrap_used)]

mod common;

use common::{Client, Env};

const SCRIPT: &[&str] = &[
    "SETBIT b 7 1",
    "SETBIT b 7 1",
    "SETBIT b 100 1",
    "GETBIT b 100",
    "GETBIT b 1000000",
    "GETBIT nokey 3",
    "SETBIT b -1 1",
    "SETBIT b 4294967296 1",
    "SETBIT b 1 2",
    "SETBIT b 1 x",
    "GETBIT b x",
    "SET s foobar",
    "BITCOUNT s",
    "BITCOUNT s 0 0",
    "BITCOUNT s 1 1",
    "BITCOUNT s 1 1 BIT",
    "BITCOUNT s 5 30 BIT",
    "BITCOUNT s -1 -2",
    "BITCOUNT s -2 -1",
    "BITCOUNT s 0 100",
    "BITCOUNT s 0",
    "BITCOUNT s 0 1 FOO",
    "BITCOUNT nokey",
    "BITPOS s 0",
    "BITPOS s 1",
    "BITPOS s 1 2",
    "BITPOS s 1 2 -1 BYTE",
    "BITPOS s 1 7 15 BIT",
    "BITPOS s 0 0 -1",
    "BITPOS s 2",
    "BITPOS nokey 0",
    "BITPOS nokey 1",
    "SET e \"\"",
    "BITPOS e 0",
    "BITFIELD bf SET i8 0 100 GET u4 0 INCRBY i5 #1 7",
    "BITFIELD bf OVERFLOW SAT INCRBY u2 100 5 OVERFLOW FAIL INCRBY u2 100 1 OVERFLOW WRAP INCRBY u2 100 3",
    "BITFIELD bf SET u8 0 -1 GET i8 0",
    "BITFIELD bf GET i64 0 GET u63 1",
    "BITFIELD bf GET u64 0",
    "BITFIELD bf GET i0 0",
    "BITFIELD bf OVERFLOW MAYBE",
    "BITFIELD bf FOO",
    "BITFIELD bf GET i8",
    "BITFIELD_RO bf GET i8 0",
    "BITFIELD_RO bf SET i8 0 1",
    "BITFIELD nokey2",
    "BITFIELD_RO nokey GET u8 16",
    "BITOP AND d s b",
    "GET d",
    "BITOP OR d s b nokey",
    "GET d",
    "BITOP XOR d s s",
    "GET d",
    "BITOP NOT d s",
    "GET d",
    "BITOP NOT d s b",
    "BITOP FOO d s",
    "BITOP OR d nokey nokey2",
    "EXISTS d",
    "HSET h f v",
    "SETBIT h 1 1",
    "BITCOUNT h",
    "BITOP OR d h",
];

use common::script_args as args;

fn compare(r: &mut Client, p: &mut Client, lines: &[String]) -> Vec<String> {
    let mut diffs = Vec::new();
    for line in lines {
        let a = args(line);
        let a: Vec<&[u8]> = a.iter().map(Vec::as_slice).collect();
        let want = r.cmd_args(&a);
        let got = p.cmd_args(&a);
        if want != got {
            diffs.push(format!("{line:?}\n  redis: {want:?}\n  proxy: {got:?}"));
        }
    }
    diffs
}

#[test]
fn bitmap_edge_cases_reply_as_redis_server() {
    let Some(redis) = test_support::redis::start() else {
        return;
    };
    let env = Env::start(2);
    let mut r = Client::connect(redis.addr());
    let mut p = env.client();
    let lines: Vec<String> = SCRIPT.iter().map(|s| s.to_string()).collect();
    let diffs = compare(&mut r, &mut p, &lines);
    assert!(
        diffs.is_empty(),
        "{} differences:\n{}",
        diffs.len(),
        diffs.join("\n")
    );
}

/// xorshift64*: a fixed sequence, so a failure replays.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
    fn int(&mut self, lo: i64, hi: i64) -> i64 {
        lo + self.below((hi - lo + 1) as u64) as i64
    }
}

fn random_command(rng: &mut Rng) -> String {
    let key = ["{b}k1", "{b}k2", "{b}k3"][rng.below(3) as usize];
    let ty = |rng: &mut Rng| {
        if rng.below(2) == 0 {
            format!("i{}", rng.int(1, 64))
        } else {
            format!("u{}", rng.int(1, 63))
        }
    };
    let unit = |rng: &mut Rng| ["", " BIT", " BYTE"][rng.below(3) as usize].to_string();
    match rng.below(7) {
        0 => format!("SETBIT {key} {} {}", rng.int(0, 200), rng.below(2)),
        1 => format!("GETBIT {key} {}", rng.int(0, 220)),
        2 => format!(
            "BITCOUNT {key} {} {}{}",
            rng.int(-30, 30),
            rng.int(-30, 30),
            unit(rng)
        ),
        3 => match rng.below(3) {
            0 => format!("BITPOS {key} {}", rng.below(2)),
            1 => format!("BITPOS {key} {} {}", rng.below(2), rng.int(-30, 30)),
            _ => format!(
                "BITPOS {key} {} {} {}{}",
                rng.below(2),
                rng.int(-30, 30),
                rng.int(-30, 30),
                unit(rng)
            ),
        },
        4 => {
            let mut c = format!("BITFIELD {key}");
            for _ in 0..rng.int(1, 3) {
                let t = ty(rng);
                let off = rng.int(0, 150);
                match rng.below(4) {
                    0 => c += &format!(" GET {t} {off}"),
                    1 => c += &format!(" SET {t} {off} {}", rng.int(-300, 300)),
                    2 => c += &format!(" INCRBY {t} {off} {}", rng.int(-300, 300)),
                    _ => {
                        c += [" OVERFLOW WRAP", " OVERFLOW SAT", " OVERFLOW FAIL"]
                            [rng.below(3) as usize]
                    }
                }
            }
            c
        }
        5 => {
            let op = ["AND", "OR", "XOR", "NOT"][rng.below(4) as usize];
            if op == "NOT" {
                format!("BITOP NOT {key} {{b}}k{}", rng.int(1, 3))
            } else {
                format!("BITOP {op} {key} {{b}}k1 {{b}}k{}", rng.int(2, 3))
            }
        }
        _ => format!("GET {key}"),
    }
}

#[test]
fn random_bitmap_commands_reply_as_redis_server() {
    let Some(redis) = test_support::redis::start() else {
        return;
    };
    let env = Env::start(2);
    let mut r = Client::connect(redis.addr());
    let mut p = env.client();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let lines: Vec<String> = (0..3000).map(|_| random_command(&mut rng)).collect();
    let diffs = compare(&mut r, &mut p, &lines);
    assert!(
        diffs.is_empty(),
        "{} differences, first:\n{}",
        diffs.len(),
        diffs
            .iter()
            .take(10)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}
