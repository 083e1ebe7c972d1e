//! One step of the garbage collector: copy the live values of the victim segments to the
//! head of the shard log and swap the engine's pointers (`server::gc` drives the steps).
//!
//! A step takes the entries a bounded walk of the engine finds pointing into a victim
//! ([`GcWalk`]), drops the pointers of the hot ones (a value backed by its Raft entry and in
//! memory needs no copy: it reaches the next checkpoint from memory; an index-mode log short
//! of room copies them from memory instead, [`GcEngine::copies_hot`]), reads the bytes of the
//! cold ones ([`READS_IN_FLIGHT`] device reads in flight
//! together, checksums checked; a transient one is in memory already), appends them all as
//! *relocated* records (kind 4, tag [`relocation_tag`], `docs/format/shard-log.md` §3) in one
//! append — one group commit — and, once it is acknowledged, points each entry at its copy if
//! it still holds the old pointer (a write in between wins; its copy is dead bytes).
//!
//! Runtime-free: the engine is reached through [`GcEngine`] and the log is any
//! [`Vlog`], so the model test drives the same code on the `faulty` device.

use std::collections::BTreeSet;

use bytes::Bytes;
use engines::vlog::gc::relocation_tag;
use engines::vlog::{
    AppendRecord, Error as LogError, LogPointer, LogRecord, SegmentId, ValueSpan, Vlog,
};
use net::RangeId;
use nvme::BlockDevice;

use super::cold::{READS_IN_FLIGHT, join_all};
use crate::range::engine::{GcItem, GcWalk};

/// The engine as the collector needs it.
pub trait GcEngine {
    /// Entries from `from` on pointing into `victims`, and where to continue
    /// ([`crate::range::engine::MasstreeStore::gc_items`]).
    fn items(
        &self,
        from: &[u8],
        victims: &BTreeSet<SegmentId>,
        walk: GcWalk,
    ) -> (Vec<GcItem>, Option<Bytes>);
    /// The range holding `key` (0: none), recorded in the relocated record.
    fn range_of(&self, key: &[u8]) -> u64;
    /// Swaps `key`'s pointer from `old` to `new` if it still is `old`.
    fn relocate(&self, key: &[u8], old: LogPointer, new: LogPointer) -> bool;
    /// Drops `key`'s pointer if it still is `old` and the value is hot
    /// ([`crate::range::engine::MasstreeStore::unback`]): nothing to copy.
    fn unback(&self, key: &[u8], old: LogPointer) -> bool;
    /// Whether hot values are copied like cold ones instead of unbacked: an index-mode log
    /// short of room (the next checkpoint would write an unbacked value into the same log
    /// anyway, together with every other pending one; the copy is made now, inside the
    /// pass and its byte budget). Otherwise unbacking is cheaper: the checkpoint writes
    /// the values in bulk, and skips those overwritten meanwhile.
    fn copies_hot(&self) -> bool;
}

