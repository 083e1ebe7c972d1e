//! Blocking commands (BLPOP, BRPOP, BLMOVE, BRPOPLPUSH, BLMPOP; later BZPOPMIN, BZPOPMAX,
//! BZMPOP), run by the proxy.
//!
//! A blocking command is an [`Attempt`] (the operations of its non-blocking form, run
//! whenever there may be something to take) and a waiter (its keys and deadline). It first
//! runs the attempt; when that finds nothing it waits, registered on each of its keys in a
//! proxy-wide [`Registry`] ([`crate::waiters`], FIFO per key), until
//!
//! - a write through this proxy that can feed it succeeds on one of its keys
//!   ([`crate::waiters::feeds`]):
//!   the router calls [`Registry::after_exec`](crate::waiters::Registry::after_exec), which wakes the *first* waiter of the key
//!   (arrival-order fairness). A woken waiter keeps its place: one that finds nothing
//!   (another client took the element) is still first; one that is served wakes the next
//!   waiter of its keys, since elements may remain. A command that arrives behind waiters of
//!   all its keys does not attempt until its turn (only its type errors are answered at
//!   once, [`Attempt::check`]);
//! - a poll tick: the attempt is re-run every [`POLL_START`], backing off to [`POLL_MAX`],
//!   by the waiters first in the queue of one of their keys (the others wait their turn).
//!   This is what serves a push made through *another* proxy: such a client is served at
//!   most about [`POLL_MAX`] (plus one round trip) after the push;
//! - the deadline (timeout 0: never), answered with the command's timeout reply.
//!
//! Waiters are keyed by database and key: a push to `k` in database 0 does not wake a waiter
//! of `k` in database 1.
//!
//! A client that disconnects while blocked drops its waiter, which removes it from every
//! queue ([`Waiter`]'s `Drop`). Inside `MULTI` (and wherever blocking is not allowed) the
//! command runs its attempt once and answers the timeout reply when it finds nothing, as
//! Redis does.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;

use crate::db::DbRouter;
use crate::resp::Reply;

/// The first poll interval of a blocked command.
pub const POLL_START: Duration = Duration::from_millis(10);
/// The longest poll interval: the bound on how late a push through another proxy is seen.
pub const POLL_MAX: Duration = Duration::from_millis(100);

/// The non-blocking form of a blocking command.
pub trait Attempt: Send + Sync + fmt::Debug {
    /// Runs it once: `Some(reply)` when served (or failed), `None` when there was nothing
    /// to take. `retry` is false for the first attempt (errors such as WRONGTYPE are then
    /// final; later, a key of the wrong type is skipped as Redis skips it while blocked).
    fn run<'a>(&'a self, router: &'a DbRouter<'a>, retry: bool) -> BoxFuture<'a, Option<Reply>>;

    /// What the command answers at once without taking anything, when it arrives behind
    /// other waiters of its keys and does not attempt yet: the error for a key of another
    /// type (reads only). `None`: it waits.
    fn check<'a>(&'a self, router: &'a DbRouter<'a>) -> BoxFuture<'a, Option<Reply>> {
        let _ = router;
        Box::pin(async { None })
    }
}

/// A blocking command: its attempt, keys and timeout.
#[derive(Debug, Clone)]
pub struct Blocked {
    /// The user keys it waits on.
    pub keys: Vec<Bytes>,
    /// How long it waits (`None`: forever).
    pub timeout: Option<Duration>,
    /// The reply when it times out.
    pub timeout_reply: Reply,
    /// The reply when it finds nothing where it may not block (in `EXEC`; `LMOVE`).
    pub empty_reply: Reply,
    /// Whether it may block at all (`LMPOP`: no).
    pub block: bool,
    /// Its non-blocking form.
    pub attempt: Arc<dyn Attempt>,
}

/// Parses a Redis blocking timeout (seconds, a float; 0: forever), with Redis's errors.
pub fn parse_timeout(arg: &[u8]) -> Result<Option<Duration>, Reply> {
    let bad = || Reply::err("timeout is not a float or out of range");
    let text = std::str::from_utf8(arg).map_err(|_| bad())?;
    if text.is_empty() || text.trim() != text {
        return Err(bad());
    }
    let secs: f64 = text.parse().map_err(|_| bad())?;
    if secs.is_nan() {
        return Err(bad());
    }
    // `(long long) ceill(secs * 1000)`: out of range converts to LLONG_MIN on x86, which
    // Redis then calls negative.
    let ms = (secs * 1000.0).ceil();
    if !(0.0..9.2e18).contains(&ms) {
        return Err(Reply::err("timeout is negative"));
    }
    // In range and non-negative: the conversion is exact enough for a timeout.
    let ms = ms as u64;
    Ok((ms > 0).then(|| Duration::from_millis(ms)))
}

