//! Random choice of the elements of a collection (`SPOP`, `SRANDMEMBER`, `HRANDFIELD`),
//! deterministic given a seed: the elements of one version of a collection are the engine
//! entries under one prefix, in byte order, and the collection's metadata gives their count.
//!
//! - Small collections (at most [`EXACT_MAX`] elements), and requests for at least half of
//!   the elements: every element is read and the choice is exactly uniform.
//! - Larger collections: each pick probes a random key under the prefix (the common prefix
//!   of the first and last element, then 8 random bytes) and takes the first element at or
//!   after it, wrapping to the first element. O(log n) per pick, but an element's chance is
//!   the share of the key space between it and the element before it: uniform only when the
//!   elements spread evenly over the bytes after their common prefix.

use bytes::Bytes;

use super::store::KvStore;
use crate::keyspace;

/// Collections up to this size are sampled exactly, by reading every element.
pub const EXACT_MAX: u64 = 1024;

/// The most elements a request with repeats may ask for (Redis has no limit; one reply of
/// this many elements is already larger than any client buffer should be).
pub const MAX_REPEATS: u64 = 1 << 22;

/// A SplitMix64 generator: the same seed gives the same choices on every replica.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// A generator for a write, seeded by the Raft entry (index and leader clock).
    pub fn for_entry(index: u64, now_ms: u64) -> Self {
        let mut r = Self(index ^ now_ms.rotate_left(32));
        r.next();
        r
    }

    /// The next 64 random bits.
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next()) * u128::from(n)) >> 64) as u64
    }
}

/// The elements of one version of a collection: `(element, value)` under `prefix`.
pub struct Elements<'a, S> {
    store: &'a S,
    prefix: Bytes,
    end: Option<Bytes>,
    size: u64,
}

impl<'a, S: KvStore> Elements<'a, S> {
    /// The `size` elements under `prefix`.
    pub fn new(store: &'a S, prefix: Bytes, size: u64) -> Self {
        let end = keyspace::prefix_end(&prefix);
        Self {
            store,
            prefix,
            end,
            size,
        }
    }

    fn strip(&self, entries: Vec<(Bytes, super::store::Entry)>) -> Vec<(Bytes, Bytes)> {
        let n = self.prefix.len();
        entries
            .into_iter()
            .map(|(k, e)| (k.slice(n..), e.value))
            .collect()
    }

    /// Up to `limit` elements from `start` (a full internal key) on.
    pub fn from(&self, start: &[u8], limit: usize) -> Vec<(Bytes, Bytes)> {
        self.strip(self.store.scan(start, self.end.as_deref(), limit, false))
    }

    /// Every element, in byte order.
    pub fn all(&self) -> Vec<(Bytes, Bytes)> {
        self.from(&self.prefix.clone(), usize::MAX)
    }

    fn edge(&self, reverse: bool) -> Option<(Bytes, Bytes)> {
        let page = self
            .store
            .scan(&self.prefix, self.end.as_deref(), 1, reverse);
        self.strip(page).pop()
    }

    /// `n` elements chosen at random: distinct (all of them when `n` is the size or more)
    /// or, when `repeats`, independently (in random order either way).
    pub fn choose(&self, n: u64, repeats: bool, rng: &mut Rng) -> Vec<(Bytes, Bytes)> {
        if n == 0 || self.size == 0 {
            return Vec::new();
        }
        let exact = self.size <= EXACT_MAX || n.saturating_mul(2) >= self.size;
        match (exact, repeats) {
            (true, true) => {
                let all = self.all();
                let len = all.len() as u64;
                (0..n)
                    .filter_map(|_| all.get(rng.below(len) as usize).cloned())
                    .collect()
            }
            (true, false) => {
                let mut all = self.all();
                shuffle_prefix(&mut all, n, rng);
                all.truncate(usize::try_from(n).unwrap_or(usize::MAX));
                all
            }
            (false, true) => self.probes(n, rng),
            (false, false) => self.distinct_probes(n, rng),
        }
    }

    /// `n` independent probes.
    fn probes(&self, n: u64, rng: &mut Rng) -> Vec<(Bytes, Bytes)> {
        let Some(space) = self.space() else {
            return Vec::new();
        };
        (0..n).filter_map(|_| self.probe(&space, rng)).collect()
    }

