//! The master's config file (`master.toml`, kebab-case keys) and its defaults. Every key is
//! optional; a missing key takes the default documented on the field (and in
//! `docs/guides/master.md`, whose example is [`EXAMPLE`]).

use std::path::{Path, PathBuf};
use std::time::Duration;

use net::auth::ClusterSecret;
use net::tls::{TlsConfig, TlsPaths};
use net::transport::TransportConfig;
use serde::Deserialize;

use crate::core::MasterConfig;
use crate::schedule::ScheduleConfig;
use crate::state::ClusterConfig;

/// The example config of `docs/guides/master.md`: every key, at its default.
pub const EXAMPLE: &str = r#"
# Where the command log and snapshots live.
data-dir = "master-data"
# The RPC port (net protocol) and the HTTP admin port ("" disables it).
listen = "127.0.0.1:7400"
admin-listen = "127.0.0.1:7401"
# When set, every admin request but GET /health must carry "Authorization: Bearer <token>"
# (tierkv ctl --admin-token, or TIERKV_ADMIN_TOKEN). Unset: bind the admin port to a trusted
# interface.
# admin-token = "..."
# Connections served at once; more wait in the listen backlog.
max-connections = 1024
# How far ahead of the clock the TSO high-water mark is persisted.
tso-window-ms = 3000
# Ids reserved per log write.
id-reserve-step = 1000
# Snapshot after this many commands.
snapshot-every = 10000
# Drop an operator that has not finished after this long.
operator-timeout-ms = 60000
# Scheduler period.
schedule-interval-ms = 1000
# The cluster secret every internal connection proves (docs/format/wire.md §2): a file
# (mode 0600, at least 16 bytes) or the text itself. With neither, the master creates
# <data-dir>/cluster-secret on its first start; give that file to DS nodes and proxies.
# cluster-secret-file = "/etc/tierkv/cluster-secret"
# cluster-secret = "..."
# Accept peers without a secret instead (no authentication; tests only).
insecure-no-auth = false
# An accepted connection must finish its handshake within this time; one with nothing
# received and no request in flight for idle-timeout-ms (up to twice it) is closed (0 never).
handshake-timeout-ms = 5000
idle-timeout-ms = 600000
# Connections from one IP address at once.
max-connections-per-peer = 256
# Mutual TLS 1.3 on every internal connection (docs/guides/master.md "Internal TLS"): PEM
# files of the cluster CA, this node's certificate chain (SAN tierkv-internal) and its key.
# All three or none; none is plain TCP.
# tls-ca = "/etc/tierkv/tls/ca.pem"
# tls-cert = "/etc/tierkv/tls/node.pem"
# tls-key = "/etc/tierkv/tls/node.key"

# Used only when the data dir is new.
[cluster]
replication-factor = 3
default-max-memory-bytes = 4294967296
default-max-disk-bytes = 274877906944

[schedule]
max-ops-per-store = 4
split-size-bytes = 100663296
split-qps = 30000
# Failure detection (docs/guides/master.md): a store silent this long -- and, when probes
# report, unreachable by a majority of them this long -- is dead and its replicas are
# replaced; a store any probe reached within probe-window-ms is healthy; a probe silent for
# probe-expiry-ms no longer votes (with no probe reporting, heartbeats alone decide).
store-down-after-ms = 30000
probe-window-ms = 5000
probe-expiry-ms = 15000
replica-imbalance = 2
leader-imbalance = 2
balance-moves-per-run = 4
# Balance by load (ops/s: reads + writes of the ranges a store leads, writes of the others):
# when the hottest live store serves more than load-balance-ratio times the coldest and more
# than load-balance-min-ops, move leadership (else a replica) of its hottest range to a
# colder store; a moved range stays put for load-balance-cooldown-ms.
load-balance-ratio = 1.5
load-balance-min-ops = 1000
load-balance-cooldown-ms = 120000
# Ranges move between the shards of one node only once this many scheduler runs in a row
# found the same shard over load-balance-ratio (one heartbeat is not enough evidence).
shard-balance-runs = 3
# A range split this many times without its epoch changing (or reporting one key) is not
# split again; when hot it is moved to a colder store instead (hot-range relief).
split-attempts-max = 3
# Merge two neighbouring ranges when each is below merge-size-bytes and merge-qps ops/s and
# together below half of split-size-bytes and split-qps (so they do not split back): their
# replicas are first moved onto the same (store, shard) pairs, then merged. 0: never.
merge-size-bytes = 0
merge-qps = 100

