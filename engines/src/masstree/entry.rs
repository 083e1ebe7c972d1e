//! Entries: what a key maps to — an inline value (hot), a log pointer (cold, or both while a
//! hot value is also on the log), an expiry time, and the dirty and access state.
//!
//! The access state (for the memory policy's clock, `ds-node` `server::policy`) lives in the
//! entry's spare bits, so it costs no memory and no allocation: the *access bit* (set by every
//! write and by [`EntryRef::touch`] on reads, cleared by the clock hand), the *transient* bit
//! (a cold value loaded for one read only, to be dropped again after it) and a 16-bit
//! *cold-read stamp* (the policy's clock tick of the last cold read, to promote a value read
//! twice within a window). The bits are `Cell`s: a read sets them through `&self`, which is
//! sound because a tree is owned by one thread (a shard) and never shared (`Masstree` is not
//! `Sync`).

use std::cell::Cell;

pub use crate::pointer::{LogPointer, SegmentId};

const FLAG_INLINE: u8 = 1;
const FLAG_POINTER: u8 = 2;
const FLAG_DIRTY: u8 = 4;
const FLAG_ACCESSED: u8 = 8;
/// A cold value loaded for one operation only (not promoted): dropped again after it.
const FLAG_TRANSIENT: u8 = 16;
/// `stamp` holds the clock tick of the last cold read.
const FLAG_STAMPED: u8 = 32;

/// What to store under a key. At least one of `inline` and `pointer` must be set.
#[derive(Clone, Copy, Debug)]
pub struct Value<'a> {
    /// The value's bytes kept in memory (hot), if any.
    pub inline: Option<&'a [u8]>,
    /// Where the value lives in the shard log, if it is there.
    pub pointer: Option<LogPointer>,
    /// Expiry time in milliseconds since the Unix epoch; `None` never expires.
    pub expire_at_ms: Option<u64>,
    /// Whether the index entry still has to be checkpointed into the key index.
    pub dirty: bool,
}

impl<'a> Value<'a> {
    /// Returns a dirty, non-expiring value held inline.
    pub fn inline(bytes: &'a [u8]) -> Self {
        Self {
            inline: Some(bytes),
            pointer: None,
            expire_at_ms: None,
            dirty: true,
        }
    }

    /// Returns a dirty, non-expiring value that lives only in the log.
    pub fn pointer(pointer: LogPointer) -> Self {
        Self {
            inline: None,
            pointer: Some(pointer),
            expire_at_ms: None,
            dirty: true,
        }
    }

    /// Returns this value with a log pointer as well.
    pub fn with_pointer(mut self, pointer: LogPointer) -> Self {
        self.pointer = Some(pointer);
        self
    }

    /// Returns this value with an expiry time (milliseconds since the Unix epoch).
    pub fn with_expiry_ms(mut self, expire_at_ms: u64) -> Self {
        self.expire_at_ms = Some(expire_at_ms);
        self
    }
}

/// An entry taken out of the tree (by a replace or a remove).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnedEntry {
    /// The inline value, if the entry was hot.
    pub inline: Option<Vec<u8>>,
    /// The log pointer, if the entry had one.
    pub pointer: Option<LogPointer>,
    /// Expiry time in milliseconds since the Unix epoch.
    pub expire_at_ms: Option<u64>,
    /// The dirty bit.
    pub dirty: bool,
    /// The access bit.
    pub accessed: bool,
}

/// Bytes of an encoded [`LogPointer`] inside an entry's data (heap bytes a pointer costs).
pub const POINTER_BYTES: usize = 20;

