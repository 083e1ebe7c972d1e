//! The structural checker: walks every layer and node and checks the invariants listed in the
//! module docs, including that the memory accounting matches what the walk finds.

use std::ops::{Bound, ControlFlow};

use super::arena::NIL;
use super::node::{
    Border, INTERIOR_TAG, KLEN_FREE, KLEN_LAYER, KLEN_SUFFIX, WIDTH, class_of_keylen, is_interior,
};
use super::{Direction, Masstree, MemoryStats};

/// A broken invariant found by [`Masstree::verify`]: always a bug in the tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifyError(pub String);

impl std::fmt::Display for VerifyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "masstree invariant broken: {}", self.0)
    }
}

impl std::error::Error for VerifyError {}

macro_rules! check {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err(VerifyError(format!($($fmt)+)));
        }
    };
}

/// What the walk found.
#[derive(Default)]
struct Tally {
    borders: usize,
    interiors: usize,
    entries: usize,
    suffix_bytes: usize,
    pointer_bytes: usize,
    value_bytes: usize,
}

impl Masstree {
    /// Checks every structural invariant (see the module docs) by walking the whole tree,
    /// including that `memory_stats` matches the walk. Costs a full walk: for tests.
    ///
    /// # Errors
    /// A [`VerifyError`] describing the first broken invariant.
    pub fn verify(&self) -> Result<(), VerifyError> {
        let mut tally = Tally::default();
        let mut layers = vec![(self.root, NIL)];
        while let Some((root, owner)) = layers.pop() {
            self.verify_layer(root, owner, &mut tally, &mut layers)?;
        }
        self.verify_arenas()?;
        let s = self.memory_stats();
        check!(
            tally.entries == self.len,
            "{} entries found, len is {}",
            tally.entries,
            self.len
        );
        check!(
            (tally.borders, tally.interiors, tally.entries)
                == (s.border_nodes, s.interior_nodes, s.entries),
            "walk found {}/{}/{} borders/interiors/entries, arenas hold {}/{}/{} (leak)",
            tally.borders,
            tally.interiors,
            tally.entries,
            s.border_nodes,
            s.interior_nodes,
            s.entries
        );
        let found = (tally.suffix_bytes, tally.pointer_bytes, tally.value_bytes);
        let counted = (s.suffix_bytes, s.pointer_bytes, s.value_bytes);
        check!(
            found == counted,
            "walk found {found:?} suffix/pointer/value bytes, counters say {counted:?}"
        );
        let walked = tally.borders * size_of::<Border>()
            + tally.interiors * size_of::<super::Interior>()
            + tally.suffix_bytes
            + tally.pointer_bytes
            + tally.value_bytes;
        check!(
            walked == self.memory_bytes(),
            "walk {walked} B, memory_bytes {}",
            { self.memory_bytes() }
        );
        let MemoryStats {
            reserved_bytes,
            node_bytes,
            ..
        } = s;
        check!(
            reserved_bytes >= node_bytes,
            "reserved {reserved_bytes} < live {node_bytes}"
        );
        // Every key comes out of a full scan in strictly increasing order.
        let mut prev: Option<Vec<u8>> = None;
        let mut ordered = true;
        let n = self.scan(Bound::Unbounded, Direction::Forward, usize::MAX, |k, _| {
            if prev.as_deref().is_some_and(|p| p >= k) {
                ordered = false;
                return ControlFlow::Break(());
            }
            prev = Some(k.to_vec());
            ControlFlow::Continue(())
        });
        check!(ordered, "scan is not strictly increasing after {prev:?}");
        check!(n == self.len, "scan visited {n} keys, len is {}", self.len);
        Ok(())
    }

    /// Returns whether node reference `r` names a live arena slot.
    fn is_live_ref(&self, r: u32) -> bool {
        if is_interior(r) {
            !self.interiors.is_free(r & !INTERIOR_TAG)
        } else {
            !self.borders.is_free(r)
        }
    }

    /// Checks the arenas' own counts: pages present, live slots and reclaimable pages agree.
    fn verify_arenas(&self) -> Result<(), VerifyError> {
        let (b, i) = (&self.borders, &self.interiors);
        check!(
            b.live() + b.free_slots() == b.pages() * super::arena::PAGE_SLOTS,
            "border arena: {} live + {} free != {} pages",
            b.live(),
            b.free_slots(),
            b.pages()
        );
        check!(
            i.live() + i.free_slots() == i.pages() * super::arena::PAGE_SLOTS,
            "interior arena: {} live + {} free != {} pages",
            i.live(),
            i.free_slots(),
            i.pages()
        );
        Ok(())
    }

