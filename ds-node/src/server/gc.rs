//! The shard log's garbage collector: a background task per shard that moves the live
//! values out of the oldest segments and frees them (DESIGN §4 "Log space", the policy in
//! [`engines::vlog::gc`], the format in `docs/format/shard-log.md` §3 "Relocated values").
//!
//! A pass, every `gc-every-ms` when the log's segments take more than `gc-space-percent` %
//! of the live bytes and `gc-start-percent` % of the log file:
//! 1. frees the segments nothing pins any more (`checkpoint::reclaim`);
//! 2. picks the victims: the oldest segments no range needs for Raft, at most
//!    `gc-max-victims`;
//! 3. walks the engine in bounded steps ([`gc_move::step`]): each step copies the live values
//!    it finds in the victims to the head of the log (one group commit) and swaps the
//!    pointers of the entries that still hold the old ones; steps are paced to
//!    `gc-bytes-per-sec` of device traffic (reads + writes);
//! 4. checkpoints every range whose newest checkpoint still points into a victim (recovery
//!    loads that checkpoint, so its pointers must stay valid until a newer one exists); in
//!    index mode, one index checkpoint (the moved pointers stay pinned until it is durable);
//! 5. frees the victims nothing pins any more.
//!
//! Crash safety: a copy is acknowledged (durable) before any pointer names it; a victim is
//! freed only when no engine pointer and no newest checkpoint names it. A crash before step
//! 4 finishes recovers the old checkpoint, whose victims were not freed; copies no pointer
//! names are garbage that a later pass frees with their segment.

use std::collections::BTreeSet;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use engines::vlog::gc::{self as policy, GcPlan, GcPolicy, SegmentView};
use engines::vlog::{LogPointer, SegmentId};

use super::checkpoint;
use super::disk_limit;
use super::gc_move::{self, GcEngine, StepReport};
use super::log_room;
use super::metrics::ShardMetrics;
use super::shard::{Shard, ShardDevice};
use crate::range::engine::{GcItem, GcWalk};

/// Bounds of one step: entries visited, entries found, bytes found (one group commit).
pub const STEP: GcWalk = GcWalk {
    max_items: 1024,
    max_bytes: 512 << 10,
    max_visits: 16 * 1024,
};

/// What a pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PassReport {
    /// The victims, oldest first.
    pub victims: Vec<SegmentId>,
    /// What the steps did, summed.
    pub moved: StepReport,
    /// Checkpoints written to drop references to victims.
    pub checkpoints: u64,
    /// Segments freed by the pass.
    pub segments_freed: u64,
}

/// The shard's engine as [`gc_move`] sees it.
struct ShardEngine<'a, D: ShardDevice>(&'a Shard<D>);

impl<D: ShardDevice> GcEngine for ShardEngine<'_, D> {
    fn items(
        &self,
        from: &[u8],
        victims: &BTreeSet<SegmentId>,
        walk: GcWalk,
    ) -> (Vec<GcItem>, Option<Bytes>) {
        self.0.state.borrow().engine.gc_items(from, victims, walk)
    }

    fn range_of(&self, key: &[u8]) -> u64 {
        let st = self.0.state.borrow();
        st.peers
            .values()
            .find(|p| p.desc().contains(key))
            .map_or(0, |p| p.desc().id.0)
    }

    fn relocate(&self, key: &[u8], old: LogPointer, new: LogPointer) -> bool {
        self.0.state.borrow_mut().engine.relocate(key, old, new)
    }

    fn unback(&self, key: &[u8], old: LogPointer) -> bool {
        self.0.state.borrow_mut().engine.unback(key, old)
    }

    fn copies_hot(&self) -> bool {
        self.0.key_index().is_some() && short_of_room(self.0)
    }
}

/// The collector's settings from the shard's configuration.
pub fn gc_policy<D: ShardDevice>(shard: &Shard<D>) -> GcPolicy {
    GcPolicy {
        segment_bytes: shard.cfg.segment_bytes,
        space_ratio: f64::from(shard.cfg.gc_space_percent) / 100.0,
        max_victims: shard.cfg.gc_max_victims,
        min_used_bytes: shard.cfg.log_file_bytes / 100 * u64::from(shard.cfg.gc_start_percent),
        max_live_bytes: live_bytes_bound(shard),
    }
}

/// Whether the log is short of room: at most [`disk_limit::LOW_SPACE_SEGMENTS`] + 1
/// segments' worth left.
fn short_of_room<D: ShardDevice>(shard: &Shard<D>) -> bool {
    shard.log.room_bytes() <= (disk_limit::LOW_SPACE_SEGMENTS + 1) * shard.cfg.segment_bytes
}

