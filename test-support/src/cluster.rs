//! A real cluster of `tierkv` processes for the whole-system tests and benchmarks: a
//! `tierkv master`, [`NODES`] `tierkv ds` nodes (one shard each, replication factor 3) and a
//! `tierkv proxy`, optionally with each DS node in a network namespace of its own
//! ([`crate::netns::Lab`]) so it can be partitioned. Used by `tests/jepsen.rs` and
//! `benches/failover.rs` of the root package.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::http::get_json;
use crate::netns::Lab;
use crate::procs::{Procs, free_port, logs, spawn, wait_until};
use crate::resp::Conn;
use crate::tempdir::TempDir;

/// DS nodes in the cluster.
pub const NODES: usize = 3;

/// How long a readiness check's connection and request may take.
const READY_TIMEOUT: Duration = Duration::from_secs(1);

/// The master or the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// `tierkv master`.
    Master,
    /// `tierkv proxy`.
    Proxy,
}

/// The cluster's processes and how to restart and partition its DS nodes.
/// Fields drop in order: the processes are killed before their namespaces and data go.
#[derive(Debug)]
pub struct Cluster {
    /// The processes: master, DS nodes, proxy.
    pub procs: Procs,
    /// The network namespaces the DS nodes run in (`None`: all on 127.0.0.1).
    pub lab: Option<Lab>,
    /// Data directories, configs and logs.
    pub dir: TempDir,
    /// The `tierkv` binary.
    bin: PathBuf,
    /// Slot in `procs` and command-line arguments of each DS node.
    ds: Vec<(usize, Vec<String>)>,
    /// `ip:port` each DS node's shard listens on.
    ds_addrs: Vec<String>,
    /// The master's admin HTTP port.
    pub admin: u16,
    /// Where the proxy serves RESP.
    pub proxy_addr: String,
    /// The master's and the proxy's slots and arguments (to restart them after a kill).
    master: (usize, Vec<String>),
    proxy: (usize, Vec<String>, Vec<(String, String)>),
}

impl Cluster {
    /// Starts master, nodes and proxy (with `proxy_env` in the proxy's environment) and
    /// waits until the range has three voters and a leader and the proxy takes a write.
    pub fn start(bin: &Path, lab: Option<Lab>, proxy_env: &[(&str, &str)]) -> Cluster {
        let dir = TempDir::new("tierkv-cluster");
        std::fs::create_dir_all(dir.path()).expect("cluster harness");
        let d = dir.path().to_path_buf();
        let secret = d.join("cluster-secret");
        net::auth::ClusterSecret::load_or_create(&secret).expect("cluster harness");
        let secret = secret.to_str().expect("cluster harness").to_string();
        let host = lab.as_ref().map_or("127.0.0.1".into(), Lab::host_ip);
        let master_addr = format!("{host}:{}", free_port());
        let (admin, redis) = (free_port(), free_port());
        std::fs::write(
            d.join("master.toml"),
            format!(
                "data-dir = \"{}\"\nlisten = \"{master_addr}\"\nadmin-listen = \"127.0.0.1:{admin}\"\n\
                 cluster-secret-file = \"{secret}\"\nschedule-interval-ms = 200\n\
                 [cluster]\nreplication-factor = 3\n[schedule]\nstore-down-after-ms = 30000\n",
                d.join("master").display()
            ),
        )
        .expect("cluster harness");
        let mut c = Cluster {
            procs: Procs::default(),
            lab,
            dir,
            bin: bin.to_path_buf(),
            ds: Vec::new(),
            ds_addrs: Vec::new(),
            admin,
            proxy_addr: format!("127.0.0.1:{redis}"),
            master: (0, Vec::new()),
            proxy: (0, Vec::new(), Vec::new()),
        };
        let master_args = [
            "master",
            "--config",
            d.join("master.toml").to_str().expect("cluster harness"),
        ]
        .map(String::from)
        .to_vec();
        c.master = (c.procs.add(c.spawn_master(&master_args)), master_args);
        wait_until(&d, "the master", Duration::from_secs(20), || {
            get_json(admin, "/status")
        });
        for i in 0..NODES {
            let ip = c.lab.as_ref().map_or("127.0.0.1".into(), |l| l.node_ip(i));
            let port = free_port().to_string();
            let cfg = d.join(format!("ds{i}.toml"));
            std::fs::write(
                &cfg,
                format!(
                    "host = \"{ip}\"\nshards = 1\npin = false\nheartbeat-ms = 200\n\
                     log-file-bytes = 67108864\nsegment-bytes = 8388608\n"
                ),
            )
            .expect("cluster harness");
            let args: Vec<String> = [
                "ds",
                "--config",
                cfg.to_str().expect("cluster harness"),
                "--data-dir",
                d.join(format!("ds{i}")).to_str().expect("cluster harness"),
                "--master",
                &master_addr,
                "--base-port",
                &port,
                "--cluster-secret-file",
                &secret,
            ]
            .map(String::from)
            .to_vec();
            c.ds_addrs.push(format!("{ip}:{port}"));
            let slot = c.procs.add(spawn(c.ds_command(i, &args), &c.ds_log(i)));
            c.ds.push((slot, args));
            if i == 0 {
                // The first node bootstraps the range; the others join it.
                wait_until(&d, "the first node", Duration::from_secs(20), || {
                    let r = get_json(admin, "/ranges")?;
                    (!r.as_array()?.is_empty()).then_some(())
                });
            }
        }
        let proxy_args = [
            "proxy",
            "--listen",
            &c.proxy_addr,
            "--master",
            &master_addr,
            "--cluster-secret-file",
            &secret,
        ]
        .map(String::from)
        .to_vec();
        let env: Vec<(String, String)> = proxy_env
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect();
        let slot = c.procs.add(c.spawn_proxy(&proxy_args, &env));
        c.proxy = (slot, proxy_args, env);
        wait_until(&d, "3 voters and a leader", Duration::from_secs(30), || {
            c.leader().filter(|_| c.voters() == Some(NODES))
        });
        wait_until(
            &d,
            "a write through the proxy",
            Duration::from_secs(20),
            || {
                let mut conn = Conn::connect(&c.proxy_addr, READY_TIMEOUT).ok()?;
                conn.call(&["SET", "jepsen-ready", "1"])
                    .ok()?
                    .is_ok()
                    .then_some(())
            },
        );
        c
    }

