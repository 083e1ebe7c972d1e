//! `redis.*` and the conversions between replies and Lua values.

use super::*;

#[test]
fn redis_call_passes_arguments_and_numbers_as_percent_17g() {
    let mut vm = vm();
    let mut host = FakeHost::with(&[("set", Value::Status("OK".into()))]);
    let r = eval_on(
        &mut vm,
        "return redis.call('SET', 'k', 3.5, 0.1, 10, -2)",
        &mut host,
    );
    assert_eq!(r, Value::Status("OK".into()));
    assert_eq!(
        host.argv(0),
        ["SET", "k", "3.5", "0.10000000000000001", "10", "-2"]
    );
    assert_eq!(host.calls[0].1, Resp::Two);
}

#[test]
fn redis_call_with_bad_arguments_gets_redis_errors() {
    assert_eq!(
        eval("return redis.call()"),
        err(
            "ERR Please specify at least one argument for this redis lib call script: 0a907e1429221a4d85516cab7fd219a82a9439d8, on @user_script:1."
        )
    );
    assert_eq!(
        eval("return redis.call({})"),
        err(
            "ERR Lua redis lib command arguments must be strings or integers script: 80747816df1f4411f7c442b928fce6a814214839, on @user_script:1."
        )
    );
    assert_eq!(
        eval("return redis.pcall()"),
        err("ERR Please specify at least one argument for this redis lib call")
    );
}

#[test]
fn a_call_error_raises_the_error_table_and_the_caller_sees_it() {
    assert_eq!(
        eval("return redis.call(\"nosuch\")"),
        err(
            "ERR Unknown Redis command called from script script: 2218effcac8108416909801acfb39c080a85adfa, on @user_script:1."
        )
    );
    assert_eq!(
        eval("return redis.pcall(\"nosuch\")"),
        err("ERR Unknown Redis command called from script")
    );
    // Lua's pcall returns the error's text, not the table (Redis 7).
    assert_eq!(
        eval("local ok, e = pcall(function() redis.call('nosuch') end) return {tostring(ok), e}"),
        Value::Array(vec![
            bulk("false"),
            bulk("ERR Unknown Redis command called from script")
        ])
    );
    assert_eq!(
        eval("local ok, e = pcall(function() error('x') end) return e"),
        bulk("user_script:1: x")
    );
}

#[test]
fn host_errors_keep_their_code() {
    let mut vm = vm();
    let mut host = FakeHost::with(&[(
        "lpush",
        err("WRONGTYPE Operation against a key holding the wrong kind of value"),
    )]);
    let r = eval_on(
        &mut vm,
        "local r = redis.pcall('lpush', 'k', 'v') return r.err",
        &mut host,
    );
    assert_eq!(
        r,
        bulk("WRONGTYPE Operation against a key holding the wrong kind of value")
    );
}

#[test]
fn error_and_status_reply_build_tables() {
    assert_eq!(eval("return redis.error_reply('x')"), err("ERR x"));
    assert_eq!(eval("return redis.error_reply('-x y')"), err("x y"));
    assert_eq!(
        eval("return redis.error_reply('My Error')"),
        err("My Error")
    );
    assert_eq!(
        eval("return redis.status_reply('FINE')"),
        Value::Status("FINE".into())
    );
    assert_eq!(
        eval("return redis.error_reply()"),
        err("ERR wrong number or type of arguments")
    );
    assert_eq!(
        eval("return redis.status_reply(1)"),
        err("ERR wrong number or type of arguments")
    );
    assert_eq!(eval("return {ok='a\\r\\nb'}"), Value::Status("a  b".into()));
}

#[test]
fn replies_convert_to_lua_as_redis_does_in_resp2() {
    let mut vm = vm();
    let mut host = FakeHost::with(&[
        ("get", Value::Nil),
        ("incr", Value::Int(5)),
        ("ping", Value::Status("PONG".into())),
        (
            "lrange",
            Value::Array(vec![bulk("a"), Value::Nil, Value::Int(3)]),
        ),
    ]);
    let body = "return {redis.call('get','k') == false, redis.call('incr','k'), redis.call('ping').ok, #redis.call('lrange','k',0,-1), type(redis.call('lrange','k',0,-1)[2])}";
    assert_eq!(
        eval_on(&mut vm, body, &mut host),
        Value::Array(vec![
            Value::Int(1),
            Value::Int(5),
            bulk("PONG"),
            Value::Int(3),
            bulk("boolean")
        ])
    );
}

