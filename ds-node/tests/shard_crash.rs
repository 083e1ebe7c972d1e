//! A whole shard crashed in-process: its shard log on `nvme::faulty::FaultyDevice` over a
//! `MemDevice`, its checkpoints in a `MemCheckpointStore`, both on one power switch. A load of
//! writes (with overwrites), checkpoints with log compaction, a split and a garbage-collection
//! pass runs until the power is cut — at a failpoint (`docs/guides/ds-node.md`, "Failpoints")
//! or at a sampled device operation — then the surviving image (unflushed blocks dropped,
//! kept or torn; unsynced checkpoint files and names likewise) is reopened and checked against
//! the model of acknowledged writes: every acknowledged write is there with its value, every
//! other value read is one that was written (never a torn record taken as valid), and
//! recovery opens the image without an error or a panic. A three-replica case crashes a
//! follower while it installs a snapshot and checks that it catches up to the leader's copy.
//!
//! Needs the `failpoints` feature (this crate's test builds have it: see `Cargo.toml`).
#![allow(clippy::unwrap_used)]

#[path = "common/mode.rs"]
mod mode;

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use ds_node::config::{InitialReplica, PeerStore};
use ds_node::server::checkpoint_store::MemCheckpointStore;
use ds_node::server::clock::SystemClock;
use ds_node::server::recover::ShardStorage;
use ds_node::server::{
    Shard, checkpoint, demote, gc, handler, index_checkpoint, merge, ready, split,
};
use ds_node::{CheckpointMode, DsConfig};
use net::keyspace::{Db, meta_key};
use net::message::RouteCtx;
use net::message::handshake::{Acceptor, Role};
use net::message::kv::{Cond, Expiry, KvOp, KvRequest, KvResponse, OpResult};
use net::transport::Handled;
use net::{ClusterId, Message, NodeId, RangeId, ReplicaId, RpcError, StoreId};
use nvme::faulty::{CrashMode, Fault, FaultAction, FaultyDevice, OpKind};
use nvme::mem::MemDevice;

type Dev = Rc<FaultyDevice<MemDevice>>;
type TestShard = Shard<Dev>;

const LOG_BYTES: u64 = 32 << 20;
const SEGMENT_BYTES: u64 = 1536 << 10;
const KEYS: u64 = 48;

/// The machine's storage: the log device and the checkpoint directory on one power switch.
struct Disk {
    dev: Dev,
    store: Rc<MemCheckpointStore>,
    power_off: Arc<AtomicBool>,
}

impl Disk {
    fn new(
        image: Option<Vec<u8>>,
        store: impl FnOnce(Arc<AtomicBool>) -> MemCheckpointStore,
    ) -> Self {
        let mem = match image {
            Some(bytes) => MemDevice::from_bytes(bytes, 4096).unwrap(),
            None => MemDevice::new(LOG_BYTES, 4096).unwrap(),
        };
        let dev = Rc::new(FaultyDevice::new(mem));
        let power_off = dev.power_switch();
        let store = Rc::new(store(Arc::clone(&power_off)));
        Self {
            dev,
            store,
            power_off,
        }
    }

    fn fresh() -> Self {
        Self::new(None, MemCheckpointStore::with_power_switch)
    }

    /// Cuts the power (if not cut yet) and returns what survives, on a new power switch.
    async fn crash(&self, mode: CrashMode) -> Disk {
        self.power_off.store(true, Ordering::SeqCst);
        self.dev.crash_in_place(mode).await.unwrap();
        let image = self.dev.inner().to_bytes();
        Disk::new(Some(image), |p| self.store.crash(mode, p))
    }

    fn storage(&self, fresh: bool) -> ShardStorage<Dev> {
        ShardStorage {
            device: Rc::clone(&self.dev),
            fresh,
            checkpoints: Rc::clone(&self.store) as _,
            clock: Rc::new(SystemClock),
        }
    }
}

thread_local! {
    /// The checkpoint mode of the shards opened on this thread (an executor runs one case).
    static MODE: Cell<CheckpointMode> = Cell::new(mode::test_checkpoint_mode());
    /// The load of this thread's case merges the split back ([`merge_load`]).
    static MERGE: Cell<bool> = const { Cell::new(false) };
}

