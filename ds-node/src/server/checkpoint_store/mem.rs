//! [`MemCheckpointStore`]: an in-memory checkpoint directory that can crash like a file
//! system: what was not made durable (a file's contents before `sync`, a name before
//! `sync_dir`) is kept, lost or torn by [`MemCheckpointStore::crash`]. For crash tests.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use nvme::faulty::CrashMode;

use super::{CheckpointStore, FileFuture};

/// A file's bytes: as written, and as last made durable.
#[derive(Debug, Clone, Default)]
struct Inode {
    data: Vec<u8>,
    synced: Vec<u8>,
}

#[derive(Debug, Default)]
struct Dir {
    /// Names now → inode.
    names: BTreeMap<String, u64>,
    /// Names as of the last `sync_dir` → inode.
    durable_names: BTreeMap<String, u64>,
    inodes: BTreeMap<u64, Inode>,
    next_inode: u64,
}

/// An in-memory, crashable checkpoint directory.
#[derive(Debug, Default)]
pub struct MemCheckpointStore {
    dir: RefCell<Dir>,
    /// Set: the power is off (every call fails). Shared so a failpoint callback, which must
    /// be `Send`, can cut it at an exact point of the code.
    halted: Arc<AtomicBool>,
}

fn halted_error() -> io::Error {
    io::Error::other("checkpoint store halted (simulated crash)")
}

fn not_found(name: &str) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, format!("{name}: no such file"))
}

/// SplitMix64: the crash's choices replay from a seed.
struct Choices(u64);

impl Choices {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

impl MemCheckpointStore {
    /// An empty directory.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty directory on the power switch `power_off` (shared with a simulated device,
    /// e.g. `nvme::faulty::FaultyDevice::power_switch`: both stop at the same instant).
    pub fn with_power_switch(power_off: Arc<AtomicBool>) -> Self {
        Self {
            dir: RefCell::default(),
            halted: power_off,
        }
    }

    /// The power switch: storing `true` makes every later call fail (a simulated crash at
    /// that instant).
    pub fn power_switch(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.halted)
    }

    /// Simulates a power cut: this store is halted for good and the returned one (on the
    /// power switch `power_off` of the restarted machine) holds what survived. `DropUnflushed` keeps only what was made durable, `KeepUnflushed` keeps
    /// everything, `Random` decides each unsynced name change independently and keeps each
    /// unsynced file's durable bytes, its new bytes or a torn prefix of them.
    pub fn crash(&self, mode: CrashMode, power_off: Arc<AtomicBool>) -> MemCheckpointStore {
        self.halted.store(true, Ordering::SeqCst);
        let d = self.dir.borrow();
        let mut rng = Choices(match mode {
            CrashMode::Random { seed } => seed,
            _ => 0,
        });
        let names = survived_names(&d, mode, &mut rng);
        let mut inodes = BTreeMap::new();
        for ino in names.values() {
            let Some(i) = d.inodes.get(ino) else { continue };
            let bytes = survived_bytes(i, mode, &mut rng);
            inodes.insert(
                *ino,
                Inode {
                    data: bytes.clone(),
                    synced: bytes,
                },
            );
        }
        MemCheckpointStore {
            dir: RefCell::new(Dir {
                durable_names: names.clone(),
                names,
                inodes,
                next_inode: d.next_inode,
            }),
            halted: power_off,
        }
    }

    fn check(&self) -> io::Result<()> {
        if self.halted.load(Ordering::SeqCst) {
            return Err(halted_error());
        }
        Ok(())
    }

    fn op<T: 'static>(&self, f: impl FnOnce(&mut Dir) -> io::Result<T>) -> FileFuture<'_, T> {
        let r = self.check().and_then(|()| f(&mut self.dir.borrow_mut()));
        Box::pin(std::future::ready(r))
    }
}

fn survived_names(d: &Dir, mode: CrashMode, rng: &mut Choices) -> BTreeMap<String, u64> {
    match mode {
        CrashMode::DropUnflushed => d.durable_names.clone(),
        CrashMode::KeepUnflushed => d.names.clone(),
        _ => {
            let mut out = d.durable_names.clone();
            let all: std::collections::BTreeSet<&String> =
                d.names.keys().chain(d.durable_names.keys()).collect();
            for name in all {
                let (now, then) = (d.names.get(name), d.durable_names.get(name));
                if now != then && rng.next() % 2 == 1 {
                    match now {
                        Some(ino) => out.insert(name.clone(), *ino),
                        None => out.remove(name),
                    };
                }
            }
            out
        }
    }
}

fn survived_bytes(i: &Inode, mode: CrashMode, rng: &mut Choices) -> Vec<u8> {
    if i.data == i.synced {
        return i.synced.clone();
    }
    match mode {
        CrashMode::DropUnflushed => i.synced.clone(),
        CrashMode::KeepUnflushed => i.data.clone(),
        _ => match rng.next() % 3 {
            0 => i.synced.clone(),
            1 => i.data.clone(),
            _ => {
                let keep = (rng.next() % (i.data.len() as u64 + 1)) as usize;
                i.data[..keep].to_vec()
            }
        },
    }
}

