//! Rank indexes of large sorted sets: derived, in-memory, per range (the range's own state,
//! never shared across shards, no locks).
//!
//! A sorted set's score index (`'z' | version | score_bytes | member`, [`crate::keyspace`])
//! is ordered but not counted: without help a rank is a count of the entries before it. A
//! [`RankIndex`] cuts the set's score index into buckets of consecutive entries — each
//! bucket is its first entry's suffix (`score_bytes | member`) and its count — and keeps
//! the counts in a Fenwick tree over the buckets. "How many entries sort before `x`" is a
//! binary search for `x`'s bucket, a Fenwick prefix sum and a count of at most one bucket
//! of engine entries; "which entry is at rank `r`" a Fenwick descent and a skip of at most
//! one bucket: `O(log(n/B) + B)` both. A bucket's first suffix is a lower bound — at or
//! before its first entry, after every entry of the bucket before it — so deleting a
//! bucket's first entry needs no engine read. A bucket holds 1 to `2B` entries: one that grows
//! past `2B` is split in two (its middle entry read from the engine), one that shrinks
//! below `B/4` is merged into its right neighbour when the two fit in `2B`. Splits and
//! merges rebuild the Fenwick tree (`O(n/B)`, at most once every `B/2` writes to a bucket).
//!
//! [`ZRanks`] holds the indexes of one range by `(database, key)`, each built for one
//! version of the key with its member count: an index is used only while the set's version
//! and count match, and is dropped otherwise (the key was deleted, overwritten, expired,
//! renamed over, restored or flushed: every such change gives the key a new version). Only
//! sets above a threshold get one; their total memory is accounted and capped. Nothing here
//! is persisted or replicated: an index is built by one walk of the score index on its
//! first use (after a restart, a snapshot, a split or on a new leader) and kept up to date
//! by every insertion and deletion of a score index entry (`zset::zinsert`, `zset::zdelete`).

use std::collections::HashMap;

use bytes::Bytes;
use net::keyspace::Db;

/// Sets with at most this many members are counted (no index).
pub const THRESHOLD: u64 = 512;

/// The bucket size `B`: a bucket holds 1 to `2B` index entries.
pub const BUCKET: u32 = 128;

/// Most bytes all the rank indexes of one range may take; past it no index is built.
pub const MEMORY_MAX_BYTES: usize = 32 << 20;

/// Fixed cost of one bucket besides its suffix: the `Bucket`, its Fenwick node and `Bytes`'
/// allocation header.
const BUCKET_OVERHEAD: usize = std::mem::size_of::<Bucket>() + 8 + 16;

/// Fixed cost of one index besides its buckets (map slot, key copy header).
const INDEX_OVERHEAD: usize = std::mem::size_of::<RankIndex>() + 64;

/// The tuning of a range's rank indexes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RankConfig {
    /// Sets with more members than this get an index.
    pub threshold: u64,
    /// Bucket size `B`.
    pub bucket: u32,
    /// Memory cap of all indexes of the range.
    pub memory_max_bytes: usize,
}

impl Default for RankConfig {
    fn default() -> Self {
        Self {
            threshold: THRESHOLD,
            bucket: BUCKET,
            memory_max_bytes: MEMORY_MAX_BYTES,
        }
    }
}

/// A run of consecutive score index entries.
#[derive(Debug, Clone)]
struct Bucket {
    /// A suffix (`score_bytes | member`) at or before its first entry and after every entry
    /// of the bucket before it (its first entry's until that is deleted).
    first: Bytes,
    /// Its entries.
    count: u32,
}

/// Where a position falls: bucket `at`, whose first entry is `first`, with `before` entries
/// in the buckets before it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spot {
    /// The bucket.
    pub at: usize,
    /// Entries in the buckets before it.
    pub before: u64,
    /// Its first entry's suffix.
    pub first: Bytes,
}

/// What the index needs read from the engine after a change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fixup {
    /// Nothing.
    None,
    /// Bucket `at` (first entry `first`) outgrew `2B`: split it at its entry number `mid`
    /// ([`RankIndex::split`]).
    Split {
        /// The bucket.
        at: usize,
        /// Its first entry.
        first: Bytes,
        /// Where to cut it (entries left in it).
        mid: u32,
    },
}

/// The rank index of one version of one sorted set.
#[derive(Debug, Clone)]
pub struct RankIndex {
    version: u64,
    total: u64,
    buckets: Vec<Bucket>,
    /// Fenwick tree over `buckets[i].count` (1-based inside).
    tree: Vec<u64>,
    /// Bytes of the suffixes held.
    suffix_bytes: usize,
    bucket_max: u32,
}

