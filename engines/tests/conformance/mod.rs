//! The engine side of the conformance suite: what it needs of an engine ([`Conformance`],
//! implemented for every engine of `engines::engine`), the keys a read declares ([`Span`]),
//! and the oracle it compares them with (`oracle`).

use bytes::Bytes;
use engines::engine::{Engine, Entry, MasstreeEngine, ModelEngine, SizeDelta};
use engines::pointer::LogPointer;

mod oracle;
pub use oracle::Oracle;

/// What the suite uses of an engine beyond [`Engine`]: its tiering and accounting, where it
/// has them. The defaults are those of an engine without cold entries.
pub trait Conformance: Engine + Default {
    /// Whether the engine keeps cold entries (only a pointer into the shard log).
    const TIERED: bool;
    /// Inserts `key` as recovery does when a checkpoint names a durable copy of its value:
    /// cold, with `pointer` (an engine without cold entries stores `bytes`); the size change.
    fn put_cold(
        &mut self,
        key: Bytes,
        _pointer: LogPointer,
        bytes: &[u8],
        expire_at_ms: u64,
    ) -> SizeDelta {
        self.put(key, entry(bytes, expire_at_ms))
    }
    /// Makes `key` cold with `pointer`, a durable copy of `bytes`; whether it did.
    fn demote(&mut self, _key: &[u8], _bytes: &[u8], _pointer: LogPointer) -> bool {
        false
    }
    /// The cold entries among the first `limit` entries of `[start, end)` in scan order.
    fn cold_in(&self, _span: &Span) -> Vec<(Bytes, LogPointer)> {
        Vec::new()
    }
    /// Loads the bytes of cold entry `key`; whether it was still cold with `pointer`.
    fn load(&mut self, _key: &[u8], _pointer: LogPointer, _bytes: &[u8]) -> bool {
        false
    }
    /// Makes a loaded entry cold again; whether it did.
    fn drop_loaded(&mut self, _key: &[u8], _pointer: LogPointer) -> bool {
        false
    }
    /// (cold entries, their value bytes, live bytes of all pointers), if the engine has them.
    fn cold_figures(&self) -> Option<(u64, u64, u64)> {
        None
    }
    /// Cold entries reached by a read that was not prefetched.
    fn cold_misses(&self) -> u64 {
        0
    }
}

impl Conformance for ModelEngine {
    const TIERED: bool = false;
}

impl Conformance for MasstreeEngine {
    const TIERED: bool = true;
    fn put_cold(
        &mut self,
        key: Bytes,
        pointer: LogPointer,
        _bytes: &[u8],
        expire_at_ms: u64,
    ) -> SizeDelta {
        MasstreeEngine::put_cold(self, key, pointer, expire_at_ms)
    }
    fn demote(&mut self, key: &[u8], bytes: &[u8], pointer: LogPointer) -> bool {
        MasstreeEngine::demote(self, key, bytes, pointer)
    }
    fn cold_in(&self, span: &Span) -> Vec<(Bytes, LogPointer)> {
        let (mut out, mut visited) = (Vec::new(), 0usize);
        let end = span.end.as_deref().unwrap_or_default();
        if span.limit == 0 || span.end.as_ref().is_some_and(|e| *e <= span.start) {
            return out;
        }
        let more = |_expiry: u64| {
            visited += 1;
            visited < span.limit
        };
        MasstreeEngine::cold_in(self, &span.start, end, span.reverse, more, &mut out);
        out
    }
    fn load(&mut self, key: &[u8], pointer: LogPointer, bytes: &[u8]) -> bool {
        MasstreeEngine::load(self, key, pointer, bytes)
    }
    fn drop_loaded(&mut self, key: &[u8], pointer: LogPointer) -> bool {
        self.drop_transient(key, pointer, None)
    }
    fn cold_figures(&self) -> Option<(u64, u64, u64)> {
        let s = self.cold_stats();
        Some((s.cold_entries, s.cold_value_bytes, self.live_bytes_total()))
    }
    fn cold_misses(&self) -> u64 {
        self.take_cold_misses()
    }
}

/// The keys a read declares before it runs: the first `limit` keys of `[start, end)` (`end`
/// `None`: unbounded), from the end when `reverse`. A point read is a span of one key.
#[derive(Clone, Debug)]
pub struct Span {
    pub start: Vec<u8>,
    pub end: Option<Vec<u8>>,
    pub limit: usize,
    pub reverse: bool,
}

impl Span {
    pub fn point(key: &[u8]) -> Span {
        let mut end = key.to_vec();
        end.push(0);
        Span {
            start: key.to_vec(),
            end: Some(end),
            limit: 1,
            reverse: false,
        }
    }
}

pub fn entry(value: &[u8], expire_at_ms: u64) -> Entry {
    Entry {
        value: Bytes::copy_from_slice(value),
        expire_at_ms,
    }
}
