//! [`FsCheckpointStore`]: checkpoint files in a directory of the file system, each call run
//! on the executor's blocking pool (`core::blocking`), off the reactor.
#![allow(
    clippy::disallowed_types,
    reason = "every std::fs call here runs on the executor's blocking pool (core::blocking), off the reactor"
)]

use std::io;
use std::path::PathBuf;

use super::{CheckpointStore, FileFuture};

/// Checkpoint files in `dir` (created at the first write).
#[derive(Debug, Clone)]
pub struct FsCheckpointStore {
    dir: PathBuf,
}

impl FsCheckpointStore {
    /// A store over `dir`.
    pub fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    /// Runs `f` with the directory on the blocking pool.
    fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(PathBuf) -> io::Result<T> + Send + 'static,
    ) -> FileFuture<'_, T> {
        let dir = self.dir.clone();
        Box::pin(crate::core::blocking(move || f(dir)))
    }
}

impl CheckpointStore for FsCheckpointStore {
    fn write(&self, name: &str, data: Vec<u8>) -> FileFuture<'_, ()> {
        let name = name.to_owned();
        self.run(move |dir| {
            use std::io::Write as _;
            std::fs::create_dir_all(&dir)?;
            let mut f = std::fs::File::create(dir.join(name))?;
            f.write_all(&data)
        })
    }

    fn sync(&self, name: &str) -> FileFuture<'_, ()> {
        let name = name.to_owned();
        self.run(move |dir| std::fs::File::open(dir.join(name))?.sync_all())
    }

    fn rename(&self, from: &str, to: &str) -> FileFuture<'_, ()> {
        let (from, to) = (from.to_owned(), to.to_owned());
        self.run(move |dir| std::fs::rename(dir.join(from), dir.join(to)))
    }

    fn sync_dir(&self) -> FileFuture<'_, ()> {
        self.run(|dir| std::fs::File::open(dir)?.sync_all())
    }

    fn read(&self, name: &str) -> FileFuture<'_, Option<Vec<u8>>> {
        let name = name.to_owned();
        self.run(move |dir| match std::fs::read(dir.join(name)) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        })
    }

    fn list(&self) -> FileFuture<'_, Vec<String>> {
        self.run(|dir| {
            let rd = match std::fs::read_dir(&dir) {
                Ok(rd) => rd,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
                Err(e) => return Err(e),
            };
            let mut out = Vec::new();
            for ent in rd {
                if let Some(name) = ent?.file_name().to_str() {
                    out.push(name.to_owned());
                }
            }
            Ok(out)
        })
    }

    fn remove(&self, name: &str) -> FileFuture<'_, ()> {
        let name = name.to_owned();
        self.run(move |dir| match std::fs::remove_file(dir.join(name)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        })
    }

    fn location(&self) -> String {
        self.dir.display().to_string()
    }
}
