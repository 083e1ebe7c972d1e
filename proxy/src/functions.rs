//! Function libraries (`FUNCTION LOAD`, `FCALL`): where they live and this proxy's view of
//! them.
//!
//! A library is stored in the cluster itself, as the raw entry `'f' | name` → its code
//! (`docs/format/redis-keys.md`): replicated by Raft and durable like any write, kept by
//! `FLUSHALL` (which deletes Redis entries, `'r' | …`) as Redis keeps functions. Each proxy
//! keeps the libraries it has read, parsed, and re-reads them when its copy is older than
//! [`MAX_AGE`] (or names no such function): a library loaded, replaced or deleted through
//! another proxy is seen here within that time; through this proxy, at once. `FCALL` sends
//! the library's code with the call, so a range never needs the registry.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use net::message::kv::{KvOp, OpResult};
use script::Library;

use crate::resp::Reply;
use crate::route::{ExecError, Router};
use crate::script_value::{to_reply, with_vm};

/// First byte of the raw key of a library.
pub const PREFIX: u8 = b'f';

/// How old this proxy's copy of the libraries may be before `FCALL` reads them again.
pub const MAX_AGE: Duration = Duration::from_secs(1);

/// Libraries read per scan step.
const PAGE: u32 = 256;

/// The raw key of library `name`.
pub fn library_key(name: &str) -> Bytes {
    let mut k = Vec::with_capacity(name.len() + 1);
    k.push(PREFIX);
    k.extend_from_slice(name.as_bytes());
    Bytes::from(k)
}

/// A library as this proxy knows it: its code and what loading it found.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The code (shebang included).
    pub code: Bytes,
    /// Its name and functions.
    pub library: Library,
}

/// This proxy's copy of the libraries.
#[derive(Debug, Default)]
pub struct Registry {
    inner: Mutex<Copy>,
}

#[derive(Debug, Default)]
struct Copy {
    libraries: BTreeMap<String, Loaded>,
    read_at: Option<Instant>,
}

impl Registry {
    fn lock(&self) -> std::sync::MutexGuard<'_, Copy> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The library defining `function` (its name in any case, as Redis) and the function's
    /// flags, if this proxy's copy is younger than [`MAX_AGE`] and has it.
    pub fn fresh(&self, function: &[u8]) -> Option<(Loaded, script::Flags)> {
        let copy = self.lock();
        copy.read_at.filter(|t| t.elapsed() < MAX_AGE)?;
        find(&copy.libraries, function)
    }

    /// The library defining `function` in this proxy's copy, however old.
    pub fn any(&self, function: &[u8]) -> Option<(Loaded, script::Flags)> {
        find(&self.lock().libraries, function)
    }

    /// Every library, by name.
    pub fn all(&self) -> Vec<Loaded> {
        self.lock().libraries.values().cloned().collect()
    }

    /// Replaces the copy with `libraries`, read now.
    pub fn set_all(&self, libraries: Vec<Loaded>) {
        let mut copy = self.lock();
        copy.libraries = libraries
            .into_iter()
            .map(|l| (l.library.name.clone(), l))
            .collect();
        copy.read_at = Some(Instant::now());
    }

    /// Records a library this proxy stored.
    pub fn put(&self, loaded: Loaded) {
        self.lock()
            .libraries
            .insert(loaded.library.name.clone(), loaded);
    }

    /// Forgets library `name` (deleted through this proxy).
    pub fn remove(&self, name: &str) {
        self.lock().libraries.remove(name);
    }
}

fn find(libraries: &BTreeMap<String, Loaded>, function: &[u8]) -> Option<(Loaded, script::Flags)> {
    libraries.values().find_map(|l| {
        l.library
            .functions
            .iter()
            .find(|f| f.name.as_bytes().eq_ignore_ascii_case(function))
            .map(|f| (l.clone(), f.flags))
    })
}

/// Parses library `code` with this thread's VM; `Err` is the Redis error reply.
pub fn parse(code: &Bytes) -> Result<Loaded, Reply> {
    match with_vm(|vm| vm.load_library(code))? {
        Ok(library) => Ok(Loaded {
            code: code.clone(),
            library,
        }),
        Err(error) => Err(to_reply(error)),
    }
}

/// Reads every stored library (their codes), in name order.
pub async fn read_all(router: &Router) -> Result<Vec<Bytes>, ExecError> {
    let end = Bytes::from_static(&[PREFIX + 1]);
    let mut pos = Bytes::from_static(&[PREFIX]);
    let mut codes = Vec::new();
    loop {
        let scan = KvOp::Scan {
            start: pos.clone(),
            end: end.clone(),
            limit: PAGE,
            reverse: false,
            keys_only: false,
        };
        let result = router.exec(vec![(pos.clone(), scan)]).await.pop();
        let (pairs, next) = match result {
            Some(Ok(OpResult::Scan { pairs, next })) => (pairs, next),
            Some(Ok(other)) => {
                return Err(ExecError::Unavailable(format!(
                    "unexpected scan result {other:?}"
                )));
            }
            Some(Err(e)) => return Err(e),
            None => return Err(ExecError::Unavailable("no scan result".into())),
        };
        codes.extend(pairs.into_iter().map(|(_, code)| code));
        pos = match next {
            Some(last) => after(&last),
            None => {
                let range = router.range_of(&pos).await?;
                if range.end.is_empty() || range.end >= end {
                    return Ok(codes);
                }
                range.end
            }
        };
    }
}

/// Why the libraries could not be read.
#[derive(Debug)]
pub enum RefreshError {
    /// The cluster did not answer.
    Read(ExecError),
    /// A stored library does not load (written by another build, or damaged): its error.
    Load(Reply),
}

/// Re-reads and parses every library into `registry`. A stored library this build cannot
/// load is reported, not skipped silently.
pub async fn refresh(router: &Router, registry: &Registry) -> Result<(), RefreshError> {
    let codes = read_all(router).await.map_err(RefreshError::Read)?;
    let mut loaded = Vec::with_capacity(codes.len());
    for code in &codes {
        loaded.push(parse(code).map_err(RefreshError::Load)?);
    }
    registry.set_all(loaded);
    Ok(())
}

fn after(key: &[u8]) -> Bytes {
    let mut k = Vec::with_capacity(key.len() + 1);
    k.extend_from_slice(key);
    k.push(0);
    Bytes::from(k)
}
