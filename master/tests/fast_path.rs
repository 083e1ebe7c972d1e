//! `Master::handle_now` answers lookups and TSO batches within the persisted window without
//! a future, and hands back anything that must write the log or wait (the first TSO batch of
//! a fresh master, heartbeats that may change a range, id allocation).
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use ::master::core::MasterConfig;
use ::master::service::{Handling, ManualClock, Master};
use bytes::Bytes;
use net::message::{AllocIds, Message, Ping, RouteByKey, TsoRequest};

#[tokio::test]
async fn lookups_and_tso_within_the_window_are_answered_without_waiting() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(10_000);
    let (m, _) = Master::open(MasterConfig::new(dir.path()), Arc::new(clock.clone())).unwrap();
    let tso = Message::from(TsoRequest { count: 5 });
    // Nothing persisted yet: the first batch must go the slow way.
    let Handling::Later(back) = m.handle_now(tso.clone()) else {
        panic!()
    };
    let Some(Message::TsoBatch(first)) = m.clone().handle(back).await else {
        panic!()
    };
    let Handling::Done(Message::TsoBatch(second)) = m.handle_now(tso.clone()) else {
        panic!()
    };
    assert!(second.first.0 >= first.first.0 + 5);
    let key = Bytes::from_static(b"k");
    assert!(matches!(
        m.handle_now(RouteByKey { key }.into()),
        Handling::Done(Message::Route(_))
    ));
    assert!(matches!(
        m.handle_now(Ping { nonce: 3 }.into()),
        Handling::Done(Message::Pong(p)) if p.nonce == 3
    ));
    assert!(matches!(
        m.handle_now(AllocIds { count: 1 }.into()),
        Handling::Later(_)
    ));
    // Past the window the fast path gives the request back again.
    clock.set(10_000 + 60_000);
    assert!(matches!(m.handle_now(tso), Handling::Later(_)));
    let stats = m.metrics().snapshot();
    assert_eq!(
        stats["TsoRequest"].total, 2,
        "handed-back requests are not counted twice"
    );
}

/// Route lookups read the route cache, not the core: they are answered while the core's
/// mutex is held (as it is during a log fsync). Were they to take it, this would deadlock.
#[tokio::test]
async fn route_lookups_do_not_wait_for_the_core_lock() {
    let dir = tempfile::tempdir().unwrap();
    let (m, _) =
        Master::open(MasterConfig::new(dir.path()), Arc::new(ManualClock::new(1))).unwrap();
    let version = m.with_core(|core| {
        let key = Bytes::from_static(b"k");
        let Handling::Done(Message::Route(r)) = m.handle_now(RouteByKey { key }.into()) else {
            panic!()
        };
        assert_eq!(r.route_version, core.state().route_version());
        r.route_version
    });
    assert_eq!(version, 0);
}