#[test]
fn resp3_replies_become_typed_tables() {
    let mut vm = vm();
    let mut host = FakeHost::with(&[
        ("get", Value::Nil),
        ("hgetall", Value::Map(vec![(bulk("f"), bulk("v"))])),
        ("smembers", Value::Set(vec![bulk("m")])),
        ("zscore", Value::Double(1.5)),
        ("exists", Value::Bool(true)),
        ("big", Value::BigNumber("12345678901234567890".into())),
        (
            "info",
            Value::Verbatim("txt".into(), bytes::Bytes::from_static(b"hello")),
        ),
    ]);
    let body = "redis.setresp(3) return {redis.call('get','k') == nil, redis.call('hgetall','h').map.f, redis.call('smembers','s').set.m, redis.call('zscore','z','m').double * 2, redis.call('exists','k'), redis.call('big').big_number, redis.call('info').verbatim_string.format, redis.call('info').verbatim_string.string}";
    assert_eq!(
        eval_on(&mut vm, body, &mut host),
        Value::Array(vec![
            Value::Bool(true),
            bulk("v"),
            Value::Bool(true),
            Value::Int(3),
            Value::Bool(true),
            bulk("12345678901234567890"),
            bulk("txt"),
            bulk("hello")
        ])
    );
    assert!(host.calls.iter().all(|(_, resp)| *resp == Resp::Three));
    // The next run starts in RESP2 again.
    eval_on(&mut vm, "return redis.call('get','k')", &mut host);
    assert_eq!(host.calls.last().unwrap().1, Resp::Two);
}

#[test]
fn lua_values_convert_to_replies_as_redis_does() {
    assert_eq!(
        eval("return {1,2,nil,3}"),
        Value::Array(vec![Value::Int(1), Value::Int(2)])
    );
    assert_eq!(eval("return 3.99"), Value::Int(3));
    assert_eq!(eval("return -3.99"), Value::Int(-3));
    assert_eq!(eval("return true"), Value::Int(1));
    assert_eq!(eval("return false"), Value::Nil);
    assert_eq!(eval("return nil"), Value::Nil);
    assert_eq!(eval("return 'x'"), bulk("x"));
    assert_eq!(
        eval("return {'a', {1, {true}}}"),
        Value::Array(vec![
            bulk("a"),
            Value::Array(vec![Value::Int(1), Value::Array(vec![Value::Int(1)])])
        ])
    );
    assert_eq!(eval("return {x = 1}"), Value::Array(vec![]));
    assert_eq!(eval("return function() end"), Value::Nil);
    assert_eq!(eval("redis.setresp(3) return true"), Value::Bool(true));
    assert_eq!(eval("redis.setresp(3) return false"), Value::Bool(false));
    assert_eq!(eval("return {double = 1.5}"), Value::Double(1.5));
    assert_eq!(
        eval("return {big_number = '123'}"),
        Value::BigNumber("123".into())
    );
    assert_eq!(
        eval("return {map = {a = 1}}"),
        Value::Map(vec![(bulk("a"), Value::Int(1))])
    );
    assert_eq!(
        eval("return {set = {a = true}}"),
        Value::Set(vec![bulk("a")])
    );
    assert_eq!(
        eval("return {verbatim_string = {format = 'txt', string = 'hi'}}"),
        Value::Verbatim("txt".into(), bytes::Bytes::from_static(b"hi"))
    );
}

#[test]
fn self_nesting_tables_stop_at_the_depth_limit() {
    let Value::Array(outer) = eval("local t = {} t[1] = t return t") else {
        panic!()
    };
    let mut v = &outer[0];
    let mut depth = 1;
    while let Value::Array(inner) = v {
        v = &inner[0];
        depth += 1;
    }
    assert_eq!(v, &err("ERR reached lua stack limit"));
    assert!(depth > 100);
}

