//! Byte-level fixtures of the range checkpoint format (docs/format/checkpoint.md), versions 1
//! and 2, committed under `tests/fixtures/checkpoint/`: files written by this release must
//! decode to the same checkpoint forever.
//!
//! The entries are a real range's state: strings (one with an expiry), a hash, a list, a set,
//! a sorted set and a key of database 3, written through the state machine, so the fixtures
//! also pin the internal key and value layout of Redis data (docs/format/redis-keys.md): a
//! release that lays out keys differently no longer builds the same entries and fails here.
//!
//! Regenerate (only for a new format version, in a new file, keeping the old ones):
//! `DS_NODE_WRITE_FIXTURES=1 cargo test -p ds-node --test checkpoint_fixtures`.
#![allow(clippy::unwrap_used)] // a test fails by panicking

use std::path::{Path, PathBuf};

use bytes::Bytes;
use ds_node::range::apply::{ApplyCtx, execute};
use ds_node::range::checkpoint::{
    Checkpoint, CheckpointMeta, ColdEntry, decode, encode, encode_with_cold,
};
use ds_node::range::store::{Entry, KvStore, ModelStore};
use engines::vlog::{LogPointer, SegmentId};
use net::keyspace::Db;
use net::message::kv::{Cond, Expiry, KvOp, ListOp, OpResult, SetOp, ZSetOp};
use net::message::{RangeDescriptor, Replica, ReplicaRole};
use net::{Epoch, RangeId, ReplicaId, ShardId, StoreId};

const NOW_MS: u64 = 1_765_000_000_000;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/checkpoint")
        .join(name)
}

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

fn descriptor() -> RangeDescriptor {
    let voter = |id: u64, store: u64| Replica {
        replica_id: ReplicaId(id),
        store_id: StoreId(store),
        shard_id: ShardId(1),
        role: ReplicaRole::Voter {},
    };
    RangeDescriptor {
        id: RangeId(7),
        start: Bytes::new(),
        end: Bytes::new(),
        epoch: Epoch {
            conf_ver: 2,
            version: 5,
        },
        replicas: vec![voter(71, 1), voter(72, 2), voter(73, 3)],
        leader: Some(ReplicaId(72)),
    }
}

fn meta() -> CheckpointMeta {
    CheckpointMeta {
        index: 42,
        term: 3,
        desc: descriptor(),
    }
}

fn set(key: &str, value: &str, expiry: Expiry) -> KvOp {
    KvOp::StrSet {
        key: b(key),
        value: b(value),
        expiry,
        cond: Cond::Always {},
        get_old: false,
    }
}

fn writes() -> Vec<KvOp> {
    vec![
        set("greeting", "hello", Expiry::Persist {}),
        set(
            "session:9",
            "token",
            Expiry::At {
                at_ms: NOW_MS + 3_600_000,
            },
        ),
        KvOp::HSet {
            key: b("user:1"),
            pairs: vec![(b("name"), b("ada")), (b("lang"), b("rust"))],
            only_new: false,
        },
        KvOp::List {
            op: ListOp::Push {
                key: b("queue"),
                elements: vec![b("a"), b("b"), b("c")],
                left: false,
                only_existing: false,
            },
        },
        KvOp::Set {
            op: SetOp::Add {
                key: b("tags"),
                members: vec![b("db"), b("kv")],
            },
        },
        KvOp::ZSet {
            op: ZSetOp::Add {
                key: b("board"),
                flags: 0,
                scores: vec![1.5, -2.0],
                members: vec![b("x"), b("y")],
            },
        },
        KvOp::InDb {
            db: Db::new(3).unwrap(),
            op: Box::new(set("greeting", "hallo", Expiry::Persist {})),
        },
    ]
}

fn run(store: &mut ModelStore, op: &KvOp, index: u64) -> OpResult {
    let range = descriptor();
    let ctx = ApplyCtx {
        now_ms: NOW_MS,
        index,
        range: &range,
        zranks: None,
    };
    execute(store, op, &ctx).unwrap()
}

/// The range's state after this release applies [`writes`].
fn state() -> ModelStore {
    let mut store = ModelStore::default();
    for (i, op) in writes().iter().enumerate() {
        run(&mut store, op, i as u64 + 1);
    }
    store
}

