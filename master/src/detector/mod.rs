//! The failure detector: which DS nodes are alive, from probe reports and heartbeats.
//!
//! Pure (time is a parameter, no I/O). Rules (`docs/guides/master.md`, DESIGN §7):
//! - A probe *reports* while its last report is younger than `probe-expiry-ms`; only reporting
//!   probes vote.
//! - With no reporting probe, today's heartbeat rule holds: a node is healthy while a
//!   heartbeat (store or shard) arrived within `store-down-after-ms`, dead after.
//! - Otherwise a node is **healthy** while *any* reporting probe reached it (any of its
//!   shards answered) within `probe-window-ms`; it is **dead** when a *strict majority* of the
//!   reporting probes have seen it unreachable for `store-down-after-ms` *and* its heartbeats
//!   stopped for as long; in between it is **suspect** (it gets no new replicas, and keeps its
//!   own). One probe cut off from a healthy node can therefore never kill it: the others
//!   still reach it, and its heartbeats still arrive.
//!
//! Every change of a node's health is returned as a [`Transition`] with the votes behind it;
//! the caller logs it.

use std::collections::BTreeMap;
use std::fmt;

use net::StoreId;
use net::message::ProbeReport;

/// Most probes remembered; a report from a new probe beyond it forgets the longest silent.
pub const MAX_PROBES: usize = 64;
/// Most results in one probe report.
pub const MAX_PROBE_RESULTS: usize = 4096;
/// Longest probe name or zone, bytes.
pub const MAX_PROBE_NAME_BYTES: usize = 64;

/// Detector settings (all in milliseconds of the master's clock).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DetectorConfig {
    /// Unreachable (by a majority of probes) and silent (no heartbeat) for this long: dead.
    pub down_after_ms: u64,
    /// Reached by a probe within this: healthy.
    pub probe_window_ms: u64,
    /// A probe not heard from for this long no longer votes.
    pub probe_expiry_ms: u64,
}

/// A node's health.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Health {
    /// Reached by a probe lately (or, without probes, heartbeats arrive).
    Healthy,
    /// Not reached lately, not (yet) dead.
    Suspect,
    /// Declared dead: its replicas are replaced.
    Dead,
}

impl Health {
    /// Lower-case name for logs, JSON and metric labels.
    pub fn label(self) -> &'static str {
        match self {
            Self::Healthy => "healthy",
            Self::Suspect => "suspect",
            Self::Dead => "dead",
        }
    }

    /// Every state, in label order of the metrics.
    pub const ALL: [Health; 3] = [Self::Healthy, Self::Suspect, Self::Dead];
}

/// What one probe last knew about one node.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reach {
    /// When the probe last reached any shard of the node.
    pub last_ok_ms: Option<u64>,
    /// Since when the probe has not reached any shard of it (`None` while it does).
    pub unreachable_since_ms: Option<u64>,
    /// The best round-trip time of the last report that reached it, µs.
    pub rtt_us: u64,
}

/// One probe as the master knows it.
#[derive(Debug, Clone, Default)]
pub struct ProbeView {
    /// Its zone label.
    pub zone: String,
    /// When its last report arrived.
    pub last_report_ms: u64,
    /// Reports received.
    pub reports_total: u64,
    /// Its round-trip time to the master, µs.
    pub master_rtt_us: u64,
    /// Per node.
    pub reach: BTreeMap<StoreId, Reach>,
}

/// One probe's vote on one node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Vote {
    /// Reached it within the window.
    Reached,
    /// Has not reached it for this long, ms.
    Unreachable(u64),
    /// Has no news of it (never pinged it, or reached it before the window).
    Unknown,
}

impl fmt::Display for Vote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Reached => write!(f, "reached"),
            Self::Unreachable(ms) => write!(f, "unreachable {ms}ms"),
            Self::Unknown => write!(f, "unknown"),
        }
    }
}

