//! Corruption of the key index on the device (docs/format/key-index.md §8): a flipped byte in a
//! data block is an error on the reads that reach it (gets and scans), never data; in a run's
//! index chunk, bloom chunk or footer it fails open with `Corruption`; in one copy of a
//! manifest record it is passed over (the other copy is used); in both copies it falls back to
//! the previous manifest, whose runs are checked segment by segment — a run freed since is
//! `Corruption`, never old data.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod lsm_common;

use engines::lsm::format::{BlockLoc, Footer, FrameKind, decode_frame, decode_index_chunk};
use engines::lsm::manifest::{Manifest, record_len, scan_segment};
use engines::lsm::{Error, KeyIndex, LogIndex, RangeId, RunId, SharedStore};
use futures_lite::future::block_on;
use lsm_common::{
    BS, MANIFEST, Model, batch, cfg, checkpoint, close, must_equal, must_format, must_open, rng,
};
use nvme::{BlockDevice, MemDevice, SegmentId};

/// Where things are on a device: the current manifest, the manifest record copies, and per
/// run the device offsets of its footer, index chunks, bloom chunks and data blocks.
struct Layout {
    manifest: Manifest,
    /// (device offset, padded length) of each record copy, in write order.
    copies: Vec<(u64, usize)>,
    runs: Vec<RunLayout>,
}

struct RunLayout {
    footer: u64,
    index: Vec<u64>,
    bloom: Vec<u64>,
    data: Vec<u64>,
}

fn layout(dev: MemDevice) -> (MemDevice, Layout) {
    block_on(async {
        let store = SharedStore::open(dev).await.unwrap();
        let dev = store.device();
        let mseg = store.segments_of(MANIFEST).await.unwrap()[0];
        let manifest = scan_segment(&**dev, &mseg).await.unwrap().newest.unwrap();
        let mut copies = Vec::new();
        let mut pos = 0;
        loop {
            let head = dev.read(mseg.offset + pos, BS).await.unwrap();
            let Some(len) = record_len(&head) else { break };
            let padded = len.div_ceil(BS) * BS;
            copies.push((mseg.offset + pos, padded));
            pos += padded as u64;
        }
        let mut runs = Vec::new();
        for r in &manifest.runs {
            let at = |l: &BlockLoc| {
                store.segment_offset(SegmentId(r.segments[l.part as usize].0)) + l.offset
            };
            let frame = |l: BlockLoc, kind| {
                let store = store.clone();
                let off = at(&l);
                async move {
                    let b = store.device().read(off, l.len as usize).await.unwrap();
                    decode_frame(&b, kind, r.id).unwrap().to_vec()
                }
            };
            let f = Footer::decode(&frame(r.footer, FrameKind::Footer).await).unwrap();
            let mut data = Vec::new();
            for l in &f.index_chunks {
                for (_, b) in decode_index_chunk(&frame(*l, FrameKind::Index).await).unwrap() {
                    data.push(at(&b));
                }
            }
            runs.push(RunLayout {
                footer: at(&r.footer),
                index: f.index_chunks.iter().map(at).collect(),
                bloom: f.bloom_chunks.iter().map(at).collect(),
                data,
            });
        }
        (
            store.into_device().unwrap(),
            Layout {
                manifest,
                copies,
                runs,
            },
        )
    })
}

/// Flips one byte at device offset `at` (inside a frame's header or payload when `at` is a
/// frame start plus a small offset).
fn flip(dev: &MemDevice, at: u64) {
    dev.with_bytes_mut(|b| b[at as usize] ^= 0x20);
}

/// Builds an index with `checkpoints` checkpoints of 1500 changes; returns it closed and the
/// model after each checkpoint.
fn build(checkpoints: u64) -> (MemDevice, Vec<Model>) {
    block_on(async {
        let ix = must_open(must_format(60)).await;
        let mut r = rng(3);
        let mut model = Model::default();
        let mut models = Vec::new();
        for i in 0..checkpoints {
            let b = batch(&mut r, 1500, 2500);
            let applied = [(RangeId(1), LogIndex(i + 1))];
            checkpoint(&ix, &b, &applied).await.unwrap();
            model.apply(&b, &applied);
            models.push(model.clone());
        }
        (close(ix), models)
    })
}

