//! The Wing–Gong linearizability search with Lowe's improvements (G. Lowe, "Testing for
//! linearizability", 2017): the history becomes a doubly linked list of invocation and
//! completion entries in time order; the search repeatedly takes the earliest invocation
//! whose operation can take effect now, removes ("lifts") it with its completion, and
//! backtracks when it meets a completion whose operation has not taken effect. A
//! configuration (set of operations taken, state) met before is not explored again.
//!
//! The set of operations taken is remembered by a 128-bit Zobrist fingerprint (the XOR of a
//! random key per operation, updated in O(1) per step) instead of a bitset of n bits, so a
//! configuration costs ~48 bytes whatever the history's length. Two different sets with one
//! fingerprint would make the search skip a configuration it has not explored: that can
//! only lose linearizations (a false "violation", with odds below 2^-90 for 2^19 visited
//! sets), never accept a history that is not linearizable — a `Linearizable` verdict always
//! rests on a linearization the search built.
//!
//! Unknown outcomes complete at +∞. Two unknown operations with the same input are
//! interchangeable once both are invoked, so they are taken in invocation order only (this
//! keeps k identical unknown increments from costing 2^k configurations).

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use super::history::{Operation, Outcome};
use super::model::Model;
use super::report::{Verdict, Violation};

/// Bounds of one [`check`]: past either, the verdict is [`Verdict::Undecided`].
#[derive(Debug, Clone)]
pub struct Limits {
    /// Wall-clock time the search may take. Default 20 s.
    pub time: Duration,
    /// Memory the cache of visited configurations may take, bytes (approximate). Default
    /// 512 MiB.
    pub cache_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            time: Duration::from_secs(20),
            cache_bytes: 512 << 20,
        }
    }
}

const HEAD: usize = 0;
/// Operations (at most) listed before a violation besides those overlapping it.
const CONTEXT_BEFORE: usize = 6;
/// States (at most) a violation lists.
const MAX_STATES: usize = 8;

/// Checks that `ops` (one key's history) is linearizable with respect to `model`.
pub fn check<M: Model>(
    model: &M,
    ops: &[Operation<M::Input, M::Output>],
    limits: &Limits,
) -> Verdict {
    let mut keep: Vec<usize> = (0..ops.len())
        .filter(|&i| match ops[i].outcome {
            Outcome::Ok(_) => true,
            Outcome::Failed => false,
            Outcome::Unknown => !model.is_read(&ops[i].input),
        })
        .collect();
    model.reduce(ops, &mut keep);
    let mut s = Search::new(model, ops, keep);
    s.run(limits)
}

/// The entry list and the search's state.
struct Search<'a, M: Model> {
    model: &'a M,
    ops: &'a [Operation<M::Input, M::Output>],
    /// Checked operations (indices into `ops`); "op k" below is `ops[kept[k]]`.
    kept: Vec<usize>,
    /// Linked list of entries; node 0 is the head, then entry `e` is node `e + 1`.
    next: Vec<usize>,
    prev: Vec<usize>,
    /// Per node: its op, whether it is an invocation, its time, its partner node.
    node_op: Vec<usize>,
    node_call: Vec<bool>,
    node_time: Vec<u64>,
    partner: Vec<usize>,
    /// Per op: its class among unknown ops with equal inputs and its rank in it
    /// (`usize::MAX`: a completed op); per class: how many of its ops are taken.
    class: Vec<usize>,
    rank: Vec<usize>,
    class_taken: Vec<usize>,
    /// Per op: its random key in the fingerprint of a set of ops.
    zobrist: Vec<u128>,
}

