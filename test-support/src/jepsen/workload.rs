//! Clients and their recorded history.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::lincheck::{CounterOp, Operation, Outcome, RegisterOp};
use crate::resp::{Conn, Reply};

/// One register key's history.
pub type RegisterHistory = Vec<Operation<RegisterOp, Option<i64>>>;
/// One counter key's history.
pub type CounterHistory = Vec<Operation<CounterOp, i64>>;

/// What the clients do: `registers` keys `jepsen-r<i>` (GET / SET of unique values) and
/// `counters` keys `jepsen-c<i>` (GET / INCRBY 1), each operation bounded by `timeout`.
#[derive(Debug, Clone)]
pub struct Workload {
    /// The RESP endpoint (the proxy), `host:port`.
    pub addr: String,
    /// Register keys.
    pub registers: usize,
    /// Counter keys.
    pub counters: usize,
    /// Time one operation (and one connect) may take before its outcome is unknown.
    pub timeout: Duration,
    /// Operations all clients together invoke, at most.
    pub ops: u64,
    /// Each client invokes at most one operation per `pace` (so a run of `ops` operations
    /// lasts about `ops × pace / clients`, long enough for the nemesis); zero: no pause.
    pub pace: Duration,
    /// The clients' common time origin.
    pub start: Instant,
}

impl Workload {
    /// The name of register key `i`.
    pub fn register_key(i: usize) -> String {
        format!("jepsen-r{i}")
    }

    /// The name of counter key `i`.
    pub fn counter_key(i: usize) -> String {
        format!("jepsen-c{i}")
    }

    fn now_ns(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }
}

/// Every operation, by key; and the replies no operation can explain.
#[derive(Debug, Default, Clone)]
pub struct History {
    /// Per register key.
    pub registers: Vec<RegisterHistory>,
    /// Per counter key.
    pub counters: Vec<CounterHistory>,
    /// Replies of an unexpected shape (each one fails the run).
    pub anomalies: Vec<String>,
}

impl History {
    /// An empty history for `w`'s keys.
    pub fn new(w: &Workload) -> Self {
        Self {
            registers: vec![Vec::new(); w.registers],
            counters: vec![Vec::new(); w.counters],
            anomalies: Vec::new(),
        }
    }

    /// Adds `other`'s operations (another client's) to this history.
    pub fn merge(&mut self, other: History) {
        for (a, b) in self.registers.iter_mut().zip(other.registers) {
            a.extend(b);
        }
        for (a, b) in self.counters.iter_mut().zip(other.counters) {
            a.extend(b);
        }
        self.anomalies.extend(other.anomalies);
    }

    /// Operations recorded, and how many of them ended unknown / failed.
    pub fn counts(&self) -> (usize, usize, usize) {
        fn tally<I, R>(ops: &[Operation<I, R>], c: &mut (usize, usize, usize)) {
            for o in ops {
                c.0 += 1;
                match o.outcome {
                    Outcome::Unknown => c.1 += 1,
                    Outcome::Failed => c.2 += 1,
                    Outcome::Ok(_) => {}
                }
            }
        }
        let mut c = (0, 0, 0);
        self.registers.iter().for_each(|h| tally(h, &mut c));
        self.counters.iter().for_each(|h| tally(h, &mut c));
        c
    }
}

/// A small deterministic generator (SplitMix64), so that a run's choices follow its seed.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// The next value.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A value in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// How a reply (or its absence) classifies a write: the proxy says "write outcome unknown"
/// when it may have applied, and "cluster unavailable" — or, from a proxy that just
/// restarted, "LOADING", answered before anything is sent — when it certainly did not.
fn write_outcome<R>(reply: &Reply) -> Option<Outcome<R>> {
    match reply {
        Reply::Error(e) if e.starts_with("ERR cluster unavailable") || e.starts_with("LOADING") => {
            Some(Outcome::Failed)
        }
        Reply::Error(_) => Some(Outcome::Unknown),
        _ => None,
    }
}

