//! `CLIENT UNBLOCK`: the clients blocked in a blocking command right now, by client id, each
//! with the channel that ends its wait (as a timeout, or with the `UNBLOCKED` error).

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::sync::oneshot;

/// How an unblocked client's command ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// As if its timeout had passed.
    Timeout,
    /// With `-UNBLOCKED client unblocked via CLIENT UNBLOCK`.
    Error,
}

/// The blocked clients of this proxy.
#[derive(Debug, Default)]
pub struct Blocked {
    by_id: Mutex<HashMap<u64, oneshot::Sender<Mode>>>,
}

/// A client's registration; dropping it (its command ended) unregisters it.
#[derive(Debug)]
pub struct Guard<'a> {
    table: &'a Blocked,
    id: u64,
    /// Completes when `CLIENT UNBLOCK` names this client.
    pub unblocked: oneshot::Receiver<Mode>,
}

impl Blocked {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, oneshot::Sender<Mode>>> {
        self.by_id.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers client `id` as blocked until the guard is dropped.
    pub fn register(&self, id: u64) -> Guard<'_> {
        let (tx, rx) = oneshot::channel();
        self.lock().insert(id, tx);
        Guard {
            table: self,
            id,
            unblocked: rx,
        }
    }

    /// Ends client `id`'s wait; false when it is not blocked.
    pub fn unblock(&self, id: u64, mode: Mode) -> bool {
        match self.lock().remove(&id) {
            Some(tx) => tx.send(mode).is_ok(),
            None => false,
        }
    }
}

impl Drop for Guard<'_> {
    fn drop(&mut self) {
        self.table.lock().remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_registered_client_is_unblocked_and_only_once() {
        let t = Blocked::default();
        assert!(!t.unblock(7, Mode::Timeout));
        let mut g = t.register(7);
        assert!(t.unblock(7, Mode::Error));
        assert_eq!(g.unblocked.try_recv().ok(), Some(Mode::Error));
        assert!(!t.unblock(7, Mode::Error));
        drop(g);
        let g = t.register(8);
        drop(g);
        assert!(!t.unblock(8, Mode::Timeout));
    }
}
