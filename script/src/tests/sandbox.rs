//! The sandbox: globals, libraries, isolation between runs, bounds.

use super::*;

#[test]
fn creating_a_global_is_a_readonly_table_error() {
    assert_eq!(
        eval("x = 5"),
        err(
            "ERR user_script:1: Attempt to modify a readonly table script: 818a330663e3c3e78469660421595218e5ab5c48, on @user_script:1."
        )
    );
}

#[test]
fn reading_an_undefined_global_is_an_error() {
    assert_eq!(
        eval("return y"),
        err(
            "ERR user_script:1: Script attempted to access nonexistent global variable 'y' script: e278681ed961e2fb52881313e5c90fdd93749940, on @user_script:1."
        )
    );
}

#[test]
fn rawset_on_globals_is_refused() {
    assert_eq!(
        eval("rawset(_G,\"x\",1)"),
        err(
            "ERR Attempt to modify a readonly table script: 517037cf275e7e72b5879174217c6ec3d56fb107, on @user_script:1."
        )
    );
}

#[test]
fn library_tables_are_readonly() {
    assert_eq!(
        eval("redis.call = 1"),
        err(
            "ERR user_script:1: Attempt to modify a readonly table script: 69f883616b1814e2dc95cf801f324e38c5cc5ed2, on @user_script:1."
        )
    );
    for body in [
        "string.x = 1",
        "math.random = nil",
        "bit.band = 1",
        "table.insert = 1",
    ] {
        let Value::Error(e) = eval(body) else {
            panic!("{body} was allowed")
        };
        assert!(
            e.contains("Attempt to modify a readonly table"),
            "{body}: {e}"
        );
    }
}

#[test]
fn only_redis_libraries_are_loaded() {
    for name in [
        "os", "io", "loadfile", "dofile", "require", "package", "debug", "print", "module",
    ] {
        let Value::Error(e) = eval(&format!("return {name}")) else {
            panic!("{name} exists")
        };
        assert!(
            e.contains(&format!("nonexistent global variable '{name}'")),
            "{e}"
        );
    }
    for name in [
        "string",
        "table",
        "math",
        "bit",
        "redis",
        "coroutine",
        "loadstring",
        "pcall",
        "xpcall",
        "unpack",
        "tonumber",
        "setmetatable",
        "getmetatable",
    ] {
        assert_eq!(
            eval(&format!("return type({name}) ~= 'nil'")),
            Value::Int(1),
            "{name}"
        );
    }
}

#[test]
fn nothing_leaks_from_one_run_to_the_next() {
    let mut vm = vm();
    let mut host = FakeHost::default();
    // Every way to write state somewhere is refused, or undone after the run.
    for body in [
        "setfenv(0, {x = 1})",
        "getmetatable('').__index = {}",
        "setfenv(tostring, {leak = 1})",
        "local t = getfenv(1) t.leak = 1",
        "setfenv(1, {leak = 1})",
    ] {
        eval_on(&mut vm, body, &mut host);
    }
    assert_eq!(
        eval_on(&mut vm, "return ('x'):upper()", &mut host),
        bulk("X")
    );
    assert_eq!(
        eval_on(&mut vm, "return getfenv(tostring) == _G", &mut host),
        Value::Int(1)
    );
    assert_eq!(
        eval_on(
            &mut vm,
            "return rawget(_G, 'leak') == nil and rawget(_G, 'x') == nil",
            &mut host
        ),
        Value::Int(1)
    );
    // The same cached script sees fresh globals on its second run.
    assert_eq!(
        eval_on(&mut vm, "setfenv(1, {}) return 1", &mut host),
        Value::Int(1)
    );
    assert_eq!(
        eval_on(&mut vm, "setfenv(1, {}) return 1", &mut host),
        Value::Int(1)
    );
}

