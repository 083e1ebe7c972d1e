//! The proxy-wide waiters of blocking commands ([`crate::blocking`]), FIFO per key and
//! database, and what wakes them: the writes that go through this proxy's router
//! ([`Registry::after_exec`]). Below the router, which calls it, and the blocking commands,
//! which register here.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use net::message::kv::{KvOp, KvResponse, ListOp, OpResult, ZSetOp};
use tokio::sync::{Notify, oneshot};

use crate::keyspace::Db;

/// How long a write waits at most for the blocked clients it woke to be served.
pub const SERVE_WAIT: Duration = Duration::from_millis(500);

/// One registered waiter of a key.
#[derive(Debug)]
struct Slot {
    id: u64,
    notify: Arc<Notify>,
    /// Woken and not yet back from its attempt: the next wake-up goes to the next waiter.
    woken: bool,
    /// Dropped by the waiter when the attempt it was woken for is done (the writer that woke
    /// it waits for that: [`Registry::after_exec`]).
    done: Option<oneshot::Sender<()>>,
}

#[derive(Debug, Default)]
struct Inner {
    next_id: u64,
    by_key: HashMap<(Db, Bytes), VecDeque<Slot>>,
}

/// The proxy-wide waiters of blocking commands, FIFO per user key.
#[derive(Debug, Default)]
pub struct Registry {
    inner: Mutex<Inner>,
    /// Registered waiters (the write path skips the registry when 0).
    waiters: AtomicUsize,
    /// Where the keys a write fed go beyond this proxy (the mesh), so that other proxies
    /// wake their waiters.
    fanout: std::sync::OnceLock<Arc<dyn KeysReadyFanout>>,
}

/// Beyond this proxy: told of the keys a write fed, without waiting (the proxy mesh
/// implements it; a trait so that this module stays below the mesh, which routes).
pub trait KeysReadyFanout: Send + Sync + std::fmt::Debug {
    /// Whether anyone is listening (the write path skips collecting keys when not).
    fn has_peers(&self) -> bool;
    /// Tells the listeners that `keys` may have become non-empty.
    fn keys_ready(&self, keys: &[(Db, Bytes)]);
}

impl Registry {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sets where [`Self::after_exec`] sends the keys it fed (once; later calls are ignored).
    pub fn set_fanout(&self, fanout: Arc<dyn KeysReadyFanout>) {
        let _ = self.fanout.set(fanout);
    }

    /// Clients blocked now (`INFO` `blocked_clients`).
    pub fn blocked_clients(&self) -> usize {
        self.waiters.load(Ordering::Relaxed)
    }

    /// The waiters queued on `key` of database 0 (tests).
    pub fn queued(&self, key: &[u8]) -> usize {
        self.queued_in(Db::ZERO, key)
    }

    /// The waiters queued on `key` of database `db` (tests).
    pub fn queued_in(&self, db: Db, key: &[u8]) -> usize {
        let k = (db, Bytes::copy_from_slice(key));
        self.lock().by_key.get(&k).map_or(0, VecDeque::len)
    }

