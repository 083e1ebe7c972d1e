//! The detector's rules, one scenario per test (DESIGN §7; `docs/guides/master.md`).

use std::collections::BTreeMap;

use net::message::{ProbeReport, ProbeResult};
use net::{ShardId, StoreId};

use super::*;

const CFG: DetectorConfig = DetectorConfig {
    down_after_ms: 3000,
    probe_window_ms: 1500,
    probe_expiry_ms: 5000,
};

fn report(probe: &str, reached: &[(u64, bool)]) -> ProbeReport {
    ProbeReport {
        probe: probe.into(),
        zone: "z".into(),
        master_rtt_us: 50,
        results: reached
            .iter()
            .map(|&(store, ok)| ProbeResult {
                store_id: StoreId(store),
                shard_id: ShardId(0),
                reachable: ok,
                rtt_us: if ok { 70 } else { 0 },
            })
            .collect(),
    }
}

/// Stores 1..=3, each with its last heartbeat.
fn stores(hb: [Option<u64>; 3]) -> BTreeMap<StoreId, Option<u64>> {
    (1..=3).map(|i| (StoreId(i), hb[i as usize - 1])).collect()
}

/// Three probes report every 500 ms from 0 to `until`; `blind(probe, store, t)` says whether
/// that probe fails to reach that store at `t`. Returns the detector after evaluating at each
/// round (heartbeats as given), and every transition seen.
fn run(
    until: u64,
    blind: impl Fn(&str, u64, u64) -> bool,
    hb: impl Fn(u64) -> [Option<u64>; 3],
) -> (Detector, Vec<(u64, Transition)>) {
    let mut d = Detector::new(CFG);
    let mut seen = Vec::new();
    let mut t = 0;
    while t <= until {
        for p in ["p1", "p2", "p3"] {
            let r: Vec<(u64, bool)> = (1..=3).map(|s| (s, !blind(p, s, t))).collect();
            d.on_report(&report(p, &r), |_| true, t).unwrap();
        }
        for tr in d.evaluate(&stores(hb(t)), t) {
            seen.push((t, tr));
        }
        t += 500;
    }
    (d, seen)
}

fn beating(t: u64) -> [Option<u64>; 3] {
    [Some(t); 3]
}

#[test]
fn one_blind_probe_never_kills_a_healthy_node() {
    let (d, seen) = run(20_000, |p, s, _| p == "p1" && s == 2, beating);
    assert!(seen.is_empty(), "{seen:?}");
    assert_eq!(d.health(StoreId(2)), Some(Health::Healthy));
    let v = &d.verdicts()[&StoreId(2)];
    assert!(v.votes.contains(&("p1".into(), Vote::Unreachable(20_000))));
}

#[test]
fn one_blind_probe_and_stopped_heartbeats_still_do_not_kill() {
    // Heartbeats to the master are lost too, but two probes still reach the node.
    let (d, _) = run(
        20_000,
        |p, s, _| p == "p1" && s == 2,
        |t| [Some(t), Some(0), Some(t)],
    );
    assert_eq!(d.health(StoreId(2)), Some(Health::Healthy));
}

#[test]
fn a_node_no_probe_reaches_is_dead_once_silent_for_down_after() {
    // Node 2 dies at t = 2000: no probe reaches it, its heartbeats stop.
    let (d, seen) = run(
        10_000,
        |_, s, t| s == 2 && t >= 2000,
        |t| [Some(t), Some(t.min(2000)), Some(t)],
    );
    assert_eq!(d.health(StoreId(2)), Some(Health::Dead));
    let changes: Vec<(u64, Health, Health)> = seen
        .iter()
        .map(|(t, tr)| (*t, tr.from, tr.to.health))
        .collect();
    // Suspect once the last success left the window (2000 - 500 + 1500 < t), dead at
    // 2000 + down-after.
    assert_eq!(
        changes,
        vec![
            (3500, Health::Healthy, Health::Suspect),
            (5000, Health::Suspect, Health::Dead)
        ]
    );
    assert_eq!(d.transitions_total()[&(Health::Suspect, Health::Dead)], 1);
}

#[test]
fn unreachable_but_still_heartbeating_is_only_suspect() {
    // A partition between the probes and the node, not between the node and the master.
    let (d, _) = run(10_000, |_, s, t| s == 2 && t >= 2000, beating);
    assert_eq!(d.health(StoreId(2)), Some(Health::Suspect));
}

#[test]
fn a_minority_of_probes_cannot_kill() {
    // Two of three probes have no news (never pinged node 2); one sees it down.
    let mut d = Detector::new(CFG);
    for t in (0..=10_000).step_by(500) {
        d.on_report(&report("p1", &[(2, false)]), |_| true, t)
            .unwrap();
        d.on_report(&report("p2", &[]), |_| true, t).unwrap();
        d.on_report(&report("p3", &[]), |_| true, t).unwrap();
        d.evaluate(&stores([Some(t), Some(0), Some(t)]), t);
    }
    assert_eq!(d.health(StoreId(2)), Some(Health::Suspect));
}

