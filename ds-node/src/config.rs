//! [`DsConfig`]: the DS node's settings, TOML-ready (`kebab-case` keys, every field optional).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use net::auth::ClusterSecret;
use net::tls::{TlsConfig, TlsPaths};
use net::transport::TransportConfig;
use serde::Deserialize;

/// A secret's text from a config file: deserialized as a string, never shown by `Debug`.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct SecretText(pub String);

impl std::fmt::Debug for SecretText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// A store (DS node) and the addresses of its shards, for nodes that run without a master.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct PeerStore {
    /// The store id.
    pub store_id: u64,
    /// `host:port` of each shard, by shard index.
    pub shard_addrs: Vec<String>,
}

/// One replica of the static initial range (see [`DsConfig::initial_replicas`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct InitialReplica {
    /// Raft peer id (non-zero, unique in the range).
    pub replica_id: u64,
    /// The store that holds it.
    pub store_id: u64,
    /// The shard of that store.
    pub shard_id: u32,
}

/// What a shard's durable base is (`docs/ARCHITECTURE.md`, "ds-node: the key index replaces
/// range checkpoints"). A files-mode data dir opens in index mode; not the other way round.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CheckpointMode {
    /// Each range checkpointed as a whole file under `data-dir/checkpoints/` (the default).
    #[default]
    Files,
    /// The shard's key index on the log's segment store, checkpointed incrementally.
    Index,
}

