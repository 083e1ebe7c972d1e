//! The proxy directory through the master's request path: `ProxyRegister` is answered at
//! once with the other live proxies, an entry not renewed within its TTL disappears (from
//! the answers and from `master_proxies_registered`), and nothing of it survives a restart
//! (the directory is never logged; proxies re-register).
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use ::master::core::MasterConfig;
use ::master::service::{Handling, ManualClock, Master};
use net::ProxyId;
use net::message::{Message, ProxyPeers, ProxyRegister};

fn register(m: &Master, id: u64, ttl_ms: u32) -> ProxyPeers {
    let msg = Message::ProxyRegister(ProxyRegister {
        proxy_id: ProxyId(id),
        peer_addr: format!("127.0.0.1:{}", 7000 + id),
        ttl_ms,
    });
    match m.handle_now(msg) {
        Handling::Done(Message::ProxyPeers(p)) => p,
        other => panic!("{other:?}"),
    }
}

#[test]
fn registered_proxies_expire_without_renewal_and_do_not_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(10_000);
    let (m, _) = Master::open(MasterConfig::new(dir.path()), Arc::new(clock.clone())).unwrap();
    assert!(register(&m, 1, 3_000).peers.is_empty());
    let p = register(&m, 2, 3_000);
    assert_eq!(p.peers.len(), 1);
    assert_eq!(p.peers[0].peer_addr, "127.0.0.1:7001");
    assert_eq!(m.proxies(), (2, 0));
    // Proxy 2 renews, proxy 1 does not.
    clock.set(12_000);
    register(&m, 2, 3_000);
    clock.set(13_500);
    assert_eq!(m.proxies(), (1, 1));
    assert!(register(&m, 2, 3_000).peers.is_empty());
    drop(m);
    let (m, _) = Master::open(MasterConfig::new(dir.path()), Arc::new(clock.clone())).unwrap();
    assert_eq!(m.proxies(), (0, 0));
}
