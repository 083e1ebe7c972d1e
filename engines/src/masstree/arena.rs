//! The page arena: fixed-size slots in pages, addressed by a `u32` slot number. Nodes refer to
//! each other by these numbers, never by pointers, so that a later issue can back the pages by
//! a memory-mapped file and reopen the tree.
//!
//! Allocation takes the lowest free slot of the lowest page that has one, so live slots gather
//! in low pages. A page whose slots are all free is released (its memory goes back to the
//! allocator) unless it is the only room left ([`RELEASE_SLACK`]); its slot numbers may be
//! handed out again later. [`Arena::move_down`] moves a live value into a lower free slot, for
//! the tree's compaction (`masstree::compact`), which rewrites the links to it.

/// Slots per arena page (a power of two, so a slot number splits into page and index by shifts).
pub(crate) const PAGE_SLOTS: usize = 1024;
const PAGE_SHIFT: u32 = PAGE_SLOTS.trailing_zeros();
const PAGE_WORDS: usize = PAGE_SLOTS / 64;
const _: () = assert!(PAGE_SLOTS.is_power_of_two() && PAGE_SLOTS <= u16::MAX as usize);

/// Marks "no slot" in every `u32` link field.
pub(crate) const NIL: u32 = u32::MAX;

/// A page emptied by `free` is kept (not released) while the other pages together have fewer
/// free slots than this, so that a tree hovering at a page boundary does not allocate and
/// release the same page again and again.
pub(crate) const RELEASE_SLACK: usize = PAGE_SLOTS / 8;

/// A growable set of `T` slots in fixed-size pages (see the module docs).
#[derive(Debug)]
pub(crate) struct Arena<T> {
    /// The page table; `None` for a released page.
    pages: Vec<Option<Box<[T]>>>,
    /// Live slots of each page (0 for a released one).
    page_live: Vec<u16>,
    /// One bit per slot of the page table: set while the slot is free (all set for a released
    /// page).
    free_bits: Vec<u64>,
    /// Every present page below this one is full.
    first_open: usize,
    /// Pages present (not released).
    present: usize,
    /// Slots currently live.
    live: usize,
    /// Pages released, ever.
    released_total: u64,
}

impl<T: Default> Arena<T> {
    /// Returns an empty arena; no page is allocated until the first `alloc`.
    pub(crate) fn new() -> Self {
        Self {
            pages: Vec::new(),
            page_live: Vec::new(),
            free_bits: Vec::new(),
            first_open: 0,
            present: 0,
            live: 0,
            released_total: 0,
        }
    }

    /// Stores `value` in the lowest free slot of the lowest page with room (allocating a page
    /// when none has room) and returns its number.
    pub(crate) fn alloc(&mut self, value: T) -> u32 {
        let page = match self.lowest_open_page() {
            Some(p) => p,
            None => self.add_page(),
        };
        self.first_open = page;
        self.place(page, value)
    }

    /// Releases slot `id`, returning what it held; the slot is reset to `T::default()`. A page
    /// left empty is released when the other pages have [`RELEASE_SLACK`] free slots.
    pub(crate) fn free(&mut self, id: u32) -> T {
        let value = self.vacate(id);
        let page = page_of(id);
        if self.page_live[page] == 0 && self.free_slots() - PAGE_SLOTS >= RELEASE_SLACK {
            self.release(page);
        }
        value
    }

    /// Moves the value in live slot `id` to the lowest free slot of a page below `id`'s page,
    /// returning the new slot number, or `None` (nothing moved) when no lower page has room.
    /// Never allocates a page; a page the move empties is released.
    pub(crate) fn move_down(&mut self, id: u32) -> Option<u32> {
        let page = self.lowest_open_page().filter(|&p| p < page_of(id))?;
        self.first_open = page;
        let value = self.vacate(id);
        let to = self.place(page, value);
        if self.page_live[page_of(id)] == 0 {
            self.release(page_of(id));
        }
        Some(to)
    }

