//! Child processes of a multi-process test (a cluster of `tierkv` processes): a guard that
//! kills them all (SIGKILL) when dropped, so a failing test leaves nothing running; signals by
//! pid; waiting for a condition with the processes' logs in the failure message.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A free TCP port of 127.0.0.1 (free when asked; another process may take it before use).
///
/// # Panics
/// When no port can be bound.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// Starts `cmd` with `RUST_LOG=info`, stdout discarded, stderr appended to `log`.
///
/// # Panics
/// When the log cannot be opened or the program cannot be started.
pub fn spawn(mut cmd: Command, log: &Path) -> Child {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("open a process log");
    cmd.env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(file)
        .spawn()
        .unwrap_or_else(|e| panic!("start {cmd:?}: {e}"))
}

/// Child processes, each in a slot; every live one is killed (SIGKILL) and reaped on drop.
#[derive(Debug, Default)]
pub struct Procs(Vec<Option<Child>>);

impl Procs {
    /// Adds `c` in a new slot; returns the slot.
    pub fn add(&mut self, c: Child) -> usize {
        self.0.push(Some(c));
        self.0.len() - 1
    }

    /// Puts `c` in slot `i` (after [`Self::kill`]).
    ///
    /// # Panics
    /// When slot `i` still holds a process.
    pub fn replace(&mut self, i: usize, c: Child) {
        assert!(self.0[i].is_none(), "slot {i} still holds a process");
        self.0[i] = Some(c);
    }

    /// Kills (SIGKILL) and reaps the process of slot `i`, if any.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.0[i].take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The pid of slot `i`'s process, if it runs.
    pub fn pid(&self, i: usize) -> Option<u32> {
        self.0[i].as_ref().map(Child::id)
    }

    /// Whether slot `i`'s process has exited on its own (reaping it).
    pub fn exited(&mut self, i: usize) -> bool {
        self.0[i]
            .as_mut()
            .is_some_and(|c| c.try_wait().ok().flatten().is_some())
    }
}

impl Drop for Procs {
    fn drop(&mut self) {
        for c in self.0.iter_mut().flatten() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Sends `signal` (`"STOP"`, `"CONT"`, …) to `pid` with kill(1).
///
/// # Panics
/// When kill(1) cannot be run or fails.
pub fn signal(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .expect("run kill(1)");
    assert!(status.success(), "kill -{signal} {pid}: {status}");
}

/// The last `lines` lines of every `*.log` file under `dir`, for a failure message.
pub fn logs(dir: &Path, lines: usize) -> String {
    let mut out = String::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    let mut paths: Vec<_> = entries.flatten().map(|e| e.path()).collect();
    paths.sort();
    for p in paths {
        if p.extension().is_some_and(|x| x == "log") {
            let text = std::fs::read_to_string(&p).unwrap_or_default();
            let all: Vec<&str> = text.lines().collect();
            out.push_str(&format!("--- {}\n", p.display()));
            for l in &all[all.len().saturating_sub(lines)..] {
                out.push_str(l);
                out.push('\n');
            }
        }
    }
    out
}

/// Polls `f` every 100 ms until it returns a value, for at most `within`.
///
/// # Panics
/// On timeout, with `what` and the last 15 lines of the logs under `dir`.
pub fn wait_until<T>(
    dir: &Path,
    what: &str,
    within: Duration,
    mut f: impl FnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}\n{}",
            logs(dir, 15)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
