//! Engine conformance: every [`Engine`] behaves as an ordered map with per-entry expiry.
//!
//! One generic function, [`run`], applies a random sequence of operations — put, delete, get,
//! expiry, forward and reverse scans with bounds and limits, key scans, demotion of an entry
//! to the shard log, and puts of values that already have a durable copy (as recovery makes
//! them) — to an engine and to an oracle, and compares every answer step by step. The oracle
//! is a plain `BTreeMap` whose scans filter every key, written apart from [`ModelEngine`] so
//! that the model is checked too. It runs on the model engine and on the Masstree engine.
//!
//! An engine with cold entries ([`Conformance::TIERED`]) is driven the way the shard drives
//! it (prefetch-then-apply): a read first declares its keys (a point or a bounded span), the
//! cold entries among them are loaded from the harness's log (their bytes checked against the
//! pointer's crc32c), then the read is applied, and the loaded copies are dropped again or
//! kept. After every step the suite checks which keys are cold, the live bytes per pointer,
//! the cold figures, and that no read reached a cold entry. An engine without cold entries
//! must refuse every demotion.
//!
//! Sizes are a property of every engine: each write returns its size change (`SizeDelta`),
//! checked against what the write must change, and after every step the sum of all returned
//! changes must equal the store's size recounted from the oracle (key + value bytes, keys).
//!
//! The engine side (the `Conformance` trait, the oracle) is in `conformance/`.
//!
//! The suite must be able to fail: `a_wrong_engine_is_caught_by_random_operations` runs it on
//! an engine whose scans include their end bound and expects a divergence.

mod conformance;

use bytes::Bytes;
use conformance::{Conformance, Oracle, Span, entry};
use engines::engine::{Engine, Entry, MasstreeEngine, ModelEngine, SizeDelta};
use engines::pointer::LogPointer;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

#[derive(Clone, Debug)]
enum Op {
    Put {
        key: Vec<u8>,
        value: Vec<u8>,
        expire_at_ms: u64,
    },
    /// A put of a value that already has a durable copy (recovery from a checkpoint).
    PutCold {
        key: Vec<u8>,
        value: Vec<u8>,
        expire_at_ms: u64,
    },
    Delete(Vec<u8>),
    /// A read of one key; `keep` keeps the loaded copies in memory.
    Get {
        key: Vec<u8>,
        keep: bool,
    },
    Expiry(Vec<u8>),
    Scan {
        span: Span,
        keep: bool,
    },
    ScanKeys(Span),
    /// Demotes `key` (a durable copy is appended to the harness's log first).
    Demote(Vec<u8>),
}

/// Keys over a tiny alphabet behind prefixes of 0, 8 and 16 bytes, so that keys collide, share
/// whole 8-byte slices (Masstree layers) and are prefixes of each other.
fn key() -> impl Strategy<Value = Vec<u8>> {
    const PREFIXES: [&[u8]; 3] = [b"", b"user:000", b"user:000\x00\x00item:9"];
    let alphabet = prop::sample::select(vec![0u8, b'a', b'b', 0xff]);
    (
        prop::sample::select(PREFIXES.to_vec()),
        prop::collection::vec(alphabet, 0..10),
    )
        .prop_map(|(p, t)| [p, &t[..]].concat())
}

fn span() -> impl Strategy<Value = Span> {
    let limit = prop_oneof![4 => 0usize..6, 1 => Just(usize::MAX)];
    (
        key(),
        prop::option::weighted(0.7, key()),
        limit,
        any::<bool>(),
    )
        .prop_map(|(start, end, limit, reverse)| Span {
            start,
            end,
            limit,
            reverse,
        })
}

fn op() -> impl Strategy<Value = Op> {
    let expiry = prop_oneof![3 => Just(0u64), 1 => 1u64..5, 1 => Just(u64::MAX)];
    prop_oneof![
        6 => (key(), prop::collection::vec(any::<u8>(), 0..40), expiry.clone()).prop_map(
            |(key, value, expire_at_ms)| Op::Put { key, value, expire_at_ms }
        ),
        1 => (key(), prop::collection::vec(any::<u8>(), 0..40), expiry).prop_map(
            |(key, value, expire_at_ms)| Op::PutCold { key, value, expire_at_ms }
        ),
        2 => key().prop_map(Op::Delete),
        3 => (key(), any::<bool>()).prop_map(|(key, keep)| Op::Get { key, keep }),
        1 => key().prop_map(Op::Expiry),
        3 => (span(), any::<bool>()).prop_map(|(span, keep)| Op::Scan { span, keep }),
        1 => span().prop_map(|s| Op::ScanKeys(Span { reverse: false, ..s })),
        3 => key().prop_map(Op::Demote),
    ]
}

/// Returns an error naming the step and both answers unless they are equal.
fn same<T: PartialEq + std::fmt::Debug>(
    step: usize,
    what: &str,
    got: T,
    want: T,
) -> Result<(), String> {
    if got == want {
        Ok(())
    } else {
        Err(format!(
            "step {step}, {what}: engine {got:?}, expected {want:?}"
        ))
    }
}