#[test]
fn without_probes_the_heartbeat_rule_holds() {
    let mut d = Detector::new(CFG);
    assert!(
        d.evaluate(&stores([Some(0), Some(0), None]), 2999)
            .is_empty()
    );
    let tr = d.evaluate(&stores([Some(0), Some(2500), None]), 3000);
    assert_eq!(tr.len(), 1);
    assert_eq!((tr[0].store, tr[0].to.health), (StoreId(1), Health::Dead));
    assert!(tr[0].to.votes.is_empty());
    // Never heard from (the master restarted): not silent.
    assert_eq!(d.health(StoreId(3)), Some(Health::Healthy));
}

#[test]
fn probes_that_stop_reporting_stop_voting() {
    let mut d = Detector::new(CFG);
    d.on_report(&report("p1", &[(1, true)]), |_| true, 0)
        .unwrap();
    d.evaluate(&stores([Some(0); 3]), 0);
    assert_eq!(d.reporting(4999).count(), 1);
    assert_eq!(d.reporting(5000).count(), 0);
    // Back to the heartbeat rule: store 1 silent for down-after is dead.
    d.evaluate(&stores([Some(0); 3]), 6000);
    assert_eq!(d.health(StoreId(1)), Some(Health::Dead));
}

#[test]
fn a_node_that_answers_again_is_healthy_again() {
    let (d, seen) = run(
        12_000,
        |_, s, t| s == 2 && (2000..8000).contains(&t),
        |t| {
            let two = if (2000..8000).contains(&t) { 2000 } else { t };
            [Some(t), Some(two), Some(t)]
        },
    );
    assert_eq!(d.health(StoreId(2)), Some(Health::Healthy));
    assert_eq!(
        seen.last().map(|(t, tr)| (*t, tr.to.health)),
        Some((8000, Health::Healthy))
    );
}

#[test]
fn bad_reports_are_refused_and_unknown_stores_ignored() {
    let mut d = Detector::new(CFG);
    assert_eq!(
        d.on_report(&report("", &[]), |_| true, 0),
        Err(ReportError::BadName)
    );
    let mut long = report("p", &[]);
    long.zone = "z".repeat(MAX_PROBE_NAME_BYTES + 1);
    assert_eq!(d.on_report(&long, |_| true, 0), Err(ReportError::BadName));
    let many = report("p", &vec![(1, true); MAX_PROBE_RESULTS + 1]);
    assert_eq!(
        d.on_report(&many, |_| true, 0),
        Err(ReportError::TooManyResults)
    );
    d.on_report(&report("p", &[(9, true)]), |s| s != StoreId(9), 0)
        .unwrap();
    assert!(d.probes()["p"].reach.is_empty());
}

#[test]
fn probes_are_bounded_and_the_longest_silent_is_forgotten() {
    let mut d = Detector::new(CFG);
    for i in 0..=MAX_PROBES as u64 {
        d.on_report(&report(&format!("p{i}"), &[]), |_| true, i)
            .unwrap();
    }
    assert_eq!(d.probes().len(), MAX_PROBES);
    assert!(!d.probes().contains_key("p0"));
}

mod random {
    //! Random rounds of random probes: the rules hold at every evaluation.
    use proptest::prelude::*;

    use super::*;

    /// `(probe 0..5, results [(store 1..=4, reachable)], advance ms, heartbeats alive mask)`.
    fn step() -> impl Strategy<Value = (u8, Vec<(u64, bool)>, u64, u8)> {
        (
            0u8..5,
            prop::collection::vec((1u64..=4, any::<bool>()), 0..6),
            0u64..2500,
            any::<u8>(),
        )
    }

    proptest! {
        #[test]
        fn the_verdicts_follow_the_rules(steps in prop::collection::vec(step(), 1..80)) {
            let mut d = Detector::new(CFG);
            let mut now = 0;
            let mut hb: BTreeMap<StoreId, Option<u64>> = (1..=4).map(|s| (StoreId(s), None)).collect();
            for (probe, results, advance, alive) in steps {
                now += advance;
                for s in 1..=4u64 {
                    if alive & (1 << s) != 0 {
                        hb.insert(StoreId(s), Some(now));
                    }
                }
                d.on_report(&report(&format!("p{probe}"), &results), |s| s.0 <= 3, now).unwrap();
                for t in d.evaluate(&hb, now) {
                    prop_assert_ne!(t.from, t.to.health);
                }
                for (store, v) in d.verdicts() {
                    prop_assert!(store.0 <= 4);
                    let reached = v.votes.iter().any(|(_, x)| *x == Vote::Reached);
                    let silent = v.heartbeat_age_ms.is_some_and(|a| a >= CFG.down_after_ms);
                    if reached || (!silent && v.votes.is_empty()) {
                        prop_assert_eq!(v.health, Health::Healthy);
                    }
                    if v.health == Health::Dead {
                        prop_assert!(silent, "dead needs stopped heartbeats: {}", v);
                        let down = v.votes.iter().filter(|(_, x)| matches!(x, Vote::Unreachable(ms) if *ms >= CFG.down_after_ms)).count();
                        prop_assert!(v.votes.is_empty() || 2 * down > v.votes.len(), "{}", v);
                    }
                }
            }
        }
    }
}
