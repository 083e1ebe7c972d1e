// perf-critical: the append path (submit, commit) runs for every Raft write of a shard.
//! The shard log: group-commit appends, reads, truncation and segment reclamation.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::{Future, poll_fn};
use std::pin::pin;
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::Instant;

use nvme::{BlockDevice, IoBuf, OwnerTag, Segment};

use super::metrics::VlogMetrics;
use super::record::{
    EntryRecord, FRAGMENT_FIXED_LEN, FragmentHead, LogRecord, RECORD_ALIGN, RECORD_HEADER_LEN,
    SegmentHeader,
};
use super::state::{FastMap, State};
use super::types::Seq;
use super::{Error, Result, VlogConfig};
use crate::pointer::{LogPointer, SegmentId};
use crate::segments::SharedStore;

/// Where a value lies inside a record's data (the entry payload, the relocated value, …).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ValueSpan {
    /// Byte offset inside the data.
    pub offset: u32,
    /// Length in bytes.
    pub len: u32,
}

/// A record to append, and optionally where a value lies in it (a pointer to the value is
/// returned with the record's).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppendRecord {
    /// The record.
    pub record: LogRecord,
    /// The value inside the record's data, if the caller wants a pointer to it.
    pub value: Option<ValueSpan>,
}

impl From<LogRecord> for AppendRecord {
    fn from(record: LogRecord) -> Self {
        Self {
            record,
            value: None,
        }
    }
}

/// Records queued by [`Vlog::enqueue`], to wait on with [`Vlog::wait`].
#[derive(Debug)]
#[must_use = "records are acknowledged only through `Vlog::wait`"]
pub struct AppendTicket(u64);

/// What an acknowledged append returns for one record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Appended {
    /// The record's sequence number.
    pub seq: Seq,
    /// The whole record (checksum = the record's crc32c).
    pub record: LogPointer,
    /// The value the caller named (checksum = crc32c of the value's bytes).
    pub value: Option<LogPointer>,
}

/// The segment being appended to and its tail.
#[derive(Debug, Clone)]
pub(crate) struct Head {
    pub seg: Segment,
    pub segment_seq: u64,
    /// Offset (inside the segment) where the next record goes.
    pub tail: u64,
    /// The bytes of the tail's block before `tail` (rewritten unchanged by the next batch).
    pub tail_block: Vec<u8>,
}

struct Pending {
    ticket: u64,
    item: Item,
}

/// One record to write: a caller's record, or one fragment of a caller's entry too long for
/// one record (format §3, kind 7; the fragments of an entry are queued together, in order).
enum Item {
    Whole(AppendRecord),
    Fragment(FragmentItem),
}

struct FragmentItem {
    /// The whole entry (shared by its fragments; cached once the last one is durable).
    entry: Rc<EntryRecord>,
    head: FragmentHead,
    /// This fragment's share of the payload.
    part: std::ops::Range<usize>,
    /// The caller's value span in the payload.
    value: Option<ValueSpan>,
}

impl FragmentItem {
    fn part(&self) -> &[u8] {
        self.entry
            .payload
            .get(self.part.clone())
            .unwrap_or_default()
    }

    /// Returns true for a fragment other than the first (earlier ones were queued before).
    fn continues(&self) -> bool {
        self.head.number > 0
    }

    /// Returns true if the entry has fragments after this one.
    fn has_more(&self) -> bool {
        self.head.number.saturating_add(1) < self.head.count
    }
}

impl Item {
    fn encoded_len(&self) -> usize {
        match self {
            Self::Whole(r) => r.record.encoded_len(),
            Self::Fragment(f) => FragmentHead::encoded_len(f.part.len()),
        }
    }

    fn body_len(&self) -> usize {
        match self {
            Self::Whole(r) => r.record.body_len(),
            Self::Fragment(f) => FRAGMENT_FIXED_LEN + f.part.len(),
        }
    }

    fn encode(&self, seq: Seq, mark_delta: u32, out: &mut [u8]) -> u32 {
        match self {
            Self::Whole(r) => r.record.encode(seq, mark_delta, out),
            Self::Fragment(f) => f.head.encode_record(f.part(), seq, mark_delta, out),
        }
    }

    /// Where the caller's value lies in the encoded record `out` (offset inside the record,
    /// length), if it lies wholly in this record.
    fn value_in_record(&self) -> Option<(usize, usize)> {
        match self {
            Self::Whole(r) => {
                let v = r.value?;
                Some((r.record.data_offset()? + v.offset as usize, v.len as usize))
            }
            Self::Fragment(f) => {
                let v = f.value?;
                let (start, len) = (v.offset as usize, v.len as usize);
                let inside = start >= f.part.start && start + len <= f.part.end;
                let at = || RECORD_HEADER_LEN + FRAGMENT_FIXED_LEN + start - f.part.start;
                inside.then(|| (at(), len))
            }
        }
    }
}

#[derive(Default)]
struct Ticket {
    remaining: usize,
    out: Vec<Appended>,
    err: Option<Error>,
    started: Option<Instant>,
    /// When the batch completing the ticket became durable (one clock read per batch).
    done_at: Option<Instant>,
    /// Internal (relocation) tickets have no waiter; they are dropped when done.
    internal: bool,
}

#[derive(Default)]
struct Queue {
    pending: VecDeque<Pending>,
    /// Encoded bytes of `pending`.
    pending_bytes: usize,
    tickets: FastMap<u64, Ticket>,
    next_ticket: u64,
    /// The leader waiting for a flush, woken when records arrive (it may write them while
    /// the flush runs).
    arrival: Option<Waker>,
}

