//! Shard-log benchmark: group-commit appends on the `uring` device (a preallocated, zeroed
//! file), against `fio` sequential `O_DIRECT` writes of the same batch size with
//! `--fdatasync=1` on the same file, in the same run, alternating which goes first.
//!
//! Each point runs W appenders (W ranges, closed loop: one append of one Raft entry in flight
//! each) for a fixed time; every executor turn the log commits what they handed in with one
//! batch of writes and one flush. Reports records/s, payload MiB/s, append latency p50/p99
//! (submit to acknowledgement), mean records per flush, and fio's MiB/s at the block size of
//! one full batch (W records). W = 1 is the "one write + flush per record" baseline.
//!
//! ```text
//! cargo bench -p engines --bench vlog -- [--file PATH] [--size-mib N] [--secs S] [--rounds N]
//!     [--sizes 100,1024,4096] [--writers 1,16,128,256] [--no-fio] [--mem] [--spin-us N]
//!     [--depths 1,2] [--think-us N]
//! ```
//! `--mem` runs on the in-memory device instead (no fio; measures the log's CPU cost).
//! `--depths` runs every point with each `pipeline-depth` (1: strictly sequential commits,
//! 2: the next batch is written while the previous one's flush runs), alternating their order
//! between rounds. `--think-us N` makes each appender wait a random 0..=N µs after each
//! acknowledgement (a client's round trip), so appends also arrive while a flush runs; with
//! the default 0 every appender is in the batch being flushed and nothing can overlap.
#![allow(clippy::unwrap_used)] // benchmark driver: a failure aborts the run

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use engines::vlog::{
    AppendRecord, EntryRecord, LogIndex, LogRecord, RangeId, Term, ValueSpan, Vlog, VlogConfig,
};
use nvme::store::format::DeviceUuid;
use nvme::uring::{ExecutorConfig, UringDevice, UringOptions, run_local};
use nvme::{BlockDevice, FormatOptions, MemDevice, OwnerTag, SegmentStore};

const OWNER: OwnerTag = OwnerTag(1);
const SEGMENT: u64 = 32 << 20;

struct Args {
    file: PathBuf,
    size: u64,
    secs: u64,
    rounds: usize,
    sizes: Vec<usize>,
    writers: Vec<usize>,
    fio: bool,
    mem: bool,
    spin: Duration,
    depths: Vec<usize>,
    think_us: u64,
}

fn list(s: &str) -> Vec<usize> {
    s.split(',').map(|x| x.trim().parse().unwrap()).collect()
}

fn args() -> Args {
    let dir = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into());
    let mut a = Args {
        file: PathBuf::from(dir).join("vlog-bench.img"),
        size: 1 << 30,
        secs: 3,
        rounds: 2,
        sizes: vec![100, 1024, 4096],
        writers: vec![1, 16, 128, 256],
        fio: true,
        mem: false,
        spin: Duration::ZERO,
        depths: vec![VlogConfig::default().pipeline_depth],
        think_us: 0,
    };
    let v: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < v.len() {
        let next = v.get(i + 1).cloned().unwrap_or_default();
        match v[i].as_str() {
            "--file" => a.file = PathBuf::from(next),
            "--size-mib" => a.size = next.parse::<u64>().unwrap() << 20,
            "--secs" => a.secs = next.parse().unwrap(),
            "--rounds" => a.rounds = next.parse().unwrap(),
            "--sizes" => a.sizes = list(&next),
            "--writers" => a.writers = list(&next),
            "--spin-us" => a.spin = Duration::from_micros(next.parse().unwrap()),
            "--depths" => a.depths = list(&next),
            "--think-us" => a.think_us = next.parse().unwrap(),
            "--no-fio" => {
                a.fio = false;
                i += 1;
                continue;
            }
            "--mem" => {
                a.mem = true;
                a.fio = false;
                i += 1;
                continue;
            }
            // cargo bench passes --bench; ignore anything else unknown.
            _ => {
                i += 1;
                continue;
            }
        }
        i += 2;
    }
    a
}

#[derive(Clone, Copy, Debug)]
struct Point {
    records_per_s: f64,
    mib_per_s: f64,
    p50_us: f64,
    p99_us: f64,
    records_per_flush: f64,
}