    /// Registers a waiter at the back of the queue of every key (of database `db`).
    pub(crate) fn register(&self, db: Db, keys: &[Bytes]) -> Waiter<'_> {
        let keys: Vec<(Db, Bytes)> = keys.iter().map(|k| (db, k.clone())).collect();
        let notify = Arc::new(Notify::new());
        let mut inner = self.lock();
        inner.next_id += 1;
        let id = inner.next_id;
        for k in &keys {
            let q = inner.by_key.entry(k.clone()).or_default();
            if !q.iter().any(|s| s.id == id) {
                q.push_back(Slot {
                    id,
                    notify: notify.clone(),
                    woken: false,
                    done: None,
                });
            }
        }
        drop(inner);
        self.waiters.fetch_add(1, Ordering::Relaxed);
        Waiter {
            registry: self,
            id,
            keys,
            notify,
        }
    }

    /// Wakes the first waiter of `key` not already woken; the receiver completes when its
    /// attempt is done. It keeps its place in the queue (first, if it was): one that finds
    /// nothing tries again first next time.
    pub fn wake(&self, key: &(Db, Bytes)) -> Option<oneshot::Receiver<()>> {
        let inner = &mut *self.lock();
        let s = inner.by_key.get_mut(key)?.iter_mut().find(|s| !s.woken)?;
        let (tx, rx) = oneshot::channel();
        s.woken = true;
        s.done = Some(tx);
        s.notify.notify_one();
        Some(rx)
    }

    /// Wakes the first waiter of each key and waits (at most [`SERVE_WAIT`]) until their
    /// attempts are done.
    pub(crate) async fn wake_and_wait(&self, keys: impl Iterator<Item = &(Db, Bytes)>) {
        let done: Vec<_> = keys.filter_map(|k| self.wake(k)).collect();
        if !done.is_empty() {
            let all = futures_util::future::join_all(done);
            let _ = tokio::time::timeout(SERVE_WAIT, all).await;
        }
    }

    /// Called by the router after it ran a batch, with each operation that succeeded and its
    /// result: wakes the waiters of the keys a write may have fed, and returns once they have
    /// tried (so that, as in Redis, when the write's reply goes out the clients it unblocked
    /// have been served — through this proxy; chains of moves included). The same keys go
    /// to every peer of the mesh, without waiting, to wake the waiters of other proxies.
    pub async fn after_exec<'a>(&self, done: impl Iterator<Item = (&'a KvOp, &'a OpResult)>) {
        if !self.anyone_waits() {
            return;
        }
        self.wake_fed(fed_by(done)).await;
    }

    /// Whether a write could wake anyone: a waiter here, or peers of the mesh.
    pub fn anyone_waits(&self) -> bool {
        self.waiters.load(Ordering::Relaxed) != 0
            || self.fanout.get().is_some_and(|f| f.has_peers())
    }

    /// Wakes the waiters of `keys` (what writes fed, [`fed_by`]) here and on every peer of the
    /// mesh, and returns once this proxy's have tried.
    pub async fn wake_fed(&self, keys: Vec<(Db, Bytes)>) {
        let fanout = self.fanout.get().filter(|f| f.has_peers());
        if let Some(fanout) = fanout
            && !keys.is_empty()
        {
            fanout.keys_ready(&keys);
        }
        self.wake_and_wait(keys.iter()).await;
    }
}

/// The keys (with their database) that the successful operations of `done` may have fed.
pub fn fed_by<'a>(done: impl Iterator<Item = (&'a KvOp, &'a OpResult)>) -> Vec<(Db, Bytes)> {
    let mut keys = Vec::new();
    for (op, r) in done {
        let (db, op) = op.in_db(Db::ZERO);
        match (op, r) {
            (KvOp::Multi { ops, .. }, OpResult::Multi { results }) => {
                for (op, r) in ops.iter().zip(results) {
                    if let KvResponse::Ok { result } = r {
                        fed_keys(db, op, result, &mut keys);
                    }
                }
            }
            _ => fed_keys(db, op, r, &mut keys),
        }
    }
    keys
}

/// The keys (with their database; `db`: the database around `op`) a successful `op` may
/// have fed.
fn fed_keys(db: Db, op: &KvOp, result: &OpResult, out: &mut Vec<(Db, Bytes)>) {
    let (_, inner) = op.in_db(db);
    if feeds(inner, result) {
        out.extend(op.keys_in_db(db).into_iter().map(|(d, k)| (d, k.clone())));
    }
}

/// Whether a successful `op` with `result` may have given a blocked command something to
/// take: a push that added elements, a move that moved one. (Sorted sets add their adds.)
pub fn feeds(op: &KvOp, result: &OpResult) -> bool {
    match (op, result) {
        (
            KvOp::List {
                op: ListOp::Push { .. },
            },
            OpResult::Int { value },
        ) => *value > 0,
        (
            KvOp::List {
                op: ListOp::Move { .. },
            },
            OpResult::Value { value },
        ) => value.is_some(),
        // Writes that may leave members in a sorted set (BZPOPMIN, BZMPOP).
        (
            KvOp::ZSet {
                op:
                    ZSetOp::Add { .. }
                    | ZSetOp::Combine { .. }
                    | ZSetOp::RangeStore { .. }
                    | ZSetOp::Replace { .. },
            },
            _,
        ) => true,
        _ => false,
    }
}

/// A registered waiter; dropping it removes it from every queue.
#[derive(Debug)]
pub(crate) struct Waiter<'r> {
    registry: &'r Registry,
    id: u64,
    pub(crate) keys: Vec<(Db, Bytes)>,
    pub(crate) notify: Arc<Notify>,
}

