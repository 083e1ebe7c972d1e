//! `SCRIPT KILL` / `FUNCTION KILL` inside the VM: a run given a kill switch stops when the
//! switch is set, with redis-server 7.0.15's reply (captured with `busy-reply-threshold 100`
//! and `SCRIPT KILL` from a second client).

use std::time::Duration;

use super::*;
use crate::running::KillSwitch;

const SPIN: &str = "local i = 0 while true do i = i + 1 end";

fn run_with(kill: &KillSwitch) -> Run<'_> {
    Run {
        keys: &[],
        argv: &[],
        seed: 0,
        kill: Some(kill),
    }
}

fn unbounded_vm() -> Vm {
    Vm::new(Limits {
        max_instructions: u64::MAX,
        ..Limits::default()
    })
    .unwrap()
}

#[test]
fn a_killed_script_ends_with_redis_reply_and_its_position() {
    let mut vm = vm();
    let kill = KillSwitch::default();
    kill.kill();
    let v = vm.eval(SPIN.as_bytes(), run_with(&kill), &mut FakeHost::default());
    // redis-server 7.0.15: EVAL "local i=0 while true do i=i+1 end" 0, then SCRIPT KILL.
    assert_eq!(
        v,
        err(&format!(
            "ERR Script killed by user with SCRIPT KILL... script: {}, on @user_script:1.",
            crate::sha1_hex(SPIN.as_bytes())
        ))
    );
}

#[test]
fn a_kill_from_another_thread_stops_a_script_that_would_never_end() {
    let mut vm = unbounded_vm();
    let kill = KillSwitch::default();
    let remote = kill.clone();
    let killer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        remote.kill();
    });
    let v = vm.eval(SPIN.as_bytes(), run_with(&kill), &mut FakeHost::default());
    killer.join().unwrap();
    assert!(
        matches!(&v, Value::Error(e) if e.starts_with("ERR Script killed by user with SCRIPT KILL...")),
        "{v:?}"
    );
}

#[test]
fn pcall_cannot_catch_a_kill() {
    let mut vm = vm();
    let kill = KillSwitch::default();
    kill.kill();
    let body = "while true do pcall(function() while true do end end) end";
    let v = vm.eval(body.as_bytes(), run_with(&kill), &mut FakeHost::default());
    assert!(
        matches!(&v, Value::Error(e) if e.starts_with("ERR Script killed by user with SCRIPT KILL...")),
        "{v:?}"
    );
}

#[test]
fn the_vm_runs_the_next_script_normally_after_a_kill() {
    let mut vm = vm();
    let kill = KillSwitch::default();
    kill.kill();
    let _ = vm.eval(SPIN.as_bytes(), run_with(&kill), &mut FakeHost::default());
    let fresh = KillSwitch::default();
    let body = "local n = 0 for i = 1, 100000 do n = n + 1 end return n";
    let v = vm.eval(body.as_bytes(), run_with(&fresh), &mut FakeHost::default());
    assert_eq!(v, Value::Int(100_000));
    assert_eq!(
        eval_on(&mut vm, "return 1", &mut FakeHost::default()),
        Value::Int(1)
    );
}

#[test]
fn a_killed_function_names_itself_as_redis_does() {
    let mut vm = vm();
    let lib = "#!lua name=lib\nredis.register_function{function_name='spin', callback=function(k,a) local i=0 while true do i=i+1 end end, flags={'no-writes'}}";
    let kill = KillSwitch::default();
    kill.kill();
    let v = vm.fcall(
        lib.as_bytes(),
        b"spin",
        run_with(&kill),
        &mut FakeHost::default(),
    );
    // redis-server 7.0.15: FCALL_RO spin 0, then FUNCTION KILL.
    assert_eq!(
        v,
        err("ERR Script killed by user with SCRIPT KILL... script: spin, on @user_function:2.")
    );
}

#[test]
fn a_run_without_a_switch_is_stopped_only_by_its_budget() {
    let v = eval(SPIN);
    assert_eq!(
        v,
        err("ERR Script killed: exceeded the instruction budget (5000000)")
    );
}
