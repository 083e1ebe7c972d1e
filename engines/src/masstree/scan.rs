//! Ordered scans, forward and reverse, from any bound, and a cursor that resumes a scan after
//! the tree was modified (it remembers the last key returned and re-seeks strictly after it).

// perf-critical: range reads.

use std::ops::{Bound, ControlFlow};

use super::arena::NIL;
use super::entry::EntryRef;
use super::node::{INTERIOR_TAG, KLEN_LAYER, KLEN_SUFFIX, class_of_len, slice_of};
use super::{Masstree, node::Border};

/// The order of a scan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Ascending key order.
    Forward,
    /// Descending key order.
    Reverse,
}

/// A position in one layer: a border node and a sorted position inside it.
#[derive(Clone, Copy, Debug)]
struct Frame {
    border: u32,
    pos: usize,
}

/// Walks the tree in key order. The stack holds one frame per layer; the top frame is on an
/// entry whenever `walk` returned `true`.
struct Walker<'a> {
    tree: &'a Masstree,
    stack: Vec<Frame>,
    /// The key under the walker, once `current` has built it.
    key: Vec<u8>,
    /// How many frames below the top have their slice at the front of `key` already.
    prefix_frames: usize,
    /// The border whose entries were last touched (see `touch`).
    touched: u32,
    /// The direction of the last `seek`: which neighbour border to load ahead.
    dir: Direction,
}

impl<'a> Walker<'a> {
    fn new(tree: &'a Masstree) -> Self {
        Self {
            tree,
            stack: Vec::new(),
            key: Vec::new(),
            prefix_frames: 0,
            touched: NIL,
            dir: Direction::Forward,
        }
    }

