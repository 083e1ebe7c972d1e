// perf-critical: every write of the shard passes through one turn of this loop.
//! The shard's one ready loop: for every Raft group with work, take its ready; send the
//! messages that need nothing durable; append every group's entries and hard states in one
//! group commit (one flush); then mirror them into the Raft caches, send the messages that
//! needed them durable, apply committed entries (`server::apply`) and answer waiting
//! requests (`server::read`). Ticks come from a timer.

use std::collections::HashMap;
use std::rc::Rc;
use std::time::Instant;

use engines::vlog::{
    AppendRecord, EntryRecord, HardState as LogHardState, LogIndex, LogRecord, Term,
};
use net::message::Replica;
use net::message::kv::KvResponse;
use raft::StateRole;
use raft::eraftpb::{Entry, EntryType, Message as RaftMsg};

use super::apply::Effects;
use super::conf_change::entry_type_of;
use super::metrics::ShardMetrics;
use super::peer::Peer;
use super::shard::{Shard, ShardDevice, ShardState, stop_range};
use super::transport::{Outbox, collect};
use crate::range::engine::MasstreeStore;

/// Sends the turn's Raft batches and starts its snapshot transfers.
fn flush_outbox<D: ShardDevice>(shard: &Rc<Shard<D>>, out: &mut Outbox) {
    for (addr, range, from, m) in out.snapshots.drain(..) {
        crate::core::spawn(super::snapshot::send(
            Rc::clone(shard),
            addr,
            range,
            from,
            m,
        ));
    }
    super::transport::send_batches(shard, out);
}

/// Group commits in flight at once: one flushing while the next is written (the shard log
/// pipelines them, `engines::vlog`).
pub const COMMIT_DEPTH: usize = 2;

/// A group commit on its way to the log, with the readies it persists.
struct InFlight {
    /// Set when the commit finished (by the task waiting on it).
    done: Rc<std::cell::RefCell<Option<anyhow::Result<()>>>>,
    works: Vec<Work>,
    records: u64,
    started: Instant,
}

/// Runs the ready loop until the shard stops.
///
/// Each pass: tick if due; finish the oldest group commits that completed (in order:
/// `on_persist_ready`, persisted messages, apply, answers); then, with fewer than
/// [`COMMIT_DEPTH`] commits in flight and room for it in the log (`server::log_room`), take
/// every group's ready and queue the next commit.
/// Readies are persisted in order, and raft-rs lets a group produce its next ready before
/// the previous one is persisted, so turn N+1 is collected and written while N flushes.
pub async fn run<D: ShardDevice>(shard: Rc<Shard<D>>) {
    if let Err(e) = pipeline(&shard).await {
        tracing::error!(
            "shard {} ready loop stopped: {e:#} (log poisoned: {:?})",
            shard.index,
            shard.log.poison_reason()
        );
        // The log is poisoned: fail everything that waits and stop serving writes.
        let mut st = shard.state.borrow_mut();
        for p in st.peers.values_mut() {
            fail_all(p);
        }
    }
}

