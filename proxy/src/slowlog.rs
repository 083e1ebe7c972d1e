//! `SLOWLOG`: the commands of this proxy that took at least `slowlog-log-slower-than`
//! microseconds, newest first, at most `slowlog-max-len` of them — Redis's entry format
//! (id, unix time, microseconds, arguments, client address, client name), argument trimming
//! (32 arguments, 128 bytes each) and redaction of passwords.
//!
//! The time is the command's own execution, as Redis times it ([`crate::timing`]): its
//! dispatch and the round trip of the shard request that carried it, not the time it waited
//! behind the commands before it in its connection's batch; for a blocking command, its
//! attempts and not the time it was blocked (one that timed out is not logged, as in Redis
//! 7.0). `EXEC` is not logged (as in Redis), nor are the commands it runs (Redis logs those
//! one by one) or commands queued in `MULTI`. One mutex, taken only for a slow command or a
//! `SLOWLOG` command; the threshold is one atomic load per command.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};

use bytes::Bytes;

use crate::resp::Reply;

/// `slowlog-log-slower-than` when not set (Redis's default, µs).
pub const DEFAULT_SLOWER_THAN_US: i64 = 10_000;
/// `slowlog-max-len` when not set (Redis's default).
pub const DEFAULT_MAX_LEN: usize = 128;
/// Arguments kept per entry; the last kept one says how many more there were.
const MAX_ARGS: usize = 32;
/// Bytes kept per argument.
const MAX_ARG_BYTES: usize = 128;

/// One logged command.
#[derive(Debug, Clone)]
struct Entry {
    id: u64,
    unix_secs: u64,
    usec: u64,
    /// The client's address, its name, then the arguments as logged (redacted, trimmed):
    /// each a `u32` little-endian length and its bytes. One allocation per entry, taken over
    /// from the entry it evicts once the log is full; the arguments are copied, so an entry
    /// never keeps a connection's input buffer alive.
    data: Vec<u8>,
}

impl Entry {
    /// The fields of `data`, in order.
    fn fields(&self) -> impl Iterator<Item = &[u8]> {
        let mut rest = self.data.as_slice();
        std::iter::from_fn(move || {
            let (len, tail) = rest.split_first_chunk::<4>()?;
            let len = usize::try_from(u32::from_le_bytes(*len)).ok()?;
            let field = tail.get(..len)?;
            rest = &tail[len..];
            Some(field)
        })
    }
}

/// Appends `field` to an entry's `data`.
fn put(data: &mut Vec<u8>, field: &[u8]) {
    let len = u32::try_from(field.len()).unwrap_or(u32::MAX);
    data.extend_from_slice(&len.to_le_bytes());
    data.extend_from_slice(&field[..len as usize]);
}

#[derive(Debug, Default)]
struct Log {
    next_id: u64,
    entries: VecDeque<Entry>,
}

/// The proxy's slow log and its two settings.
#[derive(Debug)]
pub struct SlowLog {
    slower_than_us: AtomicI64,
    max_len: AtomicUsize,
    /// Entries logged since start (`proxy_slowlog_entries_total`).
    logged: AtomicU64,
    log: Mutex<Log>,
}

impl Default for SlowLog {
    fn default() -> Self {
        Self {
            slower_than_us: AtomicI64::new(DEFAULT_SLOWER_THAN_US),
            max_len: AtomicUsize::new(DEFAULT_MAX_LEN),
            logged: AtomicU64::new(0),
            log: Mutex::new(Log::default()),
        }
    }
}

/// Who ran a command, for its entry.
#[derive(Debug, Clone, Copy)]
pub struct Client<'a> {
    /// `ip:port`.
    pub peer: &'a str,
    /// `CLIENT SETNAME`, empty if none.
    pub name: &'a [u8],
}

impl SlowLog {
    fn lock(&self) -> std::sync::MutexGuard<'_, Log> {
        self.log
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// `slowlog-log-slower-than` (negative: off).
    pub fn slower_than_us(&self) -> i64 {
        self.slower_than_us.load(Ordering::Relaxed)
    }