    fn border(&self, id: u32) -> &'a Border {
        self.tree.borders.get(id)
    }

    /// Returns the leftmost (or rightmost) border of the layer rooted at `root`.
    fn edge_border(&self, root: u32, rightmost: bool) -> u32 {
        let mut n = root;
        while n & INTERIOR_TAG != 0 {
            let inode = self.tree.interiors.get(n & !INTERIOR_TAG);
            n = inode.child[if rightmost { inode.nkeys as usize } else { 0 }];
        }
        n
    }

    /// Returns the `(keylen, lv)` of the slot under the top frame.
    fn top_slot(&self) -> (u8, u32, u64) {
        let f = self.stack[self.stack.len() - 1];
        let b = self.border(f.border);
        let s = b.permutation.slot(f.pos);
        (b.keylen[s], b.lv[s], b.keyslice[s])
    }

    /// While the top frame is on a layer link, enters that layer at its first (or last) key.
    fn enter_layers(&mut self, rightmost: bool) {
        loop {
            let (kl, lv, _) = self.top_slot();
            if kl != KLEN_LAYER {
                return;
            }
            let border = self.edge_border(lv, rightmost);
            let n = self.border(border).permutation.len();
            self.stack.push(Frame {
                border,
                pos: if rightmost { n - 1 } else { 0 },
            });
        }
    }

    /// Moves the top frame forward until it is on a key (crossing borders and leaving finished
    /// layers), then enters layers. Returns `false` at the end of the tree.
    fn settle_forward(&mut self) -> bool {
        loop {
            let Some(f) = self.stack.last_mut() else {
                return false;
            };
            let b = self.tree.borders.get(f.border);
            if f.pos < b.permutation.len() {
                break;
            }
            if b.next != NIL {
                *f = Frame {
                    border: b.next,
                    pos: 0,
                };
                continue;
            }
            self.stack.pop();
            self.prefix_frames = self.prefix_frames.min(self.stack.len().saturating_sub(1));
            if let Some(up) = self.stack.last_mut() {
                up.pos += 1;
            }
        }
        self.enter_layers(false);
        true
    }

    /// Moves to the next key. Returns `false` at the end.
    fn step_forward(&mut self) -> bool {
        match self.stack.last_mut() {
            Some(f) => f.pos += 1,
            None => return false,
        }
        self.settle_forward()
    }

    /// Moves to the previous key. Returns `false` before the beginning.
    fn step_back(&mut self) -> bool {
        loop {
            let Some(f) = self.stack.last_mut() else {
                return false;
            };
            if f.pos > 0 {
                f.pos -= 1;
                break;
            }
            let prev = self.tree.borders.get(f.border).prev;
            if prev != NIL {
                let n = self.tree.borders.get(prev).permutation.len();
                *f = Frame {
                    border: prev,
                    pos: n - 1,
                };
                break;
            }
            self.stack.pop();
            self.prefix_frames = self.prefix_frames.min(self.stack.len().saturating_sub(1));
        }
        self.enter_layers(true);
        true
    }

    /// Positions on the first key. Returns `false` when the tree is empty.
    fn seek_first(&mut self) -> bool {
        self.stack.clear();
        self.prefix_frames = 0;
        let border = self.edge_border(self.tree.root, false);
        self.stack.push(Frame { border, pos: 0 });
        self.settle_forward()
    }

    /// Positions on the last key. Returns `false` when the tree is empty.
    fn seek_last(&mut self) -> bool {
        self.stack.clear();
        self.prefix_frames = 0;
        let border = self.edge_border(self.tree.root, true);
        let n = self.border(border).permutation.len();
        if n == 0 {
            return false;
        }
        self.stack.push(Frame { border, pos: n - 1 });
        self.enter_layers(true);
        true
    }

    /// Positions on the first key `>= key`. Returns `(on a key, that key equals key)`.
    fn seek_ge(&mut self, key: &[u8]) -> (bool, bool) {
        self.stack.clear();
        self.prefix_frames = 0;
        let mut root = self.tree.root;
        let mut rest = key;
        loop {
            let slice = slice_of(rest);
            let bid = self.tree.descend(root, slice);
            let b = self.border(bid);
            let (pos, eq) = b.lower_bound(slice, class_of_len(rest.len()));
            self.stack.push(Frame { border: bid, pos });
            if !eq {
                return (self.settle_forward(), false);
            }
            let s = b.permutation.slot(pos);
            match b.keylen[s] {
                KLEN_LAYER => {
                    root = b.lv[s];
                    rest = &rest[8..];
                }
                KLEN_SUFFIX => {
                    let stored = b.entries[s].suffix();
                    return match stored.cmp(&rest[8..]) {
                        std::cmp::Ordering::Less => (self.step_forward(), false),
                        std::cmp::Ordering::Equal => (true, true),
                        std::cmp::Ordering::Greater => (true, false),
                    };
                }
                _ => return (true, true),
            }
        }
    }

    /// Positions on the first key after `bound` going in `dir` (for `Reverse`, the last key
    /// before it). Returns `false` when there is none.
    fn seek(&mut self, bound: Bound<&[u8]>, dir: Direction) -> bool {
        self.dir = dir;
        match (bound, dir) {
            (Bound::Unbounded, Direction::Forward) => self.seek_first(),
            (Bound::Unbounded, Direction::Reverse) => self.seek_last(),
            (Bound::Included(k), Direction::Forward) => self.seek_ge(k).0,
            (Bound::Excluded(k), Direction::Forward) => match self.seek_ge(k) {
                (true, true) => self.step_forward(),
                (on, _) => on,
            },
            (Bound::Included(k), Direction::Reverse) => match self.seek_ge(k) {
                (true, true) => true,
                (true, false) => self.step_back(),
                (false, _) => self.seek_last(),
            },
            (Bound::Excluded(k), Direction::Reverse) => match self.seek_ge(k) {
                (true, _) => self.step_back(),
                (false, _) => self.seek_last(),
            },
        }
    }

    /// Builds the key under the walker in `self.key` and returns its entry.
    fn current(&mut self) -> EntryRef<'a> {
        let (last, upper) = self.stack.split_last().expect("walker is on a key");
        // The slices of the upper layers change only when the walker leaves a layer; reuse them.
        self.key.truncate(8 * self.prefix_frames);
        for f in &upper[self.prefix_frames..] {
            let b = self.tree.borders.get(f.border);
            let s = b.permutation.slot(f.pos);
            self.key.extend_from_slice(&b.keyslice[s].to_be_bytes());
        }
        self.prefix_frames = upper.len();
        let b = self.tree.borders.get(last.border);
        if self.touched != last.border {
            self.touched = last.border;
            let ahead = match self.dir {
                Direction::Forward => b.next,
                Direction::Reverse => b.prev,
            };
            touch(b, (ahead != NIL).then(|| self.tree.borders.get(ahead)));
        }
        let s = b.permutation.slot(last.pos);
        let kl = b.keylen[s];
        let entry = &b.entries[s];
        self.key
            .extend_from_slice(&b.keyslice[s].to_be_bytes()[..kl.min(8) as usize]);
        if kl == KLEN_SUFFIX {
            self.key.extend_from_slice(entry.suffix());
        }
        EntryRef(entry)
    }

    fn step(&mut self, dir: Direction) -> bool {
        match dir {
            Direction::Forward => self.step_forward(),
            Direction::Reverse => self.step_back(),
        }
    }
}

/// Loads the first data byte of every entry of `b`, and the lines of the border `ahead` that a
/// scan reaches next, in one pass: the cache misses of a scan then overlap instead of coming one
/// after another (there is no prefetch instruction in safe Rust; plain loads do the same).
#[inline]
fn touch(b: &Border, ahead: Option<&Border>) {
    let mut acc = 0u8;
    for e in &b.entries {
        acc ^= e.data.first().copied().unwrap_or(0);
    }
    if let Some(n) = ahead {
        acc ^= n.permutation.0 as u8;
        for e in &n.entries {
            acc ^= e.data.len() as u8;
        }
    }
    std::hint::black_box(acc);
}

