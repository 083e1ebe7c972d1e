//! The page arena: fixed-size slots in pages, addressed by a `u32` slot number, with a free
//! list. Nodes refer to each other by these numbers, never by pointers, so that a later issue
//! can back the pages by a memory-mapped file and reopen the tree.

/// Slots per arena page (a power of two, so a slot number splits into page and index by shifts).
pub(crate) const PAGE_SLOTS: usize = 1024;
const PAGE_SHIFT: u32 = PAGE_SLOTS.trailing_zeros();
const _: () = assert!(PAGE_SLOTS.is_power_of_two());

/// Marks "no slot" in every `u32` link field.
pub(crate) const NIL: u32 = u32::MAX;

/// A growable set of `T` slots in fixed-size pages. Freed slots go on a free list and are
/// reused before a new page is allocated; pages are never returned (their bytes are reported
/// by [`Arena::reserved_bytes`], not by the live accounting).
#[derive(Debug)]
pub(crate) struct Arena<T> {
    pages: Vec<Box<[T]>>,
    /// Slots released by `free`, reused last-in first-out.
    free: Vec<u32>,
    /// One bit per slot ever handed out: set while the slot is free.
    free_bits: Vec<u64>,
    /// Slots handed out at least once (the high-water mark).
    next: u32,
    /// Slots currently live.
    live: usize,
}

impl<T: Default> Arena<T> {
    /// Returns an empty arena; no page is allocated until the first `alloc`.
    pub(crate) fn new() -> Self {
        Self {
            pages: Vec::new(),
            free: Vec::new(),
            free_bits: Vec::new(),
            next: 0,
            live: 0,
        }
    }

    /// Stores `value` in a free slot and returns its number.
    pub(crate) fn alloc(&mut self, value: T) -> u32 {
        self.live += 1;
        if let Some(id) = self.free.pop() {
            self.free_bits[id as usize / 64] &= !(1 << (id % 64));
            *self.get_mut(id) = value;
            return id;
        }
        let id = self.next;
        assert!(id < NIL >> 1, "arena full");
        self.next += 1;
        if id % 64 == 0 {
            self.free_bits.push(0);
        }
        if (id as usize) >> PAGE_SHIFT == self.pages.len() {
            let mut page = Vec::with_capacity(PAGE_SLOTS);
            page.resize_with(PAGE_SLOTS, T::default);
            self.pages.push(page.into_boxed_slice());
        }
        *self.get_mut(id) = value;
        id
    }

    /// Releases slot `id`, returning what it held; the slot is reset to `T::default()`.
    pub(crate) fn free(&mut self, id: u32) -> T {
        assert!(!self.is_free(id), "double free of arena slot {id}");
        self.free_bits[id as usize / 64] |= 1 << (id % 64);
        self.live -= 1;
        self.free.push(id);
        std::mem::take(self.get_mut(id))
    }

    /// Returns the number of live slots.
    pub(crate) fn live(&self) -> usize {
        self.live
    }

    /// Returns the bytes held by pages and the free list, live or not.
    pub(crate) fn reserved_bytes(&self) -> usize {
        self.pages.len() * PAGE_SLOTS * size_of::<T>()
            + self.free.capacity() * size_of::<u32>()
            + self.free_bits.capacity() * size_of::<u64>()
    }

    /// Returns whether slot `id` is not live.
    pub(crate) fn is_free(&self, id: u32) -> bool {
        id >= self.next || self.free_bits[id as usize / 64] & (1 << (id % 64)) != 0
    }
}

impl<T> Arena<T> {
    #[inline(always)]
    pub(crate) fn get(&self, id: u32) -> &T {
        &self.pages[(id >> PAGE_SHIFT) as usize][id as usize & (PAGE_SLOTS - 1)]
    }

    #[inline(always)]
    pub(crate) fn get_mut(&mut self, id: u32) -> &mut T {
        &mut self.pages[(id >> PAGE_SHIFT) as usize][id as usize & (PAGE_SLOTS - 1)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Freed slots are reused before the arena grows, and live counts follow.
    #[test]
    fn reuses_freed_slots_before_growing() {
        let mut a: Arena<u64> = Arena::new();
        let ids: Vec<u32> = (0..3000).map(|i| a.alloc(i)).collect();
        assert_eq!(a.live(), 3000);
        assert_eq!(*a.get(ids[2500]), 2500);
        assert_eq!(a.free(ids[7]), 7);
        assert_eq!(*a.get(ids[7]), 0);
        let again = a.alloc(99);
        assert_eq!(again, ids[7]);
        assert_eq!(a.live(), 3000);
        assert!(a.is_free(5000));
        assert!(!a.is_free(ids[7]));
    }
}
