//! `CLIENT LIST`, `CLIENT INFO` and `CLIENT KILL` over the proxy's table of connections:
//! filters, the fields other clients' state shows up in, a killed client's connection
//! closing, and the error replies compared with a real `redis-server` byte for byte.
#![allow(clippy::unwrap_used)]

mod common;

use common::{Client, Env};

fn client_id(c: &mut Client) -> i64 {
    c.cmd("CLIENT ID")
        .trim_start_matches(':')
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn client_kill_by_id_closes_that_connection_and_spares_the_caller() {
    let env = Env::start(2);
    let mut a = env.client();
    let mut b = env.client();
    let id = client_id(&mut b);
    let me = client_id(&mut a);
    assert_eq!(a.cmd(&format!("CLIENT KILL ID {id}")), ":1\r\n");
    assert!(b.is_closed(), "the killed client is still connected");
    // SKIPME yes is the default: the caller survives a filter that names it.
    assert_eq!(a.cmd(&format!("CLIENT KILL ID {me}")), ":0\r\n");
    assert_eq!(a.cmd("PING"), "+PONG\r\n");
    assert_eq!(a.cmd(&format!("CLIENT KILL ID {id}")), ":0\r\n");
}

#[test]
fn client_list_shows_other_clients_names_databases_and_subscriptions() {
    let env = Env::start(2);
    let mut a = env.client();
    let mut b = env.client();
    let mut c = env.client();
    assert_eq!(b.cmd("CLIENT SETNAME worker"), "+OK\r\n");
    assert_eq!(b.cmd("SELECT 3"), "+OK\r\n");
    c.cmd("SUBSCRIBE news");
    let all = a.cmd("CLIENT LIST");
    let line = |name: &str| {
        all.lines()
            .find(|l| l.contains(&format!("name={name} ")))
            .unwrap_or_else(|| panic!("no {name} in {all}"))
            .to_string()
    };
    let worker = line("worker");
    assert!(
        worker.contains(" db=3 ") && worker.contains(" flags=N "),
        "{worker}"
    );
    assert!(worker.contains(" cmd=select "), "{worker}");
    let pubsub = a.cmd("CLIENT LIST TYPE pubsub");
    assert_eq!(pubsub.matches("id=").count(), 1, "{pubsub}");
    assert!(
        pubsub.contains(" flags=P ") && pubsub.contains(" sub=1 psub=0 "),
        "{pubsub}"
    );
    let normal = a.cmd("CLIENT LIST TYPE normal");
    assert_eq!(normal.matches("id=").count(), 2, "{normal}");
    assert_eq!(a.cmd("CLIENT LIST TYPE replica"), "$0\r\n\r\n");
    let info = a.cmd("CLIENT INFO");
    assert!(info.contains(" cmd=client|info "), "{info}");
}

#[test]
fn client_list_and_kill_errors_match_redis() {
    let Some(redis) = test_support::redis::start() else {
        return;
    };
    let env = Env::start(2);
    let mut r = Client::connect(redis.addr());
    let mut p = env.client();
    for cmd in [
        "CLIENT KILL ID abc",
        "CLIENT KILL ID 0",
        "CLIENT KILL TYPE foo",
        "CLIENT KILL foo bar",
        "CLIENT KILL ID 5 SKIPME",
        "CLIENT KILL USER nobody",
        "CLIENT KILL 1.1.1.1:1",
        "CLIENT KILL ADDR 1.1.1.1:1",
        "CLIENT KILL TYPE pubsub",
        "CLIENT KILL",
        "CLIENT LIST TYPE foo",
        "CLIENT LIST ID abc",
        "CLIENT LIST ID 0",
        "CLIENT LIST foo",
        "CLIENT REPLY maybe",
    ] {
        assert_eq!(p.cmd(cmd), r.cmd(cmd), "{cmd}");
    }
}

#[test]
fn an_idle_client_gives_its_receive_buffer_back() {
    let env = Env::start(2);
    let mut a = env.client();
    let mut b = env.client();
    assert_eq!(b.cmd("CLIENT SETNAME idler"), "+OK\r\n");
    let qbuf = |a: &mut Client| {
        let all = a.cmd("CLIENT LIST");
        let l = all
            .lines()
            .find(|l| l.contains("name=idler"))
            .unwrap()
            .to_string();
        let field = |f: &str| -> usize {
            let v = l.split(' ').find_map(|kv| kv.strip_prefix(f)).unwrap();
            v.parse().unwrap()
        };
        field("qbuf=") + field("qbuf-free=")
    };
    assert!(qbuf(&mut a) >= 16384);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while qbuf(&mut a) != 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the idle buffer was kept"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(b.cmd("PING"), "+PONG\r\n");
}