impl<'a, M: Model> Search<'a, M> {
    fn new(model: &'a M, ops: &'a [Operation<M::Input, M::Output>], kept: Vec<usize>) -> Self {
        let n = kept.len();
        // (time, 0 = invocation / 1 = completion, op)
        let mut entries: Vec<(u64, u8, usize)> = Vec::with_capacity(2 * n);
        for (k, &i) in kept.iter().enumerate() {
            let op = &ops[i];
            let done = if op.is_ok() { op.complete_ns } else { u64::MAX };
            entries.push((op.invoke_ns, 0, k));
            entries.push((done.max(op.invoke_ns), 1, k));
        }
        // At equal times invocations come first: the operations overlap (never a false alarm).
        entries.sort_unstable();
        let nodes = 2 * n + 1;
        let mut s = Self {
            model,
            ops,
            kept,
            next: (1..=nodes).collect(),
            prev: (0..nodes).map(|x| x.wrapping_sub(1)).collect(),
            node_op: vec![usize::MAX; nodes],
            node_call: vec![false; nodes],
            node_time: vec![0; nodes],
            partner: vec![0; nodes],
            class: vec![usize::MAX; n],
            rank: vec![usize::MAX; n],
            class_taken: Vec::new(),
            zobrist: zobrist_keys(n),
        };
        let mut call_node = vec![0; n];
        for (e, &(t, kind, k)) in entries.iter().enumerate() {
            let node = e + 1;
            s.node_op[node] = k;
            s.node_call[node] = kind == 0;
            s.node_time[node] = t;
            if kind == 0 {
                call_node[k] = node;
            } else {
                s.partner[node] = call_node[k];
                s.partner[call_node[k]] = node;
            }
        }
        s.rank_unknown_ops(&entries);
        s
    }

    /// Groups the unknown ops by input, ranked by invocation order.
    fn rank_unknown_ops(&mut self, entries: &[(u64, u8, usize)]) {
        let mut classes: HashMap<&M::Input, (usize, usize)> = HashMap::new();
        for &(_, kind, k) in entries {
            let op = &self.ops[self.kept[k]];
            if kind != 0 || op.is_ok() {
                continue;
            }
            let next_class = classes.len();
            let (c, size) = classes.entry(&op.input).or_insert((next_class, 0));
            self.class[k] = *c;
            self.rank[k] = *size;
            *size += 1;
        }
        self.class_taken = vec![0; classes.len()];
    }

    fn lift(&mut self, call: usize) {
        for node in [call, self.partner[call]] {
            let (p, n) = (self.prev[node], self.next[node]);
            self.next[p] = n;
            if n < self.next.len() {
                self.prev[n] = p;
            }
        }
    }

    fn unlift(&mut self, call: usize) {
        for node in [self.partner[call], call] {
            let (p, n) = (self.prev[node], self.next[node]);
            self.next[p] = node;
            if n < self.next.len() {
                self.prev[n] = node;
            }
        }
    }

    /// Whether op `k` may be taken now (an unknown op only after the earlier ones of its
    /// class).
    fn in_turn(&self, k: usize) -> bool {
        self.class[k] == usize::MAX || self.class_taken[self.class[k]] == self.rank[k]
    }

    fn set_taken(&mut self, k: usize, taken: &mut u128, on: bool) {
        *taken ^= self.zobrist[k];
        if self.class[k] != usize::MAX {
            let c = &mut self.class_taken[self.class[k]];
            *c = if on { *c + 1 } else { *c - 1 };
        }
    }

    fn run(&mut self, limits: &Limits) -> Verdict {
        let entry_bytes = 16 + std::mem::size_of::<M::State>() + 32;
        let started = Instant::now();
        let mut cache: HashSet<(u128, M::State)> = HashSet::new();
        let mut taken = 0u128;
        let mut state = self.model.init();
        let mut stack: Vec<(usize, M::State)> = Vec::new();
        let mut stuck = Stuck::default();
        let end = self.next.len();
        let mut node = self.next[HEAD];
        let mut steps: u64 = 0;
        while self.next[HEAD] != end {
            steps += 1;
            if steps % 4096 == 0 {
                if started.elapsed() > limits.time {
                    return self.undecided(format!("no verdict within {:?}", limits.time), steps);
                }
                if cache.len() * entry_bytes > limits.cache_bytes {
                    return self.undecided(
                        format!("{} configurations fill the cache", cache.len()),
                        steps,
                    );
                }
            }
            let k = self.node_op[node];
            if self.node_call[node] {
                let op = &self.ops[self.kept[k]];
                if self.in_turn(k) {
                    if let Some(next) = self.model.step(&state, &op.input, op.output()) {
                        self.set_taken(k, &mut taken, true);
                        if cache.insert((taken, next.clone())) {
                            stack.push((node, std::mem::replace(&mut state, next)));
                            self.lift(node);
                            node = self.next[HEAD];
                            continue;
                        }
                        self.set_taken(k, &mut taken, false);
                    }
                }
                node = self.next[node];
            } else {
                stuck.note(self.node_time[node], k, &state);
                let Some((call, before)) = stack.pop() else {
                    return Verdict::Violation(Box::new(self.violation(stuck)));
                };
                state = before;
                self.set_taken(self.node_op[call], &mut taken, false);
                self.unlift(call);
                node = self.next[call];
            }
        }
        Verdict::Linearizable
    }

