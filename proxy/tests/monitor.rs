//! `MONITOR`: a monitoring client receives a line for every command other clients of the proxy
//! run — timestamp, database, client address, quoted arguments — with passwords redacted,
//! queued transaction commands in order, and nothing for unknown commands; it stops receiving
//! when it leaves (RESET) or disconnects.
#![allow(clippy::unwrap_used)]

mod common;

use common::Env;

fn line(c: &mut common::Client) -> String {
    String::from_utf8(c.read_reply().expect("a monitor line")).unwrap()
}

#[test]
fn monitor_receives_every_command_of_other_clients() {
    let env = Env::start(2);
    let mut m = env.client();
    assert_eq!(m.cmd("MONITOR"), "+OK\r\n");
    let mut c = env.client();
    c.cmd("SET foo bar");
    c.cmd("SELECT 3");
    c.cmd("GET foo");
    c.cmd("AUTH user secret");
    c.cmd("NOSUCHCOMMAND x");
    c.cmd("MULTI");
    c.cmd("SET a 1");
    c.cmd("EXEC");
    let lines: Vec<String> = (0..7).map(|_| line(&mut m)).collect();
    for l in &lines {
        assert!(l.starts_with('+') && l.ends_with("\r\n"), "{l:?}");
        let (stamp, _) = l[1..].split_once(' ').unwrap();
        let (secs, micros) = stamp.split_once('.').unwrap();
        assert!(secs.parse::<u64>().is_ok() && micros.len() == 6, "{l:?}");
    }
    let tails: Vec<&str> = lines
        .iter()
        .map(|l| {
            l.split_once(" [")
                .unwrap()
                .1
                .split_once("] ")
                .unwrap()
                .1
                .trim_end()
        })
        .collect();
    assert_eq!(
        tails,
        [
            "\"SET\" \"foo\" \"bar\"",
            "\"SELECT\" \"3\"",
            "\"GET\" \"foo\"",
            "\"AUTH\" \"(redacted)\" \"(redacted)\"",
            "\"MULTI\"",
            "\"SET\" \"a\" \"1\"",
            "\"EXEC\"",
        ]
    );
    assert!(lines[2].contains(" [3 127.0.0.1:"), "{}", lines[2]);
    // After RESET the former monitor gets nothing more: the next reply it reads is its own.
    assert_eq!(m.cmd("RESET"), "+RESET\r\n");
    c.cmd("SET after reset");
    assert_eq!(m.cmd("PING"), "+PONG\r\n");
}
