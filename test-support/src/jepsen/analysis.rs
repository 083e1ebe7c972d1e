//! The verdict on a recorded history.

use crate::lincheck::{
    Counter, CounterOp, Limits, Operation, Outcome, Register, RegisterOp, Verdict, check,
};

use super::workload::{CounterHistory, FINAL_READER, History, RegisterHistory, Workload};

/// What the checks found.
#[derive(Debug)]
pub struct Analysis {
    /// Each key's linearizability verdict.
    pub verdicts: Vec<(String, Verdict)>,
    /// Acknowledged writes missing from the final state (one line each).
    pub lost: Vec<String>,
    /// Replies of an unexpected shape.
    pub anomalies: Vec<String>,
    /// Operations, unknown ones, failed ones.
    pub counts: (usize, usize, usize),
}

impl Analysis {
    /// Whether every key is linearizable, nothing was lost and every reply made sense.
    pub fn passed(&self) -> bool {
        self.verdicts.iter().all(|(_, v)| v.is_linearizable())
            && self.lost.is_empty()
            && self.anomalies.is_empty()
    }

    /// The keys whose history is not linearizable (with the first violation of each).
    pub fn violations(&self) -> Vec<(&str, &crate::lincheck::Violation)> {
        self.verdicts
            .iter()
            .filter_map(|(k, v)| Some((k.as_str(), v.violation()?)))
            .collect()
    }

    /// A report: counts, then every verdict that is not "linearizable", every lost write
    /// and every anomaly.
    pub fn report(&self) -> String {
        let (ops, unknown, failed) = self.counts;
        let mut out = format!("{ops} operations ({unknown} unknown, {failed} failed for sure)\n");
        for (key, v) in &self.verdicts {
            match v {
                Verdict::Linearizable => out.push_str(&format!("{key}: linearizable\n")),
                Verdict::Violation(v) => out.push_str(&format!("{key}: NOT linearizable: {v}")),
                Verdict::Undecided(why) => out.push_str(&format!("{key}: undecided: {why}\n")),
            }
        }
        for l in &self.lost {
            out.push_str(&format!("lost: {l}\n"));
        }
        for a in &self.anomalies {
            out.push_str(&format!("anomaly: {a}\n"));
        }
        out
    }
}

/// Checks `h` (its final reads included): each key's history with the checker, under
/// `limits` (keys checked on parallel threads), and the final state against the
/// acknowledged writes.
pub fn analyse(h: &History, limits: &Limits) -> Analysis {
    let verdicts = std::thread::scope(|s| {
        let regs: Vec<_> = h
            .registers
            .iter()
            .enumerate()
            .map(|(k, ops)| {
                s.spawn(move || (Workload::register_key(k), check(&Register, ops, limits)))
            })
            .collect();
        let cnts: Vec<_> = h
            .counters
            .iter()
            .enumerate()
            .map(|(k, ops)| {
                s.spawn(move || (Workload::counter_key(k), check(&Counter, ops, limits)))
            })
            .collect();
        regs.into_iter()
            .chain(cnts)
            .map(|t| t.join().expect("a checker thread panicked"))
            .collect()
    });
    let mut lost = Vec::new();
    for (k, ops) in h.registers.iter().enumerate() {
        lost.extend(lost_register_writes(&Workload::register_key(k), ops));
    }
    for (k, ops) in h.counters.iter().enumerate() {
        lost.extend(lost_increments(&Workload::counter_key(k), ops));
    }
    Analysis {
        verdicts,
        lost,
        anomalies: h.anomalies.clone(),
        counts: h.counts(),
    }
}

fn final_read<I, R>(ops: &[Operation<I, R>]) -> Option<&Operation<I, R>> {
    ops.iter()
        .rev()
        .find(|o| o.client == FINAL_READER && o.is_ok())
}

