use std::sync::Arc;

use bytes::Bytes;

use super::*;
use crate::pubsub::Hub;
use crate::resp::Protocol;

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

fn keys_of(out: &[Out]) -> Vec<(u64, Option<Vec<Bytes>>)> {
    out.iter()
        .map(|o| (o.client, o.keys.as_ref().map(|k| k.to_vec())))
        .collect()
}

fn on(t: &Arc<Tracker>, id: u64, opts: Options) -> SessionTracking {
    let mut s = SessionTracking::default();
    s.enable(t, id, opts);
    s
}

#[test]
fn a_remembered_key_is_invalidated_once_for_each_reader() {
    let t = Arc::new(Tracker::default());
    let _a = on(&t, 1, Options::default());
    let _c = on(&t, 2, Options::default());
    assert!(t.remember(1, &[b("k"), b("j")]).is_empty());
    assert!(t.remember(2, &[b("k")]).is_empty());
    assert_eq!(t.figures().items, 3);
    let mut out = keys_of(&t.invalidate(&[b("k")], Some(9)));
    out.sort();
    assert_eq!(out, vec![(1, Some(vec![b("k")])), (2, Some(vec![b("k")]))]);
    assert!(t.invalidate(&[b("k")], Some(9)).is_empty(), "forgotten");
    assert_eq!(t.figures().keys, 1);
}

#[test]
fn noloop_skips_the_clients_own_changes_in_both_modes() {
    let t = Arc::new(Tracker::default());
    let noloop = Options {
        noloop: true,
        ..Options::default()
    };
    let _a = on(&t, 1, noloop.clone());
    let _c = on(
        &t,
        2,
        Options {
            bcast: true,
            ..noloop
        },
    );
    t.remember(1, &[b("k")]);
    // Client 1's own change reaches only the BCAST client 2, at the broadcast.
    assert!(t.invalidate(&[b("k")], Some(1)).is_empty());
    assert_eq!(keys_of(&t.broadcast()), vec![(2, Some(vec![b("k")]))]);
    assert!(t.invalidate(&[b("x")], Some(2)).is_empty());
    assert!(t.broadcast().is_empty());
    // Of a batch's changes, a NOLOOP BCAST client gets the others'.
    t.invalidate(&[b("mine")], Some(2));
    t.invalidate(&[b("theirs")], Some(3));
    assert_eq!(keys_of(&t.broadcast()), vec![(2, Some(vec![b("theirs")]))]);
    assert!(!t.has_pending());
}

#[test]
fn bcast_sends_one_push_per_prefix_with_every_key_under_it() {
    let t = Arc::new(Tracker::default());
    let _a = on(
        &t,
        1,
        Options {
            bcast: true,
            prefixes: vec![b("a:"), b("b:")],
            ..Options::default()
        },
    );
    assert!(t.invalidate(&[b("a:1"), b("c:1")], None).is_empty());
    assert!(t.invalidate(&[b("a:2"), b("b:1")], None).is_empty());
    let mut out = keys_of(&t.broadcast());
    out.sort();
    assert_eq!(
        out,
        vec![
            (1, Some(vec![b("a:1"), b("a:2")])),
            (1, Some(vec![b("b:1")]))
        ]
    );
    assert_eq!(t.figures().prefixes, 2);
    assert_eq!(
        t.prefix_collision(1, &[b("a")]).as_deref(),
        Some(
            "Prefix 'a' overlaps with an existing prefix 'a:'. Prefixes for a single client must not overlap."
        )
    );
    assert!(t.prefix_collision(1, &[b("c"), b("cd")]).is_some());
    assert!(t.prefix_collision(1, &[b("c"), b("d")]).is_none());
}

#[test]
fn a_client_that_goes_away_leaves_no_prefix_and_gets_nothing() {
    let t = Arc::new(Tracker::default());
    let a = on(
        &t,
        1,
        Options {
            bcast: true,
            ..Options::default()
        },
    );
    let c = on(&t, 2, Options::default());
    t.remember(2, &[b("k")]);
    drop(a);
    drop(c);
    assert_eq!(t.figures().clients, 0);
    assert_eq!(t.figures().prefixes, 0);
    assert!(!t.local());
    assert!(t.invalidate(&[b("k")], None).is_empty());
}

#[test]
fn a_flush_reaches_every_tracking_client_and_empties_the_table() {
    let t = Arc::new(Tracker::default());
    let _a = on(&t, 1, Options::default());
    t.remember(1, &[b("k"), b("j")]);
    assert_eq!(keys_of(&t.flush()), vec![(1, None)]);
    assert_eq!(t.figures().keys, 0);
    assert_eq!(t.figures().items, 0);
}

#[test]
fn the_table_stays_within_its_limit_by_forgetting_keys_as_if_they_changed() {
    let t = Arc::new(Tracker::default());
    let _a = on(&t, 1, Options::default());
    let keys: Vec<Bytes> = (0..250).map(|i| b(&format!("key{i}"))).collect();
    assert!(t.remember(1, &keys).is_empty());
    t.set_max_keys(1);
    let out = t.remember(1, &keys[..1]);
    assert_eq!(out.len(), EVICT_PER_READ);
    let more = t.evict(&mut t.lock(), EVICT_PER_TICK);
    assert_eq!(out.len() + more.len(), 249);
    assert_eq!(t.figures().keys, 1);
}