fn record(range: u64, index: u64, size: usize) -> AppendRecord {
    AppendRecord {
        record: LogRecord::Entry(EntryRecord {
            range: RangeId(range),
            term: Term(1),
            index: LogIndex(index),
            entry_type: 0,
            payload: vec![(index % 251) as u8; size],
        }),
        value: Some(ValueSpan {
            offset: 0,
            len: size as u32,
        }),
    }
}

/// Formats the device and drives W closed-loop appenders for `secs`.
async fn run_log<D: BlockDevice + 'static>(
    dev: D,
    size: usize,
    writers: usize,
    secs: u64,
    depth: usize,
    think_us: u64,
) -> Point {
    let store = SegmentStore::format(
        dev,
        FormatOptions {
            segment_size: SEGMENT,
            uuid: Some(DeviceUuid([1; 16])),
        },
    )
    .await
    .unwrap();
    let dev = store.into_device();
    let cfg = VlogConfig {
        batch_bytes_max: 4 << 20,
        auto_reclaim: true,
        pipeline_depth: depth,
        ..VlogConfig::default()
    };
    let (log, _) = Vlog::open(dev, OWNER, cfg).await.unwrap();
    let log = std::rc::Rc::new(log);
    let stop = Instant::now() + Duration::from_secs(secs);
    let start = Instant::now();
    let done = std::rc::Rc::new(std::cell::Cell::new(0u64));
    let mut tasks = Vec::new();
    for w in 0..writers as u64 {
        let (log, done) = (std::rc::Rc::clone(&log), std::rc::Rc::clone(&done));
        tasks.push(glommio_spawn(async move {
            let mut index = 1;
            let mut rng = w.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
            while Instant::now() < stop {
                log.append(vec![record(w, index, size)]).await.unwrap();
                done.set(done.get() + 1);
                if think_us > 0 {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    let us = rng % (think_us + 1);
                    glommio::timer::sleep(Duration::from_micros(us)).await;
                }
                if index % 512 == 0 {
                    log.compact(RangeId(w), LogIndex(index - 16)).await.unwrap();
                }
                index += 1;
            }
        }));
    }
    for t in tasks {
        t.await;
    }
    let el = start.elapsed().as_secs_f64();
    let m = log.metrics();
    if std::env::var("VLOG_BENCH_DEBUG").is_ok() {
        eprintln!(
            "batch records p50 {} max {} flushes {} records {}",
            m.batch_records.value_at_quantile(0.5),
            m.batch_records.max(),
            m.flushes_total,
            m.appended_records_total
        );
    }
    let n = done.get() as f64;
    Point {
        records_per_s: n / el,
        mib_per_s: n * size as f64 / el / (1 << 20) as f64,
        p50_us: m.append_latency_ns.value_at_quantile(0.5) as f64 / 1000.0,
        p99_us: m.append_latency_ns.value_at_quantile(0.99) as f64 / 1000.0,
        records_per_flush: m.appended_records_total as f64 / m.flushes_total.max(1) as f64,
    }
}

fn glommio_spawn<T: 'static>(
    f: impl std::future::Future<Output = T> + 'static,
) -> impl std::future::Future<Output = T> {
    glommio::spawn_local(f)
}

/// One full batch of `writers` records, rounded up to 4 KiB: fio's block size.
fn batch_bytes(size: usize, writers: usize) -> usize {
    let rec = (24 + 32 + size).div_ceil(8) * 8;
    (rec * writers).div_ceil(4096) * 4096
}

fn fio_command(file: &Path, size: u64, bs: usize, secs: u64) -> Command {
    let mut c = Command::new("fio");
    c.arg("--name=vlog")
        .arg(format!("--filename={}", file.display()))
        .arg("--ioengine=io_uring")
        .arg("--iodepth=1")
        .arg("--direct=1")
        .arg("--rw=write")
        .arg(format!("--bs={bs}"))
        .arg("--fdatasync=1")
        .arg(format!("--size={size}"))
        .arg(format!("--runtime={secs}"))
        .arg("--time_based")
        .arg("--output-format=json");
    c
}