    /// Checks one layer's B+tree, whose root's owner is border `owner` (`NIL` for layer 0);
    /// pushes the roots of the layers below onto `layers`.
    fn verify_layer(
        &self,
        root: u32,
        owner: u32,
        tally: &mut Tally,
        layers: &mut Vec<(u32, u32)>,
    ) -> Result<(), VerifyError> {
        let top = owner == NIL;
        check!(self.is_live_ref(root), "layer root {root:#x} is not live");
        check!(
            self.parent_of(root) == owner,
            "layer root {root:#x} names {:#x} as parent, its owner is {owner:#x}",
            self.parent_of(root)
        );
        let mut leaves = Vec::new();
        let mut leaf_depth = None;
        self.verify_node(
            root,
            None,
            None,
            0,
            &mut leaf_depth,
            &mut leaves,
            tally,
            layers,
        )?;
        let mut keys = 0;
        for (i, &b) in leaves.iter().enumerate() {
            let node = self.borders.get(b);
            let want_prev = if i == 0 { NIL } else { leaves[i - 1] };
            let want_next = leaves.get(i + 1).copied().unwrap_or(NIL);
            check!(
                node.prev == want_prev,
                "border {b} prev {} != {want_prev}",
                node.prev
            );
            check!(
                node.next == want_next,
                "border {b} next {} != {want_next}",
                node.next
            );
            keys += node.permutation.len();
        }
        if !top {
            let lone_link = keys == 1 && {
                let b = self.borders.get(root);
                b.keylen[b.permutation.slot(0)] == KLEN_LAYER
            };
            check!(
                keys >= 2 || lone_link,
                "layer at {root:#x} holds {keys} plain keys"
            );
        }
        Ok(())
    }

