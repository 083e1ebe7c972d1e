//! Insert and replace: descend through the layers, replace an existing entry, turn two keys that
//! share a full slice into a new layer, or add a key to a border node and split upward.

// perf-critical: the write path of every shard.

use super::arena::NIL;
use super::entry::{Entry, OwnedEntry, Value};
use super::node::{
    Border, INTERIOR_TAG, Interior, KLEN_LAYER, KLEN_SUFFIX, Permutation, WIDTH, class_of_len,
    is_interior, is_layer_root, slice_of,
};
use super::{Error, LayerLink, MAX_KEY_LEN, Masstree};

/// One key of a border node being split: slice, `keylen` field, `lv` field, entry.
type Item = (u64, u8, u32, Entry);

impl Masstree {
    /// Inserts `value` under `key`, returning the entry it replaced.
    ///
    /// # Errors
    /// [`Error::KeyTooLong`] when `key` is longer than [`MAX_KEY_LEN`];
    /// [`Error::NoValue`] when `value` has neither inline bytes nor a log pointer.
    pub fn insert(&mut self, key: &[u8], value: Value<'_>) -> Result<Option<OwnedEntry>, Error> {
        if key.len() > MAX_KEY_LEN {
            return Err(Error::KeyTooLong { len: key.len() });
        }
        if value.inline.is_none() && value.pointer.is_none() {
            return Err(Error::NoValue);
        }
        let mut link = LayerLink::Top;
        let mut root = self.root;
        let mut depth = 0;
        loop {
            let rest = &key[depth..];
            let slice = slice_of(rest);
            let bid = self.descend(root, slice);
            let border = self.borders.get(bid);
            let (pos, eq) = border.lower_bound(slice, class_of_len(rest.len()));
            if !eq {
                let suffix = if rest.len() > 8 { &rest[8..] } else { &[][..] };
                let entry = Entry::new(suffix, &value);
                self.heap.add(&entry);
                let kl = if rest.len() > 8 {
                    KLEN_SUFFIX
                } else {
                    rest.len() as u8
                };
                self.insert_into_border(bid, pos, (slice, kl, NIL, entry), link);
                self.len += 1;
                return Ok(None);
            }
            let slot = border.permutation.slot(pos);
            let (kl, lv) = (border.keylen[slot], border.lv[slot]);
            if kl == KLEN_LAYER {
                link = LayerLink::Slot { border: bid, slot };
                root = lv;
                depth += 8;
                continue;
            }
            if kl != KLEN_SUFFIX || border.entries[slot].suffix() == &rest[8..] {
                return Ok(Some(self.replace_entry(bid, slot, &value)));
            }
            // Two keys share this full slice: move the stored key into a new layer below it,
            // then insert the new key into that layer (which may nest again).
            let layer_root = self.push_down(bid, slot);
            let b = self.borders.get_mut(bid);
            b.keylen[slot] = KLEN_LAYER;
            b.lv[slot] = layer_root;
            link = LayerLink::Slot { border: bid, slot };
            root = layer_root;
            depth += 8;
        }
    }

    /// Replaces the value of the entry in `slot` of border `bid` (its key suffix stays),
    /// returning the old entry.
    fn replace_entry(&mut self, bid: u32, slot: usize, value: &Value<'_>) -> OwnedEntry {
        let old = &mut self.borders.get_mut(bid).entries[slot];
        let fresh = Entry::new(old.suffix(), value);
        self.heap.sub(old);
        self.heap.add(&fresh);
        std::mem::replace(old, fresh).into_owned()
    }

    /// Makes a one-key layer holding the entry in `slot` of border `bid`, whose suffix becomes
    /// its key in the new layer. Returns the new layer's root.
    fn push_down(&mut self, bid: u32, slot: usize) -> u32 {
        let mut entry = std::mem::take(&mut self.borders.get_mut(bid).entries[slot]);
        self.heap.sub(&entry);
        let rest = entry.suffix().to_vec();
        let kl = if rest.len() > 8 {
            entry.set_suffix(&rest[8..]);
            KLEN_SUFFIX
        } else {
            entry.set_suffix(&[]);
            rest.len() as u8
        };
        self.heap.add(&entry);
        let mut b = Border {
            permutation: Permutation::sorted(1),
            parent: bid,
            ..Border::default()
        };
        b.keyslice[0] = slice_of(&rest);
        b.keylen[0] = kl;
        b.entries[0] = entry;
        self.borders.alloc(b)
    }

    /// Adds `item` at sorted position `pos` of border `bid`, splitting it when full.
    fn insert_into_border(&mut self, bid: u32, pos: usize, item: Item, link: LayerLink) {
        let b = self.borders.get_mut(bid);
        if b.permutation.len() < WIDTH {
            let slot = b.permutation.insert_at(pos);
            b.keyslice[slot] = item.0;
            b.keylen[slot] = item.1;
            b.lv[slot] = item.2;
            b.entries[slot] = item.3;
            return;
        }
        self.split_border(bid, pos, item, link);
    }

