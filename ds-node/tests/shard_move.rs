//! A range's replica moving between the two shards of one DS node (issue 19) while a client
//! keeps writing and reading its keys: by an operator's `move-range … shard=1`, and by the
//! master's shard balancer when shard 0 serves two loaded ranges and shard 1 none. The move
//! is the inter-store path (learner on shard 1 → snapshot → promote → leadership → remove the
//! source), so for a while the range has two replicas on the store. Afterwards: no
//! acknowledged write is lost, every read saw the latest value, and shard 0 holds none of the
//! range's data (checked offline, shard by shard).
#![allow(clippy::unwrap_used)]
// Test threads drive the node from outside its shards: blocking calls are fine here.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use ds_node::run;
use net::message::RangeDescriptor;
use net::message::kv::{Cond, Expiry, KvOp, KvResponse};
use test_support::master::RunningMaster;

/// `n` keys whose hash slots lie in `[lo, hi)`.
fn keys_in_slots(lo: u16, hi: u16, n: usize) -> Vec<String> {
    (0..)
        .map(|i| format!("key{i}"))
        .filter(|k| (lo..hi).contains(&net::keyspace::slot(k.as_bytes())))
        .take(n)
        .collect()
}

/// What the client saw: the last acknowledged value per key, writes made, and the longest
/// write + read-back pair.
struct Written {
    acked: BTreeMap<String, String>,
    writes: u64,
    slowest: Duration,
}

/// Writes `key = key:n` for rising `n` over `keys` in turn until `stop`, reading each key
/// back at once: the read must see the value just written.
fn writer(maddr: String, keys: Vec<String>, stop: Arc<AtomicBool>) -> Written {
    common::on_executor(move || {
        Box::pin(async move {
            let mut acked = BTreeMap::new();
            let mut n = 0u64;
            let mut slowest = Duration::ZERO;
            while !stop.load(Ordering::Relaxed) {
                for k in &keys {
                    n += 1;
                    let t = Instant::now();
                    let v = format!("{k}:{n}");
                    let set = KvOp::StrSet {
                        key: Bytes::from(k.clone()),
                        value: Bytes::from(v.clone()),
                        expiry: Expiry::Persist {},
                        cond: Cond::Always {},
                        get_old: false,
                    };
                    let r = common::must_call(&maddr, k.as_bytes(), set).await;
                    assert!(matches!(r, KvResponse::Ok { .. }), "SET {k}: {r:?}");
                    acked.insert(k.clone(), v.clone());
                    let got = common::must_get(&maddr, k).await;
                    assert_eq!(got.as_deref(), Some(v.as_bytes()), "GET {k} after SET");
                    slowest = slowest.max(t.elapsed());
                }
            }
            Written {
                acked,
                writes: n,
                slowest,
            }
        })
    })
}

/// The master's descriptor of the range holding Redis key `key`.
fn range_of(maddr: &str, key: &str) -> RangeDescriptor {
    let t = common::table_blocking(maddr);
    let ik = net::keyspace::meta_key(net::keyspace::Db::ZERO, key.as_bytes());
    t.ranges.into_iter().find(|r| r.contains(&ik)).unwrap()
}

