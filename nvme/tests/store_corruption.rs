//! Bad superblocks and segment tables give errors, never panics: every byte of both
//! superblock records and both table slots is flipped in turn (one copy: the other copy takes
//! over; both copies: an error), and the device is truncated at many lengths.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use common::{BS, SEG, must_format, view};
use futures_lite::future::block_on;
use nvme::store::format::{SUPERBLOCK_LEN, SUPERBLOCK_OFFSETS};
use nvme::{Error, MemDevice, OwnerTag, SegmentId, SegmentStore};

const SEGMENTS: u64 = 8;

/// A formatted image whose two table slots are both valid (sequence 4 current, 3 older).
fn image() -> (Vec<u8>, common::View, common::View, [u64; 2]) {
    block_on(async {
        let mut s = SegmentStore::open(must_format(SEGMENTS)).await.unwrap();
        s.allocate(OwnerTag(1)).await.unwrap();
        s.allocate(OwnerTag(2)).await.unwrap();
        let older = view(&s);
        s.free(SegmentId(0)).await.unwrap();
        let newer = view(&s);
        let sb = *s.superblock();
        let cur = sb.slot_offset(if s.sequence() % 2 == 1 { 0 } else { 1 });
        let old = sb.slot_offset(if s.sequence() % 2 == 1 { 1 } else { 0 });
        (s.into_device().into_bytes(), older, newer, [cur, old])
    })
}

fn open(bytes: Vec<u8>) -> nvme::Result<common::View> {
    block_on(async {
        let s = SegmentStore::open(MemDevice::from_bytes(bytes, BS).unwrap()).await?;
        Ok(view(&s))
    })
}

/// One flipped superblock copy is survived through the other; both flipped is an error.
#[test]
fn flipped_superblock_bytes_give_errors_not_panics() {
    let (img, _, newer, _) = image();
    for i in 0..SUPERBLOCK_LEN {
        let mut one = img.clone();
        one[SUPERBLOCK_OFFSETS[0] as usize + i] ^= 0xff;
        assert_eq!(open(one).unwrap(), newer, "byte {i} of copy A");
        let mut both = img.clone();
        for off in SUPERBLOCK_OFFSETS {
            both[off as usize + i] ^= 0xff;
        }
        let err = open(both).expect_err("both copies flipped must not open");
        assert!(
            matches!(
                err,
                Error::NotFormatted | Error::Corruption { .. } | Error::UnsupportedVersion { .. }
            ),
            "byte {i}: {err}"
        );
    }
}

/// A flipped byte in the current table slot falls back to the older slot; in both slots it is
/// an error. Bytes past the entries (padding) are ignored.
#[test]
fn flipped_table_bytes_give_errors_not_panics() {
    let (img, older, newer, [cur, old]) = image();
    let used = 64 + 16 * SEGMENTS as usize;
    for i in 0..BS {
        let mut one = img.clone();
        one[cur as usize + i] ^= 0xff;
        let got = open(one).unwrap();
        if i < used {
            assert_eq!(got, older, "byte {i} of the current slot");
        } else {
            assert_eq!(got, newer, "padding byte {i}");
        }
        let mut both = img.clone();
        both[cur as usize + i] ^= 0xff;
        both[old as usize + i] ^= 0xff;
        match open(both) {
            Err(Error::Corruption { what, .. }) => {
                assert!(i < used);
                assert_eq!(what, "segment table");
            }
            Ok(v) => assert!(i >= used && v == newer, "byte {i}"),
            Err(e) => panic!("byte {i}: unexpected {e}"),
        }
    }
}

/// A device cut short anywhere gives an error.
#[test]
fn truncated_devices_give_errors() {
    let (img, _, _, _) = image();
    let mut len = 0;
    while len < img.len() {
        let err = open(img[..len].to_vec()).expect_err("truncated device must not open");
        assert!(
            matches!(
                err,
                Error::NotFormatted | Error::DeviceTruncated { .. } | Error::Corruption { .. }
            ),
            "len {len}: {err}"
        );
        len += BS;
    }
    assert!(open(img).is_ok());
}

/// A device formatted with one block size is refused, with a clear error, at another.
#[test]
fn other_block_size_is_refused() {
    let (img, _, _, _) = image();
    let err = block_on(SegmentStore::open(MemDevice::from_bytes(img, 512).unwrap())).unwrap_err();
    assert!(matches!(
        err,
        Error::BlockSizeMismatch {
            formatted: 4096,
            device: 512
        }
    ));
    assert!(err.to_string().contains("block size 4096"), "{err}");

    // And the other way round: formatted at 512, opened at 4096.
    let dev = MemDevice::new(1 << 20, 512).unwrap();
    let opts = nvme::FormatOptions {
        segment_size: SEG,
        uuid: Some(nvme::store::format::DeviceUuid([1; 16])),
    };
    let s = block_on(SegmentStore::format(dev, opts)).unwrap();
    let img = s.into_device().into_bytes();
    let err = block_on(SegmentStore::open(
        MemDevice::from_bytes(img, 4096).unwrap(),
    ))
    .unwrap_err();
    assert!(matches!(
        err,
        Error::BlockSizeMismatch { formatted: 512, .. }
    ));
}

/// A version this build does not know is refused as such, not as corruption.
#[test]
fn unknown_version_is_refused() {
    let (mut img, _, _, _) = image();
    for off in SUPERBLOCK_OFFSETS {
        img[off as usize + 8] = 2;
    }
    let err = open(img).unwrap_err();
    assert!(
        matches!(
            err,
            Error::UnsupportedVersion {
                found: 2,
                supported: 1
            }
        ),
        "{err}"
    );
}

/// An unformatted (zeroed) or random device is refused, never panics.
#[test]
fn unformatted_and_random_devices_are_refused() {
    assert!(matches!(open(vec![0; 1 << 20]), Err(Error::NotFormatted)));
    let mut x = 99u64;
    let junk: Vec<u8> = (0..1 << 20)
        .map(|_| {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
            (x >> 56) as u8
        })
        .collect();
    assert!(open(junk).is_err());
}