    /// Sets `slowlog-log-slower-than`.
    pub fn set_slower_than_us(&self, us: i64) {
        self.slower_than_us.store(us, Ordering::Relaxed);
    }

    /// `slowlog-max-len`.
    pub fn max_len(&self) -> usize {
        self.max_len.load(Ordering::Relaxed)
    }

    /// Sets `slowlog-max-len`, dropping the oldest entries beyond it.
    pub fn set_max_len(&self, n: usize) {
        self.max_len.store(n, Ordering::Relaxed);
        let mut log = self.lock();
        log.entries.truncate(n);
    }

    /// Whether commands are logged at all (a connection keeps each command's arguments
    /// until its reply only then).
    pub fn enabled(&self) -> bool {
        self.slower_than_us() >= 0
    }

    /// Logs command `args` of `client` if it took `usec` or more.
    pub fn record(&self, usec: u64, args: &[Bytes], client: Client<'_>) {
        let threshold = self.slower_than_us();
        if threshold < 0 || i64::try_from(usec).unwrap_or(i64::MAX) < threshold {
            return;
        }
        self.logged.fetch_add(1, Ordering::Relaxed);
        let unix_secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        // Only the commands that carry a password are copied before they are logged.
        let owned;
        let args = if carries_password(args) {
            owned = redacted(args);
            owned.as_slice()
        } else {
            args
        };
        let max = self.max_len();
        let mut log = self.lock();
        let id = log.next_id;
        log.next_id += 1;
        if max == 0 {
            return;
        }
        let mut data = if log.entries.len() >= max {
            log.entries.pop_back().map(|e| e.data).unwrap_or_default()
        } else {
            Vec::new()
        };
        data.clear();
        put(&mut data, client.peer.as_bytes());
        put(&mut data, client.name);
        put_trimmed(&mut data, args);
        log.entries.push_front(Entry {
            id,
            unix_secs,
            usec,
            data,
        });
        log.entries.truncate(max);
    }

    /// Entries logged since the proxy started (`SLOWLOG RESET` does not clear it).
    pub fn logged_total(&self) -> u64 {
        self.logged.load(Ordering::Relaxed)
    }

    /// `SLOWLOG LEN`.
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    /// Whether nothing is logged.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `SLOWLOG RESET` (ids keep growing, as in Redis).
    pub fn reset(&self) {
        self.lock().entries.clear();
    }

    /// `SLOWLOG GET [count]`: the newest `count` entries (`None`: all).
    pub fn get(&self, count: Option<usize>) -> Reply {
        let log = self.lock();
        let n = count.unwrap_or(usize::MAX).min(log.entries.len());
        let int = |v: u64| Reply::Int(i64::try_from(v).unwrap_or(i64::MAX));
        Reply::Array(
            log.entries
                .iter()
                .take(n)
                .map(|e| {
                    let mut fields = e.fields();
                    let peer = Reply::bulk(fields.next().unwrap_or_default());
                    let name = Reply::bulk(fields.next().unwrap_or_default());
                    Reply::Array(vec![
                        int(e.id),
                        int(e.unix_secs),
                        int(e.usec),
                        Reply::Array(fields.map(Reply::bulk).collect()),
                        peer,
                        name,
                    ])
                })
                .collect(),
        )
    }
}

const REDACTED: Bytes = Bytes::from_static(b"(redacted)");

/// Whether `args` is a command [`redacted`] may change (the others are logged as they are).
fn carries_password(args: &[Bytes]) -> bool {
    args.first().is_some_and(|c| {
        ["auth", "hello", "migrate", "config"]
            .iter()
            .any(|n| c.eq_ignore_ascii_case(n.as_bytes()))
    })
}

