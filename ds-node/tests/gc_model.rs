//! Model test of the log garbage collector against a `BTreeMap`: random puts, overwrites,
//! deletes, expiry (replicated deletes), demotions, collection passes (the shard's own step,
//! `server::gc_move::step`, and policy, `engines::vlog::gc`), checkpoints and crashes on the
//! `faulty` device — including crashes in the middle of a pass, at a random device
//! operation, with every unflushed block dropped, kept or torn. After each crash the engine
//! is rebuilt as a DS node does it (newest checkpoint, then the writes after it, which stand
//! for the Raft log tail) and every acknowledged key must read back, cold ones from the
//! device with their checksums. The device is small: without collection the log runs out of
//! segments after a fraction of the run. A second test crashes at every device operation of
//! one pass in turn, then checks that the next pass collects what the crash left.
#![allow(clippy::unwrap_used)]

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use ds_node::range::engine::{GcItem, GcWalk, MasstreeStore, Stored};
use ds_node::range::store::{Entry, KvStore};
use ds_node::server::gc_move::{self, GcEngine};
use engines::vlog::gc::{self as policy, GcPolicy, SegmentView};
use engines::vlog::{
    AppendRecord, LogPointer, LogRecord, RangeId, SegmentId, ValueSpan, Vlog, VlogConfig,
};
use futures_lite::future::block_on;
use nvme::store::format::DeviceUuid;
use nvme::{
    CrashMode, Fault, FaultAction, FaultyDevice, FormatOptions, MemDevice, OpKind, OwnerTag,
    SegmentStore,
};

const SEG: u64 = 64 * 1024;
const SEGMENTS: u64 = 24;
const OWNER: OwnerTag = OwnerTag(0x4743_4d4f_4445_4c31);
const KEYS: u64 = 120;

type Dev = FaultyDevice<MemDevice>;

fn must_format() -> MemDevice {
    let dev = MemDevice::new((1 << 20) + SEGMENTS * SEG, 4096).unwrap();
    let store = block_on(SegmentStore::format(
        dev,
        FormatOptions {
            segment_size: SEG,
            uuid: Some(DeviceUuid([0x47; 16])),
        },
    ))
    .unwrap();
    store.into_device()
}

fn cfg() -> VlogConfig {
    VlogConfig {
        batch_bytes_max: 8 * 1024,
        pending_bytes_max: 1 << 20,
        cache_bytes_max: 64 * 1024,
        recovery_read_bytes: 16 * 1024,
        auto_reclaim: false,
        preallocate: true,
        reserve_segments: 0,
        pipeline_depth: 2,
        entry_bytes_max: 1 << 20,
    }
}

const POLICY: GcPolicy = GcPolicy {
    segment_bytes: SEG,
    space_ratio: 1.5,
    max_victims: 3,
    min_used_bytes: 4 * SEG,
    max_live_bytes: u64::MAX,
};

const WALK: GcWalk = GcWalk {
    max_items: 16,
    max_bytes: 6 * 1024,
    max_visits: 48,
};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// The engine, and whether the collector copies hot values (index mode) or drops their
/// pointers (files mode); each seed runs one of the two.
struct Engine(RefCell<MasstreeStore>, bool);

impl GcEngine for Engine {
    fn items(
        &self,
        from: &[u8],
        victims: &BTreeSet<SegmentId>,
        walk: GcWalk,
    ) -> (Vec<GcItem>, Option<Bytes>) {
        self.0.borrow().gc_items(from, victims, walk)
    }
    fn range_of(&self, _key: &[u8]) -> u64 {
        1
    }
    fn relocate(&self, key: &[u8], old: LogPointer, new: LogPointer) -> bool {
        self.0.borrow_mut().relocate(key, old, new)
    }
    fn unback(&self, key: &[u8], old: LogPointer) -> bool {
        self.0.borrow_mut().unback(key, old)
    }
    fn copies_hot(&self) -> bool {
        self.1
    }
}

/// A write since the newest checkpoint (what the Raft log tail would replay).
#[derive(Clone)]
enum Write {
    Put(Bytes, Entry),
    Delete(Bytes),
}

/// The durable state a DS node recovers from, besides the shard log.
#[derive(Default, Clone)]
struct Durable {
    checkpoint: Vec<(Bytes, Stored)>,
    segments: BTreeSet<SegmentId>,
    tail: Vec<Write>,
}

struct Node {
    log: Vlog<Dev>,
    engine: Engine,
    durable: Durable,
}