# Elastic scaling (docs/guides/master.md, "Elastic scaling"). With enabled = false the
# autoscaler only watches; `tierkv ctl scale` and drains work either way.
[scale]
enabled = false
# Stores kept up at least / at most (counting nodes requested and not yet online).
min-stores = 1
max-stores = 16
# Load must stay above expand-above (any figure) this long to add a node, and below
# shrink-below (every figure set) the longer shrink-sustain-ms to drain and remove one.
sustain-ms = 60000
shrink-sustain-ms = 600000
# No decision this long after one.
cooldown-ms = 300000
# An expansion whose nodes have not all registered by then fails (capacity released);
# a drain not finished by then fails and its store is put back up.
provision-timeout-ms = 300000
drain-timeout-ms = 1800000
# "none", "local" (start `tierkv ds` processes here) or "command" (run the commands below,
# {replicas} = stores wanted; {store}, {addr} = the drained store).
provisioner = "none"
expand-command = []
shrink-command = []
command-timeout-ms = 120000
# local: the tierkv binary (default: this one), where nodes keep their data (default
# <data-dir>/elastic), shards and maxmemory per node.
# local-exe = "/usr/local/bin/tierkv"
# local-data-dir = "/var/lib/tierkv/elastic"
local-shards = 1
local-maxmemory = 0

# Per node, 0 turns a figure off.
[scale.expand-above]
ops-per-sec = 50000
mem-percent = 85
disk-percent = 85
net-bytes-per-sec = 0

[scale.shrink-below]
ops-per-sec = 5000
mem-percent = 30
disk-percent = 30
net-bytes-per-sec = 0
"#;

/// Why a config file was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The TOML is malformed or has an unknown key.
    #[error("parse config: {0}")]
    Parse(String),
    /// A value is out of range.
    #[error("invalid config: {0}")]
    Invalid(String),
}

/// A master process: the state machine's settings and where to listen.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// State machine, TSO and scheduler settings.
    pub master: MasterConfig,
    /// RPC listen address. Default `127.0.0.1:7400`.
    pub listen: String,
    /// Admin HTTP listen address; `None` disables it. Default `127.0.0.1:7401`.
    pub admin_listen: Option<String>,
    /// When set, every admin request but `GET /health` must carry `Authorization: Bearer
    /// <token>` (`tierkv ctl --admin-token`). Default none: bind the admin port to a trusted
    /// interface.
    pub admin_token: Option<net::auth::AdminToken>,
    /// Connections served at once. Default 1,024.
    pub max_connections: usize,
    /// The cluster secret's file. Default none.
    pub cluster_secret_file: Option<PathBuf>,
    /// The cluster secret given inline. Default none.
    pub cluster_secret: Option<ClusterSecret>,
    /// Run without a secret (any peer without one is accepted). Default false: with no
    /// secret configured, [`ServerConfig::secret`] creates `<data-dir>/cluster-secret`.
    pub insecure_no_auth: bool,
    /// Time to complete a handshake. Default 5 s.
    pub handshake_timeout: Duration,
    /// Idle connections are closed after this (up to twice it); zero never. Default 10 min.
    pub idle_timeout: Duration,
    /// Connections from one IP address at once. Default 256.
    pub max_connections_per_peer: usize,
    /// Mutual TLS files (`tls-ca`, `tls-cert`, `tls-key`). Default none: plain TCP.
    pub tls: Option<TlsPaths>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case", default, deny_unknown_fields)]
