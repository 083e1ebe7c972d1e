//! Splits: a range above the size or load threshold is split; its leader picks the key.

use super::{Checker, Plan, Proposal, Step};

/// Proposes splits of ranges that are too big or too hot.
#[derive(Debug, Clone, Copy, Default)]
pub struct SplitChecker;

impl Checker for SplitChecker {
    fn name(&self) -> &'static str {
        "split"
    }

    fn check(&self, plan: &mut Plan<'_>) {
        let input = plan.input;
        for range in input.state.ranges() {
            let Some(load) = input.ranges.get(&range.id) else {
                continue;
            };
            let size = load.stats.size_bytes;
            let qps = load.stats.read_qps + load.stats.write_qps;
            let reason = if size > input.config.split_size_bytes {
                format!(
                    "range {} is {} MiB, above {} MiB",
                    range.id,
                    size >> 20,
                    input.config.split_size_bytes >> 20
                )
            } else if qps > input.config.split_qps {
                format!(
                    "range {} serves {qps} ops/s, above {}",
                    range.id, input.config.split_qps
                )
            } else {
                continue;
            };
            let Some(leader) = range
                .leader
                .and_then(|l| range.replicas.iter().find(|r| r.replica_id == l))
            else {
                continue;
            };
            plan.propose(Proposal {
                range_id: range.id,
                steps: vec![Step::Split],
                stores: vec![leader.store_id],
                checker: "split",
                reason,
            });
        }
    }
}
