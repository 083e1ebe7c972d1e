//! A small lab network for partition tests (Linux, root): one network namespace per node,
//! each with a veth link into a bridge of the host namespace, on a private /24
//! (`10.213.X.0/24`: the host is `.1`, node `i` is `.(i + 2)`). A node is partitioned from
//! the others by blackhole routes in both directions between it and each of them; the host
//! (master, proxy, the test) still reaches every node. Everything is removed on drop.
//!
//! Commands run with `ip` (iproute2); [`Lab::new`] says why when it cannot build the lab
//! (not root, no `ip`, no network namespaces), so a test can skip partitions outside CI.

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

/// A bridge and one namespace per node.
#[derive(Debug)]
pub struct Lab {
    id: String,
    bridge: String,
    namespaces: Vec<String>,
    prefix: String,
}

/// Names of everything a lab makes start with this, then `<pid>-<n>` (at most 13 characters,
/// and a veth `…v<i>` at most 15, Linux's limit).
const PREFIX: &str = "tkvj";

/// Removes the namespaces and bridges of labs whose process is gone (killed before its
/// `Drop` ran).
fn remove_orphans() {
    let list = |args: &[&str]| {
        Command::new("ip")
            .args(args)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    };
    let orphan = |name: &str| {
        name.strip_prefix(PREFIX)
            .and_then(|rest| rest.split_once('-'))
            .and_then(|(pid, _)| pid.parse::<u32>().ok())
            .is_some_and(|pid| !std::path::Path::new(&format!("/proc/{pid}")).exists())
    };
    for line in list(&["netns", "list"]).lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        if orphan(name) {
            let _ = ip(&["netns", "del", name]);
        }
    }
    for line in list(&["-o", "link", "show", "type", "bridge"]).lines() {
        let name = line.split(':').nth(1).unwrap_or("").trim();
        if orphan(name) {
            let _ = ip(&["link", "del", name]);
        }
    }
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip {}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl Lab {
    /// Builds a lab of `nodes` namespaces (at most 200) named after this process (first
    /// removing what labs of dead processes left).
    pub fn new(nodes: usize) -> Result<Lab, String> {
        assert!(nodes <= 200, "at most 200 nodes");
        static NEXT: AtomicU32 = AtomicU32::new(0);
        remove_orphans();
        let n = NEXT.fetch_add(1, Ordering::Relaxed) % 10;
        let id = format!("{PREFIX}{}-{n}", std::process::id());
        let mut lab = Lab {
            id: id.clone(),
            bridge: id,
            namespaces: Vec::new(),
            prefix: String::new(),
        };
        ip(&["link", "add", &lab.bridge, "type", "bridge"])?;
        // A /24 no route of this machine uses yet.
        let taken = Command::new("ip")
            .args(["-4", "route", "show"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .map_err(|e| format!("ip route: {e}"))?;
        let third = (0..250u32)
            .map(|k| (std::process::id() + k) % 250)
            .find(|x| !taken.contains(&format!("10.213.{x}.")))
            .ok_or("no free 10.213.X.0/24")?;
        lab.prefix = format!("10.213.{third}");
        ip(&[
            "addr",
            "add",
            &format!("{}.1/24", lab.prefix),
            "dev",
            &lab.bridge,
        ])?;
        ip(&["link", "set", &lab.bridge, "up"])?;
        for i in 0..nodes {
            lab.add_node(i)?;
        }
        Ok(lab)
    }

    fn add_node(&mut self, i: usize) -> Result<(), String> {
        let ns = format!("{}n{i}", self.id);
        ip(&["netns", "add", &ns])?;
        self.namespaces.push(ns.clone());
        let veth = format!("{}v{i}", self.id);
        ip(&[
            "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &ns,
        ])?;
        ip(&["link", "set", &veth, "master", &self.bridge])?;
        ip(&["link", "set", &veth, "up"])?;
        let addr = format!("{}/24", self.node_ip(i));
        ip(&["-n", &ns, "addr", "add", &addr, "dev", "eth0"])?;
        ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
        ip(&["-n", &ns, "link", "set", "lo", "up"])
    }

    /// The host's address on the lab network (listen there to be reachable from the nodes).
    pub fn host_ip(&self) -> String {
        format!("{}.1", self.prefix)
    }

    /// Node `i`'s address.
    pub fn node_ip(&self, i: usize) -> String {
        format!("{}.{}", self.prefix, i + 2)
    }

    /// A command that runs `program` in node `i`'s namespace (`ip netns exec` execs it: the
    /// child's pid is the program's).
    pub fn command(&self, i: usize, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.namespaces[i]]).arg(program);
        c
    }

    /// Cuts node `i` off from every other node, both ways (the host still reaches it).
    pub fn isolate(&self, i: usize) -> Result<(), String> {
        for j in 0..self.namespaces.len() {
            if j != i {
                self.blackhole(i, j, "add")?;
                self.blackhole(j, i, "add")?;
            }
        }
        Ok(())
    }

    /// Removes every partition.
    pub fn heal(&self) {
        for i in 0..self.namespaces.len() {
            for j in 0..self.namespaces.len() {
                if i != j {
                    let _ = self.blackhole(i, j, "del");
                }
            }
        }
    }

    fn blackhole(&self, from: usize, to: usize, verb: &str) -> Result<(), String> {
        let dst = format!("{}/32", self.node_ip(to));
        ip(&[
            "-n",
            &self.namespaces[from],
            "route",
            verb,
            "blackhole",
            &dst,
        ])
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for ns in &self.namespaces {
            let _ = ip(&["netns", "del", ns]);
        }
        let _ = ip(&["link", "del", &self.bridge]);
    }
}
