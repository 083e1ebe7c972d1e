//! Segment store behaviour on the in-memory device: allocation order, generations, space
//! accounting, listing, persistence across reopen, refusals, and poisoning after a failed
//! update.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use common::{SEG, must_format, view};
use futures_lite::future::block_on;
use nvme::{Error, Fault, FaultAction, FaultyDevice, OpKind, OwnerTag, SegmentId, SegmentStore};

/// Allocates every segment, checks accounting and listing, frees and reallocates (the
/// generation grows), and reopens to the same state.
#[test]
fn allocates_frees_and_accounts_space() {
    block_on(async {
        let mut s = SegmentStore::open(must_format(4)).await.unwrap();
        let sp = s.space();
        assert_eq!(
            (sp.capacity_bytes, sp.used_bytes, sp.free_bytes),
            (4 * SEG, 0, 4 * SEG)
        );
        let mut segs = Vec::new();
        for i in 0..4 {
            segs.push(s.allocate(OwnerTag(100 + i)).await.unwrap());
        }
        assert!(matches!(
            s.allocate(OwnerTag(1)).await,
            Err(Error::NoSpace { segments: 4 })
        ));
        assert_eq!(s.space().free_bytes, 0);
        assert_eq!(s.space().used_bytes, 4 * SEG);
        let sb = *s.superblock();
        for (i, g) in segs.iter().enumerate() {
            assert_eq!(g.id, SegmentId(i as u32));
            assert_eq!(g.offset, sb.data_offset + i as u64 * SEG);
            assert_eq!(g.len, SEG);
            assert_eq!(g.generation.0, 1);
            assert!(g.offset + g.len <= nvme::BlockDevice::capacity(s.device()));
        }
        s.free(SegmentId(2)).await.unwrap();
        assert!(matches!(
            s.free(SegmentId(2)).await,
            Err(Error::NotAllocated(2))
        ));
        assert!(matches!(
            s.free(SegmentId(40)).await,
            Err(Error::NotAllocated(40))
        ));
        assert_eq!(s.segments().count(), 3);
        assert!(s.segment(SegmentId(2)).is_none());
        let again = s.allocate(OwnerTag(7)).await.unwrap();
        assert_eq!((again.id.0, again.generation.0, again.owner.0), (2, 2, 7));
        let before = view(&s);
        let s = SegmentStore::open(s.into_device()).await.unwrap();
        assert_eq!(view(&s), before);
        assert_eq!(s.space().used_bytes, 4 * SEG);
    });
}

/// A failed table write poisons the store: later calls return `DeviceFailed` until reopen,
/// and the reopened store shows the state before the failed update.
#[test]
fn failed_update_poisons_until_reopen() {
    block_on(async {
        let dev = FaultyDevice::new(must_format(4));
        // open: 4 reads + 1 flush; then allocate = 1 read (undo image) + write + flush.
        dev.schedule(Fault {
            kind: OpKind::Write,
            nth: 1,
            action: FaultAction::Eio,
        });
        let mut s = SegmentStore::open(dev).await.unwrap();
        s.allocate(OwnerTag(1)).await.unwrap();
        let before = view(&s);
        assert!(matches!(
            s.allocate(OwnerTag(2)).await,
            Err(Error::Io { .. })
        ));
        assert!(matches!(
            s.allocate(OwnerTag(3)).await,
            Err(Error::DeviceFailed)
        ));
        assert!(matches!(
            s.free(SegmentId(0)).await,
            Err(Error::DeviceFailed)
        ));
        let dev = s.into_device().into_inner();
        let s = SegmentStore::open(dev).await.unwrap();
        assert_eq!(view(&s), before);
    });
}

/// Format refuses sizes that cannot work.
#[test]
fn format_refuses_bad_geometry() {
    block_on(async {
        let opts = |segment_size| nvme::FormatOptions {
            segment_size,
            uuid: Some(nvme::store::format::DeviceUuid([3; 16])),
        };
        let small = nvme::MemDevice::new(192 * 1024, 4096).unwrap();
        assert!(matches!(
            SegmentStore::format(small, opts(SEG)).await,
            Err(Error::InvalidArgument(_))
        ));
        let dev = nvme::MemDevice::new(1 << 20, 4096).unwrap();
        assert!(matches!(
            SegmentStore::format(dev, opts(1000)).await,
            Err(Error::InvalidArgument(_))
        ));
    });
}

/// A store on a shared (`Rc`) device: another handle writes and reads segment contents while
/// the store keeps the table.
#[test]
fn store_on_shared_device() {
    block_on(async {
        let dev = std::rc::Rc::new(must_format(4));
        let mut s = SegmentStore::open(std::rc::Rc::clone(&dev)).await.unwrap();
        let seg = s.allocate(OwnerTag(9)).await.unwrap();
        nvme::BlockDeviceExt::write_copy(&*dev, seg.offset, b"hello")
            .await
            .unwrap();
        let r = nvme::BlockDevice::read(&dev, seg.offset, 4096)
            .await
            .unwrap();
        assert_eq!(&r[..5], b"hello");
        s.free(seg.id).await.unwrap();
        assert_eq!(s.space().used_bytes, 0);
    });
}
