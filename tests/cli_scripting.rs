//! Scripts and functions through `tierkv dev`, crashed with `kill -9` under load: every
//! acknowledged script's writes survive, each script's writes are all there or none of them
//! (a counter and a list it appends the counter to always agree), replaying the log runs the
//! scripts again to the same state (a `math.random` value a script wrote reads back the same),
//! and a function library loaded before the crash is there after it.
#![allow(clippy::unwrap_used)] // a test fails by panicking

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use test_support::dev::Dev;
use test_support::resp::Reply;

const STEP: &str = "local n = redis.call('incr', KEYS[1]) \
                    redis.call('rpush', KEYS[2], n) \
                    local r = math.random(1000000000) \
                    redis.call('set', KEYS[3], r) \
                    return {n, r}";

const LIBRARY: &str = "#!lua name=counters\n\
                       redis.register_function('bump', function(keys, args) \
                       return redis.call('incrby', keys[1], args[1]) end)";

fn bulk(text: &str) -> Reply {
    Reply::Bulk(Some(text.into()))
}

#[test]
fn scripts_survive_kill_9_whole_and_replay_to_the_same_state() {
    let (mut dev, mut c) = Dev::start(
        env!("CARGO_BIN_EXE_tierkv"),
        "cli-scripting",
        &["--shards", "1"],
    );
    assert_eq!(
        c.call(&["FUNCTION", "LOAD", LIBRARY]).unwrap(),
        bulk("counters")
    );
    assert_eq!(
        c.call(&["FCALL", "bump", "1", "{f}n", "5"]).unwrap(),
        Reply::Int(5)
    );
    // Two writers; each remembers the last (counter, random) its scripts acknowledged.
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..2)
        .map(|w| {
            let stop = stop.clone();
            let mut c = dev.connect();
            std::thread::spawn(move || {
                let keys = [
                    format!("{{w{w}}}c"),
                    format!("{{w{w}}}l"),
                    format!("{{w{w}}}r"),
                ];
                let mut last = None;
                while !stop.load(Ordering::Relaxed) {
                    let args = ["EVAL", STEP, "3", &keys[0], &keys[1], &keys[2]];
                    match c.call(&args) {
                        Ok(Reply::Array(Some(v))) => match v.as_slice() {
                            [Reply::Int(n), Reply::Int(r)] => last = Some((*n, *r)),
                            other => panic!("unexpected script reply {other:?}"),
                        },
                        _ => break,
                    }
                }
                last
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    dev.kill9();
    stop.store(true, Ordering::Relaxed);
    let acked: Vec<Option<(i64, i64)>> = writers.into_iter().map(|t| t.join().unwrap()).collect();

    let mut c = dev.restart();
    for (w, last) in acked.iter().enumerate() {
        let (n, r) = last.expect("the load made progress before the kill");
        let count = match c.call(&["GET", &format!("{{w{w}}}c")]).unwrap() {
            Reply::Bulk(Some(s)) => String::from_utf8(s).unwrap().parse::<i64>().unwrap(),
            other => panic!("{other:?}"),
        };
        assert!(
            count >= n,
            "acknowledged script {n} of writer {w} lost (counter {count})"
        );
        // Every script's writes are whole: the list holds 1..=counter, in order.
        let list = c
            .call(&["LRANGE", &format!("{{w{w}}}l"), "0", "-1"])
            .unwrap();
        let want: Vec<Reply> = (1..=count).map(|i| bulk(&i.to_string())).collect();
        assert_eq!(list, Reply::Array(Some(want)), "writer {w}");
        if count == n {
            // The last script applied is the last acknowledged one: replay drew the same
            // random number.
            assert_eq!(
                c.call(&["GET", &format!("{{w{w}}}r")]).unwrap(),
                bulk(&r.to_string()),
                "writer {w}"
            );
        }
    }
    assert_eq!(
        c.call(&["FCALL", "bump", "1", "{f}n", "1"]).unwrap(),
        Reply::Int(6)
    );
}