async fn pipeline<D: ShardDevice>(shard: &Rc<Shard<D>>) -> anyhow::Result<()> {
    let tick = shard.cfg.tick();
    // Tick pacing is a timer, on real time (`server::clock`); what a tick decides reads the
    // shard's clock.
    let mut next_tick = Instant::now() + tick;
    let mut inflight: std::collections::VecDeque<InFlight> = std::collections::VecDeque::new();
    while !shard.stop.get() {
        let front_done = inflight.front().is_some_and(|f| f.done.borrow().is_some());
        let wait = next_tick.saturating_duration_since(Instant::now());
        if !front_done && !wait.is_zero() {
            futures_lite::future::or(shard.wake.wait(), crate::core::sleep(wait)).await;
        }
        if Instant::now() >= next_tick {
            next_tick = Instant::now() + tick;
            let now = shard.now();
            let mut st = shard.state.borrow_mut();
            for p in st.peers.values_mut().filter(|p| !p.is_stopped()) {
                p.raft_mut().tick();
                super::read::renew_lease(p, &mut shard.metrics.borrow_mut(), now);
            }
            super::ttl::sweep_expired(shard, &mut st);
        }
        while let Some(f) = inflight.front() {
            let Some(res) = f.done.borrow_mut().take() else {
                break;
            };
            let f = inflight
                .pop_front()
                .ok_or_else(|| anyhow::anyhow!("lost commit"))?;
            res?;
            if f.records > 0 {
                let mut m = shard.metrics.borrow_mut();
                m.flushes_total += 1;
                let us = shard.now().saturating_duration_since(f.started).as_micros() as u64;
                ShardMetrics::record(&mut m.flush_us, us);
                ShardMetrics::record(&mut m.flush_batch_records, f.records);
            }
            finish(shard, f.works).await?;
        }
        // A turn the log has no room for is held back (raft-rs keeps its entries) until the
        // collector frees segments: a failed group commit would stop the loop.
        if inflight.len() < COMMIT_DEPTH && super::log_room::turn_fits(shard) {
            if let Some(next) = prepare(shard).await? {
                inflight.push_back(next);
            }
        }
    }
    Ok(())
}

fn fail_all(p: &mut Peer) {
    let err = || KvResponse::Err {
        error: net::RpcError::Internal {
            code: 2,
            message: "shard log failed".into(),
        },
    };
    p.fail_waiting(err);
}

struct Work {
    range: net::RangeId,
    number: u64,
    persisted_msgs: Vec<RaftMsg>,
    committed: Vec<Entry>,
    snapshot_index: Option<u64>,
}

/// Takes every group's ready, sends the messages that need nothing durable, and queues the
/// group commit of their entries and hard states (`None`: nothing to do).
async fn prepare<D: ShardDevice>(shard: &Rc<Shard<D>>) -> anyhow::Result<Option<InFlight>> {
    let Turn {
        mut out,
        snap_files,
        records,
        works,
    } = collect_readies(shard)?;
    flush_outbox(shard, &mut out);
    start_fetches(shard);
    if works.is_empty() && records.is_empty() {
        answer_waiting_reads(shard);
        return Ok(None);
    }
    // A snapshot's checkpoint file is durable before the log records that point past it.
    for (range, index, file) in snap_files {
        super::checkpoint::write(shard, range, index, file).await?;
        crate::failpoint!("ds_node::shard::snapshot::before_descriptor");
    }
    queue_commit(shard, records, works).map(Some)
}

/// What one turn collects from the groups' readies.
#[derive(Default)]
struct Turn {
    /// Messages that need nothing durable.
    out: Outbox,
    /// Checkpoint files of the snapshots installed: (range, index, bytes).
    snap_files: Vec<(net::RangeId, u64, Rc<Vec<u8>>)>,
    /// The group commit's records.
    records: Vec<AppendRecord>,
    /// Per group, what to do once the commit is durable.
    works: Vec<Work>,
}

/// Hands raft-rs the entries fetched from the log, then takes the ready of every group that
/// has one (stopped ranges excepted).
fn collect_readies<D: ShardDevice>(shard: &Rc<Shard<D>>) -> anyhow::Result<Turn> {
    let mut turn = Turn::default();
    let mut st = shard.state.borrow_mut();
    for (range, ctx) in st.fetched.drain(..).collect::<Vec<_>>() {
        if let Some(p) = st.peers.get_mut(&range) {
            p.raft_mut().on_entries_fetched(ctx);
        }
    }
    let ShardState {
        peers,
        engine,
        meta_records,
        reply_to,
        ..
    } = &mut *st;
    turn.records
        .extend(meta_records.drain(..).map(AppendRecord::from));
    for (&range, p) in peers.iter_mut() {
        if p.is_stopped() || !p.raft().has_ready() {
            continue;
        }
        let work = take_ready(shard, range, p, engine, reply_to, &mut turn)?;
        turn.works.push(work);
    }
    Ok(turn)
}

