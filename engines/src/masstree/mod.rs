//! The hot tier: a Masstree (Mao, Kohler, Morris, "Cache Craftiness for Fast Multicore
//! Key-Value Storage", EuroSys 2012) — a trie of B+trees over 8-byte key slices — holding every
//! hot key of a shard with its value inline or a pointer into the shard log.
//!
//! # Shape
//!
//! A key is cut into 8-byte slices. Layer 0 is a B+tree keyed by the first slice, read as a
//! big-endian `u64` (zero-padded when the key is shorter), so comparisons are one integer
//! compare instead of a `memcmp`. When two or more keys share a whole first slice and are longer
//! than 8 bytes, the slot for that slice links to a layer-1 B+tree keyed by their second slice,
//! and so on. A key that is alone with its slice keeps the bytes after it as a *suffix* in its
//! entry instead of opening a layer.
//!
//! ```text
//!  layer 0   [interior: slices]                       keys: "apple", "applesauce!",
//!               /            \                              "applesauce?", "zebra"
//!   [border: "apple"(len 5) | "applesa"(LAYER) ] <-> [border: "zebra"(len 5)]
//!                                  |
//!  layer 1            [border: "uce!"(len 4) | "uce?"(len 4)]
//! ```
//!
//! Inside a border node, keys are ordered by `(slice, class)` where the class is the key's
//! length in this layer when it is at most 8 and 9 for every longer key (suffix or layer link).
//! Zero padding makes this the byte order: two keys with one slice and lengths `a < b <= 8`
//! differ only in zero bytes, so the shorter is a prefix of the longer. At most ten keys share a
//! slice (lengths 0..=8 and one longer key); a split never separates them, so interior nodes
//! route by slice alone.
//!
//! # Node layout
//!
//! Nodes live in a page arena (module `arena`): pages of 1024 fixed-size slots, addressed by a `u32`
//! slot number; a node names another by that number (bit 31 set for an interior node), never by
//! a pointer. Both node kinds are `#[repr(C, align(64))]`, so a node starts on a cache line:
//!
//! ```text
//!  border node, 704 B = 11 cache lines
//!  +0   permutation u64: nibble 0 = count n, nibble i+1 = slot of the i-th smallest key
//!  +8   keylen [u8; 15]: 0..=8 = key length here; 64 = longer, suffix in entry; 128 = layer link
//!  +24  keyslice [u64; 15]: the slices, in slot order (unsorted; the permutation sorts them)
//!  +144 lv [u32; 15]: the next layer's root node when keylen = 128 (unused otherwise)
//!  +204 parent u32 | +208 prev u32 | +212 next u32   (neighbours within the layer)
//!  +216 entries [Entry; 15], 32 B each, same slot numbers as keyslice
//!
//!  interior node, 192 B = 3 cache lines
//!  +0   nkeys u8 | +4 parent u32
//!  +8   keyslice [u64; 15]   (sorted; child i covers [keyslice[i-1], keyslice[i]))
//!  +128 child [u32; 16]
//!
//!  entry, 32 B: data Box<[u8]> | expire_at_ms u64 | suffix_len u32 | flags u8 | pad u8
//!               | stamp u16
//!  data (one heap allocation) = key suffix ++ [LogPointer, 20 B, if flags.pointer] ++ value
//!  flags: inline, pointer, dirty, accessed, transient, stamped (access state: `entry`)
//! ```
//!
//! A lookup reads the interior nodes (one `u64` compare per key), then the border's first three
//! lines (permutation, keylen, keyslice), then the entry in the same node, then the entry's data
//! (suffix compare and value) — one heap allocation per key, none for a key of at most 8 bytes
//! with an empty value and no pointer. Entries sit inside the border so a lookup or a scan does
//! not chase a separate entry record; a cold entry keeps its 20-byte pointer on the heap, so
//! hot entries do not pay for it.
//!
//! An insert takes a free slot from the permutation and rewrites the permutation word; the
//! keys themselves never move until a split (this is what lets a later persistent version make
//! an insert visible with one 8-byte store).
//!
//! # Invariants (checked by [`Masstree::verify`])
//!
//! 1. The permutation of every border is a permutation of `0..15`; its first `n` slots hold
//!    keys in strictly increasing `(slice, class)` order.
//! 2. Every slice in a node lies inside the bounds its ancestors' separators give it; all
//!    borders of a layer are at the same depth and chained by `prev`/`next` in key order.
//! 3. `parent` links name the interior that holds the node; a layer root's names its *owner*,
//!    the border whose layer-link slot holds it (tag bit clear), or is `NIL` for layer 0. Every
//!    link names a live arena slot.
//! 4. A border is empty only when it is the root of layer 0 (the empty tree); a layer's root
//!    interior has at least one key, an interior inside a layer at least one child (removal
//!    may leave it one child and no key, so that every border of the layer stays at one
//!    depth).
//! 5. A layer other than layer 0 holds at least two keys, or exactly one key that is itself a
//!    layer link (removal collapses a layer left with one plain key back into its parent slot).
//! 6. `memory_bytes()` equals the node, suffix, pointer and inline-value bytes found by a walk,
//!    every allocated arena slot is reachable (no leaks), and free slots hold no entry.
//!
//! Removal frees empty borders and interior nodes left with no child, replaces a layer root
//! left with one child by that child, but does not merge under-full siblings (as in the
//! paper).
//!
//! # Giving memory back
//!
//! The arena hands out the lowest free slot of the lowest page with room, and releases a page
//! whose slots are all free (module `arena`). Removal alone leaves live nodes scattered over
//! many pages, so [`Masstree::compact_step`] (module `compact`) moves live nodes out of the
//! sparsest high pages into free low slots, a bounded number per step, rewriting every link
//! to a moved node (the owner link of invariant 3 is what finds a layer root's holder), and
//! the emptied pages are released. It starts only when worthwhile ([`CompactTrigger`]).
//!
//! # Not done yet
//!
//! - The arena is anonymous memory only. Backing it with a memory-mapped file on persistent
//!   memory, ordering stores with cache-line flushes, and reopening the tree after a restart
//!   are a later issue; nothing here persists.
//! - Single writer, single reader at a time (`&mut self` for writes): the optimistic
//!   concurrency of the paper (version words) is not needed under thread-per-core.
//! - Compaction moves nodes between pages but does not merge under-full border nodes: a tree
//!   whose borders hold one key each after removals keeps one 704 B node per key.
//! - Keys that share a long prefix pay one border node (704 B) per shared 8-byte slice beyond
//!   the first, as in the paper; there is no path compression of one-key layer chains.
//! - An entry's suffix, pointer and value live in a heap allocation (`Box<[u8]>`), not in the
//!   arena; a file-backed arena will need its own allocator for them.