    fn undecided(&self, why: String, steps: u64) -> Verdict {
        Verdict::Undecided(format!(
            "{why} ({} operations checked, {steps} steps)",
            self.kept.len()
        ))
    }

    fn violation(&self, stuck: Stuck<M::State>) -> Violation {
        let k = stuck.op;
        let bad = &self.ops[self.kept[k]];
        let mut around: Vec<usize> = (0..self.kept.len())
            .filter(|&j| {
                let o = &self.ops[self.kept[j]];
                let o_end = if o.is_ok() { o.complete_ns } else { u64::MAX };
                o.invoke_ns <= bad.complete_ns && o_end >= bad.invoke_ns
            })
            .collect();
        let mut before: Vec<usize> = (0..self.kept.len())
            .filter(|&j| {
                let o = &self.ops[self.kept[j]];
                o.is_ok() && o.complete_ns < bad.invoke_ns
            })
            .collect();
        before.sort_by_key(|&j| std::cmp::Reverse(self.ops[self.kept[j]].complete_ns));
        around.extend(before.into_iter().take(CONTEXT_BEFORE));
        around.sort_by_key(|&j| (self.ops[self.kept[j]].invoke_ns, j));
        let mut text = String::new();
        for &j in &around {
            let o = &self.ops[self.kept[j]];
            let mark = if j == k { ">>" } else { "  " };
            let (done, outcome) = match &o.outcome {
                Outcome::Ok(r) => (
                    format!("{:.3}", o.complete_ns as f64 / 1e6),
                    format!("ok {r:?}"),
                ),
                _ => ("?".to_string(), "unknown".to_string()),
            };
            text.push_str(&format!(
                "{mark} op {:>6}  client {:>3}  {:>12.3} .. {done:>12} ms  {:?} -> {outcome}\n",
                self.kept[j],
                o.client,
                o.invoke_ns as f64 / 1e6,
                o.input
            ));
        }
        Violation {
            op: self.kept[k],
            states: stuck.states.iter().map(|s| format!("{s:?}")).collect(),
            around: around.into_iter().map(|j| self.kept[j]).collect(),
            text,
        }
    }
}

/// The latest completion at which the search had to backtrack, and the states it was in.
struct Stuck<S> {
    time: u64,
    op: usize,
    states: Vec<S>,
}

impl<S> Default for Stuck<S> {
    fn default() -> Self {
        Self {
            time: 0,
            op: 0,
            states: Vec::new(),
        }
    }
}

impl<S: Clone + Eq> Stuck<S> {
    fn note(&mut self, time: u64, op: usize, state: &S) {
        if time == u64::MAX || time < self.time || (time == self.time && op != self.op) {
            return;
        }
        if time > self.time || self.states.is_empty() {
            self.time = time;
            self.op = op;
            self.states.clear();
        }
        if self.states.len() < MAX_STATES && !self.states.contains(state) {
            self.states.push(state.clone());
        }
    }
}

/// `n` pseudo-random 128-bit keys (SplitMix64, fixed seed: a run is reproducible).
fn zobrist_keys(n: usize) -> Vec<u128> {
    let mut x: u64 = 0x5eed_11ca_b1e5_0001;
    let mut next = || {
        x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    (0..n)
        .map(|_| (u128::from(next()) << 64) | u128::from(next()))
        .collect()
}
