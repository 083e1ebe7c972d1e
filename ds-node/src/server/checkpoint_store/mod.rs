//! [`CheckpointStore`]: the file operations behind checkpoints (`server::checkpoint`), one
//! system call each, so the order that makes a checkpoint durable — write a temporary file,
//! fsync it, rename it over the final name, fsync the directory — is spelled out once, in
//! `server::checkpoint`, and the same code runs on the file system ([`FsCheckpointStore`],
//! production) and on a crashable in-memory directory ([`MemCheckpointStore`], tests).
//!
//! A leaf of the `server` layering (shard state): imports `core` only.

mod fs;
mod mem;

use std::future::Future;
use std::pin::Pin;

pub use fs::FsCheckpointStore;
pub use mem::MemCheckpointStore;

/// A file operation in flight (checkpoint I/O is a cold path: one boxed future per call).
pub type FileFuture<'a, T> = Pin<Box<dyn Future<Output = std::io::Result<T>> + 'a>>;

/// One flat directory of checkpoint files.
///
/// Durability follows POSIX: [`write`](Self::write) leaves the contents *written*, durable
/// once [`sync`](Self::sync) returns; [`rename`](Self::rename) and [`remove`](Self::remove)
/// change the directory, durable once [`sync_dir`](Self::sync_dir) returns. A crash may keep,
/// drop or tear anything not yet made durable.
pub trait CheckpointStore: std::fmt::Debug {
    /// Creates `name` (or truncates it) and writes `data` to it.
    fn write(&self, name: &str, data: Vec<u8>) -> FileFuture<'_, ()>;
    /// Makes the contents of `name` durable (`fsync`).
    fn sync(&self, name: &str) -> FileFuture<'_, ()>;
    /// Renames `from` to `to`, replacing `to` if it exists.
    fn rename(&self, from: &str, to: &str) -> FileFuture<'_, ()>;
    /// Makes the directory's names (creations, renames, removals) durable.
    fn sync_dir(&self) -> FileFuture<'_, ()>;
    /// Reads the whole of `name` (`None`: no such file).
    fn read(&self, name: &str) -> FileFuture<'_, Option<Vec<u8>>>;
    /// The names of the files in the directory (empty when it does not exist yet).
    fn list(&self) -> FileFuture<'_, Vec<String>>;
    /// Removes `name` (absent already: not an error).
    fn remove(&self, name: &str) -> FileFuture<'_, ()>;
    /// Where the files live, for messages.
    fn location(&self) -> String;
}
