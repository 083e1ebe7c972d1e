//! Remove: take the key out of its border node, free nodes left empty, collapse interior nodes
//! left with one child, and fold a layer left with one plain key back into its parent slot.

// perf-critical: the delete path of every shard.

use super::arena::NIL;
use super::entry::OwnedEntry;
use super::node::{
    INTERIOR_TAG, KLEN_FREE, KLEN_LAYER, KLEN_SUFFIX, class_of_len, is_interior, is_layer_root,
    slice_of,
};
use super::{LayerLink, Masstree};

impl Masstree {
    /// Removes `key`, returning its entry if it was present.
    pub fn remove(&mut self, key: &[u8]) -> Option<OwnedEntry> {
        // Layer-link slots passed on the way down; path[i] holds the root of layer i + 1.
        let mut path: Vec<(u32, usize)> = Vec::new();
        let mut root = self.root;
        let mut rest = key;
        loop {
            let slice = slice_of(rest);
            let bid = self.descend(root, slice);
            let border = self.borders.get(bid);
            let (pos, eq) = border.lower_bound(slice, class_of_len(rest.len()));
            if !eq {
                return None;
            }
            let slot = border.permutation.slot(pos);
            let kl = border.keylen[slot];
            if kl == KLEN_LAYER {
                path.push((bid, slot));
                root = border.lv[slot];
                rest = &rest[8..];
                continue;
            }
            if kl == KLEN_SUFFIX && border.entries[slot].suffix() != &rest[8..] {
                return None;
            }
            let b = self.borders.get_mut(bid);
            b.permutation.remove_at(pos);
            b.keylen[slot] = KLEN_FREE;
            let entry = std::mem::take(&mut b.entries[slot]);
            self.heap.sub(&entry);
            self.len -= 1;
            self.compact_after_remove(bid, &mut path);
            return Some(entry.into_owned());
        }
    }

    /// Restores the invariants after a key left border `bid`, whose layer is reached through
    /// `path`.
    fn compact_after_remove(&mut self, mut bid: u32, path: &mut Vec<(u32, usize)>) {
        // Free empty nodes, going up through layers while a whole layer empties.
        loop {
            let border = self.borders.get(bid);
            if border.permutation.len() > 0 {
                break;
            }
            if !is_layer_root(border.parent) {
                let link = link_of(path);
                self.remove_empty_border(bid, link);
                break;
            }
            let Some((ub, us)) = path.pop() else {
                return; // the tree is empty: keep the root border
            };
            // A layer emptied at once. Removal collapses a layer when it is down to one key,
            // so this is not reached while invariant 5 holds; handle it anyway.
            self.borders.free(bid);
            let upper = self.borders.get_mut(ub);
            let pos = upper
                .permutation
                .position_of(us)
                .expect("layer link slot is live");
            upper.permutation.remove_at(pos);
            upper.keylen[us] = KLEN_FREE;
            bid = ub;
        }
        // Fold layers that hold one plain key into their parent slot, bottom up.
        while let Some(&(ub, us)) = path.last() {
            let root = self.borders.get(ub).lv[us];
            if is_interior(root) {
                break;
            }
            let lower = self.borders.get_mut(root);
            if lower.permutation.len() != 1 {
                break;
            }
            let s = lower.permutation.slot(0);
            let (kl, slice) = (lower.keylen[s], lower.keyslice[s]);
            if kl == KLEN_LAYER {
                break;
            }
            let mut entry = std::mem::take(&mut lower.entries[s]);
            self.heap.sub(&entry);
            let head = slice.to_be_bytes();
            let mut suffix = head[..kl.min(8) as usize].to_vec();
            if kl == KLEN_SUFFIX {
                suffix.extend_from_slice(entry.suffix());
            }
            entry.set_suffix(&suffix);
            self.heap.add(&entry);
            self.borders.free(root);
            let upper = self.borders.get_mut(ub);
            upper.keylen[us] = KLEN_SUFFIX;
            upper.lv[us] = NIL;
            upper.entries[us] = entry;
            path.pop();
        }
    }

    /// Unlinks empty, non-root border `bid` from its layer and frees it.
    fn remove_empty_border(&mut self, bid: u32, link: LayerLink) {
        let b = self.borders.free(bid);
        if b.prev != NIL {
            self.borders.get_mut(b.prev).next = b.next;
        }
        if b.next != NIL {
            self.borders.get_mut(b.next).prev = b.prev;
        }
        self.remove_child(b.parent, bid, link);
    }

    /// Removes child `child` (already freed) from interior `parent`. An interior inside a
    /// layer may be left with one child (no key), which keeps every border of the layer at one
    /// depth; one left with no child is removed from its own parent in turn. A layer root left
    /// with one child is replaced by that child (and so on down while that child is a
    /// one-child interior).
    fn remove_child(&mut self, parent: u32, child: u32, link: LayerLink) {
        let pid = parent & !INTERIOR_TAG;
        let p = self.interiors.get_mut(pid);
        let n = p.nkeys as usize;
        if n == 0 {
            // `child` was the only one: this interior (never a layer root) goes too.
            let grand = p.parent;
            debug_assert!(!is_layer_root(grand), "a layer root has a key");
            self.interiors.free(pid);
            self.remove_child(grand, parent, link);
            return;
        }
        let i = p.index_of(child);
        // Child 0 loses key 0 (child 1 then covers everything below key 1); child i > 0 loses
        // key i - 1 (its range joins child i - 1).
        let k = i.saturating_sub(1);
        p.keyslice.copy_within(k + 1..n, k);
        p.child.copy_within(i + 1..=n, i);
        p.child[n] = NIL;
        p.nkeys -= 1;
        if p.nkeys > 0 || !is_layer_root(p.parent) {
            return;
        }
        let owner = p.parent;
        let mut root = parent;
        let mut only = p.child[0];
        loop {
            self.interiors.free(root & !INTERIOR_TAG);
            let one_child =
                is_interior(only) && self.interiors.get(only & !INTERIOR_TAG).nkeys == 0;
            if !one_child {
                break;
            }
            root = only;
            only = self.interiors.get(only & !INTERIOR_TAG).child[0];
        }
        // `only` becomes the layer root and inherits the owner.
        self.set_parent(only, owner);
        self.set_layer_root(link, only);
    }
}

/// Returns the link of the layer at the bottom of `path`.
fn link_of(path: &[(u32, usize)]) -> LayerLink {
    match path.last() {
        None => LayerLink::Top,
        Some(&(border, slot)) => LayerLink::Slot { border, slot },
    }
}
