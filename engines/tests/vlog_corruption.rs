//! Corruption of the shard log (docs/format/shard-log.md §5): flipped bytes are caught by
//! crc32c; a bad record followed by records of a later batch is reported as `Corruption`,
//! a bad record in the last batch is cut as a torn tail, and a read through a pointer to
//! changed bytes fails instead of returning them.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod vlog_common;

use engines::vlog::{Appended, Error, LogIndex, RangeId, Vlog};
use futures_lite::future::block_on;
use nvme::{BlockDevice, MemDevice, SegmentStore};
use vlog_common::{BS, OWNER, cfg, entry, must_format, must_open, payload};

/// Named `vlog` so that `cargo test -p engines vlog` selects these tests.
mod vlog {
    use super::*;

    /// Writes `n` entries of range 1, one append (one batch) each. Returns the device and the
    /// pointers.
    fn must_write(n: u64, len: usize, segments: u64) -> (MemDevice, Vec<Appended>) {
        block_on(async {
            let log = must_open(must_format(segments), cfg()).await;
            let mut out = Vec::new();
            for i in 1..=n {
                out.push(log.append(vec![entry(1, i, 1, len)]).await.unwrap()[0]);
            }
            (log.into_device().unwrap(), out)
        })
    }

    /// Device offset of a segment's first byte.
    fn segment_offset(dev: MemDevice, seg: u32) -> (MemDevice, u64) {
        block_on(async {
            let store = SegmentStore::open(dev).await.unwrap();
            let off = store.segment(nvme::SegmentId(seg)).unwrap().offset;
            (store.into_device(), off)
        })
    }

    /// Flipping any byte of any record is caught: a record before the last batch gives
    /// `Corruption` at that record; a record of the last batch is cut with everything before it
    /// intact; a padding byte changes nothing. Recovered entries are never wrong.
    #[test]
    fn every_flipped_record_byte_is_corruption_or_a_cut_tail() {
        let (dev, ptrs) = must_write(12, 150, 8);
        let (dev, base) = segment_offset(dev, ptrs[0].record.segment.0);
        let bytes = dev.into_bytes();
        let last = ptrs.len() - 1;
        let (mut corrupt, mut cut) = (0, 0);
        for (k, p) in ptrs.iter().enumerate() {
            let start = p.record.offset;
            let end = start + u64::from(p.record.len);
            for off in start..end {
                let mut b = bytes.clone();
                b[(base + off) as usize] ^= 0x40;
                let mem = MemDevice::from_bytes(b, BS).unwrap();
                let res = block_on(Vlog::open(mem, OWNER, cfg()));
                if k < last {
                    match res {
                        Err(Error::Corruption { offset, .. }) => {
                            assert_eq!(offset, start, "record {k} byte {off}");
                            corrupt += 1;
                        }
                        other => {
                            panic!("record {k} byte {off}: expected corruption, got {other:?}")
                        }
                    }
                } else {
                    let (log, rep) = res.unwrap();
                    assert_eq!(rep.next_seq, p.seq, "tail cut at the bad record");
                    assert!(rep.cut);
                    assert_eq!(
                        log.bounds(RangeId(1)),
                        Some((LogIndex(1), LogIndex(last as u64)))
                    );
                    for i in 1..=last as u64 {
                        let e = block_on(log.entry(RangeId(1), LogIndex(i)))
                            .unwrap()
                            .unwrap();
                        assert_eq!(e.payload, payload(1, i, 1, 150));
                    }
                    cut += 1;
                }
            }
        }
        assert!(corrupt > 1000 && cut > 100, "{corrupt} {cut}");
    }

    /// Reads through pointers detect bytes changed under a running log.
    #[test]
    fn pointer_reads_on_a_live_log_detect_changed_bytes() {
        block_on(async {
            let log = must_open(must_format(8), cfg()).await;
            let a = log.append(vec![entry(1, 1, 1, 300)]).await.unwrap()[0];
            log.append(vec![entry(1, 2, 1, 300)]).await.unwrap();
            let (dev, base) = {
                let d = log.device();
                let store_off = {
                    // Segment offsets are the store's: recompute from a copy of the bytes.
                    let copy = MemDevice::from_bytes(d.to_bytes(), BS).unwrap();
                    segment_offset(copy, a.record.segment.0).1
                };
                (d, store_off)
            };
            let v = a.value.unwrap();
            assert_eq!(
                log.read_value(&v).await.unwrap(),
                payload(1, 1, 1, 300)[8..]
            );
            dev.with_bytes_mut(|b| b[(base + v.offset + 10) as usize] ^= 1);
            assert!(matches!(
                log.read_value(&v).await,
                Err(Error::Corruption { .. })
            ));
            assert!(matches!(
                log.read_record(&a.record).await,
                Err(Error::Corruption { .. })
            ));
            // The cache still serves the entry, the device read does not.
            let _ = log.entry(RangeId(1), LogIndex(1)).await.unwrap();
        });
    }

    /// A destroyed header of a segment in the middle of the chain is corruption (later segments
    /// prove the log went on), not a silent loss of the segment's records.
    #[test]
    fn corrupt_middle_segment_header_is_reported() {
        let (dev, ptrs) = must_write(300, 700, 16);
        let mut segs: Vec<u32> = ptrs.iter().map(|p| p.record.segment.0).collect();
        segs.dedup();
        assert!(segs.len() >= 3, "{segs:?}");
        let (dev, off) = segment_offset(dev, segs[1]);
        dev.with_bytes_mut(|b| b[off as usize + 40] ^= 1);
        let res = block_on(Vlog::open(dev, OWNER, cfg()));
        assert!(matches!(res, Err(Error::Corruption { .. })), "{res:?}");
    }

    /// Random garbage after the tail (a reused device) is never taken for records: reopen shows
    /// exactly what was written.
    #[test]
    fn garbage_after_the_tail_is_ignored() {
        let (dev, ptrs) = must_write(20, 100, 8);
        let last = ptrs.last().unwrap();
        let (dev, base) = segment_offset(dev, last.record.segment.0);
        let end = base + last.record.offset + u64::from(last.record.len);
        dev.with_bytes_mut(|b| {
            let mut x = 0x1234_5678_u64;
            for byte in &mut b[(end as usize + 8)..(end as usize + 20_000)] {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *byte = x as u8;
            }
        });
        block_on(async {
            let (log, rep) = Vlog::open(dev, OWNER, cfg()).await.unwrap();
            assert_eq!(rep.records, 20);
            assert!(rep.cut, "garbage is zeroed");
            assert_eq!(log.bounds(RangeId(1)), Some((LogIndex(1), LogIndex(20))));
            assert!(log.device().alignment() == BS);
        });
    }
}
