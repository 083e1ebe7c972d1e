//! Compaction in bounded steps: moves live nodes out of sparse high arena pages into free low
//! slots, rewriting every link to a moved node, so that the emptied pages are released.
//!
//! The links to a node, all of which a move rewrites:
//! - its `parent`'s `child` slot (an interior parent), or for a layer root the tree's `root`
//!   (layer 0) or its owner border's `lv` slot (`parent` holds the owner: `is_layer_root`);
//! - for a border, its neighbours' `next` and `prev`;
//! - the `parent` field of what it links to: an interior's children, a border's lower-layer
//!   roots (whose owner it is).
//!
//! Nothing else stores a node number across operations: scans and cursors hold them only
//! while they borrow the tree, and a [`Cursor`](super::Cursor) resumes by key.

use super::arena::{Arena, NIL, PAGE_SLOTS};
use super::insert::layer_roots;
use super::node::{INTERIOR_TAG, KLEN_LAYER, WIDTH, is_interior};
use super::{Masstree, node::Border};

/// When compaction starts (checked in O(1) before each step; once started it goes on until no
/// page can be emptied).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CompactTrigger {
    /// An arena is compacted only when packing its live nodes would free at least this many
    /// pages.
    pub min_reclaimable_pages: usize,
    /// … and its live slots are under this percentage of its slots.
    pub max_live_percent: usize,
}

impl Default for CompactTrigger {
    /// 4 pages (2.75 MiB of border pages), live under 50 %.
    fn default() -> Self {
        Self {
            min_reclaimable_pages: 4,
            max_live_percent: 50,
        }
    }
}

/// What one [`Masstree::compact_step`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CompactStep {
    /// Nodes moved (at most the budget).
    pub moved: usize,
    /// Arena pages released during the step (by the moves).
    pub pages_released: usize,
    /// Bytes of those pages.
    pub bytes_released: usize,
    /// Nothing is left to do until the trigger fires again.
    pub done: bool,
}

/// The arenas' figures, for metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ArenaStats {
    /// Pages present (border and interior arenas).
    pub pages: usize,
    /// Pages that packing the live nodes would free.
    pub reclaimable_pages: usize,
    /// Pages released, ever (by removal or compaction).
    pub pages_released_total: u64,
    /// Bytes of those pages.
    pub bytes_released_total: u64,
    /// Nodes moved by compaction, ever.
    pub nodes_moved_total: u64,
}

/// Which arena a compaction pass works on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Border,
    Interior,
}

/// Compaction state kept by the tree.
#[derive(Debug, Default)]
pub(crate) struct Compaction {
    /// Per arena (border, interior): started and not finished.
    active: [bool; 2],
    moved_total: u64,
}

impl Masstree {
    /// Runs one compaction step of at most `budget` node moves with the default trigger
    /// ([`CompactTrigger::default`]). Never allocates a page; `verify` holds after it.
    pub fn compact_step(&mut self, budget: usize) -> CompactStep {
        self.compact_step_with(budget, &CompactTrigger::default())
    }

    /// Runs one compaction step of at most `budget` node moves: border pages first, then
    /// interior pages, each arena only once `trigger` fired for it. Costs O(pages) to pick
    /// each victim page plus the moves.
    pub fn compact_step_with(&mut self, budget: usize, trigger: &CompactTrigger) -> CompactStep {
        let before = self.arena_stats();
        let mut left = budget;
        let mut done = true;
        for kind in [Kind::Border, Kind::Interior] {
            done &= self.compact_arena(kind, &mut left, trigger);
        }
        let after = self.arena_stats();
        CompactStep {
            moved: budget - left,
            pages_released: (after.pages_released_total - before.pages_released_total) as usize,
            bytes_released: (after.bytes_released_total - before.bytes_released_total) as usize,
            done,
        }
    }

    /// Returns the arenas' figures.
    pub fn arena_stats(&self) -> ArenaStats {
        let (b, i) = (&self.borders, &self.interiors);
        ArenaStats {
            pages: b.pages() + i.pages(),
            reclaimable_pages: b.reclaimable_pages() + i.reclaimable_pages(),
            pages_released_total: b.released_total() + i.released_total(),
            bytes_released_total: released_bytes(b) + released_bytes(i),
            nodes_moved_total: self.compaction.moved_total,
        }
    }

