//! A bounded least-recently-used cache keyed by a script's (or library's) source bytes.
//!
//! Keyed by the source itself, not its SHA1: a hit costs one hash of the source and one
//! comparison, where hashing it to SHA1 on every run cost ~19,000 instructions for a
//! 110-byte script (`docs/benchmarks.md`, "Scripting … after"). Bounded both in entries and
//! in the bytes of the sources it keeps.

use std::collections::HashMap;

/// Cached values by source, at most `max_entries` of them holding at most `max_bytes` of
/// source; the least recently used go first.
pub(crate) struct BodyCache<V> {
    map: HashMap<Box<[u8]>, (V, u64)>,
    max_entries: usize,
    max_bytes: usize,
    bytes: usize,
    clock: u64,
}

impl<V> BodyCache<V> {
    pub(crate) fn new(max_entries: usize, max_bytes: usize) -> Self {
        Self {
            map: HashMap::new(),
            max_entries,
            max_bytes,
            bytes: 0,
            clock: 0,
        }
    }

    /// The value cached for `body`, now the most recently used.
    pub(crate) fn get(&mut self, body: &[u8]) -> Option<&V> {
        self.clock += 1;
        let clock = self.clock;
        self.map.get_mut(body).map(|(v, used)| {
            *used = clock;
            &*v
        })
    }

    /// Caches `value` for `body`, dropping the least recently used entries to make room. A
    /// source larger than the whole byte bound is not cached.
    pub(crate) fn insert(&mut self, body: &[u8], value: V) {
        if self.max_entries == 0 || body.len() > self.max_bytes {
            return;
        }
        if let Some((_, _)) = self.map.remove(body) {
            self.bytes -= body.len();
        }
        while !self.map.is_empty()
            && (self.map.len() >= self.max_entries || self.bytes + body.len() > self.max_bytes)
        {
            self.evict_oldest();
        }
        self.clock += 1;
        self.bytes += body.len();
        self.map.insert(body.into(), (value, self.clock));
    }

    fn evict_oldest(&mut self) {
        let oldest = self
            .map
            .iter()
            .min_by_key(|(_, (_, used))| *used)
            .map(|(k, _)| k.clone());
        if let Some(k) = oldest {
            self.bytes -= k.len();
            self.map.remove(&k);
        }
    }

    pub(crate) fn clear(&mut self) {
        self.map.clear();
        self.bytes = 0;
    }

    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    pub(crate) fn values(&self) -> impl Iterator<Item = &V> {
        self.map.values().map(|(v, _)| v)
    }
}

#[cfg(test)]
mod tests {
    use super::BodyCache;

    #[test]
    fn the_least_recently_used_entry_goes_first() {
        let mut c = BodyCache::new(2, 1 << 20);
        c.insert(b"a", 1);
        c.insert(b"b", 2);
        assert_eq!(c.get(b"a"), Some(&1));
        c.insert(b"c", 3);
        assert_eq!(c.len(), 2);
        assert_eq!(c.get(b"b"), None);
        assert_eq!(c.get(b"a"), Some(&1));
        assert_eq!(c.get(b"c"), Some(&3));
    }

    #[test]
    fn source_bytes_are_bounded() {
        let mut c = BodyCache::new(100, 10);
        c.insert(b"123456", 1);
        c.insert(b"abcdef", 2);
        assert_eq!(c.len(), 1);
        assert_eq!(c.get(b"abcdef"), Some(&2));
        c.insert(&[b'x'; 11], 3);
        assert_eq!(c.get(&[b'x'; 11]), None);
        assert_eq!(c.len(), 1);
    }

    #[test]
    fn reinserting_a_source_replaces_it_without_double_counting() {
        let mut c = BodyCache::new(100, 6);
        c.insert(b"abc", 1);
        c.insert(b"abc", 2);
        c.insert(b"def", 3);
        assert_eq!(c.len(), 2);
        assert_eq!(c.get(b"abc"), Some(&2));
    }

    #[test]
    fn an_empty_bound_caches_nothing() {
        let mut c = BodyCache::new(0, 100);
        c.insert(b"a", 1);
        assert_eq!(c.len(), 0);
    }
}