fn cfg() -> DsConfig {
    DsConfig {
        checkpoint_mode: MODE.with(Cell::get),
        data_dir: std::env::temp_dir().join("tierkv-shard-crash-unused"),
        shards: 1,
        pin: false,
        log_file_bytes: LOG_BYTES,
        segment_bytes: SEGMENT_BYTES,
        tick_ms: 2,
        election_ticks: 5,
        heartbeat_ticks: 1,
        cached_entries: 16,
        ..DsConfig::default()
    }
}

async fn open(disk: &Disk, fresh: bool) -> anyhow::Result<Rc<TestShard>> {
    let shard = Shard::open_on(cfg(), 0, StoreId(1), ClusterId(0), disk.storage(fresh)).await?;
    if fresh {
        shard.create_range(shard.initial_descriptor()).await?;
    }
    ds_node::core::spawn(ready::run(Rc::clone(&shard)));
    Ok(shard)
}

fn stop(shard: &TestShard) {
    shard.shutdown();
}

/// The range holding `key` and its epoch, from the shard's own descriptors.
fn route(shard: &TestShard, key: &[u8]) -> Option<RouteCtx> {
    let mk = meta_key(Db::default(), key);
    let st = shard.state();
    st.peers()
        .values()
        .find(|p| p.is_initialized() && p.desc().contains(&mk))
        .map(|p| RouteCtx {
            range_id: p.desc().id,
            epoch: p.desc().epoch,
        })
}

/// Sends `op` for `key` until it is answered by a leader: `None` when it failed (not
/// acknowledged).
async fn call(shard: &Rc<TestShard>, key: &[u8], op: KvOp) -> Option<KvResponse> {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        let Some(ctx) = route(shard, key) else {
            glommio::timer::sleep(Duration::from_millis(2)).await;
            continue;
        };
        let req = Message::KvRequest(KvRequest {
            ctx,
            op: op.clone(),
        });
        let msg = match handler::handle(shard, req) {
            Handled::Now(m) => m,
            Handled::Later(f) => f.await,
        };
        match msg {
            Some(Message::KvResponse(KvResponse::Err {
                error:
                    RpcError::NotLeader { .. }
                    | RpcError::EpochMismatch { .. }
                    | RpcError::RangeNotFound { .. }
                    | RpcError::ServerBusy {},
            })) => glommio::timer::sleep(Duration::from_millis(2)).await,
            Some(Message::KvResponse(KvResponse::Err { .. })) | None => return None,
            Some(Message::KvResponse(r)) => return Some(r),
            Some(other) => panic!("unexpected answer {other:?}"),
        }
    }
    None
}

fn key(k: u64) -> Bytes {
    Bytes::from(format!("key{k:03}"))
}

/// A value naming its write, of a size between 100 B and ~12 KiB (spanning blocks).
fn value(k: u64, seq: u64) -> Bytes {
    let mut v = format!("{k}:{seq}:").into_bytes();
    let len = 100 + (seq * 7919 + k * 104_729) % 12_000;
    v.resize(len as usize, b'a' + (seq % 26) as u8);
    Bytes::from(v)
}

/// Every write issued per key, in issue (= log) order, and whether it was acknowledged.
#[derive(Debug, Default)]
struct Model {
    writes: BTreeMap<u64, Vec<(Bytes, bool)>>,
    acked: u64,
}

impl Model {
    /// Checks the value read for key `k` after recovery.
    fn check(&self, k: u64, got: Option<&Bytes>) {
        let writes = self.writes.get(&k).map_or(&[][..], |w| &w[..]);
        let last_acked = writes.iter().rposition(|(_, acked)| *acked);
        let allowed_from = last_acked.unwrap_or(0);
        match got {
            None => assert!(
                last_acked.is_none(),
                "key{k}: acknowledged write {:?} lost",
                last_acked.map(|i| &writes[i].0[..12.min(writes[i].0.len())])
            ),
            Some(v) => assert!(
                writes[allowed_from..].iter().any(|(w, _)| w == v),
                "key{k}: read a value that is not the last acknowledged one or a later write ({} B, starts {:?})",
                v.len(),
                &v[..v.len().min(16)]
            ),
        }
    }
}