/// Waits until the range holding `key` has exactly one replica, on shard `shard`, leading.
fn must_settle_on_shard(maddr: &str, key: &str, shard: u32, within: Duration) -> RangeDescriptor {
    let deadline = Instant::now() + within;
    loop {
        let d = range_of(maddr, key);
        let settled = d.replicas.len() == 1
            && d.replicas[0].shard_id.0 == shard
            && d.leader == Some(d.replicas[0].replica_id);
        if settled {
            return d;
        }
        assert!(
            Instant::now() < deadline,
            "the range never settled on shard {shard}: {d:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A master scheduling every 100 ms whose balancers act from 20 ops/s on, and a 2-shard
/// node: (root, master, node config).
fn cluster(name: &str) -> (std::path::PathBuf, RunningMaster, ds_node::DsConfig) {
    let root = std::env::temp_dir().join(format!("ds-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(root.join("master")).unwrap();
    let master = test_support::master::start(root.join("master"), |c| {
        test_support::master::fast_scheduling(c);
        c.schedule.load_balance_min_ops = 20;
    });
    let mut cfg = common::node_cfg(&root, "ds", master.addr());
    cfg.shards = 2;
    (root, master, cfg)
}

/// Runs `writer` over `keys` while `during` runs, then stops it.
fn while_writing(maddr: &str, keys: &[String], during: impl FnOnce()) -> Written {
    let stop = Arc::new(AtomicBool::new(false));
    let w = {
        let (m, k, s) = (maddr.to_string(), keys.to_vec(), stop.clone());
        std::thread::spawn(move || writer(m, k, s))
    };
    during();
    // Keep writing a little after the move, against the new leader.
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    w.join().unwrap()
}

/// After the node stopped: shard `from` holds no key of `moved`, shard `to` holds the
/// acknowledged value of every key.
fn must_hold_only_on(
    cfg: &ds_node::DsConfig,
    moved: &RangeDescriptor,
    from: usize,
    to: usize,
    acked: &BTreeMap<String, String>,
) {
    let src = ds_node::offline::dump_shard(cfg, from).unwrap();
    let left: Vec<_> = src.iter().filter(|(k, _)| moved.contains(k)).collect();
    assert!(
        left.is_empty(),
        "shard {from} kept {} keys of the moved range",
        left.len()
    );
    let dst: BTreeMap<Bytes, Bytes> = ds_node::offline::dump_shard(cfg, to)
        .unwrap()
        .into_iter()
        .map(|(k, e)| (k, e.value))
        .collect();
    for (k, v) in acked {
        let ik = net::keyspace::meta_key(net::keyspace::Db::ZERO, k.as_bytes());
        let held = dst.get(&ik).map(|b| b.as_ref());
        assert!(
            held.is_some_and(|h| h.ends_with(v.as_bytes())),
            "shard {to} lost the acknowledged {k} = {v}"
        );
    }
}

#[test]
fn an_operator_moves_a_range_to_another_shard_while_a_client_writes() {
    let (root, master, cfg) = cluster("shard-move-ctl");
    let maddr = master.addr().to_string();
    let node = run(cfg.clone()).unwrap();
    let keys = keys_in_slots(0, 8192, 8);
    let before = range_of(&maddr, &keys[0]);
    assert_eq!(before.replicas.len(), 1);
    assert_eq!(before.replicas[0].shard_id.0, 0);
    let mut took = Duration::ZERO;
    let w = while_writing(&maddr, &keys, || {
        // Let some writes land on shard 0 first.
        std::thread::sleep(Duration::from_millis(300));
        let q = format!("range={}&to={}&shard=1", before.id, node.store_id);
        let t = Instant::now();
        let (status, body) = master.admin_post("/move-range", &q);
        assert_eq!(status, 200, "{body}");
        assert!(body.contains("add-learner"), "{body}");
        must_settle_on_shard(&maddr, &keys[0], 1, Duration::from_secs(30));
        took = t.elapsed();
    });
    let (acked, writes) = (w.acked, w.writes);
    assert!(
        writes > keys.len() as u64,
        "the client wrote only {writes} times"
    );
    eprintln!(
        "move between shards: settled in the master's table after {} ms; the client wrote {writes} times, slowest SET + GET {} ms",
        took.as_millis(),
        w.slowest.as_millis()
    );
    let after = range_of(&maddr, &keys[0]);
    assert_eq!(after.id, before.id);
    assert_ne!(after.replicas[0].replica_id, before.replicas[0].replica_id);
    node.shutdown().unwrap();
    must_hold_only_on(&cfg, &after, 0, 1, &acked);
    master.stop();
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn the_shard_balancer_moves_a_loaded_range_off_the_hot_shard() {
    let (root, master, cfg) = cluster("shard-move-balance");
    let maddr = master.addr().to_string();
    let node = run(cfg.clone()).unwrap();
    // Shard 0's first range is cut in two, so shard 0 serves two ranges and shard 1 one.
    let first = range_of(&maddr, &keys_in_slots(0, 4096, 1)[0]);
    let (status, body) = master.admin_post("/split", &format!("range={}&slot=4096", first.id));
    assert_eq!(status, 200, "{body}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while common::table_blocking(&maddr).ranges.len() < 3 {
        assert!(Instant::now() < deadline, "the split never landed");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Load on both ranges of shard 0, none on shard 1's.
    let mut keys = keys_in_slots(0, 4096, 4);
    keys.extend(keys_in_slots(4096, 8192, 4));
    let (low, high) = (keys[0].clone(), keys[4].clone());
    let Written { acked, .. } = while_writing(&maddr, &keys, || {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let on_1 = [&low, &high].into_iter().find(|k| {
                range_of(&maddr, k)
                    .replicas
                    .iter()
                    .all(|r| r.shard_id.0 == 1)
            });
            if on_1.is_some() {
                return;
            }
            assert!(Instant::now() < deadline, "no range moved to shard 1");
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    let (moved_key, stayed_key) = if range_of(&maddr, &low).replicas[0].shard_id.0 == 1 {
        (&low, &high)
    } else {
        (&high, &low)
    };
    let moved = must_settle_on_shard(&maddr, moved_key, 1, Duration::from_secs(30));
    let stayed = range_of(&maddr, stayed_key);
    let decisions = master.decisions();
    assert_eq!(
        stayed.replicas[0].shard_id.0, 0,
        "both ranges moved: {stayed:?}; decisions {decisions:#?}"
    );
    let by_balancer = format!("shard-balance: r{}: add-learner", moved.id);
    assert!(
        decisions.iter().any(|d| d.starts_with(&by_balancer)),
        "{decisions:#?}"
    );
    node.shutdown().unwrap();
    let moved_acked: BTreeMap<String, String> = acked
        .into_iter()
        .filter(|(k, _)| {
            moved.contains(&net::keyspace::meta_key(
                net::keyspace::Db::ZERO,
                k.as_bytes(),
            ))
        })
        .collect();
    assert!(!moved_acked.is_empty());
    must_hold_only_on(&cfg, &moved, 0, 1, &moved_acked);
    master.stop();
    let _ = std::fs::remove_dir_all(&root);
}