/// The stored form of an entry (32 bytes, inline in its border node). `data` holds, in one
/// allocation: the key suffix (the key bytes after this layer's slice, when the key is longer),
/// then the log pointer when there is one (20 bytes: segment, offset, len, checksum,
/// little-endian), then the inline value.
///
/// ```text
///  +0  data Box<[u8]> (16) | +16 expire_at_ms u64 | +24 suffix_len u32 | +28 flags u8
///  +29 (padding) | +30 stamp u16
///  flags: 1 inline | 2 pointer | 4 dirty | 8 accessed | 16 transient | 32 stamped
/// ```
#[derive(Debug, Default)]
pub(crate) struct Entry {
    pub(crate) data: Box<[u8]>,
    /// 0 = never expires.
    pub(crate) expire_at_ms: u64,
    pub(crate) suffix_len: u32,
    pub(crate) flags: Cell<u8>,
    /// Clock tick of the last cold read (valid when `FLAG_STAMPED` is set).
    stamp: Cell<u16>,
}

const _: () = assert!(size_of::<Entry>() == 32);

fn encode_pointer(p: &LogPointer, out: &mut Vec<u8>) {
    out.extend_from_slice(&p.segment.0.to_le_bytes());
    out.extend_from_slice(&p.offset.to_le_bytes());
    out.extend_from_slice(&p.len.to_le_bytes());
    out.extend_from_slice(&p.checksum.to_le_bytes());
}

fn decode_pointer(b: &[u8]) -> LogPointer {
    let u32_at = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    let mut offset = [0u8; 8];
    offset.copy_from_slice(&b[4..12]);
    LogPointer {
        segment: SegmentId(u32_at(0)),
        offset: u64::from_le_bytes(offset),
        len: u32_at(12),
        checksum: u32_at(16),
    }
}

/// Returns `suffix ++ pointer ++ value` as one boxed slice.
fn build(suffix: &[u8], pointer: Option<&LogPointer>, value: &[u8]) -> Box<[u8]> {
    let plen = if pointer.is_some() { POINTER_BYTES } else { 0 };
    let mut data = Vec::with_capacity(suffix.len() + plen + value.len());
    data.extend_from_slice(suffix);
    if let Some(p) = pointer {
        encode_pointer(p, &mut data);
    }
    data.extend_from_slice(value);
    data.into_boxed_slice()
}

impl Entry {
    /// Builds an entry for `value` with key suffix `suffix`.
    pub(crate) fn new(suffix: &[u8], value: &Value<'_>) -> Self {
        // A write is an access: a new entry starts referenced.
        let mut flags = FLAG_ACCESSED;
        if value.inline.is_some() {
            flags |= FLAG_INLINE;
        }
        if value.pointer.is_some() {
            flags |= FLAG_POINTER;
        }
        if value.dirty {
            flags |= FLAG_DIRTY;
        }
        Self {
            data: build(suffix, value.pointer.as_ref(), value.inline.unwrap_or(&[])),
            expire_at_ms: value.expire_at_ms.unwrap_or(0),
            suffix_len: u32::try_from(suffix.len()).expect("keys are at most 64 KiB"),
            flags: Cell::new(flags),
            stamp: Cell::new(0),
        }
    }

    /// Returns the key suffix.
    #[inline(always)]
    pub(crate) fn suffix(&self) -> &[u8] {
        &self.data[..self.suffix_len as usize]
    }

    fn pointer_len(&self) -> usize {
        if self.has_pointer() { POINTER_BYTES } else { 0 }
    }

    /// Returns the bytes of the inline value (empty when there is none).
    #[inline(always)]
    pub(crate) fn value_bytes(&self) -> &[u8] {
        &self.data[self.suffix_len as usize + self.pointer_len()..]
    }

    /// Returns the log pointer, if any.
    pub(crate) fn pointer(&self) -> Option<LogPointer> {
        let at = self.suffix_len as usize;
        self.has_pointer()
            .then(|| decode_pointer(&self.data[at..at + POINTER_BYTES]))
    }

    /// Returns the heap bytes held for the pointer.
    pub(crate) fn pointer_bytes(&self) -> usize {
        self.pointer_len()
    }

    /// Rebuilds `data` from its parts.
    fn rebuild(&mut self, suffix: &[u8], pointer: Option<LogPointer>, value: &[u8]) {
        self.data = build(suffix, pointer.as_ref(), value);
        self.suffix_len = u32::try_from(suffix.len()).expect("keys are at most 64 KiB");
        self.set_flag(FLAG_POINTER, pointer.is_some());
    }

