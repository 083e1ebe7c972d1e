//! The autoscaler's decision: per-node load against expand / shrink thresholds, with
//! hysteresis (a load must stay past a threshold for `sustain-ms` to expand, for the longer
//! `shrink-sustain-ms` to shrink, and a shrink must not leave the remaining nodes above the
//! expand thresholds) and a cool-down after every action. Pure: time and load are
//! parameters; [`crate::core`] turns a verdict into a pre-allocated capacity request.

use std::fmt;
use std::path::PathBuf;

use serde::Deserialize;

use crate::capacity::Capacity;

/// Per-node limits; 0 turns a figure off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case", default, deny_unknown_fields)]
pub struct Thresholds {
    /// Reads + writes per second per node.
    pub ops_per_sec: u64,
    /// Memory used, percent of `maxmemory`.
    pub mem_percent: u32,
    /// Disk used, percent of `maxdisksize`.
    pub disk_percent: u32,
    /// Bytes read + written by clients per second per node.
    pub net_bytes_per_sec: u64,
}

impl Thresholds {
    fn any_set(&self) -> bool {
        self.ops_per_sec > 0
            || self.mem_percent > 0
            || self.disk_percent > 0
            || self.net_bytes_per_sec > 0
    }
}

/// Which provisioner the master uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProvisionerKind {
    /// None: capacity requests fail at once (drain and undrain still work).
    #[default]
    None,
    /// Start `tierkv ds` processes on this machine.
    Local,
    /// Run `expand-command` / `shrink-command`.
    Command,
}

/// The `[scale]` section of `master.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case", default, deny_unknown_fields)]
pub struct ScaleConfig {
    /// Whether load triggers expansions and shrinks (`ctl scale` works either way). Default
    /// false.
    pub enabled: bool,
    /// Fewest stores kept up. Default 1, at least 1.
    pub min_stores: u32,
    /// Most stores, counting nodes requested and not yet online. Default 16.
    pub max_stores: u32,
    /// Expand when the average node is above any of these. Default: 50,000 ops/s, 85 %
    /// memory, 85 % disk, network off.
    pub expand_above: Thresholds,
    /// Shrink when the average node is below all of these that are set. Default: 5,000 ops/s,
    /// 30 % memory, 30 % disk, network off.
    pub shrink_below: Thresholds,
    /// Load must stay above `expand-above` this long, ms. Default 60,000.
    pub sustain_ms: u64,
    /// Load must stay below `shrink-below` this long, ms. Default 600,000.
    pub shrink_sustain_ms: u64,
    /// No decision this long after an action, ms. Default 300,000.
    pub cooldown_ms: u64,
    /// An expansion whose nodes are not all registered by then fails, ms. Default 300,000.
    pub provision_timeout_ms: u64,
    /// A drain not finished by then fails and the store is put back up, ms. Default 1,800,000.
    pub drain_timeout_ms: u64,
    /// `none`, `local` or `command`. Default `none`.
    pub provisioner: ProvisionerKind,
    /// `command`: argv run to add nodes (`{replicas}` = stores wanted). Default empty.
    pub expand_command: Vec<String>,
    /// `command`: argv run to remove a drained node (`{store}`, `{addr}`, `{replicas}`).
    pub shrink_command: Vec<String>,
    /// `command`: time a command may run, ms. Default 120,000.
    pub command_timeout_ms: u64,
    /// `local`: the `tierkv` binary. Default: the running one.
    pub local_exe: Option<PathBuf>,
    /// `local`: where nodes' data directories go. Default `<data-dir>/elastic`.
    pub local_data_dir: Option<PathBuf>,
    /// `local`: shards per node. Default 1.
    pub local_shards: usize,
    /// `local`: `maxmemory` per node, bytes (0 unlimited). Default 0.
    pub local_maxmemory: u64,
}

impl Default for ScaleConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            min_stores: 1,
            max_stores: 16,
            expand_above: Thresholds {
                ops_per_sec: 50_000,
                mem_percent: 85,
                disk_percent: 85,
                net_bytes_per_sec: 0,
            },
            shrink_below: Thresholds {
                ops_per_sec: 5_000,
                mem_percent: 30,
                disk_percent: 30,
                net_bytes_per_sec: 0,
            },
            sustain_ms: 60_000,
            shrink_sustain_ms: 600_000,
            cooldown_ms: 300_000,
            provision_timeout_ms: 300_000,
            drain_timeout_ms: 1_800_000,
            provisioner: ProvisionerKind::None,
            expand_command: Vec::new(),
            shrink_command: Vec::new(),
            command_timeout_ms: 120_000,
            local_exe: None,
            local_data_dir: None,
            local_shards: 1,
            local_maxmemory: 0,
        }
    }
}