/// Writes `n` values to keys `0..keys` in concurrent batches; stops once the power is off.
async fn write_load(
    shard: &Rc<TestShard>,
    model: &Rc<RefCell<Model>>,
    seq: &Cell<u64>,
    (n, keys): (u64, u64),
    power: &AtomicBool,
) {
    const BATCH: u64 = 8;
    for _ in 0..n.div_ceil(BATCH) {
        if power.load(Ordering::SeqCst) {
            return;
        }
        let mut tasks = Vec::new();
        for _ in 0..BATCH {
            let s = seq.get();
            seq.set(s + 1);
            let k = (s * 31) % keys;
            let v = value(k, s);
            let slot = {
                let mut m = model.borrow_mut();
                let w = m.writes.entry(k).or_default();
                w.push((v.clone(), false));
                w.len() - 1
            };
            let (shard, model) = (Rc::clone(shard), Rc::clone(model));
            tasks.push(glommio::spawn_local(async move {
                let op = KvOp::StrSet {
                    key: key(k),
                    value: v,
                    expiry: Expiry::Persist {},
                    cond: Cond::Always {},
                    get_old: false,
                };
                if let Some(KvResponse::Ok { .. }) = call(&shard, &key(k), op).await {
                    let mut m = model.borrow_mut();
                    m.writes.get_mut(&k).unwrap()[slot].1 = true;
                    m.acked += 1;
                }
            }));
        }
        for t in tasks {
            t.await;
        }
    }
}

fn range_ids(shard: &TestShard) -> Vec<RangeId> {
    shard.state().peers().keys().copied().collect()
}

/// Checkpoints every range (compacting its log below the checkpoint) and frees segments: one
/// index checkpoint in index mode.
async fn checkpoint_all(shard: &Rc<TestShard>) {
    if shard.key_index().is_some() {
        let _ = index_checkpoint::checkpoint(shard).await;
    } else {
        for r in range_ids(shard) {
            let _ = checkpoint::checkpoint_range(shard, r).await;
        }
    }
    let _ = checkpoint::reclaim(shard).await;
}

/// Splits range 1 (at a key the shard picks) into a new range 2 and waits until it exists.
async fn split_range(shard: &Rc<TestShard>, power: &AtomicBool) {
    split::propose(
        shard,
        RangeId(1),
        Bytes::new(),
        RangeId(2),
        vec![ReplicaId(2)],
    );
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline && !power.load(Ordering::SeqCst) {
        if shard
            .state()
            .peers()
            .get(&net::RangeId(2))
            .is_some_and(|p| p.is_initialized())
        {
            return;
        }
        glommio::timer::sleep(Duration::from_millis(2)).await;
    }
}

/// Merges range `right` into range `left` as the master would (repeating its operator until
/// the right range is gone), until done, 3 s or the power is off.
async fn merge_ranges(shard: &Rc<TestShard>, left: RangeId, right: RangeId, power: &AtomicBool) {
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline && !power.load(Ordering::SeqCst) {
        let Some(d) = shard.state().peers().get(&right).map(|p| p.desc().clone()) else {
            return;
        };
        merge::step(shard, left, d);
        glommio::timer::sleep(Duration::from_millis(2)).await;
    }
}

/// The merge load: writes, a checkpoint, a split, writes on both sides, a merge of the two
/// ranges, writes, a checkpoint, writes; each step skipped once the power is off.
async fn merge_load(shard: &Rc<TestShard>, model: &Rc<RefCell<Model>>, power: &AtomicBool) {
    let seq = Cell::new(0);
    write_load(shard, model, &seq, (160, KEYS), power).await;
    checkpoint_all(shard).await;
    if !power.load(Ordering::SeqCst) {
        split_range(shard, power).await;
    }
    write_load(shard, model, &seq, (160, KEYS), power).await;
    merge_ranges(shard, RangeId(1), RangeId(2), power).await;
    write_load(shard, model, &seq, (160, KEYS), power).await;
    checkpoint_all(shard).await;
    write_load(shard, model, &seq, (80, KEYS), power).await;
}

