//! Arbitrary committed entries through the range state machine, as the live apply loop and
//! recovery both run them: the input is cut into proposals (2-byte little-endian length,
//! then that many bytes); each one that decodes (with its request id, through the dedup
//! wrapper, as the apply loop runs it) is executed on a Masstree store and on the
//! `BTreeMap` model. No panic, no engine fault (`net::limits` keeps every key within the
//! tree's limit), identical results and identical final contents — and replaying the same
//! entries on a fresh store (recovery) gives the same contents again.
#![no_main]

use bytes::Bytes;
use ds_node::range::apply::{ApplyCtx, execute};
use ds_node::range::codec::decode_write;
use ds_node::range::dedup;
use ds_node::range::engine::MasstreeStore;
use ds_node::range::store::{KvStore, ModelStore};
use libfuzzer_sys::fuzz_target;
use net::message::RangeDescriptor;
use net::{Epoch, RangeId};

fn entries(mut data: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    while data.len() >= 2 {
        let n = usize::from(u16::from_le_bytes([data[0], data[1]]));
        let end = (2 + n).min(data.len());
        out.push(&data[2..end]);
        data = &data[end..];
    }
    out
}

fn apply_all<S: KvStore>(store: &mut S, desc: &RangeDescriptor, data: &[u8]) -> Vec<String> {
    let mut results = Vec::new();
    for (i, e) in entries(data).into_iter().enumerate() {
        if let Some((now, id, op)) = decode_write(e) {
            let ctx = ApplyCtx {
                now_ms: now,
                index: i as u64 + 1,
                range: desc,
                zranks: None,
            };
            let r = dedup::apply_once(store, id, &op, now, |s| execute(s, &op, &ctx));
            results.push(format!("{r:?}"));
        }
    }
    results
}

fn contents<S: KvStore>(store: &S) -> Vec<(Bytes, ds_node::range::store::Entry)> {
    store.scan(b"", None, usize::MAX, false)
}

fuzz_target!(|data: &[u8]| {
    let desc = RangeDescriptor {
        id: RangeId(1),
        start: Bytes::new(),
        end: Bytes::new(),
        epoch: Epoch::default(),
        replicas: vec![],
        leader: None,
    };
    let mut tree = MasstreeStore::new();
    let mut model = ModelStore::default();
    let got = apply_all(&mut tree, &desc, data);
    assert_eq!(tree.take_fault(), None, "the engine refused a write");
    assert_eq!(got, apply_all(&mut model, &desc, data));
    assert_eq!(contents(&tree), contents(&model));
    let mut replayed = MasstreeStore::new();
    apply_all(&mut replayed, &desc, data);
    assert_eq!(contents(&replayed), contents(&tree), "recovery diverged");
});
