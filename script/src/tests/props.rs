//! Any bytes as a body, key or argument: never a panic, and the VM stays usable.

use super::*;
use proptest::prelude::*;

/// Bodies that are mostly Lua: fragments of real scripts glued with arbitrary bytes.
fn body() -> impl Strategy<Value = Vec<u8>> {
    let fragments = prop::sample::select(vec![
        "return ",
        "redis.call(",
        "redis.pcall(",
        "'set'",
        ",",
        "KEYS[1]",
        "ARGV[1]",
        ")",
        "{",
        "}",
        "cjson.decode(",
        "cjson.encode(",
        "cmsgpack.unpack(",
        "cmsgpack.pack(",
        "struct.unpack(",
        "struct.pack(",
        "bit.band(",
        "string.rep('x', 1e6)",
        "while true do end",
        "error(",
        "pcall(",
        "setmetatable(",
        "getfenv(",
        "setfenv(",
        "loadstring(",
        "math.random(",
        "#!lua ",
        "\n",
        " end ",
        "function() ",
        "local t = ",
        "t[1] = t ",
        "'\\255\\0'",
        "nil",
        "1e308",
        "-0/0",
        "coroutine.wrap(",
        "redis.setresp(3) ",
        "redis.error_reply(",
        "rawset(_G, ",
    ]);
    let piece = prop_oneof![
        4 => fragments.prop_map(|s| s.as_bytes().to_vec()),
        1 => prop::collection::vec(any::<u8>(), 0..8),
    ];
    prop::collection::vec(piece, 0..24).prop_map(|v| v.concat())
}

fn fuzz_vm() -> Vm {
    Vm::new(Limits {
        max_instructions: 200_000,
        max_memory: 16 << 20,
        max_cached: 8,
    })
    .unwrap()
}

/// Echoes its arguments back as an array, so replies carry arbitrary bytes too.
struct Echo;

impl Host for Echo {
    fn call(&mut self, argv: &[Bytes], _: Resp) -> Value {
        Value::Array(argv.iter().cloned().map(Value::Bulk).collect())
    }
    fn acl_check(&mut self, _: &[Bytes]) -> Result<bool, String> {
        Ok(true)
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn any_body_or_argument_never_panics_and_leaves_the_vm_usable(
        body in body(),
        raw in prop::collection::vec(any::<u8>(), 0..64),
        keys in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..16), 0..3),
        argv in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..16), 0..3),
        seed in any::<u64>(),
    ) {
        let mut vm = fuzz_vm();
        let keys: Vec<Bytes> = keys.into_iter().map(Bytes::from).collect();
        let argv: Vec<Bytes> = argv.into_iter().map(Bytes::from).collect();
        for b in [&body, &raw] {
            let _ = vm.eval(b, Run { keys: &keys, argv: &argv, seed, kill: None }, &mut Echo);
            let _ = vm.load(b);
        }
        let run = Run { keys: &keys, argv: &argv, seed, kill: None };
        prop_assert_eq!(vm.eval(b"return 1", run, &mut Echo), Value::Int(1));
        let echoed = vm.eval(b"return redis.call('echo', unpack(ARGV))", run, &mut Echo);
        let mut want = vec![Value::Bulk(Bytes::from_static(b"echo"))];
        want.extend(argv.iter().cloned().map(Value::Bulk));
        prop_assert_eq!(echoed, Value::Array(want));
    }
}
