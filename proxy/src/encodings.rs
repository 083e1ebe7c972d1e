//! Redis's encoding thresholds (`hash-max-listpack-entries` and the like). tierkv stores every
//! type in one layout (DESIGN §2: one engine entry per element), so these change no storage;
//! they are kept so that `CONFIG GET`/`CONFIG SET` behave as Redis 7.0's and `OBJECT
//! ENCODING` names the encoding Redis would use for the same contents under the same
//! thresholds (`cmd::object`).

use std::sync::atomic::{AtomicI64, Ordering};

/// One threshold: its name, Redis 7.0's old alias, its bounds, and whether its value is a
/// memory value (`64mb`).
#[derive(Debug)]
pub struct Param {
    /// The name `CONFIG GET *` lists.
    pub name: &'static str,
    /// The Redis 6 name, also accepted and listed.
    pub alias: Option<&'static str>,
    /// Smallest value.
    pub min: i64,
    /// Largest value.
    pub max: i64,
    /// Parsed as a memory value (`memtoull`) rather than an integer.
    pub memory: bool,
    default: i64,
}

const INT_MAX: i64 = i32::MAX as i64;

/// The thresholds, as Redis 7.0.15 defines them (`config.c`).
pub static PARAMS: [Param; 7] = [
    param(
        "hash-max-listpack-entries",
        Some("hash-max-ziplist-entries"),
        0,
        i64::MAX,
        512,
        false,
    ),
    param(
        "hash-max-listpack-value",
        Some("hash-max-ziplist-value"),
        0,
        i64::MAX,
        64,
        true,
    ),
    param(
        "list-max-listpack-size",
        Some("list-max-ziplist-size"),
        i32::MIN as i64,
        INT_MAX,
        -2,
        false,
    ),
    param("list-compress-depth", None, 0, INT_MAX, 0, false),
    param("set-max-intset-entries", None, 0, i64::MAX, 512, false),
    param(
        "zset-max-listpack-entries",
        Some("zset-max-ziplist-entries"),
        0,
        i64::MAX,
        128,
        false,
    ),
    param(
        "zset-max-listpack-value",
        Some("zset-max-ziplist-value"),
        0,
        i64::MAX,
        64,
        true,
    ),
];

const fn param(
    name: &'static str,
    alias: Option<&'static str>,
    min: i64,
    max: i64,
    default: i64,
    memory: bool,
) -> Param {
    Param {
        name,
        alias,
        min,
        max,
        memory,
        default,
    }
}

/// Index of each threshold in [`PARAMS`].
#[derive(Debug, Clone, Copy)]
#[allow(missing_docs)]
pub enum Threshold {
    HashEntries = 0,
    HashValue = 1,
    ListSize = 2,
    ListCompress = 3,
    SetIntsetEntries = 4,
    ZsetEntries = 5,
    ZsetValue = 6,
}

/// The current values, shared by every connection.
#[derive(Debug)]
pub struct Encodings {
    values: [AtomicI64; 7],
}

impl Default for Encodings {
    fn default() -> Self {
        Self {
            values: std::array::from_fn(|i| AtomicI64::new(PARAMS[i].default)),
        }
    }
}

impl Encodings {
    /// The value of a threshold.
    pub fn get(&self, t: Threshold) -> i64 {
        self.values[t as usize].load(Ordering::Relaxed)
    }

    /// The index in [`PARAMS`] of a name or alias (lower case).
    pub fn find(name: &str) -> Option<usize> {
        PARAMS
            .iter()
            .position(|p| p.name == name || p.alias == Some(name))
    }

    /// The value at index `i` of [`PARAMS`].
    pub fn value_at(&self, i: usize) -> i64 {
        self.values[i].load(Ordering::Relaxed)
    }

    /// Sets the value at index `i` of [`PARAMS`] (checked by `CONFIG SET` first).
    pub fn set_at(&self, i: usize, v: i64) {
        self.values[i].store(v, Ordering::Relaxed);
    }
}
