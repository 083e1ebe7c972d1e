//! The background sweep's decisions (`range::sweep`): expired entries and elements of dead
//! collections are swept; live data never is, even when it changed after the sweep was chosen.
#![allow(clippy::unwrap_used)] // a test fails by panicking

mod common;

use bytes::Bytes;
use common::store::Db;
use ds_node::range::store::KvStore;
use ds_node::range::sweep::{self, Swept};
use net::message::kv::{Cond, ExpireCond, Expiry, KvOp, OpResult};

/// The clock of every operation and sweep: a [`Db`]'s, which stands still.
const NOW: u64 = common::store::START_MS;

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

impl Db {
    /// Applies `op`, which must succeed, at [`NOW`].
    fn must(&mut self, op: KvOp) -> OpResult {
        self.run(op).unwrap()
    }

    fn hset(&mut self, k: &str, n: usize) {
        let pairs = (0..n).map(|i| (b(&format!("f{i}")), b("v"))).collect();
        self.must(KvOp::HSet {
            key: b(k),
            pairs,
            only_new: false,
        });
    }

    /// One full pass of the sweep: choose from every entry, then apply.
    fn sweep(&mut self, now_ms: u64) -> Swept {
        let page = self.store.scan(b"", None, usize::MAX, false);
        let keys = sweep::select(&self.store, page, now_ms);
        sweep::apply(&mut self.store, now_ms, &keys)
    }

    fn hlen(&mut self, k: &str) -> OpResult {
        self.must(KvOp::HLen { key: b(k) })
    }
}

#[test]
fn fields_of_a_deleted_or_overwritten_hash_are_garbage_and_live_ones_are_not() {
    let mut db = Db::new();
    db.hset("dead", 50);
    db.hset("over", 7);
    db.hset("live", 30);
    db.must(KvOp::KeyDel { key: b("dead") });
    db.must(KvOp::StrSet {
        key: b("over"),
        value: b("now a string"),
        expiry: Expiry::Persist {},
        cond: Cond::Always {},
        get_old: false,
    });
    let before = db.store.len();
    assert_eq!(
        db.sweep(NOW),
        Swept {
            expired: 0,
            garbage: 57,
            expired_keys: vec![],
        }
    );
    assert_eq!(db.store.len(), before - 57);
    assert_eq!(db.hlen("live"), OpResult::Int { value: 30 });
    assert_eq!(db.sweep(NOW), Swept::default(), "nothing left to sweep");
}

#[test]
fn an_expired_hash_loses_its_metadata_and_its_fields() {
    let mut db = Db::new();
    db.hset("h", 10);
    db.must(KvOp::KeyExpire {
        key: b("h"),
        at_ms: NOW + 10,
        cond: ExpireCond::Always {},
    });
    assert_eq!(db.sweep(NOW), Swept::default(), "not yet expired");
    assert_eq!(
        db.sweep(NOW + 10),
        Swept {
            expired: 1,
            garbage: 10,
            expired_keys: vec![(net::keyspace::Db::ZERO, b("h"))],
        }
    );
    assert!(db.store.is_empty());
}

#[test]
fn a_collection_recreated_after_the_sweep_was_chosen_keeps_its_new_elements() {
    let mut db = Db::new();
    db.hset("h", 3);
    db.must(KvOp::KeyDel { key: b("h") });
    let page = db.store.scan(b"", None, usize::MAX, false);
    let chosen = sweep::select(&db.store, page, NOW);
    assert_eq!(chosen.len(), 3);
    // Re-created under a new version before the sweep entry applies.
    db.hset("h", 3);
    let swept = sweep::apply(&mut db.store, NOW, &chosen);
    assert_eq!(
        swept,
        Swept {
            expired: 0,
            garbage: 3,
            expired_keys: vec![],
        },
        "the old version's fields only"
    );
    assert_eq!(db.hlen("h"), OpResult::Int { value: 3 });
    let all = db.must(KvOp::HGetAll { key: b("h") });
    let OpResult::Pairs { pairs } = all else {
        panic!("{all:?}")
    };
    assert_eq!(pairs.len(), 3);
}