fn run_fio(file: &Path, size: u64, bs: usize, secs: u64) -> (f64, f64) {
    let out = fio_command(file, size, bs, secs).output().unwrap();
    assert!(
        out.status.success(),
        "fio failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let json = &text[text.find('{').unwrap()..];
    let v: serde_json::Value = serde_json::from_str(json).unwrap();
    let j = &v["jobs"][0]["write"];
    (
        j["iops"].as_f64().unwrap(),
        j["bw_bytes"].as_f64().unwrap() / (1 << 20) as f64,
    )
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    let a = args();
    let cfg = ExecutorConfig {
        spin_before_park: a.spin,
        ..ExecutorConfig::default()
    };
    println!(
        "# shard log benchmark: {} ({} MiB), {} s per point, {} rounds, device {}, spin {:?}, \
         pipeline depths {:?}, think 0..={} us",
        a.file.display(),
        a.size >> 20,
        a.secs,
        a.rounds,
        if a.mem { "mem" } else { "uring" },
        a.spin,
        a.depths,
        a.think_us
    );
    if !a.mem {
        let (file, size) = (a.file.clone(), a.size);
        run_local(cfg, async move {
            UringDevice::create_file_zeroed(&file, size, UringOptions::default())
                .await
                .unwrap();
        })
        .unwrap();
    }
    let mut points = Vec::new();
    for &s in &a.sizes {
        for &w in &a.writers {
            points.push((s, w));
        }
    }
    let nd = a.depths.len();
    // Per (point, depth): the log's results; per point: fio's.
    let mut logs: Vec<Vec<Point>> = vec![Vec::new(); points.len() * nd];
    let mut fios: Vec<Vec<(f64, f64)>> = vec![Vec::new(); points.len()];
    for round in 0..a.rounds {
        for (i, &(s, w)) in points.iter().enumerate() {
            let log_first = (round + i) % 2 == 0;
            for k in 0..2 {
                if (k == 0) == log_first {
                    for j in 0..nd {
                        // Alternate which depth goes first between rounds and points.
                        let di = (j + round + i) % nd;
                        let depth = a.depths[di];
                        let (file, secs, mem, size) = (a.file.clone(), a.secs, a.mem, a.size);
                        let think = a.think_us;
                        let p = run_local(cfg, async move {
                            if mem {
                                let dev = MemDevice::new(size, 4096).unwrap();
                                run_log(dev, s, w, secs, depth, think).await
                            } else {
                                let dev = UringDevice::open(&file, UringOptions::default())
                                    .await
                                    .unwrap();
                                run_log(dev, s, w, secs, depth, think).await
                            }
                        })
                        .unwrap();
                        println!("round {round} log  {s:>5} B x {w:>3} depth {depth}: {p:?}");
                        logs[i * nd + di].push(p);
                    }
                } else if a.fio {
                    let bs = batch_bytes(s, w);
                    let f = run_fio(&a.file, a.size, bs, a.secs);
                    println!("round {round} fio  {s:>5} B x {w:>3} (bs {bs}): {f:?}");
                    fios[i].push(f);
                }
            }
        }
    }
    println!();
    println!(
        "| record | writers | depth | records/s | payload MiB/s | p50 / p99 µs | records/flush \
         | vs 1 writer | fio bs | fio syncs/s | fio MiB/s | log MiB/s ÷ fio MiB/s \
         | log records/s ÷ (fio syncs/s × writers) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for (i, &(s, w)) in points.iter().enumerate() {
        for (di, &depth) in a.depths.iter().enumerate() {
            let l = &logs[i * nd + di];
            let rps = median(l.iter().map(|p| p.records_per_s).collect());
            let mib = median(l.iter().map(|p| p.mib_per_s).collect());
            let base = points
                .iter()
                .position(|&(s2, w2)| s2 == s && w2 == 1)
                .map(|j| median(logs[j * nd + di].iter().map(|p| p.records_per_s).collect()));
            let (fbs, fiops, fmib) = if fios[i].is_empty() {
                ("-".to_string(), f64::NAN, f64::NAN)
            } else {
                (
                    batch_bytes(s, w).to_string(),
                    median(fios[i].iter().map(|f| f.0).collect()),
                    median(fios[i].iter().map(|f| f.1).collect()),
                )
            };
            println!(
                "| {s} B | {w} | {depth} | {rps:.0} | {mib:.1} | {:.0} / {:.0} | {:.1} | {} | {fbs} \
             | {fiops:.0} | {fmib:.1} | {:.2} | {:.2} |",
                median(l.iter().map(|p| p.p50_us).collect()),
                median(l.iter().map(|p| p.p99_us).collect()),
                median(l.iter().map(|p| p.records_per_flush).collect()),
                base.map_or("-".into(), |b| format!("{:.1}x", rps / b)),
                mib / fmib,
                rps / (fiops * w as f64),
            );
        }
    }
}
