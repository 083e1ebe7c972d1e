//! A crash test's child process: the test binary re-run as one of its ignored tests (a node
//! that serves until killed). The parent starts it with [`spawn_child`], which returns once
//! the child printed `READY` ([`child_ready_and_park`]) or panics with the child's output;
//! the guard kills it with SIGKILL when told ([`ChildProcess::kill9`]) and, at the latest,
//! when dropped — also when the parent test panics — and always reaps it.
// Test threads drive the child from outside any shard: blocking calls are fine here.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

use test_support::tempdir::TempDir;

/// The line a child prints once it serves.
const READY: &str = "READY";

/// How long a child may take to print `READY` (a restart replays the shard log first).
pub const READY_WITHIN: Duration = Duration::from_secs(60);

/// How many of the last lines of each of the child's outputs a failure shows.
const TAIL_LINES: usize = 40;

/// A running child process; killed (SIGKILL) and reaped when dropped.
#[derive(Debug)]
pub struct ChildProcess {
    name: String,
    child: Child,
    /// The child's stdout and stderr (`stdout`, `stderr`), removed with the guard.
    logs: TempDir,
}

/// Runs the ignored test `test_name` of this test binary in a child process with `env`
/// added; returns once the child printed `READY`.
///
/// # Panics
/// When the child cannot be started, exits before `READY`, or is not ready within
/// [`READY_WITHIN`] (it is killed then); the panic shows the end of its stdout and stderr.
pub fn spawn_child(test_name: &str, env: &[(&str, String)]) -> ChildProcess {
    spawn_child_within(test_name, env, READY_WITHIN)
}

/// [`spawn_child`] with the child given `within` to print `READY`.
pub fn spawn_child_within(
    test_name: &str,
    env: &[(&str, String)],
    within: Duration,
) -> ChildProcess {
    let logs = TempDir::new(&format!("child-{test_name}"));
    std::fs::create_dir_all(logs.path()).unwrap();
    let file = |name: &str| std::fs::File::create(logs.path().join(name)).unwrap();
    let exe = std::env::current_exe().expect("the test binary's path");
    let child = Command::new(exe)
        .args([
            "--exact",
            test_name,
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdout(file("stdout"))
        .stderr(file("stderr"))
        .spawn()
        .unwrap_or_else(|e| panic!("start child {test_name}: {e}"));
    let mut guard = ChildProcess {
        name: test_name.to_string(),
        child,
        logs,
    };
    guard.wait_ready(within);
    guard
}

/// In the child: tells the parent it serves, then sleeps until killed (whatever the caller
/// holds — the node — stays alive).
pub fn child_ready_and_park() -> ! {
    println!("{READY}");
    loop {
        std::thread::park();
    }
}

impl ChildProcess {
    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills the child with SIGKILL (a crash at whatever point it was) and reaps it.
    ///
    /// # Panics
    /// When the child had already exited: the crash the test means did not happen.
    pub fn kill9(mut self) {
        if let Some(status) = self.exited() {
            panic!(
                "child {} exited ({status}) before it was killed\n{}",
                self.name,
                self.output()
            );
        }
        self.reap();
    }

    /// Polls the child's stdout for `READY` until `within` has passed.
    fn wait_ready(&mut self, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            if self.log("stdout").lines().any(|l| l.contains(READY)) {
                return;
            }
            if let Some(status) = self.exited() {
                panic!(
                    "child {} exited ({status}) before {READY}\n{}",
                    self.name,
                    self.output()
                );
            }
            if Instant::now() >= deadline {
                panic!(
                    "child {} (pid {}) printed no {READY} within {within:?}\n{}",
                    self.name,
                    self.pid(),
                    self.output()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The child's exit status if it has exited (reaping it).
    fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    fn reap(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn log(&self, which: &str) -> String {
        std::fs::read_to_string(self.logs.path().join(which)).unwrap_or_default()
    }

    /// The last lines of the child's stdout and stderr, for a failure message.
    fn output(&self) -> String {
        let mut out = String::new();
        for which in ["stdout", "stderr"] {
            let text = self.log(which);
            let lines: Vec<&str> = text.lines().collect();
            out.push_str(&format!("--- child {} {which}\n", self.name));
            for l in &lines[lines.len().saturating_sub(TAIL_LINES)..] {
                out.push_str(l);
                out.push('\n');
            }
        }
        out
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        self.reap();
        if std::thread::panicking() {
            // The parent test failed: what the child said may be why (its logs go with it).
            eprintln!("{}", self.output());
        }
    }
}