fn is_corruption(e: &Error) -> bool {
    matches!(e, Error::Corruption { .. })
}

/// A flipped byte in a data block of the newest run: gets that reach it fail, the others
/// answer correctly, and a full scan fails; nothing answers wrong data.
#[test]
fn flipped_byte_in_a_data_block_is_an_error_never_data() {
    let (dev, models) = build(2);
    let (dev, lay) = layout(dev);
    let newest = &lay.runs[0];
    assert!(newest.data.len() > 4, "{} blocks", newest.data.len());
    flip(&dev, newest.data[2] + 40);
    block_on(async {
        let ix = must_open(dev).await;
        let model = models.last().unwrap();
        let (mut errors, mut right) = (0, 0);
        for n in 0..2500 {
            let k = lsm_common::key(n);
            match ix.get(&k).await {
                Ok(v) => {
                    assert_eq!(v, model.live.get(&k).copied(), "wrong data for key {n}");
                    right += 1;
                }
                Err(e) => {
                    assert!(is_corruption(&e), "{e}");
                    errors += 1;
                }
            }
        }
        assert!(
            errors > 10 && right > 1000,
            "{errors} errors, {right} right"
        );
        let mut it = ix.range(&[], None);
        let res = loop {
            match it.next().await {
                Ok(Some((k, v))) => {
                    assert_eq!(model.live.get(&*k), Some(&v), "scan returned wrong data")
                }
                Ok(None) => break None,
                Err(e) => break Some(e),
            }
        };
        assert!(
            res.is_some_and(|e| is_corruption(&e)),
            "the scan must fail at the damaged block"
        );
        assert!(ix.metrics().checksum_failures_total > 10);
    });
}

/// A flipped byte in a run's footer, an index chunk or a bloom chunk fails open with
/// `Corruption` (the run cannot be loaded).
#[test]
fn flipped_byte_in_a_footer_index_or_bloom_chunk_fails_open() {
    let (dev, _) = build(2);
    let (dev, lay) = layout(dev);
    let image = dev.into_bytes();
    for run in &lay.runs {
        for at in [
            run.footer + 30,
            run.index[0] + 50,
            run.bloom[0] + 100,
            run.footer + 2,
        ] {
            let dev = MemDevice::from_bytes(image.clone(), BS).unwrap();
            flip(&dev, at);
            let res = block_on(async {
                let store = SharedStore::open(dev).await.unwrap();
                KeyIndex::open(store, cfg()).await.map(|_| ())
            });
            let e = res.expect_err("open must fail");
            assert!(is_corruption(&e), "{e}");
        }
    }
}

/// One damaged copy of the newest manifest record is passed over: the state is exact. Both
/// copies damaged: the previous manifest, exactly (its runs are still there).
#[test]
fn damaged_manifest_copies_fall_back_to_the_other_copy_or_the_previous_record() {
    let (dev, models) = build(3);
    let (dev, lay) = layout(dev);
    assert_eq!(lay.manifest.seq, 3);
    let image = dev.into_bytes();
    let n = lay.copies.len();
    let (a, b) = (lay.copies[n - 2].0, lay.copies[n - 1].0);
    block_on(async {
        let dev = MemDevice::from_bytes(image.clone(), BS).unwrap();
        flip(&dev, a + 40);
        let store = SharedStore::open(dev).await.unwrap();
        let (ix, rep) = KeyIndex::open(store, cfg()).await.unwrap();
        assert_eq!(rep.manifest_seq, 3);
        must_equal(&ix, &models[2], "one copy damaged").await;

        let dev = MemDevice::from_bytes(image.clone(), BS).unwrap();
        flip(&dev, a + 40);
        flip(&dev, b + 12);
        let store = SharedStore::open(dev).await.unwrap();
        let (ix, rep) = KeyIndex::open(store, cfg()).await.unwrap();
        assert_eq!(rep.manifest_seq, 2);
        let newest_segments = lay.manifest.runs[0].segments.len();
        assert_eq!(
            rep.freed_segments, newest_segments,
            "the newest run is freed"
        );
        must_equal(&ix, &models[1], "both copies damaged").await;
    });
}