/// A node's health and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// The health.
    pub health: Health,
    /// Each reporting probe's vote, by probe name.
    pub votes: Vec<(String, Vote)>,
    /// Time since the node's last heartbeat, ms (`None`: none seen by this master).
    pub heartbeat_age_ms: Option<u64>,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.health.label())?;
        match self.heartbeat_age_ms {
            Some(a) => write!(f, "; last heartbeat {a}ms ago")?,
            None => write!(f, "; no heartbeat seen")?,
        }
        if self.votes.is_empty() {
            return write!(f, "; no probe reports (heartbeat rule)");
        }
        write!(f, "; votes:")?;
        for (p, v) in &self.votes {
            write!(f, " {p}={v}")?;
        }
        Ok(())
    }
}

/// A change of a node's health.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    /// The node.
    pub store: StoreId,
    /// Before.
    pub from: Health,
    /// The new verdict.
    pub to: Verdict,
}

/// Why a probe report was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReportError {
    /// Name or zone empty or too long.
    #[error("probe name and zone must be 1..={MAX_PROBE_NAME_BYTES} bytes")]
    BadName,
    /// Too many results.
    #[error("a probe report holds at most {MAX_PROBE_RESULTS} results")]
    TooManyResults,
}

/// Probe reports and the health of every node.
#[derive(Debug, Clone)]
pub struct Detector {
    cfg: DetectorConfig,
    probes: BTreeMap<String, ProbeView>,
    verdicts: BTreeMap<StoreId, Verdict>,
    transitions_total: BTreeMap<(Health, Health), u64>,
}

impl Detector {
    /// A detector with no reports.
    pub fn new(cfg: DetectorConfig) -> Self {
        Self {
            cfg,
            probes: BTreeMap::new(),
            verdicts: BTreeMap::new(),
            transitions_total: BTreeMap::new(),
        }
    }

    /// Records one probe round. `known` says whether a store exists (results for other stores
    /// are ignored). Each node counts as reached when any of its shards answered.
    pub fn on_report(
        &mut self,
        r: &ProbeReport,
        known: impl Fn(StoreId) -> bool,
        now_ms: u64,
    ) -> Result<(), ReportError> {
        let name_ok = |s: &str| (1..=MAX_PROBE_NAME_BYTES).contains(&s.len());
        if !name_ok(&r.probe) || !name_ok(&r.zone) {
            return Err(ReportError::BadName);
        }
        if r.results.len() > MAX_PROBE_RESULTS {
            return Err(ReportError::TooManyResults);
        }
        if !self.probes.contains_key(&r.probe) && self.probes.len() >= MAX_PROBES {
            let oldest = self
                .probes
                .iter()
                .min_by_key(|(_, p)| p.last_report_ms)
                .map(|(n, _)| n.clone());
            if let Some(n) = oldest {
                self.probes.remove(&n);
            }
        }
        let mut round: BTreeMap<StoreId, Option<u64>> = BTreeMap::new();
        for res in r.results.iter().filter(|res| known(res.store_id)) {
            let best = round.entry(res.store_id).or_insert(None);
            if res.reachable {
                *best = Some(best.map_or(res.rtt_us, |b| b.min(res.rtt_us)));
            }
        }
        let view = self.probes.entry(r.probe.clone()).or_default();
        view.zone.clone_from(&r.zone);
        view.last_report_ms = now_ms;
        view.reports_total += 1;
        view.master_rtt_us = r.master_rtt_us;
        for (store, rtt) in round {
            let reach = view.reach.entry(store).or_default();
            match rtt {
                Some(rtt) => {
                    *reach = Reach {
                        last_ok_ms: Some(now_ms),
                        unreachable_since_ms: None,
                        rtt_us: rtt,
                    };
                }
                None => {
                    reach.unreachable_since_ms.get_or_insert(now_ms);
                }
            }
        }
        Ok(())
    }

