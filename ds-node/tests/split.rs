//! Splits under load, with a real master and three DS nodes: the master's split threshold is
//! tiny (32 KiB), so the first range splits again and again while eight writers load it.
//! Every acknowledged write reads back, every key is in exactly one range (scans of all ranges
//! through their leaders are disjoint and cover every key), hashes are never cut in two, and
//! after a restart of every node the replicas are byte-identical. The ranges' key counts
//! (`DbStats`, `range::db_keys`) follow the splits: summed over the ranges' leaders they are
//! the number of keys written, on every node (followers included, `ds_redis_keys`) as well,
//! before and after the restart (counts rebuilt by recovery).
#![allow(clippy::unwrap_used)]
// Test threads drive the node from outside its shards: blocking calls are fine here.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod common;

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use ds_node::{NodeHandle, run};
use net::message::kv::{Cond, Expiry, KvOp, KvResponse, OpResult};

const WRITERS: usize = 8;
const PER_WRITER: usize = 250;

fn key(w: usize, i: usize) -> String {
    format!("user:{w}:{i:04}")
}

fn val(w: usize, i: usize) -> Bytes {
    Bytes::from(format!("{w}-{i}-{}", "v".repeat(150)))
}

/// Redis keys written: one string per write and one hash per writer, all in database 0.
const KEYS: u64 = (WRITERS * PER_WRITER + WRITERS) as u64;

/// Database 0's keys summed over every range's `DbStats` answer (through its leader), once
/// the answers tile the keyspace (the master's table may trail a split that just happened:
/// then the answering range is smaller than the table's, and the round is asked again).
async fn keys_by_leaders(maddr: &str) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let t = table(maddr).await;
        let mut answers = Vec::new();
        for d in &t.ranges {
            let r = must_call_at(maddr, &d.start, KvOp::DbStats {}).await;
            let KvResponse::Ok {
                result: OpResult::DbStats { start, end, dbs },
            } = r
            else {
                panic!("DbStats of range {}: {r:?}", d.id);
            };
            let mut keys = 0;
            for s in dbs {
                assert_eq!(s.db.get(), 0, "keys only in database 0: {s:?}");
                assert_eq!(s.expires, 0);
                keys += s.keys;
            }
            answers.push((start, end, keys));
        }
        answers.sort();
        answers.dedup();
        let tiles = answers.first().is_some_and(|a| a.0.is_empty())
            && answers.last().is_some_and(|a| a.1.is_empty())
            && answers.windows(2).all(|w| w[0].1 == w[1].0);
        if tiles {
            return answers.iter().map(|a| a.2).sum();
        }
        assert!(Instant::now() < deadline, "answers never tile: {answers:?}");
        glommio::timer::sleep(Duration::from_millis(200)).await;
    }
}