/// When the previous manifest names runs a compaction freed since, falling back to it is
/// `Corruption` at open — never the old runs' stale (or reused) bytes.
#[test]
fn falling_back_to_a_manifest_whose_runs_were_freed_is_an_error() {
    let (dev, _) = build(3);
    let dev = block_on(async {
        let ix = must_open(dev).await;
        let rep = ix.compact_all().await.unwrap().unwrap();
        assert_eq!(rep.inputs.len(), 3);
        assert_eq!(ix.runs().len(), 1);
        assert_ne!(ix.runs()[0].id, RunId(0));
        close(ix)
    });
    let (dev, lay) = layout(dev);
    let n = lay.copies.len();
    flip(&dev, lay.copies[n - 2].0 + 40);
    flip(&dev, lay.copies[n - 1].0 + 40);
    let res = block_on(async {
        let store = SharedStore::open(dev).await.unwrap();
        KeyIndex::open(store, cfg()).await.map(|_| ())
    });
    let e = res.expect_err("the previous manifest's runs are gone");
    assert!(is_corruption(&e), "{e}");
}

/// Right after a manifest rotation the new segment holds one record; the old segment is kept
/// until a second record is written there, so damage to both copies of that one record falls
/// back to the previous record in the old segment (exactly its state). After a second record
/// the old segment is freed.
#[test]
fn the_first_record_of_a_new_manifest_segment_has_a_fallback() {
    block_on(async {
        let ix = must_open(must_format(40)).await;
        let mut model = Model::default();
        let mut prev = model.clone();
        let mut r = rng(12);
        let mut i = 0;
        while ix.store().segments_of(MANIFEST).await.unwrap().len() < 2 {
            i += 1;
            assert!(i < 100, "the manifest never rotated");
            let b = batch(&mut r, 5, 100);
            let applied = [(RangeId(3), LogIndex(i))];
            prev = model.clone();
            checkpoint(&ix, &b, &applied).await.unwrap();
            model.apply(&b, &applied);
        }
        let dev = close(ix);
        let image = dev.into_bytes();
        // Damage both copies of the one record in the newest segment: the previous record
        // (in the old segment) is the state.
        let damaged = {
            let dev = MemDevice::from_bytes(image.clone(), BS).unwrap();
            let store = SharedStore::open(dev).await.unwrap();
            let mut newest = None;
            for seg in store.segments_of(MANIFEST).await.unwrap() {
                let r = scan_segment(&**store.device(), &seg).await.unwrap();
                let seq = r.newest.unwrap().seq;
                if newest.is_none_or(|(s, _)| seq > s) {
                    newest = Some((seq, seg));
                }
                assert!(r.copies > 0);
            }
            let seg = newest.unwrap().1;
            let head = store.device().read(seg.offset, BS).await.unwrap();
            let padded = record_len(&head).unwrap().div_ceil(BS) * BS;
            let dev = store.into_device().unwrap();
            flip(&dev, seg.offset + 40);
            flip(&dev, seg.offset + padded as u64 + 40);
            dev
        };
        let ix = must_open(damaged).await;
        must_equal(&ix, &prev, "fallback to the old manifest segment").await;
        // Undamaged: the newest state; two more writes free the old segment.
        let ix2 = must_open(MemDevice::from_bytes(image, BS).unwrap()).await;
        must_equal(&ix2, &model, "newest").await;
        checkpoint(&ix2, &batch(&mut r, 5, 100), &[]).await.unwrap();
        checkpoint(&ix2, &batch(&mut r, 5, 100), &[]).await.unwrap();
        assert_eq!(ix2.store().segments_of(MANIFEST).await.unwrap().len(), 1);
        drop(ix);
    });
}
