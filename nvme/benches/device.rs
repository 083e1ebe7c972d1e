//! Device benchmark: the `uring` backend against `fio --ioengine=io_uring --direct=1` on the
//! same preallocated file, in the same run, alternating which goes first each round.
//!
//! Workloads: sequential 128 KiB writes at QD32; 4 KiB random reads at QD1, QD32, QD128.
//! Reports throughput and p50/p99 latency (hdrhistogram, whole-operation latency; fio's
//! `lat_ns`, with `--lat_percentiles=1`) and the nvme/fio throughput ratio (median of rounds).
//!
//! ```text
//! cargo bench -p nvme --bench device -- [--file PATH] [--size-mib N] [--runtime S] [--rounds N]
//! ```
#![allow(clippy::unwrap_used)] // benchmark driver: a failure aborts the run

use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::rc::Rc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use nvme::uring::{ExecutorConfig, UringDevice, UringOptions, run_local};
use nvme::{BlockDevice, BlockDeviceExt};

#[derive(Clone, Copy, Debug)]
enum Workload {
    SeqWrite128k,
    RandRead4k(usize),
}

impl Workload {
    fn name(&self) -> String {
        match self {
            Self::SeqWrite128k => "seq write 128 KiB QD32".into(),
            Self::RandRead4k(qd) => format!("rand read 4 KiB QD{qd}"),
        }
    }
    fn qd(&self) -> usize {
        match self {
            Self::SeqWrite128k => 32,
            Self::RandRead4k(qd) => *qd,
        }
    }
    fn bs(&self) -> usize {
        match self {
            Self::SeqWrite128k => 128 * 1024,
            Self::RandRead4k(_) => 4096,
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Result {
    ops_per_s: f64,
    mib_per_s: f64,
    p50_us: f64,
    p99_us: f64,
    p999_us: f64,
}

struct Args {
    file: PathBuf,
    size: u64,
    runtime: Duration,
    rounds: usize,
    spin: Duration,
    io_memory: usize,
    only: Option<usize>,
    no_fio: bool,
}

fn args() -> Args {
    let mut a = Args {
        file: PathBuf::from(std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into()))
            .join("nvme-bench.img"),
        size: 2048 << 20,
        runtime: Duration::from_secs(8),
        rounds: 3,
        spin: Duration::ZERO,
        io_memory: 8 << 20,
        only: None,
        no_fio: false,
    };
    let v: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < v.len() {
        let next = v.get(i + 1).cloned().unwrap_or_default();
        match v[i].as_str() {
            "--file" => a.file = PathBuf::from(next),
            "--size-mib" => a.size = next.parse::<u64>().unwrap() << 20,
            "--runtime" => a.runtime = Duration::from_secs(next.parse().unwrap()),
            "--rounds" => a.rounds = next.parse().unwrap(),
            "--spin-us" => a.spin = Duration::from_micros(next.parse().unwrap()),
            "--io-memory-mib" => a.io_memory = next.parse::<usize>().unwrap() << 20,
            "--only" => a.only = Some(next.parse().unwrap()),
            "--no-fio" => {
                a.no_fio = true;
                i += 1;
                continue;
            }
            _ => {
                i += 1;
                continue;
            }
        }
        i += 2;
    }
    a
}

struct Xorshift(u64);
impl Xorshift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Runs one workload on the `uring` device for `runtime`.
async fn run_nvme(dev: Rc<UringDevice>, w: Workload, runtime: Duration) -> Result {
    let qd = w.qd();
    let bs = w.bs();
    let blocks = dev.capacity() / bs as u64;
    let pool = dev.buf_pool(bs, qd).unwrap();
    let next = Rc::new(Cell::new(0u64));
    let deadline = Instant::now() + runtime;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for t in 0..qd {
        let (dev, pool, next) = (Rc::clone(&dev), pool.clone(), Rc::clone(&next));
        tasks.push(glommio::spawn_local(async move {
            let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
            let mut rng = Xorshift(0x9E37_79B9_7F4A_7C15 ^ (t as u64 + 1));
            let mut ops = 0u64;
            while Instant::now() < deadline {
                let t0 = Instant::now();
                match w {
                    Workload::SeqWrite128k => {
                        let n = next.get();
                        next.set(n + 1);
                        let off = (n % blocks) * bs as u64;
                        let mut b = pool.acquire().await;
                        dev.write_pooled(off, &mut b).await.unwrap();
                    }
                    Workload::RandRead4k(_) => {
                        let off = (rng.next() % blocks) * bs as u64;
                        let r = dev.read(off, bs).await.unwrap();
                        std::hint::black_box(&r[..]);
                    }
                }
                h.record(t0.elapsed().as_nanos() as u64 / 1000).unwrap();
                ops += 1;
            }
            (h, ops)
        }));
    }
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
    let mut ops = 0;
    for t in tasks {
        let (h, n) = t.await;
        hist.add(h).unwrap();
        ops += n;
    }
    let secs = start.elapsed().as_secs_f64();
    Result {
        ops_per_s: ops as f64 / secs,
        mib_per_s: ops as f64 * bs as f64 / secs / (1 << 20) as f64,
        p50_us: hist.value_at_quantile(0.5) as f64,
        p99_us: hist.value_at_quantile(0.99) as f64,
        p999_us: hist.value_at_quantile(0.999) as f64,
    }
}

fn fio_command(file: &Path, size: u64, w: Workload, runtime: Duration) -> Command {
    let mut c = Command::new("fio");
    let rw = match w {
        Workload::SeqWrite128k => "write",
        Workload::RandRead4k(_) => "randread",
    };
    c.arg("--name=bench")
        .arg(format!("--filename={}", file.display()))
        .arg("--ioengine=io_uring")
        .arg("--direct=1")
        .arg(format!("--rw={rw}"))
        .arg(format!("--bs={}", w.bs()))
        .arg(format!("--iodepth={}", w.qd()))
        .arg(format!("--size={size}"))
        .arg(format!("--runtime={}", runtime.as_secs()))
        .arg("--time_based")
        .arg("--lat_percentiles=1")
        .arg("--output-format=json");
    c
}

fn run_fio(file: &Path, size: u64, w: Workload, runtime: Duration) -> Result {
    let out = fio_command(file, size, w, runtime).output().unwrap();
    assert!(
        out.status.success(),
        "fio failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    // fio may print notes before the JSON document.
    let json = &text[text.find('{').unwrap()..];
    let v: serde_json::Value = serde_json::from_str(json).unwrap();
    let side = match w {
        Workload::SeqWrite128k => "write",
        Workload::RandRead4k(_) => "read",
    };
    let j = &v["jobs"][0][side];
    let pct = |p: &str| j["lat_ns"]["percentile"][p].as_f64().unwrap() / 1000.0;
    Result {
        ops_per_s: j["iops"].as_f64().unwrap(),
        mib_per_s: j["bw_bytes"].as_f64().unwrap() / (1 << 20) as f64,
        p50_us: pct("50.000000"),
        p99_us: pct("99.000000"),
        p999_us: pct("99.900000"),
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    let a = args();
    let cfg = ExecutorConfig {
        io_memory: a.io_memory,
        ring_depth: 256,
        spin_before_park: a.spin,
    };
    let fresh = std::fs::metadata(&a.file).map(|m| m.len()).ok() != Some(a.size);
    println!(
        "# nvme device benchmark: file {} ({} MiB), {} s per point, {} rounds",
        a.file.display(),
        a.size >> 20,
        a.runtime.as_secs(),
        a.rounds
    );
    println!(
        "# memlock raise: {:?}; limit now {:?}; io_memory asked {} MiB, used {} KiB; spin {:?}",
        nvme::uring::raise_memlock(2 * cfg.io_memory as u64),
        nvme::uring::memlock_limit(),
        cfg.io_memory >> 20,
        nvme::uring::fit_io_memory(cfg.io_memory) >> 10,
        a.spin,
    );
    // Create (preallocated) and fill the file once, so reads hit written blocks.
    if fresh {
        let (file, size) = (a.file.clone(), a.size);
        run_local(cfg, async move {
            let dev = UringDevice::create_file(&file, size, UringOptions::default())
                .await
                .unwrap();
            let pool = dev.buf_pool(1 << 20, 16).unwrap();
            let dev = Rc::new(dev);
            let mut tasks = Vec::new();
            for t in 0..16u64 {
                let (dev, pool) = (Rc::clone(&dev), pool.clone());
                tasks.push(glommio::spawn_local(async move {
                    let mut off = t << 20;
                    while off < size {
                        let mut b = pool.acquire().await;
                        b.as_bytes_mut().fill(t as u8 + 1);
                        dev.write_pooled(off, &mut b).await.unwrap();
                        off += 16 << 20;
                    }
                }));
            }
            for t in tasks {
                t.await;
            }
            dev.flush().await.unwrap();
        })
        .unwrap();
        println!("# created and filled {}", a.file.display());
    }
    let workloads = [
        Workload::SeqWrite128k,
        Workload::RandRead4k(1),
        Workload::RandRead4k(32),
        Workload::RandRead4k(128),
    ];
    let mut results: Vec<(Vec<Result>, Vec<Result>)> = vec![(vec![], vec![]); workloads.len()];
    for round in 0..a.rounds {
        for (i, &w) in workloads.iter().enumerate() {
            if a.only.is_some_and(|o| o != i) {
                continue;
            }
            let nvme_first = (round + i) % 2 == 0;
            for k in 0..2 {
                if (k == 0) == nvme_first {
                    let (file, rt) = (a.file.clone(), a.runtime);
                    let r = run_local(cfg, async move {
                        let dev = UringDevice::open(&file, UringOptions::default())
                            .await
                            .unwrap();
                        run_nvme(Rc::new(dev), w, rt).await
                    })
                    .unwrap();
                    println!("round {round} nvme {:<24} {r:?}", w.name());
                    results[i].0.push(r);
                } else if !a.no_fio {
                    let r = run_fio(&a.file, a.size, w, a.runtime);
                    println!("round {round} fio  {:<24} {r:?}", w.name());
                    results[i].1.push(r);
                }
            }
        }
    }
    println!();
    println!(
        "| workload | nvme | fio | nvme / fio (of medians) | per-round ratio: median [min–max] \
         | nvme p50 / p99 / p99.9 µs | fio p50 / p99 / p99.9 µs |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (i, w) in workloads.iter().enumerate() {
        let (n, f) = &results[i];
        if n.is_empty() || f.is_empty() {
            continue;
        }
        let unit = |r: &[Result]| match w {
            Workload::SeqWrite128k => median(r.iter().map(|x| x.mib_per_s).collect()),
            Workload::RandRead4k(_) => median(r.iter().map(|x| x.ops_per_s).collect()),
        };
        let (nu, fu) = (unit(n), unit(f));
        let suffix = match w {
            Workload::SeqWrite128k => " MiB/s",
            Workload::RandRead4k(_) => " IOPS",
        };
        let lat = |r: &[Result]| {
            (
                median(r.iter().map(|x| x.p50_us).collect()),
                median(r.iter().map(|x| x.p99_us).collect()),
                median(r.iter().map(|x| x.p999_us).collect()),
            )
        };
        let ((n50, n99, n999), (f50, f99, f999)) = (lat(n), lat(f));
        // Each round ran nvme and fio back to back: their ratio is the least noisy figure.
        let ratios: Vec<f64> = n
            .iter()
            .zip(f)
            .map(|(a, b)| unit(std::slice::from_ref(a)) / unit(std::slice::from_ref(b)))
            .collect();
        let (lo, hi) = ratios
            .iter()
            .fold((f64::MAX, f64::MIN), |(l, h), &r| (l.min(r), h.max(r)));
        println!(
            "| {} | {nu:.0}{suffix} | {fu:.0}{suffix} | {:.2} | {:.2} [{lo:.2}–{hi:.2}] \
             | {n50:.0} / {n99:.0} / {n999:.0} | {f50:.0} / {f99:.0} / {f999:.0} |",
            w.name(),
            nu / fu,
            median(ratios.clone()),
        );
    }
}
