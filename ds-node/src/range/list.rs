//! Lists (Redis `t_list.c`): a metadata entry (version, count, head index) and one engine
//! entry per element at `'L' | version | index` ([`crate::keyspace::list_element_key`]).
//!
//! The elements of a list sit at indexes `head .. head + count`. Pushes and pops at either end
//! change `head`/`count` and touch one element entry each: O(1). `LINDEX`/`LSET` find their
//! entry by index arithmetic: O(1). `LRANGE` scans from its first index: O(k) for k elements.
//! `LINSERT` shifts the shorter side by one, `LREM` rewrites the list, `LPOS` scans: O(n).
//! `LTRIM` and pops delete the element entries they drop. An empty list is deleted.

use bytes::Bytes;
use net::RpcError;
use net::message::kv::{ListOp, OpResult};

use super::apply::{Apply, Live, new_version, ok_int, value};
use super::meta::{LIST_START, Meta};
use super::store::{Entry, KvStore};
use crate::keyspace::{list_element_key, meta_key};

/// The metadata of a live list.
#[derive(Debug, Clone, Copy)]
pub(super) struct ListMeta {
    version: u64,
    count: u64,
    head: u64,
    expire_at_ms: u64,
}

impl ListMeta {
    /// The engine index of element `i` (0-based from the head).
    fn at(&self, i: u64) -> u64 {
        self.head.wrapping_add(i)
    }

    /// `index` (negative: from the tail) as a 0-based position, if within the list.
    fn position(&self, index: i64) -> Option<u64> {
        let len = i64::try_from(self.count).unwrap_or(i64::MAX);
        let i = if index < 0 {
            len.checked_add(index)?
        } else {
            index
        };
        (0..len).contains(&i).then(|| i.unsigned_abs())
    }

    /// Redis's range arithmetic (`addListRangeReply`, `LTRIM`): the inclusive positions
    /// `start..=stop` clamped to the list, `None` when empty.
    fn clamp(&self, start: i64, stop: i64) -> Option<(u64, u64)> {
        let len = i64::try_from(self.count).unwrap_or(i64::MAX);
        let mut s = if start < 0 {
            len.saturating_add(start)
        } else {
            start
        };
        let mut e = if stop < 0 {
            len.saturating_add(stop)
        } else {
            stop
        };
        s = s.max(0);
        if s > e || s >= len {
            return None;
        }
        e = e.min(len - 1);
        Some((s.unsigned_abs(), e.unsigned_abs()))
    }
}

fn no_such_key() -> RpcError {
    RpcError::BadRequest {
        message: "no such key".into(),
    }
}

fn out_of_range() -> RpcError {
    RpcError::BadRequest {
        message: "index out of range".into(),
    }
}

fn bulks(values: Vec<Bytes>) -> Result<OpResult, RpcError> {
    Ok(OpResult::Bulks { values })
}

impl<S: KvStore> Apply<'_, '_, S> {
    /// Executes a list operation.
    pub(super) fn list(&mut self, op: &ListOp) -> Result<OpResult, RpcError> {
        match op {
            ListOp::Len { key } => {
                let count = self.list_meta(key)?.map_or(0, |m| m.count);
                ok_int(i64::try_from(count).unwrap_or(i64::MAX))
            }
            ListOp::Push {
                key,
                elements,
                left,
                only_existing,
            } => self.lpush(key, elements, *left, *only_existing),
            ListOp::Pop { key, left, count } => self.lpop(key, *left, *count),
            ListOp::Range { key, start, stop } => self.lrange(key, *start, *stop),
            ListOp::Index { key, index } => {
                let Some(m) = self.list_meta(key)? else {
                    return value(None);
                };
                value(
                    m.position(*index)
                        .and_then(|p| self.list_element(key, &m, p)),
                )
            }
            ListOp::Set {
                key,
                index,
                element,
            } => self.lset(key, *index, element),
            ListOp::Insert {
                key,
                before,
                pivot,
                element,
            } => self.linsert(key, *before, pivot, element),
            ListOp::Rem {
                key,
                count,
                element,
            } => self.lrem(key, *count, element),
            ListOp::Trim { key, start, stop } => self.ltrim(key, *start, *stop),
            ListOp::Pos {
                key,
                element,
                rank,
                count,
                maxlen,
            } => self.lpos(key, element, *rank, *count, *maxlen),
            ListOp::Move {
                src,
                dst,
                from_left,
                to_left,
            } => self.lmove(src, dst, *from_left, *to_left),
            ListOp::MPop {
                key,
                others,
                left,
                count,
            } => self.lmpop(key, others, *left, *count),
        }
    }