/// What a blocking command spent executing, timed as Redis 7.0 times it for `SLOWLOG`,
/// `INFO commandstats` and the latency histograms (`updateStatsOnUnblock` in `blocked.c`):
/// its first attempt, plus the attempt that served it when it blocked in between. The time it
/// waited, and the polls that found nothing meanwhile, are not counted.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Executed {
    first: Option<Duration>,
    served: Option<Duration>,
    timed_out: bool,
}

impl Executed {
    /// The execution time: the first attempt, plus the serving one if it blocked.
    pub fn time(&self) -> Duration {
        self.first.unwrap_or_default() + self.served.unwrap_or_default()
    }

    /// Whether it ended at its timeout: Redis 7.0 does not log such a command in `SLOWLOG`.
    pub fn timed_out(&self) -> bool {
        self.timed_out
    }

    /// Counts an attempt (or the type check of a command not yet first in line) that took
    /// `took`: the first one always, a later one only if it `served` the command.
    fn attempt(&mut self, took: Duration, served: bool) {
        if self.first.is_none() {
            self.first = Some(took);
        } else if served {
            self.served = Some(took);
        }
    }
}

/// Runs a blocking command to its reply (see the module documentation), timing its attempts
/// into `exec` (which holds what was timed so far if the future is dropped: `CLIENT
/// UNBLOCK`). Cancel-safe: dropping the future (the client went away) unregisters it.
pub async fn run(router: &DbRouter<'_>, b: &Blocked, exec: &mut Executed) -> Reply {
    if !b.block {
        return timed(exec, || once(router, b)).await;
    }
    let registry = &router.raw().blocking;
    // Registered before the first attempt, so a push that lands between the attempt and the
    // wait is not missed (its wake-up is kept by the `Notify`).
    let waiter = registry.register(router.db(), &b.keys);
    let deadline = b.timeout.map(|t| tokio::time::Instant::now() + t);
    let mut poll = POLL_START;
    // Behind other waiters on every key: not this command's turn yet (Redis would have
    // served them first), only its type errors are answered now.
    let mut turn = waiter.is_first();
    if !turn {
        if let Some(reply) = timed_attempt(exec, b.attempt.check(router)).await {
            return reply;
        }
    }
    let mut retry = !turn;
    let mut done = Vec::new();
    loop {
        if turn {
            if let Some(reply) = timed_attempt(exec, b.attempt.run(router, retry)).await {
                let waiter_keys = waiter.keys.clone();
                drop(waiter);
                // Elements may remain: the next waiter of each key gets its turn (and the
                // writer that woke this one waits for those too).
                registry.wake_and_wait(waiter_keys.iter()).await;
                drop(done);
                return reply;
            }
            retry = true;
            waiter.rearm();
            done.clear();
        }
        let sleep = tokio::time::sleep(poll);
        let woken = tokio::select! {
            () = waiter.notify.notified() => true,
            () = sleep => false,
            () = until(deadline) => {
                exec.timed_out = true;
                return b.timeout_reply.clone();
            }
        };
        poll = if woken {
            done = waiter.take_done();
            POLL_START
        } else {
            (poll * 2).min(POLL_MAX)
        };
        turn = woken || waiter.is_first();
    }
}

/// The non-blocking form: one attempt, else the empty reply.
pub async fn once(router: &DbRouter<'_>, b: &Blocked) -> Reply {
    match b.attempt.run(router, false).await {
        Some(r) => r,
        None => b.empty_reply.clone(),
    }
}

/// Runs `attempt`, counting its time in `exec`.
async fn timed_attempt(
    exec: &mut Executed,
    attempt: impl std::future::Future<Output = Option<Reply>>,
) -> Option<Reply> {
    let start = tokio::time::Instant::now();
    let reply = attempt.await;
    exec.attempt(start.elapsed(), reply.is_some());
    reply
}

/// Runs the non-blocking form (`once`), counting its time in `exec`.
async fn timed<F: std::future::Future<Output = Reply>>(
    exec: &mut Executed,
    once: impl FnOnce() -> F,
) -> Reply {
    let start = tokio::time::Instant::now();
    let reply = once().await;
    exec.attempt(start.elapsed(), true);
    reply
}

async fn until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_parse_as_redis_does() {
        assert_eq!(parse_timeout(b"0"), Ok(None));
        assert_eq!(parse_timeout(b"0.1"), Ok(Some(Duration::from_millis(100))));
        assert_eq!(parse_timeout(b"0.0001"), Ok(Some(Duration::from_millis(1))));
        assert_eq!(parse_timeout(b"-0.0001"), Ok(None));
        assert_eq!(parse_timeout(b"-1"), Err(Reply::err("timeout is negative")));
        for bad in [&b"abc"[..], b"", b" 1", b"nan"] {
            assert_eq!(
                parse_timeout(bad),
                Err(Reply::err("timeout is not a float or out of range")),
                "{bad:?}"
            );
        }
    }
}