/// The live bytes a pass may take on. A pass writes its victims' live values again (copies,
/// or in index mode the next checkpoint's value records for the hot values it unbacked)
/// before it frees them, so it must not take on more than the log can still take. With
/// room, that is the room less what writes leave free anyway (the low-space margin: writes
/// that add data are refused there, so the checkpoint after the pass finds its share);
/// short of room, what the ready loop leaves to maintenance
/// ([`log_room::MAINTENANCE_SEGMENTS`]), less a margin for record headers — and index mode
/// then copies hot values inside the pass ([`GcEngine::copies_hot`]) rather than leave them
/// to a checkpoint that must write every pending value at once.
fn live_bytes_bound<D: ShardDevice>(shard: &Shard<D>) -> u64 {
    let seg = shard.cfg.segment_bytes;
    let room = shard.log.room_bytes();
    if !short_of_room(shard) {
        return room.saturating_sub(disk_limit::LOW_SPACE_SEGMENTS * seg);
    }
    room.min(log_room::MAINTENANCE_SEGMENTS * seg)
        .saturating_sub(seg / 16)
}

/// The log's segments with the engine's live bytes.
pub fn segment_views<D: ShardDevice>(shard: &Shard<D>) -> Vec<SegmentView> {
    let st = shard.state.borrow();
    let live = st.engine.live_bytes();
    shard
        .log
        .segment_usage()
        .into_iter()
        .map(|(id, u, head)| SegmentView {
            id,
            seq: u.segment_seq,
            live_bytes: live.get(&id).copied().unwrap_or(0),
            raft_needed: u.live_entries > 0,
            head,
        })
        .collect()
}

/// Runs one pass (`force`: even if the log holds little garbage). `Ok(None)`: nothing to
/// collect, or a pass is already running.
pub async fn pass<D: ShardDevice>(
    shard: &Rc<Shard<D>>,
    force: bool,
) -> Result<Option<PassReport>, String> {
    if std::mem::replace(&mut shard.state.borrow_mut().collecting, true) {
        return Ok(None);
    }
    let t = shard.now();
    let r = pass_inner(shard, force).await;
    let took = shard.now().saturating_duration_since(t);
    shard.state.borrow_mut().collecting = false;
    let mut m = shard.metrics.borrow_mut();
    match &r {
        Ok(Some(rep)) => record(&mut m, rep, shard.cfg.segment_bytes, took),
        Ok(None) => {}
        Err(_) => m.gc.errors_total += 1,
    }
    r
}

fn record(m: &mut ShardMetrics, rep: &PassReport, segment_bytes: u64, took: Duration) {
    let g = &mut m.gc;
    g.passes_total += 1;
    g.victims_total += rep.victims.len() as u64;
    g.moved_bytes_total += rep.moved.moved_bytes;
    g.read_bytes_total += rep.moved.read_bytes;
    g.written_bytes_total += rep.moved.written_bytes;
    g.lost_races_total += rep.moved.lost_races;
    g.unbacked_total += rep.moved.unbacked;
    g.unbacked_bytes_total += rep.moved.unbacked_bytes;
    g.checkpoints_total += rep.checkpoints;
    g.segments_freed_total += rep.segments_freed;
    g.freed_bytes_total += rep.segments_freed * segment_bytes;
    let _ = g.pass_us.record(took.as_micros().max(1) as u64);
    m.segments_freed_total += rep.segments_freed;
}

async fn pass_inner<D: ShardDevice>(
    shard: &Rc<Shard<D>>,
    force: bool,
) -> Result<Option<PassReport>, String> {
    let freed_first = checkpoint::reclaim(shard)
        .await
        .map_err(|e| format!("free unpinned segments: {e}"))?;
    // What a pass must keep in the log. Files mode: the cold values — a hot value backed by
    // its Raft entry pins that entry's segment, but a pass frees it without a copy
    // (`gc_move`), so a log full of backed hot values is a log the collector can empty, not
    // a full one. Index mode: every live value, hot or cold (the log is where the key index
    // finds them; a pass copies hot ones too), else a log of live hot values looks like
    // garbage and every pass rewrites it.
    let data = {
        let st = shard.state.borrow();
        match shard.key_index() {
            Some(_) => st.engine.live_bytes_total(),
            None => st.engine.cold_stats().cold_value_bytes,
        }
    };
    let views = segment_views(shard);
    let Some(GcPlan { victims, .. }) = policy::plan(&views, &gc_policy(shard), data, force) else {
        shard.metrics.borrow_mut().segments_freed_total += freed_first as u64;
        return Ok(None);
    };
    let mut rep = PassReport {
        victims: victims.clone(),
        segments_freed: freed_first as u64,
        ..PassReport::default()
    };
    let set: BTreeSet<SegmentId> = victims.into_iter().collect();
    move_live(shard, &set, &mut rep.moved).await?;
    crate::failpoint!("ds_node::shard::gc::after_relocate");
    rep.checkpoints = checkpoint_referencing(shard, &set).await?;
    crate::failpoint!("ds_node::shard::gc::before_reclaim");
    rep.segments_freed += checkpoint::reclaim(shard)
        .await
        .map_err(|e| format!("free collected segments: {e}"))? as u64;
    Ok(Some(rep))
}

