//! Masstree against `BTreeMap<Vec<u8>, Vec<u8>>` in alternating rounds (A, B, A, B, …) in one
//! process, on the same keys and 16-byte values, reporting the median time per operation of
//! each and the median of the per-round speed-ups. On a shared, noisy machine only these
//! side-by-side ratios mean anything (see docs/benchmarks.md).
//!
//! ```text
//! cargo bench -p engines --bench masstree_ratio                       # 1M entries
//! MASSTREE_RATIO_N=10000000 cargo bench -p engines --bench masstree_ratio
//! ```

#[path = "common/keys.rs"]
mod keys;

use std::collections::BTreeMap;
use std::hint::black_box;
use std::ops::{Bound, ControlFlow};
use std::time::Instant;

use engines::masstree::{Direction, Masstree, Value};
use keys::{Keys, mix};

const VALUE: [u8; 16] = *b"0123456789abcdef";
const ROUNDS: usize = 7;

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// The two structures behind one interface, so each round runs the same loop.
trait Subject {
    fn get(&self, k: &[u8]) -> u64;
    fn scan100(&self, k: &[u8]) -> u64;
    fn insert(&mut self, k: &[u8]);
    fn remove(&mut self, k: &[u8]);
}

impl Subject for Masstree {
    fn get(&self, k: &[u8]) -> u64 {
        self.get(k)
            .and_then(|e| e.value())
            .map_or(0, |v| u64::from(v[0]))
    }
    fn scan100(&self, k: &[u8]) -> u64 {
        let mut sum = 0u64;
        self.scan(Bound::Included(k), Direction::Forward, 100, |k, e| {
            sum += u64::from(k[k.len() - 1]) + e.value().map_or(0, |v| u64::from(v[0]));
            ControlFlow::Continue(())
        });
        sum
    }
    fn insert(&mut self, k: &[u8]) {
        black_box(Masstree::insert(self, k, Value::inline(&VALUE)).is_ok());
    }
    fn remove(&mut self, k: &[u8]) {
        Masstree::remove(self, k);
    }
}

impl Subject for BTreeMap<Vec<u8>, Vec<u8>> {
    fn get(&self, k: &[u8]) -> u64 {
        BTreeMap::get(self, k).map_or(0, |v| u64::from(v[0]))
    }
    fn scan100(&self, k: &[u8]) -> u64 {
        let mut sum = 0u64;
        for (k, v) in self
            .range::<[u8], _>((Bound::Included(k), Bound::Unbounded))
            .take(100)
        {
            sum += u64::from(k[k.len() - 1]) + u64::from(v[0]);
        }
        sum
    }
    fn insert(&mut self, k: &[u8]) {
        black_box(BTreeMap::insert(self, k.to_vec(), VALUE.to_vec()).is_none());
    }
    fn remove(&mut self, k: &[u8]) {
        BTreeMap::remove(self, k);
    }
}

/// Runs `ops` operations of kind `op` on `s`; returns nanoseconds per operation.
fn round(s: &mut dyn Subject, op: &str, keys: Keys, n: u64, probes: &[Vec<u8>], ops: usize) -> f64 {
    let start = Instant::now();
    let mut acc = 0u64;
    match op {
        "get" => probes
            .iter()
            .cycle()
            .take(ops)
            .for_each(|k| acc += s.get(k)),
        "scan100" => probes
            .iter()
            .cycle()
            .take(ops)
            .for_each(|k| acc += s.scan100(k)),
        _ => {
            let mut k = Vec::new();
            for j in 0..ops as u64 {
                keys.make(n + j, &mut k);
                s.insert(&k);
            }
            let ns = start.elapsed().as_nanos() as f64 / ops as f64;
            for j in 0..ops as u64 {
                keys.make(n + j, &mut k);
                s.remove(&k);
            }
            return ns;
        }
    }
    black_box(acc);
    start.elapsed().as_nanos() as f64 / ops as f64
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let n: u64 = std::env::var("MASSTREE_RATIO_N")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    println!("{n} entries, 16-byte values, {ROUNDS} alternating rounds; medians");
    println!(
        "{:<10} {:<8} {:>12} {:>12} {:>10}",
        "keys", "op", "masstree ns", "btreemap ns", "speed-up"
    );
    for keys in [Keys::Random16, Keys::Prefix40, Keys::Int8] {
        let mut tree = Masstree::new();
        let mut map = BTreeMap::new();
        let stride = (n / 2 + 1..).find(|s| gcd(*s, n) == 1).unwrap_or(1);
        let mut k = Vec::new();
        for j in 0..n {
            keys.make(j * stride % n, &mut k);
            tree.insert(&k, Value::inline(&VALUE))
                .expect("key within limit");
            map.insert(k.clone(), VALUE.to_vec());
        }
        let probes: Vec<Vec<u8>> = (0..1u64 << 16)
            .map(|j| {
                let mut k = Vec::new();
                keys.make(mix(j) % n, &mut k);
                k
            })
            .collect();
        for (op, ops) in [("get", 400_000), ("scan100", 20_000), ("insert", 200_000)] {
            let (mut a, mut b, mut r) = (Vec::new(), Vec::new(), Vec::new());
            for _ in 0..ROUNDS {
                let ta = round(&mut tree, op, keys, n, &probes, ops);
                let tb = round(&mut map, op, keys, n, &probes, ops);
                a.push(ta);
                b.push(tb);
                r.push(tb / ta);
            }
            println!(
                "{:<10} {op:<8} {:>12.0} {:>12.0} {:>9.2}x",
                keys.name(),
                median(a),
                median(b),
                median(r)
            );
        }
    }
}
