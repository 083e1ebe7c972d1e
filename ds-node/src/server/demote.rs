//! Demotion: making hot entries cold, per replica (pointers name this node's shard log, so
//! demotion is no Raft operation).
//!
//! A step takes up to [`STEP_ENTRIES`] hot entries holding up to [`STEP_BYTES`] of values
//! (key order, from a cursor), and for each:
//! - an entry that already has a durable copy (a cold entry loaded back) drops its inline
//!   bytes at once, without I/O;
//! - any other gets its stored bytes written as a *demoted value* record (kind 4, tag 0,
//!   `docs/format/shard-log.md` §3): all records of the step in one append, so one group
//!   commit; then, for each entry that still holds exactly those bytes, the inline copy is
//!   dropped and the pointer (segment, offset, len, crc32c of the bytes) kept. An entry
//!   written meanwhile keeps its new value; its copy is dead bytes in the log.
//!
//! The write path never writes these records. Driven by `POST /demote?shard=N&fraction=F` on
//! the admin endpoint ([`Requests`]) and by the `demote-every-ms` setting ([`run_periodic`]).
#![allow(
    clippy::disallowed_types,
    reason = "the admin thread (not a shard) queues requests; the shard locks the queue once per 20 ms, as for metrics"
)]

use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use engines::vlog::{AppendRecord, LogRecord, ValueSpan};
use net::RangeId;

use super::shard::{Shard, ShardDevice};
use crate::range::engine::Candidate;

/// Most entries one step looks at.
pub const STEP_ENTRIES: usize = 1024;
/// Most value bytes one step demotes (one group commit: below the log's batch size).
pub const STEP_BYTES: usize = 512 << 10;
/// Longest value demoted: a record must fit in one batch (longer values stay hot).
pub const MAX_VALUE: usize = STEP_BYTES;
/// Entries expiring within this many milliseconds stay hot (dedup records, short TTLs).
pub const EXPIRING_SOON_MS: u64 = 60_000;

/// What a demotion did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DemoteReport {
    /// Entries made cold.
    pub entries: u64,
    /// Value bytes made cold.
    pub bytes: u64,
    /// Bytes written to the shard log as demoted values.
    pub written_bytes: u64,
    /// Steps (group commits at most one each).
    pub steps: u64,
}

/// A demotion request from the admin endpoint, and where to answer.
#[derive(Debug)]
pub struct Request {
    /// Share of the hot value bytes to demote (0 < fraction <= 1).
    pub fraction: f64,
    /// The answer.
    pub reply: std::sync::mpsc::Sender<Result<DemoteReport, String>>,
}

/// Requests queued for one shard by the admin thread; the shard takes them every 20 ms.
pub type Requests = Arc<Mutex<VecDeque<Request>>>;

/// Demotes `fraction` of the shard's hot value bytes (key order), step by step. Only one
/// demotion runs per shard at a time (a second caller waits for nothing and gets an error).
pub async fn demote<D: ShardDevice>(
    shard: &Shard<D>,
    fraction: f64,
) -> Result<DemoteReport, String> {
    if !(fraction > 0.0 && fraction <= 1.0) {
        return Err(format!("fraction must be in (0, 1], got {fraction}"));
    }
    if std::mem::replace(&mut shard.state.borrow_mut().demoting, true) {
        return Err("a demotion is already running on this shard".into());
    }
    let r = demote_steps(shard, fraction).await;
    shard.state.borrow_mut().demoting = false;
    let mut m = shard.metrics.borrow_mut();
    match &r {
        Ok(rep) => {
            m.cold.demotions_total += rep.entries;
            m.cold.demoted_bytes_written_total += rep.written_bytes;
        }
        Err(_) => m.cold.demotion_errors_total += 1,
    }
    r
}

async fn demote_steps<D: ShardDevice>(
    shard: &Shard<D>,
    fraction: f64,
) -> Result<DemoteReport, String> {
    let hot = shard.state.borrow().engine.cold_stats().hot_value_bytes;
    let target = (hot as f64 * fraction).ceil() as u64;
    let mut rep = DemoteReport::default();
    let mut cursor = Bytes::new();
    while rep.bytes < target && !shard.stop.get() {
        let (candidates, next) = shard.state.borrow().engine.demotion_candidates(
            &cursor,
            STEP_ENTRIES,
            STEP_BYTES.min((target - rep.bytes) as usize),
            MAX_VALUE,
            super::shard::now_ms().saturating_add(EXPIRING_SOON_MS),
        );
        step(shard, candidates, &mut rep).await?;
        match next {
            Some(n) => cursor = n,
            None => break,
        }
        crate::core::yield_if_needed().await;
    }
    Ok(rep)
}