    /// The metadata of list `key`; WRONGTYPE for another type.
    pub(super) fn list_meta(&self, key: &[u8]) -> Result<Option<ListMeta>, RpcError> {
        match self.live(key)? {
            None => Ok(None),
            Some(Live {
                meta:
                    Meta::List {
                        version,
                        count,
                        head,
                    },
                expire_at_ms,
            }) => Ok(Some(ListMeta {
                version,
                count,
                head,
                expire_at_ms,
            })),
            Some(_) => Err(RpcError::WrongType {}),
        }
    }

    /// Writes the metadata of `key`, or deletes the key when the list is empty.
    fn save_list(&mut self, key: &[u8], m: &ListMeta) {
        if m.count == 0 {
            self.store.delete(&meta_key(self.db, key));
            return;
        }
        let meta = Meta::List {
            version: m.version,
            count: m.count,
            head: m.head,
        };
        self.write_meta(key, &meta, m.expire_at_ms);
    }

    fn list_element(&self, key: &[u8], m: &ListMeta, pos: u64) -> Option<Bytes> {
        self.store
            .get(&list_element_key(self.db, key, m.version, m.at(pos)))
            .map(|e| e.value)
    }

    fn put_list_element(&mut self, key: &[u8], m: &ListMeta, pos: u64, v: Bytes) {
        let entry = Entry {
            value: v,
            expire_at_ms: 0,
        };
        self.store
            .put(list_element_key(self.db, key, m.version, m.at(pos)), entry);
    }

    /// Removes and returns the element at `pos` (the caller adjusts the metadata).
    fn take_list_element(&mut self, key: &[u8], m: &ListMeta, pos: u64) -> Option<Bytes> {
        let k = list_element_key(self.db, key, m.version, m.at(pos));
        let v = self.store.get(&k).map(|e| e.value);
        self.store.delete(&k);
        v
    }

    fn drop_list_element(&mut self, key: &[u8], m: &ListMeta, pos: u64) {
        self.store
            .delete(&list_element_key(self.db, key, m.version, m.at(pos)));
    }

    /// The elements at positions `from .. from + n`, in order, by one scan.
    fn list_elements(&self, key: &[u8], m: &ListMeta, from: u64, n: u64) -> Vec<Bytes> {
        if n == 0 {
            return Vec::new();
        }
        let start = list_element_key(self.db, key, m.version, m.at(from));
        let end = list_element_key(self.db, key, m.version, m.at(from.saturating_add(n)));
        let limit = usize::try_from(n).unwrap_or(usize::MAX);
        self.store.scan_values(&start, Some(&end), limit)
    }

    /// Rewrites positions `from ..` with `values` (the caller sets the count).
    fn write_list_elements(&mut self, key: &[u8], m: &ListMeta, from: u64, values: Vec<Bytes>) {
        for (i, v) in (from..).zip(values) {
            self.put_list_element(key, m, i, v);
        }
    }

    fn lpush(
        &mut self,
        key: &[u8],
        elements: &[Bytes],
        left: bool,
        only_existing: bool,
    ) -> Result<OpResult, RpcError> {
        let mut m = match self.list_meta(key)? {
            Some(m) => m,
            None if only_existing => return ok_int(0),
            None => ListMeta {
                version: new_version(&self.ctx),
                count: 0,
                head: LIST_START,
                expire_at_ms: 0,
            },
        };
        self.list_push_into(key, &mut m, elements, left);
        self.save_list(key, &m);
        ok_int(i64::try_from(m.count).unwrap_or(i64::MAX))
    }

    fn list_push_into(&mut self, key: &[u8], m: &mut ListMeta, elements: &[Bytes], left: bool) {
        for e in elements {
            if left {
                m.head = m.head.wrapping_sub(1);
                m.count += 1;
                self.put_list_element(key, m, 0, e.clone());
            } else {
                m.count += 1;
                self.put_list_element(key, m, m.count - 1, e.clone());
            }
        }
    }