#[derive(Default)]
struct Lock {
    busy: bool,
    waiters: Vec<Waker>,
}

/// Mutable log state besides the index.
pub(crate) struct Core {
    pub poisoned: bool,
    /// Why the log was poisoned first (for the error reports of whoever finds it poisoned).
    pub poison_reason: Option<&'static str>,
    /// Seq after the last completed (flushed and applied) batch. Every record below it was
    /// flushed: it is the durable mark of the next batch written (format §3).
    pub next_seq: Seq,
    /// Head after the last completed batch.
    pub head: Option<Head>,
    /// Head and next seq after the newest batch written but not yet completed (its flush in
    /// flight, or written ahead and waiting for the next leader); `None` when there is none.
    /// The next batch is laid out from here.
    pub ahead: Option<(Head, Seq)>,
    pub spare: Option<Segment>,
    pub state: State,
    /// What the fragmented entry being completed will answer (its first fragment's seq and
    /// record pointer, the value pointer if one fragment holds the value).
    pub fragment_ack: Option<Appended>,
}

impl Core {
    /// The head the next batch is laid out from: after the newest written batch.
    pub(crate) fn write_head(&self) -> Option<&Head> {
        self.ahead.as_ref().map(|(h, _)| h).or(self.head.as_ref())
    }
}

/// A shard log on a segment store. Single-threaded: share it between the tasks of one
/// executor with `Rc`. See the module docs and `docs/format/shard-log.md`.
pub struct Vlog<D: BlockDevice> {
    pub(crate) dev: Rc<D>,
    pub(crate) owner: OwnerTag,
    pub(crate) cfg: VlogConfig,
    pub(crate) block: usize,
    pub(crate) seg_size: u64,
    /// The segment store, shared with the shard's key index.
    pub(crate) store: SharedStore<D>,
    pub(crate) core: RefCell<Core>,
    queue: RefCell<Queue>,
    lock: RefCell<Lock>,
    /// A batch written while the previous one's flush ran, left by a leader whose own records
    /// were done: the next leader flushes it first. Only while the lock is free or held.
    staged: RefCell<Option<Staged>>,
    /// While set, segments are allocated down to the store's last free one, ignoring
    /// `reserve-segments` ([`Vlog::set_urgent`]).
    urgent: Cell<bool>,
    /// Free segments left to the store's other owners: `reserve-segments` until the owner
    /// of the log sets it ([`Vlog::set_reserve_segments`]).
    reserve: Cell<u32>,
    pub(crate) metrics: RefCell<VlogMetrics>,
    /// Device offset of segment 0.
    pub(crate) data_offset: u64,
}

impl<D: BlockDevice> std::fmt::Debug for Vlog<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let c = self.core.borrow();
        f.debug_struct("Vlog")
            .field("owner", &self.owner)
            .field("next_seq", &c.next_seq)
            .field("poisoned", &c.poisoned)
            .field("segments", &c.state.segments.len())
            .finish()
    }
}

/// Holds the log's commit lock; releases it (and wakes waiters) when dropped.
pub(super) struct LockGuard<'a, D: BlockDevice>(&'a Vlog<D>);

impl<D: BlockDevice> Drop for LockGuard<'_, D> {
    fn drop(&mut self) {
        let mut l = self.0.lock.borrow_mut();
        l.busy = false;
        for w in l.waiters.drain(..) {
            w.wake();
        }
    }
}

/// Removes an append's ticket when the append's future goes away (answered or dropped).
struct TicketGuard<'a, D: BlockDevice>(&'a Vlog<D>, u64);

impl<D: BlockDevice> Drop for TicketGuard<'_, D> {
    fn drop(&mut self) {
        self.0.queue.borrow_mut().tickets.remove(&self.1);
    }
}

/// Poisons the log if a commit is dropped between its first write and its completion: what
/// reached the device is unknown and the batch's waiters can no longer be answered.
struct InFlight<'a, D: BlockDevice> {
    log: &'a Vlog<D>,
    armed: bool,
}

impl<D: BlockDevice> Drop for InFlight<'_, D> {
    fn drop(&mut self) {
        if self.armed {
            self.log.poison("a commit was dropped while in flight");
        }
    }
}

/// A batch whose writes completed and whose flush has not returned yet.
struct Staged {
    batch: Vec<Pending>,
    head: Head,
    done: Vec<(Appended, usize)>,
    /// Bytes written (block padding and the rewritten tail block included).
    written: u64,
}

impl Staged {
    /// Record bytes of the batch.
    fn bytes(&self) -> usize {
        self.done.iter().map(|(_, l)| l).sum()
    }

    /// Appends `more`, written right after this batch, to it (both are flushed together).
    fn merge(mut self, more: Staged) -> Staged {
        self.batch.extend(more.batch);
        self.done.extend(more.done);
        self.head = more.head;
        self.written += more.written;
        self
    }
}

/// Returns the encoded length of `e` as one entry record.
fn padded_len(e: &EntryRecord) -> usize {
    super::record::padded(RECORD_HEADER_LEN + super::record::ENTRY_FIXED_LEN + e.payload.len())
}

/// Caches entry `e` if the index holds it at `ptr` (a later append may have replaced it).
fn cache_if_indexed(state: &mut State, e: Rc<EntryRecord>, ptr: LogPointer) {
    let indexed = state.ranges.get(&e.range).and_then(|r| r.get(e.index.0));
    if indexed.is_some_and(|l| l.ptr == ptr) {
        state.cache.insert(e);
    }
}