impl Node {
    fn views(&self) -> Vec<SegmentView> {
        let e = self.engine.0.borrow();
        self.log
            .segment_usage()
            .into_iter()
            .map(|(id, u, head)| SegmentView {
                id,
                seq: u.segment_seq,
                live_bytes: e.live_bytes().get(&id).copied().unwrap_or(0),
                raft_needed: u.live_entries > 0,
                head,
            })
            .collect()
    }

    fn write(&mut self, w: Write) {
        let mut e = self.engine.0.borrow_mut();
        match &w {
            Write::Put(k, v) => {
                e.put(k.clone(), v.clone());
            }
            Write::Delete(k) => {
                e.delete(k);
            }
        }
        self.durable.tail.push(w);
    }

    fn checkpoint(&mut self) {
        let stored = self.engine.0.borrow().scan_stored(b"", b"");
        self.durable.segments = stored
            .iter()
            .filter_map(|(_, s)| match s {
                Stored::Cold { pointer, .. } => Some(pointer.segment),
                Stored::Hot(_) => None,
            })
            .collect();
        self.durable.checkpoint = stored;
        self.durable.tail.clear();
    }

    async fn reclaim(&self) -> engines::vlog::Result<usize> {
        let pinned = |s: SegmentId| {
            self.engine.0.borrow().is_pinned(s) || self.durable.segments.contains(&s)
        };
        self.log.reclaim_except(&pinned).await
    }

    /// Demotes every hot entry (as `server::demote` does: one append, then the swap).
    async fn demote(&self) -> engines::vlog::Result<()> {
        let (cands, _) =
            self.engine
                .0
                .borrow()
                .demotion_candidates(b"", usize::MAX, usize::MAX, 4096, 0);
        let (free, to_write): (Vec<_>, Vec<_>) =
            cands.into_iter().partition(|c| c.pointer.is_some());
        for c in free {
            self.engine
                .0
                .borrow_mut()
                .demote(&c.key, &c.value, c.pointer.unwrap());
        }
        if to_write.is_empty() {
            return Ok(());
        }
        let records = to_write
            .iter()
            .map(|c| AppendRecord {
                record: LogRecord::Relocated {
                    range: RangeId(1),
                    tag: 0,
                    value: c.value.to_vec(),
                },
                value: Some(ValueSpan {
                    offset: 0,
                    len: c.value.len() as u32,
                }),
            })
            .collect();
        let appended = self.log.append(records).await?;
        for (c, a) in to_write.iter().zip(appended) {
            self.engine
                .0
                .borrow_mut()
                .demote(&c.key, &c.value, a.value.unwrap());
        }
        Ok(())
    }

    /// One collection pass: victims, moving steps, the checkpoint that drops the old
    /// references, reclamation. Returns the victims freed.
    async fn collect(&mut self, force: bool) -> Result<usize, String> {
        self.reclaim().await.map_err(|e| e.to_string())?;
        let data = self.engine.0.borrow().cold_stats().cold_value_bytes;
        let Some(plan) = policy::plan(&self.views(), &POLICY, data, force) else {
            return Ok(0);
        };
        let victims: BTreeSet<SegmentId> = plan.victims.iter().copied().collect();
        let mut from = Bytes::new();
        loop {
            let (_, next) = gc_move::step(&self.log, &self.engine, &victims, &from, WALK)
                .await
                .map_err(|e| e.to_string())?;
            match next {
                Some(n) => from = n,
                None => break,
            }
        }
        for v in &victims {
            assert!(
                !self.engine.0.borrow().is_pinned(*v),
                "a walk leaves no pointer into a victim"
            );
        }
        if !self.durable.segments.is_disjoint(&victims) {
            self.checkpoint();
        }
        self.reclaim().await.map_err(|e| e.to_string())
    }
}

fn key(i: u64) -> Bytes {
    Bytes::from(format!("key-{i:04}"))
}

fn value(rng: &mut Rng, version: u64) -> Bytes {
    let len = 1 + rng.below(1500) as usize;
    let mut v = format!("{version}:").into_bytes();
    v.resize(len.max(v.len()), b'a' + (version % 26) as u8);
    Bytes::from(v)
}