/// The load: writes, a checkpoint with compaction, a split, writes, every entry made cold
/// (`demote`: the values stay in the log, which the checkpoints then point into), writes to
/// half the keys (the other half stays cold in old segments), checkpoints, a forced GC pass
/// (relocating the cold values), writes; each step skipped once the power is off.
async fn load(shard: &Rc<TestShard>, model: &Rc<RefCell<Model>>, power: &AtomicBool) {
    if MERGE.with(Cell::get) {
        return merge_load(shard, model, power).await;
    }
    let seq = Cell::new(0);
    write_load(shard, model, &seq, (160, KEYS), power).await;
    checkpoint_all(shard).await;
    write_load(shard, model, &seq, (80, KEYS), power).await;
    if !power.load(Ordering::SeqCst) {
        split_range(shard, power).await;
    }
    write_load(shard, model, &seq, (160, KEYS), power).await;
    if !power.load(Ordering::SeqCst) {
        let _ = demote::demote(shard, 1.0).await;
    }
    checkpoint_all(shard).await;
    write_load(shard, model, &seq, (320, KEYS / 2), power).await;
    checkpoint_all(shard).await;
    if !power.load(Ordering::SeqCst) {
        let _ = gc::pass(shard, true).await;
    }
    write_load(shard, model, &seq, (80, KEYS), power).await;
}

/// Reopens the crashed image and checks every key against the model; then checks the shard
/// still takes writes.
async fn reopen_and_check(disk: &Disk, model: &Model, what: &str) {
    let shard = match open(disk, false).await {
        Ok(s) => s,
        Err(e) => panic!("{what}: recovery failed: {e:#}"),
    };
    // A merge the crash interrupted after its freeze: the master would repeat its operator.
    let frozen: Vec<(RangeId, RangeId)> = shard
        .state()
        .frozen()
        .iter()
        .map(|(right, (_, left))| (*left, *right))
        .collect();
    for (left, right) in frozen {
        merge_ranges(&shard, left, right, &AtomicBool::new(false)).await;
    }
    assert!(
        shard.state().frozen().is_empty(),
        "{what}: a frozen range was never merged: {:?}",
        shard.state().frozen()
    );
    for k in 0..KEYS {
        let got = call(&shard, &key(k), KvOp::StrGet { key: key(k) }).await;
        let v = match got {
            Some(KvResponse::Ok {
                result: OpResult::Value { value },
            }) => value,
            other => panic!("{what}: key{k}: read failed after recovery: {other:?}"),
        };
        model.check(k, v.as_ref());
    }
    let op = KvOp::StrSet {
        key: key(0),
        value: Bytes::from_static(b"after"),
        expiry: Expiry::Persist {},
        cond: Cond::Always {},
        get_old: false,
    };
    assert!(
        matches!(call(&shard, &key(0), op).await, Some(KvResponse::Ok { .. })),
        "{what}: the recovered shard refuses writes"
    );
    stop(&shard);
}

/// Runs the load on a fresh disk until the power goes off (`cut` arms the cut), crashes with
/// `mode`, reopens and checks. Returns how many writes were acknowledged.
fn crash_run(what: String, mode: CrashMode, cut: impl FnOnce(&Disk) + Send + 'static) -> u64 {
    crash_run_in(mode::test_checkpoint_mode(), what, mode, cut)
}

/// [`crash_run`] with the shard in checkpoint mode `ckpt`.
fn crash_run_in(
    ckpt: CheckpointMode,
    what: String,
    mode: CrashMode,
    cut: impl FnOnce(&Disk) + Send + 'static,
) -> u64 {
    crash_run_with((ckpt, false), what, mode, cut)
}

/// [`crash_run_in`] with the load [`merge_load`] when `merge`.
fn crash_run_with(
    (ckpt, merge): (CheckpointMode, bool),
    what: String,
    mode: CrashMode,
    cut: impl FnOnce(&Disk) + Send + 'static,
) -> u64 {
    glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .io_memory(512 << 10)
        .spawn(move || async move {
            MODE.with(|m| m.set(ckpt));
            MERGE.with(|m| m.set(merge));
            eprintln!("case: {what}");
            let disk = Disk::fresh();
            let shard = open(&disk, true).await.unwrap();
            cut(&disk);
            let model = Rc::new(RefCell::new(Model::default()));
            load(&shard, &model, &disk.power_off).await;
            assert!(
                disk.power_off.load(Ordering::SeqCst),
                "{what}: the load finished without reaching the crash point"
            );
            stop(&shard);
            let after = disk.crash(mode).await;
            let model = std::mem::take(&mut *model.borrow_mut());
            reopen_and_check(&after, &model, &what).await;
            model.acked
        })
        .unwrap()
        .join()
        .unwrap()
}

