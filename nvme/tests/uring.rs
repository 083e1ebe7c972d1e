//! The `uring` backend (io_uring + O_DIRECT through glommio) on a preallocated file and on a
//! loop device: read-back of freshly created files (glommio's polled-I/O probe trap), refusal
//! of unaligned and out-of-range requests, many concurrent I/Os, and the segment store on top.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::path::{Path, PathBuf};
use std::process::Command;
use std::rc::Rc;

use nvme::uring::{ExecutorConfig, UringDevice, UringOptions, run_local};
use nvme::{BlockDevice, BlockDeviceExt, Error, FormatOptions, IoBuf, OwnerTag, SegmentStore};

const MIB: u64 = 1 << 20;

fn cfg() -> ExecutorConfig {
    ExecutorConfig {
        io_memory: 1 << 20,
        ..ExecutorConfig::default()
    }
}

/// A fresh directory for one test, on the same disk as the target dir (not tmpfs).
fn test_dir(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("uring-{name}"));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn pattern(tag: u64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (tag.wrapping_mul(31).wrapping_add(i as u64 / 7)) as u8)
        .collect()
}

async fn must_write<D: BlockDevice>(dev: &D, offset: u64, data: &[u8]) {
    let mut b = dev.alloc_buf(data.len()).unwrap();
    b.as_bytes_mut().copy_from_slice(data);
    let (res, _b) = dev.write(offset, b).await;
    res.unwrap();
}

/// Runs the device checks every backend must pass: aligned write/read-back, a never-written
/// region, refusals, and 256 concurrent writes then reads.
async fn must_pass_device_checks(dev: Rc<UringDevice>) {
    let a = dev.alignment();
    assert!(a >= 4096 && a.is_power_of_two());
    assert_eq!(dev.capacity() % a as u64, 0);

    // Write and read back, including the last block of the device.
    let last = dev.capacity() - a as u64;
    for (i, off) in [0, a as u64, 5 * MIB, last].into_iter().enumerate() {
        let data = pattern(i as u64, a * if off == last { 1 } else { 2 });
        must_write(&*dev, off, &data).await;
        let r = dev.read(off, data.len()).await.unwrap();
        assert_eq!(&r[..], &data[..], "read back at {off}");
    }
    dev.flush().await.unwrap();

    // Refusals, before any I/O.
    assert!(matches!(
        dev.read(100, a).await,
        Err(Error::Unaligned { .. })
    ));
    assert!(matches!(
        dev.read(0, a + 1).await,
        Err(Error::Unaligned { .. })
    ));
    assert!(matches!(dev.read(0, 0).await, Err(Error::Unaligned { .. })));
    assert!(matches!(
        dev.read(dev.capacity(), a).await,
        Err(Error::OutOfRange { .. })
    ));
    assert!(matches!(
        dev.read(last, 2 * a).await,
        Err(Error::OutOfRange { .. })
    ));
    assert!(matches!(
        dev.read(u64::MAX - (a as u64 - 1), a).await,
        Err(Error::Unaligned { .. } | Error::OutOfRange { .. })
    ));
    let b = dev.alloc_buf(a).unwrap();
    let (res, b) = dev.write(512, b).await;
    assert!(matches!(res, Err(Error::Unaligned { .. })));
    let (res, _) = dev.write(dev.capacity(), b).await;
    assert!(matches!(res, Err(Error::OutOfRange { .. })));
    assert!(matches!(dev.alloc_buf(100), Err(Error::Unaligned { .. })));

    // Many concurrent I/Os: 256 writes in flight, then 256 reads.
    let n = 256u64;
    let base = 8 * MIB;
    let mut tasks = Vec::new();
    for i in 0..n {
        let dev = Rc::clone(&dev);
        tasks.push(glommio::spawn_local(async move {
            must_write(&*dev, base + i * a as u64, &pattern(100 + i, a)).await;
        }));
    }
    for t in tasks {
        t.await;
    }
    dev.flush().await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..n {
        let dev = Rc::clone(&dev);
        tasks.push(glommio::spawn_local(async move {
            let r = dev.read(base + i * a as u64, a).await.unwrap();
            assert_eq!(&r[..], &pattern(100 + i, a)[..], "concurrent read {i}");
        }));
    }
    for t in tasks {
        t.await;
    }
}