/// Why a step failed. Nothing is lost: the entries keep their old pointers, the victims
/// stay pinned.
#[derive(Debug, thiserror::Error)]
pub enum GcError {
    /// Reading a live value failed (device error or checksum).
    #[error("read a live value: {0}")]
    Read(#[source] LogError),
    /// Appending the copies failed.
    #[error("append relocated values: {0}")]
    Write(#[source] LogError),
    /// The log returned no value pointer for a copy (a broken invariant of the log).
    #[error("the shard log returned no value pointer for a relocated value")]
    NoPointer,
}

/// What a step did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StepReport {
    /// Entries found pointing into a victim.
    pub items: u64,
    /// Entries now pointing at their copy.
    pub relocated: u64,
    /// Entries written meanwhile (their copy is dead).
    pub lost_races: u64,
    /// Hot entries whose pointer was dropped instead (their value is in memory).
    pub unbacked: u64,
    /// Value bytes those pointers named (freed without a copy).
    pub unbacked_bytes: u64,
    /// Value bytes read from the device.
    pub read_bytes: u64,
    /// Value bytes copied (relocated entries only).
    pub moved_bytes: u64,
    /// Record bytes appended (every copy).
    pub written_bytes: u64,
}

/// Runs one step from `from`; returns what it did and where the next step starts (`None`:
/// the walk reached the end of the engine).
pub async fn step<D: BlockDevice, E: GcEngine>(
    log: &Vlog<D>,
    engine: &E,
    victims: &BTreeSet<SegmentId>,
    from: &[u8],
    walk: GcWalk,
) -> Result<(StepReport, Option<Bytes>), GcError> {
    let (items, next) = engine.items(from, victims, walk);
    let mut rep = StepReport {
        items: items.len() as u64,
        ..StepReport::default()
    };
    // A hot value backed by a victim needs no copy (unless the engine copies hot values):
    // its pointer is dropped, and the value reaches the next checkpoint from memory. The
    // rest (cold, or transient) are copied.
    let copies_hot = engine.copies_hot();
    let items: Vec<GcItem> = items
        .into_iter()
        .filter(|it| {
            let unbacked = !copies_hot && it.inline.is_some() && engine.unback(&it.key, it.pointer);
            if unbacked {
                rep.unbacked += 1;
                rep.unbacked_bytes += u64::from(it.pointer.len);
            }
            !unbacked
        })
        .collect();
    if items.is_empty() {
        return Ok((rep, next));
    }
    let values = read_values(log, &items, &mut rep).await?;
    let records: Vec<AppendRecord> = items
        .iter()
        .zip(&values)
        .map(|(it, v)| AppendRecord {
            record: LogRecord::Relocated {
                range: RangeId(engine.range_of(&it.key)),
                tag: relocation_tag(it.pointer.segment),
                value: named(&it.pointer, v).to_vec(),
            },
            value: Some(ValueSpan {
                offset: 0,
                len: it.pointer.len,
            }),
        })
        .collect();
    rep.written_bytes = records.iter().map(|r| r.record.encoded_len() as u64).sum();
    let appended = log.append(records).await.map_err(GcError::Write)?;
    for (it, a) in items.iter().zip(appended) {
        // The copy holds the named bytes: it stands for the same bytes with the same byte.
        let new = a
            .value
            .ok_or(GcError::NoPointer)?
            .with_leading(it.pointer.leading_byte());
        if engine.relocate(&it.key, it.pointer, new) {
            rep.relocated += 1;
            rep.moved_bytes += u64::from(it.pointer.len);
        } else {
            rep.lost_races += 1;
        }
    }
    Ok((rep, next))
}

/// The bytes `p` names inside `stored`, the bytes it stands for: without its leading byte.
fn named<'a>(p: &LogPointer, stored: &'a Bytes) -> &'a [u8] {
    let skip = usize::from(p.leading_byte().is_some());
    stored.get(skip..).unwrap_or_default()
}

/// The bytes every item stands for: in memory, or read from the log.
async fn read_values<D: BlockDevice>(
    log: &Vlog<D>,
    items: &[GcItem],
    rep: &mut StepReport,
) -> Result<Vec<Bytes>, GcError> {
    let cold: Vec<LogPointer> = items
        .iter()
        .filter(|i| i.inline.is_none())
        .map(|i| i.pointer)
        .collect();
    let mut read = Vec::with_capacity(cold.len());
    for chunk in cold.chunks(READS_IN_FLIGHT) {
        for r in join_all(chunk.iter().map(|p| log.read_value(p)).collect()).await {
            let v = r.map_err(GcError::Read)?;
            rep.read_bytes += v.len() as u64;
            read.push(Bytes::from(v));
        }
    }
    let mut read = read.into_iter();
    Ok(items
        .iter()
        .map(|i| match &i.inline {
            Some(v) => v.clone(),
            None => read.next().expect("one read per cold item"),
        })
        .collect())
}
