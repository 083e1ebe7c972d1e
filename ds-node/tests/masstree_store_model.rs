//! Differential test: the Masstree-backed store ([`MasstreeStore`]) against the `BTreeMap`
//! reference (`ModelStore`) — random Redis and raw operations applied through the state
//! machine (`range::apply::execute`, in a [`Db`]) to both must give identical results and identical full scans
//! (forward and reverse, with expiry).
#![allow(clippy::unwrap_used)]

mod common;

use bytes::Bytes;
use common::store::Db;
use ds_node::range::engine::MasstreeStore;
use ds_node::range::store::KvStore;
use net::message::kv::{Cond, ExpireCond, Expiry, KvOp};
use proptest::prelude::*;

fn op() -> impl Strategy<Value = KvOp> {
    let key = (0u8..12).prop_map(|k| Bytes::from(format!("k{}", k)));
    let long = (0u8..6).prop_map(|k| Bytes::from(format!("a-long-shared-prefix-key-{k}")));
    let k = prop_oneof![key, long];
    let v = (0u8..5).prop_map(|v| Bytes::from(vec![b'v'; v as usize * 7]));
    prop_oneof![
        (k.clone(), v.clone(), 0u8..3, 0u64..40).prop_map(|(key, value, c, exp)| KvOp::StrSet {
            key,
            value,
            expiry: if exp > 30 {
                Expiry::At { at_ms: 1_000 + exp }
            } else {
                Expiry::Persist {}
            },
            cond: [Cond::Always {}, Cond::IfAbsent {}, Cond::IfPresent {}][c as usize],
            get_old: c == 0,
        }),
        k.clone().prop_map(|key| KvOp::StrGet { key }),
        k.clone().prop_map(|key| KvOp::KeyDel { key }),
        (k.clone(), v.clone()).prop_map(|(key, value)| KvOp::StrAppend { key, value }),
        (k.clone(), 0u8..4, v.clone()).prop_map(|(key, f, v)| KvOp::HSet {
            key,
            pairs: vec![(Bytes::from(format!("f{f}")), v)],
            only_new: false,
        }),
        (k.clone(), 0u8..4).prop_map(|(key, f)| KvOp::HDel {
            key,
            fields: vec![Bytes::from(format!("f{f}"))],
        }),
        k.clone().prop_map(|key| KvOp::HGetAll { key }),
        (k.clone(), 0u64..60).prop_map(|(key, at)| KvOp::KeyExpire {
            key,
            at_ms: 1_000 + at,
            cond: ExpireCond::Always {},
        }),
        (k.clone(), v.clone()).prop_map(|(key, value)| KvOp::Put {
            key,
            value,
            expiry: Expiry::Persist {},
            cond: Cond::Always {},
            return_old: true,
        }),
        k.prop_map(|key| KvOp::Delete { key }),
        (any::<bool>(), 1u32..20).prop_map(|(reverse, limit)| KvOp::Scan {
            start: Bytes::new(),
            end: Bytes::new(),
            limit,
            reverse,
            keys_only: false,
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn masstree_store_matches_the_model_store(ops in prop::collection::vec((op(), 0u64..3), 1..120)) {
        let mut model = Db::new().at(1_000);
        let mut tree = Db::on(MasstreeStore::new()).at(1_000);
        for (op, step) in ops {
            model.now_ms += step * 10;
            tree.now_ms = model.now_ms;
            let a = model.run(&op);
            let b = tree.run(&op);
            prop_assert_eq!(a, b, "op {:?}", op);
            for reverse in [false, true] {
                prop_assert_eq!(
                    model.store.scan(b"", None, usize::MAX, reverse),
                    tree.store.scan(b"", None, usize::MAX, reverse)
                );
            }
            prop_assert_eq!(
                model.store.scan(b"k3", Some(b"k7"), 3, true),
                tree.store.scan(b"k3", Some(b"k7"), 3, true)
            );
        }
    }
}