#[test]
fn keys_and_argv_are_set_for_each_run() {
    let mut vm = vm();
    let mut host = FakeHost::default();
    let body = "return {#KEYS, #ARGV, KEYS[1], ARGV[2]}";
    assert_eq!(
        eval_args(&mut vm, body, &["k1", "k2"], &["a", "b", "c"], &mut host),
        Value::Array(vec![Value::Int(2), Value::Int(3), bulk("k1"), bulk("b")])
    );
    assert_eq!(
        eval_args(&mut vm, body, &[], &["z"], &mut host),
        Value::Array(vec![Value::Int(0), Value::Int(1)])
    );
}

#[test]
fn binary_chunks_are_refused() {
    assert_eq!(
        eval(
            "local f = string.dump(function() return 1 end) local g, e = loadstring(f) return {tostring(g), e}"
        ),
        Value::Array(vec![bulk("nil"), bulk("attempt to load a binary chunk")])
    );
    let chunk = "\x1bLua";
    assert!(matches!(eval(chunk), Value::Error(e) if e.starts_with("ERR Error compiling script")));
}

#[test]
fn loadstring_compiles_source_in_the_sandbox() {
    assert_eq!(eval("return loadstring('return 1 + 1')()"), Value::Int(2));
    let Value::Error(e) = eval("return loadstring('x = 1')()") else {
        panic!()
    };
    assert!(e.contains("Attempt to modify a readonly table"), "{e}");
}

#[test]
fn an_endless_loop_ends_with_the_budget_error_and_the_next_script_runs() {
    let mut vm = Vm::new(Limits {
        max_instructions: 100_000,
        ..Limits::default()
    })
    .unwrap();
    let mut host = FakeHost::default();
    assert_eq!(
        eval_on(&mut vm, "while true do end", &mut host),
        err("ERR Script killed: exceeded the instruction budget (100000)")
    );
    assert_eq!(eval_on(&mut vm, "return 1", &mut host), Value::Int(1));
}

#[test]
fn pcall_cannot_catch_the_budget_error() {
    let mut vm = Vm::new(Limits {
        max_instructions: 50_000,
        ..Limits::default()
    })
    .unwrap();
    let mut host = FakeHost::default();
    let body = "while true do pcall(function() while true do end end) end";
    assert_eq!(
        eval_on(&mut vm, body, &mut host),
        err("ERR Script killed: exceeded the instruction budget (50000)")
    );
    let body = "local n = 0 for i = 1, 100 do n = n + i end return n";
    assert_eq!(eval_on(&mut vm, body, &mut host), Value::Int(5050));
}

#[test]
fn the_budget_is_counted_the_same_way_every_run() {
    // A script that counts iterations in a coroutine-free loop dies at the same point.
    let mut vm = Vm::new(Limits {
        max_instructions: 20_000,
        ..Limits::default()
    })
    .unwrap();
    let mut host = FakeHost::with(&[("incr", Value::Int(1))]);
    eval_on(
        &mut vm,
        "while true do redis.call('incr', 'k') end",
        &mut host,
    );
    let first = host.calls.len();
    host.calls.clear();
    eval_on(
        &mut vm,
        "while true do redis.call('incr', 'k') end",
        &mut host,
    );
    assert_eq!(host.calls.len(), first);
    assert!(first > 100);
}

#[test]
fn memory_over_the_limit_is_an_error_and_the_vm_stays_usable() {
    let mut vm = Vm::new(Limits {
        max_memory: 4 << 20,
        ..Limits::default()
    })
    .unwrap();
    let mut host = FakeHost::default();
    let body = "local t = {} for i = 1, 10000000 do t[i] = string.rep('x', 100) .. i end return #t";
    assert_eq!(
        eval_on(&mut vm, body, &mut host),
        err("ERR Script killed: exceeded the memory limit (4194304 bytes)")
    );
    assert_eq!(eval_on(&mut vm, "return 7", &mut host), Value::Int(7));
    assert!(vm.memory() < 4 << 20);
}

