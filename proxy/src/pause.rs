//! `CLIENT PAUSE` / `CLIENT UNPAUSE`: the proxy-wide pause state. While a pause is on, a
//! connection whose next command it covers (every command for `ALL`, commands that may
//! write for `WRITE`: [`crate::cmd::pause`] decides) waits for the pause to end or change
//! before running it; its earlier replies go out first. A second pause extends the first
//! (the later end, the stricter mode), as in Redis. Waiting connections count as
//! `blocked_clients`.
//!
//! The state is a `watch` channel: a change (pause, unpause) wakes every waiter, which looks
//! again; the end of a pause is a deadline each waiter sleeps to.

use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::watch;
use tokio::time::Instant;

/// What a pause covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Mode {
    /// Commands that may write (or propagate: `PUBLISH`, `PFCOUNT`, scripts not flagged
    /// `no-writes`, `EXEC` of such).
    Write,
    /// Every command.
    All,
}

/// One pause: its mode and its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Paused {
    mode: Mode,
    until: Instant,
}

/// The proxy's pause state.
#[derive(Debug)]
pub struct Pause {
    state: watch::Sender<Option<Paused>>,
    /// Connections waiting now.
    waiting: AtomicUsize,
}

impl Default for Pause {
    fn default() -> Self {
        Self {
            state: watch::Sender::new(None),
            waiting: AtomicUsize::new(0),
        }
    }
}

impl Pause {
    /// Pauses `mode` commands until `until`; merged with a pause already on (later end,
    /// stricter mode).
    pub fn pause(&self, mode: Mode, until: Instant) {
        self.state.send_modify(|s| {
            *s = Some(match *s {
                Some(p) if p.until > Instant::now() => Paused {
                    mode: p.mode.max(mode),
                    until: p.until.max(until),
                },
                _ => Paused { mode, until },
            });
        });
    }

    /// Ends the pause (waiting connections run their command).
    pub fn unpause(&self) {
        self.state.send_replace(None);
    }

    /// The mode of the pause on now, if any.
    pub fn current(&self) -> Option<Mode> {
        self.state
            .borrow()
            .filter(|p| p.until > Instant::now())
            .map(|p| p.mode)
    }

    /// Connections waiting for a pause to end now (`blocked_clients`).
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }

    /// Waits while a pause is on whose mode `covers` says holds this command.
    pub async fn wait_while(&self, covers: impl Fn(Mode) -> bool) {
        let mut rx = self.state.subscribe();
        let _count = Waiting::new(&self.waiting);
        loop {
            let Some(p) = *rx.borrow_and_update() else {
                return;
            };
            if p.until <= Instant::now() || !covers(p.mode) {
                return;
            }
            tokio::select! {
                changed = rx.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
                () = tokio::time::sleep_until(p.until) => {}
            }
        }
    }
}

/// Counts a waiting connection for as long as it lives.
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn new(n: &'a AtomicUsize) -> Self {
        n.fetch_add(1, Ordering::Relaxed);
        Self(n)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[tokio::test]
    async fn a_write_pause_holds_writes_until_unpause_and_never_reads() {
        let p = Arc::new(Pause::default());
        p.pause(Mode::Write, Instant::now() + Duration::from_secs(60));
        // A read is not held.
        tokio::time::timeout(ms(1000), p.wait_while(|m| m == Mode::All))
            .await
            .unwrap();
        let held = {
            let p = p.clone();
            tokio::spawn(async move { p.wait_while(|_| true).await })
        };
        tokio::time::sleep(ms(100)).await;
        assert!(!held.is_finished());
        assert_eq!(p.waiting(), 1);
        p.unpause();
        tokio::time::timeout(ms(1000), held).await.unwrap().unwrap();
        assert_eq!(p.waiting(), 0);
        assert_eq!(p.current(), None);
    }

    #[tokio::test]
    async fn a_pause_ends_by_itself_at_its_deadline() {
        let p = Pause::default();
        let start = Instant::now();
        p.pause(Mode::All, start + ms(200));
        p.wait_while(|_| true).await;
        assert!(start.elapsed() >= ms(200));
        assert_eq!(p.current(), None);
    }

    #[tokio::test]
    async fn a_second_pause_keeps_the_later_end_and_the_stricter_mode() {
        let p = Pause::default();
        let now = Instant::now();
        p.pause(Mode::All, now + ms(200));
        p.pause(Mode::Write, now + ms(400));
        assert_eq!(p.current(), Some(Mode::All));
        tokio::time::sleep_until(now + ms(300)).await;
        assert_eq!(p.current(), Some(Mode::All));
        tokio::time::sleep_until(now + ms(400)).await;
        assert_eq!(p.current(), None);
        // After the end, a new pause starts afresh.
        p.pause(Mode::Write, Instant::now() + Duration::from_secs(10));
        assert_eq!(p.current(), Some(Mode::Write));
    }

    #[tokio::test]
    async fn a_waiter_held_by_all_runs_when_the_pause_becomes_write_only() {
        let p = Arc::new(Pause::default());
        p.pause(Mode::All, Instant::now() + Duration::from_secs(60));
        let read = {
            let p = p.clone();
            tokio::spawn(async move { p.wait_while(|m| m == Mode::All).await })
        };
        tokio::time::sleep(ms(100)).await;
        assert!(!read.is_finished());
        p.unpause();
        p.pause(Mode::Write, Instant::now() + Duration::from_secs(60));
        tokio::time::timeout(ms(1000), read).await.unwrap().unwrap();
    }
}