/// Takes one group's ready into the turn: messages queued, a received snapshot installed,
/// entries and hard state queued for the group commit and mirrored into the Raft cache,
/// read indexes noted; returns what to do once the commit is durable.
fn take_ready<D: ShardDevice>(
    shard: &Rc<Shard<D>>,
    range: net::RangeId,
    p: &mut Peer,
    engine: &mut MasstreeStore,
    reply_to: &HashMap<(net::RangeId, net::ReplicaId), Replica>,
    turn: &mut Turn,
) -> anyhow::Result<Work> {
    let mut rd = p.raft_mut().ready();
    if let Some(ss) = rd.ss() {
        note_role(shard, p, ss.raft_state);
    }
    collect(shard, p, rd.take_messages(), reply_to, &mut turn.out);
    let mut snapshot_index = None;
    if !rd.snapshot().is_empty() {
        let (index, file) =
            super::snapshot::install(shard, p, engine, rd.snapshot(), &mut turn.records)?;
        turn.snap_files.push((range, index, file));
        snapshot_index = Some(index);
    }
    let entries = rd.take_entries();
    log_records(range, &entries, rd.hs(), &mut turn.records);
    // raft-rs's asynchronous persistence: the entries are readable through the cache now,
    // and count as persisted (`on_persist_ready`) only after the group commit.
    p.raft_mut().mut_store().append(&entries);
    if let Some(h) = rd.hs() {
        p.raft_mut().mut_store().set_hard_state(h.clone());
    }
    let now = shard.now();
    for rs in rd.take_read_states() {
        super::read::note_read_state(p, &rs.request_ctx, rs.index, now);
    }
    let number = rd.number();
    let persisted_msgs = rd.take_persisted_messages();
    let committed = rd.take_committed_entries();
    p.raft_mut().advance_append_async(rd);
    Ok(Work {
        range,
        number,
        persisted_msgs,
        committed,
        snapshot_index,
    })
}

/// Counts a leader change when the group's role moved to or from leader.
fn note_role<D: ShardDevice>(shard: &Shard<D>, p: &mut Peer, role: StateRole) {
    if p.note_role(role) {
        shard.metrics.borrow_mut().leader_changes_total += 1;
    }
}

/// The shard-log records of a group's new entries and hard state.
fn log_records(
    range: net::RangeId,
    entries: &[Entry],
    hs: Option<&raft::eraftpb::HardState>,
    records: &mut Vec<AppendRecord>,
) {
    for e in entries {
        records.push(AppendRecord::from(LogRecord::Entry(EntryRecord {
            range,
            term: Term(e.term),
            index: LogIndex(e.index),
            entry_type: e.get_entry_type() as u8,
            payload: e.data.to_vec(),
        })));
    }
    if let Some(h) = hs {
        records.push(AppendRecord::from(LogRecord::HardState {
            range,
            state: LogHardState {
                term: Term(h.term),
                vote: h.vote,
                commit: LogIndex(h.commit),
            },
        }));
    }
}

/// Queues the turn's records in the shard log (so commits reach it in the order they were
/// prepared) and waits for them on a task that wakes the loop when they are durable.
fn queue_commit<D: ShardDevice>(
    shard: &Rc<Shard<D>>,
    records: Vec<AppendRecord>,
    works: Vec<Work>,
) -> anyhow::Result<InFlight> {
    let n = records.len() as u64;
    let done = Rc::new(std::cell::RefCell::new(None));
    if records.is_empty() {
        *done.borrow_mut() = Some(Ok(()));
    } else {
        let ticket = shard
            .log
            .enqueue(records)
            .map_err(|e| anyhow::anyhow!("group commit: {e}"))?;
        let (shard2, slot) = (Rc::clone(shard), Rc::clone(&done));
        crate::core::spawn(async move {
            let r = shard2
                .log
                .wait(ticket)
                .await
                .map(|_| ())
                .map_err(|e| anyhow::anyhow!("group commit: {e}"));
            *slot.borrow_mut() = Some(r);
            shard2.wake.notify();
        });
    }
    Ok(InFlight {
        done,
        works,
        records: n,
        started: shard.now(),
    })
}