    /// Returns the page compaction should empty next: an empty page, or one above the lowest
    /// page with room with no more live slots than the pages below it have free; the one with
    /// the fewest live slots (the highest on a tie). `None` when no page can be emptied by
    /// moving down, which holds exactly when packing would free no page.
    pub(crate) fn victim_page(&self) -> Option<usize> {
        let lowest = self.lowest_open_page()?;
        let mut free_below = 0usize;
        let mut best: Option<(usize, usize)> = None;
        for p in 0..self.pages.len() {
            if self.pages[p].is_none() {
                continue;
            }
            let live = usize::from(self.page_live[p]);
            let fits = live == 0 || (p > lowest && live <= free_below);
            if fits && best.is_none_or(|(_, l)| live <= l) {
                best = Some((p, live));
            }
            free_below += PAGE_SLOTS - live;
        }
        best.map(|(p, _)| p)
    }

    /// Releases page `page` if it holds no live slot (compaction's way to drop a page `free`
    /// kept); returns whether it did.
    pub(crate) fn release_if_empty(&mut self, page: usize) -> bool {
        let empty = self.pages.get(page).is_some_and(Option::is_some) && self.page_live[page] == 0;
        if empty {
            self.release(page);
        }
        empty
    }

    /// Returns the live slot numbers of page `page`, lowest first, at most `max` of them.
    pub(crate) fn live_slots(&self, page: usize, max: usize) -> Vec<u32> {
        let base = page * PAGE_SLOTS;
        (0..PAGE_SLOTS)
            .map(|i| (base + i) as u32)
            .filter(|&id| !self.is_free(id))
            .take(max)
            .collect()
    }

    /// Puts `value` in the lowest free slot of present page `page`, which has one.
    fn place(&mut self, page: usize, value: T) -> u32 {
        let words = &mut self.free_bits[page * PAGE_WORDS..(page + 1) * PAGE_WORDS];
        let (w, word) = words
            .iter_mut()
            .enumerate()
            .find(|(_, w)| **w != 0)
            .expect("an open page has a free slot");
        let bit = word.trailing_zeros() as usize;
        *word &= !(1u64 << bit);
        let id = u32::try_from(page * PAGE_SLOTS + w * 64 + bit).expect("slot numbers fit a u32");
        assert!(id < NIL >> 1, "arena full");
        self.page_live[page] += 1;
        self.live += 1;
        *self.get_mut(id) = value;
        id
    }

    /// Marks live slot `id` free and returns what it held.
    fn vacate(&mut self, id: u32) -> T {
        assert!(!self.is_free(id), "double free of arena slot {id}");
        self.free_bits[id as usize / 64] |= 1 << (id % 64);
        let page = page_of(id);
        self.page_live[page] -= 1;
        self.live -= 1;
        self.first_open = self.first_open.min(page);
        std::mem::take(self.get_mut(id))
    }

    /// Allocates a page at the lowest released index (or the end) and returns its index.
    fn add_page(&mut self) -> usize {
        let p = match self.pages.iter().position(Option::is_none) {
            Some(p) => p,
            None => {
                self.pages.push(None);
                self.page_live.push(0);
                self.free_bits
                    .resize(self.pages.len() * PAGE_WORDS, u64::MAX);
                self.pages.len() - 1
            }
        };
        let mut page = Vec::with_capacity(PAGE_SLOTS);
        page.resize_with(PAGE_SLOTS, T::default);
        self.pages[p] = Some(page.into_boxed_slice());
        self.present += 1;
        self.first_open = self.first_open.min(p);
        p
    }

    /// Drops empty page `page`; trailing released pages leave the page table.
    fn release(&mut self, page: usize) {
        debug_assert_eq!(self.page_live[page], 0);
        self.pages[page] = None;
        self.present -= 1;
        self.released_total += 1;
        while self.pages.last().is_some_and(Option::is_none) {
            self.pages.pop();
            self.page_live.pop();
        }
        self.free_bits.truncate(self.pages.len() * PAGE_WORDS);
        if self.pages.capacity() >= 4 * self.pages.len().max(4) {
            // The table shrank to a quarter: give its memory back too.
            self.pages.shrink_to_fit();
            self.page_live.shrink_to_fit();
            self.free_bits.shrink_to_fit();
        }
    }
}