/// Applies a durable fragment; once it is its entry's last, returns what the entry's append
/// answers: the first fragment's seq and record pointer, and the value pointer if one
/// fragment holds the whole value (otherwise none: format §3).
fn complete_fragment(
    core: &mut Core,
    f: FragmentItem,
    a: Appended,
    len: usize,
    m: &mut VlogMetrics,
) -> Option<Appended> {
    core.state.count(&a.record, len);
    let ack = core.fragment_ack.get_or_insert(a);
    ack.value = ack.value.or(a.value);
    let done = core
        .state
        .apply_fragment(&f.head, f.part.len(), a.seq, a.record, len);
    done?;
    m.fragmented_entries_total += 1;
    let ack = core.fragment_ack.take()?;
    cache_if_indexed(&mut core.state, f.entry, ack.record);
    Some(ack)
}

/// One segment's share of a batch: a block-aligned write.
struct SegWrite<B> {
    seg: Segment,
    /// Offset inside the segment where the write starts (block-aligned).
    start: u64,
    buf: B,
}

impl<D: BlockDevice> Vlog<D> {
    pub(crate) fn from_parts(
        dev: Rc<D>,
        owner: OwnerTag,
        cfg: VlogConfig,
        store: SharedStore<D>,
        core: Core,
    ) -> Self {
        let block = dev.alignment();
        let seg_size = store.superblock().segment_size;
        let data_offset = store.superblock().data_offset;
        let reserve = Cell::new(cfg.reserve_segments);
        Self {
            dev,
            owner,
            cfg,
            block,
            seg_size,
            store,
            core: RefCell::new(core),
            queue: RefCell::new(Queue::default()),
            lock: RefCell::new(Lock::default()),
            staged: RefCell::new(None),
            urgent: Cell::new(false),
            reserve,
            metrics: RefCell::new(VlogMetrics::default()),
            data_offset,
        }
    }

    /// Returns the number of appends waiting for an answer.
    pub(super) fn ticket_count(&self) -> usize {
        self.queue.borrow().tickets.len()
    }

    // ---------------------------------------------------------------- append

    /// Appends `records` with group commit and returns, in order, each record's sequence
    /// number and pointers once they are durable.
    ///
    /// Every append handed to the log during one executor turn shares one batch of writes and
    /// one flush. Errors: `InvalidArgument` (record too large, bad value span) before anything
    /// is queued; `Io` if this batch's write or flush failed; `DeviceFailed` once the log is
    /// poisoned. Not cancellation-safe: dropping the future of the append that is committing
    /// poisons the log (its batch's outcome is unknown).
    pub async fn append(&self, records: Vec<AppendRecord>) -> Result<Vec<Appended>> {
        // Backpressure: while the queue holds `pending-bytes-max`, help commit it first.
        let max = self.cfg.pending_bytes_max;
        while self.queue.borrow().pending_bytes >= max {
            let _g = self.lock().await;
            self.check_poisoned()?;
            self.pump(&|| self.queue.borrow().pending_bytes < max, false)
                .await;
            self.after_commit().await;
        }
        let t = self.submit(records, false)?;
        self.wait(AppendTicket(t)).await
    }

    /// Queues `records` for the next commit batch at once, without backpressure, and returns
    /// the ticket to [`wait`](Self::wait) on. Records queued by successive calls are committed
    /// in call order, so a caller can keep several appends in flight and still know their
    /// order (the shard's ready loop pipelines its group commits this way); it must bound how
    /// much it queues itself.
    pub fn enqueue(&self, records: Vec<AppendRecord>) -> Result<AppendTicket> {
        self.submit(records, false).map(AppendTicket)
    }

    /// Waits until the records of `ticket` are durable (or failed); the commit work is done by
    /// whichever waiter leads. Dropping this future forgets the ticket.
    pub async fn wait(&self, ticket: AppendTicket) -> Result<Vec<Appended>> {
        let t = ticket.0;
        // Forgets the ticket if this future is dropped before it is answered.
        let _ticket = TicketGuard(self, t);
        loop {
            // Wait until a leader committed our records, or lead ourselves. (Checking the
            // ticket while waiting matters: a leader that finishes and appends again takes
            // the lock back in the same poll, so waiting for the lock alone starves.)
            let Some(_g) = self.lock_unless_done(t).await else {
                return self.take_result(t).unwrap_or(Err(Error::DeviceFailed));
            };
            // Let every other task of this turn hand its records in before the batch is cut.
            futures_lite::future::yield_now().await;
            self.commit_until_done(t).await;
            self.after_commit().await;
        }
    }

    /// Appends one record; see [`append`](Self::append).
    pub async fn append_one(&self, record: impl Into<AppendRecord>) -> Result<Appended> {
        let mut v = self.append(vec![record.into()]).await?;
        v.pop().ok_or(Error::InvalidArgument("empty append result"))
    }

    /// Makes the log durable up to everything queued now (a commit even with nothing
    /// pending is a no-op). Fails if the log is poisoned.
    pub async fn sync(&self) -> Result<()> {
        let _g = self.lock().await;
        self.check_poisoned()?;
        self.pump(&|| self.queue.borrow().pending.is_empty(), true)
            .await;
        self.check_poisoned()
    }

    /// Poisons the log (it acknowledges nothing until reopened), keeping the first reason.
    pub(crate) fn poison(&self, why: &'static str) {
        let mut c = self.core.borrow_mut();
        c.poisoned = true;
        c.poison_reason.get_or_insert(why);
    }