    /// Splits full border `bid` while adding `item` at position `pos`. Keys with the same slice
    /// stay in one node (so interior nodes route by slice alone).
    fn split_border(&mut self, bid: u32, pos: usize, item: Item, link: LayerLink) {
        let b = self.borders.get_mut(bid);
        let mut items: Vec<Item> = Vec::with_capacity(WIDTH + 1);
        for i in 0..WIDTH {
            let s = b.permutation.slot(i);
            let entry = std::mem::take(&mut b.entries[s]);
            items.push((b.keyslice[s], b.keylen[s], b.lv[s], entry));
        }
        items.insert(pos, item);
        let m = if pos == WIDTH && b.next == NIL && items[WIDTH - 1].0 != items[WIDTH].0 {
            // Appending past the rightmost key (sequential inserts): leave this node full.
            WIDTH
        } else {
            split_point(&items)
        };
        let separator = items[m].0;
        let (parent, next) = (b.parent, b.next);
        let mut right = Border {
            parent,
            prev: bid,
            next,
            ..Border::default()
        };
        fill(&mut right, items.drain(m..));
        let lower: Vec<u32> = layer_roots(&right).collect();
        let rid = self.borders.alloc(right);
        for r in lower {
            self.set_parent(r, rid);
        }
        if next != NIL {
            self.borders.get_mut(next).prev = rid;
        }
        let left = self.borders.get_mut(bid);
        *left = Border {
            parent,
            prev: left.prev,
            next: rid,
            ..Border::default()
        };
        fill(left, items.into_iter());
        self.insert_into_parent(bid, separator, rid, link);
    }

    /// Adds separator `key` with right child `right` next to `left` in their parent, splitting
    /// interior nodes upward and growing a new layer root when `left` was the root.
    fn insert_into_parent(&mut self, left: u32, key: u64, right: u32, link: LayerLink) {
        let parent = self.parent_of(left);
        if is_layer_root(parent) {
            // `parent` is the layer's owner: the new root inherits it.
            let mut root = Interior {
                nkeys: 1,
                parent,
                ..Interior::default()
            };
            root.keyslice[0] = key;
            root.child[0] = left;
            root.child[1] = right;
            let rid = self.interiors.alloc(root) | INTERIOR_TAG;
            self.set_parent(left, rid);
            self.set_parent(right, rid);
            self.set_layer_root(link, rid);
            return;
        }
        let p = self.interiors.get_mut(parent & !INTERIOR_TAG);
        let n = p.nkeys as usize;
        let i = p.index_of(left);
        if n < WIDTH {
            p.keyslice.copy_within(i..n, i + 1);
            p.child.copy_within(i + 1..n + 1, i + 2);
            p.keyslice[i] = key;
            p.child[i + 1] = right;
            p.nkeys += 1;
            self.set_parent(right, parent);
            return;
        }
        let mut keys = [0u64; WIDTH + 1];
        let mut kids = [0u32; WIDTH + 2];
        keys[..i].copy_from_slice(&p.keyslice[..i]);
        keys[i] = key;
        keys[i + 1..].copy_from_slice(&p.keyslice[i..]);
        kids[..=i].copy_from_slice(&p.child[..=i]);
        kids[i + 1] = right;
        kids[i + 2..].copy_from_slice(&p.child[i + 1..]);
        // Left keeps 8 keys and 9 children, keys[8] moves up, right takes 7 keys and 8 children.
        const L: usize = 8;
        let grand = p.parent;
        *p = Interior {
            nkeys: L as u8,
            parent: grand,
            ..Interior::default()
        };
        p.keyslice[..L].copy_from_slice(&keys[..L]);
        p.child[..=L].copy_from_slice(&kids[..=L]);
        let mut r = Interior {
            nkeys: (WIDTH - L) as u8,
            parent: grand,
            ..Interior::default()
        };
        r.keyslice[..WIDTH - L].copy_from_slice(&keys[L + 1..]);
        r.child[..=WIDTH - L].copy_from_slice(&kids[L + 1..]);
        let rid = self.interiors.alloc(r) | INTERIOR_TAG;
        for &c in &kids[..=L] {
            self.set_parent(c, parent);
        }
        for &c in &kids[L + 1..] {
            self.set_parent(c, rid);
        }
        self.insert_into_parent(parent, keys[L], rid, link);
    }

    /// Returns the interior parent of node `r` (`NIL` for a layer root).
    pub(crate) fn parent_of(&self, r: u32) -> u32 {
        if is_interior(r) {
            self.interiors.get(r & !INTERIOR_TAG).parent
        } else {
            self.borders.get(r).parent
        }
    }

    /// Sets the interior parent of node `r`.
    pub(crate) fn set_parent(&mut self, r: u32, parent: u32) {
        if is_interior(r) {
            self.interiors.get_mut(r & !INTERIOR_TAG).parent = parent;
        } else {
            self.borders.get_mut(r).parent = parent;
        }
    }

    /// Points the layer named by `link` at its new root `root`.
    pub(crate) fn set_layer_root(&mut self, link: LayerLink, root: u32) {
        match link {
            LayerLink::Top => self.root = root,
            LayerLink::Slot { border, slot } => self.borders.get_mut(border).lv[slot] = root,
        }
    }
}

/// Returns the roots of the layers below `b` (its layer-link slots' `lv`).
pub(crate) fn layer_roots(b: &Border) -> impl Iterator<Item = u32> + '_ {
    (0..WIDTH)
        .filter(|&s| b.keylen[s] == KLEN_LAYER)
        .map(|s| b.lv[s])
}

/// Moves `items` (sorted) into slots `0..` of empty border `b`.
fn fill(b: &mut Border, items: impl ExactSizeIterator<Item = Item>) {
    b.permutation = Permutation::sorted(items.len());
    for (s, (slice, kl, lv, entry)) in items.enumerate() {
        b.keyslice[s] = slice;
        b.keylen[s] = kl;
        b.lv[s] = lv;
        b.entries[s] = entry;
    }
}

/// Returns the split position closest to the middle of 16 sorted items that does not separate
/// two items with the same slice. At most 10 keys share a slice (lengths 0..=8 are at most 9 of
/// them, plus one longer key), so such a position always exists.
fn split_point(items: &[Item]) -> usize {
    let mid = items.len() / 2;
    (0..mid)
        .flat_map(|d| [mid - d, mid + d + 1])
        .find(|&m| m >= 1 && m < items.len() && items[m - 1].0 != items[m].0)
        .expect("16 keys hold at least two distinct slices")
}
