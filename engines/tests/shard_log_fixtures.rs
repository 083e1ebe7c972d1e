//! Byte-level fixtures of the shard-log format (docs/format/shard-log.md), version 3: a device
//! image written by this release, committed under `tests/fixtures/shard-log/v3/`, must recover
//! to the same log forever, whatever later releases change in the writer.
//!
//! The image holds every record kind (Raft entries of several ranges, a conf-change entry, an
//! entry written as fragments, hard and conf states, demoted and collector-relocated values, a
//! checkpoint, a compaction and a suffix truncation) over several segments, plus the
//! segment store's metadata (docs/format/nvme.md). It is stored sparse: only the blocks that
//! are not all zero, as `offset u64 LE | block` pairs (`device.sparse`); `pointers.txt` names
//! the value pointers the writer got back, which recovery does not index.
//!
//! Regenerate (only for a new format version, in a new directory, keeping the old one):
//! `ENGINES_WRITE_FIXTURES=1 cargo test -p engines --test shard_log_fixtures`.
#![allow(clippy::unwrap_used)]

mod vlog_common;

use std::path::{Path, PathBuf};

use engines::vlog::gc::relocation_tag;
use engines::vlog::{
    AppendRecord, EntryRecord, HardState, LogIndex, LogPointer, LogRecord, RangeId, SegmentId,
    Term, ValueSpan, Vlog,
};
use futures_lite::future::block_on;
use nvme::MemDevice;
use vlog_common::{BS, cfg, entry, must_format, must_open, payload};

/// Segments of the fixture device (64 KiB each).
const SEGMENTS: u64 = 6;
/// Range 3's entries: enough bytes to fill more than one segment.
const FILLER_ENTRIES: u64 = 70;
/// Payload length of the fragmented entry (the test batch maximum is 8 KiB).
const FRAGMENTED_LEN: usize = 20_000;

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/shard-log/v3")
}

fn demoted_value() -> Vec<u8> {
    b"\x00a demoted string value, exactly the bytes the engine stored".to_vec()
}

fn collected_value() -> Vec<u8> {
    payload(9, 9, 9, 300)
}

fn relocated(tag: u64, value: Vec<u8>) -> AppendRecord {
    let len = value.len() as u32;
    AppendRecord {
        record: LogRecord::Relocated {
            range: RangeId(1),
            tag,
            value,
        },
        value: Some(ValueSpan { offset: 0, len }),
    }
}

fn conf_change_entry() -> AppendRecord {
    AppendRecord {
        record: LogRecord::Entry(EntryRecord {
            range: RangeId(2),
            term: Term(1),
            index: LogIndex(2),
            entry_type: 1,
            payload: b"conf change: add voter 7".to_vec(),
        }),
        value: None,
    }
}

fn hard_state(term: u64, vote: u64, commit: u64) -> HardState {
    HardState {
        term: Term(term),
        vote,
        commit: LogIndex(commit),
    }
}

/// Writes the log the fixture holds; returns the device and the two relocated values'
/// pointers.
async fn write_log() -> (MemDevice, Vec<LogPointer>) {
    let log = must_open(must_format(SEGMENTS), cfg()).await;
    let mut first: Vec<AppendRecord> = (1..=6)
        .map(|i| entry(1, i, 1, 10 + 40 * i as usize))
        .collect();
    first.push(entry(2, 1, 1, 64));
    first.push(conf_change_entry());
    first.push(entry(2, 3, 1, 100));
    log.append(first).await.unwrap();
    log.append(vec![entry(1, 7, 1, FRAGMENTED_LEN)])
        .await
        .unwrap();
    for i in 1..=FILLER_ENTRIES {
        log.append_one(entry(3, i, 4, 1000)).await.unwrap();
    }
    log.set_hard_state(RangeId(1), hard_state(1, 1, 5))
        .await
        .unwrap();
    log.append_one(AppendRecord {
        record: LogRecord::ConfState {
            range: RangeId(1),
            data: b"voters 1 2 3".to_vec(),
        },
        value: None,
    })
    .await
    .unwrap();
    let values = log
        .append(vec![
            relocated(0, demoted_value()),
            relocated(relocation_tag(SegmentId(0)), collected_value()),
        ])
        .await
        .unwrap();
    // Raft replaces range 1's entries from 6 on with a new leader's (term 2).
    log.truncate_suffix(RangeId(1), LogIndex(6)).await.unwrap();
    log.append_one(entry(1, 6, 2, 77)).await.unwrap();
    log.set_hard_state(RangeId(1), hard_state(2, 0, 6))
        .await
        .unwrap();
    log.compact(RangeId(2), LogIndex(2)).await.unwrap();
    log.checkpoint(b"index covers the log up to here".to_vec())
        .await
        .unwrap();
    let pointers = values.iter().map(|a| a.value.unwrap()).collect();
    (log.into_device().unwrap(), pointers)
}

fn sparse(image: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, block) in image.chunks(BS).enumerate() {
        if block.iter().any(|&b| b != 0) {
            out.extend_from_slice(&((i * BS) as u64).to_le_bytes());
            out.extend_from_slice(block);
        }
    }
    out
}

fn unsparse(data: &[u8], len: usize) -> Vec<u8> {
    assert_eq!(
        data.len() % (8 + BS),
        0,
        "device.sparse is whole (offset, block) pairs"
    );
    let mut image = vec![0u8; len];
    for pair in data.chunks(8 + BS) {
        let at = u64::from_le_bytes(pair[..8].try_into().unwrap()) as usize;
        image[at..at + BS].copy_from_slice(&pair[8..]);
    }
    image
}