impl Waiter<'_> {
    /// Whether the waiter is first in the queue of one of its keys: only such a waiter
    /// attempts on its own (at arrival, on a poll), so that the waiters of this proxy are
    /// served in arrival order.
    pub(crate) fn is_first(&self) -> bool {
        let inner = self.registry.lock();
        self.keys.iter().any(|k| {
            inner
                .by_key
                .get(k)
                .and_then(VecDeque::front)
                .is_some_and(|s| s.id == self.id)
        })
    }

    /// Takes the done signals of the wake-ups it got (dropped when the attempt is done).
    pub(crate) fn take_done(&self) -> Vec<oneshot::Sender<()>> {
        let mut inner = self.registry.lock();
        let mut out = Vec::new();
        for k in &self.keys {
            if let Some(q) = inner.by_key.get_mut(k) {
                let mine = q.iter_mut().filter(|s| s.id == self.id);
                out.extend(mine.filter_map(|s| s.done.take()));
            }
        }
        out
    }

    /// Clears the waiter's woken marks (its attempt is done; the next wake-up may be its).
    pub(crate) fn rearm(&self) {
        let mut inner = self.registry.lock();
        for k in &self.keys {
            if let Some(q) = inner.by_key.get_mut(k) {
                q.iter_mut()
                    .filter(|s| s.id == self.id)
                    .for_each(|s| s.woken = false);
            }
        }
    }
}

impl Drop for Waiter<'_> {
    fn drop(&mut self) {
        let mut inner = self.registry.lock();
        for k in &self.keys {
            if let Some(q) = inner.by_key.get_mut(k) {
                q.retain(|s| s.id != self.id);
                if q.is_empty() {
                    inner.by_key.remove(k);
                }
            }
        }
        drop(inner);
        self.registry.waiters.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waiters_are_woken_in_arrival_order_and_dropping_unregisters() {
        let r = Registry::default();
        let k = Bytes::from_static(b"k");
        let a = r.register(Db::ZERO, std::slice::from_ref(&k));
        let b = r.register(Db::ZERO, std::slice::from_ref(&k));
        let k0 = (Db::ZERO, k.clone());
        assert_eq!(r.queued(&k), 2);
        assert!(a.is_first() && !b.is_first());
        r.wake(&k0);
        // `a` was first: its permit is stored, `b`'s is not; `a` keeps its place.
        assert!(a.notify.notified().now_or_never_ready());
        assert!(!b.notify.notified().now_or_never_ready());
        assert!(a.is_first());
        // A second wake-up while `a` is busy goes to `b`.
        r.wake(&k0);
        assert!(b.notify.notified().now_or_never_ready());
        a.rearm();
        r.wake(&k0);
        assert!(a.notify.notified().now_or_never_ready());
        drop(a);
        assert!(b.is_first());
        drop(b);
        assert_eq!(r.queued(&k), 0);
        assert_eq!(r.blocked_clients(), 0);
    }

    #[test]
    fn a_waiter_is_woken_only_by_its_own_database() {
        let r = Registry::default();
        let k = Bytes::from_static(b"k");
        let one = Db::new(1).expect("a database");
        let w = r.register(one, std::slice::from_ref(&k));
        assert_eq!((r.queued(&k), r.queued_in(one, &k)), (0, 1));
        assert!(r.wake(&(Db::ZERO, k.clone())).is_none());
        assert!(!w.notify.notified().now_or_never_ready());
        assert!(r.wake(&(one, k.clone())).is_some());
        assert!(w.notify.notified().now_or_never_ready());
        // A push to `k` of database 1, as the router reports it, feeds the waiter's key.
        let push = KvOp::List {
            op: ListOp::Push {
                key: k.clone(),
                elements: vec![Bytes::from_static(b"v")],
                left: true,
                only_existing: false,
            },
        };
        let mut fed = Vec::new();
        fed_keys(
            Db::ZERO,
            &push.clone().into_db(one),
            &OpResult::Int { value: 1 },
            &mut fed,
        );
        assert_eq!(fed, vec![(one, k.clone())]);
        fed.clear();
        fed_keys(Db::ZERO, &push, &OpResult::Int { value: 1 }, &mut fed);
        assert_eq!(fed, vec![(Db::ZERO, k)]);
    }

    trait NowOrNever {
        fn now_or_never_ready(self) -> bool;
    }
    impl<F: std::future::Future<Output = ()>> NowOrNever for F {
        fn now_or_never_ready(self) -> bool {
            futures_util::FutureExt::now_or_never(self).is_some()
        }
    }
}