fn entries(store: &ModelStore) -> Vec<(Bytes, Entry)> {
    store.scan(b"", None, usize::MAX, false)
}

fn hot_checkpoint() -> Vec<u8> {
    let e = entries(&state());
    encode(&meta(), e.iter().map(|(k, v)| (&k[..], v)))
}

/// Entries with their keys, in key order.
type Keyed<T> = Vec<(Bytes, T)>;

/// The first two entries in key order are cold (named by pointers into a shard log).
fn cold_split() -> (Keyed<Entry>, Keyed<ColdEntry>) {
    let mut hot = entries(&state());
    let cold = hot
        .drain(..2)
        .enumerate()
        .map(|(i, (k, e))| {
            let pointer = LogPointer {
                segment: SegmentId(4 + i as u32),
                offset: 4096 + 8 * i as u64,
                len: e.value.len() as u32,
                checksum: crc32c::crc32c(&e.value),
            };
            let c = ColdEntry {
                pointer,
                expire_at_ms: e.expire_at_ms,
            };
            (k, c)
        })
        .collect();
    (hot, cold)
}

fn cold_checkpoint() -> Vec<u8> {
    let (hot, cold) = cold_split();
    encode_with_cold(
        &meta(),
        hot.iter().map(|(k, v)| (&k[..], v)),
        cold.iter().map(|(k, c)| (&k[..], c)),
    )
}

fn read_fixture(name: &str, fresh: fn() -> Vec<u8>) -> Vec<u8> {
    let path = fixture(name);
    if std::env::var_os("DS_NODE_WRITE_FIXTURES").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, fresh()).unwrap();
    }
    std::fs::read(&path).unwrap()
}

fn must_decode(bytes: &[u8], version: u32) -> Checkpoint {
    assert_eq!(&bytes[..8], b"TKVCKPT\0");
    assert_eq!(
        u32::from_le_bytes(bytes[8..12].try_into().unwrap()),
        version
    );
    decode(bytes).unwrap()
}

fn get(store: &mut ModelStore, op: KvOp) -> OpResult {
    run(store, &op, 100)
}

#[test]
fn version_1_checkpoint_decodes_to_the_range_state_this_release_builds() {
    let bytes = read_fixture("v1.ckpt", hot_checkpoint);
    let c = must_decode(&bytes, 1);
    assert_eq!(c.meta, meta());
    assert_eq!(
        c.entries,
        entries(&state()),
        "the Redis key/value layout changed"
    );
    assert!(c.cold.is_empty());
    assert_eq!(
        hot_checkpoint(),
        bytes,
        "this release writes version 1 byte for byte"
    );
}

#[test]
fn version_1_checkpoint_serves_the_data_it_holds() {
    let c = must_decode(&read_fixture("v1.ckpt", hot_checkpoint), 1);
    let mut store = ModelStore::default();
    for (k, e) in c.entries {
        store.put(k, e);
    }
    let value = |r| match r {
        OpResult::Value { value } => value,
        other => panic!("GET answered {other:?}"),
    };
    let greeting = get(&mut store, KvOp::StrGet { key: b("greeting") });
    assert_eq!(value(greeting), Some(b("hello")));
    let in_db3 = KvOp::InDb {
        db: Db::new(3).unwrap(),
        op: Box::new(KvOp::StrGet { key: b("greeting") }),
    };
    assert_eq!(value(get(&mut store, in_db3)), Some(b("hallo")));
    let field = KvOp::HGet {
        key: b("user:1"),
        field: b("lang"),
    };
    assert_eq!(value(get(&mut store, field)), Some(b("rust")));
}

#[test]
fn version_2_checkpoint_decodes_hot_and_cold_sections() {
    let bytes = read_fixture("v2.ckpt", cold_checkpoint);
    let c = must_decode(&bytes, 2);
    let (hot, cold) = cold_split();
    assert_eq!(c.meta, meta());
    assert_eq!(c.entries, hot);
    assert_eq!(c.cold, cold);
    assert_eq!(
        cold_checkpoint(),
        bytes,
        "this release writes version 2 byte for byte"
    );
}
