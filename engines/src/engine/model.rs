//! [`ModelEngine`]: the reference [`Engine`], a `BTreeMap`. The conformance suite compares
//! every other engine with it, and ds-node's state-machine tests run on it.

use std::collections::BTreeMap;
use std::ops::Bound;

use bytes::Bytes;

use super::{Engine, Entry, SizeDelta};

/// The reference engine: a `BTreeMap`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ModelEngine {
    map: BTreeMap<Bytes, Entry>,
}

impl ModelEngine {
    /// Number of entries, expired included.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

impl Engine for ModelEngine {
    fn get(&self, key: &[u8]) -> Option<Entry> {
        self.map.get(key).cloned()
    }
    fn put(&mut self, key: Bytes, entry: Entry) -> SizeDelta {
        let (key_len, new_len) = (key.len(), entry.value.len());
        match self.map.insert(key, entry) {
            Some(old) => SizeDelta::replaced(old.value.len(), new_len),
            None => SizeDelta::added(key_len, new_len),
        }
    }
    fn delete(&mut self, key: &[u8]) -> Option<SizeDelta> {
        let old = self.map.remove(key)?;
        Some(SizeDelta::removed(key.len(), old.value.len()))
    }
    fn scan(
        &self,
        start: &[u8],
        end: Option<&[u8]>,
        limit: usize,
        reverse: bool,
    ) -> Vec<(Bytes, Entry)> {
        if end.is_some_and(|e| e <= start) {
            return Vec::new();
        }
        let lo = Bound::Included(start);
        let hi = end.map_or(Bound::Unbounded, Bound::Excluded);
        let range = self.map.range::<[u8], _>((lo, hi));
        let own = |(k, e): (&Bytes, &Entry)| (k.clone(), e.clone());
        if reverse {
            range.rev().take(limit).map(own).collect()
        } else {
            range.take(limit).map(own).collect()
        }
    }
}