    /// Replaces the key suffix, keeping the pointer and value.
    pub(crate) fn set_suffix(&mut self, suffix: &[u8]) {
        let value = self.value_bytes().to_vec();
        self.rebuild(suffix, self.pointer(), &value);
    }

    fn set_flag(&self, flag: u8, on: bool) {
        let f = self.flags.get();
        self.flags.set(if on { f | flag } else { f & !flag });
    }

    fn flag(&self, flag: u8) -> bool {
        self.flags.get() & flag != 0
    }

    /// Turns the entry into its owned form.
    pub(crate) fn into_owned(self) -> OwnedEntry {
        let pointer = self.pointer();
        let (flags, expire_at_ms) = (self.flags.get(), self.expire_at_ms);
        let inline = match (
            self.has_inline(),
            self.suffix_len as usize + self.pointer_len(),
        ) {
            (false, _) => None,
            (true, 0) => Some(self.data.into_vec()),
            (true, _) => Some(self.value_bytes().to_vec()),
        };
        OwnedEntry {
            inline,
            pointer,
            expire_at_ms: (expire_at_ms != 0).then_some(expire_at_ms),
            dirty: flags & FLAG_DIRTY != 0,
            accessed: flags & FLAG_ACCESSED != 0,
        }
    }

    pub(crate) fn has_inline(&self) -> bool {
        self.flag(FLAG_INLINE)
    }

    pub(crate) fn has_pointer(&self) -> bool {
        self.flag(FLAG_POINTER)
    }
}

/// Byte counters kept by the tree: key suffixes and inline values held on the heap.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct HeapBytes {
    pub(crate) suffix: usize,
    pub(crate) pointer: usize,
    pub(crate) value: usize,
}

impl HeapBytes {
    pub(crate) fn add(&mut self, e: &Entry) {
        self.suffix += e.suffix_len as usize;
        self.pointer += e.pointer_bytes();
        self.value += e.value_bytes().len();
    }

    pub(crate) fn sub(&mut self, e: &Entry) {
        self.suffix -= e.suffix_len as usize;
        self.pointer -= e.pointer_bytes();
        self.value -= e.value_bytes().len();
    }
}

/// A read-only view of an entry in the tree.
#[derive(Clone, Copy, Debug)]
pub struct EntryRef<'a>(pub(crate) &'a Entry);

impl<'a> EntryRef<'a> {
    /// Returns the inline value, if the entry is hot.
    pub fn value(&self) -> Option<&'a [u8]> {
        self.0.has_inline().then(|| self.0.value_bytes())
    }

    /// Returns the log pointer, if the entry has one.
    pub fn pointer(&self) -> Option<LogPointer> {
        self.0.pointer()
    }

    /// Returns the expiry time in milliseconds since the Unix epoch.
    pub fn expire_at_ms(&self) -> Option<u64> {
        (self.0.expire_at_ms != 0).then_some(self.0.expire_at_ms)
    }

    /// Returns the dirty bit (index entry not yet checkpointed).
    pub fn is_dirty(&self) -> bool {
        self.0.flag(FLAG_DIRTY)
    }

    /// Returns the access bit (used since the clock hand last cleared it).
    pub fn is_accessed(&self) -> bool {
        self.0.flag(FLAG_ACCESSED)
    }

    /// Sets the access bit (a read), without allocating and through a shared reference.
    #[inline]
    pub fn touch(&self) {
        self.0.set_flag(FLAG_ACCESSED, true);
    }

    /// The clock hand's visit: returns the access bit and clears it (second chance).
    pub fn take_accessed(&self) -> bool {
        let was = self.is_accessed();
        self.0.set_flag(FLAG_ACCESSED, false);
        was
    }

    /// Returns the transient bit (a cold value loaded for one operation, not promoted).
    pub fn is_transient(&self) -> bool {
        self.0.flag(FLAG_TRANSIENT)
    }

    /// Returns the clock tick of the last cold read recorded, if any.
    pub fn cold_read_stamp(&self) -> Option<u16> {
        self.0.flag(FLAG_STAMPED).then(|| self.0.stamp.get())
    }

    /// Records (`Some`) or forgets (`None`) the clock tick of a cold read.
    pub fn set_cold_read_stamp(&self, tick: Option<u16>) {
        self.0.set_flag(FLAG_STAMPED, tick.is_some());
        self.0.stamp.set(tick.unwrap_or(0));
    }
}