/// The failpoints a single-replica load passes, with the hit at which the power is cut.
const FAILPOINTS: &[(&str, u64)] = &[
    ("ds_node::shard::write::after_append", 20),
    ("ds_node::shard::write::after_apply", 150),
    ("ds_node::shard::checkpoint::before_rename", 2),
    ("ds_node::shard::checkpoint::before_compact", 1),
    ("ds_node::shard::checkpoint::after_compact", 0),
    ("ds_node::shard::split::before_checkpoint", 0),
    ("ds_node::shard::gc::after_relocate", 0),
    ("ds_node::shard::gc::before_reclaim", 0),
];

/// Arms failpoint `name` to cut the power at its `nth` hit (0-based).
fn cut_at_failpoint(name: &'static str, nth: u64) -> impl FnOnce(&Disk) + Send + 'static {
    move |disk: &Disk| {
        let power = Arc::clone(&disk.power_off);
        let hits = AtomicU64::new(0);
        fail::cfg_callback(name, move || {
            if hits.fetch_add(1, Ordering::SeqCst) == nth {
                power.store(true, Ordering::SeqCst);
            }
        })
        .unwrap();
    }
}

/// The failpoints a single-replica load passes in index mode (three checkpoints of the load
/// and one for the GC pass), with the hit at which the power is cut.
const INDEX_FAILPOINTS: &[(&str, u64)] = &[
    ("ds_node::index_checkpoint::after_capture", 0),
    ("ds_node::index_checkpoint::after_capture", 2),
    ("ds_node::index_checkpoint::after_values", 1),
    ("ds_node::index_checkpoint::before_manifest", 1),
    ("ds_node::index_checkpoint::after_manifest", 0),
    ("ds_node::index_checkpoint::after_manifest", 2),
    ("ds_node::shard::checkpoint::after_compact", 0),
    ("ds_node::shard::split::before_checkpoint", 0),
    ("ds_node::shard::checkpoint::before_rename", 0),
    ("ds_node::shard::gc::after_relocate", 0),
    ("ds_node::shard::gc::before_reclaim", 0),
    ("ds_node::shard::write::after_apply", 150),
];

/// Index mode (`checkpoint-mode = "index"`): a crash between the steps of an index
/// checkpoint (after the capture, after the unbacked values, before and after the manifest,
/// after the log compaction), in a split's descriptor-only base and in a GC pass loses no
/// acknowledged write and reopens from the key index.
#[test]
fn index_mode_every_acknowledged_write_survives_a_crash_at_every_failpoint() {
    let scenario = fail::FailScenario::setup();
    for (i, &(name, nth)) in INDEX_FAILPOINTS.iter().enumerate() {
        for mode in [
            CrashMode::DropUnflushed,
            CrashMode::Random { seed: i as u64 },
        ] {
            let acked = crash_run_in(
                CheckpointMode::Index,
                format!("index mode: {name} #{nth} ({mode:?})"),
                mode,
                cut_at_failpoint(name, nth),
            );
            fail::remove(name);
            assert!(acked > 0, "{name}: nothing was acknowledged");
        }
    }
    scenario.teardown();
}

#[test]
fn every_acknowledged_write_survives_a_crash_at_every_failpoint() {
    let scenario = fail::FailScenario::setup();
    for (i, &(name, nth)) in FAILPOINTS.iter().enumerate() {
        for mode in [
            CrashMode::DropUnflushed,
            CrashMode::Random { seed: i as u64 },
        ] {
            // These failpoints are files mode's (index mode: the test above).
            let acked = crash_run_in(
                CheckpointMode::Files,
                format!("{name} ({mode:?})"),
                mode,
                cut_at_failpoint(name, nth),
            );
            fail::remove(name);
            assert!(
                acked > 0 || name.contains("before_rename"),
                "{name}: nothing was acknowledged"
            );
        }
    }
    scenario.teardown();
}

/// The failpoints of a merge (`server::merge`), each cut at its first hit: after the freeze
/// (before the commit is proposed), before the commit applies, after it applied (before the
/// left range's checkpoint covering both) and before the right replica is destroyed.
const MERGE_FAILPOINTS: &[&str] = &[
    "ds_node::shard::merge::before_commit",
    "ds_node::shard::merge::before_apply",
    "ds_node::shard::merge::before_checkpoint",
    "ds_node::shard::merge::before_destroy",
];

/// A crash at every step of a merge loses no acknowledged write, and the shard recovers with
/// the merge done or finishable (a frozen right range is merged when the operator repeats).
#[test]
fn every_acknowledged_write_survives_a_crash_at_every_merge_step() {
    let scenario = fail::FailScenario::setup();
    for (i, &name) in MERGE_FAILPOINTS.iter().enumerate() {
        for mode in [
            CrashMode::DropUnflushed,
            CrashMode::Random {
                seed: 50 + i as u64,
            },
        ] {
            let acked = crash_run_with(
                (CheckpointMode::Files, true),
                format!("merge: {name} ({mode:?})"),
                mode,
                cut_at_failpoint(name, 0),
            );
            fail::remove(name);
            assert!(acked > 0, "{name}: nothing was acknowledged");
        }
    }
    scenario.teardown();
}

#[test]
fn every_acknowledged_write_survives_a_crash_at_sampled_device_operations() {
    let scenario = fail::FailScenario::setup();
    // Device operations counted from the load's start (after formatting and the first range).
    let points = [
        (OpKind::Write, 60),
        (OpKind::Flush, 40),
        (OpKind::Write, 130),
        (OpKind::Flush, 175),
        (OpKind::Write, 205),
        (OpKind::Any, 480),
    ];
    for (i, &(kind, nth)) in points.iter().enumerate() {
        for mode in [
            CrashMode::KeepUnflushed,
            CrashMode::Random {
                seed: 100 + i as u64,
            },
        ] {
            crash_run(
                format!("{kind:?} #{nth} ({mode:?})"),
                mode,
                move |disk: &Disk| {
                    let c = disk.dev.counts();
                    let base = match kind {
                        OpKind::Write => c.writes,
                        OpKind::Flush => c.flushes,
                        _ => c.total(),
                    };
                    disk.dev.schedule(Fault {
                        kind,
                        nth: base + nth,
                        action: FaultAction::Halt,
                    });
                },
            );
        }
    }
    scenario.teardown();
}

/// One store of the three-replica case: its shard and the task serving its listener.
struct Store {
    shard: Rc<TestShard>,
    _serving: ds_node::core::OwnedTask,
}

fn three_cfg(id: u64, addrs: &[String]) -> DsConfig {
    DsConfig {
        store_id: id,
        base_port: 0,
        tick_ms: 5,
        election_ticks: 10,
        heartbeat_ticks: 2,
        initial_replicas: (1..=3)
            .map(|i| InitialReplica {
                replica_id: i,
                store_id: i,
                shard_id: 0,
            })
            .collect(),
        peers: (1..=3)
            .map(|i| PeerStore {
                store_id: i,
                shard_addrs: vec![addrs[i as usize - 1].clone()],
            })
            .collect(),
        ..cfg()
    }
}

/// Opens store `id` on `disk` (creating its range when `fresh`) and serves it on `addr`.
async fn start_store(id: u64, addrs: &[String], addr: &str, disk: &Disk, fresh: bool) -> Store {
    let cfg = three_cfg(id, addrs);
    let listener = ds_node::core::Listener::bind(addr).unwrap();
    let transport = cfg.transport().unwrap();
    let shard = Shard::open_on(cfg, 0, StoreId(id), ClusterId(0), disk.storage(fresh))
        .await
        .unwrap_or_else(|e| panic!("store {id}: open failed: {e:#}"));
    if fresh {
        shard
            .create_range(shard.initial_descriptor())
            .await
            .unwrap();
    }
    ds_node::core::spawn(ready::run(Rc::clone(&shard)));
    let acceptor = Acceptor {
        role: Role::DsNode {},
        cluster_id: ClusterId(0),
        node_id: NodeId(id),
    };
    let h = Rc::clone(&shard);
    let handler = Rc::new(move |m| handler::handle(&h, m));
    let serving = ds_node::core::spawn_owned(async move {
        let _ = listener.serve(acceptor, transport, 64, handler).await;
    });
    Store {
        shard,
        _serving: serving,
    }
}

fn free_addr() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
}