impl<T> Arena<T> {
    #[inline(always)]
    pub(crate) fn get(&self, id: u32) -> &T {
        match &self.pages[page_of(id)] {
            Some(page) => &page[id as usize & (PAGE_SLOTS - 1)],
            None => panic!("arena slot {id} is in a released page"),
        }
    }

    #[inline(always)]
    pub(crate) fn get_mut(&mut self, id: u32) -> &mut T {
        match &mut self.pages[page_of(id)] {
            Some(page) => &mut page[id as usize & (PAGE_SLOTS - 1)],
            None => panic!("arena slot {id} is in a released page"),
        }
    }

    /// Returns the lowest present page with a free slot.
    fn lowest_open_page(&self) -> Option<usize> {
        (self.first_open..self.pages.len())
            .find(|&p| self.pages[p].is_some() && usize::from(self.page_live[p]) < PAGE_SLOTS)
    }

    /// Returns the number of live slots.
    pub(crate) fn live(&self) -> usize {
        self.live
    }

    /// Returns the number of pages present (not released).
    pub(crate) fn pages(&self) -> usize {
        self.present
    }

    /// Returns the number of pages released, ever.
    pub(crate) fn released_total(&self) -> u64 {
        self.released_total
    }

    /// Returns the free slots of the present pages.
    pub(crate) fn free_slots(&self) -> usize {
        self.present * PAGE_SLOTS - self.live
    }

    /// Returns how many pages fewer the live slots would need if they were packed.
    pub(crate) fn reclaimable_pages(&self) -> usize {
        self.present - self.live.div_ceil(PAGE_SLOTS)
    }

    /// Returns the bytes of one page.
    pub(crate) const fn page_bytes() -> usize {
        PAGE_SLOTS * size_of::<T>()
    }

    /// Returns the bytes held by present pages and the page table, live slots or not.
    pub(crate) fn reserved_bytes(&self) -> usize {
        self.present * Self::page_bytes()
            + self.pages.capacity() * size_of::<Option<Box<[T]>>>()
            + self.page_live.capacity() * size_of::<u16>()
            + self.free_bits.capacity() * size_of::<u64>()
    }

    /// Returns whether slot `id` is not live.
    pub(crate) fn is_free(&self, id: u32) -> bool {
        self.free_bits
            .get(id as usize / 64)
            .is_none_or(|w| w & (1 << (id % 64)) != 0)
    }
}