impl ScaleConfig {
    /// Checks the settings; the reason when they are refused.
    pub fn validate(&self) -> Result<(), String> {
        if self.min_stores == 0 || self.max_stores < self.min_stores {
            return Err("scale: need 1 <= min-stores <= max-stores".into());
        }
        let (e, s) = (&self.expand_above, &self.shrink_below);
        let pairs = [
            (e.ops_per_sec, s.ops_per_sec, "ops-per-sec"),
            (
                u64::from(e.mem_percent),
                u64::from(s.mem_percent),
                "mem-percent",
            ),
            (
                u64::from(e.disk_percent),
                u64::from(s.disk_percent),
                "disk-percent",
            ),
            (
                e.net_bytes_per_sec,
                s.net_bytes_per_sec,
                "net-bytes-per-sec",
            ),
        ];
        for (above, below, name) in pairs {
            if above > 0 && below >= above {
                return Err(format!(
                    "scale: shrink-below.{name} ({below}) must be below expand-above.{name} ({above})"
                ));
            }
        }
        if self.shrink_sustain_ms < self.sustain_ms {
            return Err("scale: shrink-sustain-ms must be at least sustain-ms".into());
        }
        if self.provisioner == ProvisionerKind::Command
            && (self.expand_command.is_empty() || self.shrink_command.is_empty())
        {
            return Err(
                "scale: the command provisioner needs expand-command and shrink-command".into(),
            );
        }
        if self.local_shards == 0 || self.local_shards > 256 {
            return Err("scale: local-shards must be 1 ..= 256".into());
        }
        Ok(())
    }
}

/// The average load of the stores that are up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NodeLoad {
    /// Stores averaged over.
    pub nodes: u32,
    /// Reads + writes per second.
    pub ops_per_sec: u64,
    /// Memory used, percent of capacity.
    pub mem_percent: u32,
    /// Disk used, percent of capacity.
    pub disk_percent: u32,
    /// Client bytes read + written per second.
    pub net_bytes_per_sec: u64,
}

impl fmt::Display for NodeLoad {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} nodes, per node: {} ops/s, mem {}%, disk {}%, net {} B/s",
            self.nodes,
            self.ops_per_sec,
            self.mem_percent,
            self.disk_percent,
            self.net_bytes_per_sec
        )
    }
}

impl NodeLoad {
    /// The figures over `above` that are set, as text (`ops/s 900 > 500`).
    fn over(&self, t: &Thresholds) -> Vec<String> {
        let mut v = Vec::new();
        if t.ops_per_sec > 0 && self.ops_per_sec > t.ops_per_sec {
            v.push(format!("ops/s {} > {}", self.ops_per_sec, t.ops_per_sec));
        }
        if t.mem_percent > 0 && self.mem_percent > t.mem_percent {
            v.push(format!("mem {}% > {}%", self.mem_percent, t.mem_percent));
        }
        if t.disk_percent > 0 && self.disk_percent > t.disk_percent {
            v.push(format!("disk {}% > {}%", self.disk_percent, t.disk_percent));
        }
        if t.net_bytes_per_sec > 0 && self.net_bytes_per_sec > t.net_bytes_per_sec {
            v.push(format!(
                "net {} B/s > {}",
                self.net_bytes_per_sec, t.net_bytes_per_sec
            ));
        }
        v
    }

    /// Whether every figure of `t` that is set is below it (and at least one is set).
    fn all_under(&self, t: &Thresholds) -> bool {
        t.any_set()
            && (t.ops_per_sec == 0 || self.ops_per_sec < t.ops_per_sec)
            && (t.mem_percent == 0 || self.mem_percent < t.mem_percent)
            && (t.disk_percent == 0 || self.disk_percent < t.disk_percent)
            && (t.net_bytes_per_sec == 0 || self.net_bytes_per_sec < t.net_bytes_per_sec)
    }

    /// The same total load spread over one node fewer.
    fn without_one(&self) -> Self {
        let n = u64::from(self.nodes.max(2));
        let scale = |x: u64| x * n / (n - 1);
        Self {
            nodes: self.nodes.saturating_sub(1),
            ops_per_sec: scale(self.ops_per_sec),
            mem_percent: scale(u64::from(self.mem_percent)) as u32,
            disk_percent: scale(u64::from(self.disk_percent)) as u32,
            net_bytes_per_sec: scale(self.net_bytes_per_sec),
        }
    }
}

/// What the autoscaler wants now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing to do (the reason, for the admin page).
    Hold(String),
    /// Add one node.
    Expand(String),
    /// Drain and remove one node.
    Shrink(String),
}