struct FileConfig {
    data_dir: PathBuf,
    listen: String,
    admin_listen: String,
    admin_token: Option<String>,
    max_connections: usize,
    tso_window_ms: u64,
    id_reserve_step: u64,
    snapshot_every: u64,
    operator_timeout_ms: u64,
    schedule_interval_ms: u64,
    cluster_secret_file: Option<PathBuf>,
    cluster_secret: Option<String>,
    insecure_no_auth: bool,
    handshake_timeout_ms: u64,
    idle_timeout_ms: u64,
    max_connections_per_peer: usize,
    tls_ca: Option<PathBuf>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    cluster: FileCluster,
    schedule: FileSchedule,
    scale: crate::autoscale::ScaleConfig,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case", default, deny_unknown_fields)]
struct FileCluster {
    replication_factor: u32,
    default_max_memory_bytes: u64,
    default_max_disk_bytes: u64,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case", default, deny_unknown_fields)]
struct FileSchedule {
    max_ops_per_store: usize,
    split_size_bytes: u64,
    split_qps: u64,
    store_down_after_ms: u64,
    probe_window_ms: u64,
    probe_expiry_ms: u64,
    replica_imbalance: usize,
    leader_imbalance: usize,
    balance_moves_per_run: usize,
    load_balance_ratio: f64,
    load_balance_min_ops: u64,
    load_balance_cooldown_ms: u64,
    shard_balance_runs: u32,
    split_attempts_max: u32,
    merge_size_bytes: u64,
    merge_qps: u64,
}

impl Default for FileConfig {
    fn default() -> Self {
        let m = MasterConfig::new("master-data");
        Self {
            data_dir: m.data_dir,
            listen: "127.0.0.1:7400".into(),
            admin_listen: "127.0.0.1:7401".into(),
            admin_token: None,
            max_connections: 1024,
            tso_window_ms: m.tso_window_ms,
            id_reserve_step: m.id_reserve_step,
            snapshot_every: m.snapshot_every,
            operator_timeout_ms: m.operator_timeout_ms,
            schedule_interval_ms: m.schedule_interval_ms,
            cluster_secret_file: None,
            cluster_secret: None,
            insecure_no_auth: false,
            handshake_timeout_ms: 5000,
            idle_timeout_ms: 600_000,
            max_connections_per_peer: 256,
            tls_ca: None,
            tls_cert: None,
            tls_key: None,
            cluster: FileCluster::default(),
            schedule: FileSchedule::default(),
            scale: crate::autoscale::ScaleConfig::default(),
        }
    }
}

impl Default for FileCluster {
    fn default() -> Self {
        let c = ClusterConfig::default();
        Self {
            replication_factor: c.replication_factor,
            default_max_memory_bytes: c.default_max_memory_bytes,
            default_max_disk_bytes: c.default_max_disk_bytes,
        }
    }
}

impl Default for FileSchedule {
    fn default() -> Self {
        let s = ScheduleConfig::default();
        Self {
            max_ops_per_store: s.max_ops_per_store,
            split_size_bytes: s.split_size_bytes,
            split_qps: s.split_qps,
            store_down_after_ms: s.store_down_after_ms,
            probe_window_ms: s.probe_window_ms,
            probe_expiry_ms: s.probe_expiry_ms,
            replica_imbalance: s.replica_imbalance,
            leader_imbalance: s.leader_imbalance,
            balance_moves_per_run: s.balance_moves_per_run,
            load_balance_ratio: s.load_balance_ratio,
            load_balance_min_ops: s.load_balance_min_ops,
            load_balance_cooldown_ms: s.load_balance_cooldown_ms,
            shard_balance_runs: s.shard_balance_runs,
            split_attempts_max: s.split_attempts_max,
            merge_size_bytes: s.merge_size_bytes,
            merge_qps: s.merge_qps,
        }
    }
}

impl ServerConfig {
    /// Parses a config file's text.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let f: FileConfig = toml::from_str(text).map_err(|e| ConfigError::Parse(e.to_string()))?;
        let invalid = |m: &str| Err(ConfigError::Invalid(m.to_string()));
        if !(1..=7).contains(&f.cluster.replication_factor) {
            return invalid("cluster.replication-factor must be 1 ..= 7");
        }
        if f.tso_window_ms < 50 {
            return invalid("tso-window-ms must be at least 50");
        }
        if f.id_reserve_step == 0 || f.snapshot_every == 0 || f.max_connections == 0 {
            return invalid("id-reserve-step, snapshot-every and max-connections must be > 0");
        }
        if f.handshake_timeout_ms == 0 || f.max_connections_per_peer == 0 {
            return invalid("handshake-timeout-ms and max-connections-per-peer must be > 0");
        }
        let sc = &f.schedule;
        if sc.probe_window_ms == 0 || sc.probe_expiry_ms <= sc.probe_window_ms {
            return invalid("schedule.probe-window-ms must be > 0 and below probe-expiry-ms");
        }
        if !(sc.load_balance_ratio.is_finite() && sc.load_balance_ratio >= 1.0) {
            return invalid("schedule.load-balance-ratio must be a number >= 1.0");
        }
        if sc.split_attempts_max == 0 {
            return invalid("schedule.split-attempts-max must be > 0");
        }
        if f.cluster_secret.is_some() && f.cluster_secret_file.is_some() {
            return invalid("set cluster-secret or cluster-secret-file, not both");
        }
        let cluster_secret = match &f.cluster_secret {
            Some(text) => Some(
                ClusterSecret::from_text(text.as_bytes())
                    .map_err(|e| ConfigError::Invalid(format!("cluster-secret: {e}")))?,
            ),
            None => None,
        };
        let tls = TlsPaths::from_parts(f.tls_ca, f.tls_cert, f.tls_key)
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        let mut master = MasterConfig::new(f.data_dir);
        master.tso_window_ms = f.tso_window_ms;
        master.id_reserve_step = f.id_reserve_step;
        master.snapshot_every = f.snapshot_every;
        master.operator_timeout_ms = f.operator_timeout_ms;
        master.schedule_interval_ms = f.schedule_interval_ms.max(1);
        master.cluster = ClusterConfig {
            replication_factor: f.cluster.replication_factor,
            default_max_memory_bytes: f.cluster.default_max_memory_bytes,
            default_max_disk_bytes: f.cluster.default_max_disk_bytes,
        };
        f.scale.validate().map_err(ConfigError::Invalid)?;
        master.scale = f.scale;
        let s = f.schedule;
        master.schedule = ScheduleConfig {
            max_ops_per_store: s.max_ops_per_store,
            split_size_bytes: s.split_size_bytes,
            split_qps: s.split_qps,
            store_down_after_ms: s.store_down_after_ms,
            probe_window_ms: s.probe_window_ms,
            probe_expiry_ms: s.probe_expiry_ms,
            replica_imbalance: s.replica_imbalance.max(1),
            leader_imbalance: s.leader_imbalance.max(1),
            balance_moves_per_run: s.balance_moves_per_run,
            load_balance_ratio: s.load_balance_ratio,
            load_balance_min_ops: s.load_balance_min_ops,
            load_balance_cooldown_ms: s.load_balance_cooldown_ms,
            shard_balance_runs: s.shard_balance_runs,
            split_attempts_max: s.split_attempts_max,
            merge_size_bytes: s.merge_size_bytes,
            merge_qps: s.merge_qps,
        };
        Ok(Self {
            master,
            listen: f.listen,
            admin_listen: (!f.admin_listen.is_empty()).then_some(f.admin_listen),
            admin_token: f
                .admin_token
                .filter(|t| !t.is_empty())
                .map(net::auth::AdminToken),
            max_connections: f.max_connections,
            cluster_secret_file: f.cluster_secret_file,
            cluster_secret,
            insecure_no_auth: f.insecure_no_auth,
            handshake_timeout: Duration::from_millis(f.handshake_timeout_ms),
            idle_timeout: Duration::from_millis(f.idle_timeout_ms),
            max_connections_per_peer: f.max_connections_per_peer,
            tls,
        })
    }