/// Every model key reads back (cold ones from the device), nothing else exists, and the live
/// bytes per segment are exactly what the entries' pointers name.
async fn must_match(node: &Node, model: &BTreeMap<Bytes, Bytes>, ctx: &str) {
    let stored = node.engine.0.borrow().scan_stored(b"", b"");
    assert_eq!(stored.len(), model.len(), "{ctx}: key count");
    for (k, s) in stored {
        let want = model
            .get(&k)
            .unwrap_or_else(|| panic!("{ctx}: extra key {k:?}"));
        let got = match s {
            Stored::Hot(e) => e.value.to_vec(),
            Stored::Cold { pointer, .. } => node
                .log
                .read_value(&pointer)
                .await
                .unwrap_or_else(|e| panic!("{ctx}: cold read of {k:?}: {e}")),
        };
        assert_eq!(&got[..], &want[..], "{ctx}: value of {k:?}");
    }
    let e = node.engine.0.borrow();
    let mut live: BTreeMap<SegmentId, u64> = BTreeMap::new();
    for k in model.keys() {
        if let Some(p) = e.pointer(k) {
            *live.entry(p.segment).or_default() += u64::from(p.len).max(1);
        }
    }
    assert_eq!(&live, e.live_bytes(), "{ctx}: live bytes per segment");
}

/// Crashes the device (unflushed blocks dropped, kept or torn), reopens the log and rebuilds
/// the engine from the durable checkpoint and the writes after it.
async fn must_crash_and_recover(node: Node, seed: u64) -> Node {
    let Node {
        log,
        durable,
        engine,
    } = node;
    let copies_hot = engine.1;
    let mode = match seed % 3 {
        0 => CrashMode::DropUnflushed,
        1 => CrashMode::KeepUnflushed,
        _ => CrashMode::Random { seed },
    };
    let mem = log.into_device().unwrap().crash(mode).await.unwrap();
    let (log, _) = Vlog::open(FaultyDevice::new(mem), OWNER, cfg())
        .await
        .unwrap();
    let mut engine = MasstreeStore::new();
    for (k, s) in &durable.checkpoint {
        match s {
            Stored::Hot(e) => engine.put(k.clone(), e.clone()),
            Stored::Cold {
                pointer,
                expire_at_ms,
            } => engine.put_cold(k.clone(), *pointer, *expire_at_ms),
        };
    }
    for w in &durable.tail {
        match w {
            Write::Put(k, v) => {
                engine.put(k.clone(), v.clone());
            }
            Write::Delete(k) => {
                engine.delete(k);
            }
        }
    }
    Node {
        log,
        engine: Engine(RefCell::new(engine), copies_hot),
        durable,
    }
}

/// A node with an empty engine on a freshly formatted device, nothing durable yet.
async fn fresh_node(copies_hot: bool) -> Node {
    let (log, _) = Vlog::open(FaultyDevice::new(must_format()), OWNER, cfg())
        .await
        .unwrap();
    Node {
        log,
        engine: Engine(RefCell::new(MasstreeStore::new()), copies_hot),
        durable: Durable::default(),
    }
}

async fn run(seed: u64, steps: u64) {
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let mut node = fresh_node(seed % 2 == 1).await;
    let mut model: BTreeMap<Bytes, Bytes> = BTreeMap::new();
    let mut expiring: BTreeMap<Bytes, u64> = BTreeMap::new();
    let (mut now, mut freed, mut crashes, mut appended) = (1_000u64, 0usize, 0u64, 0u64);
    for step in 0..steps {
        let ctx = format!("seed {seed} step {step}");
        match rng.below(100) {
            0..=49 => {
                let k = key(rng.below(KEYS));
                let v = value(&mut rng, step);
                let exp = if rng.chance(10) {
                    now + 1 + rng.below(50)
                } else {
                    0
                };
                if exp == 0 {
                    expiring.remove(&k);
                } else {
                    expiring.insert(k.clone(), exp);
                }
                model.insert(k.clone(), v.clone());
                node.write(Write::Put(
                    k,
                    Entry {
                        value: v,
                        expire_at_ms: exp,
                    },
                ));
            }
            50..=57 => {
                let k = key(rng.below(KEYS));
                model.remove(&k);
                expiring.remove(&k);
                node.write(Write::Delete(k));
            }
            58..=62 => {
                // Expiry: time passes and the leader's sweep deletes what expired.
                now += rng.below(30);
                let dead: Vec<Bytes> = expiring
                    .iter()
                    .filter(|(_, t)| **t <= now)
                    .map(|(k, _)| k.clone())
                    .collect();
                for k in dead {
                    expiring.remove(&k);
                    model.remove(&k);
                    node.write(Write::Delete(k));
                }
            }
            63..=77 => node
                .demote()
                .await
                .unwrap_or_else(|e| panic!("{ctx}: demote: {e}")),
            78..=87 => {
                freed += node
                    .collect(rng.chance(20))
                    .await
                    .unwrap_or_else(|e| panic!("{ctx}: collect: {e}"));
            }
            88..=92 => node.checkpoint(),
            93..=95 => must_match(&node, &model, &ctx).await,
            _ => {
                // A crash: at idle, or at a random device operation of the next pass.
                if rng.chance(70) {
                    let at = node.log.device().counts().total() + 1 + rng.below(40);
                    node.log.device().schedule(Fault {
                        kind: OpKind::Any,
                        nth: at,
                        action: FaultAction::Halt,
                    });
                    let _ = node.collect(true).await;
                }
                appended += node.log.metrics().appended_bytes_total;
                node = must_crash_and_recover(node, rng.next()).await;
                crashes += 1;
                must_match(&node, &model, &format!("{ctx} after crash {crashes}")).await;
            }
        }
    }
    must_match(&node, &model, &format!("seed {seed} end")).await;
    // The run appended far more than the device holds: only collection made room.
    appended += node.log.metrics().appended_bytes_total;
    assert!(
        appended > 2 * SEGMENTS * SEG,
        "seed {seed}: the run must outgrow the device ({appended} bytes appended)"
    );
    assert!(freed > 0, "seed {seed}: passes freed segments");
    eprintln!("seed {seed}: {freed} segments freed, {crashes} crashes, {appended} bytes appended");
}

