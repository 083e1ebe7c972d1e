//! The crash tests' child-process harness (`common::child`) itself: a child that fails
//! before `READY` is reported with what it wrote to stderr, one that never says `READY` is
//! given up at the deadline, and a child killed, dropped, or dropped while its parent test
//! panics leaves no process behind — not even a zombie; killing a child that already exited
//! fails the test instead of passing for a crash that never happened.
#![allow(clippy::unwrap_used)]
// a test fails by panicking
// Test threads wait for child processes: blocking calls are fine here.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod common;

use std::time::{Duration, Instant};

use common::child::{ChildProcess, child_ready_and_park, spawn_child, spawn_child_within};

/// What the failing child panics with, to be found in its parent's panic.
const FAILURE: &str = "the child's own failure, 6b1f";

#[test]
#[ignore = "a helper run by its parent test"]
fn parked_child() {
    child_ready_and_park()
}

#[test]
#[ignore = "a helper run by its parent test"]
fn failing_child() {
    panic!("{FAILURE}");
}

#[test]
#[ignore = "a helper run by its parent test"]
fn silent_child() {
    loop {
        std::thread::park();
    }
}

#[test]
#[ignore = "a helper run by its parent test"]
fn ready_then_exiting_child() {
    println!("READY");
    std::process::exit(3);
}

/// Whether process `pid` exists in any state (a zombie, not yet reaped, does).
fn exists(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// Whether process `pid` has exited and waits to be reaped.
fn is_zombie(pid: u32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // `pid (comm) state …`: the state follows the last ')'.
    stat.rsplit_once(')')
        .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
}

/// The message of a panic caught by `catch_unwind`.
fn message(e: &(dyn std::any::Any + Send)) -> String {
    e.downcast_ref::<String>()
        .cloned()
        .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

#[test]
fn a_child_that_fails_before_ready_is_reported_with_its_stderr() {
    let e = std::panic::catch_unwind(|| spawn_child("failing_child", &[])).unwrap_err();
    let msg = message(&*e);
    assert!(msg.contains("exited"), "{msg}");
    assert!(
        msg.contains(FAILURE),
        "the child's stderr is missing: {msg}"
    );
}

#[test]
fn a_child_silent_past_the_deadline_is_given_up_and_killed() {
    let start = Instant::now();
    let e = std::panic::catch_unwind(|| {
        spawn_child_within("silent_child", &[], Duration::from_millis(500))
    })
    .unwrap_err();
    let msg = message(&*e);
    assert!(
        start.elapsed() < Duration::from_secs(20),
        "{:?}",
        start.elapsed()
    );
    assert!(msg.contains("printed no READY within 500ms"), "{msg}");
    let pid: u32 = msg
        .split("(pid ")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .unwrap()
        .parse()
        .unwrap();
    assert!(!exists(pid), "child {pid} still exists");
}

/// Starts a child that parks, ends it with `end`, and checks that no process is left.
fn assert_gone_after(end: impl FnOnce(ChildProcess)) {
    let child = spawn_child("parked_child", &[]);
    let pid = child.pid();
    assert!(exists(pid) && !is_zombie(pid));
    end(child);
    assert!(!exists(pid), "child {pid} still exists");
}

#[test]
fn kill9_kills_and_reaps_the_child() {
    assert_gone_after(ChildProcess::kill9);
}

#[test]
fn a_dropped_child_is_killed_and_reaped() {
    assert_gone_after(drop);
}

#[test]
fn a_child_of_a_panicking_test_is_killed_and_reaped() {
    let pid = std::sync::atomic::AtomicU32::new(0);
    let r = std::panic::catch_unwind(|| {
        let child = spawn_child("parked_child", &[]);
        pid.store(child.pid(), std::sync::atomic::Ordering::SeqCst);
        panic!("the parent test fails");
    });
    assert!(r.is_err());
    let pid = pid.load(std::sync::atomic::Ordering::SeqCst);
    assert!(pid != 0 && !exists(pid), "child {pid} still exists");
}

#[test]
fn kill9_of_a_child_that_already_exited_fails_the_test() {
    let child = spawn_child("ready_then_exiting_child", &[]);
    let pid = child.pid();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !is_zombie(pid) {
        assert!(Instant::now() < deadline, "child {pid} did not exit");
        std::thread::sleep(Duration::from_millis(5));
    }
    let e = std::panic::catch_unwind(move || child.kill9()).unwrap_err();
    let msg = message(&*e);
    assert!(
        msg.contains("exited (exit status: 3) before it was killed"),
        "{msg}"
    );
    assert!(!exists(pid), "child {pid} still exists");
}