/// Settings of a DS node. `Default` gives the documented defaults.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case", default)]
pub struct DsConfig {
    /// Data directory: one shard-log file per shard and the `store-id` file.
    /// Default `./tierkv-data/ds`.
    pub data_dir: PathBuf,
    /// Number of shards (executors). Default 1; valid 1..=256.
    pub shards: usize,
    /// Pin shard `i` to CPU `i` when the machine has that many CPUs. Default true.
    pub pin: bool,
    /// Host the shards listen on and advertise. Default `127.0.0.1`.
    pub host: String,
    /// Port of shard 0; shard `i` listens on `base-port + i`. 0 picks free ports. Default 7400.
    pub base_port: u16,
    /// `host:port` of the master; none runs the node stand-alone. Default none.
    pub master_addr: Option<String>,
    /// The store id when running without a master (with a master it is assigned at
    /// registration and kept in `data-dir/store-id`). Default 1.
    pub store_id: u64,
    /// Stand-alone only: create range 1 (all keys) with these replicas if no shard holds a
    /// range yet. Empty = one voter on this store's shard 0. Default empty.
    pub initial_replicas: Vec<InitialReplica>,
    /// Stand-alone only: create the initial range at all. Default true.
    pub bootstrap: bool,
    /// Stand-alone only: the other stores and their shard addresses. Default empty.
    pub peers: Vec<PeerStore>,
    /// Size of each shard's log file in bytes. Default 1 GiB; a multiple of 4 KiB.
    pub log_file_bytes: u64,
    /// Segment size of the shard log, bytes. Default 64 MiB; at least 2 MiB.
    pub segment_bytes: u64,
    /// Write zeros over a new log file (faster first flushes on ext4). Default true.
    pub zero_log_file: bool,
    /// Open the shard log with `O_DSYNC`: each group commit is one write that completes
    /// durable, instead of a write and then an `fdatasync` (20 % less CPU per write measured
    /// through `tierkv dev`). False goes back to write + `fdatasync`. Default true.
    pub log_write_through: bool,
    /// Raft tick interval, milliseconds. Default 100.
    pub tick_ms: u64,
    /// Election timeout in ticks. Default 10.
    pub election_ticks: usize,
    /// Heartbeat interval in ticks. Default 2.
    pub heartbeat_ticks: usize,
    /// Proposals waiting for apply per range before `ServerBusy`. Default 4096.
    pub max_inflight_proposals: usize,
    /// Raft entries kept in memory per range after apply. Default 4096.
    pub cached_entries: usize,
    /// Connections per shard. Default 1024.
    pub max_connections: usize,
    /// Heartbeat interval to the master, milliseconds. Default 1000.
    pub heartbeat_ms: u64,
    /// Registered I/O memory per executor, bytes. Default 8 MiB.
    pub io_memory_bytes: usize,
    /// `host:port` of the admin endpoint (`GET /metrics`); none = off. Default none.
    pub admin_addr: Option<String>,
    /// When set, every admin request must carry `Authorization: Bearer <token>` (`401`
    /// otherwise). Default none: bind the admin endpoint to a trusted interface.
    pub admin_token: Option<SecretText>,
    /// Entries a range applies between two checkpoints (after a checkpoint the range's Raft
    /// log below it is compacted). Default 100000.
    pub checkpoint_entries: u64,
    /// How often the compaction task looks for ranges to checkpoint, milliseconds. A range
    /// is also checkpointed when the shard log is half full. Default 1000.
    pub checkpoint_check_ms: u64,
    /// `"files"` (whole-range checkpoint files) or `"index"` (the shard's key index,
    /// incremental checkpoints of what changed). Default `"files"`.
    pub checkpoint_mode: CheckpointMode,
    /// Every this many milliseconds each shard demotes `demote-percent` % of its hot value
    /// bytes to the shard log (cold values, for tests and benchmarks until the memory policy
    /// exists; the admin endpoint's `POST /demote` does the same on demand); 0 never.
    /// Default 0.
    pub demote_every_ms: u64,
    /// Share of the hot value bytes one periodic demotion makes cold, percent. Default 100;
    /// valid 1..=100.
    pub demote_percent: u32,
    /// Memory the node's shards may hold, bytes, split evenly among them (`server::policy`):
    /// above its share a shard demotes its coldest values to the shard log. What is counted:
    /// the tree (arena pages, key suffixes, pointers, inline values, a per-entry allocator
    /// overhead); not counted: log and network buffers, Raft's cached entries, the process's
    /// code and allocator slack. 0 = unlimited. Default 0 (`tierkv dev` sets a share of RAM).
    pub maxmemory: u64,
    /// Cold values read twice within `promote-window-ms` come back into memory while the
    /// shard holds less than this percentage of its share of `maxmemory`. Default 70; 0..=100.
    pub promote_below_percent: u32,
    /// Window of the two reads that promote a cold value, milliseconds. Default 60000;
    /// 1000..=3000000.
    pub promote_window_ms: u64,
    /// How often the memory policy checks a shard under its share, milliseconds (above it, it
    /// works step after step). Default 100.
    pub policy_tick_ms: u64,
    /// Write backpressure (`server::throttle`): while a shard's accounted memory is above this
    /// percentage of its share of `maxmemory`, a new write that could add data waits for
    /// demotion to make room (and the policy demotes in larger steps); past
    /// `write-throttle-max-wait-ms` it is refused with `-OOM command not allowed when used
    /// memory > 'maxmemory'.`. Deletes, reads, expiry, FLUSH* and Raft apply never wait.
    /// Default 110; valid 100..=1000.
    pub write_throttle_percent: u32,
    /// Longest a write waits for memory before it is refused, milliseconds; 0 refuses at
    /// once. Kept well inside the proxy's request timeout (5 s). Default 2000; valid 0..=4000.
    pub write_throttle_max_wait_ms: u64,
    /// Value bytes the memory policy may demote per second per shard (a cap on the device
    /// traffic demotion causes; writes wait longer, or are refused, when it is too low);
    /// 0 = no cap. Default 0.
    pub policy_demote_bytes_per_sec: u64,
    /// How often each shard's log garbage collector looks for work, milliseconds; 0 never.
    /// Default 1000.
    pub gc_every_ms: u64,
    /// Device traffic (reads + writes) one shard's collector may cause, bytes per second.
    /// Default 64 MiB.
    pub gc_bytes_per_sec: u64,
    /// A pass runs when the shard log's segments take more than this percentage of the
    /// bytes live pointers name (and at least one segment more). Default 150; valid
    /// 105 ..= 10000.
    pub gc_space_percent: u32,
    /// Most segments one pass collects. Default 4; valid 1 ..= 1024.
    pub gc_max_victims: usize,
    /// No pass while the shard log's segments take less than this percentage of
    /// `log-file-bytes` (copying values of a small log early copies values about to be
    /// overwritten). Default 25; valid 0 ..= 90.
    pub gc_start_percent: u32,
    /// Bytes of shard-log segments the node may use, divided equally among its shards; when
    /// a shard's log stays at its share after a forced collection pass, writes that could
    /// add data are refused (`-OOM command not allowed when used disk > 'maxdisksize'.`)
    /// while reads, deletes and expiry go on. 0: no limit (`log-file-bytes` bounds the log).
    /// Default 0.
    pub maxdisksize: u64,
    /// Largest snapshot a replica accepts, bytes. Default 4 GiB.
    pub max_snapshot_bytes: u64,
    /// Bytes per snapshot chunk on the wire (one chunk in flight per transfer). Default 1 MiB.
    pub snapshot_chunk_bytes: usize,
    /// File holding the cluster secret (at least 16 bytes; mode 0600), which every internal
    /// connection proves (`docs/format/wire.md` §2). Default none.
    pub cluster_secret_file: Option<PathBuf>,
    /// The cluster secret itself (prefer `cluster-secret-file`). Default none.
    pub cluster_secret: Option<SecretText>,
    /// Run without a cluster secret: any peer that has none either is accepted. `tierkv ds`
    /// refuses to start with neither a secret nor this set. Default false.
    pub insecure_no_auth: bool,
    /// Time an accepted connection has to complete the handshake, milliseconds. Default 5000.
    pub handshake_timeout_ms: u64,
    /// An accepted connection with nothing received and no request in flight for this long
    /// (up to twice it) is closed, milliseconds; 0 never. Default 600000.
    pub idle_timeout_ms: u64,
    /// Connections per shard from one IP address. Default 256.
    pub max_connections_per_peer: usize,
    /// PEM file of the cluster CA: with `tls-cert` and `tls-key`, every internal connection
    /// is mutual TLS 1.3 (`docs/guides/ds-node.md` "Internal TLS"). Default none.
    pub tls_ca: Option<PathBuf>,
    /// PEM file of this node's certificate chain (SAN `tierkv-internal`). Default none.
    pub tls_cert: Option<PathBuf>,
    /// PEM file of this node's private key. Default none.
    pub tls_key: Option<PathBuf>,
    /// The three TLS files' contents, read by [`DsConfig::resolve_secret`].
    #[serde(skip)]
    pub tls_pem: Option<TlsPem>,
}