#[test]
fn the_cache_is_bounded_and_least_recently_used_go_first() {
    let mut vm = Vm::new(Limits {
        max_cached: 3,
        ..Limits::default()
    })
    .unwrap();
    for i in 0..3 {
        vm.load(format!("return {i}").as_bytes()).unwrap();
    }
    vm.load(b"return 0").unwrap(); // touch 0: 1 is now the oldest
    vm.load(b"return 3").unwrap();
    assert_eq!(vm.cached(), 3);
    assert!(vm.is_cached(&crate::sha1_hex(b"return 0")));
    assert!(!vm.is_cached(&crate::sha1_hex(b"return 1")));
    assert!(vm.is_cached(&crate::sha1_hex(b"return 3")));
    vm.flush();
    assert_eq!(vm.cached(), 0);
}

#[test]
fn compile_errors_have_redis_text() {
    let mut vm = vm();
    assert_eq!(
        vm.load(b"return ("),
        Err(err(
            "ERR Error compiling script (new function): user_script:1: unexpected symbol near '<eof>'"
        ))
    );
    assert_eq!(
        eval("#!lua flags=bad\nreturn 1"),
        err("ERR Unexpected flag in script shebang: bad")
    );
}

#[test]
fn a_shebang_line_is_skipped_and_line_numbers_kept() {
    assert_eq!(eval("#!lua flags=no-writes\nreturn 5"), Value::Int(5));
    let Value::Error(e) = eval("#!lua\nerror('x')") else {
        panic!()
    };
    assert!(e.starts_with("ERR user_script:2: x script: "), "{e}");
    assert!(e.ends_with(", on @user_script:2."), "{e}");
}

#[test]
fn runtime_errors_have_redis_text() {
    assert_eq!(
        eval("error(\"boom\")"),
        err(
            "ERR user_script:1: boom script: 872b3fcb081448525c6141cdfa3df8374d30d162, on @user_script:1."
        )
    );
    assert_eq!(
        eval("error({err=\"MY boom\"})"),
        err("MY boom script: 6f210a79061330ed689d8391066504f6e8d371f5, on @user_script:1.")
    );
    assert_eq!(
        eval("local t = {} t = t.x.y"),
        err(
            "ERR user_script:1: attempt to index field 'x' (a nil value) script: d23adc3247de3822232967f73157563116563ed0, on @user_script:1."
        )
    );
}

#[test]
fn math_random_follows_redis_lrand48() {
    // redis-server 7.0.15: EVAL "math.randomseed(0) return {...}" 0 and seed 12345.
    assert_eq!(
        eval(
            "math.randomseed(0) return {math.random(100), math.random(100), math.random(10, 20), math.random() * 1e9}"
        ),
        Value::Array(vec![
            Value::Int(18),
            Value::Int(75),
            Value::Int(11),
            Value::Int(870465227)
        ])
    );
    assert_eq!(
        eval("math.randomseed(12345) return {math.random(1000000)}"),
        Value::Array(vec![Value::Int(225329)])
    );
    let Value::Error(e) = eval("return math.random(0)") else {
        panic!()
    };
    assert!(
        e.starts_with("ERR user_script:1: bad argument #1 to 'random' (interval is empty)"),
        "{e}"
    );
}

#[test]
fn math_random_is_seeded_from_the_run() {
    let body = "return {math.random(1000000), math.random(1000000)}";
    let mut vm = vm();
    let mut host = FakeHost::default();
    let run = |seed| Run {
        keys: &[],
        argv: &[],
        seed,
        kill: None,
    };
    let a = vm.eval(body.as_bytes(), run(7), &mut host);
    assert_eq!(vm.eval(body.as_bytes(), run(7), &mut host), a);
    assert_ne!(vm.eval(body.as_bytes(), run(8), &mut host), a);
    // Seed 0 is Redis's redisSrand48(0).
    assert_eq!(
        vm.eval(b"return math.random(100)", run(0), &mut host),
        eval("math.randomseed(0) return math.random(100)")
    );
}