/// The store whose replica of range 1 leads, once one does.
async fn leader_of(stores: &[&Store]) -> Rc<TestShard> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        for s in stores {
            let leads = s
                .shard
                .state()
                .peers()
                .get(&net::RangeId(1))
                .is_some_and(|p| p.is_leader());
            if leads {
                return Rc::clone(&s.shard);
            }
        }
        glommio::timer::sleep(Duration::from_millis(5)).await;
    }
    panic!("no leader elected");
}

fn applied(shard: &TestShard) -> u64 {
    shard
        .state()
        .peers()
        .get(&net::RangeId(1))
        .map_or(0, |p| p.applied())
}

/// Waits until `follower` applied as far as `leader`, then compares their engines.
async fn must_agree(leader: &TestShard, follower: &TestShard) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while applied(follower) < applied(leader) {
        assert!(
            Instant::now() < deadline,
            "the follower stays at {} behind the leader's {}",
            applied(follower),
            applied(leader)
        );
        glommio::timer::sleep(Duration::from_millis(5)).await;
    }
    let scan = |s: &TestShard| s.state().engine().scan_stored(b"", b"");
    assert!(scan(leader) == scan(follower), "the replicas differ");
}

/// Three replicas of range 1; the third starts after the leader compacted its log, so it is
/// caught up by a snapshot, and its power is cut while it installs it (checkpoint durable,
/// descriptor not). Reopened on what survived, it must recover and catch up to an identical
/// copy, and every write acknowledged meanwhile reads back from the leader.
#[test]
fn a_follower_crashed_while_installing_a_snapshot_recovers_and_agrees() {
    let scenario = fail::FailScenario::setup();
    for mode in [CrashMode::DropUnflushed, CrashMode::Random { seed: 7 }] {
        glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .io_memory(512 << 10)
            .spawn(move || async move { snapshot_install_crash(mode).await })
            .unwrap()
            .join()
            .unwrap();
        fail::remove("ds_node::shard::snapshot::before_descriptor");
    }
    scenario.teardown();
}