    /// `n` distinct elements (`n` less than half the size): probes until `n` are found or
    /// `4n + 16` probes were made, then the elements after the last probe.
    fn distinct_probes(&self, n: u64, rng: &mut Rng) -> Vec<(Bytes, Bytes)> {
        let Some(space) = self.space() else {
            return Vec::new();
        };
        let want = usize::try_from(n).unwrap_or(usize::MAX);
        let mut seen = std::collections::BTreeSet::new();
        let mut out = Vec::with_capacity(want);
        let mut tries = n.saturating_mul(4).saturating_add(16);
        while out.len() < want && tries > 0 {
            tries -= 1;
            if let Some((e, v)) = self.probe(&space, rng) {
                if seen.insert(e.clone()) {
                    out.push((e, v));
                }
            }
        }
        let mut start = self.prefix.clone();
        while out.len() < want {
            let page = self.from(&start, 256);
            let Some((last, _)) = page.last() else {
                break;
            };
            start = super::apply::after(&keyspace_join(&self.prefix, last));
            for (e, v) in page {
                if out.len() < want && seen.insert(e.clone()) {
                    out.push((e, v));
                }
            }
        }
        out
    }

    /// The probe space: the common prefix of the first and last element, and the first
    /// element (where a probe past the last wraps).
    fn space(&self) -> Option<(Bytes, (Bytes, Bytes))> {
        let first = self.edge(false)?;
        let last = self.edge(true)?;
        let common = first
            .0
            .iter()
            .zip(last.0.iter())
            .take_while(|(a, b)| a == b)
            .count();
        Some((first.0.slice(..common), first))
    }

    fn probe(&self, space: &(Bytes, (Bytes, Bytes)), rng: &mut Rng) -> Option<(Bytes, Bytes)> {
        let (common, first) = space;
        let mut key = keyspace_join(&self.prefix, common).to_vec();
        key.extend_from_slice(&rng.next().to_be_bytes());
        self.from(&key, 1).pop().or_else(|| Some(first.clone()))
    }
}

fn keyspace_join(prefix: &[u8], rest: &[u8]) -> Bytes {
    let mut k = Vec::with_capacity(prefix.len() + rest.len());
    k.extend_from_slice(prefix);
    k.extend_from_slice(rest);
    Bytes::from(k)
}

/// Moves `n` uniformly chosen elements, in random order, to the front (Fisher-Yates).
fn shuffle_prefix<T>(v: &mut [T], n: u64, rng: &mut Rng) {
    let len = v.len();
    let n = usize::try_from(n).unwrap_or(usize::MAX).min(len);
    for i in 0..n {
        let j = i + rng.below((len - i) as u64) as usize;
        v.swap(i, j);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::range::store::{Entry, ModelStore};

    fn store_with(prefix: &[u8], elements: &[&[u8]]) -> ModelStore {
        let mut s = ModelStore::default();
        for e in elements {
            s.put(
                keyspace_join(prefix, e),
                Entry {
                    value: Bytes::from_static(b"v"),
                    expire_at_ms: 0,
                },
            );
        }
        // A neighbour outside the prefix is never chosen.
        s.put(
            keyspace_join(&keyspace::prefix_end(prefix).unwrap_or_default(), b"x"),
            Entry {
                value: Bytes::new(),
                expire_at_ms: 0,
            },
        );
        s
    }

    #[test]
    fn small_collections_are_chosen_uniformly() {
        let members: Vec<Vec<u8>> = (0..10u8).map(|i| vec![b'm', i]).collect();
        let refs: Vec<&[u8]> = members.iter().map(|m| &m[..]).collect();
        let s = store_with(b"p", &refs);
        let el = Elements::new(&s, Bytes::from_static(b"p"), 10);
        let mut rng = Rng::new(7);
        let mut hist = [0u32; 10];
        for (e, _) in el.choose(20_000, true, &mut rng) {
            hist[usize::from(e[1])] += 1;
        }
        // Expected 2000 each; a fair generator stays well within 15%.
        assert!(hist.iter().all(|&h| (1700..2300).contains(&h)), "{hist:?}");
    }

    #[test]
    fn distinct_choices_are_distinct_and_capped_at_the_size() {
        let members: Vec<Vec<u8>> = (0..2000u32).map(|i| i.to_be_bytes().to_vec()).collect();
        let refs: Vec<&[u8]> = members.iter().map(|m| &m[..]).collect();
        let s = store_with(b"p", &refs);
        let el = Elements::new(&s, Bytes::from_static(b"p"), 2000);
        let mut rng = Rng::new(1);
        for n in [1u64, 10, 900, 1500, 2000, 5000] {
            let got = el.choose(n, false, &mut rng);
            let set: std::collections::BTreeSet<_> = got.iter().map(|(e, _)| e.clone()).collect();
            assert_eq!(got.len() as u64, n.min(2000), "n={n}");
            assert_eq!(set.len(), got.len(), "n={n}");
            assert!(set.iter().all(|e| e.len() == 4));
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_choice() {
        let s = store_with(b"p", &[b"a", b"b", b"c", b"d"]);
        let el = Elements::new(&s, Bytes::from_static(b"p"), 4);
        let a = el.choose(2, false, &mut Rng::new(9));
        let b = el.choose(2, false, &mut Rng::new(9));
        assert_eq!(a, b);
    }
}