/// A file created and preallocated by `create_file` is written and read back at once (the
/// glommio probe trap: without the seed-file workaround every read fails with EOPNOTSUPP),
/// never-written blocks read as zeros, and the device passes the common checks.
#[test]
fn preallocated_file_passes_device_checks() {
    let dir = test_dir("file");
    let path = dir.join("dev.img");
    run_local(cfg(), async {
        let dev = UringDevice::create_file(&path, 64 * MIB, UringOptions::default())
            .await
            .unwrap();
        assert!(!dev.is_raw_device());
        assert_eq!(dev.capacity(), 64 * MIB);
        let zeros = dev.read(32 * MIB, 8192).await.unwrap();
        assert!(zeros.iter().all(|&b| b == 0));
        must_pass_device_checks(Rc::new(dev)).await;
    })
    .unwrap();
    // The file was never grown: its size is what create_file set.
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 64 * MIB);
}

/// `create_file_zeroed` leaves a file of written zero blocks at its full size.
#[test]
fn zeroed_file_reads_zeros() {
    let dir = test_dir("zeroed");
    let path = dir.join("dev.img");
    run_local(cfg(), async {
        let dev = UringDevice::create_file_zeroed(&path, 3 * MIB + 8192, UringOptions::default())
            .await
            .unwrap();
        assert_eq!(dev.capacity(), 3 * MIB + 8192);
        let r = dev.read(3 * MIB, 8192).await.unwrap();
        assert!(r.iter().all(|&b| b == 0));
    })
    .unwrap();
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 3 * MIB + 8192);
}

/// A brand-new file is readable from a second executor (thread) too: the probe happens per
/// executor, so the workaround must run in each.
#[test]
fn fresh_file_reads_back_on_every_executor() {
    let dir = test_dir("fresh");
    let path = dir.join("dev.img");
    run_local(cfg(), async {
        let dev = UringDevice::create_file(&path, 4 * MIB, UringOptions::default())
            .await
            .unwrap();
        must_write(&dev, 0, &pattern(7, 4096)).await;
        dev.flush().await.unwrap();
        let r = dev.read(0, 4096).await.unwrap();
        assert_eq!(&r[..], &pattern(7, 4096)[..]);
        dev.close().await.unwrap();
    })
    .unwrap();
    let p2 = path.clone();
    std::thread::spawn(move || {
        run_local(cfg(), async move {
            let dev = UringDevice::open(&p2, UringOptions::default())
                .await
                .unwrap();
            let r = dev.read(0, 4096).await.unwrap();
            assert_eq!(&r[..], &pattern(7, 4096)[..]);
            let z = dev.read(MIB, 4096).await.unwrap();
            assert!(z.iter().all(|&b| b == 0));
        })
        .unwrap();
    })
    .join()
    .unwrap();
}

