//! Helpers shared by the segment-store tests: a model of the segment table.
#![allow(dead_code)]

use nvme::store::format::DeviceUuid;
use nvme::{BlockDevice, FormatOptions, MemDevice, OwnerTag, SegmentId, SegmentStore};

/// Block size of the test devices.
pub const BS: usize = 4096;
/// Segment size of the test devices.
pub const SEG: u64 = 64 * 1024;

/// A formatted in-memory device with `segments` segments of `SEG` bytes.
pub fn must_format(segments: u64) -> MemDevice {
    // Metadata: 128 KiB of superblocks + 2 table slots of one block, data at 192 KiB (aligned
    // to the segment size).
    let cap = 192 * 1024 + segments * SEG;
    let dev = MemDevice::new(cap, BS).unwrap();
    let store = futures_lite::future::block_on(SegmentStore::format(
        dev,
        FormatOptions {
            segment_size: SEG,
            uuid: Some(DeviceUuid([0x5a; 16])),
        },
    ))
    .unwrap();
    assert_eq!(store.superblock().segment_count, segments);
    store.into_device()
}

/// What a reopened store must show: the table sequence and the allocated segments
/// (id, owner, generation).
pub type View = (u64, Vec<(u32, u64, u32)>);

/// Returns the view of a store.
pub fn view<D: BlockDevice>(s: &SegmentStore<D>) -> View {
    (
        s.sequence(),
        s.segments()
            .map(|g| (g.id.0, g.owner.0, g.generation.0))
            .collect(),
    )
}

/// A plain model of the segment table.
#[derive(Debug, Clone, PartialEq)]
pub struct Model {
    pub seq: u64,
    /// (owner, generation, allocated) per segment.
    pub entries: Vec<(u64, u32, bool)>,
}

impl Model {
    pub fn new(segments: u64) -> Self {
        Self {
            seq: 1,
            entries: vec![(0, 0, false); segments as usize],
        }
    }

    /// Applies an op; returns false if the store must refuse it (no state change).
    pub fn apply(&mut self, op: Op) -> bool {
        match op {
            Op::Alloc(owner) => match self.entries.iter().position(|e| !e.2) {
                Some(i) => {
                    let g = self.entries[i].1 + 1;
                    self.entries[i] = (owner, g, true);
                    self.seq += 1;
                    true
                }
                None => false,
            },
            Op::Free(id) => match self.entries.get(id as usize) {
                Some(e) if e.2 => {
                    let g = e.1;
                    self.entries[id as usize] = (0, g, false);
                    self.seq += 1;
                    true
                }
                _ => false,
            },
        }
    }

    pub fn view(&self) -> View {
        (
            self.seq,
            self.entries
                .iter()
                .enumerate()
                .filter(|(_, e)| e.2)
                .map(|(i, e)| (i as u32, e.0, e.1))
                .collect(),
        )
    }
}

/// One segment-store operation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Op {
    Alloc(u64),
    Free(u32),
}

/// Runs `op` on the store; Ok(true) if applied, Ok(false) if refused as the model predicts.
pub async fn run_op<D: BlockDevice>(s: &mut SegmentStore<D>, op: Op) -> nvme::Result<bool> {
    match op {
        Op::Alloc(o) => match s.allocate(OwnerTag(o)).await {
            Ok(_) => Ok(true),
            Err(nvme::Error::NoSpace { .. }) => Ok(false),
            Err(e) => Err(e),
        },
        Op::Free(id) => match s.free(SegmentId(id)).await {
            Ok(()) => Ok(true),
            Err(nvme::Error::NotAllocated(_)) => Ok(false),
            Err(e) => Err(e),
        },
    }
}