/// Loads the cold entries `span` declares (prefetch); returns what it loaded.
fn prefetch<E: Conformance>(
    e: &mut E,
    o: &Oracle,
    span: &Span,
    step: usize,
) -> Result<Vec<(Bytes, LogPointer)>, String> {
    let cold = e.cold_in(span);
    for (k, p) in &cold {
        same(
            step,
            "cold entry's pointer",
            Some(p),
            o.pointers.get(k.as_ref()),
        )?;
        let bytes = o.read(p)?;
        same(
            step,
            "load of a declared cold entry",
            e.load(k, *p, &bytes),
            true,
        )?;
    }
    Ok(cold)
}

/// After a read: drops the loaded copies again unless `keep`.
fn settle<E: Conformance>(
    e: &mut E,
    o: &mut Oracle,
    loaded: Vec<(Bytes, LogPointer)>,
    keep: bool,
    step: usize,
) -> Result<(), String> {
    for (k, p) in loaded {
        if keep {
            o.cold.remove(k.as_ref());
        } else {
            same(step, "drop of a loaded entry", e.drop_loaded(&k, p), true)?;
        }
    }
    Ok(())
}

/// Applies one operation to the engine and the oracle and compares the answers.
fn apply<E: Conformance>(e: &mut E, o: &mut Oracle, op: &Op, step: usize) -> Result<(), String> {
    match op {
        Op::Put {
            key,
            value,
            expire_at_ms,
        } => put(e, o, key, value, *expire_at_ms, false, step),
        Op::PutCold {
            key,
            value,
            expire_at_ms,
        } => put(e, o, key, value, *expire_at_ms, true, step),
        Op::Delete(key) => {
            let old = o.map.remove(key);
            o.forget(key);
            let got = e.delete(key);
            let want = old.map(|(v, _)| SizeDelta::removed(key.len(), v.len()));
            same(step, "delete's size change", got, want)?;
            o.reported += got.unwrap_or_default();
            Ok(())
        }
        Op::Get { key, keep } => {
            let loaded = prefetch(e, o, &Span::point(key), step)?;
            let want = o.map.get(key).map(|(v, t)| entry(v, *t));
            same(step, "get", e.get(key), want)?;
            settle(e, o, loaded, *keep, step)
        }
        Op::Expiry(key) => same(
            step,
            "expiry",
            e.expiry(key),
            o.map.get(key).map(|(_, t)| *t),
        ),
        Op::Scan { span, keep } => {
            let loaded = prefetch(e, o, span, step)?;
            let got = e.scan(&span.start, span.end.as_deref(), span.limit, span.reverse);
            same(step, "scan", got, o.scan(span))?;
            settle(e, o, loaded, *keep, step)
        }
        Op::ScanKeys(span) => {
            let got = e.scan_keys(&span.start, span.end.as_deref(), span.limit);
            let want: Vec<Bytes> = o.scan(span).into_iter().map(|(k, _)| k).collect();
            same(step, "scan_keys", got, want)
        }
        Op::Demote(key) => demote(e, o, key, step),
    }
}

/// Puts `key`, hot or (`cold`: a durable copy exists) cold; checks the size change.
fn put<E: Conformance>(
    e: &mut E,
    o: &mut Oracle,
    key: &[u8],
    value: &[u8],
    expire_at_ms: u64,
    cold: bool,
    step: usize,
) -> Result<(), String> {
    let old = o.map.insert(key.to_vec(), (value.to_vec(), expire_at_ms));
    o.forget(key);
    let k = Bytes::copy_from_slice(key);
    let got = if cold {
        let pointer = o.append(value);
        let got = e.put_cold(k, pointer, value, expire_at_ms);
        if E::TIERED {
            o.pointers.insert(key.to_vec(), pointer);
            o.cold.insert(key.to_vec());
        }
        got
    } else {
        e.put(k, entry(value, expire_at_ms))
    };
    let want = match old {
        Some((v, _)) => SizeDelta::replaced(v.len(), value.len()),
        None => SizeDelta::added(key.len(), value.len()),
    };
    o.reported += got;
    same(step, "put's size change", got, want)
}

/// Demotes `key` if it is hot: with the pointer it already has (a loaded entry), else with a
/// new durable copy.
fn demote<E: Conformance>(
    e: &mut E,
    o: &mut Oracle,
    key: &[u8],
    step: usize,
) -> Result<(), String> {
    let Some((value, _)) = o.map.get(key).cloned() else {
        return same(
            step,
            "demote of a missing key",
            e.demote(key, b"", LogPointer::default()),
            false,
        );
    };
    let pointer = match o.pointers.get(key) {
        Some(p) => *p,
        None => o.append(&value),
    };
    let want = E::TIERED && !o.cold.contains(key);
    same(step, "demote", e.demote(key, &value, pointer), want)?;
    if want {
        o.pointers.insert(key.to_vec(), pointer);
        o.cold.insert(key.to_vec());
    }
    Ok(())
}