/// The PEM text of a node's TLS files, read before shards start; `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct TlsPem {
    /// The cluster CA.
    pub ca: Vec<u8>,
    /// This node's chain.
    pub cert: Vec<u8>,
    /// This node's key.
    pub key: Vec<u8>,
}

impl std::fmt::Debug for TlsPem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsPem(<redacted>)")
    }
}

impl Default for DsConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./tierkv-data/ds"),
            shards: 1,
            pin: true,
            host: "127.0.0.1".into(),
            base_port: 7400,
            master_addr: None,
            store_id: 1,
            initial_replicas: Vec::new(),
            bootstrap: true,
            peers: Vec::new(),
            log_file_bytes: 1 << 30,
            segment_bytes: 64 << 20,
            zero_log_file: true,
            log_write_through: true,
            tick_ms: 100,
            election_ticks: 10,
            heartbeat_ticks: 2,
            max_inflight_proposals: 4096,
            cached_entries: 4096,
            max_connections: 1024,
            heartbeat_ms: 1000,
            io_memory_bytes: 8 << 20,
            admin_addr: None,
            admin_token: None,
            checkpoint_entries: 100_000,
            checkpoint_check_ms: 1000,
            checkpoint_mode: CheckpointMode::Files,
            demote_every_ms: 0,
            demote_percent: 100,
            maxmemory: 0,
            promote_below_percent: 70,
            promote_window_ms: 60_000,
            policy_tick_ms: 100,
            write_throttle_percent: 110,
            write_throttle_max_wait_ms: 2000,
            policy_demote_bytes_per_sec: 0,
            gc_every_ms: 1000,
            gc_bytes_per_sec: 64 << 20,
            gc_space_percent: 150,
            gc_max_victims: 4,
            gc_start_percent: 25,
            maxdisksize: 0,
            max_snapshot_bytes: 4 << 30,
            snapshot_chunk_bytes: 1 << 20,
            cluster_secret_file: None,
            cluster_secret: None,
            insecure_no_auth: false,
            handshake_timeout_ms: 5000,
            idle_timeout_ms: 600_000,
            max_connections_per_peer: 256,
            tls_ca: None,
            tls_cert: None,
            tls_key: None,
            tls_pem: None,
        }
    }
}

impl DsConfig {
    /// Parses a TOML document (missing keys take their defaults).
    pub fn from_toml(text: &str) -> anyhow::Result<Self> {
        let c: Self = toml::from_str(text)?;
        c.validate()?;
        Ok(c)
    }