impl RankIndex {
    /// An index of version `version` from its entries' suffixes in order, `bucket` (`B`)
    /// entries per bucket.
    pub fn build<T: AsRef<[u8]>>(
        version: u64,
        bucket: u32,
        suffixes: impl IntoIterator<Item = T>,
    ) -> Self {
        let mut idx = Self::empty(version, bucket);
        for s in suffixes {
            idx.push_last(s.as_ref());
        }
        idx.finish();
        idx
    }

    /// An empty index of version `version`, to fill with [`RankIndex::push_last`].
    pub fn empty(version: u64, bucket: u32) -> Self {
        Self {
            version,
            total: 0,
            buckets: Vec::new(),
            tree: vec![0],
            suffix_bytes: 0,
            bucket_max: 2 * bucket.max(1),
        }
    }

    /// Appends suffix `s`, after every entry held (a build, in order); call
    /// [`RankIndex::finish`] before any query.
    pub fn push_last(&mut self, s: &[u8]) {
        match self.buckets.last_mut() {
            Some(last) if last.count < self.bucket_max / 2 => last.count += 1,
            _ => {
                self.suffix_bytes += s.len();
                self.buckets.push(Bucket {
                    first: Bytes::copy_from_slice(s),
                    count: 1,
                });
            }
        }
        self.total += 1;
    }

    /// Completes a build.
    pub fn finish(&mut self) {
        self.rebuild_tree();
    }

    /// The set version it indexes.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Entries indexed.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Buckets.
    pub fn buckets(&self) -> usize {
        self.buckets.len()
    }

    /// Approximate bytes held.
    pub fn memory_bytes(&self) -> usize {
        INDEX_OVERHEAD + self.suffix_bytes + self.buckets.len() * BUCKET_OVERHEAD
    }

    /// The bucket holding (or that would hold) suffix `s`: the last whose first entry is at
    /// or before `s` (the first bucket for a suffix before every entry). `None` when empty.
    pub fn locate(&self, s: &[u8]) -> Option<Spot> {
        if self.buckets.is_empty() {
            return None;
        }
        let at = self
            .buckets
            .partition_point(|b| b.first.as_ref() <= s)
            .saturating_sub(1);
        Some(self.spot(at))
    }

    /// The bucket holding rank `r` (`r < total`).
    pub fn at_rank(&self, r: u64) -> Option<Spot> {
        if r >= self.total {
            return None;
        }
        // Fenwick descent: the largest prefix of buckets whose sum is at most `r`.
        let mut pos = 0usize;
        let mut left = r;
        let mut step = self.tree.len().next_power_of_two();
        while step > 0 {
            let next = pos + step;
            if next < self.tree.len() && self.tree[next] <= left {
                pos = next;
                left -= self.tree[next];
            }
            step /= 2;
        }
        Some(Spot {
            at: pos,
            before: r - left,
            first: self.buckets[pos].first.clone(),
        })
    }

    /// Notes suffix `s` inserted (it was absent).
    pub fn inserted(&mut self, s: &[u8]) -> Fixup {
        let Some(spot) = self.locate(s) else {
            self.buckets.push(Bucket {
                first: Bytes::copy_from_slice(s),
                count: 1,
            });
            self.suffix_bytes += s.len();
            self.total = 1;
            self.rebuild_tree();
            return Fixup::None;
        };
        let at = spot.at;
        if s < self.buckets[at].first.as_ref() {
            self.replace_first(at, Bytes::copy_from_slice(s));
        }
        self.buckets[at].count += 1;
        self.total += 1;
        self.add(at, 1);
        let b = &self.buckets[at];
        if b.count > self.bucket_max {
            return Fixup::Split {
                at,
                first: b.first.clone(),
                mid: b.count / 2,
            };
        }
        Fixup::None
    }

    /// Notes suffix `s` deleted (it was present).
    pub fn removed(&mut self, s: &[u8]) -> Fixup {
        let Some(spot) = self.locate(s) else {
            return Fixup::None;
        };
        let at = spot.at;
        self.buckets[at].count -= 1;
        self.total -= 1;
        if self.buckets[at].count == 0 {
            let gone = self.buckets.remove(at);
            self.suffix_bytes -= gone.first.len();
            self.rebuild_tree();
            return Fixup::None;
        }
        self.add_neg(at);
        if self.merge_small(at) {
            self.rebuild_tree();
        }
        Fixup::None
    }