    /// Pops up to `n` elements of a live list from one end (in pop order) and saves it.
    fn list_pop_from(&mut self, key: &[u8], m: &mut ListMeta, left: bool, n: u64) -> Vec<Bytes> {
        let n = n.min(m.count);
        let mut out = Vec::with_capacity(usize::try_from(n).unwrap_or(0));
        for _ in 0..n {
            let pos = if left { 0 } else { m.count - 1 };
            if let Some(v) = self.take_list_element(key, m, pos) {
                out.push(v);
            }
            if left {
                m.head = m.head.wrapping_add(1);
            }
            m.count -= 1;
        }
        self.save_list(key, m);
        out
    }

    fn lpop(&mut self, key: &[u8], left: bool, count: Option<u64>) -> Result<OpResult, RpcError> {
        let Some(mut m) = self.list_meta(key)? else {
            return value(None);
        };
        match count {
            None => value(self.list_pop_from(key, &mut m, left, 1).pop()),
            Some(n) => bulks(self.list_pop_from(key, &mut m, left, n)),
        }
    }

    fn lrange(&self, key: &[u8], start: i64, stop: i64) -> Result<OpResult, RpcError> {
        let Some(m) = self.list_meta(key)? else {
            return bulks(Vec::new());
        };
        match m.clamp(start, stop) {
            None => bulks(Vec::new()),
            Some((s, e)) => bulks(self.list_elements(key, &m, s, e - s + 1)),
        }
    }

    fn lset(&mut self, key: &[u8], index: i64, element: &Bytes) -> Result<OpResult, RpcError> {
        let m = self.list_meta(key)?.ok_or_else(no_such_key)?;
        let pos = m.position(index).ok_or_else(out_of_range)?;
        self.put_list_element(key, &m, pos, element.clone());
        Ok(OpResult::Unit {})
    }

    /// `LINSERT`: O(n) to find the pivot, then the shorter side moves by one.
    fn linsert(
        &mut self,
        key: &[u8],
        before: bool,
        pivot: &[u8],
        element: &Bytes,
    ) -> Result<OpResult, RpcError> {
        let Some(mut m) = self.list_meta(key)? else {
            return ok_int(0);
        };
        let all = self.list_elements(key, &m, 0, m.count);
        let Some(found) = all.iter().position(|e| e[..] == *pivot) else {
            return ok_int(-1);
        };
        let at = found as u64 + u64::from(!before);
        if at < m.count - at {
            // Shift positions 0..at one to the left.
            let moved: Vec<Bytes> = all[..found + usize::from(!before)].to_vec();
            m.head = m.head.wrapping_sub(1);
            m.count += 1;
            self.write_list_elements(key, &m, 0, moved);
        } else {
            let moved: Vec<Bytes> = all[found + usize::from(!before)..].to_vec();
            m.count += 1;
            self.write_list_elements(key, &m, at + 1, moved);
        }
        self.put_list_element(key, &m, at, element.clone());
        self.save_list(key, &m);
        ok_int(i64::try_from(m.count).unwrap_or(i64::MAX))
    }

    /// `LREM`: O(n); the kept elements are written back from the head, the freed tail
    /// entries deleted.
    fn lrem(&mut self, key: &[u8], count: i64, element: &[u8]) -> Result<OpResult, RpcError> {
        let Some(mut m) = self.list_meta(key)? else {
            return ok_int(0);
        };
        let mut all = self.list_elements(key, &m, 0, m.count);
        let limit = count.unsigned_abs();
        let keep = remove_matches(&mut all, element, limit, count < 0);
        let removed = m.count - keep.len() as u64;
        if removed == 0 {
            return ok_int(0);
        }
        let kept = keep.len() as u64;
        for pos in kept..m.count {
            self.drop_list_element(key, &m, pos);
        }
        self.write_list_elements(key, &m, 0, keep);
        m.count = kept;
        self.save_list(key, &m);
        ok_int(i64::try_from(removed).unwrap_or(i64::MAX))
    }

