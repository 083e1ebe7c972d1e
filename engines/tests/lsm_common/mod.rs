//! Helpers shared by the key-index tests: formatted devices, the configuration, a model of the
//! index (a `BTreeMap`), seeded entries, and a check that the index equals a model.
#![allow(dead_code)]

use std::collections::BTreeMap;

use engines::lsm::{
    IndexEntry, IndexValue, KeyIndex, LogIndex, LogPointer, LsmConfig, RangeId, SharedStore,
};
use engines::masstree::SegmentId;
use nvme::store::format::DeviceUuid;
use nvme::{BlockDevice, FormatOptions, MemDevice, OwnerTag, SegmentStore};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Block size of the test devices.
pub const BS: usize = 4096;
/// Segment size of the test devices (small, so runs span several segments).
pub const SEG: u64 = 128 * 1024;
/// Owner tag of run segments.
pub const RUNS: OwnerTag = OwnerTag(0x4c53_4d52);
/// Owner tag of manifest segments.
pub const MANIFEST: OwnerTag = OwnerTag(0x4c53_4d4d);

/// Returns a formatted in-memory device with `segments` segments.
pub fn must_format(segments: u64) -> MemDevice {
    let dev = MemDevice::new((1 << 20) + segments * SEG, BS).unwrap();
    let store = futures_lite::future::block_on(SegmentStore::format(
        dev,
        FormatOptions {
            segment_size: SEG,
            uuid: Some(DeviceUuid([0x4b; 16])),
        },
    ))
    .unwrap();
    store.into_device()
}

/// The configuration the tests use: the smallest write buffer, so writes are many.
pub fn cfg() -> LsmConfig {
    LsmConfig {
        write_buf_bytes: 128 * 1024,
        ..LsmConfig::new(RUNS, MANIFEST)
    }
}

/// Opens the store and the index on `dev`, panicking on failure.
pub async fn must_open<D: BlockDevice>(dev: D) -> KeyIndex<D> {
    let store = SharedStore::open(dev).await.unwrap();
    KeyIndex::open(store, cfg()).await.unwrap().0
}

/// Closes the index and returns its device.
pub fn close<D: BlockDevice>(ix: KeyIndex<D>) -> D {
    ix.into_store().into_device().unwrap()
}

/// The model of the durable index: every live key's value, and each range's applied index.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Model {
    pub live: BTreeMap<Vec<u8>, IndexValue>,
    pub applied: BTreeMap<RangeId, LogIndex>,
}

impl Model {
    /// Applies a checkpoint's entries and applied indexes.
    pub fn apply(
        &mut self,
        batch: &BTreeMap<Vec<u8>, IndexEntry>,
        applied: &[(RangeId, LogIndex)],
    ) {
        for (k, e) in batch {
            match e {
                IndexEntry::Value(v) => {
                    self.live.insert(k.clone(), *v);
                }
                IndexEntry::Tombstone => {
                    self.live.remove(k);
                }
            }
        }
        for (r, i) in applied {
            self.applied.insert(*r, *i);
        }
    }
}

/// Returns the key numbered `n`: mostly short, some a few KiB, one of 64 KiB.
pub fn key(n: u64) -> Vec<u8> {
    let mut k = format!("r\x00{:02}key{:06}", n % 7, n).into_bytes();
    if n % 97 == 5 {
        k.extend(std::iter::repeat_n(b'x', 500 + (n as usize * 37) % 4000));
    }
    if n == 4242 {
        k.resize(engines::lsm::format::MAX_KEY_LEN, b'z');
    }
    k
}

/// Returns a seeded value: pointer fields, expiry on some, a type byte.
pub fn value(rng: &mut StdRng) -> IndexValue {
    IndexValue {
        pointer: LogPointer {
            segment: SegmentId(rng.gen_range(0..64)),
            offset: rng.gen_range(0..1 << 30),
            len: rng.gen_range(1..1 << 20),
            checksum: rng.r#gen(),
        },
        expire_at_ms: if rng.gen_bool(0.3) {
            rng.gen_range(1..1 << 45)
        } else {
            0
        },
        value_type: rng.gen_range(0..6),
    }
}

/// Returns a seeded batch of `n` changes over keys `0..space` (a fifth of them deletes).
pub fn batch(rng: &mut StdRng, n: usize, space: u64) -> BTreeMap<Vec<u8>, IndexEntry> {
    (0..n)
        .map(|_| {
            let k = key(rng.gen_range(0..space));
            let e = if rng.gen_bool(0.2) {
                IndexEntry::Tombstone
            } else {
                IndexEntry::Value(value(rng))
            };
            (k, e)
        })
        .collect()
}

/// Writes one checkpoint of `batch` with `applied`.
pub async fn checkpoint<D: BlockDevice>(
    ix: &KeyIndex<D>,
    batch: &BTreeMap<Vec<u8>, IndexEntry>,
    applied: &[(RangeId, LogIndex)],
) -> engines::lsm::Result<()> {
    let mut w = ix.checkpoint(batch.len() as u64)?;
    for (k, e) in batch {
        w.push(k, *e).await?;
    }
    w.finish(applied).await.map(|_| ())
}

/// Checks that the index equals `model`: a full scan, gets of (a sample of) the model's keys,
/// and the applied indexes.
pub async fn must_equal<D: BlockDevice>(ix: &KeyIndex<D>, model: &Model, ctx: &str) {
    let mut it = ix.range(&[], None);
    let mut got = BTreeMap::new();
    while let Some((k, v)) = it
        .next()
        .await
        .unwrap_or_else(|e| panic!("{ctx}: scan: {e}"))
    {
        got.insert(k.to_vec(), v);
    }
    drop(it);
    assert_eq!(got.len(), model.live.len(), "{ctx}: live key count");
    assert!(got == model.live, "{ctx}: scan differs from the model");
    // Every key through the scan above; gets of every key of small models, a sample of
    // large ones (each get reads a block).
    let step = (model.live.len() / 400).max(1);
    for (k, v) in model.live.iter().step_by(step) {
        let g = ix
            .get(k)
            .await
            .unwrap_or_else(|e| panic!("{ctx}: get: {e}"));
        assert_eq!(
            g.as_ref(),
            Some(v),
            "{ctx}: get {:?}",
            String::from_utf8_lossy(&k[..k.len().min(20)])
        );
    }
    assert_eq!(ix.applied_all(), model.applied, "{ctx}: applied indexes");
}

/// Returns a seeded RNG.
pub fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}