/// The arguments with passwords replaced by `(redacted)`, as Redis redacts them: `AUTH`'s
/// arguments, `HELLO … AUTH user pass`, `MIGRATE … AUTH pass` / `AUTH2 user pass`, and the
/// value of `CONFIG SET requirepass|masterauth`.
fn redacted(args: &[Bytes]) -> Vec<Bytes> {
    let mut out = args.to_vec();
    let is = |b: &Bytes, s: &str| b.eq_ignore_ascii_case(s.as_bytes());
    let Some(cmd) = args.first() else {
        return out;
    };
    let mut hide = |from: usize, n: usize| {
        for a in out.iter_mut().skip(from).take(n) {
            *a = REDACTED;
        }
    };
    if is(cmd, "auth") {
        hide(1, usize::MAX);
    } else if is(cmd, "hello") || is(cmd, "migrate") {
        let mut i = 1;
        while i < args.len() {
            if is(&args[i], "auth") && is(cmd, "hello") {
                hide(i + 1, 2);
                i += 3;
            } else if is(&args[i], "auth") {
                hide(i + 1, 1);
                i += 2;
            } else if is(&args[i], "auth2") {
                hide(i + 1, 2);
                i += 3;
            } else {
                i += 1;
            }
        }
    } else if is(cmd, "config") && args.get(1).is_some_and(|s| is(s, "set")) {
        let mut i = 2;
        while i + 1 < args.len() {
            if is(&args[i], "requirepass") || is(&args[i], "masterauth") {
                hide(i + 1, 1);
            }
            i += 2;
        }
    }
    out
}

/// Appends `args` to an entry's data with Redis's trimming: at most [`MAX_ARGS`]
/// arguments, the last kept one replaced by `... (N more arguments)`; each argument cut to
/// [`MAX_ARG_BYTES`] bytes followed by `... (N more bytes)`.
fn put_trimmed(data: &mut Vec<u8>, args: &[Bytes]) {
    let kept = args.len().min(MAX_ARGS);
    for (j, a) in args.iter().enumerate().take(kept) {
        if kept != args.len() && j == kept - 1 {
            let more = args.len() - kept + 1;
            put(data, format!("... ({more} more arguments)").as_bytes());
        } else if a.len() > MAX_ARG_BYTES {
            let more = format!("... ({} more bytes)", a.len() - MAX_ARG_BYTES);
            let len = MAX_ARG_BYTES + more.len();
            data.extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_le_bytes());
            data.extend_from_slice(&a[..MAX_ARG_BYTES]);
            data.extend_from_slice(more.as_bytes());
        } else {
            put(data, a);
        }
    }
}

/// `SLOWLOG GET|LEN|RESET|HELP`.
pub fn command(log: &SlowLog, args: &[Bytes]) -> Reply {
    let sub = args.get(1).map(|s| s.to_ascii_lowercase());
    match (sub.as_deref(), args.len()) {
        (Some(b"get"), 2) => log.get(Some(10)),
        (Some(b"get"), 3) => match std::str::from_utf8(&args[2])
            .ok()
            .and_then(|s| s.parse::<i64>().ok())
        {
            Some(-1) => log.get(None),
            Some(n) if n >= 0 => log.get(Some(usize::try_from(n).unwrap_or(usize::MAX))),
            Some(_) => Reply::err("count should be greater than or equal to -1"),
            None => Reply::err("value is not an integer or out of range"),
        },
        (Some(b"len"), 2) => Reply::Int(i64::try_from(log.len()).unwrap_or(i64::MAX)),
        (Some(b"reset"), 2) => {
            log.reset();
            Reply::OK
        }
        (Some(b"help"), 2) => Reply::Array(HELP.iter().map(|l| Reply::Simple(l)).collect()),
        (Some(b"get" | b"len" | b"reset" | b"help"), _) => Reply::err(format_args!(
            "wrong number of arguments for 'slowlog|{}' command",
            String::from_utf8_lossy(sub.as_deref().unwrap_or_default())
        )),
        (Some(_), _) => Reply::err(format_args!(
            "unknown subcommand '{}'. Try SLOWLOG HELP.",
            String::from_utf8_lossy(&args[1])
        )),
        (None, _) => Reply::err("wrong number of arguments for 'slowlog' command"),
    }
}