impl CheckpointStore for MemCheckpointStore {
    fn write(&self, name: &str, data: Vec<u8>) -> FileFuture<'_, ()> {
        self.op(|d| {
            let ino = match d.names.get(name) {
                Some(ino) => *ino,
                None => {
                    d.next_inode += 1;
                    d.names.insert(name.to_owned(), d.next_inode);
                    d.next_inode
                }
            };
            d.inodes.entry(ino).or_default().data = data;
            Ok(())
        })
    }

    fn sync(&self, name: &str) -> FileFuture<'_, ()> {
        self.op(|d| {
            let ino = *d.names.get(name).ok_or_else(|| not_found(name))?;
            let i = d.inodes.entry(ino).or_default();
            i.synced = i.data.clone();
            Ok(())
        })
    }

    fn rename(&self, from: &str, to: &str) -> FileFuture<'_, ()> {
        self.op(|d| {
            let ino = d.names.remove(from).ok_or_else(|| not_found(from))?;
            d.names.insert(to.to_owned(), ino);
            Ok(())
        })
    }

    fn sync_dir(&self) -> FileFuture<'_, ()> {
        self.op(|d| {
            d.durable_names = d.names.clone();
            let live: std::collections::BTreeSet<u64> = d.names.values().copied().collect();
            d.inodes.retain(|ino, _| live.contains(ino));
            Ok(())
        })
    }

    fn read(&self, name: &str) -> FileFuture<'_, Option<Vec<u8>>> {
        self.op(|d| {
            Ok(d.names.get(name).map(|ino| {
                d.inodes
                    .get(ino)
                    .map(|i| i.data.clone())
                    .unwrap_or_default()
            }))
        })
    }

    fn list(&self) -> FileFuture<'_, Vec<String>> {
        self.op(|d| Ok(d.names.keys().cloned().collect()))
    }

    fn remove(&self, name: &str) -> FileFuture<'_, ()> {
        self.op(|d| {
            d.names.remove(name);
            Ok(())
        })
    }

    fn location(&self) -> String {
        "memory".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block_on<T>(f: FileFuture<'_, T>) -> io::Result<T> {
        futures_lite::future::block_on(f)
    }

    fn written(s: &MemCheckpointStore, name: &str, data: &[u8], sync: bool, sync_dir: bool) {
        block_on(s.write(name, data.to_vec())).unwrap();
        if sync {
            block_on(s.sync(name)).unwrap();
        }
        if sync_dir {
            block_on(s.sync_dir()).unwrap();
        }
    }

    #[test]
    fn a_crash_keeps_synced_files_under_synced_names_only() {
        let s = MemCheckpointStore::new();
        written(&s, "a", b"durable", true, true);
        written(&s, "b", b"unsynced", false, true);
        written(&s, "c", b"unnamed", true, false);
        let after = s.crash(CrashMode::DropUnflushed, Arc::default());
        assert_eq!(
            block_on(after.read("a")).unwrap(),
            Some(b"durable".to_vec())
        );
        assert_eq!(block_on(after.read("b")).unwrap(), Some(Vec::new()));
        assert_eq!(block_on(after.read("c")).unwrap(), None);
    }

    #[test]
    fn an_unsynced_rename_may_be_lost_but_a_synced_one_survives() {
        let s = MemCheckpointStore::new();
        written(&s, "x.tmp", b"v1", true, false);
        block_on(s.rename("x.tmp", "x")).unwrap();
        let lost = s.crash(CrashMode::DropUnflushed, Arc::default());
        assert_eq!(block_on(lost.list()).unwrap(), Vec::<String>::new());
        let s = MemCheckpointStore::new();
        written(&s, "x.tmp", b"v1", true, false);
        block_on(s.rename("x.tmp", "x")).unwrap();
        block_on(s.sync_dir()).unwrap();
        let kept = s.crash(CrashMode::DropUnflushed, Arc::default());
        assert_eq!(block_on(kept.read("x")).unwrap(), Some(b"v1".to_vec()));
    }

    #[test]
    fn a_random_crash_leaves_old_new_or_a_prefix_of_unsynced_bytes() {
        for seed in 0..64 {
            let s = MemCheckpointStore::new();
            written(&s, "f", b"old", true, true);
            written(&s, "f", b"new contents", false, false);
            let got = block_on(
                s.crash(CrashMode::Random { seed }, Arc::default())
                    .read("f"),
            )
            .unwrap()
            .unwrap();
            assert!(
                got == b"old" || b"new contents".starts_with(&got),
                "{got:?}"
            );
        }
    }

    #[test]
    fn a_halted_store_refuses_every_call() {
        let s = MemCheckpointStore::new();
        s.power_switch().store(true, Ordering::SeqCst);
        assert!(block_on(s.write("a", vec![1])).is_err());
        assert!(block_on(s.list()).is_err());
    }
}