impl Masstree {
    /// Visits up to `limit` keys in `dir` order, starting from `from` (for `Reverse`, `from` is
    /// the upper bound), calling `f` with each key and entry until it returns
    /// `ControlFlow::Break`. Returns the number of keys visited.
    pub fn scan<F>(&self, from: Bound<&[u8]>, dir: Direction, limit: usize, mut f: F) -> usize
    where
        F: FnMut(&[u8], EntryRef<'_>) -> ControlFlow<()>,
    {
        if limit == 0 {
            return 0;
        }
        let mut walker = Walker::new(self);
        let mut on = walker.seek(from, dir);
        let mut visited = 0;
        while on {
            let entry = walker.current();
            visited += 1;
            if f(&walker.key, entry).is_break() || visited == limit {
                break;
            }
            on = walker.step(dir);
        }
        visited
    }

    /// [`scan`](Self::scan) over the union of `self` and `other`, two trees whose key sets
    /// are disjoint, in one key order: two walkers, the next key taken from the one whose
    /// key comes first. Costs one more seek than `scan` when `other` holds nothing there.
    pub fn scan_merged<F>(
        &self,
        other: &Masstree,
        from: Bound<&[u8]>,
        dir: Direction,
        limit: usize,
        mut f: F,
    ) -> usize
    where
        F: FnMut(&[u8], EntryRef<'_>) -> ControlFlow<()>,
    {
        if limit == 0 {
            return 0;
        }
        let mut a = Walker::new(self);
        let mut b = Walker::new(other);
        let mut ea = a.seek(from, dir).then(|| a.current());
        let mut eb = b.seek(from, dir).then(|| b.current());
        let mut visited = 0;
        loop {
            let take_a = match (&ea, &eb) {
                (None, None) => break,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (Some(_), Some(_)) => match dir {
                    Direction::Forward => a.key < b.key,
                    Direction::Reverse => a.key > b.key,
                },
            };
            let (w, e) = if take_a {
                (&mut a, &mut ea)
            } else {
                (&mut b, &mut eb)
            };
            let Some(entry) = e.take() else { break };
            visited += 1;
            if f(&w.key, entry).is_break() || visited == limit {
                break;
            }
            *e = w.step(dir).then(|| w.current());
        }
        visited
    }

    /// Returns the smallest key and its entry.
    pub fn first(&self) -> Option<(Vec<u8>, EntryRef<'_>)> {
        self.edge(Direction::Forward)
    }

    /// Returns the largest key and its entry.
    pub fn last(&self) -> Option<(Vec<u8>, EntryRef<'_>)> {
        self.edge(Direction::Reverse)
    }

    fn edge(&self, dir: Direction) -> Option<(Vec<u8>, EntryRef<'_>)> {
        let mut walker = Walker::new(self);
        if !walker.seek(Bound::Unbounded, dir) {
            return None;
        }
        let entry = walker.current();
        Some((walker.key, entry))
    }
}

/// A resumable scan. It holds no reference into the tree, only the bound to continue from, so
/// the tree can change between batches: each batch starts strictly after the last key the
/// previous batch returned (before it, in reverse), and sees the tree as it is then.
#[derive(Clone, Debug)]
pub struct Cursor {
    dir: Direction,
    from: Bound<Vec<u8>>,
    done: bool,
}

impl Cursor {
    /// Returns a cursor that starts at `from` and goes in `dir`.
    pub fn new(from: Bound<&[u8]>, dir: Direction) -> Self {
        Self {
            dir,
            from: from.map(<[u8]>::to_vec),
            done: false,
        }
    }

    /// Returns whether a batch has reached the end of the tree.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Visits up to `limit` keys of `tree` from where the last batch stopped, calling `f` for
    /// each. Returns the number visited; after a batch that reached the end, `is_done` is true.
    pub fn next_batch<F>(&mut self, tree: &Masstree, limit: usize, mut f: F) -> usize
    where
        F: FnMut(&[u8], EntryRef<'_>),
    {
        if self.done || limit == 0 {
            return 0;
        }
        let mut last = Vec::new();
        let n = tree.scan(
            self.from.as_ref().map(Vec::as_slice),
            self.dir,
            limit,
            |k, e| {
                f(k, e);
                last.clear();
                last.extend_from_slice(k);
                ControlFlow::Continue(())
            },
        );
        if n > 0 {
            self.from = Bound::Excluded(last);
        }
        if n < limit {
            self.done = true;
        }
        n
    }
}
