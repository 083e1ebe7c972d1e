//! Workload definitions: YCSB core workloads A–F and plain set/get loops.

use anyhow::{Context, bail};

use crate::keys::{KeyChooser, Zipfian};

/// One operation kind (also the histogram name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum OpKind {
    /// Read one record.
    Read,
    /// Overwrite one record.
    Update,
    /// Insert a new record.
    Insert,
    /// Read a run of records.
    Scan,
    /// Read a record, then write it back.
    ReadModifyWrite,
}

impl OpKind {
    /// Lower-case name used in reports.
    pub fn name(self) -> &'static str {
        match self {
            OpKind::Read => "read",
            OpKind::Update => "update",
            OpKind::Insert => "insert",
            OpKind::Scan => "scan",
            OpKind::ReadModifyWrite => "rmw",
        }
    }
}

/// How keys are distributed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Distribution {
    /// Uniform.
    Uniform,
    /// Scrambled zipfian (YCSB default).
    Zipfian,
    /// Latest records most popular.
    Latest,
}

impl Distribution {
    /// Parses `uniform`, `zipfian` or `latest`.
    pub fn parse(s: &str) -> anyhow::Result<Self> {
        Ok(match s {
            "uniform" => Self::Uniform,
            "zipfian" => Self::Zipfian,
            "latest" => Self::Latest,
            other => bail!("unknown distribution {other:?} (uniform, zipfian, latest)"),
        })
    }

    /// A fresh chooser for `records` records.
    pub fn chooser(self, records: u64) -> KeyChooser {
        match self {
            Self::Uniform => KeyChooser::Uniform,
            // YCSB scrambles a zipfian over 10^10 items with a precomputed zeta; we draw over
            // the record count itself (zeta costs one pass over it) and scramble the same way.
            Self::Zipfian => KeyChooser::Zipfian(Zipfian::new(records)),
            Self::Latest => KeyChooser::Latest(Zipfian::new(records)),
        }
    }
}

/// A workload: the operation mix and its key distribution.
#[derive(Debug, Clone, PartialEq)]
pub struct Workload {
    /// Short name (`a` … `f`, `set`, `get`).
    pub name: String,
    /// `(kind, proportion)` pairs summing to 1.
    pub mix: Vec<(OpKind, f64)>,
    /// Key distribution.
    pub distribution: Distribution,
    /// Longest scan (uniform in `1..=max`).
    pub max_scan_len: u64,
}

impl Workload {
    /// The named workload: YCSB `a`–`f` (core workload files' proportions and distributions),
    /// or `set` / `get` (all updates / all reads, uniform).
    pub fn named(name: &str) -> anyhow::Result<Self> {
        use OpKind::*;
        let (mix, distribution): (Vec<(OpKind, f64)>, _) = match name.to_ascii_lowercase().as_str()
        {
            "a" => (vec![(Read, 0.5), (Update, 0.5)], Distribution::Zipfian),
            "b" => (vec![(Read, 0.95), (Update, 0.05)], Distribution::Zipfian),
            "c" => (vec![(Read, 1.0)], Distribution::Zipfian),
            "d" => (vec![(Read, 0.95), (Insert, 0.05)], Distribution::Latest),
            "e" => (vec![(Scan, 0.95), (Insert, 0.05)], Distribution::Zipfian),
            "f" => (
                vec![(Read, 0.5), (ReadModifyWrite, 0.5)],
                Distribution::Zipfian,
            ),
            "set" => (vec![(Update, 1.0)], Distribution::Uniform),
            "get" => (vec![(Read, 1.0)], Distribution::Uniform),
            other => bail!("unknown workload {other:?} (a, b, c, d, e, f, set, get)"),
        };
        Ok(Workload {
            name: name.to_ascii_lowercase(),
            mix,
            distribution,
            max_scan_len: 100,
        })
    }

    /// Picks an operation kind from a uniform draw in `[0, 1)`.
    pub fn pick(&self, u: f64) -> OpKind {
        let mut acc = 0.0;
        for &(kind, p) in &self.mix {
            acc += p;
            if u < acc {
                return kind;
            }
        }
        self.mix.last().map(|&(k, _)| k).unwrap_or(OpKind::Read)
    }

    /// Checks the proportions.
    pub fn validate(&self) -> anyhow::Result<()> {
        let total: f64 = self.mix.iter().map(|(_, p)| p).sum();
        if (total - 1.0).abs() > 1e-9 {
            bail!("workload {} proportions sum to {total}, not 1", self.name);
        }
        Ok(())
    }
}

/// Parses sizes like `100`, `1k`, `1KiB`, `4m`.
pub fn parse_size(s: &str) -> anyhow::Result<usize> {
    let lower = s.trim().to_ascii_lowercase();
    let digits_end = lower
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(lower.len());
    let n: usize = lower[..digits_end]
        .parse()
        .with_context(|| format!("size {s:?}"))?;
    let mult = match lower[digits_end..].trim() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1024,
        "m" | "mb" | "mib" => 1024 * 1024,
        other => bail!("unknown size unit {other:?} in {s:?}"),
    };
    Ok(n * mult)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ycsb_mixes_match_the_core_workload_files() {
        for name in ["a", "b", "c", "d", "e", "f", "set", "get"] {
            Workload::named(name).unwrap().validate().unwrap();
        }
        let a = Workload::named("a").unwrap();
        assert_eq!(a.pick(0.49), OpKind::Read);
        assert_eq!(a.pick(0.51), OpKind::Update);
        assert_eq!(
            Workload::named("d").unwrap().distribution,
            Distribution::Latest
        );
        assert!(Workload::named("z").is_err());
    }

    #[test]
    fn sizes_parse_with_units() {
        assert_eq!(parse_size("100").unwrap(), 100);
        assert_eq!(parse_size("1KiB").unwrap(), 1024);
        assert_eq!(parse_size("4m").unwrap(), 4 << 20);
        assert!(parse_size("1x").is_err());
    }
}