/// One step: free demotions first, then one append of the others' bytes (also the memory
/// policy's step, `server::policy`).
pub(crate) async fn step<D: ShardDevice>(
    shard: &Shard<D>,
    candidates: Vec<Candidate>,
    rep: &mut DemoteReport,
) -> Result<(), String> {
    rep.steps += 1;
    let mut to_write = Vec::new();
    {
        let mut st = shard.state.borrow_mut();
        for c in candidates {
            match c.pointer {
                Some(p) => {
                    if st.engine.demote(&c.key, &c.value, p) {
                        rep.entries += 1;
                        rep.bytes += c.value.len() as u64;
                    }
                }
                None => to_write.push(c),
            }
        }
    }
    // One append (one group commit, within the log's batch) per STEP_BYTES of values: the
    // policy's urgent steps take more.
    for chunk in chunks(&to_write, STEP_BYTES) {
        write_and_demote(shard, chunk, rep).await?;
    }
    Ok(())
}

/// Consecutive runs of `cs` holding at most `max_bytes` of values each (a longer value alone).
fn chunks(cs: &[Candidate], max_bytes: usize) -> Vec<&[Candidate]> {
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, c) in cs.iter().enumerate() {
        if i > start && bytes + c.value.len() > max_bytes {
            out.push(&cs[start..i]);
            (start, bytes) = (i, 0);
        }
        bytes += c.value.len();
    }
    if start < cs.len() {
        out.push(&cs[start..]);
    }
    out
}

/// Writes the values of `to_write` in one append, then makes each entry that still holds
/// them cold.
async fn write_and_demote<D: ShardDevice>(
    shard: &Shard<D>,
    to_write: &[Candidate],
    rep: &mut DemoteReport,
) -> Result<(), String> {
    let records: Vec<AppendRecord> = {
        let st = shard.state.borrow();
        to_write
            .iter()
            .map(|c| {
                let range = st
                    .peers
                    .values()
                    .find(|p| p.desc().contains(&c.key))
                    .map_or(0, |p| p.desc().id.0);
                AppendRecord {
                    record: LogRecord::Relocated {
                        range: RangeId(range),
                        tag: 0,
                        value: c.value.to_vec(),
                    },
                    value: Some(ValueSpan {
                        offset: 0,
                        len: c.value.len() as u32,
                    }),
                }
            })
            .collect()
    };
    let written: u64 = records.iter().map(|r| r.record.encoded_len() as u64).sum();
    super::log_room::maintenance_fits(shard, written)?;
    let appended = shard
        .log
        .append(records)
        .await
        .map_err(|e| format!("write demoted values: {e}"))?;
    rep.written_bytes += written;
    let mut st = shard.state.borrow_mut();
    for (c, a) in to_write.iter().zip(appended) {
        let Some(p) = a.value else {
            return Err("the shard log returned no value pointer".into());
        };
        debug_assert_eq!(p.checksum, crc32c::crc32c(&c.value));
        if st.engine.demote(&c.key, &c.value, p) {
            rep.entries += 1;
            rep.bytes += c.value.len() as u64;
        }
    }
    Ok(())
}

/// Answers the admin endpoint's queued requests (called by the shard's watch loop).
pub fn serve_requests<D: ShardDevice>(shard: &Rc<Shard<D>>, requests: &Requests) {
    let taken: Vec<Request> = match requests.lock() {
        Ok(mut q) => q.drain(..).collect(),
        Err(_) => return,
    };
    for r in taken {
        let shard = Rc::clone(shard);
        crate::core::spawn(async move {
            let res = demote(&shard, r.fraction).await;
            let _ = r.reply.send(res);
        });
    }
}

/// Demotes `demote-percent` % of the hot value bytes every `demote-every-ms` (when set).
pub async fn run_periodic<D: ShardDevice>(shard: Rc<Shard<D>>) {
    let every = shard.cfg.demote_every_ms;
    if every == 0 {
        return;
    }
    let fraction = f64::from(shard.cfg.demote_percent) / 100.0;
    while !shard.stop.get() {
        crate::core::sleep(Duration::from_millis(every)).await;
        if let Err(e) = demote(&shard, fraction).await {
            tracing::warn!(shard = shard.index, "periodic demotion failed: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidate(len: usize) -> Candidate {
        Candidate {
            key: Bytes::from_static(b"k"),
            value: Bytes::from(vec![0; len]),
            pointer: None,
        }
    }

    #[test]
    fn values_are_written_in_appends_of_at_most_the_step_bytes() {
        let cs: Vec<Candidate> = [4, 4, 4, 10, 1].into_iter().map(candidate).collect();
        let lens: Vec<usize> = chunks(&cs, 8).iter().map(|c| c.len()).collect();
        assert_eq!(lens, vec![2, 1, 1, 1]);
        assert!(chunks(&[], 8).is_empty());
        assert_eq!(chunks(&cs, 1 << 20).len(), 1);
    }
}