fn parse_i64(b: &[u8]) -> Option<i64> {
    std::str::from_utf8(b).ok()?.parse().ok()
}

/// One client: invokes operations on random keys until `w.ops` operations were invoked by
/// all clients together (`invoked` counts them) or `stop` is set. A connection that failed
/// or timed out is dropped (its operation is unknown) and a new one is opened for the next;
/// an operation whose connection could not be opened was never sent and does not count.
pub fn run_client(
    client: u32,
    w: &Workload,
    invoked: &AtomicU64,
    stop: &AtomicBool,
    seed: u64,
) -> History {
    let mut h = History::new(w);
    let mut rng = Rng::new(seed ^ (u64::from(client) << 40));
    let mut conn: Option<Conn> = None;
    let mut seq: i64 = 0;
    let keys = (w.registers + w.counters) as u64;
    let mut next_at = Instant::now();
    while !stop.load(Ordering::Relaxed) && invoked.fetch_add(1, Ordering::Relaxed) < w.ops {
        let now = Instant::now();
        if next_at > now {
            std::thread::sleep(next_at - now);
        }
        // A client that fell behind (a stalled operation) does not catch up in a burst.
        next_at = next_at.max(now) + w.pace;
        let c = match conn.as_mut() {
            Some(c) => c,
            None => match Conn::connect(&w.addr, w.timeout) {
                Ok(c) => conn.insert(c),
                Err(_) => {
                    // Nothing was sent: the slot goes back (a proxy being restarted).
                    invoked.fetch_sub(1, Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(50));
                    continue;
                }
            },
        };
        let k = rng.below(keys) as usize;
        let read = rng.below(2) == 0;
        let alive = if k < w.registers {
            seq += 1;
            // Unique per write, and readable: client 7's 42nd is 7_000_000_042.
            let value = i64::from(client) * 1_000_000_000 + seq;
            let write = if read { None } else { Some(value) };
            register_op(c, w, client, k, write, &mut h)
        } else {
            counter_op(c, w, client, k - w.registers, read, &mut h)
        };
        if !alive {
            conn = None;
        }
    }
    h
}

/// GET (`write` none) or SET `write` on register `k`; false when the connection is lost.
fn register_op(
    c: &mut Conn,
    w: &Workload,
    client: u32,
    k: usize,
    write: Option<i64>,
    h: &mut History,
) -> bool {
    let key = Workload::register_key(k);
    let invoke_ns = w.now_ns();
    let (input, reply) = match write {
        Some(v) => (RegisterOp::Write(v), c.call(&["SET", &key, &v.to_string()])),
        None => (RegisterOp::Read, c.call(&["GET", &key])),
    };
    let complete_ns = w.now_ns();
    let (outcome, alive) = match (&input, reply) {
        (_, Err(_)) => (Outcome::Unknown, false),
        (RegisterOp::Write(_), Ok(r)) if r.is_ok() => (Outcome::Ok(None), true),
        (RegisterOp::Read, Ok(Reply::Bulk(None))) => (Outcome::Ok(None), true),
        (RegisterOp::Read, Ok(Reply::Bulk(Some(b)))) => match parse_i64(&b) {
            Some(v) => (Outcome::Ok(Some(v)), true),
            None => {
                h.anomalies
                    .push(format!("GET {key}: {:?}", String::from_utf8_lossy(&b)));
                (Outcome::Unknown, true)
            }
        },
        (RegisterOp::Read, Ok(Reply::Error(_))) => (Outcome::Unknown, true),
        (RegisterOp::Write(_), Ok(r)) => match write_outcome(&r) {
            Some(o) => (o, true),
            None => {
                h.anomalies.push(format!("SET {key}: {r:?}"));
                (Outcome::Unknown, true)
            }
        },
        (RegisterOp::Read, Ok(r)) => {
            h.anomalies.push(format!("GET {key}: {r:?}"));
            (Outcome::Unknown, true)
        }
    };
    h.registers[k].push(Operation {
        client,
        invoke_ns,
        complete_ns,
        input,
        outcome,
    });
    alive
}