/// Answers the reads whose index is known and applied, on every range that has some.
fn answer_waiting_reads<D: ShardDevice>(shard: &Rc<Shard<D>>) {
    let mut st = shard.state.borrow_mut();
    let ShardState { peers, engine, .. } = &mut *st;
    for p in peers.values_mut().filter(|p| p.reads_count() > 0) {
        super::read::answer_ready(shard, p, engine);
    }
}

/// After a group commit: marks the readies persisted, sends the messages that needed it,
/// applies committed entries, answers requests, and creates / destroys ranges that splits and
/// conf changes asked for.
async fn finish<D: ShardDevice>(shard: &Rc<Shard<D>>, works: Vec<Work>) -> anyhow::Result<()> {
    crate::failpoint!("ds_node::shard::write::after_append");
    let mut out = Outbox::default();
    let failed = prefetch_committed(shard, &works).await;
    // No `.await` from here to the applies below: nothing can demote what was loaded.
    for w in works {
        let mut st = shard.state.borrow_mut();
        let ShardState {
            peers,
            engine,
            meta_records,
            to_destroy,
            reply_to,
            splits,
            frozen,
            merges,
            deferring,
            ..
        } = &mut *st;
        let Some(p) = peers.get_mut(&w.range) else {
            continue;
        };
        p.raft_mut().on_persist_ready(w.number);
        if let Some(i) = w.snapshot_index {
            p.raft_mut().advance_apply_to(i);
        }
        collect(shard, p, w.persisted_msgs, reply_to, &mut out);
        if let Some((range, e)) = failed.as_ref().filter(|(r, _)| *r == w.range) {
            if !p.is_stopped() {
                let index = w.committed.first().map_or(0, |e| e.index);
                stop_range(shard, p, index, format!("range {range}: {e}"));
            }
        }
        if !w.committed.is_empty() {
            let mut fx = Effects {
                meta_records,
                to_destroy,
                splits,
                frozen,
                merges,
                deferring,
            };
            let committed = p.take_deferred_then(w.committed);
            let last = super::apply::entries(shard, p, engine, &mut fx, committed);
            p.raft_mut().advance_apply_to(last);
        }
        super::read::answer_ready(shard, p, engine);
        let applied = p.applied();
        let keep = shard.cfg.cached_entries as u64;
        if p.raft().store().len() as u64 > keep * 2 {
            p.raft_mut()
                .mut_store()
                .compact_to(applied.saturating_sub(keep));
        }
    }
    let accounted = shard.state.borrow().engine.accounted().total();
    shard.policy.throttle.note_accounted(accounted);
    // Reads whose index was learnt in an earlier turn may be answerable now.
    answer_waiting_reads(shard);
    start_fetches(shard);
    flush_outbox(shard, &mut out);
    retry_deferred(shard);
    let splits = std::mem::take(&mut shard.state.borrow_mut().splits);
    for (right, left) in splits {
        super::split::create_right(shard, right, left).await?;
    }
    let merges = std::mem::take(&mut shard.state.borrow_mut().merges);
    for (left, right) in merges {
        super::merge::finish(shard, left, right).await?;
    }
    let gone = std::mem::take(&mut shard.state.borrow_mut().to_destroy);
    for range in gone {
        shard.destroy_range(range).await?;
    }
    // More work may have arrived while the commit was in flight.
    if shard
        .state
        .borrow()
        .peers
        .values()
        .any(|p| p.raft().has_ready())
    {
        shard.wake.notify();
    }
    Ok(())
}

