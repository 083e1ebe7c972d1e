//! Node layouts: border (leaf) nodes with a permutation word, interior nodes, and the helpers
//! that cut a key into 8-byte slices. See the module docs of `masstree` for the diagram.

use super::arena::NIL;
use super::entry::Entry;

/// Keys per node (border and interior), as in the paper.
pub(crate) const WIDTH: usize = 15;

/// `keylen` marker: the key is longer than this layer's 8 bytes; the rest is the entry's suffix.
pub(crate) const KLEN_SUFFIX: u8 = 64;
/// `keylen` marker: several keys share this full 8-byte slice; `lv` is the next layer's root.
pub(crate) const KLEN_LAYER: u8 = 128;

/// `keylen` of a free slot: matches no key, so lookups can test all 15 slots unordered.
pub(crate) const KLEN_FREE: u8 = 32;

/// Tag bit of a `NodeRef` that names an interior node (clear: a border node).
pub(crate) const INTERIOR_TAG: u32 = 1 << 31;

/// Returns whether a node's `parent` field marks a layer root: `NIL` for the root of layer 0,
/// or (tag bit clear) the border in the layer above whose layer link holds the root (its
/// *owner*). Any other value is the tagged reference of the interior parent.
#[inline(always)]
pub(crate) fn is_layer_root(parent: u32) -> bool {
    parent == NIL || parent & INTERIOR_TAG == 0
}

/// Returns whether node reference `r` names an interior node.
#[inline(always)]
pub(crate) fn is_interior(r: u32) -> bool {
    r & INTERIOR_TAG != 0
}

/// Returns the 8-byte slice of `key` (its first 8 bytes, zero-padded) as a big-endian `u64`.
#[inline(always)]
pub(crate) fn slice_of(key: &[u8]) -> u64 {
    match key.first_chunk::<8>() {
        Some(head) => u64::from_be_bytes(*head),
        None => {
            let mut b = [0u8; 8];
            b[..key.len()].copy_from_slice(key);
            u64::from_be_bytes(b)
        }
    }
}

/// Returns the ordering class of a key remainder of `len` bytes: its length when at most 8,
/// and 9 for every longer key (which sorts after the shorter keys of the same slice).
#[inline(always)]
pub(crate) fn class_of_len(len: usize) -> u8 {
    if len > 8 { 9 } else { len as u8 }
}

/// Returns the ordering class of a stored `keylen` field (see [`class_of_len`]).
#[inline(always)]
pub(crate) fn class_of_keylen(kl: u8) -> u8 {
    if kl > 8 { 9 } else { kl }
}

/// The permutation word of a border node (as in the paper): the low nibble is the number of live
/// keys `n`; nibble `i + 1` is the slot holding the `i`-th smallest key. Nibbles `n..15` list
/// the free slots, so the word is always a permutation of `0..15`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Permutation(pub(crate) u64);

/// Returns a mask of the `bits` low bits (all ones for 64 or more).
#[inline(always)]
fn low_mask(bits: u32) -> u64 {
    if bits >= 64 {
        u64::MAX
    } else {
        (1u64 << bits) - 1
    }
}

impl Permutation {
    /// Returns the empty permutation: count 0, free slots 0, 1, …, 14 in order.
    pub(crate) const fn empty() -> Self {
        let mut w = 0u64;
        let mut i = 0;
        while i < WIDTH {
            w |= (i as u64) << (4 * i + 4);
            i += 1;
        }
        Self(w)
    }

    /// Returns the permutation whose first `n` positions are slots `0..n` (and count `n`).
    pub(crate) fn sorted(n: usize) -> Self {
        debug_assert!(n <= WIDTH);
        Self(Self::empty().0 | n as u64)
    }

    /// Returns the number of live keys.
    #[inline(always)]
    pub(crate) fn len(self) -> usize {
        (self.0 & 15) as usize
    }

    /// Returns the slot at sorted position `i` (which may be a free position).
    #[inline(always)]
    pub(crate) fn slot(self, i: usize) -> usize {
        ((self.0 >> (4 * i + 4)) & 15) as usize
    }