/// GET or INCRBY 1 on counter `k`; false when the connection is lost.
fn counter_op(
    c: &mut Conn,
    w: &Workload,
    client: u32,
    k: usize,
    read: bool,
    h: &mut History,
) -> bool {
    let key = Workload::counter_key(k);
    let invoke_ns = w.now_ns();
    let (input, reply) = if read {
        (CounterOp::Read, c.call(&["GET", &key]))
    } else {
        (CounterOp::Add(1), c.call(&["INCRBY", &key, "1"]))
    };
    let complete_ns = w.now_ns();
    let (outcome, alive) = match (&input, reply) {
        (_, Err(_)) => (Outcome::Unknown, false),
        (CounterOp::Add(_), Ok(Reply::Int(n))) => (Outcome::Ok(n), true),
        (CounterOp::Read, Ok(Reply::Bulk(None))) => (Outcome::Ok(0), true),
        (CounterOp::Read, Ok(Reply::Bulk(Some(b)))) => match parse_i64(&b) {
            Some(v) => (Outcome::Ok(v), true),
            None => {
                h.anomalies
                    .push(format!("GET {key}: {:?}", String::from_utf8_lossy(&b)));
                (Outcome::Unknown, true)
            }
        },
        (CounterOp::Read, Ok(Reply::Error(_))) => (Outcome::Unknown, true),
        (CounterOp::Add(_), Ok(r)) => match write_outcome(&r) {
            Some(o) => (o, true),
            None => {
                h.anomalies.push(format!("INCRBY {key}: {r:?}"));
                (Outcome::Unknown, true)
            }
        },
        (CounterOp::Read, Ok(r)) => {
            h.anomalies.push(format!("GET {key}: {r:?}"));
            (Outcome::Unknown, true)
        }
    };
    h.counters[k].push(Operation {
        client,
        invoke_ns,
        complete_ns,
        input,
        outcome,
    });
    alive
}

/// The client id of the final reads.
pub const FINAL_READER: u32 = u32::MAX;

/// After the nemesis healed everything: reads every key until a read succeeds (retrying for
/// at most `within`), recording the reads in `h` as client [`FINAL_READER`]. Returns the keys no
/// read reached.
pub fn final_reads(w: &Workload, h: &mut History, within: Duration) -> Vec<String> {
    let deadline = Instant::now() + within;
    let mut unread = Vec::new();
    let mut conn: Option<Conn> = None;
    let mut done = |h: &mut History, is_register: bool, k: usize| -> bool {
        loop {
            if Instant::now() > deadline {
                return false;
            }
            let c = match conn.as_mut() {
                Some(c) => c,
                None => match Conn::connect(&w.addr, w.timeout) {
                    Ok(c) => conn.insert(c),
                    Err(_) => {
                        std::thread::sleep(Duration::from_millis(100));
                        continue;
                    }
                },
            };
            let before = if is_register {
                h.registers[k].len()
            } else {
                h.counters[k].len()
            };
            let alive = if is_register {
                register_op(c, w, FINAL_READER, k, None, h)
            } else {
                counter_op(c, w, FINAL_READER, k, true, h)
            };
            if !alive {
                conn = None;
            }
            let ok = if is_register {
                h.registers[k].get(before).is_some_and(Operation::is_ok)
            } else {
                h.counters[k].get(before).is_some_and(Operation::is_ok)
            };
            if ok {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    for k in 0..w.registers {
        if !done(h, true, k) {
            unread.push(Workload::register_key(k));
        }
    }
    for k in 0..w.counters {
        if !done(h, false, k) {
            unread.push(Workload::counter_key(k));
        }
    }
    unread
}