/// Executors starting at once on one new directory (the shards of a node) each create their
/// own file and read it back: none opens a seed file another is still writing (a half-written
/// seed made one executor's probe read nothing and its reads fail with EOPNOTSUPP).
#[test]
fn executors_starting_together_on_a_new_directory_all_read_back() {
    for round in 0..8 {
        let dir = test_dir(&format!("together-{round}"));
        let start = std::sync::Arc::new(std::sync::Barrier::new(4));
        let threads: Vec<_> = (0..4u64)
            .map(|i| {
                let (path, start) = (dir.join(format!("shard-{i}.log")), start.clone());
                std::thread::spawn(move || {
                    run_local(cfg(), async move {
                        start.wait();
                        let dev = UringDevice::create_file(&path, MIB, UringOptions::default())
                            .await
                            .unwrap();
                        must_write(&dev, 0, &pattern(i, 4096)).await;
                        dev.flush().await.unwrap();
                        let r = dev.read(0, 4096).await.unwrap();
                        assert_eq!(&r[..], &pattern(i, 4096)[..]);
                        dev.close().await.unwrap();
                    })
                    .unwrap();
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let leftovers: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }
}

/// The segment store formats a preallocated file, keeps data written into a segment, and
/// reopens to the same table in a new executor.
#[test]
fn segment_store_on_uring_file_survives_reopen() {
    let dir = test_dir("store");
    let path = dir.join("dev.img");
    let p = path.clone();
    let seg = run_local(cfg(), async move {
        let dev = UringDevice::create_file(&p, 32 * MIB, UringOptions::default())
            .await
            .unwrap();
        let opts = FormatOptions {
            segment_size: 4 * MIB,
            uuid: None,
        };
        let mut s = SegmentStore::format(dev, opts).await.unwrap();
        let seg = s.allocate(OwnerTag(77)).await.unwrap();
        let pool = s.device().buf_pool(128 * 1024, 4).unwrap();
        let mut b = pool.acquire().await;
        b.as_bytes_mut().copy_from_slice(&pattern(9, 128 * 1024));
        s.device().write_pooled(seg.offset, &mut b).await.unwrap();
        s.device().flush().await.unwrap();
        assert_eq!(pool.available(), 3);
        drop(b);
        assert_eq!(pool.available(), 4);
        seg
    })
    .unwrap();
    run_local(cfg(), async move {
        let dev = UringDevice::open(&path, UringOptions::default())
            .await
            .unwrap();
        let s = SegmentStore::open(dev).await.unwrap();
        assert_eq!(s.segments().collect::<Vec<_>>(), vec![seg]);
        let r = s.device().read(seg.offset, 128 * 1024).await.unwrap();
        assert_eq!(&r[..], &pattern(9, 128 * 1024)[..]);
    })
    .unwrap();
}

/// `faulty` wraps the real backend too: on a preallocated file, an unflushed table update is
/// dropped by a crash and the store reopens to the flushed state.
#[test]
fn faulty_over_uring_drops_unflushed_update() {
    use nvme::{CrashMode, Fault, FaultAction, FaultyDevice, OpKind};
    let dir = test_dir("faulty");
    let path = dir.join("dev.img");
    run_local(cfg(), async move {
        let dev = UringDevice::create_file(&path, 16 * MIB, UringOptions::default())
            .await
            .unwrap();
        let opts = FormatOptions {
            segment_size: MIB,
            uuid: None,
        };
        let mut s = SegmentStore::format(dev, opts).await.unwrap();
        let kept = s.allocate(OwnerTag(1)).await.unwrap();
        let dev = FaultyDevice::new(s.into_device());
        // After open (4 reads, 1 flush) the next flush is the allocate's commit: halt there.
        dev.schedule(Fault {
            kind: OpKind::Flush,
            nth: 1,
            action: FaultAction::Halt,
        });
        let mut s = SegmentStore::open(dev).await.unwrap();
        assert!(s.allocate(OwnerTag(2)).await.is_err());
        let dev = s.into_device();
        assert_eq!(dev.unflushed_blocks(), 1);
        let dev = dev.crash(CrashMode::DropUnflushed).await.unwrap();
        let s = SegmentStore::open(dev).await.unwrap();
        assert_eq!(s.segments().collect::<Vec<_>>(), vec![kept]);
    })
    .unwrap();
}

/// Detaches the loop device when the test ends, pass or fail.
struct LoopDev(String);

impl Drop for LoopDev {
    fn drop(&mut self) {
        let _ = Command::new("losetup").args(["-d", &self.0]).status();
    }
}

fn attach_loop(backing: &Path) -> Result<LoopDev, String> {
    let out = Command::new("losetup")
        .args(["--find", "--show", "--direct-io=on"])
        .arg(backing)
        .output()
        .map_err(|e| format!("cannot run losetup: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "losetup failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(LoopDev(
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
    ))
}

/// The same checks on a raw block device: a loop device (`losetup --direct-io=on`) over a
/// file. Skipped, with the reason printed, where loop devices cannot be created.
#[test]
fn loop_device_passes_device_checks() {
    let dir = test_dir("loop");
    let backing = dir.join("backing.img");
    {
        use std::io::Write;
        // Real blocks (not a sparse file): write it out.
        let mut f = std::fs::File::create(&backing).unwrap();
        let chunk = vec![0u8; MIB as usize];
        for _ in 0..32 {
            f.write_all(&chunk).unwrap();
        }
        f.sync_all().unwrap();
    }
    let lo = match attach_loop(&backing) {
        Ok(l) => l,
        Err(reason) => {
            println!("SKIPPED loop_device_passes_device_checks: {reason}");
            return;
        }
    };
    let path = PathBuf::from(&lo.0);
    run_local(cfg(), async move {
        let dev = UringDevice::open(&path, UringOptions::default())
            .await
            .unwrap();
        assert!(dev.is_raw_device());
        assert_eq!(dev.capacity(), 32 * MIB);
        must_pass_device_checks(Rc::new(dev)).await;
        let dev = UringDevice::open(&path, UringOptions::default())
            .await
            .unwrap();
        let opts = FormatOptions {
            segment_size: 4 * MIB,
            uuid: None,
        };
        let mut s = SegmentStore::format(dev, opts).await.unwrap();
        let seg = s.allocate(OwnerTag(5)).await.unwrap();
        let dev = s.into_device();
        dev.close().await.unwrap();
        let dev = UringDevice::open(&path, UringOptions::default())
            .await
            .unwrap();
        let s = SegmentStore::open(dev).await.unwrap();
        assert_eq!(s.segments().collect::<Vec<_>>(), vec![seg]);
    })
    .unwrap();
    drop(lo);
}

/// The block device's `stat` file in sysfs for the disk holding `path`, and whether that disk
/// has a volatile write cache and no FUA (then every durable write needs a cache flush, which
/// the stat file counts in its 16th field, "flush I/Os"). `None` where sysfs does not say.
fn flush_counter_for(path: &Path) -> Option<PathBuf> {
    use std::os::unix::fs::MetadataExt;
    let dev = std::fs::metadata(path).ok()?.dev();
    let (major, minor) = (libc::major(dev), libc::minor(dev));
    let sys = std::fs::canonicalize(format!("/sys/dev/block/{major}:{minor}")).ok()?;
    // A partition's queue settings live on its parent disk.
    let disk = if sys.join("partition").exists() {
        sys.parent()?.to_path_buf()
    } else {
        sys.clone()
    };
    let cache = std::fs::read_to_string(disk.join("queue/write_cache")).ok()?;
    let fua = std::fs::read_to_string(disk.join("queue/fua")).ok()?;
    (cache.trim() == "write back" && fua.trim() == "0").then(|| sys.join("stat"))
}

fn flushes(stat: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(stat).ok()?;
    text.split_whitespace().nth(15)?.parse().ok()
}

/// A write-through device is opened with `O_DSYNC`, passes the device checks, keeps its data
/// across a reopen, and each write reaches the disk with a cache flush of its own (checked
/// where the disk has a volatile cache and no FUA, as here), so `flush` has nothing to add.
#[test]
fn write_through_device_flushes_the_disk_cache_on_every_write() {
    let dir = test_dir("write-through");
    let path = dir.join("dev.img");
    let opts = UringOptions {
        write_through: true,
        ..UringOptions::default()
    };
    let counter = flush_counter_for(&dir);
    run_local(cfg(), async {
        let dev = UringDevice::create_file_zeroed(&path, 16 * MIB, opts)
            .await
            .unwrap();
        assert!(dev.is_write_through().unwrap());
        let before = counter.as_deref().and_then(flushes);
        for i in 0..20u64 {
            must_write(&dev, i * 4096, &pattern(i, 4096)).await;
        }
        let after = counter.as_deref().and_then(flushes);
        if let (Some(b), Some(a)) = (before, after) {
            // Other processes may add flushes, never take them away.
            assert!(a - b >= 20, "{} disk cache flushes for 20 writes", a - b);
        } else {
            eprintln!("no volatile write cache without FUA here: flush count not checked");
        }
        dev.flush().await.unwrap();
        dev.close().await.unwrap();
        let plain = UringDevice::open(&path, UringOptions::default())
            .await
            .unwrap();
        assert!(!plain.is_write_through().unwrap());
        for i in 0..20u64 {
            let r = plain.read(i * 4096, 4096).await.unwrap();
            assert_eq!(&r[..], &pattern(i, 4096)[..]);
        }
        plain.close().await.unwrap();
        let dev = UringDevice::open(&path, opts).await.unwrap();
        must_pass_device_checks(Rc::new(dev)).await;
    })
    .unwrap();
}