    /// Checks the subtree at `node`, whose slices must lie in `[lo, hi)`.
    #[expect(clippy::too_many_arguments, reason = "a recursive walk's state")]
    fn verify_node(
        &self,
        node: u32,
        lo: Option<u64>,
        hi: Option<u64>,
        depth: usize,
        leaf_depth: &mut Option<usize>,
        leaves: &mut Vec<u32>,
        tally: &mut Tally,
        layers: &mut Vec<(u32, u32)>,
    ) -> Result<(), VerifyError> {
        let in_bounds = |s: u64| lo.is_none_or(|l| s >= l) && hi.is_none_or(|h| s < h);
        if is_interior(node) {
            let id = node & !INTERIOR_TAG;
            check!(
                !self.interiors.is_free(id),
                "interior {id} is free but linked"
            );
            tally.interiors += 1;
            let inode = self.interiors.get(id);
            let n = inode.nkeys as usize;
            // A layer root has a key; an interior inside a layer may be down to one child.
            let least = usize::from(depth == 0);
            check!((least..=WIDTH).contains(&n), "interior {id} has {n} keys");
            let keys = &inode.keyslice[..n];
            check!(
                keys.windows(2).all(|w| w[0] < w[1]),
                "interior {id} keys unsorted"
            );
            check!(
                keys.iter().all(|&k| in_bounds(k)),
                "interior {id} key out of bounds"
            );
            for i in 0..=n {
                let child = inode.child[i];
                check!(
                    self.is_live_ref(child),
                    "child {child:#x} of {id} is not live"
                );
                check!(
                    self.parent_of(child) == node,
                    "child {child:#x} of {id} has bad parent"
                );
                let clo = if i == 0 { lo } else { Some(keys[i - 1]) };
                let chi = if i == n { hi } else { Some(keys[i]) };
                self.verify_node(
                    child,
                    clo,
                    chi,
                    depth + 1,
                    leaf_depth,
                    leaves,
                    tally,
                    layers,
                )?;
            }
            return Ok(());
        }
        check!(
            !self.borders.is_free(node),
            "border {node} is free but linked"
        );
        check!(
            leaf_depth.is_none_or(|d| d == depth),
            "border {node} at depth {depth}"
        );
        *leaf_depth = Some(depth);
        tally.borders += 1;
        leaves.push(node);
        let b = self.borders.get(node);
        let perm = b.permutation;
        check!(
            perm.is_valid(),
            "border {node} permutation {:#x} invalid",
            perm.0
        );
        let n = perm.len();
        check!(
            n > 0 || (depth == 0 && node == self.root),
            "empty border {node}"
        );
        let mut prev: Option<(u64, u8)> = None;
        for i in 0..n {
            let s = perm.slot(i);
            let (slice, kl) = (b.keyslice[s], b.keylen[s]);
            check!(
                in_bounds(slice),
                "border {node} slice {slice:#x} out of bounds"
            );
            let key = (slice, class_of_keylen(kl));
            check!(
                prev.is_none_or(|p| p < key),
                "border {node} keys unsorted at {i}"
            );
            prev = Some(key);
            let e = &b.entries[s];
            let lv = format!("{node}/{s}");
            match kl {
                KLEN_LAYER => {
                    check!(
                        e.data.is_empty() && e.flags.get() == 0,
                        "layer link {lv} has an entry"
                    );
                    layers.push((b.lv[s], node));
                }
                0..=8 | KLEN_SUFFIX => {
                    tally.entries += 1;
                    tally.suffix_bytes += e.suffix_len as usize;
                    tally.pointer_bytes += e.pointer_bytes();
                    tally.value_bytes += e.value_bytes().len();
                    check!(e.has_inline() || e.has_pointer(), "entry {lv} has no value");
                    check!(
                        e.has_inline() || e.value_bytes().is_empty(),
                        "entry {lv} stale bytes"
                    );
                    if kl == KLEN_SUFFIX {
                        check!(e.suffix_len > 0, "entry {lv} marked suffix but has none");
                    } else {
                        check!(e.suffix_len == 0, "entry {lv} has a suffix but keylen {kl}");
                        let pad = if kl == 8 { 0 } else { slice << (8 * kl) };
                        check!(pad == 0, "border {node} slice {slice:#x} longer than {kl}");
                    }
                }
                _ => check!(false, "border {node} keylen {kl} invalid"),
            }
        }
        for i in n..WIDTH {
            let kl = b.keylen[perm.slot(i)];
            check!(
                kl == KLEN_FREE,
                "free slot {} of {node} has keylen {kl}",
                perm.slot(i)
            );
            let e = &b.entries[perm.slot(i)];
            check!(
                e.data.is_empty() && e.flags.get() == 0,
                "free slot {} of {node} holds an entry",
                { perm.slot(i) }
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::masstree::Value;

    fn tree(n: u32) -> Masstree {
        let mut t = Masstree::new();
        for i in 0..n {
            let k = format!("{i:08}-key-with-a-suffix");
            t.insert(k.as_bytes(), Value::inline(b"v")).unwrap();
        }
        t.verify().unwrap();
        t
    }

    /// Swapping two keys inside a border breaks the order check.
    #[test]
    fn reports_keys_out_of_order() {
        let mut t = tree(10);
        let leaf = t.root;
        let b = t.borders.get_mut(leaf);
        let (s0, s1) = (b.permutation.slot(0), b.permutation.slot(1));
        b.keyslice.swap(s0, s1);
        let err = t.verify().unwrap_err();
        assert!(
            err.0.contains("unsorted") || err.0.contains("suffix"),
            "{err}"
        );
    }

    /// A counter that drifts from the entries is reported as an accounting error.
    #[test]
    fn reports_accounting_drift() {
        let mut t = tree(100);
        t.heap.value += 1;
        assert!(t.verify().unwrap_err().0.contains("counters say"));
    }

    /// A node allocated but not linked into the tree is reported as a leak.
    #[test]
    fn reports_leaked_nodes() {
        let mut t = tree(100);
        t.borders.alloc(Border::default());
        assert!(t.verify().unwrap_err().0.contains("leak"));
    }

    /// A broken neighbour link is reported.
    #[test]
    fn reports_broken_border_chain() {
        let mut t = tree(100);
        let first = {
            let mut n = t.root;
            while is_interior(n) {
                n = t.interiors.get(n & !INTERIOR_TAG).child[0];
            }
            n
        };
        t.borders.get_mut(first).next = NIL;
        assert!(t.verify().unwrap_err().0.contains("next"));
    }
}