    /// Splits bucket `at` after its first `mid` entries; `second` is the suffix of its entry
    /// number `mid` (0-based), the first of the new bucket.
    pub fn split(&mut self, at: usize, mid: u32, second: Bytes) {
        let rest = self.buckets[at].count - mid;
        self.buckets[at].count = mid;
        self.suffix_bytes += second.len();
        self.buckets.insert(
            at + 1,
            Bucket {
                first: second,
                count: rest,
            },
        );
        self.rebuild_tree();
    }

    /// Merges bucket `at` with its right neighbour when it is small and both fit.
    fn merge_small(&mut self, at: usize) -> bool {
        let small = self.buckets[at].count < (self.bucket_max / 8).max(1);
        let Some(next) = self.buckets.get(at + 1) else {
            return false;
        };
        if !small || self.buckets[at].count + next.count > self.bucket_max {
            return false;
        }
        let gone = self.buckets.remove(at + 1);
        self.suffix_bytes -= gone.first.len();
        self.buckets[at].count += gone.count;
        true
    }

    fn replace_first(&mut self, at: usize, first: Bytes) {
        self.suffix_bytes = self.suffix_bytes + first.len() - self.buckets[at].first.len();
        self.buckets[at].first = first;
    }

    fn spot(&self, at: usize) -> Spot {
        Spot {
            at,
            before: self.prefix(at),
            first: self.buckets[at].first.clone(),
        }
    }

    /// Entries in buckets `0..at`.
    fn prefix(&self, at: usize) -> u64 {
        let mut i = at;
        let mut sum = 0;
        while i > 0 {
            sum += self.tree[i];
            i &= i - 1;
        }
        sum
    }

    fn add(&mut self, at: usize, delta: u64) {
        let mut i = at + 1;
        while i < self.tree.len() {
            self.tree[i] += delta;
            i += i & i.wrapping_neg();
        }
    }

    fn add_neg(&mut self, at: usize) {
        let mut i = at + 1;
        while i < self.tree.len() {
            self.tree[i] -= 1;
            i += i & i.wrapping_neg();
        }
    }

    fn rebuild_tree(&mut self) {
        let n = self.buckets.len();
        self.tree.clear();
        self.tree.resize(n + 1, 0);
        for (i, b) in self.buckets.iter().enumerate() {
            self.tree[i + 1] += u64::from(b.count);
            let parent = (i + 1) + ((i + 1) & (i + 1).wrapping_neg());
            if parent <= n {
                self.tree[parent] += self.tree[i + 1];
            }
        }
    }
}

/// Counters of a range's rank indexes (summed into the shard's metrics).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RankStats {
    /// Indexes built (one walk of a set's score index each).
    pub builds: u64,
    /// Indexes dropped because the set's version or count no longer matched.
    pub stale_drops: u64,
    /// Builds refused because the range's indexes were at their memory cap.
    pub refused: u64,
    /// Rank queries answered by an index.
    pub hits: u64,
}

/// The rank indexes of a shard's ranges, summed (`/metrics`: `ds_zrank_*`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RankFigures {
    /// Indexes held (gauge `ds_zrank_indexes`).
    pub indexes: u64,
    /// Their bytes (gauge `ds_zrank_memory_bytes`).
    pub memory_bytes: u64,
    /// Builds (`ds_zrank_builds_total`), stale drops (`ds_zrank_stale_drops_total`), builds
    /// refused at the cap (`ds_zrank_refused_total`), queries answered (`ds_zrank_hits_total`)
    /// of the ranges hosted now.
    pub stats: RankStats,
}

impl RankFigures {
    /// Adds `o` into these.
    pub fn add(&mut self, o: &RankFigures) {
        self.indexes += o.indexes;
        self.memory_bytes += o.memory_bytes;
        self.stats.builds += o.stats.builds;
        self.stats.stale_drops += o.stats.stale_drops;
        self.stats.refused += o.stats.refused;
        self.stats.hits += o.stats.hits;
    }

    /// Appends them in the Prometheus text format.
    pub fn render(&self, s: &mut String) {
        for (name, kind, v) in [
            ("ds_zrank_indexes", "gauge", self.indexes),
            ("ds_zrank_memory_bytes", "gauge", self.memory_bytes),
            ("ds_zrank_builds_total", "counter", self.stats.builds),
            (
                "ds_zrank_stale_drops_total",
                "counter",
                self.stats.stale_drops,
            ),
            ("ds_zrank_refused_total", "counter", self.stats.refused),
            ("ds_zrank_hits_total", "counter", self.stats.hits),
        ] {
            s.push_str(&format!("# TYPE {name} {kind}\n{name} {v}\n"));
        }
    }
}

