//! Committed entries a client or an older build could have put in the log — keys and
//! elements at and past every size limit, huge offsets, arbitrary bytes as proposals — go
//! through the state machine (`range::apply::execute`) on the Masstree store without a panic and without
//! an engine fault: every one yields a deterministic result, the same as on the `BTreeMap`
//! model, and replaying the same entries (recovery) rebuilds the same contents. The poison
//! pill of issue 21 (a `SET` with a 65,529–65,536-byte key that aborted every apply) is here.
#![allow(clippy::unwrap_used)]

mod common;

use bytes::Bytes;
use common::store::Db;
use ds_node::range::codec::{decode_proposal, encode_proposal};
use ds_node::range::engine::MasstreeStore;
use ds_node::range::store::KvStore;
use net::RpcError;
use net::limits::MAX_KEY_ELEMENT_BYTES;
use net::message::kv::{Cond, Expiry, KvOp, OpResult, WriteOp};
use proptest::prelude::*;

/// `ops` applied to `db` as its next entries; their results.
fn run<S: KvStore>(db: &mut Db<S>, ops: &[KvOp]) -> Vec<Result<OpResult, RpcError>> {
    ops.iter().map(|op| db.run(op)).collect()
}

/// A Masstree store in a [`Db`] whose clock stands at 1,000 ms.
fn masstree() -> Db<MasstreeStore> {
    Db::on(MasstreeStore::new()).at(1_000)
}

fn all<S: KvStore>(s: &S) -> Vec<(Bytes, ds_node::range::store::Entry)> {
    s.scan(b"", None, usize::MAX, false)
}

/// Lengths around every limit a key or element meets.
fn len() -> impl Strategy<Value = usize> + Clone {
    let edge = |at: usize| (at - 16)..(at + 16);
    prop_oneof![
        0usize..8,
        edge(MAX_KEY_ELEMENT_BYTES),
        edge(64 * 1024),
        edge(MAX_KEY_ELEMENT_BYTES / 2),
    ]
}

fn bytes_of(n: usize, b: u8) -> Bytes {
    Bytes::from(vec![b; n])
}