// perf-critical: the read and write path of every shard.

mod arena;
mod compact;
mod entry;
mod insert;
mod node;
mod remove;
mod scan;
mod verify;

use arena::Arena;
pub use compact::{ArenaStats, CompactStep, CompactTrigger};
use entry::HeapBytes;
pub use entry::{EntryMut, EntryRef, LogPointer, OwnedEntry, POINTER_BYTES, SegmentId, Value};
use node::{Border, INTERIOR_TAG, Interior, KLEN_LAYER, KLEN_SUFFIX, class_of_len, slice_of};
pub use scan::{Cursor, Direction};
pub use verify::VerifyError;

/// The longest key accepted, in bytes (64 KiB).
pub const MAX_KEY_LEN: usize = 64 * 1024;

/// What a Masstree operation can refuse.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The key is longer than [`MAX_KEY_LEN`].
    KeyTooLong {
        /// The key's length in bytes.
        len: usize,
    },
    /// The value has neither inline bytes nor a log pointer.
    NoValue,
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::KeyTooLong { len } => {
                write!(
                    f,
                    "key of {len} bytes is longer than the limit of {MAX_KEY_LEN}"
                )
            }
            Self::NoValue => write!(f, "value has neither inline bytes nor a log pointer"),
        }
    }
}

impl std::error::Error for Error {}

/// Where a layer's root is recorded: the tree's root field, or a layer-link slot of a border
/// node in the layer above.
#[derive(Clone, Copy, Debug)]
pub(crate) enum LayerLink {
    Top,
    Slot { border: u32, slot: usize },
}

/// Memory used by the tree, by kind. All figures are exact byte counts of what the tree holds
/// (allocator overhead and free arena slots are not included, except in `reserved_bytes`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemoryStats {
    /// Live border nodes.
    pub border_nodes: usize,
    /// Live interior nodes.
    pub interior_nodes: usize,
    /// Live entries.
    pub entries: usize,
    /// Bytes of live nodes in the arenas (entries live inside border nodes).
    pub node_bytes: usize,
    /// Bytes of key suffixes.
    pub suffix_bytes: usize,
    /// Bytes of log pointers (held next to the suffix, only by entries that have one).
    pub pointer_bytes: usize,
    /// Bytes of inline values.
    pub value_bytes: usize,
    /// Bytes of the arena pages present (live or free slots; released pages are not
    /// counted) and the page tables.
    pub reserved_bytes: usize,
}