/// Applies again the entries ranges deferred (a commit-merge waiting for its right replica
/// here, `server::merge`): the turn may have applied that replica's freeze.
fn retry_deferred<D: ShardDevice>(shard: &Rc<Shard<D>>) {
    let mut st = shard.state.borrow_mut();
    if st.deferring.is_empty() {
        return;
    }
    let ranges = std::mem::take(&mut st.deferring);
    let ShardState {
        peers,
        engine,
        meta_records,
        to_destroy,
        splits,
        frozen,
        merges,
        deferring,
        ..
    } = &mut *st;
    for range in ranges {
        super::merge::nudge_right(peers, range);
        let Some(p) = peers.get_mut(&range).filter(|p| p.has_deferred()) else {
            continue;
        };
        let mut fx = Effects {
            meta_records,
            to_destroy,
            splits,
            frozen,
            merges,
            deferring,
        };
        let committed = p.take_deferred_then(Vec::new());
        let last = super::apply::entries(shard, p, engine, &mut fx, committed);
        p.raft_mut().advance_apply_to(last);
        super::read::answer_ready(shard, p, engine);
    }
}

/// Loads the cold entries the committed entries of `works` touch (`server::cold`). A range
/// whose load failed is returned with the error: it stops (its entries cannot be applied
/// without the values).
async fn prefetch_committed<D: ShardDevice>(
    shard: &Rc<Shard<D>>,
    works: &[Work],
) -> Option<(net::RangeId, super::cold::ColdError)> {
    if shard.state.borrow().engine.cold_stats().cold_entries == 0 {
        return None;
    }
    for w in works.iter().filter(|w| !w.committed.is_empty()) {
        let Some(desc) = shard
            .state
            .borrow()
            .peers
            .get(&w.range)
            .map(|p| p.desc().clone())
        else {
            continue;
        };
        let plan = |engine: &crate::range::engine::MasstreeStore, out: &mut Vec<_>| {
            for e in &w.committed {
                if e.get_entry_type() == EntryType::EntryNormal {
                    super::cold::plan_payload(engine, &desc, &e.data, out);
                }
            }
        };
        if let Err(e) = super::cold::load_until_hot(shard, plan).await {
            tracing::error!(
                range = %w.range,
                "loading cold values for committed entries: {e}"
            );
            return Some((w.range, e));
        }
    }
    // A later range's load may have let the demotion task run: check every range again
    // (nothing is demoted while nothing awaits, so this check holds until the applies).
    let again = works.iter().any(|w| {
        let st = shard.state.borrow();
        let Some(p) = st.peers.get(&w.range) else {
            return false;
        };
        let mut v = Vec::new();
        for e in &w.committed {
            super::cold::plan_payload(&st.engine, p.desc(), &e.data, &mut v);
        }
        !v.is_empty()
    });
    if again {
        return Box::pin(prefetch_committed(shard, works)).await;
    }
    None
}

/// Reads entries raft-rs asked for from below the cache out of the shard log, on their own
/// tasks; the ready loop hands raft-rs the context back on its next turn.
fn start_fetches<D: ShardDevice>(shard: &Rc<Shard<D>>) {
    let mut reqs = Vec::new();
    {
        let st = shard.state.borrow();
        for (&range, p) in &st.peers {
            for f in p.raft().store().fetches.borrow_mut().drain(..) {
                reqs.push((range, f));
            }
        }
    }
    shard.metrics.borrow_mut().log_fetches_total += reqs.len() as u64;
    for (range, f) in reqs {
        let shard = Rc::clone(shard);
        crate::core::spawn(async move {
            let got = shard
                .log
                .entries(range, LogIndex(f.low), LogIndex(f.high), 1 << 20)
                .await;
            let mut st = shard.state.borrow_mut();
            match got {
                Ok(es) => {
                    if let Some(p) = st.peers.get(&range) {
                        let mut fetched = p.raft().store().fetched.borrow_mut();
                        for e in es.iter() {
                            fetched.insert(
                                e.index.0,
                                Entry {
                                    entry_type: entry_type_of(e.entry_type),
                                    term: e.term.0,
                                    index: e.index.0,
                                    data: e.payload.clone().into(),
                                    ..Entry::default()
                                },
                            );
                        }
                    }
                }
                Err(e) => tracing::warn!(%range, "fetching raft entries from the shard log: {e}"),
            }
            st.fetched.push((range, f.context));
            drop(st);
            shard.wake.notify();
        });
    }
}