async fn snapshot_install_crash(mode: CrashMode) {
    let addrs: Vec<String> = (0..3).map(|_| free_addr()).collect();
    let disks = [Disk::fresh(), Disk::fresh(), Disk::fresh()];
    let s1 = start_store(1, &addrs, &addrs[0], &disks[0], true).await;
    let s2 = start_store(2, &addrs, &addrs[1], &disks[1], true).await;
    let leader = leader_of(&[&s1, &s2]).await;
    let model = Rc::new(RefCell::new(Model::default()));
    let seq = Cell::new(0);
    let never = AtomicBool::new(false);
    write_load(&leader, &model, &seq, (120, KEYS), &never).await;
    checkpoint_all(&s1.shard).await;
    checkpoint_all(&s2.shard).await;
    cut_at_failpoint("ds_node::shard::snapshot::before_descriptor", 0)(&disks[2]);
    let s3 = start_store(3, &addrs, &addrs[2], &disks[2], true).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !disks[2].power_off.load(Ordering::SeqCst) {
        assert!(Instant::now() < deadline, "no snapshot reached store 3");
        glommio::timer::sleep(Duration::from_millis(5)).await;
    }
    stop(&s3.shard);
    drop(s3);
    let after = disks[2].crash(mode).await;
    // The restarted store listens elsewhere: tell the others.
    let addr3 = free_addr();
    for s in [&s1, &s2] {
        s.shard.store_moved(StoreId(3), vec![addr3.clone()]);
    }
    let s3 = start_store(3, &addrs, &addr3, &after, false).await;
    write_load(&leader, &model, &seq, (40, KEYS), &never).await;
    let model = std::mem::take(&mut *model.borrow_mut());
    assert!(model.acked > 0, "nothing was acknowledged");
    for k in 0..KEYS {
        let got = call(&leader, &key(k), KvOp::StrGet { key: key(k) }).await;
        match got {
            Some(KvResponse::Ok {
                result: OpResult::Value { value },
            }) => model.check(k, value.as_ref()),
            other => panic!("key{k}: read failed: {other:?}"),
        }
    }
    must_agree(&leader, &s3.shard).await;
    for s in [&s1, &s2, &s3] {
        stop(&s.shard);
    }
}