/// The final value of a register must come from a write that no acknowledged write
/// started after (and completed before the final read): else that write was lost.
pub fn lost_register_writes(key: &str, ops: &RegisterHistory) -> Vec<String> {
    let Some(fin) = final_read(ops) else {
        return vec![format!("{key}: no final read")];
    };
    let acked = |o: &&Operation<RegisterOp, Option<i64>>| {
        matches!(o.input, RegisterOp::Write(_)) && o.is_ok() && o.complete_ns < fin.invoke_ns
    };
    let newer_than = |after: Option<u64>| -> Vec<String> {
        ops.iter()
            .filter(acked)
            .filter(|o| after.is_none_or(|t| o.invoke_ns > t))
            .map(|o| format!("{key}: acknowledged {:?} (client {}, completed at {} ns) is not in the final state", o.input, o.client, o.complete_ns))
            .collect()
    };
    match fin.output() {
        Some(None) => newer_than(None),
        Some(Some(v)) => {
            let writer = ops.iter().find(|o| o.input == RegisterOp::Write(*v));
            match writer.map(|w| (&w.outcome, w.complete_ns)) {
                None => vec![format!("{key}: final value {v} was never written")],
                Some((Outcome::Failed, _)) => {
                    vec![format!("{key}: final value {v} is a write that failed")]
                }
                Some((Outcome::Ok(_), done)) => newer_than(Some(done)),
                Some((Outcome::Unknown, _)) => Vec::new(),
            }
        }
        None => Vec::new(),
    }
}

/// The final value of a counter must count every acknowledged increment, and no more than
/// those plus the unknown ones.
pub fn lost_increments(key: &str, ops: &CounterHistory) -> Vec<String> {
    let Some(fin) = final_read(ops).and_then(|o| o.output().copied()) else {
        return vec![format!("{key}: no final read")];
    };
    let (mut acked, mut unknown) = (0i64, 0i64);
    for o in ops {
        if let CounterOp::Add(d) = o.input {
            match o.outcome {
                Outcome::Ok(_) => acked += d,
                Outcome::Unknown => unknown += d,
                Outcome::Failed => {}
            }
        }
    }
    if fin < acked {
        vec![format!(
            "{key}: final value {fin} < {acked} acknowledged increments: {} lost",
            acked - fin
        )]
    } else if fin > acked + unknown {
        vec![format!(
            "{key}: final value {fin} > {acked} acknowledged + {unknown} unknown increments"
        )]
    } else {
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op<I, R>(client: u32, a: u64, b: u64, input: I, outcome: Outcome<R>) -> Operation<I, R> {
        Operation {
            client,
            invoke_ns: a,
            complete_ns: b,
            input,
            outcome,
        }
    }

    #[test]
    fn a_final_register_value_older_than_an_acknowledged_write_is_a_loss() {
        let ops = vec![
            op(1, 0, 10, RegisterOp::Write(1), Outcome::Ok(None)),
            op(2, 20, 30, RegisterOp::Write(2), Outcome::Ok(None)),
            op(FINAL_READER, 40, 50, RegisterOp::Read, Outcome::Ok(Some(1))),
        ];
        assert_eq!(lost_register_writes("k", &ops).len(), 1);
        let mut fine = ops.clone();
        fine[2].outcome = Outcome::Ok(Some(2));
        assert!(lost_register_writes("k", &fine).is_empty());
        let mut empty = ops;
        empty[2].outcome = Outcome::Ok(None);
        assert_eq!(lost_register_writes("k", &empty).len(), 2);
    }

    #[test]
    fn a_final_count_below_the_acknowledged_increments_is_a_loss() {
        let mut ops = vec![
            op(1, 0, 10, CounterOp::Add(1), Outcome::Ok(1)),
            op(2, 5, 30, CounterOp::Add(1), Outcome::Unknown),
            op(1, 20, 25, CounterOp::Add(1), Outcome::Ok(2)),
            op(FINAL_READER, 40, 50, CounterOp::Read, Outcome::Ok(1)),
        ];
        assert_eq!(lost_increments("k", &ops).len(), 1);
        for fine in [2, 3] {
            ops[3].outcome = Outcome::Ok(fine);
            assert!(lost_increments("k", &ops).is_empty());
        }
        ops[3].outcome = Outcome::Ok(4);
        assert_eq!(lost_increments("k", &ops).len(), 1);
    }
}