    pub fn spawn_master(&self, args: &[String]) -> std::process::Child {
        let mut cmd = Command::new(&self.bin);
        cmd.args(args);
        spawn(cmd, &self.dir.path().join("master.log"))
    }

    pub fn spawn_proxy(&self, args: &[String], env: &[(String, String)]) -> std::process::Child {
        let mut cmd = Command::new(&self.bin);
        cmd.args(args).envs(env.iter().map(|(k, v)| (k, v)));
        spawn(cmd, &self.dir.path().join("proxy.log"))
    }

    /// Kills (-9) the master or the proxy.
    pub fn kill_service(&mut self, s: Service) {
        let slot = match s {
            Service::Master => self.master.0,
            Service::Proxy => self.proxy.0,
        };
        self.procs.kill(slot);
    }

    /// Starts the master or the proxy again, with the same arguments, ports and data.
    pub fn restart_service(&mut self, s: Service) {
        if s == Service::Master {
            let child = self.spawn_master(&self.master.1);
            self.procs.replace(self.master.0, child);
        } else {
            let child = self.spawn_proxy(&self.proxy.1, &self.proxy.2);
            self.procs.replace(self.proxy.0, child);
        }
    }

    pub fn ds_log(&self, i: usize) -> std::path::PathBuf {
        self.dir.path().join(format!("ds{i}.log"))
    }

    pub fn ds_command(&self, i: usize, args: &[String]) -> Command {
        let mut cmd = match &self.lab {
            Some(lab) => lab.command(i, &self.bin),
            None => Command::new(&self.bin),
        };
        cmd.args(args);
        cmd
    }

    pub fn range(&self) -> Option<serde_json::Value> {
        Some(
            get_json(self.admin, "/ranges")?
                .as_array()?
                .first()?
                .clone(),
        )
    }

    pub fn voters(&self) -> Option<usize> {
        let r = self.range()?;
        Some(
            r["replicas"]
                .as_array()?
                .iter()
                .filter(|x| x["role"] == "voter")
                .count(),
        )
    }

    /// The node whose shard leads the range, as the master last heard.
    pub fn leader(&self) -> Option<usize> {
        let r = self.range()?;
        let leader = r["leader"].as_u64()?;
        let replicas = r["replicas"].as_array()?;
        let store = replicas.iter().find(|x| x["id"] == leader)?["store"].as_u64()?;
        let stores = get_json(self.admin, "/stores")?;
        let s = stores.as_array()?.iter().find(|s| s["id"] == store)?;
        let addr = s["shards"][0].as_str()?;
        self.ds_addrs.iter().position(|a| a == addr)
    }

    pub fn pid(&self, i: usize) -> u32 {
        self.procs.pid(self.ds[i].0).expect("cluster harness")
    }

    pub fn kill(&mut self, i: usize) {
        self.procs.kill(self.ds[i].0);
    }

    pub fn restart(&mut self, i: usize) {
        let cmd = self.ds_command(i, &self.ds[i].1);
        let child = spawn(cmd, &self.ds_log(i));
        self.procs.replace(self.ds[i].0, child);
    }

    /// Panics if a process exited on its own (a crash is a finding, not a fault).
    pub fn assert_alive(&mut self) {
        for slot in 0..NODES + 2 {
            assert!(
                !self.procs.exited(slot),
                "process {slot} exited on its own\n{}",
                logs(self.dir.path(), 30)
            );
        }
    }
}