/// Every node holds a replica of every range: the keys its replicas count (published to
/// `/metrics` about every 200 ms; followers may trail their leader by a few entries) reach
/// `want` on each.
fn every_node_counts(nodes: &[NodeHandle], want: u64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    for (i, n) in nodes.iter().enumerate() {
        loop {
            let got = n.metrics().redis_keys[0];
            if got == want {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "node {i}: {got} keys counted, {want} written"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

#[test]
fn ranges_split_under_load_without_losing_or_duplicating_a_key() {
    let (root, master, maddr) = splitting_master("split");
    let names = ["a", "b", "c"];
    let mut nodes: Vec<NodeHandle> = Vec::new();
    for n in names {
        nodes.push(run(node_cfg(&root, n, &maddr)).unwrap());
    }
    let deadline = Instant::now() + Duration::from_secs(90);
    while range1(&table_blocking(&maddr)).is_none_or(|d| voters(&d).len() < 3) {
        assert!(Instant::now() < deadline, "never three voters");
        std::thread::sleep(Duration::from_millis(100));
    }

    // The load: string keys and one hash per writer with a field per write.
    let m = maddr.clone();
    let acked: Vec<(usize, usize)> = on_executor(move || {
        Box::pin(async move {
            let acked = Rc::new(RefCell::new(Vec::new()));
            let mut tasks = Vec::new();
            for w in 0..WRITERS {
                let (m, acked) = (m.clone(), acked.clone());
                tasks.push(glommio::spawn_local(async move {
                    for i in 0..PER_WRITER {
                        let k = key(w, i);
                        let r = must_call(
                            &m,
                            k.as_bytes(),
                            KvOp::StrSet {
                                key: Bytes::from(k.clone()),
                                value: val(w, i),
                                expiry: Expiry::Persist {},
                                cond: Cond::Always {},
                                get_old: false,
                            },
                        )
                        .await;
                        assert!(matches!(r, KvResponse::Ok { .. }), "{k}: {r:?}");
                        let h = format!("hash:{w}");
                        let r = must_call(
                            &m,
                            h.as_bytes(),
                            KvOp::HSet {
                                key: Bytes::from(h.clone()),
                                pairs: vec![(Bytes::from(format!("f{i}")), val(w, i))],
                                only_new: false,
                            },
                        )
                        .await;
                        assert!(matches!(r, KvResponse::Ok { .. }), "{h}: {r:?}");
                        acked.borrow_mut().push((w, i));
                    }
                }));
            }
            for t in tasks {
                t.await;
            }
            acked.take()
        })
    });
    assert_eq!(acked.len(), WRITERS * PER_WRITER);
    let t = table_blocking(&maddr);
    eprintln!("{} ranges after the load", t.ranges.len());
    assert!(t.ranges.len() >= 4, "only {} ranges", t.ranges.len());
    let splits: u64 = nodes.iter().map(|n| n.metrics().splits_total).sum();
    assert!(
        splits >= 3 * 3,
        "{splits} right ranges created over three nodes"
    );

    // Every acknowledged write reads back, and every hash has all its fields.
    let m = maddr.clone();
    on_executor(move || {
        Box::pin(async move {
            for (w, i) in acked {
                let k = key(w, i);
                assert_eq!(must_get(&m, &k).await, Some(val(w, i)), "{k}");
            }
            for w in 0..WRITERS {
                let h = format!("hash:{w}");
                let r = must_call(
                    &m,
                    h.as_bytes(),
                    KvOp::HLen {
                        key: h.clone().into(),
                    },
                )
                .await;
                match r {
                    KvResponse::Ok {
                        result: OpResult::Int { value },
                    } => assert_eq!(value, PER_WRITER as i64, "{h}"),
                    other => panic!("{h}: {other:?}"),
                }
            }
        })
    });

    // Scans of every range (through its leader) are disjoint and cover every internal key.
    let m = maddr.clone();
    on_executor(move || {
        Box::pin(async move {
            let t = table(&m).await;
            let mut seen = BTreeSet::new();
            for d in &t.ranges {
                let mut start = d.start.clone();
                loop {
                    let r = must_call_at(
                        &m,
                        &start,
                        KvOp::Scan {
                            start: start.clone(),
                            end: d.end.clone(),
                            limit: 1000,
                            reverse: false,
                            keys_only: true,
                        },
                    )
                    .await;
                    let KvResponse::Ok {
                        result: OpResult::Scan { pairs, next },
                    } = r
                    else {
                        panic!("scan of range {}: {r:?}", d.id);
                    };
                    for (k, _) in pairs {
                        assert!(d.contains(&k), "range {} returned a key outside it", d.id);
                        assert!(seen.insert(k.clone()), "key {k:?} in two ranges");
                    }
                    // `next` is the last key returned: resume just after it.
                    match next {
                        Some(n) => {
                            let mut after = n.to_vec();
                            after.push(0);
                            start = after.into();
                        }
                        None => break,
                    }
                }
            }
            // One metadata entry per string key and per hash, one sub-key per field.
            assert_eq!(seen.len(), WRITERS * PER_WRITER * 2 + WRITERS);
            assert_eq!(keys_by_leaders(&m).await, KEYS);
        })
    });
    every_node_counts(&nodes, KEYS);

    // Restart every node (recovery replays the splits), then compare the replicas.
    for n in nodes {
        n.shutdown().unwrap();
    }
    let nodes: Vec<NodeHandle> = names
        .iter()
        .map(|n| run(node_cfg(&root, n, &maddr)).unwrap())
        .collect();
    every_node_counts(&nodes, KEYS);
    let m = maddr.clone();
    on_executor(move || {
        Box::pin(async move {
            assert_eq!(keys_by_leaders(&m).await, KEYS);
            for w in 0..WRITERS {
                let k = key(w, PER_WRITER - 1);
                assert!(must_get(&m, &k).await.is_some(), "{k} lost after restart");
            }
        })
    });
    std::thread::sleep(Duration::from_millis(1500));
    for n in nodes {
        n.shutdown().unwrap();
    }
    master.stop();
    let dumps: Vec<_> = names
        .iter()
        .map(|n| ds_node::offline::dump(&node_cfg(&root, n, &maddr)).unwrap())
        .collect();
    assert_eq!(dumps[0].len(), WRITERS * PER_WRITER * 2 + WRITERS);
    assert!(dumps.iter().all(|d| *d == dumps[0]), "replicas differ");
    let _ = std::fs::remove_dir_all(&root);
}