#[test]
fn sha1hex_setresp_set_repl_and_log_behave_as_redis() {
    assert_eq!(
        eval("return redis.sha1hex('')"),
        bulk("da39a3ee5e6b4b0d3255bfef95601890afd80709")
    );
    assert_eq!(
        eval("return redis.sha1hex(1)"),
        bulk(&crate::sha1_hex(b"1"))
    );
    assert!(
        matches!(eval("return redis.sha1hex()"), Value::Error(e) if e.starts_with("ERR wrong number of arguments"))
    );
    assert!(
        matches!(eval("redis.setresp(4)"), Value::Error(e) if e.starts_with("ERR RESP version must be 2 or 3."))
    );
    assert!(
        matches!(eval("redis.setresp()"), Value::Error(e) if e.starts_with("ERR redis.setresp() requires one argument."))
    );
    assert_eq!(
        eval("redis.set_repl(redis.REPL_ALL) redis.set_repl(redis.REPL_NONE) return 1"),
        Value::Int(1)
    );
    assert!(
        matches!(eval("redis.set_repl(8)"), Value::Error(e) if e.starts_with("ERR Invalid replication flags."))
    );
    assert!(
        matches!(eval("redis.log(redis.LOG_WARNING)"), Value::Error(e) if e.starts_with("ERR redis.log() requires two arguments or more."))
    );
    assert!(
        matches!(eval("redis.log(9, 'x')"), Value::Error(e) if e.starts_with("ERR Invalid debug level."))
    );
    assert!(
        matches!(eval("redis.log('a', 'x')"), Value::Error(e) if e.starts_with("ERR First argument must be a number (log level)."))
    );
    let mut vm = vm();
    eval_on(
        &mut vm,
        "redis.log(redis.LOG_NOTICE, 'a', 'b') redis.log(redis.LOG_DEBUG, 'c')",
        &mut FakeHost::default(),
    );
    assert_eq!(vm.logged(), 2);
}

#[test]
fn version_and_no_op_helpers_exist() {
    assert_eq!(eval("return redis.REDIS_VERSION"), bulk("7.0.15"));
    assert_eq!(eval("return redis.REDIS_VERSION_NUM"), Value::Int(0x07000f));
    assert_eq!(eval("return redis.replicate_commands()"), Value::Int(1));
    assert_eq!(eval("return redis.breakpoint()"), Value::Nil);
    assert_eq!(eval("redis.debug('x') return 1"), Value::Int(1));
    assert_eq!(
        eval(
            "return {redis.LOG_DEBUG, redis.LOG_VERBOSE, redis.LOG_NOTICE, redis.LOG_WARNING, redis.REPL_NONE, redis.REPL_AOF, redis.REPL_REPLICA, redis.REPL_SLAVE, redis.REPL_ALL}"
        ),
        Value::Array(
            [0, 1, 2, 3, 0, 1, 2, 2, 3]
                .into_iter()
                .map(Value::Int)
                .collect()
        )
    );
}

/// Replies captured from redis-server 7.0.15 for a user allowed `GET` but not `SET`.
#[test]
fn acl_check_cmd_answers_for_the_scripts_user_and_raises_on_unknown_commands() {
    let mut vm = vm();
    let mut host = FakeHost::with(&[("get", Value::Nil), ("set", Value::Nil)]);
    host.denied.push("set".into());
    let r = eval_on(&mut vm, "return redis.acl_check_cmd('get', 'k')", &mut host);
    assert_eq!(r, Value::Int(1));
    let r = eval_on(
        &mut vm,
        "return redis.acl_check_cmd('set', 'k', 1)",
        &mut host,
    );
    assert_eq!(r, Value::Nil);
    let r = eval_on(
        &mut vm,
        "return redis.acl_check_cmd('nosuch', 'k')",
        &mut host,
    );
    assert_eq!(
        r,
        err(
            "ERR Invalid command passed to redis.acl_check_cmd() script: 9d41677768808dd2ccf66ea701a18385d5f4419d, on @user_script:1."
        )
    );
    assert!(host.calls.is_empty(), "a check runs nothing");
}