#[test]
fn a_script_stopping_the_collector_does_not_affect_the_next_run() {
    let mut vm = Vm::new(Limits {
        max_memory: 32 << 20,
        ..Limits::default()
    })
    .unwrap();
    let mut host = FakeHost::default();
    eval_on(&mut vm, "collectgarbage('stop') return 1", &mut host);
    // ~50 MB of short-lived strings fit in 32 MB only while the collector runs.
    let body = "for i = 1, 500000 do local s = string.rep('x', 100) .. i end return 1";
    assert_eq!(eval_on(&mut vm, body, &mut host), Value::Int(1));
}

#[test]
fn string_rep_of_an_empty_string_does_not_spin_outside_the_budget() {
    assert_eq!(eval("return string.rep('', 1e12)"), bulk(""));
    assert_eq!(eval("return ('ab'):rep(3)"), bulk("ababab"));
    assert_eq!(eval("return string.rep('x', 0)"), bulk(""));
    let Value::Error(e) = eval("return string.rep('x', 1e12)") else {
        panic!()
    };
    assert!(e.starts_with("ERR user_script:1: not enough memory"), "{e}");
    let Value::Error(e) = eval("return string.rep()") else {
        panic!()
    };
    assert!(
        e.starts_with(
            "ERR user_script:1: bad argument #1 to 'rep' (string expected, got no value)"
        ),
        "{e}"
    );
}

#[test]
fn what_differs_between_replicas_is_hidden() {
    assert_eq!(
        eval("return {collectgarbage('count'), gcinfo(), tostring(collectgarbage('step'))}"),
        Value::Array(vec![Value::Int(0), Value::Int(0), bulk("false")])
    );
    let body = "local a, b = {}, function() end return {tostring(a), tostring(b), tostring(a), tostring(setmetatable({}, {__tostring = function() return 'x' end}))}";
    let want = Value::Array(vec![
        bulk("table: 0x00000001"),
        bulk("function: 0x00000002"),
        bulk("table: 0x00000001"),
        bulk("x"),
    ]);
    let mut vm = vm();
    let mut host = FakeHost::default();
    assert_eq!(eval_on(&mut vm, body, &mut host), want);
    assert_eq!(
        eval_on(&mut vm, body, &mut host),
        want,
        "numbering starts again each run"
    );
    let Value::Error(e) = eval("return newproxy(true)") else {
        panic!()
    };
    assert!(e.contains("nonexistent global variable 'newproxy'"), "{e}");
}

#[test]
fn coroutines_are_under_the_budget_too() {
    let mut vm = Vm::new(Limits {
        max_instructions: 100_000,
        ..Limits::default()
    })
    .unwrap();
    let mut host = FakeHost::default();
    assert_eq!(
        eval_on(
            &mut vm,
            "local co = coroutine.wrap(function() while true do end end) co()",
            &mut host
        ),
        err("ERR Script killed: exceeded the instruction budget (100000)")
    );
    assert_eq!(
        eval_on(
            &mut vm,
            "local co = coroutine.wrap(function(a) coroutine.yield(a + 1) end) return co(1)",
            &mut host
        ),
        Value::Int(2)
    );
}

#[test]
fn deep_recursion_is_a_lua_error_not_a_crash() {
    assert_eq!(
        eval("local function f() f() end f()"),
        err(
            "ERR user_script:1: stack overflow script: ef5b65872cb582371ecea142590f46b7afc00f55, on @user_script:1."
        )
    );
    assert_eq!(
        eval(
            "local t = setmetatable({}, {}) getmetatable(t).__index = function(t, k) return t[k] end return t.x"
        ),
        err(
            "ERR user_script:1: C stack overflow script: 7afb2f26bfdf9cbc2d4661517d0b2a646aa7b34f, on @user_script:1."
        )
    );
}

/// redis-server 7.0.15: "Try trick global protection 2" of `unit/scripting`.
#[test]
fn the_metatable_of_a_protected_table_is_protected_too() {
    let r = eval("local g = getmetatable(_G)\ng.__index = {}");
    let Value::Error(text) = r else {
        panic!("{r:?}")
    };
    assert!(
        text.contains("Attempt to modify a readonly table"),
        "{text}"
    );
    assert_eq!(eval("return type(getmetatable(redis))"), bulk("table"));
}
