//! Function libraries (`FUNCTION LOAD`, `FCALL`) against redis-server 7.0.15's replies.

use super::*;
use crate::{Flags, Function, Library};

fn load(code: &str) -> Result<Library, Value> {
    vm().load_library(code.as_bytes())
}

fn load_err(code: &str) -> String {
    match load(code) {
        Err(Value::Error(e)) => e,
        other => panic!("{code}: {other:?}"),
    }
}

const LIB1: &str = "#!lua name=lib1\nredis.register_function('f1', function(keys, args) return {keys[1], args[1], #keys} end)\nredis.register_function{function_name='f2', callback=function(keys, args) return redis.call('ping') end, flags={'no-writes'}, description='d2'}";

#[test]
fn a_library_registers_its_functions_with_names_flags_and_descriptions() {
    let lib = load(LIB1).unwrap();
    assert_eq!(lib.name, "lib1");
    assert_eq!(
        lib.functions,
        vec![
            Function {
                name: "f1".into(),
                description: None,
                flags: Flags {
                    shebang: true,
                    ..Flags::default()
                }
            },
            Function {
                name: "f2".into(),
                description: Some("d2".into()),
                flags: Flags {
                    shebang: true,
                    no_writes: true,
                    ..Flags::default()
                }
            },
        ]
    );
    let lib = load("#!lua name=lib8\nredis.register_function{function_name='h8', callback=function() return 1 end, flags={'NO-WRITES', 'allow-oom'}}").unwrap();
    assert!(lib.functions[0].flags.no_writes && lib.functions[0].flags.allow_oom);
}

#[test]
fn fcall_passes_keys_and_args_and_reaches_the_full_api() {
    let mut vm = vm();
    let mut host = FakeHost::with(&[("ping", Value::Status("PONG".into()))]);
    let keys = [Bytes::from_static(b"k")];
    let argv = [Bytes::from_static(b"a")];
    let run = Run {
        keys: &keys,
        argv: &argv,
        seed: 0,
        kill: None,
    };
    assert_eq!(
        vm.fcall(LIB1.as_bytes(), b"f1", run, &mut host),
        Value::Array(vec![bulk("k"), bulk("a"), Value::Int(1)])
    );
    assert_eq!(
        vm.fcall(LIB1.as_bytes(), b"f2", run, &mut host),
        Value::Status("PONG".into())
    );
    assert_eq!(
        vm.fcall(LIB1.as_bytes(), b"nope", run, &mut host),
        err("ERR Function not found")
    );
}

#[test]
fn function_errors_name_the_function() {
    let mut vm = vm();
    let mut host = FakeHost::default();
    let run = Run {
        keys: &[],
        argv: &[],
        seed: 0,
        kill: None,
    };
    let lib2 = b"#!lua name=lib2\nlocal function h(keys, args) error('oops') end\nredis.register_function('g', h)";
    assert_eq!(
        vm.fcall(lib2, b"g", run, &mut host),
        err("ERR user_function:2: oops script: g, on @user_function:2.")
    );
    let lib3 =
        b"#!lua name=lib3\nredis.register_function('h3', function(keys, args) return KEYS end)";
    assert_eq!(
        vm.fcall(lib3, b"h3", run, &mut host),
        err(
            "ERR user_function:2: Script attempted to access nonexistent global variable 'KEYS' script: h3, on @user_function:2."
        )
    );
    let lib7 = b"#!lua name=lib7\nredis.register_function('h7', function(k, a) return redis.call('nosuch') end)";
    assert_eq!(
        vm.fcall(lib7, b"h7", run, &mut host),
        err("ERR Unknown Redis command called from script script: h7, on @user_function:2.")
    );
    let lib5 = b"#!lua name=lib5\nredis.register_function('h5', function() return redis.register_function end)";
    assert_eq!(vm.fcall(lib5, b"h5", run, &mut host), Value::Nil);
}

