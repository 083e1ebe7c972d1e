//! The background sweep of a range (DESIGN §2): a leader walks its range a page per tick and
//! proposes one *sweep* entry naming the keys to delete; every replica deletes each named key
//! that is still sweepable when the entry applies, so a key re-set or re-created in between
//! survives and all replicas decide alike (the decision depends only on the store and the
//! entry's `now_ms`). Two kinds of entries are sweepable:
//! - **expired** entries (`expire_at_ms` passed), as Redis's active expiry;
//! - **garbage** elements: an element (hash field, list element, set or sorted-set member)
//!   whose key's metadata is gone, expired, of another version or of a string — what an O(1)
//!   `DEL`, expiry or overwrite of a collection leaves behind.

use bytes::Bytes;

use super::meta;
use super::store::{Entry, KvStore};
use crate::keyspace;

/// What one sweep entry deleted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Swept {
    /// Expired entries.
    pub expired: u64,
    /// The keys (database, user key) whose metadata expired: Redis's `expired` events.
    pub expired_keys: Vec<(net::keyspace::Db, Bytes)>,
    /// Elements of dead collections.
    pub garbage: u64,
}

/// Why a key may be swept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Its entry has expired.
    Expired,
    /// It is an element of a collection that no longer exists.
    Garbage,
}

/// Remembers the last user key's live version while a page is examined (elements of one key
/// are contiguous), so a page costs one metadata lookup per user key.
#[derive(Debug, Default)]
pub struct Judge {
    last: Option<(keyspace::Db, Bytes, Option<u64>)>,
}

impl Judge {
    /// Whether `key` (holding `entry`) is sweepable at `now_ms`, and why.
    pub fn reason<S: KvStore>(
        &mut self,
        store: &S,
        key: &[u8],
        entry: &Entry,
        now_ms: u64,
    ) -> Option<Reason> {
        if entry.is_expired(now_ms) {
            return Some(Reason::Expired);
        }
        let (db, user, version) = keyspace::parse_element(key)?;
        let live = match &self.last {
            Some((d, k, v)) if *d == db && k[..] == *user => *v,
            _ => {
                let v = live_version(store, db, user, now_ms);
                self.last = Some((db, Bytes::copy_from_slice(user), v));
                v
            }
        };
        (live != Some(version)).then_some(Reason::Garbage)
    }
}

/// The version of the live collection at `user` (`None`: absent, expired or a string).
fn live_version<S: KvStore>(store: &S, db: keyspace::Db, user: &[u8], now_ms: u64) -> Option<u64> {
    let e = store.get(&keyspace::meta_key(db, user))?;
    if e.is_expired(now_ms) {
        return None;
    }
    meta::decode(&e.value).ok()?.version()
}

/// Applies a sweep entry: deletes each of `keys` still sweepable at `now_ms`.
pub fn apply<S: KvStore>(store: &mut S, now_ms: u64, keys: &[Bytes]) -> Swept {
    let mut judge = Judge::default();
    let mut out = Swept::default();
    for k in keys {
        // Only the expiry is needed (not the value: a cold value is not loaded to delete it).
        let Some(expire_at_ms) = store.expiry(k) else {
            continue;
        };
        let e = Entry {
            value: Bytes::new(),
            expire_at_ms,
        };
        match judge.reason(store, k, &e, now_ms) {
            Some(Reason::Expired) if store.delete(k).is_some() => {
                out.expired += 1;
                if let Some((db, user)) = keyspace::user_key_of_meta(k) {
                    out.expired_keys.push((db, Bytes::copy_from_slice(user)));
                }
            }
            Some(Reason::Garbage) if store.delete(k).is_some() => out.garbage += 1,
            _ => {}
        }
    }
    out
}

/// The sweepable keys among `page` (entries of the store in key order; values are not
/// needed) at `now_ms`. An element whose collection's metadata is cold is left for a later
/// pass (the leader does not load values to propose a sweep).
pub fn select<S: KvStore>(store: &S, page: Vec<(Bytes, Entry)>, now_ms: u64) -> Vec<Bytes> {
    let mut judge = Judge::default();
    let meta_cold = |k: &[u8]| {
        keyspace::parse_element(k)
            .is_some_and(|(db, user, _)| store.is_cold(&keyspace::meta_key(db, user)))
    };
    page.into_iter()
        .filter(|(k, e)| e.is_expired(now_ms) || !meta_cold(k))
        .filter(|(k, e)| judge.reason(store, k, e, now_ms).is_some())
        .map(|(k, _)| k)
        .collect()
}