    /// Why the log is poisoned (`None`: it is not).
    pub fn poison_reason(&self) -> Option<&'static str> {
        let c = self.core.borrow();
        c.poisoned.then(|| c.poison_reason.unwrap_or("unknown"))
    }

    pub(super) fn check_poisoned(&self) -> Result<()> {
        if self.core.borrow().poisoned {
            Err(Error::DeviceFailed)
        } else {
            Ok(())
        }
    }

    pub(super) fn check_record(&self, r: &AppendRecord) -> Result<()> {
        let len = r.record.encoded_len();
        match &r.record {
            LogRecord::Fragment(_) => {
                return Err(Error::InvalidArgument(
                    "entry fragments are written by the log",
                ));
            }
            LogRecord::Entry(e) if e.payload.len() > self.cfg.entry_bytes_max => {
                return Err(Error::InvalidArgument("entry longer than entry-bytes-max"));
            }
            LogRecord::Entry(e) if len > self.cfg.batch_bytes_max => {
                let part = self.fragment_part_max();
                if part == 0 || e.payload.len().div_ceil(part) > u32::MAX as usize {
                    return Err(Error::InvalidArgument("entry too long for batch-bytes-max"));
                }
            }
            _ if len > self.cfg.batch_bytes_max => {
                return Err(Error::InvalidArgument("record longer than batch-bytes-max"));
            }
            _ => {}
        }
        if let Some(v) = r.value {
            let Some(data_off) = r.record.data_offset() else {
                return Err(Error::InvalidArgument("record kind has no value data"));
            };
            let end = u64::from(v.offset) + u64::from(v.len);
            if end > (r.record.body_len() + RECORD_HEADER_LEN - data_off) as u64 {
                return Err(Error::InvalidArgument(
                    "value span outside the record's data",
                ));
            }
        }
        Ok(())
    }

    /// Payload bytes of one entry fragment: a fragment record fills a batch (0: batches too
    /// small to fragment).
    fn fragment_part_max(&self) -> usize {
        let whole = self.cfg.batch_bytes_max / RECORD_ALIGN * RECORD_ALIGN;
        whole.saturating_sub(RECORD_HEADER_LEN + FRAGMENT_FIXED_LEN)
    }

    /// Turns a checked record into the items to write: itself, or the fragments of an entry
    /// longer than `batch-bytes-max`.
    fn items(&self, r: AppendRecord, out: &mut Vec<Item>) {
        let AppendRecord { record, value } = r;
        let e = match record {
            LogRecord::Entry(e) if padded_len(&e) > self.cfg.batch_bytes_max => e,
            record => return out.push(Item::Whole(AppendRecord { record, value })),
        };
        let part = self.fragment_part_max().max(1);
        let total = e.payload.len();
        let count = u32::try_from(total.div_ceil(part)).unwrap_or(u32::MAX);
        let entry = Rc::new(e);
        for number in 0..count {
            let start = number as usize * part;
            out.push(Item::Fragment(FragmentItem {
                entry: Rc::clone(&entry),
                head: FragmentHead {
                    range: entry.range,
                    term: entry.term,
                    index: entry.index,
                    entry_type: entry.entry_type,
                    number,
                    count,
                    total_len: total as u64,
                },
                part: start..(start + part).min(total),
                value,
            }));
        }
    }

    pub(super) fn submit(&self, records: Vec<AppendRecord>, internal: bool) -> Result<u64> {
        self.submit_at(records, internal, false)
    }

    /// Queues `records` ahead of everything queued, except the rest of an entry whose first
    /// fragments are written (nothing may come between two fragments of an entry). For
    /// copies of records the log already holds (metadata re-appended before a segment is
    /// freed): records queued earlier are newer and must come after them.
    pub(super) fn submit_ahead(&self, records: Vec<AppendRecord>) -> Result<u64> {
        self.submit_at(records, false, true)
    }

    fn submit_at(&self, records: Vec<AppendRecord>, internal: bool, ahead: bool) -> Result<u64> {
        self.check_poisoned()?;
        if records.is_empty() {
            return Err(Error::InvalidArgument("append of no records"));
        }
        for r in &records {
            self.check_record(r)?;
        }
        let n = records.len();
        let mut items = Vec::with_capacity(n);
        for r in records {
            self.items(r, &mut items);
        }
        let mut q = self.queue.borrow_mut();
        let t = q.next_ticket;
        q.next_ticket += 1;
        q.tickets.insert(
            t,
            Ticket {
                remaining: items.len(),
                out: Vec::with_capacity(n),
                err: None,
                started: Some(Instant::now()),
                done_at: None,
                internal,
            },
        );
        q.pending_bytes += items.iter().map(Item::encoded_len).sum::<usize>();
        let rest = if ahead {
            let continuing = |p: &Pending| matches!(&p.item, Item::Fragment(f) if f.continues());
            let at = q.pending.iter().take_while(|p| continuing(p)).count();
            q.pending.split_off(at)
        } else {
            VecDeque::new()
        };
        q.pending
            .extend(items.into_iter().map(|item| Pending { ticket: t, item }));
        q.pending.extend(rest);
        if let Some(w) = q.arrival.take() {
            w.wake();
        }
        Ok(t)
    }

    pub(super) fn is_done(&self, t: u64) -> bool {
        let q = self.queue.borrow();
        match q.tickets.get(&t) {
            Some(k) => k.remaining == 0 || k.err.is_some() || self.core.borrow().poisoned,
            None => true,
        }
    }

    pub(super) fn take_result(&self, t: u64) -> Option<Result<Vec<Appended>>> {
        let mut q = self.queue.borrow_mut();
        let k = q.tickets.get(&t)?;
        let poisoned = self.core.borrow().poisoned;
        if k.remaining != 0 && k.err.is_none() && !poisoned {
            return None;
        }
        let k = q.tickets.remove(&t)?;
        if let Some(e) = k.err {
            return Some(Err(e));
        }
        if k.remaining != 0 {
            return Some(Err(Error::DeviceFailed));
        }
        if let (Some(s), Some(d)) = (k.started, k.done_at) {
            let ns = u64::try_from(d.duration_since(s).as_nanos()).unwrap_or(u64::MAX);
            VlogMetrics::record(&mut self.metrics.borrow_mut().append_latency_ns, ns);
        }
        Some(Ok(k.out))
    }

    /// Takes the commit lock, or returns `None` as soon as ticket `t` is done.
    pub(super) async fn lock_unless_done(&self, t: u64) -> Option<LockGuard<'_, D>> {
        let got = poll_fn(|cx| {
            if self.is_done(t) {
                return Poll::Ready(false);
            }
            let mut l = self.lock.borrow_mut();
            if l.busy {
                l.waiters.push(cx.waker().clone());
                Poll::Pending
            } else {
                l.busy = true;
                Poll::Ready(true)
            }
        })
        .await;
        got.then(|| LockGuard(self))
    }

    pub(super) async fn lock(&self) -> LockGuard<'_, D> {
        poll_fn(|cx| {
            let mut l = self.lock.borrow_mut();
            if l.busy {
                l.waiters.push(cx.waker().clone());
                Poll::Pending
            } else {
                l.busy = true;
                Poll::Ready(())
            }
        })
        .await;
        LockGuard(self)
    }

    /// Commits batches (under the lock) until ticket `t` is done.
    pub(super) async fn commit_until_done(&self, t: u64) {
        self.pump(&|| self.is_done(t), false).await;
        if !self.is_done(t) {
            // The ticket's records left the queue without completing: only a dropped commit
            // does that, and it poisons the log. Never spin.
            debug_assert!(false, "ticket {t} pending with nothing queued or in flight");
            self.poison("a ticket's records left the queue without completing");
        }
    }

    /// The commit pipeline (under the lock). Writes batches off the queue and flushes them,
    /// one flush at a time; while a flush runs, records that arrive are written as the next
    /// batch (with `pipeline-depth` 2), whose flush follows. Batches complete in log order.
    /// Stops writing new batches once `enough()` holds and returns when the flush in flight
    /// has returned. A batch written ahead is then flushed too with `drain`; without, it is
    /// left for the next leader (its waiters wait for the lock, and one of them leads).
    /// Returns early, with `enough()` false, only if nothing is queued or in flight.
    pub(super) async fn pump(&self, enough: &dyn Fn() -> bool, drain: bool) {
        // Armed while a batch is held here: if this future is dropped, its waiters must learn
        // that its outcome is unknown.
        let mut guard = InFlight {
            log: self,
            armed: false,
        };
        loop {
            let staged = self.staged.borrow_mut().take();
            let cur = match staged {
                Some(st) if drain || !enough() => st,
                Some(st) => {
                    *self.staged.borrow_mut() = Some(st);
                    return;
                }
                None if enough() || self.queue.borrow().pending.is_empty() => return,
                None => match self.stage(self.cfg.batch_bytes_max).await {
                    Some(st) => st,
                    None => continue, // the batch failed and its waiters know
                },
            };
            guard.armed = true;
            let next = self.flush_and_complete(cur, enough).await;
            *self.staged.borrow_mut() = next;
            guard.armed = false;
        }
    }

    /// Flushes the written batch `cur` and completes it (or fails it and poisons the log).
    /// With `pipeline-depth` 2, records that arrive while the flush runs are written
    /// meanwhile (unless `enough()` held at the start), as one or more batches laid out after
    /// `cur` — at most `batch-bytes-max` together — and returned unflushed as one `Staged`,
    /// for the next flush.
    async fn flush_and_complete(&self, cur: Staged, enough: &dyn Fn() -> bool) -> Option<Staged> {
        let overlap = self.cfg.pipeline_depth >= 2 && !enough();
        let max = self.cfg.batch_bytes_max;
        let mut flush = pin!(self.dev.flush());
        let mut flushed: Option<nvme::Result<()>> = None;
        let mut next: Option<Staged> = None;
        loop {
            // Room left in the next flush's batch for the first queued record?
            let room = max - next.as_ref().map_or(0, Staged::bytes);
            // Wait for the flush, or for records to write while it runs.
            let arrived = poll_fn(|cx| {
                if let Poll::Ready(r) = flush.as_mut().poll(cx) {
                    flushed = Some(r);
                    return Poll::Ready(false);
                }
                let fits = self
                    .queue
                    .borrow()
                    .pending
                    .front()
                    .is_some_and(|p| p.item.encoded_len() <= room);
                if overlap && fits && !self.core.borrow().poisoned {
                    return Poll::Ready(true);
                }
                self.queue.borrow_mut().arrival = Some(cx.waker().clone());
                Poll::Pending
            })
            .await;
            self.queue.borrow_mut().arrival = None;
            if !arrived {
                break;
            }
            // Let every other task of this turn hand its records in, then write them; the
            // flush keeps being polled meanwhile.
            let mut stage = pin!(async {
                futures_lite::future::yield_now().await;
                self.stage(room).await
            });
            let staged = poll_fn(|cx| {
                if flushed.is_none() {
                    if let Poll::Ready(r) = flush.as_mut().poll(cx) {
                        flushed = Some(r);
                    }
                }
                stage.as_mut().poll(cx)
            })
            .await;
            if let Some(more) = staged {
                next = Some(match next.take() {
                    Some(n) => n.merge(more),
                    None => more,
                });
            }
            if flushed.is_some() {
                break;
            }
        }
        let res = match flushed {
            Some(r) => r.map_err(Error::from_nvme),
            None => Err(Error::DeviceFailed), // unreachable: both loops end with a result
        };
        // A poisoned log acknowledges nothing, even a batch whose own flush returned `Ok`
        // (the next batch's write may have failed meanwhile).
        let res = res.and_then(|()| self.check_poisoned());
        match res {
            Ok(()) => {
                let mut m = self.metrics.borrow_mut();
                m.flushes_total += 1;
                m.written_bytes_total += cur.written;
                let total = cur.bytes();
                VlogMetrics::record(&mut m.batch_records, cur.batch.len() as u64);
                VlogMetrics::record(&mut m.batch_bytes, total as u64);
                drop(m);
                self.complete(cur);
                next
            }
            Err(e) => {
                self.poison("a flush failed");
                self.metrics.borrow_mut().failed_batches_total += 1;
                self.fail_all(&cur.batch, e);
                if let Some(n) = next {
                    self.fail_all(&n.batch, Error::DeviceFailed);
                }
                None
            }
        }
    }

    /// Takes the next batch off the queue: records up to `budget` bytes (with the whole
    /// `batch-bytes-max`, at least one: no record is longer).
    fn take_batch(&self, budget: usize) -> Vec<Pending> {
        let mut q = self.queue.borrow_mut();
        let mut bytes = 0;
        let mut out = Vec::new();
        while let Some(p) = q.pending.front() {
            let len = p.item.encoded_len();
            if bytes + len > budget {
                break;
            }
            bytes += len;
            if let Some(p) = q.pending.pop_front() {
                out.push(p);
            }
        }
        q.pending_bytes -= bytes;
        out
    }

    /// Fails every ticket in `batch` with `err` and every queued one with `DeviceFailed`.
    fn fail_all(&self, batch: &[Pending], err: Error) {
        let mut q = self.queue.borrow_mut();
        // Running out of segments is every ticket's error (each may retry once space is
        // back); any other error goes to the first, and the rest learn the log failed.
        let no_space = matches!(err, Error::NoSpace);
        let mut err = Some(err);
        for p in batch {
            if let Some(k) = q.tickets.get_mut(&p.ticket) {
                if k.err.is_none() {
                    k.err = Some(match err.take() {
                        Some(e) => e,
                        None if no_space => Error::NoSpace,
                        None => Error::DeviceFailed,
                    });
                }
            }
        }
        let queued: Vec<u64> = q.pending.drain(..).map(|p| p.ticket).collect();
        q.pending_bytes = 0;
        for t in queued {
            if let Some(k) = q.tickets.get_mut(&t) {
                k.err.get_or_insert(Error::DeviceFailed);
            }
        }
        q.tickets.retain(|_, k| !k.internal);
    }

    /// Returns a segment to append into after the head: the spare, or a new allocation.
    pub(super) async fn next_segment(&self) -> Result<Segment> {
        if let Some(s) = self.core.borrow_mut().spare.take() {
            return Ok(s);
        }
        self.allocate().await
    }

    pub(super) async fn allocate(&self) -> Result<Segment> {
        let reserve = match self.urgent.get() {
            true => 0,
            false => self.reserve.get(),
        };
        let seg = self
            .store
            .allocate_leaving(self.owner, reserve)
            .await
            .map_err(Error::from_nvme)?;
        self.metrics.borrow_mut().segments_allocated_total += 1;
        Ok(seg)
    }

    /// Lets the log allocate the segments it normally leaves to the store's other owners
    /// (`reserve-segments`), until called again with `false`. For what must reach the
    /// device for the shard to make any progress at all: its Raft entries and hard states
    /// when the log is otherwise full (a shard restarted on a full store must still elect a
    /// leader, take the deletes and checkpoint them). See [`Self::urgent_room_bytes`].
    pub fn set_urgent(&self, on: bool) {
        self.urgent.set(on);
    }

    /// Changes how many free segments the log leaves to the store's other owners (initially
    /// `reserve-segments`): a key index sharing the store needs room to rewrite its runs.
    pub fn set_reserve_segments(&self, n: u32) {
        self.reserve.set(n);
    }

    /// Free segments the log leaves to the store's other owners now.
    pub fn reserve_segments(&self) -> u32 {
        self.reserve.get()
    }

    /// Writes the next batch off the queue (layout, encode, write; no flush) and returns it,
    /// or `None` if the queue is empty or the batch failed: its waiters are answered and the
    /// log is poisoned (running out of segments fails the batch without poisoning: nothing
    /// was written).
    async fn stage(&self, budget: usize) -> Option<Staged> {
        let batch = self.take_batch(budget);
        if batch.is_empty() {
            return None;
        }
        if let Err(e) = self.check_poisoned() {
            self.fail_all(&batch, e);
            return None;
        }
        // Armed from here: if this future is dropped, the batch's records are gone from the
        // queue and its waiters must learn it (and a dropped allocation loses the store).
        let mut guard = InFlight {
            log: self,
            armed: true,
        };
        let new_seg = match self.needs_segment(&batch) {
            false => None,
            true => match self.next_segment().await {
                Ok(s) => Some(s),
                Err(e) => {
                    guard.armed = false;
                    // Earlier fragments of the batch's first entry are written: its later
                    // ones can never follow them now, and the log must not go on with a
                    // partial entry in its middle (format §4).
                    let mid_entry = matches!(batch.first(), Some(Pending { item: Item::Fragment(f), .. }) if f.continues());
                    if e.is_device_failure() || mid_entry {
                        self.poison(if mid_entry {
                            "no segment for the rest of a fragmented entry"
                        } else {
                            "allocating a segment failed"
                        });
                    }
                    self.fail_batch(&batch, e);
                    self.drop_rest_of_entry(&batch);
                    return None;
                }
            },
        };
        let res = match self.encode_batch(&batch, new_seg) {
            Ok((head, done, writes)) => self.write_all(writes).await.map(|n| (head, done, n)),
            Err(e) => Err(e),
        };
        guard.armed = false;
        match res {
            Ok((head, done, written)) => {
                let mut c = self.core.borrow_mut();
                let first = c.ahead.as_ref().map_or(c.next_seq, |(_, s)| *s);
                c.ahead = Some((head.clone(), Seq(first.0 + batch.len() as u64)));
                drop(c);
                Some(Staged {
                    batch,
                    head,
                    done,
                    written,
                })
            }
            Err(e) => {
                self.poison("writing a batch failed");
                self.metrics.borrow_mut().failed_batches_total += 1;
                self.fail_all(&batch, e);
                None
            }
        }
    }

    /// Fails the tickets of `batch` only (the log stays usable).
    fn fail_batch(&self, batch: &[Pending], err: Error) {
        let mut q = self.queue.borrow_mut();
        let mut err = Some(err);
        for p in batch {
            if let Some(k) = q.tickets.get_mut(&p.ticket) {
                if k.err.is_none() {
                    k.err = Some(err.take().unwrap_or(Error::DeviceFailed));
                }
                if k.internal {
                    q.tickets.remove(&p.ticket);
                }
            }
        }
    }

    /// Takes the queued fragments that continue the last entry of the failed `batch` off the
    /// queue (fragments are queued together, so they are at its front).
    fn drop_rest_of_entry(&self, batch: &[Pending]) {
        let Some(Pending {
            item: Item::Fragment(last),
            ..
        }) = batch.last()
        else {
            return;
        };
        if !last.has_more() {
            return;
        }
        let mut q = self.queue.borrow_mut();
        while let Some(Pending {
            item: Item::Fragment(f),
            ..
        }) = q.pending.front()
        {
            if !Rc::ptr_eq(&f.entry, &last.entry) {
                break;
            }
            let len = FragmentHead::encoded_len(f.part.len());
            q.pending_bytes -= len;
            q.pending.pop_front();
        }
    }

    /// Returns true if `batch` does not fit in the head segment (or there is no head).
    fn needs_segment(&self, batch: &[Pending]) -> bool {
        let c = self.core.borrow();
        let Some(h) = c.write_head() else {
            return true;
        };
        let mut tail = h.tail;
        for p in batch {
            tail += p.item.encoded_len() as u64;
            if tail > self.seg_size {
                return true;
            }
        }
        false
    }

    /// Lays out and encodes a batch into block-aligned buffers (one per segment touched).
    /// Returns the new head and, per record, its pointers and encoded length.
    #[allow(clippy::type_complexity)]
    fn encode_batch(
        &self,
        batch: &[Pending],
        new_seg: Option<Segment>,
    ) -> Result<(Head, Vec<(Appended, usize)>, Vec<SegWrite<D::Buf>>)> {
        let bs = self.block as u64;
        let c = self.core.borrow();
        // Laid out after the newest written batch; every record below `mark` was flushed.
        let first_seq = c.ahead.as_ref().map_or(c.next_seq, |(_, s)| *s);
        let mark = c.next_seq;
        let write_head = c.write_head();
        // Spans: (segment, segment seq, write start, end, fresh).
        let mut spans: Vec<(Segment, u64, u64, u64, bool)> = Vec::with_capacity(2);
        if let Some(h) = write_head {
            spans.push((h.seg, h.segment_seq, h.tail - h.tail % bs, h.tail, false));
        }
        let mut plan = Vec::with_capacity(batch.len()); // (span, offset)
        let mut new_first = None;
        for (i, p) in batch.iter().enumerate() {
            let len = p.item.encoded_len() as u64;
            let fits = spans.last().is_some_and(|s| s.3 + len <= self.seg_size);
            if !fits {
                let seg = new_seg.ok_or(Error::InvalidArgument("batch needs a new segment"))?;
                if new_first.is_some() {
                    return Err(Error::InvalidArgument("batch spans more than two segments"));
                }
                let seg_seq = spans.last().map_or(0, |s| s.1 + 1);
                new_first = Some(Seq(first_seq.0 + i as u64));
                spans.push((seg, seg_seq, 0, bs, true));
            }
            let k = spans.len() - 1;
            let span = &mut spans[k];
            plan.push((k, span.3));
            span.3 += len;
        }
        let head_tail_block = write_head.map(|h| h.tail_block.clone()).unwrap_or_default();
        drop(c);
        let mut writes = Vec::with_capacity(spans.len());
        for (k, (seg, seg_seq, start, end, fresh)) in spans.iter().enumerate() {
            if !plan.iter().any(|(pk, _)| *pk == k) {
                writes.push(None); // the old head, untouched by this batch
                continue;
            }
            let len = (end.div_ceil(bs) * bs - start) as usize;
            let mut buf = self.dev.alloc_buf(len).map_err(Error::from_nvme)?;
            let b = buf.as_bytes_mut();
            b.fill(0);
            if *fresh {
                SegmentHeader {
                    owner: self.owner.0,
                    generation: seg.generation.0,
                    batch_max: self.cfg.batch_bytes_max as u32,
                    segment_seq: *seg_seq,
                    first_seq: new_first.unwrap_or(first_seq),
                    durable_mark: mark,
                }
                .encode(b);
            } else {
                b[..head_tail_block.len()].copy_from_slice(&head_tail_block);
            }
            writes.push(Some(SegWrite {
                seg: *seg,
                start: *start,
                buf,
            }));
        }
        let mut done = Vec::with_capacity(batch.len());
        for (i, (p, (k, off))) in batch.iter().zip(&plan).enumerate() {
            let rec = &p.item;
            let len = rec.encoded_len();
            let s = Seq(first_seq.0 + i as u64);
            let w = writes[*k].as_mut().ok_or(Error::InvalidArgument(
                "record planned into an untouched span",
            ))?;
            let at = (off - w.start) as usize;
            let out = &mut w.buf.as_bytes_mut()[at..at + len];
            // At most two batches lie between the mark and `s`, each under 2^32 / 24 records.
            let delta = u32::try_from(s.0 - mark.0)
                .map_err(|_| Error::InvalidArgument("durable mark too far behind"))?;
            let crc = rec.encode(s, delta, out);
            let seg = SegmentId(w.seg.id.0);
            let value = rec.value_in_record().map(|(vs, vlen)| LogPointer {
                segment: seg,
                offset: off + vs as u64,
                len: vlen as u32,
                checksum: crc32c::crc32c(&out[vs..vs + vlen]),
            });
            let record = LogPointer {
                segment: seg,
                offset: *off,
                len: (RECORD_HEADER_LEN + rec.body_len()) as u32,
                checksum: crc,
            };
            done.push((
                Appended {
                    seq: s,
                    record,
                    value,
                },
                len,
            ));
        }
        let (seg, seg_seq, _, end, _) = *spans.last().ok_or(Error::InvalidArgument("no span"))?;
        let w = writes
            .last()
            .and_then(Option::as_ref)
            .ok_or(Error::InvalidArgument("no write"))?;
        let tb = end - end % bs;
        let tail_block =
            w.buf.as_bytes()[(tb - w.start) as usize..(end - w.start) as usize].to_vec();
        let head = Head {
            seg,
            segment_seq: seg_seq,
            tail: end,
            tail_block,
        };
        Ok((head, done, writes.into_iter().flatten().collect()))
    }

    /// Issues the batch's writes, in order. Returns the bytes written.
    async fn write_all(&self, writes: Vec<SegWrite<D::Buf>>) -> Result<u64> {
        let mut written = 0;
        for w in writes {
            written += w.buf.len() as u64;
            let (res, _buf) = self.dev.write(w.seg.offset + w.start, w.buf).await;
            res.map_err(Error::from_nvme)?;
        }
        Ok(written)
    }

    /// Applies a durable batch and completes its waiters.
    fn complete(&self, st: Staged) {
        let Staged {
            batch, head, done, ..
        } = st;
        let mut c = self.core.borrow_mut();
        c.state
            .segments
            .entry(head.seg.id.0)
            .or_default()
            .segment_seq = head.segment_seq;
        c.head = Some(head);
        c.next_seq = Seq(c.next_seq.0 + batch.len() as u64);
        if c.ahead.as_ref().is_some_and(|(_, s)| *s == c.next_seq) {
            c.ahead = None;
        }
        let now = Instant::now();
        let mut q = self.queue.borrow_mut();
        let mut m = self.metrics.borrow_mut();
        let core = &mut *c;
        for (p, (a, len)) in batch.into_iter().zip(done) {
            m.appended_records_total += 1;
            m.appended_bytes_total += len as u64;
            let answer = match p.item {
                Item::Whole(r) => {
                    core.state.apply(&r.record, a.seq, a.record, len);
                    if let LogRecord::Entry(e) = r.record {
                        cache_if_indexed(&mut core.state, Rc::new(e), a.record);
                    }
                    Some(a)
                }
                Item::Fragment(f) => {
                    m.fragment_bytes_total += len as u64;
                    complete_fragment(core, f, a, len, &mut m)
                }
            };
            let remove = match q.tickets.get_mut(&p.ticket) {
                Some(k) => {
                    k.out.extend(answer);
                    k.remaining -= 1;
                    k.done_at = Some(now);
                    k.internal && k.remaining == 0
                }
                None => false,
            };
            if remove {
                q.tickets.remove(&p.ticket);
            }
        }
    }

    /// Housekeeping after commits, under the lock: automatic reclamation and the spare.
    pub(super) async fn after_commit(&self) {
        if self.core.borrow().poisoned {
            return;
        }
        if self.cfg.auto_reclaim {
            let _ = self.reclaim_unneeded().await;
        }
        if self.cfg.preallocate && self.core.borrow().spare.is_none() {
            match self.allocate().await {
                Ok(s) => self.core.borrow_mut().spare = Some(s),
                // No spare: the next batch that needs a segment reports `NoSpace` itself.
                Err(Error::NoSpace) => {}
                Err(_) => self.poison("preallocating the spare segment failed"),
            }
        }
    }
}
