//! A shard's write-backpressure state (`server::throttle` waits and refuses; `server::policy`
//! makes room and wakes the waiters) and its figures. A leaf of the shard state: imports no
//! other `server` module.

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::rc::Rc;
use std::task::{Poll, Waker};

use hdrhistogram::Histogram;

/// Writes waiting for memory and the wakers that make them look again.
#[derive(Debug, Default)]
pub struct ThrottleState {
    /// Writes waiting now.
    waiting: Cell<usize>,
    /// Bumped each time the policy may have made room.
    generation: Cell<u64>,
    /// Wakers of waiting writes; at most one per waiting write is kept (a waiter that finds
    /// the list full relies on its timer).
    wakers: RefCell<Vec<Waker>>,
    /// Highest accounted memory seen after an apply, bytes.
    peak_accounted: Cell<u64>,
    /// Bytes of proposals that may add data, proposed and not yet applied (or dropped): the
    /// memory they will take is counted before it is accounted (see [`Charge`]).
    unapplied: Rc<Cell<u64>>,
}

/// The bytes of one proposal counted in [`ThrottleState::unapplied_bytes`] for as long as it
/// lives: it is kept with the proposal's waiter (`peer::Pending`) and dropped when the entry
/// applies or the proposal is given up, however that happens.
#[derive(Debug)]
pub struct Charge {
    unapplied: Rc<Cell<u64>>,
    bytes: u64,
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.unapplied
            .set(self.unapplied.get().saturating_sub(self.bytes));
    }
}

/// Counts one waiting write for as long as it lives (also when its future is dropped).
#[derive(Debug)]
pub struct Waiting<'a>(&'a ThrottleState);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.waiting.set(self.0.waiting.get().saturating_sub(1));
    }
}

impl ThrottleState {
    /// Writes waiting now.
    pub fn waiting(&self) -> usize {
        self.waiting.get()
    }

    /// Starts counting a waiting write.
    pub fn start_waiting(&self) -> Waiting<'_> {
        self.waiting.set(self.waiting.get() + 1);
        Waiting(self)
    }

    /// The current generation (pass it to [`ThrottleState::changed`]).
    pub fn generation(&self) -> u64 {
        self.generation.get()
    }

    /// Wakes every waiting write (the policy may have made room).
    pub fn notify(&self) {
        self.generation.set(self.generation.get().wrapping_add(1));
        for w in self.wakers.borrow_mut().drain(..) {
            w.wake();
        }
    }

    /// Completes once [`ThrottleState::notify`] ran after `generation` was read.
    pub async fn changed(&self, generation: u64) {
        poll_fn(|cx| {
            if self.generation.get() != generation {
                return Poll::Ready(());
            }
            let mut wakers = self.wakers.borrow_mut();
            if wakers.len() < self.waiting.get().max(1) {
                wakers.push(cx.waker().clone());
            }
            Poll::Pending
        })
        .await;
    }

    /// Records the accounted memory after an apply (for the peak gauge).
    pub fn note_accounted(&self, bytes: u64) {
        if bytes > self.peak_accounted.get() {
            self.peak_accounted.set(bytes);
        }
    }

    /// Highest accounted memory seen after an apply, bytes.
    pub fn peak_accounted(&self) -> u64 {
        self.peak_accounted.get()
    }

    /// Counts `bytes` of a new proposal until the returned charge is dropped.
    pub fn charge(&self, bytes: u64) -> Charge {
        self.unapplied.set(self.unapplied.get() + bytes);
        Charge {
            unapplied: Rc::clone(&self.unapplied),
            bytes,
        }
    }

    /// Bytes of proposals that may add data and have not applied yet.
    pub fn unapplied_bytes(&self) -> u64 {
        self.unapplied.get()
    }
}

