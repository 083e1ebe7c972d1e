//! `RENAME`, `RENAMENX` and `COPY` within one range. Every entry of a key is under the key's
//! own prefix (DESIGN §2), so moving a collection means rewriting each element under the
//! destination: O(n) in the elements, in the one Raft entry (atomic). The copy gets a new
//! version, so nothing of an earlier key at the destination can mix in; a rename deletes the
//! source's elements as it goes.

use bytes::Bytes;
use net::RpcError;
use net::keyspace::Db;
use net::message::kv::OpResult;

use super::apply::{Apply, Live, after, new_version};
use super::meta::Meta;
use super::store::{Entry, KvStore};
use crate::keyspace;

/// Elements read per engine scan.
const PAGE: usize = 256;

/// One element to rewrite: its old and new internal keys and its value.
type Moved = (Bytes, Bytes, Bytes);

impl<S: KvStore> Apply<'_, '_, S> {
    /// `RENAME key dst` (`nx`: `RENAMENX`).
    pub(super) fn rename(
        &mut self,
        key: &[u8],
        dst: &[u8],
        nx: bool,
    ) -> Result<OpResult, RpcError> {
        let Some(live) = self.live(key)? else {
            return Err(RpcError::BadRequest {
                message: "no such key".into(),
            });
        };
        if key == dst {
            return Ok(if nx {
                OpResult::Bool { value: false }
            } else {
                OpResult::Unit {}
            });
        }
        if nx && self.live(dst)?.is_some() {
            return Ok(OpResult::Bool { value: false });
        }
        self.duplicate(key, dst, self.db, &live, true)?;
        Ok(if nx {
            OpResult::Bool { value: true }
        } else {
            OpResult::Unit {}
        })
    }

    /// `COPY key dst [REPLACE]`.
    pub(super) fn copy(
        &mut self,
        key: &[u8],
        dst: &[u8],
        replace: bool,
    ) -> Result<OpResult, RpcError> {
        if key == dst {
            return Err(RpcError::BadRequest {
                message: "source and destination objects are the same".into(),
            });
        }
        let Some(live) = self.live(key)? else {
            return Ok(OpResult::Bool { value: false });
        };
        if !replace && self.live(dst)?.is_some() {
            return Ok(OpResult::Bool { value: false });
        }
        self.duplicate(key, dst, self.db, &live, false)?;
        Ok(OpResult::Bool { value: true })
    }

    /// `MOVE key db` (`remove`) and `COPY key dst DB db [REPLACE]`: `key` of this operation's
    /// database written at `dst` of `dst_db` (both in the range: `range::keys`).
    pub(super) fn copy_db(
        &mut self,
        key: &[u8],
        dst: &[u8],
        dst_db: Db,
        replace: bool,
        remove: bool,
    ) -> Result<OpResult, RpcError> {
        if key == dst && dst_db == self.db {
            return Err(RpcError::BadRequest {
                message: "source and destination objects are the same".into(),
            });
        }
        let Some(live) = self.live(key)? else {
            return Ok(OpResult::Bool { value: false });
        };
        if !replace && self.live_in(dst_db, dst)?.is_some() {
            return Ok(OpResult::Bool { value: false });
        }
        self.duplicate(key, dst, dst_db, &live, remove)?;
        Ok(OpResult::Bool { value: true })
    }

    /// Writes `live` (the key at `key`) at `dst` of database `dst_db` with its expiry,
    /// replacing whatever is there; `remove`: delete the source. Every new key is checked
    /// against the engine's limit before anything is written.
    fn duplicate(
        &mut self,
        key: &[u8],
        dst: &[u8],
        dst_db: Db,
        live: &Live,
        remove: bool,
    ) -> Result<(), RpcError> {
        // The destination's elements are rewritten and the source's deleted here, not through
        // `zinsert`/`zdelete`: neither keeps a rank index.
        self.rank_drop(dst_db, dst);
        if remove {
            self.rank_drop(self.db, key);
        }
        let (meta, moved) = match live.meta.version() {
            None => (live.meta.clone(), Vec::new()),
            Some(old) => {
                let version = new_version(&self.ctx);
                self.clear_version(dst_db, dst, version)?;
                (
                    with_version(&live.meta, version),
                    self.elements(key, (dst_db, dst), old, version)?,
                )
            }
        };
        for (from, to, value) in moved {
            if remove {
                self.store.delete(&from);
            }
            self.store.put(
                to,
                Entry {
                    value,
                    expire_at_ms: 0,
                },
            );
        }
        if remove {
            self.store.delete(&keyspace::meta_key(self.db, key));
        }
        self.write_meta_in(dst_db, dst, &meta, live.expire_at_ms);
        Ok(())
    }

    /// A collection created earlier in this same entry (a `MULTI`) has the version a copy
    /// made now would get: delete its elements so that they cannot mix with the copy's.
    fn clear_version(&mut self, db: Db, dst: &[u8], version: u64) -> Result<(), RpcError> {
        let same = self.live_in(db, dst)?.and_then(|l| l.meta.version()) == Some(version);
        if !same {
            return Ok(());
        }
        for tag in keyspace::ELEMENT_TAGS {
            let prefix = keyspace::element_prefix(db, dst, tag, version);
            let end = keyspace::prefix_end(&prefix);
            loop {
                let page = self.store.scan(&prefix, end.as_deref(), PAGE, false);
                if page.is_empty() {
                    break;
                }
                for (k, _) in page {
                    self.store.delete(&k);
                }
            }
        }
        Ok(())
    }

    /// Every element of `key`'s version `old`, with its key under `dst`'s version `version`
    /// (`dst` in its database).
    fn elements(
        &self,
        key: &[u8],
        (dst_db, dst): (Db, &[u8]),
        old: u64,
        version: u64,
    ) -> Result<Vec<Moved>, RpcError> {
        let mut out = Vec::new();
        for tag in keyspace::ELEMENT_TAGS {
            let prefix = keyspace::element_prefix(self.db, key, tag, old);
            let end = keyspace::prefix_end(&prefix);
            let mut start = prefix.clone();
            loop {
                let page = self.store.scan(&start, end.as_deref(), PAGE, false);
                for (k, e) in &page {
                    let to = keyspace::element_key(dst_db, dst, tag, version, &k[prefix.len()..]);
                    if to.len() > net::limits::MAX_INTERNAL_KEY_BYTES {
                        return Err(net::limits::LimitError::KeyTooLarge {
                            len: to.len()
                                - (keyspace::element_prefix(dst_db, dst, tag, version).len()
                                    - dst.len()),
                            max: net::limits::MAX_KEY_ELEMENT_BYTES,
                        }
                        .into());
                    }
                    out.push((k.clone(), to, e.value.clone()));
                }
                match page.last() {
                    Some((last, _)) if page.len() == PAGE => start = after(last),
                    _ => break,
                }
            }
        }
        Ok(out)
    }
}

/// `meta` with its elements under `version`.
fn with_version(meta: &Meta, version: u64) -> Meta {
    let mut m = meta.clone();
    match &mut m {
        Meta::Str(_) => {}
        Meta::Hash { version: v, .. }
        | Meta::List { version: v, .. }
        | Meta::Set { version: v, .. }
        | Meta::ZSet { version: v, .. } => *v = version,
    }
    m
}
