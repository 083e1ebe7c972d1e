//! `tierkv dev` as a child process, for the root package's tests: on a free port of
//! 127.0.0.1 with a data directory of its own, ready once a `SET` through it succeeds,
//! killed (SIGKILL) and reaped when dropped. Its log is `dev.log` beside the data directory's
//! contents, quoted when it does not become ready.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use crate::procs::{free_port, spawn, wait_until};
use crate::resp::Conn;
use crate::tempdir::TempDir;

/// How long a started `tierkv dev` may take to answer a `SET`.
const READY_WITHIN: Duration = Duration::from_secs(60);
/// The read and write timeout of the connections handed out.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// A running `tierkv dev`.
#[derive(Debug)]
pub struct Dev {
    bin: PathBuf,
    args: Vec<String>,
    child: Option<Child>,
    /// The Redis port.
    pub port: u16,
    dir: TempDir,
}

impl Dev {
    /// Starts `bin dev ARGS --port P --data-dir D` (the binary is the caller's
    /// `env!("CARGO_BIN_EXE_tierkv")`) and waits until it takes a `SET`; returns it and a
    /// connection to it.
    ///
    /// # Panics
    /// When it cannot start or does not become ready within a minute (with its log).
    pub fn start(bin: &str, name: &str, args: &[&str]) -> (Dev, Conn) {
        let mut dev = Dev {
            bin: PathBuf::from(bin),
            args: args.iter().map(|a| (*a).to_string()).collect(),
            child: None,
            port: free_port(),
            dir: TempDir::new(name),
        };
        std::fs::create_dir_all(dev.dir.path())
            .unwrap_or_else(|e| panic!("create {}: {e}", dev.dir.path().display()));
        let c = dev.restart();
        (dev, c)
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Kills the process with SIGKILL, as a crash would, and reaps it.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the process again (after [`Self::kill9`]) on the same port and data directory
    /// and waits until it takes a `SET`.
    ///
    /// # Panics
    /// When it is still running, or as [`Self::start`].
    pub fn restart(&mut self) -> Conn {
        assert!(self.child.is_none(), "tierkv dev is still running");
        let data = self.dir.path().join("data");
        let mut cmd = Command::new(&self.bin);
        cmd.arg("dev")
            .args(&self.args)
            .arg("--port")
            .arg(self.port.to_string())
            .arg("--data-dir")
            .arg(&data);
        self.child = Some(spawn(cmd, &self.dir.path().join("dev.log")));
        let port = self.port;
        wait_until(
            self.dir.path(),
            "tierkv dev to take a SET",
            READY_WITHIN,
            || {
                let mut c = Conn::connect(("127.0.0.1", port), CALL_TIMEOUT).ok()?;
                c.call(&["SET", "ready", "1"])
                    .ok()
                    .filter(|r| r.is_ok())
                    .map(|_| c)
            },
        )
    }

    /// A new connection.
    ///
    /// # Panics
    /// When it cannot connect.
    pub fn connect(&self) -> Conn {
        Conn::connect(("127.0.0.1", self.port), CALL_TIMEOUT)
            .unwrap_or_else(|e| panic!("connect to tierkv dev: {e}"))
    }
}

impl Drop for Dev {
    fn drop(&mut self) {
        self.kill9();
    }
}
