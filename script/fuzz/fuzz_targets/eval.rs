//! Evaluates arbitrary bodies (with arbitrary keys and arguments) on one long-lived VM with a
//! fake host: never a panic, and after every script the VM still runs `return 1`.
//! Input: one byte of flags (RESP3 replies from the host when bit 0 is set), then the body,
//! then up to two arguments (also used as keys), separated by NUL bytes.
#![no_main]

use std::cell::RefCell;

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use script::{Host, Limits, Resp, Run, Value, Vm};

/// Answers every command with a reply built from its arguments, in many reply types.
struct FakeHost;

impl Host for FakeHost {
    fn call(&mut self, argv: &[Bytes], resp: Resp) -> Value {
        let arg = argv.get(1).cloned().unwrap_or_default();
        match argv[0].first().copied().unwrap_or(0) % 8 {
            0 => Value::Nil,
            1 => Value::Int(arg.len() as i64),
            2 => Value::Bulk(arg),
            3 => Value::Status("OK".into()),
            4 => Value::Error(format!("ERR {}", String::from_utf8_lossy(&arg))),
            5 => Value::Array(argv.iter().cloned().map(Value::Bulk).collect()),
            6 if resp == Resp::Three => Value::Map(vec![(Value::Bulk(arg.clone()), Value::Double(1.5))]),
            _ => Value::Set(vec![Value::Bool(true), Value::BigNumber("1".into())]),
        }
    }
}

thread_local! {
    static VM: RefCell<Vm> = RefCell::new(
        Vm::new(Limits { max_instructions: 100_000, max_memory: 16 << 20, max_cached: 64 })
            .expect("a VM starts"),
    );
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let mut parts = rest.split(|&b| b == 0).collect::<Vec<_>>().into_iter();
    let body = parts.next().unwrap_or_default().to_vec();
    let argv: Vec<Bytes> = parts.take(2).map(Bytes::copy_from_slice).collect();
    let body = if flags & 1 == 1 { [b"redis.setresp(3) ".as_slice(), &body].concat() } else { body };
    VM.with(|vm| {
        let mut vm = vm.borrow_mut();
        let run = Run { keys: &argv, argv: &argv, seed: u64::from(flags), kill: None };
        let _ = vm.eval(&body, run, &mut FakeHost);
        assert_eq!(vm.eval(b"return 1", run, &mut FakeHost), Value::Int(1));
    });
});
