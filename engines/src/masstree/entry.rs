//! Entries: what a key maps to — an inline value (hot), a log pointer (cold, or both while a
//! hot value is also on the log), an expiry time, and the dirty and access bits.

/// Identifies a segment of the shard log.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SegmentId(pub u32);

/// Where a value's bytes live in the shard log: segment, byte offset inside it, length, and the
/// checksum (crc32c) of the bytes, checked when they are read back.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct LogPointer {
    /// The log segment holding the value.
    pub segment: SegmentId,
    /// Byte offset of the value inside the segment.
    pub offset: u64,
    /// Length of the value in bytes.
    pub len: u32,
    /// crc32c of the value's bytes.
    pub checksum: u32,
}

const FLAG_INLINE: u8 = 1;
const FLAG_POINTER: u8 = 2;
const FLAG_DIRTY: u8 = 4;
const FLAG_ACCESSED: u8 = 8;

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

/// The stored form of an entry (56 bytes, in its own arena). `data` holds the key suffix (the
/// key bytes after this layer's slice, when the key is longer) followed by the inline value, in
/// one allocation.
#[derive(Debug, Default)]
pub(crate) struct Entry {
    pub(crate) data: Box<[u8]>,
    pub(crate) pointer: LogPointer,
    /// 0 = never expires.
    pub(crate) expire_at_ms: u64,
    pub(crate) suffix_len: u32,
    pub(crate) flags: u8,
}

const _: () = assert!(size_of::<Entry>() == 56);

impl Entry {
    /// Builds an entry for `value` with key suffix `suffix`.
    pub(crate) fn new(suffix: &[u8], value: &Value<'_>) -> Self {
        let inline = value.inline.unwrap_or(&[]);
        let mut data = Vec::with_capacity(suffix.len() + inline.len());
        data.extend_from_slice(suffix);
        data.extend_from_slice(inline);
        let mut flags = 0;
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
            data: data.into_boxed_slice(),
            pointer: value.pointer.unwrap_or_default(),
            expire_at_ms: value.expire_at_ms.unwrap_or(0),
            suffix_len: u32::try_from(suffix.len()).expect("keys are at most 64 KiB"),
            flags,
        }
    }

    /// Returns the key suffix.
    #[inline(always)]
    pub(crate) fn suffix(&self) -> &[u8] {
        &self.data[..self.suffix_len as usize]
    }

    /// Returns the bytes of the inline value (empty when there is none).
    #[inline(always)]
    pub(crate) fn value_bytes(&self) -> &[u8] {
        &self.data[self.suffix_len as usize..]
    }

    /// Replaces the key suffix, keeping the value.
    pub(crate) fn set_suffix(&mut self, suffix: &[u8]) {
        let mut data = Vec::with_capacity(suffix.len() + self.value_bytes().len());
        data.extend_from_slice(suffix);
        data.extend_from_slice(self.value_bytes());
        self.data = data.into_boxed_slice();
        self.suffix_len = u32::try_from(suffix.len()).expect("keys are at most 64 KiB");
    }

    /// Turns the entry into its owned form.
    pub(crate) fn into_owned(self) -> OwnedEntry {
        let pointer = self.has_pointer().then_some(self.pointer);
        let (flags, expire_at_ms) = (self.flags, self.expire_at_ms);
        let inline = match (self.has_inline(), self.suffix_len) {
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
        self.flags & FLAG_INLINE != 0
    }

    pub(crate) fn has_pointer(&self) -> bool {
        self.flags & FLAG_POINTER != 0
    }
}

/// Byte counters kept by the tree: key suffixes and inline values held on the heap.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct HeapBytes {
    pub(crate) suffix: usize,
    pub(crate) value: usize,
}

impl HeapBytes {
    pub(crate) fn add(&mut self, e: &Entry) {
        self.suffix += e.suffix_len as usize;
        self.value += e.value_bytes().len();
    }

    pub(crate) fn sub(&mut self, e: &Entry) {
        self.suffix -= e.suffix_len as usize;
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
        self.0.has_pointer().then_some(self.0.pointer)
    }

    /// Returns the expiry time in milliseconds since the Unix epoch.
    pub fn expire_at_ms(&self) -> Option<u64> {
        (self.0.expire_at_ms != 0).then_some(self.0.expire_at_ms)
    }

    /// Returns the dirty bit (index entry not yet checkpointed).
    pub fn is_dirty(&self) -> bool {
        self.0.flags & FLAG_DIRTY != 0
    }

    /// Returns the access bit (used since the clock hand last cleared it).
    pub fn is_accessed(&self) -> bool {
        self.0.flags & FLAG_ACCESSED != 0
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

    fn set_flag(&mut self, flag: u8, on: bool) {
        if on {
            self.entry.flags |= flag;
        } else {
            self.entry.flags &= !flag;
        }
    }

    /// Sets or clears the dirty bit.
    pub fn set_dirty(&mut self, dirty: bool) {
        self.set_flag(FLAG_DIRTY, dirty);
    }

    /// Sets or clears the access bit.
    pub fn set_accessed(&mut self, accessed: bool) {
        self.set_flag(FLAG_ACCESSED, accessed);
    }

    /// Sets the expiry time (`None`: never expires).
    pub fn set_expire_at_ms(&mut self, expire_at_ms: Option<u64>) {
        self.entry.expire_at_ms = expire_at_ms.unwrap_or(0);
    }

    /// Records where the value lives in the log.
    pub fn set_pointer(&mut self, pointer: LogPointer) {
        self.entry.pointer = pointer;
        self.set_flag(FLAG_POINTER, true);
    }

    /// Demotes a hot entry: drops the inline value and keeps the log pointer. Returns the
    /// number of value bytes freed, or `None` (and changes nothing) when the entry has no log
    /// pointer, because then the value would be lost.
    pub fn demote(&mut self) -> Option<usize> {
        if !self.entry.has_pointer() {
            return None;
        }
        let freed = self.entry.value_bytes().len();
        if self.entry.has_inline() {
            self.heap.sub(self.entry);
            let suffix = self.entry.suffix().to_vec();
            self.entry.data = suffix.into_boxed_slice();
            self.heap.add(self.entry);
            self.set_flag(FLAG_INLINE, false);
        }
        Some(freed)
    }

    /// Promotes a cold entry: keeps `value` inline again (the log pointer stays).
    pub fn promote(&mut self, value: &[u8]) {
        self.heap.sub(self.entry);
        let mut data = Vec::with_capacity(self.entry.suffix_len as usize + value.len());
        data.extend_from_slice(self.entry.suffix());
        data.extend_from_slice(value);
        self.entry.data = data.into_boxed_slice();
        self.heap.add(self.entry);
        self.set_flag(FLAG_INLINE, true);
    }
}