/// Figures of write backpressure (`ds_write_throttle*` on `/metrics`).
#[derive(Debug, Clone)]
pub struct ThrottleMetrics {
    /// Writes that had to wait for memory (`ds_write_throttled_total`).
    pub throttled_total: u64,
    /// Writes refused because memory stayed above the line (`ds_write_oom_refused_total`).
    pub oom_refused_total: u64,
    /// Demotion steps taken larger because writes waited (`ds_policy_urgent_steps_total`).
    pub urgent_steps_total: u64,
    /// Time each throttled write waited, µs (`ds_write_throttle_seconds`).
    pub wait_us: Histogram<u64>,
    /// Writes waiting now (gauge, `ds_write_throttle_waiting`).
    pub waiting: u64,
    /// Shards above their throttle line now (gauge, `ds_write_throttle_shards`).
    pub shards_over: u64,
    /// Highest accounted memory seen after an apply, bytes (gauge; summed over shards,
    /// `ds_memory_accounted_peak_bytes`).
    pub peak_accounted_bytes: u64,
}

impl Default for ThrottleMetrics {
    fn default() -> Self {
        Self {
            throttled_total: 0,
            oom_refused_total: 0,
            urgent_steps_total: 0,
            wait_us: Histogram::new_with_bounds(1, 60_000_000, 2)
                .expect("static histogram bounds are valid"),
            waiting: 0,
            shards_over: 0,
            peak_accounted_bytes: 0,
        }
    }
}

impl ThrottleMetrics {
    /// Adds another shard's figures.
    pub fn merge(&mut self, o: &ThrottleMetrics) {
        self.throttled_total += o.throttled_total;
        self.oom_refused_total += o.oom_refused_total;
        self.urgent_steps_total += o.urgent_steps_total;
        let _ = self.wait_us.add(&o.wait_us);
        self.waiting += o.waiting;
        self.shards_over += o.shards_over;
        self.peak_accounted_bytes += o.peak_accounted_bytes;
    }

    /// Appends the Prometheus text of the counters and gauges (the wait summary is the
    /// caller's, with the other summaries).
    pub fn render(&self, s: &mut String) {
        for (name, v) in [
            ("ds_write_throttled_total", self.throttled_total),
            ("ds_write_oom_refused_total", self.oom_refused_total),
            ("ds_policy_urgent_steps_total", self.urgent_steps_total),
        ] {
            s.push_str(&format!("# TYPE {name} counter\n{name} {v}\n"));
        }
        for (name, v) in [
            ("ds_write_throttle_waiting", self.waiting),
            ("ds_write_throttle_shards", self.shards_over),
            ("ds_memory_accounted_peak_bytes", self.peak_accounted_bytes),
        ] {
            s.push_str(&format!("# TYPE {name} gauge\n{name} {v}\n"));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::{Context, Wake};

    use super::*;

    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[test]
    fn a_notify_wakes_a_waiter_and_completes_its_wait() {
        let t = ThrottleState::default();
        let _w = t.start_waiting();
        let g = t.generation();
        let mut fut = Box::pin(t.changed(g));
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);
        assert!(fut.as_mut().poll(&mut cx).is_pending());
        assert!(fut.as_mut().poll(&mut cx).is_pending());
        // One waker kept per waiting write, however often it is polled.
        assert_eq!(t.wakers.borrow().len(), 1);
        t.notify();
        assert_eq!(count.0.load(Ordering::Relaxed), 1);
        assert!(fut.as_mut().poll(&mut cx).is_ready());
    }

    #[test]
    fn the_waiting_count_follows_the_guards() {
        let t = ThrottleState::default();
        let a = t.start_waiting();
        let b = t.start_waiting();
        assert_eq!(t.waiting(), 2);
        drop(a);
        assert_eq!(t.waiting(), 1);
        drop(b);
        assert_eq!(t.waiting(), 0);
    }

    #[test]
    fn a_charge_counts_until_it_is_dropped() {
        let t = ThrottleState::default();
        let a = t.charge(100);
        let b = t.charge(20);
        assert_eq!(t.unapplied_bytes(), 120);
        drop(a);
        assert_eq!(t.unapplied_bytes(), 20);
        drop(b);
        assert_eq!(t.unapplied_bytes(), 0);
    }

    #[test]
    fn the_peak_only_rises() {
        let t = ThrottleState::default();
        t.note_accounted(10);
        t.note_accounted(5);
        assert_eq!(t.peak_accounted(), 10);
    }
}
