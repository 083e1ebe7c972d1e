//! Cost of one `EVAL` in the VM alone (no range, no network): runs the benchmark script of
//! `docs/benchmarks.md` ("Scripting: `EVALSHA` of GET + INCR + EXPIRE") N times against a
//! host that answers from a map, and prints µs per run. For callgrind:
//! `valgrind --tool=callgrind target/ci/examples/eval_cost 20000`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::time::Instant;

use bytes::Bytes;
use script::{Host, Limits, Resp, Run, Value, Vm};

const SCRIPT: &str = "local v = redis.call('get', KEYS[1]) redis.call('incr', KEYS[1]) \
                      redis.call('expire', KEYS[1], 100) return v";

/// Answers GET, INCR and EXPIRE from a map: the script's own cost, without a store.
#[derive(Default)]
struct MapHost(HashMap<Bytes, i64>);

impl Host for MapHost {
    fn call(&mut self, argv: &[Bytes], _: Resp) -> Value {
        let key = argv[1].clone();
        match argv[0].as_ref() {
            b"get" => match self.0.get(&key) {
                Some(n) => Value::Bulk(Bytes::from(n.to_string())),
                None => Value::Nil,
            },
            b"incr" => {
                let n = self.0.entry(key).or_default();
                *n += 1;
                Value::Int(*n)
            }
            _ => Value::Int(1),
        }
    }

    fn acl_check(&mut self, _: &[Bytes]) -> Result<bool, String> {
        Ok(true)
    }
}

fn main() {
    let n: u64 = std::env::args()
        .nth(1)
        .map_or(200_000, |s| s.parse().unwrap());
    let mut vm = Vm::new(Limits::default()).unwrap();
    let mut host = MapHost::default();
    let keys = [Bytes::from_static(b"k")];
    let start = Instant::now();
    for i in 0..n {
        let run = Run {
            keys: &keys,
            argv: &[],
            seed: i,
            kill: None,
        };
        let v = vm.eval(SCRIPT.as_bytes(), run, &mut host);
        assert!(!matches!(v, Value::Error(_)), "{v:?}");
    }
    let us = start.elapsed().as_secs_f64() * 1e6 / n as f64;
    println!("{n} runs, {us:.2} µs per run");
}