/// Checks the state after a step: the sum of the size changes returned against a recount,
/// which of `keys` are cold, the cold figures, and that no read reached a cold entry.
fn check_state<E: Conformance>(e: &E, o: &Oracle, op: &Op, step: usize) -> Result<(), String> {
    let key = match op {
        Op::Put { key, .. }
        | Op::PutCold { key, .. }
        | Op::Delete(key)
        | Op::Get { key, .. }
        | Op::Expiry(key)
        | Op::Demote(key) => Some(key),
        Op::Scan { .. } | Op::ScanKeys(_) => None,
    };
    same(
        step,
        "sum of returned size changes vs recount",
        o.reported,
        o.recount(),
    )?;
    if let Some(k) = key {
        same(step, "is_cold", e.is_cold(k), o.cold.contains(k))?;
    }
    if let Some(got) = e.cold_figures() {
        same(
            step,
            "cold entries, cold bytes, live bytes",
            got,
            o.cold_figures(),
        )?;
    }
    same(
        step,
        "reads of cold entries not prefetched",
        e.cold_misses(),
        0,
    )
}

/// Runs `ops` on a new engine `E` against the oracle; the first divergence is the error.
fn run<E: Conformance>(ops: &[Op]) -> Result<(), String> {
    let (mut e, mut o) = (E::default(), Oracle::default());
    for (step, op) in ops.iter().enumerate() {
        apply(&mut e, &mut o, op, step).map_err(|m| format!("{m} ({op:?})"))?;
        check_state(&e, &o, op, step)?;
    }
    let all = Span {
        start: Vec::new(),
        end: None,
        limit: usize::MAX,
        reverse: false,
    };
    let step = ops.len();
    let loaded = prefetch(&mut e, &o, &all, step)?;
    same(
        step,
        "final contents",
        e.scan(b"", None, usize::MAX, false),
        o.scan(&all),
    )?;
    settle(&mut e, &mut o, loaded, true, step)
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    prop::collection::vec(op(), 1..200)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn the_model_engine_conforms(ops in ops()) {
        run::<ModelEngine>(&ops).map_err(TestCaseError::fail)?;
    }

    #[test]
    fn the_masstree_engine_conforms(ops in ops()) {
        run::<MasstreeEngine>(&ops).map_err(TestCaseError::fail)?;
    }
}

/// A wrong engine: the model, but its scans include the end key.
#[derive(Default)]
struct InclusiveEnd(ModelEngine);

impl Engine for InclusiveEnd {
    fn get(&self, key: &[u8]) -> Option<Entry> {
        self.0.get(key)
    }
    fn put(&mut self, key: Bytes, entry: Entry) -> SizeDelta {
        self.0.put(key, entry)
    }
    fn delete(&mut self, key: &[u8]) -> Option<SizeDelta> {
        self.0.delete(key)
    }
    fn scan(
        &self,
        start: &[u8],
        end: Option<&[u8]>,
        limit: usize,
        reverse: bool,
    ) -> Vec<(Bytes, Entry)> {
        let past = end.map(|e| [e, &[0u8][..]].concat());
        self.0.scan(start, past.as_deref(), limit, reverse)
    }
}

impl Conformance for InclusiveEnd {
    const TIERED: bool = false;
}

/// Checks that the suite can fail: random operations find the wrong engine's divergence.
#[test]
fn a_wrong_engine_is_caught_by_random_operations() {
    let mut runner = TestRunner::new(Config {
        cases: 256,
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&ops(), |ops| {
        run::<InclusiveEnd>(&ops).map_err(TestCaseError::fail)
    });
    assert!(
        result.is_err(),
        "the suite accepted scans that include their end key"
    );
}

/// A wrong engine: the model, but a put that replaces a value reports it as a new entry.
#[derive(Default)]
struct CountsReplacesAsNew(ModelEngine);

impl Engine for CountsReplacesAsNew {
    fn get(&self, key: &[u8]) -> Option<Entry> {
        self.0.get(key)
    }
    fn put(&mut self, key: Bytes, entry: Entry) -> SizeDelta {
        let (key_len, value_len) = (key.len(), entry.value.len());
        let got = self.0.put(key, entry);
        if got.keys == 0 {
            SizeDelta::added(key_len, value_len)
        } else {
            got
        }
    }
    fn delete(&mut self, key: &[u8]) -> Option<SizeDelta> {
        self.0.delete(key)
    }
    fn scan(
        &self,
        start: &[u8],
        end: Option<&[u8]>,
        limit: usize,
        reverse: bool,
    ) -> Vec<(Bytes, Entry)> {
        self.0.scan(start, end, limit, reverse)
    }
}

impl Conformance for CountsReplacesAsNew {
    const TIERED: bool = false;
}

/// Checks that sizes are part of the suite: an engine that miscounts replaced values fails.
#[test]
fn a_wrong_size_change_is_caught_by_random_operations() {
    let mut runner = TestRunner::new(Config {
        cases: 256,
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&ops(), |ops| {
        run::<CountsReplacesAsNew>(&ops).map_err(TestCaseError::fail)
    });
    assert!(
        result.is_err(),
        "the suite accepted an engine whose size changes do not add up"
    );
}