#[test]
fn bad_libraries_get_redis_errors() {
    let cases = [
        ("return 1", "ERR Missing library metadata"),
        ("#!lua\nreturn 1", "ERR Library name was not given"),
        (
            "#!lua name=x foo=bar\nreturn 1",
            "ERR Invalid metadata value given: foo=bar",
        ),
        ("#!py name=x\nreturn 1", "ERR Engine 'py' not found"),
        ("#!lua name=x\nreturn 1", "ERR No functions registered"),
        (
            "#!lua name=x-y\nreturn 1",
            "ERR Library names can only contain letters, numbers, or underscores(_) and must be at least one character long",
        ),
        (
            "#!lua name=x\nreturn (",
            "ERR Error compiling function: user_function:2: unexpected symbol near '<eof>'",
        ),
        (
            "#!lua name=x\nerror(\"boom\")",
            "ERR Error registering functions: ERR user_function:2: Script attempted to access nonexistent global variable 'error'",
        ),
        (
            "#!lua name=x\nredis.register_function(\"a\", 1)",
            "ERR Error registering functions: ERR second argument to redis.register_function must be a function",
        ),
        (
            "#!lua name=x\nredis.register_function(\"a b\", function() end)",
            "ERR Error registering functions: ERR Library names can only contain letters, numbers, or underscores(_) and must be at least one character long",
        ),
        (
            "#!lua name=x\nredis.register_function(\"a\", function() end) redis.register_function(\"a\", function() end)",
            "ERR Error registering functions: ERR Function already exists in the library",
        ),
        (
            "#!lua name=x\nredis.call(\"ping\")",
            "ERR Error registering functions: ERR user_function:2: Script attempted to access nonexistent global variable 'call'",
        ),
        (
            "#!lua name=x\nredis.register_function{function_name=\"a\", callback=function() end, flags={\"bad\"}}",
            "ERR Error registering functions: ERR unknown flag given",
        ),
        (
            "#!lua name=x\nredis.register_function{function_name=\"a\"}",
            "ERR Error registering functions: ERR redis.register_function must get a callback argument",
        ),
        (
            "#!lua name=x\nredis.register_function{callback=function() end, foo=1}",
            "ERR Error registering functions: ERR unknown argument given to redis.register_function",
        ),
        (
            "#!lua name=lib4\nx = 1",
            "ERR Error registering functions: ERR user_function:2: Attempt to modify a readonly table",
        ),
        (
            "#!lua name=lib6\nredis.register_function(\"h6\", function() return redis.REDIS_VERSION end) local v = redis.setresp",
            "ERR Error registering functions: ERR user_function:2: Script attempted to access nonexistent global variable 'setresp'",
        ),
    ];
    for (code, want) in cases {
        assert_eq!(load_err(code), want, "{code}");
    }
}

#[test]
fn a_library_that_loops_while_loading_is_stopped() {
    let mut vm = Vm::new(Limits {
        max_instructions: 10_000,
        ..Limits::default()
    })
    .unwrap();
    assert_eq!(
        vm.load_library(b"#!lua name=x\nwhile true do end"),
        // redis-server 7.0.15 (after its 500 ms load timeout; tierkv counts instructions).
        Err(err(
            "ERR Error registering functions: ERR FUNCTION LOAD timeout"
        ))
    );
    assert_eq!(
        eval_on(&mut vm, "return 1", &mut FakeHost::default()),
        Value::Int(1)
    );
}

/// redis-server 7.0.15 splits the metadata line with `sdssplitargs`: quotes group and are
/// removed (`unit/functions`, "function test name with quotes").
#[test]
fn metadata_and_shebang_words_are_split_as_redis_splits_arguments() {
    let (name, _) = crate::library::metadata(b"#!lua name=\"foo\"\nreturn 1").unwrap();
    assert_eq!(name, "foo");
    assert_eq!(
        crate::library::metadata(b"#!lua name=\"foo\nreturn 1").unwrap_err(),
        "ERR Invalid library metadata"
    );
    let (flags, _) = crate::shebang::parse(b"#!lua flags=\"no-writes\"\nreturn 1").unwrap();
    assert!(flags.no_writes);
}