fn pointer_line(p: &LogPointer) -> String {
    format!("{} {} {} {}", p.segment.0, p.offset, p.len, p.checksum)
}

fn parse_pointer(line: &str) -> LogPointer {
    let f: Vec<u64> = line.split(' ').map(|x| x.parse().unwrap()).collect();
    LogPointer {
        segment: SegmentId(f[0] as u32),
        offset: f[1],
        len: f[2] as u32,
        checksum: f[3] as u32,
    }
}

fn write_fixture(dir: &Path) {
    let (dev, pointers) = block_on(write_log());
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("device.sparse"), sparse(&dev.to_bytes())).unwrap();
    let lines: Vec<String> = pointers.iter().map(pointer_line).collect();
    std::fs::write(dir.join("pointers.txt"), lines.join("\n") + "\n").unwrap();
}

fn load_fixture(dir: &Path) -> (MemDevice, Vec<LogPointer>) {
    let len = must_format(SEGMENTS).to_bytes().len();
    let data = std::fs::read(dir.join("device.sparse")).unwrap();
    let dev = MemDevice::from_bytes(unsparse(&data, len), BS).unwrap();
    let text = std::fs::read_to_string(dir.join("pointers.txt")).unwrap();
    (dev, text.lines().map(parse_pointer).collect())
}

async fn assert_entry(log: &Vlog<MemDevice>, range: u64, index: u64, term: u64, len: usize) {
    let e = log
        .entry(RangeId(range), LogIndex(index))
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("entry {range}/{index} missing"));
    assert_eq!(e.term, Term(term), "term of {range}/{index}");
    assert_eq!(
        e.payload,
        payload(range, index, term, len),
        "payload of {range}/{index}"
    );
}

async fn assert_ranges(log: &Vlog<MemDevice>) {
    let bounds = |r| log.bounds(RangeId(r)).unwrap();
    assert_eq!(
        bounds(1),
        (LogIndex(1), LogIndex(6)),
        "range 1 lost its suffix"
    );
    assert_eq!(
        bounds(2),
        (LogIndex(2), LogIndex(3)),
        "range 2 compacted below 2"
    );
    assert_eq!(bounds(3), (LogIndex(1), LogIndex(FILLER_ENTRIES)));
    for i in 1..=5 {
        assert_entry(log, 1, i, 1, 10 + 40 * i as usize).await;
    }
    assert_entry(log, 1, 6, 2, 77).await;
    assert!(log.entry(RangeId(1), LogIndex(7)).await.unwrap().is_none());
    let conf = log.entry(RangeId(2), LogIndex(2)).await.unwrap().unwrap();
    assert_eq!(
        (conf.entry_type, &conf.payload[..]),
        (1, &b"conf change: add voter 7"[..])
    );
    assert_entry(log, 2, 3, 1, 100).await;
    for i in 1..=FILLER_ENTRIES {
        assert_entry(log, 3, i, 4, 1000).await;
    }
}

async fn assert_metadata(log: &Vlog<MemDevice>, pointers: &[LogPointer]) {
    assert_eq!(log.hard_state(RangeId(1)), Some(hard_state(2, 0, 6)));
    assert_eq!(
        log.conf_state(RangeId(1)).as_deref(),
        Some(&b"voters 1 2 3"[..])
    );
    let ckpt = log.last_checkpoint().unwrap();
    assert_eq!(ckpt.data, b"index covers the log up to here");
    assert_eq!(log.read_value(&pointers[0]).await.unwrap(), demoted_value());
    assert_eq!(
        log.read_value(&pointers[1]).await.unwrap(),
        collected_value()
    );
    let record = log.entry_pointer(RangeId(3), LogIndex(1)).unwrap();
    match log.read_record(&record).await.unwrap() {
        LogRecord::Entry(e) => assert_eq!(e.payload, payload(3, 1, 4, 1000)),
        other => panic!("entry pointer read {other:?}"),
    }
}

#[test]
fn version_3_shard_log_recovers_every_record_kind() {
    let dir = fixture_dir();
    if std::env::var_os("ENGINES_WRITE_FIXTURES").is_some() {
        write_fixture(&dir);
    }
    let (dev, pointers) = load_fixture(&dir);
    block_on(async {
        let log = must_open(dev, cfg()).await;
        assert!(
            log.segment_usage().len() >= 2,
            "the fixture spans several segments"
        );
        assert_ranges(&log).await;
        assert_metadata(&log, &pointers).await;
        // The recovered log takes new records after the old ones.
        log.append_one(entry(3, FILLER_ENTRIES + 1, 4, 8))
            .await
            .unwrap();
        assert_entry(&log, 3, FILLER_ENTRIES + 1, 4, 8).await;
    });
}

#[test]
fn version_3_fixture_headers_say_version_3() {
    let (dev, _) = load_fixture(&fixture_dir());
    let image = dev.to_bytes();
    let headers: Vec<usize> = (0..image.len())
        .step_by(BS)
        .filter(|&at| &image[at..at + 8] == b"TKVSLOG1")
        .collect();
    assert!(
        headers.len() >= 2,
        "segment headers found: {}",
        headers.len()
    );
    for at in headers {
        let version = u32::from_le_bytes(image[at + 8..at + 12].try_into().unwrap());
        assert_eq!(version, 3, "segment header at {at}");
    }
}