fn op() -> impl Strategy<Value = KvOp> + Clone {
    let key = (len(), 0u8..3).prop_map(|(n, b)| bytes_of(n, b'a' + b));
    let val = (0usize..64).prop_map(|n| bytes_of(n, b'v'));
    prop_oneof![
        (key.clone(), val.clone()).prop_map(|(key, value)| KvOp::StrSet {
            key,
            value,
            expiry: Expiry::Persist {},
            cond: Cond::Always {},
            get_old: true,
        }),
        (key.clone(), val.clone()).prop_map(|(key, value)| KvOp::StrAppend { key, value }),
        (key.clone(), any::<u64>(), val.clone())
            .prop_map(|(key, offset, value)| KvOp::StrSetRange { key, offset, value }),
        key.clone()
            .prop_map(|key| KvOp::StrIncrBy { key, delta: 1 }),
        (key.clone(), len(), val.clone()).prop_map(|(key, f, v)| KvOp::HSet {
            key,
            pairs: vec![(bytes_of(f, b'f'), v)],
            only_new: false,
        }),
        (key.clone(), len()).prop_map(|(key, f)| KvOp::HIncrBy {
            key,
            field: bytes_of(f, b'f'),
            delta: 2,
        }),
        (key.clone(), len()).prop_map(|(key, f)| KvOp::HGet {
            key,
            field: bytes_of(f, b'f'),
        }),
        key.clone().prop_map(|key| KvOp::HGetAll { key }),
        key.clone().prop_map(|key| KvOp::KeyDel { key }),
        key.clone().prop_map(|key| KvOp::StrGet { key }),
        (key.clone(), val.clone()).prop_map(|(key, value)| KvOp::Put {
            key,
            value,
            expiry: Expiry::Keep {},
            cond: Cond::Always {},
            return_old: false,
        }),
        (key, val).prop_map(|(key, value)| KvOp::BatchWrite {
            ops: vec![WriteOp::Put {
                key,
                value,
                expiry: Expiry::Keep {},
            }],
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn entries_at_every_size_limit_apply_like_the_model_without_a_fault(
        ops in prop::collection::vec(op(), 1..24)
    ) {
        let mut tree = masstree();
        let mut model = Db::new().at(1_000);
        let got = run(&mut tree, &ops);
        prop_assert_eq!(tree.store.take_fault(), None);
        prop_assert_eq!(&got, &run(&mut model, &ops));
        prop_assert_eq!(all(&tree.store), all(&model.store));
        let mut replayed = masstree();
        prop_assert_eq!(run(&mut replayed, &ops), got);
        prop_assert_eq!(all(&replayed.store), all(&tree.store));
    }

    #[test]
    fn arbitrary_bytes_as_committed_proposals_never_panic(
        data in prop::collection::vec(any::<u8>(), 0..256),
        real in op(),
        cut in 0usize..64,
    ) {
        let mut tree = masstree();
        let mut encoded = encode_proposal(7, &real);
        encoded.truncate(encoded.len().saturating_sub(cut));
        for bytes in [&data[..], &encoded[..]] {
            if let Some((_, op)) = decode_proposal(bytes) {
                run(&mut tree, &[op]);
            }
        }
        prop_assert_eq!(tree.store.take_fault(), None);
    }
}

/// The exact poison pill: keys of 65,529 to 65,536 bytes (and an `HSET` whose key and field
/// together pass the limit) are refused with an error before the engine sees them; a key at
/// the limit is stored and reads back.
#[test]
fn poison_pill_keys_are_refused_and_the_limit_itself_is_stored() {
    let mut tree = masstree();
    for n in 65_529..=65_536 {
        let set = KvOp::StrSet {
            key: bytes_of(n, b'k'),
            value: Bytes::from_static(b"v"),
            expiry: Expiry::Persist {},
            cond: Cond::Always {},
            get_old: false,
        };
        let r = run(&mut tree, &[set]);
        assert!(
            matches!(r[0], Err(RpcError::KeyTooLarge { .. })),
            "{n}: {r:?}"
        );
    }
    let hset = KvOp::HSet {
        key: bytes_of(40_000, b'h'),
        pairs: vec![(bytes_of(25_521, b'f'), Bytes::new())],
        only_new: false,
    };
    assert!(matches!(
        run(&mut tree, &[hset])[0],
        Err(RpcError::KeyTooLarge { .. })
    ));
    assert_eq!(tree.store.len(), 0, "nothing half-applied");
    let at_limit = bytes_of(MAX_KEY_ELEMENT_BYTES, b'k');
    let r = run(
        &mut tree,
        &[
            KvOp::StrSet {
                key: at_limit.clone(),
                value: Bytes::from_static(b"v"),
                expiry: Expiry::Persist {},
                cond: Cond::Always {},
                get_old: false,
            },
            KvOp::StrGet { key: at_limit },
        ],
    );
    assert_eq!(
        r[1],
        Ok(OpResult::Value {
            value: Some(Bytes::from_static(b"v"))
        })
    );
    assert_eq!(tree.store.take_fault(), None);
}

/// A write the tree itself refuses (a raw key past its limit, which `net::limits` keeps the
/// state machine from building) is recorded as a fault for the caller to stop the range,
/// never a panic.
#[test]
fn an_engine_refusal_is_a_fault_not_a_panic() {
    let mut tree = MasstreeStore::new();
    tree.put(
        bytes_of(engines::masstree::MAX_KEY_LEN + 1, b'x'),
        ds_node::range::store::Entry {
            value: Bytes::from_static(b"v"),
            expire_at_ms: 0,
        },
    );
    assert!(tree.take_fault().is_some());
    assert_eq!(tree.take_fault(), None, "taken once");
    assert_eq!(tree.faults_total(), 1);
    assert!(tree.is_empty());
}
