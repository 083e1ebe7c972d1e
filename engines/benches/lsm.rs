//! Key-index benchmark on the in-memory device (so it measures the index's CPU cost: encoding,
//! bloom filters, block search; device latency is not included): a checkpoint of N entries,
//! and point gets that hit (one block read + search) or miss (the bloom filters answer) on an
//! index of 4 runs of N/4 entries each. N = 100,000 (1,000,000 with `LSM_BENCH_1M=1`). Run:
//!
//! ```text
//! cargo bench -p engines --bench lsm -- --measurement-time 3 --warm-up-time 1 --sample-size 10
//! ```
//!
//! Take figures on a quiet machine only; compare ratios measured in the same run.
#![allow(clippy::unwrap_used)] // benchmark driver: a failure aborts the run

use std::hint::black_box;

use criterion::{BatchSize, BenchmarkId, Criterion, criterion_group, criterion_main};
use engines::lsm::{IndexEntry, IndexValue, KeyIndex, LogPointer, LsmConfig, SharedStore};
use engines::masstree::SegmentId;
use futures_lite::future::block_on;
use nvme::store::format::DeviceUuid;
use nvme::{FormatOptions, MemDevice, OwnerTag, SegmentStore};

const SEG: u64 = 4 << 20;

fn key(i: u64) -> Vec<u8> {
    // Redis-like internal keys: a slot prefix, then a user key.
    format!("r{:04x}user:{:010}:M", i % 16384, i).into_bytes()
}

fn entry(i: u64) -> IndexEntry {
    IndexEntry::Value(IndexValue {
        pointer: LogPointer {
            segment: SegmentId((i % 512) as u32),
            offset: i * 128,
            len: 100,
            checksum: i as u32,
        },
        expire_at_ms: 0,
        value_type: 0,
    })
}

fn store(n: u64) -> SharedStore<MemDevice> {
    let segments = (n * 120 / SEG).max(8) * 3;
    let dev = MemDevice::new((1 << 20) + segments * SEG, 4096).unwrap();
    block_on(async {
        let s = SegmentStore::format(
            dev,
            FormatOptions {
                segment_size: SEG,
                uuid: Some(DeviceUuid([9; 16])),
            },
        )
        .await
        .unwrap();
        SharedStore::open(s.into_device()).await.unwrap()
    })
}

fn cfg() -> LsmConfig {
    LsmConfig::new(OwnerTag(10), OwnerTag(11))
}

fn sorted_keys(n: u64, runs: u64, r: u64) -> Vec<Vec<u8>> {
    let mut keys: Vec<Vec<u8>> = (0..n).filter(|i| i % runs == r).map(key).collect();
    keys.sort();
    keys
}

async fn checkpoint(ix: &KeyIndex<MemDevice>, keys: &[Vec<u8>]) {
    let mut w = ix.checkpoint(keys.len() as u64).unwrap();
    for k in keys {
        w.push(k, entry(k.len() as u64)).await.unwrap();
    }
    w.finish(&[]).await.unwrap();
}

fn bench(c: &mut Criterion) {
    let n: u64 = if std::env::var_os("LSM_BENCH_1M").is_some() {
        1_000_000
    } else {
        100_000
    };
    let mut g = c.benchmark_group("lsm");
    let keys = sorted_keys(n, 1, 0);
    g.bench_with_input(BenchmarkId::new("checkpoint", n), &keys, |b, keys| {
        b.iter_batched(
            || block_on(KeyIndex::open(store(n), cfg())).unwrap().0,
            |ix| block_on(checkpoint(&ix, keys)),
            BatchSize::PerIteration,
        );
    });
    let ix = block_on(async {
        let ix = KeyIndex::open(store(n), cfg()).await.unwrap().0;
        for r in 0..4 {
            checkpoint(&ix, &sorted_keys(n, 4, r)).await;
        }
        ix
    });
    let mut i = 0u64;
    g.bench_function(BenchmarkId::new("get_hit", n), |b| {
        b.iter(|| {
            i = (i + 7919) % n;
            black_box(block_on(ix.get(&key(i))).unwrap().unwrap());
        });
    });
    g.bench_function(BenchmarkId::new("get_miss", n), |b| {
        b.iter(|| {
            i = (i + 7919) % n;
            black_box(block_on(ix.get(&key(i + n))).unwrap());
        });
    });
    g.finish();
    eprintln!(
        "lsm: {n} entries in 4 runs hold {} bytes in memory (block indexes + bloom filters)",
        ix.memory_bytes()
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