    /// Takes the first free slot, places it at sorted position `i` (shifting later positions
    /// up), increments the count and returns the slot.
    pub(crate) fn insert_at(&mut self, i: usize) -> usize {
        let n = self.len();
        assert!(
            i <= n && n < WIDTH,
            "insert at {i} into a permutation of {n}"
        );
        let slot = self.slot(n) as u64;
        let (i4, n4) = (4 * i as u32, 4 * n as u32);
        let keep_low = self.0 & low_mask(i4 + 4) & !15;
        let moved = (self.0 >> (i4 + 4)) & low_mask(n4 - i4);
        let keep_high = self.0 & !low_mask(n4 + 8);
        self.0 = keep_low
            | (n as u64 + 1)
            | (slot << (i4 + 4))
            | moved.checked_shl(i4 + 8).unwrap_or(0)
            | keep_high;
        slot as usize
    }

    /// Removes the key at sorted position `i`: later positions shift down, its slot becomes the
    /// last free slot, and the count decrements. Returns the slot.
    pub(crate) fn remove_at(&mut self, i: usize) -> usize {
        let n = self.len();
        assert!(i < n, "remove at {i} from a permutation of {n}");
        let slot = self.slot(i) as u64;
        let i4 = 4 * i as u32;
        let keep_low = self.0 & low_mask(i4 + 4) & !15;
        let moved = self.0.checked_shr(i4 + 8).unwrap_or(0);
        self.0 = keep_low | (n as u64 - 1) | (moved << (i4 + 4)) | (slot << 60);
        slot as usize
    }

    /// Returns the sorted position of `slot` among the live keys, if it is live.
    pub(crate) fn position_of(self, slot: usize) -> Option<usize> {
        (0..self.len()).find(|&i| self.slot(i) == slot)
    }

    /// Returns whether the word is a permutation of `0..15` (for `verify`).
    pub(crate) fn is_valid(self) -> bool {
        let mut seen = 0u32;
        for i in 0..WIDTH {
            seen |= 1 << self.slot(i);
        }
        seen == (1 << WIDTH) - 1 && self.len() <= WIDTH
    }
}

/// A border (leaf) node: up to 15 keys of one layer, each a slice plus a `keylen` field, and
/// for each key either its entry (in `entries`, same slot) or the root of the next layer (`lv`).
///
/// Layout (704 bytes, eleven cache lines):
/// ```text
///  0 permutation u64 | 8 keylen [u8; 15] | 23 pad | 24 keyslice [u64; 15]
///  144 lv [u32; 15] | 204 parent u32 | 208 prev u32 | 212 next u32
///  216 entries [Entry; 15] (32 bytes each) | 696..704 pad
/// ```
#[derive(Debug)]
#[repr(C, align(64))]
pub(crate) struct Border {
    pub(crate) permutation: Permutation,
    pub(crate) keylen: [u8; WIDTH],
    pub(crate) keyslice: [u64; WIDTH],
    pub(crate) lv: [u32; WIDTH],
    /// Interior parent in this layer; for a layer root its owner border or `NIL`
    /// ([`is_layer_root`]).
    pub(crate) parent: u32,
    /// Left neighbour in this layer, or `NIL`.
    pub(crate) prev: u32,
    /// Right neighbour in this layer, or `NIL`.
    pub(crate) next: u32,
    /// The entries of the slots that hold a key of this layer (default in every other slot).
    pub(crate) entries: [Entry; WIDTH],
}

impl Default for Border {
    fn default() -> Self {
        Self {
            permutation: Permutation::empty(),
            keylen: [KLEN_FREE; WIDTH],
            keyslice: [0; WIDTH],
            lv: [NIL; WIDTH],
            parent: NIL,
            prev: NIL,
            next: NIL,
            entries: std::array::from_fn(|_| Entry::default()),
        }
    }
}

impl Border {
    /// Returns the slot holding exactly `(slice, class)`, testing all slots in slot order
    /// (free slots have `keylen` `KLEN_FREE`, which matches nothing): no permutation decoding
    /// on the lookup path.
    #[inline(always)]
    pub(crate) fn find_exact(&self, slice: u64, class: u8) -> Option<usize> {
        (0..WIDTH).find(|&s| {
            self.keyslice[s] == slice && {
                let kl = self.keylen[s];
                kl == class || (class == 9 && kl & (KLEN_SUFFIX | KLEN_LAYER) != 0)
            }
        })
    }