    fn ltrim(&mut self, key: &[u8], start: i64, stop: i64) -> Result<OpResult, RpcError> {
        let Some(mut m) = self.list_meta(key)? else {
            return Ok(OpResult::Unit {});
        };
        let (ltrim, rtrim) = match m.clamp(start, stop) {
            None => (m.count, 0),
            Some((s, e)) => (s, m.count - e - 1),
        };
        for pos in (0..ltrim).chain(m.count - rtrim..m.count) {
            self.drop_list_element(key, &m, pos);
        }
        m.head = m.head.wrapping_add(ltrim);
        m.count -= ltrim + rtrim;
        self.save_list(key, &m);
        Ok(OpResult::Unit {})
    }

    /// `LPOS`: scans from the head (rank > 0) or the tail (rank < 0), at most `maxlen`.
    fn lpos(
        &self,
        key: &[u8],
        element: &[u8],
        rank: i64,
        count: Option<u64>,
        maxlen: u64,
    ) -> Result<OpResult, RpcError> {
        let Some(m) = self.list_meta(key)? else {
            return Ok(OpResult::Ints { values: Vec::new() });
        };
        // As Redis: a negative rank searches from the tail (`-LONG_MIN` stays negative).
        let from_tail = rank < 0;
        let rank = if from_tail { rank.wrapping_neg() } else { rank };
        let scanned = if maxlen == 0 {
            m.count
        } else {
            maxlen.min(m.count)
        };
        let mut all = if from_tail {
            self.list_elements(key, &m, m.count - scanned, scanned)
        } else {
            self.list_elements(key, &m, 0, scanned)
        };
        if from_tail {
            all.reverse();
        }
        let want = count.map_or(1, |c| if c == 0 { u64::MAX } else { c });
        let mut matches = 0i64;
        let mut out = Vec::new();
        for (i, e) in all.iter().enumerate() {
            if e[..] != *element {
                continue;
            }
            matches += 1;
            if matches >= rank {
                let i = i as u64;
                let index = if from_tail { m.count - i - 1 } else { i };
                out.push(i64::try_from(index).unwrap_or(i64::MAX));
                if out.len() as u64 >= want {
                    break;
                }
            }
        }
        Ok(OpResult::Ints { values: out })
    }

    fn lmove(
        &mut self,
        src: &[u8],
        dst: &[u8],
        from_left: bool,
        to_left: bool,
    ) -> Result<OpResult, RpcError> {
        let Some(mut s) = self.list_meta(src)? else {
            return value(None);
        };
        // The destination's type is checked before anything moves, as Redis does.
        self.list_meta(dst)?;
        let Some(v) = self.list_pop_from(src, &mut s, from_left, 1).pop() else {
            return value(None);
        };
        let mut d = match self.list_meta(dst)? {
            Some(d) => d,
            None => ListMeta {
                version: new_version(&self.ctx),
                count: 0,
                head: LIST_START,
                expire_at_ms: 0,
            },
        };
        self.list_push_into(dst, &mut d, std::slice::from_ref(&v), to_left);
        self.save_list(dst, &d);
        value(Some(v))
    }

    fn lmpop(
        &mut self,
        key: &Bytes,
        others: &[Bytes],
        left: bool,
        count: u64,
    ) -> Result<OpResult, RpcError> {
        for k in std::iter::once(key).chain(others) {
            let Some(mut m) = self.list_meta(k)? else {
                continue;
            };
            let mut out = vec![k.clone()];
            out.extend(self.list_pop_from(k, &mut m, left, count.max(1)));
            return bulks(out);
        }
        bulks(Vec::new())
    }
}

/// Removes up to `limit` (0: all) elements equal to `element`, from the tail when
/// `from_tail`; returns the kept elements in order.
fn remove_matches(all: &mut Vec<Bytes>, element: &[u8], limit: u64, from_tail: bool) -> Vec<Bytes> {
    let mut removed = 0u64;
    let mut keep_flags = vec![true; all.len()];
    let order: Box<dyn Iterator<Item = usize>> = if from_tail {
        Box::new((0..all.len()).rev())
    } else {
        Box::new(0..all.len())
    };
    for i in order {
        if limit != 0 && removed == limit {
            break;
        }
        if all[i][..] == *element {
            keep_flags[i] = false;
            removed += 1;
        }
    }
    std::mem::take(all)
        .into_iter()
        .zip(keep_flags)
        .filter_map(|(e, keep)| keep.then_some(e))
        .collect()
}
