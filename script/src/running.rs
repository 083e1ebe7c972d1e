//! The scripts running now in this process, for `-BUSY` and `SCRIPT KILL` / `FUNCTION KILL`
//! (`docs/scripting.md`, "Long scripts").
//!
//! A script runs on its shard's thread and cannot be suspended (Lua 5.1), so while it runs its
//! shard answers nothing; what answers `-BUSY` and takes `SCRIPT KILL` runs on another thread
//! (the proxy's) and finds the script here. A shard registers each run ([`start`]) and the
//! registration ends when the returned [`Running`] is dropped. At most one run per shard is
//! registered at a time, plus the runs of scripts without keys that a proxy makes to find
//! their first key ([`PROXY_RUN`]), one per thread running one.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;

/// Tells a run to stop: the instruction hook checks it every 1,000 instructions. Clones share
/// one flag.
#[derive(Debug, Clone, Default)]
pub struct KillSwitch(Arc<AtomicBool>);

impl KillSwitch {
    /// Asks the run to stop.
    pub fn kill(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    /// Whether the run was asked to stop.
    pub fn is_killed(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// What runs: an `EVAL` script or a `FCALL` function (they answer to different commands).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `EVAL`, `EVALSHA` and their `_RO` forms: `SCRIPT KILL` stops them.
    Script,
    /// `FCALL`, `FCALL_RO`: `FUNCTION KILL` stops them.
    Function,
}

/// What `SCRIPT KILL` / `FUNCTION KILL` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KillOutcome {
    /// No script has run longer than the threshold (`-NOTBUSY`).
    NotBusy,
    /// The busy runs may write: they are never stopped (`-UNKILLABLE`).
    Unkillable,
    /// The busy runs are of the other kind (a function for `SCRIPT KILL`): the `-BUSY` text
    /// naming the command that would stop them.
    OtherKind(Kind),
    /// The busy runs were told to stop (`+OK`).
    Killed,
}

/// What `FUNCTION STATS` shows of a run (`running_script`): its function's name (`f_<sha1>`
/// for an `EVAL` script, as Redis names it) and the command that started it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The function's name.
    pub name: Bytes,
    /// The command, as the client sent it.
    pub command: Vec<Bytes>,
}

impl Origin {
    /// The origin of a script or function call: the command rebuilt from its parts
    /// (`function`: `FCALL`'s function name; otherwise `body` is an `EVAL` script).
    pub fn of_call(
        function: Option<&[u8]>,
        body: &[u8],
        keys: &[Bytes],
        args: &[Bytes],
        read_only: bool,
    ) -> Origin {
        let (name, verb, head) = match function {
            Some(f) => {
                let f = Bytes::copy_from_slice(f);
                let verb = if read_only { "fcall_ro" } else { "fcall" };
                (f.clone(), verb, f)
            }
            None => {
                let verb = if read_only { "eval_ro" } else { "eval" };
                let name = format!("f_{}", crate::sha1::sha1_hex(body));
                (Bytes::from(name), verb, Bytes::copy_from_slice(body))
            }
        };
        let mut command = vec![
            Bytes::from_static(verb.as_bytes()),
            head,
            Bytes::from(keys.len().to_string()),
        ];
        command.extend(keys.iter().cloned());
        command.extend(args.iter().cloned());
        Origin { name, command }
    }
}

struct Entry {
    id: u64,
    range: u64,
    started: Instant,
    killable: bool,
    kind: Kind,
    kill: KillSwitch,
    origin: Option<Origin>,
}

static REGISTRY: Mutex<Vec<Entry>> = Mutex::new(Vec::new());
/// Entries in `REGISTRY`: lets the common case (nothing running) skip the lock.
static COUNT: AtomicUsize = AtomicUsize::new(0);
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

fn registry() -> MutexGuard<'static, Vec<Entry>> {
    // Nothing panics while holding the lock; a poisoned registry is still consistent.
    REGISTRY.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A registered run; dropping it ends the registration.
#[derive(Debug)]
pub struct Running {
    id: u64,
    kill: KillSwitch,
}