/// The autoscaler's memory between runs (soft state: a restarted master starts its
/// sustain timers again, which only delays a decision).
#[derive(Debug, Clone, Default)]
pub struct Autoscaler {
    above_since: Option<u64>,
    below_since: Option<u64>,
    last_action_ms: Option<u64>,
    last: Option<Verdict>,
}

impl Autoscaler {
    /// When the load first went above the expand thresholds (and has stayed there).
    pub fn above_since(&self) -> Option<u64> {
        self.above_since
    }

    /// The latest verdict.
    pub fn last(&self) -> Option<&Verdict> {
        self.last.as_ref()
    }

    /// Records an action taken at `now_ms` (starts the cool-down, resets the timers).
    pub fn acted(&mut self, now_ms: u64) {
        self.last_action_ms = Some(now_ms);
        self.above_since = None;
        self.below_since = None;
    }

    /// Looks at `load` (None: no store reports) and decides. `in_flight`: capacity requests
    /// not final (the autoscaler waits for them).
    pub fn observe(
        &mut self,
        cfg: &ScaleConfig,
        load: Option<NodeLoad>,
        cap: Capacity,
        in_flight: usize,
        now_ms: u64,
    ) -> Verdict {
        let v = self.decide(cfg, load, cap, in_flight, now_ms);
        self.last = Some(v.clone());
        v
    }

