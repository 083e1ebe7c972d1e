//! The local process spawner: starts `tierkv ds` processes on this machine, each with its own
//! data directory and free ports (`--base-port 0`), registering with this master; stops the
//! one whose data directory holds the drained store's id (SIGTERM, then SIGKILL after the
//! stop timeout). What `tierkv dev --elastic` and the scaling tests use.

use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use net::StoreId;

use super::{ProvisionError, Provisioner, StartNodes, StopNode};

/// Settings of the local spawner.
#[derive(Debug, Clone)]
pub struct LocalConfig {
    /// The `tierkv` binary.
    pub exe: PathBuf,
    /// The master's RPC address the nodes register with.
    pub master_addr: String,
    /// The cluster secret's file the nodes prove.
    pub cluster_secret_file: PathBuf,
    /// The TLS files the nodes use (this master's own: one certificate for the machine).
    pub tls: Option<net::tls::TlsPaths>,
    /// Each node's data directory is created under this one (`node-<request>-<i>`).
    pub data_root: PathBuf,
    /// Shards per node.
    pub shards: usize,
    /// `--maxmemory` of each node, bytes (0 = unlimited).
    pub maxmemory: u64,
    /// Most nodes this spawner runs at once.
    pub max_nodes: usize,
    /// A node not gone this long after SIGTERM is killed.
    pub stop_timeout: Duration,
}

#[derive(Debug)]
struct Spawned {
    data_dir: PathBuf,
    child: Child,
}

/// Starts and stops `tierkv ds` processes on this machine.
#[derive(Debug)]
pub struct LocalSpawner {
    cfg: LocalConfig,
    nodes: Mutex<Vec<Spawned>>,
}

impl LocalSpawner {
    /// A spawner with no node running.
    pub fn new(cfg: LocalConfig) -> Self {
        Self {
            cfg,
            nodes: Mutex::new(Vec::new()),
        }
    }