impl MemoryStats {
    /// Adds `o`'s figures to these (two trees' memory together).
    pub fn add(&mut self, o: &MemoryStats) {
        self.border_nodes += o.border_nodes;
        self.interior_nodes += o.interior_nodes;
        self.entries += o.entries;
        self.node_bytes += o.node_bytes;
        self.suffix_bytes += o.suffix_bytes;
        self.pointer_bytes += o.pointer_bytes;
        self.value_bytes += o.value_bytes;
        self.reserved_bytes += o.reserved_bytes;
    }
}

/// An ordered map from byte keys (0 to 64 KiB long) to entries, owned by one shard.
pub struct Masstree {
    borders: Arena<Border>,
    interiors: Arena<Interior>,
    /// The root node of layer 0.
    root: u32,
    len: usize,
    heap: HeapBytes,
    compaction: compact::Compaction,
}

impl std::fmt::Debug for Masstree {
    /// Prints the size and memory use, not the nodes (a tree may hold millions).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Masstree")
            .field("len", &self.len)
            .field("memory", &self.memory_stats())
            .finish_non_exhaustive()
    }
}

impl Default for Masstree {
    fn default() -> Self {
        Self::new()
    }
}

impl Masstree {
    /// Returns an empty tree (one empty border node).
    pub fn new() -> Self {
        let mut borders = Arena::new();
        let root = borders.alloc(Border::default());
        Self {
            borders,
            interiors: Arena::new(),
            root,
            len: 0,
            heap: HeapBytes::default(),
            compaction: compact::Compaction::default(),
        }
    }

    /// Returns the number of keys.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Returns whether the tree holds no key.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Returns the bytes the tree uses: live nodes and entries, key suffixes and inline values.
    /// This is the figure `maxmemory` is compared against. An empty tree uses
    /// [`Masstree::EMPTY_BYTES`].
    pub fn memory_bytes(&self) -> usize {
        let s = self.memory_stats();
        s.node_bytes + s.suffix_bytes + s.pointer_bytes + s.value_bytes
    }

    /// The memory an empty tree uses: one border node.
    pub const EMPTY_BYTES: usize = size_of::<Border>();

    /// Returns the memory use by kind.
    pub fn memory_stats(&self) -> MemoryStats {
        MemoryStats {
            border_nodes: self.borders.live(),
            interior_nodes: self.interiors.live(),
            entries: self.len,
            node_bytes: self.borders.live() * size_of::<Border>()
                + self.interiors.live() * size_of::<Interior>(),
            suffix_bytes: self.heap.suffix,
            pointer_bytes: self.heap.pointer,
            value_bytes: self.heap.value,
            reserved_bytes: self.borders.reserved_bytes() + self.interiors.reserved_bytes(),
        }
    }

    /// Returns the entry of `key`, if present.
    pub fn get(&self, key: &[u8]) -> Option<EntryRef<'_>> {
        self.find(key)
            .map(|(b, s)| EntryRef(&self.borders.get(b).entries[s]))
    }

    /// Returns a mutable view of the entry of `key` (to set its bits, expiry or pointer, or to
    /// demote or promote it), if present.
    pub fn get_mut(&mut self, key: &[u8]) -> Option<EntryMut<'_>> {
        let (b, s) = self.find(key)?;
        Some(EntryMut {
            entry: &mut self.borders.get_mut(b).entries[s],
            heap: &mut self.heap,
        })
    }

    /// Returns whether `key` is present.
    pub fn contains_key(&self, key: &[u8]) -> bool {
        self.find(key).is_some()
    }

    /// Returns the border node and slot of `key`'s entry.
    #[inline]
    fn find(&self, key: &[u8]) -> Option<(u32, usize)> {
        let mut root = self.root;
        let mut rest = key;
        loop {
            let slice = slice_of(rest);
            let bid = self.descend(root, slice);
            let border = self.borders.get(bid);
            let slot = border.find_exact(slice, class_of_len(rest.len()))?;
            match border.keylen[slot] {
                KLEN_LAYER => {
                    root = border.lv[slot];
                    rest = &rest[8..];
                }
                KLEN_SUFFIX => {
                    return (border.entries[slot].suffix() == &rest[8..]).then_some((bid, slot));
                }
                _ => return Some((bid, slot)),
            }
        }
    }

    /// Returns the border node of the layer rooted at `root` that covers `slice`.
    #[inline(always)]
    fn descend(&self, root: u32, slice: u64) -> u32 {
        let mut n = root;
        while n & INTERIOR_TAG != 0 {
            let inode = self.interiors.get(n & !INTERIOR_TAG);
            n = inode.child[inode.child_index(slice)];
        }
        n
    }
}