/// Walks the whole engine once, step by step, moving what points into `victims`.
async fn move_live<D: ShardDevice>(
    shard: &Rc<Shard<D>>,
    victims: &BTreeSet<SegmentId>,
    total: &mut StepReport,
) -> Result<(), String> {
    let mut pacer = Pacer::new(shard.cfg.gc_bytes_per_sec);
    let mut from = Bytes::new();
    loop {
        if shard.stop.get() {
            return Err("the shard is stopping".into());
        }
        let (r, next) = gc_move::step(&*shard.log, &ShardEngine(shard), victims, &from, STEP)
            .await
            .map_err(|e| e.to_string())?;
        add(total, &r);
        pacer.pace(r.read_bytes + r.written_bytes).await;
        match next {
            Some(n) => from = n,
            None => return Ok(()),
        }
        crate::core::yield_if_needed().await;
    }
}

fn add(total: &mut StepReport, r: &StepReport) {
    total.items += r.items;
    total.relocated += r.relocated;
    total.lost_races += r.lost_races;
    total.unbacked += r.unbacked;
    total.unbacked_bytes += r.unbacked_bytes;
    total.read_bytes += r.read_bytes;
    total.moved_bytes += r.moved_bytes;
    total.written_bytes += r.written_bytes;
}

/// Checkpoints the ranges whose newest checkpoint points into a victim; returns how many.
async fn checkpoint_referencing<D: ShardDevice>(
    shard: &Rc<Shard<D>>,
    victims: &BTreeSet<SegmentId>,
) -> Result<u64, String> {
    if shard.key_index().is_some() {
        // Index mode: the pointers the moves released stay pinned until an index checkpoint
        // names the new ones.
        let done = super::index_checkpoint::checkpoint(shard)
            .await
            .map_err(|e| format!("index checkpoint: {e:#}"))?;
        return Ok(u64::from(done.is_some()));
    }
    let ranges: Vec<net::RangeId> = shard
        .state
        .borrow()
        .checkpoint_segments
        .iter()
        .filter(|(_, segs)| !segs.is_disjoint(victims))
        .map(|(r, _)| *r)
        .collect();
    let mut n = 0;
    for range in ranges {
        checkpoint::checkpoint_range(shard, range)
            .await
            .map_err(|e| format!("checkpoint range {range}: {e:#}"))?;
        n += 1;
    }
    Ok(n)
}

/// Spreads device traffic to a rate: after each step, sleeps until the bytes so far fit.
struct Pacer {
    bytes_per_sec: u64,
    start: Instant,
    bytes: u64,
}

impl Pacer {
    fn new(bytes_per_sec: u64) -> Self {
        Self {
            bytes_per_sec: bytes_per_sec.max(1),
            start: Instant::now(),
            bytes: 0,
        }
    }

    /// Sleeps until `bytes` more are due: a timer, on real time like glommio's
    /// (`server::clock`).
    async fn pace(&mut self, bytes: u64) {
        self.bytes += bytes;
        let due = Duration::from_secs_f64(self.bytes as f64 / self.bytes_per_sec as f64);
        if let Some(wait) = due.checked_sub(self.start.elapsed()) {
            crate::core::sleep(wait).await;
        }
    }
}

/// The collector task of a shard: a pass every `gc-every-ms` (0: never), forced while the
/// log is at `maxdisksize`, after which the shard's full state is updated
/// ([`disk_limit::update`]).
pub async fn run<D: ShardDevice>(shard: Rc<Shard<D>>) {
    let every = shard.cfg.gc_every_ms;
    if every == 0 {
        return;
    }
    while !shard.stop.get() {
        crate::core::sleep(Duration::from_millis(every)).await;
        let force = disk_limit::over_limit(&shard);
        if let Err(e) = pass(&shard, force).await {
            tracing::warn!(shard = shard.index, "log garbage collection failed: {e}");
        }
        disk_limit::update(&shard);
    }
}