    /// Starts again every node whose data directory is under the data root (the nodes a
    /// previous run of this master started and did not stop); returns how many.
    pub fn resume(&self) -> Result<usize, ProvisionError> {
        let entries = match std::fs::read_dir(&self.cfg.data_root) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(source) => {
                return Err(ProvisionError::Spawn {
                    what: format!("list {}", self.cfg.data_root.display()),
                    source,
                });
            }
        };
        let mut names: Vec<String> = entries
            .filter_map(Result::ok)
            .filter(|e| e.path().is_dir())
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| n.starts_with("node-"))
            .collect();
        names.sort();
        let mut nodes = self.lock();
        for name in names.iter().take(self.cfg.max_nodes) {
            let s = self.spawn_one(name.clone())?;
            nodes.push(s);
        }
        Ok(names.len().min(self.cfg.max_nodes))
    }

    /// Process ids of the nodes it runs (tests).
    pub fn pids(&self) -> Vec<u32> {
        self.lock().iter().map(|s| s.child.id()).collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Spawned>> {
        self.nodes.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn spawn_one(&self, name: String) -> Result<Spawned, ProvisionError> {
        let data_dir = self.cfg.data_root.join(name);
        let spawn_err = |source| ProvisionError::Spawn {
            what: format!("tierkv ds in {}", data_dir.display()),
            source,
        };
        std::fs::create_dir_all(&data_dir).map_err(spawn_err)?;
        let log = File::create(data_dir.join("ds.log")).map_err(spawn_err)?;
        let log2 = log.try_clone().map_err(spawn_err)?;
        let mut cmd = Command::new(&self.cfg.exe);
        cmd.arg("ds")
            .arg("--data-dir")
            .arg(&data_dir)
            .args(["--master", &self.cfg.master_addr, "--base-port", "0"])
            .args(["--shards", &self.cfg.shards.to_string()])
            .args(["--maxmemory", &self.cfg.maxmemory.to_string()])
            .arg("--cluster-secret-file")
            .arg(&self.cfg.cluster_secret_file);
        if let Some(tls) = &self.cfg.tls {
            cmd.arg("--tls-ca").arg(&tls.ca);
            cmd.arg("--tls-cert").arg(&tls.cert);
            cmd.arg("--tls-key").arg(&tls.key);
        }
        cmd.stdin(Stdio::null()).stdout(log).stderr(log2);
        let child = cmd.spawn().map_err(spawn_err)?;
        tracing::info!(pid = child.id(), dir = %data_dir.display(), "local provisioner started a DS node");
        Ok(Spawned { data_dir, child })
    }

    /// SIGTERM, then SIGKILL after the stop timeout; reaps the process.
    fn stop(&self, mut s: Spawned) {
        let pid = s.child.id().to_string();
        let _ = Command::new("kill")
            .args(["-TERM", &pid])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + self.cfg.stop_timeout;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = s.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        tracing::warn!(pid, "DS node ignored SIGTERM; killing it");
        let _ = s.child.kill();
        let _ = s.child.wait();
    }

    fn store_of(s: &Spawned) -> Option<StoreId> {
        std::fs::read_to_string(s.data_dir.join("store-id"))
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .map(StoreId)
    }
}

impl Provisioner for LocalSpawner {
    fn name(&self) -> &'static str {
        "local"
    }

    fn start_nodes(&self, req: &StartNodes) -> Result<(), ProvisionError> {
        let mut nodes = self.lock();
        nodes.retain_mut(|s| !matches!(s.child.try_wait(), Ok(Some(_))));
        if nodes.len() + req.nodes as usize > self.cfg.max_nodes {
            return Err(ProvisionError::Refused(format!(
                "the local provisioner runs at most {} nodes ({} now)",
                self.cfg.max_nodes,
                nodes.len()
            )));
        }
        for i in 0..req.nodes {
            let s = self.spawn_one(format!("node-{}-{i}", req.id))?;
            nodes.push(s);
        }
        Ok(())
    }

    fn stop_node(&self, req: &StopNode) -> Result<(), ProvisionError> {
        let victim = {
            let mut nodes = self.lock();
            let at = nodes
                .iter()
                .position(|s| Self::store_of(s) == Some(req.store))
                .ok_or(ProvisionError::UnknownNode(req.store))?;
            nodes.swap_remove(at)
        };
        tracing::info!(store = %req.store, pid = victim.child.id(), "local provisioner stopping a DS node");
        let dir = victim.data_dir.clone();
        self.stop(victim);
        // Drained: it holds no replica, so its data is garbage. Removing it also tells
        // `resume` not to start it again.
        if let Err(e) = std::fs::remove_dir_all(&dir) {
            tracing::warn!(dir = %dir.display(), "could not remove a stopped node's data: {e}");
        }
        Ok(())
    }

    fn shutdown(&self) {
        let all: Vec<Spawned> = std::mem::take(&mut *self.lock());
        for s in all {
            self.stop(s);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capacity::ProvisionId;

    fn spawner(exe: &str, dir: &std::path::Path) -> LocalSpawner {
        LocalSpawner::new(LocalConfig {
            exe: exe.into(),
            master_addr: "127.0.0.1:1".into(),
            cluster_secret_file: dir.join("secret"),
            tls: None,
            data_root: dir.to_path_buf(),
            shards: 1,
            maxmemory: 0,
            max_nodes: 1,
            stop_timeout: Duration::from_secs(5),
        })
    }

    #[test]
    fn a_node_is_found_by_its_store_id_and_stopped() {
        // `sleep` stands in for `tierkv ds` (it ignores the arguments' meaning but runs).
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("fake-ds");
        std::fs::write(&script, "#!/bin/sh\nexec sleep 60\n").unwrap();
        std::process::Command::new("chmod")
            .arg("+x")
            .arg(&script)
            .status()
            .unwrap();
        let sp = spawner(script.to_str().unwrap(), dir.path());
        let req = StartNodes {
            id: ProvisionId(3),
            nodes: 1,
            target_stores: 2,
        };
        sp.start_nodes(&req).unwrap();
        assert_eq!(sp.pids().len(), 1);
        let again = sp.start_nodes(&req).unwrap_err();
        assert!(matches!(again, ProvisionError::Refused(_)), "max_nodes 1");
        std::fs::write(dir.path().join("node-3-0/store-id"), "12").unwrap();
        let stop = |store| StopNode {
            id: ProvisionId(4),
            store: StoreId(store),
            addr: String::new(),
            target_stores: 1,
        };
        assert!(matches!(
            sp.stop_node(&stop(13)),
            Err(ProvisionError::UnknownNode(_))
        ));
        sp.stop_node(&stop(12)).unwrap();
        assert!(sp.pids().is_empty());
    }

    #[test]
    fn a_binary_that_cannot_start_is_a_spawn_error() {
        let dir = tempfile::tempdir().unwrap();
        let sp = spawner("/nonexistent/tierkv", dir.path());
        let req = StartNodes {
            id: ProvisionId(3),
            nodes: 1,
            target_stores: 2,
        };
        assert!(matches!(
            sp.start_nodes(&req),
            Err(ProvisionError::Spawn { .. })
        ));
    }
}