/// A mutable view of an entry in the tree; changes keep the tree's memory accounting exact.
#[derive(Debug)]
pub struct EntryMut<'a> {
    pub(crate) entry: &'a mut Entry,
    pub(crate) heap: &'a mut HeapBytes,
}

impl EntryMut<'_> {
    /// Returns a read-only view.
    pub fn get(&self) -> EntryRef<'_> {
        EntryRef(self.entry)
    }

    /// Sets or clears the dirty bit.
    pub fn set_dirty(&mut self, dirty: bool) {
        self.entry.set_flag(FLAG_DIRTY, dirty);
    }

    /// Sets or clears the access bit.
    pub fn set_accessed(&mut self, accessed: bool) {
        self.entry.set_flag(FLAG_ACCESSED, accessed);
    }

    /// Sets or clears the transient bit (a cold value loaded for one operation only).
    pub fn set_transient(&mut self, transient: bool) {
        self.entry.set_flag(FLAG_TRANSIENT, transient);
    }

    /// Sets the expiry time (`None`: never expires).
    pub fn set_expire_at_ms(&mut self, expire_at_ms: Option<u64>) {
        self.entry.expire_at_ms = expire_at_ms.unwrap_or(0);
    }

    /// Records where the value lives in the log.
    pub fn set_pointer(&mut self, pointer: LogPointer) {
        self.heap.sub(self.entry);
        let (suffix, value) = (
            self.entry.suffix().to_vec(),
            self.entry.value_bytes().to_vec(),
        );
        self.entry.rebuild(&suffix, Some(pointer), &value);
        self.heap.add(self.entry);
    }

    /// Forgets the log pointer of a hot entry, which keeps its value in memory only (the
    /// caller makes it durable otherwise: a checkpoint). Returns whether it did: an entry
    /// without its value in memory keeps its pointer, which is then its only copy.
    pub fn clear_pointer(&mut self) -> bool {
        if !self.entry.has_inline() {
            return false;
        }
        self.heap.sub(self.entry);
        let (suffix, value) = (
            self.entry.suffix().to_vec(),
            self.entry.value_bytes().to_vec(),
        );
        self.entry.rebuild(&suffix, None, &value);
        self.heap.add(self.entry);
        true
    }

    /// Demotes a hot entry: drops the inline value and keeps the log pointer. Returns the
    /// number of value bytes freed, or `None` (and changes nothing) when the entry has no log
    /// pointer, because then the value would be lost.
    pub fn demote(&mut self) -> Option<usize> {
        let pointer = self.entry.pointer()?;
        let freed = self.entry.value_bytes().len();
        if self.entry.has_inline() {
            self.heap.sub(self.entry);
            let suffix = self.entry.suffix().to_vec();
            self.entry.rebuild(&suffix, Some(pointer), &[]);
            self.entry.set_flag(FLAG_INLINE, false);
            self.entry.set_flag(FLAG_TRANSIENT, false);
            self.heap.add(self.entry);
        }
        Some(freed)
    }

    /// Promotes a cold entry: keeps `value` inline again (the log pointer stays).
    pub fn promote(&mut self, value: &[u8]) {
        self.heap.sub(self.entry);
        let suffix = self.entry.suffix().to_vec();
        self.entry.rebuild(&suffix, self.entry.pointer(), value);
        self.entry.set_flag(FLAG_INLINE, true);
        self.heap.add(self.entry);
    }
}