    /// Compacts one arena within `left` moves; returns whether it has nothing left to do.
    fn compact_arena(&mut self, kind: Kind, left: &mut usize, trigger: &CompactTrigger) -> bool {
        let k = kind as usize;
        if !self.compaction.active[k] {
            if !self.worthwhile(kind, trigger) {
                return true;
            }
            self.compaction.active[k] = true;
        }
        while *left > 0 {
            let Some(page) = self.victim_page(kind) else {
                self.compaction.active[k] = false;
                return true;
            };
            let ids = self.live_slots(kind, page, *left);
            if ids.is_empty() {
                self.release_if_empty(kind, page);
                continue;
            }
            for id in ids {
                if !self.move_node(kind, id) {
                    self.compaction.active[k] = false;
                    return true;
                }
                *left -= 1;
                self.compaction.moved_total += 1;
            }
        }
        false
    }

    fn worthwhile(&self, kind: Kind, t: &CompactTrigger) -> bool {
        let (pages, live, reclaimable) = match kind {
            Kind::Border => arena_figures(&self.borders),
            Kind::Interior => arena_figures(&self.interiors),
        };
        reclaimable >= t.min_reclaimable_pages.max(1)
            && live * 100 < pages * PAGE_SLOTS * t.max_live_percent
    }

    fn victim_page(&self, kind: Kind) -> Option<usize> {
        match kind {
            Kind::Border => self.borders.victim_page(),
            Kind::Interior => self.interiors.victim_page(),
        }
    }

    fn live_slots(&self, kind: Kind, page: usize, max: usize) -> Vec<u32> {
        match kind {
            Kind::Border => self.borders.live_slots(page, max),
            Kind::Interior => self.interiors.live_slots(page, max),
        }
    }

    fn release_if_empty(&mut self, kind: Kind, page: usize) {
        match kind {
            Kind::Border => self.borders.release_if_empty(page),
            Kind::Interior => self.interiors.release_if_empty(page),
        };
    }

    fn move_node(&mut self, kind: Kind, id: u32) -> bool {
        match kind {
            Kind::Border => self.move_border(id),
            Kind::Interior => self.move_interior(id),
        }
    }

    /// Moves border `old` to a lower slot and rewrites the links to it.
    fn move_border(&mut self, old: u32) -> bool {
        let Some(new) = self.borders.move_down(old) else {
            return false;
        };
        let b = self.borders.get(new);
        let (parent, prev, next) = (b.parent, b.prev, b.next);
        let mut lower = [NIL; WIDTH];
        layer_roots(b)
            .zip(lower.iter_mut())
            .for_each(|(r, l)| *l = r);
        self.relink_from_parent(parent, old, new);
        if prev != NIL {
            self.borders.get_mut(prev).next = new;
        }
        if next != NIL {
            self.borders.get_mut(next).prev = new;
        }
        for r in lower.into_iter().take_while(|&r| r != NIL) {
            self.set_parent(r, new);
        }
        true
    }

    /// Moves interior `old_id` to a lower slot and rewrites the links to it.
    fn move_interior(&mut self, old_id: u32) -> bool {
        let Some(new_id) = self.interiors.move_down(old_id) else {
            return false;
        };
        let (old, new) = (old_id | INTERIOR_TAG, new_id | INTERIOR_TAG);
        let inode = self.interiors.get(new_id);
        let (parent, children, n) = (inode.parent, inode.child, usize::from(inode.nkeys));
        self.relink_from_parent(parent, old, new);
        for &c in &children[..=n] {
            self.set_parent(c, new);
        }
        true
    }

    /// Points whatever holds node `old` through `parent` (see `is_layer_root`) at `new`.
    fn relink_from_parent(&mut self, parent: u32, old: u32, new: u32) {
        if parent == NIL {
            debug_assert_eq!(self.root, old, "a node without parent is the root");
            self.root = new;
        } else if is_interior(parent) {
            let p = self.interiors.get_mut(parent & !INTERIOR_TAG);
            let i = p.index_of(old);
            p.child[i] = new;
        } else {
            let owner: &mut Border = self.borders.get_mut(parent);
            let slot = (0..WIDTH)
                .find(|&s| owner.keylen[s] == KLEN_LAYER && owner.lv[s] == old)
                .expect("a layer root's owner links to it");
            owner.lv[slot] = new;
        }
    }
}

fn arena_figures<T>(a: &Arena<T>) -> (usize, usize, usize) {
    (a.pages(), a.live(), a.reclaimable_pages())
}

fn released_bytes<T>(a: &Arena<T>) -> u64 {
    a.released_total() * Arena::<T>::page_bytes() as u64
}