#[test]
fn collected_log_matches_a_btreemap_through_crashes_mid_pass() {
    for seed in 1..=16 {
        block_on(run(seed, 4000));
    }
}

/// A node whose oldest segments hold live demoted values, some of them named by the newest
/// checkpoint and some only by the engine, and some dead: a forced pass has work of every kind.
async fn prepared() -> (Node, BTreeMap<Bytes, Bytes>) {
    let mut node = fresh_node(false).await;
    let mut model = BTreeMap::new();
    let mut rng = Rng(0x5EED_0F6C);
    for round in 0..12u64 {
        for i in 0..KEYS {
            if (i + round) % 3 == 0 || round == 0 {
                let (k, v) = (key(i), value(&mut rng, round * 1000 + i));
                model.insert(k.clone(), v.clone());
                node.write(Write::Put(
                    k,
                    Entry {
                        value: v,
                        expire_at_ms: 0,
                    },
                ));
            }
        }
        node.demote().await.unwrap();
        if round % 2 == 0 {
            node.checkpoint();
        }
    }
    // Hot entries with a pointer into the oldest segments too (loaded back).
    let cold: Vec<(Bytes, LogPointer)> = {
        let e = node.engine.0.borrow();
        model
            .keys()
            .filter_map(|k| e.cold_pointer(k).map(|p| (k.clone(), p)))
            .take(10)
            .collect()
    };
    for (k, p) in cold {
        let v = node.log.read_value(&p).await.unwrap();
        assert!(node.engine.0.borrow_mut().load(&k, p, &v));
    }
    (node, model)
}

#[test]
fn a_crash_at_every_device_operation_of_a_pass_loses_nothing() {
    block_on(async {
        // How many device operations a whole pass takes.
        let (mut node, model) = prepared().await;
        let before = node.log.device().counts().total();
        let freed = node.collect(true).await.unwrap();
        let ops = node.log.device().counts().total() - before;
        assert!(
            freed > 0 && ops > 10,
            "the pass has work: {freed} freed, {ops} ops"
        );
        must_match(&node, &model, "no crash").await;
        eprintln!("a pass frees {freed} segments in {ops} device operations");
        for nth in 0..=ops {
            let ctx = format!("crash at operation {nth} of {ops}");
            let (mut node, model) = prepared().await;
            let at = node.log.device().counts().total() + nth;
            node.log.device().schedule(Fault {
                kind: OpKind::Any,
                nth: at,
                action: FaultAction::Halt,
            });
            let _ = node.collect(true).await;
            let segments = node.log.segment_usage().len();
            let mut node = must_crash_and_recover(node, nth).await;
            must_match(&node, &model, &ctx).await;
            // The next pass collects what the crash left behind.
            node.collect(true)
                .await
                .unwrap_or_else(|e| panic!("{ctx}: next pass: {e}"));
            node.checkpoint();
            node.reclaim().await.unwrap();
            must_match(&node, &model, &format!("{ctx}, next pass")).await;
            assert!(
                node.log.segment_usage().len() <= segments + 1,
                "{ctx}: leaked segments stay leaked"
            );
        }
    });
}