impl Running {
    /// The switch the run's instruction hook must check (only a killable run's is ever set).
    pub fn kill_switch(&self) -> &KillSwitch {
        &self.kill
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let mut r = registry();
        if let Some(i) = r.iter().position(|e| e.id == self.id) {
            r.swap_remove(i);
            COUNT.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// Registers a run in range `range`, starting now. `killable`: it only reads and runs on one
/// replica, so stopping it at any instruction is safe. `origin`: what `FUNCTION STATS` shows
/// of it (`None`: a run whose command is not known where it runs).
pub fn start(range: u64, killable: bool, kind: Kind, origin: Option<Origin>) -> Running {
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let kill = KillSwitch::default();
    let entry = Entry {
        id,
        range,
        started: Instant::now(),
        killable,
        kind,
        kill: kill.clone(),
        origin,
    };
    let mut r = registry();
    r.push(entry);
    COUNT.fetch_add(1, Ordering::Relaxed);
    Running { id, kill }
}

/// The range of a run by a proxy itself: a script without keys, run until its first key to
/// find where it belongs. It holds no range, so it keeps every range busy, as a script keeps
/// the whole server busy in Redis.
pub const PROXY_RUN: u64 = u64::MAX;

/// The kind of the run in range `range` (or of a proxy's run, [`PROXY_RUN`]) that has run
/// longer than `threshold`, if any (the range answers `-BUSY`).
pub fn busy(range: u64, threshold: Duration) -> Option<Kind> {
    if COUNT.load(Ordering::Relaxed) == 0 {
        return None;
    }
    let r = registry();
    r.iter()
        .find(|e| (e.range == range || e.range == PROXY_RUN) && e.started.elapsed() > threshold)
        .map(|e| e.kind)
}

/// The kind of a run, in any range, that has run longer than `threshold`, if any (commands
/// without keys answer `-BUSY`, as every command but a few does in Redis).
pub fn busy_anywhere(threshold: Duration) -> Option<Kind> {
    if COUNT.load(Ordering::Relaxed) == 0 {
        return None;
    }
    let r = registry();
    r.iter()
        .find(|e| e.started.elapsed() > threshold)
        .map(|e| e.kind)
}

/// The longest-running run whose origin is known, and how long it has run (`FUNCTION
/// STATS`'s `running_script`).
pub fn longest_known() -> Option<(Origin, Duration)> {
    if COUNT.load(Ordering::Relaxed) == 0 {
        return None;
    }
    let r = registry();
    r.iter()
        .filter_map(|e| e.origin.as_ref().map(|o| (o, e.started.elapsed())))
        .max_by_key(|(_, d)| *d)
        .map(|(o, d)| (o.clone(), d))
}

/// Whether any run is registered (one atomic load).
pub fn any() -> bool {
    COUNT.load(Ordering::Relaxed) > 0
}

/// `SCRIPT KILL` (`kind` [`Kind::Script`]) or `FUNCTION KILL`: stops every killable run of
/// that kind that has run longer than `threshold`, with Redis's order of checks (a run that
/// may write is unkillable whatever the command; then the kind must match).
pub fn kill(kind: Kind, threshold: Duration) -> KillOutcome {
    if !any() {
        return KillOutcome::NotBusy;
    }
    let r = registry();
    let busy: Vec<&Entry> = r
        .iter()
        .filter(|e| e.started.elapsed() > threshold)
        .collect();
    if busy.is_empty() {
        return KillOutcome::NotBusy;
    }
    let targets: Vec<&&Entry> = busy.iter().filter(|e| e.killable).collect();
    if targets.is_empty() {
        return KillOutcome::Unkillable;
    }
    let mine: Vec<&&&Entry> = targets.iter().filter(|e| e.kind == kind).collect();
    if mine.is_empty() {
        return KillOutcome::OtherKind(targets[0].kind);
    }
    for e in mine {
        e.kill.kill();
    }
    KillOutcome::Killed
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use std::sync::{Mutex, MutexGuard, PoisonError};

    use bytes::Bytes;

    use super::{KillOutcome, Kind, PROXY_RUN, busy, busy_anywhere, kill, start};

    /// The registry is process-wide: these tests take turns.
    fn serial() -> MutexGuard<'static, ()> {
        static SERIAL: Mutex<()> = Mutex::new(());
        SERIAL.lock().unwrap_or_else(PoisonError::into_inner)
    }

    #[test]
    fn a_run_is_busy_only_past_the_threshold_and_until_it_ends() {
        let _serial = serial();
        let run = start(9_001, true, Kind::Script, None);
        assert_eq!(busy(9_001, Duration::from_secs(3600)), None);
        assert_eq!(busy(9_001, Duration::ZERO), Some(Kind::Script));
        assert_eq!(busy(9_002, Duration::ZERO), None);
        assert_eq!(busy_anywhere(Duration::ZERO), Some(Kind::Script));
        assert_eq!(busy_anywhere(Duration::from_secs(3600)), None);
        drop(run);
        assert_eq!(busy(9_001, Duration::ZERO), None);
        assert_eq!(busy_anywhere(Duration::ZERO), None);
    }

    #[test]
    fn kill_sets_the_switch_of_a_killable_run_of_its_kind() {
        let _serial = serial();
        let run = start(9_010, true, Kind::Function, None);
        assert_eq!(
            kill(Kind::Script, Duration::ZERO),
            KillOutcome::OtherKind(Kind::Function)
        );
        assert!(!run.kill_switch().is_killed());
        assert_eq!(kill(Kind::Function, Duration::ZERO), KillOutcome::Killed);
        assert!(run.kill_switch().is_killed());
    }

    #[test]
    fn a_run_that_may_write_is_unkillable() {
        let _serial = serial();
        let run = start(9_020, false, Kind::Script, None);
        assert_eq!(kill(Kind::Script, Duration::ZERO), KillOutcome::Unkillable);
        assert_eq!(
            kill(Kind::Function, Duration::ZERO),
            KillOutcome::Unkillable
        );
        assert!(!run.kill_switch().is_killed());
    }

    #[test]
    fn nothing_past_the_threshold_is_not_busy() {
        let _serial = serial();
        let run = start(9_030, true, Kind::Script, None);
        assert_eq!(
            kill(Kind::Script, Duration::from_secs(3600)),
            KillOutcome::NotBusy
        );
        assert!(!run.kill_switch().is_killed());
    }

    #[test]
    fn a_proxys_run_keeps_every_range_busy() {
        let _serial = serial();
        let run = start(PROXY_RUN, true, Kind::Function, None);
        assert_eq!(busy(7, Duration::ZERO), Some(Kind::Function));
        assert_eq!(busy(8, Duration::from_secs(3600)), None);
        assert_eq!(kill(Kind::Function, Duration::ZERO), KillOutcome::Killed);
        assert!(run.kill_switch().is_killed());
        drop(run);
        assert_eq!(busy(7, Duration::ZERO), None);
    }

    #[test]
    fn the_longest_known_run_shows_its_function_and_command() {
        let _serial = serial();
        let keys = [Bytes::from_static(b"k")];
        let args = [Bytes::from_static(b"a")];
        let origin = super::Origin::of_call(Some(b"spin"), b"lib", &keys, &args, true);
        assert_eq!(&origin.name[..], b"spin");
        let command: Vec<&[u8]> = origin.command.iter().map(|b| &b[..]).collect();
        assert_eq!(command, [&b"fcall_ro"[..], b"spin", b"1", b"k", b"a"]);
        let script = super::Origin::of_call(None, b"return 1", &[], &[], false);
        assert_eq!(
            &script.name[..],
            b"f_e0e1f9fabfc9d4800c877a703b823ac0578ff8db"
        );
        assert_eq!(&script.command[0][..], b"eval");
        let unknown = start(9_003, false, Kind::Script, None);
        assert_eq!(super::longest_known(), None);
        let known = start(9_004, true, Kind::Function, Some(origin.clone()));
        assert_eq!(super::longest_known().map(|(o, _)| o), Some(origin));
        drop((unknown, known));
        assert_eq!(super::longest_known(), None);
    }
}