#[inline(always)]
fn page_of(id: u32) -> usize {
    (id >> PAGE_SHIFT) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: u32 = PAGE_SLOTS as u32;

    /// Freed slots are reused before the arena grows, lowest first, and live counts follow.
    #[test]
    fn reuses_the_lowest_freed_slot_before_growing() {
        let mut a: Arena<u64> = Arena::new();
        let ids: Vec<u32> = (0..3000).map(|i| a.alloc(i)).collect();
        assert_eq!(ids[2500], 2500, "fresh slots are handed out in order");
        assert_eq!(a.live(), 3000);
        assert_eq!(*a.get(ids[2500]), 2500);
        assert_eq!(a.free(ids[1500]), 1500);
        assert_eq!(a.free(ids[7]), 7);
        assert_eq!(a.alloc(99), ids[7], "the lowest free slot first");
        assert_eq!(a.alloc(98), ids[1500]);
        assert_eq!(a.live(), 3000);
        assert!(a.is_free(5000));
        assert!(!a.is_free(ids[7]));
    }

    /// A page whose slots all go free is released (its bytes leave `reserved_bytes`), and its
    /// slot numbers are handed out again only when the lower pages are full.
    #[test]
    fn an_emptied_page_is_released_and_refilled_last() {
        let mut a: Arena<u64> = Arena::new();
        (0..4 * P).for_each(|i| {
            a.alloc(u64::from(i));
        });
        let full = a.reserved_bytes();
        assert_eq!(a.pages(), 4);
        (0..200).for_each(|i| {
            a.free(i);
        });
        (P..2 * P).for_each(|i| {
            a.free(i);
        });
        assert_eq!(a.pages(), 3);
        assert_eq!(a.released_total(), 1);
        assert_eq!(full - a.reserved_bytes(), Arena::<u64>::page_bytes());
        assert!(a.is_free(P + 5));
        assert_eq!(
            *a.get(2 * P),
            u64::from(2 * P),
            "other pages keep their slots"
        );
        let again: Vec<u32> = (0..201).map(|i| a.alloc(i)).collect();
        assert_eq!(&again[..200], &(0..200).collect::<Vec<_>>()[..]);
        assert_eq!(
            again[200], P,
            "the released page comes back at its own index"
        );
        assert_eq!(a.pages(), 4);
    }

    /// The last page emptied while no other page has room is kept, so a tree at a page
    /// boundary does not allocate and release a page per insert and remove.
    #[test]
    fn the_only_room_left_is_kept_rather_than_released() {
        let mut a: Arena<u64> = Arena::new();
        (0..P + 1).for_each(|i| {
            a.alloc(u64::from(i));
        });
        a.free(P);
        assert_eq!(a.pages(), 2, "page 1 is the only room: kept");
        assert_eq!(a.alloc(1), P);
        (0..RELEASE_SLACK as u32).for_each(|i| {
            a.free(i);
        });
        a.free(P);
        assert_eq!(a.pages(), 1, "page 0 has room now: page 1 goes");
        assert_eq!(
            a.pages.len(),
            1,
            "a trailing released page leaves the table"
        );
    }

    /// Moving down takes the lowest free slot of a lower page, keeps the value, releases the
    /// page it empties, and refuses when no lower page has room.
    #[test]
    fn move_down_fills_low_pages_and_releases_the_emptied_one() {
        let mut a: Arena<u64> = Arena::new();
        (0..3 * P).for_each(|i| {
            a.alloc(u64::from(i));
        });
        for i in (0..P).step_by(2) {
            a.free(i);
        }
        for i in 2 * P + 2..3 * P {
            a.free(i);
        }
        assert_eq!(a.move_down(1), None, "no page below page 0");
        assert_eq!(a.victim_page(), Some(2));
        assert_eq!(a.move_down(2 * P), Some(0));
        assert_eq!(*a.get(0), u64::from(2 * P));
        assert_eq!(a.move_down(2 * P + 1), Some(2));
        assert_eq!(a.pages(), 2);
        assert_eq!(a.reclaimable_pages(), 0);
        assert_eq!(
            a.victim_page(),
            None,
            "page 1 is full, page 0 is the lowest open"
        );
        assert_eq!(a.live_slots(0, 3), vec![0, 1, 2]);
    }

    /// The victim is the sparsest page that the lower pages can absorb.
    #[test]
    fn the_victim_is_the_sparsest_page_that_fits_below() {
        let mut a: Arena<u64> = Arena::new();
        (0..4 * P).for_each(|i| {
            a.alloc(u64::from(i));
        });
        (0..100).for_each(|i| {
            a.free(i);
        });
        (P..2 * P - 10).for_each(|i| {
            a.free(i);
        });
        (3 * P..4 * P - 50).for_each(|i| {
            a.free(i);
        });
        assert_eq!(a.victim_page(), Some(1), "10 live below 100 + 50 live");
        (2 * P - 10..2 * P).for_each(|i| {
            a.free(i);
        });
        assert_eq!(a.pages(), 3);
        assert_eq!(a.victim_page(), Some(3));
        assert!(!a.release_if_empty(3));
    }
}