/// The rank indexes of one range by `(database, key)`.
#[derive(Debug, Default)]
pub struct ZRanks {
    cfg: RankConfig,
    /// By database, then key (looked up by `&[u8]`, no copy of the key).
    map: HashMap<Db, HashMap<Bytes, RankIndex>>,
    memory_bytes: usize,
    stats: RankStats,
}

impl ZRanks {
    /// No indexes, with tuning `cfg`.
    pub fn new(cfg: RankConfig) -> Self {
        Self {
            cfg,
            ..Self::default()
        }
    }

    /// The tuning.
    pub fn config(&self) -> RankConfig {
        self.cfg
    }

    /// Bytes held by all indexes (approximate).
    pub fn memory_bytes(&self) -> usize {
        self.memory_bytes
    }

    /// Indexes held.
    pub fn len(&self) -> usize {
        self.map.values().map(HashMap::len).sum()
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.map.values().all(HashMap::is_empty)
    }

    /// The counters.
    pub fn stats(&self) -> RankStats {
        self.stats
    }

    /// The figures of this range.
    pub fn figures(&self) -> RankFigures {
        RankFigures {
            indexes: self.len() as u64,
            memory_bytes: self.memory_bytes as u64,
            stats: self.stats,
        }
    }

    /// Drops every index (the range was reloaded: a restart, a snapshot or a split).
    pub fn clear(&mut self) {
        self.map.clear();
        self.memory_bytes = 0;
    }

    /// Drops the index of `key`, if any.
    pub fn drop_key(&mut self, db: Db, key: &[u8]) {
        if let Some(idx) = self.map.get_mut(&db).and_then(|m| m.remove(key)) {
            self.memory_bytes -= idx.memory_bytes() + key.len();
        }
    }

    /// Whether a set of `count` members should have an index.
    pub fn wants(&self, count: u64) -> bool {
        count > self.cfg.threshold
    }

    /// Whether an index of about `count` entries fits under the cap.
    pub fn fits(&mut self, count: u64) -> bool {
        let buckets =
            usize::try_from(count / u64::from(self.cfg.bucket.max(1)) + 1).unwrap_or(usize::MAX);
        let need = INDEX_OVERHEAD.saturating_add(buckets.saturating_mul(BUCKET_OVERHEAD + 24));
        let ok = self.memory_bytes.saturating_add(need) <= self.cfg.memory_max_bytes;
        if !ok {
            self.stats.refused += 1;
        }
        ok
    }

    /// The index of `key` when it is of `version` with `count` entries; a stale one is
    /// dropped.
    pub fn get(&mut self, db: Db, key: &[u8], version: u64, count: u64) -> Option<&RankIndex> {
        let idx = self.map.get(&db)?.get(key)?;
        if idx.version != version || idx.total != count {
            self.stats.stale_drops += 1;
            self.drop_key(db, key);
            return None;
        }
        self.map.get(&db)?.get(key)
    }

    /// Counts a rank query answered by an index.
    pub fn note_hit(&mut self) {
        self.stats.hits += 1;
    }

    /// Keeps only the indexes for which `live(db, key, version)` holds (the others' sets
    /// were deleted or replaced): what makes room when the cap is reached.
    pub fn retain(&mut self, mut live: impl FnMut(Db, &[u8], u64) -> bool) {
        let mut freed = 0;
        for (db, m) in &mut self.map {
            m.retain(|key, idx| {
                let keep = live(*db, key, idx.version);
                if !keep {
                    freed += idx.memory_bytes() + key.len();
                }
                keep
            });
        }
        self.memory_bytes -= freed;
    }

    /// Stores a built index of `key`.
    pub fn insert(&mut self, db: Db, key: &[u8], idx: RankIndex) {
        self.drop_key(db, key);
        self.stats.builds += 1;
        self.memory_bytes += idx.memory_bytes() + key.len();
        self.map
            .entry(db)
            .or_default()
            .insert(Bytes::copy_from_slice(key), idx);
    }