const HELP: &[&str] = &[
    "SLOWLOG <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "GET [<count>]",
    "    Return top <count> entries from the slowlog (default: 10, -1 mean all).",
    "    Entries are made of:",
    "    id, timestamp, time in microseconds, arguments array, client IP and port,",
    "    client name",
    "LEN",
    "    Return the length of the slowlog.",
    "RESET",
    "    Reset the slowlog.",
    "HELP",
    "    Prints this help.",
];

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    fn words(args: &[Bytes]) -> Vec<String> {
        args.iter()
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect()
    }

    /// The arguments as an entry keeps them.
    fn trimmed(args: &[Bytes]) -> Vec<Bytes> {
        let mut data = Vec::new();
        put_trimmed(&mut data, args);
        let e = Entry {
            id: 0,
            unix_secs: 0,
            usec: 0,
            data,
        };
        e.fields().map(Bytes::copy_from_slice).collect()
    }

    #[test]
    fn long_commands_and_arguments_are_trimmed_as_redis_trims_them() {
        let mut args: Vec<Bytes> = vec![b("sadd"), b("set")];
        args.extend((3..=33).map(|i| b(&i.to_string())));
        let t = words(&trimmed(&args));
        assert_eq!(t.len(), 32);
        assert_eq!(t[31], "... (2 more arguments)");
        assert_eq!(t[30], "31");
        let long = vec![b("sadd"), b("set"), Bytes::from(vec![b'A'; 129])];
        let t = words(&trimmed(&long));
        assert_eq!(t[2], format!("{}... (1 more bytes)", "A".repeat(128)));
    }

    #[test]
    fn passwords_are_redacted() {
        let r = |s: &str| words(&redacted(&s.split(' ').map(b).collect::<Vec<_>>())).join(" ");
        assert_eq!(r("AUTH user pass"), "AUTH (redacted) (redacted)");
        assert_eq!(
            r("hello 3 AUTH u p SETNAME x"),
            "hello 3 AUTH (redacted) (redacted) SETNAME x"
        );
        assert_eq!(
            r("migrate h 1 key 9 5000 AUTH2 user password"),
            "migrate h 1 key 9 5000 AUTH2 (redacted) (redacted)"
        );
        assert_eq!(
            r("migrate h 1 key 9 5000 AUTH pw"),
            "migrate h 1 key 9 5000 AUTH (redacted)"
        );
        assert_eq!(
            r("config set masterauth x timeout 5"),
            "config set masterauth (redacted) timeout 5"
        );
        assert_eq!(r("get k"), "get k");
        assert!(!carries_password(&[b("get"), b("auth")]));
        assert!(carries_password(&[b("CONFIG"), b("set")]));
    }

    #[test]
    fn the_log_keeps_the_newest_entries_up_to_its_length() {
        let log = SlowLog::default();
        let me = Client {
            peer: "127.0.0.1:1",
            name: b"n",
        };
        log.set_slower_than_us(100);
        log.record(99, &[b("fast")], me);
        assert_eq!(log.len(), 0);
        log.set_slower_than_us(0);
        log.set_max_len(3);
        for i in 0..5 {
            log.record(1, &[b(&format!("c{i}"))], me);
        }
        assert_eq!(log.len(), 3);
        let Reply::Array(all) = log.get(None) else {
            panic!()
        };
        let Reply::Array(newest) = &all[0] else {
            panic!()
        };
        assert_eq!(newest[0], Reply::Int(4));
        assert_eq!(newest[3], Reply::Array(vec![Reply::Bulk(b("c4"))]));
        assert_eq!(newest[4], Reply::Bulk(b("127.0.0.1:1")));
        assert_eq!(newest[5], Reply::Bulk(b("n")));
        // A log of length 0 keeps nothing, and ids go on (as in Redis).
        log.set_max_len(0);
        log.record(1, &[b("gone")], me);
        assert_eq!(log.len(), 0);
        log.set_max_len(3);
        log.record(1, &[b("back")], me);
        let Reply::Array(all) = log.get(Some(1)) else {
            panic!()
        };
        let Reply::Array(newest) = &all[0] else {
            panic!()
        };
        assert_eq!(newest[0], Reply::Int(6));
        log.set_slower_than_us(-1);
        log.record(1_000_000, &[b("slow")], me);
        assert_eq!(log.len(), 1);
        log.reset();
        assert_eq!(log.len(), 0);
        assert_eq!(
            command(&log, &[b("slowlog"), b("get"), b("-2")]),
            Reply::err("count should be greater than or equal to -1")
        );
    }
}
