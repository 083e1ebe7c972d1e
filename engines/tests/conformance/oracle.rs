//! The oracle of the conformance suite: a plain `BTreeMap` whose scans filter every key (no
//! range query, so it shares no code path with the model engine), the tiering state a tiered
//! engine must show, and the harness's shard log holding the durable copies of values.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use engines::engine::{Entry, SizeDelta};
use engines::pointer::{LogPointer, SegmentId};

use super::{Span, entry};

/// The oracle: key → (value, expiry), and what the suite expects of a tiered engine.
#[derive(Default)]
pub struct Oracle {
    /// Key → (value, expiry).
    pub map: BTreeMap<Vec<u8>, (Vec<u8>, u64)>,
    /// Pointers the entries hold (cold, or loaded back), per key.
    pub pointers: BTreeMap<Vec<u8>, LogPointer>,
    /// Keys whose value is only in the log.
    pub cold: BTreeSet<Vec<u8>>,
    /// The sum of the size changes the engine's writes returned.
    pub reported: SizeDelta,
    /// The harness's shard log: durable copies of demoted values, 4 KiB a segment.
    log: Vec<u8>,
}

const SEGMENT_BYTES: u64 = 4096;

impl Oracle {
    /// The first `limit` entries of `span`, found by filtering every key (no range query, so
    /// that the oracle shares no code path with the model engine).
    pub fn scan(&self, span: &Span) -> Vec<(Bytes, Entry)> {
        let inside = |k: &Vec<u8>| {
            k.as_slice() >= span.start.as_slice()
                && span
                    .end
                    .as_ref()
                    .is_none_or(|e| k.as_slice() < e.as_slice())
        };
        let mut all: Vec<_> = self.map.iter().filter(|(k, _)| inside(k)).collect();
        if span.reverse {
            all.reverse();
        }
        all.into_iter()
            .take(span.limit)
            .map(|(k, (v, t))| (Bytes::from(k.clone()), entry(v, *t)))
            .collect()
    }

    /// Appends a durable copy of `bytes` to the log (never across a segment boundary).
    pub fn append(&mut self, bytes: &[u8]) -> LogPointer {
        let used = self.log.len() as u64 % SEGMENT_BYTES;
        if used + bytes.len() as u64 > SEGMENT_BYTES {
            let pad = (SEGMENT_BYTES - used) as usize;
            self.log.resize(self.log.len() + pad, 0);
        }
        let at = self.log.len() as u64;
        self.log.extend_from_slice(bytes);
        LogPointer {
            segment: SegmentId((at / SEGMENT_BYTES) as u32),
            offset: at % SEGMENT_BYTES,
            len: bytes.len() as u32,
            checksum: crc32c::crc32c(bytes),
        }
    }

    /// The bytes `p` names, checked against its crc32c as a cold read checks them.
    pub fn read(&self, p: &LogPointer) -> Result<Vec<u8>, String> {
        let at = u64::from(p.segment.0) * SEGMENT_BYTES + p.offset;
        let bytes = usize::try_from(at)
            .ok()
            .and_then(|at| self.log.get(at..at + p.len as usize))
            .ok_or_else(|| format!("{p:?} points outside the log"))?;
        if crc32c::crc32c(bytes) != p.checksum {
            return Err(format!("{p:?} names bytes that fail its checksum"));
        }
        Ok(bytes.to_vec())
    }

    /// Forgets the tiering state of `key` (a write replaced or removed its entry).
    pub fn forget(&mut self, key: &[u8]) {
        self.pointers.remove(key);
        self.cold.remove(key);
    }

    /// The size a write-by-write sum must reach: key + value bytes and keys, recounted.
    pub fn recount(&self) -> SizeDelta {
        self.map.iter().fold(SizeDelta::ZERO, |s, (k, (v, _))| {
            s + SizeDelta::added(k.len(), v.len())
        })
    }

    /// (cold entries, their value bytes, live bytes of all pointers), as a tiered engine must
    /// count them (an empty value still pins its segment: one byte).
    pub fn cold_figures(&self) -> (u64, u64, u64) {
        let len = |k: &Vec<u8>| self.pointers.get(k).map_or(0, |p| u64::from(p.len));
        let cold_bytes = self.cold.iter().map(len).sum();
        let live = self
            .pointers
            .values()
            .map(|p| u64::from(p.len).max(1))
            .sum();
        (self.cold.len() as u64, cold_bytes, live)
    }
}