    /// The cluster secret: the configured one (inline or file); with none, the insecure
    /// empty secret if `insecure-no-auth`, else `<data-dir>/cluster-secret`, created with a
    /// random secret (mode 0600) on first use.
    pub fn secret(&self) -> Result<ClusterSecret, ConfigError> {
        let secret_err = |e: net::auth::SecretError| ConfigError::Invalid(e.to_string());
        if let Some(s) = &self.cluster_secret {
            return Ok(s.clone());
        }
        if let Some(path) = &self.cluster_secret_file {
            return ClusterSecret::load(path).map_err(secret_err);
        }
        if self.insecure_no_auth {
            return Ok(ClusterSecret::insecure());
        }
        let path = self.default_secret_file();
        let (secret, created) = ClusterSecret::load_or_create(&path).map_err(secret_err)?;
        if created {
            tracing::info!(path = %path.display(), "created the cluster secret: give this file to every DS node and proxy (cluster-secret-file)");
        }
        Ok(secret)
    }

    /// Where the master keeps the secret it creates: `<data-dir>/cluster-secret`.
    pub fn default_secret_file(&self) -> PathBuf {
        self.master.data_dir.join("cluster-secret")
    }

    /// The TLS settings, read from the configured files (none: plain TCP).
    pub fn tls(&self) -> Result<Option<TlsConfig>, ConfigError> {
        self.tls
            .as_ref()
            .map(TlsConfig::load)
            .transpose()
            .map_err(|e| ConfigError::Invalid(e.to_string()))
    }