    /// Checks ranges of values.
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!((1..=256).contains(&self.shards), "shards must be 1..=256");
        anyhow::ensure!(
            self.log_file_bytes % 4096 == 0,
            "log-file-bytes: multiple of 4 KiB"
        );
        anyhow::ensure!(
            self.segment_bytes >= 2 << 20 && self.segment_bytes * 4 <= self.log_file_bytes,
            "segment-bytes must be >= 2 MiB (a commit batch is up to 1 MiB) and a quarter of \
             log-file-bytes at most"
        );
        anyhow::ensure!(self.tick_ms > 0, "tick-ms must be positive");
        anyhow::ensure!(
            self.heartbeat_ticks > 0 && self.election_ticks > self.heartbeat_ticks,
            "election-ticks must exceed heartbeat-ticks > 0"
        );
        anyhow::ensure!(
            self.max_inflight_proposals > 0,
            "max-inflight-proposals > 0"
        );
        anyhow::ensure!(self.checkpoint_entries > 0, "checkpoint-entries > 0");
        anyhow::ensure!(self.checkpoint_check_ms > 0, "checkpoint-check-ms > 0");
        anyhow::ensure!(
            (1..=100).contains(&self.demote_percent),
            "demote-percent must be 1..=100"
        );
        anyhow::ensure!(self.gc_bytes_per_sec > 0, "gc-bytes-per-sec > 0");
        anyhow::ensure!(
            (105..=10_000).contains(&self.gc_space_percent),
            "gc-space-percent must be 105 ..= 10000"
        );
        anyhow::ensure!(
            (1..=1024).contains(&self.gc_max_victims),
            "gc-max-victims must be 1 ..= 1024"
        );
        anyhow::ensure!(
            self.gc_start_percent <= 90,
            "gc-start-percent must be 0 ..= 90"
        );
        anyhow::ensure!(
            self.maxdisksize == 0
                || (self.gc_every_ms > 0
                    && self.maxdisksize / self.shards as u64 >= 4 * self.segment_bytes),
            "maxdisksize needs gc-every-ms > 0 and at least 4 segments per shard"
        );
        anyhow::ensure!(
            self.promote_below_percent <= 100,
            "promote-below-percent must be 0..=100"
        );
        anyhow::ensure!(
            (1000..=3_000_000).contains(&self.promote_window_ms),
            "promote-window-ms must be 1000..=3000000"
        );
        anyhow::ensure!(
            (1..=60_000).contains(&self.policy_tick_ms),
            "policy-tick-ms must be 1..=60000"
        );
        anyhow::ensure!(
            (100..=1000).contains(&self.write_throttle_percent),
            "write-throttle-percent must be 100..=1000"
        );
        anyhow::ensure!(
            self.write_throttle_max_wait_ms <= 4000,
            "write-throttle-max-wait-ms must be 0..=4000"
        );
        anyhow::ensure!(
            (4096..=(16 << 20)).contains(&self.snapshot_chunk_bytes),
            "snapshot-chunk-bytes must be 4 KiB ..= 16 MiB"
        );
        anyhow::ensure!(self.handshake_timeout_ms > 0, "handshake-timeout-ms > 0");
        anyhow::ensure!(
            self.max_connections_per_peer > 0,
            "max-connections-per-peer > 0"
        );
        if let Some(text) = &self.cluster_secret {
            ClusterSecret::from_text(text.0.as_bytes())?;
        }
        self.tls_paths()?;
        Ok(())
    }

    /// The tick interval.
    pub fn tick(&self) -> Duration {
        Duration::from_millis(self.tick_ms)
    }

    /// Whether a cluster secret is configured (inline or as a file).
    pub fn has_secret(&self) -> bool {
        self.cluster_secret.is_some() || self.cluster_secret_file.is_some()
    }

    /// The TLS files, when all three are set (an error when only some are).
    pub fn tls_paths(&self) -> anyhow::Result<Option<TlsPaths>> {
        Ok(TlsPaths::from_parts(
            self.tls_ca.clone(),
            self.tls_cert.clone(),
            self.tls_key.clone(),
        )?)
    }

    /// Reads `cluster-secret-file` into `cluster-secret` and the TLS files into `tls_pem`
    /// (checking that they make a valid TLS config), so that shards (which must not do
    /// blocking file I/O) find them in their config. Call before starting shards.
    pub fn resolve_secret(&mut self) -> anyhow::Result<()> {
        if let Some(p) = self.tls_paths()? {
            let read = |path: &std::path::Path| {
                std::fs::read(path).with_context(|| format!("read {}", path.display()))
            };
            let pem = TlsPem {
                ca: read(&p.ca)?,
                cert: read(&p.cert)?,
                key: read(&p.key)?,
            };
            TlsConfig::from_pem(&pem.ca, &pem.cert, &pem.key)?;
            self.tls_pem = Some(pem);
        }
        anyhow::ensure!(
            !(self.cluster_secret.is_some() && self.cluster_secret_file.is_some()),
            "set cluster-secret or cluster-secret-file, not both"
        );
        if let Some(path) = self.cluster_secret_file.take() {
            ClusterSecret::load(&path)?;
            let text = std::fs::read_to_string(&path)?;
            self.cluster_secret = Some(SecretText(text.trim().to_string()));
        }
        Ok(())
    }

    /// The cluster secret: the inline one, or the insecure empty secret when none is set
    /// (call [`DsConfig::resolve_secret`] first to use a secret file).
    pub fn secret(&self) -> anyhow::Result<ClusterSecret> {
        anyhow::ensure!(
            self.cluster_secret_file.is_none(),
            "cluster-secret-file not read yet (resolve_secret)"
        );
        Ok(match &self.cluster_secret {
            Some(text) => ClusterSecret::from_text(text.0.as_bytes())?,
            None => ClusterSecret::insecure(),
        })
    }

    /// The transport settings of this node's connections, the secret included.
    pub fn transport(&self) -> anyhow::Result<TransportConfig> {
        anyhow::ensure!(
            self.tls_pem.is_some() || self.tls_paths()?.is_none(),
            "tls files not read yet (resolve_secret)"
        );
        let tls = match &self.tls_pem {
            Some(p) => Some(TlsConfig::from_pem(&p.ca, &p.cert, &p.key)?),
            None => None,
        };
        Ok(TransportConfig {
            secret: self.secret()?,
            tls,
            handshake_timeout: Duration::from_millis(self.handshake_timeout_ms),
            idle_timeout: Duration::from_millis(self.idle_timeout_ms),
            max_connections_per_peer: self.max_connections_per_peer,
            ..TransportConfig::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_toml_is_the_default_and_keys_are_kebab_case() {
        assert_eq!(DsConfig::from_toml("").unwrap(), DsConfig::default());
        let c = DsConfig::from_toml("shards = 2\nbase-port = 9000\ntick-ms = 10\n").unwrap();
        assert_eq!((c.shards, c.base_port, c.tick_ms), (2, 9000, 10));
        assert!(DsConfig::from_toml("shards = 0").is_err());
    }

    #[test]
    fn checkpoint_mode_is_files_unless_the_index_is_asked_for() {
        assert_eq!(DsConfig::default().checkpoint_mode, CheckpointMode::Files);
        let c = DsConfig::from_toml("checkpoint-mode = \"index\"").unwrap();
        assert_eq!(c.checkpoint_mode, CheckpointMode::Index);
        assert!(DsConfig::from_toml("checkpoint-mode = \"lsm\"").is_err());
    }

    #[test]
    fn tls_needs_all_three_files_and_reads_them_before_shards_start() {
        assert!(DsConfig::from_toml("tls-ca = \"ca.pem\"").is_err());
        let mut c = DsConfig::from_toml(
            "tls-ca = \"/nonexistent/ca.pem\"\ntls-cert = \"/nonexistent/n.pem\"\ntls-key = \"/nonexistent/n.key\"",
        )
        .unwrap();
        // Not read yet: a shard must not build its transport from paths.
        assert!(c.transport().is_err());
        assert!(
            c.resolve_secret().is_err(),
            "missing files are an error at start"
        );
        assert!(DsConfig::default().transport().unwrap().tls.is_none());
    }

    #[test]
    fn the_cluster_secret_is_never_printed_and_must_be_long_enough() {
        let c = DsConfig::from_toml("cluster-secret = \"a-secret-of-enough-bytes\"").unwrap();
        assert!(!format!("{c:?}").contains("a-secret-of-enough-bytes"));
        assert!(!c.transport().unwrap().secret.is_insecure());
        assert!(DsConfig::from_toml("cluster-secret = \"short\"").is_err());
        assert!(
            DsConfig::default()
                .transport()
                .unwrap()
                .secret
                .is_insecure()
        );
    }
}
