//! The operator command hook: runs a configured command for each start and stop, with
//! `{replicas}`, `{nodes}`, `{store}`, `{addr}` and `{request}` replaced in its arguments
//! and the same values in `TIERKV_*` environment variables; a non-zero exit status is an
//! error, and a command still running after its timeout is killed.

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{ProvisionError, Provisioner, StartNodes, StopNode};

/// How much of a failed command's standard error is kept for the error message.
const STDERR_KEPT: usize = 2048;

/// Runs operator commands (e.g. `kubectl scale statefulset tierkv-ds --replicas={replicas}`).
#[derive(Debug, Clone)]
pub struct CommandHook {
    /// argv of the command run to add nodes; must not be empty.
    pub expand: Vec<String>,
    /// argv of the command run to remove a drained node; must not be empty.
    pub shrink: Vec<String>,
    /// Time a command may take.
    pub timeout: Duration,
}

fn fill(args: &[String], vars: &[(&str, String)]) -> Vec<String> {
    args.iter()
        .map(|a| {
            vars.iter()
                .fold(a.clone(), |a, (k, v)| a.replace(&format!("{{{k}}}"), v))
        })
        .collect()
}

impl CommandHook {
    fn run(&self, argv: &[String], vars: &[(&str, String)]) -> Result<(), ProvisionError> {
        let argv = fill(argv, vars);
        let Some((program, args)) = argv.split_first() else {
            return Err(ProvisionError::Refused("no command configured".into()));
        };
        let what = argv.join(" ");
        let mut cmd = Command::new(program);
        // Its own process group, so a timeout kills what it started too (a shell's children).
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in vars {
            cmd.env(format!("TIERKV_{}", k.to_uppercase()), v);
        }
        let mut child = cmd.spawn().map_err(|source| ProvisionError::Spawn {
            what: what.clone(),
            source,
        })?;
        // Read standard error on its own thread so a chatty command never blocks on a full
        // pipe; keep its end.
        let stderr = child.stderr.take().map(|mut e| {
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                while let Ok(n) = e.read(&mut chunk) {
                    if n == 0 {
                        break;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    if buf.len() > 2 * STDERR_KEPT {
                        buf.drain(..buf.len() - STDERR_KEPT);
                    }
                }
                let start = buf.len().saturating_sub(STDERR_KEPT);
                String::from_utf8_lossy(&buf[start..]).trim().to_string()
            })
        });
        let status = wait_with_timeout(&mut child, self.timeout);
        // After a timeout a straggler may still hold the pipe: do not wait for the reader.
        let stderr = match (&status, stderr) {
            (Some(_), Some(t)) => t.join().unwrap_or_default(),
            _ => String::new(),
        };
        match status {
            Some(s) if s.success() => Ok(()),
            Some(status) => Err(ProvisionError::Failed {
                what,
                status,
                stderr,
            }),
            None => Err(ProvisionError::Timeout {
                what,
                timeout_ms: self.timeout.as_millis() as u64,
            }),
        }
    }
}

/// Waits for `child` up to `timeout`; kills it (and reaps it) when the time is up.
fn wait_with_timeout(child: &mut Child, timeout: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(s)) => return Some(s),
            Ok(None) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            _ => {
                let group = format!("-{}", child.id());
                let _ = Command::new("kill")
                    .args(["-KILL", "--", &group])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    }
}

impl Provisioner for CommandHook {
    fn name(&self) -> &'static str {
        "command"
    }

    fn start_nodes(&self, req: &StartNodes) -> Result<(), ProvisionError> {
        let vars = [
            ("action", "expand".to_string()),
            ("replicas", req.target_stores.to_string()),
            ("nodes", req.nodes.to_string()),
            ("request", req.id.to_string()),
        ];
        self.run(&self.expand, &vars)
    }

    fn stop_node(&self, req: &StopNode) -> Result<(), ProvisionError> {
        let vars = [
            ("action", "shrink".to_string()),
            ("replicas", req.target_stores.to_string()),
            ("store", req.store.to_string()),
            ("addr", req.addr.clone()),
            ("request", req.id.to_string()),
        ];
        self.run(&self.shrink, &vars)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capacity::ProvisionId;
    use net::StoreId;

    fn sh(script: &str) -> Vec<String> {
        vec!["sh".into(), "-c".into(), script.into()]
    }

    fn hook(expand: &str, timeout_ms: u64) -> CommandHook {
        CommandHook {
            expand: sh(expand),
            shrink: sh("test \"$TIERKV_STORE\" = 7 && test \"$TIERKV_REPLICAS\" = 2"),
            timeout: Duration::from_millis(timeout_ms),
        }
    }

    fn start(target: u32) -> StartNodes {
        StartNodes {
            id: ProvisionId(9),
            nodes: 1,
            target_stores: target,
        }
    }

    #[test]
    fn the_command_gets_the_target_replica_count_in_its_arguments_and_environment() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let script = format!(
            "echo \"$TIERKV_ACTION $TIERKV_REPLICAS {{replicas}} {{request}}\" > {}",
            out.display()
        );
        hook(&script, 5000).start_nodes(&start(4)).unwrap();
        let written = std::fs::read_to_string(&out).unwrap();
        assert_eq!(written.trim(), "expand 4 4 9");
        let stop = StopNode {
            id: ProvisionId(10),
            store: StoreId(7),
            addr: "127.0.0.1:1".into(),
            target_stores: 2,
        };
        hook("true", 5000).stop_node(&stop).unwrap();
    }

    #[test]
    fn a_failing_command_is_an_error_with_its_stderr() {
        let e = hook("echo no quota >&2; exit 3", 5000)
            .start_nodes(&start(2))
            .unwrap_err();
        match e {
            ProvisionError::Failed { status, stderr, .. } => {
                assert_eq!(status.code(), Some(3));
                assert_eq!(stderr, "no quota");
            }
            other => panic!("{other}"),
        }
    }

    #[test]
    fn a_command_past_its_timeout_is_killed_and_reported() {
        let t = Instant::now();
        let e = hook("sleep 30", 200).start_nodes(&start(2)).unwrap_err();
        assert!(matches!(e, ProvisionError::Timeout { .. }), "{e}");
        assert!(t.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn a_missing_program_is_a_spawn_error() {
        let h = CommandHook {
            expand: vec!["/nonexistent/tierkv-scale".into()],
            shrink: vec![],
            timeout: Duration::from_secs(1),
        };
        assert!(matches!(
            h.start_nodes(&start(2)),
            Err(ProvisionError::Spawn { .. })
        ));
        assert!(matches!(
            h.stop_node(&StopNode {
                id: ProvisionId(1),
                store: StoreId(1),
                addr: String::new(),
                target_stores: 1
            }),
            Err(ProvisionError::Refused(_))
        ));
    }
}