#[test]
fn optin_remembers_only_after_caching_yes_and_optout_not_after_caching_no() {
    let t = Arc::new(Tracker::default());
    let mut s = on(
        &t,
        1,
        Options {
            optin: true,
            ..Options::default()
        },
    );
    assert!(!s.remembers());
    s.caching = true;
    assert!(s.remembers());
    s.after_command(Some("client"), false);
    assert!(s.remembers(), "CLIENT keeps it");
    s.after_command(Some("get"), true);
    assert!(s.remembers(), "inside MULTI it holds");
    s.after_command(Some("get"), false);
    assert!(!s.remembers());
    let mut s = on(
        &t,
        2,
        Options {
            optout: true,
            ..Options::default()
        },
    );
    assert!(s.remembers());
    s.caching = true;
    assert!(!s.remembers());
}

#[test]
fn pushes_reach_resp3_clients_and_resp2_redirect_targets_in_pubsub_mode() {
    let keys: Arc<[Bytes]> = Arc::from([b("k")]);
    let direct = Push::Invalidate {
        keys: Some(keys.clone()),
        redirected: false,
    };
    let redirected = Push::Invalidate {
        keys: Some(keys),
        redirected: true,
    };
    assert!(direct.frame(Protocol::Resp2, true).is_none());
    assert!(direct.frame(Protocol::Resp3, false).is_some());
    assert!(redirected.frame(Protocol::Resp2, false).is_none());
    let Some(crate::resp::Reply::Push(items)) = redirected.frame(Protocol::Resp2, true) else {
        panic!("a message of __redis__:invalidate");
    };
    assert_eq!(items.len(), 3);
    assert!(Push::RedirBroken(7).frame(Protocol::Resp2, true).is_none());
}

#[test]
fn a_redirection_to_a_client_that_is_gone_is_reported_to_the_tracking_client() {
    let hub = Arc::new(Hub::default());
    let t = Arc::new(Tracker::default());
    let mut own = hub.subscriber(1);
    let _a = on(
        &t,
        1,
        Options {
            redirect: Some(5),
            ..Options::default()
        },
    );
    t.remember(1, &[b("k")]);
    let out = t.invalidate(&[b("k")], None);
    t.deliver(&hub, |_| false, out);
    assert!(t.broken(1));
    let m = own.try_next().expect("tracking-redir-broken");
    assert_eq!(m.tracking, Some(Push::RedirBroken(5)));
}

#[test]
fn expiries_fall_due_in_time_order_and_stay_bounded() {
    let t = Tracker::default();
    t.schedule(b("late"), 2_000);
    t.schedule(b("early"), 1_000);
    assert!(t.due(999, 10).is_empty());
    assert_eq!(t.due(1_500, 10), vec![b("early")]);
    assert_eq!(t.due(5_000, 10), vec![b("late")]);
    assert_eq!(t.scheduled(), 0);
}

#[test]
fn the_expiry_a_command_sets_is_read_from_its_arguments() {
    let a = |s: &str| s.split(' ').map(b).collect::<Vec<_>>();
    let now = 1_000_000;
    assert_eq!(expiry_of("set", &a("set k v px 100"), now), Some(now + 100));
    assert_eq!(
        expiry_of("set", &a("set k v NX EX 2"), now),
        Some(now + 2_000)
    );
    assert_eq!(expiry_of("set", &a("set k v"), now), None);
    assert_eq!(expiry_of("set", &a("set k px v"), now), None);
    assert_eq!(
        expiry_of("setex", &a("setex k 3 v"), now),
        Some(now + 3_000)
    );
    assert_eq!(expiry_of("pexpireat", &a("pexpireat k 5"), now), Some(5));
    assert_eq!(expiry_of("expireat", &a("expireat k 5"), now), Some(5_000));
    assert_eq!(expiry_of("getex", &a("getex k pxat 77"), now), Some(77));
    assert_eq!(expiry_of("restore", &a("restore k 0 payload"), now), None);
    assert_eq!(
        expiry_of("restore", &a("restore k 9 payload ABSTTL"), now),
        Some(9)
    );
    assert_eq!(expiry_of("get", &a("get k"), now), None);
}

#[test]
fn turning_tracking_on_again_adds_prefixes_and_keeps_the_client() {
    let t = Arc::new(Tracker::default());
    let bcast = |p: &str| Options {
        bcast: true,
        prefixes: vec![b(p)],
        ..Options::default()
    };
    let mut s = on(&t, 1, bcast("a:"));
    s.enable(&t, 1, bcast("c:"));
    assert_eq!(t.figures().clients, 1);
    t.invalidate(&[b("c:1"), b("a:1")], None);
    let mut out = keys_of(&t.broadcast());
    out.sort();
    assert_eq!(
        out,
        vec![(1, Some(vec![b("a:1")])), (1, Some(vec![b("c:1")]))]
    );
    s.disable();
    assert_eq!(t.figures().clients, 0);
}