    /// Re-evaluates every node in `stores` (with the time of its last heartbeat, if any) and
    /// returns the changes. Nodes not listed are forgotten.
    pub fn evaluate(
        &mut self,
        stores: &BTreeMap<StoreId, Option<u64>>,
        now_ms: u64,
    ) -> Vec<Transition> {
        self.verdicts.retain(|s, _| stores.contains_key(s));
        for p in self.probes.values_mut() {
            p.reach.retain(|s, _| stores.contains_key(s));
        }
        let mut out = Vec::new();
        for (&store, &heartbeat_ms) in stores {
            let v = self.verdict(store, heartbeat_ms, now_ms);
            let from = self.verdicts.get(&store).map(|v| v.health);
            let from = from.unwrap_or(Health::Healthy);
            if from != v.health {
                *self.transitions_total.entry((from, v.health)).or_insert(0) += 1;
                out.push(Transition {
                    store,
                    from,
                    to: v.clone(),
                });
            }
            self.verdicts.insert(store, v);
        }
        out
    }

    fn verdict(&self, store: StoreId, heartbeat_ms: Option<u64>, now_ms: u64) -> Verdict {
        let age = heartbeat_ms.map(|h| now_ms.saturating_sub(h));
        // A node never heard from by this master (it restarted) is not silent yet.
        let silent = age.is_some_and(|a| a >= self.cfg.down_after_ms);
        let votes: Vec<(String, Vote)> = self
            .reporting(now_ms)
            .map(|(name, p)| (name.clone(), self.vote(p, store, now_ms)))
            .collect();
        let health = if votes.is_empty() {
            if silent {
                Health::Dead
            } else {
                Health::Healthy
            }
        } else if votes.iter().any(|(_, v)| *v == Vote::Reached) {
            Health::Healthy
        } else {
            let down = votes
                .iter()
                .filter(
                    |(_, v)| matches!(v, Vote::Unreachable(ms) if *ms >= self.cfg.down_after_ms),
                )
                .count();
            if 2 * down > votes.len() && silent {
                Health::Dead
            } else {
                Health::Suspect
            }
        };
        Verdict {
            health,
            votes,
            heartbeat_age_ms: age,
        }
    }

    fn vote(&self, p: &ProbeView, store: StoreId, now_ms: u64) -> Vote {
        let Some(r) = p.reach.get(&store) else {
            return Vote::Unknown;
        };
        // A success within the window counts even if the latest round failed: one lost ping
        // does not make a node suspect.
        if r.last_ok_ms
            .is_some_and(|t| now_ms.saturating_sub(t) <= self.cfg.probe_window_ms)
        {
            return Vote::Reached;
        }
        match r.unreachable_since_ms {
            Some(since) => Vote::Unreachable(now_ms.saturating_sub(since)),
            None => Vote::Unknown,
        }
    }

    /// The probes whose last report is younger than the expiry.
    pub fn reporting(&self, now_ms: u64) -> impl Iterator<Item = (&String, &ProbeView)> {
        let expiry = self.cfg.probe_expiry_ms;
        self.probes
            .iter()
            .filter(move |(_, p)| now_ms.saturating_sub(p.last_report_ms) < expiry)
    }

    /// Every probe remembered, reporting or not.
    pub fn probes(&self) -> &BTreeMap<String, ProbeView> {
        &self.probes
    }

    /// The last verdict of each node.
    pub fn verdicts(&self) -> &BTreeMap<StoreId, Verdict> {
        &self.verdicts
    }

    /// The health of `store` at the last evaluation (`None`: not evaluated yet).
    pub fn health(&self, store: StoreId) -> Option<Health> {
        self.verdicts.get(&store).map(|v| v.health)
    }

    /// Health changes since start, by (from, to).
    pub fn transitions_total(&self) -> &BTreeMap<(Health, Health), u64> {
        &self.transitions_total
    }

    /// The settings.
    pub fn config(&self) -> DetectorConfig {
        self.cfg
    }
}

#[cfg(test)]
mod tests;