    /// Applies `change` to the index of `key` at `version`, if there is one (an index of
    /// another version is dropped); the fix-up the engine must answer, accounted.
    pub fn update(
        &mut self,
        db: Db,
        key: &[u8],
        version: u64,
        change: impl FnOnce(&mut RankIndex) -> Fixup,
    ) -> Fixup {
        let Some(idx) = self.map.get_mut(&db).and_then(|m| m.get_mut(key)) else {
            return Fixup::None;
        };
        if idx.version != version {
            self.drop_key(db, key);
            return Fixup::None;
        }
        let before = idx.memory_bytes();
        let fix = change(idx);
        let after = idx.memory_bytes();
        let small = idx.total <= self.cfg.threshold / 2;
        self.memory_bytes = self.memory_bytes + after - before;
        if small {
            // Hysteresis: an index is dropped well below the threshold, so a set hovering
            // around it does not rebuild on every query.
            self.drop_key(db, key);
            return Fixup::None;
        }
        fix
    }

    /// Runs `f` on the index of `key` (after [`ZRanks::update`] asked for a fix-up).
    pub fn with(&mut self, db: Db, key: &[u8], f: impl FnOnce(&mut RankIndex)) {
        if let Some(idx) = self.map.get_mut(&db).and_then(|m| m.get_mut(key)) {
            let before = idx.memory_bytes();
            f(idx);
            self.memory_bytes = self.memory_bytes + idx.memory_bytes() - before;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn s(n: u32) -> Bytes {
        Bytes::copy_from_slice(&n.to_be_bytes())
    }

    /// Rank of `x` from the index plus a count within its bucket, as the engine glue does.
    fn rank(idx: &RankIndex, all: &BTreeSet<Bytes>, x: &Bytes) -> u64 {
        let Some(spot) = idx.locate(x) else { return 0 };
        let within = all.range(spot.first.clone()..x.clone()).count() as u64;
        spot.before + within
    }

    fn apply_fix(idx: &mut RankIndex, all: &BTreeSet<Bytes>, fix: Fixup) {
        if let Fixup::Split { at, first, mid } = fix {
            let second = all.range(first..).nth(mid as usize).cloned().expect("mid");
            idx.split(at, mid, second);
        }
    }

    #[test]
    fn ranks_and_members_at_ranks_match_a_sorted_set_through_inserts_and_removals() {
        let mut all: BTreeSet<Bytes> = (0..300).map(|i| s(i * 7)).collect();
        let mut idx = RankIndex::build(1, 4, all.iter().cloned());
        let mut x = 12345u32;
        for step in 0..5000 {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            let v = s((x >> 8) % 3000);
            if all.contains(&v) && step % 3 != 0 {
                all.remove(&v);
                let fix = idx.removed(&v);
                apply_fix(&mut idx, &all, fix);
            } else if !all.contains(&v) {
                all.insert(v.clone());
                let fix = idx.inserted(&v);
                apply_fix(&mut idx, &all, fix);
            }
            assert_eq!(idx.total(), all.len() as u64);
            if step % 97 == 0 {
                for (r, m) in all.iter().enumerate() {
                    assert_eq!(rank(&idx, &all, m), r as u64);
                    let spot = idx.at_rank(r as u64).expect("in range");
                    let found = all
                        .range(spot.first.clone()..)
                        .nth((r as u64 - spot.before) as usize);
                    assert_eq!(found, Some(m));
                }
                assert!(idx.at_rank(all.len() as u64).is_none());
            }
        }
        assert!(idx.buckets.iter().all(|b| b.count >= 1 && b.count <= 8));
    }

    #[test]
    fn an_index_of_another_version_or_count_is_dropped_and_its_memory_returned() {
        let db = Db::ZERO;
        let mut z = ZRanks::new(RankConfig {
            threshold: 4,
            bucket: 2,
            memory_max_bytes: 1 << 20,
        });
        z.insert(db, b"k", RankIndex::build(7, 2, (0..10).map(s)));
        assert!(z.memory_bytes() > 0);
        assert!(z.get(db, b"k", 7, 10).is_some());
        assert!(z.get(db, b"k", 7, 11).is_none());
        assert_eq!(z.memory_bytes(), 0);
        z.insert(db, b"k", RankIndex::build(7, 2, (0..10).map(s)));
        assert_eq!(z.update(db, b"k", 8, |i| i.inserted(&s(99))), Fixup::None);
        assert!(z.is_empty());
        assert_eq!(z.memory_bytes(), 0);
        assert_eq!(z.stats().stale_drops, 1);
    }

    #[test]
    fn no_index_is_built_past_the_memory_cap() {
        let mut z = ZRanks::new(RankConfig {
            threshold: 4,
            bucket: 2,
            memory_max_bytes: 4096,
        });
        assert!(z.fits(10));
        assert!(!z.fits(1_000_000));
        assert_eq!(z.stats().refused, 1);
    }
}