    /// Returns the first sorted position whose `(slice, class)` is at least the target's, and
    /// whether that position holds exactly the target's `(slice, class)`.
    #[inline(always)]
    pub(crate) fn lower_bound(&self, slice: u64, class: u8) -> (usize, bool) {
        let perm = self.permutation;
        let n = perm.len();
        for i in 0..n {
            let s = perm.slot(i);
            let ks = self.keyslice[s];
            if ks < slice {
                continue;
            }
            if ks > slice {
                return (i, false);
            }
            let c = class_of_keylen(self.keylen[s]);
            if c < class {
                continue;
            }
            return (i, c == class);
        }
        (n, false)
    }
}

/// An interior node of one layer's B+tree: `nkeys` separator slices and `nkeys + 1` children.
/// Child `i` holds the slices in `[keyslice[i - 1], keyslice[i])`.
///
/// Layout (192 bytes, three cache lines):
/// ```text
///  0 nkeys u8 | 4 parent u32 | 8 keyslice [u64; 15] | 128 child [u32; 16]
/// ```
#[derive(Clone, Debug)]
#[repr(C, align(64))]
pub(crate) struct Interior {
    pub(crate) nkeys: u8,
    /// Interior parent in this layer; for a layer root its owner border or `NIL`
    /// ([`is_layer_root`]).
    pub(crate) parent: u32,
    pub(crate) keyslice: [u64; WIDTH],
    pub(crate) child: [u32; WIDTH + 1],
}

impl Default for Interior {
    fn default() -> Self {
        Self {
            nkeys: 0,
            parent: NIL,
            keyslice: [0; WIDTH],
            child: [NIL; WIDTH + 1],
        }
    }
}

impl Interior {
    /// Returns the index of the child that covers `slice`.
    #[inline(always)]
    pub(crate) fn child_index(&self, slice: u64) -> usize {
        self.keyslice[..self.nkeys as usize]
            .iter()
            .filter(|&&k| k <= slice)
            .count()
    }

    /// Returns the index of child `r`.
    pub(crate) fn index_of(&self, r: u32) -> usize {
        let pos = self.child[..=self.nkeys as usize]
            .iter()
            .position(|&c| c == r);
        pos.expect("a child's parent link names the interior that holds it")
    }
}

const _: () = assert!(size_of::<Border>() == 704);
const _: () = assert!(size_of::<Interior>() == 192);
const _: () = assert!(align_of::<Border>() == 64 && align_of::<Interior>() == 64);

#[cfg(test)]
mod tests {
    use super::*;

    fn order(p: Permutation) -> Vec<usize> {
        (0..p.len()).map(|i| p.slot(i)).collect()
    }

    /// Inserting at the front, middle and back keeps the word a permutation and the sorted
    /// positions in the expected order; removing frees the slot for reuse.
    #[test]
    fn permutation_inserts_and_removes_keep_order() {
        let mut p = Permutation::empty();
        assert!(p.is_valid());
        assert_eq!(p.insert_at(0), 0);
        assert_eq!(p.insert_at(0), 1);
        assert_eq!(p.insert_at(1), 2);
        assert_eq!(order(p), vec![1, 2, 0]);
        for _ in 3..WIDTH {
            p.insert_at(p.len());
            assert!(p.is_valid());
        }
        assert_eq!(p.len(), WIDTH);
        assert_eq!(p.remove_at(14), 14);
        assert_eq!(p.remove_at(0), 1);
        assert!(p.is_valid());
        assert_eq!(order(p)[..3], [2, 0, 3]);
        assert_eq!(p.insert_at(13), 14);
        assert_eq!(p.position_of(14), Some(13));
        assert_eq!(p.insert_at(0), 1);
        assert!(p.is_valid());
    }

    /// Slices are big-endian and zero-padded, so they compare like the bytes.
    #[test]
    fn slices_compare_like_bytes() {
        assert_eq!(slice_of(b""), 0);
        assert_eq!(slice_of(b"a"), 0x6100_0000_0000_0000);
        assert!(slice_of(b"ab") < slice_of(b"b"));
        assert_eq!(slice_of(b"abcdefghij"), slice_of(b"abcdefgh"));
    }
}