    fn decide(
        &mut self,
        cfg: &ScaleConfig,
        load: Option<NodeLoad>,
        cap: Capacity,
        in_flight: usize,
        now_ms: u64,
    ) -> Verdict {
        let Some(load) = load.filter(|l| l.nodes > 0) else {
            self.above_since = None;
            self.below_since = None;
            return Verdict::Hold("no store reports its load".into());
        };
        let over = load.over(&cfg.expand_above);
        let under = load.all_under(&cfg.shrink_below);
        self.above_since = if over.is_empty() {
            None
        } else {
            self.above_since.or(Some(now_ms))
        };
        self.below_since = if under {
            self.below_since.or(Some(now_ms))
        } else {
            None
        };
        if !cfg.enabled {
            return Verdict::Hold("autoscaling is off".into());
        }
        if in_flight > 0 {
            return Verdict::Hold(format!("{in_flight} capacity request(s) in flight"));
        }
        if let Some(at) = self.last_action_ms {
            let left = (at + cfg.cooldown_ms).saturating_sub(now_ms);
            if left > 0 {
                return Verdict::Hold(format!("cooling down for {left} ms more"));
            }
        }
        if let Some(since) = self.above_since {
            let held = now_ms.saturating_sub(since);
            if held < cfg.sustain_ms {
                return Verdict::Hold(format!("above for {held} ms of {}", cfg.sustain_ms));
            }
            if cap.committed() >= cfg.max_stores {
                return Verdict::Hold(format!(
                    "above ({}) but at max-stores {}",
                    over.join(", "),
                    cfg.max_stores
                ));
            }
            return Verdict::Expand(format!("{load}: {} for {held} ms", over.join(", ")));
        }
        if let Some(since) = self.below_since {
            let held = now_ms.saturating_sub(since);
            if held < cfg.shrink_sustain_ms {
                return Verdict::Hold(format!("below for {held} ms of {}", cfg.shrink_sustain_ms));
            }
            if cap.up <= cfg.min_stores {
                return Verdict::Hold(format!("below, but at min-stores {}", cfg.min_stores));
            }
            let after = load.without_one();
            let would = after.over(&cfg.expand_above);
            if !would.is_empty() {
                return Verdict::Hold(format!(
                    "below, but one node fewer would be above ({})",
                    would.join(", ")
                ));
            }
            return Verdict::Shrink(format!("{load}: below shrink thresholds for {held} ms"));
        }
        Verdict::Hold(format!("{load}: within thresholds"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> ScaleConfig {
        ScaleConfig {
            enabled: true,
            min_stores: 1,
            max_stores: 3,
            expand_above: Thresholds {
                ops_per_sec: 1000,
                ..Thresholds::default()
            },
            shrink_below: Thresholds {
                ops_per_sec: 100,
                ..Thresholds::default()
            },
            sustain_ms: 1000,
            shrink_sustain_ms: 3000,
            cooldown_ms: 5000,
            ..ScaleConfig::default()
        }
    }

    fn load(nodes: u32, ops: u64) -> Option<NodeLoad> {
        Some(NodeLoad {
            nodes,
            ops_per_sec: ops,
            ..NodeLoad::default()
        })
    }

    fn cap(up: u32) -> Capacity {
        Capacity {
            up,
            ..Capacity::default()
        }
    }

    #[test]
    fn expands_only_after_the_load_stays_above_for_the_sustain_time() {
        let (c, mut a) = (cfg(), Autoscaler::default());
        assert!(matches!(
            a.observe(&c, load(1, 2000), cap(1), 0, 0),
            Verdict::Hold(_)
        ));
        assert!(matches!(
            a.observe(&c, load(1, 2000), cap(1), 0, 500),
            Verdict::Hold(_)
        ));
        // A dip resets the timer.
        assert!(matches!(
            a.observe(&c, load(1, 10), cap(1), 0, 600),
            Verdict::Hold(_)
        ));
        assert!(matches!(
            a.observe(&c, load(1, 2000), cap(1), 0, 700),
            Verdict::Hold(_)
        ));
        let v = a.observe(&c, load(1, 2000), cap(1), 0, 1700);
        assert!(
            matches!(&v, Verdict::Expand(r) if r.contains("ops/s 2000 > 1000")),
            "{v:?}"
        );
    }

    #[test]
    fn a_cool_down_and_requests_in_flight_hold_every_decision() {
        let (c, mut a) = (cfg(), Autoscaler::default());
        a.acted(0);
        a.observe(&c, load(1, 2000), cap(1), 0, 100);
        assert!(
            matches!(a.observe(&c, load(1, 2000), cap(1), 0, 4000), Verdict::Hold(r) if r.contains("cooling"))
        );
        assert!(
            matches!(a.observe(&c, load(1, 2000), cap(1), 1, 6000), Verdict::Hold(r) if r.contains("in flight"))
        );
        assert!(matches!(
            a.observe(&c, load(1, 2000), cap(1), 0, 6000),
            Verdict::Expand(_)
        ));
    }

    #[test]
    fn never_expands_past_max_stores_counting_nodes_coming() {
        let (c, mut a) = (cfg(), Autoscaler::default());
        let coming = Capacity {
            up: 2,
            coming: 1,
            leaving: 0,
        };
        a.observe(&c, load(2, 2000), coming, 0, 0);
        let v = a.observe(&c, load(2, 2000), coming, 0, 2000);
        assert!(
            matches!(&v, Verdict::Hold(r) if r.contains("max-stores")),
            "{v:?}"
        );
    }

    #[test]
    fn shrinks_after_the_longer_sustain_unless_the_rest_would_be_overloaded() {
        let (c, mut a) = (cfg(), Autoscaler::default());
        a.observe(&c, load(2, 50), cap(2), 0, 0);
        assert!(matches!(
            a.observe(&c, load(2, 50), cap(2), 0, 2000),
            Verdict::Hold(_)
        ));
        assert!(matches!(
            a.observe(&c, load(2, 50), cap(2), 0, 3000),
            Verdict::Shrink(_)
        ));
        // At the minimum: hold.
        let mut b = Autoscaler::default();
        b.observe(&c, load(1, 50), cap(1), 0, 0);
        assert!(
            matches!(b.observe(&c, load(1, 50), cap(1), 0, 9000), Verdict::Hold(r) if r.contains("min-stores"))
        );
        // Hysteresis: 2 nodes at 99 ops/s each would be 198 on one: fine; with a tight
        // expand threshold of 150 it would flap, so hold.
        let mut tight = cfg();
        tight.expand_above.ops_per_sec = 150;
        let mut d = Autoscaler::default();
        d.observe(&tight, load(2, 99), cap(2), 0, 0);
        let v = d.observe(&tight, load(2, 99), cap(2), 0, 9000);
        assert!(
            matches!(&v, Verdict::Hold(r) if r.contains("one node fewer")),
            "{v:?}"
        );
    }

    #[test]
    fn disabled_autoscaling_only_watches() {
        let mut c = cfg();
        c.enabled = false;
        let mut a = Autoscaler::default();
        a.observe(&c, load(1, 5000), cap(1), 0, 0);
        assert!(
            matches!(a.observe(&c, load(1, 5000), cap(1), 0, 9000), Verdict::Hold(r) if r.contains("off"))
        );
        assert_eq!(a.above_since(), Some(0));
    }

    #[test]
    fn overlapping_thresholds_are_refused() {
        let mut c = cfg();
        assert_eq!(c.validate(), Ok(()));
        c.shrink_below.ops_per_sec = 1000;
        assert!(c.validate().is_err());
        let mut c = cfg();
        c.provisioner = ProvisionerKind::Command;
        assert!(c.validate().is_err());
        assert_eq!(ScaleConfig::default().validate(), Ok(()));
    }
}
