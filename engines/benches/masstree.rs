//! Masstree against `BTreeMap<Vec<u8>, Vec<u8>>`, same process, same keys, 16-byte values:
//! get, insert and scan of 100 keys on 1M entries (and 10M with `MASSTREE_BENCH_10M=1`), for
//! (a) random 16-byte keys, (b) 40-byte URL-like keys sharing a 24-byte prefix, (c) 8-byte
//! big-endian integers. Run, for example:
//!
//! ```text
//! cargo bench -p engines --bench masstree -- --measurement-time 3 --warm-up-time 1 --sample-size 10
//! ```

use std::collections::BTreeMap;
use std::hint::black_box;
use std::ops::{Bound, ControlFlow};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use engines::masstree::{Direction, Masstree, Value};

/// A key set: makes the key with index `i` into `out`.
#[derive(Clone, Copy)]
enum Keys {
    Random16,
    Prefix40,
    Int8,
}

fn mix(mut x: u64) -> u64 {
    // splitmix64
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

impl Keys {
    fn name(self) -> &'static str {
        match self {
            Keys::Random16 => "random16",
            Keys::Prefix40 => "prefix40",
            Keys::Int8 => "int8",
        }
    }

    fn make(self, i: u64, out: &mut Vec<u8>) {
        out.clear();
        match self {
            Keys::Random16 => {
                out.extend_from_slice(&mix(i).to_be_bytes());
                out.extend_from_slice(&mix(i ^ 0xabcd_ef01_2345_6789).to_be_bytes());
            }
            Keys::Prefix40 => {
                out.extend_from_slice(b"https://www.example.com/");
                let h = mix(i);
                for shift in (0..64).step_by(4).rev() {
                    out.push(b"0123456789abcdef"[((h >> shift) & 15) as usize]);
                }
            }
            Keys::Int8 => out.extend_from_slice(&i.to_be_bytes()),
        }
    }
}

const VALUE: [u8; 16] = *b"0123456789abcdef";
/// Distinct lookup keys cycled through by the get and scan benchmarks.
const PROBES: usize = 1 << 16;

struct Fixture {
    keys: Keys,
    n: u64,
    tree: Masstree,
    map: BTreeMap<Vec<u8>, Vec<u8>>,
    /// Existing keys in random order.
    probes: Vec<Vec<u8>>,
}

impl Fixture {
    fn new(keys: Keys, n: u64) -> Self {
        let mut tree = Masstree::new();
        let mut map = BTreeMap::new();
        let mut k = Vec::new();
        // Insert in a scrambled order (a bijection on 0..n), so integer keys arrive randomly too.
        let stride = (n / 2 + 1..).find(|s| gcd(*s, n) == 1).unwrap_or(1);
        for j in 0..n {
            keys.make(j * stride % n, &mut k);
            tree.insert(&k, Value::inline(&VALUE))
                .expect("key within limit");
            map.insert(k.clone(), VALUE.to_vec());
        }
        let probes = (0..PROBES as u64)
            .map(|j| {
                let mut k = Vec::new();
                keys.make(mix(j) % n, &mut k);
                k
            })
            .collect();
        Self {
            keys,
            n,
            tree,
            map,
            probes,
        }
    }
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

fn sizes() -> Vec<u64> {
    let mut v = vec![1_000_000];
    if std::env::var_os("MASSTREE_BENCH_10M").is_some() {
        v.push(10_000_000);
    }
    v
}

/// Times inserting `iters` keys that are not in the structure, then removes them (untimed), so
/// the structure stays at `n` entries whatever the iteration count.
fn timed_inserts(
    f: &mut Fixture,
    iters: u64,
    mut insert: impl FnMut(&mut Fixture, &[u8]),
    mut remove: impl FnMut(&mut Fixture, &[u8]),
) -> Duration {
    const CHUNK: u64 = 1 << 16;
    let mut total = Duration::ZERO;
    let mut k = Vec::new();
    let mut done = 0;
    while done < iters {
        let m = CHUNK.min(iters - done);
        let start = Instant::now();
        for j in 0..m {
            f.keys.make(f.n + j, &mut k);
            insert(f, &k);
        }
        total += start.elapsed();
        for j in 0..m {
            f.keys.make(f.n + j, &mut k);
            remove(f, &k);
        }
        done += m;
    }
    total
}

fn bench(c: &mut Criterion) {
    for keys in [Keys::Random16, Keys::Prefix40, Keys::Int8] {
        for n in sizes() {
            let mut f = Fixture::new(keys, n);
            let label = format!("{}/{}M", keys.name(), n / 1_000_000);
            let mut g = c.benchmark_group(format!("masstree_vs_btreemap/{label}"));

            let mut i = 0;
            g.bench_function(BenchmarkId::new("get", "masstree"), |b| {
                b.iter(|| {
                    i = (i + 1) % PROBES;
                    black_box(
                        f.tree
                            .get(&f.probes[i])
                            .and_then(|e| e.value())
                            .map(|v| v[0]),
                    )
                })
            });
            g.bench_function(BenchmarkId::new("get", "btreemap"), |b| {
                b.iter(|| {
                    i = (i + 1) % PROBES;
                    black_box(f.map.get(f.probes[i].as_slice()).map(|v| v[0]))
                })
            });

            g.bench_function(BenchmarkId::new("scan100", "masstree"), |b| {
                b.iter(|| {
                    i = (i + 1) % PROBES;
                    let mut sum = 0u64;
                    f.tree.scan(
                        Bound::Included(&f.probes[i]),
                        Direction::Forward,
                        100,
                        |k, e| {
                            sum += u64::from(k[k.len() - 1])
                                + e.value().map_or(0, |v| u64::from(v[0]));
                            ControlFlow::Continue(())
                        },
                    );
                    black_box(sum)
                })
            });
            g.bench_function(BenchmarkId::new("scan100", "btreemap"), |b| {
                b.iter(|| {
                    i = (i + 1) % PROBES;
                    let mut sum = 0u64;
                    let from = Bound::Included(f.probes[i].as_slice());
                    for (k, v) in f.map.range::<[u8], _>((from, Bound::Unbounded)).take(100) {
                        sum += u64::from(k[k.len() - 1]) + u64::from(v[0]);
                    }
                    black_box(sum)
                })
            });

            g.bench_function(BenchmarkId::new("insert", "masstree"), |b| {
                b.iter_custom(|iters| {
                    timed_inserts(
                        &mut f,
                        iters,
                        |f, k| {
                            black_box(f.tree.insert(k, Value::inline(&VALUE)).is_ok());
                        },
                        |f, k| {
                            f.tree.remove(k);
                        },
                    )
                })
            });
            g.bench_function(BenchmarkId::new("insert", "btreemap"), |b| {
                b.iter_custom(|iters| {
                    timed_inserts(
                        &mut f,
                        iters,
                        |f, k| {
                            black_box(f.map.insert(k.to_vec(), VALUE.to_vec()).is_none());
                        },
                        |f, k| {
                            f.map.remove(k);
                        },
                    )
                })
            });
            g.finish();
        }
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
