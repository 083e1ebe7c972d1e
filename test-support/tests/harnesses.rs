//! The harnesses start what they say: a master that accepts connections until stopped, and a
//! redis-server that answers PING.
#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::TcpStream;

#[test]
fn a_started_master_listens_until_stopped() {
    let dir = std::env::temp_dir().join(format!("test-support-master-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let master = test_support::master::start(dir.clone(), test_support::master::fast_scheduling);
    let addr = master.addr().to_string();
    assert!(TcpStream::connect(&addr).is_ok());
    master.stop();
    assert!(TcpStream::connect(&addr).is_err());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_started_redis_server_answers_until_dropped() {
    let Some(redis) = test_support::redis::start() else {
        return;
    };
    assert!(redis.addr().ends_with(&format!(":{}", redis.port())));
    let mut s = TcpStream::connect(redis.addr()).unwrap();
    s.write_all(b"PING\r\n").unwrap();
    let mut buf = [0u8; 7];
    s.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"+PONG\r\n");
    let addr = redis.addr().to_string();
    drop(redis);
    assert!(TcpStream::connect(&addr).is_err());
}