    /// The transport settings of the RPC port, with `secret` and `tls`.
    pub fn transport(&self, secret: ClusterSecret, tls: Option<TlsConfig>) -> TransportConfig {
        TransportConfig {
            secret,
            tls,
            handshake_timeout: self.handshake_timeout,
            idle_timeout: self.idle_timeout,
            max_connections_per_peer: self.max_connections_per_peer,
            ..TransportConfig::default()
        }
    }

    /// Reads and parses a config file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(c: &ServerConfig) -> String {
        format!("{c:?}")
    }

    #[test]
    fn the_documented_example_is_the_default() {
        let example = ServerConfig::parse(EXAMPLE).unwrap();
        let empty = ServerConfig::parse("").unwrap();
        assert_eq!(summary(&example), summary(&empty));
        assert_eq!(example.master.schedule.split_size_bytes, 96 << 20);
        assert_eq!(example.admin_listen.as_deref(), Some("127.0.0.1:7401"));
    }

    #[test]
    fn the_guide_shows_the_example() {
        let guide = include_str!("../../docs/guides/master.md");
        assert!(
            guide.contains(EXAMPLE.trim()),
            "docs/guides/master.md drifted from EXAMPLE"
        );
    }

    #[test]
    fn tls_takes_all_three_files_or_none() {
        assert!(ServerConfig::parse("").unwrap().tls.is_none());
        assert!(ServerConfig::parse("tls-ca = \"ca.pem\"\ntls-key = \"k.pem\"").is_err());
        let c =
            ServerConfig::parse("tls-ca = \"ca.pem\"\ntls-cert = \"n.pem\"\ntls-key = \"n.key\"")
                .unwrap();
        assert_eq!(c.tls.as_ref().map(|t| t.key.clone()), Some("n.key".into()));
        assert!(c.tls().is_err(), "unreadable files are an error at start");
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused() {
        assert!(matches!(
            ServerConfig::parse("tso-windw-ms = 5"),
            Err(ConfigError::Parse(_))
        ));
        assert!(matches!(
            ServerConfig::parse("[cluster]\nreplication-factor = 0"),
            Err(ConfigError::Invalid(_))
        ));
        let c = ServerConfig::parse("admin-listen = \"\"\nlisten = \"0.0.0.0:1\"").unwrap();
        assert_eq!(c.admin_listen, None);
        assert_eq!(c.listen, "0.0.0.0:1");
        assert!(matches!(
            ServerConfig::parse("[schedule]\nload-balance-ratio = 0.5"),
            Err(ConfigError::Invalid(_))
        ));
        assert!(matches!(
            ServerConfig::parse("[schedule]\nsplit-attempts-max = 0"),
            Err(ConfigError::Invalid(_))
        ));
        assert!(matches!(
            ServerConfig::parse("cluster-secret = \"too short\""),
            Err(ConfigError::Invalid(_))
        ));
    }

    #[test]
    fn without_a_secret_the_master_creates_one_in_its_data_dir_and_keeps_it() {
        let dir = std::env::temp_dir().join(format!("tierkv-master-secret-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let text = format!("data-dir = {:?}", dir.display().to_string());
        let c = ServerConfig::parse(&text).unwrap();
        let first = c.secret().unwrap();
        assert!(!first.is_insecure());
        assert!(c.default_secret_file().exists());
        assert_eq!(c.secret().unwrap(), first);
        let insecure = ServerConfig::parse(&format!("{text}\ninsecure-no-auth = true")).unwrap();
        assert!(insecure.secret().unwrap().is_insecure());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn an_inline_secret_is_never_printed() {
        let c = ServerConfig::parse("cluster-secret = \"the-inline-cluster-secret\"").unwrap();
        assert!(!format!("{c:?}").contains("the-inline-cluster-secret"));
    }

    #[test]
    fn the_kubernetes_example_master_config_is_valid() {
        let yaml = include_str!("../../deploy/kubernetes/configmap.yaml");
        let block: String = yaml
            .split("  master.toml: |\n")
            .nth(1)
            .unwrap()
            .lines()
            .take_while(|l| l.starts_with("    ") || l.is_empty())
            .map(|l| format!("{}\n", l.trim_start()))
            .collect();
        let c = ServerConfig::parse(&block).unwrap();
        assert!(c.master.scale.enabled);
        assert_eq!(
            c.master.scale.provisioner,
            crate::autoscale::ProvisionerKind::Command
        );
        assert_eq!(c.master.scale.expand_command[0], "kubectl");
    }
}
