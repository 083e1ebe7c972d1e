//! Room in the shard log for the ready loop's next group commit.
//!
//! A group commit that fails cannot be retried: raft-rs already counts the turn's entries as
//! on their way to disk (`advance_append_async`) and has sent the messages that assume
//! them, so the ready loop stops and the shard fails everything that waits
//! (`server::ready`). A log running out of segments must therefore never reach a group
//! commit. Before it takes the groups' readies, the loop bounds what the turn can write —
//! every group's unstable entries (a superset of the next ready's), a hard state per group
//! and the queued metadata records — and holds the turn back when the log cannot take it
//! and still keep [`MAINTENANCE_SEGMENTS`] segments of room for what frees space: the
//! collector's copies, the checkpoints' value records and the truncation records after
//! them. A turn that fits in the head segment allocates nothing and always goes.
//!
//! While a turn is held back: raft-rs keeps its entries in memory (bounded by the handler's
//! in-flight limit, `max-inflight-proposals`); the shard counts as full for writes that add
//! data (`disk_limit::refusal`: `DiskFull`, the proxy's `-OOM`), while deletes wait for
//! their commit; the collector runs forced passes (`disk_limit::over_limit`); the loop
//! checks again on every wake-up and tick, and goes on as soon as the collector has freed
//! segments. Nothing acknowledged is affected: the held-back entries were never reported
//! persisted.
//!
//! The other side: appends that do not carry Raft entries — the index checkpoint's value
//! records, demoted values — share the log's batches with the group commits (a batch that
//! finds no segment fails every ticket in it), so they first check [`maintenance_fits`]:
//! they leave [`RAFT_KEEP_DIVISOR`]⁻¹ of a segment to the ready loop, and fail (to be
//! retried by their task) rather than write the log full. The collector's own copies are
//! bounded by its pass budget (`server::gc`).

use super::peer::Peer;
use super::shard::{Shard, ShardDevice};

/// Segments of room the ready loop leaves to the collector and the checkpoints.
pub const MAINTENANCE_SEGMENTS: u64 = 1;

/// Appends without Raft entries leave `segment_bytes / RAFT_KEEP_DIVISOR` of room to the
/// ready loop (deletes and the records of the passes in flight are small).
pub const RAFT_KEEP_DIVISOR: u64 = 2;

/// Bytes a record may take beyond its payload: header, fixed fields, padding.
const RECORD_OVERHEAD: u64 = 64;

/// Block padding and segment header one group commit may add.
const COMMIT_OVERHEAD: u64 = 8 << 10;

/// Whether the next turn may be taken: it fits in the head segment, or in the log's room
/// beyond [`MAINTENANCE_SEGMENTS`], or — the shard then counting as full — in the segments the
/// log leaves to the key index (urgent room, `Vlog::set_urgent`: a shard restarted on a full
/// store must still elect, take deletes and reach the checkpoint that frees space; the key
/// index in turn leaves the store's last segment to these turns). Records the outcome
/// (`log_stalled`, the stall counter).
pub fn turn_fits<D: ShardDevice>(shard: &Shard<D>) -> bool {
    let need = turn_bound(shard);
    let log = &shard.log;
    let keep = MAINTENANCE_SEGMENTS * shard.cfg.segment_bytes;
    let normal = need <= log.head_room_bytes() || need.saturating_add(keep) <= log.room_bytes();
    // The bound covers every entry not yet persisted, those of turns in flight included: a
    // turn that fits the normal room means every batch still to be staged fits it too.
    let urgent = !normal && need <= log.urgent_room_bytes();
    log.set_urgent(urgent);
    if urgent {
        shard.metrics.borrow_mut().log_urgent_turns_total += 1;
    }
    let fits = normal || urgent;
    let was_stalled = shard.log_stalled.replace(!normal);
    if was_stalled == normal {
        if !normal {
            shard.metrics.borrow_mut().log_full_stalls_total += 1;
        }
        tracing::warn!(
            shard = shard.index,
            need,
            room = log.room_bytes(),
            urgent_room = log.urgent_room_bytes(),
            "{}",
            match (normal, fits) {
                (true, _) => "shard log has room again: writes accepted",
                (false, true) => "shard log full: writes refused, Raft entries use the reserve",
                (false, false) => "shard log full: writes refused, Raft entries held back",
            }
        );
    }
    fits
}

/// Whether an append of `bytes` that carries no Raft entry (value records of a checkpoint or
/// a demotion) leaves the ready loop its share of the room; else the error to fail with.
pub fn maintenance_fits<D: ShardDevice>(shard: &Shard<D>, bytes: u64) -> Result<(), String> {
    let room = shard.log.room_bytes();
    let keep = shard.cfg.segment_bytes / RAFT_KEEP_DIVISOR;
    if bytes.saturating_add(keep) <= room {
        return Ok(());
    }
    shard.metrics.borrow_mut().log_room_refusals_total += 1;
    Err(format!(
        "the shard log has no room for {bytes} bytes of values ({room} bytes left, \
         {keep} kept for Raft entries)"
    ))
}

/// An upper bound of the bytes the next turn's group commit writes.
fn turn_bound<D: ShardDevice>(shard: &Shard<D>) -> u64 {
    let st = shard.state.borrow();
    let meta: u64 = st.meta_records.iter().map(|r| r.encoded_len() as u64).sum();
    let groups: u64 = st
        .peers
        .values()
        .filter(|p| !p.is_stopped())
        .map(unstable_bound)
        .sum();
    COMMIT_OVERHEAD + meta + groups
}

/// A group's unstable entries and hard state, as log records.
fn unstable_bound(p: &Peer) -> u64 {
    let unstable = &p.raft().raft.raft_log.unstable;
    let records = unstable.entries.len() as u64 + 1;
    unstable.entries_size as u64 + records * RECORD_OVERHEAD
}
